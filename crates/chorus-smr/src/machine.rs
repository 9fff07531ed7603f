//! The application's side of state machine replication.

use serde::{de::DeserializeOwned, Serialize};

/// What a command is applied with, the same at every replica.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Ctx {
    /// The command's position in the replicated log (1 for the first command ever applied).
    pub index: u64,
    /// The time the command carries (milliseconds since the Unix epoch), stamped by the replica
    /// that submitted it and made monotone by the log: never below the previous command's.
    /// A state machine that needs a clock (expiry) must use this, never its own, or replicas
    /// diverge.
    pub now_ms: u64,
}

/// A deterministic state machine replicated by a [`Replica`](crate::Replica).
///
/// `apply` must be a function of the state, the command bytes and the [`Ctx`] alone: every
/// replica applies the same commands in the same order with the same contexts and must end in
/// the same state with the same outputs.
pub trait StateMachine {
    /// A command's (or a query's) result, returned to the client that submitted it. Kept per
    /// client session for duplicate suppression, so it travels in snapshots.
    type Output: Clone + Serialize + DeserializeOwned;
    /// A read-only request, run against the local state (never replicated).
    type Query;

    /// Applies a replicated command. Malformed commands must produce an error output, not a
    /// panic: the bytes came from the network.
    fn apply(&mut self, cmd: &[u8], ctx: &Ctx) -> Self::Output;

    /// Runs a read-only query on the current state. `now_ms` is the time to judge expiry by: for
    /// a linearizable read, the time of the last applied command; for a local read, the
    /// replica's own clock, but never below the last applied command's time.
    fn query(&self, q: &Self::Query, now_ms: u64) -> Self::Output;

    /// Serializes the whole state, appending to `out`.
    fn snapshot(&self, out: &mut Vec<u8>);

    /// Replaces the whole state with one that `snapshot` wrote. Fails on bytes it cannot read
    /// (they came from the network).
    fn restore(&mut self, data: &[u8]) -> Result<(), RestoreError>;

    /// Drops the whole state (the replica was excluded and will load it again).
    fn reset(&mut self);

    /// A digest of the state, equal at replicas with equal states (for convergence checks).
    fn digest(&self) -> u64;
}

/// A snapshot that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snapshot rejected: {0}")]
pub struct RestoreError(pub String);
