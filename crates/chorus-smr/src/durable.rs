//! Durability of a replica: a write-ahead log of every entry that changes its state, snapshots
//! of the state (the log behind them dropped), and which member owns the stored state.
//!
//! ```text
//!  delivered (safe) commands, roles ─┐
//!  installed views (roles pass on) ──┴─► log entry at position p ──► Wal::append
//!  the driver, once per pass ─────────► Replica::sync: fsync by policy ─► Node::set_durable(p)
//!  `always`: a reply waits for Event::Durable { upto ≥ p } (every member of the view stored it)
//! ```
//!
//! Positions count log entries since the group began; every member logs the same entries in
//! the same order (only safe deliveries and view installs change the state), so a position
//! names one state everywhere, and every member's log is a prefix of one history.
//!
//! The stored state is **owned** by a member (the `owner` file): the member whose state it is
//! in its current view. A restarted node offers its stored state for recovery only if its last
//! membership is that owner (`Replica::offer`): a state left from a life that was excluded is
//! not offered. See docs/protocol/recovery.md.

use std::io::Write;
use std::sync::Arc;

use chorus_core::{MemberId, View};
use serde::{Deserialize, Serialize};

use crate::machine::Frozen;
use crate::storage::{
    read_atomic, write_atomic, Dir, SnapshotInfo, SnapshotWriter, StorageError, Wal, WalOptions, WalSync,
    WalSynced,
};

/// When the log is synced to disk, as Redis's `appendfsync` names it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Fsync {
    /// Before a write is acknowledged, at every member of the view (one fsync per batch of
    /// commands at each member: group commit). No acknowledged write is lost by any crash, the
    /// whole group's included.
    #[default]
    Always,
    /// About once a second. An acknowledged write survives any crash that leaves one member of
    /// the view running; a crash of every member loses up to about a second of writes.
    EverySec,
    /// When the operating system writes it. Like `EverySec`, with an unbounded window.
    No,
}

impl std::fmt::Display for Fsync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Fsync::Always => "always",
            Fsync::EverySec => "everysec",
            Fsync::No => "no",
        })
    }
}

impl std::str::FromStr for Fsync {
    type Err = String;

    fn from_str(s: &str) -> Result<Fsync, String> {
        match s {
            "always" => Ok(Fsync::Always),
            "everysec" => Ok(Fsync::EverySec),
            "no" => Ok(Fsync::No),
            other => Err(format!("{other:?} is not always, everysec or no")),
        }
    }
}

/// How a replica keeps its state on disk.
#[derive(Clone, Debug)]
pub struct DurableOptions {
    /// When the log is synced.
    pub fsync: Fsync,
    /// A snapshot is taken (and the log behind it dropped) once the log holds this many bytes,
    /// and half as many as the last snapshot.
    pub snapshot_log_bytes: u64,
    /// The log's settings.
    pub wal: WalOptions,
}

impl Default for DurableOptions {
    fn default() -> Self {
        DurableOptions { fsync: Fsync::Always, snapshot_log_bytes: 64 << 20, wal: WalOptions::default() }
    }
}

/// One entry of the log.
#[derive(Serialize, Deserialize)]
pub(crate) enum LogEntry<'a> {
    /// A delivered message that changes the state (commands, a role), as it was delivered.
    Delivered {
        /// Its sender.
        sender: MemberId,
        /// Its payload.
        #[serde(borrow, serialize_with = "crate::as_bytes")]
        payload: &'a [u8],
    },
    /// A view installed: the roles of departed members pass on.
    View {
        /// The view.
        view: View,
        /// Members of the previous view not in it.
        departed: Vec<MemberId>,
    },
}

impl LogEntry<'_> {
    pub(crate) fn encode(&self) -> Vec<u8> {
        // Serializing our own enum into a Vec cannot fail.
        postcard::to_stdvec(self).unwrap_or_default()
    }
}

/// The file naming the member that owns the stored state.
const OWNER: &str = "owner";

/// The upper bounds (microseconds) of the fsync duration buckets in [`StorageStatus`].
pub const FSYNC_BUCKETS_US: [u64; 12] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000];

