//! The run loop: one thread, one event queue, many cores.
//!
//! ```text
//!   queue of (global time, seq) ──► pop ──► frame arrives / timer fires / workload sends /
//!                                             nemesis strikes / phase changes
//!                                                    │ one call into one Node
//!                                                    ▼
//!          drain poll_transmit ──► Network (delay, break, duplicate, partition) ──► queue
//!          drain poll_event    ──► trace event ──► Checker (stop at first violation)
//!          re-read poll_timeout ──► local time → global time ──► queue (newest timer wins)
//! ```
//!
//! Time: the queue runs on global nanoseconds; each node sees its own skewed clock
//! (`local = offset + rate × global`) and its `poll_timeout` is mapped back. Ties are broken by
//! insertion order, so a run depends on nothing but its seed.
//!
//! Phases (TigerBeetle VOPR): *safety* runs the workload under faults; *liveness* heals
//! everything, restarts what crashed, runs the workload one more second and then waits for one
//! view of every live node (plus two quiet seconds for retransmissions). The checker's G12 judges
//! that at the `End` event.
//!
//! The nemesis may crash a node, or make it leave, only if every view the group may install
//! next still has a live majority afterwards: the highest view anyone installed, a view some
//! node accepted (decided, maybe, and installed by no one yet), and the worst view the change
//! in progress could build (members that promised and died, dead joiners; see `removable`).
//! Primary partition makes a group that lost a majority for good unable to move, and no
//! protocol could pass liveness then; so a run that ends that way fails
//! ([`Failure::MajorityLost`]): the rule missed a case and must be fixed, no seed is excused.
//! With disks (`SimOptions::disks`), nodes come back from what they stored, and any crash is
//! allowed: one node, a majority, or the whole group (docs/protocol/recovery.md).
//!
//! With the store (`SimOptions::store`), each node also runs a replica of the key-value store
//! and clients send it commands ([`crate::store`]; the node side is in `replicas.rs`).

mod replicas;

use core::cmp::Ordering;
use std::collections::BinaryHeap;

use bytes::Bytes;
use chorus_check::{Ev, Guarantee, Proc, TraceEvent, Violation};
use chorus_core::{
    BlockReason, Config, Event, Incarnation, Instant, MemberId, Node, NodeId, Order, Persisted, Recovery,
    Status,
};

use crate::app::App;
use crate::marks::{MarkCounts, SimMark};
use crate::nemesis::{Fault, FaultKind, Nemesis, Targets};
use crate::network::{InFlight, NetStats, Network};
use crate::options::{ScriptedFault, SimOptions, MS, SEC};
use crate::recorder::Recorder;
use crate::rng;
use crate::store::{Store, StoreStats};
use crate::workload::Workload;

/// How long the liveness phase may take at most.
pub const LIVENESS_MAX: u64 = 30 * SEC;
/// How long the workload goes on in the liveness phase.
pub const LIVENESS_WORKLOAD: u64 = SEC;
/// Quiet time after convergence, for retransmissions to finish.
pub const QUIET: u64 = 2 * SEC;
/// How often convergence is checked in the liveness phase.
const CHECK_EVERY: u64 = 20 * MS;
/// More events than this at one instant means the core keeps asking for a timer in the past.
const SAME_INSTANT_MAX: u64 = 1_000_000;

/// What a run should produce besides the verdict.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Keep the whole trace (for `replay`).
    pub keep_trace: bool,
    /// Narrate views, faults and blocks readably.
    pub narrate: bool,
    /// Run every node with this deliberate protocol bug.
    #[cfg(feature = "mutants")]
    pub mutant: Option<chorus_core::Mutant>,
    /// Run every replica of the store with this deliberate bug (on seeds with the store).
    #[cfg(feature = "mutants")]
    pub store_mutant: Option<crate::store::StoreMutant>,
}

impl Settings {
    /// Keep the trace, and narrate if asked (what `replay` does).
    pub fn traced(narrate: bool) -> Settings {
        Settings {
            keep_trace: true,
            narrate,
            #[cfg(feature = "mutants")]
            mutant: None,
            #[cfg(feature = "mutants")]
            store_mutant: None,
        }
    }
}

/// Why a run failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The checker found a broken guarantee.
    Violation(Violation),
    /// The liveness phase ended without one view of all live nodes (and the checker did not
    /// name a guarantee for it).
    NoConvergence(String),
    /// The liveness phase ended with the highest view short of a live majority for good because
    /// the nemesis crashed too many of its members, which its rule must prevent (a harness bug;
    /// the trace fails G12 in `chorus check`).
    MajorityLost(String),
    /// The core keeps the simulation at one instant (a timer always in the past).
    Livelock(String),
    /// `handle_frame` accepted random bytes.
    GarbageAccepted(String),
    /// `handle_frame` rejected a frame a core produced: an encoding bug or an oversized frame.
    /// (Stale frames, from old lives or old views, are accepted and ignored, not rejected.)
    FrameRejected(String),
    /// A node could not be built.
    Config(String),
    /// The core (or the harness) panicked.
    Panic(String),
    /// The replicated store broke a promise to its clients (`crate::store`).
    Store(String),
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Failure::Violation(v) => write!(f, "{v}"),
            Failure::NoConvergence(s) => write!(f, "no convergence: {s}"),
            Failure::MajorityLost(s) => write!(
                f,
                "the fault injector left the group without a live majority for good (a simulator bug: \
                 its rule in `Cluster::removable` missed a case): {s}"
            ),
            Failure::Livelock(s) => write!(f, "livelock: {s}"),
            Failure::GarbageAccepted(s) => write!(f, "garbage frame accepted: {s}"),
            Failure::FrameRejected(s) => write!(f, "a frame a core produced was rejected: {s}"),
            Failure::Config(s) => write!(f, "node config rejected: {s}"),
            Failure::Panic(s) => write!(f, "panic: {s}"),
            Failure::Store(s) => write!(f, "the replicated store: {s}"),
        }
    }
}

/// Counts for reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Queue events processed.
    pub steps: u64,
    /// Trace events recorded.
    pub trace_events: u64,
    /// Multicasts accepted.
    pub sends: u64,
    /// Deliveries.
    pub deliveries: u64,
    /// Distinct views installed (highest view id).
    pub highest_view: u64,
    /// Crashes, pauses, partitions, leaves, exclusions, garbage frames.
    pub crashes: u64,
    /// Pauses.
    pub pauses: u64,
    /// Partitions.
    pub partitions: u64,
    /// Graceful leaves.
    pub leaves: u64,
    /// Exclusions (false suspicions and partitions).
    pub exclusions: u64,
    /// Garbage frames handed to nodes.
    pub garbage: u64,
    /// Network counters.
    pub net: NetStats,
    /// When the liveness phase converged, if it did.
    pub converged_at: Option<u64>,
    /// The store's clients (on seeds with the store).
    pub store: StoreStats,
}

/// The result of one seed.
#[derive(Debug)]
pub struct Outcome {
    /// The options the seed drew.
    pub options: SimOptions,
    /// `None` if every check passed.
    pub failure: Option<Failure>,
    /// Hash of the whole trace.
    pub trace_hash: u64,
    /// Simulated time at the end.
    pub simulated: u64,
    /// Coverage marks.
    pub marks: MarkCounts,
    /// Counters.
    pub stats: RunStats,
    /// The last view installed, if any.
    pub final_view: Option<(u64, Vec<Proc>)>,
    /// The trace, if kept.
    pub trace: Option<Vec<TraceEvent>>,
    /// The narration, if asked for.
    pub narration: Vec<String>,
    /// The store's history (`chorus-lin`'s JSON lines events), if the trace was kept.
    pub store_history: Option<Vec<chorus_lin::jsonl::Event>>,
}

/// What the queue holds.
#[derive(Debug)]
enum Step {
    /// Start a node (first boot, joiner arrival, restart).
    Start(u64),
    /// A frame arrives (index into `Cluster::wire`).
    Frame(u32),
    Timer {
        node: u64,
        gen: u64,
    },
    Multicast {
        node: u64,
        life: u64,
    },
    Resume {
        node: u64,
        life: u64,
    },
    Burst,
    FlushCrash,
    /// The application syncs its state to disk (with disks on).
    Sync {
        node: u64,
        life: u64,
    },
    /// The donor application writes the next piece of its checkpoint.
    StateWrite {
        node: u64,
        life: u64,
    },
    /// Crash `node` if it is still giving or loading a checkpoint.
    TransferCrash {
        node: u64,
        life: u64,
    },
    Nemesis(FaultKind),
    Scripted(usize),
    /// A client of the store sends its next operation.
    StoreClient(usize),
    /// A client of the store stops waiting for operation `op`.
    StoreTimeout {
        client: usize,
        op: usize,
    },
    Heal(u64),
    Liveness,
    Check,
}

#[derive(Debug)]
struct Queued {
    t: u64,
    seq: u64,
    step: Step,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    /// Reversed: `BinaryHeap` is a max-heap and we want the earliest first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.t, o.seq).cmp(&(self.t, self.seq))
    }
}

