//! Errors, split by who is at fault. Each variant says what happened to the node's state.

use thiserror::Error;

use crate::id::NodeId;

/// The configuration is inconsistent (the caller's fault). No node was built.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field has a value that cannot work.
    #[error("invalid config {what}: {why}")]
    Invalid {
        /// The field (or fields).
        what: &'static str,
        /// Why.
        why: String,
    },
}

/// A frame from a peer was rejected (the peer's fault, or a corrupted link). The node's state
/// is unchanged; a runtime should log it and close the connection.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The bytes do not decode as a frame of our protocol.
    #[error("malformed frame from {from}: {why}")]
    Malformed {
        /// The transport-level sender.
        from: NodeId,
        /// What was wrong.
        why: DecodeError,
    },
    /// The frame claims to come from a different node than the connection it arrived on.
    #[error("frame from connection {from} claims to be from {claimed}")]
    Impersonation {
        /// The transport-level sender.
        from: NodeId,
        /// The node named in the frame.
        claimed: NodeId,
    },
}

/// Why bytes failed to decode. Never a panic, whatever the bytes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than a header.
    #[error("truncated: {len} bytes")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// The frame does not start with our magic number.
    #[error("bad magic {0:#06x}")]
    BadMagic(u16),
    /// A wire version this build does not speak.
    #[error("unsupported wire version {0}")]
    Version(u8),
    /// The frame is larger than the configured limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    Oversized {
        /// Frame length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The body does not decode.
    #[error("bad body: {0}")]
    Body(String),
    /// Bytes left over after the body.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// A field holds a value no correct peer sends (the sender's fault).
    #[error("implausible {what}: {value} (the most a correct peer sends is {max})")]
    Implausible {
        /// The field.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The bound.
        max: u64,
    },
}

/// Why a multicast was not accepted. The first four are "not now": the message was not taken,
/// and the caller should wait for the event named in the variant's doc, then try again.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// Not a member of a view yet (joining), or excluded and re-joining: wait for
    /// `Event::ViewInstalled`.
    #[error("not a member of a view")]
    NotMember,
    /// This member is loading the group's state: wait for `Event::StateLoaded`.
    #[error("waiting for the group's state")]
    AwaitingState,
    /// A view change (flush) is in progress: wait for `Event::ViewInstalled`.
    #[error("blocked by a view change")]
    Blocked,
    /// Too many of this sender's messages are not yet stable: retry after a later
    /// `poll_transmit`/`handle_frame` round (`Node::can_send`).
    #[error("send window full")]
    WindowFull,
    /// The node has left the group or was shut down; it will not accept messages again.
    #[error("node has left the group")]
    Left,
    /// The payload is larger than `Config::max_payload` (the caller's fault).
    #[error("payload of {len} bytes exceeds max_payload {max}")]
    TooLarge {
        /// Payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl SendError {
    /// Whether trying again later can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SendError::NotMember | SendError::AwaitingState | SendError::Blocked | SendError::WindowFull
        )
    }
}

/// Why a checkpoint write was refused. Nothing was sent.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointError {
    /// No checkpoint is being taken for that view: none was asked, or the view has changed
    /// since and the transfer was abandoned (drop the snapshot).
    #[error("no checkpoint is requested for view {0:?}")]
    NotRequested(crate::id::ViewId),
    /// `finish_checkpoint` was called already for that view (the caller's fault).
    #[error("the checkpoint for view {0:?} is finished already")]
    Finished(crate::id::ViewId),
    /// The chunk is larger than allowed (the caller's fault): `Config::max_payload` per chunk,
    /// or for `provide_checkpoint` the room left in `Config::state_window`.
    #[error("checkpoint chunk of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `Config::state_window` bytes are waiting for the loading members: wait for
    /// `Event::CheckpointWritable`.
    #[error("state transfer window full")]
    WindowFull,
}
