//! A benchmark of the core alone: what one member's protocol work costs per delivery.
//!
//! Three nodes, no faults, no delay: frames go straight from `poll_transmit` to the receiver's
//! `handle_frame`. Simulated time moves 10 µs per round that moved frames, and when nothing
//! moved it jumps to the next timer, so heartbeats and stability acknowledgements flow. Every member multicasts
//! 64-byte payloads for as long as its window accepts them. What is measured is the thread's CPU
//! time, so the figure does not depend on what else the machine is doing.
//!
//! It is a benchmark, not a test: it prints figures and asserts nothing about them.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use chorus_core::{Config, Event, Incarnation, Instant, Node, NodeId, Order, Status};

use crate::options::MS;

/// Figures of one bench run.
#[derive(Clone, Debug, Default)]
pub struct BenchReport {
    /// Messages delivered (summed over the three members).
    pub deliveries: u64,
    /// Multicasts accepted.
    pub multicasts: u64,
    /// Frames sent.
    pub frames: u64,
    /// Bytes of frames sent.
    pub bytes: u64,
    /// Thread CPU time spent.
    pub cpu: Duration,
    /// Simulated time that passed.
    pub simulated: Duration,
}

impl BenchReport {
    /// Deliveries per CPU-second.
    pub fn deliveries_per_cpu_sec(&self) -> f64 {
        self.deliveries as f64 / self.cpu.as_secs_f64().max(1e-9)
    }
}

/// CPU time of the calling thread.
pub fn thread_cpu_time() -> Duration {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID) {
        Ok(ts) => Duration::new(ts.tv_sec().max(0) as u64, ts.tv_nsec().clamp(0, 999_999_999) as u32),
        Err(_) => Duration::ZERO,
    }
}

struct Bench {
    nodes: Vec<Node>,
    order: Order,
    now: u64,
    wire: VecDeque<(u64, u64, Bytes)>,
    r: BenchReport,
}

impl Bench {
    fn drain(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        while let Some(t) = node.poll_transmit() {
            self.r.frames += 1;
            self.r.bytes += t.frame.len() as u64;
            self.wire.push_back((i as u64, t.to.0, t.frame));
        }
        while let Some(e) = node.poll_event() {
            if matches!(e, Event::Delivered { .. }) {
                self.r.deliveries += 1;
            }
        }
    }

    /// Sends what the windows accept, then delivers every frame; `true` if anything happened.
    fn round(&mut self, payload: &Bytes) -> bool {
        let now = Instant::from_nanos(self.now);
        let mut busy = false;
        for i in 0..self.nodes.len() {
            for _ in 0..64 {
                if self.nodes[i].multicast_ordered(now, payload.clone(), self.order).is_err() {
                    break;
                }
                self.r.multicasts += 1;
                busy = true;
            }
            self.drain(i);
        }
        while let Some((from, to, frame)) = self.wire.pop_front() {
            busy = true;
            if let Some(node) = self.nodes.get_mut(to as usize) {
                if let Err(e) = node.handle_frame(now, NodeId(from), &frame) {
                    panic!("node {to} rejected a frame node {from} produced: {e}");
                }
                self.drain(to as usize);
            }
        }
        busy
    }

    /// Moves time: a little if work is flowing, else to the next timer. Runs due timers.
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
                self.nodes[i].handle_timeout(now);
                self.drain(i);
            }
        }
        true
    }

    fn formed(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| n.status() == Status::Member && n.view().is_some_and(|v| v.members.len() == 3))
    }
}

/// Runs the bench for about `cpu_budget` of thread CPU time after the group has formed, every
/// member multicasting in `order`.
pub fn run_bench(cpu_budget: Duration, order: Order) -> Result<BenchReport, String> {
    let mut nodes = Vec::new();
    for i in 0..3u64 {
        let mut c = Config::new(NodeId(i), Incarnation(0));
        c.bootstrap = i == 0;
        c.seeds = (0..3).filter(|j| *j != i).map(NodeId).collect();
        c.seed = i;
        nodes.push(Node::new(c, Instant::ZERO).map_err(|e| e.to_string())?);
    }
    let mut b = Bench { nodes, order, now: 0, wire: VecDeque::new(), r: BenchReport::default() };
    for i in 0..3 {
        b.drain(i);
    }
    let payload = Bytes::from(vec![0x5a; 64]);
    // Form the group first (joins take a few heartbeats).
    while !b.formed() {
        let busy = b.round(&payload);
        if !b.tick(busy) || b.now > 10_000 * MS {
            return Err("the group of 3 did not form within 10 simulated seconds".to_string());
        }
    }
    b.r = BenchReport::default();
    let (cpu0, sim0) = (thread_cpu_time(), b.now);
    let mut idle_rounds = 0;
    loop {
        let busy = b.round(&payload);
        idle_rounds = if busy { 0 } else { idle_rounds + 1 };
        if !b.tick(busy) || idle_rounds > 10_000 {
            return Err("the core stopped: nothing to send, no timer".to_string());
        }
        let cpu = thread_cpu_time().saturating_sub(cpu0);
        if cpu >= cpu_budget {
            b.r.cpu = cpu;
            b.r.simulated = Duration::from_nanos(b.now - sim0);
            return Ok(b.r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_cpu_time_moves() {
        let a = thread_cpu_time();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(thread_cpu_time() > a);
    }
}
