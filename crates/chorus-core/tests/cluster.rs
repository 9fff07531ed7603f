//! Scenario tests on a tiny in-test cluster: zero-delay links, explicit crashes and cuts.
#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The simulator (chorus-sim) covers the random cases; these pin the basic behaviours.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use chorus_core::wire::{self, FrameBody, Msg};
use chorus_core::{
    Config, Event, Incarnation, Instant, MemberId, Node, NodeId, Order, Persisted, Recovery, Status, ViewId,
};

struct Cluster {
    nodes: Vec<Option<Node>>,
    now: Instant,
    /// Directed links that drop everything.
    cut: BTreeSet<(u64, u64)>,
    /// Nodes that never receive a frame holding an install (one too large for any link).
    no_installs: BTreeSet<u64>,
    /// Directed links whose frames holding an `Accept` are kept in `held` instead (late).
    hold_accepts: BTreeSet<(u64, u64)>,
    held: Vec<(u64, chorus_core::Transmit)>,
    delivered: Vec<Vec<(MemberId, u64, Bytes)>>,
    events: Vec<Vec<Event>>,
    apps: Vec<App>,
    /// Each node's "disk": the last record `poll_persist` gave, taken before its frames.
    persisted: Vec<Option<Persisted>>,
}

/// A test application for state transfer: its state is `state`; as a donor it streams a
/// snapshot in chunks of `chunk` bytes as room allows; as a loading member it assembles.
#[derive(Default)]
struct App {
    state: Bytes,
    chunk: usize,
    /// Donor: (view, snapshot, next offset, finished).
    writing: Option<(chorus_core::ViewId, Bytes, usize, bool)>,
    /// Loading: the bytes so far.
    loading: Vec<u8>,
    refused: usize,
    /// Bytes the donor writes per time step (a slow application); 0 is unlimited.
    per_step: usize,
    budget: usize,
    /// The donor does not answer yet.
    hold: bool,
}

impl App {
    fn react(&mut self, node: &mut Node, e: &Event) {
        match e {
            Event::CheckpointRequest { view, .. } => {
                self.writing = Some((*view, self.state.clone(), 0, false));
            }
            Event::StateIncoming { .. } => self.loading.clear(),
            Event::StateChunk { offset, data, .. } => {
                assert_eq!(*offset as usize, self.loading.len(), "chunks arrive in order");
                self.loading.extend_from_slice(data);
            }
            Event::StateLoaded { len, .. } => {
                assert_eq!(*len as usize, self.loading.len());
                self.state = Bytes::from(std::mem::take(&mut self.loading));
            }
            _ => {}
        }
        self.pump(node);
    }

    fn pump(&mut self, node: &mut Node) {
        let chunk = self.chunk.max(1);
        if self.hold {
            return;
        }
        let Some((view, snap, at, finished)) = &mut self.writing else { return };
        while *at < snap.len() {
            if self.per_step > 0 && self.budget == 0 {
                return;
            }
            let end = (*at + chunk).min(snap.len());
            self.budget = self.budget.saturating_sub(end - *at);
            match node.write_checkpoint(*view, snap.slice(*at..end)) {
                Ok(()) => *at = end,
                Err(chorus_core::CheckpointError::WindowFull) => {
                    self.refused += 1;
                    return;
                }
                Err(_) => {
                    self.writing = None;
                    return;
                }
            }
        }
        if !*finished {
            *finished = node.finish_checkpoint(*view).is_ok();
        }
    }
}

impl Cluster {
    fn new(n: u64) -> Self {
        Self::with(n, |_| {})
    }

    fn with(n: u64, tweak: impl Fn(&mut Config)) -> Self {
        let now = Instant::from_nanos(1_000_000_000);
        let mut nodes = Vec::new();
        for i in 0..n {
            let mut c = Config::new(NodeId(i), Incarnation(0));
            c.bootstrap = i == 0;
            c.seeds = (0..n).map(NodeId).collect();
            c.seed = 7;
            tweak(&mut c);
            nodes.push(Some(Node::new(c, now).expect("valid config")));
        }
        Cluster {
            nodes,
            now,
            cut: BTreeSet::new(),
            no_installs: BTreeSet::new(),
            hold_accepts: BTreeSet::new(),
            held: Vec::new(),
            delivered: vec![Vec::new(); n as usize],
            events: vec![Vec::new(); n as usize],
            apps: (0..n).map(|_| App::default()).collect(),
            persisted: vec![None; n as usize],
        }
    }

    /// Restarts node `i` as incarnation `inc` from its "disk" (its last persisted record), with
    /// `state` as its stored application state (position, bytes) if any.
    fn restart(&mut self, i: usize, inc: u64, state: Option<(u64, Bytes)>, tweak: impl Fn(&mut Config)) {
        let n = self.nodes.len() as u64;
        let mut c = Config::new(NodeId(i as u64), Incarnation(inc));
        c.bootstrap = i == 0;
        c.seeds = (0..n).map(NodeId).collect();
        c.seed = 7;
        c.state_transfer = true;
        if let Some(p) = &self.persisted[i] {
            c.group = Some(p.group);
            if let Some(m) = &p.membership {
                c.recovery = Some(Recovery { membership: m.clone(), state: state.as_ref().map(|s| s.0) });
            }
        }
        tweak(&mut c);
        self.apps[i] = App { state: state.map(|s| s.1).unwrap_or_default(), ..App::default() };
        self.events[i].clear();
        self.nodes[i] = Some(Node::new(c, self.now).expect("valid config"));
    }

