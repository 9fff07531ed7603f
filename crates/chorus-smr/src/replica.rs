//! The replica: a [`StateMachine`] on a chorus group, driven by the group's events.
//!
//! Sans-IO like the core: the caller feeds it the member's [`Event`]s and its clients'
//! requests, and carries out the [`Action`]s it queues (multicasts, replies, checkpoints).
//!
//! Orderings, and why:
//!
//! - **Commands go in safe order.** A safe message is delivered only once every member of the
//!   view holds it, so a command whose reply reached a client survives the crash of any set of
//!   members that leaves one alive: the survivors' flush delivers it. In total order a command
//!   could be applied (and acknowledged) at its sender and one more member, both of which then
//!   crash, and be lost: that breaks "an acknowledged write is never lost" under a minority of
//!   crashes once the group has five members.
//! - **Linearizable reads are a barrier in total order.** The total order respects real time
//!   for messages already delivered anywhere (a member delivers a message only once every member
//!   has moved its clock past it), so a barrier sent after a write was acknowledged is ordered
//!   after it; and since every command is safe, nothing applied before the barrier can be lost.
//!   The query itself never leaves the replica: one barrier serves every read that arrived
//!   before it was sent.
//! - **Local reads** run on the local state at once: fastest, possibly stale.

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use chorus_core::{BlockReason, Event, MemberId, Order, View, ViewId};
use serde::{Deserialize, Serialize};

use crate::durable::{DurableOptions, Fsync, Loading, LogEntry, SnapshotJob, StorageStatus, Stored};
use crate::machine::{Ctx, Frozen, StateMachine};
use crate::session::Sessions;
use crate::storage::{
    latest_snapshot, Dir, OpenError, SnapshotInfo, SnapshotReader, SnapshotWriter, StorageError, Wal,
    WalSync, WalSynced,
};

/// Names one client request waiting at this replica, for the caller to route the reply.
pub type Ticket = u64;

/// Whether a member serves clients.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Serves reads and writes.
    Active,
    /// Applies every command but serves no client until promoted: when an active member fails
    /// (a standby takes its place, lowest member id first) or on command ([`Replica::promote`]).
    Standby,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Active => "active",
            Role::Standby => "standby",
        })
    }
}

/// How fresh a read must be.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Consistency {
    /// On this replica's state now: fastest, may miss writes acknowledged elsewhere.
    Local,
    /// Sees every write acknowledged before the read began (a barrier through the group).
    #[default]
    Linearizable,
}

/// Settings of a replica.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// The role this member asks for when it joins.
    pub role: Role,
    /// Serve local reads while this member has no quorum (stale, but available).
    pub stale_reads_without_quorum: bool,
    /// Client sessions remembered for duplicate suppression; the least recently used is
    /// forgotten first. Must be the same at every replica (it shapes the replicated state).
    pub max_sessions: usize,
    /// Requests waiting for the group at this replica; more are refused with `Overloaded`.
    pub max_pending: usize,
    /// The largest command accepted, in bytes (it must fit in one multicast: keep it under the
    /// core's `max_payload`).
    pub max_command: usize,
    /// Commands submitted together travel in one multicast of up to this many bytes.
    pub max_batch: usize,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            role: Role::Active,
            stale_reads_without_quorum: false,
            max_sessions: 65_536,
            max_pending: 65_536,
            max_command: (1 << 20) - 4096,
            max_batch: 256 << 10,
        }
    }
}

/// Why a request was refused or failed. Each says whether the command may have taken effect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// This member is not in a primary (majority) view: nothing was done.
    #[error("no quorum: this replica is cut off from the majority of its group; nothing was done")]
    NoQuorum,
    /// This member is joining or loading the state: nothing was done.
    #[error("not ready: this replica is joining the group or loading its state; nothing was done")]
    NotReady,
    /// This member is a standby: nothing was done.
    #[error("standby: this replica serves no clients until it is promoted; nothing was done")]
    Standby,
    /// The command is larger than `max_command`: nothing was done.
    #[error("command too large: {len} bytes, the most is {max}; nothing was done")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Too many requests are waiting at this replica: nothing was done.
    #[error("overloaded: too many requests are waiting at this replica; nothing was done")]
    Overloaded,
    /// This replica's disk failed (full, or an I/O error): it stops, and nothing more is
    /// stored or acknowledged here.
    #[error("storage failed: {0}; this replica stops")]
    Storage(String),
    /// The member was excluded from the group (or left) while the command was in flight: it may
    /// or may not have been applied.
    #[error("uncertain: this replica lost its place in the group while the command was in flight; it may or may not have been applied")]
    Uncertain,
    /// The member left the group.
    #[error("this replica has left the group; nothing was done")]
    Left,
    /// A retried request older than the last one of its session: its reply is gone.
    #[error("stale request: session {session} already ran request {last} after {seq}")]
    StaleRequest {
        /// The session.
        session: u64,
        /// The request's number.
        seq: u64,
        /// The session's latest request.
        last: u64,
    },
}

/// What the replica asks its caller to do.
#[derive(Debug)]
pub enum Action<O> {
    /// Multicast `payload` to the group in `order` (in the order the actions come).
    Multicast {
        /// The ordering.
        order: Order,
        /// The bytes.
        payload: Bytes,
    },
    /// Answer the request `ticket`.
    Reply {
        /// The request.
        ticket: Ticket,
        /// Its outcome.
        result: Result<O, ReplicaError>,
    },
    /// Stream the checkpoint to the members loading the state of `view`: take its pieces
    /// (`Frozen::next_piece`) as the transfer's window allows (`write_checkpoint`), then
    /// `finish_checkpoint`. The replica goes on meanwhile; the copy is frozen.
    Checkpoint {
        /// The view of the transfer.
        view: ViewId,
        /// The state at the view's barrier.
        state: Box<dyn Frozen>,
    },
    /// Tell the member that this replica's state is stored up to `pos` (`Node::set_durable`).
    Durable {
        /// The position.
        pos: u64,
    },
    /// The state loaded from a donor could not be read, or the disk failed: this replica
    /// cannot go on.
    Fatal {
        /// Why.
        reason: String,
    },
}

