//! What one run looks like, drawn from its seed (swarm testing).
//!
//! Why swarm: a fixed fault mix tests one region of the space forever. Drawing which faults are
//! on, and how hard, per seed (TigerBeetle's `options_swarm`, Groce et al.'s swarm testing) makes
//! some seeds quiet and some brutal, and the quiet ones are where rare interleavings of a single
//! fault show up. Everything here comes from the [`Stream::Options`] generator, so the options
//! of a seed do not change when the protocol changes.

use core::fmt;

use chorus_core::Order;
use rand::Rng;

use crate::rng::{self, SimRng, Stream};

/// One microsecond in simulated nanoseconds.
pub const US: u64 = 1_000;
/// One millisecond in simulated nanoseconds.
pub const MS: u64 = 1_000_000;
/// One second in simulated nanoseconds.
pub const SEC: u64 = 1_000 * MS;

/// How a partition cuts the nodes (Jepsen's and TigerBeetle's menus).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PartitionMode {
    /// One node cut off from all others, both ways.
    IsolateOne,
    /// A minority and a majority that cannot talk to each other.
    Split,
    /// Nodes on a ring each see only their nearest neighbours: every node sees a majority, no
    /// two see the same one (Jepsen's `majorities-ring`, the classic membership killer).
    MajoritiesRing,
    /// Frames from one side reach the other, but not back (asymmetric).
    OneWay,
}

impl PartitionMode {
    /// Every mode.
    pub const ALL: [PartitionMode; 4] = [
        PartitionMode::IsolateOne,
        PartitionMode::Split,
        PartitionMode::MajoritiesRing,
        PartitionMode::OneWay,
    ];
}

/// A node's clock: `local = offset + rate × global` (rate in parts per million).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Clock {
    /// Offset from the simulation's clock, in nanoseconds.
    pub offset: u64,
    /// Speed in parts per million (1,000,000 = exact).
    pub rate_ppm: u64,
}

impl Clock {
    /// A clock that agrees with the simulation.
    pub const EXACT: Clock = Clock { offset: 0, rate_ppm: 1_000_000 };

    /// The node's local time at global time `g`.
    pub fn local(&self, g: u64) -> u64 {
        let scaled = u128::from(g) * u128::from(self.rate_ppm) / 1_000_000;
        self.offset.saturating_add(u64::try_from(scaled).unwrap_or(u64::MAX))
    }

    /// The earliest global time at which the local clock reads at least `local`.
    pub fn global(&self, local: u64) -> u64 {
        let Some(d) = local.checked_sub(self.offset) else { return 0 };
        let g = (u128::from(d) * 1_000_000).div_ceil(u128::from(self.rate_ppm.max(1)));
        u64::try_from(g).unwrap_or(u64::MAX)
    }
}

/// How a run's multicasts pick their ordering: a weight per mode, in [`Order::ALL`] order.
///
/// Swarm again: some seeds use one mode for everything (the purest test of that mode's
/// machinery), the others a random blend (modes interacting in one view: a total message
/// waiting behind a causal one of the same sender, a safe one stuck behind a FIFO gap).
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct OrderMix {
    /// Relative weights of FIFO, causal, total and safe (not all zero).
    pub weights: [f64; 4],
}

impl OrderMix {
    /// Every multicast in `order`.
    pub fn only(order: Order) -> OrderMix {
        let mut weights = [0.0; 4];
        weights[Self::index(order)] = 1.0;
        OrderMix { weights }
    }

    /// All four modes equally.
    pub const EVEN: OrderMix = OrderMix { weights: [1.0; 4] };

    fn index(order: Order) -> usize {
        match order {
            Order::Fifo => 0,
            Order::Causal => 1,
            Order::Total => 2,
            Order::Safe => 3,
        }
    }

    /// The share of multicasts that use `order`, in `[0, 1]`.
    pub fn share(&self, order: Order) -> f64 {
        let total: f64 = self.weights.iter().sum();
        if total > 0.0 {
            self.weights[Self::index(order)] / total
        } else {
            f64::from(u8::from(order == Order::Fifo))
        }
    }

    /// The single mode in use, if there is one.
    pub fn single(&self) -> Option<Order> {
        let mut used = Order::ALL.into_iter().filter(|o| self.share(*o) > 0.0);
        match (used.next(), used.next()) {
            (Some(o), None) => Some(o),
            _ => None,
        }
    }

