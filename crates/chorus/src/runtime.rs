//! The runtime: one driver task owns the member's [`chorus_core::Node`] and does all its I/O.
//!
//! ```text
//!   app ── Command (bounded) ──► driver ◄── NetEvent (bounded) ── reader task per connection
//!   app ◄── Event (bounded) ──── driver ──► outbox (bounded, in bytes) ──► socket
//!                                  │           └─ writer task per connection, only while the socket is full
//!                                  │  timer: the core's poll_timeout, on tokio's clock
//!                                  └─ listener task: accept + handshake; dial tasks with backoff
//! ```
//!
//! Only the driver touches the core, so the core needs no locks and sees inputs one at a time.
//! It works in passes: wait for an input, let the other ready tasks run once, take every input
//! queued by then, and only then run the core's due timers, hand events to the application,
//! offer the waiting multicasts and take the core's frames, one per peer, written at once.
//! Every queue is bounded: commands and events by count; frames to a peer by bytes (a slow or
//! dead peer's frames are dropped beyond `MAX_QUEUED_BYTES`, and the core retransmits what
//! matters); inbound frames by count (a reader waits, so TCP pushes back on the sender).
//!
//! Connections: one per pair of members. Either side may dial (a joiner knows only its seeds;
//! a member learns other addresses from the handshake and from address-book frames); if both
//! dialed at once, both keep the connection dialed by the smaller node id.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use chorus_core::{
    CheckpointError, Config, Event, Incarnation, Instant, MemberId, MsgId, Node, NodeId, Order, SendError,
    Status, View, ViewId,
};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use crate::config::NodeConfig;
use crate::datadir::{DataDirError, NodeStore};
use crate::tls::PeerTls;
use crate::transport::frame::{self, FrameReader};
use crate::transport::handshake::{self, Identity};

/// Frames waiting for one peer, in bytes, beyond which new ones are dropped.
const MAX_QUEUED_BYTES: usize = 32 << 20;
/// Room a peer's queue must have for the driver to take another frame for it from the core:
/// one batch (the core's frames hold at most about 1 MiB; larger messages go in pieces).
const READY_ROOM: usize = 2 << 20;
/// Initial size of a connection's output buffer (it grows to what one pass produces).
const WRITE_BUF: usize = 64 << 10;
/// Commands or network events taken per batch by the driver.
const INPUT_BATCH: usize = 256;
/// Largest frame accepted from a peer (the core's `max_frame`).
const MAX_FRAME: usize = 4 << 20;
/// Bytes of frames one connection may have read and not yet seen handled by the driver: its
/// reader waits beyond this (and TCP pushes back on the peer), so a peer that sends faster than
/// the member handles, or while the member is stalled, holds at most this much (plus the one
/// frame being read). Without it the shared inbound queue held up to 1,024 frames of the largest size.
const FRAME_BUDGET: usize = 2 * MAX_FRAME;
/// How long a handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection attempt may wait for the peer's answer. Short: during a partition
/// the attempt's SYNs are lost, and the kernel spaces its retries out (1, 3, 7 s...); a fresh
/// attempt after the backoff reaches a healed peer sooner.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Data sent on a peer connection and not acknowledged for this long aborts the connection
/// (TCP_USER_TIMEOUT), which is then dialed afresh. Without it, a connection across a
/// partition lived on with the kernel's retransmissions backed off to many seconds, and after
/// the heal the group waited for them: 11.6 s before a view could form (tests/net/scenarios.py,
/// "constrained"). Heartbeats flow on every connection, so a silent link always has data
/// outstanding.
const PEER_USER_TIMEOUT: Duration = Duration::from_secs(2);
/// Connection attempts back off from this to `DIAL_BACKOFF_MAX`.
const DIAL_BACKOFF_MIN: Duration = Duration::from_millis(50);
const DIAL_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Connections being set up at once (the rest wait): a flood of connects costs bounded memory.
const MAX_HANDSHAKES: usize = 64;
/// Address-book frames start with these two bytes (core frames start with the core's magic).
const BOOK_MAGIC: [u8; 2] = [0xC4, 0xAB];
/// Entries of an address book accepted from a peer.
const MAX_BOOK: usize = 1024;
/// Multicasts and checkpoint writes waiting for the window, per member.
const MAX_PENDING: usize = 1024;

/// Why the member could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The listen address cannot be bound (in use, not local, or a name that does not
    /// resolve).
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address, as configured.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The core refused the configuration.
    #[error("invalid configuration: {0}")]
    Config(#[from] chorus_core::ConfigError),
    /// The data directory cannot be used.
    #[error("data directory: {0}")]
    DataDir(#[from] DataDirError),
    /// No randomness for the group id a founder would draw (a local fault).
    #[error("cannot draw a random group id: {0}")]
    Rng(String),
    /// The metrics port (`NodeConfig::metrics_listen`) cannot be bound.
    #[error("cannot listen on {addr} for metrics (metrics_listen): {source}")]
    MetricsListen {
        /// The address, as configured.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The trace file (`NodeConfig::trace`) cannot be opened.
    #[error("cannot open the trace file {}: {source}", path.display())]
    Trace {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The member is gone: it was shut down, or its driver stopped.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("the member has shut down")]
pub struct ShutDown;

/// Why a multicast failed for good (transient refusals are waited out).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MulticastError {
    /// The core refused it (too large, or the member left).
    #[error(transparent)]
    Refused(#[from] SendError),
    /// The member has shut down.
    #[error(transparent)]
    ShutDown(#[from] ShutDown),
    /// The incarnation that asked for it was excluded before the message could be sent: it
    /// was never sent, and never will be (the member re-joins as a new incarnation, which does
    /// not send what an earlier one was asked to).
    #[error("not sent: {asked_by} was excluded before sending it (the member is now {now})")]
    Superseded {
        /// The incarnation the multicast was asked of.
        asked_by: MemberId,
        /// The member's incarnation when the message was due to be sent.
        now: MemberId,
    },
}

/// Why a checkpoint write failed for good (a full window is waited out).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteCheckpointError {
    /// The core refused it: the view changed (the transfer is abandoned), or a misuse.
    #[error(transparent)]
    Refused(#[from] CheckpointError),
    /// The member has shut down.
    #[error(transparent)]
    ShutDown(#[from] ShutDown),
}

/// A snapshot of the member's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    /// Its current identity (a new incarnation after an exclusion).
    pub id: MemberId,
    /// Where it is in its life.
    pub status: Status,
    /// Its view, if it has one.
    pub view: Option<View>,
    /// Peers with a live connection.
    pub connected: Vec<u64>,
    /// Frames dropped because a peer's send queue was full (a slow or dead peer), and messages
    /// dropped that waited for such a peer beyond `max_message`.
    pub dropped_frames: u64,
    /// Connections closed because the peer sent something invalid (after the handshake).
    pub bad_frames: u64,
    /// The group this node belongs to, once it founded or joined one.
    pub group: Option<chorus_core::GroupId>,
    /// Connections refused because the peer belongs to another group.
    pub foreign_group_refusals: u64,
}

enum Command {
    Multicast {
        order: Order,
        payload: Bytes,
        /// Only this incarnation may send it.
        by: MemberId,
        reply: oneshot::Sender<Result<(MsgId, u64), MulticastError>>,
    },
    Write {
        view: ViewId,
        chunk: Option<Bytes>,
        reply: oneshot::Sender<Result<(), CheckpointError>>,
    },
    Leave {
        reply: oneshot::Sender<()>,
    },
    Status {
        reply: oneshot::Sender<MemberStatus>,
    },
    /// Copy the counts into the Prometheus metrics (a scrape).
    Publish {
        reply: oneshot::Sender<()>,
    },
    /// The status page's figures.
    Page {
        reply: oneshot::Sender<crate::http::PageStatus>,
    },
    SetDurable {
        pos: u64,
    },
    Shutdown,
}

/// A running member: the handle the application holds. Cloning it is cheap; every clone talks
/// to the same driver. Events come from the [`Events`] returned by [`Member::start`].
#[derive(Clone, Debug)]
pub struct Member {
    cmd: mpsc::Sender<Command>,
    first_id: MemberId,
    /// The incarnation of the member's current life (see `current_id`), kept by the driver.
    life_inc: Arc<std::sync::atomic::AtomicU64>,
    /// Multicasts the core accepted, counted by the driver before it answers each.
    accepted: Arc<std::sync::atomic::AtomicU64>,
    listen: SocketAddr,
    /// The metrics the runtime serves (with the application's, if it adds some).
    registry: crate::metrics::SharedRegistry,
    /// Where the metrics port listens, if `metrics_listen` is set.
    metrics_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Multicast { .. } => "Multicast",
            Command::Write { .. } => "Write",
            Command::Leave { .. } => "Leave",
            Command::Status { .. } => "Status",
            Command::Publish { .. } => "Publish",
            Command::Page { .. } => "Page",
            Command::SetDurable { .. } => "SetDurable",
            Command::Shutdown => "Shutdown",
        })
    }
}

/// The member's events, in order: views, deliveries, blocks, state transfer.
///
/// Read them promptly: the queue is bounded, and a full queue stops the member's driver
/// (heartbeats included), so a reader that stalls long enough gets its member suspected and
/// excluded, as in any virtual synchrony system.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<(u64, Event)>,
    /// Events taken from the queue in one go, not yet returned (taking many at once is
    /// cheaper than one by one).
    taken: VecDeque<(u64, Event)>,
    batch: Vec<(u64, Event)>,
}

