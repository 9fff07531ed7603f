//! The application `chorus node` runs: a small replicated state machine (a hash chain of every
//! total and safe message applied, as in the simulator), state transfer to joiners, optional
//! traffic in every ordering, a readable log of what happens, and the checker's trace.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use chorus_check::checkpoint::{self, Loader};
use chorus_check::trace::{chain, digest};
use chorus_check::{Ev, Proc, TraceEvent};
use chorus_core::{BlockReason, Event, MemberId, Order, ViewId};
use tokio::sync::mpsc;

use crate::config::NodeConfig;
use crate::runtime::{Member, MulticastError};

/// What the node does besides taking part in the group.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// Multicasts per second this node sends (0: none), cycling through `orders`.
    pub send_rate: f64,
    /// The orderings the multicasts cycle through (all four by default).
    pub orders: Vec<Order>,
    /// Each multicast's payload is padded to at least this many bytes.
    pub payload_bytes: usize,
    /// Bytes of filler in each checkpoint beyond the 16-byte header (to make transfers stream).
    pub checkpoint_filler: u64,
    /// Print one line per delivery (else only views, blocks and transfers).
    pub verbose: bool,
    /// Set to stop sending (the traffic ends; the member stays).
    pub quiet: Arc<AtomicBool>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            send_rate: 0.0,
            orders: Order::ALL.to_vec(),
            payload_bytes: 0,
            checkpoint_filler: 1 << 20,
            verbose: false,
            quiet: Arc::default(),
        }
    }
}

fn proc_of(m: MemberId) -> Proc {
    Proc { node: m.node.0, inc: m.inc.0 }
}

fn trace_order(o: Order) -> chorus_check::Order {
    match o {
        Order::Fifo => chorus_check::Order::Fifo,
        Order::Causal => chorus_check::Order::Causal,
        Order::Total => chorus_check::Order::Total,
        Order::Safe => chorus_check::Order::Safe,
    }
}

/// Writes trace lines (JSON), flushed after each batch of events so a killed process leaves a
/// usable trace.
struct Tracer {
    out: Option<std::io::BufWriter<std::fs::File>>,
    /// Times never go backwards within one file (a send is stamped before it was accepted).
    last_t: u64,
}

impl Tracer {
    fn open(path: Option<&PathBuf>) -> anyhow::Result<Tracer> {
        let out = match path {
            Some(p) => Some(std::io::BufWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("cannot open the trace file {}", p.display()))?,
            )),
            None => None,
        };
        Ok(Tracer { out, last_t: 0 })
    }

    /// Writes and flushes one line: a node killed at any moment leaves a trace that ends
    /// at a line boundary with everything it did before.
    fn write(&mut self, t: u64, p: Proc, ev: Ev) {
        let t = t.max(self.last_t);
        self.last_t = t;
        if let Some(out) = &mut self.out {
            let _ = chorus_check::trace::write_jsonl(out, &TraceEvent { t, p: Some(p), ev });
            let _ = out.flush();
        }
    }

    fn flush(&mut self) {
        if let Some(out) = &mut self.out {
            let _ = out.flush();
        }
    }
}

/// The state machine and its checkpoints.
#[derive(Debug, Default)]
struct State {
    /// The latest view installed, as this application saw it.
    view: u64,
    applied: u64,
    hash: u64,
    /// The checkpoint being loaded.
    loading: Option<Loader>,
    /// The current view lists this member in `loading`, and it has not loaded yet.
    awaiting_state: bool,
}

impl State {
    /// The latest view whose sends may be traced: not the one whose state is still loading
    /// here. The core takes multicasts once the state is loaded, which this application
    /// learns a moment later; the trace follows the core's order (`state_loaded`, then sends).
    fn sends_view(&self) -> u64 {
        if self.awaiting_state {
            self.view.saturating_sub(1)
        } else {
            self.view
        }
    }
}

/// Streams a checkpoint of (applied, hash) with `filler` bytes in 64 KiB pieces.
async fn stream_checkpoint(member: Member, view: ViewId, applied: u64, hash: u64, filler: u64) {
    let len = checkpoint::HEADER_LEN + filler;
    let mut at = 0u64;
    while at < len {
        let end = len.min(at + (64 << 10));
        let piece = checkpoint::piece(applied, hash, at, end);
        if member.write_checkpoint(view, Bytes::from(piece)).await.is_err() {
            return; // The view changed: the transfer is abandoned.
        }
        at = end;
    }
    let _ = member.finish_checkpoint(view).await;
}