    /// Moves frames until none are left, then advances time by one step.
    fn step(&mut self, dt: Duration) {
        loop {
            let mut frames = Vec::new();
            for (i, n) in self.nodes.iter_mut().enumerate() {
                let Some(n) = n else { continue };
                if let Some(p) = n.poll_persist() {
                    self.persisted[i] = Some(p);
                }
                while let Some(t) = n.poll_transmit() {
                    frames.push((i as u64, t));
                }
                while let Some(e) = n.poll_event() {
                    if let Event::Delivered { id, payload, .. } = &e {
                        self.delivered[i].push((id.sender, id.seq.0, payload.clone()));
                    }
                    self.apps[i].react(n, &e);
                    self.events[i].push(e);
                }
                if let Some(p) = n.poll_persist() {
                    self.persisted[i] = Some(p);
                }
                while let Some(t) = n.poll_transmit() {
                    frames.push((i as u64, t));
                }
            }
            if frames.is_empty() {
                break;
            }
            for (from, t) in frames {
                if self.cut.contains(&(from, t.to.0)) {
                    continue;
                }
                if self.hold_accepts.contains(&(from, t.to.0))
                    && wire::decode(&t.frame, usize::MAX)
                        .is_ok_and(|b| b.msgs.iter().any(|m| matches!(m, Msg::Accept { .. })))
                {
                    self.held.push((from, t));
                    continue;
                }
                if self.no_installs.contains(&t.to.0)
                    && wire::decode(&t.frame, usize::MAX)
                        .is_ok_and(|b| b.msgs.iter().any(|m| matches!(m, Msg::Install { .. })))
                {
                    continue;
                }
                if let Some(Some(n)) = self.nodes.get_mut(t.to.0 as usize) {
                    n.handle_frame(self.now, NodeId(from), &t.frame).expect("valid frame");
                }
            }
        }
        self.now = self.now + dt;
        for (a, n) in self.apps.iter_mut().zip(self.nodes.iter_mut()) {
            a.budget = a.per_step;
            if let Some(n) = n {
                a.pump(n);
            }
        }
        for n in self.nodes.iter_mut().flatten() {
            if n.poll_timeout().is_some_and(|t| t <= self.now) {
                n.handle_timeout(self.now);
            }
        }
    }

    fn run(&mut self, d: Duration) {
        let steps = d.as_millis() / 5;
        for _ in 0..steps {
            self.step(Duration::from_millis(5));
        }
    }

    fn view_of(&self, i: usize) -> Option<Vec<u64>> {
        self.nodes[i].as_ref()?.view().map(|v| v.members.iter().map(|m| m.node.0).collect())
    }

    fn isolate(&mut self, i: u64, n: u64) {
        for j in 0..n {
            if j != i {
                self.cut.insert((i, j));
                self.cut.insert((j, i));
            }
        }
    }
}

#[test]
fn three_nodes_join_and_multicast_fifo() {
    let mut c = Cluster::new(3);
    c.run(Duration::from_secs(2));
    for i in 0..3 {
        assert_eq!(c.view_of(i), Some(vec![0, 1, 2]), "node {i}");
    }
    for k in 0..50u64 {
        for i in 0..3 {
            let now = c.now;
            let n = c.nodes[i].as_mut().expect("up");
            n.multicast(now, Bytes::from(format!("{i}:{k}"))).expect("accepted");
        }
        c.step(Duration::from_millis(1));
    }
    c.run(Duration::from_millis(500));
    for i in 0..3 {
        assert_eq!(c.delivered[i].len(), 150, "node {i} delivered all");
        for s in 0..3u64 {
            let seqs: Vec<u64> = c.delivered[i].iter().filter(|d| d.0.node.0 == s).map(|d| d.1).collect();
            assert_eq!(seqs, (1..=50).collect::<Vec<_>>(), "FIFO from {s} at {i}");
        }
    }
}

#[test]
fn crash_is_detected_and_view_shrinks() {
    let mut c = Cluster::new(3);
    c.run(Duration::from_secs(2));
    c.nodes[2] = None;
    c.run(Duration::from_secs(3));
    assert_eq!(c.view_of(0), Some(vec![0, 1]));
    assert_eq!(c.view_of(1), Some(vec![0, 1]));
    assert_eq!(c.nodes[0].as_ref().map(|n| n.status()), Some(Status::Member));
}

#[test]
fn coordinator_crash_and_messages_in_flight_are_flushed() {
    let mut c = Cluster::new(5);
    c.run(Duration::from_secs(2));
    assert_eq!(c.view_of(4), Some(vec![0, 1, 2, 3, 4]));
    // Node 3's messages reach only node 4; then 3 and the coordinator 0 die.
    for j in [0u64, 1, 2] {
        c.cut.insert((3, j));
    }
    let now = c.now;
    for k in 0..10 {
        c.nodes[3].as_mut().expect("up").multicast(now, Bytes::from(format!("x{k}"))).expect("sent");
    }
    c.step(Duration::from_millis(1));
    c.nodes[3] = None;
    c.nodes[0] = None;
    c.cut.clear();
    c.run(Duration::from_secs(4));
    for i in [1usize, 2, 4] {
        assert_eq!(c.view_of(i), Some(vec![1, 2, 4]), "node {i}");
        let from3 = c.delivered[i].iter().filter(|d| d.0.node.0 == 3).count();
        assert_eq!(from3, 10, "node {i} got the crashed sender's messages through the flush");
    }
}

#[test]
fn minority_blocks_and_rejoins_after_heal() {
    let mut c = Cluster::new(5);
    c.run(Duration::from_secs(2));
    c.isolate(4, 5);
    c.run(Duration::from_secs(3));
    assert_eq!(c.view_of(0), Some(vec![0, 1, 2, 3]));
    assert_eq!(c.nodes[4].as_ref().map(|n| n.status()), Some(Status::Blocked));
    assert!(c.events[4].iter().any(|e| matches!(e, Event::Blocked { .. })));
    c.cut.clear();
    c.run(Duration::from_secs(3));
    let n4 = c.nodes[4].as_ref().expect("up");
    assert_eq!(n4.member_id().inc, Incarnation(1), "re-joined as a new incarnation");
    for i in 0..5 {
        assert_eq!(c.view_of(i), Some(vec![0, 1, 2, 3, 4]), "node {i}");
    }
    assert!(c.events[4].iter().any(|e| matches!(e, Event::Excluded { .. })));
}

#[test]
fn leave_is_graceful() {
    let mut c = Cluster::new(4);
    c.run(Duration::from_secs(2));
    let now = c.now;
    c.nodes[1].as_mut().expect("up").leave(now);
    c.run(Duration::from_secs(1));
    assert_eq!(c.view_of(0), Some(vec![0, 2, 3]));
    assert_eq!(c.nodes[1].as_ref().map(|n| n.status()), Some(Status::Left));
    assert!(c.events[1].iter().any(|e| matches!(e, Event::Left)));
    // The coordinator can leave too.
    let now = c.now;
    c.nodes[0].as_mut().expect("up").leave(now);
    c.run(Duration::from_secs(2));
    assert_eq!(c.view_of(2), Some(vec![2, 3]));
    assert_eq!(c.nodes[0].as_ref().map(|n| n.status()), Some(Status::Left));
}

