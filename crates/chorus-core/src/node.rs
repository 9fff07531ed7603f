//! The node: one process's protocol state machine, and the drive API (`handle_*`, `poll_*`).
//!
//! The node is in one of three states: joining (asking seeds to be let in), member of a view,
//! or left. View changes live in `gms.rs`, the multicast store in `mcast.rs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use core::time::Duration;

use crate::config::Config;
use crate::error::{ConfigError, DecodeError, FrameError, SendError};
use crate::event::{BlockReason, Event, SuspectReason};
use crate::gms::Coord;
use crate::id::{GroupId, Incarnation, MemberId, MsgId, NodeId, Seqno, View, ViewId};
use crate::marks::{Mark, Marks};
use crate::mcast::{Insert, SenderStore};
use crate::order::Order;
use crate::time::Instant;
use crate::wire::{self, Ack, Ballot, Data, FrameBody, Msg, Proposal, Rejoin};

/// Messages for one peer are batched into frames of about this many bytes.
const BATCH_BYTES: usize = 1 << 20;

/// A frame to send to a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The destination node.
    pub to: NodeId,
    /// The encoded frame.
    pub frame: Bytes,
}

/// Where the node is in its life.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Asking to join; not in a view yet.
    Joining,
    /// In a view, sending and delivering.
    Member,
    /// In a view, but blocked by a view change or a lost majority.
    Blocked,
    /// Restarted from its data directory: speaking for its earlier life in that life's last
    /// view until the next view is installed (see `Event::Recovering`).
    Recovering,
    /// Left the group; does nothing more.
    Left,
}

/// One member's protocol engine. See the crate docs for the drive loop.
#[derive(Debug)]
pub struct Node {
    pub(crate) cfg: Config,
    pub(crate) me: MemberId,
    pub(crate) state: State,
    /// Messages waiting to be framed, per destination (node, incarnation if known).
    pub(crate) outq: BTreeMap<(NodeId, Option<MemberId>), Vec<Msg>>,
    /// Frames of an earlier life of this node, sent before anything of the current one: the
    /// acceptances it had queued when it learned it was out (see `excluded_above`).
    farewell: Vec<Transmit>,
    events: VecDeque<Event>,
    pub(crate) marks: Marks,
    next_tick: Instant,
    /// Nodes to ask when (re-)joining.
    seeds: BTreeSet<NodeId>,
    /// The configured seeds (a founder needs a majority of them and itself to be fresh).
    pub(crate) seeds_configured: BTreeSet<NodeId>,
    /// The group this node belongs to, once it founded or joined one (or its data directory
    /// said so).
    pub(crate) group: Option<GroupId>,
    /// While this node may found a group: the configured nodes heard to belong to no group,
    /// whether each is a founder too, and when it last said so.
    pub(crate) founding: Option<BTreeMap<NodeId, (bool, Instant)>>,
    /// A group this joiner heard exists (from a member, or a joiner that heard of it): it tells
    /// founders so.
    pub(crate) known_group: Option<GroupId>,
    /// Something `poll_persist` reports changed.
    pub(crate) persist_dirty: bool,
    /// The application's state position on stable storage (`set_durable`).
    pub(crate) durable_pos: u64,
    /// The highest `Event::Durable` announced in this life.
    pub(crate) durable_emitted: u64,
    /// The highest view any life of this node installed (see `Persisted::last_view`).
    pub(crate) last_view: ViewId,
    /// The view-change state of a life that was excluded (or let go) after it promised or
    /// accepted in its view's change, until a life of this node installs a view again. It
    /// stays on disk (`poll_persist`), and a later life that speaks for it in that view
    /// speaks with those votes: one that forgot them could promise as if it had accepted
    /// nothing and let a second proposal be chosen for the same view (seed 2211).
    pub(crate) voted: Option<crate::recovery::Membership>,
    /// Per node excluded from a view while it did not ask to leave: how many times lately,
    /// when last, and when it may be let in again (see `note_exclusion`).
    exclusions: BTreeMap<NodeId, (u32, Instant, Instant)>,
    /// `leave()` was called.
    pub(crate) leaving: bool,
    /// Last time we answered a peer's stale or lagging message (rate limit), per life of the
    /// peer and per kind (an install resent, or another answer). One slot per node let the
    /// install resent every tick to a departed life of a node starve the answer its next life
    /// needed: a view's last two members, each in a different view, waited on each other for
    /// good (seed 7078088).
    last_reply: BTreeMap<(MemberId, bool), Instant>,
    /// A total or safe message arrived: acknowledge within `ack_delay` even if there is
    /// nothing to piggyback the acknowledgement on (delayed ack, as in TCP).
    ack_wanted: bool,
    pub(crate) ack_due: Option<Instant>,
    rng: u64,
    /// The latest `now` any entry point was called with (see `attend`).
    attended: Instant,
    /// This node's own pauses: how many were seen, and the last one's length.
    pauses: LocalPauses,
    /// Frames from peers arriving in pieces (`frag.rs`).
    frags: crate::frag::Reassembly,
    /// The number of the next frame this node cuts into pieces.
    next_frag: u64,
}

/// Times this node itself did not run (see [`Node::local_pauses`]).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalPauses {
    /// Pauses longer than twice the heartbeat interval.
    pub count: u64,
    /// The length of the last of them.
    pub last: Duration,
}

/// What this member's multicasts hold in memory until every member has them (stability), and
/// how much of the send window that uses (see [`Node::stability`]).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Stability {
    /// This member's own messages not yet stable (kept for retransmission and the flush).
    pub own_msgs: u64,
    /// Their payload bytes.
    pub own_bytes: u64,
    /// Messages of every sender of the view received here and not yet stable.
    pub all_msgs: u64,
    /// The send window: at most this many own messages unstable (`window_msgs`)...
    pub window_msgs: u64,
    /// ...and at most this many payload bytes (`window_bytes`).
    pub window_bytes: u64,
}

#[derive(Debug)]
pub(crate) enum State {
    Joining { next_retry: Instant },
    Member(Box<Member>),
    Left,
}

/// A member's state in one view. Replaced wholesale at every install.
#[derive(Debug)]
pub(crate) struct Member {
    pub view: View,
    /// This member's rank.
    pub me: usize,
    pub senders: Vec<SenderStore>,
    pub peers: Vec<Peer>,
    /// Per sender: highest sequence number every member is known to have received.
    pub stable: Vec<u64>,
    /// Payload bytes of this member's own unstable messages.
    pub unstable_bytes: u64,
    /// Lamport clock: the highest timestamp seen or sent in this view.
    pub clock: u64,
    /// Delivery and sending stopped (for this view, for good).
    pub wedged: bool,
    /// The received vector at the moment of wedging, which is what this member acknowledges
    /// from then on (see `freeze_acks`).
    pub frozen_acks: Option<Vec<u64>>,
    pub no_quorum_announced: bool,
    /// Highest ballot promised in this view.
    pub promised: Option<Ballot>,
    /// Proposal accepted in this view.
    pub accepted: Option<(Ballot, Proposal)>,
    /// The view change this member coordinates, if any.
    pub coord: Option<Coord>,
    /// Per ballot, the ranks known to have accepted it (Paxos learner state).
    pub learned: BTreeMap<Ballot, BTreeSet<usize>>,
    /// Highest round seen in any ballot of this view.
    pub max_round: u64,
    /// Do not start a round before this (another coordinator is at work).
    pub backoff_until: Instant,
    /// Join requests, with when each was last repeated: a joiner that stopped asking (it
    /// crashed or gave up) is not let in, so that it cannot become a dead member of the view.
    pub pending_joins: BTreeMap<MemberId, Instant>,
    pub pending_leaves: BTreeSet<MemberId>,
    /// The install that created this view, kept to resend to members that missed it.
    pub record: Option<InstallRecord>,
    pub next_hb: Instant,
    pub next_leave_retry: Instant,
    /// Waiting for a state transfer: deliver nothing until the donor's checkpoint is loaded.
    pub awaiting_state: bool,
    /// The transfer this member loads (while and after `awaiting_state`).
    pub incoming: Option<crate::transfer::Incoming>,
    /// The transfer this member is the donor of.
    pub outgoing: Option<crate::transfer::Outgoing>,
    /// While loading: the received vector at the moment the held new-view messages outgrew
    /// `Config::state_buffer`; acknowledged instead of the growing one (see `note_held`).
    pub state_acks: Option<Vec<u64>>,
    /// The chosen proposal that created this view (None for a group's first view), kept for
    /// `poll_persist`.
    pub created_by: Option<Proposal>,
    /// This member is a restarted node speaking for its earlier life (see `recovery`).
    pub recovering: Option<Rejoin>,
    /// Per node, the highest incarnation known to have been a member and departed. A join
    /// request from such an incarnation is a stale one (delayed or duplicated) and is ignored:
    /// a departed incarnation never comes back. Best effort (a joiner starts with none); the
    /// `InstallReq` rule catches what slips through.
    pub departed: BTreeMap<NodeId, crate::id::Incarnation>,
}

