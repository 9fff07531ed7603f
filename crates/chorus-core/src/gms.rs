//! Group membership: the view change, run as one round of Paxos per view over a majority of
//! the current view, with the flush folded into it.
//!
//! ```text
//!  coordinator                         members of the current view V
//!  ── Prepare(ballot, my received) ──► wedge (stop sending and delivering in V), promise
//!  ◄─ Promise(received, accepted?, messages the coordinator lacks)
//!  choose: the proposal accepted under the highest ballot if any promise carries one, else
//!          next = promisers that are not suspected + joiners − leavers, and
//!          cut  = per sender, the highest message any promiser received
//!  ── Accept(ballot, proposal, messages the acceptor lacks) ──► store, accept
//!  ◄─ Accepted                         (a majority of V accepted: the proposal is chosen)
//!  ── Install(proposal, messages) ───► deliver exactly the cut, install `next`
//! ```
//!
//! Why it is safe: a view is installed only when chosen by a majority of V, and any two
//! majorities meet, so a later ballot adopts the same proposal (G1, G2). Every old member of
//! `next` promised the ballot that built the proposal, after wedging, so the cut covers all it
//! delivered; at install all deliver exactly the cut (G4). See docs/protocol/flush.md.

use std::collections::{BTreeMap, BTreeSet};

use crate::event::Event;
use crate::id::{GroupId, MemberId, View};
use crate::marks::Mark;
use crate::node::{InstallRecord, Node};
use crate::time::Instant;
use crate::wire::{Ballot, Data, Msg, Proposal, Rejoin};

/// A view change this member coordinates.
#[derive(Debug)]
pub(crate) struct Coord {
    ballot: Ballot,
    pub(crate) started: Instant,
    last_send: Instant,
    phase: Phase,
}

#[derive(Debug)]
enum Phase {
    /// Waiting for promises (by rank).
    Preparing { promises: BTreeMap<usize, Promised> },
    /// Waiting for a majority to accept.
    Accepting { proposal: Proposal, received: BTreeMap<usize, Vec<u64>>, accepted: BTreeSet<usize> },
}

#[derive(Debug)]
struct Promised {
    received: Vec<u64>,
    accepted: Option<(Ballot, Proposal)>,
    holds_state: bool,
    /// A restarted node speaking for this rank's earlier life.
    rejoin: Option<Rejoin>,
}

impl Node {
    /// The coordinator's periodic duties: start a view change when one is needed, resend,
    /// decide on timeouts, give up rounds that take too long.
    pub(crate) fn coord_tick(&mut self, now: Instant) {
        let coord_rank = self.coordinator_rank();
        let flush_timeout = self.cfg.flush_timeout;
        let resend_every = self.cfg.heartbeat_interval;
        let Some(m) = self.member_mut() else { return };
        if coord_rank != m.me {
            m.coord = None;
            return;
        }
        if let Some(c) = &m.coord {
            if now.since(c.started) >= flush_timeout {
                m.coord = None; // Retry at once with a higher ballot.
            }
        }
        if m.coord.is_none() {
            if now >= m.backoff_until && self.change_needed() {
                self.start_round(now);
            }
            return;
        }
        self.try_decide(now);
        let Some(m) = self.member_mut() else { return };
        let Some(c) = &mut m.coord else { return };
        if now.since(c.last_send) < resend_every {
            return;
        }
        c.last_send = now;
        let Some(m) = self.member() else { return };
        let Some(c) = &m.coord else { return };
        let view = m.view.id;
        let ballot = c.ballot;
        let mut out = Vec::new();
        match &c.phase {
            Phase::Preparing { promises } => {
                let coord_received: Vec<u64> = m.senders.iter().map(|s| s.received).collect();
                for (r, x) in m.view.members.iter().enumerate() {
                    if !promises.contains_key(&r) {
                        out.push((*x, Msg::Prepare { view, ballot, coord_received: coord_received.clone() }));
                    }
                }
            }
            Phase::Accepting { proposal, received, accepted } => {
                for (r, rec) in received {
                    if !accepted.contains(r) {
                        let msgs = missing(m, rec, &proposal.cut);
                        out.push((
                            m.view.members[*r],
                            Msg::Accept { view, ballot, proposal: proposal.clone(), msgs },
                        ));
                    }
                }
            }
        }
        for (to, msg) in out {
            self.queue_member(to, msg);
        }
    }

