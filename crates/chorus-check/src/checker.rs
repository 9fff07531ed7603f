//! The checker: shared per-process state, dispatching each event to the invariants.

use std::fmt;

use crate::hash::FastMap;
use crate::invariants::replica_determinism::{self, Origin, Replica};
use crate::invariants::state_transfer::{self, Report};
use crate::invariants::transfer_atomicity::{self, Transfer};
use crate::invariants::{
    causal, durability, fifo, integrity, liveness, one_history, safe, self_inclusion, sending_view, total,
    view_agreement, virtual_synchrony,
};
use crate::trace::{chain, Ev, Proc, TraceEvent};
use crate::violation::{MsgId, Violation};

/// Name of the harness phase from which G12 applies.
pub(crate) const LIVENESS_PHASE: &str = "liveness";

/// Checks a trace against DESIGN §3 (G1–G12) and TESTING §2.4 (ST2, ST3), one event at a time.
///
/// Feed every event in trace order to [`Checker::observe`], then call [`Checker::finish`]
/// (G9 for processes still in their view at the end, and G12).
/// Once a violation is found the checker stops judging: every later call returns that same
/// violation, so its state never has to make sense of a broken history.
///
/// The state-transfer checks (G11, ST2, ST3) judge the `loading` lists of installs and the
/// `digest` and `state_loaded` lines; a trace without them (written before state transfer
/// existed, or with it switched off) passes them trivially.
#[derive(Debug, Default)]
pub struct Checker {
    procs: Procs,
    /// Newest incarnation started on each node.
    newest_inc: FastMap<u64, u64>,
    /// Every view id installed so far, with the member list first seen for it.
    views: Views,
    integrity: integrity::Integrity,
    causal: causal::Causal,
    total: total::TotalOrder,
    safe: safe::Safe,
    virtual_synchrony: virtual_synchrony::VirtualSynchrony,
    state_transfer: state_transfer::StateTransfer,
    replica_determinism: replica_determinism::ReplicaDeterminism,
    liveness: liveness::Liveness,
    durability: durability::Durability,
    last_t: u64,
    end_t: Option<u64>,
    failed: Option<Violation>,
}

/// Every process life seen, by identity.
pub(crate) type Procs = FastMap<Proc, ProcState>;

/// Every view id installed so far.
pub(crate) type Views = FastMap<u64, ViewRecord>;

/// A delivered set, per sender the highest seq: the set is `1..=seq` (see [`ProcState`]).
pub(crate) type Delivered = FastMap<Proc, u64>;

/// What the checker knows of one process life.
#[derive(Debug, Default)]
pub(crate) struct ProcState {
    /// Started and not yet crashed, excluded or left.
    pub(crate) live: bool,
    /// Current view id, once it has installed one.
    pub(crate) view: Option<u64>,
    /// Messages it sent in its current view; G7 makes their seqs exactly `1..=sent`.
    pub(crate) sent: u64,
    /// Per sender, the highest seq it delivered in its current view. G6 and G7 are checked on
    /// every delivery before this is updated, so the delivered set from `s` is exactly
    /// `1..=delivered[s]`: this map *is* the delivered set, at the cost of one entry per sender.
    pub(crate) delivered: Delivered,
    /// The total and safe messages it delivered in its current view, in order (for G9).
    pub(crate) totals: Vec<MsgId>,
    /// Its life began with `start` `bootstrap`: it founds the group, with the initial state.
    pub(crate) bootstrap: bool,
    /// Whether its current view lists it in `loading`, and whether it loaded there (ST2).
    pub(crate) transfer: Transfer,
    /// It reported a `digest` in its current view already.
    pub(crate) digest_reported: bool,
    /// Its replicated state, replayed from its last report (ST3); `None` while it holds no
    /// state or the trace reported none yet.
    pub(crate) replica: Option<Replica>,
}

/// The state of a replicated state machine as `digest` and `state_loaded` lines report it: how
/// many total and safe messages it applied, and the [`chain`] of their payload digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AppState {
    pub(crate) applied: u64,
    pub(crate) hash: u64,
}

impl AppState {
    /// Before anything is applied.
    pub(crate) const INITIAL: AppState = AppState { applied: 0, hash: 0 };

    /// Applies a message whose payload digest is `digest`.
    pub(crate) fn apply(&mut self, digest: u64) {
        self.applied = self.applied.wrapping_add(1);
        self.hash = chain(self.hash, digest);
    }
}

