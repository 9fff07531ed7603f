//! The node: one member's protocol state machine. (Stub: the protocol lands in the next commit.)

use bytes::Bytes;

use crate::config::Config;
use crate::error::{ConfigError, FrameError, SendError};
use crate::event::Event;
use crate::id::{MemberId, MsgId, NodeId, View};
use crate::marks::Marks;
use crate::time::Instant;

/// A frame to send to a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The destination node.
    pub to: NodeId,
    /// The encoded frame.
    pub frame: Bytes,
}

/// Where the node is in its life.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Asking to join; not in a view yet.
    Joining,
    /// In a view, sending and delivering.
    Member,
    /// In a view, but blocked by a view change or a lost majority.
    Blocked,
    /// Left the group; does nothing more.
    Left,
}

/// One member's protocol engine. See the crate docs for the drive loop.
#[derive(Debug)]
pub struct Node {
    config: Config,
    marks: Marks,
}

impl Node {
    /// A node that will bootstrap or join as `config` says.
    pub fn new(config: Config, _now: Instant) -> Result<Node, ConfigError> {
        config.validate()?;
        Ok(Node { config, marks: Marks::default() })
    }

    /// This member's identity (changes when the node re-joins after exclusion).
    pub fn member_id(&self) -> MemberId {
        self.config.member_id()
    }

    /// The installed view, if any.
    pub fn view(&self) -> Option<&View> {
        None
    }

    /// Where the node is in its life.
    pub fn status(&self) -> Status {
        Status::Joining
    }

    /// Feeds bytes received from peer `from` (as authenticated by the transport).
    pub fn handle_frame(&mut self, _now: Instant, _from: NodeId, _frame: &[u8]) -> Result<(), FrameError> {
        Ok(())
    }

    /// Runs timers due at `now`.
    pub fn handle_timeout(&mut self, _now: Instant) {}

    /// Multicasts `payload` to the current view with FIFO order.
    pub fn multicast(&mut self, _now: Instant, _payload: Bytes) -> Result<MsgId, SendError> {
        Err(SendError::NotMember)
    }

    /// Asks to leave the group gracefully.
    pub fn leave(&mut self, _now: Instant) {}

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        None
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        None
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Coverage marks hit so far.
    pub fn marks(&self) -> &Marks {
        &self.marks
    }
}
