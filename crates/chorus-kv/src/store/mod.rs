//! The replicated state: [`KvMachine`], a deterministic key-value store with Redis's semantics
//! for strings, lists, hashes and sets, expiry and transactions.
//!
//! Determinism: keys live in an ordered map sorted by a fixed 64-bit hash of the key, then the
//! key (so KEYS, SCAN, snapshots and the digest iterate in the same order everywhere, and a
//! SCAN cursor is the hash where to resume); hashes and sets are ordered too. Time
//! comes only from the command's [`Ctx::now_ms`] (writes) or the `now_ms` given to `query`
//! (reads). Keys whose expiry has passed are absent to every command; they are deleted when a
//! write touches them, and up to [`PURGE_PER_APPLY`] of them at the start of every apply (in
//! expiry order, so the same keys at every replica).
//!
//! Versions (WATCH): every key carries the log index of the command that last changed it; an
//! absent key's version is the index of the command that last deleted a key with its hash (a
//! tombstone, the newest [`MAX_TOMBSTONES`] kept), or else the newest forgotten tombstone's
//! index. A version only grows, and every change sets it to an index later than any version
//! read before, so a changed key is never missed; spurious aborts are possible (a forgotten
//! tombstone, a hash collision). A key that had expired when watched reads as "expired at
//! version v" both before and after its deletion, so its deletion does not abort the EXEC (as
//! in Redis 7); a key live when watched and expired at EXEC aborts it.
//!
//! Snapshots: the key map, the tombstones and the hashes, sets and long lists are persistent
//! collections (`imbl`, B+ trees and RRB vectors whose nodes are shared by reference counts), so
//! [`StateMachine::freeze`] copies no data: it takes a second reference to the roots. A write
//! after a freeze copies only the nodes on its path (and a short list's few items), and the
//! frozen copy ([`KvFrozen`]) serializes the state as it was, piece by piece, while the machine
//! goes on. `restore_from` reads the same bytes incrementally through a bounded buffer.

mod commands;
mod glob;
mod hashes;
mod keys;
mod lists;
mod sets;
mod snapshot;
mod strings;
mod value;

use std::collections::{BTreeSet, VecDeque};
use std::io::Read;

use chorus_smr::{Ctx, RestoreError, StateMachine};
use imbl::OrdMap;

use crate::command::{decode_write, Query};
use crate::reply::Reply;

pub use glob::glob_match;
pub use snapshot::KvFrozen;
use snapshot::{Cursor, Fnv};
use value::{Entry, Key, Tomb};

/// How many expired keys an apply deletes before running its command.
pub const PURGE_PER_APPLY: usize = 64;
/// The longest string APPEND may build (Redis's default `proto-max-bulk-len`).
pub const MAX_STRING_LEN: usize = 512 << 20;
/// How many deleted keys' versions are remembered for WATCH (by key hash); beyond that the
/// oldest are forgotten, and a WATCH of such an absent key may abort spuriously (never miss).
pub const MAX_TOMBSTONES: usize = 65_536;

/// The fixed hash that orders the keys (FNV-1a, then a 64-bit finalizer; never 0).
pub fn key_hash(k: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in k {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h.max(1)
}

/// The key-value store, a deterministic [`StateMachine`].
#[derive(Clone, Debug, Default)]
pub struct KvMachine {
    map: OrdMap<Key, Entry>,
    /// (expiry time, key) of every key with an expiry.
    expires: BTreeSet<(u64, Key)>,
    /// Tombstones: key hash -> the index of the command that last deleted a key with that hash
    /// (the version of an absent key), at most [`MAX_TOMBSTONES`], the oldest dropped first.
    tombs: OrdMap<u64, Tomb>,
    /// (index, key hash) of every tombstone, oldest first.
    tomb_order: BTreeSet<(u64, u64)>,
    /// The version of an absent key without a tombstone: the newest dropped tombstone's index
    /// (or of the last FLUSHALL).
    tomb_floor: u64,
}

impl KvMachine {
    /// An empty store.
    pub fn new() -> Self {
        KvMachine::default()
    }

    /// The number of keys held, expired ones not yet deleted included.
    pub fn raw_len(&self) -> usize {
        self.map.len()
    }
}

impl StateMachine for KvMachine {
    type Output = Reply;
    type Query = Query;
    type Frozen = KvFrozen;

    fn apply(&mut self, cmd: &[u8], ctx: &Ctx) -> Reply {
        self.purge_expired(ctx.now_ms, ctx.index, PURGE_PER_APPLY);
        match decode_write(cmd) {
            Ok(w) => self.exec_write(&w, ctx),
            Err(e) => Reply::error(format!("ERR malformed replicated command: {e}")),
        }
    }

    fn query(&self, q: &Query, now_ms: u64) -> Reply {
        if q.0.is_write() {
            return Reply::err("ERR write command in a read-only query");
        }
        self.read(&q.0, now_ms)
    }

    fn snapshot(&self, out: &mut Vec<u8>) {
        self.write_state(out);
    }

    /// O(1): the frozen copy shares every node with the machine.
    fn freeze(&self) -> KvFrozen {
        KvFrozen {
            tomb_floor: self.tomb_floor,
            tombs: self.tombs.clone(),
            map: self.map.clone(),
            at: Cursor::Head,
            pending: VecDeque::new(),
        }
    }

    /// On an error the state is unchanged (the bytes are in memory already, so keeping the old
    /// state while reading costs no more than before).
    fn restore(&mut self, data: &[u8]) -> Result<(), RestoreError> {
        *self = KvMachine::read_from(&mut &data[..]).map_err(RestoreError)?;
        Ok(())
    }

    /// Drops the old state first (holding it and the new one at once would double the memory),
    /// so on an error the machine is empty.
    fn restore_from(&mut self, r: &mut dyn Read) -> Result<(), RestoreError> {
        *self = KvMachine::default();
        *self = KvMachine::read_from(r).map_err(RestoreError)?;
        Ok(())
    }

    fn reset(&mut self) {
        *self = KvMachine::default();
    }

    /// FNV-1a over the snapshot's bytes, streamed into the hasher (no copy of the state).
    fn digest(&self) -> u64 {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        self.write_state(&mut h);
        h.0
    }
}

#[cfg(test)]
mod tests;
