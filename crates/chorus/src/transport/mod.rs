//! The transport between members: TCP connections carrying length-prefixed, checksummed
//! frames, opened by a handshake that authenticates the peer before anything else is accepted.

pub mod frame;
pub mod handshake;