/// Where the replica stands.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not yet in a view, or re-joining after an exclusion.
    Joining,
    /// In a view, waiting for (or loading) the state from a donor.
    Loading,
    /// In a primary view with the state.
    Ready,
    /// Cut off from the majority of its view: waits for a new view or an exclusion.
    NoQuorum,
    /// Left the group.
    Left,
}

/// A snapshot of the replica's standing, for INFO-style reports.
#[derive(Clone, Debug)]
pub struct ReplicaStatus {
    /// This member.
    pub me: MemberId,
    /// Where it stands.
    pub phase: Phase,
    /// The current view, if any.
    pub view: Option<View>,
    /// This member's role, once its announcement was delivered.
    pub role: Option<Role>,
    /// Every member's role as the replicated state has it.
    pub roles: Vec<(MemberId, Role)>,
    /// Commands applied.
    pub applied: u64,
    /// Entries of the replicated log applied (commands batches, roles, views): the state's
    /// position, the same at every replica for the same state.
    pub pos: u64,
    /// The time carried by the last applied command (ms since the epoch).
    pub last_now_ms: u64,
    /// Commands and reads of this replica waiting for the group.
    pub pending: usize,
    /// Client sessions remembered.
    pub sessions: usize,
    /// Messages from the group that could not be read and were skipped.
    pub bad_messages: u64,
}

/// What travels through the group.
#[derive(Serialize, Deserialize)]
enum Msg<'a> {
    /// Client commands, applied in this order.
    Commands {
        /// The submitter's clock (ms since the epoch).
        now_ms: u64,
        /// The commands.
        #[serde(borrow)]
        cmds: Vec<Cmd<'a>>,
    },
    /// A read barrier. Its time moves every replica's read clock (`read_floor`) forward, so
    /// that the reads it serves, and every read ordered after it, judge expiry at least at that
    /// time: a key a linearizable read saw expired is never seen alive again by a later one.
    /// Not logged: a barrier is in total order, not safe, so a member that crashes may have
    /// delivered one the others never do, and logged entries must be the same at every member
    /// (positions are compared across members).
    Barrier {
        /// The sender's barrier number.
        id: u64,
        /// The sender's clock when it sent the barrier (ms since the epoch): not before any
        /// of the reads it serves was asked.
        now_ms: u64,
    },
    /// A member's role.
    SetRole {
        /// The member.
        member: MemberId,
        /// Its role.
        role: Role,
    },
}

/// One client command in a batch.
#[derive(Serialize, Deserialize)]
struct Cmd<'a> {
    /// The submitting replica's request number.
    req: u64,
    /// The client session (0: none), for duplicate suppression.
    session: u64,
    /// The request's number within the session.
    seq: u64,
    /// The command.
    #[serde(borrow, serialize_with = "crate::as_bytes")]
    cmd: &'a [u8],
}

/// The replicated bookkeeping that travels in the checkpoint beside the machine's state.
#[derive(Serialize, Deserialize)]
struct Meta<O> {
    pos: u64,
    applied: u64,
    last_now_ms: u64,
    roles: Vec<(MemberId, Role)>,
    sessions: Vec<(u64, u64, u64, O)>,
}

const MAGIC: &[u8; 8] = b"CHSMR\x00\x00\x02";
/// The checkpoint's header: the magic and the length of the bookkeeping.
const HEAD: usize = 16;
/// The most bookkeeping bytes a checkpoint may declare (sessions with their outputs): a
/// damaged or hostile length must not make a replica allocate more.
const MAX_META: u64 = 1 << 30;

/// A read barrier in flight: its number and the reads it serves.
type Barrier<Q> = (u64, Vec<(Ticket, Q)>);

/// One replica of a state machine. See the module docs.
#[derive(Debug)]
pub struct Replica<S: StateMachine> {
    sm: S,
    cfg: ReplicaConfig,
    me: MemberId,
    phase: Phase,
    view: Option<View>,
    // Replicated.
    pos: u64,
    applied: u64,
    last_now_ms: u64,
    roles: BTreeMap<MemberId, Role>,
    sessions: Sessions<S::Output>,
    // Local.
    announced: bool,
    next_ticket: Ticket,
    next_req: u64,
    writes: BTreeMap<u64, Ticket>,
    reads_next: Vec<(Ticket, S::Query)>,
    barrier: Option<Barrier<S::Query>>,
    next_barrier: u64,
    load: Option<(ViewId, Vec<u8>)>,
    /// Commands submitted and not yet multicast: (req, session, seq, command).
    batch: Vec<(u64, u64, u64, Vec<u8>)>,
    batch_bytes: usize,
    batch_now_ms: u64,
    /// The highest wall-clock time this replica was given (submit, read): local reads and the
    /// barriers it sends use it, so that this replica's reads never go back in time even if
    /// the wall clock steps back.
    clock_ms: u64,
    /// The highest time of a read barrier delivered here (anyone's): reads judge expiry no
    /// earlier, and commands sent from here carry no earlier time.
    read_floor: u64,
    hold_batch: bool,
    actions: VecDeque<Action<S::Output>>,
    bad_messages: u64,
    /// The disk, when the replica keeps its state there.
    store: Option<Stored>,
    /// `appendfsync always`: replies waiting for every member to store their entry, by
    /// position.
    held: VecDeque<(u64, Ticket, Result<S::Output, ReplicaError>)>,
    /// The lowest position every member of the view reported stored (`Event::Durable`).
    durable_upto: u64,
    /// The state came from this node's disk at start and was offered for recovery: it is kept
    /// (as the donor's, or as the candidate a loading member still holds on disk).
    recovered: bool,
}

