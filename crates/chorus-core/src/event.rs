//! What the core tells the application.

use bytes::Bytes;

use crate::id::{MemberId, MsgId, View, ViewId};

/// An event for the application, drained with [`Node::poll_event`](crate::Node::poll_event).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A new view is installed. Every message of the previous view that this member will ever
    /// deliver has been delivered before this event (the view change is a barrier).
    /// Multicasts are accepted again.
    ViewInstalled {
        /// The view.
        view: View,
        /// Members new in this view.
        joined: Vec<MemberId>,
        /// Members of the previous view that are not in this one (failed, suspected or left).
        departed: Vec<MemberId>,
        /// Members that start this view without the application's state and load it from a
        /// donor (with state transfer on; see `StateIncoming`). Empty otherwise.
        loading: Vec<MemberId>,
        /// Members that are restarted nodes which spoke for their earlier lives in the view
        /// change (recovery from their data directories; see `Event::Recovering`).
        recovered: Vec<MemberId>,
    },
    /// A multicast is delivered, in the view it was sent in, in FIFO order per sender and in
    /// the order its mode asks for.
    Delivered {
        /// Its id (sender, view, sequence number).
        id: MsgId,
        /// How it was ordered.
        order: crate::Order,
        /// The payload.
        payload: Bytes,
    },
    /// The member stopped delivering and sending: a view change is under way, or it cannot reach
    /// a majority of its view (then it waits until it can, or re-joins when told it was
    /// excluded).
    Blocked {
        /// Why.
        reason: BlockReason,
    },
    /// The failure detector suspects a member of the current view.
    Suspected {
        /// The member.
        member: MemberId,
        /// Why.
        reason: SuspectReason,
    },
    /// This incarnation was removed from the group while alive (false suspicion or partition),
    /// or, while joining, was refused because the members know this incarnation of the node
    /// or a newer one (its clock went back across a restart). The node forgets its group state
    /// and joins again as `rejoin_as`; the application must drop its replicated state and take
    /// it from state transfer.
    Excluded {
        /// The first view (known to this node) that does not hold it, if known.
        by_view: Option<ViewId>,
        /// The new incarnation the node is joining as.
        rejoin_as: MemberId,
    },
    /// The node left the group after `Node::leave`; it sends and delivers nothing more.
    Left,
    /// Every member of the current view has reported its application state stored up to at
    /// least `upto` (the positions given to `Node::set_durable`). Rises only; an application
    /// that acknowledges writes once they are on every member's disk waits for it.
    Durable {
        /// The lowest position reported by a member of the view.
        upto: u64,
    },
    /// The node restarted from its data directory into `view`, the last view its earlier life
    /// was in: it takes part in that view's change on behalf of that life (which is over), and
    /// joins the next view as its new incarnation. It delivers nothing of `view`.
    Recovering {
        /// The view of the earlier life.
        view: View,
        /// The earlier life it speaks for there. An application that offered a stored state
        /// (`Recovery::state`) keeps it as this member's: it is the state this member was
        /// offered with (a restart that crashed before entering the next view hands its role,
        /// and its state, on to the next restart).
        member: MemberId,
    },
    /// (State transfer.) This member is the donor for members that start `view` without the
    /// state: it has delivered every message of the previous view and none of `view`. Take a
    /// checkpoint of the state now, before applying any later delivery (a copy, or a
    /// copy-on-write snapshot), and stream it with `Node::write_checkpoint(view, chunk)` as
    /// room allows, then `Node::finish_checkpoint(view)`. If the view changes first, the
    /// transfer is abandoned (writes fail with `NotRequested`); drop the snapshot.
    CheckpointRequest {
        /// The view whose barrier the checkpoint is taken at.
        view: ViewId,
        /// The members waiting for the state.
        joiners: Vec<MemberId>,
    },
    /// (State transfer, donor.) `write_checkpoint` refused a chunk with `WindowFull`; there is
    /// room again.
    CheckpointWritable {
        /// The view of the transfer.
        view: ViewId,
    },
    /// (State transfer, donor.) Every loading member has the whole checkpoint: drop it.
    CheckpointComplete {
        /// The view of the transfer.
        view: ViewId,
    },
    /// (State transfer, loading member.) This member has no state in `view`: discard any
    /// state (and any partly loaded checkpoint) and load the one `donor` streams, from
    /// offset 0. Nothing of `view` is delivered before `StateLoaded`.
    StateIncoming {
        /// The view whose barrier the checkpoint is taken at.
        view: ViewId,
        /// The member that streams it.
        donor: MemberId,
    },
    /// (State transfer, loading member.) The next piece of the checkpoint, in order. Taking
    /// it from `poll_event` acknowledges it to the donor, which then sends more.
    StateChunk {
        /// The view of the transfer.
        view: ViewId,
        /// Its offset in the checkpoint.
        offset: u64,
        /// The bytes.
        data: Bytes,
    },
    /// (State transfer, loading member.) The whole checkpoint of `view` arrived: the state is
    /// loaded. Deliveries of `view` follow.
    StateLoaded {
        /// The view of the transfer.
        view: ViewId,
        /// The checkpoint's length in bytes.
        len: u64,
    },
}

/// Why the failure detector suspects a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuspectReason {
    /// Nothing heard from it for `Config::suspect_timeout`.
    Silent,
    /// It heartbeats, but its acknowledgements of this member's messages stood still for
    /// `Config::lag_timeout`: it cannot keep up, and it holds every window full.
    Lagging,
}

impl std::fmt::Display for SuspectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SuspectReason::Silent => "silent for longer than the suspicion timeout",
            SuspectReason::Lagging => "its acknowledgements stood still for longer than the lag timeout",
        })
    }
}

/// Why a member is blocked.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockReason {
    /// A view change is flushing the current view.
    Flush,
    /// A majority of the view is unreachable: this member is in a minority and must not go on.
    NoQuorum,
}
