//! The wire format: versioned, length-checked frames of protocol messages.
//!
//! A frame is `magic (2 bytes, big endian) | version (1 byte) | body`, where the body is a
//! [`FrameBody`] in postcard encoding. The transport delimits frames (the runtime prefixes a
//! length and a checksum); this module checks the size limit before decoding anything, so a
//! hostile length never drives an allocation. Decoding never panics, whatever the bytes: every
//! failure is a [`DecodeError`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::DecodeError;
use crate::id::{GroupId, Incarnation, MemberId, View, ViewId};
use crate::order::Order;

/// First two bytes of every frame.
pub const MAGIC: u16 = 0xC405;
/// The wire version this build speaks.
pub const VERSION: u8 = 3;
const HEADER_LEN: usize = 3;

/// What a frame carries: who sends it, to which incarnation, and a batch of messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameBody {
    /// The sending member.
    pub from: MemberId,
    /// The intended incarnation of the receiver, when known. A frame addressed to an earlier
    /// incarnation is dropped: it belongs to a life that is over.
    pub to: Option<MemberId>,
    /// The messages, processed in order.
    #[serde(deserialize_with = "budget::vec")]
    pub msgs: Vec<Msg>,
}

/// A Paxos-style ballot of a view change: higher wins; ties broken by the coordinator's id.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ballot {
    /// Round number.
    pub round: u64,
    /// The coordinator that runs this round.
    pub coord: MemberId,
}

/// A proposed next view and the flush cut of the current one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The view being ended.
    pub prev: ViewId,
    /// The view to install.
    pub next: View,
    /// Per sender rank of `prev`: every member moving from `prev` to `next` delivers exactly that
    /// sender's messages `1..=cut[rank]` in `prev`.
    #[serde(deserialize_with = "budget::vec")]
    pub cut: Vec<u64>,
    /// Members of `next` that start it without the application's state and wait for a state
    /// transfer (joiners, and members whose transfer in `prev` was cut off). Empty when state
    /// transfer is off. Members listed here deliver nothing of `prev`'s cut.
    #[serde(deserialize_with = "budget::vec")]
    pub loading: Vec<MemberId>,
    /// Members of `next` that are restarted nodes speaking for their earlier life in `prev`
    /// (recovery from a data directory): each replaces its node's old member, which promised
    /// through it, so it counts for that member in `prev`'s majority.
    #[serde(deserialize_with = "budget::vec")]
    pub recovered: Vec<MemberId>,
    /// The group this view belongs to; a joiner adopts it.
    pub group: GroupId,
}

/// A restarted node that speaks for its earlier life in a view change (see
/// docs/protocol/recovery.md): the member it joins the next view as, and the position of the
/// application state it holds on stable storage, if any.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejoin {
    /// Its new incarnation.
    pub new: MemberId,
    /// The application's durable state position (see `Node::set_durable`), if it has one.
    pub state: Option<u64>,
}

/// A multicast message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Data {
    /// The view it was sent in.
    pub view: ViewId,
    /// The sender's rank in that view.
    pub sender: u16,
    /// The sender's sequence number in that view (from 1).
    pub seq: u64,
    /// How it is ordered.
    pub order: Order,
    /// The sender's Lamport clock when sending (orders total and safe messages).
    pub lamport: u64,
    /// For causal and safe messages: per sender rank, how many messages the sender had
    /// delivered from it when sending (its causal past). Empty otherwise.
    #[serde(deserialize_with = "budget::vec")]
    pub deps: Vec<u64>,
    /// The application's bytes.
    #[serde(deserialize_with = "shared::deserialize")]
    pub payload: Bytes,
}

/// Acknowledgement and heartbeat: what the sender has received, and what it suspects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The view this is about.
    pub view: ViewId,
    /// Per sender rank: the highest sequence number received without gaps.
    #[serde(deserialize_with = "budget::vec")]
    pub received: Vec<u64>,
    /// The highest sequence number this member has sent (so receivers detect tail loss).
    pub sent: u64,
    /// Ranks this member's failure detector suspects.
    #[serde(deserialize_with = "budget::vec")]
    pub suspects: Vec<u16>,
    /// Whether this member is blocked (so the coordinator knows a view change is needed).
    pub wedged: bool,
    /// The sender's Lamport clock: every message it sends after `sent` has a larger timestamp.
    pub clock: u64,
    /// The sender holds the application's state (it is not loading it).
    pub holds_state: bool,
    /// The position up to which the sender's application state is on stable storage (see
    /// `Node::set_durable`); 0 if it keeps nothing.
    pub durable: u64,
}