impl<S: StateMachine> Replica<S>
where
    S::Query: std::fmt::Debug,
    S::Output: std::fmt::Debug,
{
    /// A replica of `sm` (empty: the group's state comes by state transfer) for member `me`.
    pub fn new(sm: S, me: MemberId, cfg: ReplicaConfig) -> Self {
        let sessions = Sessions::new(cfg.max_sessions);
        Replica {
            sm,
            cfg,
            me,
            phase: Phase::Joining,
            view: None,
            pos: 0,
            applied: 0,
            last_now_ms: 0,
            roles: BTreeMap::new(),
            sessions,
            announced: false,
            next_ticket: 1,
            next_req: 1,
            writes: BTreeMap::new(),
            reads_next: Vec::new(),
            barrier: None,
            next_barrier: 1,
            load: None,
            batch: Vec::new(),
            batch_bytes: 0,
            batch_now_ms: 0,
            clock_ms: 0,
            read_floor: 0,
            hold_batch: false,
            actions: VecDeque::new(),
            bad_messages: 0,
            store: None,
            held: VecDeque::new(),
            durable_upto: 0,
            recovered: false,
        }
    }

    /// The state machine (for local inspection; never mutate it outside `apply`).
    pub fn machine(&self) -> &S {
        &self.sm
    }

    /// The next action to carry out.
    /// Commands submitted since the last call travel together in one multicast, queued when
    /// the actions before it are taken.
    pub fn poll_action(&mut self) -> Option<Action<S::Output>> {
        if self.actions.is_empty() && !self.hold_batch {
            self.flush_batch();
        }
        self.actions.pop_front()
    }

    /// While held, commands accumulate in the batch instead of leaving at the next
    /// `poll_action` (group commit: a driver holds the batch while its previous multicast is
    /// still being taken by the member, so that under load many commands share one multicast).
    /// The batch still leaves when it is full, and before any other multicast.
    pub fn hold_batch(&mut self, hold: bool) {
        self.hold_batch = hold;
    }

    /// Queues the batch of commands as one multicast.
    fn flush_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let cmds = batch
            .iter()
            .map(|(req, session, seq, cmd)| Cmd { req: *req, session: *session, seq: *seq, cmd })
            .collect();
        let payload = encode(&Msg::Commands { now_ms: self.batch_now_ms, cmds });
        self.actions.push_back(Action::Multicast { order: Order::Safe, payload });
    }

    /// Queues a multicast after the commands submitted before it.
    fn multicast(&mut self, order: Order, payload: Bytes) {
        self.flush_batch();
        self.actions.push_back(Action::Multicast { order, payload });
    }

    /// The member this replica is now (a new incarnation after each exclusion), without the
    /// copies `status` makes: the store reads it for every multicast.
    pub fn me(&self) -> MemberId {
        self.me
    }

    /// Where the replica stands.
    pub fn status(&self) -> ReplicaStatus {
        ReplicaStatus {
            me: self.me,
            phase: self.phase,
            view: self.view.clone(),
            role: self.roles.get(&self.me).copied(),
            roles: self.roles.iter().map(|(m, r)| (*m, *r)).collect(),
            applied: self.applied,
            pos: self.pos,
            last_now_ms: self.last_now_ms,
            pending: self.pending(),
            sessions: self.sessions.len(),
            bad_messages: self.bad_messages,
        }
    }

    /// A digest of the replicated state (machine, applied index), equal at replicas that agree.
    pub fn digest(&self) -> u64 {
        self.sm.digest() ^ self.applied.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    /// The machine's state frozen now, with the applied index, for [`frozen_digest`] off the
    /// replica's thread (a digest reads the whole state).
    pub fn frozen_machine(&self) -> (u64, S::Frozen) {
        (self.applied, self.sm.freeze())
    }

    fn pending(&self) -> usize {
        self.writes.len()
            + self.reads_next.len()
            + self.barrier.as_ref().map_or(0, |b| b.1.len())
            + self.held.len()
    }

    fn ticket(&mut self) -> Ticket {
        let t = self.next_ticket;
        self.next_ticket += 1;
        t
    }

    /// Whether this replica may serve clients now; the error says why not.
    fn serving(&self) -> Result<(), ReplicaError> {
        match self.phase {
            Phase::Ready => match self.roles.get(&self.me) {
                Some(Role::Active) => Ok(()),
                Some(Role::Standby) => Err(ReplicaError::Standby),
                None => Err(ReplicaError::NotReady),
            },
            Phase::NoQuorum => Err(ReplicaError::NoQuorum),
            Phase::Joining | Phase::Loading => Err(ReplicaError::NotReady),
            Phase::Left => Err(ReplicaError::Left),
        }
    }

    /// Whether a local read may run now (the rule [`Replica::read`] applies to
    /// [`Consistency::Local`]), for a caller that runs local reads on a shared copy of the state
    /// without going through the replica; the error says why not.
    pub fn local_reads(&self) -> Result<(), ReplicaError> {
        match self.serving() {
            Err(ReplicaError::NoQuorum) if self.cfg.stale_reads_without_quorum => {
                match self.roles.get(&self.me) {
                    Some(Role::Standby) => Err(ReplicaError::Standby),
                    _ => Ok(()),
                }
            }
            other => other,
        }
    }

    /// Commands applied.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The time carried by the last applied command (ms since the epoch): local reads judge
    /// expiry by no earlier time.
    pub fn last_now_ms(&self) -> u64 {
        self.last_now_ms
    }

    /// Submits a command from client session `session` (its request `seq`; session 0 means no
    /// duplicate suppression). The reply comes as [`Action::Reply`] with the ticket returned.
    pub fn submit(
        &mut self,
        session: u64,
        seq: u64,
        cmd: &[u8],
        now_ms: u64,
    ) -> Result<Ticket, ReplicaError> {
        self.serving()?;
        if self.pending() >= self.cfg.max_pending {
            return Err(ReplicaError::Overloaded);
        }
        if cmd.len() > self.cfg.max_command {
            return Err(ReplicaError::TooLarge { len: cmd.len(), max: self.cfg.max_command });
        }
        if self.batch_bytes + cmd.len() > self.cfg.max_batch {
            self.flush_batch();
        }
        let req = self.next_req;
        self.next_req += 1;
        let ticket = self.ticket();
        self.writes.insert(req, ticket);
        self.batch.push((req, session, seq, cmd.to_vec()));
        self.batch_bytes += cmd.len() + 32;
        self.clock_ms = self.clock_ms.max(now_ms);
        self.batch_now_ms = self.batch_now_ms.max(self.clock_ms).max(self.read_floor);
        Ok(ticket)
    }

    /// Runs a read-only query. Local reads answer at once (`Ok(Ok(output))`); linearizable
    /// ones return a ticket answered by an [`Action::Reply`] once a barrier is delivered.
    pub fn read(
        &mut self,
        q: S::Query,
        consistency: Consistency,
        now_ms: u64,
    ) -> Result<Result<S::Output, Ticket>, ReplicaError> {
        self.clock_ms = self.clock_ms.max(now_ms);
        match (consistency, self.serving()) {
            (Consistency::Local, _) => {
                self.local_reads()?;
                Ok(Ok(self.sm.query(&q, self.clock_ms.max(self.last_now_ms).max(self.read_floor))))
            }
            (_, Err(e)) => Err(e),
            (Consistency::Linearizable, Ok(())) => {
                if self.pending() >= self.cfg.max_pending {
                    return Err(ReplicaError::Overloaded);
                }
                let ticket = self.ticket();
                self.reads_next.push((ticket, q));
                self.launch_barrier();
                Ok(Err(ticket))
            }
        }
    }

    /// Sends a barrier for the reads waiting, unless one is in flight (they wait for the next).
    fn launch_barrier(&mut self) {
        if self.barrier.is_some() || self.reads_next.is_empty() {
            return;
        }
        let id = self.next_barrier;
        self.next_barrier += 1;
        self.barrier = Some((id, std::mem::take(&mut self.reads_next)));
        let barrier = Msg::Barrier { id, now_ms: self.clock_ms };
        self.actions.push_back(Action::Multicast { order: Order::Total, payload: encode(&barrier) });
    }

    /// Promotes `member` (a standby) to active, through the group.
    pub fn promote(&mut self, member: MemberId) -> Result<(), ReplicaError> {
        match self.phase {
            Phase::Ready => {}
            Phase::NoQuorum => return Err(ReplicaError::NoQuorum),
            Phase::Left => return Err(ReplicaError::Left),
            _ => return Err(ReplicaError::NotReady),
        }
        self.multicast(Order::Safe, encode(&Msg::SetRole { member, role: Role::Active }));
        Ok(())
    }

    /// Takes one event of the member.
    pub fn on_event(&mut self, ev: Event) {
        match ev {
            Event::ViewInstalled { view, departed, loading, recovered, .. } => {
                self.on_view(view, &departed, &loading, &recovered)
            }
            Event::Delivered { id, order, payload }
                if matches!(self.phase, Phase::Ready | Phase::NoQuorum) =>
            {
                self.on_delivered(id.sender, order, &payload);
            }
            Event::Blocked { reason: BlockReason::NoQuorum } if self.phase == Phase::Ready => {
                self.phase = Phase::NoQuorum;
            }
            Event::Durable { upto } => {
                self.durable_upto = self.durable_upto.max(upto);
                self.release();
            }
            // The offered state goes with the earlier life this node speaks for.
            Event::Recovering { member, .. } if self.recovered => {
                if let Some(Err(e)) = self.store.as_mut().map(|st| st.set_owner(member)) {
                    self.storage_failed(&e);
                }
            }
            Event::Excluded { rejoin_as, .. } => {
                self.fail_pending(ReplicaError::Uncertain);
                self.sm.reset();
                self.wipe();
                // The stored state stays the earlier member's: it is not offered any more, and
                // nothing more is logged until a new state is loaded.
                if let Some(st) = &mut self.store {
                    st.valid = false;
                }
                self.recovered = false;
                self.me = rejoin_as;
                self.phase = Phase::Joining;
            }
            Event::Left => {
                self.fail_pending(ReplicaError::Uncertain);
                self.phase = Phase::Left;
            }
            Event::CheckpointRequest { view, .. } => {
                let state = self.freeze();
                self.actions.push_back(Action::Checkpoint { view, state: Box::new(state) });
            }
            Event::StateIncoming { view, .. } => {
                self.load = Some((view, Vec::new()));
                if let Some(st) = &mut self.store {
                    if let Some(Loading::Writing(w)) = st.load.take() {
                        let _ = w.abort();
                    }
                    st.load = Some(Loading::Head(Vec::new()));
                }
            }
            Event::StateChunk { view, offset, data } => {
                if let Err(reason) = self.take_chunk(view, offset, &data) {
                    self.actions.push_back(Action::Fatal { reason });
                }
            }
            Event::StateLoaded { view, .. } => match self.finish_load(view) {
                Ok(()) => {
                    self.phase = Phase::Ready;
                    self.announce();
                }
                Err(reason) => self.actions.push_back(Action::Fatal { reason }),
            },
            _ => {}
        }
    }

    fn on_view(&mut self, view: View, departed: &[MemberId], loading: &[MemberId], recovered: &[MemberId]) {
        let me_loading = loading.contains(&self.me);
        // A node back from its disk keeps its stored state as its own in the view it entered
        // through recovery: given as the donor's, or still on disk as a candidate while it loads.
        if std::mem::take(&mut self.recovered) && recovered.contains(&self.me) {
            let me = self.me;
            if let Some(Err(e)) = self.store.as_mut().map(|st| st.set_owner(me)) {
                self.storage_failed(&e);
            }
        }
        self.view = Some(view.clone());
        match self.phase {
            Phase::Ready | Phase::NoQuorum | Phase::Joining if !me_loading => {
                let first = self.phase == Phase::Joining;
                self.phase = Phase::Ready;
                if first {
                    // The first member of a new group (its state is empty), or the donor of a
                    // recovery: the stored state is its own.
                    let me = self.me;
                    if let Some(Err(e)) = self.store.as_mut().map(|st| st.set_owner(me)) {
                        self.storage_failed(&e);
                    }
                }
                self.log(&LogEntry::View { view: view.clone(), departed: departed.to_vec() });
                self.view_roles(departed);
                if first {
                    self.announce();
                }
            }
            Phase::Left => {}
            _ => {
                self.fail_pending(ReplicaError::Uncertain);
                self.sm.reset();
                self.wipe();
                self.phase = Phase::Loading;
            }
        }
    }

    /// Every member applies this at the same point of the delivery sequence (the view change
    /// is a barrier), so the role table stays replicated.
    fn view_roles(&mut self, departed: &[MemberId]) {
        let mut promote = 0;
        for d in departed {
            if self.roles.remove(d) == Some(Role::Active) {
                promote += 1;
            }
        }
        let standbys: Vec<MemberId> =
            self.roles.iter().filter(|(_, r)| **r == Role::Standby).map(|(m, _)| *m).take(promote).collect();
        for m in standbys {
            self.roles.insert(m, Role::Active);
        }
    }

    fn announce(&mut self) {
        if !self.announced {
            self.announced = true;
            self.multicast(Order::Safe, encode(&Msg::SetRole { member: self.me, role: self.cfg.role }));
        }
    }

    fn wipe(&mut self) {
        self.pos = 0;
        self.applied = 0;
        self.last_now_ms = 0;
        self.roles.clear();
        self.sessions = Sessions::new(self.cfg.max_sessions);
        self.announced = false;
        self.load = None;
    }

    fn fail_pending(&mut self, e: ReplicaError) {
        // Multicasts asked for and not yet taken are never sent: their requests are answered
        // now, and sending them later (by the member's next life, or in the next view) would
        // apply commands after their clients were told (docs/kv.md, "Uncertain replies").
        self.actions.retain(|a| !matches!(a, Action::Multicast { .. }));
        // Commands still in the batch never left: they certainly were not applied.
        self.batch_bytes = 0;
        for (req, ..) in std::mem::take(&mut self.batch) {
            if let Some(ticket) = self.writes.remove(&req) {
                self.actions.push_back(Action::Reply { ticket, result: Err(ReplicaError::NotReady) });
            }
        }
        for (_, ticket) in std::mem::take(&mut self.writes) {
            self.actions.push_back(Action::Reply { ticket, result: Err(e.clone()) });
        }
        // Applied, but not known stored everywhere: they may or may not survive.
        for (_, ticket, result) in std::mem::take(&mut self.held) {
            let result = match result {
                Ok(_) => Err(e.clone()),
                err => err,
            };
            self.actions.push_back(Action::Reply { ticket, result });
        }
        let mut reads = std::mem::take(&mut self.reads_next);
        if let Some((_, b)) = self.barrier.take() {
            reads.extend(b);
        }
        for (ticket, _) in reads {
            // A read changed nothing: say so, rather than "uncertain".
            self.actions.push_back(Action::Reply { ticket, result: Err(ReplicaError::NotReady) });
        }
    }

    /// Answers `ticket` now, or once every member stored the state it saw (`appendfsync
    /// always`: the reply waits for `Event::Durable` to reach this replica's position).
    fn reply(&mut self, ticket: Ticket, result: Result<S::Output, ReplicaError>) {
        let wait = self.store.as_ref().is_some_and(|st| st.opts.fsync == Fsync::Always);
        if wait && self.pos > self.durable_upto {
            self.held.push_back((self.pos, ticket, result));
        } else {
            self.actions.push_back(Action::Reply { ticket, result });
        }
    }

    /// Releases the replies whose position every member has stored.
    fn release(&mut self) {
        while self.held.front().is_some_and(|(pos, ..)| *pos <= self.durable_upto) {
            if let Some((_, ticket, result)) = self.held.pop_front() {
                self.actions.push_back(Action::Reply { ticket, result });
            }
        }
    }

    fn on_delivered(&mut self, sender: MemberId, order: Order, payload: &[u8]) {
        let Ok(msg) = postcard::from_bytes::<Msg<'_>>(payload) else {
            self.bad_messages += 1;
            return;
        };
        let mine = sender == self.me;
        match msg {
            Msg::Commands { now_ms, cmds } if order == Order::Safe => {
                self.log(&LogEntry::Delivered { sender, payload });
                let mut replies = Vec::new();
                for Cmd { req, session, seq, cmd } in cmds {
                    let ticket = if mine { self.writes.remove(&req) } else { None };
                    let result = self.apply(session, seq, now_ms, cmd);
                    if let Some(ticket) = ticket {
                        replies.push((ticket, result));
                    }
                }
                for (ticket, result) in replies {
                    self.reply(ticket, result);
                }
            }
            Msg::Barrier { id, now_ms } if order.is_total() => {
                // Whoever sent it: reads ordered after it judge expiry at that time or later.
                self.read_floor = self.read_floor.max(now_ms);
                if mine && self.barrier.as_ref().is_some_and(|b| b.0 == id) {
                    if let Some((_, reads)) = self.barrier.take() {
                        for (ticket, q) in reads {
                            let out = self.sm.query(&q, self.last_now_ms.max(self.read_floor));
                            self.reply(ticket, Ok(out));
                        }
                    }
                    self.launch_barrier();
                }
            }
            Msg::SetRole { member, role } if order == Order::Safe => {
                self.log(&LogEntry::Delivered { sender, payload });
                self.set_role(member, role);
            }
            _ => self.bad_messages += 1,
        }
    }

    fn set_role(&mut self, member: MemberId, role: Role) {
        let in_view = self.view.as_ref().is_some_and(|v| v.members.contains(&member));
        if in_view {
            self.roles.insert(member, role);
        }
    }

    /// Counts one entry of the replicated log, and stores it if the replica keeps a log.
    fn log(&mut self, entry: &LogEntry<'_>) {
        self.pos += 1;
        let pos = self.pos;
        let failed = match &mut self.store {
            Some(st) if st.valid => st.append(pos, entry).err(),
            _ => None,
        };
        if let Some(e) = failed {
            self.storage_failed(&e);
        }
    }

    /// The disk failed: nothing more can be stored or acknowledged as stored here. The replica
    /// stops (the driver shuts the member down); restarted, it recovers from what is on disk.
    fn storage_failed(&mut self, e: &StorageError) {
        if let Some(st) = &mut self.store {
            st.valid = false;
        }
        let reason = format!("storage failed: {e}");
        self.fail_pending(ReplicaError::Storage(e.to_string()));
        self.actions.push_back(Action::Fatal { reason });
    }

    fn apply(&mut self, session: u64, seq: u64, now_ms: u64, cmd: &[u8]) -> Result<S::Output, ReplicaError> {
        if session != 0 {
            if let Some((last, out)) = self.sessions.get(session) {
                if seq == last {
                    return Ok(out.clone());
                }
                if seq < last {
                    return Err(ReplicaError::StaleRequest { session, seq, last });
                }
            }
        }
        self.applied += 1;
        self.last_now_ms = self.last_now_ms.max(now_ms);
        let out = self.sm.apply(cmd, &Ctx { index: self.applied, now_ms: self.last_now_ms });
        if session != 0 {
            self.sessions.put(session, seq, self.applied, out.clone());
        }
        Ok(out)
    }

    /// Applies an entry read back from the log (no replies, nothing logged).
    fn replay(&mut self, pos: u64, bytes: &[u8]) -> Result<(), String> {
        let entry: LogEntry<'_> = postcard::from_bytes(bytes).map_err(|e| format!("bad log entry: {e}"))?;
        match entry {
            LogEntry::Delivered { payload, .. } => match postcard::from_bytes::<Msg<'_>>(payload) {
                Ok(Msg::Commands { now_ms, cmds }) => {
                    for Cmd { session, seq, cmd, .. } in cmds {
                        let _ = self.apply(session, seq, now_ms, cmd);
                    }
                }
                Ok(Msg::SetRole { member, role }) => self.set_role(member, role),
                _ => return Err("a logged message is not a command batch or a role".into()),
            },
            LogEntry::View { view, departed } => {
                self.view = Some(view);
                self.view_roles(&departed);
            }
        }
        self.pos = pos;
        Ok(())
    }

    /// The checkpoint's bookkeeping part: header and meta.
    fn checkpoint_head(&self) -> Vec<u8> {
        let meta = Meta {
            pos: self.pos,
            applied: self.applied,
            last_now_ms: self.last_now_ms,
            roles: self.roles.iter().map(|(m, r)| (*m, *r)).collect(),
            sessions: self.sessions.entries(),
        };
        let meta = postcard::to_stdvec(&meta).unwrap_or_default();
        let mut out = Vec::with_capacity(HEAD + meta.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(meta.len() as u64).to_le_bytes());
        out.extend_from_slice(&meta);
        out
    }

    /// The checkpoint (header, replicated bookkeeping, then the machine's state), frozen now.
    fn freeze(&self) -> ReplicaFrozen<S::Frozen> {
        ReplicaFrozen { head: Some(self.checkpoint_head()), machine: self.sm.freeze() }
    }

    /// Restores a checkpoint read from `r`, streamed; on an error the state is left empty.
    fn restore_from(&mut self, r: &mut dyn Read) -> Result<(), String> {
        let result = self.restore_inner(r);
        if result.is_err() {
            self.sm.reset();
            self.wipe();
        }
        result
    }

    fn restore_inner(&mut self, r: &mut dyn Read) -> Result<(), String> {
        let mut head = [0u8; HEAD];
        r.read_exact(&mut head).map_err(|e| format!("the checkpoint is truncated: {e}"))?;
        if &head[..8] != MAGIC {
            return Err("the checkpoint does not start with the replica header".into());
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&head[8..]);
        let len = u64::from_le_bytes(len);
        if len > MAX_META {
            return Err(format!("the checkpoint declares {len} bytes of bookkeeping, more than {MAX_META}"));
        }
        let mut meta = Vec::new();
        r.take(len).read_to_end(&mut meta).map_err(|e| format!("reading the checkpoint: {e}"))?;
        if meta.len() as u64 != len {
            return Err("the checkpoint is truncated".into());
        }
        let meta: Meta<S::Output> =
            postcard::from_bytes(&meta).map_err(|e| format!("bad replica header: {e}"))?;
        self.sm.restore_from(r).map_err(|e| e.to_string())?;
        self.pos = meta.pos;
        self.applied = meta.applied;
        self.last_now_ms = meta.last_now_ms;
        self.roles = meta.roles.into_iter().collect();
        self.sessions = Sessions::from_entries(self.cfg.max_sessions, meta.sessions);
        Ok(())
    }

    /// A piece of a transferred checkpoint: kept in memory, or written to disk as it comes.
    fn take_chunk(&mut self, view: ViewId, offset: u64, data: &[u8]) -> Result<(), String> {
        let on_disk = self.loaded_to_disk();
        let Some((v, got)) = &mut self.load else {
            return Err(format!("state chunk of view {view:?} without a transfer under way"));
        };
        if *v != view || offset != got.len() as u64 + on_disk {
            return Err(format!(
                "state chunk at offset {offset} of view {view:?} does not follow what was loaded"
            ));
        }
        let Some(st) = &mut self.store else {
            got.extend_from_slice(data);
            return Ok(());
        };
        match &mut st.load {
            Some(Loading::Writing(w)) => std::io::Write::write_all(w, data)
                .map_err(|e| format!("storage failed writing the loaded state: {e}")),
            Some(Loading::Head(head)) => {
                head.extend_from_slice(data);
                // The position sits in the bookkeeping, after the header: once it is here, the
                // state goes to a snapshot file at that position as it arrives.
                let Some(pos) = checkpoint_pos(head)? else { return Ok(()) };
                let mut w = SnapshotWriter::create(st.dir.clone(), pos).map_err(|e| e.to_string())?;
                std::io::Write::write_all(&mut w, head).map_err(|e| format!("storage failed: {e}"))?;
                st.load = Some(Loading::Writing(w));
                Ok(())
            }
            None => Err("state chunk with no load under way".into()),
        }
    }

    fn loaded_to_disk(&self) -> u64 {
        match self.store.as_ref().and_then(|st| st.load.as_ref()) {
            Some(Loading::Writing(w)) => w.body_len(),
            Some(Loading::Head(h)) => h.len() as u64,
            None => 0,
        }
    }

    /// The whole checkpoint of `view` arrived: restore it (from the snapshot file it was
    /// written to, if the replica keeps a disk), and make it the stored state.
    fn finish_load(&mut self, view: ViewId) -> Result<(), String> {
        match self.load.take() {
            Some((v, _)) if v != view => return Err(format!("state of view {view:?} loaded for view {v:?}")),
            None => return Err(format!("state of view {view:?} loaded without a transfer under way")),
            Some((_, buf)) if self.store.is_none() => return self.restore_from(&mut buf.as_slice()),
            Some(_) => {}
        }
        let me = self.me;
        let Some(st) = &mut self.store else { return Ok(()) };
        let info = match st.load.take() {
            Some(Loading::Writing(w)) => w.finish().map_err(|e| e.to_string())?,
            _ => return Err("the loaded state is shorter than its header".into()),
        };
        let mut r = SnapshotReader::open(st.dir.as_ref(), &info).map_err(|e| e.to_string())?;
        self.restore_from(&mut r)?;
        let pos = self.pos;
        let Some(st) = &mut self.store else { return Ok(()) };
        st.wal.restart_at(pos).map_err(|e| e.to_string())?;
        st.latest = Some(info);
        st.set_owner(me).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// The position in a checkpoint's bookkeeping, once enough of it is at hand.
fn checkpoint_pos(head: &[u8]) -> Result<Option<u64>, String> {
    if head.len() < HEAD {
        return Ok(None);
    }
    if &head[..8] != MAGIC {
        return Err("the transferred state does not start with the replica header".into());
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&head[8..HEAD]);
    let len = u64::from_le_bytes(len);
    if len > MAX_META {
        return Err(format!(
            "the transferred state declares {len} bytes of bookkeeping, more than {MAX_META}"
        ));
    }
    let Some(meta) = head.get(HEAD..HEAD + len as usize) else { return Ok(None) };
    // `pos` is the first field of the bookkeeping (a postcard varint).
    let (pos, _) = postcard::take_from_bytes::<u64>(meta).map_err(|e| format!("bad replica header: {e}"))?;
    Ok(Some(pos))
}

/// A replica's checkpoint, frozen: its bookkeeping, then the machine's pieces.
struct ReplicaFrozen<F> {
    head: Option<Vec<u8>>,
    machine: F,
}

impl<F: Frozen> Frozen for ReplicaFrozen<F> {
    fn next_piece(&mut self, out: &mut Vec<u8>, max: usize) -> bool {
        if let Some(head) = self.head.take() {
            out.extend_from_slice(&head);
            return true;
        }
        self.machine.next_piece(out, max)
    }
}

// ----- durability (see `durable.rs`) -----

/// What [`Replica::open`] found on disk.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The position of the stored state (0 if there is none).
    pub pos: u64,
    /// The member that owns it.
    pub owner: Option<MemberId>,
    /// The log's report (entries replayed, a torn tail cut off).
    pub report: crate::storage::OpenReport,
}

