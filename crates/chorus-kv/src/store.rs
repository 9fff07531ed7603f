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

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::io::{ErrorKind, Read};
use std::ops::Bound::{self, Excluded, Unbounded};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use chorus_smr::{Ctx, Frozen, RestoreError, StateMachine};
use imbl::{OrdMap, OrdSet, Vector};

use crate::command::{decode_write, Cmd, Cond, ExpireCond, Expiry, Query, SetArgs, WriteCmd};
use crate::reply::{Reply, NOT_INTEGER, WRONGTYPE};
use crate::resp::parse_i64;

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

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    h: u64,
    k: Bytes,
}

impl Key {
    fn new(k: &Bytes) -> Key {
        Key { h: key_hash(k), k: k.clone() }
    }
    const MIN: Key = Key { h: 0, k: Bytes::new() };
}

#[derive(Clone, Debug)]
enum Value {
    Str(Bytes),
    /// Behind an `Arc` to keep entries small (an imbl `Vector` is 64 bytes): a write after a
    /// freeze copies the `List` (a few items, or a long list's root) with `Arc::make_mut`.
    List(Arc<List>),
    Hash(OrdMap<Bytes, Bytes>),
    Set(OrdSet<Bytes>),
}

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Value::Str(_) => false,
            Value::List(l) => l.is_empty(),
            Value::Hash(h) => h.is_empty(),
            Value::Set(s) => s.is_empty(),
        }
    }
}

/// A list's items: a `VecDeque` while short, a persistent `Vector` once long. A short one is
/// cheap to copy when a write follows a freeze; a long one then copies only the chunks on the
/// written path. (A `Vector` of even two items holds a 64-slot chunk, about 2 KiB.)
#[derive(Clone, Debug)]
enum List {
    Short(VecDeque<Bytes>),
    Long(Vector<Bytes>),
}

/// The most items a list holds as a `VecDeque`; a long list that shrinks to a quarter of this
/// becomes short again (not at once, so a list at the boundary does not flip at every push).
const SHORT_LIST: usize = 64;

impl Default for List {
    fn default() -> Self {
        List::Short(VecDeque::new())
    }
}

impl List {
    fn len(&self) -> usize {
        match self {
            List::Short(d) => d.len(),
            List::Long(v) => v.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&mut self, item: Bytes, front: bool) {
        if let List::Short(d) = self {
            if d.len() >= SHORT_LIST {
                *self = List::Long(std::mem::take(d).into_iter().collect());
            }
        }
        match (self, front) {
            (List::Short(d), true) => d.push_front(item),
            (List::Short(d), false) => d.push_back(item),
            (List::Long(v), true) => v.push_front(item),
            (List::Long(v), false) => v.push_back(item),
        }
    }

    fn pop(&mut self, front: bool) -> Option<Bytes> {
        let item = match (&mut *self, front) {
            (List::Short(d), true) => d.pop_front(),
            (List::Short(d), false) => d.pop_back(),
            (List::Long(v), true) => v.pop_front(),
            (List::Long(v), false) => v.pop_back(),
        };
        if let List::Long(v) = self {
            if v.len() <= SHORT_LIST / 4 {
                *self = List::Short(v.iter().cloned().collect());
            }
        }
        item
    }

    fn get(&self, i: usize) -> Option<&Bytes> {
        match self {
            List::Short(d) => d.get(i),
            List::Long(v) => v.get(i),
        }
    }

    /// The items from `from` to before `to` (both clamped to the list).
    fn range(&self, from: usize, to: usize) -> ListIter<'_> {
        let to = to.min(self.len());
        let from = from.min(to);
        match self {
            List::Short(d) => ListIter::Short(d.range(from..to)),
            List::Long(v) => ListIter::Long(v.focus().narrow(from..to).into_iter()),
        }
    }

    fn iter(&self) -> ListIter<'_> {
        self.range(0, usize::MAX)
    }
}

enum ListIter<'a> {
    Short(std::collections::vec_deque::Iter<'a, Bytes>),
    Long(imbl::vector::Iter<'a, Bytes, imbl::shared_ptr::DefaultSharedPtr>),
}

impl<'a> Iterator for ListIter<'a> {
    type Item = &'a Bytes;

    fn next(&mut self) -> Option<&'a Bytes> {
        match self {
            ListIter::Short(i) => i.next(),
            ListIter::Long(i) => i.next(),
        }
    }
}

/// What is remembered of a deleted key (by its hash).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct Tomb {
    /// The index of the command that deleted it.
    index: u64,
    /// Deleted because its expiry had passed: the version it had.
    expired: Option<u64>,
}

/// Marks the version of a key that expired (its version before, with this bit set).
const EXPIRED_TAG: u64 = 1 << 63;

#[derive(Clone, Debug)]
struct Entry {
    value: Value,
    /// Unix time in ms after which the key is gone.
    expire_at: Option<u64>,
    /// The log index of the last change.
    version: u64,
}

