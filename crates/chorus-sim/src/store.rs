//! The replicated store in the simulation: every node runs a [`chorus_smr::Replica`] of the real
//! [`chorus_kv::KvMachine`], driven by its core's events, and simulated clients send it Redis
//! commands. Each operation is recorded (invocation, completion, outcome) and the history is
//! judged at the end of the run with `chorus-lin`.
//!
//! The workload, per seed ([`StoreOpts`]): a few clients, each with one operation in flight,
//! at a node chosen at random among those running, on three kinds of keys:
//!
//! - registers `r0`, `r1`: `SET k v` and `GET k`, judged by the register model;
//! - `e0`: `SET k v PX n` (and plain `SET`) and `GET`. Expiry is judged by each replica's clock
//!   (the command's time, a barrier's time), and the simulated clocks are skewed, so *when* a
//!   key expires is not a point of real time the checker could place. What is well defined: the
//!   key may vanish at any time after a `SET ... PX` was invoked, or never (a later `SET` may
//!   override it). So each `SET ... PX` is followed in the history by a write of a sentinel for
//!   "absent" whose outcome is unknown (it may take effect at any point after the `SET` began, or
//!   never), the key starts as that sentinel, and a GET of nil reads the sentinel. Values are
//!   still judged: a GET returns a value written and not yet overwritten, never one overwritten
//!   before, and a value once seen expired is never seen again;
//! - lists `l0`..`l2`: `RPUSH k v`, `MULTI`/`EXEC` of 2-4 RPUSHes on any of them, and
//!   `LRANGE k 0 -1`, judged by the list model, the lost-append check, the positions RPUSH
//!   replied, and the atomicity of transactions (all of a transaction's elements or none, each
//!   key's run of them contiguous, in every read and in the final lists).
//!
//! Reads are linearizable or local at random. Linearizable ones go into the history; local ones
//! ("this replica's state now, possibly stale") are judged as what they promise: a local LRANGE
//! never shows less than an earlier one at the same replica, and (without disks, where nothing
//! a replica applied can be lost) is a prefix of the final list; a local GET returns nil or a
//! value written to that key.
//!
//! Outcomes: a reply is `ok`; a refusal (no quorum, not ready, ...) is `fail` (nothing was
//! done, as the replica promises, and the history holds it to that); `UNCERTAIN`, a crash or a
//! graceful leave of the node with the operation in flight, and a client's timeout are `info`
//! (unknown). At the end, once every node is back in one view and quiet, every replica must
//! hold the same state, and reads of that state are the history's final reads.
//!
//! Besides, at every view boundary the replicas that start the view with the state must agree
//! (position and digest), and a member that loads the state must load that one.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use bytes::Bytes;
use chorus_core::MemberId;
use chorus_kv::command::{classify, Classified, Cmd, WriteCmd};
use chorus_kv::{encode_write, Query, Reply};
use chorus_lin::{check_history, lost_appends, Budget, CheckOptions, History, Op, Operation, Verdict};
use chorus_smr::storage::WalOptions;
use chorus_smr::{Consistency, DurableOptions, Fsync, ReplicaError};
use rand::Rng;

use crate::options::{StoreOpts, SEC};
use crate::rng::{self, SimRng, Stream};

/// Deliberate bugs of the replication layer. `chorus-smr` has no switch for them, so the
/// harness plays them where it meets the replica; each is one the SMR layer's own test
/// (`crates/chorus-smr/tests/sim.rs`) was shown to catch.
#[cfg(feature = "mutants")]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StoreMutant {
    /// Linearizable reads are answered at once from the replica's state, without the barrier.
    ReadsWithoutBarrier,
    /// Commands travel in FIFO order instead of safe order (the replica is told they are safe):
    /// every replica applies its own interleaving of the senders' commands.
    WritesInFifo,
}

#[cfg(feature = "mutants")]
impl StoreMutant {
    /// Every store mutant.
    pub const ALL: [StoreMutant; 2] = [StoreMutant::ReadsWithoutBarrier, StoreMutant::WritesInFifo];
}

/// Register keys (no expiry).
const REGISTERS: [&str; 2] = ["r0", "r1"];
/// The key written with expiries.
const EXPIRING: &str = "e0";
/// List keys.
const LISTS: [&str; 3] = ["l0", "l1", "l2"];
/// What the history calls the expiring key when it is absent.
const ABSENT: &str = "(absent)";
/// Every key, for the final reads.
pub const KEYS: [&str; 6] = ["r0", "r1", "e0", "l0", "l1", "l2"];

/// The replicas' durable options with disks on: `appendfsync always` (no acknowledged write is
/// lost by any crash, which the history then checks), small log segments and frequent
/// snapshots (so that restarts replay snapshots and truncated logs).
pub fn durable_options() -> DurableOptions {
    DurableOptions {
        fsync: Fsync::Always,
        snapshot_log_bytes: 16 << 10,
        wal: WalOptions { segment_bytes: 4 << 10, ..WalOptions::default() },
    }
}

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// `SET key value [PX ms]`.
    Set {
        /// The key.
        key: &'static str,
        /// The value (unique in the run).
        value: String,
        /// The expiry.
        px: Option<u64>,
    },
    /// `GET key`.
    Get {
        /// The key.
        key: &'static str,
        /// Linearizable (else local).
        linear: bool,
    },
    /// `RPUSH key value`.
    Push {
        /// The key.
        key: &'static str,
        /// The value (unique in the run).
        value: String,
    },
    /// `MULTI`, `RPUSH key value` for each, `EXEC`.
    Exec {
        /// The pushes.
        pushes: Vec<(&'static str, String)>,
    },
    /// `LRANGE key 0 -1`.
    Range {
        /// The key.
        key: &'static str,
        /// Linearizable (else local).
        linear: bool,
    },
}

