//! Snapshots: the encoding (written whole, or in pieces by [`KvFrozen`]), the frozen copy,
//! and the incremental decoding that restores a state.

use std::collections::VecDeque;
use std::fmt;
use std::io::{ErrorKind, Read};
use std::ops::Bound::{self, Excluded, Unbounded};
use std::sync::Arc;

use bytes::Bytes;
use chorus_smr::Frozen;
use imbl::{OrdMap, OrdSet};

use super::value::{Entry, Key, List, Tomb, Value};
use super::{KvMachine, MAX_TOMBSTONES};

impl KvMachine {
    // ---- snapshots ----

    /// The snapshot format: the magic, the tombstone floor, the tombstones (by hash), then a
    /// count and every key in order with its version, expiry and value. [`KvFrozen`] writes the
    /// same records, split into pieces.
    pub(super) fn write_state(&self, out: &mut impl Sink) {
        put_head(out, self.tomb_floor, self.tombs.len());
        for (h, t) in &self.tombs {
            put_tomb(out, *h, t);
        }
        put_varint(out, self.map.len() as u64);
        for (k, e) in &self.map {
            put_key(out, k, e);
            put_items(out, &e.value);
        }
    }

    /// Reads a state that `write_state` wrote, with every check `write_state` makes true:
    /// tombstones and keys in order, no empty collection, hash fields and set members in order,
    /// known tags, and nothing after the last key. Counts are never used to reserve memory
    /// (each item takes at least a byte, so a count beyond the data ends as "truncated").
    pub(super) fn read_from(r: &mut dyn Read) -> Result<KvMachine, String> {
        let mut r = Input::new(r);
        for &b in SNAP_MAGIC {
            if r.byte()? != b {
                return Err("bad magic".into());
            }
        }
        let mut m = KvMachine { tomb_floor: r.varint()?, ..KvMachine::default() };
        let n = r.varint()?;
        if n > MAX_TOMBSTONES as u64 {
            return Err("too many tombstones".into());
        }
        let mut prev_h = None;
        for _ in 0..n {
            let h = r.varint()?;
            let index = r.varint()?;
            let expired = match r.byte()? {
                0 => None,
                1 => Some(r.varint()?),
                t => return Err(format!("bad tombstone tag {t}")),
            };
            if prev_h.is_some_and(|p| p >= h) {
                return Err("tombstones out of order".into());
            }
            prev_h = Some(h);
            m.tombs.insert(h, Tomb { index, expired });
            m.tomb_order.insert((index, h));
        }
        let n = r.varint()?;
        let mut prev: Option<Key> = None;
        for _ in 0..n {
            let key = Key::new(&r.bytes()?);
            if prev.as_ref().is_some_and(|p| *p >= key) {
                return Err("keys out of order".into());
            }
            let version = r.varint()?;
            let expire_at = match r.byte()? {
                0 => None,
                1 => Some(r.varint()?),
                t => return Err(format!("bad expiry tag {t}")),
            };
            let value = match r.byte()? {
                0 => Value::Str(r.bytes()?),
                1 => {
                    let mut l = List::default();
                    for _ in 0..r.varint()? {
                        l.push(r.bytes()?, false);
                    }
                    Value::List(Arc::new(l))
                }
                2 => {
                    let mut h = OrdMap::new();
                    let mut prev: Option<Bytes> = None;
                    for _ in 0..r.varint()? {
                        let f = r.bytes()?;
                        let v = r.bytes()?;
                        if prev.as_ref().is_some_and(|p| *p >= f) {
                            return Err("hash fields out of order".into());
                        }
                        prev = Some(f.clone());
                        h.insert(f, v);
                    }
                    Value::Hash(h)
                }
                3 => {
                    let mut s = OrdSet::new();
                    let mut prev: Option<Bytes> = None;
                    for _ in 0..r.varint()? {
                        let b = r.bytes()?;
                        if prev.as_ref().is_some_and(|p| *p >= b) {
                            return Err("set members out of order".into());
                        }
                        prev = Some(b.clone());
                        s.insert(b);
                    }
                    Value::Set(s)
                }
                t => return Err(format!("bad type tag {t}")),
            };
            if value.is_empty() {
                return Err("empty collection".into());
            }
            if let Some(at) = expire_at {
                m.expires.insert((at, key.clone()));
            }
            prev = Some(key.clone());
            m.map.insert(key, Entry { value, expire_at, version });
        }
        if !r.at_end()? {
            return Err("trailing bytes".into());
        }
        Ok(m)
    }
}

const SNAP_MAGIC: &[u8] = b"CHORUSKV1";

/// Where the records of a snapshot go.
pub(super) trait Sink {
    fn put(&mut self, b: &[u8]);

