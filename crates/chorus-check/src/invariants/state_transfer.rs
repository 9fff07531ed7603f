//! G11 state transfer (DESIGN §3 G11; TESTING ST1 "Transfer correctness"; JGroups
//! `STATE_TRANSFER`: state S plus digest D; Derecho: joins at view boundaries).
//!
//! Checkable form: for every view v, all `digest` lines for v (the state of each process that
//! holds the group's state, at the boundary of v) and all `state_loaded` lines for v (the state
//! each joiner loaded for v) carry the same (`applied`, `hash`). That is ST1: a joiner's state
//! at the start of its view equals every survivor's state after delivering all of the previous
//! view — and the survivors agree among themselves.
//!
//! The `digest` line must stand where it claims to: a process writes it in its current view,
//! at most once per view, before it delivers anything there (the writers put it right after
//! the `install` line). Otherwise it is not a boundary state and cannot be compared.
//!
//! How: the first report of each view is its reference; every later one is compared with it
//! (equality is transitive). One entry per view; constant time per report. A process that
//! never reports (state transfer off, or a trace from before it existed) is not judged; one
//! that did report its state (a `digest` or a `state_loaded` line) must go on doing so: in
//! every later view that does not list it in `loading`, its `digest` comes before its first
//! `deliver` there (else its state at that boundary escapes the comparison).

use crate::checker::AppState;
use crate::hash::FastMap;
use crate::trace::Proc;
use crate::violation::{Guarantee, Violation};

/// What a state report is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Report {
    /// A `digest` line: the state a process holds at the start of the view.
    Digest,
    /// A `state_loaded` line: the state transferred to a joiner for the view.
    Loaded,
}

impl Report {
    fn verb(self) -> &'static str {
        match self {
            Report::Digest => "reported digest",
            Report::Loaded => "loaded state",
        }
    }
}

/// Per view, the first state reported for it.
#[derive(Debug, Default)]
pub(crate) struct StateTransfer {
    reference: FastMap<u64, (Proc, Report, AppState)>,
}

impl StateTransfer {
    /// `p` reports `state` for the boundary of `view`, as `kind`.
    pub(crate) fn on_report(
        &mut self,
        t: u64,
        p: Proc,
        view: u64,
        kind: Report,
        state: AppState,
    ) -> Result<(), Violation> {
        let &mut (q, their_kind, theirs) = self.reference.entry(view).or_insert((p, kind, state));
        if theirs == state {
            return Ok(());
        }
        Err(Violation::new(
            Guarantee::G11StateTransfer,
            t,
            format!(
                "at the start of view {view} {p} {} ({state}) but {q} {} ({theirs})",
                kind.verb(),
                their_kind.verb()
            ),
        ))
    }
}

/// `p`, in view `current`, writes a `digest` line for `view`; `reported` says whether it wrote
/// one in `current` before, `delivered_any` whether it delivered anything in `current`.
pub(crate) fn on_digest_line(
    t: u64,
    p: Proc,
    current: Option<u64>,
    view: u64,
    reported: bool,
    delivered_any: bool,
) -> Result<(), Violation> {
    let why = match current {
        None => "before installing any view".to_owned(),
        Some(c) if c != view => format!("while its current view is {c}"),
        Some(_) if reported => "twice".to_owned(),
        Some(_) if delivered_any => "after delivering messages of that view".to_owned(),
        Some(_) => return Ok(()),
    };
    Err(Violation::new(
        Guarantee::G11StateTransfer,
        t,
        format!("{p} reported a digest for view {view} {why}: a digest is the state at the start of a view"),
    ))
}