    /// Draws a mode for one multicast.
    pub fn pick(&self, r: &mut SimRng) -> Order {
        if let Some(o) = self.single() {
            return o;
        }
        let total: f64 = self.weights.iter().sum();
        let mut x = r.random_range(0.0..total);
        for (o, w) in Order::ALL.into_iter().zip(self.weights) {
            if x < w {
                return o;
            }
            x -= w;
        }
        Order::Fifo
    }

    fn draw(r: &mut SimRng) -> OrderMix {
        if r.random_bool(0.3) {
            return OrderMix::only(Order::ALL[r.random_range(0..Order::ALL.len())]);
        }
        let mut weights = [0.0; 4];
        for w in &mut weights {
            if r.random_bool(0.75) {
                *w = r.random_range(0.1..1.0);
            }
        }
        if weights.iter().all(|w| *w == 0.0) {
            weights[r.random_range(0..weights.len())] = 1.0;
        }
        OrderMix { weights }
    }
}

/// `safe only`, or `fifo 40% causal 0% total 25% safe 35%`.
impl fmt::Display for OrderMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |o: Order| format!("{o:?}").to_lowercase();
        if let Some(o) = self.single() {
            return write!(f, "{} only", name(o));
        }
        let parts: Vec<String> =
            Order::ALL.iter().map(|o| format!("{} {:.0}%", name(*o), self.share(*o) * 100.0)).collect();
        f.write_str(&parts.join(" "))
    }
}

/// A fault the demo (or a test) schedules at a fixed time instead of drawing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptedFault {
    /// Crash a node (it restarts after `restart_after`).
    Crash {
        /// The node.
        node: u64,
        /// Time until it restarts as a new incarnation.
        restart_after: u64,
    },
    /// Pause a node for `duration`.
    Pause {
        /// The node.
        node: u64,
        /// How long.
        duration: u64,
    },
    /// Cut `side` off from all other nodes (both ways) for `duration`.
    Partition {
        /// The nodes on one side.
        side: Vec<u64>,
        /// How long.
        duration: u64,
    },
    /// The node leaves gracefully and re-joins as a new incarnation after `rejoin_after`.
    Leave {
        /// The node.
        node: u64,
        /// Time from `Left` until it joins again.
        rejoin_after: u64,
    },
}

/// How the replicated state machine's state moves to members that join.
#[derive(Clone, Debug, PartialEq)]
pub struct StateOpts {
    /// State transfer is on (the core's `Config::state_transfer`).
    pub on: bool,
    /// Checkpoint bytes beyond the 16-byte header (so that checkpoints span many chunks).
    pub filler: u64,
    /// The donor writes pieces of this many bytes (also the core's `max_payload`).
    pub chunk: usize,
    /// The core's `state_window`.
    pub window: u64,
    /// The core's `state_buffer`.
    pub buffer: u64,
    /// Time the donor application takes per piece (a disk read); 0 writes as fast as allowed.
    pub write_gap: u64,
    /// Probability that a transfer gets its donor or a loading member crashed part-way.
    pub crash_prob: f64,
}

impl StateOpts {
    /// Drawn from the seed's own stream, so that the other options of a seed stay as they were.
    fn draw(seed: u64) -> StateOpts {
        let mut r = rng::stream(seed, Stream::State);
        let on = r.random_bool(0.85);
        let filler = [0, 1 << 10, 16 << 10, 64 << 10, 256 << 10][r.random_range(0..5usize)];
        let chunk = [512, 4 << 10, 16 << 10, 64 << 10][r.random_range(0..4usize)];
        let window = chunk as u64 * [1, 2, 4, 16][r.random_range(0..4usize)];
        let buffer = [16 << 20, 64 << 10, 2 << 10][r.random_range(0..3usize)];
        let write_gap = [0, 0, 100 * US, MS, 5 * MS][r.random_range(0..5usize)];
        let crash_prob = if r.random_bool(0.4) { r.random_range(0.2..0.8) } else { 0.0 };
        // A transfer takes at most ~32 windows (round trips) and ~0.5 s of writing, so that a
        // few of them in a row fit in the liveness phase.
        let window = window.max(filler / 32);
        let pieces = filler / chunk as u64 + 1;
        let write_gap = write_gap.min(500 * MS / pieces);
        StateOpts { on, filler, chunk, window, buffer, write_gap, crash_prob }
    }
}

