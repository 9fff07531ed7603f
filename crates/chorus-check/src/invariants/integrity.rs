//! G6 integrity (DESIGN §3 G6; TESTING MC1 "Delivery Integrity / no creation", MC2 "No
//! Duplication"; CKV01).
//!
//! Checkable form: every `deliver` of (s, v, n) with digest d and order o at process p comes
//! after a `send` line of s with view v, seq n, digest d and order o; and p delivers a given
//! (s, v, n) at most once. (A delivery under another order than the one asked for would leave
//! G8–G10 judging the wrong rule, so it is reported here.)
//!
//! Reported under G6 too, because a trace that breaks them cannot be judged: process lives.
//! Every event except `phase` and `end` names a process; a process's events lie between its
//! `start` and the end of its life (`crash`, `excluded`, `left`, or the `start` of a newer
//! incarnation of its node); a process starts once, and a node's incarnations start in
//! increasing order. Harness events (`crash`, `pause`, `resume`) are never flagged.
//!
//! "Comes after a send" is the one cross-process order this checker needs. The simulator's
//! single trace is causal; merged per-node traces are when the sender logs before sending and
//! the nodes share a clock (see `docs/trace-format.md`).

use crate::hash::FastMap;
use crate::trace::{Order, Proc};
use crate::violation::{Guarantee, MsgId, Violation};

/// Every send observed, with its digest and order.
#[derive(Debug, Default)]
pub(crate) struct Integrity {
    sends: FastMap<MsgId, (u64, Order)>,
}

impl Integrity {
    /// Records a send; G7 has already rejected a repeated id.
    pub(crate) fn on_send(&mut self, id: MsgId, digest: u64, order: Order) {
        self.sends.insert(id, (digest, order));
    }

    /// `so_far` is the highest seq `p` delivered from this sender in this view: by G7 it has
    /// delivered exactly `1..=so_far`.
    pub(crate) fn on_deliver(
        &self,
        t: u64,
        p: Proc,
        id: MsgId,
        digest: u64,
        order: Order,
        so_far: u64,
    ) -> Result<(), Violation> {
        match self.sends.get(&id) {
            None => return fail(t, format!("{p} delivered {id}, which was never sent")),
            Some(&(sent, _)) if sent != digest => {
                return fail(t, format!("{p} delivered {id} with digest {digest:#x}, sent with {sent:#x}"))
            }
            Some(&(_, asked)) if asked != order => {
                return fail(t, format!("{p} delivered {id} as {order}, sent as {asked}"))
            }
            Some(_) => {}
        }
        if id.seq <= so_far {
            return fail(t, format!("{p} delivered {id} twice"));
        }
        Ok(())
    }
}

pub(crate) fn no_process(t: u64, kind: &str) -> Violation {
    Violation::new(Guarantee::G6Integrity, t, format!("`{kind}` event names no process"))
}

pub(crate) fn not_started(t: u64, p: Proc, kind: &str) -> Violation {
    Violation::new(Guarantee::G6Integrity, t, format!("`{kind}` by {p}, which never started"))
}

pub(crate) fn ended(t: u64, p: Proc, kind: &str) -> Violation {
    Violation::new(Guarantee::G6Integrity, t, format!("`{kind}` by {p} after its life ended"))
}

pub(crate) fn started_twice(t: u64, p: Proc) -> Violation {
    Violation::new(Guarantee::G6Integrity, t, format!("{p} started twice"))
}

pub(crate) fn stale_incarnation(t: u64, p: Proc, newest: u64) -> Violation {
    Violation::new(
        Guarantee::G6Integrity,
        t,
        format!("{p} started after incarnation {newest} of node {}", p.node),
    )
}

fn fail(t: u64, detail: String) -> Result<(), Violation> {
    Err(Violation::new(Guarantee::G6Integrity, t, detail))
}

#[cfg(test)]
mod tests {
    use crate::testkit::{msg_digest, p, pi, Trace};
    use crate::trace::{Ev, Order};
    use crate::Guarantee;

    #[test]
    fn each_message_delivered_once_passes() {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a, b], 1);
        tr.multicast(a, 1, 1, &[a, b]).multicast(b, 1, 1, &[b, a]);
        tr.assert_ok();
    }

    #[test]
    fn delivering_an_unsent_message_is_caught() {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a, b], 1);
        tr.deliver(b, a, 1, 1);
        let v = tr.assert_violates(Guarantee::G6Integrity);
        assert!(v.detail.contains("never sent"), "{v}");
    }

    #[test]
    fn delivering_before_the_send_is_caught() {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a, b], 1);
        tr.deliver(b, a, 1, 1).send(a, 1, 1);
        tr.assert_violates(Guarantee::G6Integrity);
    }

    #[test]
    fn a_corrupted_payload_is_caught() {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a, b], 1);
        tr.send(a, 1, 1).deliver_digest(b, a, 1, 1, msg_digest(a, 1, 1) ^ 1);
        let v = tr.assert_violates(Guarantee::G6Integrity);
        assert!(v.detail.contains("digest"), "{v}");
    }

    #[test]
    fn a_delivery_under_another_order_is_caught() {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a, b], 1);
        tr.send_as(a, 1, 1, Order::Safe).deliver_as(b, a, 1, 1, Order::Total);
        let v = tr.assert_violates(Guarantee::G6Integrity);
        assert!(v.detail.contains("as total, sent as safe"), "{v}");
    }

    #[test]
    fn a_duplicate_delivery_is_caught() {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a, b], 1);
        tr.multicast(a, 1, 1, &[a, b]).deliver(b, a, 1, 1);
        let v = tr.assert_violates(Guarantee::G6Integrity);
        assert!(v.detail.contains("twice"), "{v}");
    }

    #[test]
    fn harness_events_after_the_end_of_a_life_pass() {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a, b], 1);
        tr.ev(Some(b), Ev::Excluded).ev(Some(b), Ev::Pause).ev(Some(b), Ev::Resume).crash(b);
        tr.crash(a).crash(a);
        tr.assert_ok();
    }

    #[test]
    fn a_new_incarnation_ends_the_old_one() {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a, b], 1);
        tr.start(pi(2, 1)).send(b, 1, 1);
        let v = tr.assert_violates(Guarantee::G6Integrity);
        assert!(v.detail.contains("after its life ended"), "{v}");
    }

    #[test]
    fn process_events_after_the_end_of_a_life_are_caught() {
        for end in [Ev::Crash, Ev::Excluded, Ev::Left] {
            let mut tr = Trace::group(&[p(1)], 1);
            tr.ev(Some(p(1)), end).ev(Some(p(1)), Ev::Suspect { member: p(2) });
            tr.assert_violates(Guarantee::G6Integrity);
        }
    }

    #[test]
    fn lifecycle_errors_are_caught() {
        let mut never_started = Trace::new();
        never_started.install(p(1), 1, &[p(1)]);
        never_started.assert_violates(Guarantee::G6Integrity);

        let mut twice = Trace::new();
        twice.start(p(1)).start(p(1));
        twice.assert_violates(Guarantee::G6Integrity);

        let mut backwards = Trace::new();
        backwards.start(pi(1, 2)).start(pi(1, 1));
        backwards.assert_violates(Guarantee::G6Integrity);

        let mut anonymous = Trace::new();
        anonymous.ev(None, Ev::Send { view: 1, seq: 1, digest: 0, order: Order::Fifo });
        anonymous.assert_violates(Guarantee::G6Integrity);
    }
}
