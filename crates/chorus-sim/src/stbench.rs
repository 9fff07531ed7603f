//! A benchmark of state transfer: a large checkpoint streams from a donor to a joiner while the
//! group goes on, and what it costs in memory (at the donor and at the joiner) and in CPU time
//! per byte.
//!
//! Three nodes, no faults, no delay (frames go straight from `poll_transmit` to the receiver, as
//! in [`crate::bench`]). Nodes 0 and 1 form the group; node 1 multicasts 64-byte total-order
//! messages all along; then node 2 joins and node 0, the donor, streams a checkpoint of
//! `state_bytes`. The donor's application produces the checkpoint piece by piece from a
//! pattern, as if reading it from disk (the state itself is never in memory, so what the bench
//! sees is the transfer's own memory); the joiner's application checks every byte against the
//! pattern and drops it, as if writing it to disk.
//!
//! Memory is measured by the binary's allocator (`st-bench` installs a tracking allocator),
//! through [`Probe`]: every call into a node, and its application's work, runs attributed to
//! that node, and an allocation counts against the node that made it until it is freed,
//! wherever that happens (a frame the donor encoded counts against the donor while in flight).
//! The figure is the peak of bytes held above what the node held just before the join.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use chorus_core::{CheckpointError, Config, Event, Incarnation, Instant, Node, NodeId, Order, ViewId};

use crate::bench::thread_cpu_time;

/// Where allocations are attributed, and what each node holds.
pub trait Probe {
    /// Runs `f` with its allocations attributed to node `who`.
    fn within(&mut self, who: usize, f: &mut dyn FnMut());
    /// Bytes node `who` holds now, and the most it held since the last `reset_peaks`.
    fn usage(&self, who: usize) -> (i64, i64);
    /// Starts a new peak from the current usage, for every node.
    fn reset_peaks(&mut self);
    /// Whether the figures are real (an allocator is installed).
    fn measures(&self) -> bool;
}

/// A probe that measures nothing (no allocator installed: tests).
#[derive(Debug, Default)]
pub struct NoProbe;

impl Probe for NoProbe {
    fn within(&mut self, _who: usize, f: &mut dyn FnMut()) {
        f()
    }
    fn usage(&self, _who: usize) -> (i64, i64) {
        (0, 0)
    }
    fn reset_peaks(&mut self) {}
    fn measures(&self) -> bool {
        false
    }
}

/// What to transfer.
#[derive(Clone, Debug)]
pub struct StBenchOptions {
    /// Checkpoint size.
    pub state_bytes: u64,
    /// Piece size written by the donor application (at most the core's `max_payload`).
    pub chunk: usize,
    /// The core's `state_window`.
    pub window: u64,
    /// The joiner's application takes its events only every `lag` network hops (a slow
    /// consumer: what it has not taken piles up in the core's event queue).
    pub lag: u32,
}

/// Figures of one state-transfer bench run.
#[derive(Clone, Debug, Default)]
pub struct StBenchReport {
    /// Checkpoint bytes loaded by the joiner (and checked).
    pub bytes: u64,
    /// Thread CPU time from the checkpoint request to the state being loaded.
    pub cpu: Duration,
    /// Thread CPU time to copy the same bytes once with `memcpy` (for the ratio).
    pub memcpy_cpu: Duration,
    /// Peak extra bytes held by the donor, by the joiner.
    pub donor_peak: i64,
    /// See `donor_peak`.
    pub joiner_peak: i64,
    /// Multicasts delivered at the old members while the transfer streamed.
    pub delivered_during: u64,
    /// Multicasts of the new view the joiner delivered right after loading.
    pub joiner_delivered: u64,
    /// Times the donor was told to wait (`WindowFull`).
    pub window_full: u64,
    /// Whether memory was measured.
    pub measured: bool,
}

impl StBenchReport {
    /// CPU nanoseconds per checkpoint byte.
    pub fn ns_per_byte(&self) -> f64 {
        self.cpu.as_nanos() as f64 / self.bytes.max(1) as f64
    }
}

const PATTERN_LEN: usize = 1 << 20;

fn pattern() -> Bytes {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut v = Vec::with_capacity(PATTERN_LEN);
    while v.len() < PATTERN_LEN {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    Bytes::from(v)
}

/// The donor application: pieces of the checkpoint, each a fresh copy of part of the pattern,
/// as a real donor reads each piece into a buffer of its own: the pieces the core holds in its
/// window count against the donor. (Slices of the pattern would share its allocation, made
/// before tracking starts, and a donor that never let go of its pieces would look free.)
#[derive(Debug)]
struct Donor {
    view: ViewId,
    offset: u64,
    finished: bool,
    waiting: bool,
}

#[derive(Debug, Default)]
struct Joiner {
    got: u64,
    corrupt: bool,
    loaded: bool,
    delivered: u64,
}

struct Run<'a> {
    nodes: Vec<Node>,
    now: u64,
    wire: VecDeque<(usize, usize, Bytes)>,
    probe: &'a mut dyn Probe,
    pattern: Bytes,
    o: StBenchOptions,
    donor: Option<Donor>,
    joiner: Joiner,
    old_delivered: u64,
    window_full: u64,
    hops: u64,
}