/// One life of a node.
#[derive(Debug)]
struct Life {
    node: Node,
    /// Unique per life, so that stale timers and ticks of an earlier life are ignored.
    id: u64,
    /// The member it currently is (changes on `Excluded`).
    proc_: Proc,
    leaving: Option<u64>,
    paused: bool,
    inbox: Vec<(u64, Bytes)>,
    timer_at: Option<u64>,
    timer_gen: u64,
    /// A multicast refused as "not now", to retry (with the same order).
    pending: Option<(Bytes, Order)>,
    /// View id of its latest accepted multicast.
    sent_view: Option<u64>,
    /// Paused or partitioned in this life (so an exclusion is a false suspicion).
    disturbed: bool,
    /// Cut off by a partition that has since healed.
    healed_from_partition: bool,
    /// Node ids it delivered from in its current view, as bits (for a coverage mark).
    delivered_from: u64,
    /// Blocked for a view change: deliveries now are the flush's.
    flushing: bool,
    /// Total and safe messages delivered in the current flush.
    flush_totals: u32,
    /// The replicated state machine.
    app: App,
    /// It loaded its state by transfer (in this incarnation).
    loaded_by_transfer: bool,
    /// With disks: the states the machine went through since its last sync (a crash may leave
    /// any prefix of them on disk).
    unsynced: Vec<(u64, u64)>,
    /// The store's replica (with the store on).
    kv: Option<Box<replicas::KvNode>>,
}

/// A node's disk (with `SimOptions::disks`): what survives its crashes.
#[derive(Clone, Debug, Default)]
struct Disk {
    /// The core's last record (stored before any frame that follows it).
    persisted: Option<Persisted>,
    /// The member whose state `state` is (see `chorus_smr`'s owner rule).
    owner: Option<MemberId>,
    /// The state machine's stored state: (applied, hash).
    state: Option<(u64, u64)>,
    /// With the store: its replica's data directory (log, snapshots, owner file).
    kv_dir: chorus_smr::storage::SimDir,
    /// With the store: the reference machine's state (applied, hash) at each position of the
    /// replica's log on this disk. The replica's stored state is what a restart recovers, and
    /// the reference machine must come back at the same point of the group's history.
    shadow: std::collections::BTreeMap<u64, (u64, u64)>,
}

#[derive(Debug)]
enum Slot {
    Idle,
    Up(Box<Life>),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Phase {
    Safety,
    Liveness,
    Done,
}

struct Partition {
    id: u64,
    cuts: Vec<(u64, u64)>,
}

/// A run in progress.
pub struct Cluster {
    o: SimOptions,
    #[cfg(feature = "mutants")]
    mutant: Option<chorus_core::Mutant>,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Queued>,
    slots: Vec<Slot>,
    restarts: Vec<u64>,
    next_life: u64,
    next_gen: u64,
    net: Network,
    nemesis: Nemesis,
    workload: Workload,
    rec: Recorder,
    marks: MarkCounts,
    stats: RunStats,
    phase: Phase,
    partition: Option<Partition>,
    next_partition: u64,
    highest: Option<(u64, Vec<Proc>)>,
    workload_until: u64,
    liveness_at: u64,
    quiet: Option<(u64, u64)>,
    same_instant: u64,
    failure: Option<Failure>,
    /// Highest view whose flush was considered for a targeted crash.
    flush_crash_view: u64,
    /// Joiners that crashed or left before any view admitted them, each with the time until
    /// which a member may still hold its join request and admit it (see `removable`).
    ghosts: Vec<(Proc, u64)>,
    /// How long after a joiner dies a member may still admit it, pauses aside (see `ghost_ttl`).
    ghost_ttl: u64,
    /// When the last pause applied so far ends.
    pauses_end: u64,
    /// Lives the nemesis ended (crashed, or made leave), for [`Failure::MajorityLost`].
    ended: Vec<Proc>,
    /// Members of the highest view that crashed wedged in it (they may have promised, so be
    /// in the next view), until a newer view is installed (see `removable`).
    died_wedged: Vec<Proc>,
    /// Reused buffer for a node's events.
    scratch: Vec<Event>,
    /// Frames in flight (the queue holds indices: small entries sift faster).
    wire: Slab,
    digests: Digests,
    /// Each node's disk, by node id (with disks on).
    disks: Vec<Disk>,
    /// What a crash leaves of the unsynced writes.
    disk_rng: crate::rng::SimRng,
    /// The store's clients and history (with the store on).
    store: Option<Box<Store>>,
}

impl core::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Cluster").field("seed", &self.o.seed).field("now", &self.now).finish_non_exhaustive()
    }
}

/// The running life of `node`, if it is up. (A free function so that the borrow of one slot
/// leaves the rest of the cluster usable.)
fn life_of(slots: &mut [Slot], node: u64) -> Option<&mut Life> {
    match slots.get_mut(node as usize) {
        Some(Slot::Up(l)) => Some(l),
        _ => None,
    }
}

fn proc_of(m: MemberId) -> Proc {
    Proc { node: m.node.0, inc: m.inc.0 }
}

/// How long after a joiner dies a member may still admit it: its last request may be on its
/// way, and a member keeps a request for 4 join retry intervals of its own clock (which may run
/// 10% slow); twice that, to be safe. A pause extends it (see `Fault::Pause`).
fn ghost_ttl(o: &SimOptions) -> u64 {
    let retry = Config::new(NodeId(0), Incarnation(0)).join_retry_interval;
    let kept = u64::try_from(retry.as_nanos()).unwrap_or(u64::MAX / 16).saturating_mul(4);
    kept.saturating_mul(2).saturating_add(o.delay_min + o.jitter)
}

/// Whether this life is wedged in view `view` (blocked in its change: it may have promised).
fn wedged_in(l: &Life, view: u64) -> bool {
    l.node.status() == Status::Blocked && l.node.view().is_some_and(|v| v.id.0 == view)
}

/// The trace's name for an ordering mode.
fn trace_order(o: Order) -> chorus_check::Order {
    match o {
        Order::Fifo => chorus_check::Order::Fifo,
        Order::Causal => chorus_check::Order::Causal,
        Order::Total => chorus_check::Order::Total,
        Order::Safe => chorus_check::Order::Safe,
    }
}

/// With the store, the length of the reference machine's checkpoint, which the replica's
/// follows in the same transfer.
fn own_len(o: &SimOptions) -> Option<u64> {
    o.store.on.then_some(chorus_check::checkpoint::HEADER_LEN + o.state.filler)
}

/// A node id as a bit (node ids are small; larger ones share bits, which only blurs a mark).
fn node_bit(node: u64) -> u64 {
    1 << (node % 64)
}

impl Cluster {
    /// A run of `o`, before its first step.
    pub fn new(o: SimOptions, settings: Settings) -> Cluster {
        let n = o.total_nodes() as usize;
        let rec = Recorder::new(settings.keep_trace, settings.narrate);
        let mut c = Cluster {
            net: Network::new(&o),
            nemesis: Nemesis::new(&o),
            workload: Workload::new(&o),
            rec,
            #[cfg(feature = "mutants")]
            mutant: settings.mutant,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            slots: (0..n).map(|_| Slot::Idle).collect(),
            restarts: vec![0; n],
            next_life: 0,
            next_gen: 0,
            marks: MarkCounts::default(),
            stats: RunStats::default(),
            phase: Phase::Safety,
            partition: None,
            next_partition: 0,
            highest: None,
            workload_until: u64::MAX,
            liveness_at: o.safety,
            quiet: None,
            same_instant: 0,
            failure: None,
            ghosts: Vec::new(),
            ghost_ttl: ghost_ttl(&o),
            pauses_end: 0,
            ended: Vec::new(),
            died_wedged: Vec::new(),
            flush_crash_view: 0,
            scratch: Vec::new(),
            wire: Slab::default(),
            digests: Digests::default(),
            // One disk each (`vec![x; n]` would clone one `SimDir`: the same disk).
            disks: (0..n).map(|_| Disk { shadow: [(0, (0, 0))].into(), ..Disk::default() }).collect(),
            disk_rng: crate::rng::stream(crate::rng::mix(o.seed ^ 0xd15c), crate::rng::Stream::Disk),
            store: o.store.on.then(|| Box::new(Store::new(o.store.clone(), o.seed, o.disks.on))),
            o,
        };
        #[cfg(feature = "mutants")]
        if let Some(store) = c.store.as_mut() {
            store.mutant = settings.store_mutant;
        }
        let clients = c.store.as_ref().map_or(0, |s| s.clients());
        for client in 0..clients {
            let t = c.store.as_mut().map_or(0, |s| s.think());
            c.push(t, Step::StoreClient(client));
        }
        for (i, t) in c.o.start_at.clone().into_iter().enumerate() {
            c.push(t, Step::Start(i as u64));
        }
        for (i, t) in c.o.joiners_at.clone().into_iter().enumerate() {
            c.push(t, Step::Start(c.o.initial_nodes + i as u64));
        }
        for kind in FaultKind::ALL {
            if let Some(t) = c.nemesis.next(kind, 0) {
                c.push(t, Step::Nemesis(kind));
            }
        }
        for (i, (t, _)) in c.o.script.clone().into_iter().enumerate() {
            c.push(t, Step::Scripted(i));
        }
        if let Some(t) = c.o.burst_at {
            c.push(t, Step::Burst);
        }
        c.push(c.o.safety, Step::Liveness);
        c
    }

