//! The commands: the dispatch of writes (run by `apply`, and every command of a transaction)
//! and reads (run by `query`) to each type's module (strings.rs, lists.rs, hashes.rs, sets.rs),
//! the commands on keys themselves, and the small helpers that build their replies.

use bytes::Bytes;
use chorus_smr::Ctx;

use super::glob::glob_match;
use super::value::{Entry, Key};
use super::KvMachine;
use crate::command::{Cmd, ExpireCond, WriteCmd};
use crate::reply::{Reply, WRONGTYPE};
use crate::resp::parse_i64;

pub(super) fn wrongtype() -> Reply {
    Reply::err(WRONGTYPE)
}

pub(super) fn len_int(n: usize) -> Reply {
    Reply::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

pub(super) fn bulks<'a>(it: impl Iterator<Item = &'a Bytes>) -> Vec<Reply> {
    it.map(|b| Reply::Bulk(b.clone())).collect()
}

/// Parses a stored string as an integer the way INCR does.
pub(super) fn stored_int(b: &[u8]) -> Option<i64> {
    parse_i64(b)
}

pub(super) fn int_bytes(n: i64) -> Bytes {
    let mut buf = [0u8; 20];
    Bytes::copy_from_slice(crate::reply::fmt_i64(n, &mut buf))
}

impl KvMachine {
    // ---- commands ----

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

    /// Runs a write (or, inside a transaction, any data command).
    fn exec(&mut self, cmd: &Cmd, ctx: &Ctx) -> Reply {
        if !cmd.is_write() {
            return self.read(cmd, ctx.now_ms);
        }
        // Each type's commands in its module (as Redis's t_string.c, t_list.c, ...).
        if let Some(r) = self.exec_string(cmd, ctx) {
            return r;
        }
        if let Some(r) = self.exec_list(cmd, ctx) {
            return r;
        }
        if let Some(r) = self.exec_hash(cmd, ctx) {
            return r;
        }
        if let Some(r) = self.exec_set_type(cmd, ctx) {
            return r;
        }
        let idx = ctx.index;
        match cmd {
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
            Cmd::Rename(src, dst, nx) => {
                let skey = Key::new(src);
                let Some(e) = self.live_mut(&skey, ctx) else { return Reply::err("ERR no such key") };
                let (value, at) = (e.value.clone(), e.expire_at);
                if src == dst {
                    return if *nx { Reply::Int(0) } else { Reply::ok() };
                }
                let dkey = Key::new(dst);
                if *nx && self.exists_w(&dkey, ctx) {
                    return Reply::Int(0);
                }
                self.remove(&skey, idx);
                self.live_mut(&dkey, ctx);
                self.put(dkey, value, at, idx);
                if *nx {
                    Reply::Int(1)
                } else {
                    Reply::ok()
                }
            }
            Cmd::Copy(src, dst, replace) => {
                if src == dst {
                    return Reply::err("ERR source and destination objects are the same");
                }
                let Some(e) = self.live_mut(&Key::new(src), ctx) else { return Reply::Int(0) };
                // A persistent value: the copy shares the source's structure until either changes.
                let (value, at) = (e.value.clone(), e.expire_at);
                let dkey = Key::new(dst);
                if !*replace && self.exists_w(&dkey, ctx) {
                    return Reply::Int(0);
                }
                self.live_mut(&dkey, ctx);
                self.put(dkey, value, at, idx);
                Reply::Int(1)
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
        for typed in [Self::read_string, Self::read_list, Self::read_hash, Self::read_set_type] {
            if let Some(r) = typed(self, cmd, now) {
                return r;
            }
        }
        Ok(match cmd {
            Cmd::Fail(msg) => Reply::error(msg.clone()),
            Cmd::Exists(keys) | Cmd::Touch(keys) => {
                len_int(keys.iter().filter(|k| self.live(k, now).is_some()).count())
            }
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

fn int_bytes_u64(n: u64) -> Bytes {
    Bytes::from(n.to_string())
}
