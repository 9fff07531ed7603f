//! Reliable FIFO multicast within one view: per-sender stores, gap detection, stability.
//!
//! Each member keeps, per sender of its view, the messages from the first one not yet known to
//! be stable (received by every member) up to the highest received without a gap, plus a
//! bounded set of out-of-order arrivals. A message leaves the store only once it is stable AND
//! this member has delivered it, so a flush can always forward what a survivor lacks.

use std::collections::{BTreeMap, VecDeque};

use crate::time::Instant;
use crate::wire::Data;

/// One sender's messages in the current view, as seen by one member.
#[derive(Debug)]
pub(crate) struct SenderStore {
    /// Sequence number of `msgs[0]`; everything below is discarded.
    base: u64,
    /// Messages `base..=received`, contiguous.
    msgs: VecDeque<Data>,
    /// Arrivals beyond a gap, keyed by sequence number.
    ooo: BTreeMap<u64, Data>,
    /// Highest sequence number received without a gap.
    pub received: u64,
    /// Highest sequence number delivered to the application.
    pub delivered: u64,
    /// Highest sequence number known to exist (seen or advertised by the sender).
    pub highest_seen: u64,
    /// When the current gap was first noticed.
    pub gap_since: Option<Instant>,
    /// When a retransmission was last asked for.
    pub last_nak: Option<Instant>,
    /// Lamport timestamp of the message `received` (timestamps grow along a sender's stream).
    pub last_lamport: u64,
    /// Sequence numbers of the total and safe messages in `delivered+1..=received`, in order.
    totals: VecDeque<u64>,
}

/// Result of offering a message to a store.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Insert {
    /// Already had it.
    Duplicate,
    /// Kept beyond a gap.
    Buffered,
    /// Extended the gap-free prefix (`received` grew).
    Advanced,
    /// Too far ahead of what was received: dropped (it will be retransmitted).
    OutOfWindow,
}

impl SenderStore {
    pub(crate) fn new() -> Self {
        SenderStore {
            base: 1,
            msgs: VecDeque::new(),
            ooo: BTreeMap::new(),
            received: 0,
            delivered: 0,
            highest_seen: 0,
            gap_since: None,
            last_nak: None,
            last_lamport: 0,
            totals: VecDeque::new(),
        }
    }

    fn advanced(&mut self, d: &Data) {
        self.last_lamport = self.last_lamport.max(d.lamport);
        if matches!(d.order, crate::Order::Total | crate::Order::Safe) {
            self.totals.push_back(d.seq);
        }
    }

    /// The first undelivered total or safe message held without a gap.
    pub(crate) fn first_total(&self) -> Option<u64> {
        self.totals.front().copied()
    }

    /// Notes that total message `seq` was delivered.
    pub(crate) fn pop_total(&mut self, seq: u64) {
        if self.totals.front() == Some(&seq) {
            self.totals.pop_front();
        }
    }

    /// Offers `d` (already validated to belong to this sender and view).
    pub(crate) fn insert(&mut self, d: Data, window: u64) -> Insert {
        let seq = d.seq;
        self.highest_seen = self.highest_seen.max(seq);
        if seq <= self.received {
            return Insert::Duplicate;
        }
        if seq > self.received.saturating_add(window) {
            return Insert::OutOfWindow;
        }
        if seq != self.received + 1 {
            return match self.ooo.insert(seq, d) {
                Some(_) => Insert::Duplicate,
                None => Insert::Buffered,
            };
        }
        self.advanced(&d);
        self.msgs.push_back(d);
        self.received = seq;
        while let Some(next) = self.ooo.remove(&(self.received + 1)) {
            self.advanced(&next);
            self.msgs.push_back(next);
            self.received += 1;
        }
        Insert::Advanced
    }

    /// The stored message `seq`, if still held and gap-free.
    pub(crate) fn get(&self, seq: u64) -> Option<&Data> {
        if seq < self.base || seq > self.received {
            return None;
        }
        usize::try_from(seq - self.base).ok().and_then(|i| self.msgs.get(i))
    }

    /// Out-of-order arrivals that are not yet deliverable (for the `DropFifo` mutant).
    #[cfg(feature = "mutants")]
    pub(crate) fn ooo(&self) -> impl Iterator<Item = &Data> {
        self.ooo.values()
    }

    /// Messages `from..=to` that are held (in order).
    pub(crate) fn range(&self, from: u64, to: u64) -> impl Iterator<Item = &Data> {
        (from.max(self.base)..=to.min(self.received)).filter_map(|s| self.get(s))
    }