/// Runs a member with the node application until it leaves, is shut down by `stop`, or fails.
pub async fn run_node(
    cfg: NodeConfig,
    opts: NodeOptions,
    mut stop: mpsc::Receiver<()>,
) -> anyhow::Result<()> {
    let node = cfg.node;
    let mut tracer = Tracer::open(cfg.trace.as_ref())?;
    // This application writes the trace itself, with its state's digests: not the runtime too.
    let (member, mut events) =
        Member::start(NodeConfig { trace: None, ..cfg.clone() }).await.context("cannot start the member")?;
    let mut me = proc_of(member.first_id());
    println!("n{node} started as {} on {}", member.first_id(), member.listen_addr());
    tracer.write(crate::runtime::trace_nanos(), me, Ev::Start { bootstrap: cfg.bootstrap });
    tracer.flush();
    let mut state = State::default();
    let (sent_tx, mut sent_rx) = mpsc::channel::<TraceEvent>(1024);
    let in_flight = Arc::new(AtomicBool::new(false));
    if opts.send_rate > 0.0 {
        let (m, quiet, busy) = (member.clone(), opts.quiet.clone(), in_flight.clone());
        let shape = Shape { orders: opts.orders.clone(), payload_bytes: opts.payload_bytes };
        tokio::spawn(send_loop(m, opts.send_rate, shape, quiet, busy, sent_tx.clone()));
    }
    drop(sent_tx);
    let mut stopping = false;
    let mut sends = Sends::default();
    // Sends heard back from the send loop (one per multicast the member accepted).
    let mut heard = 0u64;
    // A leave needs the others to install a view without this node; when they are stopping
    // too (every node of a cluster SIGTERMed at once), or a majority is gone, none comes.
    let give_up = tokio::time::sleep(Duration::from_secs(86_400 * 365));
    tokio::pin!(give_up);
    loop {
        tokio::select! {
            // Sends first: a send is stamped before anything it causes, and a record written
            // after a later-stamped event would be moved to that event's time (the trace is
            // monotonic), after deliveries of it elsewhere.
            biased;
            Some(s) = sent_rx.recv() => {
                heard += 1;
                sends.record(&mut tracer, me, state.sends_view(), s)
            }
            e = events.next_stamped() => {
                let Some((t, e)) = e else { break };
                // Every multicast the member accepted before this event was stamped before it:
                // trace those first, or the trace (monotonic) would move them after it, and
                // after deliveries of them elsewhere (G6 "never sent" on a real run).
                while heard < member.multicasts_accepted() {
                    match tokio::time::timeout(Duration::from_secs(2), sent_rx.recv()).await {
                        Ok(Some(s)) => {
                            heard += 1;
                            sends.record(&mut tracer, me, state.sends_view(), s);
                        }
                        _ => break,
                    }
                }
                // A multicast's reply and the events travel on different channels; put the
                // send in its place: before this member's own delivery of it, before the end
                // of its life, after the install of its view.
                let wait = match &e {
                    Event::Delivered { id, .. } if proc_of(id.sender) == me => Some((id.view.0, id.seq.0)),
                    _ => None,
                };
                if let Some(key) = wait {
                    while !sends.traced.remove(&key) {
                        match tokio::time::timeout(Duration::from_secs(2), sent_rx.recv()).await {
                            Ok(Some(s)) => {
                                heard += 1;
                                sends.record(&mut tracer, me, state.sends_view(), s);
                            }
                            _ => break,
                        }
                    }
                }
                if matches!(e, Event::Excluded { .. } | Event::Left) {
                    while let Ok(s) = sent_rx.try_recv() {
                        heard += 1;
                        sends.record(&mut tracer, me, u64::MAX, s);
                    }
                    while in_flight.load(AtomicOrdering::Relaxed) {
                        match tokio::time::timeout(Duration::from_millis(500), sent_rx.recv()).await {
                            Ok(Some(s)) => {
                                heard += 1;
                                sends.record(&mut tracer, me, u64::MAX, s);
                            }
                            _ => break,
                        }
                    }
                    sends.flush(&mut tracer, me, u64::MAX);
                }
                let done = on_event(&member, &opts, &mut tracer, &mut state, &mut me, t, e);
                sends.flush(&mut tracer, me, state.sends_view());
                if done {
                    break;
                }
            }
            () = &mut give_up, if stopping => {
                println!("n{node} stops without a view that leaves it out: none came within {LEAVE_WAIT:?} (the others are stopping too, or a majority is gone)");
                break;
            }
            _ = stop.recv(), if !stopping => {
                stopping = true;
                give_up.as_mut().reset(tokio::time::Instant::now() + LEAVE_WAIT);
                println!("n{node} leaving the group");
                let m = member.clone();
                tokio::spawn(async move { let _ = m.leave().await; });
            }
        }
    }
    tracer.flush();
    member.shutdown().await;
    Ok(())
}

