//! G2 one history (DESIGN §3 G2; TESTING GM2 "Local Monotonicity", GM4 "Primary-Component
//! Uniqueness", GM5 "Same view sequence for survivors"; CKV01; RB93).
//!
//! Checkable form:
//! - per process, a view install that follows another one carries exactly the previous id plus
//!   one: ids strictly increase (GM2) and a survivor never skips a view (GM5). A process's
//!   first install may carry any id: it is a joiner entering mid-history.
//! - for view ids v and v+1 that both appear in installs (in any order),
//!   |members(v+1) ∩ members(v)| > |members(v)| / 2, processes compared as node + incarnation
//!   (GM4: each view holds a majority of its predecessor), where a member of v+1 listed in its
//!   `recovered` list (a restarted process that spoke for its node's earlier life in the view
//!   change, with that life's data directory) counts as the member of v of its node with a
//!   lower incarnation (DESIGN §2 whole-group crash: a restart is that life's continuation on
//!   disk, so the view change still had a majority of v's acceptors).
//!
//! With G1 (one member list per id) this leaves one line of views: a minority that went on
//! alone would have to reuse an id (G1), skip one (here) or lose the majority (here).

use crate::checker::Views;
use crate::trace::Proc;
use crate::violation::{procs, Guarantee, Violation};

/// `prev` is `p`'s current view before this install. Call before `view` is recorded.
pub(crate) fn on_install(
    views: &Views,
    t: u64,
    p: Proc,
    prev: Option<u64>,
    view: u64,
    members: &[Proc],
    recovered: &[Proc],
) -> Result<(), Violation> {
    let fail = |detail: String| Err(Violation::new(Guarantee::G2OneHistory, t, detail));
    if let Some(prev) = prev {
        if view <= prev {
            return fail(format!("{p} installed view {view} after view {prev}"));
        }
        if view != prev + 1 {
            return fail(format!("{p} went from view {prev} to view {view}, skipping {}", prev + 1));
        }
    }
    if views.contains_key(&view) {
        // Its neighbours were checked against it when it first appeared.
        return Ok(());
    }
    if let Some(before) = view.checked_sub(1).and_then(|v| views.get(&v)) {
        if !holds_majority(&before.members, members, recovered) {
            return fail(lost_majority(view - 1, &before.members, members, recovered));
        }
    }
    if let Some(after) = view.checked_add(1).and_then(|v| views.get(&v)) {
        if !holds_majority(members, &after.members, &after.recovered) {
            return fail(lost_majority(view, members, &after.members, &after.recovered));
        }
    }
    Ok(())
}

/// How many members of `prev` go on in `next`: present, or replaced by a recovered restart of
/// their node.
fn kept(prev: &[Proc], next: &[Proc], recovered: &[Proc]) -> usize {
    prev.iter()
        .filter(|m| next.contains(m) || recovered.iter().any(|r| r.node == m.node && r.inc > m.inc))
        .count()
}

/// Whether `next` keeps a strict majority of `prev`. Views are small, so a scan is cheapest.
fn holds_majority(prev: &[Proc], next: &[Proc], recovered: &[Proc]) -> bool {
    2 * kept(prev, next, recovered) > prev.len()
}

fn lost_majority(v: u64, prev: &[Proc], next: &[Proc], recovered: &[Proc]) -> String {
    let kept = kept(prev, next, recovered);
    format!(
        "view {} {} keeps only {kept} of the {} members of view {v} {}",
        v + 1,
        procs(next),
        prev.len(),
        procs(prev)
    )
}

#[cfg(test)]
mod tests {
    use crate::testkit::{p, Trace};
    use crate::Guarantee;

    #[test]
    fn consecutive_views_with_majorities_and_a_joiner_pass() {
        let (a, b, c, d) = (p(1), p(2), p(3), p(4));
        let mut tr = Trace::group(&[a, b, c], 1);
        tr.crash(c).install_all(2, &[a, b]);
        // d joins at view 3: its first install may have any id.
        tr.start(d).install_all(3, &[a, b, d]);
        tr.assert_ok();
    }

    #[test]
    fn going_backwards_is_caught() {
        let mut tr = Trace::group(&[p(1)], 5);
        tr.install(p(1), 4, &[p(1)]);
        tr.assert_violates(Guarantee::G2OneHistory);
    }

    #[test]
    fn reinstalling_the_same_view_is_caught() {
        let mut tr = Trace::group(&[p(1)], 5);
        tr.install(p(1), 5, &[p(1)]);
        tr.assert_violates(Guarantee::G2OneHistory);
    }

    #[test]
    fn a_survivor_skipping_a_view_is_caught() {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a, b], 1);
        tr.install(a, 2, &[a, b]).install(b, 3, &[a, b]);
        let v = tr.assert_violates(Guarantee::G2OneHistory);
        assert!(v.detail.contains("skipping 2"), "{v}");
    }

    #[test]
    fn a_view_without_a_majority_of_its_predecessor_is_caught() {
        let (a, b, c, d) = (p(1), p(2), p(3), p(4));
        let mut tr = Trace::group(&[a, b, c, d], 1);
        // Two of four is not a majority.
        tr.install(a, 2, &[a, b]);
        let v = tr.assert_violates(Guarantee::G2OneHistory);
        assert!(v.detail.contains("keeps only 2 of the 4"), "{v}");
    }

    #[test]
    fn recovered_restarts_count_for_their_nodes() {
        let (a, b, c) = (p(1), p(2), p(3));
        let b2 = crate::trace::Proc { node: 2, inc: 9 };
        let mut tr = Trace::group(&[a, b, c], 1);
        tr.crash(c).install_all(2, &[a, b]);
        // b crashes too; its restart b2 speaks for it: {a, b2} keeps 2 of {a, b}.
        tr.crash(b).start(b2).install_recovered(&[a, b2], 3, &[a, b2], &[b2]);
        tr.assert_ok();
        // Without the recovered list, {a, b2} keeps only 1 of 2.
        let mut tr = Trace::group(&[a, b, c], 1);
        tr.crash(c).install_all(2, &[a, b]);
        tr.crash(b).start(b2).install(a, 3, &[a, b2]);
        tr.assert_violates(Guarantee::G2OneHistory);
    }

    #[test]
    fn majority_is_checked_whichever_view_appears_first() {
        // A joiner may install v+1 before anyone's install of v reaches the trace.
        let (a, b, c, d) = (p(1), p(2), p(3), p(4));
        let mut tr = Trace::new();
        tr.start(d).install(d, 2, &[c, d]);
        tr.start(a).start(b).start(c).install(a, 1, &[a, b, c]);
        tr.assert_violates(Guarantee::G2OneHistory);
    }
}