    /// Runs to the end and judges.
    pub fn run(mut self) -> Outcome {
        while self.failure.is_none() && self.phase != Phase::Done {
            let Some(q) = self.queue.pop() else { break };
            if q.t == self.now {
                self.same_instant += 1;
                if self.same_instant > SAME_INSTANT_MAX {
                    self.failure = Some(Failure::Livelock(format!(
                        "more than {SAME_INSTANT_MAX} steps at t={}ns (a timer that is always due?)",
                        self.now
                    )));
                    break;
                }
            } else {
                self.same_instant = 0;
            }
            self.now = q.t;
            self.stats.steps += 1;
            self.step(q.step);
        }
        if self.phase != Phase::Done && self.failure.is_none() {
            // The queue ran dry (nothing left to happen): judge now.
            self.end();
        }
        self.outcome()
    }

    fn outcome(mut self) -> Outcome {
        for slot in &self.slots {
            if let Slot::Up(l) = slot {
                self.marks.add_core(l.node.marks());
            }
        }
        self.stats.trace_events = self.rec.events;
        self.stats.net = self.net.stats;
        self.stats.highest_view = self.highest.as_ref().map_or(0, |h| h.0);
        let mut store_history = None;
        if let Some(store) = self.store.as_mut() {
            self.stats.store = store.stats.clone();
            self.marks.store(&store.stats);
            if self.rec.trace.is_some() {
                store_history = Some(store.jsonl());
            }
        }
        Outcome {
            failure: self.failure,
            trace_hash: self.rec.hash(),
            simulated: self.now,
            marks: self.marks,
            stats: self.stats,
            final_view: self.highest,
            trace: self.rec.trace.take(),
            narration: self.rec.narrator.take().map(|n| n.lines).unwrap_or_default(),
            store_history,
            options: self.o,
        }
    }

    fn push(&mut self, t: u64, step: Step) {
        self.seq += 1;
        self.queue.push(Queued { t, seq: self.seq, step });
    }

    fn record(&mut self, p: Option<Proc>, ev: Ev) {
        if self.failure.is_some() {
            return;
        }
        if let Err(v) = self.rec.record(TraceEvent { t: self.now, p, ev }) {
            self.failure = Some(Failure::Violation(v));
        }
    }

    fn local(&self, node: u64) -> Instant {
        let clock = self.o.clocks.get(node as usize).copied().unwrap_or(crate::options::Clock::EXACT);
        Instant::from_nanos(clock.local(self.now))
    }

    fn step(&mut self, step: Step) {
        match step {
            Step::Start(node) => self.start(node),
            Step::Frame(i) => {
                if let Some(f) = self.wire.take(i) {
                    self.arrive(f);
                }
            }
            Step::Timer { node, gen } => {
                let now = self.local(node);
                let Some(l) = life_of(&mut self.slots, node) else { return };
                if l.timer_gen != gen || l.paused {
                    return;
                }
                l.timer_at = None;
                l.node.handle_timeout(now);
                self.drain(node);
            }
            Step::Multicast { node, life } => self.multicast(node, life),
            Step::Resume { node, life } => self.resume(node, life),
            Step::Burst => self.burst(),
            Step::FlushCrash => self.flush_crash(),
            Step::StateWrite { node, life } => self.state_write(node, life),
            Step::Sync { node, life } => self.sync(node, life),
            Step::TransferCrash { node, life } => self.transfer_crash(node, life),
            Step::Nemesis(kind) => {
                if self.phase != Phase::Safety {
                    return;
                }
                let targets = self.targets();
                if let Some(fault) = self.nemesis.draw(kind, &targets) {
                    self.apply(fault);
                }
                if let Some(t) = self.nemesis.next(kind, self.now) {
                    self.push(t, Step::Nemesis(kind));
                }
            }
            Step::Scripted(i) => {
                if self.phase != Phase::Safety {
                    return;
                }
                let Some((_, f)) = self.o.script.get(i).cloned() else { return };
                let fault = match f {
                    ScriptedFault::Crash { node, restart_after } => Fault::Crash { node, restart_after },
                    ScriptedFault::Pause { node, duration } => Fault::Pause { node, duration },
                    ScriptedFault::Leave { node, rejoin_after } => Fault::Leave { node, rejoin_after },
                    ScriptedFault::Partition { side, duration } => {
                        let others: Vec<u64> =
                            (0..self.o.total_nodes()).filter(|n| !side.contains(n)).collect();
                        let mut cuts = Vec::new();
                        for a in &side {
                            for b in &others {
                                cuts.push((*a, *b));
                                cuts.push((*b, *a));
                            }
                        }
                        Fault::Partition { mode: crate::options::PartitionMode::Split, cuts, duration }
                    }
                };
                let allowed = match &fault {
                    Fault::Crash { node, .. } => self.crashable(*node),
                    Fault::Leave { node, .. } => self.removable(*node),
                    Fault::Pause { node, .. } => life_of(&mut self.slots, *node).is_some_and(|l| !l.paused),
                    _ => true,
                };
                if allowed {
                    self.apply(fault);
                } else {
                    self.rec.note(self.now, || format!("(scripted {fault:?} skipped: not allowed now)"));
                }
            }
            Step::Heal(id) => {
                if self.partition.as_ref().is_some_and(|p| p.id == id) {
                    self.heal();
                }
            }
            Step::Liveness => self.liveness(),
            Step::Check => self.check(),
            Step::StoreClient(client) => self.store_client(client),
            Step::StoreTimeout { client, op } => self.store_timeout(client, op),
        }
    }

    // ----- node lives -----

    fn start(&mut self, node: u64) {
        if life_of(&mut self.slots, node).is_some() || self.phase == Phase::Done {
            return;
        }
        let Some(restarts) = self.restarts.get_mut(node as usize) else { return };
        let inc = *restarts << 32;
        *restarts += 1;
        let mut config = Config::new(NodeId(node), Incarnation(inc));
        config.seeds = (0..self.o.total_nodes()).filter(|n| *n != node).map(NodeId).collect();
        // Node 0 is configured to found the group until a group exists (it founds once a
        // majority of the nodes answer that they belong to none). Restarted with that config and
        // no data directory after the group was founded, it could found a second group from
        // nodes restarted fresh while the old group's survivors are cut off: DESIGN G15 holds
        // with data directories, so with disks it keeps that config in every life.
        let disks = self.o.disks.on;
        config.bootstrap = node == 0 && (disks || self.highest.is_none());
        // With disks: back from what it stored, offering its state if its last membership owns it.
        let mut stored = None;
        config.durable_membership = disks;
        if let Some(d) = self.disks.get(node as usize).filter(|_| disks) {
            if let Some(p) = &d.persisted {
                config.group = Some(p.group);
                config.last_view = p.last_view;
                // (With the store, its replica's disk says what it offers: `open_replica`.)
                if let Some(m) = p.membership.as_ref().filter(|_| !self.o.store.on) {
                    stored = d.state.filter(|_| d.owner == Some(m.me));
                    config.recovery = Some(Recovery { membership: m.clone(), state: stored.map(|s| s.0) });
                }
            }
        }
        // Founds a group (with the initial state) only if it has none on disk.
        let founder = config.bootstrap && config.group.is_none();
        config.seed = rng::mix(self.o.seed ^ rng::mix(node << 32 | inc));
        config.ack_delay = std::time::Duration::from_nanos(self.o.ack_delay);
        if self.o.state.on {
            config.state_transfer = true;
            config.max_payload = self.o.state.chunk.max(self.o.payload_max);
            config.state_window = self.o.state.window.max(config.max_payload as u64);
            config.state_buffer = self.o.state.buffer;
        }
        if let Some(max) = self.o.max_frame {
            config.max_frame = max;
            config.max_payload = config.max_payload.min(max - 1024);
        }
        #[cfg(feature = "mutants")]
        {
            config.mutant = self.mutant;
        }
        let kv = if self.o.store.on {
            match self.open_replica(node, MemberId::new(node, inc), &mut config) {
                Ok((k, s)) => {
                    stored = s;
                    Some(Box::new(k))
                }
                Err(e) => {
                    self.failure = Some(Failure::Store(e));
                    return;
                }
            }
        } else {
            None
        };
        let bootstrap = founder;
        let built = Node::new(config, self.local(node));
        let core = match built {
            Ok(core) => core,
            Err(e) => {
                self.failure = Some(Failure::Config(e.to_string()));
                return;
            }
        };
        let proc_ = Proc { node, inc };
        self.next_life += 1;
        let life = self.next_life;
        self.slots[node as usize] = Slot::Up(Box::new(Life {
            node: core,
            id: life,
            proc_,
            leaving: None,
            paused: false,
            inbox: Vec::new(),
            timer_at: None,
            timer_gen: 0,
            pending: None,
            sent_view: None,
            disturbed: false,
            healed_from_partition: false,
            delivered_from: 0,
            flushing: false,
            flush_totals: 0,
            app: App::new(bootstrap || !self.o.state.on),
            loaded_by_transfer: false,
            unsynced: Vec::new(),
            kv,
        }));
        if let (Some((applied, hash)), Some(Slot::Up(l))) = (stored, self.slots.get_mut(node as usize)) {
            l.app.holds = true;
            l.app.applied = applied;
            l.app.hash = hash;
        }
        if disks {
            self.push(self.now + self.o.disks.sync_every, Step::Sync { node, life });
        }
        self.record(Some(proc_), Ev::Start { bootstrap });
        if self.now < self.workload_until {
            let t = self.workload.next(self.now);
            self.push(t, Step::Multicast { node, life });
        }
        self.drain(node);
    }