/// What a client sends the replica.
#[derive(Debug)]
pub enum Request {
    /// A command (`Replica::submit`).
    Write(Bytes),
    /// A read (`Replica::read`).
    Read(Query, Consistency),
}

fn args(parts: &[&str]) -> Vec<Bytes> {
    parts.iter().map(|p| Bytes::copy_from_slice(p.as_bytes())).collect()
}

fn write_cmd(parts: &[&str]) -> Result<Cmd, String> {
    match classify(&args(parts)) {
        Classified::Write(cmd) => Ok(cmd),
        other => Err(format!("{parts:?} is not a write: {other:?}")),
    }
}

fn read_query(parts: &[&str]) -> Result<Query, String> {
    Query::from_args(&args(parts)).map_err(|r| format!("{parts:?} is not a read: {r:?}"))
}

fn consistency(linear: bool) -> Consistency {
    if linear {
        Consistency::Linearizable
    } else {
        Consistency::Local
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl OpKind {
    /// The request, as `chorus-kv`'s server would build it.
    pub fn request(&self) -> Result<Request, String> {
        let one = |parts: &[&str]| write_cmd(parts).map(|c| Request::Write(encode_write(&WriteCmd::One(c))));
        match self {
            OpKind::Set { key, value, px: None } => one(&["set", key, value]),
            OpKind::Set { key, value, px: Some(ms) } => one(&["set", key, value, "px", &ms.to_string()]),
            OpKind::Push { key, value } => one(&["rpush", key, value]),
            OpKind::Exec { pushes } => {
                let cmds =
                    pushes.iter().map(|(k, v)| write_cmd(&["rpush", k, v])).collect::<Result<_, _>>()?;
                Ok(Request::Write(encode_write(&WriteCmd::Exec { watched: Vec::new(), cmds })))
            }
            OpKind::Get { key, linear } => {
                Ok(Request::Read(read_query(&["get", key])?, consistency(*linear)))
            }
            OpKind::Range { key, linear } => {
                Ok(Request::Read(read_query(&["lrange", key, "0", "-1"])?, consistency(*linear)))
            }
        }
    }

    /// The result a reply carries; `None` for a reply this command cannot give.
    fn result(&self, reply: &Reply) -> Option<Res> {
        match (self, reply) {
            (OpKind::Set { .. }, Reply::Simple(s)) if s == "OK" => Some(Res::Done),
            (OpKind::Get { .. }, Reply::Bulk(b)) => Some(Res::Value(Some(text(b)))),
            (OpKind::Get { .. }, Reply::Null) => Some(Res::Value(None)),
            (OpKind::Push { .. }, Reply::Int(n)) => Some(Res::Len(*n)),
            (OpKind::Exec { pushes }, Reply::Array(items)) if items.len() == pushes.len() => items
                .iter()
                .map(|r| match r {
                    Reply::Int(n) => Some(*n),
                    _ => None,
                })
                .collect::<Option<Vec<i64>>>()
                .map(Res::Lens),
            (OpKind::Range { .. }, Reply::Array(items)) => items
                .iter()
                .map(|r| match r {
                    Reply::Bulk(b) => Some(text(b)),
                    _ => None,
                })
                .collect::<Option<Vec<String>>>()
                .map(Res::List),
            _ => None,
        }
    }
}

impl OpKind {
    fn is_write(&self) -> bool {
        matches!(self, OpKind::Set { .. } | OpKind::Push { .. } | OpKind::Exec { .. })
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = |linear: bool| if linear { "" } else { " (local)" };
        match self {
            OpKind::Set { key, value, px: None } => write!(f, "SET {key} {value}"),
            OpKind::Set { key, value, px: Some(ms) } => write!(f, "SET {key} {value} PX {ms}"),
            OpKind::Get { key, linear } => write!(f, "GET {key}{}", how(*linear)),
            OpKind::Push { key, value } => write!(f, "RPUSH {key} {value}"),
            OpKind::Exec { pushes } => {
                let p: Vec<String> = pushes.iter().map(|(k, v)| format!("RPUSH {k} {v}")).collect();
                write!(f, "MULTI {} EXEC", p.join("; "))
            }
            OpKind::Range { key, linear } => write!(f, "LRANGE {key} 0 -1{}", how(*linear)),
        }
    }
}

/// What an operation returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Res {
    /// `+OK`.
    Done,
    /// A GET: the value, or nil.
    Value(Option<String>),
    /// An RPUSH: the list's length after it.
    Len(i64),
    /// An EXEC of RPUSHes: each one's length.
    Lens(Vec<i64>),
    /// An LRANGE: the list.
    List(Vec<String>),
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still in flight.
    Pending,
    /// It happened, with this result.
    Ok(Res),
    /// It certainly did not happen (the replica's reason).
    Fail(String),
    /// Unknown: it may happen at any time after its invocation, or never.
    Info(String),
}

/// One client operation.
#[derive(Clone, Debug)]
pub struct StoreOp {
    /// The client.
    pub client: usize,
    /// The client's process number in the history (a new one after each unknown outcome).
    pub process: u64,
    /// The node it was sent to.
    pub node: u64,
    /// The member that node was when it took the request.
    pub member: MemberId,
    /// What it asked.
    pub kind: OpKind,
    /// Its invocation and completion in the history's real-time order.
    pub call: u64,
    /// (0 while pending or unknown.)
    pub ret: u64,
    /// Simulated times, for reports.
    pub start: u64,
    /// (Completion time.)
    pub end: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// A write's request as sent, for the client's one retry (see [`Retry`]).
    pub retry: Option<Retry>,
}

/// A write's request, kept so that a client that times out can send it again to the same
/// node, as `chorus-kv`'s clients may (the server's session and request number make the
/// replica apply it once: its session remembers the reply).
#[derive(Clone, Debug)]
pub struct Retry {
    /// The node's life it was sent to (a retry goes to that life only: sessions are per
    /// connection, and a restarted node is a new server).
    pub life: u64,
    /// The client's session at that node.
    pub session: u64,
    /// The request's number in the session.
    pub seq: u64,
    /// The command.
    pub cmd: Bytes,
    /// It was sent again already.
    pub sent_again: bool,
}

impl fmt::Display for StoreOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |ns: u64| format!("{:.3}s", ns as f64 / SEC as f64);
        write!(f, "client {} at n{} ({}): {} ", self.client, self.node, self.member, self.kind)?;
        match &self.outcome {
            Outcome::Pending => write!(f, "pending since {}", s(self.start)),
            Outcome::Ok(r) => write!(f, "-> {r:?} ({}..{})", s(self.start), s(self.end)),
            Outcome::Fail(why) => write!(f, "failed: {why} ({}..{})", s(self.start), s(self.end)),
            Outcome::Info(why) => write!(f, "unknown: {why} ({}..{})", s(self.start), s(self.end)),
        }
    }
}