/// Every protocol message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// A multicast.
    Data(Data),
    /// Heartbeat and acknowledgement.
    Ack(Ack),
    /// "Please retransmit sender's messages `from..=to`."
    Nak {
        /// View.
        view: ViewId,
        /// Sender rank.
        sender: u16,
        /// First missing sequence number.
        from: u64,
        /// Last wanted sequence number.
        to: u64,
    },
    /// A process asks to join (sent by the joiner, or forwarded by a member).
    Join {
        /// The joining member (new incarnation).
        joiner: MemberId,
        /// The group it belongs to, if it was ever a member of one: it is let into no other.
        group: Option<GroupId>,
        /// It is configured to found a group if none exists (see `NoGroup`).
        founding: bool,
    },
    /// Reply of a node that belongs to no group yet to a `Join`: a node configured to found a
    /// group does so only once a majority of its configured nodes said so, and none of them
    /// with a lower id is a founder too.
    NoGroup {
        /// The replier is configured to found a group itself.
        founding: bool,
    },
    /// Reply to a founder's `Join` from a member of a group, or from a node that heard of one:
    /// a group exists, so the founder only joins.
    InGroup {
        /// The group.
        group: GroupId,
    },
    /// A member asks to leave.
    Leave {
        /// Its view.
        view: ViewId,
    },
    /// View change, phase 1: the coordinator asks members to wedge and report.
    Prepare {
        /// View being changed.
        view: ViewId,
        /// The round.
        ballot: Ballot,
        /// The coordinator's received vector; promises carry only messages beyond it.
        #[serde(deserialize_with = "budget::vec")]
        coord_received: Vec<u64>,
    },
    /// Reply to `Prepare`: wedged; here is what I have.
    Promise {
        /// View.
        view: ViewId,
        /// The ballot promised.
        ballot: Ballot,
        /// The member's received vector.
        #[serde(deserialize_with = "budget::vec")]
        received: Vec<u64>,
        /// The proposal this member last accepted in this view, if any.
        accepted: Option<(Ballot, Proposal)>,
        /// Messages the coordinator lacks.
        #[serde(deserialize_with = "budget::vec")]
        msgs: Vec<Data>,
        /// Whether this member holds the application's state (it is not waiting for a state
        /// transfer). Fixed once the member is wedged.
        holds_state: bool,
        /// Sent by a restarted node on behalf of its earlier life (see [`Rejoin`]).
        rejoin: Option<Rejoin>,
    },
    /// Reply to `Prepare`/`Accept` with a stale ballot.
    Preempted {
        /// View.
        view: ViewId,
        /// The higher ballot already promised.
        ballot: Ballot,
    },
    /// View change, phase 2: accept this proposal.
    Accept {
        /// View.
        view: ViewId,
        /// The round.
        ballot: Ballot,
        /// The proposal.
        proposal: Proposal,
        /// Messages of the cut the acceptor lacks.
        #[serde(deserialize_with = "budget::vec")]
        msgs: Vec<Data>,
    },
    /// Reply to `Accept`.
    Accepted {
        /// View.
        view: ViewId,
        /// The round.
        ballot: Ballot,
    },
    /// The proposal is chosen: deliver the cut and install the next view.
    Install {
        /// The chosen proposal.
        proposal: Proposal,
        /// Messages of the cut the receiver may lack.
        #[serde(deserialize_with = "budget::vec")]
        msgs: Vec<Data>,
    },
    /// "I am still in view `have`: send me the install of the next one."
    InstallReq {
        /// The view the asker is in.
        have: ViewId,
    },
    /// "You are not a member of my view `view`, which is newer than yours", or, to a joiner,
    /// "your request is stale: your node has this incarnation or a newer one".
    NotMember {
        /// The replier's view.
        view: ViewId,
        /// The newest incarnation of the receiver's node the replier knows of (the receiver's
        /// own if it knows none newer): the receiver re-joins above it, so that a restart whose
        /// incarnation came from a clock that went back is not refused again. At most
        /// [`MAX_INCARNATION`].
        newest: Incarnation,
    },
    /// A piece of the donor's checkpoint for a member loading state in `view`.
    StateChunk {
        /// The view whose boundary the checkpoint was taken at.
        view: ViewId,
        /// Byte offset of `data` in the checkpoint.
        offset: u64,
        /// The bytes.
        data: Bytes,
        /// This is the end of the checkpoint.
        last: bool,
    },
    /// The loading member's flow control: it has consumed the checkpoint up to `offset`.
    StateAck {
        /// The view of the transfer.
        view: ViewId,
        /// Bytes the application has taken.
        offset: u64,
        /// The whole checkpoint was loaded.
        done: bool,
    },
    /// Piece `index` of `count` of an encoded frame too large to send whole (`frag.rs`): the
    /// receiver puts the pieces of frame `id` together and handles the frame.
    Frag {
        /// The fragmented frame, numbered by its sender.
        id: u64,
        /// This piece's place, from 0.
        index: u32,
        /// Pieces in all.
        count: u32,
        /// The piece's bytes.
        #[serde(deserialize_with = "shared::deserialize")]
        data: Bytes,
    },
}

