//! Tests of the storage layer over the simulated disk.

mod atomic;
mod sim;
mod snapshot;
mod wal;
mod wal_prop;

use std::sync::Arc;

use super::{Dir, SimDir};

/// A handle on the simulated disk as the storage code takes it.
fn handle(sim: &SimDir) -> Arc<dyn Dir> {
    Arc::new(sim.clone())
}

/// splitmix64: a deterministic stream for `SimDir::crash`.
fn rng(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The replica moves these between threads (a snapshot is written in the background).
#[test]
fn handles_are_send() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<super::Wal>();
    send::<super::SnapshotWriter>();
    send::<super::SnapshotReader>();
    send_sync::<super::DataDir>();
    send_sync::<SimDir>();
    send_sync::<super::StorageError>();
}
