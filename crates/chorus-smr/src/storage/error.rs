//! What can go wrong in the data directory, split by who is at fault.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

/// A storage operation failed. Each variant says whose fault it is and what the caller may do.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The disk or the operating system refused an operation (the environment's fault: disk
    /// full, permissions, a failing device). What was written before the last successful sync
    /// is intact; see [`Wal`](super::Wal) for what the log allows after this.
    #[error("{file}: {op} failed: {}", io_reason(.source))]
    Io {
        /// The file (or directory) operated on.
        file: String,
        /// What was being done: "write", "fsync", "rename", ...
        op: &'static str,
        /// What the operating system said.
        source: io::Error,
    },
    /// Bytes on disk fail their checks (the disk's fault, or someone edited the directory).
    /// Nothing from `offset` on was loaded; the node must not start from this directory as is.
    #[error(
        "the data directory is damaged: {file} at byte {offset}: {why}; nothing from there on was loaded"
    )]
    Corrupt {
        /// The damaged file.
        file: String,
        /// Where in it the damage was found (the start of the bad record or section).
        offset: u64,
        /// What check failed.
        why: String,
    },
    /// The log starts after the position the caller's state ends at: the entries in between
    /// are gone (typically the snapshot that covered them was removed). Nothing was loaded.
    #[error(
        "the write-ahead log is missing positions {} to {}: the state ends at position {after} but \
         the log starts at {first} ({file}); was the snapshot that covered them removed?",
        .after + 1, .first - 1
    )]
    Gap {
        /// The first segment of the log.
        file: String,
        /// The position the caller's state (snapshot) ends at.
        after: u64,
        /// The first position the log holds.
        first: u64,
    },
    /// Another process (or another [`DataDir`](super::DataDir) in this one) holds the lock.
    #[error("{}: another process is using this data directory (its LOCK file is locked)", .path.display())]
    Locked {
        /// The data directory.
        path: PathBuf,
    },
    /// The caller asked to store more than the configured limit (the caller's fault). Nothing
    /// was written.
    #[error("{what} of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// An append skipped or repeated a position (the caller's bug). Nothing was written.
    #[error("append at position {got}, but the write-ahead log expects position {expected} next")]
    OutOfOrder {
        /// The position the log expects.
        expected: u64,
        /// The position given.
        got: u64,
    },
    /// A file name the storage layer reserves or cannot store (the caller's bug).
    #[error("{name:?} cannot be used as a file name here: {why}")]
    BadName {
        /// The name given.
        name: String,
        /// Why not.
        why: &'static str,
    },
    /// An earlier write or sync of the log failed, so what is on disk is unknown: the log
    /// refuses every call until it is reopened, which recovers to the last whole record.
    #[error("the write-ahead log stopped at an earlier failure and must be reopened: {0}")]
    Poisoned(Arc<StorageError>),
}

impl StorageError {
    /// Wraps an I/O error from an operation on `file`.
    pub(crate) fn io(file: &str, op: &'static str, source: io::Error) -> StorageError {
        StorageError::Io { file: file.to_owned(), op, source }
    }

    pub(crate) fn corrupt(file: &str, offset: u64, why: impl Into<String>) -> StorageError {
        StorageError::Corrupt { file: file.to_owned(), offset, why: why.into() }
    }

    /// Gets back the [`StorageError`] carried by an `io::Error` from
    /// [`SnapshotReader`](super::SnapshotReader) (or wraps any other I/O error as a failed
    /// read of `file`).
    pub fn from_read(file: &str, err: io::Error) -> StorageError {
        match err.downcast::<StorageError>() {
            Ok(e) => e,
            Err(err) => StorageError::io(file, "read", err),
        }
    }

    /// Whether the operating system said the disk is full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StorageError::Io { source, .. } => source.kind() == io::ErrorKind::StorageFull,
            StorageError::Poisoned(first) => first.is_disk_full(),
            _ => false,
        }
    }

    /// The same error, rebuilt (`io::Error` is not `Clone`): for the log's poison record and
    /// for a reader that fails again on every later call.
    pub(crate) fn duplicate(&self) -> StorageError {
        match self {
            StorageError::Io { file, op, source } => StorageError::Io {
                file: file.clone(),
                op,
                source: io::Error::new(source.kind(), source.to_string()),
            },
            StorageError::Corrupt { file, offset, why } => {
                StorageError::Corrupt { file: file.clone(), offset: *offset, why: why.clone() }
            }
            StorageError::Gap { file, after, first } => {
                StorageError::Gap { file: file.clone(), after: *after, first: *first }
            }
            StorageError::Locked { path } => StorageError::Locked { path: path.clone() },
            StorageError::TooLarge { what, len, max } => {
                StorageError::TooLarge { what, len: *len, max: *max }
            }
            StorageError::OutOfOrder { expected, got } => {
                StorageError::OutOfOrder { expected: *expected, got: *got }
            }
            StorageError::BadName { name, why } => StorageError::BadName { name: name.clone(), why },
            StorageError::Poisoned(first) => StorageError::Poisoned(first.clone()),
        }
    }

    /// As an `io::Error` (for `Read`/`Write` implementations), kept inside so that
    /// [`StorageError::from_read`] can get it back.
    pub(crate) fn into_io(self) -> io::Error {
        let kind = match &self {
            StorageError::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, self)
    }
}

/// The operating system's words, and plain ones for the case an operator must act on.
fn io_reason(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::StorageFull {
        format!("the disk is full ({e})")
    } else {
        e.to_string()
    }
}