    /// Whether the view must change: failures, joins, leaves, or a member already wedged.
    fn change_needed(&self) -> bool {
        let Some(m) = self.member() else { return false };
        let excluded = self.exclusions();
        let staying = m.view.members.len().saturating_sub(excluded.len());
        m.wedged
            || (!m.pending_joins.is_empty() && self.join_room(&excluded))
            || !excluded.is_empty()
            || self.leave_possible(&excluded, staying)
            || m.peers.iter().enumerate().any(|(r, p)| r != m.me && !p.suspected && p.wedged)
    }

    /// Whether to change the view for a join now. With state transfer, not while a member of
    /// the view is loading state: the view change would abandon its transfer and restart it.
    /// (A view change needed for another reason still lets joiners in, up to the cap in
    /// `try_decide`, since the restart happens anyway.)
    fn join_room(&self, excluded: &BTreeSet<usize>) -> bool {
        let Some(m) = self.member() else { return false };
        if !self.cfg.state_transfer {
            return true;
        }
        (0..m.view.members.len()).filter(|r| !excluded.contains(r)).all(|r| {
            if r == m.me {
                m.holds_state()
            } else {
                m.peers[r].holds_state
            }
        })
    }

    /// Whether a member asking to leave can go now. With state transfer, not if it would take
    /// the last state with it: `try_decide` keeps such a leaver, so changing the view for it
    /// would only install the same members again and restart the transfers that are to hand the
    /// state on, again and again (seed 7007176).
    fn leave_possible(&self, excluded: &BTreeSet<usize>, staying: usize) -> bool {
        let Some(m) = self.member() else { return false };
        let leavers = self.removable_leavers(staying);
        if leavers.is_empty() {
            return false;
        }
        if !self.cfg.state_transfer {
            return true;
        }
        (0..m.view.members.len()).filter(|r| !excluded.contains(r) && !leavers.contains(r)).any(|r| {
            if r == m.me {
                m.holds_state()
            } else {
                m.peers[r].holds_state
            }
        })
    }

    /// Ranks that the next view must not hold: suspected here or by a member we trust, or
    /// replaced by a newer incarnation that asks to join.
    fn exclusions(&self) -> BTreeSet<usize> {
        let mut out = BTreeSet::new();
        let Some(m) = self.member() else { return out };
        for (r, p) in m.peers.iter().enumerate() {
            if r == m.me {
                continue;
            }
            if p.suspected {
                out.insert(r);
            } else {
                out.extend(p.suspects.iter().map(|s| usize::from(*s)).filter(|s| *s != m.me));
            }
        }
        for (r, x) in m.view.members.iter().enumerate() {
            if m.pending_joins.keys().any(|j| j.node == x.node && j.inc > x.inc) {
                out.insert(r);
            }
        }
        out
    }

    /// Ranks asking to leave that can go now: a view must keep a majority of its predecessor
    /// (G2), so leavers beyond that wait for a later view.
    fn removable_leavers(&self, staying: usize) -> Vec<usize> {
        let Some(m) = self.member() else { return Vec::new() };
        let spare = staying.saturating_sub(m.view.majority());
        m.view
            .members
            .iter()
            .enumerate()
            .filter(|(_, x)| m.pending_leaves.contains(*x))
            .map(|(r, _)| r)
            .take(spare)
            .collect()
    }

    fn start_round(&mut self, now: Instant) {
        let me_id = self.me;
        let Some(m) = self.member_mut() else { return };
        m.max_round = m.max_round.saturating_add(1);
        let ballot = Ballot { round: m.max_round, coord: me_id };
        m.promised = Some(ballot);
        let received: Vec<u64> = m.senders.iter().map(|s| s.received).collect();
        let mut promises = BTreeMap::new();
        let holds_state = m.holds_state();
        let rejoin = m.recovering;
        promises.insert(
            m.me,
            Promised { received: received.clone(), accepted: m.accepted.clone(), holds_state, rejoin },
        );
        self.persist_dirty = true;
        let Some(m) = self.member_mut() else { return };
        m.coord = Some(Coord { ballot, started: now, last_send: now, phase: Phase::Preparing { promises } });
        let view = m.view.id;
        let targets: Vec<MemberId> = m.view.members.iter().copied().filter(|x| *x != me_id).collect();
        self.wedge();
        for t in targets {
            self.queue_member(t, Msg::Prepare { view, ballot, coord_received: received.clone() });
        }
        self.try_decide(now);
    }