/// `applied 3, hash 0x1f…`
impl fmt::Display for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "applied {}, hash {:#x}", self.applied, self.hash)
    }
}

/// A view id as first installed.
#[derive(Debug)]
pub(crate) struct ViewRecord {
    pub(crate) members: Vec<Proc>,
    /// Its `loading` list, the same at every install (G1).
    pub(crate) loading: Vec<Proc>,
    /// Its `recovered` list (G2).
    pub(crate) recovered: Vec<Proc>,
    /// Who installed it first, for reports.
    pub(crate) first: Proc,
}

impl Checker {
    /// An empty checker, before the first event.
    pub fn new() -> Self {
        Self::default()
    }

    /// Safety checks, incremental: call for every event in trace order. Returns the first
    /// violation (and keeps returning it).
    pub fn observe(&mut self, ev: &TraceEvent) -> Result<(), Violation> {
        if let Some(v) = &self.failed {
            return Err(v.clone());
        }
        let result = self.step(ev);
        if let Err(v) = &result {
            self.failed = Some(v.clone());
        }
        result
    }

    /// End-of-run checks, judged on everything observed: [`Checker::finish_safety`], then G12
    /// liveness if a `liveness` phase was observed. Call after the harness's `End` event.
    pub fn finish(&mut self) -> Result<(), Violation> {
        self.finish_safety()?;
        let t = self.end_t.unwrap_or(self.last_t);
        let result = self.liveness.finish(t, &self.procs, &self.views, &self.virtual_synchrony);
        if let Err(v) = &result {
            self.failed = Some(v.clone());
        }
        result
    }

    /// The end-of-run safety checks alone: G9 for the processes still alive, whose stay in
    /// their current view ends with the run. For a harness that ends a run without judging
    /// liveness. (Calling it again, or [`Checker::finish`] after it, checks nothing twice.)
    pub fn finish_safety(&mut self) -> Result<(), Violation> {
        if let Some(v) = &self.failed {
            return Err(v.clone());
        }
        let t = self.end_t.unwrap_or(self.last_t);
        let mut alive: Vec<Proc> = self.procs.iter().filter(|(_, s)| s.live).map(|(p, _)| *p).collect();
        alive.sort_unstable();
        let mut result = Ok(());
        for p in alive {
            if let Some(state) = self.procs.get_mut(&p) {
                result = end_view(&mut self.total, t, p, state);
                if result.is_err() {
                    break;
                }
            }
        }
        if result.is_ok() {
            result = self.total.finish(t);
        }
        if let Err(v) = &result {
            self.failed = Some(v.clone());
        }
        result
    }