#[test]
fn garbage_and_impersonation_are_rejected() {
    let mut c = Cluster::new(2);
    c.run(Duration::from_secs(1));
    let now = c.now;
    let n = c.nodes[0].as_mut().expect("up");
    assert!(n.handle_frame(now, NodeId(1), b"\x00\x01garbage").is_err());
    let mut other = c.nodes[1].take().expect("up");
    other.handle_timeout(now + Duration::from_secs(1));
    let t = other.poll_transmit().expect("heartbeat");
    assert!(c.nodes[0].as_mut().expect("up").handle_frame(now, NodeId(5), &t.frame).is_err());
}

#[test]
fn state_transfer_at_the_barrier() {
    let mut c = Cluster::with(3, |c| c.state_transfer = true);
    // Let node 0 form a group of {0, 1} with traffic before node 2 joins.
    let mut n2 = c.nodes[2].take();
    c.apps[0].state = Bytes::from_static(b"S0");
    c.run(Duration::from_secs(2));
    assert_eq!(c.view_of(1), Some(vec![0, 1]));
    assert_eq!(&c.apps[1].state[..], b"S0", "node 1 loaded node 0's state");
    for k in 0..5 {
        let now = c.now;
        c.nodes[0].as_mut().expect("up").multicast(now, Bytes::from(format!("a{k}"))).expect("sent");
    }
    c.run(Duration::from_millis(100));
    // Node 2 joins; the donor (node 0) is asked for a checkpoint at the barrier. Hold the
    // answer back (the app is slow) and check the joiner waits.
    c.apps[0].state = Bytes::from_static(b"S");
    c.apps[0].hold = true;
    c.nodes[2] = n2.take();
    let mut asked = None;
    for _ in 0..400 {
        c.step(Duration::from_millis(5));
        asked = c.events[0].iter().rev().find_map(|e| match e {
            Event::CheckpointRequest { view, joiners } if joiners.iter().any(|j| j.node.0 == 2) => {
                Some((*view, joiners.clone()))
            }
            _ => None,
        });
        if asked.is_some() {
            break;
        }
    }
    let (_view, joiners) = asked.expect("checkpoint requested");
    assert_eq!(joiners.iter().map(|j| j.node.0).collect::<Vec<_>>(), vec![2]);
    let now = c.now;
    let err = c.nodes[2].as_mut().expect("up").multicast(now, Bytes::from_static(b"x"));
    assert_eq!(err, Err(chorus_core::SendError::AwaitingState));
    // Node 1 multicasts in the new view; node 2 must hold it until its state is loaded.
    let now = c.now;
    c.nodes[1].as_mut().expect("up").multicast(now, Bytes::from_static(b"new-view")).expect("sent");
    c.run(Duration::from_millis(100));
    assert_eq!(c.delivered[1].last().map(|d| &d.2[..]), Some(&b"new-view"[..]), "old members go on");
    assert!(c.delivered[2].is_empty(), "a joiner delivers nothing before its state");
    c.apps[0].hold = false;
    c.run(Duration::from_millis(100));
    let loaded = c.events[2].iter().position(|e| matches!(e, Event::StateLoaded { .. }));
    let first_delivery = c.events[2].iter().position(|e| matches!(e, Event::Delivered { .. }));
    assert!(loaded.is_some(), "state loaded");
    assert_eq!(&c.apps[2].state[..], b"S");
    assert!(first_delivery > loaded, "deliveries follow the state");
    assert_eq!(c.delivered[2].len(), 1);
    assert!(c.events[0].iter().any(|e| matches!(e, Event::CheckpointComplete { .. })));
}

fn big_state(len: usize, salt: u8) -> Bytes {
    Bytes::from((0..len).map(|i| (i % 251) as u8 ^ salt).collect::<Vec<u8>>())
}

/// A state larger than the window streams in chunks with flow control, to two joiners at
/// once, while the old members go on delivering.
#[test]
fn large_state_streams_to_two_joiners_with_flow_control() {
    let mut c = Cluster::with(5, |c| {
        c.state_transfer = true;
        c.max_payload = 16 << 10;
        c.window_bytes = 64 << 10;
        c.state_window = 64 << 10;
    });
    let (mut n3, mut n4) = (c.nodes[3].take(), c.nodes[4].take());
    c.run(Duration::from_secs(3));
    assert_eq!(c.view_of(0), Some(vec![0, 1, 2]));
    let state = big_state(1 << 20, 7);
    for a in c.apps.iter_mut() {
        a.state = state.clone();
        a.chunk = 10_000;
    }
    c.nodes[3] = n3.take();
    c.nodes[4] = n4.take();
    let mut sent = 0;
    for _ in 0..800 {
        c.step(Duration::from_millis(5));
        if c.view_of(0).is_some_and(|v| v.len() == 5) && sent < 20 {
            let now = c.now;
            if c.nodes[1].as_mut().expect("up").multicast(now, Bytes::from(format!("m{sent}"))).is_ok() {
                sent += 1;
            }
        }
    }
    assert_eq!(c.view_of(0), Some(vec![0, 1, 2, 3, 4]));
    let asked = c.events[0].iter().find_map(|e| match e {
        Event::CheckpointRequest { joiners, .. } if joiners.len() == 2 => Some(joiners.len()),
        _ => None,
    });
    assert_eq!(asked, Some(2), "one donor serves both joiners");
    assert!(c.apps[0].refused > 0, "the window filled: flow control worked");
    for j in [3, 4] {
        assert_eq!(c.apps[j].state, state, "joiner {j} has the state");
        assert_eq!(c.delivered[j].len(), sent, "joiner {j} delivers the new view's messages");
    }
    assert_eq!(c.delivered[2].iter().filter(|d| d.2.starts_with(b"m")).count(), sent);
    assert!(c.nodes[0].as_ref().expect("up").marks().get(chorus_core::Mark::SeveralJoinersServed) > 0);
}