impl Entry {
    fn expired(&self, now: u64) -> bool {
        self.expire_at.is_some_and(|at| now > at)
    }
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

fn wrongtype() -> Reply {
    Reply::err(WRONGTYPE)
}

fn len_int(n: usize) -> Reply {
    Reply::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

fn bulks<'a>(it: impl Iterator<Item = &'a Bytes>) -> Vec<Reply> {
    it.map(|b| Reply::Bulk(b.clone())).collect()
}

/// Parses a stored string as an integer the way INCR does.
fn stored_int(b: &[u8]) -> Option<i64> {
    parse_i64(b)
}

fn int_bytes(n: i64) -> Bytes {
    let mut buf = [0u8; 20];
    Bytes::copy_from_slice(crate::reply::fmt_i64(n, &mut buf))
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

    // ---- lookups ----

    fn live(&self, key: &Bytes, now: u64) -> Option<&Entry> {
        self.map.get(&Key::new(key)).filter(|e| !e.expired(now))
    }

    fn str_of(&self, key: &Bytes, now: u64) -> Result<Option<&Bytes>, Reply> {
        match self.live(key, now).map(|e| &e.value) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(_) => Err(wrongtype()),
        }
    }

    fn list_of(&self, key: &Bytes, now: u64) -> Result<Option<&List>, Reply> {
        match self.live(key, now).map(|e| &e.value) {
            None => Ok(None),
            Some(Value::List(l)) => Ok(Some(l)),
            Some(_) => Err(wrongtype()),
        }
    }

    fn hash_of(&self, key: &Bytes, now: u64) -> Result<Option<&OrdMap<Bytes, Bytes>>, Reply> {
        match self.live(key, now).map(|e| &e.value) {
            None => Ok(None),
            Some(Value::Hash(h)) => Ok(Some(h)),
            Some(_) => Err(wrongtype()),
        }
    }

    fn set_of(&self, key: &Bytes, now: u64) -> Result<Option<&OrdSet<Bytes>>, Reply> {
        match self.live(key, now).map(|e| &e.value) {
            None => Ok(None),
            Some(Value::Set(s)) => Ok(Some(s)),
            Some(_) => Err(wrongtype()),
        }
    }

    fn version_of(&self, key: &Bytes, now: u64) -> u64 {
        match self.live(key, now) {
            Some(e) => e.version,
            None => match self.map.get(&Key::new(key)) {
                // Expired, not yet deleted: the version its deletion by expiry will leave.
                Some(e) => EXPIRED_TAG | e.version,
                None => match self.tombs.get(&key_hash(key)) {
                    Some(Tomb { expired: Some(v), .. }) => EXPIRED_TAG | v,
                    Some(Tomb { index, .. }) => *index,
                    None => self.tomb_floor,
                },
            },
        }
    }

    // ---- mutations (writes only) ----

    fn remove(&mut self, key: &Key, idx: u64) -> Option<Entry> {
        // A miss must not reach `remove`: imbl copies the (maybe frozen) path on the way down.
        if !self.map.contains_key(key) {
            return None;
        }
        let e = self.map.remove(key)?;
        if let Some(at) = e.expire_at {
            self.expires.remove(&(at, key.clone()));
        }
        self.tomb(key.h, Tomb { index: idx, expired: None });
        Some(e)
    }

    /// Records that a key with hash `h` was deleted by the command at `idx`.
    fn tomb(&mut self, h: u64, t: Tomb) {
        if let Some(old) = self.tombs.insert(h, t) {
            self.tomb_order.remove(&(old.index, h));
        }
        self.tomb_order.insert((t.index, h));
        while self.tombs.len() > MAX_TOMBSTONES {
            let Some((i, oh)) = self.tomb_order.pop_first() else { break };
            self.tombs.remove(&oh);
            self.tomb_floor = self.tomb_floor.max(i);
        }
    }

    /// Deletes `key` if it has expired; returns its live entry.
    fn live_mut(&mut self, key: &Key, ctx: &Ctx) -> Option<&mut Entry> {
        match self.map.get(key) {
            // A miss must not reach `get_mut`: imbl copies the (maybe frozen) path on the way down.
            None => return None,
            Some(e) if e.expired(ctx.now_ms) => {
                self.remove_expired(key, ctx.index);
                return None;
            }
            Some(_) => {}
        }
        self.map.get_mut(key)
    }

    /// Deletes a key whose expiry has passed: its tombstone remembers the version it had, so
    /// that a WATCH made after it expired (but before this) is not aborted.
    fn remove_expired(&mut self, key: &Key, idx: u64) {
        if let Some(e) = self.remove(key, idx) {
            self.tomb(key.h, Tomb { index: idx, expired: Some(e.version) });
        }
    }

    fn exists_w(&mut self, key: &Key, ctx: &Ctx) -> bool {
        self.live_mut(key, ctx).is_some()
    }

    /// Stores `value` at `key` (replacing any value), with this expiry.
    fn put(&mut self, key: Key, value: Value, expire_at: Option<u64>, idx: u64) {
        // The replaced entry tells its expiry: one descent of the map, not two.
        let old = self.map.insert(key.clone(), Entry { value, expire_at, version: idx });
        if let Some(old) = old.and_then(|e| e.expire_at) {
            self.expires.remove(&(old, key.clone()));
        }
        if let Some(at) = expire_at {
            self.expires.insert((at, key));
        }
    }

