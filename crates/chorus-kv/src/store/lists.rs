//! Lists (Redis's t_list.c): LPUSH, RPUSH and their X forms, LPOP, RPOP, LSET, LTRIM, LREM,
//! LINSERT, LMOVE, RPOPLPUSH; LRANGE, LLEN, LINDEX, LPOS. LSET, LTRIM, LREM and LINSERT are
//! O(N) as in Redis (a list is rebuilt, short or long by its new length).

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
        matches!(
            cmd,
            Cmd::Push { .. }
                | Cmd::Pop { .. }
                | Cmd::LSet(..)
                | Cmd::LTrim(..)
                | Cmd::LRem(..)
                | Cmd::LInsert(..)
                | Cmd::LMove(..)
        )
        .then(|| self.exec_list_run(cmd, ctx))
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
            Cmd::LSet(k, index, v) => {
                let key = Key::new(k);
                let list = match self.list_w(&key, ctx, false) {
                    Err(r) => return r,
                    Ok(None) => return Reply::err("ERR no such key"),
                    Ok(Some(l)) => l,
                };
                let Some(i) = *index else { return Reply::err(NOT_INTEGER) };
                let len = i64::try_from(list.len()).unwrap_or(i64::MAX);
                let i = if i < 0 { i.saturating_add(len) } else { i };
                if i < 0 || i >= len || !list.set(i as usize, v.clone()) {
                    return Reply::err("ERR index out of range");
                }
                self.touched(&key, idx);
                Reply::ok()
            }
            Cmd::LTrim(k, start, end) => {
                let key = Key::new(k);
                let list = match self.list_w(&key, ctx, false) {
                    Err(r) => return r,
                    Ok(None) => return Reply::ok(),
                    Ok(Some(l)) => l,
                };
                let len = i64::try_from(list.len()).unwrap_or(i64::MAX);
                let (mut s, mut e) = (*start, *end);
                if s < 0 {
                    s = s.saturating_add(len);
                }
                if e < 0 {
                    e = e.saturating_add(len);
                }
                s = s.max(0);
                let (from, to) =
                    if s > e || s >= len { (0, 0) } else { (s as usize, e.min(len - 1) as usize + 1) };
                if from > 0 || to < list.len() {
                    *list = List::from_items(list.range(from, to).cloned().collect::<Vec<_>>());
                    self.touched(&key, idx);
                }
                Reply::ok()
            }
            Cmd::LRem(k, count, v) => {
                let key = Key::new(k);
                let list = match self.list_w(&key, ctx, false) {
                    Err(r) => return r,
                    Ok(None) => return Reply::Int(0),
                    Ok(Some(l)) => l,
                };
                let limit = if *count == 0 {
                    usize::MAX
                } else {
                    usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX)
                };
                let mut items: Vec<Bytes> = list.iter().cloned().collect();
                let mut removed = 0;
                // From the head for a positive count (or 0: all), from the tail for a negative.
                if *count < 0 {
                    items.reverse();
                }
                items.retain(|x| {
                    if removed < limit && x == v {
                        removed += 1;
                        false
                    } else {
                        true
                    }
                });
                if *count < 0 {
                    items.reverse();
                }
                if removed > 0 {
                    *list = List::from_items(items);
                    self.touched(&key, idx);
                }
                len_int(removed)
            }
            Cmd::LInsert(k, before, pivot, v) => {
                let key = Key::new(k);
                let list = match self.list_w(&key, ctx, false) {
                    Err(r) => return r,
                    Ok(None) => return Reply::Int(0),
                    Ok(Some(l)) => l,
                };
                let Some(at) = list.iter().position(|x| x == pivot) else { return Reply::Int(-1) };
                let at = if *before { at } else { at + 1 };
                let mut items: Vec<Bytes> = list.iter().cloned().collect();
                items.insert(at, v.clone());
                *list = List::from_items(items);
                let n = list.len();
                self.touched(&key, idx);
                len_int(n)
            }
            Cmd::LMove(src, dst, from_left, to_left) => self.exec_lmove(src, dst, *from_left, *to_left, ctx),
            // Not reached: `exec_list` took only the commands above.
            _ => Reply::Null,
        }
    }

    /// Runs `cmd` at time `now` if it is one of this type's reads.
    pub(super) fn read_list(&self, cmd: &Cmd, now: u64) -> Option<Result<Reply, Reply>> {
        matches!(cmd, Cmd::LRange(..) | Cmd::LLen(_) | Cmd::LIndex(..) | Cmd::LPos { .. })
            .then(|| self.read_list_run(cmd, now))
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
            Cmd::LPos { key, element, rank, count, maxlen } => {
                let Some(l) = self.list_of(key, now)? else {
                    return Ok(if count.is_some() { Reply::Array(vec![]) } else { Reply::Null });
                };
                let len = l.len();
                let maxlen =
                    if *maxlen == 0 { usize::MAX } else { usize::try_from(*maxlen).unwrap_or(usize::MAX) };
                let want = match count {
                    None => 1,
                    Some(0) => usize::MAX,
                    Some(n) => usize::try_from(*n).unwrap_or(usize::MAX),
                };
                let mut skip = rank.unsigned_abs().saturating_sub(1);
                let mut found = Vec::new();
                let positions: Box<dyn Iterator<Item = usize>> =
                    if *rank > 0 { Box::new(0..len) } else { Box::new((0..len).rev()) };
                for (compared, i) in positions.enumerate() {
                    if compared >= maxlen || found.len() >= want {
                        break;
                    }
                    if l.get(i) == Some(element) {
                        if skip > 0 {
                            skip -= 1;
                        } else {
                            found.push(i);
                        }
                    }
                }
                match count {
                    Some(_) => Reply::Array(found.into_iter().map(len_int).collect()),
                    None => found.first().map_or(Reply::Null, |i| len_int(*i)),
                }
            }
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

    /// LMOVE (and RPOPLPUSH): the destination's type is checked before anything is popped.
    fn exec_lmove(&mut self, src: &Bytes, dst: &Bytes, from_left: bool, to_left: bool, ctx: &Ctx) -> Reply {
        let (skey, dkey) = (Key::new(src), Key::new(dst));
        match self.list_w(&skey, ctx, false) {
            Err(r) => return r,
            Ok(None) => return Reply::Null,
            Ok(Some(_)) => {}
        }
        if let Err(r) = self.list_w(&dkey, ctx, false) {
            return r;
        }
        let item = match self.list_w(&skey, ctx, false) {
            Ok(Some(l)) => l.pop(from_left),
            _ => None,
        };
        let Some(item) = item else { return Reply::Null };
        self.touched(&skey, ctx.index);
        match self.list_w(&dkey, ctx, true) {
            Ok(Some(l)) => l.push(item.clone(), to_left),
            Ok(None) => return Reply::Null,
            Err(r) => return r,
        }
        self.touched(&dkey, ctx.index);
        Reply::Bulk(item)
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
