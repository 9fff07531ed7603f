//! An in-memory [`Dir`] with the crash semantics of a disk, for the simulator and the tests.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::dir::{check_name, Dir, DirFile, SyncHandle};

/// A simulated disk holding one directory: deterministic, in memory, cheap to clone (clones
/// share the same disk).
///
/// Each file keeps the bytes that are durable and the bytes written since its last sync.
/// [`SimDir::crash`] is a power cut: unsynced bytes are lost except for a random prefix (a
/// torn last write). Simplifications, on purpose: creating, renaming, removing and cutting a
/// file are durable as soon as the call returns (as [`FsDir`](super::FsDir) makes them by
/// fsyncing the directory), and what survives of unsynced data is always a prefix (a real disk
/// may also keep a later page and lose an earlier one).
///
/// No clocks and no OS randomness: the only randomness is what the caller passes to `crash`.
#[derive(Clone, Debug, Default)]
pub struct SimDir {
    disk: Arc<Mutex<Disk>>,
}

#[derive(Debug, Default)]
struct Disk {
    /// Name to inode, so that an open handle follows its file through a rename.
    names: BTreeMap<String, u64>,
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    capacity: Option<u64>,
    syncs: u64,
    /// Bumped by every crash; handles opened before it refuse to work.
    epoch: u64,
}

#[derive(Debug, Default)]
struct Inode {
    durable: Vec<u8>,
    pending: Vec<u8>,
}

impl Inode {
    fn len(&self) -> u64 {
        (self.durable.len() + self.pending.len()) as u64
    }
    /// Everything a reader sees now.
    fn contents(&self) -> Vec<u8> {
        let mut all = self.durable.clone();
        all.extend_from_slice(&self.pending);
        all
    }
}

impl Disk {
    fn used(&self) -> u64 {
        self.inodes.values().map(Inode::len).sum()
    }

    fn inode(&self, name: &str) -> io::Result<u64> {
        check_name(name)?;
        self.names.get(name).copied().ok_or_else(|| not_found(name))
    }

    fn room_for(&self, extra: u64) -> io::Result<()> {
        match self.capacity {
            Some(cap) if self.used().saturating_add(extra) > cap => Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("simulated disk of {cap} bytes is full"),
            )),
            _ => Ok(()),
        }
    }

    /// Sets a file's contents, all durable: a cut (or zero extension) as the disk would keep it.
    fn resize(&mut self, name: &str, len: u64) -> io::Result<()> {
        let ino = self.inode(name)?;
        let node = self.inodes.get_mut(&ino).ok_or_else(|| not_found(name))?;
        let mut all = node.contents();
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        all.resize(len, 0);
        node.durable = all;
        node.pending.clear();
        Ok(())
    }
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{name}: no such file on the simulated disk"))
}

fn crashed() -> io::Error {
    io::Error::other("the simulated process crashed: this handle is dead")
}

impl SimDir {
    /// An empty disk of unlimited capacity.
    pub fn new() -> SimDir {
        SimDir::default()
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        // A panic while holding the lock leaves the disk consistent (every change is made in
        // one step), so a poisoned lock is still usable.
        self.disk.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A power cut: for each file, the unsynced bytes are lost except a prefix whose length is
    /// `rand() % (unsynced + 1)` (a torn last write). Every handle opened before the crash
    /// fails from now on, as a crashed process writes no more.
    pub fn crash(&self, rand: &mut dyn FnMut() -> u64) {
        let mut disk = self.disk();
        disk.epoch += 1;
        for node in disk.inodes.values_mut() {
            if node.pending.is_empty() {
                continue;
            }
            let keep = (rand() % (node.pending.len() as u64 + 1)) as usize;
            let pending = std::mem::take(&mut node.pending);
            node.durable.extend_from_slice(&pending[..keep]);
        }
    }

    /// Limits the total bytes the disk holds (`None`: no limit). A write that would exceed it
    /// fails with [`io::ErrorKind::StorageFull`] and writes nothing.
    pub fn set_capacity(&self, capacity: Option<u64>) {
        self.disk().capacity = capacity;
    }

    /// Total bytes in all files.
    pub fn used(&self) -> u64 {
        self.disk().used()
    }

    /// How many [`DirFile::sync`] calls have succeeded (directory operations are not counted).
    pub fn syncs(&self) -> u64 {
        self.disk().syncs
    }

    /// The names of the files, sorted.
    pub fn files(&self) -> Vec<String> {
        self.disk().names.keys().cloned().collect()
    }

    /// A file's contents as a reader sees them now (durable and unsynced bytes), or `None`.
    pub fn contents(&self, name: &str) -> Option<Vec<u8>> {
        let disk = self.disk();
        let ino = disk.names.get(name)?;
        disk.inodes.get(ino).map(Inode::contents)
    }

    /// How many bytes of a file a crash now could lose.
    pub fn unsynced_len(&self, name: &str) -> Option<u64> {
        let disk = self.disk();
        let ino = disk.names.get(name)?;
        disk.inodes.get(ino).map(|n| n.pending.len() as u64)
    }

    /// Damage: flips bit `bit` (0-7) of the byte at `offset`, as a failing disk would.
    pub fn flip_bit(&self, name: &str, offset: u64, bit: u8) -> io::Result<()> {
        let mut disk = self.disk();
        let ino = disk.inode(name)?;
        let node = disk.inodes.get_mut(&ino).ok_or_else(|| not_found(name))?;
        let at = usize::try_from(offset).unwrap_or(usize::MAX);
        let byte = if at < node.durable.len() {
            node.durable.get_mut(at)
        } else {
            node.pending.get_mut(at - node.durable.len())
        };
        let byte = byte.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{name}: offset {offset} is past the end"))
        })?;
        *byte ^= 1 << (bit % 8);
        Ok(())
    }

    /// Damage: cuts a file to `len` bytes (or extends it with zeros), durably.
    pub fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        self.disk().resize(name, len)
    }
}