    fn set_expire(&mut self, key: &Key, at: Option<u64>, idx: u64) {
        let Some(e) = self.map.get_mut(key) else { return };
        if let Some(old) = e.expire_at {
            self.expires.remove(&(old, key.clone()));
        }
        e.expire_at = at;
        e.version = idx;
        if let Some(at) = at {
            self.expires.insert((at, key.clone()));
        }
    }

    /// After changing a collection in place: bumps the version, or deletes it if it is empty.
    fn touched(&mut self, key: &Key, idx: u64) {
        match self.map.get_mut(key) {
            Some(e) if e.value.is_empty() => {
                self.remove(key, idx);
            }
            Some(e) => e.version = idx,
            None => {}
        }
    }

    /// Deletes up to `max` keys whose expiry is before `now`.
    fn purge_expired(&mut self, now: u64, idx: u64, max: usize) {
        for _ in 0..max {
            let Some((at, key)) = self.expires.first().cloned() else { return };
            if at >= now {
                return;
            }
            self.remove_expired(&key, idx);
        }
    }

    /// The mutable value at `key`, created by `make` if absent; WRONGTYPE if `pick` rejects it.
    fn value_mut<T>(
        &mut self,
        key: &Key,
        ctx: &Ctx,
        make: Option<fn() -> Value>,
        pick: fn(&mut Value) -> Option<&mut T>,
    ) -> Result<Option<&mut T>, Reply> {
        if self.live_mut(key, ctx).is_none() {
            match make {
                Some(m) => self.put(key.clone(), m(), None, ctx.index),
                None => return Ok(None),
            }
        }
        match self.map.get_mut(key) {
            Some(e) => pick(&mut e.value).map(Some).ok_or_else(wrongtype),
            None => Ok(None),
        }
    }

    // ---- commands ----

    fn exec_set(&mut self, a: &SetArgs, ctx: &Ctx) -> Reply {
        let now = ctx.now_ms;
        let at = match a.expire {
            None => None,
            Some(Expiry::RelMs(ms)) => match i64::try_from(now).ok().and_then(|n| n.checked_add(ms)) {
                Some(t) if t > 0 => Some(t as u64),
                _ => return a.name.error(),
            },
            Some(Expiry::AbsMs(ms)) if ms > 0 => Some(ms as u64),
            Some(Expiry::AbsMs(_)) => return a.name.error(),
        };
        let key = Key::new(&a.key);
        let old = match self.live_mut(&key, ctx) {
            None => None,
            Some(e) => Some((e.value.clone(), e.expire_at)),
        };
        let old_reply = match &old {
            Some((Value::Str(s), _)) => Reply::Bulk(s.clone()),
            Some(_) if a.get => return wrongtype(),
            _ => Reply::Null,
        };
        let exists = old.is_some();
        if (a.cond == Cond::Nx && exists) || (a.cond == Cond::Xx && !exists) {
            return if a.get { old_reply } else { Reply::Null };
        }
        let at = if a.keep_ttl { old.and_then(|(_, at)| at) } else { at };
        if at.is_some_and(|t| t <= now) {
            self.remove(&key, ctx.index);
        } else {
            self.put(key, Value::Str(a.value.clone()), at, ctx.index);
        }
        if a.get {
            old_reply
        } else {
            Reply::ok()
        }
    }

    fn exec_incr(&mut self, k: &Bytes, by: i64, ctx: &Ctx) -> Reply {
        let key = Key::new(k);
        let (cur, at) = match self.live_mut(&key, ctx) {
            None => (0, None),
            Some(Entry { value: Value::Str(s), expire_at, .. }) => match stored_int(s) {
                Some(n) => (n, *expire_at),
                None => return Reply::err(NOT_INTEGER),
            },
            Some(_) => return wrongtype(),
        };
        let Some(n) = cur.checked_add(by) else {
            return Reply::err("ERR increment or decrement would overflow");
        };
        self.put(key, Value::Str(int_bytes(n)), at, ctx.index);
        Reply::Int(n)
    }

