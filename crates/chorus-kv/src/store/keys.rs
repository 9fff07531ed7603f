//! The key map's lookups and mutations, on which the commands are built.

use std::sync::Arc;

use bytes::Bytes;
use chorus_smr::Ctx;
use imbl::{OrdMap, OrdSet};

use super::commands::wrongtype;
use super::value::{Entry, Key, List, Tomb, Value, EXPIRED_TAG};
use super::{key_hash, KvMachine, MAX_TOMBSTONES};
use crate::reply::Reply;

impl KvMachine {
    // ---- lookups ----

    pub(super) fn live(&self, key: &Bytes, now: u64) -> Option<&Entry> {
        self.map.get(&Key::new(key)).filter(|e| !e.expired(now))
    }

    pub(super) fn str_of(&self, key: &Bytes, now: u64) -> Result<Option<&Bytes>, Reply> {
        match self.live(key, now).map(|e| &e.value) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(_) => Err(wrongtype()),
        }
    }

    pub(super) fn list_of(&self, key: &Bytes, now: u64) -> Result<Option<&List>, Reply> {
        match self.live(key, now).map(|e| &e.value) {
            None => Ok(None),
            Some(Value::List(l)) => Ok(Some(l)),
            Some(_) => Err(wrongtype()),
        }
    }

    pub(super) fn hash_of(&self, key: &Bytes, now: u64) -> Result<Option<&OrdMap<Bytes, Bytes>>, Reply> {
        match self.live(key, now).map(|e| &e.value) {
            None => Ok(None),
            Some(Value::Hash(h)) => Ok(Some(h)),
            Some(_) => Err(wrongtype()),
        }
    }

    pub(super) fn set_of(&self, key: &Bytes, now: u64) -> Result<Option<&OrdSet<Bytes>>, Reply> {
        match self.live(key, now).map(|e| &e.value) {
            None => Ok(None),
            Some(Value::Set(s)) => Ok(Some(s)),
            Some(_) => Err(wrongtype()),
        }
    }

    pub(super) fn version_of(&self, key: &Bytes, now: u64) -> u64 {
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

    pub(super) fn remove(&mut self, key: &Key, idx: u64) -> Option<Entry> {
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

    /// Records a change of a missing key that leaves it missing (a SET already expired), so
    /// that WATCH sees it as Redis's does.
    pub(super) fn deleted_missing(&mut self, key: &Key, idx: u64) {
        self.tomb(key.h, Tomb { index: idx, expired: None });
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
    pub(super) fn live_mut(&mut self, key: &Key, ctx: &Ctx) -> Option<&mut Entry> {
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

    pub(super) fn exists_w(&mut self, key: &Key, ctx: &Ctx) -> bool {
        self.live_mut(key, ctx).is_some()
    }

    /// Stores `value` at `key` (replacing any value), with this expiry.
    pub(super) fn put(&mut self, key: Key, value: Value, expire_at: Option<u64>, idx: u64) {
        // The replaced entry tells its expiry: one descent of the map, not two.
        let old = self.map.insert(key.clone(), Entry { value, expire_at, version: idx });
        if let Some(old) = old.and_then(|e| e.expire_at) {
            self.expires.remove(&(old, key.clone()));
        }
        if let Some(at) = expire_at {
            self.expires.insert((at, key));
        }
    }

    pub(super) fn set_expire(&mut self, key: &Key, at: Option<u64>, idx: u64) {
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
    pub(super) fn touched(&mut self, key: &Key, idx: u64) {
        match self.map.get_mut(key) {
            Some(e) if e.value.is_empty() => {
                self.remove(key, idx);
            }
            Some(e) => e.version = idx,
            None => {}
        }
    }

    /// Deletes up to `max` keys whose expiry is before `now`.
    pub(super) fn purge_expired(&mut self, now: u64, idx: u64, max: usize) {
        for _ in 0..max {
            let Some((at, key)) = self.expires.first().cloned() else { return };
            if at >= now {
                return;
            }
            self.remove_expired(&key, idx);
        }
    }

    /// The mutable value at `key`, created by `make` if absent; WRONGTYPE if `pick` rejects it.
    /// The list at `key` to change: made empty first if missing and `create` (the push
    /// commands), None if missing, WRONGTYPE if the key holds another type.
    pub(super) fn list_w(&mut self, key: &Key, ctx: &Ctx, create: bool) -> Result<Option<&mut List>, Reply> {
        let make: Option<fn() -> Value> = if create { Some(|| Value::List(Arc::default())) } else { None };
        self.value_mut(key, ctx, make, |v| if let Value::List(l) = v { Some(Arc::make_mut(l)) } else { None })
    }

    /// The hash at `key` to change (as [`KvMachine::list_w`]).
    pub(super) fn hash_w(
        &mut self,
        key: &Key,
        ctx: &Ctx,
        create: bool,
    ) -> Result<Option<&mut OrdMap<Bytes, Bytes>>, Reply> {
        let make: Option<fn() -> Value> = if create { Some(|| Value::Hash(OrdMap::new())) } else { None };
        self.value_mut(key, ctx, make, |v| if let Value::Hash(h) = v { Some(h) } else { None })
    }

    /// The set at `key` to change (as [`KvMachine::list_w`]).
    pub(super) fn set_w(
        &mut self,
        key: &Key,
        ctx: &Ctx,
        create: bool,
    ) -> Result<Option<&mut OrdSet<Bytes>>, Reply> {
        let make: Option<fn() -> Value> = if create { Some(|| Value::Set(OrdSet::new())) } else { None };
        self.value_mut(key, ctx, make, |v| if let Value::Set(s) = v { Some(s) } else { None })
    }

    pub(super) fn value_mut<T>(
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
}