/// Stable storage (DESIGN §2 whole-group crash): every node keeps its membership (the core's
/// `poll_persist` records, stored before its frames) and its state machine's state on a disk
/// that loses what was not synced at a crash, except a random part of it; the application
/// syncs every `sync_every` and reports the position stored (`Node::set_durable`), and the
/// positions every member stored are acknowledged (`durable` trace lines, G14). Restarted
/// nodes recover from their disks. The nemesis may then crash any node, a majority of the
/// running ones, or all of them.
#[derive(Clone, Debug, PartialEq)]
pub struct DiskOpts {
    /// Disks are on (only with state transfer: the recovered state is the transferred one).
    pub on: bool,
    /// The application syncs this often.
    pub sync_every: u64,
    /// Crashes of every running node at once, per second.
    pub crash_all_rate: f64,
    /// Crashes of a majority of the running nodes at once, per second.
    pub crash_majority_rate: f64,
}

impl DiskOpts {
    /// Off.
    pub const OFF: DiskOpts =
        DiskOpts { on: false, sync_every: 0, crash_all_rate: 0.0, crash_majority_rate: 0.0 };

    /// Drawn from the seed's own stream, so that the other options of a seed stay as they were.
    fn draw(seed: u64, state_on: bool) -> DiskOpts {
        let mut r = rng::stream(seed, Stream::Disk);
        if !state_on || !r.random_bool(0.4) {
            return DiskOpts::OFF;
        }
        let sync_every = [MS, 5 * MS, 20 * MS][r.random_range(0..3usize)];
        let crash_all_rate = if r.random_bool(0.7) { r.random_range(0.05..0.3) } else { 0.0 };
        let crash_majority_rate = if r.random_bool(0.7) { r.random_range(0.05..0.3) } else { 0.0 };
        DiskOpts { on: true, sync_every, crash_all_rate, crash_majority_rate }
    }
}

/// The replicated store as the application (`crate::store`): every node runs a
/// `chorus_smr::Replica` of `chorus_kv::KvMachine` beside the reference state machine, and
/// clients send it Redis commands whose history `chorus-lin` judges at the end of the run.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreOpts {
    /// The store runs (only with state transfer: joiners load the replica's state).
    pub on: bool,
    /// Clients, each with one operation in flight at a time.
    pub clients: usize,
    /// Mean time a client waits between the end of one operation and the start of the next.
    pub think: u64,
    /// A client gives up on a reply after this long (the operation's outcome is then unknown).
    pub timeout: u64,
    /// Longest expiry of a `SET ... PX n`, in milliseconds.
    pub expiry_max_ms: u64,
}

impl StoreOpts {
    /// Off.
    pub const OFF: StoreOpts = StoreOpts { on: false, clients: 0, think: 0, timeout: 0, expiry_max_ms: 0 };

    /// Drawn from the seed's own stream, so that the other options of a seed stay as they were.
    fn draw(seed: u64, state_on: bool) -> StoreOpts {
        let mut r = rng::stream(seed, Stream::Store);
        // About 30% of all seeds (85% have state transfer).
        if !state_on || !r.random_bool(0.35) {
            return StoreOpts::OFF;
        }
        let clients = r.random_range(2..=6usize);
        let think = r.random_range(5..=100u64) * MS;
        let timeout = [300 * MS, 800 * MS, 1500 * MS, 3 * SEC][r.random_range(0..4usize)];
        let expiry_max_ms = [30, 200, 1000][r.random_range(0..3usize)];
        StoreOpts { on: true, clients, think, timeout, expiry_max_ms }
    }
}