    fn exec_append(&mut self, k: &Bytes, v: &Bytes, ctx: &Ctx) -> Reply {
        let key = Key::new(k);
        match self.live_mut(&key, ctx) {
            None => {
                self.put(key, Value::Str(v.clone()), None, ctx.index);
                len_int(v.len())
            }
            Some(e) => {
                let Value::Str(s) = &mut e.value else { return wrongtype() };
                if s.len() + v.len() > MAX_STRING_LEN {
                    return Reply::err("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
                }
                let taken = std::mem::take(s);
                let mut m = taken.try_into_mut().unwrap_or_else(|b| BytesMut::from(&b[..]));
                m.extend_from_slice(v);
                *s = m.freeze();
                e.version = ctx.index;
                len_int(s.len())
            }
        }
    }

    fn exec_expire(
        &mut self,
        k: &Bytes,
        ms: i64,
        absolute: bool,
        cond: ExpireCond,
        ctx: &Ctx,
        err: Reply,
    ) -> Reply {
        let now = i64::try_from(ctx.now_ms).unwrap_or(i64::MAX);
        let when = if absolute {
            ms
        } else {
            match ms.checked_add(now) {
                Some(w) => w,
                None => return err,
            }
        };
        let key = Key::new(k);
        let Some(e) = self.live_mut(&key, ctx) else { return Reply::Int(0) };
        let cur = e.expire_at.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
        if (cond.nx && cur.is_some())
            || (cond.xx && cur.is_none())
            || (cond.gt && cur.is_none_or(|c| when <= c))
            || (cond.lt && cur.is_some_and(|c| when >= c))
        {
            return Reply::Int(0);
        }
        if when <= now {
            self.remove(&key, ctx.index);
        } else {
            self.set_expire(&key, Some(when as u64), ctx.index);
        }
        Reply::Int(1)
    }

    fn exec_pop(&mut self, k: &Bytes, left: bool, count: Option<u64>, ctx: &Ctx) -> Reply {
        let key = Key::new(k);
        let missing = if count.is_some() { Reply::NullArray } else { Reply::Null };
        let list = match self.value_mut(&key, ctx, None, list_mut) {
            Err(r) => return r,
            Ok(None) => return missing,
            Ok(Some(l)) => l,
        };
        let pop = |l: &mut List| l.pop(left);
        let reply = match count {
            None => pop(list).map_or(Reply::Null, Reply::Bulk),
            Some(n) => {
                let n = usize::try_from(n).unwrap_or(usize::MAX).min(list.len());
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    if let Some(b) = pop(list) {
                        out.push(Reply::Bulk(b));
                    }
                }
                if out.is_empty() {
                    // COUNT 0: nothing changed.
                    return Reply::Array(out);
                }
                Reply::Array(out)
            }
        };
        self.touched(&key, ctx.index);
        reply
    }

