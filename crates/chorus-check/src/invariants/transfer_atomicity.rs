//! ST2 transfer atomicity (TESTING ST2; DESIGN §1 "re-join ... and receive state transfer";
//! JGroups `STATE_TRANSFER`: digest, then state; VS.txt #4; Derecho: joins at view boundaries).
//!
//! Checkable form, for a process p and a view v whose `install` lists p in `loading`:
//! - p sends nothing in v before its `state_loaded` line for v (the core takes no multicast
//!   from a member without the state: what it sends would be built on nothing).
//! - p delivers nothing in v before its `state_loaded` line for v. If p never loads in v (its
//!   next line of that life is an `install` of v+1, or its life or the run ends), it delivers
//!   nothing in v at all.
//! - a `state_loaded` line of p names p's current view v, v lists p in `loading`, and p has not
//!   loaded in v before. Any other `state_loaded` is a violation.
//! - p writes no `digest` for v: a process listed in `loading` holds no state of its own at the
//!   boundary of v, so it has none to report.
//! - if p never loaded in v and installs v+1, then v+1 lists p in `loading` again: its cut-off
//!   transfer restarts there (it has no state to go on with).
//!
//! ST2's "then delivers exactly v's messages onward (none missing, none of the previous view
//! re-applied)" needs no rule of its own: G5 rules out deliveries of older views, G7 makes p's
//! deliveries from each sender start at #1 of v, and G4 compares p's set in v, once it has
//! loaded, with every other process that goes on to v+1.
//!
//! How: one [`Transfer`] per process, updated at its `install`, `state_loaded` and checked at
//! its `deliver` and `digest` lines. Constant time and memory per event.

use crate::trace::Proc;
use crate::violation::{Guarantee, MsgId, Violation};

/// Where a process stands with state transfer in its current view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Transfer {
    /// Its current view does not list it in `loading` (or it has installed none yet): it
    /// holds the group's state, or the trace does not record state.
    #[default]
    Unlisted,
    /// Its current view, this one, lists it in `loading`, and it has not loaded yet.
    Waiting(u64),
    /// Its current view, this one, lists it in `loading`, and it loaded.
    Loaded(u64),
}

impl Transfer {
    /// The view it waits for its state in, if it does.
    pub(crate) fn waiting(self) -> Option<u64> {
        match self {
            Transfer::Waiting(v) => Some(v),
            Transfer::Unlisted | Transfer::Loaded(_) => None,
        }
    }
}

/// `p`, whose transfer state in its previous view (if any) is `before`, installs `view`, whose
/// `loading` list names `p` if `listed`. Returns its transfer state in `view`.
pub(crate) fn on_install(
    t: u64,
    p: Proc,
    before: Transfer,
    view: u64,
    listed: bool,
) -> Result<Transfer, Violation> {
    if listed {
        return Ok(Transfer::Waiting(view));
    }
    if let Some(from) = before.waiting() {
        return fail(
            t,
            format!(
                "{p} installed view {view} while still waiting for its state transfer of view {from}, \
                 but view {view} does not list it in `loading`"
            ),
        );
    }
    Ok(Transfer::Unlisted)
}

/// `p`, whose transfer state is `transfer`, delivers `id` (G5 has checked that `id.view` is its
/// current view).
pub(crate) fn on_deliver(t: u64, p: Proc, transfer: Transfer, id: MsgId) -> Result<(), Violation> {
    match transfer.waiting() {
        Some(view) => fail(
            t,
            format!(
                "{p} delivered {id} in view {view} before loading its state: view {view} lists it \
                 in `loading` and it has no `state_loaded` there yet"
            ),
        ),
        None => Ok(()),
    }
}

/// `p`, whose transfer state is `transfer`, sends `id` (G5 has checked that `id.view` is its
/// current view).
pub(crate) fn on_send(t: u64, p: Proc, transfer: Transfer, id: MsgId) -> Result<(), Violation> {
    match transfer.waiting() {
        Some(view) => fail(
            t,
            format!(
                "{p} sent {id} in view {view} before loading its state: view {view} lists it in \
                 `loading` and it has no `state_loaded` there yet"
            ),
        ),
        None => Ok(()),
    }
}

/// `p`, whose transfer state is `transfer`, reports a digest for `view` (its current view: the
/// G11 line checks come first).
pub(crate) fn on_digest(t: u64, p: Proc, transfer: Transfer, view: u64) -> Result<(), Violation> {
    match transfer {
        Transfer::Waiting(v) | Transfer::Loaded(v) if v == view => fail(
            t,
            format!(
                "{p} reported a digest for view {view}, which lists it in `loading`: it holds no \
                 state of its own at that boundary"
            ),
        ),
        _ => Ok(()),
    }
}

/// `p`, in view `current` with transfer state `transfer`, writes `state_loaded` for `view`.
/// Returns its transfer state afterwards.
pub(crate) fn on_state_loaded(
    t: u64,
    p: Proc,
    current: Option<u64>,
    transfer: Transfer,
    view: u64,
) -> Result<Transfer, Violation> {
    let why = match (current, transfer) {
        (None, _) => "before installing any view".to_owned(),
        (Some(c), _) if c != view => format!("while its current view is {c}"),
        (Some(_), Transfer::Waiting(v)) if v == view => return Ok(Transfer::Loaded(view)),
        (Some(_), Transfer::Loaded(_)) => "twice".to_owned(),
        (Some(_), _) => format!("but view {view} does not list it in `loading`"),
    };
    fail(t, format!("{p} loaded state for view {view} {why}"))
}

