//! The nodes' side of the replicated store (`crate::store`): each life's replica, driven by its
//! core's events as `chorus-kv`'s driver drives it (multicasts in the order asked, group commit
//! while a multicast waits, syncs of the log off the replica's path, snapshots), the clients'
//! requests, and the store's checks at view boundaries and at the end.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use chorus_core::{Config, Event, MemberId, Order, Recovery, SendError};
use chorus_kv::{KvMachine, Reply};
use chorus_smr::storage::{Dir, WalSync};
use chorus_smr::{Action, Consistency, Phase as ReplicaPhase, Replica, ReplicaConfig, ReplicaError, Ticket};

use super::{life_of, own_len, Cluster, Failure, Phase, Slot, Step};
use crate::store::{durable_options, OpKind, Request, Retry, KEYS};

/// One life's replica and what it has in flight.
#[derive(Debug)]
pub(super) struct KvNode {
    replica: Replica<KvMachine>,
    /// Multicasts the replica asked for that the node could not take yet, each with the member
    /// that asked (a later life never sends an earlier one's: the runtime's `Superseded`).
    outbox: VecDeque<(MemberId, Order, Bytes)>,
    /// Requests waiting for their reply: ticket, operation.
    waiting: BTreeMap<Ticket, usize>,
    /// A sync of the log under way on the disk (it ends at the next sync step).
    sync_out: Option<WalSync>,
    /// The replica's position when last seen (for `Disk::shadow`).
    last_pos: u64,
    /// Each client's requests in its session at this node (as a connection's in `chorus-kv`).
    seqs: BTreeMap<usize, u64>,
}

impl KvNode {
    fn new(replica: Replica<KvMachine>, last_pos: u64) -> KvNode {
        KvNode {
            replica,
            outbox: VecDeque::new(),
            waiting: BTreeMap::new(),
            sync_out: None,
            last_pos,
            seqs: BTreeMap::new(),
        }
    }
}

/// The order a replica's multicast travels in. With disks, read barriers go in safe order:
/// the trace's reference machine applies every total and safe message, and a total one may be
/// delivered by a member that crashes and by no one else, which would make the state that
/// member recovers differ from the group's at the same position of the replica's log.
fn wire_order(order: Order, disks: bool, fifo_writes: bool) -> Order {
    match order {
        Order::Safe if fifo_writes => Order::Fifo,
        Order::Total if disks => Order::Safe,
        o => o,
    }
}

impl Cluster {
    /// Whether the store's deliberate bug is `m`.
    #[cfg(feature = "mutants")]
    fn store_mutant(&self, m: crate::store::StoreMutant) -> bool {
        self.store.as_ref().is_some_and(|s| s.mutant == Some(m))
    }

    fn fifo_writes(&self) -> bool {
        #[cfg(feature = "mutants")]
        return self.store_mutant(crate::store::StoreMutant::WritesInFifo);
        #[cfg(not(feature = "mutants"))]
        false
    }

    fn store_failed(&mut self, why: String) {
        if self.failure.is_none() {
            self.failure = Some(Failure::Store(why));
        }
    }