    /// Ends a life: reads its marks, drops its state, loses what is in flight to it.
    fn stop(&mut self, node: u64) -> Option<Box<Life>> {
        let slot = self.slots.get_mut(node as usize)?;
        let Slot::Up(mut l) = core::mem::replace(slot, Slot::Idle) else { return None };
        if !self.highest.as_ref().is_some_and(|h| h.1.contains(&l.proc_)) {
            let now = self.now;
            self.ghosts.retain(|g| g.1 > now);
            self.ghosts.push((l.proc_, now.max(self.pauses_end) + self.ghost_ttl));
        } else if self.highest.as_ref().is_some_and(|h| wedged_in(&l, h.0)) {
            self.died_wedged.push(l.proc_);
        }
        self.ended.push(l.proc_);
        self.marks.add_core(l.node.marks());
        self.net.reset_into(node);
        self.cut_off(&mut l);
        Some(l)
    }

    fn arrive(&mut self, f: InFlight) {
        if !self.net.arrives(&f) {
            return;
        }
        let now = self.local(f.to);
        let Some(l) = life_of(&mut self.slots, f.to) else { return };
        if l.paused {
            l.inbox.push((f.from, f.frame));
            return;
        }
        // Every frame here was produced by a core (garbage comes as `Fault::Garbage`).
        if let Err(e) = l.node.handle_frame(now, NodeId(f.from), &f.frame) {
            self.reject(f.to, e);
        }
        self.drain(f.to);
    }

    fn multicast(&mut self, node: u64, life: u64) {
        if self.now >= self.workload_until {
            return;
        }
        let now = self.local(node);
        let next = self.workload.next(self.now);
        let Some(l) = life_of(&mut self.slots, node) else { return };
        if l.id != life {
            return;
        }
        if !l.paused && l.leaving.is_none() {
            let (n, inc) = (l.proc_.node, l.proc_.inc);
            let (payload, order) = match l.pending.take() {
                Some(pending) => pending,
                None => (self.workload.payload(n, inc), self.workload.order()),
            };
            let Some(l) = life_of(&mut self.slots, node) else { return };
            match l.node.multicast_ordered(now, payload.clone(), order) {
                Ok(id) => self.sent(node, id, &payload, order, true),
                Err(e) if e.is_transient() => l.pending = Some((payload, order)),
                Err(_) => {}
            }
            self.drain(node);
        }
        self.push(next, Step::Multicast { node, life });
    }

    /// Records an accepted multicast (`tagged`: a workload payload, see `Digests`).
    fn sent(&mut self, node: u64, id: chorus_core::MsgId, payload: &Bytes, order: Order, tagged: bool) {
        let Some(l) = life_of(&mut self.slots, node) else { return };
        l.sent_view = Some(id.view.0);
        let p = l.proc_;
        if order == Order::Causal && (l.delivered_from & !node_bit(node)).count_ones() >= 2 {
            self.marks.hit(SimMark::CausalPastOfThreeSenders);
        }
        self.stats.sends += 1;
        let digest = if tagged { self.digests.sent(payload) } else { chorus_check::trace::digest(payload) };
        let order = trace_order(order);
        self.record(Some(p), Ev::Send { view: id.view.0, seq: id.seq.0, digest, order });
    }

    /// Crashes a member blocked in a view change (if the crash is allowed).
    fn flush_crash(&mut self) {
        if self.phase != Phase::Safety {
            return;
        }
        let mut blocked = Vec::new();
        let mut coordinator = None;
        for (i, s) in self.slots.iter().enumerate() {
            let i = i as u64;
            if let Slot::Up(l) = s {
                if l.node.status() == Status::Blocked && self.crashable(i) {
                    blocked.push(i);
                    if l.node.view().and_then(|v| v.members.first()) == Some(&l.node.member_id()) {
                        coordinator = Some(i);
                    }
                }
            }
        }
        if let Some((node, restart_after)) = self.nemesis.flush_crash_target(&blocked, coordinator) {
            self.apply(Fault::Crash { node, restart_after });
        }
    }

    /// One member (the first awake member in node order) multicasts until its window refuses.
    fn burst(&mut self) {
        if self.phase != Phase::Safety {
            return;
        }
        let Some(node) = (0..self.o.total_nodes()).find(|n| {
            matches!(self.slots.get(*n as usize),
                Some(Slot::Up(l)) if !l.paused && l.leaving.is_none() && l.node.status() == Status::Member)
        }) else {
            return;
        };
        let now = self.local(node);
        let mut sent = 0u64;
        while sent < 20_000 && self.failure.is_none() {
            let Some(l) = life_of(&mut self.slots, node) else { return };
            let p = l.proc_;
            let payload = self.workload.payload(p.node, p.inc);
            let order = self.workload.order();
            let Some(l) = life_of(&mut self.slots, node) else { return };
            let Ok(id) = l.node.multicast_ordered(now, payload.clone(), order) else { break };
            sent += 1;
            self.sent(node, id, &payload, order, true);
        }
        self.rec.note(self.now, || format!("n{node} bursts {sent} multicasts until its window is full"));
        self.drain(node);
    }

    /// Hands everything the node produced to the network and the trace, then re-arms its timer.
    /// Events can make the application act (write a checkpoint piece), and taking a state
    /// chunk queues its acknowledgement, so this loops until the node has nothing more.
    fn drain(&mut self, node: u64) {
        loop {
            let Cluster { slots, net, queue, seq, now, scratch, wire, disks, .. } = self;
            let Some(l) = life_of(slots, node) else { return };
            let mut moved = false;
            // The core's record goes to disk before any frame that follows it.
            if let Some(p) = l.node.poll_persist() {
                if let Some(d) = disks.get_mut(node as usize) {
                    d.persisted = Some(p);
                }
            }
            while let Some(t) = l.node.poll_transmit() {
                moved = true;
                let to = t.to.0;
                let route = net.send(*now, node, to, t.frame.len());
                for at in [route.first, route.duplicate].into_iter().flatten() {
                    *seq += 1;
                    let f = InFlight { from: node, to, epoch: route.epoch, frame: t.frame.clone() };
                    queue.push(Queued { t: at, seq: *seq, step: Step::Frame(wire.put(f)) });
                }
            }
            let mut events = core::mem::take(scratch);
            while let Some(e) = l.node.poll_event() {
                events.push(e);
            }
            moved |= !events.is_empty();
            for e in events.drain(..) {
                self.core_event(node, e);
            }
            self.scratch = events;
            if self.o.store.on {
                moved |= self.pump_replica(node);
            }
            if !moved {
                break;
            }
        }
        self.rearm(node);
    }

    /// The application syncs: its state, if it is its own, is stored, and its position is
    /// reported to the group (`set_durable`).
    fn sync(&mut self, node: u64, life: u64) {
        if self.o.store.on {
            return self.sync_replica(node, life);
        }
        let now = self.local(node);
        let every = self.o.disks.sync_every;
        let Cluster { slots, disks, .. } = self;
        let Some(l) = life_of(slots, node) else { return };
        if l.id != life {
            return;
        }
        let me = MemberId::new(l.proc_.node, l.proc_.inc);
        let Some(d) = disks.get_mut(node as usize) else { return };
        if !l.paused && l.app.holds && d.owner == Some(me) {
            d.state = Some((l.app.applied, l.app.hash));
            l.unsynced.clear();
            l.node.set_durable(now, l.app.applied);
            self.drain(node);
        }
        self.push(self.now + every, Step::Sync { node, life });
    }

    /// What a crash leaves on `node`'s disk: the synced state, and maybe some of what came after
    /// (written out by the system on its own, or torn).
    fn crash_disk(&mut self, node: u64) {
        use rand::Rng;
        if self.o.store.on {
            // A power cut: the replica's unsynced writes are lost, but for a torn prefix.
            let Cluster { disks, disk_rng, .. } = self;
            if let Some(d) = disks.get(node as usize) {
                d.kv_dir.crash(&mut || disk_rng.random::<u64>());
            }
            return;
        }
        let Cluster { slots, disks, disk_rng, .. } = self;
        let Some(l) = life_of(slots, node) else { return };
        let me = MemberId::new(l.proc_.node, l.proc_.inc);
        let Some(d) = disks.get_mut(node as usize) else { return };
        if !l.app.holds || d.owner != Some(me) || l.unsynced.is_empty() {
            return;
        }
        let k = disk_rng.random_range(0..=l.unsynced.len());
        if k > 0 {
            d.state = Some(l.unsynced[k - 1]);
        }
    }

