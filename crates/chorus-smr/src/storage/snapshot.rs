//! Snapshots: the replica's state at a position, streamed to and from one file.
//!
//! ```text
//! snap-{pos:020}.snap:  [magic "chorsnap"][version: u32 LE][pos: u64 LE]
//!                       [body ...]
//!                       [body_len: u64 LE][crc32 of body: u32 LE][end magic "snapdone"]
//! ```
//!
//! A snapshot is written as `snap-{pos:020}.tmp` and renamed once whole and synced, so the
//! `.snap` name only ever holds a complete file: a crash leaves the previous snapshot as the
//! latest. Only after [`SnapshotWriter::finish`] returns may the caller drop the log the
//! snapshot covers ([`Wal::truncate_through`](super::Wal::truncate_through)).

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::sync::Arc;

use super::{Dir, DirFile, StorageError};

const MAGIC: &[u8; 8] = b"chorsnap";
const END_MAGIC: &[u8; 8] = b"snapdone";
const VERSION: u32 = 1;
const HEADER: u64 = 20;
const TRAILER: u64 = 20;

/// A snapshot file that was finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The position of the last log entry the state includes.
    pub pos: u64,
    /// The file's name.
    pub name: String,
    /// The file's size in bytes (header and trailer included).
    pub size: u64,
}

/// The name of the finished snapshot at `pos`.
pub(crate) fn snapshot_name(pos: u64) -> String {
    format!("snap-{pos:020}.snap")
}

fn tmp_name(pos: u64) -> String {
    format!("snap-{pos:020}.tmp")
}

/// The position in a snapshot's file name, and whether it is a finished one (`.snap`) or one
/// being written (`.tmp`).
fn parse_name(name: &str) -> Option<(u64, bool)> {
    let rest = name.strip_prefix("snap-")?;
    let (digits, finished) = if let Some(d) = rest.strip_suffix(".snap") {
        (d, true)
    } else {
        (rest.strip_suffix(".tmp")?, false)
    };
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, finished))
}

/// The finished snapshot with the highest position, if any; `.tmp` files (unfinished, or left
/// by a crash) are ignored.
pub fn latest_snapshot(dir: &dyn Dir) -> Result<Option<SnapshotInfo>, StorageError> {
    let names = dir.list().map_err(|e| StorageError::io("data directory", "list", e))?;
    let best = names
        .into_iter()
        .filter_map(|n| match parse_name(&n) {
            Some((pos, true)) => Some((pos, n)),
            _ => None,
        })
        .max();
    let Some((pos, name)) = best else { return Ok(None) };
    let size = dir.len(&name).map_err(|e| StorageError::io(&name, "stat", e))?;
    Ok(Some(SnapshotInfo { pos, name, size }))
}

/// Writes a snapshot: the caller writes the body in pieces through [`Write`] (it is streamed
/// to the file, never held whole), then calls [`finish`](SnapshotWriter::finish).
///
/// One writer at a time per directory: `finish` removes every other snapshot file. Dropping the
/// writer without `finish` or [`abort`](SnapshotWriter::abort) leaves the `.tmp` file, as a
/// crash would; the next `finish` removes it.
pub struct SnapshotWriter {
    dir: Arc<dyn Dir>,
    pos: u64,
    tmp: String,
    out: BufWriter<Box<dyn DirFile>>,
    crc: crc32fast::Hasher,
    body_len: u64,
    /// Body bytes at the last write-behind sync ([`SYNC_EVERY`]).
    synced_at: u64,
    /// The first write error: a body with a hole must never be finished.
    failed: Option<StorageError>,
}

/// A snapshot being written is synced every this many bytes (write-behind), so that its dirty
/// pages never pile up: a kernel with gigabytes to write back throttles every writer of the
/// machine, the log's appends included, and a member stalled for the suspicion timeout is
/// excluded (seen loading 1 GiB into a 3-node store).
const SYNC_EVERY: u64 = 16 << 20;

