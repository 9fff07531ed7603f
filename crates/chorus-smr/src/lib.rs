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

pub use durable::{DurableOptions, Fsync, SnapshotJob, StorageStatus, Stored};
pub use machine::{Ctx, Frozen, RestoreError, StateMachine, WholeSnapshot};
pub use replica::{
    frozen_digest, Action, Consistency, Phase, Replica, ReplicaConfig, ReplicaError, ReplicaStatus, Role,
    Ticket,
};