/// Everything that shapes one run. Derived from a seed by [`SimOptions::from_seed`]; printed on
/// failure so that a reader knows what the seed did without replaying it.
#[derive(Clone, Debug, PartialEq)]
pub struct SimOptions {
    /// The seed everything derives from.
    pub seed: u64,
    /// Nodes started at the beginning (node 0 bootstraps the group).
    pub initial_nodes: u64,
    /// Start time of each initial node (node 0 at 0).
    pub start_at: Vec<u64>,
    /// Arrival times of extra joiners (nodes `initial_nodes..`).
    pub joiners_at: Vec<u64>,
    /// Minimum one-way delay of a frame.
    pub delay_min: u64,
    /// Uniform extra delay on top of the minimum.
    pub jitter: u64,
    /// Probability per frame that the link breaks: the frame and everything in flight on that
    /// directed link are lost (a TCP connection reset).
    pub break_prob: f64,
    /// Probability per frame that it arrives twice.
    pub duplicate_prob: f64,
    /// Whether frames on one directed link may overtake each other (off: FIFO, like TCP).
    pub reorder: bool,
    /// Partitions started per second (0: none).
    pub partition_rate: f64,
    /// Which partition shapes are drawn.
    pub partition_modes: Vec<PartitionMode>,
    /// Longest partition (durations are uniform in `[100 ms, this]`).
    pub partition_max: u64,
    /// Crashes per second, cluster-wide (0: none). Restarts follow after 0.5–5 s.
    pub crash_rate: f64,
    /// Probability that a view change gets one of its blocked members crashed 0–30 ms after it
    /// starts (aimed at the flush: its coordinator or a member that sent in the old view).
    pub flush_crash_prob: f64,
    /// Pauses per second, cluster-wide (0: none).
    pub pause_rate: f64,
    /// Share of pauses that last well beyond the suspect timeout (0.6–3 s; the others 20–400 ms).
    pub pause_long_share: f64,
    /// Graceful leaves (followed by a re-join) per second, cluster-wide (0: none).
    pub churn_rate: f64,
    /// Garbage frames injected per second, cluster-wide (0: none).
    pub garbage_rate: f64,
    /// Each node's clock, by node id.
    pub clocks: Vec<Clock>,
    /// Multicasts per second per member.
    pub send_rate: f64,
    /// Smallest payload.
    pub payload_min: usize,
    /// Largest payload.
    pub payload_max: usize,
    /// When one member multicasts as fast as its window allows, until refused (back-pressure).
    pub burst_at: Option<u64>,
    /// How multicasts pick their ordering.
    pub orders: OrderMix,
    /// The core's `ack_delay` (how soon a member acknowledges total and safe messages when it
    /// has nothing to piggyback on), in nanoseconds.
    pub ack_delay: u64,
    /// State transfer: the replicated state machine's checkpoints.
    pub state: StateOpts,
    /// Stable storage and the crashes it survives.
    pub disks: DiskOpts,
    /// The replicated store and its clients.
    pub store: StoreOpts,
    /// The core's `max_frame`, if smaller than its default: frames then hold a few KiB, so
    /// that view-change messages (and large state pieces) go cut into pieces (`Msg::Frag`).
    pub max_frame: Option<usize>,
    /// Length of the safety phase (faults + workload).
    pub safety: u64,
    /// Faults at fixed times (the demo); drawn faults still apply if their rates are not 0.
    pub script: Vec<(u64, ScriptedFault)>,
}