    /// Stored messages from `from` to `to`, also those held beyond a gap: what a restarted
    /// member standing in for its earlier life holds is the promisers' messages, above a gap
    /// (it has nothing of its own), and it must be able to forward them.
    ///
    /// It walks what is stored, never the numbers in between: `to` may come from a peer (a
    /// promise's received vector makes the cut), and walking up to one claiming 2^60 messages
    /// kept a coordinator busy for good (found by the `node_inputs` fuzz target).
    pub(crate) fn range_any(&self, from: u64, to: u64) -> impl Iterator<Item = &Data> {
        let beyond = from.max(self.base).max(self.received.saturating_add(1));
        let ooo = (beyond <= to).then(|| self.ooo.range(beyond..=to).map(|(_, d)| d));
        self.range(from, to).chain(ooo.into_iter().flatten())
    }

    /// Whether there is a known gap (something beyond `received` exists).
    pub(crate) fn has_gap(&self) -> bool {
        !self.ooo.is_empty() || self.highest_seen > self.received
    }

    /// Highest sequence number worth asking for.
    pub(crate) fn wanted_upto(&self) -> u64 {
        let ooo_max = self.ooo.keys().next_back().copied().unwrap_or(0);
        self.highest_seen.max(ooo_max)
    }

    /// Discards messages `..=upto` (which must be stable and delivered). Returns the payload
    /// bytes freed.
    pub(crate) fn trim(&mut self, upto: u64) -> u64 {
        let mut freed = 0;
        while self.base <= upto {
            match self.msgs.pop_front() {
                Some(d) => freed += d.payload.len() as u64,
                None => break,
            }
            self.base += 1;
        }
        freed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ViewId;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn d(seq: u64) -> Data {
        Data {
            view: ViewId(1),
            sender: 0,
            seq,
            order: crate::Order::Fifo,
            lamport: seq,
            deps: Vec::new(),
            payload: Bytes::from(seq.to_be_bytes().to_vec()),
        }
    }

    proptest! {
        /// Fed any arrival order with duplicates, the store's gap-free prefix is exactly the
        /// longest run 1..=k of distinct sequence numbers seen, in order.
        #[test]
        fn prefix_is_fifo(arrivals in proptest::collection::vec(1u64..40, 0..120)) {
            let mut s = SenderStore::new();
            let mut seen = std::collections::BTreeSet::new();
            for a in &arrivals {
                s.insert(d(*a), 64);
                seen.insert(*a);
            }
            let mut k = 0;
            while seen.contains(&(k + 1)) { k += 1; }
            prop_assert_eq!(s.received, k);
            let got: Vec<u64> = s.range(1, k).map(|m| m.seq).collect();
            prop_assert_eq!(got, (1..=k).collect::<Vec<_>>());
            prop_assert_eq!(s.has_gap(), seen.iter().any(|x| *x > k));
        }
    }

    proptest! {
        /// `range_any` gives exactly the stored messages in the range, gap-free ones and those
        /// beyond a gap, in order; and an end claimed far beyond them costs nothing (it walked
        /// every number up to it: a fuzzed promise claiming ~2^60 hung the coordinator).
        #[test]
        fn range_any_is_what_is_stored(arrivals in proptest::collection::vec(1u64..40, 0..120),
                                       from in 0u64..45, to in 0u64..45) {
            let mut s = SenderStore::new();
            let mut seen = std::collections::BTreeSet::new();
            for a in &arrivals {
                s.insert(d(*a), 64);
                seen.insert(*a);
            }
            let got: Vec<u64> = s.range_any(from, to).map(|m| m.seq).collect();
            let want: Vec<u64> = seen.iter().copied().filter(|x| *x >= from.max(1) && *x <= to).collect();
            prop_assert_eq!(got, want);
            let all: Vec<u64> = s.range_any(from, u64::MAX).map(|m| m.seq).collect();
            prop_assert_eq!(all, seen.iter().copied().filter(|x| *x >= from.max(1)).collect::<Vec<_>>());
        }
    }

    #[test]
    fn window_and_trim() {
        let mut s = SenderStore::new();
        assert_eq!(s.insert(d(5), 3), Insert::OutOfWindow);
        assert_eq!(s.insert(d(2), 3), Insert::Buffered);
        assert_eq!(s.insert(d(2), 3), Insert::Duplicate);
        assert_eq!(s.insert(d(1), 3), Insert::Advanced);
        assert_eq!(s.received, 2);
        assert_eq!(s.trim(1), 8);
        assert!(s.get(1).is_none());
        assert_eq!(s.get(2).map(|m| m.seq), Some(2));
    }
}