    /// Runs a write (or, inside a transaction, any data command).
    fn exec(&mut self, cmd: &Cmd, ctx: &Ctx) -> Reply {
        if !cmd.is_write() {
            return self.read(cmd, ctx.now_ms);
        }
        let idx = ctx.index;
        match cmd {
            Cmd::Set(a) => self.exec_set(a, ctx),
            Cmd::SetNx(k, v) => {
                let key = Key::new(k);
                if self.exists_w(&key, ctx) {
                    return Reply::Int(0);
                }
                self.put(key, Value::Str(v.clone()), None, idx);
                Reply::Int(1)
            }
            Cmd::GetDel(k) => {
                let key = Key::new(k);
                let v = match self.live_mut(&key, ctx) {
                    None => return Reply::Null,
                    Some(Entry { value: Value::Str(s), .. }) => s.clone(),
                    Some(_) => return wrongtype(),
                };
                self.remove(&key, idx);
                Reply::Bulk(v)
            }
            Cmd::MSet(pairs, nx) => {
                if *nx {
                    for (k, _) in pairs {
                        if self.exists_w(&Key::new(k), ctx) {
                            return Reply::Int(0);
                        }
                    }
                }
                for (k, v) in pairs {
                    let key = Key::new(k);
                    self.live_mut(&key, ctx);
                    self.put(key, Value::Str(v.clone()), None, idx);
                }
                if *nx {
                    Reply::Int(1)
                } else {
                    Reply::ok()
                }
            }
            Cmd::IncrBy(k, by) => self.exec_incr(k, *by, ctx),
            Cmd::Append(k, v) => self.exec_append(k, v, ctx),
            Cmd::Del(keys) => {
                let mut n = 0;
                for k in keys {
                    let key = Key::new(k);
                    if self.exists_w(&key, ctx) {
                        self.remove(&key, idx);
                        n += 1;
                    }
                }
                Reply::Int(n)
            }
            Cmd::Expire { key, ms, absolute, cond, name } => {
                self.exec_expire(key, *ms, *absolute, *cond, ctx, name.error())
            }
            Cmd::Persist(k) => {
                let key = Key::new(k);
                match self.live_mut(&key, ctx) {
                    Some(e) if e.expire_at.is_some() => {
                        self.set_expire(&key, None, idx);
                        Reply::Int(1)
                    }
                    _ => Reply::Int(0),
                }
            }
            Cmd::Flush => {
                self.map.clear();
                self.expires.clear();
                self.tombs.clear();
                self.tomb_order.clear();
                self.tomb_floor = idx;
                Reply::ok()
            }
            Cmd::Push { key, values, left, existing } => {
                let k = Key::new(key);
                let make: Option<fn() -> Value> =
                    if *existing { None } else { Some(|| Value::List(Arc::default())) };
                let list = match self.value_mut(&k, ctx, make, list_mut) {
                    Err(r) => return r,
                    Ok(None) => return Reply::Int(0),
                    Ok(Some(l)) => l,
                };
                for v in values {
                    list.push(v.clone(), *left);
                }
                let n = list.len();
                self.touched(&k, idx);
                len_int(n)
            }
            Cmd::Pop { key, left, count } => self.exec_pop(key, *left, *count, ctx),
            Cmd::HSet(k, pairs, hmset) => {
                let key = Key::new(k);
                let make: Option<fn() -> Value> = Some(|| Value::Hash(OrdMap::new()));
                let h =
                    match self.value_mut(
                        &key,
                        ctx,
                        make,
                        |v| if let Value::Hash(h) = v { Some(h) } else { None },
                    ) {
                        Err(r) => return r,
                        Ok(None) => return Reply::Int(0),
                        Ok(Some(h)) => h,
                    };
                let mut added = 0;
                for (f, v) in pairs {
                    if h.insert(f.clone(), v.clone()).is_none() {
                        added += 1;
                    }
                }
                self.touched(&key, idx);
                if *hmset {
                    Reply::ok()
                } else {
                    Reply::Int(added)
                }
            }
            Cmd::HSetNx(k, f, v) => {
                let key = Key::new(k);
                let make: Option<fn() -> Value> = Some(|| Value::Hash(OrdMap::new()));
                let h =
                    match self.value_mut(
                        &key,
                        ctx,
                        make,
                        |v| if let Value::Hash(h) = v { Some(h) } else { None },
                    ) {
                        Err(r) => return r,
                        Ok(None) => return Reply::Int(0),
                        Ok(Some(h)) => h,
                    };
                if h.contains_key(f) {
                    return Reply::Int(0);
                }
                h.insert(f.clone(), v.clone());
                self.touched(&key, idx);
                Reply::Int(1)
            }
            Cmd::HDel(k, fields) => {
                let key = Key::new(k);
                let h =
                    match self.value_mut(
                        &key,
                        ctx,
                        None,
                        |v| if let Value::Hash(h) = v { Some(h) } else { None },
                    ) {
                        Err(r) => return r,
                        Ok(None) => return Reply::Int(0),
                        Ok(Some(h)) => h,
                    };
                // `contains_key` first: a miss must not copy a frozen hash's path.
                let n = fields.iter().filter(|f| h.contains_key(*f) && h.remove(*f).is_some()).count();
                if n > 0 {
                    self.touched(&key, idx);
                }
                len_int(n)
            }
            Cmd::HIncrBy(k, f, by) => {
                let key = Key::new(k);
                let cur = match self.live_mut(&key, ctx).map(|e| &e.value) {
                    None => 0,
                    Some(Value::Hash(h)) => match h.get(f) {
                        None => 0,
                        Some(v) => match stored_int(v) {
                            Some(n) => n,
                            None => return Reply::err("ERR hash value is not an integer"),
                        },
                    },
                    Some(_) => return wrongtype(),
                };
                let Some(n) = cur.checked_add(*by) else {
                    return Reply::err("ERR increment or decrement would overflow");
                };
                let make: Option<fn() -> Value> = Some(|| Value::Hash(OrdMap::new()));
                match self.value_mut(&key, ctx, make, |v| if let Value::Hash(h) = v { Some(h) } else { None })
                {
                    Ok(Some(h)) => {
                        h.insert(f.clone(), int_bytes(n));
                    }
                    Ok(None) => return Reply::Int(0),
                    Err(r) => return r,
                }
                self.touched(&key, idx);
                Reply::Int(n)
            }
            Cmd::SAdd(k, members) => {
                let key = Key::new(k);
                let make: Option<fn() -> Value> = Some(|| Value::Set(OrdSet::new()));
                let s =
                    match self.value_mut(
                        &key,
                        ctx,
                        make,
                        |v| if let Value::Set(s) = v { Some(s) } else { None },
                    ) {
                        Err(r) => return r,
                        Ok(None) => return Reply::Int(0),
                        Ok(Some(s)) => s,
                    };
                let n = members.iter().filter(|m| s.insert((*m).clone()).is_none()).count();
                self.touched(&key, idx);
                len_int(n)
            }
            Cmd::SRem(k, members) => {
                let key = Key::new(k);
                let s =
                    match self.value_mut(
                        &key,
                        ctx,
                        None,
                        |v| if let Value::Set(s) = v { Some(s) } else { None },
                    ) {
                        Err(r) => return r,
                        Ok(None) => return Reply::Int(0),
                        Ok(Some(s)) => s,
                    };
                // `contains` first: a miss must not copy a frozen set's path.
                let n = members.iter().filter(|m| s.contains(*m) && s.remove(*m).is_some()).count();
                if n > 0 {
                    self.touched(&key, idx);
                }
                len_int(n)
            }
            // Reads were handled above; nothing else writes.
            _ => self.read(cmd, ctx.now_ms),
        }
    }

    /// Runs a read at time `now`.
    fn read(&self, cmd: &Cmd, now: u64) -> Reply {
        match self.read_inner(cmd, now) {
            Ok(r) | Err(r) => r,
        }
    }