    /// The donor application writes checkpoint pieces: one per `write_gap` (a slow disk), or as
    /// many as the core takes when the gap is 0. Finishes the checkpoint after the last piece.
    fn state_write(&mut self, node: u64, life: u64) {
        let chunk = self.o.state.chunk;
        let gap = self.o.state.write_gap;
        let Some(l) = life_of(&mut self.slots, node) else { return };
        if l.id != life {
            return;
        }
        let Some(w) = l.app.writer.as_mut() else { return };
        if w.waiting || w.finished {
            return;
        }
        let mut again = false;
        loop {
            match w.peek(chunk) {
                Some(piece) => match l.node.write_checkpoint(w.view, piece.clone()) {
                    Ok(()) => {
                        w.advance(piece.len());
                        if gap > 0 {
                            again = true;
                            break;
                        }
                    }
                    Err(chorus_core::CheckpointError::WindowFull) => {
                        w.waiting = true;
                        break;
                    }
                    Err(_) => {
                        l.app.writer = None; // The view changed: the transfer is abandoned.
                        break;
                    }
                },
                None if w.tail_missing() => {
                    self.failure = Some(Failure::Store("the replica gave no checkpoint to stream".into()));
                    break;
                }
                None => {
                    w.finished = true;
                    if l.node.finish_checkpoint(w.view).is_err() {
                        l.app.writer = None;
                    }
                    break;
                }
            }
        }
        if again {
            self.push(self.now + gap, Step::StateWrite { node, life });
        }
        self.drain(node);
    }

    /// Maybe aims a crash at a transfer that is starting (at its donor or a loading member),
    /// some time into it.
    fn arm_transfer_crash(&mut self, node: u64, life: u64) {
        if self.phase != Phase::Safety || self.o.state.crash_prob <= 0.0 {
            return;
        }
        let span =
            (self.o.state.filler / self.o.state.chunk.max(1) as u64 + 1) * self.o.state.write_gap.max(MS);
        if let Some(d) = self.nemesis.transfer_crash_delay(self.o.state.crash_prob, span) {
            self.push(self.now + d, Step::TransferCrash { node, life });
        }
    }

    fn transfer_crash(&mut self, node: u64, life: u64) {
        if self.phase != Phase::Safety || !self.crashable(node) {
            return;
        }
        let Some(l) = life_of(&mut self.slots, node) else { return };
        let mid = l.app.writer.is_some() || l.app.loading_progress().is_some();
        if l.id != life || !mid {
            return;
        }
        let restart_after = self.nemesis.restart_delay();
        self.apply(Fault::Crash { node, restart_after });
    }

    fn rearm(&mut self, node: u64) {
        let clock = self.o.clocks.get(node as usize).copied().unwrap_or(crate::options::Clock::EXACT);
        let now = self.now;
        self.next_gen += 1;
        let gen = self.next_gen;
        let Some(l) = life_of(&mut self.slots, node) else { return };
        let want = l.node.poll_timeout().map(|t| clock.global(t.as_nanos()).max(now));
        if want == l.timer_at {
            return;
        }
        l.timer_at = want;
        l.timer_gen = gen;
        if let Some(t) = want {
            self.push(t, Step::Timer { node, gen });
        }
    }

    fn core_event(&mut self, node: u64, e: Event) {
        // The store's replica sees the event first (a `Left` ends the life below); its log's
        // positions are then mapped to the reference machine's state (`Disk::shadow`).
        let shadow = self.o.store.on && self.replica_event(node, &e) && self.o.disks.on;
        let loaded = matches!(e, Event::StateLoaded { .. });
        self.core_event_app(node, e);
        if shadow {
            self.shadow(node, loaded);
        }
    }

    /// The reference machine's side of an event, and the trace.
    fn core_event_app(&mut self, node: u64, e: Event) {
        let Some(l) = life_of(&mut self.slots, node) else { return };
        let p = l.proc_;
        match e {
            Event::ViewInstalled { view, departed, loading, recovered, .. } => {
                let members: Vec<Proc> = view.members.iter().copied().map(proc_of).collect();
                let flush_totals = core::mem::take(&mut l.flush_totals);
                l.delivered_from = 0;
                l.flushing = false;
                // Who this event is about: the node may have moved on to a later incarnation
                // since queueing it (events are drained after a whole batch of frames).
                let me = MemberId::new(p.node, p.inc);
                let digest =
                    (self.o.state.on && !loading.contains(&me)).then_some((l.app.applied, l.app.hash));
                let holds = l.app.holds;
                let (l_applied, l_hash) = (l.app.applied, l.app.hash);
                if self.highest.as_ref().is_none_or(|h| view.id.0 > h.0) {
                    self.highest = Some((view.id.0, members.clone()));
                    self.died_wedged.clear();
                }
                if flush_totals > 0 && departed.iter().any(|d| !self.alive(&proc_of(*d))) {
                    self.marks.hit(SimMark::OrdererCrashedWithUnordered);
                }
                // With disks: the state this member holds at the start of the view is its own
                // (a founder's, a continuing member's, a recovered donor's), and a restart that
                // re-entered through recovery with the state it offered keeps that state as its
                // own meanwhile (as `chorus-smr` does). A restart that offered none has nothing
                // of its own: its disk holds a state from before its last membership, perhaps
                // older than what was acknowledged since (seed 7013220).
                let disks = self.o.disks.on && !self.o.store.on;
                if disks && holds && (recovered.contains(&me) || !loading.contains(&me)) {
                    if let Some(d) = self.disks.get_mut(node as usize) {
                        if d.owner != Some(me) && !loading.contains(&me) && !recovered.is_empty() {
                            self.marks.hit(SimMark::RecoveredDonor);
                        }
                        d.owner = Some(me);
                        // A founder's empty state is stored as it founds (its owner file).
                        if holds && d.state.is_none() {
                            d.state = Some((l_applied, l_hash));
                        }
                    }
                }
                let loading = loading.into_iter().map(proc_of).collect();
                let recovered = recovered.into_iter().map(proc_of).collect();
                self.record(Some(p), Ev::Install { view: view.id.0, members, loading, recovered });
                if let Some((applied, hash)) = digest {
                    self.record(Some(p), Ev::Digest { view: view.id.0, applied, hash });
                }
            }
            Event::CheckpointRequest { view, joiners } => {
                if joiners.len() >= 2 {
                    self.marks.hit(SimMark::TwoJoinersAtOnce);
                }
                if l.loaded_by_transfer {
                    self.marks.hit(SimMark::LoadedMemberDonated);
                }
                l.app.checkpoint(view, self.o.state.filler, self.o.store.on);
                let life = l.id;
                self.rec.note(self.now, || {
                    format!(
                        "{} streams its checkpoint to {} member(s)",
                        crate::recorder::show(p),
                        joiners.len()
                    )
                });
                self.push(self.now, Step::StateWrite { node, life });
                self.arm_transfer_crash(node, life);
            }
            Event::CheckpointWritable { .. } => {
                if let Some(w) = l.app.writer.as_mut() {
                    w.waiting = false;
                    let life = l.id;
                    self.push(self.now + self.o.state.write_gap, Step::StateWrite { node, life });
                }
            }
            Event::CheckpointComplete { .. } => l.app.writer = None,
            Event::StateIncoming { .. } => {
                l.app.incoming();
                let life = l.id;
                self.arm_transfer_crash(node, life);
            }
            // With the store, the replica's checkpoint follows this machine's (`own_len` bytes).
            Event::StateChunk { offset, data, .. } => match own_len(&self.o) {
                Some(own) if offset < own => {
                    let n = usize::try_from(own - offset).unwrap_or(usize::MAX).min(data.len());
                    l.app.chunk(offset, &data[..n]);
                }
                Some(_) => {}
                None => l.app.chunk(offset, &data),
            },
            Event::StateLoaded { view, len } => {
                let (applied, hash) = l.app.loaded(own_len(&self.o).unwrap_or(len));
                l.loaded_by_transfer = true;
                l.unsynced.clear();
                // With disks, the loaded state is written as it arrives and synced when it is
                // whole (as `chorus-smr` does): from here it is this member's stored state.
                let disks = self.o.disks.on && !self.o.store.on;
                if let Some(d) = self.disks.get_mut(node as usize).filter(|_| disks) {
                    d.owner = Some(MemberId::new(p.node, p.inc));
                    d.state = Some((applied, hash));
                }
                self.record(Some(p), Ev::StateLoaded { view: view.0, applied, hash });
            }
            Event::Delivered { id, order, payload } => {
                self.stats.deliveries += 1;
                l.delivered_from |= node_bit(id.sender.node.0);
                if l.flushing {
                    match order {
                        Order::Total => self.marks.hit(SimMark::TotalDeliveredInFlush),
                        Order::Safe => self.marks.hit(SimMark::SafeDeliveredInFlush),
                        Order::Fifo | Order::Causal => {}
                    }
                    if order.is_total() {
                        l.flush_totals += 1;
                    }
                }
                let digest = self.digests.delivered(&payload);
                if order.is_total() {
                    l.app.apply(digest);
                    if self.o.disks.on && l.unsynced.len() < 100_000 {
                        l.unsynced.push((l.app.applied, l.app.hash));
                    }
                }
                let (sender, order) = (proc_of(id.sender), trace_order(order));
                let ev = Ev::Deliver { sender, view: id.view.0, seq: id.seq.0, digest, order };
                self.record(Some(p), ev);
            }
            Event::Blocked { reason } => {
                let reason = match reason {
                    BlockReason::Flush => {
                        l.flushing = true;
                        let view = l.node.view().map_or(0, |v| v.id.0);
                        if self.phase == Phase::Safety && view > self.flush_crash_view {
                            self.flush_crash_view = view;
                            if let Some(d) = self.nemesis.flush_crash_delay() {
                                self.push(self.now + d, Step::FlushCrash);
                            }
                        }
                        "flush"
                    }
                    BlockReason::NoQuorum => {
                        self.marks.hit(SimMark::MinorityBlocked);
                        "no_quorum"
                    }
                    _ => "other",
                };
                self.record(Some(p), Ev::Blocked { reason: reason.to_string() });
            }
            Event::Suspected { member, .. } => self.record(Some(p), Ev::Suspect { member: proc_of(member) }),
            // With disks: a restart that offered its stored state speaks for `member` with it.
            Event::Recovering { member, .. } if self.o.disks.on && !self.o.store.on && l.app.holds => {
                if let Some(d) = self.disks.get_mut(node as usize) {
                    d.owner = Some(member);
                }
            }
            Event::Durable { upto } => {
                let view = l.node.view().map_or(0, |v| v.id.0);
                // With the store, positions are the replica's: the trace speaks of the
                // reference machine's state at that position.
                let applied = match self.disks.get(node as usize).filter(|_| self.o.store.on) {
                    Some(d) => d.shadow.get(&upto).map(|s| s.0),
                    None => Some(upto),
                };
                if let Some(applied) = applied {
                    self.record(Some(p), Ev::Durable { view, applied });
                }
            }
            // A restart that stood in for its earlier life and is not let back that way joins
            // afresh under the identity it has: no life ends, none begins; its state goes.
            Event::Excluded { rejoin_as, .. } if proc_of(rejoin_as) == p => {
                l.app = App::new(false);
                l.unsynced.clear();
            }
            Event::Excluded { rejoin_as, .. } => {
                self.stats.exclusions += 1;
                if l.healed_from_partition {
                    self.marks.hit(SimMark::RejoinAfterPartitionHealed);
                }
                if l.disturbed {
                    self.marks.hit(SimMark::FalselySuspectedRejoined);
                }
                let next = proc_of(rejoin_as);
                l.proc_ = next;
                l.pending = None;
                l.sent_view = None;
                l.disturbed = false;
                l.healed_from_partition = false;
                l.delivered_from = 0;
                l.flushing = false;
                l.flush_totals = 0;
                l.app = App::new(!self.o.state.on);
                l.loaded_by_transfer = false;
                self.record(Some(p), Ev::Excluded);
                self.record(Some(next), Ev::Start { bootstrap: false });
            }
            Event::Left => {
                let rejoin_after = l.leaving.unwrap_or(0);
                self.record(Some(p), Ev::Left);
                self.stop(node);
                let t = if self.phase == Phase::Safety { self.now + rejoin_after } else { self.now };
                self.push(t, Step::Start(node));
            }
            _ => {}
        }
    }