impl<S: StateMachine> Replica<S>
where
    S::Query: std::fmt::Debug,
    S::Output: std::fmt::Debug,
{
    /// A replica that keeps its state in `dir`: loads the latest snapshot and replays the log
    /// after it. The state is not this replica's yet: [`Replica::offer`] says whether it may be
    /// offered for recovery (and drops it if not).
    pub fn open(
        sm: S,
        me: MemberId,
        cfg: ReplicaConfig,
        dir: Arc<dyn Dir>,
        opts: DurableOptions,
    ) -> Result<(Replica<S>, Opened), StorageError> {
        let mut r = Replica::new(sm, me, cfg);
        let owner = Stored::read_owner(dir.as_ref())?;
        let latest = latest_snapshot(dir.as_ref())?;
        let mut after = 0;
        if let Some(info) = &latest {
            let mut reader = SnapshotReader::open(dir.as_ref(), info)?;
            r.restore_from(&mut reader).map_err(|why| StorageError::Corrupt {
                file: info.name.clone(),
                offset: 0,
                why: format!("the snapshot does not restore: {why}"),
            })?;
            if r.pos != info.pos {
                return Err(StorageError::Corrupt {
                    file: info.name.clone(),
                    offset: 0,
                    why: format!("it holds position {} but is named for {}", r.pos, info.pos),
                });
            }
            after = info.pos;
        }
        let (wal, report) =
            Wal::open(dir.clone(), opts.wal.clone(), after, |pos, bytes| r.replay(pos, bytes)).map_err(
                |e| match e {
                    OpenError::Storage(e) => e,
                    OpenError::Apply { pos, source } => StorageError::Corrupt {
                        file: "the log".into(),
                        offset: pos,
                        why: format!("entry at position {pos} does not apply: {source}"),
                    },
                },
            )?;
        let opened = Opened { pos: r.pos, owner, report };
        r.store = Some(Stored {
            dir,
            wal,
            opts,
            owner,
            valid: false,
            reported: 0,
            last_sync_ms: 0,
            sync_out: None,
            snapshotting: false,
            latest,
            load: None,
            status: StorageStatus::default(),
        });
        Ok((r, opened))
    }

    /// Whether the stored state may be offered for recovery by a node whose last membership
    /// was `member` (from the group's persisted record): only if that member owns it. Returns
    /// its position if so; otherwise drops it (the node joins like a new member).
    pub fn offer(&mut self, member: Option<MemberId>) -> Option<u64> {
        let owned = member.is_some() && self.store.as_ref().is_some_and(|st| st.owner == member);
        if owned {
            self.recovered = true;
            if let Some(st) = &mut self.store {
                st.valid = true;
                st.status.owned = true;
                st.reported = st.wal.synced_pos();
                return Some(self.pos);
            }
        }
        self.sm.reset();
        self.wipe();
        None
    }

    /// Syncs the log as the policy says (call once per batch of events: group commit), and
    /// queues [`Action::Durable`] if the stored position rose. `now_ms` is the wall clock (for
    /// `everysec`), `clock_us` a monotonic clock in microseconds (fsync timings).
    pub fn sync(&mut self, now_ms: u64, clock_us: &dyn Fn() -> u64) {
        let Some(st) = &mut self.store else { return };
        let r = st.sync(now_ms, clock_us);
        self.synced(r);
    }

    /// A sync's outcome: the stored position, if it rose, goes to the member; a failure stops
    /// the replica.
    fn synced(&mut self, r: Result<Option<u64>, StorageError>) {
        match r {
            Ok(Some(pos)) => self.actions.push_back(Action::Durable { pos }),
            Ok(None) => {}
            Err(e) => self.storage_failed(&e),
        }
    }

    /// [`Replica::sync`] without waiting for the disk: starts a sync of the log if the policy
    /// says so now and none is out, and returns it to run on another thread (appends go on
    /// meanwhile); hand its result to [`Replica::sync_finish`], which queues
    /// [`Action::Durable`]. Returns `None` when there is nothing to sync, a sync is already out,
    /// or the storage synced here (it cannot sync from another thread).
    pub fn sync_start(&mut self, now_ms: u64, clock_us: &dyn Fn() -> u64) -> Option<WalSync> {
        let st = self.store.as_mut()?;
        match st.sync_start(now_ms, clock_us) {
            Ok((pos, job)) => {
                if let Some(pos) = pos {
                    self.actions.push_back(Action::Durable { pos });
                }
                job
            }
            Err(e) => {
                self.storage_failed(&e);
                None
            }
        }
    }

    /// A sync from [`Replica::sync_start`] ended (`clock_us` as there, for its timing).
    pub fn sync_finish(&mut self, done: WalSynced, clock_us: &dyn Fn() -> u64) {
        let Some(st) = &mut self.store else { return };
        let r = st.sync_finish(done, clock_us);
        self.synced(r);
    }

    /// A snapshot to write now, if the log has grown past `snapshot_log_bytes` (or `force`, for
    /// SAVE/BGSAVE) and none is being written. Run it off the replica's thread if it is large;
    /// then [`Replica::snapshot_done`].
    pub fn snapshot_job(&mut self, force: bool) -> Option<SnapshotJob> {
        if !matches!(self.phase, Phase::Ready | Phase::NoQuorum) {
            return None;
        }
        let pos = self.pos;
        let st = self.store.as_ref().filter(|st| st.valid && !st.snapshotting)?;
        // As Redis rewrites its AOF (auto-aof-rewrite-percentage): once the log is half as large
        // as the last snapshot too, so that writing snapshots costs about twice what writing
        // the log does whatever the state's size (a snapshot every 64 MiB of a 1 GiB state would
        // write 8 GiB), and a restart replays at most half a snapshot's worth of log.
        let last = st.latest.as_ref().map_or(0, |l| l.size);
        let due = st.wal.bytes() >= st.opts.snapshot_log_bytes.max(last / 2);
        if !(force || due) || st.latest.as_ref().is_some_and(|l| l.pos >= pos) {
            return None;
        }
        let state = Box::new(self.freeze());
        let st = self.store.as_mut()?;
        st.snapshotting = true;
        Some(SnapshotJob { dir: st.dir.clone(), pos, state })
    }

    /// A snapshot job ended (`now_ms`: when). On success the log behind it is dropped.
    pub fn snapshot_done(&mut self, result: Result<SnapshotInfo, StorageError>, now_ms: u64) {
        let Some(st) = &mut self.store else { return };
        st.snapshotting = false;
        match result {
            Ok(info) => {
                let pos = info.pos;
                st.latest = Some(info);
                st.status.snapshots_written += 1;
                st.status.last_snapshot_ms = now_ms;
                st.snapshot_ok();
                // Only what the snapshot covers and is synced may go.
                let upto = pos.min(st.wal.synced_pos());
                if let Err(e) = st.wal.truncate_through(upto) {
                    self.storage_failed(&e);
                }
            }
            // A failed snapshot loses nothing: the log still holds everything.
            Err(e) => st.status.last_snapshot_error = Some(e.to_string()),
        }
    }

    /// Syncs everything logged, whatever the policy (a clean shutdown).
    pub fn sync_all(&mut self) -> Result<(), StorageError> {
        match &mut self.store {
            Some(st) if st.valid => st.wal.sync(),
            _ => Ok(()),
        }
    }

    /// The storage's report, if the replica keeps one.
    pub fn storage_status(&self) -> Option<StorageStatus> {
        self.store.as_ref().map(Stored::status)
    }
}

/// [`Replica::digest`] of a state frozen by [`Replica::frozen_machine`], for a machine whose
/// `digest` is FNV-1a over its snapshot bytes (as `chorus-kv`'s is): the same value, computed
/// from the frozen copy wherever the caller likes.
pub fn frozen_digest(applied: u64, mut state: impl Frozen) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut piece = Vec::with_capacity(64 << 10);
    while state.next_piece(&mut piece, 64 << 10) {
        for &c in &piece {
            h ^= u64::from(c);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        piece.clear();
    }
    h ^ applied.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn encode(msg: &Msg<'_>) -> Bytes {
    // Serializing our own enum into a Vec cannot fail.
    Bytes::from(postcard::to_stdvec(msg).unwrap_or_default())
}
