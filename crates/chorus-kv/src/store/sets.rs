//! Sets (Redis's t_set.c): SADD, SREM, SMOVE, SINTERSTORE, SUNIONSTORE, SDIFFSTORE; SMEMBERS,
//! SISMEMBER, SMISMEMBER, SCARD, SINTER, SUNION, SDIFF, SINTERCARD.

use bytes::Bytes;
use chorus_smr::Ctx;
use imbl::OrdSet;

use super::commands::{bulks, len_int};
use super::value::{Key, Value};
use super::KvMachine;
use crate::command::{Cmd, SetOp};
use crate::reply::Reply;

impl KvMachine {
    /// Runs `cmd` if it is one of this type's writes.
    pub(super) fn exec_set_type(&mut self, cmd: &Cmd, ctx: &Ctx) -> Option<Reply> {
        matches!(cmd, Cmd::SAdd(..) | Cmd::SRem(..) | Cmd::SetOpStore(..) | Cmd::SMove(..))
            .then(|| self.exec_set_type_run(cmd, ctx))
    }

    fn exec_set_type_run(&mut self, cmd: &Cmd, ctx: &Ctx) -> Reply {
        let idx = ctx.index;
        match cmd {
            Cmd::SetOpStore(op, dst, keys) => {
                // Sources past their expiry go first (as any write that reads them).
                for k in keys {
                    self.live_mut(&Key::new(k), ctx);
                }
                let result = match self.set_algebra(*op, keys, ctx.now_ms) {
                    Ok(r) => r,
                    Err(e) => return e,
                };
                let dkey = Key::new(dst);
                let n = result.len();
                self.live_mut(&dkey, ctx);
                if n == 0 {
                    if self.map.contains_key(&dkey) {
                        self.remove(&dkey, idx);
                    }
                } else {
                    self.put(dkey, Value::Set(result), None, idx);
                }
                len_int(n)
            }
            Cmd::SMove(src, dst, member) => {
                let (skey, dkey) = (Key::new(src), Key::new(dst));
                match self.set_w(&skey, ctx, false) {
                    Err(r) => return r,
                    Ok(None) => return Reply::Int(0),
                    Ok(Some(_)) => {}
                }
                if let Err(r) = self.set_w(&dkey, ctx, false) {
                    return r;
                }
                let moved = match self.set_w(&skey, ctx, false) {
                    Ok(Some(s)) if src == dst => return Reply::Int(i64::from(s.contains(member))),
                    Ok(Some(s)) => s.contains(member) && s.remove(member).is_some(),
                    _ => false,
                };
                if !moved {
                    return Reply::Int(0);
                }
                self.touched(&skey, idx);
                if let Ok(Some(d)) = self.set_w(&dkey, ctx, true) {
                    d.insert(member.clone());
                }
                self.touched(&dkey, idx);
                Reply::Int(1)
            }
            Cmd::SAdd(k, members) => {
                let key = Key::new(k);
                let s = match self.set_w(&key, ctx, true) {
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
                let s = match self.set_w(&key, ctx, false) {
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
            // Not reached: `exec_set_type` took only the commands above.
            _ => Reply::Null,
        }
    }

    /// Runs `cmd` at time `now` if it is one of this type's reads.
    pub(super) fn read_set_type(&self, cmd: &Cmd, now: u64) -> Option<Result<Reply, Reply>> {
        matches!(
            cmd,
            Cmd::SMembers(_)
                | Cmd::SIsMember(..)
                | Cmd::SMIsMember(..)
                | Cmd::SCard(_)
                | Cmd::SetOp(..)
                | Cmd::SInterCard(..)
        )
        .then(|| self.read_set_type_run(cmd, now))
    }

    fn read_set_type_run(&self, cmd: &Cmd, now: u64) -> Result<Reply, Reply> {
        Ok(match cmd {
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
            Cmd::SetOp(op, keys) => Reply::Set(bulks(self.set_algebra(*op, keys, now)?.iter())),
            Cmd::SInterCard(keys, limit) => {
                let n = self.set_algebra(SetOp::Inter, keys, now)?.len();
                len_int(if *limit == 0 { n } else { n.min(usize::try_from(*limit).unwrap_or(usize::MAX)) })
            }
            Cmd::SCard(k) => len_int(self.set_of(k, now)?.map_or(0, |s| s.len())),
            // Not reached: `read_set_type` took only the commands above.
            _ => Reply::Null,
        })
    }

    /// SINTER, SUNION, SDIFF of `keys` at `now`: WRONGTYPE at the first key that holds another
    /// type (all are checked first, as Redis does), a missing key an empty set.
    pub(super) fn set_algebra(&self, op: SetOp, keys: &[Bytes], now: u64) -> Result<OrdSet<Bytes>, Reply> {
        let mut sets = Vec::with_capacity(keys.len());
        for k in keys {
            sets.push(self.set_of(k, now)?);
        }
        Ok(match op {
            SetOp::Inter => {
                if sets.iter().any(Option::is_none) {
                    return Ok(OrdSet::new());
                }
                let mut all: Vec<&OrdSet<Bytes>> = sets.into_iter().flatten().collect();
                // From the smallest set: each member is looked up in the others.
                all.sort_by_key(|s| s.len());
                let Some((first, rest)) = all.split_first() else { return Ok(OrdSet::new()) };
                first.iter().filter(|m| rest.iter().all(|s| s.contains(*m))).cloned().collect()
            }
            SetOp::Union => {
                let mut out = OrdSet::new();
                for s in sets.into_iter().flatten() {
                    out = out.union(s.clone());
                }
                out
            }
            SetOp::Diff => {
                let Some(Some(first)) = sets.first() else { return Ok(OrdSet::new()) };
                first
                    .iter()
                    .filter(|m| !sets[1..].iter().flatten().any(|s| s.contains(*m)))
                    .cloned()
                    .collect()
            }
        })
    }
}
