//! The directory abstraction the log and snapshots are written through, and its real-file
//! implementation with the data directory's lock.

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::StorageError;

/// One flat directory of files, as the storage layer needs it. Implemented over real files by
/// [`FsDir`] and in memory, with crashes, by [`SimDir`](super::SimDir).
///
/// Names are plain file names (no `/`). Operations that change the directory itself (create,
/// rename, remove, set_len) are durable when they return; data written through a [`DirFile`]
/// is durable once [`DirFile::sync`] returns.
pub trait Dir: Send + Sync + fmt::Debug {
    /// The names of the files in the directory, in no particular order.
    fn list(&self) -> io::Result<Vec<String>>;
    /// The size of a file in bytes.
    fn len(&self, name: &str) -> io::Result<u64>;
    /// Opens a file for reading from its start.
    fn open_read(&self, name: &str) -> io::Result<Box<dyn Read + Send>>;
    /// Creates an empty file (truncating one that exists) and opens it for writing; the new
    /// entry is durable when this returns.
    fn create(&self, name: &str) -> io::Result<Box<dyn DirFile>>;
    /// Opens an existing file for writing at its end.
    fn open_append(&self, name: &str) -> io::Result<Box<dyn DirFile>>;
    /// Cuts (or extends with zeros) a file to `len` bytes; durable when this returns.
    fn set_len(&self, name: &str, len: u64) -> io::Result<()>;
    /// Renames a file atomically, replacing `to` if it exists; durable when this returns.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Removes a file; durable when this returns.
    fn remove(&self, name: &str) -> io::Result<()>;
}

/// A file open for writing (appending) in a [`Dir`].
pub trait DirFile: Write + Send {
    /// Makes everything written so far durable (fsync; fdatasync where that suffices).
    fn sync(&mut self) -> io::Result<()>;

    /// A handle that syncs this file from another thread while this one goes on writing
    /// (group commit off the writer's thread), if the file has one.
    fn sync_handle(&self) -> Option<Arc<dyn SyncHandle>> {
        None
    }

    /// Extends the file with zeros to `len` bytes, if it is shorter, while writes go on where
    /// they were: later writes below `len` then change no file size, so syncing them commits
    /// no metadata (on ext4, no journal commit per fsync). Readers see the zeros: only for
    /// files whose readers take a zero tail as their end (the log). A no-op where it would not
    /// help (the simulated disk).
    fn reserve(&mut self, len: u64) -> io::Result<()> {
        let _ = len;
        Ok(())
    }
}

/// Syncs a file from another thread: see [`DirFile::sync_handle`].
pub trait SyncHandle: Send + Sync + fmt::Debug {
    /// Makes at least the file's first `len` bytes (all written before this call) durable.
    fn sync_to(&self, len: u64) -> io::Result<()>;
}

/// Rejects names that are not plain file names, so that no caller reaches outside the
/// directory.
pub(crate) fn check_name(name: &str) -> io::Result<()> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains(['/', '\\', '\0'])
        || name.len() > 255;
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a plain file name"),
        ));
    }
    Ok(())
}

/// A data directory on a real filesystem, locked for one process.
///
/// The lock lives in the [`FsDir`] it hands out, so it is held until the `DataDir` and every
/// handle from [`DataDir::dir`] (a [`Wal`](super::Wal) keeps one) are dropped.
#[derive(Debug)]
pub struct DataDir {
    dir: Arc<FsDir>,
}

impl DataDir {
    /// Opens (creating it if missing) the data directory at `path` and takes an exclusive lock
    /// on `path/LOCK`. Fails with [`StorageError::Locked`] if another process, or another
    /// `DataDir` in this one, holds it.
    pub fn open(path: impl AsRef<Path>) -> Result<DataDir, StorageError> {
        let path = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        // The directories this call creates: each one's entry lives in its parent, which must
        // be synced for the entry to survive a power cut.
        let mut created = Vec::new();
        let mut missing = Some(path.as_path()).filter(|p| !p.exists());
        while let Some(p) = missing {
            created.push(p.to_path_buf());
            missing = p.parent().filter(|q| !q.as_os_str().is_empty() && !q.exists());
        }
        fs::create_dir_all(&path).map_err(|e| StorageError::io(&shown, "create directory", e))?;
        for new_dir in created.iter().rev() {
            if let Some(parent) = new_dir.parent().filter(|q| !q.as_os_str().is_empty()) {
                sync_dir(parent).map_err(|e| StorageError::io(&shown, "fsync parent directory", e))?;
            }
        }
        let lock_name = path.join("LOCK").display().to_string();
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path.join("LOCK"))
            .map_err(|e| StorageError::io(&lock_name, "open", e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(StorageError::Locked { path }),
            Err(TryLockError::Error(e)) => return Err(StorageError::io(&lock_name, "lock", e)),
        }
        Ok(DataDir { dir: Arc::new(FsDir { root: path, _lock: lock }) })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.dir.root
    }