/// The donor crashes mid-transfer: the next view restarts the transfer from another member.
#[test]
fn donor_crash_mid_transfer_restarts_from_another_member() {
    let mut c = Cluster::with(4, |c| {
        c.state_transfer = true;
        c.max_payload = 16 << 10;
        c.window_bytes = 64 << 10;
        c.state_window = 32 << 10;
    });
    let mut n3 = c.nodes[3].take();
    c.run(Duration::from_secs(3));
    assert_eq!(c.view_of(0), Some(vec![0, 1, 2]));
    let state = big_state(1 << 20, 3);
    for a in c.apps.iter_mut() {
        a.state = state.clone();
        a.chunk = 8_000;
        a.per_step = 8_000;
    }
    c.nodes[3] = n3.take();
    // Run until node 3 has part of the state, then crash the donor.
    for _ in 0..2000 {
        c.step(Duration::from_millis(1));
        if !c.apps[3].loading.is_empty() {
            break;
        }
    }
    assert!(!c.apps[3].loading.is_empty() && c.apps[3].loading.len() < state.len(), "mid-transfer");
    c.nodes[0] = None;
    c.run(Duration::from_secs(4));
    assert_eq!(c.view_of(1), Some(vec![1, 2, 3]));
    assert_eq!(c.apps[3].state, state, "node 3 loaded the state from the new donor");
    let restarted = c.nodes[3].as_ref().expect("up").marks().get(chorus_core::Mark::TransferRestarted);
    assert_eq!(restarted, 1);
    let incoming: Vec<u64> = c.events[3]
        .iter()
        .filter_map(|e| match e {
            Event::StateIncoming { donor, .. } => Some(donor.node.0),
            _ => None,
        })
        .collect();
    assert_eq!(incoming, vec![0, 1], "first from node 0, then from node 1");
}

/// Sends `k` rounds of one message per node in `order`, interleaving delivery steps.
fn send_rounds(c: &mut Cluster, k: usize, order: Order) {
    for round in 0..k {
        for i in 0..c.nodes.len() {
            let now = c.now;
            if let Some(n) = c.nodes[i].as_mut() {
                n.multicast_ordered(now, Bytes::from(format!("{i}:{round}")), order).expect("accepted");
            }
            if round % 3 == i % 3 {
                c.step(Duration::from_millis(1));
            }
        }
    }
}

fn sequence(c: &Cluster, i: usize, order: Order) -> Vec<(u64, u64)> {
    c.events[i]
        .iter()
        .filter_map(|e| match e {
            Event::Delivered { id, order: o, .. } if *o == order => Some((id.sender.node.0, id.seq.0)),
            _ => None,
        })
        .collect()
}

#[test]
fn total_order_is_the_same_everywhere() {
    let mut c = Cluster::new(3);
    c.run(Duration::from_secs(2));
    send_rounds(&mut c, 40, Order::Total);
    c.run(Duration::from_millis(500));
    let first = sequence(&c, 0, Order::Total);
    assert_eq!(first.len(), 120);
    for i in 1..3 {
        assert_eq!(sequence(&c, i, Order::Total), first, "node {i} delivered the same total order");
    }
}

#[test]
fn safe_and_causal_and_mixed_modes() {
    let mut c = Cluster::new(3);
    c.run(Duration::from_secs(2));
    for (k, order) in
        [Order::Causal, Order::Safe, Order::Fifo, Order::Total].into_iter().cycle().take(12).enumerate()
    {
        send_rounds(&mut c, 3, order);
        if k % 4 == 1 {
            c.step(Duration::from_millis(1));
        }
    }
    c.run(Duration::from_millis(500));
    for i in 0..3 {
        assert_eq!(c.delivered[i].len(), 108, "node {i} delivered everything");
        for s in 0..3u64 {
            let seqs: Vec<u64> = c.delivered[i].iter().filter(|d| d.0.node.0 == s).map(|d| d.1).collect();
            assert_eq!(seqs, (1..=36).collect::<Vec<_>>(), "FIFO from {s} at {i} in every mode");
        }
    }
    let safe0 = sequence(&c, 0, Order::Safe);
    assert_eq!(safe0.len(), 27);
    for i in 1..3 {
        assert_eq!(sequence(&c, i, Order::Safe), safe0);
    }
}

#[test]
fn total_order_survives_a_sender_crash_in_the_flush() {
    let mut c = Cluster::new(4);
    c.run(Duration::from_secs(2));
    // Node 3's total messages reach only node 2, then node 3 dies.
    for j in [0u64, 1] {
        c.cut.insert((3, j));
    }
    send_rounds(&mut c, 10, Order::Total);
    c.nodes[3] = None;
    c.cut.clear();
    c.run(Duration::from_secs(3));
    let reference = sequence(&c, 0, Order::Total);
    assert!(reference.iter().any(|(s, _)| *s == 3), "the dead sender's messages were flushed");
    for i in 1..3 {
        assert_eq!(sequence(&c, i, Order::Total), reference, "node {i}");
    }
}

// ----- recovery from stable storage (docs/protocol/recovery.md) -----

fn incarnation(c: &Cluster, i: usize) -> u64 {
    c.nodes[i].as_ref().map_or(u64::MAX, |n| n.member_id().inc.0)
}

/// The trap: node 2 crashes, the others install {0, 1}; node 1 crashes too; both come
/// back from their data directories. Node 0 alone is a minority of {0, 1}: before recovery the
/// group stayed blocked for good. Node 1's restart speaks for its earlier life, so {0, 1'} is
/// a majority of {0, 1}, and node 2 then joins.
#[test]
fn two_quick_crashes_recover_through_the_restarted_member() {
    let mut c = Cluster::with(3, |c| c.state_transfer = true);
    c.apps[0].state = Bytes::from_static(b"S");
    c.run(Duration::from_secs(2));
    assert_eq!(c.view_of(2), Some(vec![0, 1, 2]));
    c.nodes[2] = None;
    c.run(Duration::from_secs(2));
    assert_eq!(c.view_of(0), Some(vec![0, 1]));
    c.nodes[1] = None;
    c.run(Duration::from_secs(2));
    assert_eq!(c.nodes[0].as_ref().map(|n| n.status()), Some(Status::Blocked), "a minority of {{0, 1}}");
    c.restart(1, 1, Some((1, Bytes::from_static(b"S"))), |_| {});
    c.restart(2, 1, Some((1, Bytes::from_static(b"S"))), |_| {});
    c.run(Duration::from_secs(6));
    for i in 0..3 {
        let mut v = c.view_of(i).expect("a member");
        v.sort_unstable();
        assert_eq!(v, vec![0, 1, 2], "node {i}");
        assert_eq!(c.apps[i].state, Bytes::from_static(b"S"), "node {i} has the state");
    }
    assert_eq!((incarnation(&c, 1), incarnation(&c, 2)), (1, 1), "the restarted nodes are new members");
    assert!(
        c.events[1]
            .iter()
            .any(|e| matches!(e, Event::ViewInstalled { recovered, .. } if !recovered.is_empty())),
        "node 1 came back by recovery: {:?}",
        c.events[1]
    );
}