    /// A key's or a value's bytes: a sink that holds records back shares them (no copy).
    fn put_blob(&mut self, b: &Bytes) {
        self.put(b);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
}

/// FNV-1a over the snapshot's bytes, for the digest.
pub(super) struct Fnv(pub(super) u64);

impl Sink for Fnv {
    fn put(&mut self, b: &[u8]) {
        for &c in b {
            self.0 ^= u64::from(c);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Counts the bytes of a record.
struct Count(usize);

impl Sink for Count {
    fn put(&mut self, b: &[u8]) {
        self.0 += b.len();
    }
}

/// A record that did not fit in a piece, held for the next ones: its small fields copied, its
/// keys and values shared with the frozen state.
#[derive(Default)]
struct Parts {
    parts: Vec<Bytes>,
    small: Vec<u8>,
}

impl Parts {
    fn flush(&mut self) {
        if !self.small.is_empty() {
            self.parts.push(Bytes::from(std::mem::take(&mut self.small)));
        }
    }

    fn into_queue(mut self, queue: &mut VecDeque<Bytes>) {
        self.flush();
        queue.extend(self.parts);
    }
}

impl Sink for Parts {
    fn put(&mut self, b: &[u8]) {
        self.small.extend_from_slice(b);
    }

    fn put_blob(&mut self, b: &Bytes) {
        self.flush();
        if !b.is_empty() {
            self.parts.push(b.clone());
        }
    }
}

fn put_varint<S: Sink + ?Sized>(out: &mut S, mut v: u64) {
    let mut buf = [0u8; 10];
    let mut i = 0;
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf[i] = b;
            i += 1;
            break;
        }
        buf[i] = b | 0x80;
        i += 1;
    }
    out.put(&buf[..i]);
}

fn put_bytes<S: Sink + ?Sized>(out: &mut S, b: &Bytes) {
    put_varint(out, b.len() as u64);
    out.put_blob(b);
}

/// The size of `put_bytes(b)`.
fn bytes_len(b: &[u8]) -> usize {
    let bits = 64 - (b.len() as u64).leading_zeros() as usize;
    bits.div_ceil(7).max(1) + b.len()
}

/// The first record: the magic, the tombstone floor and the number of tombstones.
fn put_head<S: Sink + ?Sized>(out: &mut S, tomb_floor: u64, tombs: usize) {
    out.put(SNAP_MAGIC);
    put_varint(out, tomb_floor);
    put_varint(out, tombs as u64);
}

fn put_tomb<S: Sink + ?Sized>(out: &mut S, h: u64, t: &Tomb) {
    put_varint(out, h);
    put_varint(out, t.index);
    match t.expired {
        None => out.put(&[0]),
        Some(v) => {
            out.put(&[1]);
            put_varint(out, v);
        }
    }
}

/// A key's record up to its items: the key, version, expiry and type tag, then the string, or
/// the collection's item count (its items follow, written by `put_items`).
fn put_key<S: Sink + ?Sized>(out: &mut S, k: &Key, e: &Entry) {
    put_bytes(out, &k.k);
    put_varint(out, e.version);
    match e.expire_at {
        None => out.put(&[0]),
        Some(at) => {
            out.put(&[1]);
            put_varint(out, at);
        }
    }
    match &e.value {
        Value::Str(s) => {
            out.put(&[0]);
            put_bytes(out, s);
        }
        Value::List(l) => {
            out.put(&[1]);
            put_varint(out, l.len() as u64);
        }
        Value::Hash(h) => {
            out.put(&[2]);
            put_varint(out, h.len() as u64);
        }
        Value::Set(s) => {
            out.put(&[3]);
            put_varint(out, s.len() as u64);
        }
    }
}

fn put_items<S: Sink + ?Sized>(out: &mut S, v: &Value) {
    match v {
        Value::Str(_) => {}
        Value::List(l) => {
            for b in l.iter() {
                put_bytes(out, b);
            }
        }
        Value::Hash(h) => {
            for (f, v) in h {
                put_bytes(out, f);
                put_bytes(out, v);
            }
        }
        Value::Set(s) => {
            for b in s {
                put_bytes(out, b);
            }
        }
    }
}

/// Whether the whole record of a key (with all its items) takes at most `room` bytes; looks at
/// no more items than fit.
fn record_fits(k: &Key, e: &Entry, room: usize) -> bool {
    let mut head = Count(0);
    put_key(&mut head, k, e);
    let Some(mut left) = room.checked_sub(head.0) else { return false };
    let mut take = |b: &[u8]| match left.checked_sub(bytes_len(b)) {
        Some(l) => {
            left = l;
            true
        }
        None => false,
    };
    match &e.value {
        Value::Str(_) => true,
        Value::List(l) => l.iter().all(|b| take(b)),
        Value::Hash(h) => h.iter().all(|(f, v)| take(f) && take(v)),
        Value::Set(s) => s.iter().all(|b| take(b)),
    }
}

/// A frozen copy of a [`KvMachine`]'s state and a cursor over its serialization: the same
/// bytes as [`StateMachine::snapshot`] gave at the freeze, in pieces.
///
/// It shares the machine's nodes (so it cost nothing to make, and the machine copies a node
/// only when it writes to one the copy still holds). A piece is exactly the `max` asked for,
/// except the last: records that do not fit are split, and the part held back for the next
/// piece is one record's small fields plus references to its key and value.
///
/// [`StateMachine::snapshot`]: chorus_smr::StateMachine::snapshot
pub struct KvFrozen {
    pub(super) tomb_floor: u64,
    pub(super) tombs: OrdMap<u64, Tomb>,
    pub(super) map: OrdMap<Key, Entry>,
    pub(super) at: Cursor,
    /// The rest of a record split by the end of a piece; goes out first.
    pub(super) pending: VecDeque<Bytes>,
}

/// The next record to write.
pub(super) enum Cursor {
    /// The magic, the tombstone floor and count.
    Head,
    /// The tombstones after this hash (all if `None`), then the key count.
    Tombs(Option<u64>),
    /// The keys after this one (all if `None`).
    Keys(Option<Key>),
    /// The rest of the items of this key's collection (its head went out, or waits in `pending`).
    Items(Key, Items),
    Done,
}

pub(super) enum Items {
    /// From this index on.
    List(Arc<List>, usize),
    /// After this field (all if `None`).
    Hash(OrdMap<Bytes, Bytes>, Option<Bytes>),
    /// After this member (all if `None`).
    Set(OrdSet<Bytes>, Option<Bytes>),
}

impl fmt::Debug for KvFrozen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = match &self.at {
            Cursor::Head => "head",
            Cursor::Tombs(_) => "tombstones",
            Cursor::Keys(_) | Cursor::Items(..) => "keys",
            Cursor::Done => "done",
        };
        f.debug_struct("KvFrozen")
            .field("keys", &self.map.len())
            .field("tombstones", &self.tombs.len())
            .field("at", &at)
            .field("pending_parts", &self.pending.len())
            .finish()
    }
}