impl std::fmt::Debug for SnapshotWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotWriter")
            .field("file", &self.tmp)
            .field("pos", &self.pos)
            .field("body_len", &self.body_len)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl SnapshotWriter {
    /// Starts the snapshot of the state at `pos` in `snap-{pos:020}.tmp`.
    pub fn create(dir: Arc<dyn Dir>, pos: u64) -> Result<SnapshotWriter, StorageError> {
        let tmp = tmp_name(pos);
        let file = dir.create(&tmp).map_err(|e| StorageError::io(&tmp, "create", e))?;
        let mut out = BufWriter::with_capacity(64 << 10, file);
        let mut header = Vec::with_capacity(HEADER as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&pos.to_le_bytes());
        out.write_all(&header).map_err(|e| StorageError::io(&tmp, "write", e))?;
        Ok(SnapshotWriter {
            dir,
            pos,
            tmp,
            out,
            crc: crc32fast::Hasher::new(),
            body_len: 0,
            synced_at: 0,
            failed: None,
        })
    }

    /// Body bytes written so far.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// Writes the trailer, fsyncs, renames the file to `snap-{pos:020}.snap` (durably), then
    /// removes every other snapshot and leftover `.tmp` file. When this returns `Ok`, the
    /// snapshot is the latest and the log up to `pos` may go.
    ///
    /// An error before the rename removes the `.tmp` file (best effort) and leaves the previous
    /// snapshot the latest. An error after it (removing old files) leaves the new snapshot in
    /// place as the latest ([`latest_snapshot`] tells); the next `finish` retries the cleanup.
    pub fn finish(mut self) -> Result<SnapshotInfo, StorageError> {
        match self.seal() {
            Ok(()) => {}
            Err(e) => {
                let _ = self.out.into_parts();
                let _ = self.dir.remove(&self.tmp);
                return Err(e);
            }
        }
        let SnapshotWriter { dir, pos, tmp, out, .. } = self;
        drop(out);
        let name = snapshot_name(pos);
        if let Err(e) = dir.rename(&tmp, &name) {
            let _ = dir.remove(&tmp);
            return Err(StorageError::io(&tmp, "rename", e));
        }
        let names = dir.list().map_err(|e| StorageError::io("data directory", "list", e))?;
        for other in names {
            if other != name && parse_name(&other).is_some() {
                // Older snapshots, leftovers of crashed writers, and (should one exist) a
                // snapshot at a later position: the state just written is the one the caller
                // holds, so it must be what `latest_snapshot` finds.
                dir.remove(&other).map_err(|e| StorageError::io(&other, "remove", e))?;
            }
        }
        let size = dir.len(&name).map_err(|e| StorageError::io(&name, "stat", e))?;
        Ok(SnapshotInfo { pos, name, size })
    }

    /// Writes the trailer and makes the `.tmp` file durable.
    fn seal(&mut self) -> Result<(), StorageError> {
        if let Some(e) = &self.failed {
            return Err(e.duplicate());
        }
        let crc = std::mem::take(&mut self.crc).finalize();
        let mut trailer = Vec::with_capacity(TRAILER as usize);
        trailer.extend_from_slice(&self.body_len.to_le_bytes());
        trailer.extend_from_slice(&crc.to_le_bytes());
        trailer.extend_from_slice(END_MAGIC);
        self.out.write_all(&trailer).map_err(|e| StorageError::io(&self.tmp, "write", e))?;
        self.out.flush().map_err(|e| StorageError::io(&self.tmp, "write", e))?;
        self.out.get_mut().sync().map_err(|e| StorageError::io(&self.tmp, "fsync", e))
    }

    /// Gives up: removes the `.tmp` file. The previous snapshot stays the latest.
    pub fn abort(self) -> Result<(), StorageError> {
        let SnapshotWriter { dir, tmp, out, .. } = self;
        // Whatever is still buffered is thrown away with the file; a failed flush is moot.
        let _ = out.into_parts();
        dir.remove(&tmp).map_err(|e| StorageError::io(&tmp, "remove", e))
    }

    fn fail(&mut self, op: &'static str, e: io::Error) -> io::Error {
        if e.kind() == io::ErrorKind::Interrupted {
            return e;
        }
        let e = StorageError::io(&self.tmp, op, e);
        self.failed = Some(e.duplicate());
        e.into_io()
    }
}

impl Write for SnapshotWriter {
    /// Writes body bytes. The error of a failed write carries a [`StorageError`]
    /// ([`StorageError::from_read`] gets it back); after one, `finish` refuses.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(e.duplicate().into_io());
        }
        match self.out.write(buf) {
            Ok(n) => {
                self.crc.update(&buf[..n]);
                self.body_len += n as u64;
                if self.body_len - self.synced_at >= SYNC_EVERY {
                    self.synced_at = self.body_len;
                    if let Err(e) = self.out.flush() {
                        return Err(self.fail("write", e));
                    }
                    if let Err(e) = self.out.get_mut().sync() {
                        return Err(self.fail("fsync", e));
                    }
                }
                Ok(n)
            }
            Err(e) => Err(self.fail("write", e)),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(e) = &self.failed {
            return Err(e.duplicate().into_io());
        }
        self.out.flush().map_err(|e| self.fail("write", e))
    }
}

/// Reads a snapshot's body, streaming, and checks it: the header when opened, the trailer and
/// checksum as the body ends. The read that delivers the last body bytes fails instead if they
/// do not check out, so a caller that reads to the end never takes a damaged body for whole.
///
/// Every error from [`Read::read`] carries a [`StorageError`] ([`StorageError::Corrupt`] for
/// damage, naming the file and offset); [`StorageError::from_read`] gets it back. After an
/// error every later read fails the same way.
pub struct SnapshotReader {
    file: String,
    pos: u64,
    rd: BufReader<Box<dyn Read + Send>>,
    body_len: u64,
    left: u64,
    crc: crc32fast::Hasher,
    failed: Option<StorageError>,
    done: bool,
}