fn fail<T>(t: u64, detail: String) -> Result<T, Violation> {
    Err(Violation::new(Guarantee::ST2TransferAtomicity, t, detail))
}

#[cfg(test)]
mod tests {
    use crate::testkit::{p, state_after, Trace};
    use crate::trace::Order;
    use crate::Guarantee;

    /// a and b in view 1 apply one total message; c joins in view 2 and waits for the state.
    fn joining() -> Trace {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b], 1);
        tr.multicast_as(a, 1, 1, Order::Total, &[a, b]);
        tr.start(c).install_loading_all(2, &[a, b, c], &[c]);
        tr
    }

    #[test]
    fn delivering_only_after_loading_passes() {
        let (a, b, c) = (p(1), p(2), p(3));
        let s = state_after(&[(a, 1, 1)]);
        let mut tr = joining();
        tr.digest(a, 2, s).digest(b, 2, s);
        // a and b deliver b's message before c has its state; c delivers it after loading.
        tr.send_as(b, 2, 1, Order::Total).deliver_all(&[a, b], b, 2, 1);
        tr.state_loaded(c, 2, s).deliver(c, b, 2, 1);
        tr.install_all(3, &[a, b, c]).digest(c, 3, state_after(&[(a, 1, 1), (b, 2, 1)]));
        tr.assert_ok();
    }

    #[test]
    fn delivering_before_loading_is_caught() {
        let (b, c) = (p(2), p(3));
        let mut tr = joining();
        tr.send(b, 2, 1).deliver(c, b, 2, 1);
        let v = tr.assert_violates(Guarantee::ST2TransferAtomicity);
        assert!(v.detail.contains("n3.0 delivered (n2.0, v2, #1) in view 2 before loading its state"), "{v}");
    }

    #[test]
    fn sending_before_loading_is_caught() {
        let c = p(3);
        let mut tr = joining();
        tr.send(c, 2, 1);
        let v = tr.assert_violates(Guarantee::ST2TransferAtomicity);
        assert!(v.detail.contains("n3.0 sent (n3.0, v2, #1) in view 2 before loading its state"), "{v}");
    }

    #[test]
    fn a_cut_off_transfer_restarts_in_the_next_view() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = joining();
        // c never loads in view 2 and delivers nothing there; the others move on.
        tr.multicast(a, 2, 1, &[a, b]);
        tr.install_loading_all(3, &[a, b, c], &[c]);
        tr.state_loaded(c, 3, state_after(&[(a, 1, 1)]));
        tr.assert_ok();
    }

    #[test]
    fn a_cut_off_transfer_that_does_not_restart_is_caught() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = joining();
        tr.install_all(3, &[a, b, c]);
        let v = tr.assert_violates(Guarantee::ST2TransferAtomicity);
        assert!(
            v.detail.contains(
                "n3.0 installed view 3 while still waiting for its state transfer of view 2, but view 3 \
                 does not list it in `loading`"
            ),
            "{v}"
        );
    }

    #[test]
    fn loading_outside_a_loading_view_is_caught() {
        let (a, c) = (p(1), p(3));
        let s = state_after(&[(a, 1, 1)]);

        let mut unlisted = joining();
        unlisted.state_loaded(a, 2, s);
        let v = unlisted.assert_violates(Guarantee::ST2TransferAtomicity);
        assert!(v.detail.contains("n1.0 loaded state for view 2 but view 2 does not list it"), "{v}");

        let mut twice = joining();
        twice.state_loaded(c, 2, s).state_loaded(c, 2, s);
        let v = twice.assert_violates(Guarantee::ST2TransferAtomicity);
        assert!(v.detail.contains("n3.0 loaded state for view 2 twice"), "{v}");

        let mut other_view = joining();
        other_view.state_loaded(c, 1, s);
        let v = other_view.assert_violates(Guarantee::ST2TransferAtomicity);
        assert!(v.detail.contains("n3.0 loaded state for view 1 while its current view is 2"), "{v}");

        let mut no_view = Trace::new();
        no_view.start(c).state_loaded(c, 1, (0, 0));
        let v = no_view.assert_violates(Guarantee::ST2TransferAtomicity);
        assert!(v.detail.contains("before installing any view"), "{v}");
    }

    #[test]
    fn a_loading_process_reporting_a_digest_is_caught() {
        let (a, c) = (p(1), p(3));
        let mut tr = joining();
        tr.digest(c, 2, state_after(&[(a, 1, 1)]));
        let v = tr.assert_violates(Guarantee::ST2TransferAtomicity);
        assert!(v.detail.contains("n3.0 reported a digest for view 2, which lists it in `loading`"), "{v}");
    }

    #[test]
    fn a_loader_that_crashes_before_loading_passes() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = joining();
        tr.multicast(a, 2, 1, &[a, b]).crash(c).install_all(3, &[a, b]);
        tr.phase("liveness").end();
        tr.assert_ok();
    }
}