/// Counts, for reports and coverage marks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Operations invoked.
    pub ops: u64,
    /// Of which acknowledged.
    pub ok: u64,
    /// Of which refused.
    pub failed: u64,
    /// Refusals by reason (the replica's error, up to its colon).
    pub refusals: BTreeMap<String, u64>,
    /// Of which unknown.
    pub unknown: u64,
    /// UNCERTAIN answers of the replica (to clients still waiting or not).
    pub uncertain: u64,
    /// Unknown because the node crashed or left with it in flight.
    pub cut_off: u64,
    /// Unknown because the client gave up waiting.
    pub timed_out: u64,
    /// Writes sent again after a timeout (the same session and request number).
    pub retries: u64,
    /// Transactions acknowledged.
    pub transactions: u64,
    /// Linearizable GETs that found the expiring key gone after a `SET ... PX` was acknowledged.
    pub expired_seen: u64,
    /// Replicas restarted from their disks with their stored state offered.
    pub recovered: u64,
    /// Replicas that loaded the store's state from another member.
    pub loaded: u64,
    /// Writes acknowledged before a crash of every node, found in the final state.
    pub acked_before_group_crash: u64,
}

#[derive(Clone, Debug, Default)]
struct Client {
    busy: Option<usize>,
    process: u64,
}

/// A replica's state at a view boundary: position, digest, and who reported it.
#[derive(Clone, Debug)]
struct Boundary {
    pos: u64,
    digest: u64,
    who: String,
}

/// The store's side of one run: the clients, the history, the checks.
#[derive(Debug)]
pub struct Store {
    /// The options.
    pub opts: StoreOpts,
    rng: SimRng,
    /// The history's clock: every invocation and completion takes the next tick.
    seq: u64,
    next_value: u64,
    clients: Vec<Client>,
    /// Every operation, in invocation order.
    pub ops: Vec<StoreOp>,
    boundaries: HashMap<u64, Boundary>,
    /// The last local LRANGE of each key at each member.
    local_lists: HashMap<(MemberId, &'static str), Vec<String>>,
    /// When the latest acknowledged `SET ... PX` of the expiring key completed.
    px_acked: Option<u64>,
    /// Writes acknowledged before the last crash of every node.
    acked_before_group_crash: u64,
    /// The history as judged, final reads included.
    judged: Option<History>,
    /// Disks on (local reads may then see what a crash of every member loses).
    durable: bool,
    /// Counts.
    pub stats: StoreStats,
    /// The deliberate bug in play.
    #[cfg(feature = "mutants")]
    pub mutant: Option<StoreMutant>,
}

impl Store {
    /// The store of a run of `seed` with these options.
    pub fn new(opts: StoreOpts, seed: u64, durable: bool) -> Store {
        let rng = rng::stream(rng::mix(seed ^ 0x57_0e), Stream::Store);
        let clients = (0..opts.clients).map(|c| Client { busy: None, process: c as u64 }).collect();
        Store {
            opts,
            rng,
            seq: 10,
            next_value: 0,
            clients,
            ops: Vec::new(),
            boundaries: HashMap::new(),
            local_lists: HashMap::new(),
            px_acked: None,
            acked_before_group_crash: 0,
            judged: None,
            durable,
            stats: StoreStats::default(),
            #[cfg(feature = "mutants")]
            mutant: None,
        }
    }

    fn tick(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// How long a client waits before its next operation.
    pub fn think(&mut self) -> u64 {
        rng::exp_nanos(&mut self.rng, self.opts.think as f64)
    }

    /// A uniform index below `n` (> 0).
    pub fn pick(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n.max(1))
    }

    /// Whether to hand a request to the replica's batch and leave it there until the node runs
    /// next (so that batches of several commands travel too).
    pub fn defer(&mut self) -> bool {
        self.rng.random_bool(0.5)
    }

    /// The number of clients.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Whether `client` has an operation in flight.
    pub fn busy(&self, client: usize) -> bool {
        self.clients.get(client).is_some_and(|c| c.busy.is_some())
    }

    fn value(&mut self) -> String {
        self.next_value += 1;
        format!("v{}", self.next_value)
    }

