//! The write-ahead log: the replica's state-changing entries in delivery order, numbered
//! 1, 2, 3, ... without gaps, in segment files.
//!
//! ```text
//! wal-00000000000000000001.log   records 1 ..= 8191
//! wal-00000000000000008192.log   records 8192 ..      (the segment being written)
//!
//! record: [payload_len: u32 LE][crc32: u32 LE of (pos ‖ payload)][pos: u64 LE][payload]
//! ```
//!
//! A segment is named after its first record and is synced before the next one is created, so
//! after a crash only the last segment can end in a torn record.

use std::collections::VecDeque;
use std::io::{self, BufReader, Read, Write};
use std::sync::Arc;

use super::{Dir, DirFile, StorageError, SyncHandle};

/// Bytes before a record's payload.
pub(crate) const HEADER: usize = 16;

/// Limits and buffering of a [`Wal`].
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// A new segment is started once the current one holds at least this many bytes.
    pub segment_bytes: u64,
    /// The largest payload accepted. A larger length read back from disk is corruption, so do
    /// not lower this below records already written.
    pub max_record: u32,
    /// Appended records wait in memory up to this many bytes before being written to the file
    /// (they are durable only after [`Wal::sync`] either way).
    pub buffer_bytes: usize,
}

impl Default for WalOptions {
    fn default() -> WalOptions {
        WalOptions { segment_bytes: 64 << 20, max_record: 64 << 20, buffer_bytes: 256 << 10 }
    }
}

/// What [`Wal::open`] found and repaired, for the caller to log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenReport {
    /// Records handed to the callback (those after the caller's position).
    pub replayed: u64,
    /// The last position the log holds, or the caller's position if that is later.
    pub last_pos: u64,
    /// Segments read.
    pub segments: usize,
    /// A record cut short at the end of the last segment (a write torn by a crash), cut off.
    pub torn: Option<TornTail>,
    /// Zeros cut off the end of the last segment: space reserved ahead of the writes (see
    /// [`DirFile::reserve`](super::DirFile::reserve)), or an extension whose data never reached
    /// the disk. Nothing synced is ever there.
    pub zero_tail: u64,
    /// Segments removed because the caller's position is past the end of the log (the
    /// caller's snapshot covers all of it, e.g. one installed just before a crash).
    pub stale_segments_removed: usize,
}

/// The torn end of the log that [`Wal::open`] cut off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment.
    pub file: String,
    /// Where the last whole record ends: the file's length now.
    pub offset: u64,
    /// Bytes dropped after it.
    pub dropped: u64,
}

/// Why [`Wal::open`] failed: the storage, or the caller's callback.
#[derive(Debug, thiserror::Error)]
pub enum OpenError<E> {
    /// The log could not be read, or is damaged; nothing after the damage was handed out.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The callback refused the record at `pos`; nothing after it was handed out.
    #[error("applying the write-ahead log record at position {pos} failed: {source}")]
    Apply {
        /// The record's position.
        pos: u64,
        /// The callback's error.
        source: E,
    },
}

/// One segment file.
#[derive(Debug)]
struct Segment {
    first: u64,
    name: String,
    /// Bytes in the file plus bytes waiting in the buffer.
    bytes: u64,
}

/// The write-ahead log, driven from one thread: [`append`](Wal::append) entries,
/// [`sync`](Wal::sync) once per batch (one fsync however many records: group commit), drop
/// segments a snapshot covers with [`truncate_through`](Wal::truncate_through).
///
/// **After a failed write or sync** (a full disk, a failing device) the log does not know what
/// reached the disk, so it is poisoned: the failing call returns the error and every later call
/// returns [`StorageError::Poisoned`]. Records after [`synced_pos`](Wal::synced_pos) may or may
/// not be on disk. Drop the `Wal` and [`open`](Wal::open) it again (after freeing space): that
/// recovers to the last whole record, which includes everything synced.
///
/// Dropping a `Wal` does not write what is still buffered, like a crash: sync first.
#[derive(Debug)]
pub struct Wal {
    dir: Arc<dyn Dir>,
    opts: WalOptions,
    segments: VecDeque<Segment>,
    /// The last segment, open for appending (None while the log has no segment).
    writer: Option<WalFile>,
    /// Syncs the last segment from another thread, if its file can ([`Wal::start_sync`]).
    sync_handle: Option<Arc<dyn SyncHandle>>,
    /// How far the last segment is extended with zeros ahead of its records (`reserve`).
    reserved: u64,
    /// Counts restarts of the log: a background sync started before one says nothing of it.
    generation: u64,
    buf: Vec<u8>,
    last_pos: u64,
    synced_pos: u64,
    poisoned: Option<Arc<StorageError>>,
}

