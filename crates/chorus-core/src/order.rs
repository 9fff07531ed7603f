//! Delivery order: FIFO, causal, total and safe, chosen per message, mixed in one view.
//!
//! Every sender's messages are delivered in sequence order, whatever their modes (FIFO per
//! sender holds in every mode). On top of that:
//!
//! - **Causal**: the message carries the sender's delivered counts per sender (its causal past
//!   in this view); it waits until this member delivered at least as much from everyone.
//! - **Total**: every message carries a Lamport timestamp; total (and safe) messages are
//!   delivered in the order of the key `(lamport, sender rank)`, the same fixed order at every
//!   member. A total message is delivered once no message with a smaller key can still come:
//!   every other sender has either sent something with a larger timestamp, or promised (in an
//!   `Ack`: "everything I send after seq S has a timestamp above C") and been received up to S.
//!   Because the order is a fixed function of message ids, a member that crashes after
//!   delivering never disagrees with the survivors on the order of common messages, and no
//!   orderer has to be replaced through the flush (Lamport 1978; Derecho's round-robin order is
//!   the same idea with null messages in place of promises).
//! - **Safe**: total order, and delivered only once stable (every member of the view has it)
//!   and once its causal past is stable, so that if anyone delivers it, every survivor holds
//!   all it needs to deliver it too (uniform delivery).
//!
//! At a view change the survivors deliver the cut with the same rules, except that the cut is
//! complete (no promise needed) and all of it is held by every survivor (no stability needed).
//! A causal message whose past is missing from the cut (its sender and the only holders of a
//! dependency crashed) can never be delivered; it and everything its sender sent after it are
//! dropped. Every survivor computes the same closure of the cut, so they deliver the same set.

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::id::{MsgId, Seqno};
use crate::node::{Member, Node};
use crate::wire::Data;

/// How a multicast is ordered relative to others. FIFO per sender holds in every mode.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Order {
    /// Per-sender order only.
    #[default]
    Fifo,
    /// After everything its sender had delivered when sending it.
    Causal,
    /// In one order shared by every member.
    Total,
    /// Total, and only once every member of the view has it (uniform).
    Safe,
}

impl Order {
    /// Every mode.
    pub const ALL: [Order; 4] = [Order::Fifo, Order::Causal, Order::Total, Order::Safe];

    /// Whether the mode is in the shared total order (total and safe).
    pub fn is_total(self) -> bool {
        matches!(self, Order::Total | Order::Safe)
    }

    /// Whether messages of this mode carry their causal past.
    pub(crate) fn carries_deps(self) -> bool {
        matches!(self, Order::Causal | Order::Safe)
    }
}

/// What the delivery loop may assume.
#[derive(Copy, Clone)]
enum Mode<'a> {
    /// Normal operation: total order needs promises, safe needs stability.
    Live,
    /// Delivering the cut at a view change: everything up to `cut` is known and held by every
    /// survivor.
    Flush(&'a [u64]),
}

impl Node {
    /// Delivers everything that can be delivered now (nothing while wedged or waiting for
    /// state).
    pub(crate) fn pump(&mut self) {
        let Some(m) = self.member() else { return };
        let loading = m.awaiting_state && !self.mutant_is(MutantKind::DeliverBeforeLoaded);
        if m.wedged || loading {
            return;
        }
        self.deliver_loop(Mode::Live);
    }

    /// Delivers the closure of the cut at a view change. Returns nothing; what cannot be
    /// delivered is dropped with the view.
    pub(crate) fn deliver_cut(&mut self, cut: &[u64]) {
        self.deliver_loop(Mode::Flush(cut));
    }