impl Msg {
    /// A rough upper bound of the encoded size, for splitting batches into frames.
    pub(crate) fn size_hint(&self) -> usize {
        let data = |d: &[Data]| d.iter().map(|d| d.payload.len() + 32 + 10 * d.deps.len()).sum::<usize>();
        match self {
            Msg::Data(d) => d.payload.len() + 32 + 10 * d.deps.len(),
            Msg::Ack(a) => 32 + 10 * (a.received.len() + a.suspects.len()),
            Msg::Promise { received, msgs, .. } => 256 + 10 * received.len() + data(msgs),
            Msg::Accept { msgs, .. } | Msg::Install { msgs, .. } => 512 + data(msgs),
            Msg::StateChunk { data, .. } => 48 + data.len(),
            Msg::Frag { data, .. } => 48 + data.len(),
            _ => 64,
        }
    }
}

/// Encodes a frame.
pub fn encode(body: &FrameBody) -> Bytes {
    let mut out = Vec::with_capacity(HEADER_LEN + body.msgs.iter().map(Msg::size_hint).sum::<usize>());
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.push(VERSION);
    // Serializing plain data into a Vec cannot fail; if it ever did, send an empty body and let
    // the receiver reject it rather than panic here.
    match postcard::serialize_with_flavor(body, VecFlavor(out)) {
        Ok(v) => Bytes::from(v),
        Err(_) => Bytes::new(),
    }
}

/// Serializes into a `Vec` copying byte strings (payloads, checkpoint pieces) in one go:
/// postcard's `to_extend` pushes them byte by byte, which made encoding cost about 1 ns per
/// payload byte (measured by `st-bench`).
struct VecFlavor(Vec<u8>);

impl postcard::ser_flavors::Flavor for VecFlavor {
    type Output = Vec<u8>;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

/// Decodes a frame of at most `max_len` bytes, like [`decode`], with the multicast payloads
/// sharing `frame`'s memory instead of copied out of it (no allocation or copy per message).
/// A payload kept keeps the whole frame's buffer alive.
pub fn decode_shared(frame: &Bytes, max_len: usize) -> Result<FrameBody, DecodeError> {
    let _source = shared::Source::set(frame);
    decode(frame, max_len)
}

/// Payloads as slices of the frame they are decoded from (`decode_shared`), else copied.
mod shared {
    use std::cell::RefCell;

    use bytes::Bytes;
    use serde::de::{self, Deserializer, SeqAccess, Visitor};

    thread_local! {
        /// The frame `decode_shared` is decoding on this thread, if any.
        static SOURCE: RefCell<Option<Bytes>> = const { RefCell::new(None) };
    }

    /// Sets the frame being decoded for as long as it lives.
    pub(super) struct Source(());