    fn step(&mut self, ev: &TraceEvent) -> Result<(), Violation> {
        let t = ev.t;
        self.last_t = self.last_t.max(t);
        let p = match (&ev.ev, ev.p) {
            (Ev::Phase { name }, _) => {
                if name == LIVENESS_PHASE {
                    self.liveness.arm();
                }
                return Ok(());
            }
            (Ev::End, _) => {
                self.end_t = Some(t);
                return Ok(());
            }
            (_, Some(p)) => p,
            (other, None) => return Err(integrity::no_process(t, kind(other))),
        };
        match &ev.ev {
            Ev::Start { bootstrap } => return self.start(t, p, *bootstrap),
            // Harness events: the harness may crash or pause whatever it likes, even a process
            // that already ended on its own.
            Ev::Crash => {
                return match self.procs.get_mut(&p) {
                    Some(state) if state.live => {
                        state.live = false;
                        end_view(&mut self.total, t, p, state)
                    }
                    _ => Ok(()),
                };
            }
            Ev::Pause | Ev::Resume => return Ok(()),
            _ => {}
        }
        let Some(state) = self.procs.get_mut(&p) else {
            return Err(integrity::not_started(t, p, kind(&ev.ev)));
        };
        if !state.live {
            return Err(integrity::ended(t, p, kind(&ev.ev)));
        }
        match &ev.ev {
            Ev::Install { view, members, loading, recovered } => {
                let view = *view;
                self_inclusion::on_install(t, p, view, members)?;
                let known = view_agreement::on_install(&self.views, t, p, view, members, loading)?;
                one_history::on_install(&self.views, t, p, state.view, view, members, recovered)?;
                if !known {
                    let record = ViewRecord {
                        members: members.clone(),
                        loading: loading.clone(),
                        recovered: recovered.clone(),
                        first: p,
                    };
                    self.views.insert(view, record);
                }
                let listed = loading.contains(&p);
                let transfer = transfer_atomicity::on_install(t, p, state.transfer, view, listed)?;
                if let Some(from) = state.view {
                    // Listed in `loading` of `from` and never loaded there: by ST2 it delivered
                    // nothing in `from`, and it holds no state. G4, G10 and G12's self-delivery
                    // do not apply to it in `from`: its delivered set is empty by design.
                    let cut_off = state.transfer.waiting() == Some(from);
                    // The set delivered in `from` is final now; moving it out also resets it.
                    let delivered = std::mem::take(&mut state.delivered);
                    let own = delivered.get(&p).copied().unwrap_or(0);
                    self.liveness.on_transition(p, from, state.sent, own, cut_off);
                    self.virtual_synchrony.on_transition(t, p, from, delivered, cut_off)?;
                    // G4 held: `p`'s set is the one the first process to leave `from` left there.
                    if let (false, Some((_, set))) = (cut_off, self.virtual_synchrony.survivor(from)) {
                        self.safe.on_transition(t, p, from, set)?;
                    }
                    end_view(&mut self.total, t, p, state)?;
                }
                let first = state.view.is_none();
                state.replica = replica_determinism::on_install(
                    state.replica.take(),
                    view,
                    first,
                    state.bootstrap,
                    listed,
                );
                state.view = Some(view);
                state.sent = 0;
                state.transfer = transfer;
                state.digest_reported = false;
            }
            Ev::Send { view, seq, digest, order } => {
                let id = MsgId { sender: p, view: *view, seq: *seq };
                sending_view::on_send(t, state.view, id)?;
                transfer_atomicity::on_send(t, p, state.transfer, id)?;
                fifo::on_send(t, state.sent, id)?;
                self.integrity.on_send(id, *digest, *order);
                self.causal.on_send(id, *order, &state.delivered);
                state.sent = *seq;
            }
            Ev::Deliver { sender, view, seq, digest, order } => {
                let (id, order) = (MsgId { sender: *sender, view: *view, seq: *seq }, *order);
                sending_view::on_deliver(t, p, state.view, id)?;
                transfer_atomicity::on_deliver(t, p, state.transfer, id)?;
                let listed = state.transfer != transfer_atomicity::Transfer::Unlisted;
                state_transfer::on_deliver(
                    t,
                    p,
                    id.view,
                    state.replica.as_ref(),
                    listed,
                    state.digest_reported,
                )?;
                let so_far = state.delivered.get(sender).copied().unwrap_or(0);
                self.integrity.on_deliver(t, p, id, *digest, order, so_far)?;
                fifo::on_deliver(t, p, so_far, id)?;
                self.causal.on_deliver(t, p, id, order, &state.delivered)?;
                self.safe.on_deliver(t, p, id, order, self.virtual_synchrony.survivor(id.view))?;
                state.delivered.insert(*sender, *seq);
                if order.is_total() {
                    state.totals.push(id);
                    if let Some(replica) = &mut state.replica {
                        replica.state.apply(*digest);
                    }
                }
            }
            Ev::Digest { view, applied, hash } => {
                let (view, reported) = (*view, AppState { applied: *applied, hash: *hash });
                let delivered_any = !state.delivered.is_empty();
                state_transfer::on_digest_line(t, p, state.view, view, state.digest_reported, delivered_any)?;
                transfer_atomicity::on_digest(t, p, state.transfer, view)?;
                replica_determinism::on_digest(t, p, view, state.replica.as_ref(), reported)?;
                state.digest_reported = true;
                state.replica = Some(Replica::new(reported, Origin::Digest(view)));
                self.durability.on_report(t, p, view, reported.applied)?;
                self.state_transfer.on_report(t, p, view, Report::Digest, reported)?;
                let from_disks = self.views.get(&view).is_some_and(|v| !v.recovered.is_empty());
                self.replica_determinism.on_report(t, p, view, reported, from_disks)?;
            }
            Ev::StateLoaded { view, applied, hash } => {
                let (view, loaded) = (*view, AppState { applied: *applied, hash: *hash });
                state.transfer = transfer_atomicity::on_state_loaded(t, p, state.view, state.transfer, view)?;
                state.replica = Some(Replica::new(loaded, Origin::Loaded(view)));
                self.durability.on_report(t, p, view, loaded.applied)?;
                self.state_transfer.on_report(t, p, view, Report::Loaded, loaded)?;
                let from_disks = self.views.get(&view).is_some_and(|v| !v.recovered.is_empty());
                self.replica_determinism.on_report(t, p, view, loaded, from_disks)?;
            }
            Ev::Excluded | Ev::Left => {
                state.live = false;
                end_view(&mut self.total, t, p, state)?;
            }
            Ev::Durable { view, applied } => self.durability.on_durable(p, *view, *applied),
            Ev::Suspect { .. } | Ev::Blocked { .. } => {}
            // Handled above.
            Ev::Start { .. } | Ev::Crash | Ev::Pause | Ev::Resume | Ev::Phase { .. } | Ev::End => {}
        }
        Ok(())
    }

