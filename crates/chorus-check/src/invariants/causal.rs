//! G8 causal (DESIGN §3 G8; TESTING OR2 "Causal"; CKV01 "Causal Delivery"; Birman, Schiper,
//! Stephenson, *Lightweight causal and atomic group multicast*, TOCS 1991).
//!
//! Checkable form: let m2 = (s, v, n) be sent with order `causal` or `safe` (the core delivers a
//! safe message only once its causal past is stable and delivered: `chorus_core::Order::Safe`),
//! and let D(m2) be the set of
//! messages (r, v, k) that s had delivered in v, or sent in v, before its `send` line of m2.
//! Every process p that delivers m2 has delivered every message of D(m2) before (in p's line
//! order).
//!
//! This is OR2's "delivered m1, then sent m2" step. The full happened-before relation follows
//! by induction along chains of causal messages: if m1 is in D(m2) and m1 is causal, every
//! deliverer of m1 (s among them) had delivered D(m1) first, so D(m2) includes D(m1). Through a
//! FIFO or total message on the chain nothing is promised (such a message waits for no one),
//! which is the core's per-message-mode contract (`chorus_core::Order`). The dependency vector
//! OR2 asks the trace to record is recomputed here from the sender's own lines instead.
//!
//! How: deliveries are FIFO prefixes per sender (G7, checked before), so D(m2) is a vector —
//! per sender r, the highest seq s had delivered from r in v — taken from the checker's
//! per-process delivered map at the `send` line (s's own earlier sends need no entry: G7
//! already makes p deliver them first). At each delivery of m2 the deliverer's delivered map
//! is compared with that vector. Memory is one short vector per causal message; time is one
//! copy per causal send and one comparison per causal delivery, each as long as the number of
//! senders in the view.

use crate::checker::Delivered;
use crate::hash::FastMap;
use crate::trace::{Order, Proc};
use crate::violation::{Guarantee, MsgId, Violation};

/// The modes delivered after their causal past.
fn carries_past(order: Order) -> bool {
    matches!(order, Order::Causal | Order::Safe)
}

/// The causal past of every causal or safe message sent so far.
#[derive(Debug, Default)]
pub(crate) struct Causal {
    /// Per causal message, (sender, highest seq) for every other sender its sender had
    /// delivered from in its view, sorted by sender. Messages with an empty past are absent.
    past: FastMap<MsgId, Box<[(Proc, u64)]>>,
}

impl Causal {
    /// The sender of `id` sends it with `order`, having delivered `delivered` in its view.
    pub(crate) fn on_send(&mut self, id: MsgId, order: Order, delivered: &Delivered) {
        if !carries_past(order) {
            return;
        }
        let mut past: Vec<(Proc, u64)> =
            delivered.iter().filter(|(r, k)| **r != id.sender && **k > 0).map(|(r, k)| (*r, *k)).collect();
        if past.is_empty() {
            return;
        }
        past.sort_unstable();
        self.past.insert(id, past.into_boxed_slice());
    }