/// What a replica reports of its storage (Redis's `INFO persistence`).
#[derive(Clone, Debug, Default)]
pub struct StorageStatus {
    /// The policy.
    pub fsync: Fsync,
    /// Position of the last entry in the log (or of the snapshot, if the log is empty).
    pub last_pos: u64,
    /// Position up to which the log is synced.
    pub synced_pos: u64,
    /// Bytes and files of the log.
    pub log_bytes: u64,
    /// Segment files of the log.
    pub log_segments: usize,
    /// Position and size of the latest snapshot on disk.
    pub snapshot: Option<(u64, u64)>,
    /// A snapshot is being written.
    pub snapshot_in_progress: bool,
    /// Snapshots written since start, and when the last one finished (ms since the epoch).
    pub snapshots_written: u64,
    /// When the last snapshot finished (ms since the epoch), 0 if none since start.
    pub last_snapshot_ms: u64,
    /// fsyncs of the log, and their durations.
    pub fsyncs: u64,
    /// Duration of the last fsync, in microseconds.
    pub fsync_last_us: u64,
    /// Longest fsync since start, in microseconds.
    pub fsync_max_us: u64,
    /// fsyncs by duration: `fsync_buckets[i]` counts those that took at most
    /// [`FSYNC_BUCKETS_US`]`[i]` and more than the bound before; the last counts the rest.
    pub fsync_buckets: [u64; FSYNC_BUCKETS_US.len() + 1],
    /// Total time of the fsyncs, in microseconds.
    pub fsync_total_us: u64,
    /// The stored state belongs to this member (it may be offered for recovery).
    pub owned: bool,
    /// Why the last snapshot failed, if it did (the log still holds everything).
    pub last_snapshot_error: Option<String>,
}

/// The replica's storage.
#[derive(Debug)]
pub struct Stored {
    pub(crate) dir: Arc<dyn Dir>,
    pub(crate) wal: Wal,
    pub(crate) opts: DurableOptions,
    /// The member that owns the stored state.
    pub(crate) owner: Option<MemberId>,
    /// The stored state is this replica's own now: it logs, and reports its position.
    pub(crate) valid: bool,
    /// Position reported stored to the group.
    pub(crate) reported: u64,
    pub(crate) last_sync_ms: u64,
    /// A sync of the log is running on another thread, since this time (clock, µs).
    pub(crate) sync_out: Option<u64>,
    /// A snapshot job is out.
    pub(crate) snapshotting: bool,
    pub(crate) latest: Option<SnapshotInfo>,
    /// A transferred state being written to disk while it loads: the bytes before the
    /// position is known (the header), then the writer.
    pub(crate) load: Option<Loading>,
    pub(crate) status: StorageStatus,
}

/// A transferred checkpoint on its way to disk.
#[derive(Debug)]
pub(crate) enum Loading {
    /// Its header, until the position in it can be read.
    Head(Vec<u8>),
    /// Written to a snapshot file at its position.
    Writing(SnapshotWriter),
}

impl Stored {
    /// The member that owns the state stored in `dir`, if any (see the module docs).
    pub fn owner(dir: &dyn Dir) -> Result<Option<MemberId>, StorageError> {
        Stored::read_owner(dir)
    }

    pub(crate) fn read_owner(dir: &dyn Dir) -> Result<Option<MemberId>, StorageError> {
        match read_atomic(dir, OWNER)? {
            None => Ok(None),
            Some(b) => postcard::from_bytes(&b).map(Some).map_err(|e| StorageError::Corrupt {
                file: OWNER.into(),
                offset: 0,
                why: format!("not a member id: {e}"),
            }),
        }
    }

    /// Records that the stored state is `me`'s.
    pub(crate) fn set_owner(&mut self, me: MemberId) -> Result<(), StorageError> {
        if self.owner != Some(me) {
            write_atomic(self.dir.as_ref(), OWNER, &postcard::to_stdvec(&me).unwrap_or_default())?;
            self.owner = Some(me);
        }
        self.valid = true;
        self.status.owned = true;
        Ok(())
    }

    pub(crate) fn append(&mut self, pos: u64, entry: &LogEntry<'_>) -> Result<(), StorageError> {
        self.wal.append(pos, &entry.encode())
    }

    /// Syncs the log if the policy says so now; returns the position to report stored, if it
    /// rose.
    pub(crate) fn sync(&mut self, now_ms: u64, clock: &dyn Fn() -> u64) -> Result<Option<u64>, StorageError> {
        let due = match self.opts.fsync {
            Fsync::Always => true,
            Fsync::EverySec => now_ms.saturating_sub(self.last_sync_ms) >= 1000,
            Fsync::No => false,
        };
        if due && self.wal.synced_pos() < self.wal.last_pos() {
            let t0 = clock();
            self.wal.sync()?;
            self.last_sync_ms = now_ms;
            self.count_sync(clock().saturating_sub(t0));
        }
        Ok(self.report())
    }