/// A sync of the log to run on another thread ([`Wal::start_sync`]): then hand the result to
/// [`Wal::finish_sync`].
#[derive(Debug)]
pub struct WalSync {
    handle: Arc<dyn SyncHandle>,
    file: String,
    len: u64,
    pos: u64,
    generation: u64,
}

impl WalSync {
    /// Syncs (fdatasync): every record appended before [`Wal::start_sync`] becomes durable.
    pub fn run(self) -> WalSynced {
        let result = self.handle.sync_to(self.len);
        WalSynced { file: self.file, pos: self.pos, generation: self.generation, result }
    }
}

/// A finished [`WalSync`].
#[derive(Debug)]
pub struct WalSynced {
    file: String,
    pos: u64,
    generation: u64,
    result: io::Result<()>,
}

/// `Box<dyn DirFile>` with a `Debug` the trait object lacks.
struct WalFile(Box<dyn DirFile>);

impl std::fmt::Debug for WalFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WalFile")
    }
}

/// How far ahead of its records the log keeps its last segment extended with zeros.
const RESERVE_AHEAD: u64 = 4 << 20;

/// The name of the segment whose first record is `first`.
pub(crate) fn segment_name(first: u64) -> String {
    format!("wal-{first:020}.log")
}

/// The first position of a segment named `name`, or None if it is not a segment's name.
fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Positions start at 1: a segment 0 is not one we wrote.
    digits.parse().ok().filter(|&first| first > 0)
}

/// `N` bytes of `b` from `at`.
fn field<const N: usize>(b: &[u8; HEADER], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}

fn record_crc(pos: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&pos.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Reads until `buf` is full or the end of the file; returns the bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads one segment's records in order, checking each one's length and checksum.
struct SegmentReader<'a> {
    name: &'a str,
    rd: BufReader<Box<dyn Read + Send>>,
    max_record: u32,
    /// Where the next record starts: the end of the last whole record.
    offset: u64,
    payload: Vec<u8>,
    /// The record the file ended inside, if it did: `payload[..got]` holds the rest of the file.
    short: Option<Short>,
}

/// A record whose payload the file ended inside ([`SegmentReader::check_torn`]).
#[derive(Clone, Copy, Debug)]
struct Short {
    len: u32,
    crc: u32,
    pos: u64,
    got: usize,
}

/// What [`SegmentReader::next`] found.
enum Next {
    /// A record whose checksum holds; its payload is [`SegmentReader::payload`].
    Record { pos: u64, offset: u64 },
    /// The end of the file, after a whole record.
    End,
    /// A record cut short at the reader's offset.
    Torn(String),
    /// Nothing but zeros from the reader's offset on.
    Zeros,
}