impl Member {
    /// Whether this member holds the application's state for a view change: not loading it,
    /// and not a restarted node's stand-in.
    pub fn holds_state(&self) -> bool {
        !self.awaiting_state && self.recovering.is_none()
    }

    /// Freezes what this member acknowledges at what it has received now, the vector it reports
    /// when it promises. Acknowledging more after promising would let a member outside the next
    /// view see a safe message as stable (so deliver it) while the cut, built from the promises,
    /// leaves it out: survivors would not deliver it, breaking uniform delivery (found by the
    /// simulator, seed 795649863056). Every later report is at least this, so everything this
    /// member ever acknowledged is in any cut it helps build.
    fn freeze_acks(&mut self) {
        if self.frozen_acks.is_none() {
            self.frozen_acks = Some(self.senders.iter().map(|s| s.received).collect());
        }
    }
}

/// What this member knows of another member of the view.
#[derive(Debug)]
pub(crate) struct Peer {
    pub last_heard: Instant,
    /// Its last reported received vector.
    pub acked: Vec<u64>,
    /// Ranks it reports suspecting.
    pub suspects: Vec<u16>,
    /// It reports being wedged.
    pub wedged: bool,
    /// Our failure detector suspects it now.
    pub suspected: bool,
    /// A `Suspected` event was emitted for it in this view.
    pub announced: bool,
    /// Our received vector changed since we last told it.
    pub ack_dirty: bool,
    /// It has sent us something in this view (so it installed it).
    pub heard_in_view: bool,
    /// Its last promise: every message it sends after `promise_sent` has a Lamport timestamp
    /// above `promise_clock`.
    pub promise_sent: u64,
    pub promise_clock: u64,
    /// It holds the application's state (not loading it), as of its last acknowledgement.
    pub holds_state: bool,
    /// Since when its acknowledgement of our messages has stood still at this value while we
    /// had sent more (None: it is not behind).
    pub lag: Option<(u64, Instant)>,
    /// The application state position it reported stored (`Node::set_durable`).
    pub durable: u64,
}

/// The chosen proposal that created the current view, and the messages of the previous view
/// that a member which missed the install may need.
#[derive(Debug)]
pub(crate) struct InstallRecord {
    pub proposal: Proposal,
    pub msgs: Vec<Data>,
}

impl Node {
    /// A node that will bootstrap or join as `config` says.
    pub fn new(config: Config, now: Instant) -> Result<Node, ConfigError> {
        config.validate()?;
        let me = config.member_id();
        let seeds: BTreeSet<NodeId> = config.seeds.iter().copied().filter(|s| *s != me.node).collect();
        let rng = config.seed ^ me.node.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ me.inc.0;
        // A node that was ever a member (its data directory says so) never founds a group.
        let founder = config.bootstrap && config.group.is_none() && config.recovery.is_none();
        let recovery = config.recovery.clone();
        let group = config.group;
        let last_view = config.last_view;
        let mut node = Node {
            cfg: config,
            me,
            state: State::Joining { next_retry: now },
            outq: BTreeMap::new(),
            farewell: Vec::new(),
            events: VecDeque::new(),
            marks: Marks::default(),
            next_tick: now,
            seeds_configured: seeds.clone(),
            seeds,
            group,
            founding: None,
            known_group: None,
            persist_dirty: false,
            durable_pos: 0,
            durable_emitted: 0,
            last_view,
            voted: None,
            exclusions: BTreeMap::new(),
            leaving: false,
            last_reply: BTreeMap::new(),
            ack_wanted: false,
            ack_due: None,
            rng: rng | 1,
            attended: now,
            pauses: LocalPauses::default(),
            frags: crate::frag::Reassembly::default(),
            next_frag: 0,
        };
        if let Some(r) = recovery {
            node.recover_into(now, r.membership, Rejoin { new: me, state: r.state });
        } else if founder {
            if node.seeds_configured.is_empty() {
                node.found(now);
            } else {
                node.founding = Some(BTreeMap::new());
            }
        }
        Ok(node)
    }

    /// This member's identity (changes when the node re-joins after exclusion).
    pub fn member_id(&self) -> MemberId {
        self.me
    }

    /// The installed view, if any.
    pub fn view(&self) -> Option<&View> {
        match &self.state {
            State::Member(m) => Some(&m.view),
            _ => None,
        }
    }

    /// The next view of the proposal this member accepted (or, as coordinator, proposed) to end
    /// its installed view, if any. Once a majority of the installed view accepted it, it is
    /// decided and will be installed, though no one may have installed it yet. Read-only: a
    /// harness uses it to keep a majority of that view alive (the simulator's fault injector).
    pub fn accepted_view(&self) -> Option<&View> {
        self.member().and_then(|m| m.accepted.as_ref()).map(|(_, p)| &p.next)
    }

    /// Where the node is in its life.
    pub fn status(&self) -> Status {
        match &self.state {
            State::Joining { .. } => Status::Joining,
            State::Member(m) if m.recovering.is_some() => Status::Recovering,
            State::Member(m) if m.wedged => Status::Blocked,
            State::Member(_) => Status::Member,
            State::Left => Status::Left,
        }
    }

    /// Whether a multicast would be accepted now.
    pub fn can_send(&self) -> bool {
        match &self.state {
            State::Member(m) => !m.wedged && !m.awaiting_state && self.window_allows(m, 0),
            _ => false,
        }
    }

    /// The times this node itself did not run for longer than twice the heartbeat interval
    /// (stopped, swapped out, starved of CPU): the runtime logs them.
    pub fn local_pauses(&self) -> LocalPauses {
        self.pauses
    }

    /// Called first by every entry point that is given the time. The node asks to be called at
    /// least every `tick_interval` (`poll_timeout`); a longer gap means this process did not
    /// run, and meanwhile its peers' frames waited unread in its sockets. Time this node did
    /// not listen is not held against them: their silence, their standing acknowledgements and
    /// a round's deadline count only the time it listened. Otherwise a node that stalls (for a
    /// long flush, a swap, a starved CPU) accuses every peer at once when it resumes, before it
    /// reads what they sent (Cassandra's failure detector ignores local pauses for the same
    /// reason). Its peers, who did run, still judge it by its own silence.
    pub(crate) fn attend(&mut self, now: Instant) {
        let gap = now.since(self.attended);
        if now > self.attended {
            self.attended = now;
        }
        let Some(pause) = gap.checked_sub(self.cfg.tick_interval).filter(|p| !p.is_zero()) else {
            return;
        };
        if gap > self.cfg.heartbeat_interval * 2 {
            self.pauses.count += 1;
            self.pauses.last = gap;
            self.marks.hit(Mark::LocalPause);
        }
        let State::Member(m) = &mut self.state else { return };
        let later = |t: &mut Instant| *t = (*t + pause).min(now);
        for p in &mut m.peers {
            later(&mut p.last_heard);
            if let Some((_, since)) = &mut p.lag {
                later(since);
            }
        }
        if let Some(c) = &mut m.coord {
            later(&mut c.started);
        }
    }

    /// Unstable messages and the send window's use, for metrics. Zero outside a view.
    pub fn stability(&self) -> Stability {
        let mut s = Stability {
            window_msgs: u64::from(self.cfg.window_msgs),
            window_bytes: self.cfg.window_bytes,
            ..Stability::default()
        };
        if let Some(m) = self.member() {
            s.own_msgs = m.senders[m.me].received.saturating_sub(m.stable[m.me]);
            s.own_bytes = m.unstable_bytes;
            s.all_msgs =
                (0..m.senders.len()).map(|r| m.senders[r].received.saturating_sub(m.stable[r])).sum();
        }
        s
    }

