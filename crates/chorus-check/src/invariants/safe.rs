//! G10 safe delivery (DESIGN §3 G10; TESTING MC6 "Uniform (safe) delivery"; CKV01 "Safe
//! Indication"; EVS94 "safe delivery"; Derecho: delivery only once stable at all members).
//!
//! Checkable form: if any process — even one that later crashes, is excluded or leaves —
//! delivers a message m with order `safe` while its current view is v, then every process that
//! installs v+1 directly after v delivered m while in v.
//!
//! DESIGN's wording ("received by every member of its view") is about receipt, which no trace
//! line records; uniform delivery is its observable consequence, and the reason to ask for
//! `safe`: what one process acted on, the surviving group acted on too.
//!
//! How: deliveries are FIFO prefixes per sender (G7), so per view it is enough to keep, per
//! sender, the highest seq of a safe message anyone delivered, and who did. The property is
//! then checked whichever of the two lines comes first in the trace:
//! - at an install of v+1 after v (the set delivered in v is final): it must contain every safe
//!   message of v delivered so far;
//! - at a delivery of a safe message of v after someone already went on to v+1: the first such
//!   process's set must contain it. G4 makes every later one's set equal to the first's (it is
//!   checked at each of those installs), so one comparison stands for all of them.
//!
//! Exempt: a process that v lists in `loading` and that never loaded its state in v. By ST2
//! it delivers nothing in v, and it holds no state for a safe message to have reached; its
//! transfer restarts in v+1 (the checker does not call [`Safe::on_transition`] for it).
//!
//! So a late deliverer — a process still in v that delivers after the survivors moved on, or a
//! merged real-run trace where its line sorts late — is judged at its own `deliver` line and
//! needs no end-of-run pass. Memory is one short map per view; time is one map update per safe
//! delivery and one vector comparison per install.

use crate::checker::Delivered;
use crate::hash::FastMap;
use crate::trace::{Order, Proc};
use crate::violation::{Guarantee, MsgId, Violation};

/// Per view and sender, the highest seq of a safe message anyone delivered, and who.
#[derive(Debug, Default)]
pub(crate) struct Safe {
    delivered: FastMap<u64, FastMap<Proc, (u64, Proc)>>,
}

impl Safe {
    /// `p` delivers `id` with `order`; `survivor` is the first process that went from `id.view`
    /// to the next view, with the set it delivered there, if any did yet.
    pub(crate) fn on_deliver(
        &mut self,
        t: u64,
        p: Proc,
        id: MsgId,
        order: Order,
        survivor: Option<(Proc, &Delivered)>,
    ) -> Result<(), Violation> {
        if order != Order::Safe {
            return Ok(());
        }
        let highest = self.delivered.entry(id.view).or_default().entry(id.sender).or_insert((0, p));
        if id.seq > highest.0 {
            *highest = (id.seq, p);
        }
        if let Some((q, set)) = survivor {
            if set.get(&id.sender).copied().unwrap_or(0) < id.seq {
                return Err(missed(t, p, id, q));
            }
        }
        Ok(())
    }

    /// `p` installs `from + 1` after `from`, having delivered `delivered` in `from`.
    pub(crate) fn on_transition(
        &self,
        t: u64,
        p: Proc,
        from: u64,
        delivered: &Delivered,
    ) -> Result<(), Violation> {
        let Some(safe) = self.delivered.get(&from) else { return Ok(()) };
        // Report the smallest sender with a gap, so that reports do not depend on map order.
        let mut worst: Option<MsgId> = None;
        let mut by = p;
        for (&s, &(seq, who)) in safe {
            if delivered.get(&s).copied().unwrap_or(0) < seq && worst.is_none_or(|w| s < w.sender) {
                worst = Some(MsgId { sender: s, view: from, seq });
                by = who;
            }
        }
        match worst {
            Some(id) => Err(missed(t, by, id, p)),
            None => Ok(()),
        }
    }
}

/// `deliverer` delivered safe `id`, which `survivor` did not before going on to the next view.
fn missed(t: u64, deliverer: Proc, id: MsgId, survivor: Proc) -> Violation {
    Violation::new(
        Guarantee::G10Safe,
        t,
        format!(
            "{deliverer} delivered safe {id}, but {survivor} went from view {} to view {} without \
             delivering it",
            id.view,
            id.view + 1
        ),
    )
}