    /// A handle on the directory's files, for [`Wal`](super::Wal), snapshots and atomic files.
    pub fn dir(&self) -> Arc<dyn Dir> {
        self.dir.clone()
    }
}

/// Files in a real directory. Creating, renaming and removing a file fsync the directory, so
/// that the change survives a power cut once the call returns. Made by [`DataDir::open`].
#[derive(Debug)]
pub struct FsDir {
    root: PathBuf,
    /// Held (flock) for as long as any handle on the directory lives.
    _lock: File,
}

impl FsDir {
    fn path(&self, name: &str) -> io::Result<PathBuf> {
        check_name(name)?;
        Ok(self.root.join(name))
    }

    fn sync_dir(&self) -> io::Result<()> {
        sync_dir(&self.root)
    }
}

/// Makes a directory's entries (created, renamed, removed files) durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(path)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Other systems cannot open a directory as a file; their rename is durable enough.
        let _ = path;
        Ok(())
    }
}

impl Dir for FsDir {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            // A name that is not UTF-8 is not one of ours.
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn len(&self, name: &str) -> io::Result<u64> {
        Ok(fs::metadata(self.path(name)?)?.len())
    }

    fn open_read(&self, name: &str) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(File::open(self.path(name)?)?))
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn DirFile>> {
        let file = File::create(self.path(name)?)?;
        self.sync_dir()?;
        Ok(Box::new(FsFile { file, at: 0, len: 0 }))
    }

    fn open_append(&self, name: &str) -> io::Result<Box<dyn DirFile>> {
        // Not O_APPEND: writes go at `at`, which may be below the end once zeros are reserved.
        let file = OpenOptions::new().write(true).open(self.path(name)?)?;
        let len = file.metadata()?.len();
        Ok(Box::new(FsFile { file, at: len, len }))
    }

    fn set_len(&self, name: &str, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(self.path(name)?)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.path(from)?, self.path(to)?)?;
        self.sync_dir()
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.path(name)?)?;
        self.sync_dir()
    }
}

/// A real file open for appending: written at `at` (positional writes), with zeros reserved
/// up to `len` (see [`DirFile::reserve`]).
#[derive(Debug)]
struct FsFile {
    file: File,
    at: u64,
    len: u64,
}

impl Write for FsFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.write_at(buf, self.at)?;
        self.at += n as u64;
        self.len = self.len.max(self.at);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl DirFile for FsFile {
    fn sync(&mut self) -> io::Result<()> {
        // Data and the file's size; the rest of the metadata does not matter to a reader.
        self.file.sync_data()
    }

    fn sync_handle(&self) -> Option<Arc<dyn SyncHandle>> {
        // Another descriptor of the same open file: fdatasync on it covers what this one wrote.
        self.file.try_clone().ok().map(|f| Arc::new(FsSync(f)) as Arc<dyn SyncHandle>)
    }

    fn reserve(&mut self, len: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        // Written zeros, not fallocate: an unwritten extent still costs a metadata change at
        // its first write, which is what this is meant to avoid.
        const CHUNK: usize = 1 << 20;
        let zeros = vec![0u8; CHUNK.min(usize::try_from(len.saturating_sub(self.len)).unwrap_or(CHUNK))];
        let before = self.len;
        while self.len < len {
            let n = zeros.len().min(usize::try_from(len - self.len).unwrap_or(CHUNK));
            if let Err(e) = self.file.write_all_at(&zeros[..n], self.len) {
                // No room (a nearly full disk): give the space back to the other files.
                self.len = before.max(self.at);
                let _ = self.file.set_len(self.len);
                return Err(e);
            }
            self.len += n as u64;
        }
        Ok(())
    }
}

/// A duplicated descriptor of a file being written, for syncing it from another thread.
#[derive(Debug)]
struct FsSync(File);

impl SyncHandle for FsSync {
    fn sync_to(&self, _len: u64) -> io::Result<()> {
        self.0.sync_data()
    }
}
