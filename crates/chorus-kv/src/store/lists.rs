//! Lists (Redis's t_list.c): LPUSH, RPUSH and their X forms, LPOP, RPOP; LRANGE, LLEN, LINDEX.

use bytes::Bytes;
use chorus_smr::Ctx;

use super::commands::{bulks, len_int};
use super::value::{Key, List};
use super::KvMachine;
use crate::command::Cmd;
use crate::reply::{Reply, NOT_INTEGER};

impl KvMachine {
    /// Runs `cmd` if it is one of this type's writes.
    pub(super) fn exec_list(&mut self, cmd: &Cmd, ctx: &Ctx) -> Option<Reply> {
        matches!(cmd, Cmd::Push { .. } | Cmd::Pop { .. }).then(|| self.exec_list_run(cmd, ctx))
    }

    fn exec_list_run(&mut self, cmd: &Cmd, ctx: &Ctx) -> Reply {
        let idx = ctx.index;
        match cmd {
            Cmd::Push { key, values, left, existing } => {
                let k = Key::new(key);
                let list = match self.list_w(&k, ctx, !*existing) {
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
            // Not reached: `exec_list` took only the commands above.
            _ => Reply::Null,
        }
    }

    /// Runs `cmd` at time `now` if it is one of this type's reads.
    pub(super) fn read_list(&self, cmd: &Cmd, now: u64) -> Option<Result<Reply, Reply>> {
        matches!(cmd, Cmd::LRange(..) | Cmd::LLen(_) | Cmd::LIndex(..)).then(|| self.read_list_run(cmd, now))
    }

    fn read_list_run(&self, cmd: &Cmd, now: u64) -> Result<Reply, Reply> {
        Ok(match cmd {
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
            // Not reached: `read_list` took only the commands above.
            _ => Reply::Null,
        })
    }

    fn exec_pop(&mut self, k: &Bytes, left: bool, count: Option<u64>, ctx: &Ctx) -> Reply {
        let key = Key::new(k);
        let missing = if count.is_some() { Reply::NullArray } else { Reply::Null };
        let list = match self.list_w(&key, ctx, false) {
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
}