    fn read_inner(&self, cmd: &Cmd, now: u64) -> Result<Reply, Reply> {
        Ok(match cmd {
            Cmd::Fail(msg) => Reply::error(msg.clone()),
            Cmd::Get(k) => self.str_of(k, now)?.map_or(Reply::Null, |s| Reply::Bulk(s.clone())),
            Cmd::MGet(keys) => Reply::Array(
                keys.iter()
                    .map(|k| match self.live(k, now).map(|e| &e.value) {
                        Some(Value::Str(s)) => Reply::Bulk(s.clone()),
                        _ => Reply::Null,
                    })
                    .collect(),
            ),
            Cmd::Strlen(k) => len_int(self.str_of(k, now)?.map_or(0, |s| s.len())),
            Cmd::Exists(keys) => len_int(keys.iter().filter(|k| self.live(k, now).is_some()).count()),
            Cmd::Ttl { key, ms, absolute } => match self.live(key, now) {
                None => Reply::Int(-2),
                Some(Entry { expire_at: None, .. }) => Reply::Int(-1),
                Some(Entry { expire_at: Some(at), .. }) => {
                    let t = if *absolute { *at } else { at.saturating_sub(now) };
                    let t = i64::try_from(t).unwrap_or(i64::MAX);
                    Reply::Int(if *ms { t } else { (t + 500) / 1000 })
                }
            },
            Cmd::Type(k) => Reply::simple(self.live(k, now).map_or("none", |e| e.value.type_name())),
            Cmd::Keys(pattern) => {
                let all = pattern[..] == b"*"[..];
                Reply::Array(
                    self.map
                        .iter()
                        .filter(|(k, e)| !e.expired(now) && (all || glob_match(pattern, &k.k, false)))
                        .map(|(k, _)| Reply::Bulk(k.k.clone()))
                        .collect(),
                )
            }
            Cmd::Scan { cursor, pattern, count, typ } => {
                self.scan(*cursor, pattern.as_ref(), *count, typ.as_ref(), now)
            }
            Cmd::DbSize => len_int(self.map.len() - self.expired_count(now)),
            Cmd::KeyspaceStats => {
                let expired = self.expired_count(now);
                Reply::Array(vec![len_int(self.map.len() - expired), len_int(self.expires.len() - expired)])
            }
            Cmd::LRange(k, start, end) => {
                let Some(l) = self.list_of(k, now)? else { return Ok(Reply::Array(vec![])) };
                let len = i64::try_from(l.len()).unwrap_or(i64::MAX);
                let (mut s, mut e) = (*start, *end);
                if s < 0 {
                    s = s.saturating_add(len);
                }
                if e < 0 {
                    e = e.saturating_add(len);
                }
                s = s.max(0);
                if s > e || s >= len {
                    return Ok(Reply::Array(vec![]));
                }
                e = e.min(len - 1);
                Reply::Array(bulks(l.range(s as usize, e as usize + 1)))
            }
            Cmd::LLen(k) => len_int(self.list_of(k, now)?.map_or(0, |l| l.len())),
            Cmd::LIndex(k, i) => {
                let Some(l) = self.list_of(k, now)? else { return Ok(Reply::Null) };
                let Some(i) = *i else { return Err(Reply::err(NOT_INTEGER)) };
                let len = i64::try_from(l.len()).unwrap_or(i64::MAX);
                let i = if i < 0 { i.saturating_add(len) } else { i };
                if i < 0 || i >= len {
                    Reply::Null
                } else {
                    l.get(i as usize).map_or(Reply::Null, |b| Reply::Bulk(b.clone()))
                }
            }
            Cmd::HGet(k, f) => {
                self.hash_of(k, now)?.and_then(|h| h.get(f)).map_or(Reply::Null, |v| Reply::Bulk(v.clone()))
            }
            Cmd::HMGet(k, fields) => {
                let h = self.hash_of(k, now)?;
                Reply::Array(
                    fields
                        .iter()
                        .map(|f| h.and_then(|h| h.get(f)).map_or(Reply::Null, |v| Reply::Bulk(v.clone())))
                        .collect(),
                )
            }
            Cmd::HGetAll(k) => Reply::Map(
                self.hash_of(k, now)?
                    .map(|h| {
                        h.iter().map(|(f, v)| (Reply::Bulk(f.clone()), Reply::Bulk(v.clone()))).collect()
                    })
                    .unwrap_or_default(),
            ),
            Cmd::HKeys(k) => Reply::Array(self.hash_of(k, now)?.map(|h| bulks(h.keys())).unwrap_or_default()),
            Cmd::HVals(k) => {
                Reply::Array(self.hash_of(k, now)?.map(|h| bulks(h.values())).unwrap_or_default())
            }
            Cmd::HExists(k, f) => {
                Reply::Int(i64::from(self.hash_of(k, now)?.is_some_and(|h| h.contains_key(f))))
            }
            Cmd::HLen(k) => len_int(self.hash_of(k, now)?.map_or(0, |h| h.len())),
            Cmd::HStrlen(k, f) => {
                len_int(self.hash_of(k, now)?.and_then(|h| h.get(f)).map_or(0, |v| v.len()))
            }
            Cmd::SMembers(k) => Reply::Set(self.set_of(k, now)?.map(|s| bulks(s.iter())).unwrap_or_default()),
            Cmd::SIsMember(k, m) => {
                Reply::Int(i64::from(self.set_of(k, now)?.is_some_and(|s| s.contains(m))))
            }
            Cmd::SMIsMember(k, ms) => {
                let s = self.set_of(k, now)?;
                Reply::Array(
                    ms.iter().map(|m| Reply::Int(i64::from(s.is_some_and(|s| s.contains(m))))).collect(),
                )
            }
            Cmd::SCard(k) => len_int(self.set_of(k, now)?.map_or(0, |s| s.len())),
            Cmd::Versions(keys) => Reply::Array(
                // The bits of the u64 (the server reads them back with `as u64`).
                keys.iter().map(|k| Reply::Int(self.version_of(k, now) as i64)).collect(),
            ),
            _ => Reply::err("ERR write command in a read-only query"),
        })
    }