/// Every member crashes; they come back with different stored states: the view is recovered
/// with the highest stored position as donor, whatever order they return in.
#[test]
fn whole_group_crash_recovers_from_the_most_recent_disk() {
    for order in [[0usize, 1, 2], [2, 1, 0], [1, 2, 0]] {
        let mut c = Cluster::with(3, |c| c.state_transfer = true);
        c.run(Duration::from_secs(2));
        assert_eq!(c.view_of(0), Some(vec![0, 1, 2]));
        for i in 0..3 {
            c.nodes[i] = None;
        }
        let disks = [(5, "A5"), (7, "A7"), (6, "A6")];
        for (k, i) in order.into_iter().enumerate() {
            let (pos, state) = disks[i];
            c.restart(i, 1, Some((pos, Bytes::from(state))), |_| {});
            c.run(Duration::from_millis(300));
            if k == 0 {
                assert_eq!(c.nodes[i].as_ref().map(|n| n.status()), Some(Status::Recovering), "{order:?}");
            }
        }
        c.run(Duration::from_secs(6));
        for i in 0..3 {
            let mut v = c.view_of(i).expect("a member");
            v.sort_unstable();
            assert_eq!(v, vec![0, 1, 2], "node {i}, order {order:?}");
            assert_eq!(c.apps[i].state, Bytes::from_static(b"A7"), "node {i}, order {order:?}");
        }
    }
}

/// A lone restarted member of a view whose others are down must wait: it cannot know what a
/// majority decided. With `recover_all`, a majority is not enough either.
#[test]
fn recovery_waits_for_enough_members() {
    for all in [false, true] {
        let mut c = Cluster::with(3, |c| c.state_transfer = true);
        c.run(Duration::from_secs(2));
        for i in 0..3 {
            c.nodes[i] = None;
        }
        c.restart(2, 1, Some((3, Bytes::from_static(b"X"))), |c| c.recover_all = all);
        c.run(Duration::from_secs(5));
        assert_eq!(c.nodes[2].as_ref().map(|n| n.status()), Some(Status::Recovering));
        c.restart(0, 1, Some((3, Bytes::from_static(b"X"))), |c| c.recover_all = all);
        c.run(Duration::from_secs(5));
        if all {
            assert_eq!(c.nodes[0].as_ref().map(|n| n.status()), Some(Status::Recovering), "all: waits");
            c.restart(1, 1, Some((3, Bytes::from_static(b"X"))), |c| c.recover_all = all);
            c.run(Duration::from_secs(5));
        }
        assert_eq!(c.nodes[0].as_ref().map(|n| n.status()), Some(Status::Member), "all = {all}");
        assert_eq!(c.apps[2].state, Bytes::from_static(b"X"));
    }
}

/// The founder restarted with its unchanged config (bootstrap = true), with or without its
/// data directory, joins the group that goes on without it instead of founding another.
#[test]
fn a_restarted_founder_never_founds_a_second_group() {
    for keep_disk in [false, true] {
        let mut c = Cluster::with(3, |c| c.state_transfer = true);
        c.apps[0].state = Bytes::from_static(b"S");
        c.run(Duration::from_secs(2));
        c.nodes[0] = None;
        c.run(Duration::from_secs(2));
        assert_eq!(c.view_of(1), Some(vec![1, 2]));
        if !keep_disk {
            c.persisted[0] = None;
        }
        c.restart(0, 1, None, |_| {});
        c.run(Duration::from_secs(4));
        for i in 0..3 {
            assert_eq!(c.view_of(i), Some(vec![1, 2, 0]), "node {i}, disk kept: {keep_disk}");
            assert_eq!(c.apps[i].state, Bytes::from_static(b"S"), "node {i}");
        }
        let groups: BTreeSet<_> = c.nodes.iter().flatten().filter_map(|n| n.group()).collect();
        assert_eq!(groups.len(), 1, "one group");
    }
}

/// Founding waits for a majority of the configured nodes to say they belong to no group, and
/// when several nodes are configured to found, the lowest does.
#[test]
fn founding_needs_a_fresh_majority_and_the_lowest_founder_wins() {
    let mut c = Cluster::with(3, |c| c.bootstrap = true);
    let mut later = c.nodes[1].take();
    let n2 = c.nodes[2].take();
    c.run(Duration::from_secs(2));
    assert_eq!(c.nodes[0].as_ref().map(|n| n.status()), Some(Status::Joining), "alone: no majority");
    c.nodes[2] = n2;
    c.run(Duration::from_secs(2));
    c.nodes[1] = later.take();
    c.run(Duration::from_secs(3));
    for i in 0..3 {
        assert_eq!(c.view_of(i).map(|v| v.len()), Some(3), "node {i}");
    }
    let groups: BTreeSet<_> = c.nodes.iter().flatten().filter_map(|n| n.group()).collect();
    assert_eq!(groups.len(), 1, "one group");
}

/// `Event::Durable` reports the lowest stored position of the view's members.
#[test]
fn durable_positions_travel_in_acknowledgements() {
    let mut c = Cluster::new(3);
    c.run(Duration::from_secs(2));
    let now = c.now;
    for (i, pos) in [(0usize, 10u64), (1, 7), (2, 12)] {
        c.nodes[i].as_mut().expect("up").set_durable(now, pos);
    }
    c.run(Duration::from_millis(300));
    for i in 0..3 {
        let ups: Vec<u64> = c.events[i]
            .iter()
            .filter_map(|e| if let Event::Durable { upto } = e { Some(*upto) } else { None })
            .collect();
        assert_eq!(ups.last(), Some(&7), "node {i}: {ups:?}");
    }
}