impl SimOptions {
    /// The options of `seed`.
    pub fn from_seed(seed: u64) -> SimOptions {
        let mut r = rng::stream(seed, Stream::Options);
        let initial_nodes = r.random_range(1..=7u64);
        let start_at =
            (0..initial_nodes).map(|i| if i == 0 { 0 } else { r.random_range(0..=50 * MS) }).collect();
        let extra = r.random_range(0..=3usize);
        let safety = r.random_range(5 * SEC..=15 * SEC);
        let mut joiners_at: Vec<u64> = (0..extra).map(|_| r.random_range(100 * MS..safety)).collect();
        joiners_at.sort_unstable();
        let total = initial_nodes + extra as u64;

        // Swarm: each fault is on in about half of the seeds, at a drawn intensity.
        let on = |r: &mut SimRng, p: f64| r.random_bool(p);
        let rate = |r: &mut SimRng, lo: f64, hi: f64| r.random_range(lo..hi);
        let delay_min = r.random_range(0..=30 * MS);
        let jitter = r.random_range(0..=20 * MS);
        let break_prob = if on(&mut r, 0.5) { rate(&mut r, 0.0, 0.02) } else { 0.0 };
        let duplicate_prob = if on(&mut r, 0.5) { rate(&mut r, 0.0, 0.10) } else { 0.0 };
        let reorder = on(&mut r, 0.5);
        let partition_rate = if on(&mut r, 0.5) { rate(&mut r, 0.05, 0.4) } else { 0.0 };
        let mut partition_modes: Vec<PartitionMode> =
            PartitionMode::ALL.iter().copied().filter(|_| r.random_bool(0.6)).collect();
        if partition_modes.is_empty() {
            partition_modes.push(PartitionMode::ALL[r.random_range(0..PartitionMode::ALL.len())]);
        }
        let partition_max = r.random_range(300 * MS..=4 * SEC);
        let crash_rate = if on(&mut r, 0.5) { rate(&mut r, 0.05, 0.5) } else { 0.0 };
        let pause_rate = if on(&mut r, 0.5) { rate(&mut r, 0.05, 0.5) } else { 0.0 };
        let pause_long_share = r.random_range(0.0..1.0);
        let churn_rate = if on(&mut r, 0.4) { rate(&mut r, 0.02, 0.3) } else { 0.0 };
        let garbage_rate = if on(&mut r, 0.25) { rate(&mut r, 0.1, 2.0) } else { 0.0 };
        let skew = on(&mut r, 0.5);
        let clocks = (0..total)
            .map(|_| {
                if skew {
                    Clock {
                        offset: r.random_range(0..=100 * MS),
                        rate_ppm: r.random_range(900_000..=1_100_000),
                    }
                } else {
                    Clock::EXACT
                }
            })
            .collect();
        let send_rate = rate(&mut r, 5.0, 200.0);
        let payload_min = r.random_range(8..=64usize);
        let payload_max = r.random_range(payload_min..=256usize);
        let burst_at = on(&mut r, 0.15).then(|| r.random_range(500 * MS..safety));
        let flush_crash_prob = if crash_rate > 0.0 && on(&mut r, 0.5) { rate(&mut r, 0.1, 0.6) } else { 0.0 };
        // Drawn last, so that adding it left every other option of a seed as it was.
        let mut orders = OrderMix::draw(&mut r);
        let ack_delay = [200, 1000, 5000, 20_000][r.random_range(0..4usize)] * 1000;
        let state = StateOpts::draw(seed);
        let disks = DiskOpts::draw(seed, state.on);
        let store = StoreOpts::draw(seed, state.on);
        let max_frame = {
            // From its own stream, so that every other option of a seed stays as it was.
            let mut r = rng::stream(seed, Stream::Frame);
            let need = state.chunk.max(payload_max) + 1024;
            r.random_bool(0.3).then(|| need.max([4 << 10, 16 << 10, 64 << 10][r.random_range(0..3usize)]))
        };
        if disks.on {
            // What a replica stores is its safe deliveries (a total one may be delivered by a
            // member that crashes and by no one else: not one history to store).
            orders.weights[3] += orders.weights[2];
            orders.weights[2] = 0.0;
        }
        SimOptions {
            seed,
            initial_nodes,
            start_at,
            joiners_at,
            delay_min,
            jitter,
            break_prob,
            duplicate_prob,
            reorder,
            partition_rate,
            partition_modes,
            partition_max,
            crash_rate,
            flush_crash_prob,
            pause_rate,
            pause_long_share,
            churn_rate,
            garbage_rate,
            clocks,
            send_rate,
            payload_min,
            payload_max,
            burst_at,
            orders,
            ack_delay,
            state,
            disks,
            store,
            max_frame,
            safety,
            script: Vec::new(),
        }
    }