    /// The replica of `node` starting as member `me`. With disks it comes back from its data
    /// directory, its stored state offered for recovery if its last membership owns it (set in
    /// `config`); returns it with the reference machine's state at the offered position.
    pub(super) fn open_replica(
        &mut self,
        node: u64,
        me: MemberId,
        config: &mut Config,
    ) -> Result<(KvNode, Option<(u64, u64)>), String> {
        // A batch of commands must fit in one multicast.
        let cfg = ReplicaConfig {
            max_command: config.max_payload / 4,
            max_batch: config.max_payload / 2,
            max_pending: 1024,
            ..ReplicaConfig::default()
        };
        if !self.o.disks.on {
            return Ok((KvNode::new(Replica::new(KvMachine::new(), me, cfg), 0), None));
        }
        let d = self.disks.get_mut(node as usize).ok_or_else(|| format!("n{node} has no disk"))?;
        let dir: Arc<dyn Dir> = Arc::new(d.kv_dir.clone());
        let (mut replica, _) = Replica::open(KvMachine::new(), me, cfg, dir, durable_options())
            .map_err(|e| format!("n{node} cannot open its disk: {e}"))?;
        let membership = d.persisted.as_ref().and_then(|p| p.membership.clone());
        let offered = replica.offer(membership.as_ref().map(|m| m.me));
        if let Some(m) = membership {
            config.recovery = Some(Recovery { membership: m, state: offered });
        }
        config.recover_all = false; // `appendfsync always`
        let stored = match offered {
            Some(pos) => {
                // What its disk holds is the history it logged last; positions after it are gone.
                let _ = d.shadow.split_off(&(pos + 1));
                let at = d.shadow.get(&pos).copied();
                Some(at.ok_or_else(|| {
                    format!("n{node} offers position {pos} of its disk, which it never logged")
                })?)
            }
            None => {
                d.shadow.clear();
                d.shadow.insert(0, (0, 0));
                None
            }
        };
        if offered.is_some_and(|pos| pos > 0) {
            if let Some(s) = self.store.as_mut() {
                s.stats.recovered += 1;
            }
        }
        Ok((KvNode::new(replica, offered.unwrap_or(0)), stored))
    }

    /// A client sends its next operation to a node chosen at random among those running.
    pub(super) fn store_client(&mut self, client: usize) {
        if self.phase == Phase::Done || self.now >= self.workload_until || self.failure.is_some() {
            return;
        }
        let ready: Vec<u64> = (0..self.o.total_nodes())
            .filter(|n| {
                matches!(self.slots.get(*n as usize),
                    Some(Slot::Up(l)) if !l.paused && l.leaving.is_none() && l.kv.is_some())
            })
            .collect();
        let Some(store) = self.store.as_mut() else { return };
        if store.busy(client) {
            return;
        }
        if ready.is_empty() {
            let t = self.now + store.think();
            self.push(t, Step::StoreClient(client));
            return;
        }
        let node = ready[store.pick(ready.len())];
        let kind = store.draw();
        let request = match kind.request() {
            Ok(r) => r,
            Err(e) => return self.store_failed(e),
        };
        let defer = store.defer();
        let timeout = store.opts.timeout;
        #[cfg(feature = "mutants")]
        let no_barrier = self.store_mutant(crate::store::StoreMutant::ReadsWithoutBarrier);
        #[cfg(not(feature = "mutants"))]
        let no_barrier = false;
        let now_ms = self.local(node).as_nanos() / 1_000_000;
        let now = self.now;
        let Cluster { slots, store, .. } = self;
        let (Some(store), Some(l)) = (store.as_mut(), life_of(slots, node)) else { return };
        let Some(k) = l.kv.as_mut() else { return };
        // A session per client and node's life (a connection to that server), requests
        // numbered in it, as `chorus-kv`'s server gives them.
        let session = (l.id << 8) | (client as u64 + 1);
        let retry = match &request {
            Request::Write(cmd) => {
                let seq = k.seqs.entry(client).or_default();
                *seq += 1;
                Some(Retry { life: l.id, session, seq: *seq, cmd: cmd.clone(), sent_again: false })
            }
            Request::Read(..) => None,
        };
        let op = store.invoke(client, node, k.replica.me(), kind, now, retry.clone());
        let answer = match (request, retry) {
            (Request::Write(cmd), Some(r)) => k.replica.submit(r.session, r.seq, &cmd, now_ms).map(Err),
            (Request::Write(cmd), None) => k.replica.submit(0, 0, &cmd, now_ms).map(Err),
            (Request::Read(q, c), _) => {
                let c = if no_barrier { Consistency::Local } else { c };
                k.replica.read(q, c, now_ms)
            }
        };
        match answer {
            Ok(Err(ticket)) => {
                k.waiting.insert(ticket, op);
                self.push(now + timeout, Step::StoreTimeout { client, op });
                if !defer {
                    self.drain(node);
                }
            }
            Ok(Ok(reply)) => self.answered(op, Ok(reply)),
            Err(e) => self.answered(op, Err(e)),
        }
    }