#[cfg(test)]
mod tests {
    use crate::testkit::{p, Trace};
    use crate::trace::{Ev, Order};
    use crate::Guarantee;

    #[test]
    fn a_safe_message_delivered_by_all_survivors_passes() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b, c], 1);
        // c sends, delivers and crashes; the survivors deliver it in the flush.
        tr.send_as(c, 1, 1, Order::Safe).deliver(c, c, 1, 1).crash(c);
        tr.deliver(a, c, 1, 1).deliver(b, c, 1, 1).install_all(2, &[a, b]);
        tr.assert_ok();
    }

    #[test]
    fn an_undelivered_safe_message_nobody_delivered_passes() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b, c], 1);
        tr.send_as(c, 1, 1, Order::Safe).crash(c).install_all(2, &[a, b]);
        tr.assert_ok();
    }

    #[test]
    fn survivors_missing_a_crashed_processs_safe_delivery_are_caught() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b, c], 1);
        tr.send_as(c, 1, 1, Order::Safe).deliver(c, c, 1, 1).crash(c);
        tr.install_all(2, &[a, b]);
        let v = tr.assert_violates(Guarantee::G10Safe);
        assert!(
            v.detail.contains("n3.0 delivered safe (n3.0, v1, #1), but n1.0 went from view 1 to view 2"),
            "{v}"
        );
    }

    #[test]
    fn a_fifo_or_total_message_need_not_be_uniform() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b, c], 1);
        tr.send(c, 1, 1).send_as(c, 1, 2, Order::Total).deliver(c, c, 1, 1).deliver(c, c, 1, 2);
        tr.crash(c).install_all(2, &[a, b]);
        tr.assert_ok();
    }

    #[test]
    fn a_late_deliverer_is_caught_at_its_delivery() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b, c], 1);
        tr.send_as(c, 1, 1, Order::Safe);
        // a and b move on without it; c, still in view 1, delivers it afterwards.
        tr.install(a, 2, &[a, b]).install(b, 2, &[a, b]);
        tr.deliver(c, c, 1, 1);
        let deliver_t = tr.events.last().map_or(0, |e| e.t);
        tr.ev(Some(c), Ev::Excluded);
        let v = tr.assert_violates(Guarantee::G10Safe);
        assert_eq!(v.t, deliver_t);
        assert!(v.detail.contains("but n1.0 went from view 1 to view 2"), "{v}");
    }

    #[test]
    fn only_the_view_of_the_delivery_counts() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b, c], 1);
        tr.install_all(2, &[a, b, c]);
        tr.send_as(c, 2, 1, Order::Safe).deliver(c, c, 2, 1).crash(c);
        // Going from view 1 to 2 is not concerned; going from 2 to 3 is.
        tr.deliver(a, c, 2, 1).deliver(b, c, 2, 1).install_all(3, &[a, b]);
        tr.assert_ok();
    }

    #[test]
    fn a_joiner_still_loading_owes_nothing() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b], 1);
        tr.start(c).install_loading_all(2, &[a, b, c], &[c]);
        tr.multicast_as(a, 2, 1, Order::Safe, &[a, b]);
        tr.install_loading_all(3, &[a, b, c], &[c]);
        tr.assert_ok();
    }

    #[test]
    fn a_joiner_that_loaded_owes_the_safe_messages() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b], 1);
        tr.start(c).install_loading_all(2, &[a, b, c], &[c]);
        tr.multicast_as(a, 2, 1, Order::Safe, &[a, b]).state_loaded(c, 2, (0, 0));
        // c goes first, so G4 has no reference yet and G10 judges it.
        tr.install(c, 3, &[a, b, c]);
        let v = tr.assert_violates(Guarantee::G10Safe);
        assert!(v.detail.contains("but n3.0 went from view 2 to view 3"), "{v}");
    }

    #[test]
    fn a_joiner_of_the_next_view_owes_nothing() {
        let (a, b, c, d) = (p(1), p(2), p(3), p(4));
        let mut tr = Trace::group(&[a, b, c], 1);
        tr.multicast_as(a, 1, 1, Order::Safe, &[a, b, c]);
        tr.start(d).install_all(2, &[a, b, c, d]);
        tr.assert_ok();
    }
}