/// How long a stopping node waits for the view that leaves it out (as `chorus-kv node` does).
const LEAVE_WAIT: Duration = Duration::from_secs(3);

fn ready(s: &TraceEvent, me: Proc, app_view: u64) -> bool {
    s.p == Some(me) && matches!(s.ev, Ev::Send { view, .. } if view <= app_view)
}

/// This member's sends on their way into the trace.
#[derive(Default)]
struct Sends {
    /// Traced and not yet delivered here (bounded: a send never delivered here is forgotten).
    traced: std::collections::BTreeSet<(u64, u64)>,
    /// Accepted in a view whose install this application has not seen yet.
    deferred: std::collections::VecDeque<TraceEvent>,
}

impl Sends {
    /// A send of `me` in a view the application has seen is written now; one of a view not
    /// seen yet, or of the next incarnation (accepted before the application saw the
    /// exclusion), waits.
    fn record(&mut self, tracer: &mut Tracer, me: Proc, app_view: u64, s: TraceEvent) {
        if ready(&s, me, app_view) {
            self.write(tracer, s);
        } else {
            self.deferred.push_back(s);
        }
    }

    fn flush(&mut self, tracer: &mut Tracer, me: Proc, app_view: u64) {
        while self.deferred.front().is_some_and(|s| ready(s, me, app_view)) {
            if let Some(s) = self.deferred.pop_front() {
                self.write(tracer, s);
            }
        }
    }

    fn write(&mut self, tracer: &mut Tracer, s: TraceEvent) {
        if let TraceEvent { t, p: Some(p), ev } = s {
            if let Ev::Send { view, seq, .. } = &ev {
                self.traced.insert((*view, *seq));
                if self.traced.len() > 4096 {
                    self.traced.pop_first();
                }
            }
            tracer.write(t, p, ev);
        }
    }
}