    /// Operation `op` got its answer; its client goes on after a while.
    fn answered(&mut self, op: usize, result: Result<Reply, ReplicaError>) {
        let now = self.now;
        let Some(store) = self.store.as_mut() else { return };
        match store.complete(op, result, now) {
            Ok(Some(client)) => {
                let t = now + store.think();
                self.push(t, Step::StoreClient(client));
            }
            Ok(None) => {}
            Err(why) => self.store_failed(why),
        }
    }

    /// A client stops waiting for `op`: its outcome is unknown.
    /// A client stops waiting for `op`: it sends a write again to the same node (once, half the
    /// time), or gives up (the outcome is unknown).
    pub(super) fn store_timeout(&mut self, client: usize, op: usize) {
        let now = self.now;
        let Some(store) = self.store.as_mut() else { return };
        if let Some(r) = store.retry(op) {
            let node = store.ops.get(op).map_or(u64::MAX, |o| o.node);
            let timeout = store.opts.timeout;
            let now_ms = self.local(node).as_nanos() / 1_000_000;
            let ready = |l: &super::Life| l.id == r.life && !l.paused && l.leaving.is_none();
            let k = life_of(&mut self.slots, node).filter(|l| ready(l)).and_then(|l| l.kv.as_mut());
            if let Some(k) = k {
                // If refused, the first request may still be applied: the outcome is unknown.
                if let Ok(ticket) = k.replica.submit(r.session, r.seq, &r.cmd, now_ms) {
                    k.waiting.insert(ticket, op);
                    self.push(now + timeout, Step::StoreTimeout { client, op });
                    self.drain(node);
                    return;
                }
            }
        }
        let Some(store) = self.store.as_mut() else { return };
        if let Some(client) = store.unknown(op, "timeout", now) {
            let t = now + store.think();
            self.push(t, Step::StoreClient(client));
        }
    }

    /// A life ends. A node that leaves answers what its replica answered on leaving (UNCERTAIN
    /// for the commands in flight) before it goes; after a crash, or for what got no answer,
    /// the outcome is unknown.
    pub(super) fn cut_off(&mut self, l: &mut super::Life) {
        let Some(k) = l.kv.as_mut() else { return };
        if l.leaving.is_some() {
            while let Some(a) = k.replica.poll_action() {
                if let Action::Reply { ticket, result } = a {
                    if let Some(op) = k.waiting.remove(&ticket) {
                        self.answered(op, result);
                    }
                }
            }
        }
        let now = self.now;
        let why = if l.leaving.is_some() { "the node left" } else { "the node crashed" };
        let Some(store) = self.store.as_mut() else { return };
        let mut next = Vec::new();
        for op in k.waiting.values() {
            if let Some(client) = store.unknown(*op, why, now) {
                next.push((now + store.think(), client));
            }
        }
        for (t, client) in next {
            self.push(t, Step::StoreClient(client));
        }
    }