    /// Keys whose expiry has passed but that are still held.
    fn expired_count(&self, now: u64) -> usize {
        if now == 0 {
            return 0;
        }
        self.expires.range(..(now, Key::MIN)).count()
    }

    fn scan(&self, cursor: u64, pattern: Option<&Bytes>, count: u64, typ: Option<&Bytes>, now: u64) -> Reply {
        let mut keys = Vec::new();
        let mut last_h = None;
        let mut next = 0u64;
        for (visited, (k, e)) in self.map.range(Key { h: cursor, k: Bytes::new() }..).enumerate() {
            // Stop after COUNT keys, but never between two keys of the same hash: the cursor
            // is a hash, so the next call resumes at the first key of a hash group.
            if visited as u64 >= count && last_h != Some(k.h) {
                next = k.h;
                break;
            }
            last_h = Some(k.h);
            if e.expired(now) {
                continue;
            }
            if pattern.is_some_and(|p| !glob_match(p, &k.k, false)) {
                continue;
            }
            if typ.is_some_and(|t| !t.eq_ignore_ascii_case(e.value.type_name().as_bytes())) {
                continue;
            }
            keys.push(Reply::Bulk(k.k.clone()));
        }
        Reply::Array(vec![Reply::Bulk(int_bytes_u64(next)), Reply::Array(keys)])
    }

    fn exec_write(&mut self, w: &WriteCmd, ctx: &Ctx) -> Reply {
        match w {
            WriteCmd::One(cmd) => self.exec(cmd, ctx),
            WriteCmd::Exec { watched, cmds } => {
                for (k, v) in watched {
                    let key = Key::new(k);
                    self.live_mut(&key, ctx);
                    if self.version_of(k, ctx.now_ms) != *v {
                        return Reply::NullArray;
                    }
                }
                Reply::Array(cmds.iter().map(|c| self.exec(c, ctx)).collect())
            }
        }
    }

    // ---- snapshots ----

