//! The tokio driver of a [`Replica`]: one task owns the replica and the member's event stream,
//! takes client requests from a channel, and carries out the replica's actions (multicasts in
//! order on a sender task, replies on oneshot channels, checkpoints streamed on their own task).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chorus::{Event, Events, Member, MemberId, Order, ViewId};
use chorus_smr::storage::{Dir, StorageError, WalSync, WalSynced};
use chorus_smr::{
    Action, Consistency, DurableOptions, Frozen, Replica, ReplicaConfig, ReplicaError, ReplicaStatus,
    SnapshotJob, StateMachine, StorageStatus, Ticket,
};
use tokio::sync::{mpsc, oneshot, Notify};

/// The state machine behind a lock, so that local reads run on the connection's task without a
/// round trip through the driver, and a gate that says whether they may (closed by the machine
/// itself the moment its state is dropped or replaced, reopened by the driver once the replica
/// serves again).
pub struct Shared<S> {
    inner: Arc<RwLock<S>>,
    gate: Arc<AtomicU8>,
}

const GATE_OPEN: u8 = 0;
const GATE_NO_QUORUM: u8 = 1;
const GATE_NOT_READY: u8 = 2;
const GATE_STANDBY: u8 = 3;
const GATE_LEFT: u8 = 4;

fn gate_code(r: &Result<(), ReplicaError>) -> u8 {
    match r {
        Ok(()) => GATE_OPEN,
        Err(ReplicaError::NoQuorum) => GATE_NO_QUORUM,
        Err(ReplicaError::Standby) => GATE_STANDBY,
        Err(ReplicaError::Left) => GATE_LEFT,
        Err(_) => GATE_NOT_READY,
    }
}

fn gate_error(code: u8) -> ReplicaError {
    match code {
        GATE_NO_QUORUM => ReplicaError::NoQuorum,
        GATE_STANDBY => ReplicaError::Standby,
        GATE_LEFT => ReplicaError::Left,
        _ => ReplicaError::NotReady,
    }
}

fn read_lock<S>(l: &RwLock<S>) -> std::sync::RwLockReadGuard<'_, S> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write_lock<S>(l: &RwLock<S>) -> std::sync::RwLockWriteGuard<'_, S> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<S> std::fmt::Debug for Shared<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl<S: StateMachine> StateMachine for Shared<S> {
    type Output = S::Output;
    type Query = S::Query;
    type Frozen = S::Frozen;

    fn freeze(&self) -> S::Frozen {
        read_lock(&self.inner).freeze()
    }
    fn restore_from(&mut self, r: &mut dyn std::io::Read) -> Result<(), chorus_smr::RestoreError> {
        self.gate.store(GATE_NOT_READY, AtomicOrdering::SeqCst);
        write_lock(&self.inner).restore_from(r)
    }

    fn apply(&mut self, cmd: &[u8], ctx: &chorus_smr::Ctx) -> S::Output {
        write_lock(&self.inner).apply(cmd, ctx)
    }
    fn query(&self, q: &S::Query, now_ms: u64) -> S::Output {
        read_lock(&self.inner).query(q, now_ms)
    }
    fn snapshot(&self, out: &mut Vec<u8>) {
        read_lock(&self.inner).snapshot(out)
    }
    fn restore(&mut self, data: &[u8]) -> Result<(), chorus_smr::RestoreError> {
        self.gate.store(GATE_NOT_READY, AtomicOrdering::SeqCst);
        write_lock(&self.inner).restore(data)
    }
    fn reset(&mut self) {
        self.gate.store(GATE_NOT_READY, AtomicOrdering::SeqCst);
        write_lock(&self.inner).reset()
    }
    fn digest(&self) -> u64 {
        read_lock(&self.inner).digest()
    }
}

/// Client requests queued for the driver; senders wait (back-pressure) beyond this.
const REQUEST_QUEUE: usize = 4096;
/// Checkpoint pieces handed to the member.
const CHECKPOINT_PIECE: usize = 256 << 10;

type ReplyTx<O> = oneshot::Sender<Result<O, ReplicaError>>;

enum Req<S: StateMachine> {
    Write {
        session: u64,
        seq: u64,
        cmd: Bytes,
        reply: ReplyTx<S::Output>,
    },
    /// Pipelined writes of one session (requests `first_seq..`), answered together: one
    /// request and one reply for the lot instead of one each.
    Writes {
        session: u64,
        first_seq: u64,
        cmds: Vec<Bytes>,
        reply: oneshot::Sender<Vec<Result<S::Output, ReplicaError>>>,
    },
    Read {
        q: S::Query,
        consistency: Consistency,
        reply: ReplyTx<S::Output>,
    },
    Promote {
        member: MemberId,
        reply: oneshot::Sender<Result<(), ReplicaError>>,
    },
    Save {
        wait: bool,
        reply: oneshot::Sender<Result<SaveOutcome, String>>,
    },
}

/// What SAVE / BGSAVE did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveOutcome {
    /// A snapshot was written (SAVE), at this position.
    Saved(u64),
    /// A snapshot is being written in the background (BGSAVE).
    Started,
    /// The latest snapshot already holds the current state.
    UpToDate,
}