    /// Hands an event of the core to the node's replica (its part of a transfer's bytes, which
    /// follow the reference machine's), then checks the state it starts a view with or loaded.
    /// Returns whether the replica's log may have moved (for `Disk::shadow`).
    pub(super) fn replica_event(&mut self, node: u64, e: &Event) -> bool {
        let own = own_len(&self.o).unwrap_or(0);
        let fifo_writes = self.fifo_writes();
        let Cluster { slots, digests, store, failure, .. } = self;
        let (Some(store), Some(l)) = (store.as_mut(), life_of(slots, node)) else { return false };
        let Some(k) = l.kv.as_mut() else { return false };
        let ev = match e {
            Event::Delivered { id, order, payload } => {
                if digests.is_workload(payload) {
                    return false;
                }
                let order = if fifo_writes && *order == Order::Fifo { Order::Safe } else { *order };
                Event::Delivered { id: *id, order, payload: payload.clone() }
            }
            Event::StateChunk { view, offset, data } => {
                let end = offset + data.len() as u64;
                if end <= own {
                    return false;
                }
                let skip = own.saturating_sub(*offset);
                let data = data.slice(usize::try_from(skip).unwrap_or(usize::MAX).min(data.len())..);
                Event::StateChunk { view: *view, offset: offset + skip - own, data }
            }
            Event::StateLoaded { view, len } => {
                Event::StateLoaded { view: *view, len: len.saturating_sub(own) }
            }
            other => other.clone(),
        };
        k.replica.on_event(ev);
        let who = || crate::recorder::show(l.proc_);
        let verdict = match e {
            Event::ViewInstalled { view, loading, .. }
                if l.app.holds && !loading.contains(&k.replica.me()) =>
            {
                let pos = k.replica.status().pos;
                store.boundary(view.id.0, pos, k.replica.digest(), who())
            }
            Event::StateLoaded { view, .. } => {
                let s = k.replica.status();
                if s.phase == ReplicaPhase::Ready {
                    store.loaded(view.0, s.pos, k.replica.digest(), who())
                } else {
                    Ok(()) // It failed to load: its `Fatal` action says why.
                }
            }
            _ => Ok(()),
        };
        if let Err(why) = verdict {
            failure.get_or_insert(Failure::Store(why));
        }
        matches!(e, Event::Delivered { .. } | Event::ViewInstalled { .. } | Event::StateLoaded { .. })
    }

    /// Records the reference machine's state at the replica's position, if it moved (`loaded`:
    /// the replica's disk now holds only the loaded state).
    pub(super) fn shadow(&mut self, node: u64, loaded: bool) {
        let Cluster { slots, disks, .. } = self;
        let (Some(l), Some(d)) = (life_of(slots, node), disks.get_mut(node as usize)) else { return };
        let Some(k) = l.kv.as_mut() else { return };
        let pos = k.replica.status().pos;
        if loaded {
            d.shadow.clear();
        } else if pos == k.last_pos {
            return;
        }
        k.last_pos = pos;
        d.shadow.insert(pos, (l.app.applied, l.app.hash));
    }

    /// Carries out the replica's actions: multicasts (in the order asked; a batch of commands
    /// waits while an earlier multicast does), replies, its checkpoint (streamed after the
    /// reference machine's), stored positions, snapshots. Returns whether anything happened.
    pub(super) fn pump_replica(&mut self, node: u64) -> bool {
        let now = self.local(node);
        let now_ms = now.as_nanos() / 1_000_000;
        let (disks, fifo_writes) = (self.o.disks.on, self.fifo_writes());
        let Some(l) = life_of(&mut self.slots, node) else { return false };
        let Some(k) = l.kv.as_mut() else { return false };
        let mut moved = false;
        let mut replies = Vec::new();
        let mut sent = Vec::new();
        let mut fatal = None;
        k.replica.hold_batch(!k.outbox.is_empty());
        while let Some(a) = k.replica.poll_action() {
            moved = true;
            match a {
                Action::Multicast { order, payload } => k.outbox.push_back((k.replica.me(), order, payload)),
                Action::Reply { ticket, result } => {
                    if let Some(op) = k.waiting.remove(&ticket) {
                        replies.push((op, result));
                    }
                }
                Action::Checkpoint { view, state } => {
                    if let Some(w) = l.app.writer.as_mut().filter(|w| w.view == view) {
                        w.attach(state);
                    }
                }
                Action::Durable { pos } => l.node.set_durable(now, pos),
                Action::Fatal { reason } => fatal = Some(reason),
            }
        }
        while let Some((by, order, payload)) = k.outbox.front() {
            if *by != k.replica.me() {
                k.outbox.pop_front();
                continue;
            }
            let order = wire_order(*order, disks, fifo_writes);
            match l.node.multicast_ordered(now, payload.clone(), order) {
                Ok(id) => {
                    sent.push((id, payload.clone(), order));
                    k.outbox.pop_front();
                    moved = true;
                }
                Err(e) if e.is_transient() => break,
                Err(SendError::Left) => {
                    k.outbox.clear();
                    break;
                }
                Err(e) => {
                    fatal = Some(format!("the node refused its multicast: {e}"));
                    break;
                }
            }
        }
        if let Some(job) = k.replica.snapshot_job(false) {
            k.replica.snapshot_done(job.run(), now_ms);
            moved = true;
        }
        for (id, payload, order) in sent {
            self.sent(node, id, &payload, order, false);
        }
        for (op, result) in replies {
            self.answered(op, result);
        }
        if let Some(reason) = fatal {
            self.store_failed(format!("n{node}'s replica stopped: {reason}"));
        }
        moved
    }

