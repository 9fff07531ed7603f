//! Hashes (Redis's t_hash.c): HSET/HMSET, HSETNX, HDEL, HINCRBY; HGET, HMGET, HGETALL, HKEYS,
//! HVALS, HEXISTS, HLEN, HSTRLEN.

use chorus_smr::Ctx;

use super::commands::{bulks, int_bytes, len_int, stored_int, wrongtype};
use super::value::{Key, Value};
use super::KvMachine;
use crate::command::Cmd;
use crate::reply::Reply;

impl KvMachine {
    /// Runs `cmd` if it is one of this type's writes.
    pub(super) fn exec_hash(&mut self, cmd: &Cmd, ctx: &Ctx) -> Option<Reply> {
        matches!(cmd, Cmd::HSet(..) | Cmd::HSetNx(..) | Cmd::HDel(..) | Cmd::HIncrBy(..))
            .then(|| self.exec_hash_run(cmd, ctx))
    }

    fn exec_hash_run(&mut self, cmd: &Cmd, ctx: &Ctx) -> Reply {
        let idx = ctx.index;
        match cmd {
            Cmd::HSet(k, pairs, hmset) => {
                let key = Key::new(k);
                let h = match self.hash_w(&key, ctx, true) {
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
                let h = match self.hash_w(&key, ctx, true) {
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
                let h = match self.hash_w(&key, ctx, false) {
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
                match self.hash_w(&key, ctx, true) {
                    Ok(Some(h)) => {
                        h.insert(f.clone(), int_bytes(n));
                    }
                    Ok(None) => return Reply::Int(0),
                    Err(r) => return r,
                }
                self.touched(&key, idx);
                Reply::Int(n)
            }
            // Not reached: `exec_hash` took only the commands above.
            _ => Reply::Null,
        }
    }

    /// Runs `cmd` at time `now` if it is one of this type's reads.
    pub(super) fn read_hash(&self, cmd: &Cmd, now: u64) -> Option<Result<Reply, Reply>> {
        matches!(
            cmd,
            Cmd::HGet(..)
                | Cmd::HMGet(..)
                | Cmd::HGetAll(_)
                | Cmd::HKeys(_)
                | Cmd::HVals(_)
                | Cmd::HExists(..)
                | Cmd::HLen(_)
                | Cmd::HStrlen(..)
        )
        .then(|| self.read_hash_run(cmd, now))
    }

    fn read_hash_run(&self, cmd: &Cmd, now: u64) -> Result<Reply, Reply> {
        Ok(match cmd {
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
            // Not reached: `read_hash` took only the commands above.
            _ => Reply::Null,
        })
    }
}