impl Dir for SimDir {
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.files())
    }

    fn len(&self, name: &str) -> io::Result<u64> {
        let disk = self.disk();
        let ino = disk.inode(name)?;
        disk.inodes.get(&ino).map(Inode::len).ok_or_else(|| not_found(name))
    }

    fn open_read(&self, name: &str) -> io::Result<Box<dyn Read + Send>> {
        let disk = self.disk();
        let inode = disk.inode(name)?;
        Ok(Box::new(SimReader { disk: self.disk.clone(), inode, epoch: disk.epoch, at: 0 }))
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn DirFile>> {
        check_name(name)?;
        let mut disk = self.disk();
        let inode = match disk.names.get(name) {
            Some(&ino) => {
                // Truncate in place, as O_TRUNC does: other handles keep the same file.
                disk.inodes.insert(ino, Inode::default());
                ino
            }
            None => {
                let ino = disk.next_inode;
                disk.next_inode += 1;
                disk.names.insert(name.to_owned(), ino);
                disk.inodes.insert(ino, Inode::default());
                ino
            }
        };
        Ok(Box::new(SimFile { disk: self.disk.clone(), inode, epoch: disk.epoch }))
    }

    fn open_append(&self, name: &str) -> io::Result<Box<dyn DirFile>> {
        let disk = self.disk();
        let inode = disk.inode(name)?;
        Ok(Box::new(SimFile { disk: self.disk.clone(), inode, epoch: disk.epoch }))
    }

    fn set_len(&self, name: &str, len: u64) -> io::Result<()> {
        let mut disk = self.disk();
        let now = disk.inodes.get(&disk.inode(name)?).map_or(0, Inode::len);
        disk.room_for(len.saturating_sub(now))?;
        disk.resize(name, len)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        check_name(to)?;
        let mut disk = self.disk();
        let ino = disk.inode(from)?;
        disk.names.remove(from);
        if let Some(old) = disk.names.insert(to.to_owned(), ino) {
            if old != ino {
                disk.inodes.remove(&old);
            }
        }
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut disk = self.disk();
        let ino = disk.inode(name)?;
        disk.names.remove(name);
        disk.inodes.remove(&ino);
        Ok(())
    }
}

/// A handle for appending to a simulated file.
#[derive(Debug)]
struct SimFile {
    disk: Arc<Mutex<Disk>>,
    inode: u64,
    epoch: u64,
}

impl SimFile {
    fn disk(&self) -> io::Result<MutexGuard<'_, Disk>> {
        let disk = self.disk.lock().unwrap_or_else(PoisonError::into_inner);
        if disk.epoch != self.epoch {
            return Err(crashed());
        }
        Ok(disk)
    }
}

fn removed() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "the simulated file was removed")
}

impl Write for SimFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let inode = self.inode;
        let mut disk = self.disk()?;
        disk.room_for(buf.len() as u64)?;
        let node = disk.inodes.get_mut(&inode).ok_or_else(removed)?;
        node.pending.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.disk().map(drop)
    }
}

impl DirFile for SimFile {
    fn sync_handle(&self) -> Option<Arc<dyn SyncHandle>> {
        Some(Arc::new(SimSync { disk: self.disk.clone(), inode: self.inode, epoch: self.epoch }))
    }

    fn sync(&mut self) -> io::Result<()> {
        let inode = self.inode;
        let mut disk = self.disk()?;
        let node = disk.inodes.get_mut(&inode).ok_or_else(removed)?;
        let pending = std::mem::take(&mut node.pending);
        node.durable.extend_from_slice(&pending);
        disk.syncs += 1;
        Ok(())
    }
}

/// Syncs a simulated file from elsewhere: only the bytes written before the request (the
/// first `len`), as a real fdatasync started then would.
#[derive(Debug)]
struct SimSync {
    disk: Arc<Mutex<Disk>>,
    inode: u64,
    epoch: u64,
}

impl SyncHandle for SimSync {
    fn sync_to(&self, len: u64) -> io::Result<()> {
        let mut disk = self.disk.lock().unwrap_or_else(PoisonError::into_inner);
        if disk.epoch != self.epoch {
            return Err(crashed());
        }
        let node = disk.inodes.get_mut(&self.inode).ok_or_else(removed)?;
        let durable = node.durable.len() as u64;
        let take = (len.saturating_sub(durable) as usize).min(node.pending.len());
        let moved: Vec<u8> = node.pending.drain(..take).collect();
        node.durable.extend_from_slice(&moved);
        disk.syncs += 1;
        Ok(())
    }
}

/// A handle for reading a simulated file; it sees writes made after it was opened, as a real
/// file does.
#[derive(Debug)]
struct SimReader {
    disk: Arc<Mutex<Disk>>,
    inode: u64,
    epoch: u64,
    at: usize,
}

impl Read for SimReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let disk = self.disk.lock().unwrap_or_else(PoisonError::into_inner);
        if disk.epoch != self.epoch {
            return Err(crashed());
        }
        let node = disk.inodes.get(&self.inode).ok_or_else(removed)?;
        let (durable, pending) = (&node.durable, &node.pending);
        let mut n = 0;
        while n < buf.len() {
            let at = self.at + n;
            let src = if at < durable.len() {
                &durable[at..]
            } else if at - durable.len() < pending.len() {
                &pending[at - durable.len()..]
            } else {
                break;
            };
            let k = src.len().min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&src[..k]);
            n += k;
        }
        self.at += n;
        Ok(n)
    }
}
