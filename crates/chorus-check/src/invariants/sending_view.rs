//! G5 sending-view delivery (DESIGN §3 G5; TESTING MC3 "Sending View Delivery", GM6 "every
//! event happens inside a view"; CKV01; VS.txt #4).
//!
//! Checkable form: a `send` line of process p is allowed only once p has installed a view,
//! and its `view` equals p's current view id. A `deliver` line at p likewise: p has installed
//! a view and the message's `view` equals p's current view id.
//!
//! This also gives GM7 (flush precedes install): after p installs v+1, no delivery of a
//! message of v can follow.

use crate::trace::Proc;
use crate::violation::{Guarantee, MsgId, Violation};

pub(crate) fn on_send(t: u64, current: Option<u64>, id: MsgId) -> Result<(), Violation> {
    let who = id.sender;
    match current {
        Some(v) if v == id.view => Ok(()),
        Some(v) => fail(t, format!("{who} sent {id} while its current view is {v}")),
        None => fail(t, format!("{who} sent {id} before installing any view")),
    }
}

pub(crate) fn on_deliver(t: u64, p: Proc, current: Option<u64>, id: MsgId) -> Result<(), Violation> {
    match current {
        Some(v) if v == id.view => Ok(()),
        Some(v) => fail(t, format!("{p} delivered {id} while its current view is {v}")),
        None => fail(t, format!("{p} delivered {id} before installing any view")),
    }
}

fn fail(t: u64, detail: String) -> Result<(), Violation> {
    Err(Violation::new(Guarantee::G5SendingView, t, detail))
}

#[cfg(test)]
mod tests {
    use crate::testkit::{p, Trace};
    use crate::Guarantee;

    #[test]
    fn sending_and_delivering_in_the_current_view_passes() {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a, b], 1);
        tr.multicast(a, 1, 1, &[a, b]);
        tr.install_all(2, &[a, b]);
        tr.multicast(b, 2, 1, &[a, b]);
        tr.assert_ok();
    }

    #[test]
    fn delivering_after_the_next_install_is_caught() {
        let a = p(1);
        let mut tr = Trace::group(&[a], 1);
        tr.send(a, 1, 1).install(a, 2, &[a]).deliver(a, a, 1, 1);
        let v = tr.assert_violates(Guarantee::G5SendingView);
        assert!(v.detail.contains("current view is 2"), "{v}");
    }

    #[test]
    fn delivering_before_any_view_is_caught() {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a], 1);
        tr.start(b).send(a, 1, 1).deliver(b, a, 1, 1);
        tr.assert_violates(Guarantee::G5SendingView);
    }

    #[test]
    fn sending_in_a_view_other_than_the_current_one_is_caught() {
        let mut tr = Trace::group(&[p(1)], 1);
        tr.send(p(1), 2, 1);
        tr.assert_violates(Guarantee::G5SendingView);
    }

    #[test]
    fn sending_before_any_view_is_caught() {
        let mut tr = Trace::new();
        tr.start(p(1)).send(p(1), 1, 1);
        tr.assert_violates(Guarantee::G5SendingView);
    }
}