    pub(crate) fn on_prepare(
        &mut self,
        now: Instant,
        from: MemberId,
        ballot: Ballot,
        coord_received: Vec<u64>,
    ) {
        let flush_timeout = self.cfg.flush_timeout;
        let jitter = self.random() % (flush_timeout.as_nanos() as u64 / 2 + 1);
        let Some(m) = self.member_mut() else { return };
        let n = m.view.members.len();
        if coord_received.len() != n || ballot.coord != from {
            return;
        }
        let view = m.view.id;
        if self.preempts(from, ballot) {
            return;
        }
        let Some(m) = self.member_mut() else { return };
        if let Some(p) = m.promised {
            if p.coord != ballot.coord && p < ballot {
                self.marks.hit(Mark::CoordinatorTakeover);
            }
        }
        let Some(m) = self.member_mut() else { return };
        m.promised = Some(ballot);
        if m.coord.as_ref().is_some_and(|c| c.ballot < ballot) {
            m.coord = None;
            m.backoff_until = now + flush_timeout + core::time::Duration::from_nanos(jitter);
        }
        let received: Vec<u64> = m.senders.iter().map(|s| s.received).collect();
        let mut msgs = Vec::new();
        for (s, st) in m.senders.iter().enumerate() {
            msgs.extend(st.range(coord_received[s].saturating_add(1), st.received).cloned());
        }
        let accepted = m.accepted.clone();
        let holds_state = m.holds_state();
        let rejoin = m.recovering;
        self.persist_dirty = true;
        self.wedge();
        self.queue_member(from, Msg::Promise { view, ballot, received, accepted, msgs, holds_state, rejoin });
    }