    /// Coverage marks hit so far.
    pub fn marks(&self) -> &Marks {
        &self.marks
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Left => None,
            _ => Some(self.ack_due.map_or(self.next_tick, |t| t.min(self.next_tick))),
        }
    }

    /// The next event for the application. Taking a state chunk acknowledges it to the donor
    /// (flow control), so this may queue a frame: drain `poll_transmit` after it too.
    pub fn poll_event(&mut self) -> Option<Event> {
        let ev = self.events.pop_front()?;
        self.consumed(&ev);
        Some(ev)
    }

    /// The next frame to send. Messages for one peer are batched into as few frames as the
    /// frame size limit allows, and carry a piggybacked acknowledgement.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.farewell.pop() {
            return Some(t);
        }
        let (key, msgs) = self.outq.pop_first()?;
        Some(self.transmit(key, msgs))
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// [`Node::poll_transmit`] for the destinations `ready` accepts only: a driver whose queue
    /// for a slow peer is full leaves that peer's messages here, where they wait (and where a
    /// large message's pieces are not lost to a full queue) until it has room. Bound what
    /// waits with [`Node::trim_waiting`].
    pub fn poll_transmit_where(&mut self, mut ready: impl FnMut(NodeId) -> bool) -> Option<Transmit> {
        if let Some(i) = self.farewell.iter().position(|t| ready(t.to)) {
            return Some(self.farewell.swap_remove(i));
        }
        let key = *self.outq.keys().find(|(node, _)| ready(*node))?;
        let msgs = self.outq.remove(&key)?;
        Some(self.transmit(key, msgs))
    }

    /// Drops the oldest messages waiting for any destination beyond `max` bytes (by their
    /// encoded size, roughly), as a network drops what it cannot carry: the protocol sends
    /// again what matters. Returns how many were dropped.
    pub fn trim_waiting(&mut self, max: usize) -> usize {
        let mut dropped = 0;
        for msgs in self.outq.values_mut() {
            let mut size: usize = msgs.iter().map(Msg::size_hint).sum();
            let mut cut = 0;
            while size > max && cut < msgs.len() {
                size -= msgs[cut].size_hint();
                cut += 1;
            }
            if cut > 0 {
                msgs.drain(..cut);
                dropped += cut;
            }
        }
        self.outq.retain(|_, msgs| !msgs.is_empty());
        dropped
    }

    fn transmit(&mut self, (node, to): (NodeId, Option<MemberId>), mut msgs: Vec<Msg>) -> Transmit {
        // Batches of up to 1 MiB: many small messages per frame (one write per many messages
        // at the transport), but no huge frames: a frame of several MiB costs page faults to
        // allocate (st-bench: 1 ns per byte with 8 MiB frames) and delays what follows it.
        let budget = (self.cfg.max_frame / 2).min(BATCH_BYTES);
        // A message larger than a batch (a view change's flush can carry a window of every
        // member) goes as a frame of its own, cut into pieces that take one frame each.
        if msgs.first().is_some_and(|m| m.size_hint() > budget && !matches!(m, Msg::Frag { .. })) {
            let big = msgs.remove(0);
            let whole = wire::encode(&FrameBody { from: self.me, to, msgs: vec![big] });
            let pieces = crate::frag::cut(&whole, budget.saturating_sub(256).max(1024));
            let (id, count) = (self.next_frag, pieces.len() as u32);
            self.next_frag += 1;
            self.marks.hit(Mark::Fragmented);
            let frags = pieces.into_iter().enumerate().map(|(i, data)| Msg::Frag {
                id,
                index: i as u32,
                count,
                data,
            });
            msgs.splice(0..0, frags);
        }
        let mut size = 0;
        let mut split = msgs.len();
        for (i, m) in msgs.iter().enumerate() {
            size += m.size_hint();
            // By count too: the receiver's decode budget allows so many (`wire::MAX_FRAME_MSGS`).
            if (size > budget && i > 0) || i == wire::MAX_FRAME_MSGS {
                split = i;
                break;
            }
        }
        if split < msgs.len() {
            let rest = msgs.split_off(split);
            self.outq.insert((node, to), rest);
        }
        if let (Some(to), State::Member(m)) = (to, &mut self.state) {
            if let Some(r) = m.view.rank_of(to) {
                if m.peers[r].ack_dirty {
                    m.peers[r].ack_dirty = false;
                    msgs.push(Msg::Ack(ack_of(m, self.durable_pos)));
                }
            }
        }
        #[allow(unused_mut)]
        let mut from = self.me;
        #[cfg(feature = "mutants")]
        if self.cfg.mutant == Some(crate::Mutant::WrongSender) && self.random().is_multiple_of(100) {
            from.node = NodeId(from.node.0 ^ 1);
        }
        let frame = wire::encode(&FrameBody { from, to, msgs });
        Transmit { to: node, frame }
    }

    /// Runs timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.attend(now);
        if self.ack_due.is_some_and(|t| t <= now) {
            self.ack_due = None;
            self.flush_acks();
        }
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + self.cfg.tick_interval;
        let stale = (self.cfg.tick_interval * crate::frag::STALE_AFTER_TICKS).as_nanos();
        self.frags.expire(Instant::from_nanos(
            now.as_nanos().saturating_sub(u64::try_from(stale).unwrap_or(u64::MAX)),
        ));
        match &mut self.state {
            State::Left => {}
            State::Joining { next_retry } => {
                if now >= *next_retry {
                    *next_retry = now + self.cfg.join_retry_interval;
                    let seeds: Vec<NodeId> = self.seeds.iter().copied().collect();
                    let (group, founding) = (self.group, self.founding.is_some());
                    for s in seeds {
                        self.queue(s, None, Msg::Join { joiner: self.me, group, founding });
                    }
                    self.founding_tick(now);
                }
            }
            State::Member(_) => self.member_tick(now),
        }
    }

    /// Multicasts `payload` to the current view in FIFO order: it is delivered to every
    /// member that stays in the view (this one included), after this member's earlier ones.
    pub fn multicast(&mut self, now: Instant, payload: Bytes) -> Result<MsgId, SendError> {
        self.multicast_ordered(now, payload, Order::Fifo)
    }

    /// Multicasts `payload` with the given ordering (see [`Order`]). FIFO per sender holds in
    /// every mode; this member delivers its own message too, when its order allows.
    pub fn multicast_ordered(
        &mut self,
        now: Instant,
        payload: Bytes,
        order: Order,
    ) -> Result<MsgId, SendError> {
        self.attend(now);
        if payload.len() > self.cfg.max_payload {
            return Err(SendError::TooLarge { len: payload.len(), max: self.cfg.max_payload });
        }
        let m = match &self.state {
            State::Member(m) => m,
            State::Joining { .. } => return Err(SendError::NotMember),
            State::Left => return Err(SendError::Left),
        };
        if m.wedged || self.leaving {
            return Err(SendError::Blocked);
        }
        if m.awaiting_state {
            return Err(SendError::AwaitingState);
        }
        if !self.window_allows(m, payload.len()) {
            self.marks.hit(Mark::WindowFull);
            return Err(SendError::WindowFull);
        }
        let me_id = self.me;
        let Some(m) = self.member_mut() else { return Err(SendError::NotMember) };
        let me = m.me;
        let seq = m.senders[me].received + 1;
        // Peers' clocks are at most `wire::MAX_CLOCK` (checked at decode), far from overflow.
        m.clock = m.clock.saturating_add(1);
        let deps = if order.carries_deps() {
            m.senders.iter().enumerate().map(|(r, st)| if r == me { seq - 1 } else { st.delivered }).collect()
        } else {
            Vec::new()
        };
        let data = Data { view: m.view.id, sender: me as u16, seq, order, lamport: m.clock, deps, payload };
        m.unstable_bytes += data.payload.len() as u64;
        let id = MsgId { sender: me_id, view: m.view.id, seq: Seqno(seq) };
        let targets: Vec<MemberId> =
            m.view.members.iter().enumerate().filter(|(r, _)| *r != me).map(|(_, x)| *x).collect();
        m.senders[me].insert(data.clone(), u64::MAX);
        for p in m.peers.iter_mut() {
            p.ack_dirty = true;
        }
        for t in targets {
            self.queue_member(t, Msg::Data(data.clone()));
        }
        // Our own message is received by us: in a view of one that alone makes it stable.
        self.update_stability();
        self.pump();
        Ok(id)
    }

    /// Asks to leave the group gracefully. The node goes on taking part in view changes until
    /// a view without it is installed, then emits `Event::Left`.
    pub fn leave(&mut self, now: Instant) {
        self.attend(now);
        if self.leaving {
            return;
        }
        self.leaving = true;
        match &mut self.state {
            State::Joining { .. } => self.finish_left(),
            State::Member(m) => {
                m.next_leave_retry = now;
                m.pending_leaves.insert(self.me);
                self.member_tick(now);
            }
            State::Left => {}
        }
    }

    /// Feeds bytes received from peer `from` (as authenticated by the transport). A frame
    /// that fails validation changes nothing and is reported as an error.
    pub fn handle_frame(&mut self, now: Instant, from: NodeId, frame: &[u8]) -> Result<(), FrameError> {
        let body =
            wire::decode(frame, self.cfg.max_frame).map_err(|why| FrameError::Malformed { from, why })?;
        self.handle_body(now, from, body)
    }

    /// [`Node::handle_frame`] for a frame held in `Bytes`: the payloads delivered share its
    /// memory instead of being copied out of it (an application that keeps a payload keeps the
    /// frame's buffer).
    pub fn handle_frame_bytes(
        &mut self,
        now: Instant,
        from: NodeId,
        frame: &Bytes,
    ) -> Result<(), FrameError> {
        let body = wire::decode_shared(frame, self.cfg.max_frame)
            .map_err(|why| FrameError::Malformed { from, why })?;
        self.handle_body(now, from, body)
    }

    fn handle_body(&mut self, now: Instant, from: NodeId, body: FrameBody) -> Result<(), FrameError> {
        self.attend(now);
        if body.from.node != from {
            return Err(FrameError::Impersonation { from, claimed: body.from.node });
        }
        let mut body = body;
        if body.msgs.iter().any(|m| matches!(m, Msg::Frag { .. })) {
            let (frags, rest) =
                std::mem::take(&mut body.msgs).into_iter().partition(|m| matches!(m, Msg::Frag { .. }));
            body.msgs = rest;
            self.take_pieces(now, from, body.from, frags)?;
            if body.msgs.is_empty() {
                return Ok(());
            }
        }
        let sender = body.from;
        // A restarted node speaking for its earlier life also takes what is sent to the new
        // incarnation it joins the next view as (the install, to begin with), and to any life
        // of its node in between (a restart that crashed too: it speaks for that one next).
        let future = self.member().and_then(|m| m.recovering).map(|r| r.new);
        let mine = |to: MemberId| {
            to == self.me
                || future.is_some_and(|f| to.node == f.node && to.inc > self.me.inc && to.inc <= f.inc)
        };
        // A joiner with a data directory takes an install meant for an earlier life of its
        // node: that life may never have installed the view, and then this one stands in for
        // it there (see `handle_msg`). Members resend a view's install to the members they have
        // not heard from, so this is how a restart learns of a view its earlier life missed
        // (seed 7017391: without it, a two-member view whose joiner crashed before installing
        // waited forever for that joiner's voice).
        let joining = matches!(self.state, State::Joining { .. }) && self.cfg.durable_membership;
        let earlier = |to: MemberId| to.node == self.me.node && to.inc < self.me.inc;
        if joining && body.to.is_some_and(earlier) {
            for msg in body.msgs {
                if matches!(msg, Msg::Install { .. }) {
                    self.handle_msg(now, sender, msg);
                }
            }
            return Ok(());
        }
        if body.to.is_some_and(|to| !mine(to)) {
            // Meant for an earlier life of this node: the sender still believes in a view that
            // held it. Act on nothing, but tell the sender if it is left behind.
            for msg in &body.msgs {
                if let Some(v) = msg_view(msg) {
                    if self.member().is_some_and(|m| v < m.view.id && !m.view.contains(sender)) {
                        self.on_other_view(now, sender, v);
                        break;
                    }
                }
            }
            return Ok(());
        }
        // A member is heard when it speaks in the view. Requests to join are not that: a joiner
        // let into this view whose install never reaches it (one larger than its link takes)
        // asks again and again, and counting that as liveness kept it in the view for good,
        // never acknowledging, with total and safe delivery stopped behind it.
        let speaks = body.msgs.iter().any(|m| !matches!(m, Msg::Join { .. }));
        if let (State::Member(m), true) = (&mut self.state, speaks) {
            if let Some(r) = m.view.rank_of(sender) {
                m.peers[r].last_heard = now;
            }
        }
        for msg in body.msgs {
            if matches!(self.state, State::Left) {
                break;
            }
            self.handle_msg(now, sender, msg);
        }
        if std::mem::take(&mut self.ack_wanted) && self.ack_due.is_none() {
            self.ack_due = Some(now + self.cfg.ack_delay);
        }
        Ok(())
    }

    /// Puts pieces of fragmented frames together (`frag.rs`), and handles each frame they
    /// complete as if it had arrived whole: every check of a frame applies to it.
    fn take_pieces(
        &mut self,
        now: Instant,
        from: NodeId,
        sender: MemberId,
        frags: Vec<Msg>,
    ) -> Result<(), FrameError> {
        let max = self.cfg.max_message;
        for f in frags {
            let Msg::Frag { id, index, count, data } = f else { continue };
            match self.frags.add(now, sender, id, index, count, data, max) {
                crate::frag::Added::Kept => {}
                crate::frag::Added::Refused(what) => {
                    let why =
                        DecodeError::Implausible { what, value: u64::from(index), max: u64::from(count) };
                    return Err(FrameError::Malformed { from, why });
                }
                crate::frag::Added::Whole(frame) => {
                    self.marks.hit(Mark::Reassembled);
                    let inner = wire::decode_shared(&frame, max)
                        .map_err(|why| FrameError::Malformed { from, why })?;
                    if inner.msgs.iter().any(|m| matches!(m, Msg::Frag { .. })) {
                        let why = DecodeError::Implausible {
                            what: "fragments inside a fragmented frame",
                            value: 1,
                            max: 0,
                        };
                        return Err(FrameError::Malformed { from, why });
                    }
                    self.handle_body(now, from, inner)?;
                }
            }
        }
        Ok(())
    }

    fn handle_msg(&mut self, now: Instant, from: MemberId, msg: Msg) {
        if let State::Joining { .. } = self.state {
            match msg {
                // A joiner holds no state: it never enters a view as one who gives it (that is
                // for a restarted node still standing in for its earlier life).
                Msg::Install { proposal, msgs }
                    if proposal.next.contains(self.me)
                        && proposal.next.members.len() <= self.cfg.max_members
                        && self.group.is_none_or(|g| g == proposal.group)
                        && (!self.cfg.state_transfer || proposal.loading.contains(&self.me)) =>
                {
                    self.group = Some(proposal.group);
                    self.founding = None;
                    // Keep the install (it carries the unstable part of the cut) to resend to
                    // members that missed it: this joiner may be the only one that got it.
                    let next = proposal.next.clone();
                    let joined = next.members.clone();
                    self.install_view(now, next, joined, Vec::new(), Some(InstallRecord { proposal, msgs }));
                }
                // A view that names an earlier life of this node, which never installed it (its
                // data directory would say so): that life did nothing in it, so this one speaks
                // for it there, with an empty acceptor state (a view change may need its voice).
                Msg::Install { proposal, .. }
                    if self.cfg.durable_membership
                        && proposal.next.id > self.last_view
                        && self.group.is_none_or(|g| g == proposal.group)
                        && proposal.next.members.len() <= self.cfg.max_members
                        && proposal
                            .next
                            .members
                            .iter()
                            .any(|x| x.node == self.me.node && x.inc < self.me.inc) =>
                {
                    let me = self.me;
                    if let Some(earlier) =
                        proposal.next.members.iter().copied().find(|x| x.node == me.node && x.inc < me.inc)
                    {
                        // With the votes that life gave there, if it gave any (`voted`); none if
                        // a life of this node voted in a later view's change (a stale install).
                        let kept = self.voted.clone().filter(|v| v.me.node == me.node);
                        let membership = match kept {
                            Some(v) if v.me == earlier && v.view.id == proposal.next.id => Some(v),
                            Some(v) if v.view.id >= proposal.next.id => None,
                            _ => Some(crate::recovery::Membership {
                                view: proposal.next.clone(),
                                me: earlier,
                                created_by: Some(proposal.clone()),
                                promised: None,
                                accepted: None,
                            }),
                        };
                        if let Some(membership) = membership {
                            self.group = Some(proposal.group);
                            self.founding = None;
                            self.recover_into(now, membership, Rejoin { new: me, state: None });
                        }
                    }
                }
                // Let in and excluded again before this joiner heard of it, or its node has a
                // newer incarnation (a restart whose clock went back): join above it. Any answer
                // addressed to this incarnation holds for good (a life's incarnation is fixed,
                // and the newest known of its node only grows); one addressed to an earlier life
                // never gets here (`handle_body`).
                Msg::NotMember { view, newest } if from.node != self.me.node => {
                    self.excluded_above(now, Some(view), Some(newest))
                }
                Msg::Join { joiner, group, founding } if joiner.node == from.node => {
                    self.on_join_while_joining(now, from, group, founding)
                }
                Msg::NoGroup { founding } => self.on_no_group(now, from.node, founding),
                Msg::InGroup { group } => self.on_in_group(group),
                _ => {}
            }
            return;
        }
        let State::Member(m) = &self.state else { return };
        let cur = m.view.id;
        let in_view = m.view.rank_of(from);
        // Any life of a node of this view: the transport authenticated the node, and a later
        // incarnation of a member (it restarted) speaks for the newer views it is in.
        let node_in_view = m.view.members.iter().any(|x| x.node == from.node);
        match msg {
            // A node asks for itself, or a member forwards a request: anyone else (an
            // authenticated peer outside the view) could otherwise replace a live member by
            // asking in its name for a newer incarnation.
            Msg::Join { joiner, group, founding } if joiner.node == from.node || node_in_view => {
                if group.is_none_or(|g| Some(g) == self.group) {
                    if let (true, Some(group)) = (founding, self.group) {
                        self.reply_limited(now, from, Msg::InGroup { group });
                    }
                    self.on_join(now, joiner);
                } else {
                    self.marks.hit(Mark::ForeignGroup);
                }
            }
            Msg::Join { .. } | Msg::NoGroup { .. } | Msg::InGroup { .. } => {}
            Msg::InstallReq { have } => self.on_install_req(now, from, have),
            // Only a node of this view (a member that moved on, or its next life) may tell this
            // one it was left behind; the newer view holds a majority of this one's nodes.
            // `newest` alone never excludes a member (the answer to a join of this incarnation
            // may arrive after it was let in); once excluded, it re-joins above it.
            Msg::NotMember { view, newest } => {
                if view > cur && node_in_view {
                    self.excluded_above(now, Some(view), Some(newest));
                }
            }
            Msg::Install { proposal, msgs } => {
                // From a member of this view; or resent by a member of the next one (a joiner
                // may be the last holder of the decision, its old members dead) when it is the
                // very proposal this member accepted: it can then only be the chosen one, so a
                // peer outside the view cannot make this member install anything else.
                // Or from a later life of a node of this view: the transport authenticated the
                // node, and a restart standing in for its member hands on the install it kept.
                let accepted = m.accepted.as_ref().is_some_and(|(_, p)| *p == proposal);
                let trusted = in_view.is_some() || node_in_view || (proposal.next.contains(from) && accepted);
                if proposal.prev == cur && trusted {
                    if in_view.is_none() {
                        self.marks.hit(Mark::InstallFromNextView);
                    }
                    self.on_install(now, proposal, msgs);
                } else if proposal.prev > cur {
                    self.reply_limited(now, from, Msg::InstallReq { have: cur });
                }
            }
            Msg::Data(d) if d.view == cur => {
                if let Some(r) = in_view {
                    if usize::from(d.sender) == r {
                        self.on_data(d);
                    }
                }
            }
            Msg::Ack(a) if a.view == cur => {
                if let Some(r) = in_view {
                    self.on_ack(r, a);
                }
            }
            Msg::Nak { view, sender, from: lo, to: hi } if view == cur => {
                if let Some(r) = in_view {
                    self.on_nak(r, sender, lo, hi);
                }
            }
            Msg::StateChunk { view, offset, data, last } if view == cur => {
                if in_view.is_some() {
                    self.on_state_chunk(from, view, offset, data, last);
                }
            }
            Msg::StateAck { view, offset, done } if view == cur => {
                if in_view.is_some() {
                    self.on_state_ack(from, view, offset, done);
                }
            }
            Msg::Leave { view } if view == cur => {
                if in_view.is_some() {
                    if let Some(m) = self.member_mut() {
                        m.pending_leaves.insert(from);
                    }
                }
            }
            Msg::Prepare { view, ballot, coord_received } if view == cur => {
                if in_view.is_some() {
                    self.on_prepare(now, from, ballot, coord_received);
                }
            }
            Msg::Promise { view, ballot, received, accepted, msgs, holds_state, rejoin } if view == cur => {
                if let Some(r) = in_view {
                    let rejoin = rejoin.filter(|j| j.new.node == from.node && j.new.inc > from.inc);
                    self.on_promise(now, r, ballot, received, accepted, msgs, holds_state, rejoin);
                }
            }
            Msg::Preempted { view, ballot } if view == cur => {
                if in_view.is_some() {
                    self.on_preempted(now, ballot);
                }
            }
            Msg::Accept { view, ballot, proposal, msgs } if view == cur => {
                if in_view.is_some() {
                    self.on_accept(now, from, ballot, proposal, msgs);
                }
            }
            Msg::Accepted { view, ballot } if view == cur => {
                if let Some(r) = in_view {
                    self.on_accepted(now, r, ballot);
                }
            }
            other => {
                // A message of another view: help a lagging peer, or tell a stale one.
                if let Some(v) = msg_view(&other) {
                    self.on_other_view(now, from, v);
                }
            }
        }
    }

    /// Who should get the install that created this view, for `from` still in view `have`:
    /// `from` itself if the view holds it, or the restart of its node that the view holds in
    /// its place (a stand-in that spoke for `from` in the change, and joins as that member).
    fn install_target(&self, have: ViewId, from: MemberId) -> Option<MemberId> {
        let r = &self.member()?.record.as_ref()?.proposal;
        if r.prev != have {
            return None;
        }
        if r.next.contains(from) {
            return Some(from);
        }
        r.recovered.iter().copied().find(|x| x.node == from.node && x.inc > from.inc)
    }

    fn on_other_view(&mut self, now: Instant, from: MemberId, v: ViewId) {
        let Some(m) = self.member() else { return };
        let cur = m.view.id;
        if v < cur {
            if let Some(to) = self.install_target(v, from) {
                self.resend_install(now, to);
            } else if !m.view.contains(from) {
                self.reply_not_member(now, from);
            } else {
                // A member of our view still in an older one that we cannot bring forward: tell
                // it where we are; if that is two or more views ahead, it knows it was left
                // behind for good and re-joins.
                self.reply_limited(now, from, Msg::InstallReq { have: cur });
            }
        } else if v > cur {
            self.reply_limited(now, from, Msg::InstallReq { have: cur });
        }
    }

    fn on_install_req(&mut self, now: Instant, from: MemberId, have: ViewId) {
        let target = self.install_target(have, from);
        let Some(m) = self.member() else { return };
        let cur = m.view.id;
        if let Some(to) = target {
            self.resend_install(now, to);
        } else if have < cur && !m.view.contains(from) {
            self.reply_not_member(now, from);
        } else if have > cur.next() && m.view.members.iter().any(|x| x.node == from.node) {
            // A member is two or more views ahead. Views form one line and every member of a
            // view promised in its predecessor, so this incarnation, still in `cur`, is in none
            // of the later views: it was excluded.
            self.excluded(now, Some(have));
        } else if have > cur {
            self.reply_limited(now, from, Msg::InstallReq { have: cur });
        }
    }

    /// The newest incarnation of `node` this member knows of: in its view, asking to join, or
    /// departed from the view.
    fn newest_of(&self, node: NodeId) -> Option<Incarnation> {
        let m = self.member()?;
        let in_view = m.view.members.iter().filter(|x| x.node == node).map(|x| x.inc);
        let pending = m.pending_joins.keys().filter(|j| j.node == node).map(|j| j.inc);
        in_view.chain(pending).chain(m.departed.get(&node).copied()).max()
    }

    /// Tells `to` it is not in this member's view, and the newest incarnation of its node
    /// known here (its own if none is newer), to re-join above. Only `to`'s node gets it.
    fn reply_not_member(&mut self, now: Instant, to: MemberId) {
        let Some(m) = self.member() else { return };
        let view = m.view.id;
        let known = self.newest_of(to.node).map_or(to.inc, |k| k.max(to.inc));
        // Within the decoder's bound: an incarnation beyond it (never drawn in practice) would
        // make the frame undecodable; below it, the receiver just re-joins one higher.
        let newest = Incarnation(known.0.min(wire::MAX_INCARNATION));
        self.reply_limited(now, to, Msg::NotMember { view, newest });
    }

    fn resend_install(&mut self, now: Instant, to: MemberId) {
        if !self.may_reply(now, to, true) {
            return;
        }
        let Some(rec) = self.member().and_then(|m| m.record.as_ref()) else { return };
        let msg = Msg::Install { proposal: rec.proposal.clone(), msgs: rec.msgs.clone() };
        self.marks.hit(Mark::InstallResent);
        self.queue(to.node, Some(to), msg);
    }

    fn on_join(&mut self, now: Instant, joiner: MemberId) {
        let Some(m) = self.member() else { return };
        // A restart of a member that never installed this view: it may speak for that member
        // in the view change (see the joiner's side), which may need its voice.
        let earlier_unheard = m.view.members.iter().enumerate().any(|(r, x)| {
            x.node == joiner.node && x.inc < joiner.inc && r != m.me && !m.peers[r].heard_in_view
        });
        if earlier_unheard && m.record.as_ref().is_some_and(|r| r.proposal.next.contains_node(joiner.node)) {
            self.resend_install(now, joiner);
        }
        let Some(m) = self.member() else { return };
        if m.view.contains(joiner) {
            // Its install was lost.
            if m.record.as_ref().is_some_and(|r| r.proposal.next.contains(joiner)) {
                self.resend_install(now, joiner);
            }
            return;
        }
        // A newer incarnation of its node is in the view or asks to join, or this one was let
        // in and excluded already (maybe before it even heard of its install): the request is
        // stale, or comes from a restart whose incarnation was drawn from a clock that went
        // back. Either way the answer names the newest incarnation known here, so a live
        // joiner comes back above it at once (instead of one higher per refusal, ~10^9 of them
        // for a clock an hour back); a stale request's answer is addressed to a life that is
        // over, and its node's current life drops it.
        let newer = |inc: Incarnation| inc > joiner.inc;
        if m.view.members.iter().any(|x| x.node == joiner.node && newer(x.inc))
            || m.pending_joins.keys().any(|j| j.node == joiner.node && newer(j.inc))
            || m.departed.get(&joiner.node).is_some_and(|inc| *inc >= joiner.inc)
        {
            self.reply_not_member(now, joiner);
            return;
        }
        let coord = self.coordinator_rank();
        let max_members = self.cfg.max_members;
        let held = self.exclusions.get(&joiner.node).is_some_and(|(_, _, until)| now < *until);
        let Some(m) = self.member_mut() else { return };
        if coord == m.me && held {
            // Excluded again and again lately (it hears part of the view, and some member does
            // not hear it): it waits, and the view it would churn stays up. It asks again.
            self.marks.hit(Mark::ReadmitDelayed);
            return;
        }
        if coord == m.me {
            if m.view.members.len() + m.pending_joins.len() < max_members
                || m.pending_joins.contains_key(&joiner)
            {
                m.pending_joins.retain(|j, _| j.node != joiner.node || j.inc > joiner.inc);
                if !m.pending_joins.keys().any(|j| j.node == joiner.node) {
                    m.pending_joins.insert(joiner, now);
                }
            }
        } else {
            let c = m.view.members[coord];
            let group = self.group;
            self.queue(c.node, Some(c), Msg::Join { joiner, group, founding: false });
        }
    }

    fn on_data(&mut self, d: Data) {
        let window = u64::from(self.cfg.window_msgs);
        #[cfg(feature = "mutants")]
        let mutant = self.cfg.mutant;
        let max_payload = self.cfg.max_payload;
        let Some(m) = self.member_mut() else { return };
        if d.payload.len() > max_payload || d.seq == 0 {
            return;
        }
        let s = usize::from(d.sender);
        m.clock = m.clock.max(d.lamport);
        // Total and safe delivery wait for every member's promise or acknowledgement: answer
        // at once rather than at the next heartbeat.
        let prompt_ack = matches!(d.order, Order::Total | Order::Safe);
        let before = m.senders[s].received;
        if m.senders[s].insert(d, window) == Insert::Advanced {
            for p in m.peers.iter_mut() {
                p.ack_dirty = true;
            }
            self.note_held(s, before);
        }
        self.ack_wanted |= prompt_ack;
        #[cfg(feature = "mutants")]
        if let Some(m) = self.member_mut().filter(|m| mutant == Some(crate::Mutant::DropFifo) && !m.wedged) {
            // Deliver what arrived beyond a gap at once; it is delivered again in order later.
            let early: Vec<Data> = m.senders[s].ooo().cloned().collect();
            let sender = m.view.members[s];
            for d in early {
                let id = MsgId { sender, view: d.view, seq: Seqno(d.seq) };
                self.events.push_back(Event::Delivered { id, order: d.order, payload: d.payload });
            }
        }
        self.pump();
    }

    fn on_ack(&mut self, r: usize, a: Ack) {
        let Some(m) = self.member_mut() else { return };
        let n = m.view.members.len();
        if a.received.len() != n || a.suspects.iter().any(|s| usize::from(*s) >= n) {
            return;
        }
        let peer = &mut m.peers[r];
        peer.heard_in_view = true;
        for (mine, theirs) in peer.acked.iter_mut().zip(a.received.iter()) {
            *mine = (*mine).max(*theirs);
        }
        peer.suspects = a.suspects;
        peer.wedged = a.wedged;
        peer.holds_state = a.holds_state;
        let durable_rose = a.durable > peer.durable;
        peer.durable = peer.durable.max(a.durable);
        if a.sent >= peer.promise_sent {
            peer.promise_sent = a.sent;
            peer.promise_clock = peer.promise_clock.max(a.clock);
        }
        let sent = a.sent;
        m.senders[r].highest_seen = m.senders[r].highest_seen.max(sent);
        self.update_stability();
        self.pump();
        if durable_rose {
            self.check_durable();
        }
    }

    /// Recomputes what every member has received and discards what is stable and delivered.
    pub(crate) fn update_stability(&mut self) {
        let Some(m) = self.member_mut() else { return };
        let me = m.me;
        for s in 0..m.view.members.len() {
            let mut st = m.senders[s].received;
            for (r, p) in m.peers.iter().enumerate() {
                if r != me {
                    st = st.min(p.acked[s]);
                }
            }
            if st > m.stable[s] {
                m.stable[s] = st;
                let upto = st.min(m.senders[s].delivered);
                let freed = m.senders[s].trim(upto);
                if s == me {
                    m.unstable_bytes = m.unstable_bytes.saturating_sub(freed);
                }
            }
        }
    }

    fn on_nak(&mut self, r: usize, sender: u16, lo: u64, hi: u64) {
        #[cfg(feature = "mutants")]
        if self.cfg.mutant == Some(crate::Mutant::NoRetransmit) {
            return;
        }
        let window = u64::from(self.cfg.window_msgs);
        let Some(m) = self.member() else { return };
        if usize::from(sender) != m.me || lo == 0 || hi < lo {
            return;
        }
        let to = m.view.members[r];
        let msgs: Vec<Msg> = m.senders[m.me]
            .range(lo, hi.min(lo.saturating_add(window)))
            .map(|d| Msg::Data(d.clone()))
            .collect();
        if !msgs.is_empty() {
            self.marks.hit(Mark::Retransmitted);
        }
        for msg in msgs {
            self.queue(to.node, Some(to), msg);
        }
    }

    fn member_tick(&mut self, now: Instant) {
        let hb = self.cfg.heartbeat_interval;
        let join_ttl = self.cfg.join_retry_interval * 4;
        let timeout = self.cfg.suspect_timeout;
        let lag_timeout = self.cfg.lag_timeout;
        let retransmit = self.cfg.retransmit_interval;
        let window = u64::from(self.cfg.window_msgs);
        let leaving = self.leaving;
        let me_id = self.me;
        let Some(m) = self.member_mut() else { return };
        let me = m.me;
        let sent = m.senders[me].received;
        // A wedged member (flushing, or without quorum) freezes its acknowledgements on
        // purpose, and while this one is wedged nothing of this view is sent any more: judge
        // acknowledgements only while both sides run the view normally.
        let wedged = m.wedged;
        // Failure detection: silence, or acknowledgements that stand still. A member that
        // heartbeats but never acknowledges our messages would hold every sender's window full
        // for ever; it is treated like a silent one (virtual synchrony excludes a member that
        // cannot keep up). One still loading the state may hold its acknowledgements back on
        // purpose (its buffer is full): it is not judged by them, nor is a wedged one.
        let mut newly = Vec::new();
        let mut stalled = 0;
        for (r, p) in m.peers.iter_mut().enumerate() {
            if r == me {
                continue;
            }
            let behind = p.acked[me] < sent && p.holds_state && !p.wedged && !wedged;
            p.lag = match p.lag {
                _ if !behind => None,
                Some((at, since)) if at == p.acked[me] => Some((at, since)),
                _ => Some((p.acked[me], now)),
            };
            let lagging = p.lag.is_some_and(|(_, since)| now.since(since) > lag_timeout);
            let silent = now.since(p.last_heard) > timeout;
            if lagging && !silent && !p.suspected {
                stalled += 1;
            }
            p.suspected = silent || lagging;
            if p.suspected && !p.announced {
                p.announced = true;
                let reason = if silent { SuspectReason::Silent } else { SuspectReason::Lagging };
                newly.push((m.view.members[r], reason));
            }
        }
        m.pending_joins.retain(|_, t| now.since(*t) <= join_ttl);
        // Heartbeats: every peer gets an acknowledgement at least every `hb`.
        let heartbeat = now >= m.next_hb;
        if heartbeat {
            m.next_hb = now + hb;
            for p in m.peers.iter_mut() {
                p.ack_dirty = true;
            }
        }
        // Retransmission requests for gaps that persist.
        let mut naks = Vec::new();
        for s in 0..m.view.members.len() {
            if s == me || m.peers[s].suspected {
                continue;
            }
            let st = &mut m.senders[s];
            if !st.has_gap() {
                st.gap_since = None;
                continue;
            }
            let since = *st.gap_since.get_or_insert(now);
            let nak_due = st.last_nak.is_none_or(|t| now.since(t) >= retransmit);
            if now.since(since) >= retransmit && nak_due {
                st.last_nak = Some(now);
                let hi = st.wanted_upto().min(st.received + window);
                naks.push((
                    m.view.members[s],
                    Msg::Nak { view: m.view.id, sender: s as u16, from: st.received + 1, to: hi },
                ));
            }
        }
        // Resend the install to members not yet heard in this view (its first sending may
        // have been lost, and its sender may die); drop the record once all were heard.
        let mut laggards = Vec::new();
        // A restarted member's record has no messages: it hands it on only when asked.
        if let Some(rec) = m.record.as_ref().filter(|_| m.recovering.is_none()) {
            laggards = rec
                .proposal
                .next
                .members
                .iter()
                .copied()
                .filter(|x| m.view.rank_of(*x).is_some_and(|r| r != me && !m.peers[r].heard_in_view))
                .collect();
            if laggards.is_empty() {
                m.record = None;
            }
        }
        // Leaving: keep asking the coordinator.
        let mut leave_to = None;
        if leaving && now >= m.next_leave_retry {
            m.next_leave_retry = now + hb * 2;
            leave_to = Some(m.view.id);
        }
        let targets: Vec<MemberId> = if heartbeat {
            m.view.members.iter().copied().filter(|x| *x != me_id).collect()
        } else {
            Vec::new()
        };
        for (member, reason) in newly {
            self.events.push_back(Event::Suspected { member, reason });
        }
        for _ in 0..stalled {
            self.marks.hit(Mark::AcksStalled);
        }
        for t in targets {
            self.outq.entry((t.node, Some(t))).or_default();
        }
        for (to, msg) in naks {
            self.queue_member(to, msg);
        }
        for x in laggards {
            self.resend_install(now, x);
        }
        self.state_tick(now);
        if let Some(view) = leave_to {
            let c = self.coordinator_rank();
            if let Some(m) = self.member() {
                let cm = m.view.members[c];
                if cm != me_id {
                    self.queue_member(cm, Msg::Leave { view });
                }
            }
        }
        self.check_quorum();
        self.coord_tick(now);
    }

    /// Blocks if this member's failure detector suspects so many members that no majority of
    /// the view is reachable.
    fn check_quorum(&mut self) {
        let Some(m) = self.member_mut() else { return };
        let reachable = m.peers.iter().enumerate().filter(|(r, p)| *r == m.me || !p.suspected).count();
        if reachable < m.view.majority() && !m.no_quorum_announced {
            m.no_quorum_announced = true;
            m.freeze_acks();
            m.wedged = true;
            self.marks.hit(Mark::MinorityBlocked);
            self.events.push_back(Event::Blocked { reason: BlockReason::NoQuorum });
        }
    }

    /// Stops delivery and sending in this view, for good.
    pub(crate) fn wedge(&mut self) {
        let Some(m) = self.member_mut() else { return };
        if !m.wedged {
            m.freeze_acks();
            m.wedged = true;
            self.events.push_back(Event::Blocked { reason: BlockReason::Flush });
        }
    }

    /// Rank of the member this one takes for coordinator: the oldest it does not suspect.
    pub(crate) fn coordinator_rank(&self) -> usize {
        match self.member() {
            Some(m) => {
                (0..m.view.members.len()).find(|r| *r == m.me || !m.peers[*r].suspected).unwrap_or(m.me)
            }
            None => 0,
        }
    }

    /// Installs `view`. `joined`/`departed` are reported to the application; `record` is the
    /// install to keep for members that missed it.
    pub(crate) fn install_view(
        &mut self,
        now: Instant,
        view: View,
        joined: Vec<MemberId>,
        departed: Vec<MemberId>,
        record: Option<InstallRecord>,
    ) {
        let Some(me) = view.rank_of(self.me) else { return };
        let was_loading = self.member().is_some_and(|m| m.awaiting_state);
        let loading: Vec<MemberId> = record.as_ref().map(|r| r.proposal.loading.clone()).unwrap_or_default();
        let recovered: Vec<MemberId> =
            record.as_ref().map(|r| r.proposal.recovered.clone()).unwrap_or_default();
        let created_by = record.as_ref().map(|r| r.proposal.clone());
        self.last_view = self.last_view.max(view.id);
        self.voted = None;
        let leavers = self.member().map(|m| m.pending_leaves.clone()).unwrap_or_default();
        for d in &departed {
            // Not a leaver, nor a member replaced by its own restart (recovery).
            if !leavers.contains(d) && !view.members.iter().any(|x| x.node == d.node) {
                self.note_exclusion(now, d.node);
            }
        }
        self.install_member(now, view.clone(), me, record, &departed);
        if let Some(m) = self.member_mut() {
            m.created_by = created_by;
        }
        self.persist_dirty = true;
        self.events.push_back(Event::ViewInstalled {
            view,
            joined,
            departed,
            loading: loading.clone(),
            recovered,
        });
        self.state_barrier(&loading, was_loading);
        self.check_durable();
    }

    /// Replaces the member state with a fresh one for `view`, where this member has rank `me`.
    pub(crate) fn install_member(
        &mut self,
        now: Instant,
        view: View,
        me: usize,
        record: Option<InstallRecord>,
        departed: &[MemberId],
    ) {
        let n = view.members.len();
        let loading: Vec<MemberId> = record.as_ref().map(|r| r.proposal.loading.clone()).unwrap_or_default();
        let peers = (0..n)
            .map(|r| Peer {
                holds_state: !loading.contains(&view.members[r]),
                last_heard: now,
                acked: vec![0; n],
                suspects: Vec::new(),
                wedged: false,
                suspected: false,
                announced: false,
                ack_dirty: true,
                heard_in_view: false,
                promise_sent: 0,
                promise_clock: 0,
                lag: None,
                durable: 0,
            })
            .collect();
        let mut pending_leaves = BTreeSet::new();
        if self.leaving {
            pending_leaves.insert(self.me);
        }
        let mut graveyard = match &self.state {
            State::Member(m) => m.departed.clone(),
            _ => BTreeMap::new(),
        };
        for d in departed {
            let e = graveyard.entry(d.node).or_insert(d.inc);
            *e = (*e).max(d.inc);
        }
        let member = Member {
            me,
            senders: (0..n).map(|_| SenderStore::new()).collect(),
            peers,
            stable: vec![0; n],
            unstable_bytes: 0,
            clock: 0,
            wedged: false,
            frozen_acks: None,
            no_quorum_announced: false,
            promised: None,
            accepted: None,
            coord: None,
            learned: BTreeMap::new(),
            max_round: 0,
            backoff_until: now,
            pending_joins: BTreeMap::new(),
            pending_leaves,
            record,
            next_hb: now,
            next_leave_retry: now,
            departed: graveyard,
            awaiting_state: false,
            incoming: None,
            outgoing: None,
            state_acks: None,
            created_by: None,
            recovering: None,
            view,
        };
        self.state = State::Member(Box::new(member));
    }

    /// This incarnation learned it is no longer a member: forget everything and join again as
    /// a new incarnation (or finish leaving).
    pub(crate) fn excluded(&mut self, now: Instant, by_view: Option<ViewId>) {
        self.excluded_above(now, by_view, None);
    }

    /// [`Node::excluded`], re-joining above incarnation `newest` of this node if a peer knows
    /// of it: members refuse a join at or below an incarnation they know (`on_join`).
    pub(crate) fn excluded_above(
        &mut self,
        now: Instant,
        by_view: Option<ViewId>,
        newest: Option<Incarnation>,
    ) {
        if self.leaving {
            self.finish_left();
            return;
        }
        let mut rejoin = None;
        if let Some(m) = self.member() {
            let nodes: Vec<NodeId> =
                m.view.members.iter().map(|x| x.node).filter(|n| *n != self.me.node).collect();
            rejoin = m.recovering.map(|r| r.new);
            self.seeds.extend(nodes);
        }
        let mut next =
            rejoin.unwrap_or(MemberId { inc: Incarnation(self.me.inc.0.saturating_add(1)), ..self.me });
        if let Some(k) = newest.filter(|k| *k >= next.inc) {
            next.inc = Incarnation(k.0.saturating_add(1));
        }
        self.keep_votes();
        self.me = next;
        // The application drops its state: nothing of it is stored for the group any more.
        self.durable_pos = 0;
        self.durable_emitted = 0;
        self.persist_dirty = true;
        self.state = State::Joining { next_retry: now };
        self.marks.hit(Mark::RejoinAfterExclusion);
        self.events.push_back(Event::Excluded { by_view, rejoin_as: self.me });
    }

    /// A node was excluded from the view without asking to leave. The first time lately costs
    /// it nothing (a crash and a restart re-join at once); each further one within
    /// `60 x suspect_timeout` doubles the wait before it is let in again, from one suspicion
    /// timeout up to 4 (the longest a healed node may wait to come back). A node that some members hear and others do not (a partial
    /// partition) otherwise re-joined through the ones that hear it and was excluded again
    /// about every 0.6 s, each time a view change and a state transfer, and the majority's
    /// view served writes a fifth of the time (tests/net/scenarios.py, quorum-loss).
    fn note_exclusion(&mut self, now: Instant, node: NodeId) {
        let base = self.cfg.suspect_timeout;
        if !self.exclusions.contains_key(&node) && self.exclusions.len() >= 4 * self.cfg.max_members {
            // Bounded: forget the exclusion heard of longest ago.
            if let Some(old) = self.exclusions.iter().min_by_key(|(_, (_, last, _))| *last).map(|(n, _)| *n) {
                self.exclusions.remove(&old);
            }
        }
        let e = self.exclusions.entry(node).or_insert((0, now, now));
        if now.since(e.1) > base * 60 {
            e.0 = 0;
        }
        e.0 = e.0.saturating_add(1);
        e.1 = now;
        let wait = if e.0 <= 1 { Duration::ZERO } else { base * (1u32 << (e.0 - 2).min(2)) };
        e.2 = now + wait;
    }

    /// Makes sure every peer we owe an acknowledgement gets a frame (with just the `Ack` if
    /// nothing else is queued for it).
    fn flush_acks(&mut self) {
        let Some(m) = self.member() else { return };
        let owed: Vec<MemberId> = m
            .view
            .members
            .iter()
            .enumerate()
            .filter(|(r, _)| *r != m.me && m.peers[*r].ack_dirty)
            .map(|(_, x)| *x)
            .collect();
        for p in owed {
            self.outq.entry((p.node, Some(p))).or_default();
        }
    }

    /// Ends this life's queue. Acceptances still in it go out under the life that gave them:
    /// learning that the change it accepted was chosen is what excludes a member (or lets a
    /// leaver go), often in the same step as its own acceptance, and the others may need that
    /// vote to learn the decision too. Without it, a change whose coordinator died waited for
    /// a majority of promises that the departed voters could not give (seeds 7004928,
    /// 7080851). A vote already given stays true after the life is over. Tiny: one per peer.
    fn keep_votes(&mut self) {
        if let Some(m) = self.member().filter(|m| m.promised.is_some() || m.accepted.is_some()) {
            self.voted = Some(crate::recovery::Membership {
                view: m.view.clone(),
                me: m.view.members[m.me],
                created_by: m.created_by.clone(),
                promised: m.promised,
                accepted: m.accepted.clone(),
            });
        }
        let me = self.me;
        for ((node, to), msgs) in std::mem::take(&mut self.outq) {
            let votes: Vec<Msg> = msgs.into_iter().filter(|m| matches!(m, Msg::Accepted { .. })).collect();
            if !votes.is_empty() {
                self.marks.hit(Mark::VoteAfterExclusion);
                self.farewell.push(Transmit {
                    to: node,
                    frame: wire::encode(&FrameBody { from: me, to, msgs: votes }),
                });
            }
        }
    }

    fn finish_left(&mut self) {
        self.persist_dirty = true;
        self.keep_votes();
        self.state = State::Left;
        self.events.push_back(Event::Left);
    }

    fn window_allows(&self, m: &Member, len: usize) -> bool {
        let unstable = m.senders[m.me].received.saturating_sub(m.stable[m.me]);
        // A message larger than the window (up to `max_payload`) goes alone, once everything
        // before it is stable. (By count: the byte count falls when stable messages are also
        // delivered and trimmed, which can come later.)
        let alone = unstable == 0;
        unstable < u64::from(self.cfg.window_msgs)
            && (m.unstable_bytes + len as u64 <= self.cfg.window_bytes || alone)
    }

    pub(crate) fn member(&self) -> Option<&Member> {
        match &self.state {
            State::Member(m) => Some(m),
            _ => None,
        }
    }

    pub(crate) fn member_mut(&mut self) -> Option<&mut Member> {
        match &mut self.state {
            State::Member(m) => Some(m),
            _ => None,
        }
    }

    pub(crate) fn queue(&mut self, node: NodeId, to: Option<MemberId>, msg: Msg) {
        if node == self.me.node {
            return;
        }
        self.outq.entry((node, to)).or_default().push(msg);
    }

    pub(crate) fn queue_member(&mut self, to: MemberId, msg: Msg) {
        self.queue(to.node, Some(to), msg);
    }

    pub(crate) fn push_event(&mut self, ev: Event) {
        self.events.push_back(ev);
    }

    pub(crate) fn may_reply(&mut self, now: Instant, to: MemberId, install: bool) -> bool {
        let interval = self.cfg.retransmit_interval;
        let to = (to, install);
        match self.last_reply.get(&to) {
            Some(t) if now.since(*t) < interval => false,
            _ => {
                if self.last_reply.len() >= 4 * self.cfg.max_members {
                    self.last_reply.clear(); // Bounded: forget old entries rather than grow.
                }
                self.last_reply.insert(to, now);
                true
            }
        }
    }

    pub(crate) fn reply_limited(&mut self, now: Instant, to: MemberId, msg: Msg) {
        if self.may_reply(now, to, false) {
            self.queue(to.node, Some(to), msg);
        }
    }

    /// A deterministic pseudo-random number (xorshift64*), for jitter.
    pub(crate) fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// The acknowledgement (heartbeat) this member sends now.