    fn deliver_loop(&mut self, mode: Mode<'_>) {
        let Some(m) = self.member() else { return };
        let n = m.view.members.len();
        // Senders whose stream can go no further in this flush (a causal dependency is missing).
        // Only a flush marks any; live pumps (one per message received) allocate nothing.
        let mut dead = match mode {
            Mode::Flush(_) => vec![false; n],
            Mode::Live => Vec::new(),
        };
        let is_dead = |dead: &[bool], s: usize| dead.get(s).copied().unwrap_or(false);
        loop {
            let mut progress = false;
            // FIFO and causal heads.
            #[allow(clippy::needless_range_loop)] // `self` is borrowed inside the loop.
            for s in 0..n {
                if is_dead(&dead, s) {
                    continue;
                }
                while let Some(order) = self.head(s, mode).map(|d| d.order) {
                    let ok = match order {
                        Order::Fifo => true,
                        Order::Causal => {
                            self.mutant_is(MutantKind::IgnoreCausalDeps)
                                || self
                                    .head(s, mode)
                                    .is_some_and(|d| deps_met(self.member(), d) && in_cut(mode, d))
                        }
                        Order::Total | Order::Safe => {
                            self.mutant_is(MutantKind::TotalByArrival) && matches!(mode, Mode::Live)
                        }
                    };
                    if !ok {
                        break;
                    }
                    self.deliver_head(s);
                    progress = true;
                }
            }
            // The next total message, in key order.
            if let Some((s, head_is_it)) = self.next_total(mode, &dead) {
                if head_is_it && self.total_ready(s, mode) {
                    self.deliver_head(s);
                    progress = true;
                } else if matches!(mode, Mode::Flush(_)) && !progress {
                    // Nothing else can move, so this stream is blocked for good (behind, or
                    // needing, a causal past missing from the cut): drop the rest of it.
                    dead[s] = true;
                    continue;
                }
            }
            if !progress {
                if let Mode::Flush(_) = mode {
                    // A causal head with a missing past blocks its stream for good.
                    let blocked: Vec<usize> =
                        (0..n).filter(|s| !is_dead(&dead, *s) && self.head(*s, mode).is_some()).collect();
                    let mut changed = false;
                    for s in blocked {
                        let total_head = self.head(s, mode).is_some_and(|d| d.order.is_total());
                        if !total_head {
                            dead[s] = true;
                            changed = true;
                        }
                    }
                    if changed {
                        continue;
                    }
                }
                break;
            }
        }
    }

    /// Sender `s`'s next undeliverd message, if held (and within the cut when flushing).
    fn head(&self, s: usize, mode: Mode<'_>) -> Option<&Data> {
        let m = self.member()?;
        let st = &m.senders[s];
        let next = st.delivered + 1;
        if let Mode::Flush(cut) = mode {
            if next > cut[s] {
                return None;
            }
        }
        st.get(next)
    }

    /// The undelivered total message with the smallest key among the held ones, as (sender,
    /// whether it is that sender's next message).
    fn next_total(&self, mode: Mode<'_>, dead: &[bool]) -> Option<(usize, bool)> {
        let m = self.member()?;
        let mut best: Option<((u64, usize), usize, bool)> = None;
        for (s, st) in m.senders.iter().enumerate() {
            if dead.get(s).copied().unwrap_or(false) {
                continue;
            }
            let Some(seq) = st.first_total() else { continue };
            if let Mode::Flush(cut) = mode {
                if seq > cut[s] {
                    continue;
                }
            }
            let Some(d) = st.get(seq) else { continue };
            let key = (d.lamport, s);
            if best.is_none_or(|(k, _, _)| key < k) {
                best = Some((key, s, seq == st.delivered + 1));
            }
        }
        best.map(|(_, s, head)| (s, head))
    }

