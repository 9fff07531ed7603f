//! Coming back from stable storage: what a node keeps on disk, how a restarted node speaks for
//! its earlier life in the view change of the view that life was in, the positions up to which
//! members' application state is stored, and founding a group only once.
//!
//! ```text
//!  runtime ◄─ poll_persist() ─ node        write it (and fsync) before sending any frame after it
//!  restart: Config { recovery: Some(Recovery { membership, state }), incarnation: new, .. }
//!    node = a member of its old view as its old member id, wedged from the start, no
//!           deliveries: it heartbeats, promises and accepts with the ballots it kept on disk,
//!           and its promise says "replace me by `new`, who holds state at position `state`"
//!  the coordinator (alive, or itself recovering) builds the next view with `new` in it;
//!  if no member alive holds the state, the recovered ones with the highest position do
//! ```
//!
//! Why a restarted node may speak for its earlier life: that life is over (the data directory
//! is locked by one process at a time), and everything it promised or accepted in the view
//! change was on disk before it said so. So the view-change acceptor of that member carries
//! on, and Paxos stays safe with a majority of the view made of members alive and members
//! restarted. See docs/protocol/recovery.md.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::DecodeError;
use crate::event::Event;
use crate::id::{GroupId, MemberId, NodeId, View, ViewId};
use crate::marks::Mark;
use crate::node::{InstallRecord, Node};
use crate::time::Instant;
use crate::wire::{Ballot, Msg, Proposal, Rejoin};

/// First bytes of an encoded [`Persisted`] record (and its format version).
const PERSIST_MAGIC: &[u8; 6] = b"CHMB\x00\x01";

/// What a node must keep on stable storage to come back after a crash: its group, and the
/// member it last was with that member's view-change state. Written by the runtime, and made
/// durable, whenever [`Node::poll_persist`] returns one, before any frame produced after it
/// is sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    /// The group this node belongs to.
    pub group: GroupId,
    /// The view it was last a member of, if it is one now; or, after it was excluded from a
    /// view (or left it) having promised or accepted in that view's change, that view, until it
    /// installs another: a restart then speaks for that life with its votes, as after a crash.
    pub membership: Option<Membership>,
    /// The highest view any life of this node installed (kept when a life is excluded): an
    /// earlier life did nothing in any view above it.
    pub last_view: ViewId,
}

/// A node's place in its last view, and its view-change (Paxos acceptor) state there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The view.
    pub view: View,
    /// This node's member in it.
    pub me: MemberId,
    /// The chosen proposal that created the view (None for a group's first view): handed to
    /// other restarted members that missed it.
    pub created_by: Option<Proposal>,
    /// The highest ballot promised in the view's change.
    pub promised: Option<Ballot>,
    /// The proposal accepted in it, if any.
    pub accepted: Option<(Ballot, Proposal)>,
}

/// What a restarting node knows of its earlier life: [`Config::recovery`](crate::Config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Its last persisted membership.
    pub membership: Membership,
    /// The position of the application state it holds on stable storage (what it last gave
    /// `Node::set_durable`, or more), if that state is `membership.me`'s own: the state it held
    /// in that view, founded, loaded and stored, or offered and kept when it recovered. The
    /// recovered members with the highest one give the state when no member alive holds it.
    /// A state from an earlier membership must not be offered: it may lack writes acknowledged
    /// since (a life that loaded the state in a later view never stored it).
    pub state: Option<u64>,
}

impl Persisted {
    /// The record's bytes (a version header, then postcard).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = PERSIST_MAGIC.to_vec();
        // Serializing plain data into a Vec cannot fail.
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        out
    }

    /// Reads a record written by [`Persisted::encode`] (the caller checks its integrity).
    pub fn decode(bytes: &[u8]) -> Result<Persisted, DecodeError> {
        let rest = bytes
            .strip_prefix(PERSIST_MAGIC.as_slice())
            .ok_or(DecodeError::Truncated { len: bytes.len() })?;
        let (p, trailing) =
            postcard::take_from_bytes::<Persisted>(rest).map_err(|e| DecodeError::Body(e.to_string()))?;
        if !trailing.is_empty() {
            return Err(DecodeError::Trailing(trailing.len()));
        }
        Ok(p)
    }
}

/// The member of this node in `p`'s next view that is one of its earlier lives: from `old` (the
/// one a stand-in speaks for) to just before `new` (its current life).
fn earlier_life(p: &Proposal, old: MemberId, new: MemberId) -> Option<MemberId> {
    p.next.members.iter().copied().find(|x| x.node == old.node && x.inc >= old.inc && x.inc < new.inc)
}

/// Whether a founder may found now: enough of the configured nodes are known to belong to no
/// group (a strict majority counting itself), and none of them with a lower id is a founder.
pub(crate) fn may_found(me: NodeId, configured: usize, fresh: &BTreeMap<NodeId, (bool, Instant)>) -> bool {
    let lower_founder = fresh.iter().any(|(n, (founder, _))| *founder && *n < me);
    !lower_founder && 2 * (1 + fresh.len()) > configured
}