/// Handles one event; returns true when the member's life is over (it left).
fn on_event(
    member: &Member,
    opts: &NodeOptions,
    tracer: &mut Tracer,
    state: &mut State,
    me: &mut Proc,
    t: u64,
    e: Event,
) -> bool {
    let n = me.node;
    match e {
        Event::ViewInstalled { view, joined, departed, loading, recovered } => {
            let members: Vec<Proc> = view.members.iter().copied().map(proc_of).collect();
            let names =
                |v: &[MemberId]| v.iter().map(|m| format!("n{}", m.node.0)).collect::<Vec<_>>().join(" ");
            let mut line = format!("n{n} view v{} [{}]", view.id.0, names(&view.members));
            if !joined.is_empty() {
                line += &format!("  +{}", names(&joined));
            }
            if !departed.is_empty() {
                line += &format!("  -{}", names(&departed));
            }
            println!("{line}");
            let me_loading = loading.iter().any(|m| proc_of(*m) == *me);
            state.view = view.id.0;
            state.awaiting_state = me_loading;
            tracer.write(
                t,
                *me,
                Ev::Install {
                    view: view.id.0,
                    members,
                    loading: loading.iter().copied().map(proc_of).collect(),
                    recovered: recovered.iter().copied().map(proc_of).collect(),
                },
            );
            if !me_loading && (state.loading.is_none()) {
                tracer.write(
                    t,
                    *me,
                    Ev::Digest { view: view.id.0, applied: state.applied, hash: state.hash },
                );
            }
        }
        Event::Delivered { id, order, payload } => {
            let d = digest(&payload);
            if order.is_total() {
                state.applied += 1;
                state.hash = chain(state.hash, d);
            }
            if opts.verbose {
                println!("n{n} delivered {order:?} from n{} #{}", id.sender.node.0, id.seq.0);
            }
            tracer.write(
                t,
                *me,
                Ev::Deliver {
                    sender: proc_of(id.sender),
                    view: id.view.0,
                    seq: id.seq.0,
                    digest: d,
                    order: trace_order(order),
                },
            );
        }
        Event::Blocked { reason } => {
            let reason = match reason {
                BlockReason::Flush => "flush",
                BlockReason::NoQuorum => {
                    println!("n{n} blocked: it cannot reach a majority of its view");
                    "no_quorum"
                }
                _ => "other",
            };
            tracer.write(t, *me, Ev::Blocked { reason: reason.into() });
        }
        Event::Suspected { member: m, reason } => {
            println!("n{n} suspects n{}: {reason}", m.node.0);
            tracer.write(t, *me, Ev::Suspect { member: proc_of(m) });
        }
        // A restarted node that stood in for its earlier life and was not let back that way
        // joins afresh under the identity it already has: no new life begins.
        Event::Excluded { rejoin_as, .. } if proc_of(rejoin_as) == *me => {
            println!("n{n} could not come back through recovery; joining afresh");
            *state = State { view: state.view, ..State::default() };
        }
        Event::Excluded { rejoin_as, .. } => {
            println!("n{n} was excluded while alive; re-joining as {rejoin_as}");
            tracer.write(t, *me, Ev::Excluded);
            *me = proc_of(rejoin_as);
            *state = State { view: state.view, ..State::default() };
            tracer.write(t, *me, Ev::Start { bootstrap: false });
        }
        Event::Left => {
            println!("n{n} left the group");
            tracer.write(t, *me, Ev::Left);
            return true;
        }
        Event::CheckpointRequest { view, joiners } => {
            let names: Vec<String> = joiners.iter().map(|j| format!("n{}", j.node.0)).collect();
            println!(
                "n{n} streams its state ({} applied, {} bytes) to {} at the barrier of v{}",
                state.applied,
                16 + opts.checkpoint_filler,
                names.join(" "),
                view.0
            );
            tokio::spawn(stream_checkpoint(
                member.clone(),
                view,
                state.applied,
                state.hash,
                opts.checkpoint_filler,
            ));
        }
        Event::StateIncoming { view, donor } => {
            println!("n{n} loads the group's state from n{} (v{})", donor.node.0, view.0);
            *state = State {
                view: state.view,
                loading: Some(Loader::new()),
                awaiting_state: true,
                ..State::default()
            };
        }
        Event::StateChunk { offset, data, .. } => {
            if let Some(l) = &mut state.loading {
                l.feed(offset, &data);
            }
        }
        Event::StateLoaded { view, len } => {
            state.awaiting_state = false;
            if let Some(l) = state.loading.take() {
                let (applied, hash, intact) = l.finish(len);
                let got = l.got();
                state.applied = applied;
                state.hash = if intact { hash } else { !hash };
                println!(
                    "n{n} loaded the state of v{} ({} applied, {} bytes){}",
                    view.0,
                    applied,
                    got,
                    if intact { "" } else { " CORRUPT" }
                );
                tracer.write(
                    t,
                    *me,
                    Ev::StateLoaded { view: view.0, applied: state.applied, hash: state.hash },
                );
            }
        }
        _ => {}
    }
    false
}

/// What the multicasts of `send_loop` look like.
struct Shape {
    orders: Vec<Order>,
    payload_bytes: usize,
}

/// Multicasts at `rate` per second, cycling through the orderings of `shape`.
async fn send_loop(
    member: Member,
    rate: f64,
    shape: Shape,
    quiet: Arc<AtomicBool>,
    in_flight: Arc<AtomicBool>,
    trace: mpsc::Sender<TraceEvent>,
) {
    let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut k: u64 = 0;
    loop {
        tick.tick().await;
        if quiet.load(AtomicOrdering::Relaxed) {
            return;
        }
        k += 1;
        let orders = if shape.orders.is_empty() { &Order::ALL[..] } else { &shape.orders[..] };
        let order = orders[(k % orders.len() as u64) as usize];
        let id = member.first_id();
        let mut text = format!("n{} msg {k} {}", id.node.0, crate::runtime::trace_nanos()).into_bytes();
        if text.len() < shape.payload_bytes {
            text.resize(shape.payload_bytes, b'.');
        }
        let payload = Bytes::from(text);
        in_flight.store(true, AtomicOrdering::Relaxed);
        let r = member.multicast_stamped(order, payload.clone()).await;
        match r {
            Ok((msg, t)) => {
                let ev = Ev::Send {
                    view: msg.view.0,
                    seq: msg.seq.0,
                    digest: digest(&payload),
                    order: trace_order(order),
                };
                let sent = trace.send(TraceEvent { t, p: Some(proc_of(msg.sender)), ev }).await;
                in_flight.store(false, AtomicOrdering::Relaxed);
                if sent.is_err() {
                    return;
                }
            }
            Err(MulticastError::ShutDown(_)) => return,
            Err(e) => {
                in_flight.store(false, AtomicOrdering::Relaxed);
                tracing::warn!("multicast failed: {e}");
            }
        }
    }
}