impl Run<'_> {
    /// Drains node `i`: frames onto the wire, events to its application (which may write).
    fn drain(&mut self, i: usize) {
        let Run { nodes, wire, probe, pattern, o, donor, joiner, old_delivered, window_full, hops, .. } =
            self;
        let node = &mut nodes[i];
        let app_idle = i == 2 && *hops % u64::from(o.lag.max(1)) != 0;
        probe.within(i, &mut || loop {
            let mut moved = false;
            while let Some(t) = node.poll_transmit() {
                wire.push_back((i, t.to.0 as usize, t.frame));
                moved = true;
            }
            while let Some(e) = if app_idle { None } else { node.poll_event() } {
                moved = true;
                match e {
                    Event::Delivered { .. } if i == 2 => joiner.delivered += 1,
                    Event::Delivered { .. } => *old_delivered += 1,
                    Event::CheckpointRequest { view, .. } if i == 0 => {
                        *donor = Some(Donor { view, offset: 0, finished: false, waiting: false });
                    }
                    Event::CheckpointWritable { .. } => {
                        if let Some(d) = donor.as_mut() {
                            d.waiting = false;
                        }
                    }
                    Event::StateChunk { offset, data, .. } if i == 2 => {
                        let at = (offset % PATTERN_LEN as u64) as usize;
                        let expect = pattern.get(at..at + data.len());
                        joiner.corrupt |= offset != joiner.got || expect != Some(&data[..]);
                        joiner.got += data.len() as u64;
                    }
                    Event::StateLoaded { len, .. } if i == 2 => {
                        joiner.corrupt |= len != joiner.got;
                        joiner.loaded = true;
                    }
                    _ => {}
                }
            }
            if i == 0 {
                if let Some(d) = donor.as_mut() {
                    moved |= write(node, d, pattern, o, window_full);
                }
            }
            if !moved {
                break;
            }
        });
    }

    /// One network hop: node 1 multicasts one message, then the frames on the wire now (not
    /// those they cause) are delivered. So a transfer takes many rounds, and the group's
    /// traffic interleaves with it as on a network.
    fn round(&mut self, payload: &Bytes, traffic: bool) -> bool {
        let now = Instant::from_nanos(self.now);
        let mut busy = false;
        self.hops += 1;
        if self.o.lag > 1 {
            self.drain(2.min(self.nodes.len() - 1));
        }
        if traffic {
            let node = &mut self.nodes[1];
            self.probe.within(1, &mut || {
                busy |= node.multicast_ordered(now, payload.clone(), Order::Total).is_ok();
            });
            self.drain(1);
        }
        for _ in 0..self.wire.len() {
            let Some((from, to, frame)) = self.wire.pop_front() else { break };
            busy = true;
            let node = &mut self.nodes[to];
            self.probe.within(to, &mut || {
                if let Err(e) = node.handle_frame(now, NodeId(from as u64), &frame) {
                    panic!("node {to} rejected a frame node {from} produced: {e}");
                }
            });
            self.drain(to);
        }
        busy
    }

    fn tick(&mut self, busy: bool) -> bool {
        let next = self.nodes.iter().filter_map(|n| n.poll_timeout()).map(Instant::as_nanos).min();
        self.now = match (busy, next) {
            (true, _) => self.now + 10_000,
            (false, Some(t)) => t.max(self.now + 1),
            (false, None) => return false,
        };
        let now = Instant::from_nanos(self.now);
        for i in 0..self.nodes.len() {
            if self.nodes[i].poll_timeout().is_some_and(|t| t <= now) {
                let node = &mut self.nodes[i];
                self.probe.within(i, &mut || node.handle_timeout(now));
                self.drain(i);
            }
        }
        true
    }

    fn members(&self, i: usize) -> usize {
        self.nodes[i].view().map_or(0, |v| v.members.len())
    }
}

/// Writes pieces while the core takes them; finishes after the last. `true` if it wrote.
fn write(node: &mut Node, d: &mut Donor, pattern: &Bytes, o: &StBenchOptions, full: &mut u64) -> bool {
    let mut wrote = false;
    while !d.waiting && !d.finished {
        if d.offset >= o.state_bytes {
            d.finished = node.finish_checkpoint(d.view).is_ok();
            return true;
        }
        let at = (d.offset % PATTERN_LEN as u64) as usize;
        let len = (o.chunk as u64).min(o.state_bytes - d.offset).min((PATTERN_LEN - at) as u64) as usize;
        match node.write_checkpoint(d.view, Bytes::copy_from_slice(&pattern[at..at + len])) {
            Ok(()) => {
                d.offset += len as u64;
                wrote = true;
            }
            Err(CheckpointError::WindowFull) => {
                *full += 1;
                d.waiting = true;
            }
            Err(_) => d.finished = true,
        }
    }
    wrote
}

