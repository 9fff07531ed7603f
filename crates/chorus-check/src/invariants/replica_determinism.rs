//! ST3 replica determinism (TESTING ST3; DESIGN G13 "all replicas that applied the same prefix
//! have equal state"; Schneider 1990; TigerBeetle's byte-identical replicas; FDB consistency
//! checks).
//!
//! The replicated state machine applies every `total` and `safe` delivery, in delivery order,
//! and no `fifo` or `causal` one. Its state is (`applied`, `hash`): how many it applied since
//! the group began, and [`crate::trace::chain`] folded over their payload digests from hash 0.
//!
//! Checkable form:
//! - (a) replay: a process holds state from its last report — a `digest` line, a
//!   `state_loaded` line, or, for a process that bootstrapped the group, the initial state
//!   (`applied` 0, `hash` 0) at its first install. From there each of its `total` or `safe`
//!   `deliver` lines advances `applied` by one and sets `hash` to `chain(hash, digest)`, across
//!   installs too. Its next `digest` line must equal the replayed state. An install that lists
//!   it in `loading` drops its state (it will load a new one).
//! - (b) equal `applied` means equal `hash`: any two `digest` or `state_loaded` lines in the
//!   whole trace, whatever their processes and views, that carry the same `applied` carry the
//!   same `hash` (one history of applied messages).
//! - (c) except a lost suffix: a view formed from disks (its install names `recovered`
//!   members) starts from the state its members recovered, `applied` r; a suffix beyond r
//!   reported in earlier views was held only by processes that crashed before storing it, and
//!   the group goes on without it (DESIGN G14 allows that for what was never acknowledged
//!   durable; G14's own check makes sure r holds everything that was). Reports above r from
//!   views before it are forgotten; r itself must still match, so the kept prefix is intact,
//!   and G11 makes every report of the view agree with r.
//!
//! A process that never reports is not replayed against anything; a trace without `digest` and
//! `state_loaded` lines passes trivially.
//!
//! How: (a) keeps one state per process, updated by one 8-byte FNV step per total or safe
//! delivery. (b) keeps, per distinct `applied` value reported, the first (hash, process, view):
//! one entry per boundary value, at most one per report, never one per message, ordered so
//! that (c) cuts a suffix in one range.

use std::fmt;

use crate::checker::AppState;
use std::collections::BTreeMap;

use crate::trace::Proc;
use crate::violation::{Guarantee, Violation};

/// A process's replicated state, replayed from its last report.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Replica {
    /// The state now.
    pub(crate) state: AppState,
    /// Where the replay started.
    pub(crate) origin: Origin,
    /// The state it started from.
    pub(crate) start: AppState,
}

impl Replica {
    pub(crate) fn new(state: AppState, origin: Origin) -> Self {
        Replica { state, origin, start: state }
    }
}

/// Where a replay started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The initial state, at the first install (view id) of a process that bootstrapped.
    Initial(u64),
    /// A `digest` line for that view.
    Digest(u64),
    /// A `state_loaded` line for that view.
    Loaded(u64),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Initial(v) => write!(f, "the initial state it founded view {v} with"),
            Origin::Digest(v) => write!(f, "its digest at the start of view {v}"),
            Origin::Loaded(v) => write!(f, "the state it loaded for view {v}"),
        }
    }
}

/// A process installs `view` (its first install if `first`), listed in `loading` if `listed`;
/// `replica` is its state before. Returns its state after.
pub(crate) fn on_install(
    replica: Option<Replica>,
    view: u64,
    first: bool,
    bootstrap: bool,
    listed: bool,
) -> Option<Replica> {
    if listed {
        None
    } else if first && bootstrap {
        Some(Replica::new(AppState::INITIAL, Origin::Initial(view)))
    } else {
        replica
    }
}

/// `p` reports `reported` at the start of `view`; `replica` is its replayed state, if it holds
/// one.
pub(crate) fn on_digest(
    t: u64,
    p: Proc,
    view: u64,
    replica: Option<&Replica>,
    reported: AppState,
) -> Result<(), Violation> {
    let Some(r) = replica else { return Ok(()) };
    if r.state == reported {
        return Ok(());
    }
    Err(Violation::new(
        Guarantee::ST3ReplicaDeterminism,
        t,
        format!(
            "{p} reported digest ({reported}) at the start of view {view}, but replaying its total \
             and safe deliveries from {} ({}) gives ({})",
            r.origin, r.start, r.state
        ),
    ))
}

/// Per `applied` value reported anywhere, the first hash reported with it, by whom and for
/// which view.
#[derive(Debug, Default)]
pub(crate) struct ReplicaDeterminism {
    by_applied: BTreeMap<u64, (u64, Proc, u64)>,
}

