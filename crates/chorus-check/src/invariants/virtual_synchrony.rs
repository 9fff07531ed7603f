//! G4 virtual synchrony (DESIGN §3 G4; TESTING MC4; CKV01 "Virtual Synchrony"; BJ87; VS.txt #8).
//!
//! Checkable form: let D(p, v) be the set of messages (sender, view, seq) that process p
//! delivers while its current view is v. If p and q both install v+1 directly after v, then
//! D(p, v) = D(q, v).
//!
//! Exempt: a process that v lists in `loading` and that never loaded its state in v (no
//! `state_loaded` for v). By ST2 it delivered nothing in v — it had no state to apply anything
//! to — so D(p, v) is empty by design, not by a lost flush; its transfer restarts in v+1. A
//! process that did load in v delivers v's messages after loading and is compared as usual.
//!
//! How: D(p, v) is final when p installs v+1. The first process to make that move leaves its
//! set here; every later one is compared with it (equality is transitive). So memory is one
//! set per view, and time is linear in the number of deliveries. Only per-process order is
//! needed: each set is complete when its owner's install line is read.

use std::collections::hash_map::Entry;
use std::collections::BTreeSet;

use crate::checker::Delivered;
use crate::hash::FastMap;
use crate::trace::Proc;
use crate::violation::{msgs, Guarantee, MsgId, Violation};

/// How many differing messages a report lists per side.
const EXAMPLES: usize = 3;

/// Per view left so far: the first process to leave it for the next view, and its set.
#[derive(Debug, Default)]
pub(crate) struct VirtualSynchrony {
    first: FastMap<u64, (Proc, Delivered)>,
}

impl VirtualSynchrony {
    /// The first process that went from `view` to the next, and the set it delivered in `view`
    /// (by G4, the set of every process that did).
    pub(crate) fn survivor(&self, view: u64) -> Option<(Proc, &Delivered)> {
        self.first.get(&view).map(|(p, set)| (*p, set))
    }

    /// `p` installs `from + 1` after `from`, having delivered `delivered` in `from`. `cut_off`:
    /// `p` was waiting for its state in `from` all along (exempt, see the module docs).
    pub(crate) fn on_transition(
        &mut self,
        t: u64,
        p: Proc,
        from: u64,
        delivered: Delivered,
        cut_off: bool,
    ) -> Result<(), Violation> {
        if cut_off {
            // Not a survivor set either: it must not become the reference for `from`.
            return Ok(());
        }
        let (q, theirs) = match self.first.entry(from) {
            Entry::Vacant(slot) => {
                slot.insert((p, delivered));
                return Ok(());
            }
            Entry::Occupied(slot) => slot.into_mut(),
        };
        if *theirs == delivered {
            return Ok(());
        }
        let (only_q, only_q_count) = missing(from, theirs, &delivered);
        let (only_p, only_p_count) = missing(from, &delivered, theirs);
        let mut detail = format!(
            "{q} and {p} both went from view {from} to {} but delivered different messages in \
             view {from}",
            from + 1
        );
        for (who, count, examples) in [(*q, only_q_count, only_q), (p, only_p_count, only_p)] {
            if count > 0 {
                detail += &format!("; only {who} delivered {count}, e.g. {}", msgs(&examples));
            }
        }
        Err(Violation::new(Guarantee::G4VirtualSynchrony, t, detail))
    }
}

/// Messages in `a` but not in `b`: the first few (by sender, then seq) and how many.
fn missing(view: u64, a: &Delivered, b: &Delivered) -> (Vec<MsgId>, u64) {
    let senders: BTreeSet<Proc> = a.keys().copied().collect();
    let mut examples = Vec::new();
    let mut count = 0;
    for sender in senders {
        let have = a.get(&sender).copied().unwrap_or(0);
        let other = b.get(&sender).copied().unwrap_or(0);
        for seq in other + 1..=have {
            count += 1;
            if examples.len() < EXAMPLES {
                examples.push(MsgId { sender, view, seq });
            }
        }
    }
    (examples, count)
}

#[cfg(test)]
mod tests {
    use crate::testkit::{p, Trace};
    use crate::Guarantee;

    #[test]
    fn survivors_with_equal_sets_pass() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b, c], 1);
        tr.multicast(a, 1, 1, &[a, b, c]);
        // c delivers a message of a and crashes; a and b flush it among themselves.
        tr.send(c, 1, 1).deliver(c, c, 1, 1).crash(c);
        tr.deliver(a, c, 1, 1).deliver(b, c, 1, 1);
        tr.install_all(2, &[a, b]);
        tr.assert_ok();
    }

    #[test]
    fn a_process_that_leaves_the_line_is_not_compared() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b, c], 1);
        // c delivered less and was excluded: it never installs view 2, so no constraint.
        tr.send(a, 1, 1).deliver(a, a, 1, 1).deliver(b, a, 1, 1);
        tr.install(a, 2, &[a, b]).install(b, 2, &[a, b]);
        tr.assert_ok();
    }

    #[test]
    fn a_survivor_missing_a_message_is_caught() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b, c], 1);
        tr.multicast(a, 1, 1, &[a, b, c]);
        tr.send(a, 1, 2).deliver(a, a, 1, 2).deliver(b, a, 1, 2);
        tr.install_all(2, &[a, b, c]);
        let v = tr.assert_violates(Guarantee::G4VirtualSynchrony);
        assert!(v.detail.contains("n1.0 and n3.0"), "{v}");
        assert!(v.detail.contains("only n1.0 delivered 1, e.g. (n1.0, v1, #2)"), "{v}");
    }

    #[test]
    fn a_joiner_whose_transfer_was_cut_off_is_not_compared() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b], 1);
        // c joins in view 2 and goes to view 3 without ever loading: it delivered nothing.
        tr.start(c).install_loading_all(2, &[a, b, c], &[c]);
        tr.multicast(a, 2, 1, &[a, b]);
        // c is the first to move on: it must not become the reference for view 2 either.
        tr.install_loading(c, 3, &[a, b, c], &[c]);
        tr.install_loading(a, 3, &[a, b, c], &[c]).install_loading(b, 3, &[a, b, c], &[c]);
        tr.assert_ok();
    }

    #[test]
    fn a_joiner_that_loaded_is_compared() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b], 1);
        tr.start(c).install_loading_all(2, &[a, b, c], &[c]);
        tr.multicast(a, 2, 1, &[a, b]).state_loaded(c, 2, (0, 0));
        // c loaded but then skipped a's message.
        tr.install_all(3, &[a, b, c]);
        let v = tr.assert_violates(Guarantee::G4VirtualSynchrony);
        assert!(v.detail.contains("n1.0 and n3.0 both went from view 2 to 3"), "{v}");
    }

    #[test]
    fn differences_on_both_sides_are_reported() {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a, b], 1);
        tr.send(a, 1, 1).send(b, 1, 1).deliver(a, a, 1, 1).deliver(b, b, 1, 1);
        tr.install_all(2, &[a, b]);
        let v = tr.assert_violates(Guarantee::G4VirtualSynchrony);
        assert!(v.detail.contains("only n1.0 delivered 1, e.g. (n1.0, v1, #1)"), "{v}");
        assert!(v.detail.contains("only n2.0 delivered 1, e.g. (n2.0, v1, #1)"), "{v}");
    }
}