/// Events taken from the queue at once by [`Events`].
const EVENTS_BATCH: usize = 256;

impl Events {
    /// The next event; `None` once the member has shut down.
    pub async fn next(&mut self) -> Option<Event> {
        self.next_stamped().await.map(|(_, e)| e)
    }

    /// The next event with the time ([`trace_nanos`]: nanoseconds since the Unix epoch) at which
    /// the member produced it, for traces: it orders the event exactly among this member's
    /// multicasts (see [`Member::multicast_stamped`]) and before anything it caused elsewhere.
    pub async fn next_stamped(&mut self) -> Option<(u64, Event)> {
        if self.taken.is_empty() {
            if self.rx.recv_many(&mut self.batch, EVENTS_BATCH).await == 0 {
                return None;
            }
            self.taken.extend(self.batch.drain(..));
        }
        self.taken.pop_front()
    }
}

/// Nanoseconds since the Unix epoch.
pub fn wall_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Nanoseconds since the Unix epoch, for traces: the kernel's real-time clock, read without
/// libc. The checker compares the traces of several processes on one clock; a process whose
/// clock is faked in a test (libfaketime's `LD_PRELOAD`, as the Jepsen runner's clock faults
/// do) still stamps its trace with the machine's time, while everything else in it (expiry,
/// logs, incarnations) sees the faked one.
pub fn trace_nanos() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0))
}

impl Member {
    /// Starts a member: binds the listen address, then joins (or founds, or recovers) in the
    /// background. With `cfg.data_dir`, the member keeps its membership there (the
    /// application's state is not: see [`Member::start_stored`]). Must be called within a tokio
    /// runtime.
    pub async fn start(cfg: NodeConfig) -> Result<(Member, Events), StartError> {
        let store = match &cfg.data_dir {
            Some(path) => Some(NodeStore::open(path, cfg.node, wall_nanos() / 1_000_000)?),
            None => None,
        };
        Member::start_inner(cfg, store, None).await
    }

    /// Starts a member whose data directory the application opened (to keep its own state
    /// beside the membership), offering the application's stored state at position `state`
    /// for recovery (see `chorus_smr::Replica::offer`).
    pub async fn start_stored(
        cfg: NodeConfig,
        store: NodeStore,
        state: Option<u64>,
    ) -> Result<(Member, Events), StartError> {
        Member::start_inner(cfg, Some(store), state).await
    }

    async fn start_inner(
        cfg: NodeConfig,
        store: Option<NodeStore>,
        state: Option<u64>,
    ) -> Result<(Member, Events), StartError> {
        let listener = crate::resolve::bind(cfg.listen.as_str())
            .await
            .map_err(|source| StartError::Listen { addr: cfg.listen.clone(), source })?;
        // Port 0 picks a free port: peers must be told the real one.
        let listen = listener
            .local_addr()
            .map_err(|source| StartError::Listen { addr: cfg.listen.clone(), source })?;
        let advertise = match crate::config::host_port(&cfg.advertise) {
            Ok((host, 0)) => format!("{host}:{}", listen.port()),
            _ => cfg.advertise.clone(),
        };
        // A restarted node must be a new incarnation: the data directory's counter, or else
        // wall-clock milliseconds times 256 (the low bits count re-joins in this life). Those
        // go back with the clock; then the members refuse the join with the newest incarnation
        // of this node they know, and the core re-joins above it (`Event::Excluded`).
        let inc = match &store {
            Some(s) => s.incarnation(),
            None => (wall_nanos() / 1_000_000) << 8,
        };
        let mut core = Config::new(NodeId(cfg.node), Incarnation(inc));
        if let Some(s) = &store {
            core.group = s.persisted().map(|p| p.group);
            core.last_view = s.persisted().map_or(ViewId(0), |p| p.last_view);
            core.recovery = s.recovery(state);
            core.durable_membership = true;
        }
        core.recover_all = cfg.recover_all;
        let mut group_id = [0u8; 8];
        getrandom::fill(&mut group_id).map_err(|e| StartError::Rng(e.to_string()))?;
        core.new_group = chorus_core::GroupId(u64::from_le_bytes(group_id));
        core.seeds = cfg.seeds.iter().map(|s| NodeId(s.node)).collect();
        core.bootstrap = cfg.bootstrap;
        core.state_transfer = cfg.state_transfer;
        core.heartbeat_interval = cfg.heartbeat;
        core.suspect_timeout = cfg.suspect_timeout;
        core.lag_timeout = core.lag_timeout.max(cfg.suspect_timeout * 4);
        core.join_retry_interval = cfg.heartbeat * 2;
        core.max_payload = cfg.max_payload;
        core.max_members = cfg.max_members;
        // Receivers put view-change messages together from pieces: hold the largest one.
        core.max_message = core.max_message.max(usize::try_from(core.largest_flush()).unwrap_or(usize::MAX));
        core.seed = inc ^ cfg.node;
        // Acknowledge total and safe messages at the end of the driver's pass that received
        // them: the pass batches them (one frame per peer for all it produced), and a timer
        // would add at least tokio's millisecond tick to every total and safe delivery.
        core.ack_delay = Duration::ZERO;
        // The member this life joins as (a recovering node speaks for its earlier member first).
        let first_id = core.member_id();
        let group = Arc::new(std::sync::atomic::AtomicU64::new(core.group.map_or(0, |g| g.0)));
        let life_inc = Arc::new(std::sync::atomic::AtomicU64::new(first_id.inc.0));
        let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let node = Node::new(core, Instant::ZERO)?;
        let trace = match &cfg.trace {
            Some(path) => Some(
                crate::trace::CoreTrace::open(path, first_id, cfg.bootstrap, trace_nanos())
                    .map_err(|source| StartError::Trace { path: path.clone(), source })?,
            ),
            None => None,
        };
        let (cmd_tx, cmd_rx) = mpsc::channel(MAX_PENDING);
        let (ev_tx, ev_rx) = mpsc::channel(4096);
        let (net_tx, net_rx) = mpsc::channel(1024);
        let identity = Arc::new(Identity {
            cluster: cfg.cluster.clone(),
            secret: cfg.secret.clone(),
            node: cfg.node,
            listen: advertise,
            group: group.clone(),
            refusals: Arc::default(),
            max_clock_skew: cfg.max_clock_skew,
            wall_clock: handshake::system_clock_ms,
        });
        let mut book = BTreeMap::new();
        for s in &cfg.seeds {
            book.insert(s.node, s.addr.clone());
        }
        let tls = cfg.tls.clone();
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = crate::metrics::RuntimeMetrics::register(&mut registry);
        let registry = Arc::new(std::sync::Mutex::new(registry));
        let metrics_listener = match &cfg.metrics_listen {
            Some(addr) => Some(
                crate::resolve::bind(addr.as_str())
                    .await
                    .map_err(|source| StartError::MetricsListen { addr: addr.clone(), source })?,
            ),
            None => None,
        };
        let metrics_addr = match &metrics_listener {
            Some(l) => Some(l.local_addr().map_err(|source| StartError::MetricsListen {
                addr: cfg.metrics_listen.clone().unwrap_or_default(),
                source,
            })?),
            None => None,
        };
        let listener_task = tokio::spawn(accept_loop(
            listener,
            identity.clone(),
            tls.clone(),
            net_tx.clone(),
            metrics.handshake_failures.clone(),
        ));
        let driver = Driver {
            node,
            tls,
            start: tokio::time::Instant::now(),
            me: cfg.node,
            identity,
            peers: BTreeMap::new(),
            book,
            dials: BTreeMap::new(),
            net_tx,
            events: ev_tx,
            pending_sends: VecDeque::new(),
            pending_writes: VecDeque::new(),
            leave_waiters: Vec::new(),
            next_conn: 0,
            listener: listener_task.abort_handle(),
            last_view: None,
            loading_since: None,
            no_quorum: false,
            dropped_frames: 0,
            bad_frames: 0,
            store,
            group,
            stopped: false,
            pauses_logged: 0,
            life: first_id,
            life_inc: life_inc.clone(),
            accepted: accepted.clone(),
            trace,
            counts: crate::metrics::Counts::default(),
            metrics,
            history: VecDeque::new(),
            change_began: None,
            flush_began: None,
            blocked_since: None,
        };
        tokio::spawn(driver.run(cmd_rx, net_rx));
        let member = Member { cmd: cmd_tx, first_id, life_inc, accepted, listen, registry, metrics_addr };
        if let Some(l) = metrics_listener {
            tokio::spawn(crate::http::serve(l, member.clone()));
        }
        Ok((member, Events { rx: ev_rx, taken: VecDeque::new(), batch: Vec::new() }))
    }