impl ReplicaDeterminism {
    /// `p` reports `state` (a `digest` or `state_loaded` line) for the start of `view`;
    /// `from_disks` if the view was formed from disks (its install names `recovered` members).
    pub(crate) fn on_report(
        &mut self,
        t: u64,
        p: Proc,
        view: u64,
        state: AppState,
        from_disks: bool,
    ) -> Result<(), Violation> {
        if from_disks {
            // (c): what earlier views reported beyond the recovered state was lost with the
            // processes that held it.
            let lost: Vec<u64> = self
                .by_applied
                .range(state.applied.saturating_add(1)..)
                .filter(|(_, &(_, _, w))| w < view)
                .map(|(&a, _)| a)
                .collect();
            for a in lost {
                self.by_applied.remove(&a);
            }
        }
        let &mut (hash, q, w) = self.by_applied.entry(state.applied).or_insert((state.hash, p, view));
        if hash == state.hash {
            return Ok(());
        }
        Err(Violation::new(
            Guarantee::ST3ReplicaDeterminism,
            t,
            format!(
                "{p} reported applied {} with hash {:#x} at the start of view {view}, but {q} \
                 reported applied {} with hash {hash:#x} at the start of view {w}",
                state.applied, state.hash, state.applied
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::testkit::{p, pi, state_after, state_from, Trace};
    use crate::trace::Order;
    use crate::Guarantee;

    /// a founds the group, b joins in view 2 and loads; both apply total and safe messages.
    fn replicated() -> Trace {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::new();
        tr.bootstrap(a).install(a, 1, &[a]).digest(a, 1, (0, 0));
        tr.multicast_as(a, 1, 1, Order::Total, &[a]).multicast(a, 1, 2, &[a]);
        tr.start(b).install_loading_all(2, &[a, b], &[b]);
        let s2 = state_after(&[(a, 1, 1)]);
        tr.digest(a, 2, s2).state_loaded(b, 2, s2);
        tr.multicast_as(b, 2, 1, Order::Safe, &[a, b]).multicast_as(a, 2, 1, Order::Causal, &[a, b]);
        tr.multicast_as(a, 2, 2, Order::Total, &[b, a]);
        tr
    }

    #[test]
    fn replicas_reporting_their_replayed_state_pass() {
        let (a, b) = (p(1), p(2));
        let mut tr = replicated();
        let s3 = state_after(&[(a, 1, 1), (b, 2, 1), (a, 2, 2)]);
        tr.install_all(3, &[a, b]).digest(b, 3, s3).digest(a, 3, s3);
        tr.assert_ok();
    }

    #[test]
    fn a_digest_that_its_deliveries_do_not_explain_is_caught() {
        let (a, b) = (p(1), p(2));
        let mut tr = replicated();
        // b also counts the causal message: not what its deliveries replay to.
        let wrong = state_after(&[(a, 1, 1), (b, 2, 1), (a, 2, 1), (a, 2, 2)]);
        tr.install_all(3, &[a, b]).digest(b, 3, wrong);
        let v = tr.assert_violates(Guarantee::ST3ReplicaDeterminism);
        let right = state_after(&[(a, 1, 1), (b, 2, 1), (a, 2, 2)]);
        assert!(
            v.detail.contains(&format!(
                "n2.0 reported digest (applied 4, hash {:#x}) at the start of view 3, but replaying \
                 its total and safe deliveries from the state it loaded for view 2 (applied 1, hash \
                 {:#x}) gives (applied 3, hash {:#x})",
                wrong.1,
                state_after(&[(a, 1, 1)]).1,
                right.1
            )),
            "{v}"
        );
    }

    #[test]
    fn the_replay_runs_from_the_last_report() {
        // (A member that reports its state reports it in every view: G11 checks that; see
        // `state_transfer::tests::a_member_that_reports_its_state_must_report_it_in_every_view`.)
        let (a, b) = (p(1), p(2));
        let s3 = state_after(&[(a, 1, 1), (b, 2, 1), (a, 2, 2)]);
        let mut tr = replicated();
        tr.install_all(3, &[a, b]).digest(a, 3, s3).digest(b, 3, s3);
        tr.multicast_as(a, 3, 1, Order::Total, &[a, b]);
        tr.install_all(4, &[a, b]);
        let s4 = state_after(&[(a, 1, 1), (b, 2, 1), (a, 2, 2), (a, 3, 1)]);
        tr.digest(a, 4, s4).digest(b, 4, s4);
        tr.assert_ok();

        let mut short = replicated();
        short.install_all(3, &[a, b]).digest(a, 3, s3).digest(b, 3, s3);
        short.multicast_as(a, 3, 1, Order::Total, &[a, b]);
        short.install_all(4, &[a, b]).digest(a, 4, s3);
        let v = short.assert_violates(Guarantee::ST3ReplicaDeterminism);
        assert!(v.detail.contains("from its digest at the start of view 3"), "{v}");
    }

    #[test]
    fn a_founder_starts_from_the_initial_state() {
        let a = p(1);
        let mut tr = Trace::new();
        tr.bootstrap(a).install(a, 1, &[a]).digest(a, 1, (1, 0));
        let v = tr.assert_violates(Guarantee::ST3ReplicaDeterminism);
        assert!(
            v.detail.contains("from the initial state it founded view 1 with (applied 0, hash 0x0)"),
            "{v}"
        );
    }

    #[test]
    fn equal_applied_with_different_hashes_across_views_is_caught() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b], 1);
        tr.multicast_as(a, 1, 1, Order::Total, &[a, b]);
        let s2 = state_after(&[(a, 1, 1)]);
        tr.install_all(2, &[a, b]).digest(a, 2, s2).digest(b, 2, s2);
        // Nothing is applied in view 2; c joins in view 3 and loads a state with the same count
        // but another history, and nobody else reports at view 3.
        tr.start(c).install_loading_all(3, &[a, b, c], &[c]);
        let other = state_after(&[(b, 1, 1)]);
        tr.state_loaded(c, 3, other);
        let v = tr.assert_violates(Guarantee::ST3ReplicaDeterminism);
        assert!(
            v.detail.contains(&format!(
                "n3.0 reported applied 1 with hash {:#x} at the start of view 3, but n1.0 reported \
                 applied 1 with hash {:#x} at the start of view 2",
                other.1, s2.1
            )),
            "{v}"
        );
    }

    #[test]
    fn a_reloading_member_drops_its_state() {
        let (a, b) = (p(1), p(2));
        let mut tr = replicated();
        // b is listed in loading again (say, the coordinator missed its load): its old replay
        // ends, and it replays from the state it loads.
        let s3 = state_after(&[(a, 1, 1), (b, 2, 1), (a, 2, 2)]);
        tr.install_loading_all(3, &[a, b], &[b]).digest(a, 3, s3).state_loaded(b, 3, s3);
        tr.multicast_as(a, 3, 1, Order::Total, &[a, b]).install_all(4, &[a, b]);
        tr.digest(b, 4, state_from(s3, &[(a, 3, 1)]));
        tr.assert_ok();
    }

    /// a and b apply one message in view 1 and one in view 2; both crash, and their restarts
    /// recover from disk the state at `recovered` and report it for view 4 (formed from
    /// disks), then go on with another second message.
    fn rewound(recovered: (u64, u64)) -> Trace {
        let (a, b) = (p(1), p(2));
        let (a2, b2) = (pi(1, 1), pi(2, 1));
        let mut tr = Trace::group(&[a, b], 1);
        tr.digest(a, 1, (0, 0)).digest(b, 1, (0, 0));
        tr.multicast_as(a, 1, 1, Order::Safe, &[a, b]);
        let s1 = state_after(&[(a, 1, 1)]);
        tr.install_all(2, &[a, b]).digest(a, 2, s1).digest(b, 2, s1);
        tr.multicast_as(a, 2, 1, Order::Safe, &[a, b]);
        let s2 = state_from(s1, &[(a, 2, 1)]);
        tr.install_all(3, &[a, b]).digest(a, 3, s2).digest(b, 3, s2);
        tr.crash(a).crash(b).start(a2).start(b2);
        tr.install_recovered(&[a2, b2], 4, &[a2, b2], &[a2, b2]);
        tr.digest(a2, 4, recovered).digest(b2, 4, recovered);
        tr
    }

    #[test]
    fn a_suffix_lost_with_the_whole_group_may_be_written_again() {
        let (a, b2) = (p(1), pi(2, 1));
        let mut tr = rewound(state_after(&[(a, 1, 1)]));
        tr.multicast_as(b2, 4, 1, Order::Safe, &[pi(1, 1), b2]);
        let other = state_from(state_after(&[(a, 1, 1)]), &[(b2, 4, 1)]);
        tr.install_all(5, &[pi(1, 1), b2]).digest(pi(1, 1), 5, other).digest(b2, 5, other);
        tr.assert_ok();
        // The new suffix is the one history from then on: a joiner may not load the lost one.
        let c = p(3);
        tr.start(c).install_loading_all(6, &[pi(1, 1), b2, c], &[c]);
        tr.state_loaded(c, 6, state_from(state_after(&[(a, 1, 1)]), &[(a, 2, 1)]));
        let v = tr.assert_violates(Guarantee::ST3ReplicaDeterminism);
        assert!(v.detail.contains("reported applied 2 with hash"), "{v}");
    }

    #[test]
    fn a_recovery_must_keep_the_prefix_it_claims() {
        // Position 1 recovered with another history than the one applied.
        let v = rewound(state_after(&[(p(2), 1, 1)])).assert_violates(Guarantee::ST3ReplicaDeterminism);
        assert!(v.detail.contains("reported applied 1 with hash"), "{v}");
    }
}