/// A node that did not run for three suspicion timeouts (a stopped process, a starved CPU) does
/// not accuse its peers when it resumes: it was not listening, and their frames wait unread.
/// Its peers, who ran, judge it by its silence and remove it.
#[test]
fn a_paused_node_does_not_accuse_its_peers_when_it_resumes() {
    let mut c = Cluster::new(3);
    c.run(Duration::from_secs(2));
    assert_eq!(c.view_of(2), Some(vec![0, 1, 2]));
    let mut paused = c.nodes[2].take().expect("node 2 runs");
    while paused.poll_event().is_some() {}
    c.run(Duration::from_millis(1500));
    assert_eq!(c.view_of(0), Some(vec![0, 1]), "the peers that ran removed the silent one");
    // It resumes with its timer first, before it reads anything.
    paused.handle_timeout(c.now);
    let mut accused = Vec::new();
    while let Some(e) = paused.poll_event() {
        if let Event::Suspected { member, .. } = e {
            accused.push(member);
        }
    }
    assert!(accused.is_empty(), "a paused node accused {accused:?}");
    let pauses = paused.local_pauses();
    assert_eq!(pauses.count, 1);
    assert!(pauses.last >= Duration::from_millis(1500), "{pauses:?}");
}

/// What a runtime without a data directory draws as incarnation: wall-clock milliseconds times
/// 256 (here late 2023), and one hour of it.
const CLOCK_INC: u64 = 1_700_000_000_000 << 8;
const HOUR: u64 = 3_600_000 << 8;

/// Three nodes with incarnations from their clocks (node `i` has `CLOCK_INC + i`), all in one
/// view and holding state "S".
fn clocked_cluster() -> Cluster {
    let mut c = Cluster::with(3, |c| {
        c.state_transfer = true;
        c.incarnation = Incarnation(CLOCK_INC + c.node.0);
    });
    c.apps[0].state = Bytes::from_static(b"S");
    c.run(Duration::from_secs(2));
    for i in 0..3 {
        assert_eq!(c.view_of(i), Some(vec![0, 1, 2]), "node {i}");
    }
    c
}

/// Runs until all three nodes install one view holding all of them, node `k` as its current
/// incarnation, and `k` loaded the state; returns how long that took.
fn until_back(c: &mut Cluster, k: usize, limit: Duration) -> Option<Duration> {
    let start = c.now;
    while c.now.since(start) < limit {
        c.step(Duration::from_millis(5));
        let me = c.nodes[k].as_ref().map(|n| n.member_id());
        let views: Vec<_> = (0..3).map(|i| c.nodes[i].as_ref().and_then(|n| n.view()).cloned()).collect();
        let back = views.iter().all(|v| {
            v.as_ref().is_some_and(|v| v.members.len() == 3 && me.is_some_and(|me| v.contains(me)))
                && *v == views[0]
        });
        if back && c.apps[k].state == Bytes::from_static(b"S") {
            return Some(c.now.since(start));
        }
    }
    None
}

/// A node restarted without a data directory, its wall clock stepped back an hour, draws an
/// incarnation far below its earlier life's. The members tell it the newest incarnation they
/// know of its node and it re-joins above it at its first answer: whether its earlier life is
/// still in the view (not suspected yet) or was excluded already, and whether it is a plain
/// member or the founder and coordinator. Before, its joins were ignored, then each refused
/// with `NotMember` raised it by one: ~10^9 join retries.
#[test]
fn a_restart_with_the_clock_stepped_back_rejoins_within_a_few_retries() {
    for (k, excluded_first) in [(2, false), (2, true), (0, false), (0, true)] {
        let mut c = clocked_cluster();
        let earlier = CLOCK_INC + k as u64;
        c.nodes[k] = None;
        c.persisted[k] = None; // No data directory.
        if excluded_first {
            c.run(Duration::from_secs(2));
            assert_eq!(c.view_of(1).map(|v| v.len()), Some(2), "node {k}'s earlier life was excluded");
        }
        c.restart(k, earlier - HOUR, None, |_| {});
        // Within three join retries (250 ms each), the view change that replaces the earlier
        // life (if still in the view; after its suspicion if it coordinated) and the state
        // transfer included.
        let took = until_back(&mut c, k, Duration::from_secs(3));
        let case =
            format!("node {k}, {}", if excluded_first { "excluded" } else { "earlier life in the view" });
        assert!(took.is_some_and(|t| t <= Duration::from_millis(750)), "{case}: back after {took:?}");
        let jumps = exclusions(&c.events[k]);
        assert_eq!(jumps, vec![MemberId::new(k as u64, earlier + 1)], "{case}: one step, straight past it");
        assert_eq!(incarnation(&c, k), earlier + 1, "{case}");
    }
}

fn not_member(from: MemberId, to: MemberId, view: u64, newest: u64) -> Bytes {
    let msgs = vec![Msg::NotMember { view: ViewId(view), newest: Incarnation(newest) }];
    wire::encode(&FrameBody { from, to: Some(to), msgs })
}

fn exclusions(events: &[Event]) -> Vec<MemberId> {
    events
        .iter()
        .filter_map(|e| if let Event::Excluded { rejoin_as, .. } = e { Some(*rejoin_as) } else { None })
        .collect()
}

