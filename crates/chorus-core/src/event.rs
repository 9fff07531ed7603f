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
    },
    /// This incarnation was removed from the group while alive (false suspicion or partition).
    /// The node forgets its group state and joins again as `rejoin_as`; the application must
    /// drop its replicated state and take it from state transfer.
    Excluded {
        /// The first view (known to this node) that does not hold it, if known.
        by_view: Option<ViewId>,
        /// The new incarnation the node is joining as.
        rejoin_as: MemberId,
    },
    /// The node left the group after `Node::leave`; it sends and delivers nothing more.
    Left,
    /// (With `Config::state_transfer`.) This member is the donor for members that just joined:
    /// it has delivered every message of the previous view and none of `view`. Answer with
    /// `Node::provide_checkpoint(view, state)` before applying any later delivery.
    CheckpointRequest {
        /// The view that added the joiners.
        view: ViewId,
        /// The members waiting for the state.
        joiners: Vec<MemberId>,
    },
    /// (With `Config::state_transfer`.) The state this joiner must start from, taken by the
    /// donor at the barrier before `view`. Deliveries of `view` follow this event.
    StateLoaded {
        /// The view it joined in.
        view: ViewId,
        /// The donor's checkpoint.
        state: Bytes,
    },
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