    /// [`Stored::sync`] off the caller's thread: starts a sync if the policy says so now and
    /// none is out, and returns it to run elsewhere (see [`Wal::start_sync`]); also returns
    /// the position to report stored, if it rose.
    pub(crate) fn sync_start(
        &mut self,
        now_ms: u64,
        clock: &dyn Fn() -> u64,
    ) -> Result<(Option<u64>, Option<WalSync>), StorageError> {
        if self.sync_out.is_some() {
            return Ok((None, None));
        }
        let due = match self.opts.fsync {
            Fsync::Always => true,
            Fsync::EverySec => now_ms.saturating_sub(self.last_sync_ms) >= 1000,
            Fsync::No => false,
        };
        let mut job = None;
        if due && self.wal.synced_pos() < self.wal.last_pos() {
            let t0 = clock();
            job = self.wal.start_sync()?;
            self.last_sync_ms = now_ms;
            match job {
                Some(_) => self.sync_out = Some(t0),
                None => self.count_sync(clock().saturating_sub(t0)),
            }
        }
        Ok((self.report(), job))
    }

    /// A sync from [`Stored::sync_start`] ended; returns the position to report stored, if it
    /// rose.
    pub(crate) fn sync_finish(
        &mut self,
        done: WalSynced,
        clock: &dyn Fn() -> u64,
    ) -> Result<Option<u64>, StorageError> {
        let t0 = self.sync_out.take();
        self.wal.finish_sync(done)?;
        if let Some(t0) = t0 {
            self.count_sync(clock().saturating_sub(t0));
        }
        Ok(self.report())
    }

    fn count_sync(&mut self, took_us: u64) {
        self.status.fsyncs += 1;
        self.status.fsync_last_us = took_us;
        self.status.fsync_max_us = self.status.fsync_max_us.max(took_us);
        self.status.fsync_total_us = self.status.fsync_total_us.saturating_add(took_us);
        let b = FSYNC_BUCKETS_US.iter().position(|&ub| took_us <= ub).unwrap_or(FSYNC_BUCKETS_US.len());
        self.status.fsync_buckets[b] += 1;
    }

    /// The synced position, if it rose past what was reported (and the state is this
    /// replica's own).
    fn report(&mut self) -> Option<u64> {
        let synced = self.wal.synced_pos();
        if self.valid && synced > self.reported {
            self.reported = synced;
            return Some(synced);
        }
        None
    }

    pub(crate) fn status(&self) -> StorageStatus {
        let mut s = self.status.clone();
        s.fsync = self.opts.fsync;
        s.last_pos = self.wal.last_pos();
        s.synced_pos = self.wal.synced_pos();
        s.log_bytes = self.wal.bytes();
        s.log_segments = self.wal.segments();
        s.snapshot = self.latest.as_ref().map(|i| (i.pos, i.size));
        s.snapshot_in_progress = self.snapshotting;
        s
    }

    /// Forgets a failed snapshot's error once one succeeds.
    pub(crate) fn snapshot_ok(&mut self) {
        self.status.last_snapshot_error = None;
    }
}

/// A snapshot of the replica's state to write to disk, off the replica's thread: run it, then
/// hand the result to [`Replica::snapshot_done`](crate::Replica::snapshot_done).
pub struct SnapshotJob {
    pub(crate) dir: Arc<dyn Dir>,
    pub(crate) pos: u64,
    pub(crate) state: Box<dyn Frozen>,
}

impl std::fmt::Debug for SnapshotJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotJob").field("pos", &self.pos).finish_non_exhaustive()
    }
}

/// Pieces of this size are serialized at a time: the memory a snapshot takes beyond the
/// machine's copy-on-write copy.
const PIECE: usize = 256 << 10;

impl SnapshotJob {
    /// The position the snapshot is taken at.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Writes the snapshot (streamed, piece by piece) and makes it durable.
    pub fn run(mut self) -> Result<SnapshotInfo, StorageError> {
        let mut w = SnapshotWriter::create(self.dir.clone(), self.pos)?;
        let mut piece = Vec::with_capacity(PIECE);
        loop {
            piece.clear();
            if !self.state.next_piece(&mut piece, PIECE) {
                break;
            }
            if let Err(e) = w.write_all(&piece) {
                let _ = w.abort();
                return Err(StorageError::Io {
                    file: format!("snap-{:020}.tmp", self.pos),
                    op: "write",
                    source: e,
                });
            }
        }
        w.finish()
    }
}