    /// A calm, readable run: five nodes on a 5–10 ms network, no drawn faults, and a script of
    /// one crash, one long pause, one partition and one graceful leave (the demo).
    pub fn demo(seed: u64) -> SimOptions {
        let mut o = SimOptions::from_seed(seed);
        o.initial_nodes = 5;
        o.start_at = vec![0, 10 * MS, 20 * MS, 30 * MS, 40 * MS];
        o.joiners_at = Vec::new();
        o.delay_min = 5 * MS;
        o.jitter = 5 * MS;
        o.break_prob = 0.0;
        o.duplicate_prob = 0.0;
        o.reorder = false;
        o.partition_rate = 0.0;
        o.crash_rate = 0.0;
        o.flush_crash_prob = 0.0;
        o.pause_rate = 0.0;
        o.churn_rate = 0.0;
        o.garbage_rate = 0.0;
        o.clocks = vec![Clock::EXACT; 5];
        o.send_rate = 20.0;
        o.payload_min = 16;
        o.payload_max = 64;
        o.burst_at = None;
        o.orders = OrderMix::EVEN;
        o.disks = DiskOpts::OFF;
        o.store = StoreOpts::OFF;
        o.max_frame = None;
        o.safety = 10 * SEC;
        o.script = vec![
            (2 * SEC, ScriptedFault::Crash { node: 4, restart_after: 1500 * MS }),
            (4500 * MS, ScriptedFault::Pause { node: 2, duration: 1500 * MS }),
            (7 * SEC, ScriptedFault::Partition { side: vec![0], duration: 1500 * MS }),
            (9 * SEC, ScriptedFault::Leave { node: 3, rejoin_after: 500 * MS }),
        ];
        o
    }

    /// Number of node ids the run uses (initial nodes plus joiners).
    pub fn total_nodes(&self) -> u64 {
        self.initial_nodes + self.joiners_at.len() as u64
    }
}

/// Milliseconds, for summaries.
fn ms(ns: u64) -> String {
    if ns.is_multiple_of(MS) {
        format!("{}ms", ns / MS)
    } else {
        format!("{:.1}ms", ns as f64 / MS as f64)
    }
}