    impl Source {
        pub(super) fn set(frame: &Bytes) -> Source {
            SOURCE.with_borrow_mut(|s| *s = Some(frame.clone()));
            Source(())
        }
    }

    impl Drop for Source {
        fn drop(&mut self) {
            SOURCE.with_borrow_mut(|s| *s = None);
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        d.deserialize_bytes(PayloadVisitor)
    }

    struct PayloadVisitor;

    impl<'de> Visitor<'de> for PayloadVisitor {
        type Value = Bytes;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a byte array")
        }

        fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Bytes, E> {
            Ok(SOURCE.with_borrow(|s| match s {
                Some(src) if within(src, v) => src.slice_ref(v),
                _ => Bytes::copy_from_slice(v),
            }))
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
            Ok(Bytes::copy_from_slice(v))
        }

        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
            Ok(Bytes::from(v))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
            let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(b) = seq.next_element::<u8>()? {
                v.push(b);
            }
            Ok(Bytes::from(v))
        }
    }

    /// Whether `part` lies within `whole`'s memory.
    fn within(whole: &[u8], part: &[u8]) -> bool {
        let (w, p) = (whole.as_ptr() as usize, part.as_ptr() as usize);
        p >= w && p + part.len() <= w + whole.len()
    }
}

/// Decodes a frame of at most `max_len` bytes.
pub fn decode(bytes: &[u8], max_len: usize) -> Result<FrameBody, DecodeError> {
    if bytes.len() > max_len {
        return Err(DecodeError::Oversized { len: bytes.len(), max: max_len });
    }
    let limit = MIN_DECODE_BUDGET.max(DECODE_BUDGET_PER_BYTE.saturating_mul(bytes.len()));
    let budget = budget::Budget::set(limit);
    let [m0, m1, version, rest @ ..] = bytes else {
        return Err(DecodeError::Truncated { len: bytes.len() });
    };
    let magic = u16::from_be_bytes([*m0, *m1]);
    if magic != MAGIC {
        return Err(DecodeError::BadMagic(magic));
    }
    if *version != VERSION {
        return Err(DecodeError::Version(*version));
    }
    let (body, trailing) =
        postcard::take_from_bytes::<FrameBody>(rest).map_err(|e| match budget.exceeded() {
            Some(value) => {
                DecodeError::Implausible { what: "decoded size of a frame", value, max: limit as u64 }
            }
            None => DecodeError::Body(e.to_string()),
        })?;
    if !trailing.is_empty() {
        return Err(DecodeError::Trailing(trailing.len()));
    }
    check_bounds(&body)?;
    Ok(body)
}

/// Memory a decoded frame may take beyond its payloads (which are slices of the frame or copies
/// of its bytes), per byte of the frame, with [`MIN_DECODE_BUDGET`] at least. Postcard's
/// integers take one byte on the wire for up to eight in memory and a small message two bytes
/// for a 264-byte `Msg`, so without a bound one frame of tiny messages from a peer decoded into
/// a hundred times its size. A correct peer's frames stay far below: its batches hold at most
/// [`MAX_FRAME_MSGS`] messages (about 17 MiB decoded at most), and a frame larger than a batch
/// holds one message whose payloads make up most of it.
pub const DECODE_BUDGET_PER_BYTE: usize = 4;

/// The least decode budget a frame gets, whatever its size (see [`DECODE_BUDGET_PER_BYTE`]).
pub const MIN_DECODE_BUDGET: usize = 32 << 20;

/// The most messages a node puts in one frame (it starts a new frame beyond them).
pub const MAX_FRAME_MSGS: usize = 1 << 16;

/// Counting what a frame decodes into, against the budget `decode` sets for it.
mod budget {
    use std::cell::Cell;
    use std::marker::PhantomData;

    use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

    thread_local! {
        /// Bytes left, bytes asked for in all, and whether they went past the budget, while
        /// `decode` runs on this thread.
        static LEFT: Cell<Option<(usize, u64, bool)>> = const { Cell::new(None) };
    }

    /// The budget of the decode under way; the one before it comes back when dropped.
    pub(super) struct Budget(Option<(usize, u64, bool)>);