impl Node {
    /// The node's durable record, if it changed since the last call. Write it to stable storage
    /// (and sync) before sending any frame taken after this call: promises and acceptances in
    /// a view change must survive a crash (see the module docs of `recovery`).
    pub fn poll_persist(&mut self) -> Option<Persisted> {
        if !std::mem::take(&mut self.persist_dirty) {
            return None;
        }
        let group = self.group?;
        let membership = self
            .member()
            .map(|m| Membership {
                view: m.view.clone(),
                me: m.view.members[m.me],
                created_by: m.created_by.clone(),
                promised: m.promised,
                accepted: m.accepted.clone(),
            })
            .or_else(|| self.voted.clone());
        Some(Persisted { group, membership, last_view: self.last_view })
    }

    /// The group this node belongs to, if any yet.
    pub fn group(&self) -> Option<GroupId> {
        self.group
    }

    /// Tells the node that the application's state is on stable storage up to position `pos`
    /// (a number the application defines, the same at every member for the same state, and
    /// growing as it applies more). The node reports it to the others in its acknowledgements;
    /// [`Event::Durable`] says when every member of the view reported at least some position.
    pub fn set_durable(&mut self, now: Instant, pos: u64) {
        self.attend(now);
        if pos <= self.durable_pos {
            return;
        }
        self.durable_pos = pos;
        if let Some(m) = self.member_mut() {
            for p in m.peers.iter_mut() {
                p.ack_dirty = true;
            }
            if self.ack_due.is_none() {
                self.ack_due = Some(now + self.cfg.ack_delay);
            }
        }
        self.check_durable();
    }

    /// Emits `Event::Durable` when the lowest position reported by the members of the view
    /// rose past what was last announced.
    pub(crate) fn check_durable(&mut self) {
        let own = self.durable_pos;
        let Some(m) = self.member() else { return };
        if m.recovering.is_some() {
            return;
        }
        let floor = m
            .peers
            .iter()
            .enumerate()
            .filter(|(r, _)| *r != m.me)
            .map(|(_, p)| p.durable)
            .fold(own, u64::min);
        if floor > self.durable_emitted {
            self.durable_emitted = floor;
            self.push_event(Event::Durable { upto: floor });
        }
    }

    /// Becomes, as its earlier member `old`, a member of `view` that only takes part in the
    /// view's change (see the module docs): wedged, with nothing received, delivering nothing,
    /// promising and accepting with the ballots kept on disk, and joining the next view as
    /// `rejoin.new`.
    pub(crate) fn recover_into(&mut self, now: Instant, membership: Membership, rejoin: Rejoin) {
        let Membership { view, me: old, created_by, promised, accepted } = membership;
        let Some(rank) = view.rank_of(old) else { return };
        let n = view.members.len();
        self.me = old;
        self.outq.clear();
        self.install_member(now, view.clone(), rank, None, &[]);
        let grace = self.cfg.recovery_grace;
        if let Some(m) = self.member_mut() {
            // Stragglers of a whole-group restart get `recovery_grace` more to be heard.
            for p in m.peers.iter_mut() {
                p.last_heard = now + grace;
            }
            m.wedged = true;
            m.frozen_acks = Some(vec![0; n]);
            m.max_round = promised.map_or(0, |b| b.round).max(accepted.as_ref().map_or(0, |(b, _)| b.round));
            m.promised = promised;
            m.accepted = accepted;
            m.record = created_by.clone().map(|proposal| InstallRecord { proposal, msgs: Vec::new() });
            m.created_by = created_by;
            m.recovering = Some(rejoin);
        }
        self.persist_dirty = true;
        self.marks.hit(Mark::Recovering);
        self.push_event(Event::Recovering { view, member: old });
    }

    /// A recovering member learned the chosen next view: it enters it as its new incarnation
    /// if the view holds that one, goes on speaking for its earlier life in it if the view
    /// holds that one (a proposal chosen before the crash), or else joins afresh.
    pub(crate) fn recovered_install(&mut self, now: Instant, proposal: Proposal, rejoin: Rejoin) {
        let old = self.me;
        let Some(prev) = self.member().map(|m| m.view.clone()) else { return };
        if proposal.next.contains(rejoin.new) {
            self.me = rejoin.new;
            self.group = Some(proposal.group);
            let joined: Vec<MemberId> =
                proposal.next.members.iter().copied().filter(|x| !prev.contains(*x)).collect();
            let departed: Vec<MemberId> =
                prev.members.iter().copied().filter(|x| !proposal.next.contains(*x)).collect();
            let next = proposal.next.clone();
            // Keep what the accept brought (the cut's messages), for members that miss the install.
            let msgs = self.member().map(|m| crate::gms::cut_msgs(m, &proposal.cut)).unwrap_or_default();
            self.marks.hit(Mark::RecoveredView);
            self.install_view(now, next, joined, departed, Some(InstallRecord { proposal, msgs }));
        } else if let Some(earlier) = earlier_life(&proposal, old, rejoin.new) {
            // The view holds an earlier life of this node: the one it spoke for (a proposal
            // chosen before the crash), or a restart that crashed too (a proposal its stand-in
            // accepted). That life is over: speak for it in the view.
            let membership = Membership {
                view: proposal.next.clone(),
                me: earlier,
                created_by: Some(proposal),
                promised: None,
                accepted: None,
            };
            self.recover_into(now, membership, rejoin);
        } else {
            let by = proposal.next.id;
            self.excluded(now, Some(by));
        }
    }