pub(crate) fn ack_of(m: &Member, durable: u64) -> Ack {
    Ack {
        view: m.view.id,
        // A member loading state stops acknowledging once its buffer is full (`note_held`).
        received: match (&m.frozen_acks, &m.state_acks) {
            (Some(frozen), _) | (None, Some(frozen)) => frozen.clone(),
            (None, None) => m.senders.iter().map(|s| s.received).collect(),
        },
        sent: m.senders[m.me].received,
        suspects: m.peers.iter().enumerate().filter(|(_, p)| p.suspected).map(|(r, _)| r as u16).collect(),
        wedged: m.wedged,
        clock: m.clock,
        holds_state: m.holds_state(),
        durable,
    }
}

/// The view a message is about, if it names one.
fn msg_view(msg: &Msg) -> Option<ViewId> {
    match msg {
        Msg::Data(d) => Some(d.view),
        Msg::Ack(a) => Some(a.view),
        Msg::Nak { view, .. }
        | Msg::Leave { view }
        | Msg::Prepare { view, .. }
        | Msg::Promise { view, .. }
        | Msg::Preempted { view, .. }
        | Msg::Accept { view, .. }
        | Msg::Accepted { view, .. } => Some(*view),
        Msg::Install { proposal, .. } => Some(proposal.prev),
        Msg::StateChunk { view, .. } | Msg::StateAck { view, .. } => Some(*view),
        Msg::Join { .. }
        | Msg::NoGroup { .. }
        | Msg::InGroup { .. }
        | Msg::InstallReq { .. }
        | Msg::NotMember { .. }
        | Msg::Frag { .. } => None,
    }
}
