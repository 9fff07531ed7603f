//! Sets (Redis's t_set.c): SADD, SREM; SMEMBERS, SISMEMBER, SMISMEMBER, SCARD.

use chorus_smr::Ctx;

use super::commands::{bulks, len_int};
use super::value::Key;
use super::KvMachine;
use crate::command::Cmd;
use crate::reply::Reply;

impl KvMachine {
    /// Runs `cmd` if it is one of this type's writes.
    pub(super) fn exec_set_type(&mut self, cmd: &Cmd, ctx: &Ctx) -> Option<Reply> {
        matches!(cmd, Cmd::SAdd(..) | Cmd::SRem(..)).then(|| self.exec_set_type_run(cmd, ctx))
    }

    fn exec_set_type_run(&mut self, cmd: &Cmd, ctx: &Ctx) -> Reply {
        let idx = ctx.index;
        match cmd {
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
        matches!(cmd, Cmd::SMembers(_) | Cmd::SIsMember(..) | Cmd::SMIsMember(..) | Cmd::SCard(_))
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
            Cmd::SCard(k) => len_int(self.set_of(k, now)?.map_or(0, |s| s.len())),
            // Not reached: `read_set_type` took only the commands above.
            _ => Reply::Null,
        })
    }
}