    /// A member that cannot complete the flush of an install (it lacks messages of the cut:
    /// the install came from restarted members, who have none) leaves its state behind: it
    /// joins afresh, and if the next view names it, speaks for its member there meanwhile.
    pub(crate) fn incomplete_install(&mut self, now: Instant, proposal: Proposal) {
        self.marks.hit(Mark::IncompleteInstall);
        let old = self.me;
        let by = proposal.next.id;
        self.excluded(now, Some(by));
        let new = self.me;
        if proposal.next.contains(old) && !self.leaving {
            let membership = Membership {
                view: proposal.next.clone(),
                me: old,
                created_by: Some(proposal),
                promised: None,
                accepted: None,
            };
            self.recover_into(now, membership, Rejoin { new, state: None });
        }
    }

    /// A joiner answers a founder's join request: it belongs to no group, or it knows one
    /// exists.
    pub(crate) fn on_join_while_joining(
        &mut self,
        now: Instant,
        from: MemberId,
        group: Option<GroupId>,
        founding: bool,
    ) {
        if !founding || group.is_some() || from.node == self.me.node {
            return;
        }
        let msg = match self.group.or(self.known_group) {
            Some(group) => Msg::InGroup { group },
            None => Msg::NoGroup { founding: self.founding.is_some() },
        };
        self.reply_limited(now, from, msg);
    }

    /// A joiner hears that a group exists: it founds none, and tells founders so.
    pub(crate) fn on_in_group(&mut self, group: GroupId) {
        if self.group.is_none_or(|g| g == group) {
            self.known_group = Some(group);
            if self.founding.take().is_some() {
                self.marks.hit(Mark::FoundingDeferred);
            }
        }
    }

    /// A founder hears that `from` belongs to no group.
    pub(crate) fn on_no_group(&mut self, now: Instant, from: NodeId, founding: bool) {
        if let Some(fresh) = &mut self.founding {
            if self.seeds_configured.contains(&from) {
                fresh.insert(from, (founding, now));
            }
        }
    }

    /// A founder's periodic check: found the group if it may (see [`Config::bootstrap`]).
    pub(crate) fn founding_tick(&mut self, now: Instant) {
        let ttl = self.cfg.join_retry_interval * 4;
        let configured = self.seeds_configured.len() + 1;
        let me = self.me.node;
        let Some(fresh) = &mut self.founding else { return };
        fresh.retain(|_, (_, at)| now.since(*at) <= ttl);
        if !may_found(me, configured, fresh) {
            if fresh.iter().any(|(n, (f, _))| *f && *n < me) {
                self.marks.hit(Mark::FoundingDeferred);
            }
            return;
        }
        self.found(now);
    }

    /// Founds the group: view 1 with this node alone.
    pub(crate) fn found(&mut self, now: Instant) {
        self.founding = None;
        self.group = Some(self.cfg.new_group);
        let view = View { id: ViewId(1), members: vec![self.me] };
        self.install_view(now, view, vec![self.me], Vec::new(), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ViewId;

    #[test]
    fn persisted_round_trip_and_damage() {
        let view = View { id: ViewId(4), members: vec![MemberId::new(1, 3), MemberId::new(2, 9)] };
        let ballot = Ballot { round: 2, coord: MemberId::new(1, 3) };
        let proposal = Proposal {
            prev: ViewId(4),
            next: View { id: ViewId(5), members: vec![MemberId::new(1, 3)] },
            cut: vec![7, 8],
            loading: vec![],
            recovered: vec![],
            group: GroupId(42),
        };
        let p = Persisted {
            last_view: ViewId(4),
            group: GroupId(42),
            membership: Some(Membership {
                view,
                me: MemberId::new(2, 9),
                created_by: None,
                promised: Some(ballot),
                accepted: Some((ballot, proposal)),
            }),
        };
        let bytes = p.encode();
        assert_eq!(Persisted::decode(&bytes), Ok(p));
        assert!(Persisted::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(Persisted::decode(b"nonsense").is_err());
        let mut long = bytes.clone();
        long.push(0);
        assert!(Persisted::decode(&long).is_err());
    }

    #[test]
    fn founding_needs_a_majority_and_no_lower_founder() {
        let t = Instant::ZERO;
        let mut fresh = BTreeMap::new();
        // 3 configured nodes: itself alone is not a majority.
        assert!(!may_found(NodeId(2), 3, &fresh));
        fresh.insert(NodeId(3), (false, t));
        assert!(may_found(NodeId(2), 3, &fresh));
        // A lower founder answers: it founds, not us.
        fresh.insert(NodeId(1), (true, t));
        assert!(!may_found(NodeId(2), 3, &fresh));
        // A node without seeds founds at once.
        assert!(may_found(NodeId(1), 1, &BTreeMap::new()));
    }
}