impl fmt::Display for SimOptions {
    /// A short human summary (one fact per line).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |ns: u64| format!("{:.2}s", ns as f64 / SEC as f64);
        let joiners: Vec<String> = self.joiners_at.iter().map(|t| secs(*t)).collect();
        writeln!(f, "seed {}", self.seed)?;
        writeln!(f, "  nodes      {} initial, joiners at [{}]", self.initial_nodes, joiners.join(", "))?;
        writeln!(
            f,
            "  network    delay {}+{} jitter, break {:.2}%, duplicate {:.1}%, {}",
            ms(self.delay_min),
            ms(self.jitter),
            self.break_prob * 100.0,
            self.duplicate_prob * 100.0,
            if self.reorder { "reordering" } else { "FIFO links" }
        )?;
        if self.partition_rate > 0.0 {
            writeln!(
                f,
                "  partitions {:.2}/s up to {} {:?}",
                self.partition_rate,
                secs(self.partition_max),
                self.partition_modes
            )?;
        }
        writeln!(
            f,
            "  process    crash {:.2}/s (in flush {:.0}%), pause {:.2}/s ({:.0}% long), churn {:.2}/s, garbage {:.2}/s",
            self.crash_rate,
            self.flush_crash_prob * 100.0,
            self.pause_rate,
            self.pause_long_share * 100.0,
            self.churn_rate,
            self.garbage_rate
        )?;
        if self.clocks.iter().any(|c| *c != Clock::EXACT) {
            let c: Vec<String> = self
                .clocks
                .iter()
                .map(|c| format!("+{}x{:.3}", ms(c.offset), c.rate_ppm as f64 / 1e6))
                .collect();
            writeln!(f, "  clocks     {}", c.join(" "))?;
        }
        for (t, fault) in &self.script {
            writeln!(f, "  scripted   {} {:?}", secs(*t), fault)?;
        }
        let burst = self.burst_at.map(|t| format!(", a burst at {}", secs(t))).unwrap_or_default();
        writeln!(
            f,
            "  workload   {:.0} msgs/s per member, {}-{} bytes{burst}; safety phase {}",
            self.send_rate,
            self.payload_min,
            self.payload_max,
            secs(self.safety)
        )?;
        writeln!(f, "  orders     {}; ack delay {} µs", self.orders, self.ack_delay / 1000)?;
        let st = &self.state;
        if st.on {
            write!(
                f,
                "  state      checkpoints of {} B in {} B pieces, window {} B, joiner buffer {} B, {} µs per piece{}",
                16 + st.filler,
                st.chunk,
                st.window,
                st.buffer,
                st.write_gap / 1000,
                if st.crash_prob > 0.0 { format!(", crash aimed at {:.0}% of transfers", st.crash_prob * 100.0) } else { String::new() }
            )?;
        } else {
            write!(f, "  state      no state transfer")?;
        }
        if let Some(max) = self.max_frame {
            write!(f, "\n  frames     at most {max} bytes (larger messages go in pieces)")?;
        }
        let d = &self.disks;
        if d.on {
            write!(
                f,
                "\n  disks      synced every {}; whole-group crashes {:.2}/s, majority crashes {:.2}/s",
                ms(d.sync_every),
                d.crash_all_rate,
                d.crash_majority_rate
            )?;
        }
        let k = &self.store;
        if k.on {
            write!(
                f,
                "\n  store      a KvMachine replica at every node{}; {} clients, ~{} between ops, timeout {}, expiries up to {}ms",
                if d.on { " (appendfsync always)" } else { "" },
                k.clients,
                ms(k.think),
                secs(k.timeout),
                k.expiry_max_ms
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_stay_in_range_and_repeat() {
        for seed in 0..500 {
            let o = SimOptions::from_seed(seed);
            assert_eq!(o, SimOptions::from_seed(seed));
            assert!((1..=7).contains(&o.initial_nodes));
            assert!(o.joiners_at.len() <= 3);
            assert!(o.joiners_at.iter().all(|t| *t < o.safety));
            assert!(o.delay_min <= 30 * MS && o.jitter <= 20 * MS);
            assert!(o.break_prob < 0.02 && o.duplicate_prob < 0.10);
            assert!(!o.partition_modes.is_empty());
            assert!((5 * SEC..=15 * SEC).contains(&o.safety));
            assert!(o.burst_at.is_none_or(|t| t < o.safety));
            assert_eq!(o.clocks.len() as u64, o.total_nodes());
            assert!(o.payload_min >= 8 && o.payload_max <= 256 && o.payload_min <= o.payload_max);
            assert_eq!(o.start_at[0], 0);
        }
    }

    #[test]
    fn swarm_varies_the_mix() {
        let opts: Vec<SimOptions> = (0..200).map(SimOptions::from_seed).collect();
        assert!(opts.iter().any(|o| o.crash_rate == 0.0) && opts.iter().any(|o| o.crash_rate > 0.0));
        assert!(opts.iter().any(|o| o.reorder) && opts.iter().any(|o| !o.reorder));
        assert!(opts.iter().any(|o| o.initial_nodes == 1) && opts.iter().any(|o| o.initial_nodes == 7));
        for order in Order::ALL {
            assert!(opts.iter().any(|o| o.orders.single() == Some(order)), "no {order:?}-only seed");
        }
        assert!(opts.iter().any(|o| Order::ALL.iter().all(|m| o.orders.share(*m) > 0.0)));
    }

    #[test]
    fn order_mixes_pick_by_weight() {
        let mut r = rng::stream(5, Stream::Workload);
        let only = OrderMix::only(Order::Safe);
        assert_eq!(only.single(), Some(Order::Safe));
        assert!((0..100).all(|_| only.pick(&mut r) == Order::Safe));
        assert_eq!(only.to_string(), "safe only");
        let mix = OrderMix { weights: [0.0, 1.0, 3.0, 0.0] };
        assert_eq!(mix.single(), None);
        assert_eq!(mix.to_string(), "fifo 0% causal 25% total 75% safe 0%");
        let total = (0..4000).filter(|_| mix.pick(&mut r) == Order::Total).count();
        assert!((2800..3200).contains(&total), "{total}");
        assert!((0..1000).all(|_| mix.pick(&mut r) != Order::Fifo));
    }

    #[test]
    fn clock_round_trips() {
        let clocks = [
            Clock::EXACT,
            Clock { offset: 37 * MS, rate_ppm: 900_000 },
            Clock { offset: 1, rate_ppm: 1_100_000 },
        ];
        for c in clocks {
            for g in [0, 1, 999, 123_456_789, 15 * SEC + 7] {
                let l = c.local(g);
                let back = c.global(l);
                assert!(back <= g, "{c:?} {g} -> {l} -> {back}");
                assert!(c.local(back) >= l);
                // The earliest such time: one nanosecond earlier reads less.
                if back > 0 {
                    assert!(c.local(back - 1) < l);
                }
            }
        }
    }
}
