//! Strings (Redis's t_string.c): SET and its forms, SETNX, GETDEL, GETEX, MSET/MSETNX, INCR
//! and DECR and their BY forms, APPEND, SETRANGE; GET, MGET, STRLEN, GETRANGE (SUBSTR).

use bytes::{Bytes, BytesMut};
use chorus_smr::Ctx;

use super::commands::{int_bytes, len_int, stored_int, wrongtype};
use super::value::{Entry, Key, Value};
use super::{KvMachine, MAX_STRING_LEN};
use crate::command::{Cmd, Cond, ExpName, Expiry, GetExOpt, SetArgs};
use crate::reply::{Reply, NOT_INTEGER};

impl KvMachine {
    /// Runs `cmd` if it is one of this type's writes.
    pub(super) fn exec_string(&mut self, cmd: &Cmd, ctx: &Ctx) -> Option<Reply> {
        matches!(
            cmd,
            Cmd::Set(_)
                | Cmd::SetNx(..)
                | Cmd::GetDel(_)
                | Cmd::MSet(..)
                | Cmd::IncrBy(..)
                | Cmd::Append(..)
                | Cmd::SetRange(..)
                | Cmd::GetEx(..)
        )
        .then(|| self.exec_string_run(cmd, ctx))
    }

    fn exec_string_run(&mut self, cmd: &Cmd, ctx: &Ctx) -> Reply {
        let idx = ctx.index;
        match cmd {
            Cmd::Set(a) => self.exec_set(a, ctx),
            Cmd::SetRange(k, offset, v) => self.exec_setrange(k, *offset, v, ctx),
            Cmd::GetEx(k, opt) => self.exec_getex(k, *opt, ctx),
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
            // Not reached: `exec_string` took only the commands above.
            _ => Reply::Null,
        }
    }

    /// Runs `cmd` at time `now` if it is one of this type's reads.
    pub(super) fn read_string(&self, cmd: &Cmd, now: u64) -> Option<Result<Reply, Reply>> {
        matches!(cmd, Cmd::Get(_) | Cmd::MGet(_) | Cmd::Strlen(_) | Cmd::GetRange(..))
            .then(|| self.read_string_run(cmd, now))
    }

    fn read_string_run(&self, cmd: &Cmd, now: u64) -> Result<Reply, Reply> {
        Ok(match cmd {
            Cmd::Get(k) => self.str_of(k, now)?.map_or(Reply::Null, |s| Reply::Bulk(s.clone())),
            Cmd::MGet(keys) => Reply::Array(
                keys.iter()
                    .map(|k| match self.live(k, now).map(|e| &e.value) {
                        Some(Value::Str(s)) => Reply::Bulk(s.clone()),
                        _ => Reply::Null,
                    })
                    .collect(),
            ),
            Cmd::GetRange(k, start, end) => {
                let Some(s) = self.str_of(k, now)? else { return Ok(Reply::Bulk(Bytes::new())) };
                let len = i64::try_from(s.len()).unwrap_or(i64::MAX);
                let (mut a, mut b) = (*start, *end);
                // As Redis 7: both negative and crossed is empty; then from the end, clamped.
                if a < 0 && b < 0 && a > b {
                    return Ok(Reply::Bulk(Bytes::new()));
                }
                if a < 0 {
                    a = a.saturating_add(len).max(0);
                }
                if b < 0 {
                    b = b.saturating_add(len).max(0);
                }
                b = b.min(len - 1);
                if a > b || len == 0 {
                    Reply::Bulk(Bytes::new())
                } else {
                    Reply::Bulk(s.slice(a as usize..b as usize + 1))
                }
            }
            Cmd::Strlen(k) => len_int(self.str_of(k, now)?.map_or(0, |s| s.len())),
            // Not reached: `read_string` took only the commands above.
            _ => Reply::Null,
        })
    }

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
            // Set and expired at once: a change all the same (Redis's WATCH sees one), also
            // where there was no key before.
            if self.remove(&key, ctx.index).is_none() {
                self.deleted_missing(&key, ctx.index);
            }
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

    fn exec_setrange(&mut self, k: &Bytes, offset: i64, v: &Bytes, ctx: &Ctx) -> Reply {
        let key = Key::new(k);
        let too_long = || Reply::err("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = offset.checked_add(v.len());
        let old = match self.live_mut(&key, ctx) {
            None if v.is_empty() => return Reply::Int(0),
            None => Bytes::new(),
            Some(Entry { value: Value::Str(s), .. }) if v.is_empty() => return len_int(s.len()),
            Some(Entry { value: Value::Str(s), .. }) => s.clone(),
            Some(_) => return wrongtype(),
        };
        let Some(end) = end.filter(|e| *e <= MAX_STRING_LEN) else { return too_long() };
        let mut m = BytesMut::with_capacity(end.max(old.len()));
        m.extend_from_slice(&old);
        if m.len() < end {
            m.resize(end, 0);
        }
        m[offset..end].copy_from_slice(v);
        let n = m.len();
        // The expiry stays (as Redis's SETRANGE keeps it).
        let at = self.live_mut(&key, ctx).and_then(|e| e.expire_at);
        self.put(key, Value::Str(m.freeze()), at, ctx.index);
        len_int(n)
    }

    fn exec_getex(&mut self, k: &Bytes, opt: GetExOpt, ctx: &Ctx) -> Reply {
        let key = Key::new(k);
        let (v, had_expiry) = match self.live_mut(&key, ctx) {
            None => return Reply::Null,
            Some(Entry { value: Value::Str(s), expire_at, .. }) => (s.clone(), expire_at.is_some()),
            Some(_) => return wrongtype(),
        };
        match opt {
            GetExOpt::Keep => {}
            GetExOpt::Persist => {
                if had_expiry {
                    self.set_expire(&key, None, ctx.index);
                }
            }
            GetExOpt::Expire { unit, absolute, n } => {
                let Some(n) = n else { return Reply::err(NOT_INTEGER) };
                if n <= 0 || (unit == 1000 && n > i64::MAX / 1000) {
                    return ExpName::GetEx.error();
                }
                let ms = n * unit;
                let now = i64::try_from(ctx.now_ms).unwrap_or(i64::MAX);
                let at = if absolute { Some(ms) } else { ms.checked_add(now) };
                let Some(at) = at else { return ExpName::GetEx.error() };
                if at <= now {
                    self.remove(&key, ctx.index);
                } else {
                    self.set_expire(&key, Some(at as u64), ctx.index);
                }
            }
        }
        Reply::Bulk(v)
    }
}