/// `NotMember::newest` moves only the incarnation it is addressed to, and only out of the group:
/// a joiner re-joins above it (once: a repeated answer is addressed to a life that is over), a
/// member excluded by a newer view re-joins above it, and a live member is never excluded by it
/// (the answer to its join may arrive after it was let in).
#[test]
fn newest_incarnation_answers_move_only_the_life_they_are_addressed_to() {
    let mut c = Cluster::new(3);
    c.run(Duration::from_secs(2));
    let cur = c.nodes[0].as_ref().and_then(|n| n.view()).map(|v| v.id.0).expect("in a view");
    let (n0, n2) = (MemberId::new(0, 0), MemberId::new(2, 0));
    let now = c.now;
    let member = c.nodes[2].as_mut().expect("up");
    for view in [cur - 1, cur] {
        member.handle_frame(now, NodeId(0), &not_member(n0, n2, view, 1000)).expect("valid");
    }
    assert_eq!((member.member_id(), member.status()), (n2, Status::Member), "a live member stays");
    member.handle_frame(now, NodeId(0), &not_member(n0, n2, cur + 1, 1000)).expect("valid");
    while member.poll_event().is_some() {}
    assert_eq!(member.member_id(), MemberId::new(2, 1001), "excluded by a newer view: above newest");

    let mut cfg = Config::new(NodeId(3), Incarnation(5));
    cfg.seeds = vec![NodeId(0)];
    let mut joiner = Node::new(cfg, now).expect("valid config");
    let feed = |j: &mut Node, to: u64, newest: u64| {
        j.handle_frame(now, NodeId(0), &not_member(n0, MemberId::new(3, to), cur, newest)).expect("valid");
        std::iter::from_fn(|| j.poll_event()).collect::<Vec<_>>()
    };
    let mut events = feed(&mut joiner, 4, 1000);
    assert_eq!(joiner.member_id(), MemberId::new(3, 5), "an answer to an earlier life changes nothing");
    for newest in [1000, 2000, 3] {
        events.extend(feed(&mut joiner, 5, newest));
    }
    assert_eq!(exclusions(&events), vec![MemberId::new(3, 1001)], "straight past newest, once");
    feed(&mut joiner, 1001, 3);
    assert_eq!(joiner.member_id(), MemberId::new(3, 1002), "refused with nothing newer known: one up");
}

/// A joiner let into a view whose install never reaches it (in the field: an install larger
/// than the link takes) keeps asking to join. Its requests are no sign that it runs the view:
/// it must be suspected of silence like any member that never speaks in it, so that the view
/// goes on without it. Before, its Joins counted as liveness: it was never suspected, never
/// acknowledged anything, and total and safe delivery stopped for good.
#[test]
fn a_joiner_that_never_installs_is_excluded_and_the_group_goes_on() {
    // With state transfer, the joiner is a loading member, which lag suspicion spares.
    let mut c = Cluster::with(4, |c| c.state_transfer = true);
    c.no_installs.insert(3);
    c.run(Duration::from_secs(2));
    let admitted = |c: &Cluster| {
        c.events[0]
            .iter()
            .any(|e| matches!(e, Event::ViewInstalled { view, .. } if view.contains_node(NodeId(3))))
    };
    assert!(admitted(&c), "node 3 was let into a view at node 0: {:?}", c.view_of(0));
    assert_eq!(c.nodes[3].as_ref().map(|n| n.status()), Some(Status::Joining));
    for k in 0..20u64 {
        let now = c.now;
        let n = c.nodes[0].as_mut().expect("up");
        let _ = n.multicast_ordered(now, Bytes::from(format!("t{k}")), Order::Total);
        c.run(Duration::from_millis(100));
    }
    c.run(Duration::from_secs(2));
    for i in 0..3 {
        let got = c.delivered[i].iter().filter(|d| d.2.starts_with(b"t")).count();
        assert!(got > 0, "node {i} delivered none of the total-order messages: the group stalled");
    }
    let without_3_after = c.events[0]
        .iter()
        .skip_while(|e| !matches!(e, Event::ViewInstalled { view, .. } if view.contains_node(NodeId(3))))
        .any(|e| matches!(e, Event::ViewInstalled { view, .. } if !view.contains_node(NodeId(3))));
    let why: Vec<String> = c.events[0]
        .iter()
        .filter_map(|e| match e {
            Event::Suspected { member, reason } => Some(format!("{member}: {reason}")),
            _ => None,
        })
        .collect();
    assert!(without_3_after, "node 3, which never installed, was excluded; suspicions at node 0: {why:?}");
    assert!(why.iter().all(|w| w.starts_with("n3.") && w.contains("silent")), "{why:?}");
}

/// A view change whose flush is larger than a frame: node 3's 60 total-order messages of 1 KiB
/// reach only node 4 before 3 and the coordinator die, so node 4's promise and the new
/// coordinator's accept and install each carry about 60 KiB, with frames of at most 16 KiB
/// (batches of 8 KiB). They go in pieces and are put back together; every survivor delivers
/// the dead sender's messages in one order. Before, such a message went whole in a frame
/// above every receiver's limit and the view change never completed.
#[test]
fn a_flush_larger_than_a_frame_goes_in_pieces() {
    let mut c = Cluster::with(5, |c| {
        c.max_frame = 16 << 10;
        c.max_payload = 2048;
    });
    c.run(Duration::from_secs(2));
    assert_eq!(c.view_of(4), Some(vec![0, 1, 2, 3, 4]));
    for j in [0u64, 1, 2] {
        c.cut.insert((3, j));
    }
    let now = c.now;
    for k in 0..60u64 {
        let mut p = vec![b'x'; 1024];
        p[..8].copy_from_slice(&k.to_le_bytes());
        c.nodes[3].as_mut().expect("up").multicast_ordered(now, Bytes::from(p), Order::Total).expect("sent");
    }
    c.step(Duration::from_millis(1));
    c.nodes[3] = None;
    c.nodes[0] = None;
    c.cut.clear();
    c.run(Duration::from_secs(5));
    let reference = sequence(&c, 4, Order::Total);
    assert_eq!(reference.iter().filter(|(s, _)| *s == 3).count(), 60, "node 4 delivered them all");
    for i in [1usize, 2, 4] {
        assert_eq!(c.view_of(i), Some(vec![1, 2, 4]), "node {i}");
        assert_eq!(sequence(&c, i, Order::Total), reference, "node {i}");
    }
    let marks = |m: chorus_core::Mark| {
        [1usize, 2, 4].iter().map(|&i| c.nodes[i].as_ref().map_or(0, |n| n.marks().get(m))).sum::<u64>()
    };
    assert!(marks(chorus_core::Mark::Fragmented) > 0, "something was cut into pieces");
    assert!(marks(chorus_core::Mark::Reassembled) > 0, "and put back together");
}