/// Runs the state-transfer bench.
pub fn run_st_bench(o: StBenchOptions, probe: &mut dyn Probe) -> Result<StBenchReport, String> {
    let mut nodes = Vec::new();
    for i in 0..3u64 {
        let mut c = Config::new(NodeId(i), Incarnation(0));
        c.bootstrap = i == 0;
        c.seeds = vec![NodeId(0)];
        c.seed = i;
        c.state_transfer = true;
        c.max_payload = c.max_payload.max(o.chunk);
        c.state_window = o.window.max(c.max_payload as u64);
        nodes.push(Node::new(c, Instant::ZERO).map_err(|e| e.to_string())?);
    }
    let joiner_node = nodes.pop().ok_or("no joiner")?;
    let mut run = Run {
        nodes,
        now: 0,
        wire: VecDeque::new(),
        probe,
        pattern: pattern(),
        // Node 1 joins first and loads an empty checkpoint.
        o: StBenchOptions { state_bytes: 0, ..o.clone() },
        donor: None,
        joiner: Joiner::default(),
        old_delivered: 0,
        window_full: 0,
        hops: 0,
    };
    let payload = Bytes::from(vec![0x5a; 64]);
    // Nodes 0 and 1 form the group (node 1 loads an empty checkpoint from node 0).
    let mut guard = 0;
    while run.members(0) < 2 || run.members(1) < 2 || run.donor.as_ref().is_some_and(|d| !d.finished) {
        for i in 0..run.nodes.len() {
            run.drain(i);
        }
        let busy = run.round(&payload, false);
        guard += 1;
        if !run.tick(busy) || guard > 100_000 {
            return Err("nodes 0 and 1 did not form a group".into());
        }
    }
    // Settle: let the small transfer complete and the group run a little with traffic.
    for _ in 0..200 {
        let busy = run.round(&payload, true);
        run.tick(busy);
    }
    run.donor = None;
    run.o = o.clone();
    run.nodes.push(joiner_node);
    run.probe.reset_peaks();
    let base = [run.probe.usage(0).0, run.probe.usage(2).0];
    let delivered0 = run.old_delivered;
    let cpu0 = thread_cpu_time();
    run.drain(2);
    let mut guard = 0u64;
    while !run.joiner.loaded {
        let busy = run.round(&payload, true);
        guard += 1;
        if !run.tick(busy) || guard > 50_000_000 {
            return Err(format!("the transfer stopped after {} of {} bytes", run.joiner.got, o.state_bytes));
        }
    }
    let cpu = thread_cpu_time().saturating_sub(cpu0);
    let (donor_peak, joiner_peak) = (run.probe.usage(0).1 - base[0], run.probe.usage(2).1 - base[1]);
    if run.joiner.corrupt || run.joiner.got != o.state_bytes {
        return Err(format!("the joiner loaded {} bytes, corrupt: {}", run.joiner.got, run.joiner.corrupt));
    }
    // Let the joiner deliver what it held.
    for _ in 0..100 {
        let busy = run.round(&payload, false);
        run.tick(busy);
    }
    let memcpy_cpu = memcpy_time(o.state_bytes);
    Ok(StBenchReport {
        bytes: run.joiner.got,
        cpu,
        memcpy_cpu,
        donor_peak,
        joiner_peak,
        delivered_during: run.old_delivered - delivered0,
        joiner_delivered: run.joiner.delivered,
        window_full: run.window_full,
        measured: run.probe.measures(),
    })
}

/// CPU time to copy `bytes` once through memory (64 MiB buffers, larger than the caches): the
/// floor of any transfer, which copies each byte at least twice (into a frame, out of it).
fn memcpy_time(bytes: u64) -> Duration {
    let len = 64usize << 20;
    let src = vec![0x5au8; len];
    let mut dst = vec![0u8; len];
    let t0 = thread_cpu_time();
    let mut done = 0;
    while done < bytes {
        dst.copy_from_slice(&src);
        std::hint::black_box(&mut dst);
        done += len as u64;
    }
    thread_cpu_time().saturating_sub(t0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_state_moves_intact_while_the_group_goes_on() {
        let o = StBenchOptions { state_bytes: 3 << 20, chunk: 64 << 10, window: 256 << 10, lag: 3 };
        let r = run_st_bench(o, &mut NoProbe).expect("transfer");
        assert_eq!(r.bytes, 3 << 20);
        assert!(r.window_full > 0, "the window bounded the donor");
        assert!(r.delivered_during > 0, "old members delivered during the transfer");
        assert!(r.joiner_delivered > 0, "the joiner delivered what it held once loaded");
        assert!(!r.measured);
    }
}
