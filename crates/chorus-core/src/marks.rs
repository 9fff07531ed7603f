//! Coverage marks: counters of dangerous situations, so that a batch of simulation runs can
//! prove it exercised them (a checker that never sees the hard case proves nothing).

/// A dangerous situation the core noticed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(usize)]
pub enum Mark {
    /// A flush forwarded messages that some survivor lacked (a view change with messages in
    /// flight).
    FlushForwarded,
    /// A flush delivered messages of a sender that is not in the next view.
    FlushDeliveredFromDeparted,
    /// A coordinator took over a view change started by another (the first one died or was
    /// suspected).
    CoordinatorTakeover,
    /// A coordinator adopted a proposal accepted under an earlier ballot.
    AdoptedProposal,
    /// A view added a member while the old view had unstable messages (a join under load).
    JoinUnderLoad,
    /// This incarnation learned it was excluded while alive and re-joined.
    RejoinAfterExclusion,
    /// The member saw it could not reach a majority and blocked.
    MinorityBlocked,
    /// A member missed an install and was sent it again.
    InstallResent,
    /// A retransmission request was answered.
    Retransmitted,
    /// The sender's window was full (back-pressure).
    WindowFull,
    /// An acceptor learned its proposal was chosen from other acceptors and installed it
    /// without the coordinator's install.
    LearnedChosen,
    /// One donor served two or more loading members in one view change.
    SeveralJoinersServed,
    /// A member's state transfer was cut off by a view change and restarted in the next view
    /// (its donor died, or another loading member did, or the view changed for any reason).
    TransferRestarted,
    /// A donor's state window was full (flow control of a transfer).
    StateWindowFull,
    /// Checkpoint chunks were resent, or a resend was answered with an acknowledgement.
    StateRetransmitted,
    /// A loading member's buffer of new-view messages filled up and it stopped acknowledging.
    StateBufferFull,
    /// A coordinator found no member holding the state in the next view and did not propose.
    NoStateHolder,
    /// A member installed a view from an install resent by a member of that view that was not
    /// in its own (a joiner, the last to hold the decision).
    InstallFromNextView,
    /// A member that kept heartbeating was suspected because its acknowledgements of this
    /// member's messages stood still for `lag_timeout`.
    AcksStalled,
    /// A restarted node came back into its earlier life's last view to speak for it.
    Recovering,
    /// A restarted node entered a view as its new incarnation after speaking for its earlier
    /// life in the change that made it.
    RecoveredView,
    /// No member alive held the state: the view was recovered from stable storage, its donor
    /// chosen among restarted members by their stored position.
    RecoveredFromDisk,
    /// A member could not complete the flush of an install sent by restarted members (which
    /// carry no messages) and joined afresh.
    IncompleteInstall,
    /// A join request from a node of another group was refused.
    ForeignGroup,
    /// A founder waited because a node with a lower id is a founder too.
    FoundingDeferred,
    /// This node did not run for longer than twice the heartbeat interval (paused): the time
    /// was not held against its peers.
    LocalPause,
    /// A message too large for one batch was sent cut into pieces (`Msg::Frag`).
    Fragmented,
    /// A frame sent in pieces was put back together and handled.
    Reassembled,
    /// A member learned it was out of the next view (or let go) with its acceptance of that
    /// change still queued, and sent it under the life that gave it.
    VoteAfterExclusion,
    /// The coordinator held back the join of a node excluded several times lately.
    ReadmitDelayed,
}

impl Mark {
    /// Every mark, in order.
    pub const ALL: [Mark; 30] = [
        Mark::FlushForwarded,
        Mark::FlushDeliveredFromDeparted,
        Mark::CoordinatorTakeover,
        Mark::AdoptedProposal,
        Mark::JoinUnderLoad,
        Mark::RejoinAfterExclusion,
        Mark::MinorityBlocked,
        Mark::InstallResent,
        Mark::Retransmitted,
        Mark::WindowFull,
        Mark::LearnedChosen,
        Mark::SeveralJoinersServed,
        Mark::TransferRestarted,
        Mark::StateWindowFull,
        Mark::StateRetransmitted,
        Mark::StateBufferFull,
        Mark::NoStateHolder,
        Mark::InstallFromNextView,
        Mark::AcksStalled,
        Mark::Recovering,
        Mark::RecoveredView,
        Mark::RecoveredFromDisk,
        Mark::IncompleteInstall,
        Mark::ForeignGroup,
        Mark::FoundingDeferred,
        Mark::LocalPause,
        Mark::Fragmented,
        Mark::Reassembled,
        Mark::VoteAfterExclusion,
        Mark::ReadmitDelayed,
    ];
}

/// Counts of each [`Mark`] seen by one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Marks([u64; Mark::ALL.len()]);

impl Marks {
    pub(crate) fn hit(&mut self, m: Mark) {
        self.0[m as usize] += 1;
    }

    /// How often `m` was hit.
    pub fn get(&self, m: Mark) -> u64 {
        self.0[m as usize]
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Marks) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += *b;
        }
    }
}