impl<'a> SegmentReader<'a> {
    fn open(dir: &dyn Dir, name: &'a str, max_record: u32) -> Result<SegmentReader<'a>, StorageError> {
        let file = dir.open_read(name).map_err(|e| StorageError::io(name, "open", e))?;
        let rd = BufReader::with_capacity(64 << 10, file);
        Ok(SegmentReader { name, rd, max_record, offset: 0, payload: Vec::new(), short: None })
    }

    fn payload(&self) -> &[u8] {
        &self.payload
    }

    fn next(&mut self) -> Result<Next, StorageError> {
        let (name, offset) = (self.name, self.offset);
        let mut header = [0u8; HEADER];
        let got = read_up_to(&mut self.rd, &mut header).map_err(|e| StorageError::io(name, "read", e))?;
        if got == 0 {
            return Ok(Next::End);
        }
        if got < HEADER {
            return Ok(Next::Torn(format!("record header cut short ({got} of {HEADER} bytes)")));
        }
        if header == [0; HEADER] {
            // No record has position 0: this is a file extended with zeros whose data never
            // reached the disk, which some filesystems leave after a crash.
            if all_zero(&mut self.rd).map_err(|e| StorageError::io(name, "read", e))? {
                return Ok(Next::Zeros);
            }
            return Err(StorageError::corrupt(name, offset, "zeroed record header"));
        }
        let len = u32::from_le_bytes(field(&header, 0));
        let crc = u32::from_le_bytes(field(&header, 4));
        let pos = u64::from_le_bytes(field(&header, 8));
        if len > self.max_record {
            let why =
                format!("record length {len} exceeds the limit of {} bytes (max_record)", self.max_record);
            return Err(StorageError::corrupt(name, offset, why));
        }
        self.payload.resize(len as usize, 0);
        let got =
            read_up_to(&mut self.rd, &mut self.payload).map_err(|e| StorageError::io(name, "read", e))?;
        if got < self.payload.len() {
            self.short = Some(Short { len, crc, pos, got });
            return Ok(Next::Torn(format!("record payload cut short ({got} of {len} bytes)")));
        }
        let actual = record_crc(pos, &self.payload);
        if actual != crc {
            let why = format!("record checksum mismatch (stored {crc:#010x}, computed {actual:#010x})");
            return Err(StorageError::corrupt(name, offset, why));
        }
        self.offset += (HEADER + self.payload.len()) as u64;
        Ok(Next::Record { pos, offset })
    }
}

impl SegmentReader<'_> {
    /// Whether a record the file ended inside ([`Next::Torn`]) can be a write torn by a crash,
    /// given the position it should have: its length field is not checksummed, so a damaged
    /// length in a record that was whole (and synced, and acknowledged) would also send the
    /// reader past the end of the file, and cutting there would lose that record and every
    /// one after it. It is damage, not a torn write, if a whole record follows it in the bytes
    /// read, or if its length with one bit flipped makes its checksum hold.
    fn check_torn(&self, expected: u64) -> Result<(), StorageError> {
        let Some(Short { len, crc, pos, got }) = self.short else { return Ok(()) };
        let rest = &self.payload[..got.min(self.payload.len())];
        for bit in 0..32 {
            let l = (len ^ (1 << bit)) as usize;
            if pos == expected && l <= rest.len() && record_crc(pos, &rest[..l]) == crc {
                let why = format!(
                    "record length field damaged (reads {len}, the checksum holds for {l}): not a torn write"
                );
                return Err(StorageError::corrupt(self.name, self.offset, why));
            }
        }
        if let Some((at, later)) = whole_record_in(rest, expected, self.max_record) {
            let why = format!(
                "record at position {expected} is damaged (its length, {len}, runs past the end of the file), \
                 but a whole record (position {later}) follows {at} bytes after its header: not a torn write"
            );
            return Err(StorageError::corrupt(self.name, self.offset, why));
        }
        Ok(())
    }
}

/// The first whole record in `bytes` (at any offset) with a position of at least `from`: its
/// offset in `bytes` and position.
fn whole_record_in(bytes: &[u8], from: u64, max_record: u32) -> Option<(usize, u64)> {
    // A record holds at least its header, so no more records than this fit after `from`.
    let most = from.saturating_add((bytes.len() / HEADER) as u64);
    (0..bytes.len().saturating_sub(HEADER - 1)).find_map(|at| {
        let header: &[u8; HEADER] = bytes.get(at..at + HEADER)?.try_into().ok()?;
        let len = u32::from_le_bytes(field(header, 0));
        let pos = u64::from_le_bytes(field(header, 8));
        if !(from..=most).contains(&pos) || len > max_record {
            return None;
        }
        let payload = bytes.get(at + HEADER..at + HEADER + len as usize)?;
        (record_crc(pos, payload) == u32::from_le_bytes(field(header, 4))).then_some((at, pos))
    })
}