    /// The next operation of a client.
    pub fn draw(&mut self) -> OpKind {
        let linear = self.rng.random_bool(0.7);
        let x: f64 = self.rng.random();
        if x < 0.25 {
            let key = REGISTERS[self.pick(REGISTERS.len())];
            if self.rng.random_bool(0.5) {
                OpKind::Set { key, value: self.value(), px: None }
            } else {
                OpKind::Get { key, linear }
            }
        } else if x < 0.4 {
            if self.rng.random_bool(0.55) {
                let px = self
                    .rng
                    .random_bool(0.8)
                    .then(|| rng::between(&mut self.rng, 1, self.opts.expiry_max_ms));
                OpKind::Set { key: EXPIRING, value: self.value(), px }
            } else {
                OpKind::Get { key: EXPIRING, linear }
            }
        } else {
            let key = LISTS[self.pick(LISTS.len())];
            let y: f64 = self.rng.random();
            if y < 0.4 {
                OpKind::Push { key, value: self.value() }
            } else if y < 0.52 {
                let n = self.rng.random_range(2..=4usize);
                let pushes = (0..n)
                    .map(|_| {
                        let k = LISTS[self.pick(LISTS.len())];
                        (k, self.value())
                    })
                    .collect();
                OpKind::Exec { pushes }
            } else {
                OpKind::Range { key, linear }
            }
        }
    }

    /// `client` sends `kind` to `node` (member `member`) at `now`; returns the operation's index.
    pub fn invoke(
        &mut self,
        client: usize,
        node: u64,
        member: MemberId,
        kind: OpKind,
        now: u64,
        retry: Option<Retry>,
    ) -> usize {
        let call = self.tick();
        let i = self.ops.len();
        let process = self.clients.get(client).map_or(0, |c| c.process);
        if let Some(c) = self.clients.get_mut(client) {
            c.busy = Some(i);
        }
        self.stats.ops += 1;
        self.ops.push(StoreOp {
            client,
            process,
            node,
            member,
            kind,
            call,
            ret: 0,
            start: now,
            end: 0,
            outcome: Outcome::Pending,
            retry,
        });
        i
    }

    /// Whether a client that timed out on `op` sends it again (once): a write, half the time.
    pub fn retry(&mut self, op: usize) -> Option<Retry> {
        let again = self.rng.random_bool(0.5);
        let o = self.ops.get_mut(op).filter(|o| o.outcome == Outcome::Pending)?;
        let r = o.retry.as_mut().filter(|r| !r.sent_again && again)?;
        r.sent_again = true;
        self.stats.retries += 1;
        Some(r.clone())
    }

    /// Operation `op` got its answer at `now`. Returns the client now free (if the operation was
    /// still waiting for it), or an error for a reply the command cannot give or a local read
    /// that broke its promise.
    pub fn complete(
        &mut self,
        op: usize,
        result: Result<Reply, ReplicaError>,
        now: u64,
    ) -> Result<Option<usize>, String> {
        if self.ops.get(op).is_none_or(|o| o.outcome != Outcome::Pending) {
            // Its client gave up already; the replica's answer still counts as coverage.
            if result == Err(ReplicaError::Uncertain) {
                self.stats.uncertain += 1;
            }
            return Ok(None);
        }
        let ret = self.tick();
        let Some(o) = self.ops.get_mut(op) else { return Ok(None) };
        o.end = now;
        match result {
            Ok(reply) => match o.kind.result(&reply) {
                Some(res) => {
                    o.ret = ret;
                    o.outcome = Outcome::Ok(res);
                    self.stats.ok += 1;
                }
                None => return Err(format!("{o}: a reply this command cannot give: {reply:?}")),
            },
            Err(ReplicaError::Uncertain) => {
                o.outcome = Outcome::Info("uncertain".into());
                self.stats.uncertain += 1;
            }
            // Reported for commands in flight when the disk failed: they may have been applied.
            Err(e @ ReplicaError::Storage(_)) => o.outcome = Outcome::Info(e.to_string()),
            // One of its two requests was refused; the other may still be applied.
            Err(e) if o.retry.as_ref().is_some_and(|r| r.sent_again) => {
                o.outcome = Outcome::Info(format!("{e} (one of two requests)"));
            }
            Err(e) => o.outcome = Outcome::Fail(e.to_string()),
        }
        self.after(op)
    }

    /// Operation `op` will never get its answer (`why`: the node crashed or left, or the client
    /// stopped waiting). Returns the client now free, if it was waiting.
    pub fn unknown(&mut self, op: usize, why: &str, now: u64) -> Option<usize> {
        let o = self.ops.get_mut(op).filter(|o| o.outcome == Outcome::Pending)?;
        o.end = now;
        o.outcome = Outcome::Info(why.to_string());
        if why == "timeout" {
            self.stats.timed_out += 1;
        } else {
            self.stats.cut_off += 1;
        }
        self.after(op).ok().flatten()
    }

