//! Checking a history: choose the model of each key, simplify, search, explain.

use std::collections::HashMap;
use std::fmt;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::history::{History, Op, Operation};
use crate::models::{KvModel, ListModel, RegisterModel, Whole};
use crate::wgl::{self, Budget, Exhausted, FxHashMap, Interval, Model, Outcome, Stats};

/// Which sequential specification to check against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ModelKind {
    /// Per key: `list` if the key has appends or read-lists, else `register`.
    #[default]
    Auto,
    /// [`RegisterModel`]: read / write (and cas), starting nil. Redis GET/SET.
    Register,
    /// The same register model, named for the Jepsen etcd compare-and-set histories.
    Cas,
    /// [`KvModel`]: get / put / append as string concatenation, missing key reads "".
    Kv,
    /// [`ListModel`]: append (RPUSH) / read-list (LRANGE 0 -1), starting empty.
    List,
}

/// The model a key was checked with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// [`RegisterModel`].
    Register,
    /// [`KvModel`].
    Kv,
    /// [`ListModel`].
    List,
}

impl fmt::Display for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resolved::Register => "register",
            Resolved::Kv => "kv",
            Resolved::List => "list",
        })
    }
}

/// Whether keys are checked one by one (P-compositionality: a history is linearizable iff the
/// history of each key is) or as one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Partition {
    /// Each key on its own (fast).
    #[default]
    PerKey,
    /// The whole history as one object (slow; for comparing with whole-history verdicts).
    Whole,
}

/// How to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CheckOptions {
    /// The model.
    pub model: ModelKind,
    /// Per key or whole.
    pub partition: Partition,
    /// The limits of each search (each key gets the whole budget).
    pub budget: Budget,
    /// Stop at the first key found not linearizable (for a yes/no verdict on a history whose
    /// keys may be hard): every key is first searched with a small budget, then the unfinished
    /// ones with the whole budget, until one is found not linearizable. Keys left unfinished
    /// are reported [`Verdict::Unknown`] with [`Exhausted::Stopped`].
    pub stop_at_first_violation: bool,
}

/// The first round's step budget with [`CheckOptions::stop_at_first_violation`].
const FIRST_ROUND_STEPS: u64 = 1_000_000;

/// A verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// A linearization exists.
    Linearizable,
    /// The search ran out of budget.
    Unknown,
    /// No linearization exists.
    NotLinearizable,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Linearizable => "linearizable",
            Verdict::Unknown => "unknown",
            Verdict::NotLinearizable => "NOT linearizable",
        })
    }
}

/// Why a key is not linearizable: where the search got furthest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The operation that no linearization of the operations before its completion can
    /// include: the earliest completion in the history by which the history already fails.
    pub op: Operation,
    /// The operations overlapping it in time (at most [`Violation::MAX_SHOWN`]).
    pub concurrent: Vec<Operation>,
    /// How many overlap it in all.
    pub concurrent_total: usize,
    /// Some states the object could be in when that operation had to take effect.
    pub states: Vec<String>,
    /// The length of the longest partial linearization found.
    pub longest_prefix: usize,
    /// Operations not linearized at that point that need the object to stay in the first of
    /// `states` (reads of its value): the reason it could not change (at most 5).
    pub needed_by: Vec<Operation>,
}

impl Violation {
    /// How many concurrent operations are listed.
    pub const MAX_SHOWN: usize = 20;
}

/// The verdict on one key (or on the whole history, with [`Partition::Whole`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyReport {
    /// The key (`""` for a history of one object; `*` for a whole-history check).
    pub key: String,
    /// The model it was checked with.
    pub model: Resolved,
    /// Operations on the key (failed ones excluded, unknown ones included).
    pub ops: usize,
    /// Of which with an unknown outcome.
    pub unknown_ops: usize,
    /// Operations left for the search after dropping those that cannot matter (reads with an
    /// unknown result; unknown writes/appends whose value nobody read).
    pub searched_ops: usize,
    /// The verdict.
    pub verdict: Verdict,
    /// Which limit stopped the search, if one did.
    pub exhausted: Option<Exhausted>,
    /// The explanation of a violation.
    pub violation: Option<Violation>,
    /// The cost of the search.
    pub stats: Stats,
}

