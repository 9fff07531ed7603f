//! G1 view agreement (DESIGN §3 G1; TESTING GM3; CKV01 "views uniquely identified"; VS.txt #1).
//!
//! Checkable form: any two `install` lines with the same `view` carry identical `members`
//! lists (same processes in the same order). A member list also names no process twice: a
//! view is a set, and G2's majority arithmetic counts its members; nor two incarnations of
//! one node: a node runs one life at a time, and a restarted node joins as its new
//! incarnation only in a view without its old one (the core removes the old member first, or
//! in the same view change, where a recovered member stands in for it).
//!
//! The `loading` list (the members that wait for a state transfer in the view) is part of the
//! view too: every install of an id carries the same one, and it names members only, each
//! once. Traces written before state transfer existed have it empty everywhere.
//!
//! Needs no order between lines: the first install of an id is the reference for later ones.

use std::collections::HashSet;

use crate::checker::Views;
use crate::trace::Proc;
use crate::violation::{procs, Guarantee, Violation};

/// Returns whether `view` had been installed before (and so is already recorded).
pub(crate) fn on_install(
    views: &Views,
    t: u64,
    p: Proc,
    view: u64,
    members: &[Proc],
    loading: &[Proc],
) -> Result<bool, Violation> {
    if let Some(known) = views.get(&view) {
        if known.members == members && known.loading == loading {
            return Ok(true);
        }
        if known.members == members {
            return Err(Violation::new(
                Guarantee::G1ViewAgreement,
                t,
                format!(
                    "{p} installed view {view} with loading {} but {} installed it with loading {}",
                    procs(loading),
                    known.first,
                    procs(&known.loading)
                ),
            ));
        }
        return Err(Violation::new(
            Guarantee::G1ViewAgreement,
            t,
            format!(
                "{p} installed view {view} as {} but {} installed it as {}",
                procs(members),
                known.first,
                procs(&known.members)
            ),
        ));
    }
    let mut seen = HashSet::with_capacity(members.len());
    if let Some(twice) = members.iter().find(|m| !seen.insert(**m)) {
        return Err(Violation::new(
            Guarantee::G1ViewAgreement,
            t,
            format!("{p} installed view {view} {} naming {twice} twice", procs(members)),
        ));
    }
    let mut nodes = std::collections::HashMap::with_capacity(members.len());
    for m in members {
        if let Some(other) = nodes.insert(m.node, *m) {
            return Err(Violation::new(
                Guarantee::G1ViewAgreement,
                t,
                format!(
                    "{p} installed view {view} {} naming two lives of node {}: {other} and {m}",
                    procs(members),
                    m.node
                ),
            ));
        }
    }
    let mut seen = HashSet::with_capacity(loading.len());
    for l in loading {
        let problem = if !members.contains(l) {
            "which is not a member"
        } else if !seen.insert(*l) {
            "twice"
        } else {
            continue;
        };
        return Err(Violation::new(
            Guarantee::G1ViewAgreement,
            t,
            format!(
                "{p} installed view {view} {} with loading {} naming {l} {problem}",
                procs(members),
                procs(loading)
            ),
        ));
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use crate::testkit::{p, Trace};
    use crate::Guarantee;

    #[test]
    fn two_lives_of_one_node_in_a_view_are_caught() {
        let mut tr = Trace::new();
        let (a, a1, b) = (p(1), crate::testkit::pi(1, 1), p(2));
        tr.start(a).start(a1).start(b).install(b, 1, &[a, a1, b]);
        let v = tr.assert_violates(Guarantee::G1ViewAgreement);
        assert!(v.detail.contains("naming two lives of node 1: n1.0 and n1.1"), "{v}");
    }

    #[test]
    fn same_members_everywhere_passes() {
        let mut tr = Trace::group(&[p(1), p(2), p(3)], 1);
        tr.install_all(2, &[p(1), p(2)]);
        tr.assert_ok();
    }

    #[test]
    fn different_members_for_one_view_id_are_caught() {
        let mut tr = Trace::new();
        tr.start(p(1)).start(p(2));
        tr.install(p(1), 1, &[p(1), p(2)]).install(p(2), 1, &[p(2)]);
        let v = tr.assert_violates(Guarantee::G1ViewAgreement);
        assert!(v.detail.contains("n2.0 installed view 1 as [n2.0]"), "{v}");
    }

    #[test]
    fn member_order_matters() {
        let mut tr = Trace::new();
        tr.start(p(1)).start(p(2));
        tr.install(p(1), 1, &[p(1), p(2)]).install(p(2), 1, &[p(2), p(1)]);
        tr.assert_violates(Guarantee::G1ViewAgreement);
    }

    #[test]
    fn the_same_loading_list_everywhere_passes() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b], 1);
        tr.start(c).install_loading_all(2, &[a, b, c], &[c]);
        tr.assert_ok();
    }

    #[test]
    fn different_loading_lists_for_one_view_id_are_caught() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b], 1);
        tr.start(c).install_loading(a, 2, &[a, b, c], &[c]).install(b, 2, &[a, b, c]);
        let v = tr.assert_violates(Guarantee::G1ViewAgreement);
        assert!(
            v.detail
                .contains("n2.0 installed view 2 with loading [] but n1.0 installed it with loading [n3.0]"),
            "{v}"
        );
    }

    #[test]
    fn a_loading_list_naming_a_non_member_or_a_member_twice_is_caught() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut outsider = Trace::group(&[a, b], 1);
        outsider.install_loading(a, 2, &[a, b], &[c]);
        let v = outsider.assert_violates(Guarantee::G1ViewAgreement);
        assert!(v.detail.contains("naming n3.0 which is not a member"), "{v}");

        let mut twice = Trace::group(&[a, b], 1);
        twice.start(c).install_loading(a, 2, &[a, b, c], &[c, c]);
        let v = twice.assert_violates(Guarantee::G1ViewAgreement);
        assert!(v.detail.contains("naming n3.0 twice"), "{v}");
    }

    #[test]
    fn a_member_listed_twice_is_caught() {
        let mut tr = Trace::new();
        tr.start(p(1)).install(p(1), 1, &[p(1), p(1)]);
        tr.assert_violates(Guarantee::G1ViewAgreement);
    }
}