    /// The snapshot format: the magic, the tombstone floor, the tombstones (by hash), then a
    /// count and every key in order with its version, expiry and value. [`KvFrozen`] writes the
    /// same records, split into pieces.
    fn write_state(&self, out: &mut impl Sink) {
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
    fn read_from(r: &mut dyn Read) -> Result<KvMachine, String> {
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

fn list_mut(v: &mut Value) -> Option<&mut List> {
    match v {
        Value::List(l) => Some(Arc::make_mut(l)),
        _ => None,
    }
}

fn int_bytes_u64(n: u64) -> Bytes {
    Bytes::from(n.to_string())
}

const SNAP_MAGIC: &[u8] = b"CHORUSKV1";

/// Where the records of a snapshot go.
trait Sink {
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
struct Fnv(u64);

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
pub struct KvFrozen {
    tomb_floor: u64,
    tombs: OrdMap<u64, Tomb>,
    map: OrdMap<Key, Entry>,
    at: Cursor,
    /// The rest of a record split by the end of a piece; goes out first.
    pending: VecDeque<Bytes>,
}

/// The next record to write.
enum Cursor {
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

enum Items {
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

/// Redis's glob-style matching (`*`, `?`, `[abc]`, `[^a-z]`, `\` escapes), without recursion:
/// the usual backtracking on the last `*`, so time is at most pattern × string.
pub fn glob_match(pat: &[u8], s: &[u8], nocase: bool) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    let fold = |c: u8| if nocase { c.to_ascii_lowercase() } else { c };
    while si < s.len() {
        if pi < pat.len() && pat[pi] == b'*' {
            while pi < pat.len() && pat[pi] == b'*' {
                pi += 1;
            }
            if pi == pat.len() {
                return true;
            }
            star = Some((pi, si));
            continue;
        }
        if pi < pat.len() {
            let (ok, next) = match_one(pat, pi, s[si], &fold);
            if ok {
                pi = next;
                si += 1;
                continue;
            }
        }
        match star {
            Some((sp, ss)) => {
                pi = sp;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    while pi < pat.len() && pat[pi] == b'*' {
        pi += 1;
    }
    pi == pat.len()
}

/// Matches one pattern token at `pi` against `c`: (matched, the next token's position).
fn match_one(pat: &[u8], pi: usize, c: u8, fold: &impl Fn(u8) -> u8) -> (bool, usize) {
    match pat[pi] {
        b'?' => (true, pi + 1),
        b'\\' if pi + 1 < pat.len() => (fold(pat[pi + 1]) == fold(c), pi + 2),
        b'[' => {
            let mut p = pi + 1;
            let not = p < pat.len() && pat[p] == b'^';
            if not {
                p += 1;
            }
            let mut matched = false;
            loop {
                if p >= pat.len() {
                    break;
                }
                if pat[p] == b'\\' && p + 1 < pat.len() {
                    p += 1;
                    if pat[p] == c {
                        matched = true;
                    }
                } else if pat[p] == b']' {
                    p += 1;
                    break;
                } else if p + 2 < pat.len() && pat[p + 1] == b'-' {
                    let (mut lo, mut hi) = (fold(pat[p]), fold(pat[p + 2]));
                    if lo > hi {
                        std::mem::swap(&mut lo, &mut hi);
                    }
                    if (lo..=hi).contains(&fold(c)) {
                        matched = true;
                    }
                    p += 2;
                } else if fold(pat[p]) == fold(c) {
                    matched = true;
                }
                p += 1;
            }
            (matched != not, p)
        }
        other => (fold(other) == fold(c), pi + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(b"*", b"abc", false));
        assert!(glob_match(b"a*c", b"abbbc", false));
        assert!(!glob_match(b"a*c", b"abbbd", false));
        assert!(glob_match(b"h?llo", b"hello", false));
        assert!(glob_match(b"h[ae]llo", b"hallo", false));
        assert!(!glob_match(b"h[^e]llo", b"hello", false));
        assert!(glob_match(b"h[a-b]llo", b"hbllo", false));
        assert!(glob_match(b"h[b-a]llo", b"hbllo", false));
        assert!(glob_match(b"h\\*llo", b"h*llo", false));
        assert!(!glob_match(b"h\\*llo", b"hallo", false));
        assert!(glob_match(b"*a*b*", b"xxaxxbxx", false));
        assert!(glob_match(b"", b"", false));
        assert!(!glob_match(b"", b"a", false));
        assert!(glob_match(b"**", b"", false));
        assert!(glob_match(b"a[", b"a[", false) || !glob_match(b"a[", b"a[", false));
        // Pathological: linear-ish, no blow-up.
        let s = vec![b'a'; 2000];
        let mut p = b"*a".repeat(30);
        p.push(b'b');
        assert!(!glob_match(&p, &s, false));
    }

    /// (items to push, or to pop if negative; at the front?; an index to read)
    fn list_steps() -> impl proptest::strategy::Strategy<Value = Vec<(i32, bool, usize)>> {
        proptest::collection::vec((-12i32..=12, proptest::bool::ANY, 0usize..200), 0..400)
    }

    proptest::proptest! {
        /// A list behaves as a `VecDeque` through both representations and the changes between
        /// them, and a clone (a frozen copy's) keeps its items when the original changes.
        #[test]
        fn list_is_a_deque(steps in list_steps()) {
            let mut list = List::default();
            let mut model = VecDeque::new();
            let mut kept: Option<(List, VecDeque<Bytes>)> = None;
            for (i, (delta, front, at)) in steps.into_iter().enumerate() {
                for n in 0..delta.unsigned_abs() {
                    if delta > 0 {
                        let item = Bytes::from(format!("{i}.{n}"));
                        list.push(item.clone(), front);
                        if front { model.push_front(item) } else { model.push_back(item) }
                    } else {
                        let want = if front { model.pop_front() } else { model.pop_back() };
                        proptest::prop_assert_eq!(list.pop(front), want);
                    }
                }
                proptest::prop_assert_eq!(list.len(), model.len());
                proptest::prop_assert!(list.iter().eq(model.iter()));
                proptest::prop_assert_eq!(list.get(at), model.get(at));
                let (from, to) = (at.min(model.len()), (at + 7).min(model.len()));
                proptest::prop_assert!(list.range(at, at + 7).eq(model.range(from..to)));
                if i % 50 == 10 {
                    kept = Some((list.clone(), model.clone()));
                }
                if let Some((k, m)) = &kept {
                    proptest::prop_assert!(k.iter().eq(m.iter()), "a clone changed with the original");
                }
            }
        }
    }

    #[test]
    fn list_changes_representation_at_the_bounds() {
        let mut l = List::default();
        for i in 0..SHORT_LIST {
            l.push(Bytes::from(i.to_string()), false);
        }
        assert!(matches!(l, List::Short(_)));
        l.push(Bytes::from_static(b"x"), true);
        assert!(matches!(l, List::Long(_)));
        while l.len() > SHORT_LIST / 4 + 1 {
            l.pop(false);
        }
        assert!(matches!(l, List::Long(_)));
        assert_eq!(l.pop(true), Some(Bytes::from_static(b"x")));
        assert!(matches!(l, List::Short(_)));
        assert_eq!(l.len(), SHORT_LIST / 4);
        assert!(l.iter().map(|b| b.to_vec()).eq((0..SHORT_LIST / 4).map(|i| i.to_string().into_bytes())));
    }

    #[test]
    fn key_hash_is_fixed() {
        assert_eq!(key_hash(b""), key_hash(b""));
        assert_ne!(key_hash(b"a"), key_hash(b"b"));
        assert_ne!(key_hash(b"x"), 0);
    }
}