    impl Budget {
        pub(super) fn set(limit: usize) -> Budget {
            Budget(LEFT.replace(Some((limit, 0, false))))
        }

        /// The bytes asked for, if they went past the budget.
        pub(super) fn exceeded(&self) -> Option<u64> {
            match LEFT.get() {
                Some((_, asked, true)) => Some(asked),
                _ => None,
            }
        }
    }

    impl Drop for Budget {
        fn drop(&mut self) {
            LEFT.set(self.0);
        }
    }

    /// Takes `n` bytes from the budget; false if they are not there (nothing set: no limit).
    fn charge(n: usize) -> bool {
        match LEFT.get() {
            None => true,
            Some((left, asked, over)) => {
                let asked = asked.saturating_add(n as u64);
                let ok = !over && left >= n;
                LEFT.set(Some((left.saturating_sub(n), asked, !ok)));
                ok
            }
        }
    }

    /// A `Vec` whose elements are charged to the budget as they are decoded.
    pub(crate) fn vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(Charged(PhantomData))
    }

    struct Charged<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for Charged<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a sequence")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            loop {
                if !charge(std::mem::size_of::<T>()) {
                    return Err(de::Error::custom("decoded size past the frame's budget"));
                }
                match seq.next_element()? {
                    Some(x) => out.push(x),
                    None => return Ok(out),
                }
            }
        }
    }
}

pub(crate) use budget::vec as budget_vec;

/// The most a Lamport clock (a message's `lamport`, an ack's `clock`) may be: a member's clock
/// grows by one per multicast and by merging its peers', so a correct group never comes near;
/// a peer claiming more would make the next multicast's clock overflow (a wrap breaks the
/// total order's keys).
pub const MAX_CLOCK: u64 = 1 << 62;

/// The most a `NotMember`'s `newest` may be: the receiver re-joins one above it, and re-joins
/// again one higher each time it is excluded, so a peer claiming more could make it overflow.
/// Incarnations drawn from the clock or a data directory (milliseconds times at most 2^16)
/// stay below it until about the year 4200.
pub const MAX_INCARNATION: u64 = 1 << 62;