    /// Bookkeeping once `op` ended: counts, checks of local reads, the client freed.
    fn after(&mut self, op: usize) -> Result<Option<usize>, String> {
        let Some(o) = self.ops.get(op) else { return Ok(None) };
        let client = o.client;
        match &o.outcome {
            Outcome::Info(_) => {
                self.stats.unknown += 1;
                // A client whose operation's outcome is unknown goes on as a new process
                // (Jepsen's rule: a process has one operation in flight).
                let n = self.clients.len() as u64;
                if let Some(c) = self.clients.get_mut(client) {
                    c.process += n;
                }
            }
            Outcome::Fail(why) => {
                self.stats.failed += 1;
                let reason = why.split(':').next().unwrap_or_default().to_string();
                *self.stats.refusals.entry(reason).or_default() += 1;
            }
            Outcome::Ok(res) => {
                let (kind, member, call, ret) = (o.kind.clone(), o.member, o.call, o.ret);
                match (&kind, res) {
                    (OpKind::Exec { .. }, _) => self.stats.transactions += 1,
                    (OpKind::Set { key: EXPIRING, px: Some(_), .. }, _) => self.px_acked = Some(ret),
                    (OpKind::Get { key: EXPIRING, linear: true }, Res::Value(None))
                        if self.px_acked.is_some_and(|t| t < call) =>
                    {
                        self.stats.expired_seen += 1;
                    }
                    (OpKind::Range { key, linear: false }, Res::List(l)) => {
                        let before = self.local_lists.insert((member, *key), l.clone());
                        if let Some(b) = before.filter(|b| !l.starts_with(b)) {
                            return Err(format!(
                                "a local read went back in time at {member}: {} then {}",
                                show_list(&b),
                                self.ops.get(op).map(ToString::to_string).unwrap_or_default()
                            ));
                        }
                    }
                    _ => {}
                }
            }
            Outcome::Pending => return Ok(None),
        }
        if let Some(c) = self.clients.get_mut(client) {
            c.busy = None;
        }
        Ok(Some(client))
    }

    /// Every node crashed at once (disks on): the writes acknowledged so far must all survive.
    pub fn group_crashed(&mut self) {
        let acked =
            self.ops.iter().filter(|o| o.kind.is_write() && matches!(o.outcome, Outcome::Ok(_))).count();
        self.acked_before_group_crash = acked as u64;
    }

    /// A replica starts `view` with the state (not loading it): position `pos`, digest `digest`.
    /// Every replica that does so must report the same.
    pub fn boundary(&mut self, view: u64, pos: u64, digest: u64, who: String) -> Result<(), String> {
        self.compare(view, Boundary { pos, digest, who }, "starts")
    }

    /// A replica loaded the state of `view`: it must be the one the others started it with.
    pub fn loaded(&mut self, view: u64, pos: u64, digest: u64, who: String) -> Result<(), String> {
        self.stats.loaded += 1;
        self.compare(view, Boundary { pos, digest, who }, "loaded the state of")
    }

    fn compare(&mut self, view: u64, b: Boundary, what: &str) -> Result<(), String> {
        match self.boundaries.get(&view) {
            Some(first) if (first.pos, first.digest) != (b.pos, b.digest) => Err(format!(
                "replicas disagree: {} {what} view {view} at position {} (digest {:#x}), but {} started it at position {} (digest {:#x})",
                b.who, b.pos, b.digest, first.who, first.pos, first.digest
            )),
            Some(_) => Ok(()),
            None => {
                self.boundaries.insert(view, b);
                Ok(())
            }
        }
    }