/// A handle on a running replica: cheap to clone, one per client connection.
pub struct Replicated<S: StateMachine> {
    tx: mpsc::Sender<Req<S>>,
    status: Arc<Mutex<ReplicaStatus>>,
    /// (applied index, digest of the state at it), refreshed when the replica is idle.
    digest: Arc<Mutex<(u64, u64)>>,
    member: Member,
    machine: Arc<RwLock<S>>,
    gate: Arc<AtomicU8>,
    last_now_ms: Arc<AtomicU64>,
    applied: Arc<AtomicU64>,
    storage: Arc<Mutex<Option<StorageStatus>>>,
    /// Why the driver stopped, once it did.
    stopped: tokio::sync::watch::Receiver<Option<String>>,
}

impl<S: StateMachine> Clone for Replicated<S> {
    fn clone(&self) -> Self {
        Replicated {
            tx: self.tx.clone(),
            status: self.status.clone(),
            digest: self.digest.clone(),
            member: self.member.clone(),
            machine: self.machine.clone(),
            gate: self.gate.clone(),
            last_now_ms: self.last_now_ms.clone(),
            applied: self.applied.clone(),
            storage: self.storage.clone(),
            stopped: self.stopped.clone(),
        }
    }
}

/// A replica opened (from its data directory, if it keeps one) before its member starts: the
/// member needs to know which stored state it may offer for recovery.
pub struct Prepared<S: StateMachine> {
    replica: Replica<Shared<S>>,
    machine: Arc<RwLock<S>>,
    gate: Arc<AtomicU8>,
}

impl<S: StateMachine> std::fmt::Debug for Prepared<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared").finish_non_exhaustive()
    }
}

impl<S: StateMachine> std::fmt::Debug for Replicated<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicated").finish_non_exhaustive()
    }
}

/// Wall-clock milliseconds since the epoch: the time a command or a read carries. Never
/// lower than a value it returned before in this process, so that a wall clock stepped back
/// does not make this node's reads see an expired key alive again.
pub fn now_ms() -> u64 {
    static HIGHEST: AtomicU64 = AtomicU64::new(0);
    let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    HIGHEST.fetch_max(wall, AtomicOrdering::Relaxed).max(wall)
}

impl<S> Replicated<S>
where
    S: StateMachine + Send + Sync + 'static,
    S::Output: Send + std::fmt::Debug + 'static,
    S::Query: Send + std::fmt::Debug + 'static,
{
    /// Starts the driver of a replica of `sm` on `member` (which must have state transfer on),
    /// keeping nothing on disk.
    pub fn start(member: Member, events: Events, sm: S, cfg: ReplicaConfig) -> Replicated<S> {
        let machine = Arc::new(RwLock::new(sm));
        let gate = Arc::new(AtomicU8::new(GATE_NOT_READY));
        let shared = Shared { inner: machine.clone(), gate: gate.clone() };
        let replica = Replica::new(shared, member.first_id(), cfg);
        Prepared { replica, machine, gate }.start(member, events)
    }

    /// Opens a replica of `sm` for member `me` that keeps its state in `dir`: loads what is
    /// there, and says which position it may offer for recovery given the node's last
    /// membership (`member`, from its data directory). Start it with [`Prepared::start`] once
    /// the member runs.
    pub fn open(
        sm: S,
        me: MemberId,
        cfg: ReplicaConfig,
        dir: Arc<dyn Dir>,
        opts: DurableOptions,
        member: Option<MemberId>,
    ) -> Result<(Prepared<S>, Option<u64>), StorageError> {
        let machine = Arc::new(RwLock::new(sm));
        let gate = Arc::new(AtomicU8::new(GATE_NOT_READY));
        let shared = Shared { inner: machine.clone(), gate: gate.clone() };
        let (mut replica, opened) = Replica::open(shared, me, cfg, dir, opts)?;
        if let Some(torn) = &opened.report.torn {
            tracing::warn!(
                "the log ended in a record torn by a crash: {} bytes cut from {} at offset {}",
                torn.dropped,
                torn.file,
                torn.offset
            );
        }
        let offered = replica.offer(member);
        tracing::info!(
            pos = opened.pos,
            replayed = opened.report.replayed,
            offered = ?offered,
            "opened the stored state"
        );
        Ok((Prepared { replica, machine, gate }, offered))
    }
}