    /// The address it listens on for peers (the real port if the config said 0).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Where the metrics port listens (the real port if the config said 0), if it has one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The registry served on the metrics port: an application registers its own metrics
    /// here (under a prefix of its own, e.g. `chorus_kv`), and they are served beside the
    /// runtime's.
    pub fn registry(&self) -> &crate::metrics::SharedRegistry {
        &self.registry
    }

    /// Copies the member's figures into its Prometheus metrics (a scrape does it first).
    pub async fn publish_metrics(&self) -> Result<(), ShutDown> {
        let (reply, rx) = oneshot::channel();
        self.cmd.send(Command::Publish { reply }).await.map_err(|_| ShutDown)?;
        rx.await.map_err(|_| ShutDown)
    }

    /// What the status page shows.
    pub async fn page_status(&self) -> Result<crate::http::PageStatus, ShutDown> {
        let (reply, rx) = oneshot::channel();
        self.cmd.send(Command::Page { reply }).await.map_err(|_| ShutDown)?;
        rx.await.map_err(|_| ShutDown)
    }

    /// Whether the member has shut down (its driver stopped).
    pub fn is_shut_down(&self) -> bool {
        self.cmd.is_closed()
    }

    /// The identity it started with (see [`Member::status`] for the current one).
    pub fn first_id(&self) -> MemberId {
        self.first_id
    }

    /// Multicasts `payload` to the group in `order`. Waits while the member cannot send (joining,
    /// loading state, flushing a view change, or its window is full: back-pressure), then returns
    /// the message's id. Fails if the payload is too large, the member left or shut down, or
    /// the member was excluded before it could send it (`Superseded`: a multicast asked of one
    /// incarnation is never sent by a later one).
    pub async fn multicast(&self, order: Order, payload: Bytes) -> Result<MsgId, MulticastError> {
        Ok(self.multicast_stamped(order, payload).await?.0)
    }

    /// The member's current life: [`Member::first_id`], then `Event::Excluded`'s `rejoin_as`
    /// after each exclusion. (A node restarted from its data directory speaks for its earlier
    /// member during the view change that brings it back, without sending anything: that is
    /// still this life.)
    pub fn current_id(&self) -> MemberId {
        let inc = self.life_inc.load(std::sync::atomic::Ordering::SeqCst);
        MemberId { node: self.first_id.node, inc: chorus_core::Incarnation(inc) }
    }

    /// [`Member::multicast`] on behalf of incarnation `by` (from [`Member::current_id`] or
    /// `Event::Excluded`'s `rejoin_as`, taken when the application decided to send): fails with
    /// `Superseded` if the member is another incarnation by the time the message is due to be
    /// sent. For an application whose requests wait in queues of its own before they reach the
    /// member (a replica's batches), so that a request answered as failed when its member was
    /// excluded is not sent later by the member's next life.
    pub async fn multicast_as(
        &self,
        by: MemberId,
        order: Order,
        payload: Bytes,
    ) -> Result<MsgId, MulticastError> {
        let (reply, rx) = oneshot::channel();
        self.cmd.send(Command::Multicast { order, payload, by, reply }).await.map_err(|_| ShutDown)?;
        Ok(rx.await.map_err(|_| ShutDown)??.0)
    }