impl Frozen for KvFrozen {
    fn next_piece(&mut self, out: &mut Vec<u8>, max: usize) -> bool {
        let start = out.len();
        // At least a byte per piece, so that a caller asking for 0 still sees progress.
        let end = start.saturating_add(max.max(1));
        loop {
            self.drain_pending(out, end);
            if out.len() >= end {
                return true;
            }
            if !self.advance(out, end) {
                return out.len() > start;
            }
        }
    }
}

impl KvFrozen {
    fn drain_pending(&mut self, out: &mut Vec<u8>, end: usize) {
        while let Some(part) = self.pending.front_mut() {
            let room = end.saturating_sub(out.len());
            if room == 0 {
                return;
            }
            if part.len() <= room {
                out.extend_from_slice(part);
                self.pending.pop_front();
            } else {
                out.extend_from_slice(&part.split_to(room));
            }
        }
    }

    /// Writes a record made by `write` if it fits before `end`, or else holds it in `pending`
    /// (then nothing more may be written to `out` before `pending` is drained). Whether it fit.
    fn emit(&mut self, out: &mut Vec<u8>, end: usize, write: impl Fn(&mut dyn Sink)) -> bool {
        let mut len = Count(0);
        write(&mut len);
        if out.len() + len.0 <= end {
            write(out);
            true
        } else {
            let mut parts = Parts::default();
            write(&mut parts);
            parts.into_queue(&mut self.pending);
            false
        }
    }

    /// Writes the records that fit before `end` from the cursor on, then at most one more into
    /// `pending`. False once everything was written. `pending` is empty when it is called.
    fn advance(&mut self, out: &mut Vec<u8>, end: usize) -> bool {
        self.at = match std::mem::replace(&mut self.at, Cursor::Done) {
            Cursor::Head => {
                let (floor, n) = (self.tomb_floor, self.tombs.len());
                self.emit(out, end, |s| put_head(s, floor, n));
                Cursor::Tombs(None)
            }
            Cursor::Tombs(after) => self.tombs_after(after, out, end),
            Cursor::Keys(after) => self.keys_after(after, out, end),
            Cursor::Items(key, items) => self.items(key, items, out, end),
            Cursor::Done => return false,
        };
        true
    }

    fn tombs_after(&mut self, after: Option<u64>, out: &mut Vec<u8>, end: usize) -> Cursor {
        // A second reference (O(1)), so that the loop can borrow it while `self` changes.
        let tombs = self.tombs.clone();
        for (h, t) in tombs.range((after.map_or(Unbounded, Excluded), Unbounded)) {
            if !self.emit(out, end, |s| put_tomb(s, *h, t)) {
                return Cursor::Tombs(Some(*h));
            }
        }
        let n = self.map.len() as u64;
        self.emit(out, end, |s| put_varint(s, n));
        Cursor::Keys(None)
    }