    // ----- faults -----

    /// Whether member `m` is alive: its node runs that life and is not leaving.
    fn alive(&self, m: &Proc) -> bool {
        matches!(self.slots.get(m.node as usize), Some(Slot::Up(l)) if l.proc_ == *m && l.leaving.is_none())
    }

    /// Whether member `m` is paused, or cut by a partition from another member of `members`.
    fn shaky(&self, m: &Proc, members: &[Proc]) -> bool {
        let paused = matches!(self.slots.get(m.node as usize), Some(Slot::Up(l)) if l.paused);
        paused
            || members.iter().any(|o| {
                o.node != m.node && (self.net.is_cut(m.node, o.node) || self.net.is_cut(o.node, m.node))
            })
    }

    /// Whether member `m` is alive and can carry the highest view on: it installed a view (that
    /// one, or an older one from which it can still learn of it). A joiner that never heard of
    /// its admission knows nothing: if every member that knew the view is dead, it is lost.
    fn carries(&self, m: &Proc) -> bool {
        self.alive(m)
            && matches!(self.slots.get(m.node as usize), Some(Slot::Up(l)) if l.node.view().is_some())
    }

    /// Whether `node` may crash or leave: afterwards, every view the group may install next
    /// still holds a live majority, whatever the view change in progress does. Primary
    /// partition makes a group that installed a view with a dead majority unable to move.
    fn removable(&self, node: u64) -> bool {
        let Some(Slot::Up(target)) = self.slots.get(node as usize) else { return false };
        if target.leaving.is_some() {
            return false;
        }
        // Before the first view, node 0 founds the group (again, if it crashed) and admits
        // the joiners whose requests it holds: a joiner that dies then may be in the second
        // view with the founder alone (seeds 796607194453, 796607196627).
        let Some((highest, members)) = &self.highest else { return node == 0 };
        // A paused member, or one a partition cuts from another member of the view, is not
        // counted on: it may be left out for silence, and a minority that blocked re-joins as
        // new members after the heal, giving up its place in the view (seeds 213872, 218459:
        // a crash while one member was cut off, then that member re-joined afresh).
        let alive =
            members.iter().filter(|m| m.node != node && self.carries(m) && !self.shaky(m, members)).count();
        if alive * 2 <= members.len() {
            return false;
        }
        // The next view is built from promises: the promisers the coordinator heard from in
        // time (at least a majority of the view, the rest left out as suspected), plus joiners.
        // A member that promised and then died is in it, and so is a joiner that died after
        // asking (a member may still hold its request: `ghost_ttl`). So the worst next view
        // is: every member that died wedged (it may have promised), as few live promisers as
        // make it a majority of the view or more, and as many dead joiners as `try_decide`
        // lets in (at most the larger of 2 and one less than the members); its live members
        // must still be a majority of it (seeds 900001382, 900001825).
        let member = members.contains(&target.proc_);
        let wedged = member && wedged_in(target, *highest);
        let dead_promisers = self.died_wedged.len() + usize::from(wedged);
        let ghosts = self.ghosts.iter().filter(|g| g.1 > self.now).count();
        let dead_joiners = ghosts + usize::from(!member);
        let majority = members.len() / 2 + 1;
        let live_least = majority.saturating_sub(dead_promisers).max(1);
        let worst_ok = (live_least..=alive).all(|live| {
            let size = dead_promisers + live;
            let joins = dead_joiners.min((size - 1).max(2));
            live * 2 > size + joins
        });
        if !worst_ok {
            return false;
        }
        // With state transfer, a live member of the highest view must still hold the state.
        if self.o.state.on && !members.iter().any(|m| m.node != node && self.holds_state(m)) {
            return false;
        }
        // A member may still be in an older view, waiting to learn that the next one was
        // decided: that older view must keep its majority too, or the member is stuck there.
        let older_views_keep = self.slots.iter().all(|s| match s {
            Slot::Up(l) if l.proc_.node != node => match l.node.view() {
                Some(v) if v.contains(MemberId::new(l.proc_.node, l.proc_.inc)) => {
                    self.keeps_majority(v, node)
                }
                _ => true,
            },
            _ => true,
        });
        // A view may be decided and installed by no one yet (its acceptors wait for a paused
        // or partitioned member, or for the Install): it becomes the highest view, so it must
        // keep its majority too (seed 796607190719 installed a view of four with two members
        // that had crashed seconds before). Any proposal a node accepted may be that view, the
        // target's own included: its Accepts may still be on their way.
        older_views_keep
            && self.slots.iter().all(|s| match s {
                Slot::Up(l) => l.node.accepted_view().is_none_or(|v| self.keeps_majority(v, node)),
                Slot::Idle => true,
            })
    }

    /// Whether the members of `v` other than `node` that are alive are a majority of it.
    fn keeps_majority(&self, v: &chorus_core::View, node: u64) -> bool {
        let alive = v.members.iter().filter(|m| m.node.0 != node && self.alive(&proc_of(**m))).count();
        alive * 2 > v.members.len()
    }

    /// Whether `node` may crash: as `removable`, or any running node when nodes come back from
    /// their disks (a graceful leave still must keep a majority: the leaver does not come back
    /// as that member).
    fn crashable(&self, node: u64) -> bool {
        if self.o.disks.on {
            return matches!(self.slots.get(node as usize), Some(Slot::Up(l)) if l.leaving.is_none());
        }
        self.removable(node)
    }

    /// Whether the nemesis left the highest view unable to change for good: it ended (crashed,
    /// or made leave) half of its members or more, or, with state transfer, every member that
    /// could hold the state while none it left running lost it. Members the core excluded while
    /// alive are the core's doing: the view then had a live majority, and a stuck group is a
    /// liveness failure of the core (seed 7004928).
    fn nemesis_broke_group(&self) -> bool {
        if self.o.disks.on {
            return false; // Everything restarts from its disk.
        }
        let Some((_, members)) = &self.highest else { return false };
        let ended = members.iter().filter(|m| self.ended.contains(m)).count();
        let none_excluded = members.iter().all(|m| self.ended.contains(m) || self.alive(m));
        let no_holder = self.o.state.on && !members.iter().any(|m| self.holds_state(m));
        ended * 2 >= members.len() || (none_excluded && no_holder)
    }