impl Wal {
    /// Opens the log in `dir`, handing every record after position `after` (the position the
    /// caller's snapshot ends at; 0 for none) to `each` in order, and leaves the log ready to
    /// append position `last_pos() + 1`.
    ///
    /// Every record is read (through a buffer, never a whole segment at once) and checked: its
    /// checksum, its length against [`WalOptions::max_record`], and that positions run on
    /// without a gap from segment to segment. Then:
    ///
    /// - a record cut short at the end of the **last** segment is a write torn by a crash: the
    ///   file is cut back to the last whole record and [`OpenReport::torn`] says so; unless a
    ///   whole record follows it, or its checksum holds for its length with one bit flipped
    ///   (the length is not under the checksum): then its length was damaged, and that is
    ///   [`StorageError::Corrupt`];
    /// - anything else wrong is [`StorageError::Corrupt`] naming the file and offset, with
    ///   nothing after it handed out;
    /// - a log that starts after `after + 1` is [`StorageError::Gap`], with nothing handed out;
    /// - a log that ends before `after` is covered by the snapshot: its segments are removed
    ///   and the log restarts at `after` ([`OpenReport::stale_segments_removed`]).
    ///
    /// Everything recovered is synced before this returns, so [`Wal::synced_pos`] is true.
    pub fn open<E>(
        dir: Arc<dyn Dir>,
        opts: WalOptions,
        after: u64,
        mut each: impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<(Wal, OpenReport), OpenError<E>> {
        let names = dir.list().map_err(|e| StorageError::io("data directory", "list", e))?;
        let mut found: Vec<(u64, String)> =
            names.into_iter().filter_map(|n| parse_segment_name(&n).map(|first| (first, n))).collect();
        found.sort();

        let mut report = OpenReport { segments: found.len(), ..OpenReport::default() };
        if let Some((first, name)) = found.first() {
            if *first > after.saturating_add(1) {
                return Err(StorageError::Gap { file: name.clone(), after, first: *first }.into());
            }
        }

        let mut segments = VecDeque::new();
        // The position the next record must have; set by the first segment's name.
        let mut expected = found.first().map_or(after.saturating_add(1), |(first, _)| *first);
        for (i, (first, name)) in found.iter().enumerate() {
            if *first != expected {
                let why = format!(
                    "the segment starts at position {first} but the one before it ends at position {}",
                    expected - 1
                );
                return Err(StorageError::corrupt(name, 0, why).into());
            }
            let len = dir.len(name).map_err(|e| StorageError::io(name, "stat", e))?;
            let mut rd = SegmentReader::open(&*dir, name, opts.max_record)?;
            let torn = loop {
                match rd.next()? {
                    Next::Record { pos, offset } => {
                        if pos != expected {
                            let why =
                                format!("record has position {pos} where position {expected} should be");
                            return Err(StorageError::corrupt(name, offset, why).into());
                        }
                        if pos > after {
                            each(pos, rd.payload()).map_err(|source| OpenError::Apply { pos, source })?;
                            report.replayed += 1;
                        }
                        expected = pos + 1;
                    }
                    Next::End => break None,
                    Next::Torn(why) => {
                        if i + 1 == found.len() {
                            rd.check_torn(expected)?;
                        }
                        break Some(Some(why));
                    }
                    Next::Zeros => break Some(None),
                }
            };
            let end = rd.offset;
            if let Some(None) = torn {
                if i + 1 < found.len() {
                    let why = "zeros where a record should be, in a segment that is not the last one";
                    return Err(StorageError::corrupt(name, end, why).into());
                }
                dir.set_len(name, end).map_err(|e| StorageError::io(name, "cut zero tail", e))?;
                report.zero_tail = len.saturating_sub(end);
            } else if let Some(Some(why)) = torn {
                if i + 1 < found.len() {
                    let why = format!("{why} in a segment that is not the last one");
                    return Err(StorageError::corrupt(name, end, why).into());
                }
                dir.set_len(name, end).map_err(|e| StorageError::io(name, "cut torn tail", e))?;
                report.torn =
                    Some(TornTail { file: name.clone(), offset: end, dropped: len.saturating_sub(end) });
            } else if end != len {
                // The file changed while we read it: someone else is writing the directory.
                let why = format!("the file is {len} bytes but its records end at byte {end}");
                return Err(StorageError::corrupt(name, end, why).into());
            }
            segments.push_back(Segment { first: *first, name: name.clone(), bytes: end });
        }
        let on_disk = expected - 1;

        let mut wal = Wal {
            dir,
            opts,
            segments,
            writer: None,
            sync_handle: None,
            reserved: 0,
            generation: 0,
            buf: Vec::new(),
            last_pos: on_disk,
            synced_pos: on_disk,
            poisoned: None,
        };
        if on_disk < after {
            // The snapshot covers the whole log (and more): appends resume after the snapshot.
            report.stale_segments_removed = wal.segments.len();
            wal.remove_all()?;
            wal.last_pos = after;
            wal.synced_pos = after;
        } else if let Some(seg) = wal.segments.back() {
            let name = seg.name.clone();
            let mut file = wal.dir.open_append(&name).map_err(|e| StorageError::io(&name, "open", e))?;
            // A crash of the process (not the machine) leaves written but unsynced records,
            // which we just handed out: make them durable before anyone acts on them.
            file.sync().map_err(|e| StorageError::io(&name, "fsync", e))?;
            wal.sync_handle = file.sync_handle();
            wal.writer = Some(WalFile(file));
        }
        report.last_pos = wal.last_pos;
        Ok((wal, report))
    }

    /// Appends the record at `pos`, which must be [`last_pos`](Wal::last_pos)` + 1`. It waits
    /// in a buffer; it is durable once [`sync`](Wal::sync) returns.
    ///
    /// [`StorageError::TooLarge`] and [`StorageError::OutOfOrder`] change nothing; any other
    /// error poisons the log (see [`Wal`]).
    pub fn append(&mut self, pos: u64, payload: &[u8]) -> Result<(), StorageError> {
        self.check_poison()?;
        if payload.len() as u64 > u64::from(self.opts.max_record) {
            return Err(StorageError::TooLarge {
                what: "write-ahead log record",
                len: payload.len() as u64,
                max: self.opts.max_record.into(),
            });
        }
        let expected = self.last_pos.saturating_add(1);
        if pos != expected {
            return Err(StorageError::OutOfOrder { expected, got: pos });
        }
        self.append_record(pos, payload).map_err(|e| self.poison(e))
    }

    fn append_record(&mut self, pos: u64, payload: &[u8]) -> Result<(), StorageError> {
        let full = self.segments.back().is_some_and(|s| s.bytes > 0 && s.bytes >= self.opts.segment_bytes);
        if self.writer.is_none() || full {
            self.start_segment(pos)?;
        }
        let mut header = [0u8; HEADER];
        header[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        header[4..8].copy_from_slice(&record_crc(pos, payload).to_le_bytes());
        header[8..].copy_from_slice(&pos.to_le_bytes());
        let size = HEADER + payload.len();
        if self.buf.len() + size > self.opts.buffer_bytes {
            self.write_buf()?;
        }
        if size > self.opts.buffer_bytes {
            // Too big to be worth copying into the buffer.
            self.write_out(&header)?;
            self.write_out(payload)?;
        } else {
            self.buf.extend_from_slice(&header);
            self.buf.extend_from_slice(payload);
        }
        if let Some(seg) = self.segments.back_mut() {
            seg.bytes += size as u64;
        }
        self.last_pos = pos;
        Ok(())
    }

    /// Syncs the current segment and starts `wal-{first}.log`.
    fn start_segment(&mut self, first: u64) -> Result<(), StorageError> {
        if self.writer.is_some() {
            // The old segment must be whole on disk before a newer one exists: only the last
            // segment may end torn, or in zeros.
            self.sync_inner()?;
            if let Some(old) = self.segments.back().filter(|s| self.reserved > s.bytes) {
                let (name, bytes) = (old.name.clone(), old.bytes);
                self.dir.set_len(&name, bytes).map_err(|e| StorageError::io(&name, "cut zero tail", e))?;
            }
        }
        self.reserved = 0;
        let name = segment_name(first);
        let file = self.dir.create(&name).map_err(|e| StorageError::io(&name, "create", e))?;
        self.sync_handle = file.sync_handle();
        self.writer = Some(WalFile(file));
        self.segments.push_back(Segment { first, name, bytes: 0 });
        Ok(())
    }

    fn current_name(&self) -> &str {
        self.segments.back().map_or("write-ahead log", |s| s.name.as_str())
    }

    fn write_out(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        let Some(WalFile(file)) = self.writer.as_mut() else {
            return Ok(());
        };
        match file.write_all(bytes) {
            Ok(()) => Ok(()),
            Err(e) => Err(StorageError::io(self.current_name(), "write", e)),
        }
    }

    fn write_buf(&mut self) -> Result<(), StorageError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        let r = self.write_out(&buf);
        // Keep the allocation for the next batch.
        self.buf = buf;
        self.buf.clear();
        r
    }

    /// Writes out the buffer and fsyncs the segment being written: every record appended so
    /// far is durable when this returns. One fsync per call, however many records (none if
    /// nothing was appended since the last sync). An error poisons the log (see [`Wal`]).
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.check_poison()?;
        self.sync_inner().map_err(|e| self.poison(e))
    }