    /// With disks: the sync of the log that was under way ends (a disk takes `sync_every`), and
    /// the next one starts with what was logged meanwhile (group commit).
    pub(super) fn sync_replica(&mut self, node: u64, life: u64) {
        let now_ms = self.local(node).as_nanos() / 1_000_000;
        let every = self.o.disks.sync_every;
        let Some(l) = life_of(&mut self.slots, node) else { return };
        if l.id != life {
            return;
        }
        if !l.paused {
            if let Some(k) = l.kv.as_mut() {
                if let Some(job) = k.sync_out.take() {
                    k.replica.sync_finish(job.run(), &|| 0);
                }
                k.sync_out = k.replica.sync_start(now_ms, &|| 0);
            }
            self.drain(node);
        }
        self.push(self.now + every, Step::Sync { node, life });
    }

    /// At the end, every node back in one view and quiet: every replica holds the same state,
    /// whose reads are the history's final reads; then the whole history is judged.
    pub(super) fn judge_store(&mut self) -> Result<(), String> {
        let mut first: Option<(u64, u64, String)> = None;
        for s in &self.slots {
            let Slot::Up(l) = s else { continue };
            let Some(k) = &l.kv else { continue };
            let (pos, digest) = (k.replica.status().pos, k.replica.digest());
            let who = crate::recorder::show(l.proc_);
            match &first {
                Some((p, d, w)) if (*p, *d) != (pos, digest) => {
                    return Err(format!(
                        "replicas disagree at the end: {who} is at position {pos} (digest {digest:#x}), {w} at {p} (digest {d:#x})"
                    ));
                }
                Some(_) => {}
                None => first = Some((pos, digest, who)),
            }
        }
        let reader = (0..self.o.total_nodes())
            .find(|n| matches!(self.slots.get(*n as usize), Some(Slot::Up(l)) if l.kv.is_some()));
        let Some(node) = reader else { return Err("no replica at the end".into()) };
        let now_ms = self.local(node).as_nanos() / 1_000_000;
        let Some(l) = life_of(&mut self.slots, node) else { return Err("no replica at the end".into()) };
        let Some(k) = l.kv.as_mut() else { return Err("no replica at the end".into()) };
        let mut finals = Vec::new();
        for key in KEYS {
            let kind = if key.starts_with('l') {
                OpKind::Range { key, linear: false }
            } else {
                OpKind::Get { key, linear: false }
            };
            let Request::Read(q, _) = kind.request()? else { return Err(format!("{kind} is not a read")) };
            match k.replica.read(q, Consistency::Local, now_ms) {
                Ok(Ok(reply)) => finals.push((key, reply)),
                other => return Err(format!("the final read of {key} at n{node} was refused: {other:?}")),
            }
        }
        let now = self.now;
        match self.store.as_mut() {
            Some(store) => store.judge(&finals, now),
            None => Ok(()),
        }
    }
}
