//! Fragmentation (as JGroups' FRAG): a message too large for one frame is sent as a frame of
//! its own, encoded whole, then cut into `Msg::Frag` pieces that travel in frames of at most
//! about one batch each; the receiver puts the frame back together and handles it as if it
//! had arrived whole (every check of a frame applies to it then).
//!
//! ```text
//! sender:   [Install{...36 MiB...}] ──encode──► frame bytes ──cut──► Frag 0/37 · Frag 1/37 · …
//! receiver: Frag i/37 ──► Reassembly (one partial frame per peer node) ──whole──► handle_body
//! ```
//!
//! Nothing is retransmitted here: a lost piece loses the frame, as a lost frame would be lost,
//! and the protocol's own resends (install resends, retransmission requests, the coordinator's
//! rounds) send it again. Each peer node has at most [`PARTIALS_PER_PEER`] partial frames
//! (pieces of consecutive frames may arrive mixed on a network that reorders), of at most
//! `Config::max_message` bytes together; the oldest is dropped for a new one beyond that, and
//! any that waits longer than [`STALE_AFTER_TICKS`] ticks.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};

use crate::id::{MemberId, NodeId};
use crate::time::Instant;

/// Most pieces one frame may be cut into (a count above it is refused unread): bounds the
/// bookkeeping of a partial frame whatever a peer claims.
pub(crate) const MAX_PARTS: u32 = 1 << 12;

/// A partial frame that got no piece for this many ticks is dropped (its sender died, or a
/// link broke and took the rest).
pub(crate) const STALE_AFTER_TICKS: u32 = 200;

/// What [`Reassembly::add`] made of a piece.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Added {
    /// Kept; more pieces are due.
    Kept,
    /// The last piece: the whole frame.
    Whole(Bytes),
    /// Refused: it claims more pieces than [`MAX_PARTS`], an index past its count, a count
    /// that differs from its frame's other pieces, or more bytes than the limit.
    Refused(&'static str),
}

#[derive(Debug)]
struct Partial {
    from: MemberId,
    id: u64,
    parts: Vec<Option<Bytes>>,
    have: u32,
    bytes: usize,
    last: Instant,
}

/// Partial frames kept per peer node.
pub(crate) const PARTIALS_PER_PEER: usize = 8;

/// The frames being put back together, a few per peer node.
#[derive(Debug, Default)]
pub(crate) struct Reassembly {
    partial: BTreeMap<NodeId, Vec<Partial>>,
}

impl Reassembly {
    /// Takes piece `index` of `count` of frame `id` from `from`; `max` bounds what one peer
    /// node's partial frames hold together.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add(
        &mut self,
        now: Instant,
        from: MemberId,
        id: u64,
        index: u32,
        count: u32,
        data: Bytes,
        max: usize,
    ) -> Added {
        if count == 0 || count > MAX_PARTS || index >= count {
            return Added::Refused("a piece numbered outside its frame's count");
        }
        let list = self.partial.entry(from.node).or_default();
        // Another life of the node: what its earlier one sent is lost.
        list.retain(|p| p.from == from);
        let at = match list.iter().position(|p| p.id == id) {
            Some(at) => at,
            None => {
                if list.len() >= PARTIALS_PER_PEER {
                    // The oldest is lost (its pieces were lost, or its sender moved on).
                    if let Some(oldest) = (0..list.len()).min_by_key(|&i| list[i].last) {
                        list.remove(oldest);
                    }
                }
                list.push(Partial {
                    from,
                    id,
                    parts: vec![None; count as usize],
                    have: 0,
                    bytes: 0,
                    last: now,
                });
                list.len() - 1
            }
        };
        if list[at].parts.len() != count as usize {
            list.remove(at);
            return Added::Refused("pieces of one frame with different counts");
        }
        let held: usize = list.iter().map(|p| p.bytes).sum();
        let p = &mut list[at];
        p.last = now;
        let Some(slot) = p.parts.get_mut(index as usize) else {
            return Added::Refused("a piece numbered outside its frame's count");
        };
        if slot.is_some() {
            return Added::Kept; // A duplicate.
        }
        if held.saturating_add(data.len()) > max {
            list.remove(at);
            return Added::Refused("fragmented frames larger than max_message");
        }
        p.bytes += data.len();
        *slot = Some(data);
        p.have += 1;
        if p.have < count {
            return Added::Kept;
        }
        let p = list.remove(at);
        let mut whole = BytesMut::with_capacity(p.bytes);
        for part in p.parts.into_iter().flatten() {
            whole.extend_from_slice(&part);
        }
        Added::Whole(whole.freeze())
    }

    /// Drops partial frames that got no piece since `before`.
    pub(crate) fn expire(&mut self, before: Instant) {
        for list in self.partial.values_mut() {
            list.retain(|p| p.last >= before);
        }
        self.partial.retain(|_, list| !list.is_empty());
    }

    /// Bytes held in partial frames.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.partial.values().flatten().map(|p| p.bytes).sum()
    }
}