    fn start(&mut self, t: u64, p: Proc, bootstrap: bool) -> Result<(), Violation> {
        if self.procs.contains_key(&p) {
            return Err(integrity::started_twice(t, p));
        }
        if let Some(&newest) = self.newest_inc.get(&p.node) {
            if newest >= p.inc {
                return Err(integrity::stale_incarnation(t, p, newest));
            }
            // A node runs one incarnation at a time: starting a new one ends the old one even
            // if no `crash` line says so (a killed real process writes no last words).
            let old_p = Proc { node: p.node, inc: newest };
            if let Some(old) = self.procs.get_mut(&old_p) {
                if old.live {
                    old.live = false;
                    end_view(&mut self.total, t, old_p, old)?;
                }
            }
        }
        self.newest_inc.insert(p.node, p.inc);
        self.procs.insert(p, ProcState { live: true, bootstrap, ..ProcState::default() });
        Ok(())
    }
}

/// `p`'s stay in its current view ends (next install, end of life, end of run): its sequence of
/// total and safe deliveries there is final (G9).
fn end_view(total: &mut total::TotalOrder, t: u64, p: Proc, state: &mut ProcState) -> Result<(), Violation> {
    let Some(view) = state.view else { return Ok(()) };
    total.on_view_end(t, p, view, std::mem::take(&mut state.totals))
}

/// Observes every event, then runs the end-of-run checks.
pub fn check_trace(events: &[TraceEvent]) -> Result<(), Violation> {
    let mut checker = Checker::new();
    for ev in events {
        checker.observe(ev)?;
    }
    checker.finish()
}

/// The `ev` tag of an event, for reports.
fn kind(ev: &Ev) -> &'static str {
    match ev {
        Ev::Start { .. } => "start",
        Ev::Install { .. } => "install",
        Ev::Send { .. } => "send",
        Ev::Deliver { .. } => "deliver",
        Ev::Digest { .. } => "digest",
        Ev::StateLoaded { .. } => "state_loaded",
        Ev::Suspect { .. } => "suspect",
        Ev::Durable { .. } => "durable",
        Ev::Blocked { .. } => "blocked",
        Ev::Excluded => "excluded",
        Ev::Left => "left",
        Ev::Crash => "crash",
        Ev::Pause => "pause",
        Ev::Resume => "resume",
        Ev::Phase { .. } => "phase",
        Ev::End => "end",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{p, Trace};
    use crate::Guarantee;

    #[test]
    fn the_first_violation_sticks() {
        let mut tr = Trace::group(&[p(1)], 1);
        tr.send(p(1), 1, 2);
        let mut checker = Checker::new();
        let mut first = None;
        for ev in &tr.events {
            if let Err(v) = checker.observe(ev) {
                first = Some(v);
                break;
            }
        }
        let Some(first) = first else { panic!("expected a violation") };
        assert_eq!(first.guarantee, Guarantee::G7Fifo);
        // A valid event afterwards still reports it, and so does finish.
        let next = TraceEvent { t: 99, p: Some(p(1)), ev: Ev::Pause };
        assert_eq!(checker.observe(&next), Err(first.clone()));
        assert_eq!(checker.finish(), Err(first));
    }

    #[test]
    fn end_of_run_violations_carry_the_end_time() {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a, b], 1);
        tr.phase("liveness").crash(b).end();
        let end_t = tr.events.last().map_or(0, |e| e.t);
        let v = tr.assert_violates(Guarantee::G12Liveness);
        assert_eq!(v.t, end_t);
    }

    #[test]
    fn other_phases_do_not_arm_liveness() {
        let mut tr = Trace::group(&[p(1), p(2)], 1);
        tr.phase("faults").crash(p(2)).end();
        tr.assert_ok();
    }

    #[test]
    fn violation_display_names_the_guarantee_and_time() {
        let v = Violation::new(Guarantee::G4VirtualSynchrony, 42, "boom");
        assert_eq!(v.to_string(), "G4 virtual synchrony violated at t=42ns: boom");
    }
}
