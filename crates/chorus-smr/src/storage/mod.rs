//! The node's data directory: a write-ahead log, snapshots, and small atomic files, over a
//! real filesystem ([`DataDir`], [`FsDir`]) or a simulated disk with crashes ([`SimDir`]).
//!
//! ```text
//! LOCK                              held by the DataDir that has the directory open
//! wal-00000000000000000001.log      log segments, named after their first position (Wal)
//! wal-00000000000000008192.log
//! snap-00000000000000008000.snap    the latest snapshot (SnapshotWriter, latest_snapshot)
//! snap-00000000000000009000.tmp     a snapshot being written, or left by a crash
//! incarnation, incarnation.tmp      small files (write_atomic, read_atomic)
//! ```
//!
//! Driven from one thread, synchronously: at start, [`latest_snapshot`] and
//! [`SnapshotReader`] restore the state at some position `p`, then [`Wal::open`] with
//! `after = p` replays the entries after it. Running: [`Wal::append`] each entry and
//! [`Wal::sync`] once per batch before acknowledging any of it. From time to time: write a
//! snapshot with [`SnapshotWriter`] and, once `finish` returns, [`Wal::truncate_through`] its
//! position.
//!
//! Everything goes through the [`Dir`] trait, so the same code runs over real files and in the
//! simulator. Damage is never skipped over: a record or file that fails its checks is
//! [`StorageError::Corrupt`], naming the file and offset, and nothing after it is loaded. The
//! one repair made silently (and reported) is cutting a record torn by a crash off the end of
//! the log.

#![warn(missing_docs)]

mod atomic;
mod dir;
mod error;
mod sim;
mod snapshot;
mod wal;

#[cfg(test)]
mod tests;

pub use atomic::{read_atomic, write_atomic, MAX_ATOMIC};
pub use dir::{DataDir, Dir, DirFile, FsDir, SyncHandle};
pub use error::StorageError;
pub use sim::SimDir;
pub use snapshot::{latest_snapshot, SnapshotInfo, SnapshotReader, SnapshotWriter};
pub use wal::{OpenError, OpenReport, TornTail, Wal, WalOptions, WalSync, WalSynced};