    /// Keeps the segment extended with zeros a few MiB ahead of its records, so that the
    /// fsyncs of appends commit no change of size (ext4: no journal commit per fsync; the
    /// store's SET rate under `appendfsync always` rose 19% in an A/B run). Called before a
    /// sync; the sync then makes the new size durable too.
    fn reserve_ahead(&mut self) {
        let ahead = RESERVE_AHEAD.min(self.opts.segment_bytes.max(1));
        let Some(seg) = self.segments.back() else { return };
        if seg.bytes + ahead / 2 <= self.reserved {
            return;
        }
        let to = seg.bytes + ahead;
        if let Some(WalFile(file)) = self.writer.as_mut() {
            // A disk too full for the zeros is no error yet: appends go on into what was
            // reserved, then past it as without reserving, and fail only when they find no
            // room. This segment reserves no more; its zeros are cut at the next segment.
            self.reserved = if file.reserve(to).is_ok() { to } else { u64::MAX };
        }
    }

    fn sync_inner(&mut self) -> Result<(), StorageError> {
        if self.synced_pos == self.last_pos && self.buf.is_empty() {
            return Ok(());
        }
        self.write_buf()?;
        self.reserve_ahead();
        if let Some(WalFile(file)) = self.writer.as_mut() {
            if let Err(e) = file.sync() {
                return Err(StorageError::io(self.current_name(), "fsync", e));
            }
        }
        self.synced_pos = self.last_pos;
        Ok(())
    }