    /// Whether member `m` is alive and its application holds the group's state.
    fn holds_state(&self, m: &Proc) -> bool {
        self.carries(m) && matches!(self.slots.get(m.node as usize), Some(Slot::Up(l)) if l.app.holds)
    }

    fn targets(&self) -> Targets {
        let mut t = Targets {
            nodes: self.o.total_nodes(),
            partitioned: self.partition.is_some(),
            ..Targets::default()
        };
        for (i, s) in self.slots.iter().enumerate() {
            if let Slot::Up(l) = s {
                let i = i as u64;
                t.running.push(i);
                if !l.paused {
                    t.awake.push(i);
                }
                if self.crashable(i) {
                    t.crashable.push(i);
                }
                if self.removable(i) {
                    t.removable.push(i);
                }
            }
        }
        t
    }

    fn apply(&mut self, fault: Fault) {
        match fault {
            Fault::Crash { node, restart_after } => {
                let Some(l) = life_of(&mut self.slots, node) else { return };
                let status = l.node.status();
                let view = l.node.view().map(|v| (v.id.0, v.members.first().copied()));
                let me = l.node.member_id();
                let sent_view = l.sent_view;
                let p = l.proc_;
                if l.app.writer.is_some() {
                    self.marks.hit(SimMark::DonorCrashedMidTransfer);
                }
                if l.app.loading_progress().is_some_and(|got| got > 0) {
                    self.marks.hit(SimMark::JoinerCrashedMidTransfer);
                }
                if status == Status::Blocked {
                    if view.is_some_and(|(id, _)| Some(id) == sent_view) {
                        self.marks.hit(SimMark::SenderCrashedInFlush);
                    }
                    if view.is_some_and(|(_, first)| first == Some(me)) {
                        self.marks.hit(SimMark::CoordinatorCrashedInViewChange);
                    }
                }
                self.stats.crashes += 1;
                self.crash_disk(node);
                self.stop(node);
                self.record(Some(p), Ev::Crash);
                self.push(self.now + restart_after, Step::Start(node));
            }
            Fault::CrashMany { nodes } => {
                let running = self.slots.iter().filter(|s| matches!(s, Slot::Up(_))).count();
                self.marks.hit(if nodes.len() == running {
                    SimMark::WholeGroupCrash
                } else {
                    SimMark::MajorityCrash
                });
                if let Some(store) = self.store.as_mut().filter(|_| nodes.len() == running) {
                    store.group_crashed();
                }
                let n = self.o.total_nodes();
                self.rec.note(self.now, || format!("{} of {n} nodes crash at once", nodes.len()));
                for (node, restart_after) in nodes {
                    self.apply(Fault::Crash { node, restart_after });
                }
            }
            Fault::Pause { node, duration } => {
                let Some(l) = life_of(&mut self.slots, node) else { return };
                if l.paused {
                    return;
                }
                l.paused = true;
                l.disturbed = true;
                let (p, life) = (l.proc_, l.id);
                self.stats.pauses += 1;
                self.record(Some(p), Ev::Pause);
                let end = self.now + duration;
                self.push(end, Step::Resume { node, life });
                // The paused node may hold a dead joiner's request (in its pending joins, or
                // unread in its inbox) and admit it when it resumes.
                self.pauses_end = self.pauses_end.max(end);
                let now = self.now;
                for g in self.ghosts.iter_mut().filter(|g| g.1 > now) {
                    g.1 = g.1.max(end + self.ghost_ttl);
                }
            }
            Fault::Partition { mode, cuts, duration } => {
                self.next_partition += 1;
                let id = self.next_partition;
                for (a, b) in &cuts {
                    self.net.set_cut(*a, *b, true);
                    for x in [*a, *b] {
                        if let Some(l) = life_of(&mut self.slots, x) {
                            l.disturbed = true;
                        }
                    }
                }
                self.stats.partitions += 1;
                let n = self.o.total_nodes();
                self.rec.note(self.now, || {
                    format!(
                        "partition ({mode:?}, {:.1}s): {}",
                        duration as f64 / SEC as f64,
                        describe_cuts(n, &cuts)
                    )
                });
                self.partition = Some(Partition { id, cuts });
                self.push(self.now + duration, Step::Heal(id));
            }
            Fault::Leave { node, rejoin_after } => {
                let now = self.local(node);
                let Some(l) = life_of(&mut self.slots, node) else { return };
                l.leaving = Some(rejoin_after);
                l.node.leave(now);
                self.stats.leaves += 1;
                let p = l.proc_;
                self.rec.note(self.now, || format!("{} asks to leave", crate::recorder::show(p)));
                self.drain(node);
            }
            Fault::Garbage { node, from, bytes } => {
                let now = self.local(node);
                let Some(l) = life_of(&mut self.slots, node) else { return };
                if l.paused {
                    return;
                }
                self.stats.garbage += 1;
                if l.node.handle_frame(now, NodeId(from), &bytes).is_ok() {
                    self.failure = Some(Failure::GarbageAccepted(format!(
                        "n{node} accepted {} random bytes from n{from}: {bytes:02x?}",
                        bytes.len()
                    )));
                    return;
                }
                self.drain(node);
            }
        }
    }

    fn resume(&mut self, node: u64, life: u64) {
        let now = self.local(node);
        let t = self.now;
        let Some(l) = life_of(&mut self.slots, node) else { return };
        if l.id != life || !l.paused {
            return;
        }
        l.paused = false;
        let p = l.proc_;
        let inbox = core::mem::take(&mut l.inbox);
        self.record(Some(p), Ev::Resume);
        let Some(l) = life_of(&mut self.slots, node) else { return };
        let mut rejected = None;
        for (from, frame) in inbox {
            if let Err(e) = l.node.handle_frame(now, NodeId(from), &frame) {
                rejected = rejected.or(Some(e));
            }
        }
        if l.timer_at.is_some_and(|due| due <= t) {
            l.timer_at = None;
            l.node.handle_timeout(now);
        }
        if let Some(e) = rejected {
            self.reject(node, e);
        }
        self.drain(node);
    }

    /// A core rejected a frame another core produced: the seed fails.
    fn reject(&mut self, node: u64, e: chorus_core::FrameError) {
        if self.failure.is_none() {
            self.failure = Some(Failure::FrameRejected(format!("n{node} at {}: {e}", self.now)));
        }
    }

    fn heal(&mut self) {
        let Some(p) = self.partition.take() else { return };
        self.net.heal();
        for (a, b) in &p.cuts {
            for x in [*a, *b] {
                if let Some(l) = life_of(&mut self.slots, x) {
                    l.healed_from_partition = true;
                }
            }
        }
        self.rec.note(self.now, || "partition healed".to_string());
    }

    // ----- phases -----

    fn liveness(&mut self) {
        self.phase = Phase::Liveness;
        self.liveness_at = self.now;
        self.record(None, Ev::Phase { name: "liveness".to_string() });
        self.heal();
        self.net.calm();
        for node in 0..self.o.total_nodes() {
            let paused = life_of(&mut self.slots, node).map(|l| (l.paused, l.id));
            match paused {
                Some((true, life)) => self.resume(node, life),
                Some((false, _)) => {}
                None => self.start(node),
            }
        }
        self.workload_until = self.now + LIVENESS_WORKLOAD;
        self.push(self.workload_until, Step::Check);
    }

    /// Every node is up and a member, and all share one view whose members are exactly them.
    fn converged(&self) -> Option<u64> {
        let mut view: Option<&chorus_core::View> = None;
        let mut ids = Vec::new();
        for s in &self.slots {
            let Slot::Up(l) = s else { return None };
            if l.paused || l.leaving.is_some() || l.node.status() != Status::Member || !l.app.holds {
                return None;
            }
            let v = l.node.view()?;
            if view.is_some_and(|w| w != v) {
                return None;
            }
            view = Some(v);
            ids.push(l.node.member_id());
        }
        let v = view?;
        let mut members = v.members.clone();
        members.sort();
        ids.sort();
        (members == ids).then_some(v.id.0)
    }