fn check_bounds(body: &FrameBody) -> Result<(), DecodeError> {
    let bounded = |what, value: u64, max: u64| {
        if value > max {
            return Err(DecodeError::Implausible { what, value, max });
        }
        Ok(())
    };
    let check = |what, value: u64| bounded(what, value, MAX_CLOCK);
    let data = |msgs: &[Data]| msgs.iter().try_for_each(|d| check("message clock (lamport)", d.lamport));
    for msg in &body.msgs {
        match msg {
            Msg::Data(d) => check("message clock (lamport)", d.lamport)?,
            Msg::Ack(a) => check("acknowledged clock", a.clock)?,
            Msg::Promise { msgs, .. } | Msg::Accept { msgs, .. } | Msg::Install { msgs, .. } => data(msgs)?,
            Msg::NotMember { newest, .. } => bounded("newest incarnation", newest.0, MAX_INCARNATION)?,
            Msg::Frag { index, count, .. } => {
                bounded("fragment count", u64::from(*count), u64::from(crate::frag::MAX_PARTS))?;
                if index >= count {
                    return Err(DecodeError::Implausible {
                        what: "fragment index",
                        value: u64::from(*index),
                        max: u64::from(count.saturating_sub(1)),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member() -> impl Strategy<Value = MemberId> {
        (0u64..8, 0u64..4).prop_map(|(n, i)| MemberId::new(n, i))
    }

    fn data() -> impl Strategy<Value = Data> {
        (
            (0u64..5, 0u16..7, 1u64..1000),
            (0usize..4, 0..=MAX_CLOCK, proptest::collection::vec(0u64..100, 0..4)),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|((v, s, q), (o, l, deps), p)| Data {
                view: ViewId(v),
                sender: s,
                seq: q,
                order: Order::ALL[o],
                lamport: l,
                deps,
                payload: Bytes::from(p),
            })
    }

    fn msg() -> impl Strategy<Value = Msg> {
        let vec = proptest::collection::vec(0u64..100, 0..7);
        prop_oneof![
            data().prop_map(Msg::Data),
            (vec.clone(), any::<bool>()).prop_map(|(r, w)| Msg::Ack(Ack {
                view: ViewId(3),
                received: r,
                sent: 9,
                suspects: vec![1, 2],
                wedged: w,
                clock: 77,
                holds_state: !w,
                durable: 5,
            })),
            (member(), any::<bool>()).prop_map(|(j, f)| Msg::Join {
                joiner: j,
                group: f.then_some(GroupId(0xfeed)),
                founding: f
            }),
            (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64), any::<bool>()).prop_map(
                |(offset, data, last)| Msg::StateChunk {
                    view: ViewId(4),
                    offset,
                    data: Bytes::from(data),
                    last
                }
            ),
            (0u64..9, 0..=MAX_INCARNATION)
                .prop_map(|(v, i)| Msg::NotMember { view: ViewId(v), newest: Incarnation(i) }),
            (
                any::<u64>(),
                1u32..=crate::frag::MAX_PARTS,
                any::<u32>(),
                proptest::collection::vec(any::<u8>(), 0..64)
            )
                .prop_map(|(id, count, i, data)| Msg::Frag {
                    id,
                    index: i % count,
                    count,
                    data: Bytes::from(data)
                }),
            (any::<u64>(), any::<bool>()).prop_map(|(offset, done)| Msg::StateAck {
                view: ViewId(4),
                offset,
                done
            }),
            (member(), vec.clone()).prop_map(|(c, r)| Msg::Prepare {
                view: ViewId(2),
                ballot: Ballot { round: 3, coord: c },
                coord_received: r
            }),
            (
                member(),
                proptest::collection::vec(member(), 1..5),
                vec,
                proptest::collection::vec(data(), 0..4)
            )
                .prop_map(|(c, ms, cut, msgs)| Msg::Install {
                    proposal: Proposal {
                        prev: ViewId(1),
                        next: View { id: ViewId(2), members: ms.clone() },
                        cut,
                        loading: ms.clone().into_iter().take(1).collect(),
                        recovered: ms.into_iter().skip(1).take(1).collect(),
                        group: GroupId(7),
                    },
                    msgs: {
                        let _ = c;
                        msgs
                    }
                }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        #[test]
        fn roundtrip(from in member(), to in proptest::option::of(member()), msgs in proptest::collection::vec(msg(), 0..6)) {
            let body = FrameBody { from, to, msgs };
            let bytes = encode(&body);
            prop_assert_eq!(decode(&bytes, 1 << 20), Ok(body));
        }

        #[test]
        fn shared_decoding_is_the_same(from in member(), msgs in proptest::collection::vec(msg(), 0..6)) {
            let bytes = encode(&FrameBody { from, to: None, msgs });
            let shared = decode_shared(&bytes, 1 << 20);
            prop_assert_eq!(&shared, &decode(&bytes, 1 << 20));
            // Payloads are slices of the frame, not copies.
            let range = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
            for m in shared.unwrap().msgs {
                if let Msg::Data(d) = m {
                    prop_assert!(d.payload.is_empty() || range.contains(&(d.payload.as_ptr() as usize)));
                }
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes, 1 << 20);
        }

        #[test]
        fn truncation_is_an_error(msgs in proptest::collection::vec(msg(), 1..4), cut in 0usize..1000) {
            let bytes = encode(&FrameBody { from: MemberId::new(1, 0), to: None, msgs });
            let cut = cut % bytes.len();
            prop_assert!(decode(&bytes[..cut], 1 << 20).is_err());
        }
    }

    #[test]
    fn limits_and_header() {
        let bytes = encode(&FrameBody { from: MemberId::new(1, 0), to: None, msgs: vec![] });
        assert_eq!(decode(&bytes, 2), Err(DecodeError::Oversized { len: bytes.len(), max: 2 }));
        assert_eq!(decode(&bytes[..2], 100), Err(DecodeError::Truncated { len: 2 }));
        let mut bad = bytes.to_vec();
        bad[2] = 9;
        assert_eq!(decode(&bad, 100), Err(DecodeError::Version(9)));
        bad[0] = 0;
        assert!(matches!(decode(&bad, 100), Err(DecodeError::BadMagic(_))));
        let mut long = bytes.to_vec();
        long.push(0);
        assert_eq!(decode(&long, 100), Err(DecodeError::Trailing(1)));
    }

    #[test]
    fn a_clock_near_overflow_is_refused_at_decode() {
        let data = |lamport| Data {
            view: ViewId(1),
            sender: 0,
            seq: 1,
            order: crate::Order::Total,
            lamport,
            deps: Vec::new(),
            payload: Bytes::new(),
        };
        let frame = |msgs| encode(&FrameBody { from: MemberId::new(1, 0), to: None, msgs });
        assert!(decode(&frame(vec![Msg::Data(data(MAX_CLOCK))]), 1 << 20).is_ok());
        let err = decode(&frame(vec![Msg::Data(data(u64::MAX))]), 1 << 20).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Implausible { what: "message clock (lamport)", value: u64::MAX, max: MAX_CLOCK }
        );
        let ack = Ack {
            view: ViewId(1),
            received: vec![0],
            sent: 0,
            suspects: Vec::new(),
            wedged: false,
            clock: MAX_CLOCK + 1,
            holds_state: true,
            durable: 0,
        };
        assert!(matches!(decode(&frame(vec![Msg::Ack(ack)]), 1 << 20), Err(DecodeError::Implausible { .. })));
    }

    #[test]
    fn an_incarnation_near_overflow_is_refused_at_decode() {
        let frame = |i| {
            let msgs = vec![Msg::NotMember { view: ViewId(1), newest: Incarnation(i) }];
            encode(&FrameBody { from: MemberId::new(1, 0), to: None, msgs })
        };
        assert!(decode(&frame(MAX_INCARNATION), 1 << 20).is_ok());
        assert_eq!(
            decode(&frame(u64::MAX), 1 << 20),
            Err(DecodeError::Implausible {
                what: "newest incarnation",
                value: u64::MAX,
                max: MAX_INCARNATION
            })
        );
    }

    /// One frame of tiny messages from a peer decoded into about a hundred times its size
    /// (issue 14, finding 3): now at most `DECODE_BUDGET_PER_BYTE` times, 32 MiB at least.
    #[test]
    fn a_frame_cannot_decode_into_much_more_than_its_size() {
        let frame = |msgs| encode(&FrameBody { from: MemberId::new(1, 0), to: None, msgs });
        // 200,000 two-byte messages: 400 KB on the wire, 52 MiB decoded.
        let tiny = frame(vec![Msg::InstallReq { have: ViewId(1) }; 200_000]);
        assert!(tiny.len() < 500_000);
        match decode(&tiny, 1 << 20) {
            Err(DecodeError::Implausible { what: "decoded size of a frame", value, max }) => {
                assert_eq!(max, MIN_DECODE_BUDGET as u64);
                assert!(value > max);
            }
            other => panic!("decoded: {:?}", other.map(|b| b.msgs.len())),
        }
        // Nested: an acknowledgement claiming five million senders (one byte each on the wire).
        let ack = Ack {
            view: ViewId(1),
            received: vec![0; 5_000_000],
            sent: 0,
            suspects: Vec::new(),
            wedged: false,
            clock: 0,
            holds_state: true,
            durable: 0,
        };
        let wide = frame(vec![Msg::Ack(ack)]);
        assert!(matches!(decode(&wide, 8 << 20), Err(DecodeError::Implausible { .. })));
        // What a correct node sends at most in one frame decodes: its largest count of small
        // multicasts.
        let data = Data {
            view: ViewId(1),
            sender: 0,
            seq: 1,
            order: crate::Order::Fifo,
            lamport: 0,
            deps: Vec::new(),
            payload: Bytes::from_static(b"x"),
        };
        let full = frame(vec![Msg::Data(data); MAX_FRAME_MSGS]);
        assert_eq!(decode(&full, 1 << 20).map(|b| b.msgs.len()), Ok(MAX_FRAME_MSGS));
        // And the budget is per decode: the next frame gets its own.
        assert!(decode(&frame(vec![Msg::InstallReq { have: ViewId(1) }]), 1 << 20).is_ok());
    }
}