    /// Writes out the buffer and returns a sync of the segment being written to run on another
    /// thread, so that appends go on meanwhile: group commit without stalling the writer. Once
    /// [`WalSync::run`] returns, hand its result to [`finish_sync`](Wal::finish_sync): only then
    /// does [`synced_pos`](Wal::synced_pos) move. `None` if nothing is unsynced, or if the
    /// file cannot be synced from elsewhere: then this synced it here, as [`sync`](Wal::sync).
    /// A failure poisons the log.
    pub fn start_sync(&mut self) -> Result<Option<WalSync>, StorageError> {
        self.check_poison()?;
        if self.synced_pos == self.last_pos && self.buf.is_empty() {
            return Ok(None);
        }
        let Some(handle) = self.sync_handle.clone().filter(|_| self.writer.is_some()) else {
            self.sync_inner().map_err(|e| self.poison(e))?;
            return Ok(None);
        };
        self.write_buf().map_err(|e| self.poison(e))?;
        self.reserve_ahead();
        let Some(seg) = self.segments.back() else { return Ok(None) };
        Ok(Some(WalSync {
            handle,
            file: seg.name.clone(),
            len: seg.bytes,
            pos: self.last_pos,
            generation: self.generation,
        }))
    }

    /// A sync from [`start_sync`](Wal::start_sync) ended: what it covered is durable. A failed
    /// sync poisons the log (the records may or may not be on disk).
    pub fn finish_sync(&mut self, done: WalSynced) -> Result<(), StorageError> {
        if done.generation != self.generation {
            return Ok(()); // A sync of files the log has since removed: it says nothing.
        }
        if !self.segments.iter().any(|s| s.name == done.file) {
            // `truncate_through` removed the segment meanwhile: a durable snapshot covers all
            // its records, whatever the sync says (Linux syncs a removed file's open handle; a
            // filesystem that forgets it fails the sync: simulator seed 28 of chorus-smr's
            // `always` scenario poisoned the log this way).
            if done.pos <= self.last_pos {
                self.synced_pos = self.synced_pos.max(done.pos);
            }
            return Ok(());
        }
        if let Err(e) = done.result {
            let e = StorageError::io(&done.file, "fsync", e);
            return Err(self.poison(e));
        }
        self.check_poison()?;
        if done.pos <= self.last_pos {
            self.synced_pos = self.synced_pos.max(done.pos);
        }
        Ok(())
    }