/// The verdicts on a history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// One per key, in key order.
    pub keys: Vec<KeyReport>,
}

impl Report {
    /// The overall verdict: not linearizable if any key is not, else unknown if any key is,
    /// else linearizable.
    pub fn verdict(&self) -> Verdict {
        self.keys.iter().map(|k| k.verdict).max().unwrap_or(Verdict::Linearizable)
    }

    /// Total operations.
    pub fn ops(&self) -> usize {
        self.keys.iter().map(|k| k.ops).sum()
    }
}

fn secs(d: std::time::Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

impl fmt::Display for KeyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key {:?} ({}): {}, {} ops", self.key, self.model, self.verdict, self.ops)?;
        if self.unknown_ops > 0 {
            write!(f, " ({} unknown)", self.unknown_ops)?;
        }
        write!(f, ", {} steps, {}", self.stats.steps, secs(self.stats.elapsed))?;
        if let Some(e) = self.exhausted {
            write!(f, " — {e}")?;
        }
        if let Some(v) = &self.violation {
            write!(f, "\n  no linearization gets past the completion of: {}", v.op)?;
            if !v.states.is_empty() {
                write!(
                    f,
                    "\n  when it had to take effect, the {} could be: {}",
                    self.model,
                    v.states.join(" | ")
                )?;
            }
            if !v.needed_by.is_empty() {
                write!(
                    f,
                    "\n  and it could not change from {}: these operations, not linearized yet, need it:",
                    v.states.first().map_or("", String::as_str)
                )?;
                for o in &v.needed_by {
                    write!(f, "\n    {o}")?;
                }
            }
            write!(f, "\n  longest partial linearization: {} ops", v.longest_prefix)?;
            if v.concurrent.is_empty() {
                write!(f, "\n  no operation overlaps it")?;
            } else {
                write!(f, "\n  operations overlapping it ({}):", v.concurrent_total)?;
                for o in &v.concurrent {
                    write!(f, "\n    {o}")?;
                }
                if v.concurrent_total > v.concurrent.len() {
                    write!(f, "\n    ...")?;
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for k in &self.keys {
            writeln!(f, "{k}")?;
        }
        Ok(())
    }
}

fn resolve(key: &str, ops: &[&Operation], kind: ModelKind) -> Result<Resolved> {
    let has = |pred: fn(&Op) -> bool| ops.iter().any(|o| pred(&o.op));
    let listy = has(|o| matches!(o, Op::Append { .. } | Op::ReadList { .. }));
    let regy = has(|o| matches!(o, Op::Read { .. } | Op::Write { .. } | Op::Cas { .. }));
    Ok(match kind {
        ModelKind::Auto => {
            if listy && regy {
                return Err(Error::model(
                    key,
                    "has both register operations (read/write) and list operations \
                     (append/read-list); choose a model",
                ));
            }
            if listy {
                Resolved::List
            } else {
                Resolved::Register
            }
        }
        ModelKind::Register | ModelKind::Cas => Resolved::Register,
        ModelKind::Kv => Resolved::Kv,
        ModelKind::List => Resolved::List,
    })
}

/// The operations of one key prepared for the search: which history operations (by index into
/// the key's list) and their (possibly narrowed) intervals.
struct Prepared {
    keep: Vec<usize>,
    intervals: Vec<Interval>,
}

/// Narrows `[call, ret]` to `[call_eff, ret_eff]` when that is a non-empty part of it; an empty
/// one means no linearization exists at all, which the search will find on the original.
fn narrow(call: u64, ret: Option<u64>, call_eff: u64, ret_eff: Option<u64>) -> Interval {
    let c = call.max(call_eff);
    let r = match (ret, ret_eff) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if r.is_some_and(|r| r < c) {
        Interval { call, ret }
    } else {
        Interval { call: c, ret: r }
    }
}

/// Which operations to search, and their intervals, narrowed by what the reads reveal. Every
/// rule keeps every linearization (so the verdict is unchanged) and removes orders the search
/// would otherwise try:
/// * a read with an unknown result neither changes the state nor constrains it: dropped;
/// * an unknown write (register without cas) or append (list) whose value no read returned can
///   always be moved to the end, i.e. treated as never having happened: dropped (placed
///   anywhere else, every later read, up to the next write for a register, would return it);
/// * list: an append of `v` takes effect after every read that lacks `v` took effect (lists
///   only grow), so after that read's invocation; and a read takes effect before every append
///   of a value it lacks, so before that append's completion;
/// * register: a read of nil takes effect before every successful write or cas completed;
/// * when every written (appended) value of the key is distinct: the write (append, cas) of `v`
///   takes effect before any read returning `v` completed, and such a read after that write
///   was invoked.
fn prepare(ops: &[&Operation], model: Resolved) -> Prepared {
    let unknown_read =
        |o: &Operation| matches!(o.op, Op::Read { result: None } | Op::ReadList { result: None });
    let mut keep: Vec<usize> = Vec::with_capacity(ops.len());
    let mut intervals: Vec<Interval> = Vec::with_capacity(ops.len());
    match model {
        Resolved::Kv => {
            for (i, o) in ops.iter().enumerate() {
                if !unknown_read(o) {
                    keep.push(i);
                    intervals.push(Interval { call: o.call, ret: o.ret });
                }
            }
        }
        Resolved::Register => prepare_register(ops, &mut keep, &mut intervals),
        Resolved::List => prepare_list(ops, &mut keep, &mut intervals),
    }
    Prepared { keep, intervals }
}

/// The value an operation may write (writes; cas that swapped or may have).
fn written(o: &Operation) -> Option<&str> {
    match &o.op {
        Op::Write { value } => Some(value.as_str()),
        Op::Cas { to, swapped: Some(true) | None, .. } => Some(to.as_str()),
        _ => None,
    }
}

fn intern<'a>(v: &'a str, ids: &mut FxHashMap<&'a str, u32>) -> u32 {
    let n = ids.len() as u32;
    *ids.entry(v).or_insert(n)
}

fn prepare_register(ops: &[&Operation], keep: &mut Vec<usize>, intervals: &mut Vec<Interval>) {
    let has_cas = ops.iter().any(|o| matches!(o.op, Op::Cas { .. }));
    let mut writer_call: HashMap<&str, u64> = HashMap::new();
    let mut unique = true;
    for o in ops {
        let v = match &o.op {
            Op::Write { value } => value,
            Op::Cas { to, .. } => to,
            _ => continue,
        };
        unique &= writer_call.insert(v.as_str(), o.call).is_none();
    }
    // Earliest completion of an ok read returning each value.
    let mut first_read: HashMap<&str, u64> = HashMap::new();
    for o in ops {
        if let (Op::Read { result: Some(Some(v)) }, Some(r)) = (&o.op, o.ret) {
            let e = first_read.entry(v.as_str()).or_insert(r);
            *e = (*e).min(r);
        }
    }
    // Earliest completion of a write or cas known to have set a value.
    let first_set = ops
        .iter()
        .filter(|o| matches!(o.op, Op::Write { .. } | Op::Cas { swapped: Some(true), .. }))
        .filter_map(|o| o.ret)
        .min();
    for (i, o) in ops.iter().enumerate() {
        if matches!(o.op, Op::Read { result: None }) {
            continue;
        }
        let (mut call_eff, mut ret_eff) = (o.call, o.ret);
        match (&o.op, written(o)) {
            (Op::Read { result: Some(None) }, _) => ret_eff = first_set,
            (Op::Read { result: Some(Some(v)) }, _) if unique => {
                call_eff = writer_call.get(v.as_str()).copied().unwrap_or(o.call);
            }
            (_, Some(v)) => {
                let seen = first_read.get(v).copied();
                if seen.is_none() && o.ret.is_none() && !has_cas && matches!(o.op, Op::Write { .. }) {
                    continue;
                }
                if unique {
                    ret_eff = seen;
                }
            }
            _ => {}
        }
        keep.push(i);
        intervals.push(narrow(o.call, o.ret, call_eff, ret_eff));
    }
}

fn prepare_list(ops: &[&Operation], keep: &mut Vec<usize>, intervals: &mut Vec<Interval>) {
    // Intern the values.
    let mut ids: FxHashMap<&str, u32> = FxHashMap::default();
    let mut append_of: Vec<Option<u32>> = vec![None; ops.len()];
    let mut read_of: Vec<Option<Vec<u32>>> = vec![None; ops.len()];
    for (i, o) in ops.iter().enumerate() {
        match &o.op {
            Op::Append { value } => append_of[i] = Some(intern(value.as_str(), &mut ids)),
            Op::ReadList { result: Some(l) } if o.ret.is_some() => {
                read_of[i] = Some(l.iter().map(|v| intern(v.as_str(), &mut ids)).collect());
            }
            _ => {}
        }
    }
    let n = ids.len();
    let mut appends_of_value = vec![0u32; n];
    let mut writer_call = vec![0u64; n];
    for (i, v) in append_of.iter().enumerate() {
        if let (Some(v), Some(o)) = (v, ops.get(i)) {
            appends_of_value[*v as usize] += 1;
            writer_call[*v as usize] = o.call;
        }
    }
    let unique = appends_of_value.iter().all(|&c| c <= 1);
    // The reads, latest invocation first.
    let mut reads: Vec<(u64, u64, &[u32])> =
        ops.iter().zip(&read_of).filter_map(|(o, r)| Some((o.call, o.ret?, r.as_deref()?))).collect();
    reads.sort_by_key(|r| std::cmp::Reverse(r.0));
    // Earliest completion of a read containing each value.
    let mut first_seen: Vec<Option<u64>> = vec![None; n];
    for &(_, ret, l) in &reads {
        for &v in l {
            let slot = &mut first_seen[v as usize];
            *slot = Some(slot.map_or(ret, |s| s.min(ret)));
        }
    }
    // Latest invocation of a read lacking each appended value.
    let mut lacking: Vec<Option<u64>> = vec![None; n];
    let mut stamp = vec![usize::MAX; n];
    let mut unresolved: Vec<u32> = (0..n as u32).filter(|&v| appends_of_value[v as usize] > 0).collect();
    for (j, &(call, _, l)) in reads.iter().enumerate() {
        if unresolved.is_empty() {
            break;
        }
        for &v in l {
            stamp[v as usize] = j;
        }
        unresolved.retain(|&v| {
            if stamp[v as usize] == j {
                true
            } else {
                lacking[v as usize] = Some(call);
                false
            }
        });
    }
    // Ok appends by completion, for "the earliest completed append of a value a read lacks".
    let mut acked: Vec<(u64, u32)> =
        ops.iter().zip(&append_of).filter_map(|(o, v)| Some((o.ret?, (*v)?))).collect();
    acked.sort_unstable();
    let mut read_stamp = vec![usize::MAX; n];
    for (i, o) in ops.iter().enumerate() {
        if matches!(o.op, Op::ReadList { result: None }) {
            continue;
        }
        let (mut call_eff, mut ret_eff) = (o.call, o.ret);
        if let Some(v) = append_of[i] {
            let v = v as usize;
            if o.ret.is_none() && first_seen[v].is_none() {
                continue;
            }
            call_eff = lacking[v].unwrap_or(o.call);
            if unique {
                ret_eff = first_seen[v];
            }
        } else if let Some(l) = &read_of[i] {
            for &v in l {
                read_stamp[v as usize] = i;
                if unique && appends_of_value[v as usize] > 0 {
                    call_eff = call_eff.max(writer_call[v as usize]);
                }
            }
            ret_eff = acked.iter().find(|&&(_, v)| read_stamp[v as usize] != i).map(|&(r, _)| r);
        }
        keep.push(i);
        intervals.push(narrow(o.call, o.ret, call_eff, ret_eff));
    }
}

fn explain(ops: &[&Operation], prep: &Prepared, stuck: &wgl::Stuck) -> Option<Violation> {
    let orig = *prep.keep.get(stuck.op)?;
    let op = (*ops.get(orig)?).clone();
    let end = op.ret.unwrap_or(u64::MAX);
    let overlapping: Vec<&Operation> = prep
        .keep
        .iter()
        .filter(|&&i| i != orig)
        .filter_map(|&i| ops.get(i).copied())
        .filter(|o| o.call <= end && o.ret.is_none_or(|r| r >= op.call))
        .collect();
    let needed_by = stuck
        .waiting
        .iter()
        .filter_map(|&w| prep.keep.get(w))
        .filter_map(|&i| ops.get(i).map(|o| (*o).clone()))
        .collect();
    Some(Violation {
        needed_by,
        concurrent_total: overlapping.len(),
        concurrent: overlapping.into_iter().take(Violation::MAX_SHOWN).cloned().collect(),
        op,
        states: stuck.states.clone(),
        longest_prefix: stuck.longest_prefix,
    })
}

fn run<M: Model>(
    mut model: M,
    key: &str,
    resolved: Resolved,
    ops: &[&Operation],
    prep: &Prepared,
    budget: &Budget,
) -> KeyReport {
    let (outcome, stats) = wgl::search(&mut model, &prep.intervals, budget);
    let (verdict, exhausted, violation) = match outcome {
        Outcome::Linearizable => (Verdict::Linearizable, None, None),
        Outcome::Unknown(e) => (Verdict::Unknown, Some(e), None),
        Outcome::NotLinearizable(stuck) => (Verdict::NotLinearizable, None, explain(ops, prep, &stuck)),
    };
    KeyReport {
        key: key.to_owned(),
        model: resolved,
        ops: ops.len(),
        unknown_ops: ops.iter().filter(|o| o.is_unknown()).count(),
        searched_ops: prep.intervals.len(),
        verdict,
        exhausted,
        violation,
        stats,
    }
}

/// Checks the operations of one key.
pub fn check_key(key: &str, ops: &[&Operation], model: ModelKind, budget: &Budget) -> Result<KeyReport> {
    let resolved = resolve(key, ops, model)?;
    let prep = prepare(ops, resolved);
    let kept = prep.keep.iter().filter_map(|&i| ops.get(i).copied());
    Ok(match resolved {
        Resolved::Register => run(RegisterModel::new(key, kept)?, key, resolved, ops, &prep, budget),
        Resolved::Kv => run(KvModel::new(key, kept)?, key, resolved, ops, &prep, budget),
        Resolved::List => run(ListModel::new(key, kept)?, key, resolved, ops, &prep, budget),
    })
}

fn whole<M: Model>(
    by_key: &[(&str, Vec<&Operation>)],
    preps: &[Prepared],
    build: fn(&str, Vec<&Operation>) -> Result<M>,
    resolved: Resolved,
    budget: &Budget,
) -> Result<KeyReport> {
    let mut names = Vec::new();
    let mut parts = Vec::new();
    // Every kept operation of every key, with its (part, local index) and original operation.
    let mut all: Vec<(Interval, (u32, u32), &Operation)> = Vec::new();
    for (k, ((key, ops), prep)) in by_key.iter().zip(preps).enumerate() {
        names.push((*key).to_owned());
        let kept: Vec<&Operation> = prep.keep.iter().filter_map(|&i| ops.get(i).copied()).collect();
        for (local, (iv, o)) in prep.intervals.iter().zip(&kept).enumerate() {
            all.push((*iv, (k as u32, local as u32), o));
        }
        parts.push(build(key, kept)?);
    }
    let intervals: Vec<Interval> = all.iter().map(|a| a.0).collect();
    let route: Vec<(u32, u32)> = all.iter().map(|a| a.1).collect();
    let mut model = Whole::new(names, parts, route);
    let (outcome, stats) = wgl::search(&mut model, &intervals, budget);
    let all_ops: Vec<&Operation> = by_key.iter().flat_map(|(_, o)| o.iter().copied()).collect();
    let (verdict, exhausted, violation) = match outcome {
        Outcome::Linearizable => (Verdict::Linearizable, None, None),
        Outcome::Unknown(e) => (Verdict::Unknown, Some(e), None),
        Outcome::NotLinearizable(stuck) => {
            let kept: Vec<&Operation> = all.iter().map(|a| a.2).collect();
            let prep = Prepared { keep: (0..kept.len()).collect(), intervals: intervals.clone() };
            (Verdict::NotLinearizable, None, explain(&kept, &prep, &stuck))
        }
    };
    Ok(KeyReport {
        key: "*".to_owned(),
        model: resolved,
        ops: all_ops.len(),
        unknown_ops: all_ops.iter().filter(|o| o.is_unknown()).count(),
        searched_ops: intervals.len(),
        verdict,
        exhausted,
        violation,
        stats,
    })
}

/// Checks a history.
pub fn check_history(history: &History, opts: &CheckOptions) -> Result<Report> {
    let by_key: Vec<(&str, Vec<&Operation>)> = history
        .by_key()
        .into_iter()
        .map(|(k, idx)| (k, idx.into_iter().filter_map(|i| history.ops.get(i)).collect::<Vec<_>>()))
        .collect();
    match opts.partition {
        Partition::PerKey if opts.stop_at_first_violation => {
            let small = Budget { max_steps: opts.budget.max_steps.min(FIRST_ROUND_STEPS), ..opts.budget };
            let mut keys = Vec::with_capacity(by_key.len());
            for (key, ops) in &by_key {
                keys.push(check_key(key, ops, opts.model, &small)?);
            }
            let mut found = keys.iter().any(|k| k.verdict == Verdict::NotLinearizable);
            for (k, (key, ops)) in keys.iter_mut().zip(&by_key) {
                if k.verdict != Verdict::Unknown || k.exhausted != Some(Exhausted::Steps) {
                    continue;
                }
                if found || small.max_steps >= opts.budget.max_steps {
                    if found {
                        k.exhausted = Some(Exhausted::Stopped);
                    }
                    continue;
                }
                *k = check_key(key, ops, opts.model, &opts.budget)?;
                found = k.verdict == Verdict::NotLinearizable;
            }
            Ok(Report { keys })
        }
        Partition::PerKey => {
            let mut keys = Vec::with_capacity(by_key.len());
            for (key, ops) in &by_key {
                keys.push(check_key(key, ops, opts.model, &opts.budget)?);
            }
            Ok(Report { keys })
        }
        Partition::Whole => {
            let start = Instant::now();
            let mut resolved = None;
            let mut preps = Vec::new();
            for (key, ops) in &by_key {
                let r = resolve(key, ops, opts.model)?;
                if resolved.is_some_and(|p| p != r) {
                    return Err(Error::model(key, "a whole-history check needs one model for every key"));
                }
                resolved = Some(r);
                preps.push(prepare(ops, r));
            }
            let Some(resolved) = resolved else {
                return Ok(Report::default());
            };
            let mut rep = match resolved {
                Resolved::Register => {
                    whole(&by_key, &preps, |k, o| RegisterModel::new(k, o), resolved, &opts.budget)?
                }
                Resolved::Kv => whole(&by_key, &preps, |k, o| KvModel::new(k, o), resolved, &opts.budget)?,
                Resolved::List => {
                    whole(&by_key, &preps, |k, o| ListModel::new(k, o), resolved, &opts.budget)?
                }
            };
            rep.stats.elapsed = start.elapsed();
            Ok(Report { keys: vec![rep] })
        }
    }
}