/// A payload larger than the send window goes alone, in pieces, and is delivered everywhere.
#[test]
fn a_payload_larger_than_the_window_goes_alone_in_pieces() {
    let mut c = Cluster::with(3, |c| {
        c.max_payload = 20 << 20;
        c.max_members = 8;
    });
    c.run(Duration::from_secs(2));
    let big = Bytes::from(vec![7u8; 16 << 20]);
    let now = c.now;
    c.nodes[0].as_mut().expect("up").multicast_ordered(now, big.clone(), Order::Total).expect("sent alone");
    let now = c.now;
    let r =
        c.nodes[0].as_mut().expect("up").multicast_ordered(now, Bytes::from_static(b"after"), Order::Total);
    assert_eq!(r, Err(chorus_core::SendError::WindowFull), "nothing goes with it");
    c.run(Duration::from_secs(2));
    for i in 0..3 {
        assert!(c.delivered[i].iter().any(|d| d.2 == big), "node {i} delivered the large payload");
    }
}

/// A member that learns, in one step, that the change it is accepting is chosen and leaves it
/// out still sends its acceptance, under the life that gave it: the others may need that vote
/// to learn the decision (seeds 7004928, 7080851: it was dropped with the rest of the queue,
/// and a change whose coordinator then died waited for promises the departed could not give).
#[test]
fn a_departing_member_still_sends_the_vote_it_gave() {
    let mut c = Cluster::new(5);
    c.run(Duration::from_secs(2));
    assert_eq!(c.view_of(4), Some(vec![0, 1, 2, 3, 4]));
    let old3 = c.nodes[3].as_ref().expect("up").member_id();
    // 3 leaves. The coordinator's Accept of the view without it reaches the others at once and
    // 3 late, after their acceptances: 3 then accepts and learns that the change is chosen in
    // the same step.
    c.hold_accepts.insert((0, 3));
    let now = c.now;
    c.nodes[3].as_mut().expect("up").leave(now);
    for _ in 0..400 {
        c.step(Duration::from_millis(5));
        if !c.held.is_empty() {
            break;
        }
    }
    assert!(!c.held.is_empty(), "the coordinator proposed a view without 3");
    let now = c.now;
    let n3 = c.nodes[3].as_mut().expect("up");
    for (from, t) in std::mem::take(&mut c.held) {
        n3.handle_frame(now, NodeId(from), &t.frame).expect("valid frame");
    }
    assert_eq!(n3.status(), Status::Left, "3 learned the change is chosen and is gone");
    let mut votes = BTreeSet::new();
    while let Some(t) = n3.poll_transmit() {
        let body = wire::decode(&t.frame, usize::MAX).expect("valid frame");
        if body.from == old3 && body.msgs.iter().any(|m| matches!(m, Msg::Accepted { .. })) {
            votes.insert(t.to.0);
        }
    }
    assert_eq!(votes, BTreeSet::from([0, 1, 2, 4]), "its acceptance went to every other member");
    assert!(n3.marks().get(chorus_core::Mark::VoteAfterExclusion) > 0);
    // And the vote stays on its disk: a later life that speaks for 3 in that view must not
    // promise as if 3 had accepted nothing (seed 2211: a second proposal was chosen).
    let kept = n3.poll_persist().and_then(|p| p.membership).expect("the voting life is kept on disk");
    assert_eq!(kept.me, old3);
    assert!(kept.accepted.is_some(), "with what it accepted");
}

/// Partial connectivity (OmniPaxos's "constrained election"): every node hears only node 4,
/// which hears everyone; no three nodes hear each other, so no view can form. Once the links
/// heal, the group must be back in one view promptly.
#[test]
fn after_a_star_partition_heals_the_group_is_back_promptly() {
    let mut c = Cluster::new(5);
    c.run(Duration::from_secs(2));
    assert_eq!(c.view_of(0), Some(vec![0, 1, 2, 3, 4]));
    for i in 0..4u64 {
        for j in 0..4u64 {
            if i != j {
                c.cut.insert((i, j));
            }
        }
    }
    c.run(Duration::from_secs(15));
    c.cut.clear();
    let healed = c.now;
    let mut back = None;
    for _ in 0..(30_000 / 5) {
        c.step(Duration::from_millis(5));
        let views: Vec<_> = (0..5).map(|i| c.view_of(i)).collect();
        if views.iter().all(|v| v.as_ref().is_some_and(|v| v.len() == 5))
            && views.windows(2).all(|w| w[0] == w[1])
            && (0..5).all(|i| c.nodes[i].as_ref().is_some_and(|n| n.status() == Status::Member))
        {
            back = Some(c.now.since(healed));
            break;
        }
    }
    eprintln!("back in one view {back:?} after the heal");
    let back = back.expect("one view of all five within 30 s of the heal");
    assert!(back < Duration::from_secs(3), "took {back:?}");
}

/// A chain (OmniPaxos's "chained" case): 0-1 and 1-2 hear each other, 0-2 do not. The node
/// left out re-joins through node 1 and is excluded again; each time costs a view change. The
/// coordinator holds back a node excluded again and again, so the majority's view stays up
/// most of the time; after the heal everyone is back within the longest hold.
#[test]
fn a_node_heard_by_part_of_the_view_does_not_churn_it() {
    let mut c = Cluster::new(3);
    c.run(Duration::from_secs(2));
    assert_eq!(c.view_of(0), Some(vec![0, 1, 2]));
    let installs =
        |c: &Cluster| c.events[1].iter().filter(|e| matches!(e, Event::ViewInstalled { .. })).count();
    let before = installs(&c);
    c.cut.insert((0, 2));
    c.cut.insert((2, 0));
    c.run(Duration::from_secs(15));
    let during = installs(&c) - before;
    eprintln!("{during} views installed at node 1 in 15 s of a chain");
    // Measured: 15 with the hold, 54 without.
    assert!(during <= 20, "the view churned: {during} views in 15 s");
    assert!(c.nodes[1].as_ref().is_some_and(|n| n.marks().get(chorus_core::Mark::ReadmitDelayed) > 0
        || c.nodes[0].as_ref().is_some_and(|n| n.marks().get(chorus_core::Mark::ReadmitDelayed) > 0)
        || c.nodes[2].as_ref().is_some_and(|n| n.marks().get(chorus_core::Mark::ReadmitDelayed) > 0)));
    c.cut.clear();
    c.run(Duration::from_secs(4));
    for i in 0..3 {
        assert_eq!(c.view_of(i).map(|v| v.len()), Some(3), "node {i} back in the view after the heal");
    }
}
