//! G7 FIFO (DESIGN §3 G7; TESTING OR1 "Reliable FIFO"; CKV01 "FIFO Delivery").
//!
//! Checkable form: per delivering process p, sender s and view v, the seqs of p's deliveries
//! of s's messages in v are 1, 2, 3, ... in line order: no gap, no reordering (a repeat is a
//! G6 duplicate, checked first). Likewise the `send` lines of s in v carry seqs 1, 2, 3, ...
//! in line order, so a message's identity (s, v, seq) is unique and seqs mean send order.

use crate::trace::Proc;
use crate::violation::{Guarantee, MsgId, Violation};

/// `sent` is how many messages the sender sent before in this view (G5 has checked the view).
pub(crate) fn on_send(t: u64, sent: u64, id: MsgId) -> Result<(), Violation> {
    if id.seq == sent + 1 {
        return Ok(());
    }
    Err(Violation::new(
        Guarantee::G7Fifo,
        t,
        format!("{} sent {id} after {sent} sends in view {}: expected #{}", id.sender, id.view, sent + 1),
    ))
}

/// `so_far` is the highest seq `p` delivered from this sender in this view, and G6 has ruled
/// out `id.seq <= so_far`.
pub(crate) fn on_deliver(t: u64, p: Proc, so_far: u64, id: MsgId) -> Result<(), Violation> {
    if id.seq == so_far + 1 {
        return Ok(());
    }
    Err(Violation::new(
        Guarantee::G7Fifo,
        t,
        format!(
            "{p} delivered {id} after #{so_far} from {} in view {}: #{} missing or reordered",
            id.sender,
            id.view,
            so_far + 1
        ),
    ))
}

#[cfg(test)]
mod tests {
    use crate::testkit::{p, Trace};
    use crate::Guarantee;

    #[test]
    fn in_order_from_several_senders_and_views_passes() {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a, b], 1);
        tr.send(a, 1, 1).send(a, 1, 2).send(b, 1, 1);
        tr.deliver(b, b, 1, 1).deliver(b, a, 1, 1).deliver(b, a, 1, 2);
        tr.deliver(a, a, 1, 1).deliver(a, b, 1, 1).deliver(a, a, 1, 2);
        // Seqs restart at 1 in each view.
        tr.install_all(2, &[a, b]).multicast(a, 2, 1, &[a, b]);
        tr.assert_ok();
    }

    #[test]
    fn reordered_delivery_is_caught() {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a, b], 1);
        tr.send(a, 1, 1).send(a, 1, 2).deliver(b, a, 1, 2);
        let v = tr.assert_violates(Guarantee::G7Fifo);
        assert!(v.detail.contains("#1 missing or reordered"), "{v}");
    }

    #[test]
    fn a_gap_is_caught() {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a, b], 1);
        tr.send(a, 1, 1).send(a, 1, 2).send(a, 1, 3);
        tr.deliver(b, a, 1, 1).deliver(b, a, 1, 3);
        tr.assert_violates(Guarantee::G7Fifo);
    }

    #[test]
    fn send_seqs_must_count_from_one() {
        let mut skipped = Trace::group(&[p(1)], 1);
        skipped.send(p(1), 1, 2);
        skipped.assert_violates(Guarantee::G7Fifo);

        let mut repeated = Trace::group(&[p(1)], 1);
        repeated.send(p(1), 1, 1).send(p(1), 1, 1);
        repeated.assert_violates(Guarantee::G7Fifo);
    }
}