impl std::fmt::Debug for SnapshotReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReader")
            .field("file", &self.file)
            .field("pos", &self.pos)
            .field("body_len", &self.body_len)
            .field("left", &self.left)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl SnapshotReader {
    /// Opens the snapshot `info` (from [`latest_snapshot`]) and checks its header.
    pub fn open(dir: &dyn Dir, info: &SnapshotInfo) -> Result<SnapshotReader, StorageError> {
        let file = info.name.clone();
        let len = dir.len(&file).map_err(|e| StorageError::io(&file, "stat", e))?;
        if len < HEADER + TRAILER {
            return Err(StorageError::corrupt(
                &file,
                0,
                format!("the file is {len} bytes, shorter than a snapshot's header and trailer"),
            ));
        }
        let src = dir.open_read(&file).map_err(|e| StorageError::io(&file, "open", e))?;
        let mut rd = BufReader::with_capacity(64 << 10, src);
        let mut header = [0u8; HEADER as usize];
        read_exact(&mut rd, &mut header, &file, 0, "header")?;
        if &header[..8] != MAGIC {
            return Err(StorageError::corrupt(&file, 0, "not a snapshot file (bad magic)"));
        }
        let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        if version != VERSION {
            return Err(StorageError::corrupt(
                &file,
                8,
                format!("unknown snapshot format version {version}"),
            ));
        }
        let mut pos = [0u8; 8];
        pos.copy_from_slice(&header[12..20]);
        let pos = u64::from_le_bytes(pos);
        if pos != info.pos {
            return Err(StorageError::corrupt(
                &file,
                12,
                format!("the header says position {pos} but the file name says {}", info.pos),
            ));
        }
        let body_len = len - HEADER - TRAILER;
        Ok(SnapshotReader {
            file,
            pos,
            rd,
            body_len,
            left: body_len,
            crc: crc32fast::Hasher::new(),
            failed: None,
            done: false,
        })
    }

    /// Reads the whole snapshot and checks it, keeping nothing.
    pub fn verify_all(dir: &dyn Dir, info: &SnapshotInfo) -> Result<(), StorageError> {
        let mut r = SnapshotReader::open(dir, info)?;
        io::copy(&mut r, &mut io::sink()).map_err(|e| StorageError::from_read(&info.name, e))?;
        Ok(())
    }

    /// The position the snapshot's state is at.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// The body's length in bytes (from the file's size; checked against the trailer at the end).
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// Checks the trailer against the body read.
    fn check_trailer(&mut self) -> Result<(), StorageError> {
        let at = HEADER + self.body_len;
        let mut trailer = [0u8; TRAILER as usize];
        read_exact(&mut self.rd, &mut trailer, &self.file, at, "trailer")?;
        if &trailer[12..] != END_MAGIC {
            return Err(StorageError::corrupt(
                &self.file,
                at,
                "no end marker where the trailer should be: the file is truncated or was never finished",
            ));
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(&trailer[..8]);
        let stored_len = u64::from_le_bytes(n);
        if stored_len != self.body_len {
            return Err(StorageError::corrupt(
                &self.file,
                at,
                format!("the trailer says the body is {stored_len} bytes but it is {}", self.body_len),
            ));
        }
        let stored = u32::from_le_bytes([trailer[8], trailer[9], trailer[10], trailer[11]]);
        let actual = std::mem::take(&mut self.crc).finalize();
        if stored != actual {
            return Err(StorageError::corrupt(
                &self.file,
                HEADER,
                format!("body checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"),
            ));
        }
        Ok(())
    }

    fn fail(&mut self, e: StorageError) -> io::Error {
        self.failed = Some(e.duplicate());
        e.into_io()
    }
}

impl Read for SnapshotReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(e.duplicate().into_io());
        }
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let mut n = 0;
        if self.left > 0 {
            let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
            n = match self.rd.read(&mut buf[..want]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
                Err(e) => return Err(self.fail(StorageError::io(&self.file, "read", e))),
            };
            if n == 0 {
                let at = HEADER + self.body_len - self.left;
                return Err(self.fail(StorageError::corrupt(
                    &self.file,
                    at,
                    "the file ends inside the body",
                )));
            }
            self.crc.update(&buf[..n]);
            self.left -= n as u64;
        }
        if self.left == 0 {
            // Checked with the last bytes, not on a later call: a caller that stops reading
            // once it has the expected number of bytes still learns of damage.
            if let Err(e) = self.check_trailer() {
                return Err(self.fail(e));
            }
            self.done = true;
        }
        Ok(n)
    }
}

/// Reads exactly `buf.len()` bytes of `file` at `offset`; the file ending first is damage.
fn read_exact(
    rd: &mut impl Read,
    buf: &mut [u8],
    file: &str,
    offset: u64,
    what: &str,
) -> Result<(), StorageError> {
    match rd.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Err(StorageError::corrupt(file, offset, format!("the file ends inside the {what}")))
        }
        Err(e) => Err(StorageError::io(file, "read", e)),
    }
}