impl<S> Prepared<S>
where
    S: StateMachine + Send + Sync + 'static,
    S::Output: Send + std::fmt::Debug + 'static,
    S::Query: Send + std::fmt::Debug + 'static,
{
    /// Starts the driver on the running `member`.
    pub fn start(self, member: Member, events: Events) -> Replicated<S> {
        let Prepared { replica, machine, gate } = self;
        let last_now_ms = Arc::new(AtomicU64::new(0));
        let applied = Arc::new(AtomicU64::new(0));
        let status = Arc::new(Mutex::new(replica.status()));
        let storage = Arc::new(Mutex::new(replica.storage_status()));
        let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
        let digest = Arc::new(Mutex::new((u64::MAX, 0)));
        let in_flight = Arc::new(AtomicU64::new(0));
        let idle = Arc::new(Notify::new());
        let (snap_tx, snap_rx) = mpsc::unbounded_channel();
        let (sync_jobs, sync_done) = spawn_syncer();
        let (stop_tx, stopped) = tokio::sync::watch::channel(None);
        let driver = Driver {
            replica: Parked(Some(replica)),
            member: member.clone(),
            status: status.clone(),
            digest: digest.clone(),
            gate: gate.clone(),
            last_now_ms: last_now_ms.clone(),
            applied: applied.clone(),
            idle_at: u64::MAX,
            digesting: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            waiting: HashMap::new(),
            batches: HashMap::new(),
            next_batch: 0,
            sender: spawn_sender(member.clone(), in_flight.clone(), idle.clone()),
            in_flight,
            idle,
            last_status: tokio::time::Instant::now(),
            storage: storage.clone(),
            durable: None,
            snap_tx,
            sync_jobs,
            save_waiters: Vec::new(),
            started: std::time::Instant::now(),
            stop_tx,
            fatal: None,
        };
        tokio::spawn(driver.run(events, rx, snap_rx, sync_done));
        Replicated { tx, status, digest, member, machine, gate, last_now_ms, applied, storage, stopped }
    }
}

impl<S> Replicated<S>
where
    S: StateMachine + Send + Sync + 'static,
    S::Output: Send + std::fmt::Debug + 'static,
    S::Query: Send + std::fmt::Debug + 'static,
{
    /// Replicates and applies a command of client `session` (request `seq`).
    pub async fn write(&self, session: u64, seq: u64, cmd: Bytes) -> Result<S::Output, ReplicaError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Req::Write { session, seq, cmd, reply }).await.map_err(|_| ReplicaError::Left)?;
        rx.await.map_err(|_| ReplicaError::Uncertain)?
    }

    /// Runs a local read here, now, on this replica's state (no round trip through the driver).
    pub fn read_local(&self, q: &S::Query) -> Result<S::Output, ReplicaError> {
        let code = self.gate.load(AtomicOrdering::SeqCst);
        if code != GATE_OPEN {
            return Err(gate_error(code));
        }
        let now = now_ms().max(self.last_now_ms.load(AtomicOrdering::Relaxed));
        Ok(read_lock(&self.machine).query(q, now))
    }

    /// Runs a read with the consistency asked for.
    pub async fn read(&self, q: S::Query, consistency: Consistency) -> Result<S::Output, ReplicaError> {
        if consistency == Consistency::Local {
            return self.read_local(&q);
        }
        let (reply, rx) = oneshot::channel();
        self.tx.send(Req::Read { q, consistency, reply }).await.map_err(|_| ReplicaError::Left)?;
        rx.await.map_err(|_| ReplicaError::NotReady)?
    }

    /// Promotes a standby member to active.
    pub async fn promote(&self, member: MemberId) -> Result<(), ReplicaError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Req::Promote { member, reply }).await.map_err(|_| ReplicaError::Left)?;
        rx.await.map_err(|_| ReplicaError::Left)?
    }

    /// The replica's standing (refreshed on every view event and at least every 50 ms).
    pub fn status(&self) -> ReplicaStatus {
        match self.status.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The member under the replica.
    pub fn member(&self) -> &Member {
        &self.member
    }

    /// Waits until the replica's driver stopped (its member shut down, or a fatal error: a
    /// transferred state that does not load, a failed disk); says why.
    pub async fn stopped(&self) -> String {
        let mut rx = self.stopped.clone();
        loop {
            if let Some(why) = rx.borrow_and_update().clone() {
                return why;
            }
            if rx.changed().await.is_err() {
                return "the replica stopped".into();
            }
        }
    }

    /// The storage's report (`INFO persistence`), if the replica keeps its state on disk.
    pub fn storage(&self) -> Option<StorageStatus> {
        match self.storage.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Writes a snapshot now (`wait`: SAVE) or in the background (BGSAVE).
    pub async fn save_now(&self, wait: bool) -> Result<SaveOutcome, String> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Req::Save { wait, reply }).await.map_err(|_| "the replica stopped".to_string())?;
        rx.await.map_err(|_| "the replica stopped".to_string())?
    }
}

/// Multicasts in the order the replica asked for them, one at a time (the member's
/// back-pressure applies), each on behalf of the replica's life that asked for it: if the member
/// was excluded meanwhile, it is not sent (`MulticastError::Superseded`), since the replica
/// answered its requests when it heard of the exclusion. Unbounded, but the replica's
/// `max_pending` bounds what it holds.
fn spawn_sender(
    member: Member,
    in_flight: Arc<AtomicU64>,
    idle: Arc<Notify>,
) -> mpsc::UnboundedSender<(MemberId, Order, Bytes)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(MemberId, Order, Bytes)>();
    tokio::spawn(async move {
        while let Some((by, order, payload)) = rx.recv().await {
            if let Err(e) = member.multicast_as(by, order, payload).await {
                // The member left or shut down: the replica hears of it as an event and fails
                // what waits.
                tracing::debug!("multicast failed: {e}");
            }
            if in_flight.fetch_sub(1, AtomicOrdering::SeqCst) == 1 {
                idle.notify_one();
            }
        }
    });
    tx
}

/// Who waits for a ticket's result.
enum Waiter<O> {
    One(ReplyTx<O>),
    /// Entry `.1` of batch `.0`.
    InBatch(u64, usize),
}

