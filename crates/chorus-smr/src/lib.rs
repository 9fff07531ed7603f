//! # chorus-smr: state machine replication on virtual synchrony
//!
//! A [`Replica`] runs a deterministic [`StateMachine`] on every member of a chorus group:
//! commands go through the group in safe order and are applied in that order everywhere; the
//! output goes back to the client that submitted it; client sessions suppress duplicates of
//! retried requests; members that join load the state from a snapshot taken at the view barrier
//! (streamed by the core's state transfer); reads choose their consistency, local or
//! linearizable; standby members apply everything and serve nobody until promoted.
//!
//! Sans-IO like `chorus-core`: feed it the member's events with [`Replica::on_event`], the
//! clients' requests with [`Replica::submit`] and [`Replica::read`], and carry out what
//! [`Replica::poll_action`] returns. `chorus-kv` drives it with the tokio runtime; the tests
//! here drive it with the core's simulated network.
//!
//! [`storage`] is the node's data directory (write-ahead log, snapshots, small atomic files)
//! over real files or a simulated disk, for a driver that keeps a replica's state across
//! restarts.

mod durable;
mod machine;
mod replica;
mod session;
pub mod storage;

/// Serializes a byte slice as bytes in one piece: serde's own `[u8]` impl writes a sequence, one
/// call per byte. The encoding is the same in postcard (a length, then the bytes), and a
/// borrowed `&[u8]` field deserializes from it as before.
pub(crate) fn as_bytes<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(b)
}

pub use durable::{DurableOptions, Fsync, SnapshotJob, StorageStatus, Stored, FSYNC_BUCKETS_US};
pub use machine::{Ctx, Frozen, RestoreError, StateMachine, WholeSnapshot};
pub use replica::{
    frozen_digest, Action, Consistency, Phase, Replica, ReplicaConfig, ReplicaError, ReplicaStatus, Role,
    Ticket,
};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[derive(serde::Serialize)]
    struct AsSeq<'a> {
        b: &'a [u8],
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    struct AsBytes<'a> {
        #[serde(borrow, serialize_with = "crate::as_bytes")]
        b: &'a [u8],
    }

    #[test]
    fn bytes_in_one_piece_encode_as_the_sequence_did() {
        for len in [0usize, 1, 127, 128, 300, 70_000] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let seq = postcard::to_stdvec(&AsSeq { b: &data }).unwrap();
            let bytes = postcard::to_stdvec(&AsBytes { b: &data }).unwrap();
            assert_eq!(seq, bytes, "length {len}");
            let back: AsBytes<'_> = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(back.b, &data[..]);
        }
    }
}