/// Cuts an encoded frame into pieces of at most `piece` bytes (at least one).
pub(crate) fn cut(frame: &Bytes, piece: usize) -> Vec<Bytes> {
    let piece = piece.max(1);
    (0..frame.len().div_ceil(piece))
        .map(|i| frame.slice(i * piece..((i + 1) * piece).min(frame.len())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn pieces_in_any_order_make_the_frame_and_bounds_hold() {
        let frame = Bytes::from((0..10_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let pieces = cut(&frame, 1000);
        assert_eq!(pieces.len(), 10);
        let a = MemberId::new(1, 1);
        let mut r = Reassembly::default();
        let n = pieces.len() as u32;
        for i in (0..n).rev() {
            let got = r.add(t(i as u64), a, 7, i, n, pieces[i as usize].clone(), 1 << 20);
            if i == 0 {
                assert_eq!(got, Added::Whole(frame.clone()));
            } else {
                assert_eq!(got, Added::Kept);
            }
        }
        assert_eq!(r.bytes(), 0, "nothing held once whole");
        // Too large for the limit: refused, and nothing kept.
        assert_eq!(r.add(t(0), a, 8, 0, 10, pieces[0].clone(), 1500), Added::Kept);
        assert!(matches!(r.add(t(0), a, 8, 1, 10, pieces[1].clone(), 1500), Added::Refused(_)));
        assert_eq!(r.bytes(), 0);
        // Bad counts.
        assert!(matches!(r.add(t(0), a, 9, 3, 3, Bytes::new(), 1 << 20), Added::Refused(_)));
        assert!(matches!(r.add(t(0), a, 9, 0, MAX_PARTS + 1, Bytes::new(), 1 << 20), Added::Refused(_)));
        assert_eq!(r.add(t(0), a, 9, 0, 3, Bytes::from_static(b"x"), 1 << 20), Added::Kept);
        assert!(matches!(r.add(t(0), a, 9, 1, 4, Bytes::from_static(b"y"), 1 << 20), Added::Refused(_)));
        // Pieces of frames mixed (a network that reorders): each comes together.
        assert_eq!(r.add(t(1), a, 10, 0, 2, Bytes::from_static(b"w"), 1 << 20), Added::Kept);
        assert_eq!(r.add(t(2), a, 11, 0, 2, Bytes::from_static(b"y"), 1 << 20), Added::Kept);
        assert_eq!(
            r.add(t(3), a, 11, 1, 2, Bytes::from_static(b"z"), 1 << 20),
            Added::Whole(Bytes::from_static(b"yz"))
        );
        assert_eq!(
            r.add(t(3), a, 10, 1, 2, Bytes::from_static(b"x"), 1 << 20),
            Added::Whole(Bytes::from_static(b"wx"))
        );
        // At most PARTIALS_PER_PEER per peer: the oldest goes.
        for id in 0..=PARTIALS_PER_PEER as u64 {
            assert_eq!(r.add(t(10 + id), a, 100 + id, 0, 2, Bytes::from_static(b"p"), 1 << 20), Added::Kept);
        }
        assert_eq!(r.bytes(), PARTIALS_PER_PEER);
        assert_eq!(
            r.add(t(30), a, 100, 1, 2, Bytes::from_static(b"q"), 1 << 20),
            Added::Kept,
            "100 was dropped"
        );
        // A later life of the node: the earlier one's partial frames are dropped.
        let b = MemberId::new(1, 2);
        assert_eq!(r.add(t(31), b, 5, 0, 2, Bytes::from_static(b"n"), 1 << 20), Added::Kept);
        assert_eq!(r.bytes(), 1);
        r.expire(t(32));
        assert_eq!(r.bytes(), 0);
    }
}