struct Batch<O> {
    results: Vec<Option<Result<O, ReplicaError>>>,
    missing: usize,
    reply: oneshot::Sender<Vec<Result<O, ReplicaError>>>,
}

impl<O> Batch<O> {
    fn send(self) {
        let results = self.results.into_iter().map(|r| r.unwrap_or(Err(ReplicaError::Uncertain))).collect();
        let _ = self.reply.send(results);
    }
}

/// The driver's replica, away on a blocking thread while `Driver::off_thread` awaits it (never
/// otherwise: that await holds the driver, so nothing can look at the empty slot). Not data from
/// the network, a disk or a user: an invariant of this file, hence the `expect`s.
struct Parked<T>(Option<T>);

#[allow(clippy::expect_used)]
impl<T> std::ops::Deref for Parked<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_ref().expect("the replica is away only while the driver awaits it")
    }
}

#[allow(clippy::expect_used)]
impl<T> std::ops::DerefMut for Parked<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0.as_mut().expect("the replica is away only while the driver awaits it")
    }
}

struct Driver<S: StateMachine> {
    replica: Parked<Replica<Shared<S>>>,
    gate: Arc<AtomicU8>,
    last_now_ms: Arc<AtomicU64>,
    applied: Arc<AtomicU64>,
    member: Member,
    status: Arc<Mutex<ReplicaStatus>>,
    digest: Arc<Mutex<(u64, u64)>>,
    /// The applied index at the previous status tick: when it has not moved for a tick, the
    /// state digest is brought up to date (it reads the whole state).
    idle_at: u64,
    /// A digest is being computed (`refresh_digest`).
    digesting: Arc<std::sync::atomic::AtomicBool>,
    waiting: HashMap<Ticket, Waiter<S::Output>>,
    /// `Req::Writes` being answered, by number: results so far, how many are missing.
    batches: HashMap<u64, Batch<S::Output>>,
    next_batch: u64,
    sender: mpsc::UnboundedSender<(MemberId, Order, Bytes)>,
    /// Multicasts handed to the sender task and not yet taken by the member.
    in_flight: Arc<AtomicU64>,
    /// Told when the sender task has nothing in flight: the held batch may go.
    idle: Arc<Notify>,
    last_status: tokio::time::Instant,
    storage: Arc<Mutex<Option<StorageStatus>>>,
    /// A stored position to tell the member.
    durable: Option<u64>,
    /// Snapshot jobs report here when they end.
    snap_tx: mpsc::UnboundedSender<SnapResult>,
    /// Syncs of the log go to the sync thread (`spawn_syncer`); `None` once it is gone.
    sync_jobs: Option<std::sync::mpsc::Sender<WalSync>>,
    /// SAVE commands waiting for the snapshot being written.
    save_waiters: Vec<oneshot::Sender<Result<SaveOutcome, String>>>,
    /// For fsync timings.
    started: std::time::Instant,
    /// Told why the driver stopped.
    stop_tx: tokio::sync::watch::Sender<Option<String>>,
    /// The fatal error that stops it, if any.
    fatal: Option<String>,
}

/// The thread that syncs the write-ahead log (one fsync at a time: group commit), so that the
/// driver goes on applying and logging while the disk works. Jobs in, results out; at most one
/// job is out at a time (`Replica::sync_start`).
fn spawn_syncer() -> (Option<std::sync::mpsc::Sender<WalSync>>, mpsc::UnboundedReceiver<WalSynced>) {
    let (jobs, job_rx) = std::sync::mpsc::channel::<WalSync>();
    let (done_tx, done) = mpsc::unbounded_channel();
    let spawned = std::thread::Builder::new().name("chorus-wal-sync".into()).spawn(move || {
        while let Ok(job) = job_rx.recv() {
            if done_tx.send(job.run()).is_err() {
                break;
            }
        }
    });
    match spawned {
        Ok(_) => (Some(jobs), done),
        Err(e) => {
            tracing::warn!("cannot start the log's sync thread ({e}): syncing on the driver's");
            (None, done)
        }
    }
}

/// A finished snapshot job: its result.
type SnapResult = Result<chorus_smr::storage::SnapshotInfo, StorageError>;