    /// How many multicasts the member has accepted so far. It counts one before its
    /// [`Member::multicast`] returns and before any event stamped after it is handed out, so an
    /// application that traces its sends can wait for the ones it has not heard back of yet
    /// before it writes a later event.
    pub fn multicasts_accepted(&self) -> u64 {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// [`Member::multicast`], also returning when the member accepted the message
    /// ([`trace_nanos`], comparable with [`Events::next_stamped`]), for traces.
    pub async fn multicast_stamped(
        &self,
        order: Order,
        payload: Bytes,
    ) -> Result<(MsgId, u64), MulticastError> {
        let (reply, rx) = oneshot::channel();
        let by = self.current_id();
        self.cmd.send(Command::Multicast { order, payload, by, reply }).await.map_err(|_| ShutDown)?;
        rx.await.map_err(|_| ShutDown)?
    }

    /// Streams the next piece of the checkpoint asked for by `Event::CheckpointRequest { view }`;
    /// waits while the transfer's window is full.
    pub async fn write_checkpoint(&self, view: ViewId, chunk: Bytes) -> Result<(), WriteCheckpointError> {
        self.write(view, Some(chunk)).await
    }

    /// Ends the checkpoint for `view`.
    pub async fn finish_checkpoint(&self, view: ViewId) -> Result<(), WriteCheckpointError> {
        self.write(view, None).await
    }

    async fn write(&self, view: ViewId, chunk: Option<Bytes>) -> Result<(), WriteCheckpointError> {
        let (reply, rx) = oneshot::channel();
        self.cmd.send(Command::Write { view, chunk, reply }).await.map_err(|_| ShutDown)?;
        Ok(rx.await.map_err(|_| ShutDown)??)
    }

    /// Leaves the group gracefully; returns once a view without this member is installed (or
    /// at once if it was not a member yet).
    pub async fn leave(&self) -> Result<(), ShutDown> {
        let (reply, rx) = oneshot::channel();
        self.cmd.send(Command::Leave { reply }).await.map_err(|_| ShutDown)?;
        rx.await.map_err(|_| ShutDown)
    }

    /// The member's current identity, status and view.
    pub async fn status(&self) -> Result<MemberStatus, ShutDown> {
        let (reply, rx) = oneshot::channel();
        self.cmd.send(Command::Status { reply }).await.map_err(|_| ShutDown)?;
        rx.await.map_err(|_| ShutDown)
    }

    /// Tells the member that the application's state is stored up to position `pos`: it is
    /// reported to the group, and `Event::Durable` says when every member stored a position.
    pub async fn set_durable(&self, pos: u64) -> Result<(), ShutDown> {
        self.cmd.send(Command::SetDurable { pos }).await.map_err(|_| ShutDown)
    }

    /// Stops the member at once: connections closed, nothing more sent (the others will suspect
    /// it). Use [`Member::leave`] first for a graceful exit.
    pub async fn shutdown(&self) {
        let _ = self.cmd.send(Command::Shutdown).await;
    }
}

enum NetEvent {
    Up {
        node: u64,
        listen: String,
        dialer: u64,
        conn: Conn,
    },
    Down {
        node: u64,
        id: u64,
    },
    Frame {
        node: u64,
        id: u64,
        bytes: Bytes,
        /// The frame's share of its connection's `FRAME_BUDGET`, given back once handled.
        held: tokio::sync::OwnedSemaphorePermit,
    },
    DialFailed {
        node: u64,
    },
    /// The connection sent bytes that are not valid frames (it is being closed).
    Bad,
}

/// One live connection, as the driver holds it.
struct Conn {
    id: u64,
    out: Arc<Outbox>,
    tasks: [AbortHandle; 2],
    /// Starts the reader once the driver has registered the connection, so that nothing it
    /// reads (a frame, an error, the end) reaches the driver before the connection itself.
    go: Option<oneshot::Sender<()>>,
}

impl Conn {
    fn close(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Conn {
    /// A connection the driver forgets is closed: its writer task holds the socket's write half
    /// and would otherwise wait for frames forever.
    fn drop(&mut self) {
        self.close();
    }
}

/// The sending side of a connection: the frames queued for the peer, written by the driver
/// itself at the end of each pass (one syscall for everything the pass produced, no task
/// switch), and by the connection's writer task only when the socket is full (a slow peer).
/// Over TLS the writer task does every write (it owns the TLS stream's write half): the
/// driver queues and wakes it.
struct Outbox {
    /// The plain socket's write half; None over TLS.
    stream: Option<OwnedWriteHalf>,
    state: std::sync::Mutex<OutState>,
    /// Tells the writer task that the socket was full and bytes are waiting.
    parked: Notify,
}

struct OutState {
    /// Framed bytes not yet written, at most `MAX_QUEUED_BYTES`.
    buf: BytesMut,
    /// The writer task is waiting for the socket to drain: the driver does not write.
    parked: bool,
    /// A write failed: the connection is dead, the reader reports it.
    failed: bool,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, OutState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bytes queued and not yet written.
    fn queued(&self) -> usize {
        self.lock().buf.len()
    }

    /// Queues a frame; false if it does not fit (a slow or dead peer) and was dropped.
    fn queue(&self, frame: &[u8]) -> bool {
        let mut st = self.lock();
        if st.failed || st.buf.len() + frame::HEADER_LEN + frame.len() > MAX_QUEUED_BYTES {
            return false;
        }
        frame::encode(&mut st.buf, frame);
        true
    }

    /// Writes what is queued without waiting; what the socket does not take now is left to the
    /// writer task.
    fn write_now(&self) -> std::io::Result<()> {
        let mut st = self.lock();
        if st.parked || st.failed || st.buf.is_empty() {
            return Ok(());
        }
        if self.stream.is_none() {
            // TLS: the writer task writes.
            st.parked = true;
            self.parked.notify_one();
            return Ok(());
        }
        match self.write_some(&mut st) {
            Ok(true) => Ok(()),
            Ok(false) => {
                st.parked = true;
                self.parked.notify_one();
                Ok(())
            }
            Err(e) => {
                st.failed = true;
                Err(e)
            }
        }
    }

    /// Writes until the buffer is empty (true) or the socket is full (false).
    fn write_some(&self, st: &mut OutState) -> std::io::Result<bool> {
        let Some(stream) = &self.stream else { return Ok(false) };
        while !st.buf.is_empty() {
            match stream.try_write(&st.buf) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => st.buf.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// The writer task: takes over while the socket is full, hands back once it has drained.
    async fn run_parked(&self) -> std::io::Result<()> {
        let Some(stream) = &self.stream else { return Ok(()) };
        loop {
            self.parked.notified().await;
            loop {
                stream.writable().await?;
                let mut st = self.lock();
                match self.write_some(&mut st) {
                    Ok(true) => {
                        st.parked = false;
                        // The backlog is gone: give its memory back.
                        st.buf = BytesMut::with_capacity(WRITE_BUF);
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        st.failed = true;
                        return Err(e);
                    }
                }
            }
        }
    }
}

impl Outbox {
    /// The writer task over TLS: writes what the driver queued, as it comes. What it writes is
    /// taken out of the queue first, so a connection holds at most twice `MAX_QUEUED_BYTES`.
    async fn run_tls<W: tokio::io::AsyncWrite + Unpin>(&self, mut w: W) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        loop {
            self.parked.notified().await;
            loop {
                let chunk = {
                    let mut st = self.lock();
                    if st.buf.is_empty() {
                        st.parked = false;
                        break;
                    }
                    st.buf.split().freeze()
                };
                let written = async {
                    w.write_all(&chunk).await?;
                    w.flush().await
                };
                if let Err(e) = written.await {
                    self.lock().failed = true;
                    return Err(e);
                }
            }
        }
    }
}

struct Peer {
    dialer: u64,
    conn: Conn,
}

#[derive(Default)]
struct Dial {
    in_progress: bool,
    backoff: Duration,
    not_before: Option<tokio::time::Instant>,
}

type PendingSend = (Order, Bytes, MemberId, oneshot::Sender<Result<(MsgId, u64), MulticastError>>);
type PendingWrite = (ViewId, Option<Bytes>, oneshot::Sender<Result<(), CheckpointError>>);

struct Driver {
    node: Node,
    start: tokio::time::Instant,
    me: u64,
    identity: Arc<Identity>,
    /// Mutual TLS on the peer links (None: plaintext, as the config said).
    tls: Option<Arc<PeerTls>>,
    peers: BTreeMap<u64, Peer>,
    book: BTreeMap<u64, String>,
    dials: BTreeMap<u64, Dial>,
    net_tx: mpsc::Sender<NetEvent>,
    events: mpsc::Sender<(u64, Event)>,
    pending_sends: VecDeque<PendingSend>,
    pending_writes: VecDeque<PendingWrite>,
    leave_waiters: Vec<oneshot::Sender<()>>,
    next_conn: u64,
    listener: AbortHandle,
    last_view: Option<ViewId>,
    /// For the log: the state being loaded (view, donor, since when), and whether this member
    /// is blocked without a quorum.
    loading_since: Option<(ViewId, MemberId, std::time::Instant)>,
    no_quorum: bool,
    dropped_frames: u64,
    bad_frames: u64,
    /// The data directory, where the core's record is kept before any frame that follows it.
    store: Option<NodeStore>,
    /// The group this node belongs to (0: none yet), shared with the handshakes.
    group: Arc<std::sync::atomic::AtomicU64>,
    /// The record could not be stored: the member stops without sending anything more.
    stopped: bool,
    /// This node's own pauses already logged.
    pauses_logged: u64,
    /// The member's current life (`Member::current_id`), and where the handles read it.
    life: MemberId,
    life_inc: Arc<std::sync::atomic::AtomicU64>,
    accepted: Arc<std::sync::atomic::AtomicU64>,
    /// The checker's trace, when `NodeConfig::trace` is set (see `crate::trace`).
    trace: Option<crate::trace::CoreTrace>,
    /// Figures for the metrics, copied into `metrics` at a scrape.
    counts: crate::metrics::Counts,
    metrics: crate::metrics::RuntimeMetrics,
    /// The last views installed, for the status page (at most `HISTORY`).
    history: VecDeque<crate::http::PageViewRecord>,
    /// When this node first saw the view change now under way (a suspicion or the flush's
    /// block), and when the flush began: for the durations in the metrics.
    change_began: Option<std::time::Instant>,
    flush_began: Option<std::time::Instant>,
    /// Since when multicasts have waited (window full or a view change), for the metrics.
    blocked_since: Option<std::time::Instant>,
}

/// Views kept for the status page.
const HISTORY: usize = 32;

impl Driver {
    fn now(&self) -> Instant {
        Instant::from_nanos(self.start.elapsed().as_nanos() as u64)
    }

    async fn run(mut self, mut cmds: mpsc::Receiver<Command>, mut net: mpsc::Receiver<NetEvent>) {
        info!(node = self.me, member = %self.node.member_id(), "member started");
        // One timer, re-armed only when the core's deadline moves (registering a new timer on
        // every pass costs more than the pass). Deadlines already due are run inline (`settle`):
        // tokio's timer has millisecond ticks and fires late on busy workers.
        let far = self.start + Duration::from_secs(86_400 * 365);
        let timer = tokio::time::sleep_until(far);
        tokio::pin!(timer);
        let mut armed = far;
        let mut cmd_buf: Vec<Command> = Vec::with_capacity(INPUT_BATCH);
        let mut net_buf: Vec<NetEvent> = Vec::with_capacity(INPUT_BATCH);
        loop {
            self.settle().await;
            let deadline =
                self.node.poll_timeout().map_or(far, |t| self.start + Duration::from_nanos(t.as_nanos()));
            if deadline != armed {
                timer.as_mut().reset(deadline);
                armed = deadline;
            }
            let room = MAX_PENDING.saturating_sub(self.pending_sends.len() + self.pending_writes.len());
            let stop = tokio::select! {
                k = cmds.recv_many(&mut cmd_buf, room.min(INPUT_BATCH)), if room > 0 => {
                    k == 0 || self.commands(&mut cmd_buf)
                },
                k = net.recv_many(&mut net_buf, INPUT_BATCH) => {
                    if k == 0 {
                        true
                    } else {
                        self.nets(&mut net_buf);
                        false
                    }
                },
                () = &mut timer => {
                    armed = far;
                    timer.as_mut().reset(far);
                    false
                }
            };
            if stop || self.stopped {
                break;
            }
            // Under load, let the tasks that are ready run first (callers woken by the replies
            // of the last pass, readers with new frames), then take what they queued: one pass,
            // one frame per peer and one write for all of it, instead of one per input.
            tokio::task::yield_now().await;
            let room = MAX_PENDING.saturating_sub(self.pending_sends.len() + self.pending_writes.len());
            if room > 0
                && take_ready(&mut cmds, &mut cmd_buf, room.min(INPUT_BATCH))
                && self.commands(&mut cmd_buf)
            {
                break;
            }
            if take_ready(&mut net, &mut net_buf, INPUT_BATCH) {
                self.nets(&mut net_buf);
            }
        }
        self.listener.abort();
        for p in self.peers.values() {
            p.conn.close();
        }
        info!(node = self.me, "member stopped");
    }

    /// Handles a batch of commands; true if one of them is `Shutdown`.
    fn commands(&mut self, batch: &mut Vec<Command>) -> bool {
        let mut stop = false;
        for c in batch.drain(..) {
            match c {
                Command::Shutdown => stop = true,
                c if !stop => self.command(c),
                _ => {}
            }
        }
        stop
    }

    /// Handles a batch of network events.
    fn nets(&mut self, batch: &mut Vec<NetEvent>) {
        let now = self.now();
        for n in batch.drain(..) {
            self.net(n, now);
        }
    }

    /// Brings everything up to date after inputs: due timers, events to the application, the
    /// multicasts waiting for the window, and the frames to peers (written at once).
    async fn settle(&mut self) {
        self.run_due();
        // Events first, then the waiting multicasts: a multicast accepted in a new view is
        // stamped after that view's install event.
        self.drain_events().await;
        self.retry();
        self.run_due();
        self.drain_events().await;
        self.flush();
        let pauses = self.node.local_pauses();
        if pauses.count > self.pauses_logged {
            self.pauses_logged = pauses.count;
            warn!(
                node = self.me,
                paused_ms = pauses.last.as_millis() as u64,
                "this node did not run for {:?} (stopped, swapped or starved of CPU); its peers may suspect it",
                pauses.last
            );
        }
    }

    /// Runs the core's timers that are due now.
    fn run_due(&mut self) {
        let now = self.now();
        // One call runs everything due; the bound only guards against a deadline that would
        // stay in the past.
        for _ in 0..4 {
            if self.node.poll_timeout().is_none_or(|t| t > now) {
                break;
            }
            self.node.handle_timeout(now);
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Multicast { order, payload, by, reply } => {
                self.pending_sends.push_back((order, payload, by, reply))
            }
            Command::Write { view, chunk, reply } => self.pending_writes.push_back((view, chunk, reply)),
            Command::Leave { reply } => {
                if self.node.status() == Status::Left {
                    let _ = reply.send(());
                } else {
                    self.leave_waiters.push(reply);
                    let now = self.now();
                    self.node.leave(now);
                }
            }
            Command::Status { reply } => {
                let _ = reply.send(MemberStatus {
                    id: self.node.member_id(),
                    status: self.node.status(),
                    view: self.node.view().cloned(),
                    connected: self.peers.keys().copied().collect(),
                    dropped_frames: self.dropped_frames,
                    bad_frames: self.bad_frames,
                    group: self.node.group(),
                    foreign_group_refusals: self.identity.refusals.load(std::sync::atomic::Ordering::Relaxed),
                });
            }
            Command::Publish { reply } => {
                self.publish();
                let _ = reply.send(());
            }
            Command::Page { reply } => {
                let _ = reply.send(self.page());
            }
            Command::SetDurable { pos } => {
                let now = self.now();
                self.node.set_durable(now, pos);
            }
            Command::Shutdown => {}
        }
    }

    /// Offers waiting multicasts and checkpoint writes to the core, in order, until one has to
    /// wait.
    fn retry(&mut self) {
        let now = self.now();
        let mut stamp = None; // One clock reading for the whole batch.
        let life = self.life;
        while let Some((order, payload, by, _)) = self.pending_sends.front() {
            let r = if *by != life {
                Err(MulticastError::Superseded { asked_by: *by, now: life })
            } else {
                match self.node.multicast_ordered(now, payload.clone(), *order) {
                    Err(e) if e.is_transient() => {
                        self.blocked_since.get_or_insert_with(std::time::Instant::now);
                        break;
                    }
                    r => r.map_err(MulticastError::from),
                }
            };
            if let Some(since) = self.blocked_since.take() {
                self.counts.send_blocked_seconds += since.elapsed().as_secs_f64();
            }
            if let Some((order, payload, _, reply)) = self.pending_sends.pop_front() {
                let at = *stamp.get_or_insert_with(trace_nanos);
                if let Ok(id) = &r {
                    let o = crate::metrics::order_index(order);
                    self.counts.sent_msgs[o] += 1;
                    self.counts.sent_bytes[o] += payload.len() as u64;
                    self.accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if let Some(tr) = &mut self.trace {
                        tr.send(at, *id, order, &payload);
                    }
                }
                let _ = reply.send(r.map(|id| (id, at)));
            }
        }
        while let Some((view, chunk, _)) = self.pending_writes.front() {
            let r = match chunk {
                Some(c) => self.node.write_checkpoint(*view, c.clone()),
                None => self.node.finish_checkpoint(*view),
            };
            if r == Err(CheckpointError::WindowFull) {
                break;
            }
            if let (Ok(()), Some(c)) = (&r, chunk) {
                self.counts.state_sent_bytes += c.len() as u64;
            }
            if let Some((_, _, reply)) = self.pending_writes.pop_front() {
                let _ = reply.send(r);
            }
        }
    }

    /// Hands the core's events to the application.
    async fn drain_events(&mut self) {
        let stamp = trace_nanos(); // One reading per batch: the events of a batch are one step.
        while let Some(e) = self.node.poll_event() {
            self.observe(&e);
            if let Some(tr) = &mut self.trace {
                tr.event(stamp, &e);
            }
            match self.events.try_send((stamp, e)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(item)) => {
                    // The application is behind: wait for it (see `Events`), once the frames
                    // already produced are on their way.
                    self.flush();
                    let _ = self.events.send(item).await;
                }
                // The application dropped its events; the member keeps its protocol going.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }

    /// Hands the core's frames to the connections and writes what each connection has queued.
    /// Taking frames only here, once per pass, lets the core put everything a pass produced for
    /// a peer (messages and one acknowledgement) in one frame.
    fn flush(&mut self) {
        // What the core asks to keep goes to disk before any frame that follows it: a promise
        // in a view change must survive a crash before anyone sees it.
        if let Some(p) = self.node.poll_persist() {
            self.group.store(p.group.0, std::sync::atomic::Ordering::Relaxed);
            if let Some(store) = &mut self.store {
                if let Err(e) = store.save(&p) {
                    tracing::error!(node = self.me, "cannot store the membership ({e}); the member stops");
                    self.stopped = true;
                    return;
                }
            }
        }
        if self.stopped {
            return;
        }
        // The trace's lines go out before the frames: no `deliver` elsewhere before its `send`.
        if let Some(tr) = &mut self.trace {
            tr.flush();
        }
        // Frames are taken from the core only for peers whose queue has room for one more
        // batch: a slow peer's messages wait in the core (where the pieces of a large message
        // are not lost to a full queue; the next pass, at most a tick later, takes them),
        // up to `MAX_WAITING_BYTES`, beyond which the oldest are dropped as a network would.
        loop {
            let peers = &self.peers;
            let room = |n: NodeId| {
                peers.get(&n.0).is_none_or(|p| p.conn.out.queued() + READY_ROOM <= MAX_QUEUED_BYTES)
            };
            let Some(t) = self.node.poll_transmit_where(room) else { break };
            self.send(t.to.0, t.frame);
        }
        // As much may wait as the largest message the core puts together from pieces.
        let max_waiting = self.node.config().max_message;
        let trimmed = self.node.trim_waiting(max_waiting);
        if trimmed > 0 {
            self.dropped_frames += trimmed as u64;
            debug!(
                node = self.me,
                trimmed, "messages for a slow peer dropped: they waited beyond max_message"
            );
        }
        let mut failed = Vec::new();
        for (node, p) in &self.peers {
            if let Err(e) = p.conn.out.write_now() {
                debug!(node = self.me, peer = node, "write failed: {e}");
                failed.push(*node);
            }
        }
        for node in failed {
            if let Some(p) = self.peers.remove(&node) {
                p.conn.close();
            }
        }
    }

    /// Whether this node is in a view with a majority, and why not.
    fn primary(&self) -> Result<(), String> {
        match self.node.status() {
            Status::Member | Status::Blocked if self.no_quorum => {
                Err("no quorum: it hears fewer than a majority of its view".into())
            }
            // Blocked by a flush: the view changes, and this member is in it.
            Status::Member | Status::Blocked => Ok(()),
            Status::Joining => Err("joining the group".into()),
            Status::Recovering => Err("recovering: speaking for its earlier life".into()),
            Status::Left => Err("left the group".into()),
            other => Err(format!("{other:?}").to_lowercase()),
        }
    }

    /// Copies the counts and the figures of the moment into the Prometheus metrics.
    fn publish(&self) {
        let marks = self.node.marks();
        let snapshot = crate::metrics::Snapshot {
            members: self.node.view().map_or(0, |v| v.members.len()),
            primary: self.primary().is_ok(),
            stability: self.node.stability(),
            retransmissions: marks.get(chorus_core::Mark::Retransmitted),
            window_full: marks.get(chorus_core::Mark::WindowFull),
            connections: self.peers.len(),
            foreign_group_refusals: self.identity.refusals.load(std::sync::atomic::Ordering::Relaxed),
            dropped_frames: self.dropped_frames,
            bad_frames: self.bad_frames,
            local_pauses: self.node.local_pauses().count,
        };
        self.metrics.publish(&self.counts, &snapshot);
    }

    /// The status page's figures.
    fn page(&self) -> crate::http::PageStatus {
        let me = self.node.member_id();
        let view = self.node.view().map(|v| crate::http::PageView {
            id: v.id.0,
            members: v
                .members
                .iter()
                .enumerate()
                .map(|(rank, m)| crate::http::PageMember {
                    node: m.node.0,
                    member: m.to_string(),
                    role: if rank == 0 { "coordinator" } else { "member" },
                    connected: m.node.0 == self.me || self.peers.contains_key(&m.node.0),
                    me: *m == me,
                })
                .collect(),
        });
        let st = self.node.stability();
        let primary = self.primary();
        crate::http::PageStatus {
            node: self.me,
            member: me.to_string(),
            status: format!("{:?}", self.node.status()).to_lowercase(),
            primary: primary.is_ok(),
            not_primary_because: primary.err(),
            group: self.node.group().map(|g| format!("{:016x}", g.0)),
            view,
            history: self.history.iter().cloned().collect(),
            stability: crate::http::PageStability {
                own_msgs: st.own_msgs,
                own_bytes: st.own_bytes,
                all_msgs: st.all_msgs,
                window_msgs: st.window_msgs,
                window_bytes: st.window_bytes,
            },
            transfer: self.loading_since.map(|(v, donor, since)| crate::http::PageTransfer {
                view: v.0,
                donor: donor.to_string(),
                bytes: self.counts.state_loading_bytes,
                seconds: since.elapsed().as_secs_f64(),
            }),
            uptime_s: self.start.elapsed().as_secs_f64(),
            delivered: self.counts.delivered_msgs.iter().sum(),
            sent: self.counts.sent_msgs.iter().sum(),
        }
    }

    fn observe(&mut self, e: &Event) {
        match e {
            Event::Delivered { order, payload, .. } => {
                let o = crate::metrics::order_index(*order);
                self.counts.delivered_msgs[o] += 1;
                self.counts.delivered_bytes[o] += payload.len() as u64;
            }
            Event::StateChunk { data, .. } => {
                self.counts.state_received_bytes += data.len() as u64;
                self.counts.state_loading_bytes += data.len() as u64;
            }
            Event::ViewInstalled { view, joined, departed, loading, recovered } => {
                self.counts.views_installed += 1;
                if let Some(t) = self.change_began.take() {
                    self.metrics.view_change_seconds.observe(t.elapsed().as_secs_f64());
                }
                if let Some(t) = self.flush_began.take() {
                    self.metrics.flush_seconds.observe(t.elapsed().as_secs_f64());
                }
                let list = |ms: &[MemberId]| {
                    ms.iter().map(|m| format!("n{}", m.node.0)).collect::<Vec<_>>().join(" ")
                };
                // A node back from its data directory replaces its earlier life: say so once,
                // not as one member joining and another departing.
                let back = |m: &MemberId| recovered.iter().any(|r| r.node == m.node);
                let new: Vec<MemberId> = joined.iter().copied().filter(|m| !back(m)).collect();
                let gone: Vec<MemberId> = departed.iter().copied().filter(|m| !back(m)).collect();
                let mut why = Vec::new();
                if !new.is_empty() {
                    why.push(format!("joined: {}", list(&new)));
                }
                if !gone.is_empty() {
                    why.push(format!("departed: {}", list(&gone)));
                }
                if !loading.is_empty() {
                    why.push(format!("loading the state: {}", list(loading)));
                }
                if !recovered.is_empty() {
                    why.push(format!("back from their data directories: {}", list(recovered)));
                }
                info!(
                    node = self.me,
                    view = %view.id.0,
                    members = ?view.members,
                    "view {} installed: {} members [{}]{}{}",
                    view.id.0,
                    view.members.len(),
                    list(&view.members),
                    if why.is_empty() { "" } else { "; " },
                    why.join("; ")
                );
                if self.history.len() == HISTORY {
                    self.history.pop_front();
                }
                self.history.push_back(crate::http::PageViewRecord {
                    view: view.id.0,
                    members: list(&view.members),
                    at_ms: wall_nanos() / 1_000_000,
                    why: if why.is_empty() { "founded".into() } else { why.join("; ") },
                });
                if std::mem::take(&mut self.no_quorum) {
                    info!(node = self.me, view = %view.id.0, "quorum regained: this member is in view {} again with a majority", view.id.0);
                }
                // Close connections to members that left the view (a dead or stuck peer would
                // otherwise keep its queue and a blocked writer); a later life reconnects.
                for d in departed {
                    if !view.members.iter().any(|m| m.node == d.node) {
                        if let Some(p) = self.peers.remove(&d.node.0) {
                            p.conn.close();
                        }
                    }
                }
                self.last_view = Some(view.id);
                // Tell every member where everyone listens, so that a joiner can be reached.
                let members: Vec<u64> =
                    view.members.iter().map(|m| m.node.0).filter(|n| *n != self.me).collect();
                let book = self.book_frame();
                for m in members {
                    self.send(m, book.clone());
                }
            }
            Event::Blocked { reason: chorus_core::BlockReason::NoQuorum } => {
                self.no_quorum = true;
                warn!(
                    node = self.me,
                    "no quorum: this member hears fewer than a majority of its view; it installs no view and delivers nothing until a majority is back"
                );
            }
            Event::Blocked { reason: chorus_core::BlockReason::Flush } => {
                let now = std::time::Instant::now();
                self.flush_began.get_or_insert(now);
                self.change_began.get_or_insert(now);
                debug!(node = self.me, "flush: the view is changing; sending paused until the next view");
            }
            Event::Recovering { view, member } => {
                info!(
                    node = self.me,
                    "restarted from the data directory: speaks for its earlier life {member} in view {} until the group's next view",
                    view.id.0
                );
            }
            Event::CheckpointRequest { view, joiners } => {
                let to: Vec<String> = joiners.iter().map(|m| format!("n{}", m.node.0)).collect();
                info!(node = self.me, view = %view.0, "state transfer: giving the state to {} for view {}", to.join(" "), view.0);
            }
            Event::CheckpointComplete { view } => {
                info!(node = self.me, view = %view.0, "state transfer: the state for view {} is given", view.0);
            }
            Event::StateIncoming { view, donor } => {
                self.counts.state_loading = true;
                self.counts.state_loading_bytes = 0;
                self.loading_since = Some((*view, *donor, std::time::Instant::now()));
                info!(node = self.me, view = %view.0, donor = %donor, "state transfer: loading the group's state from n{} for view {}", donor.node.0, view.0);
            }
            Event::StateLoaded { view, len } => {
                self.counts.state_loading = false;
                self.counts.state_loading_bytes = 0;
                let (from, took) = match self.loading_since.take() {
                    Some((v, d, since)) if v == *view => {
                        self.metrics.state_transfer_seconds.observe(since.elapsed().as_secs_f64());
                        (
                            format!(" from n{}", d.node.0),
                            format!(" in {:.1} s", since.elapsed().as_secs_f64()),
                        )
                    }
                    _ => (String::new(), String::new()),
                };
                info!(node = self.me, view = %view.0, bytes = len, "state transfer: loaded the state of view {} ({len} bytes){from}{took}", view.0);
            }
            Event::Left => {
                info!(node = self.me, "left the group");
                for w in self.leave_waiters.drain(..) {
                    let _ = w.send(());
                }
            }
            Event::Excluded { rejoin_as, .. } => {
                self.counts.exclusions += 1;
                // A new life: what the last one was asked to send and did not is never sent.
                self.life = *rejoin_as;
                self.life_inc.store(rejoin_as.inc.0, std::sync::atomic::Ordering::SeqCst);
                info!(node = self.me, rejoin_as = %rejoin_as, "excluded from the group; re-joining");
            }
            Event::Suspected { member, reason } => {
                match reason {
                    chorus_core::SuspectReason::Silent => self.counts.suspicions_silent += 1,
                    chorus_core::SuspectReason::Lagging => self.counts.suspicions_lagging += 1,
                }
                self.change_began.get_or_insert_with(std::time::Instant::now);
                warn!(node = self.me, member = %member, "suspects {member}: {reason}");
            }
            _ => {}
        }
    }

    fn book_frame(&self) -> Bytes {
        let mut entries: Vec<(u64, String)> = self.book.iter().map(|(n, a)| (*n, a.clone())).collect();
        entries.push((self.me, self.identity.listen.clone()));
        let mut out = BOOK_MAGIC.to_vec();
        match postcard::to_extend(&entries, out) {
            Ok(v) => out = v,
            Err(_) => return Bytes::new(),
        }
        Bytes::from(out)
    }

    /// Queues a frame for `to`, connecting first if needed. Dropped if the peer's queue is full
    /// or it cannot be reached now (the core retransmits what matters).
    fn send(&mut self, to: u64, frame: Bytes) {
        if to == self.me || frame.is_empty() {
            return;
        }
        if let Some(p) = self.peers.get(&to) {
            if !p.conn.out.queue(&frame) {
                self.dropped(to, "its send queue is full");
            }
            return;
        }
        self.dial(to);
    }

    fn dropped(&mut self, to: u64, why: &str) {
        self.dropped_frames += 1;
        if self.dropped_frames.is_power_of_two() {
            debug!(node = self.me, peer = to, dropped = self.dropped_frames, "frame dropped: {why}");
        }
    }

    fn dial(&mut self, to: u64) {
        let Some(addr) = self.book.get(&to).cloned() else { return };
        let d = self.dials.entry(to).or_default();
        let now = tokio::time::Instant::now();
        if d.in_progress || d.not_before.is_some_and(|t| now < t) {
            return;
        }
        d.in_progress = true;
        let identity = self.identity.clone();
        let tls = self.tls.clone();
        let net = self.net_tx.clone();
        let failures = self.metrics.handshake_failures.clone();
        let id = self.next_conn;
        self.next_conn += 1;
        tokio::spawn(async move {
            match connect(&addr, to, &identity, tls.as_deref()).await {
                Ok((stream, peer)) => {
                    let conn = spawn_conn(stream, to, id, net.clone());
                    let _ = net
                        .send(NetEvent::Up { node: to, listen: peer.listen, dialer: identity.node, conn })
                        .await;
                }
                Err((e, act)) => {
                    if act {
                        failures.inc();
                        warn!(peer = to, addr = %addr, "connection refused at the handshake: {e}");
                    } else {
                        debug!(peer = to, addr = %addr, "cannot connect: {e}");
                    }
                    let _ = net.send(NetEvent::DialFailed { node: to }).await;
                }
            }
        });
    }

    fn net(&mut self, n: NetEvent, now: Instant) {
        match n {
            NetEvent::Frame { node, id, bytes, held } => {
                let _held = held; // Released when this frame is handled.
                if self.peers.get(&node).is_none_or(|p| p.conn.id != id) {
                    return; // From a connection already replaced.
                }
                if bytes.starts_with(&BOOK_MAGIC) {
                    self.on_book(node, &bytes[2..]);
                    return;
                }
                if let Err(e) = self.node.handle_frame_bytes(now, NodeId(node), &bytes) {
                    self.bad_frames += 1;
                    warn!(node = self.me, peer = node, "closing the connection: {e}");
                    if let Some(p) = self.peers.remove(&node) {
                        p.conn.close();
                    }
                }
            }
            NetEvent::Up { node, listen, dialer, conn } => {
                let d = self.dials.entry(node).or_default();
                if dialer == self.me {
                    d.in_progress = false;
                }
                d.backoff = Duration::ZERO;
                d.not_before = None;
                if dialable(&listen) {
                    self.book.insert(node, listen);
                }
                // Both dialed at once: keep the connection dialed by the smaller node id.
                let keeper = self.me.min(node);
                let keep_new = match self.peers.get(&node) {
                    None => true,
                    Some(old) => old.dialer == dialer || dialer == keeper,
                };
                if keep_new {
                    debug!(node = self.me, peer = node, "connected");
                    let mut conn = conn;
                    if let Some(go) = conn.go.take() {
                        let _ = go.send(());
                    }
                    if let Some(old) = self.peers.insert(node, Peer { dialer, conn }) {
                        old.conn.close();
                    }
                    let book = self.book_frame();
                    self.send(node, book);
                } else {
                    conn.close();
                }
            }
            NetEvent::Down { node, id } => {
                if self.peers.get(&node).is_some_and(|p| p.conn.id == id) {
                    debug!(node = self.me, peer = node, "disconnected");
                    self.peers.remove(&node);
                }
            }
            NetEvent::Bad => self.bad_frames += 1,
            NetEvent::DialFailed { node } => {
                let d = self.dials.entry(node).or_default();
                d.in_progress = false;
                d.backoff = (d.backoff * 2).clamp(DIAL_BACKOFF_MIN, DIAL_BACKOFF_MAX);
                d.not_before = Some(tokio::time::Instant::now() + d.backoff);
            }
        }
    }

    fn on_book(&mut self, from: u64, bytes: &[u8]) {
        let Ok(entries) = postcard::from_bytes::<Vec<(u64, String)>>(bytes) else {
            warn!(node = self.me, peer = from, "malformed address book ignored");
            return;
        };
        for (node, addr) in entries.into_iter().take(MAX_BOOK) {
            let valid = node != self.me && dialable(&addr);
            if valid && (self.book.len() < MAX_BOOK || self.book.contains_key(&node)) {
                self.book.insert(node, addr);
            }
        }
    }
}

/// Whether `addr`, from a peer, is one to dial: `host:port` with a real port, the host an IP
/// address (not every interface, 0.0.0.0) or a host name (resolved at each dial).
fn dialable(addr: &str) -> bool {
    crate::config::host_port(addr).is_ok_and(|(_, port)| port != 0) && !crate::config::is_unspecified(addr)
}

/// Why a dial failed, and whether an operator must act (a refusal at the handshake, as
/// opposed to a peer that is down or slow, which the backoff handles).
type DialError = (String, bool);

async fn connect(
    addr: &str,
    to: u64,
    me: &Identity,
    tls: Option<&PeerTls>,
) -> Result<(Link, handshake::PeerInfo), DialError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, crate::resolve::connect(addr))
        .await
        .map_err(|_| ("connect timed out".to_string(), false))?
        .map_err(|e| (e.to_string(), false))?;
    tune(&stream);
    let mut link = match tls {
        None => Link::Plain(stream),
        Some(tls) => {
            let name = crate::tls::server_name(addr).map_err(|e| (e, true))?;
            let tls_stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.connector.connect(name, stream))
                .await
                .map_err(|_| ("the TLS handshake timed out".to_string(), false))?
                .map_err(|e| {
                    (
                        crate::tls::explain(&e),
                        !matches!(
                            e.kind(),
                            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
                        ),
                    )
                })?;
            Link::Tls(Box::new(tokio_rustls::TlsStream::Client(tls_stream)))
        }
    };
    let plain = tls.is_none();
    let peer = link.handshake_dial(me, to).await.map_err(|e| {
        use handshake::HandshakeError as E;
        let act = !matches!(e, E::Io(_) | E::Timeout(_) | E::Closed);
        // A TLS acceptor answers a plaintext Hello with a TLS alert (7 bytes) and closes.
        let hint = if plain && matches!(e, E::Frame(_)) {
            " (does the peer run with TLS? then this node needs tls_cert, tls_key and tls_ca too)"
        } else {
            ""
        };
        (format!("{e}{hint}"), act)
    })?;
    Ok((link, peer))
}

/// An authenticated peer connection's stream: plain TCP, or TLS over it.
enum Link {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl Link {
    async fn handshake_dial(
        &mut self,
        me: &Identity,
        to: u64,
    ) -> Result<handshake::PeerInfo, handshake::HandshakeError> {
        match self {
            Link::Plain(s) => handshake::dial(s, me, Some(to), HANDSHAKE_TIMEOUT).await,
            Link::Tls(s) => handshake::dial(s.as_mut(), me, Some(to), HANDSHAKE_TIMEOUT).await,
        }
    }

    async fn handshake_accept(
        &mut self,
        me: &Identity,
        within: Duration,
    ) -> Result<handshake::PeerInfo, handshake::HandshakeError> {
        match self {
            Link::Plain(s) => handshake::accept(s, me, within).await,
            Link::Tls(s) => handshake::accept(s.as_mut(), me, within).await,
        }
    }
}

/// A peer connection: no Nagle delay, and aborted when the peer stops acknowledging
/// (`PEER_USER_TIMEOUT`). Failures to set either only cost latency, never correctness.
fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = socket2::SockRef::from(stream).set_tcp_user_timeout(Some(PEER_USER_TIMEOUT));
}

/// Accepts connections, authenticates them (TLS first if configured, then the handshake inside
/// it), and hands them to the driver.
async fn accept_loop(
    listener: TcpListener,
    me: Arc<Identity>,
    tls: Option<Arc<PeerTls>>,
    net: mpsc::Sender<NetEvent>,
    failures: prometheus_client::metrics::counter::Counter,
) {
    let gate = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    let mut next_id = u64::MAX / 2; // Distinct from the dialer's ids.
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = gate.clone().try_acquire_owned() else {
            debug!(%from, "too many handshakes in progress: connection refused");
            continue;
        };
        let (me, net, tls, failures) = (me.clone(), net.clone(), tls.clone(), failures.clone());
        next_id += 1;
        let id = next_id;
        tokio::spawn(async move {
            let _permit = permit;
            tune(&stream);
            // One deadline for the whole of it: TLS (or the look at the first byte), then the
            // handshake inside.
            let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
            let mut link = match tls {
                None => {
                    // A TLS record's first byte, where a Hello's magic should be: say so, not
                    // just "bad magic".
                    let mut first = [0u8; 1];
                    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
                        Ok(Ok(1)) if first[0] == 0x16 => {
                            warn!(%from, "connection refused: the peer speaks TLS and this node runs with plaintext = true (every node of a cluster must do the same)");
                            failures.inc();
                            return;
                        }
                        Err(_) => {
                            warn!(%from, "connection refused at the handshake: {}", handshake::HandshakeError::Timeout(HANDSHAKE_TIMEOUT));
                            failures.inc();
                            return;
                        }
                        _ => {}
                    }
                    Link::Plain(stream)
                }
                Some(tls) => match tokio::time::timeout_at(deadline, tls.acceptor.accept(stream)).await {
                    Ok(Ok(s)) => Link::Tls(Box::new(tokio_rustls::TlsStream::Server(s))),
                    Ok(Err(e)) => {
                        warn!(%from, "connection refused at the TLS handshake: {}", crate::tls::explain(&e));
                        failures.inc();
                        return;
                    }
                    Err(_) => {
                        warn!(%from, "connection refused at the TLS handshake: it did not complete within {HANDSHAKE_TIMEOUT:?} (peer silent or too slow)");
                        failures.inc();
                        return;
                    }
                },
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match link.handshake_accept(&me, left).await {
                Ok(peer) => {
                    let conn = spawn_conn(link, peer.node, id, net.clone());
                    let _ = net
                        .send(NetEvent::Up { node: peer.node, listen: peer.listen, dialer: peer.node, conn })
                        .await;
                }
                Err(e) => {
                    failures.inc();
                    warn!(%from, "connection refused at the handshake: {e}");
                }
            }
        });
    }
}

/// Starts the reader and writer tasks of an authenticated connection to `node`.
fn spawn_conn(link: Link, node: u64, id: u64, net: mpsc::Sender<NetEvent>) -> Conn {
    type Reader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
    let (rd, plain, tls): (Reader, _, _) = match link {
        Link::Plain(s) => {
            let (r, w) = s.into_split();
            (Box::new(r), Some(w), None)
        }
        Link::Tls(s) => {
            let (r, w) = tokio::io::split(*s);
            (Box::new(r), None, Some(w))
        }
    };
    let out = Arc::new(Outbox {
        stream: plain,
        state: std::sync::Mutex::new(OutState {
            buf: BytesMut::with_capacity(WRITE_BUF),
            parked: false,
            failed: false,
        }),
        parked: Notify::new(),
    });
    let (go, registered) = oneshot::channel::<()>();
    let reader = {
        let net = net.clone();
        tokio::spawn(async move {
            if registered.await.is_err() {
                return; // Not kept (a duplicate), or the member stopped.
            }
            let mut frames = FrameReader::new(rd, MAX_FRAME);
            let budget = Arc::new(tokio::sync::Semaphore::new(FRAME_BUDGET));
            loop {
                match frames.next().await {
                    Ok(Some(bytes)) => {
                        // A frame is at most MAX_FRAME, within the budget and a u32.
                        let n = bytes.len().clamp(1, MAX_FRAME) as u32;
                        let Ok(held) = budget.clone().acquire_many_owned(n).await else { return };
                        if net.send(NetEvent::Frame { node, id, bytes, held }).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    // A TLS peer that ended without a close_notify: it crashed or was killed,
                    // as a plain connection's end says (an attacker cutting the stream gains
                    // nothing either: every frame taken was whole and checked).
                    Err(frame::FrameError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        debug!(peer = node, "connection ended: {e}");
                        break;
                    }
                    Err(e) => {
                        warn!(peer = node, "closing the connection: {e}");
                        let _ = net.send(NetEvent::Bad).await;
                        break;
                    }
                }
            }
            let _ = net.send(NetEvent::Down { node, id }).await;
        })
    };
    let writer = {
        let out = out.clone();
        tokio::spawn(async move {
            let run = match tls {
                None => out.run_parked().await,
                Some(w) => out.run_tls(w).await,
            };
            if let Err(e) = run {
                debug!(peer = node, "write failed: {e}");
            }
            let _ = net.send(NetEvent::Down { node, id }).await;
        })
    };
    Conn { id, out, tasks: [reader.abort_handle(), writer.abort_handle()], go: Some(go) }
}

/// Takes what a channel holds now, without waiting; true if anything was taken (false also
/// when the channel is closed: the next wait sees that).
fn take_ready<T>(rx: &mut mpsc::Receiver<T>, buf: &mut Vec<T>, limit: usize) -> bool {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    matches!(rx.poll_recv_many(&mut cx, buf, limit), std::task::Poll::Ready(k) if k > 0)
}