    /// The last position appended (or recovered, or restarted at).
    pub fn last_pos(&self) -> u64 {
        self.last_pos
    }

    /// The last position known durable: every record up to it survives a crash.
    pub fn synced_pos(&self) -> u64 {
        self.synced_pos
    }

    /// The first position the log still holds, if it holds any.
    pub fn first_pos(&self) -> Option<u64> {
        self.segments.front().map(|s| s.first).filter(|&first| first <= self.last_pos)
    }

    /// Removes the segments whose records are all at or before `pos` (a durable snapshot at
    /// `pos` covers them), oldest first; never the segment being written. A failure leaves the
    /// log whole (segments not yet removed stay) and does not poison it.
    pub fn truncate_through(&mut self, pos: u64) -> Result<(), StorageError> {
        self.check_poison()?;
        while self.segments.len() > 1 && self.segments[1].first <= pos.saturating_add(1) {
            let name = &self.segments[0].name;
            self.dir.remove(name).map_err(|e| StorageError::io(name, "remove", e))?;
            self.segments.pop_front();
        }
        Ok(())
    }

    /// Removes every segment; the next append is `pos + 1`. For a replica that installed a
    /// snapshot at `pos` from another node: the snapshot must be durable first, since the log
    /// before it is gone. An error poisons the log (the removal may be half done); reopening
    /// with `after = pos` finishes it.
    pub fn restart_at(&mut self, pos: u64) -> Result<(), StorageError> {
        self.check_poison()?;
        self.remove_all().map_err(|e| self.poison(e))?;
        self.last_pos = pos;
        self.synced_pos = pos;
        Ok(())
    }

    fn remove_all(&mut self) -> Result<(), StorageError> {
        self.writer = None;
        self.sync_handle = None;
        self.generation += 1;
        self.buf.clear();
        // Oldest first, so that a crash half way leaves a contiguous log.
        while let Some(seg) = self.segments.front() {
            self.dir.remove(&seg.name).map_err(|e| StorageError::io(&seg.name, "remove", e))?;
            self.segments.pop_front();
        }
        Ok(())
    }

    /// Total bytes of the segments (including appended records not yet written out).
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// How many segment files the log has.
    pub fn segments(&self) -> usize {
        self.segments.len()
    }

    fn check_poison(&self) -> Result<(), StorageError> {
        match &self.poisoned {
            Some(first) => Err(StorageError::Poisoned(first.clone())),
            None => Ok(()),
        }
    }

    /// Records `e` as the reason the log refuses further calls, and returns it.
    fn poison(&mut self, e: StorageError) -> StorageError {
        self.poisoned = Some(Arc::new(e.duplicate()));
        e
    }
}

/// Whether the rest of `rd` is zeros.
fn all_zero(rd: &mut impl Read) -> io::Result<bool> {
    let mut chunk = [0u8; 4096];
    loop {
        let n = read_up_to(rd, &mut chunk)?;
        if chunk[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        if n < chunk.len() {
            return Ok(true);
        }
    }
}