    /// Judges the whole history, given what every key holds at the end (read from a replica
    /// once every node is back in one view and quiet). Operations still in flight are unknown.
    pub fn judge(&mut self, finals: &[(&'static str, Reply)], now: u64) -> Result<(), String> {
        for op in 0..self.ops.len() {
            if self.ops.get(op).is_some_and(|o| o.outcome == Outcome::Pending) {
                if let Some(o) = self.ops.get_mut(op) {
                    o.end = now;
                    o.outcome = Outcome::Info("still in flight at the end".into());
                }
                self.stats.unknown += 1;
            }
        }
        let mut lists: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut final_ops = Vec::new();
        for (key, reply) in finals {
            let kind = if LISTS.contains(key) {
                OpKind::Range { key, linear: true }
            } else {
                OpKind::Get { key, linear: true }
            };
            let res = kind.result(reply).ok_or_else(|| format!("final read of {key}: {reply:?}"))?;
            if let Res::List(l) = &res {
                lists.insert(key, l.clone());
            }
            final_ops.push((kind, res));
        }
        let history = self.history(&final_ops);
        self.judged = Some(history.clone());
        let report = check_history(&history, &check_options()).map_err(|e| format!("chorus-lin: {e}"))?;
        if report.verdict() != Verdict::Linearizable {
            let bad: Vec<String> = report
                .keys
                .iter()
                .filter(|k| k.verdict != Verdict::Linearizable)
                .map(|k| k.to_string())
                .collect();
            return Err(format!("the history is {}:\n{}", report.verdict(), bad.join("\n")));
        }
        let lost = lost_appends(&history);
        if !lost.is_ok() {
            let l: Vec<String> = lost.lost.iter().map(|l| l.to_string()).collect();
            return Err(format!("acknowledged writes lost: {}", l.join("; ")));
        }
        self.positions(&lists)?;
        self.transactions(&lists)?;
        self.local_reads(&lists)?;
        self.stats.acked_before_group_crash = self.acked_before_group_crash;
        Ok(())
    }

    /// The history for `chorus-lin`: writes that happened or may have, linearizable reads that
    /// returned, and the final reads after everything.
    fn history(&mut self, finals: &[(OpKind, Res)]) -> History {
        let mut ops = Vec::new();
        let absent = |v: &Option<String>, key: &str| match v {
            None if key == EXPIRING => Some(ABSENT.to_string()),
            v => v.clone(),
        };
        // The expiring key starts absent.
        ops.push(operation(u64::MAX, EXPIRING, Op::Write { value: ABSENT.into() }, 1, Some(2)));
        for o in &self.ops {
            let happened = match &o.outcome {
                Outcome::Ok(_) => Some(Some(o.ret)),
                Outcome::Info(_) | Outcome::Pending => Some(None),
                Outcome::Fail(_) => None,
            };
            let Some(ret) = happened else { continue };
            match (&o.kind, &o.outcome) {
                (OpKind::Set { key, value, px }, _) => {
                    ops.push(operation(o.process, key, Op::Write { value: value.clone() }, o.call, ret));
                    if px.is_some() {
                        // It may expire at any time after, or never (see the module docs).
                        ops.push(operation(
                            u64::MAX - 1,
                            key,
                            Op::Write { value: ABSENT.into() },
                            o.call,
                            None,
                        ));
                    }
                }
                (OpKind::Push { key, value }, _) => {
                    ops.push(operation(o.process, key, Op::Append { value: value.clone() }, o.call, ret));
                }
                (OpKind::Exec { pushes }, _) => {
                    for (key, value) in pushes {
                        ops.push(operation(o.process, key, Op::Append { value: value.clone() }, o.call, ret));
                    }
                }
                (OpKind::Get { key, linear: true }, Outcome::Ok(Res::Value(v))) => {
                    let op = Op::Read { result: Some(absent(v, key)) };
                    ops.push(operation(o.process, key, op, o.call, ret));
                }
                (OpKind::Range { key, linear: true }, Outcome::Ok(Res::List(l))) => {
                    ops.push(operation(
                        o.process,
                        key,
                        Op::ReadList { result: Some(l.clone()) },
                        o.call,
                        ret,
                    ));
                }
                _ => {}
            }
        }
        let process = self.clients.len() as u64 * 1_000_000;
        for (i, (kind, res)) in finals.iter().enumerate() {
            let (call, ret) = (self.tick(), self.tick());
            let p = process + i as u64;
            match (kind, res) {
                (OpKind::Get { key, .. }, Res::Value(v)) => {
                    ops.push(operation(p, key, Op::Read { result: Some(absent(v, key)) }, call, Some(ret)));
                }
                (OpKind::Range { key, .. }, Res::List(l)) => {
                    ops.push(operation(p, key, Op::ReadList { result: Some(l.clone()) }, call, Some(ret)));
                }
                _ => {}
            }
        }
        ops.sort_by_key(|o| o.call);
        History { ops }
    }

    /// Every acknowledged RPUSH sits in the final list where its reply (the length) said.
    fn positions(&self, lists: &BTreeMap<&str, Vec<String>>) -> Result<(), String> {
        for o in &self.ops {
            let pushes: Vec<(&str, &String, i64)> = match (&o.kind, &o.outcome) {
                (OpKind::Push { key, value }, Outcome::Ok(Res::Len(n))) => vec![(*key, value, *n)],
                (OpKind::Exec { pushes }, Outcome::Ok(Res::Lens(ns))) => {
                    pushes.iter().zip(ns).map(|((k, v), n)| (*k, v, *n)).collect()
                }
                _ => continue,
            };
            for (key, value, n) in pushes {
                let at = usize::try_from(n - 1).ok().and_then(|i| lists.get(key).and_then(|l| l.get(i)));
                if at != Some(value) {
                    return Err(format!(
                        "{o}: {value} should be element {n} of the final {key}, which holds {}",
                        at.map_or("nothing there".to_string(), |v| format!("{v} there"))
                    ));
                }
            }
        }
        Ok(())
    }

    /// A transaction's elements are all there or none (none only if its outcome is unknown), and
    /// each key's run of them is contiguous and in order, in the final lists and in every read.
    fn transactions(&self, lists: &BTreeMap<&str, Vec<String>>) -> Result<(), String> {
        let txs: Vec<&StoreOp> = self
            .ops
            .iter()
            .filter(|o| {
                matches!(o.kind, OpKind::Exec { .. })
                    && matches!(o.outcome, Outcome::Ok(_) | Outcome::Info(_))
            })
            .collect();
        if txs.is_empty() {
            return Ok(());
        }
        let finals: Vec<(&str, &Vec<String>)> = lists.iter().map(|(k, l)| (*k, l)).collect();
        for tx in &txs {
            let OpKind::Exec { pushes } = &tx.kind else { continue };
            let present = pushes.iter().filter(|(k, v)| lists.get(k).is_some_and(|l| l.contains(v))).count();
            let ok = matches!(tx.outcome, Outcome::Ok(_));
            if (ok && present < pushes.len()) || (present > 0 && present < pushes.len()) {
                return Err(format!(
                    "{tx}: {present} of its {} elements are in the final lists",
                    pushes.len()
                ));
            }
        }
        let reads = self.ops.iter().filter_map(|o| match (&o.kind, &o.outcome) {
            (OpKind::Range { key, .. }, Outcome::Ok(Res::List(l))) => Some((*key, l, Some(o))),
            _ => None,
        });
        for (key, list, read) in finals.into_iter().map(|(k, l)| (k, l, None)).chain(reads) {
            let index: HashMap<&str, usize> = list.iter().enumerate().map(|(i, v)| (v.as_str(), i)).collect();
            for tx in &txs {
                let OpKind::Exec { pushes } = &tx.kind else { continue };
                let mine: Vec<&str> =
                    pushes.iter().filter(|(k, _)| *k == key).map(|(_, v)| v.as_str()).collect();
                let at: Vec<Option<usize>> = mine.iter().map(|v| index.get(v).copied()).collect();
                let seen = at.iter().flatten().count();
                if seen == 0 {
                    continue;
                }
                let first = at.first().copied().flatten();
                let contiguous =
                    seen == mine.len() && at.iter().enumerate().all(|(j, p)| *p == first.map(|f| f + j));
                if !contiguous {
                    let which = read.map_or(format!("the final {key}"), |r| r.to_string());
                    return Err(format!(
                        "{tx}: its elements of {key} are not one contiguous run in order in {which}: positions {at:?}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Local reads, judged as what they promise: a GET returns nil or a value written to the key
    /// (by a SET begun before the read ended); without disks, an LRANGE is a prefix of the final
    /// list (nothing a replica applied is lost then). That they never go back in time at one
    /// replica is checked as they complete.
    fn local_reads(&self, lists: &BTreeMap<&str, Vec<String>>) -> Result<(), String> {
        let mut written: HashMap<&str, HashMap<&str, u64>> = HashMap::new();
        for o in &self.ops {
            if let (OpKind::Set { key, value, .. }, Outcome::Ok(_) | Outcome::Info(_)) = (&o.kind, &o.outcome)
            {
                written.entry(key).or_default().insert(value.as_str(), o.call);
            }
        }
        for o in &self.ops {
            match (&o.kind, &o.outcome) {
                (OpKind::Get { key, linear: false }, Outcome::Ok(Res::Value(Some(v)))) => {
                    let set = written.get(key).and_then(|w| w.get(v.as_str()));
                    if set.is_none_or(|call| *call > o.ret) {
                        return Err(format!("{o}: no SET of {v} on {key} began before it ended"));
                    }
                }
                (OpKind::Range { key, linear: false }, Outcome::Ok(Res::List(l))) if !self.durable => {
                    let fin = lists.get(key).map(Vec::as_slice).unwrap_or_default();
                    if !fin.starts_with(l) {
                        return Err(format!("{o}: not a prefix of the final {key}, {}", show_list(fin)));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The history judged (or, before the judgement, the one so far, without final reads), as
    /// `chorus-lin`'s JSON lines events in real-time order, for `chorus-lin check`: local reads
    /// are left out, and every operation is its own process (a transaction's appends and the
    /// expiring key's possible expiries overlap their client's operation).
    pub fn jsonl(&mut self) -> Vec<chorus_lin::jsonl::Event> {
        use chorus_lin::jsonl::{Event, Value};
        use chorus_lin::{EventType, Function};
        let history = match &self.judged {
            Some(h) => h.clone(),
            None => self.history(&[]),
        };
        let mut timed: Vec<((u64, u8), Event)> = Vec::new();
        for (i, o) in history.ops.iter().enumerate() {
            let (f, arg, result) = match &o.op {
                Op::Write { value } => (Function::Write, Some(Value::Str(value.clone())), None),
                Op::Append { value } => (Function::Append, Some(Value::Str(value.clone())), None),
                Op::Read { result } => (Function::Read, None, result.clone().flatten().map(Value::Str)),
                Op::ReadList { result } => (Function::ReadList, None, result.clone().map(Value::List)),
                Op::Cas { .. } => continue,
            };
            let ev = |kind, value| Event {
                process: i as u64,
                kind,
                f,
                key: Some(o.key.clone()),
                value,
                time_ns: None,
            };
            timed.push(((o.call, 0), ev(EventType::Invoke, arg)));
            match o.ret {
                Some(ret) => timed.push(((ret, 0), ev(EventType::Ok, result))),
                None => timed.push(((o.call, 1), ev(EventType::Info, None))),
            }
        }
        timed.sort_by_key(|(t, _)| *t);
        timed.into_iter().map(|(_, e)| e).collect()
    }
}

fn operation(process: u64, key: &str, op: Op, call: u64, ret: Option<u64>) -> Operation {
    Operation { process, key: key.to_string(), op, call, ret }
}

/// The search's limits: deterministic (no wall clock), far above what these histories need.
fn check_options() -> CheckOptions {
    CheckOptions {
        budget: Budget { max_steps: 20_000_000, max_memory_bytes: 256 << 20, max_time: None },
        ..CheckOptions::default()
    }
}

fn show_list(l: &[String]) -> String {
    let tail: Vec<&str> = l.iter().skip(l.len().saturating_sub(4)).map(String::as_str).collect();
    format!("{} elements, ending {tail:?}", l.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_kv::KvMachine;
    use chorus_smr::{Ctx, StateMachine};

    fn run(m: &mut KvMachine, kind: &OpKind, index: u64) -> Reply {
        match kind.request() {
            Ok(Request::Write(cmd)) => m.apply(&cmd, &Ctx { index, now_ms: 1000 }),
            Ok(Request::Read(q, _)) => m.query(&q, 1000),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn requests_give_the_replies_the_history_expects() {
        let mut m = KvMachine::new();
        let cases = [
            (OpKind::Set { key: "r0", value: "v1".into(), px: None }, Res::Done),
            (OpKind::Get { key: "r0", linear: true }, Res::Value(Some("v1".into()))),
            (OpKind::Get { key: "r1", linear: false }, Res::Value(None)),
            (OpKind::Push { key: "l0", value: "v2".into() }, Res::Len(1)),
            (
                OpKind::Exec { pushes: vec![("l0", "v3".into()), ("l1", "v4".into()), ("l0", "v5".into())] },
                Res::Lens(vec![2, 1, 3]),
            ),
            (
                OpKind::Range { key: "l0", linear: true },
                Res::List(vec!["v2".into(), "v3".into(), "v5".into()]),
            ),
            (OpKind::Set { key: "e0", value: "v6".into(), px: Some(5) }, Res::Done),
        ];
        for (i, (kind, want)) in cases.iter().enumerate() {
            let reply = run(&mut m, kind, i as u64 + 1);
            assert_eq!(kind.result(&reply).as_ref(), Some(want), "{kind}: {reply:?}");
        }
        // The expiry is judged by the read's time.
        let get = OpKind::Get { key: "e0", linear: true };
        let Ok(Request::Read(q, _)) = get.request() else { panic!() };
        assert_eq!(get.result(&m.query(&q, 1004)), Some(Res::Value(Some("v6".into()))));
        assert_eq!(get.result(&m.query(&q, 1006)), Some(Res::Value(None)));
    }

    fn store() -> Store {
        let opts = StoreOpts { on: true, clients: 2, think: 1, timeout: SEC, expiry_max_ms: 10 };
        Store::new(opts, 1, false)
    }

    fn member() -> MemberId {
        MemberId::new(1, 0)
    }

    fn op(s: &mut Store, client: usize, kind: OpKind, reply: Result<Reply, ReplicaError>) {
        let i = s.invoke(client, 1, member(), kind, 0, None);
        s.complete(i, reply, 1).unwrap_or_else(|e| panic!("{e}"));
    }

    fn bulk(v: &str) -> Reply {
        Reply::bulk_str(v)
    }

    fn list(items: &[&str]) -> Reply {
        Reply::Array(items.iter().map(|v| bulk(v)).collect())
    }

    fn finals(l0: &[&str], e0: Reply) -> Vec<(&'static str, Reply)> {
        vec![("r0", Reply::Null), ("e0", e0), ("l0", list(l0)), ("l1", list(&[]))]
    }

    #[test]
    fn a_good_history_passes() {
        let mut s = store();
        op(&mut s, 0, OpKind::Push { key: "l0", value: "a".into() }, Ok(Reply::Int(1)));
        op(&mut s, 1, OpKind::Range { key: "l0", linear: true }, Ok(list(&["a"])));
        op(&mut s, 0, OpKind::Set { key: "e0", value: "x".into(), px: Some(3) }, Ok(Reply::ok()));
        op(&mut s, 1, OpKind::Get { key: "e0", linear: true }, Ok(bulk("x")));
        op(&mut s, 1, OpKind::Get { key: "e0", linear: true }, Ok(Reply::Null));
        op(
            &mut s,
            0,
            OpKind::Exec { pushes: vec![("l0", "b".into()), ("l1", "c".into())] },
            Err(ReplicaError::Uncertain),
        );
        s.judge(&finals(&["a"], Reply::Null), 9).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.stats.expired_seen, 1);
    }

    #[test]
    fn a_lost_acknowledged_append_fails() {
        let mut s = store();
        op(&mut s, 0, OpKind::Push { key: "l0", value: "a".into() }, Ok(Reply::Int(1)));
        let e = s.judge(&finals(&[], Reply::Null), 9).unwrap_err();
        assert!(e.contains("NOT linearizable") || e.contains("lost"), "{e}");
    }

    #[test]
    fn a_value_seen_expired_then_again_fails() {
        let mut s = store();
        op(&mut s, 0, OpKind::Set { key: "e0", value: "x".into(), px: Some(3) }, Ok(Reply::ok()));
        op(&mut s, 1, OpKind::Get { key: "e0", linear: true }, Ok(Reply::Null));
        op(&mut s, 1, OpKind::Get { key: "e0", linear: true }, Ok(bulk("x")));
        let e = s.judge(&finals(&[], Reply::Null), 9).unwrap_err();
        assert!(e.contains("NOT linearizable"), "{e}");
    }

    #[test]
    fn a_stale_register_read_fails() {
        let mut s = store();
        op(&mut s, 0, OpKind::Set { key: "r0", value: "x".into(), px: None }, Ok(Reply::ok()));
        op(&mut s, 0, OpKind::Set { key: "r0", value: "y".into(), px: None }, Ok(Reply::ok()));
        op(&mut s, 1, OpKind::Get { key: "r0", linear: true }, Ok(bulk("x")));
        let mut f = finals(&[], Reply::Null);
        f[0] = ("r0", bulk("y"));
        let e = s.judge(&f, 9).unwrap_err();
        assert!(e.contains("NOT linearizable"), "{e}");
    }

    #[test]
    fn a_torn_transaction_fails() {
        let mut s = store();
        let tx = OpKind::Exec { pushes: vec![("l0", "a".into()), ("l0", "b".into())] };
        op(&mut s, 0, tx, Err(ReplicaError::Uncertain));
        op(&mut s, 1, OpKind::Push { key: "l0", value: "c".into() }, Ok(Reply::Int(2)));
        let e = s.judge(&finals(&["a", "c", "b"], Reply::Null), 9).unwrap_err();
        assert!(e.contains("contiguous") || e.contains("element"), "{e}");
    }

    #[test]
    fn a_wrong_push_position_fails() {
        let mut s = store();
        op(&mut s, 0, OpKind::Push { key: "l0", value: "a".into() }, Ok(Reply::Int(2)));
        let e = s.judge(&finals(&["a"], Reply::Null), 9).unwrap_err();
        assert!(e.contains("element 2"), "{e}");
    }

    #[test]
    fn a_local_read_going_back_fails() {
        let mut s = store();
        op(&mut s, 0, OpKind::Range { key: "l0", linear: false }, Ok(list(&["a"])));
        let i = s.invoke(0, 1, member(), OpKind::Range { key: "l0", linear: false }, 0, None);
        let e = s.complete(i, Ok(list(&[])), 1).unwrap_err();
        assert!(e.contains("went back"), "{e}");
    }

    #[test]
    fn refusals_are_not_writes_and_unknowns_may_be() {
        let mut s = store();
        op(&mut s, 0, OpKind::Push { key: "l0", value: "a".into() }, Err(ReplicaError::NotReady));
        op(&mut s, 1, OpKind::Push { key: "l0", value: "b".into() }, Err(ReplicaError::Uncertain));
        // "a" was refused: finding it is a violation; "b" may or may not be there.
        assert!(s.judge(&finals(&["b"], Reply::Null), 9).is_ok());
        let mut s2 = store();
        op(&mut s2, 0, OpKind::Push { key: "l0", value: "a".into() }, Err(ReplicaError::NotReady));
        assert!(s2.judge(&finals(&["a"], Reply::Null), 9).is_err());
    }
}