    /// Whether sender `s`'s head (a total or safe message) may be delivered now.
    fn total_ready(&self, s: usize, mode: Mode<'_>) -> bool {
        let Some(m) = self.member() else { return false };
        let Some(d) = self.head(s, mode) else { return false };
        if let Mode::Flush(_) = mode {
            // The cut is complete and every survivor holds it.
            return d.order != Order::Safe || (deps_met(Some(m), d) && in_cut(mode, d));
        }
        let key = (d.lamport, s);
        for (r, st) in m.senders.iter().enumerate() {
            if r == s || r == m.me {
                continue; // Our own later messages get larger timestamps than any seen.
            }
            let beyond = (st.last_lamport, r) > key;
            let promise = &m.peers[r];
            let promised = st.received >= promise.promise_sent && promise.promise_clock >= d.lamport;
            if !beyond && !promised {
                return false;
            }
        }
        if d.order == Order::Safe && !self.mutant_is(MutantKind::SafeBeforeStable) {
            let stable = m.stable[s] >= d.seq;
            let past_stable = d.deps.iter().zip(m.stable.iter()).all(|(need, st)| st >= need);
            return stable && past_stable && deps_met(Some(m), d);
        }
        true
    }

    /// Delivers sender `s`'s next message.
    fn deliver_head(&mut self, s: usize) {
        #[cfg(feature = "mutants")]
        let dup = self.cfg.mutant == Some(crate::Mutant::DuplicateDelivery);
        let Some(m) = self.member_mut() else { return };
        let sender = m.view.members[s];
        let view = m.view.id;
        let st = &mut m.senders[s];
        let seq = st.delivered + 1;
        let Some(d) = st.get(seq) else { return };
        let (order, payload) = (d.order, d.payload.clone());
        st.delivered = seq;
        if order.is_total() {
            st.pop_total(seq);
        }
        let id = MsgId { sender, view, seq: Seqno(seq) };
        #[cfg(feature = "mutants")]
        if dup && seq % 7 == 3 {
            self.push_event(Event::Delivered { id, order, payload: payload.clone() });
        }
        self.push_event(Event::Delivered { id, order, payload });
    }
}

/// The ordering mutants (a stand-in type when the feature is off, so call sites stay clean).
#[derive(Copy, Clone, PartialEq, Eq)]
enum MutantKind {
    IgnoreCausalDeps,
    TotalByArrival,
    SafeBeforeStable,
    DeliverBeforeLoaded,
}

impl Node {
    #[cfg(feature = "mutants")]
    fn mutant_is(&self, k: MutantKind) -> bool {
        use crate::Mutant;
        matches!(
            (self.cfg.mutant, k),
            (Some(Mutant::IgnoreCausalDeps), MutantKind::IgnoreCausalDeps)
                | (Some(Mutant::TotalByArrival), MutantKind::TotalByArrival)
                | (Some(Mutant::SafeBeforeStable), MutantKind::SafeBeforeStable)
                | (Some(Mutant::DeliverBeforeLoaded), MutantKind::DeliverBeforeLoaded)
        )
    }

    #[cfg(not(feature = "mutants"))]
    fn mutant_is(&self, _k: MutantKind) -> bool {
        false
    }
}

/// Whether this member delivered the causal past `d` names.
/// In a flush, whether `d`'s causal past lies within the cut. Every member moving on holds
/// and delivers exactly the cut, but a member that is *not* moving on (excluded, it delivers
/// the cut before re-joining) may have delivered beyond it before: judged by its own delivered
/// vector, it would deliver a causal or safe message whose past the survivors never get, and
/// so break uniform delivery (G10; found by the simulator, seed 2022781). The cut alone decides.
fn in_cut(mode: Mode<'_>, d: &Data) -> bool {
    let Mode::Flush(cut) = mode else { return true };
    let s = usize::from(d.sender);
    d.deps.iter().enumerate().all(|(r, need)| r == s || cut.get(r).is_some_and(|c| need <= c))
}

fn deps_met(m: Option<&Member>, d: &Data) -> bool {
    let Some(m) = m else { return false };
    let s = usize::from(d.sender);
    d.deps
        .iter()
        .enumerate()
        .all(|(r, need)| r == s || m.senders.get(r).is_some_and(|st| st.delivered >= *need))
}