    /// `p` delivers `id` (delivered with `order`, which G6 has matched with the send), having
    /// delivered `delivered` before in this view.
    pub(crate) fn on_deliver(
        &self,
        t: u64,
        p: Proc,
        id: MsgId,
        order: Order,
        delivered: &Delivered,
    ) -> Result<(), Violation> {
        if !carries_past(order) {
            return Ok(());
        }
        let Some(past) = self.past.get(&id) else { return Ok(()) };
        for &(r, need) in past.iter() {
            let have = delivered.get(&r).copied().unwrap_or(0);
            if have < need {
                let missing = MsgId { sender: r, view: id.view, seq: have + 1 };
                return Err(Violation::new(
                    Guarantee::G8Causal,
                    t,
                    format!(
                        "{p} delivered {} {id} before {missing}: {} had delivered {r}'s \
                         messages up to #{need} in view {} before sending it, {p} only up to #{have}",
                        if order == Order::Safe { "safe" } else { "causal" },
                        id.sender,
                        id.view
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testkit::{p, Trace};
    use crate::trace::Order;
    use crate::Guarantee;

    #[test]
    fn a_chain_across_three_senders_in_causal_order_passes() {
        let (a, b, c, d) = (p(1), p(2), p(3), p(4));
        let all = [a, b, c, d];
        let mut tr = Trace::group(&all, 1);
        // d's message is concurrent with the whole chain: it may come first anywhere.
        tr.send_as(d, 1, 1, Order::Causal);
        tr.send(a, 1, 1).deliver(b, a, 1, 1);
        tr.send_as(b, 1, 1, Order::Causal).deliver(c, a, 1, 1).deliver(c, b, 1, 1);
        tr.send_as(c, 1, 1, Order::Causal);
        tr.deliver(d, a, 1, 1).deliver(d, b, 1, 1).deliver(d, c, 1, 1);
        tr.deliver(a, d, 1, 1).deliver(a, a, 1, 1).deliver(a, b, 1, 1).deliver(a, c, 1, 1);
        tr.assert_ok();
    }

    #[test]
    fn delivering_before_the_senders_past_is_caught() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b, c], 1);
        tr.send(a, 1, 1).send(a, 1, 2).deliver(b, a, 1, 1).deliver(b, a, 1, 2);
        tr.send_as(b, 1, 1, Order::Causal);
        tr.deliver(c, a, 1, 1).deliver(c, b, 1, 1);
        let v = tr.assert_violates(Guarantee::G8Causal);
        assert!(v.detail.contains("n3.0 delivered causal (n2.0, v1, #1) before (n1.0, v1, #2)"), "{v}");
        assert!(v.detail.contains("up to #2 in view 1"), "{v}");
    }

    #[test]
    fn the_past_is_taken_at_the_send() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b, c], 1);
        tr.send(a, 1, 1).send_as(b, 1, 1, Order::Causal);
        // b delivers a's message only after sending: not part of the causal past.
        tr.deliver(b, a, 1, 1).deliver(c, b, 1, 1).deliver(c, a, 1, 1);
        tr.assert_ok();
    }

    #[test]
    fn a_safe_message_delivered_before_its_causal_past_is_caught() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b, c], 1);
        // b delivers a's message, then sends a safe one; c delivers b's before a's.
        tr.send(a, 1, 1).deliver(b, a, 1, 1);
        tr.send_as(b, 1, 1, Order::Safe);
        tr.deliver(c, b, 1, 1).deliver(c, a, 1, 1);
        let v = tr.assert_violates(Guarantee::G8Causal);
        assert!(v.detail.contains("delivered safe (n2.0, v1, #1) before (n1.0, v1, #1)"), "{v}");
    }

    #[test]
    fn fifo_and_total_messages_wait_for_no_past() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b, c], 1);
        tr.send(a, 1, 1).deliver(b, a, 1, 1);
        tr.send(b, 1, 1).send_as(b, 1, 2, Order::Total);
        tr.deliver(c, b, 1, 1).deliver(c, b, 1, 2).deliver(c, a, 1, 1);
        tr.assert_ok();
    }

    #[test]
    fn the_senders_own_earlier_messages_are_left_to_fifo() {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a, b], 1);
        tr.send(a, 1, 1).send_as(a, 1, 2, Order::Causal).deliver(b, a, 1, 2);
        tr.assert_violates(Guarantee::G7Fifo);
    }

    #[test]
    fn the_past_is_per_view() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b, c], 1);
        tr.multicast(a, 1, 1, &[a, b, c]).install_all(2, &[a, b, c]);
        // b's past in view 2 is empty, although it delivered a's message in view 1.
        tr.send_as(b, 2, 1, Order::Causal).deliver(c, b, 2, 1);
        tr.assert_ok();
    }
}