    fn check(&mut self) {
        if self.phase != Phase::Liveness {
            return;
        }
        match (self.converged(), self.quiet) {
            (Some(v), Some((since, w))) if v == w => {
                if self.now >= since + QUIET {
                    self.end();
                    return;
                }
            }
            (Some(v), _) => {
                self.stats.converged_at.get_or_insert(self.now);
                self.quiet = Some((self.now, v));
            }
            (None, _) => self.quiet = None,
        }
        if self.now >= self.liveness_at + LIVENESS_MAX {
            // The checker judges liveness in every run, as `chorus check` does on the trace.
            let broke = self.nemesis_broke_group();
            self.end();
            let safety_broken =
                matches!(&self.failure, Some(Failure::Violation(v)) if v.guarantee != Guarantee::G12Liveness);
            if broke && !safety_broken {
                // Not the core's fault, but no seed is excused: that would hide liveness bugs
                // too. Say whose fault it is, with the checker's verdict.
                let lost = self.describe_lost();
                self.rec.note(self.now, || format!("the group lost a live majority for good: {lost}"));
                let checker = self.failure.take().map(|f| format!("; the checker: {f}")).unwrap_or_default();
                self.failure =
                    Some(Failure::MajorityLost(format!("{lost}{checker}; {}", self.describe_state())));
            } else if self.failure.is_none() {
                self.failure = Some(Failure::NoConvergence(self.describe_state()));
            }
            return;
        }
        self.push(self.now + CHECK_EVERY, Step::Check);
    }

    fn end(&mut self) {
        self.phase = Phase::Done;
        self.record(None, Ev::End);
        if self.failure.is_none() {
            if let Err(v) = self.rec.finish() {
                self.failure = Some(Failure::Violation(v));
            }
        }
        // The store is judged once every node is back in one view (its final reads need that).
        if self.failure.is_none() && self.store.is_some() && self.converged().is_some() {
            if let Err(why) = self.judge_store() {
                self.failure = Some(Failure::Store(why));
            }
        }
    }

    /// Each node's status and view, for a failure report.
    /// The highest view and how many of its members are alive, for [`Failure::MajorityLost`].
    fn describe_lost(&self) -> String {
        let Some((id, members)) = &self.highest else { return "no view installed".into() };
        let alive = members.iter().filter(|m| self.carries(m)).count();
        let ended = members.iter().filter(|m| self.ended.contains(m)).count();
        let names: Vec<String> = members.iter().copied().map(crate::recorder::show).collect();
        format!(
            "view v{id} [{}] has {alive} live member(s) of {}, {ended} crashed or left",
            names.join(" "),
            members.len()
        )
    }

    fn describe_state(&self) -> String {
        let mut parts = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            parts.push(match s {
                Slot::Idle => format!("n{i}: down"),
                Slot::Up(l) => format!(
                    "{}: {:?}{}{} {:?}",
                    proc_of(l.node.member_id()),
                    l.node.status(),
                    if l.paused { " paused" } else { "" },
                    if l.leaving.is_some() { " leaving" } else { "" },
                    l.node.view()
                ),
            });
        }
        parts.join("; ")
    }
}

/// Frames in flight, by index, with a free list.
#[derive(Debug, Default)]
struct Slab {
    items: Vec<Option<InFlight>>,
    free: Vec<u32>,
}

impl Slab {
    fn put(&mut self, f: InFlight) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.items[i as usize] = Some(f);
                i
            }
            None => {
                self.items.push(Some(f));
                (self.items.len() - 1) as u32
            }
        }
    }

    fn take(&mut self, i: u32) -> Option<InFlight> {
        let f = self.items.get_mut(i as usize)?.take();
        if f.is_some() {
            self.free.push(i);
        }
        f
    }
}

/// Payload digests, computed once per multicast: a delivery whose bytes equal the sent payload
/// with the same tag (its first 8 bytes, unique in a run) reuses the sent digest. Byte equality
/// is checked, so a corrupted delivery still gets its own digest; only the FNV pass is saved.
#[derive(Debug, Default)]
struct Digests {
    by_tag:
        std::collections::HashMap<u64, (Bytes, u64), core::hash::BuildHasherDefault<crate::recorder::Fnv64>>,
}

impl Digests {
    fn tag(payload: &[u8]) -> Option<u64> {
        Some(u64::from_le_bytes(payload.get(..8)?.try_into().ok()?))
    }

    fn sent(&mut self, payload: &Bytes) -> u64 {
        let d = chorus_check::trace::digest(payload);
        if let Some(tag) = Self::tag(payload) {
            self.by_tag.insert(tag, (payload.clone(), d));
        }
        d
    }

    /// Whether `payload` is a workload multicast (else it is the store's replica's).
    fn is_workload(&self, payload: &[u8]) -> bool {
        Self::tag(payload).and_then(|t| self.by_tag.get(&t)).is_some_and(|(sent, _)| sent.as_ref() == payload)
    }

    fn delivered(&self, payload: &[u8]) -> u64 {
        match Self::tag(payload).and_then(|t| self.by_tag.get(&t)) {
            Some((sent, d)) if sent.as_ref() == payload => *d,
            _ => chorus_check::trace::digest(payload),
        }
    }
}

/// `{0,1} | {2,3,4}` for a clean split, or the list of cut links.
fn describe_cuts(n: u64, cuts: &[(u64, u64)]) -> String {
    let sees = |a: u64| -> Vec<u64> { (0..n).filter(|b| *b == a || !cuts.contains(&(a, *b))).collect() };
    let mut groups: Vec<Vec<u64>> = (0..n).map(sees).collect();
    groups.sort();
    groups.dedup();
    let symmetric = cuts.iter().all(|(a, b)| cuts.contains(&(*b, *a)));
    let disjoint = groups.iter().map(Vec::len).sum::<usize>() as u64 == n;
    let set = |g: &Vec<u64>| {
        let items: Vec<String> = g.iter().map(|x| format!("n{x}")).collect();
        format!("{{{}}}", items.join(","))
    };
    if symmetric && disjoint {
        groups.iter().map(set).collect::<Vec<_>>().join(" | ")
    } else {
        let items: Vec<String> = cuts.iter().map(|(a, b)| format!("n{a}->n{b}")).collect();
        format!("cut {}", items.join(" "))
    }
}

/// Runs one seed with its drawn options.
pub fn run_seed(seed: u64, settings: Settings) -> Outcome {
    run_options(SimOptions::from_seed(seed), settings)
}

/// Runs one set of options.
pub fn run_options(o: SimOptions, settings: Settings) -> Outcome {
    Cluster::new(o, settings).run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_pops_in_time_then_insertion_order() {
        let mut h = BinaryHeap::new();
        h.push(Queued { t: 5, seq: 1, step: Step::Check });
        h.push(Queued { t: 3, seq: 2, step: Step::Check });
        h.push(Queued { t: 5, seq: 0, step: Step::Check });
        let order: Vec<(u64, u64)> = core::iter::from_fn(|| h.pop().map(|q| (q.t, q.seq))).collect();
        assert_eq!(order, vec![(3, 2), (5, 0), (5, 1)]);
    }

    #[test]
    fn cached_digests_equal_computed_ones() {
        let mut d = Digests::default();
        let p = Bytes::from_static(b"12345678 payload");
        assert_eq!(d.sent(&p), chorus_check::trace::digest(&p));
        assert_eq!(d.delivered(&p), chorus_check::trace::digest(&p));
        let corrupted = b"12345678 paylOad";
        assert_eq!(d.delivered(corrupted), chorus_check::trace::digest(corrupted));
        assert_eq!(d.delivered(b"short"), chorus_check::trace::digest(b"short"));
    }

    #[test]
    fn slab_reuses_slots() {
        let mut s = Slab::default();
        let f = || InFlight { from: 0, to: 1, epoch: 0, frame: Bytes::new() };
        let a = s.put(f());
        assert!(s.take(a).is_some());
        assert!(s.take(a).is_none());
        assert_eq!(s.put(f()), a);
    }

    /// What the nemesis never does (crash two of three members at once, without disks) must
    /// fail the run, naming the harness, rather than excuse it from the liveness verdict.
    #[test]
    fn a_group_left_without_a_live_majority_fails_the_run() {
        let mut o = SimOptions::demo(1);
        o.initial_nodes = 3;
        o.start_at.truncate(3);
        o.clocks.truncate(3);
        o.script.clear();
        o.safety = 4 * SEC;
        let mut c = Cluster::new(o, Settings::traced(false));
        while c.now < 3 * SEC && c.failure.is_none() {
            let Some(q) = c.queue.pop() else { break };
            c.now = q.t;
            c.step(q.step);
        }
        assert_eq!(c.highest.as_ref().map(|h| h.1.len()), Some(3), "the group did not form");
        c.apply(Fault::Crash { node: 1, restart_after: SEC });
        assert!(!c.crashable(2), "the nemesis may not crash a second member of three");
        c.apply(Fault::Crash { node: 2, restart_after: SEC });
        let out = c.run();
        let Some(Failure::MajorityLost(why)) = &out.failure else {
            panic!("expected MajorityLost, got {:?}", out.failure)
        };
        assert!(why.contains("1 live member(s) of 3") && why.contains("G12"), "{why}");
        // The trace fails in `chorus check` too, on G12.
        let trace = out.trace.unwrap_or_default();
        let verdict = chorus_check::check_trace(&trace).map_err(|v| v.guarantee);
        assert_eq!(verdict, Err(Guarantee::G12Liveness));
    }

    #[test]
    fn cuts_are_described_readably() {
        let cuts = vec![(0, 1), (1, 0), (0, 2), (2, 0)];
        assert_eq!(describe_cuts(3, &cuts), "{n0} | {n1,n2}");
        assert_eq!(describe_cuts(3, &[(0, 1)]), "cut n0->n1");
    }
}