impl<S> Driver<S>
where
    S: StateMachine + Send + Sync + 'static,
    S::Output: Send + std::fmt::Debug + 'static,
    S::Query: Send + std::fmt::Debug + 'static,
{
    async fn run(
        mut self,
        mut events: Events,
        mut rx: mpsc::Receiver<Req<S>>,
        mut snaps: mpsc::UnboundedReceiver<SnapResult>,
        mut synced: mpsc::UnboundedReceiver<WalSynced>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                ev = events.next() => {
                    let Some(ev) = ev else { break };
                    let important =
                        !matches!(ev, Event::Delivered { .. } | Event::StateChunk { .. } | Event::Durable { .. });
                    if matches!(ev, Event::StateLoaded { .. }) {
                        // Reads the loaded state back from disk into the store: seconds for a
                        // large one. Off this thread, so that the member's heartbeats go on.
                        self.off_thread(move |r| r.on_event(ev)).await;
                    } else {
                        self.replica.on_event(ev);
                    }
                    if important {
                        self.publish_status();
                    }
                }
                done = snaps.recv() => {
                    if let Some(result) = done {
                        self.snapshot_done(result).await;
                    }
                }
                done = synced.recv(), if self.sync_jobs.is_some() => {
                    if let Some(done) = done {
                        let started = self.started;
                        self.replica.sync_finish(done, &|| started.elapsed().as_micros() as u64);
                    }
                }
                req = rx.recv() => {
                    let Some(req) = req else { break };
                    self.request(req);
                    while let Ok(req) = rx.try_recv() {
                        self.request(req);
                    }
                }
                _ = self.idle.notified() => {}
                _ = tick.tick() => {
                    self.publish_status();
                    self.refresh_digest();
                }
            }
            // Group commit: one sync for everything logged since the last one began, on the
            // sync thread, while this goes on applying and logging; the position goes to the
            // group when it ends (replies under `appendfsync always` wait for every member's).
            let started = self.started;
            let clock = || started.elapsed().as_micros() as u64;
            if let Some(job) = self.replica.sync_start(now_ms(), &clock) {
                let here = match &self.sync_jobs {
                    Some(t) => t.send(job).err().map(|std::sync::mpsc::SendError(job)| job),
                    None => Some(job),
                };
                if let Some(job) = here {
                    // No sync thread (it could not start, or it is gone): sync here.
                    self.sync_jobs = None;
                    self.replica.sync_finish(job.run(), &clock);
                }
            }
            if !self.actions() {
                break;
            }
            if let Some(pos) = self.durable.take() {
                if self.member.set_durable(pos).await.is_err() {
                    break;
                }
            }
            if let Some(job) = self.replica.snapshot_job(false) {
                self.run_snapshot(job);
            }
            self.gate.store(gate_code(&self.replica.local_reads()), AtomicOrdering::SeqCst);
            self.last_now_ms.store(self.replica.last_now_ms(), AtomicOrdering::Relaxed);
            self.applied.store(self.replica.applied(), AtomicOrdering::Relaxed);
            if self.last_status.elapsed() >= Duration::from_millis(10) {
                self.publish_status();
            }
        }
        self.gate.store(GATE_LEFT, AtomicOrdering::SeqCst);
        if let Err(e) = self.replica.sync_all() {
            tracing::error!("the last writes could not be synced at shutdown: {e}");
        }
        let why = self.fatal.take().unwrap_or_else(|| "the group member stopped".into());
        let _ = self.stop_tx.send(Some(why));
        // Fail whatever waits: the member is gone.
        let waiting: Vec<_> = self.waiting.drain().map(|(_, w)| w).collect();
        for w in waiting {
            self.answer(w, Err(ReplicaError::Uncertain));
        }
        self.publish_status();
    }

    /// Runs `f` on the replica on a blocking thread, for work that may block on the disk for
    /// seconds: this thread also runs the member's driver, whose heartbeats must go on (a member
    /// silent for the suspicion timeout is excluded). The driver waits meanwhile: events and
    /// requests queue up, in order, as they would behind any slow step.
    #[allow(clippy::expect_used)]
    async fn off_thread<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Replica<Shared<S>>) -> R + Send + 'static,
    ) -> R {
        let mut replica = self.replica.0.take().expect("the replica is away only while the driver awaits it");
        match tokio::task::spawn_blocking(move || {
            let out = f(&mut replica);
            (replica, out)
        })
        .await
        {
            Ok((replica, out)) => {
                self.replica.0 = Some(replica);
                out
            }
            // The work panicked: so does the driver, as it would have had it run here.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled: the runtime is shutting down and drops this task with it.
            Err(_) => std::future::pending().await,
        }
    }

    /// Brings the state digest (INFO's `state_digest`) up to date once the replica is idle: it
    /// reads the whole state (half a second for 1 GiB), so it runs on a blocking thread from a
    /// frozen copy, one at a time, never on this worker (the member's heartbeats share it).
    fn refresh_digest(&mut self) {
        let s = self.replica.status();
        let quiet = s.applied == self.idle_at;
        self.idle_at = s.applied;
        let stale = self.digest.lock().is_ok_and(|d| d.0 != s.applied);
        if !(quiet && stale && s.phase == chorus_smr::Phase::Ready) {
            return;
        }
        if self.digesting.swap(true, AtomicOrdering::SeqCst) {
            return;
        }
        let (applied, frozen) = self.replica.frozen_machine();
        let (digest, busy) = (self.digest.clone(), self.digesting.clone());
        tokio::task::spawn_blocking(move || {
            let hash = chorus_smr::frozen_digest(applied, frozen);
            if let Ok(mut d) = digest.lock() {
                *d = (applied, hash);
            }
            busy.store(false, AtomicOrdering::SeqCst);
        });
    }

    fn publish_status(&mut self) {
        self.last_status = tokio::time::Instant::now();
        let s = self.replica.status();
        match self.status.lock() {
            Ok(mut g) => *g = s,
            Err(p) => *p.into_inner() = s,
        }
        let st = self.replica.storage_status();
        match self.storage.lock() {
            Ok(mut g) => *g = st,
            Err(p) => *p.into_inner() = st,
        }
    }

    /// Writes a snapshot on a blocking thread (it streams the frozen state to disk).
    fn run_snapshot(&self, job: SnapshotJob) {
        let tx = self.snap_tx.clone();
        tokio::task::spawn_blocking(move || {
            let _ = tx.send(job.run());
        });
    }

    async fn snapshot_done(&mut self, result: SnapResult) {
        let outcome = match &result {
            Ok(info) => Ok(SaveOutcome::Saved(info.pos)),
            Err(e) => {
                tracing::warn!("snapshot failed (the log still holds everything): {e}");
                Err(format!("snapshot failed: {e}"))
            }
        };
        // Deletes the log files the snapshot covers: slow on a filesystem that discards blocks
        // as it frees them (hundreds of ms per 64 MiB seen), so off this thread.
        let now = now_ms();
        self.off_thread(move |r| r.snapshot_done(result, now)).await;
        for w in self.save_waiters.drain(..) {
            let _ = w.send(outcome.clone());
        }
        self.publish_status();
    }

    fn request(&mut self, req: Req<S>) {
        match req {
            Req::Write { session, seq, cmd, reply } => {
                match self.replica.submit(session, seq, &cmd, now_ms()) {
                    Ok(ticket) => {
                        self.waiting.insert(ticket, Waiter::One(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Req::Writes { session, first_seq, cmds, reply } => {
                let id = self.next_batch;
                self.next_batch += 1;
                let now = now_ms();
                let mut results = Vec::with_capacity(cmds.len());
                let mut missing = 0;
                for (i, (seq, cmd)) in (first_seq..).zip(&cmds).enumerate() {
                    match self.replica.submit(session, seq, cmd, now) {
                        Ok(ticket) => {
                            self.waiting.insert(ticket, Waiter::InBatch(id, i));
                            results.push(None);
                            missing += 1;
                        }
                        Err(e) => results.push(Some(Err(e))),
                    }
                }
                let batch = Batch { results, missing, reply };
                if missing == 0 {
                    batch.send();
                } else {
                    self.batches.insert(id, batch);
                }
            }
            Req::Read { q, consistency, reply } => match self.replica.read(q, consistency, now_ms()) {
                Ok(Ok(out)) => {
                    let _ = reply.send(Ok(out));
                }
                Ok(Err(ticket)) => {
                    self.waiting.insert(ticket, Waiter::One(reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Req::Promote { member, reply } => {
                let _ = reply.send(self.replica.promote(member));
            }
            Req::Save { wait, reply } => {
                let busy = self.replica.storage_status().is_some_and(|s| s.snapshot_in_progress);
                match self.replica.snapshot_job(true) {
                    Some(job) => {
                        self.run_snapshot(job);
                        if wait {
                            self.save_waiters.push(reply);
                        } else {
                            let _ = reply.send(Ok(SaveOutcome::Started));
                        }
                    }
                    None if busy && wait => self.save_waiters.push(reply),
                    None if busy => {
                        let _ = reply.send(Err("Background save already in progress".into()));
                    }
                    None if self.replica.storage_status().is_none() => {
                        let _ =
                            reply.send(Err("this node keeps no data directory (data_dir is not set)".into()));
                    }
                    None => {
                        let _ = reply.send(Ok(SaveOutcome::UpToDate));
                    }
                }
            }
        }
    }

    /// Gives a ticket's result to whoever waits for it.
    fn answer(&mut self, w: Waiter<S::Output>, result: Result<S::Output, ReplicaError>) {
        match w {
            Waiter::One(reply) => {
                let _ = reply.send(result);
            }
            Waiter::InBatch(id, i) => {
                let Some(b) = self.batches.get_mut(&id) else { return };
                if let Some(slot) = b.results.get_mut(i) {
                    if slot.replace(result).is_none() {
                        b.missing -= 1;
                    }
                }
                if b.missing == 0 {
                    if let Some(b) = self.batches.remove(&id) {
                        b.send();
                    }
                }
            }
        }
    }

    /// Carries out the replica's actions; false if the replica cannot go on.
    fn actions(&mut self) -> bool {
        // Group commit: while a multicast is on its way into the member, new commands wait in
        // the replica's batch and leave together when the sender is free.
        self.replica.hold_batch(self.in_flight.load(AtomicOrdering::SeqCst) > 0);
        while let Some(a) = self.replica.poll_action() {
            match a {
                Action::Multicast { order, payload } => {
                    self.in_flight.fetch_add(1, AtomicOrdering::SeqCst);
                    self.replica.hold_batch(true);
                    // The replica drops a life's multicasts when it hears of its exclusion, so
                    // this one is of its current life.
                    let by = self.replica.me();
                    if self.sender.send((by, order, payload)).is_err() {
                        return false;
                    }
                }
                Action::Reply { ticket, result } => {
                    if let Some(w) = self.waiting.remove(&ticket) {
                        self.answer(w, result);
                    }
                }
                Action::Checkpoint { view, state } => {
                    tokio::spawn(stream_checkpoint(self.member.clone(), view, state));
                }
                Action::Durable { pos } => self.durable = Some(pos),
                Action::Fatal { reason } => {
                    tracing::error!("replica stopped: {reason}");
                    self.fatal = Some(reason);
                    let member = self.member.clone();
                    tokio::spawn(async move { member.shutdown().await });
                    return false;
                }
            }
        }
        true
    }
}

/// Streams a frozen checkpoint, one piece at a time: the member's transfer window bounds what
/// is serialized and not yet taken by the joiners.
async fn stream_checkpoint(member: Member, view: ViewId, mut state: Box<dyn Frozen>) {
    loop {
        let mut piece = Vec::with_capacity(CHECKPOINT_PIECE);
        if !state.next_piece(&mut piece, CHECKPOINT_PIECE) {
            break;
        }
        // A large record may make a piece longer than the core's chunk limit: split it.
        let piece = Bytes::from(piece);
        let mut at = 0;
        while at < piece.len() {
            let end = piece.len().min(at + CHECKPOINT_PIECE);
            if member.write_checkpoint(view, piece.slice(at..end)).await.is_err() {
                return; // The view changed: the transfer is abandoned.
            }
            at = end;
        }
    }
    let _ = member.finish_checkpoint(view).await;
}

// ---------------------------------------------------------------------------------------------
// The store's backend on a replica.

use crate::backend::{Backend, BackendError, Consistency as KvConsistency, GroupInfo};
use crate::command::Query;
use crate::reply::Reply;
use crate::store::KvMachine;

impl From<ReplicaError> for BackendError {
    fn from(e: ReplicaError) -> Self {
        match e {
            ReplicaError::NoQuorum => BackendError::NoQuorum,
            ReplicaError::Standby => BackendError::Standby,
            ReplicaError::Overloaded => BackendError::Overloaded,
            ReplicaError::Uncertain => BackendError::Uncertain(e.to_string()),
            ReplicaError::Left => BackendError::ShuttingDown,
            ReplicaError::NotReady => BackendError::NotReady,
            other => BackendError::Other(other.to_string()),
        }
    }
}

impl Replicated<KvMachine> {
    /// Queues a write now (in call order), returning the wait for its reply.
    fn submit_now(
        &self,
        session: u64,
        seq: u64,
        cmd: Bytes,
    ) -> impl Future<Output = Result<Reply, BackendError>> + Send + 'static {
        let (reply, rx) = oneshot::channel();
        let req = Req::Write { session, seq, cmd, reply };
        // Try to queue synchronously, so that pipelined writes keep their order; when the queue
        // is full, wait for room (call order still holds: the server awaits before the next).
        let pending = match self.tx.try_send(req) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(req)) => Some((self.tx.clone(), req)),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return futures_ready(Err(BackendError::ShuttingDown))
            }
        };
        futures_boxed(async move {
            if let Some((tx, req)) = pending {
                tx.send(req).await.map_err(|_| BackendError::ShuttingDown)?;
            }
            match rx.await {
                Ok(r) => r.map_err(BackendError::from),
                Err(_) => {
                    Err(BackendError::Uncertain("the replica stopped while the command was in flight".into()))
                }
            }
        })
    }
}

type BoxFut<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'static>>;

fn futures_ready<T: Send + 'static>(v: T) -> BoxFut<T> {
    Box::pin(std::future::ready(v))
}

fn futures_boxed<T>(f: impl Future<Output = T> + Send + 'static) -> BoxFut<T> {
    Box::pin(f)
}

use std::future::Future;

impl Backend for Replicated<KvMachine> {
    fn write(
        &self,
        session: u64,
        seq: u64,
        cmd: Bytes,
    ) -> impl Future<Output = Result<Reply, BackendError>> + Send {
        self.submit_now(session, seq, cmd)
    }

    fn writes(
        &self,
        session: u64,
        first_seq: u64,
        cmds: Vec<Bytes>,
    ) -> impl Future<Output = Vec<Result<Reply, BackendError>>> + Send {
        let n = cmds.len();
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.clone();
        async move {
            let all = |e: BackendError| (0..n).map(|_| Err(e.clone())).collect();
            if tx.send(Req::Writes { session, first_seq, cmds, reply }).await.is_err() {
                return all(BackendError::ShuttingDown);
            }
            match rx.await {
                Ok(rs) => rs.into_iter().map(|r| r.map_err(BackendError::from)).collect(),
                Err(_) => {
                    all(BackendError::Uncertain("the replica stopped while the command was in flight".into()))
                }
            }
        }
    }

    fn read(&self, q: Query, c: KvConsistency) -> impl Future<Output = Result<Reply, BackendError>> + Send {
        // A local read runs here and now; only a linearizable one needs the driver.
        let (done, tx) = match c {
            KvConsistency::Local => (Some(self.read_local(&q).map_err(BackendError::from)), None),
            KvConsistency::Linearizable => (None, Some(self.tx.clone())),
        };
        async move {
            if let Some(r) = done {
                return r;
            }
            let Some(tx) = tx else { return Err(BackendError::ShuttingDown) };
            let (reply, rx) = oneshot::channel();
            let req = Req::Read { q, consistency: Consistency::Linearizable, reply };
            tx.send(req).await.map_err(|_| BackendError::ShuttingDown)?;
            match rx.await {
                Ok(r) => r.map_err(BackendError::from),
                Err(_) => Err(BackendError::NotReady),
            }
        }
    }

    fn promote(&self, node: Option<u64>) -> impl Future<Output = Result<(), BackendError>> + Send {
        let this = self.clone();
        async move {
            let s = this.status();
            let target = match node {
                None => s.me,
                Some(n) => s
                    .view
                    .as_ref()
                    .and_then(|v| v.members.iter().copied().find(|m| m.node.0 == n))
                    .ok_or_else(|| BackendError::Other(format!("node {n} is not in the current view")))?,
            };
            match s.roles.iter().find(|(m, _)| *m == target) {
                Some((_, chorus_smr::Role::Active)) => return Ok(()),
                Some(_) => {}
                None => {
                    return Err(BackendError::Other(format!(
                        "member {}.{} has no role yet",
                        target.node.0, target.inc.0
                    )))
                }
            }
            Replicated::promote(&this, target).await.map_err(BackendError::from)?;
            // The promotion travels through the group: answer once it is applied here.
            for _ in 0..500 {
                if this.status().roles.iter().any(|(m, r)| *m == target && *r == chorus_smr::Role::Active) {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(BackendError::Uncertain("the promotion was sent but not seen applied within 5 s".into()))
        }
    }

    fn persistence(&self) -> Vec<(String, String)> {
        let kv = |k: &str, v: String| (k.to_owned(), v);
        let Some(st) = self.storage() else {
            return vec![kv("aof_enabled", "0".into()), kv("rdb_bgsave_in_progress", "0".into())];
        };
        vec![
            kv("aof_enabled", "1".into()),
            kv("appendfsync", st.fsync.to_string()),
            kv(
                "aof_last_write_status",
                if self.status().phase == chorus_smr::Phase::Left { "err" } else { "ok" }.into(),
            ),
            kv("wal_bytes", st.log_bytes.to_string()),
            kv("wal_segments", st.log_segments.to_string()),
            kv("wal_last_pos", st.last_pos.to_string()),
            kv("wal_synced_pos", st.synced_pos.to_string()),
            kv("wal_fsyncs", st.fsyncs.to_string()),
            kv("wal_fsync_last_us", st.fsync_last_us.to_string()),
            kv("wal_fsync_max_us", st.fsync_max_us.to_string()),
            kv("rdb_bgsave_in_progress", u8::from(st.snapshot_in_progress).to_string()),
            kv("rdb_last_save_time", (st.last_snapshot_ms / 1000).to_string()),
            kv("rdb_saves", st.snapshots_written.to_string()),
            kv("rdb_last_bgsave_status", if st.last_snapshot_error.is_some() { "err" } else { "ok" }.into()),
            kv("snapshot_pos", st.snapshot.map_or(0, |s| s.0).to_string()),
            kv("snapshot_bytes", st.snapshot.map_or(0, |s| s.1).to_string()),
            kv("state_owned", u8::from(st.owned).to_string()),
        ]
    }

    fn save(&self, background: bool) -> impl Future<Output = Result<(), BackendError>> + Send {
        let this = self.clone();
        async move {
            match this.save_now(!background).await {
                Ok(_) => Ok(()),
                Err(e) => Err(BackendError::Other(e)),
            }
        }
    }

    fn lastsave(&self) -> u64 {
        self.storage().map_or(0, |s| s.last_snapshot_ms / 1000)
    }

    fn serving(&self) -> Result<(), BackendError> {
        match self.gate.load(AtomicOrdering::SeqCst) {
            GATE_OPEN | GATE_STANDBY => Ok(()),
            code => Err(gate_error(code).into()),
        }
    }

    fn replicas(&self) -> u64 {
        let s = self.status();
        s.view.as_ref().map_or(0, |v| v.members.len().saturating_sub(1) as u64)
    }

    fn info(&self) -> GroupInfo {
        let s = self.status();
        let role = match (s.phase, s.role) {
            (chorus_smr::Phase::Ready, Some(r)) => r.to_string(),
            (chorus_smr::Phase::Ready, None) => "joining".into(),
            (chorus_smr::Phase::Joining, _) => "joining".into(),
            (chorus_smr::Phase::Loading, _) => "loading".into(),
            (chorus_smr::Phase::NoQuorum, _) => "noquorum".into(),
            (chorus_smr::Phase::Left, _) => "left".into(),
        };
        let digest = self.digest.lock().map(|d| *d).unwrap_or_default();
        GroupInfo {
            view_id: s.view.as_ref().map_or(0, |v| v.id.0),
            members: s.view.as_ref().map_or_else(Vec::new, |v| {
                v.members.iter().map(|m| format!("{}.{}", m.node.0, m.inc.0)).collect()
            }),
            role,
            applied_index: self.applied.load(AtomicOrdering::Relaxed).max(s.applied),
            pending_requests: s.pending as u64,
            extra: vec![
                ("member".into(), format!("{}.{}", s.me.node.0, s.me.inc.0)),
                ("phase".into(), format!("{:?}", s.phase).to_lowercase()),
                (
                    "roles".into(),
                    s.roles
                        .iter()
                        .map(|(m, r)| format!("{}.{}={r}", m.node.0, m.inc.0))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                ("sessions".into(), s.sessions.to_string()),
                ("last_applied_ms".into(), s.last_now_ms.to_string()),
                ("state_digest".into(), format!("{:016x}", digest.1)),
                ("state_digest_index".into(), digest.0.to_string()),
                ("bad_messages".into(), s.bad_messages.to_string()),
            ],
        }
    }
}