/// `p` delivers in `view`, holding the state `replica` (from its reports, if any), listed in
/// `loading` there if `listed`, with its digest for `view` written if `reported`.
pub(crate) fn on_deliver(
    t: u64,
    p: Proc,
    view: u64,
    replica: Option<&crate::invariants::replica_determinism::Replica>,
    listed: bool,
    reported: bool,
) -> Result<(), Violation> {
    use crate::invariants::replica_determinism::Origin;
    let reports_state = replica.is_some_and(|r| matches!(r.origin, Origin::Digest(_) | Origin::Loaded(_)));
    if !reports_state || listed || reported {
        return Ok(());
    }
    Err(Violation::new(
        Guarantee::G11StateTransfer,
        t,
        format!(
            "{p} delivered in view {view} without a digest for it: it holds the state (it reported \
             it before), so its state at the start of view {view} must be reported"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use crate::testkit::{p, state_after, Trace};
    use crate::trace::Order;
    use crate::Guarantee;

    #[test]
    fn a_member_that_reports_its_state_must_report_it_in_every_view() {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a, b], 1);
        tr.digest(a, 1, (0, 0)).digest(b, 1, (0, 0));
        // View 2: b reports, a delivers without reporting.
        tr.install_all(2, &[a, b]).digest(b, 2, (0, 0));
        tr.send(b, 2, 1).deliver(b, b, 2, 1).deliver(a, b, 2, 1);
        let v = tr.assert_violates(Guarantee::G11StateTransfer);
        assert!(v.detail.contains("n1.0 delivered in view 2 without a digest for it"), "{v}");
    }

    /// a and b apply two total messages in view 1 and report at the start of view 2, where c
    /// joins.
    fn transfer(a_reports: (u64, u64), c_loads: (u64, u64)) -> Trace {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b], 1);
        tr.multicast_as(a, 1, 1, Order::Total, &[a, b]).multicast_as(b, 1, 1, Order::Safe, &[b, a]);
        tr.start(c).install_loading_all(2, &[a, b, c], &[c]);
        tr.digest(a, 2, a_reports).digest(b, 2, state_after(&[(a, 1, 1), (b, 1, 1)]));
        tr.state_loaded(c, 2, c_loads);
        tr
    }

    #[test]
    fn a_joiner_loading_the_survivors_state_passes() {
        let s = state_after(&[(p(1), 1, 1), (p(2), 1, 1)]);
        transfer(s, s).assert_ok();
    }

    #[test]
    fn a_joiner_loading_another_state_is_caught() {
        let (a, b) = (p(1), p(2));
        let s = state_after(&[(a, 1, 1), (b, 1, 1)]);
        let stale = state_after(&[(a, 1, 1)]);
        let v = transfer(s, stale).assert_violates(Guarantee::G11StateTransfer);
        assert!(
            v.detail.contains(&format!(
                "at the start of view 2 n3.0 loaded state (applied 1, hash {:#x}) but n1.0 reported \
                 digest (applied 2, hash {:#x})",
                stale.1, s.1
            )),
            "{v}"
        );
    }

    #[test]
    fn survivors_disagreeing_with_each_other_are_caught() {
        // Two states with the same count but different hashes: the second report differs from
        // the first, whoever is right.
        let (a, b) = (p(1), p(2));
        let wrong = state_after(&[(b, 1, 1), (a, 1, 1)]);
        let mut tr = Trace::group(&[a, b], 1);
        tr.multicast_as(a, 1, 1, Order::Total, &[a, b]).multicast_as(b, 1, 1, Order::Total, &[a, b]);
        tr.install_all(2, &[a, b]).digest(a, 2, state_after(&[(a, 1, 1), (b, 1, 1)]));
        // b never reported before, so it has no replay of its own to disagree with: the
        // comparison with a is what catches it.
        tr.digest(b, 2, wrong);
        let v = tr.assert_violates(Guarantee::G11StateTransfer);
        assert!(v.detail.contains("at the start of view 2 n2.0 reported digest (applied 2"), "{v}");
        assert!(v.detail.contains("but n1.0 reported digest (applied 2"), "{v}");
    }

    #[test]
    fn misplaced_digests_are_caught() {
        let (a, b) = (p(1), p(2));
        let mut twice = Trace::group(&[a, b], 1);
        twice.digest(a, 1, (0, 0)).digest(a, 1, (0, 0));
        let v = twice.assert_violates(Guarantee::G11StateTransfer);
        assert!(v.detail.contains("n1.0 reported a digest for view 1 twice"), "{v}");

        let mut late = Trace::group(&[a, b], 1);
        late.multicast(a, 1, 1, &[a, b]).digest(b, 1, (0, 0));
        let v = late.assert_violates(Guarantee::G11StateTransfer);
        assert!(v.detail.contains("after delivering messages of that view"), "{v}");

        let mut other_view = Trace::group(&[a, b], 1);
        other_view.digest(a, 2, (0, 0));
        let v = other_view.assert_violates(Guarantee::G11StateTransfer);
        assert!(v.detail.contains("n1.0 reported a digest for view 2 while its current view is 1"), "{v}");

        let mut no_view = Trace::new();
        no_view.start(a).digest(a, 1, (0, 0));
        let v = no_view.assert_violates(Guarantee::G11StateTransfer);
        assert!(v.detail.contains("before installing any view"), "{v}");
    }

    #[test]
    fn a_digest_after_sending_but_before_delivering_passes() {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a, b], 1);
        tr.send_as(a, 1, 1, Order::Total).digest(a, 1, (0, 0)).digest(b, 1, (0, 0));
        tr.deliver_all(&[a, b], a, 1, 1);
        tr.assert_ok();
    }

    #[test]
    fn processes_that_never_report_are_not_judged() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b], 1);
        tr.multicast_as(a, 1, 1, Order::Total, &[a, b]);
        // Only c reports: nothing to compare it with.
        tr.start(c).install_loading_all(2, &[a, b, c], &[c]).state_loaded(c, 2, (7, 7));
        tr.assert_ok();
    }
}