    fn keys_after(&mut self, after: Option<Key>, out: &mut Vec<u8>, end: usize) -> Cursor {
        let map = self.map.clone();
        for (k, e) in map.range::<_, Key>(after_bound(after.as_ref())) {
            if record_fits(k, e, end.saturating_sub(out.len())) {
                put_key(out, k, e);
                put_items(out, &e.value);
                continue;
            }
            // Too long for the rest of this piece: its head is held back, its items follow one
            // by one.
            let mut parts = Parts::default();
            put_key(&mut parts, k, e);
            parts.into_queue(&mut self.pending);
            let key = k.clone();
            return match &e.value {
                Value::Str(_) => Cursor::Keys(Some(key)),
                Value::List(l) => Cursor::Items(key, Items::List(l.clone(), 0)),
                Value::Hash(h) => Cursor::Items(key, Items::Hash(h.clone(), None)),
                Value::Set(s) => Cursor::Items(key, Items::Set(s.clone(), None)),
            };
        }
        Cursor::Done
    }

    fn items(&mut self, key: Key, items: Items, out: &mut Vec<u8>, end: usize) -> Cursor {
        match items {
            Items::List(l, from) => {
                for (i, b) in l.range(from, usize::MAX).enumerate() {
                    if !self.emit(out, end, |s| put_bytes(s, b)) {
                        return Cursor::Items(key, Items::List(l.clone(), from + i + 1));
                    }
                }
            }
            Items::Hash(h, after) => {
                for (f, v) in h.range::<_, Bytes>(after_bound(after.as_ref())) {
                    if !self.emit(out, end, |s| {
                        put_bytes(s, f);
                        put_bytes(s, v);
                    }) {
                        return Cursor::Items(key, Items::Hash(h.clone(), Some(f.clone())));
                    }
                }
            }
            Items::Set(set, after) => {
                for b in set.range::<_, Bytes>(after_bound(after.as_ref())) {
                    if !self.emit(out, end, |s| put_bytes(s, b)) {
                        return Cursor::Items(key, Items::Set(set.clone(), Some(b.clone())));
                    }
                }
            }
        }
        Cursor::Keys(Some(key))
    }
}

/// The range after `x` (everything if `None`).
fn after_bound<T>(x: Option<&T>) -> (Bound<&T>, Bound<&T>) {
    (x.map_or(Unbounded, Excluded), Unbounded)
}

/// How much of a snapshot `restore_from` reads at a time.
const READ_CHUNK: usize = 64 << 10;

/// The snapshot's bytes from a `Read`, through a buffer of [`READ_CHUNK`] bytes.
struct Input<'a> {
    r: &'a mut dyn Read,
    buf: Vec<u8>,
    pos: usize,
}

impl<'a> Input<'a> {
    fn new(r: &'a mut dyn Read) -> Self {
        Input { r, buf: Vec::new(), pos: 0 }
    }

    /// Reads more once the buffer is used up; false at the end of the input.
    fn fill(&mut self) -> Result<bool, String> {
        if self.pos < self.buf.len() {
            return Ok(true);
        }
        self.buf.resize(READ_CHUNK, 0);
        self.pos = 0;
        loop {
            match self.r.read(&mut self.buf) {
                Ok(n) => {
                    self.buf.truncate(n);
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.clear();
                    return Err(format!("reading the snapshot: {e}"));
                }
            }
        }
    }

    fn at_end(&mut self) -> Result<bool, String> {
        Ok(!self.fill()?)
    }

    fn byte(&mut self) -> Result<u8, String> {
        if !self.fill()? {
            return Err("truncated".into());
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    /// A length and that many bytes. The memory taken grows with the bytes that arrive, never
    /// with the length alone (a damaged or hostile length would otherwise allocate gigabytes).
    fn bytes(&mut self) -> Result<Bytes, String> {
        let n = usize::try_from(self.varint()?).map_err(|_| "length beyond memory")?;
        if !self.fill()? && n > 0 {
            return Err("truncated".into());
        }
        if n <= self.buf.len() - self.pos {
            let b = Bytes::copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(b);
        }
        let mut v: Vec<u8> = Vec::new();
        while v.len() < n {
            if !self.fill()? {
                return Err("truncated".into());
            }
            let take = (n - v.len()).min(self.buf.len() - self.pos);
            if v.capacity() - v.len() < take {
                // Doubling, but never past `n`: the result holds no spare capacity.
                v.reserve_exact((n - v.len()).min(v.capacity().max(take)));
            }
            v.extend_from_slice(&self.buf[self.pos..self.pos + take]);
            self.pos += take;
        }
        Ok(Bytes::from(v))
    }
}
