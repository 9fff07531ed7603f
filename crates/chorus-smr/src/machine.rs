//! The application's side of state machine replication.

use std::io::Read;

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

    /// A consistent copy of the state, serialized piece by piece while the machine goes on
    /// applying commands (see [`StateMachine::freeze`]).
    type Frozen: Frozen;

    /// Serializes the whole state, appending to `out`.
    fn snapshot(&self, out: &mut Vec<u8>);

    /// Replaces the whole state with one that `snapshot` wrote. Fails on bytes it cannot read
    /// (they came from the network).
    fn restore(&mut self, data: &[u8]) -> Result<(), RestoreError>;

    /// A copy of the state as it is now, to serialize (the same bytes as `snapshot`) later and
    /// elsewhere while this machine goes on: checkpoints for joiners and snapshots to disk are
    /// made from it without holding the machine. A machine with copy-on-write structures makes
    /// this cheap (no copy of the data); [`WholeSnapshot`] serializes the state at once.
    fn freeze(&self) -> Self::Frozen;

    /// Replaces the whole state with one read from `r` (bytes that `snapshot` wrote), without
    /// holding all of them in memory at once. On an error the machine must be left empty (the
    /// bytes came from the network or from disk).
    fn restore_from(&mut self, r: &mut dyn Read) -> Result<(), RestoreError> {
        let mut data = Vec::new();
        r.read_to_end(&mut data).map_err(|e| RestoreError(format!("reading the snapshot: {e}")))?;
        self.restore(&data)
    }

    /// Drops the whole state (the replica was excluded and will load it again).
    fn reset(&mut self);

    /// A digest of the state, equal at replicas with equal states (for convergence checks).
    fn digest(&self) -> u64;
}

/// A snapshot that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snapshot rejected: {0}")]
pub struct RestoreError(pub String);

/// A frozen copy of a machine's state, serialized in pieces.
pub trait Frozen: Send + 'static {
    /// Appends the next piece of the serialization to `out`: about `max` bytes (at least one
    /// whole record, so a large record may make it longer). Returns false, appending nothing,
    /// once everything was written.
    fn next_piece(&mut self, out: &mut Vec<u8>, max: usize) -> bool;
}

impl std::fmt::Debug for dyn Frozen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Frozen")
    }
}

/// A [`Frozen`] that is the whole serialization, made at once: for machines without
/// copy-on-write structures (it costs a copy of the state in memory).
#[derive(Debug, Clone, Default)]
pub struct WholeSnapshot {
    data: bytes::Bytes,
    at: usize,
}

impl WholeSnapshot {
    /// The serialization of `machine` now.
    pub fn of<S: StateMachine + ?Sized>(machine: &S) -> WholeSnapshot {
        let mut data = Vec::new();
        machine.snapshot(&mut data);
        WholeSnapshot { data: data.into(), at: 0 }
    }
}

impl Frozen for WholeSnapshot {
    fn next_piece(&mut self, out: &mut Vec<u8>, max: usize) -> bool {
        if self.at >= self.data.len() {
            return false;
        }
        let end = self.data.len().min(self.at + max.max(1));
        out.extend_from_slice(&self.data[self.at..end]);
        self.at = end;
        true
    }
}
