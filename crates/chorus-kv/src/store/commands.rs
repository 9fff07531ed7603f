//! The commands: writes (run by `apply`, and every command of a transaction) and reads (run
//! by `query`), with the small helpers that build their replies.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use chorus_smr::Ctx;
use imbl::{OrdMap, OrdSet};

use super::glob::glob_match;
use super::value::{Entry, Key, List, Value};
use super::{KvMachine, MAX_STRING_LEN};
use crate::command::{Cmd, Cond, ExpireCond, Expiry, SetArgs, WriteCmd};
use crate::reply::{Reply, NOT_INTEGER, WRONGTYPE};
use crate::resp::parse_i64;

pub(super) fn wrongtype() -> Reply {
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
    pub(super) fn read(&self, cmd: &Cmd, now: u64) -> Reply {
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

    pub(super) fn exec_write(&mut self, w: &WriteCmd, ctx: &Ctx) -> Reply {
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