    /// Notes `ballot`'s round; if a higher ballot was promised, tells `from` and returns true.
    fn preempts(&mut self, from: MemberId, ballot: Ballot) -> bool {
        let Some(m) = self.member_mut() else { return true };
        m.max_round = m.max_round.max(ballot.round);
        match m.promised {
            Some(higher) if higher > ballot => {
                let view = m.view.id;
                self.queue_member(from, Msg::Preempted { view, ballot: higher });
                true
            }
            _ => false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_promise(
        &mut self,
        now: Instant,
        r: usize,
        ballot: Ballot,
        received: Vec<u64>,
        accepted: Option<(Ballot, Proposal)>,
        msgs: Vec<Data>,
        holds_state: bool,
        rejoin: Option<Rejoin>,
    ) {
        let Some(m) = self.member() else { return };
        let n = m.view.members.len();
        let ours = m
            .coord
            .as_ref()
            .is_some_and(|c| c.ballot == ballot && matches!(c.phase, Phase::Preparing { .. }));
        if !ours || received.len() != n || accepted.as_ref().is_some_and(|(_, p)| !self.proposal_fits(p)) {
            return;
        }
        self.store_msgs(msgs);
        let Some(m) = self.member_mut() else { return };
        if let Some(Coord { phase: Phase::Preparing { promises }, .. }) = &mut m.coord {
            promises.insert(r, Promised { received, accepted, holds_state, rejoin });
        }
        self.try_decide(now);
    }

    pub(crate) fn on_preempted(&mut self, now: Instant, ballot: Ballot) {
        let flush_timeout = self.cfg.flush_timeout;
        let jitter = self.random() % (flush_timeout.as_nanos() as u64 / 2 + 1);
        let Some(m) = self.member_mut() else { return };
        m.max_round = m.max_round.max(ballot.round);
        if m.coord.as_ref().is_some_and(|c| c.ballot < ballot) {
            m.coord = None;
            m.backoff_until = now + flush_timeout + core::time::Duration::from_nanos(jitter);
        }
    }

    /// Decides the proposal once every expected member promised, or a majority did and the
    /// others had time enough.
    fn try_decide(&mut self, now: Instant) {
        let exclusions = self.exclusions();
        let flush_timeout = self.cfg.flush_timeout;
        #[cfg(feature = "mutants")]
        let minority = self.cfg.mutant == Some(crate::Mutant::InstallMinority);
        #[cfg(not(feature = "mutants"))]
        let minority = false;
        let max_members = self.cfg.max_members;
        let state_transfer = self.cfg.state_transfer;
        let Some(m) = self.member() else { return };
        let Some(c) = &m.coord else { return };
        let Phase::Preparing { promises } = &c.phase else { return };
        let n = m.view.members.len();
        let majority = m.view.majority();
        let all_in = (0..n).all(|r| exclusions.contains(&r) || promises.contains_key(&r));
        let waited = now.since(c.started) >= flush_timeout / 2;
        if !(all_in || waited) || (promises.len() < majority && !minority) {
            return;
        }
        let adopted = promises.values().filter_map(|p| p.accepted.as_ref()).max_by_key(|(b, _)| *b);
        let mut from_disk = false;
        let proposal = if let Some((_, p)) = adopted {
            p.clone()
        } else {
            // Restarted nodes speaking for their earlier lives: the old members leave, the new
            // incarnations come in their place (docs/protocol/recovery.md).
            let rejoining: Vec<Rejoin> = promises.values().filter_map(|p| p.rejoin).collect();
            let staying: Vec<usize> = promises
                .iter()
                .filter(|(r, p)| !exclusions.contains(r) && p.rejoin.is_none())
                .map(|(r, _)| *r)
                .collect();
            // With state transfer, members that hold no state (their transfer was cut off) load
            // it again in the next view, and one member at least must hold it to give it.
            let holds = |r: &usize| !state_transfer || promises.get(r).is_some_and(|p| p.holds_state);
            let mut leavers = self.removable_leavers(staying.len() + rejoining.len());
            if !staying.iter().any(|r| holds(r) && !leavers.contains(r)) {
                leavers.clear(); // The last holders may not leave before handing the state on.
            }
            let kept: Vec<usize> = staying.iter().copied().filter(|r| !leavers.contains(r)).collect();
            let mut members: Vec<MemberId> = kept.iter().map(|r| m.view.members[*r]).collect();
            let mut loading: Vec<MemberId> =
                kept.iter().filter(|r| !holds(r)).map(|r| m.view.members[*r]).collect();
            // No member alive holds the state: it comes from the restarted members' disks, those
            // with the highest stored position giving it. A restart offers a state only if its
            // member in this view owned it (the application's rule, `Recovery::state`): that
            // member held the state on disk here, and reported stored everything acknowledged
            // in its views, so any offered state holds every write acknowledged under
            // `appendfsync always`. With no state offered, the view waits (no holder).
            let live_holder = kept.iter().any(holds);
            let mut best = None;
            if state_transfer && !live_holder && !rejoining.is_empty() {
                if self.cfg.recover_all && promises.len() < n {
                    return; // Every member of the view must be back (see `Config::recover_all`).
                }
                best = rejoining.iter().filter_map(|j| j.state).max();
                from_disk = best.is_some();
            }
            let mut recovered = Vec::new();
            for j in &rejoining {
                members.push(j.new);
                recovered.push(j.new);
                if state_transfer && (live_holder || best.is_none() || j.state != best) {
                    loading.push(j.new);
                }
            }
            if members.len() < majority && !minority {
                return;
            }
            let holders = members.len() - loading.len();
            if holders == 0 {
                self.marks.hit(Mark::NoStateHolder);
                return;
            }
            // Let in fewer joiners than there are staying members that hold the state, so that
            // they are a majority of the next view: if the joiners all die at once, the view can
            // still change (and a donor is left). A lone member lets in two: then one joiner
            // dying is survivable. Members still loading count as joiners.
            let cap = if holders <= 1 { 2 } else { holders - 1 };
            let max_joins = cap.saturating_sub(loading.len());
            let mut joins = 0;
            for j in m.pending_joins.keys() {
                if members.len() >= max_members || joins >= max_joins {
                    break;
                }
                if !members.iter().any(|x| x.node == j.node) {
                    members.push(*j);
                    if state_transfer {
                        loading.push(*j);
                    }
                    joins += 1;
                }
            }
            let mut cut = vec![0u64; n];
            for p in promises.values() {
                for (c, x) in cut.iter_mut().zip(p.received.iter()) {
                    *c = (*c).max(*x);
                }
            }
            let recovered_ids = members
                .iter()
                .copied()
                .filter(|x| !m.view.contains(*x))
                .filter(|x| promises.values().any(|p| p.rejoin.is_some_and(|j| j.new == *x)));
            let recovered: Vec<MemberId> = recovered_ids.collect();
            Proposal {
                prev: m.view.id,
                next: View { id: m.view.id.next(), members },
                cut,
                loading,
                recovered,
                group: self.group.unwrap_or(GroupId(0)),
            }
        };
        let was_adopted = adopted.is_some();
        let received: BTreeMap<usize, Vec<u64>> =
            promises.iter().map(|(r, p)| (*r, p.received.clone())).collect();
        let ballot = c.ballot;
        let view = m.view.id;
        let mut out = Vec::new();
        for (r, rec) in &received {
            if *r != m.me {
                let msgs = missing(m, rec, &proposal.cut);
                out.push((
                    m.view.members[*r],
                    Msg::Accept { view, ballot, proposal: proposal.clone(), msgs },
                ));
            }
        }
        if was_adopted {
            self.marks.hit(Mark::AdoptedProposal);
        }
        if from_disk {
            self.marks.hit(Mark::RecoveredFromDisk);
        }
        self.persist_dirty = true;
        let Some(m) = self.member_mut() else { return };
        let me = m.me;
        m.accepted = Some((ballot, proposal.clone()));
        if let Some(c) = &mut m.coord {
            c.last_send = now;
            c.phase = Phase::Accepting { proposal, received, accepted: BTreeSet::from([me]) };
        }
        for (to, msg) in out {
            self.queue_member(to, msg);
        }
        self.try_commit(now);
    }

    pub(crate) fn on_accept(
        &mut self,
        now: Instant,
        from: MemberId,
        ballot: Ballot,
        proposal: Proposal,
        msgs: Vec<Data>,
    ) {
        if ballot.coord != from || !self.proposal_fits(&proposal) {
            return;
        }
        let Some(m) = self.member_mut() else { return };
        let view = m.view.id;
        if self.preempts(from, ballot) {
            return;
        }
        let me_id = self.me;
        self.persist_dirty = true;
        let Some(m) = self.member_mut() else { return };
        m.promised = Some(ballot);
        m.accepted = Some((ballot, proposal));
        let me = m.me;
        let coord = m.view.rank_of(from);
        let others: Vec<MemberId> = m.view.members.iter().copied().filter(|x| *x != me_id).collect();
        self.wedge();
        self.store_msgs(msgs);
        // Tell every member, not only the coordinator: if the coordinator dies right after
        // the proposal is chosen, the acceptors can still learn that it was and install it
        // (Paxos learners), instead of waiting in a view that may have lost its majority.
        for x in others {
            self.queue_member(x, Msg::Accepted { view, ballot });
        }
        if let Some(c) = coord {
            self.learn(now, view, ballot, c); // The coordinator accepted its own proposal.
        }
        self.learn(now, view, ballot, me);
    }

    pub(crate) fn on_accepted(&mut self, now: Instant, r: usize, ballot: Ballot) {
        if let Some(view) = self.member().map(|m| m.view.id) {
            self.learn(now, view, ballot, r);
        }
        let Some(m) = self.member_mut() else { return };
        if let Some(Coord { ballot: b, phase: Phase::Accepting { accepted, .. }, .. }) = &mut m.coord {
            if *b == ballot {
                accepted.insert(r);
            }
        }
        self.try_commit(now);
    }

    /// Records that rank `r` accepted `ballot`; an acceptor of that ballot that sees a majority
    /// knows its proposal is chosen and installs it (it holds every message of the cut).
    fn learn(&mut self, now: Instant, view: crate::id::ViewId, ballot: Ballot, r: usize) {
        let Some(m) = self.member_mut() else { return };
        if m.view.id != view {
            return;
        }
        if m.learned.len() >= 16 && !m.learned.contains_key(&ballot) {
            m.learned.pop_first(); // Bounded: forget the oldest ballots first.
        }
        let set = m.learned.entry(ballot).or_default();
        set.insert(r);
        let chosen = set.len() >= m.view.majority();
        let mine = m.accepted.as_ref().filter(|(b, _)| *b == ballot).map(|(_, p)| p.clone());
        let coordinating = m.coord.is_some();
        if let (true, Some(p), false) = (chosen, mine, coordinating) {
            self.marks.hit(Mark::LearnedChosen);
            self.on_install(now, p, Vec::new());
        }
    }

    /// Once a majority of the view accepted, the proposal is chosen: send it to every member
    /// of the next view, and install it here.
    fn try_commit(&mut self, now: Instant) {
        #[cfg(feature = "mutants")]
        let mutant = self.cfg.mutant;
        let Some(m) = self.member() else { return };
        let Some(Coord { phase: Phase::Accepting { proposal, received, accepted }, .. }) = &m.coord else {
            return;
        };
        #[cfg(feature = "mutants")]
        let minority = mutant == Some(crate::Mutant::InstallMinority);
        #[cfg(not(feature = "mutants"))]
        let minority = false;
        if accepted.len() < m.view.majority() && !minority {
            return;
        }
        let proposal = proposal.clone();
        let mut out = Vec::new();
        let last = proposal.next.members.iter().rev().find(|x| **x != self.me).copied();
        for x in &proposal.next.members {
            if *x == self.me {
                continue;
            }
            let msgs = match m.view.rank_of(*x) {
                Some(r) => match received.get(&r) {
                    Some(rec) => missing(m, rec, &proposal.cut),
                    None => missing(m, &m.stable, &proposal.cut),
                },
                // A joiner delivers nothing of the old view, but keeps the install to resend to
                // members that miss it, so it gets what such a member may lack.
                None => missing(m, &m.stable, &proposal.cut),
            };
            #[allow(unused_mut)]
            let mut p = proposal.clone();
            #[cfg(feature = "mutants")]
            if mutant == Some(crate::Mutant::SplitView) && Some(*x) == last && p.next.members.len() >= 2 {
                p.next.members.swap(0, 1);
            }
            let _ = last;
            out.push((*x, Msg::Install { proposal: p, msgs }));
        }
        for (to, msg) in out {
            self.queue_member(to, msg);
        }
        self.on_install(now, proposal, Vec::new());
    }

    /// Delivers the cut of the current view and installs the chosen next view (or, if this
    /// member is not in it, re-joins or finishes leaving).
    pub(crate) fn on_install(&mut self, now: Instant, proposal: Proposal, msgs: Vec<Data>) {
        #[cfg(feature = "mutants")]
        let mutant = self.cfg.mutant;
        if !self.proposal_fits(&proposal) {
            return;
        }
        if let Some(rejoin) = self.member().and_then(|m| m.recovering) {
            // A restarted node's stand-in delivers nothing: it only learns where it goes next.
            self.recovered_install(now, proposal, rejoin);
            return;
        }
        let loading = self.member().is_some_and(|m| m.awaiting_state);
        if loading && proposal.next.contains(self.me) && !proposal.loading.contains(&self.me) {
            // Cannot happen (this member promised it holds no state), but if it did, the member
            // could not serve as a replica of a state it lacks: it comes back as a new one.
            let by = proposal.next.id;
            self.excluded(now, Some(by));
            return;
        }
        let forwarded = !msgs.is_empty();
        self.store_msgs(msgs);
        let Some(m) = self.member() else { return };
        let n = m.view.members.len();
        let old = m.view.clone();
        #[cfg(feature = "mutants")]
        let skip = mutant == Some(crate::Mutant::SkipFlush);
        #[cfg(not(feature = "mutants"))]
        let skip = false;
        // Installs sent by restarted members carry no messages: a member that lacks some of the
        // cut cannot flush, and must not deliver part of it.
        if !loading && !skip && (0..n).any(|s| m.senders[s].received < proposal.cut[s]) {
            self.incomplete_install(now, proposal);
            return;
        }
        let Some(m) = self.member() else { return };
        let from_departed = (0..n)
            .any(|s| m.senders[s].delivered < proposal.cut[s] && !proposal.next.contains(old.members[s]));
        #[cfg(feature = "mutants")]
        if mutant == Some(crate::Mutant::CheckpointBeforeCut) && !loading {
            self.early_checkpoint(&proposal);
        }
        // A member still loading state delivers nothing of this view: the state it will load
        // in the next one already holds the cut.
        if !skip && !loading {
            self.deliver_cut(&proposal.cut);
        }
        if forwarded {
            self.marks.hit(Mark::FlushForwarded);
        }
        if from_departed {
            self.marks.hit(Mark::FlushDeliveredFromDeparted);
        }
        let Some(m) = self.member() else { return };
        let joined: Vec<MemberId> =
            proposal.next.members.iter().copied().filter(|x| !old.contains(*x)).collect();
        let departed: Vec<MemberId> =
            old.members.iter().copied().filter(|x| !proposal.next.contains(*x)).collect();
        let under_load = (0..n).any(|s| proposal.cut[s] > m.stable[s]);
        let join_under_load = !joined.is_empty() && under_load;
        let keep = cut_msgs(m, &proposal.cut);
        #[cfg(feature = "mutants")]
        let stale: Vec<(crate::id::MsgId, crate::Order, bytes::Bytes)> =
            if mutant == Some(crate::Mutant::DeliverStaleView) {
                (0..n)
                    .flat_map(|s| {
                        let sender = old.members[s];
                        m.senders[s].range(proposal.cut[s].saturating_add(1), u64::MAX).map(move |d| {
                            (
                                crate::id::MsgId { sender, view: d.view, seq: crate::id::Seqno(d.seq) },
                                d.order,
                                d.payload.clone(),
                            )
                        })
                    })
                    .collect()
            } else {
                Vec::new()
            };
        #[cfg(feature = "mutants")]
        let keep_self = mutant == Some(crate::Mutant::InstallWithoutSelf);
        #[cfg(not(feature = "mutants"))]
        let keep_self = false;
        if join_under_load {
            self.marks.hit(Mark::JoinUnderLoad);
        }
        if proposal.next.contains(self.me) {
            let next = proposal.next.clone();
            self.install_view(now, next, joined, departed, Some(InstallRecord { proposal, msgs: keep }));
            #[cfg(feature = "mutants")]
            for (id, order, payload) in stale {
                self.push_event(Event::Delivered { id, order, payload });
            }
        } else if keep_self && !self.leaving {
            // Mutant: pretend to be in the view (breaks self-inclusion).
            self.push_event(Event::ViewInstalled {
                view: proposal.next,
                joined,
                departed,
                loading: Vec::new(),
                recovered: Vec::new(),
            });
            self.excluded(now, None);
        } else {
            let by = proposal.next.id;
            self.excluded(now, Some(by));
        }
    }

    /// Stores flush-forwarded messages (already known to be of the current view).
    fn store_msgs(&mut self, msgs: Vec<Data>) {
        let window = u64::from(self.cfg.window_msgs);
        let max_payload = self.cfg.max_payload;
        let Some(m) = self.member_mut() else { return };
        let n = m.view.members.len();
        let view = m.view.id;
        let mut advanced = false;
        let mut grew: BTreeMap<usize, u64> = BTreeMap::new();
        for d in msgs {
            let s = usize::from(d.sender);
            if d.view != view || s >= n || d.seq == 0 || d.payload.len() > max_payload {
                continue;
            }
            m.clock = m.clock.max(d.lamport);
            let before = m.senders[s].received;
            if m.senders[s].insert(d, window) == crate::mcast::Insert::Advanced {
                advanced = true;
                grew.entry(s).or_insert(before);
            }
        }
        for (s, before) in grew {
            self.note_held(s, before);
        }
        let Some(m) = self.member_mut() else { return };
        if advanced {
            for p in m.peers.iter_mut() {
                p.ack_dirty = true;
            }
            self.pump();
        }
    }

    /// Whether a proposal received from the network is well formed for the current view.
    fn proposal_fits(&self, p: &Proposal) -> bool {
        let Some(m) = self.member() else { return false };
        let mut nodes: Vec<u64> = p.next.members.iter().map(|x| x.node.0).collect();
        nodes.sort_unstable();
        nodes.dedup();
        p.prev == m.view.id
            && self.group.is_none_or(|g| g == p.group)
            && p.loading.iter().all(|x| p.next.contains(*x))
            && p.recovered.iter().all(|x| p.next.contains(*x))
            && p.loading.len() < p.next.members.len()
            && p.next.id == m.view.id.next()
            && p.cut.len() == m.view.members.len()
            && !p.next.members.is_empty()
            && p.next.members.len() <= self.cfg.max_members
            && nodes.len() == p.next.members.len()
    }
}

/// What a member that missed an install would need: the unstable part of the cut, as far as
/// this member's store holds it.
pub(crate) fn cut_msgs(m: &crate::node::Member, cut: &[u64]) -> Vec<Data> {
    let mut keep = Vec::new();
    for (s, st) in m.senders.iter().enumerate() {
        let upto = cut.get(s).copied().unwrap_or(0);
        keep.extend(st.range_any(m.stable[s].saturating_add(1), upto).cloned());
    }
    keep
}

/// Messages of the cut beyond `have` (a received vector), from this member's store.
fn missing(m: &crate::node::Member, have: &[u64], cut: &[u64]) -> Vec<Data> {
    let mut out = Vec::new();
    for (s, st) in m.senders.iter().enumerate() {
        let from = have.get(s).copied().unwrap_or(0).saturating_add(1);
        out.extend(st.range_any(from, cut[s]).cloned());
    }
    out
}
