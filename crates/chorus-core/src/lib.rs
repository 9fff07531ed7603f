//! # chorus-core: the sans-IO virtual synchrony engine
//!
//! One [`Node`] per process. The node never touches a socket, a clock, a thread or the OS's
//! randomness: time comes in as an argument, randomness from [`Config::seed`]. A driver (the
//! tokio runtime, or the deterministic simulator) runs this loop:
//!
//! ```text
//!            bytes from peer ──► handle_frame(now, from, bytes)
//!            timer expired   ──► handle_timeout(now)
//!            app request     ──► multicast(now, payload) / leave(now)
//!                                     │
//!      then drain, until each returns None:
//!            poll_transmit() ──► send frame to peer
//!            poll_event()    ──► give event to the application
//!            poll_timeout()  ──► (re)arm the one timer
//! ```
//!
//! The drain rule: after any `handle_*`/`multicast`/`leave` call, drain `poll_transmit` and
//! `poll_event` before sleeping, and re-read `poll_timeout`. Outputs are queued in order; nothing
//! is lost by draining late, but timers and frames are only as prompt as the drain.
//!
//! What the node implements is described in `docs/protocol/` (membership, failure detection,
//! flush, reliable multicast, stability) with a glossary of terms.

#![warn(missing_docs)]

mod config;
mod error;
mod event;
mod frag;
mod gms;
mod id;
mod marks;
mod mcast;
mod node;
mod order;
mod recovery;
mod time;
mod transfer;
pub mod wire;

pub use config::Config;
pub use error::{CheckpointError, ConfigError, DecodeError, FrameError, SendError};
pub use event::{BlockReason, Event, SuspectReason};
pub use id::{GroupId, Incarnation, MemberId, MsgId, NodeId, Seqno, View, ViewId};
pub use marks::{Mark, Marks};
pub use node::{LocalPauses, Node, Stability, Status, Transmit};
pub use order::Order;
pub use recovery::{Membership, Persisted, Recovery};
pub use time::Instant;

/// Deliberate protocol bugs. Each breaks one guarantee so that a test can show the simulator's
/// checker catches it. Compiled only with the `mutants` feature.
#[cfg(feature = "mutants")]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mutant {
    /// Install the next view without delivering the messages of the flush cut (breaks G4).
    SkipFlush,
    /// Deliver messages that were sent in an older view (breaks G5).
    DeliverStaleView,
    /// Deliver a sender's messages as they arrive, ignoring gaps (breaks G7).
    DropFifo,
    /// Install a view without a majority of the previous one (breaks G2).
    InstallMinority,
    /// Deliver some messages twice (breaks G6).
    DuplicateDelivery,
    /// Tell one member a different member list for the same view id (breaks G1).
    SplitView,
    /// A member excluded from the next view installs it anyway (breaks G3).
    InstallWithoutSelf,
    /// Never answer a retransmission request (breaks G12).
    NoRetransmit,
    /// Deliver causal messages without waiting for their causal past (breaks G8).
    IgnoreCausalDeps,
    /// Deliver total-order messages as soon as they are next from their sender (breaks G9).
    TotalByArrival,
    /// Deliver safe messages without waiting for stability (breaks G10 when a sender and its
    /// only receivers crash).
    SafeBeforeStable,
    /// Ask the donor for its checkpoint before it delivers the flush cut, so the state handed
    /// on misses the end of the old view (breaks G11).
    CheckpointBeforeCut,
    /// Deliver new-view messages to a member before its state is loaded (breaks ST2).
    DeliverBeforeLoaded,
    /// Take checkpoint chunks at whatever offset they arrive (duplicates, gaps), so the loaded
    /// state is corrupt (breaks G11).
    ChunkOutOfOrder,
    /// Name another node as the sender of one frame in a hundred (an encoding bug: the receiver
    /// rejects the frame as an impersonation, and the simulator fails the seed for it).
    WrongSender,
}

#[cfg(feature = "mutants")]
impl Mutant {
    /// Every mutant.
    pub const ALL: [Mutant; 15] = [
        Mutant::SkipFlush,
        Mutant::DeliverStaleView,
        Mutant::DropFifo,
        Mutant::InstallMinority,
        Mutant::DuplicateDelivery,
        Mutant::SplitView,
        Mutant::InstallWithoutSelf,
        Mutant::NoRetransmit,
        Mutant::IgnoreCausalDeps,
        Mutant::TotalByArrival,
        Mutant::SafeBeforeStable,
        Mutant::CheckpointBeforeCut,
        Mutant::DeliverBeforeLoaded,
        Mutant::ChunkOutOfOrder,
        Mutant::WrongSender,
    ];
}
