//! The search: Wing & Gong's algorithm with Lowe's memoization, as used by P-compositional
//! checkers (Horn & Kroening) such as Porcupine — written from the papers' descriptions.
//!
//! The history is a doubly linked list of call and return entries in time order. The search
//! walks it from the front: at a call entry it tries to linearize that operation now (the model
//! accepts it in the current state) and, if the pair (set of linearized operations, model state)
//! is new, lifts the call and its return out of the list and starts again from the front; at a
//! return entry (an operation that must have taken effect by now but has not) it backtracks to
//! the last linearized operation and tries the next candidate after it. The history is
//! linearizable when the list empties, and not when a return entry is reached with nothing left
//! to undo. The memo set makes every (linearized set, state) pair explored once.
//!
//! The linearized set is a bitset over operations numbered in the order of their returns. At any
//! point every operation that returned before the front of the list is linearized, so the set is
//! a prefix of that numbering plus a few operations pending at the front (at most the
//! concurrency); the memo stores it in that form (prefix length, the few others), which keeps a
//! memo entry small even for histories of tens of thousands of operations.

use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::time::{Duration, Instant};

/// A sequential specification, prepared for one history: operations are referred to by their
/// index in that history.
pub trait Model {
    /// A state of the object. It is cloned and hashed at every step, so it should be small: the
    /// models of this crate intern values and use integer ids.
    type State: Clone + Eq + Hash + fmt::Debug;
    /// The initial state.
    fn init(&mut self) -> Self::State;
    /// The state after operation `op` in `state`, or `None` if `op` could not have returned what
    /// it returned in `state`. An operation with an unknown outcome must be accepted in every
    /// state (its result is unconstrained).
    fn step(&mut self, state: &Self::State, op: usize) -> Option<Self::State>;
    /// Whether operation `op` never changes the state, in any state where it is accepted (a
    /// read; a cas known to have failed). Such operations are linearized as soon as the state
    /// allows, without searching alternatives, which prunes the search a lot. Saying `false`
    /// is always correct; saying `true` wrongly is not.
    fn is_read_only(&self, _op: usize) -> bool {
        false
    }
    /// Operations of the same class (`Some(c)` for both) are interchangeable: accepted in the
    /// same states, with the same effect (writes of one value). Of several such operations that
    /// could be linearized now, the search tries only the one due first: had a later-due one
    /// led to a linearization, swapping the two would give one too. `None` (the default) is
    /// always correct.
    fn class(&self, _op: usize) -> Option<u64> {
        None
    }
    /// A tag of states that, once left, never come back (the register holding a value only one
    /// operation writes; a list, which only grows), or `None`.
    fn tag(&self, _state: &Self::State) -> Option<u32> {
        None
    }
    /// The tag of the only states in which `op` is accepted (a read of a value), or `None`.
    /// The search never leaves a tagged state while an operation that needs it is not
    /// linearized yet: it could never be afterwards. Tags should be small integers (the search
    /// keeps a counter per tag).
    fn needs(&self, _op: usize) -> Option<u32> {
        None
    }
    /// A short human-readable form of a state, for explanations.
    fn describe(&self, state: &Self::State) -> String;
    /// Heap bytes held by a state beyond `size_of::<State>()` (for the memory budget).
    fn state_heap_bytes(&self, _state: &Self::State) -> usize {
        0
    }
    /// Heap bytes held by the model itself (interned values), for the memory budget.
    fn model_bytes(&self) -> usize {
        0
    }
}

/// When an operation was invoked and when it returned (`None`: unknown outcome, returns after
/// everything). Times are only compared; at equal times calls come before returns (the two
/// operations count as overlapping); a return before the call is read as at the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    /// Invocation time.
    pub call: u64,
    /// Return time, `None` for +infinity.
    pub ret: Option<u64>,
}

/// Limits on one search. The search of a non-linearizable history, or of a history with many
/// concurrent operations, is exponential in the worst case: past a limit the verdict is
/// [`Verdict::Unknown`](crate::Verdict::Unknown) instead of a search that runs forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Model steps (attempts to linearize an operation).
    pub max_steps: u64,
    /// Approximate bytes of the memo set and the model's interned values.
    pub max_memory_bytes: usize,
    /// Wall-clock time; `None` for no limit (the other limits are deterministic, this one not).
    pub max_time: Option<Duration>,
}

impl Default for Budget {
    /// 200 million steps (tens of seconds), 1 GiB, no time limit.
    fn default() -> Self {
        Budget { max_steps: 200_000_000, max_memory_bytes: 1 << 30, max_time: None }
    }
}

/// Which limit of the [`Budget`] stopped a search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exhausted {
    /// `max_steps`.
    Steps,
    /// `max_memory_bytes`.
    Memory,
    /// `max_time`.
    Time,
    /// Not searched to the end: another key was found not linearizable first
    /// ([`CheckOptions::stop_at_first_violation`](crate::CheckOptions::stop_at_first_violation)).
    Stopped,
}

impl fmt::Display for Exhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Exhausted::Steps => "step budget exceeded",
            Exhausted::Memory => "memory budget exceeded",
            Exhausted::Time => "time budget exceeded",
            Exhausted::Stopped => "not searched to the end: stopped at another key's violation",
        })
    }
}

/// Where the search of a non-linearizable history got furthest before failing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stuck {
    /// The operation that could never be linearized before its return: the earliest return in
    /// the history by which no linearization of the operations before it exists.
    pub op: usize,
    /// Some of the states in which the search stood when it reached that return (at most 8).
    pub states: Vec<String>,
    /// How many operations the longest partial linearization had.
    pub longest_prefix: usize,
    /// Operations not linearized yet that need the (first) state in `states` ([`Model::needs`]):
    /// it could not be left without losing them (at most 5).
    pub waiting: Vec<usize>,
}

/// The outcome of one search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A linearization exists.
    Linearizable,
    /// None exists.
    NotLinearizable(Stuck),
    /// The budget ran out first.
    Unknown(Exhausted),
}

/// What one search cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Model steps taken.
    pub steps: u64,
    /// Entries in the memo set at the end.
    pub memo_entries: usize,
    /// Approximate peak memory (memo set and model), bytes.
    pub memory_bytes: usize,
    /// Wall-clock time.
    pub elapsed: Duration,
}

/// A small, fast, non-cryptographic hasher (the multiply-rotate scheme of rustc's FxHasher).
#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.add(u64::from_le_bytes(b));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FxBuild = BuildHasherDefault<FxHasher>;
pub(crate) type FxHashMap<K, V> = std::collections::HashMap<K, V, FxBuild>;

/// The set of linearized operations (numbered by return order): a bitset, plus its canonical
/// compact form `prefix` (the first operation not linearized) and `above` (the linearized ones
/// past it, sorted).
struct LinSet {
    bits: Vec<u64>,
    prefix: u32,
    above: Vec<u32>,
}

impl LinSet {
    fn new(n: usize) -> Self {
        LinSet { bits: vec![0; n.div_ceil(64)], prefix: 0, above: Vec::new() }
    }

    #[cfg(test)]
    fn get(&self, i: u32) -> bool {
        self.bits.get((i / 64) as usize).is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }

    fn set(&mut self, i: u32) {
        if let Some(w) = self.bits.get_mut((i / 64) as usize) {
            *w |= 1u64 << (i % 64);
        }
        if i == self.prefix {
            self.prefix += 1;
            let mut consumed = 0;
            while consumed < self.above.len() && self.above[consumed] == self.prefix {
                self.prefix += 1;
                consumed += 1;
            }
            self.above.drain(..consumed);
        } else if let Err(pos) = self.above.binary_search(&i) {
            self.above.insert(pos, i);
        }
    }

    /// Undoes the latest `set(i)` (the search undoes in stack order).
    fn clear(&mut self, i: u32) {
        if let Some(w) = self.bits.get_mut((i / 64) as usize) {
            *w &= !(1u64 << (i % 64));
        }
        if i < self.prefix {
            let back: Vec<u32> = (i + 1..self.prefix).collect();
            self.above.splice(0..0, back);
            self.prefix = i;
        } else if let Ok(pos) = self.above.binary_search(&i) {
            self.above.remove(pos);
        }
    }
}

/// The memo set of (linearized set, state) pairs. The linearized sets' `above` lists are kept
/// delta- and varint-encoded in one arena, so an entry costs a table slot and a few bytes.
struct Memo<S> {
    table: hashbrown::HashTable<Slot<S>>,
    arena: Vec<u8>,
    scratch: Vec<u8>,
}

struct Slot<S> {
    off: u32,
    len: u32,
    prefix: u32,
    state: S,
}

fn memo_hash<S: Hash>(prefix: u32, above: &[u8], state: &S) -> u64 {
    let mut h = FxHasher::default();
    h.write_u32(prefix);
    h.write(above);
    state.hash(&mut h);
    h.finish()
}

impl<S: Eq + Hash> Memo<S> {
    fn new() -> Self {
        Memo { table: hashbrown::HashTable::new(), arena: Vec::new(), scratch: Vec::new() }
    }

    /// Adds the pair; false if it was there already.
    fn insert(&mut self, lin: &LinSet, state: &S) -> bool
    where
        S: Clone,
    {
        self.scratch.clear();
        let mut last = lin.prefix;
        for &a in &lin.above {
            let mut d = a - last;
            last = a;
            while d >= 0x80 {
                self.scratch.push((d as u8) | 0x80);
                d >>= 7;
            }
            self.scratch.push(d as u8);
        }
        let hash = memo_hash(lin.prefix, &self.scratch, state);
        let (arena, scratch) = (&self.arena, &self.scratch);
        let slice = |s: &Slot<S>| {
            let off = s.off as usize;
            arena.get(off..off + s.len as usize).unwrap_or_default()
        };
        let eq = |s: &Slot<S>| s.prefix == lin.prefix && s.state == *state && slice(s) == scratch.as_slice();
        let rehash = |s: &Slot<S>| memo_hash(s.prefix, slice(s), &s.state);
        match self.table.entry(hash, eq, rehash) {
            hashbrown::hash_table::Entry::Occupied(_) => false,
            hashbrown::hash_table::Entry::Vacant(v) => {
                let Ok(off) = u32::try_from(self.arena.len()) else {
                    // Past 4 GiB of arena (beyond any sane budget): explore without memoizing.
                    return true;
                };
                self.arena.extend_from_slice(&self.scratch);
                v.insert(Slot {
                    off,
                    len: self.scratch.len() as u32,
                    prefix: lin.prefix,
                    state: state.clone(),
                });
                true
            }
        }
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    fn bytes(&self) -> usize {
        self.table.capacity() * (std::mem::size_of::<Slot<S>>() + 1) + self.arena.capacity()
    }
}

const NIL: u32 = u32::MAX;

/// The list of entries: index 0 is the head sentinel, entries are 1..=2n in time order.
struct Entries {
    next: Vec<u32>,
    prev: Vec<u32>,
    /// The operation of each entry.
    op: Vec<u32>,
    /// For a call entry, its return entry; `NIL` for return entries.
    matching: Vec<u32>,
}

impl Entries {
    fn build(intervals: &[Interval]) -> Self {
        // (time, is_return, op): calls before returns at equal times.
        let mut ev: Vec<(u64, bool, u32)> = Vec::with_capacity(intervals.len() * 2);
        for (i, iv) in intervals.iter().enumerate() {
            let i = i as u32;
            ev.push((iv.call, false, i));
            // A return before the call is read as at the call.
            ev.push((iv.ret.unwrap_or(u64::MAX).max(iv.call), true, i));
        }
        ev.sort_unstable();
        let m = ev.len();
        let mut op = vec![NIL; m + 1];
        let mut matching = vec![NIL; m + 1];
        let mut call_entry = vec![NIL; intervals.len()];
        for (k, &(_, is_ret, o)) in ev.iter().enumerate() {
            let e = (k + 1) as u32;
            op[e as usize] = o;
            if is_ret {
                if let Some(&c) = call_entry.get(o as usize) {
                    if let Some(slot) = matching.get_mut(c as usize) {
                        *slot = e;
                    }
                }
            } else if let Some(slot) = call_entry.get_mut(o as usize) {
                *slot = e;
            }
        }
        let next: Vec<u32> = (0..=m as u32).map(|e| if (e as usize) < m { e + 1 } else { NIL }).collect();
        let prev: Vec<u32> = (0..=m as u32).map(|e| if e == 0 { NIL } else { e - 1 }).collect();
        Entries { next, prev, op, matching }
    }

    #[inline]
    fn unlink(&mut self, e: u32) {
        let (p, n) = (self.prev[e as usize], self.next[e as usize]);
        if p != NIL {
            self.next[p as usize] = n;
        }
        if n != NIL {
            self.prev[n as usize] = p;
        }
    }

    #[inline]
    fn relink(&mut self, e: u32) {
        let (p, n) = (self.prev[e as usize], self.next[e as usize]);
        if p != NIL {
            self.next[p as usize] = e;
        }
        if n != NIL {
            self.prev[n as usize] = e;
        }
    }

    /// Removes a call entry and its return.
    fn lift(&mut self, call: u32) {
        self.unlink(call);
        let r = self.matching[call as usize];
        self.unlink(r);
    }

    /// Puts them back (in the reverse order of `lift`).
    fn unlift(&mut self, call: u32) {
        let r = self.matching[call as usize];
        self.relink(r);
        self.relink(call);
    }
}

/// A step of the current path: the call entry lifted, the state before it, and where to go on
/// if what follows fails.
struct Frame<S> {
    call: u32,
    prev: S,
    /// A read-only step taken without alternatives: if what follows fails, so does the
    /// configuration it was taken from.
    forced: bool,
    /// The configuration's candidates are `cands[next..end]` still to try.
    next: usize,
    end: usize,
}

/// What the search does next.
enum Next {
    /// Open the configuration just reached.
    Open,
    /// Try the candidates `cands[next..end]` of the current configuration.
    Try { next: usize, end: usize },
    /// The current configuration has no linearization: undo.
    Fail,
}

fn take<M: Model>(model: &M, waiting: &mut [u32], op: u32) {
    if let Some(w) = model.needs(op as usize).and_then(|t| waiting.get_mut(t as usize)) {
        *w = w.saturating_sub(1);
    }
}

fn give_back<M: Model>(model: &M, waiting: &mut [u32], op: u32) {
    if let Some(w) = model.needs(op as usize).and_then(|t| waiting.get_mut(t as usize)) {
        *w += 1;
    }
}

/// Whether going from `from` to `to` leaves for good a state that some operation not yet
/// linearized needs.
fn abandons<M: Model>(model: &M, waiting: &[u32], from: &M::State, to: &M::State) -> bool {
    match model.tag(from) {
        Some(t) => model.tag(to) != Some(t) && waiting.get(t as usize).is_some_and(|&w| w > 0),
        None => false,
    }
}

/// Searches for a linearization of the operations with these intervals under `model`.
///
/// A configuration (linearized set, state) is opened in two passes over the operations that
/// may be linearized now (the call entries before the first return entry):
/// 1. read-only ones, in time order: one accepted in the current state is linearized without
///    trying alternatives ("forced"): it leaves the state unchanged, so a linearization that
///    places it later can place it now instead; so if what follows fails, the configuration
///    fails;
/// 2. the others, earliest completion first (the one whose deadline comes first is the likeliest
///    to be needed next), leaving out those interchangeable with one due earlier
///    ([`Model::class`]), and those that would leave for good a state that an operation not
///    linearized yet needs ([`Model::needs`]).
///
/// When none leads anywhere, the configuration fails and the search undoes the last step that
/// had alternatives.
pub fn search<M: Model>(model: &mut M, intervals: &[Interval], budget: &Budget) -> (Outcome, Stats) {
    let start = Instant::now();
    let n = intervals.len();
    let mut stats = Stats::default();
    if n == 0 {
        return (Outcome::Linearizable, stats);
    }
    let mut list = Entries::build(intervals);
    // Number operations by the position of their return entries.
    let mut id = vec![0u32; n];
    {
        let mut rank = 0u32;
        for e in 1..list.op.len() {
            if list.matching[e] == NIL {
                if let Some(slot) = id.get_mut(list.op[e] as usize) {
                    *slot = rank;
                }
                rank += 1;
            }
        }
    }
    // Per tag, the operations that need it and are not linearized yet.
    let mut waiting: Vec<u32> = Vec::new();
    for op in 0..n {
        if let Some(t) = model.needs(op) {
            let t = t as usize;
            if waiting.len() <= t {
                waiting.resize(t + 1, 0);
            }
            waiting[t] += 1;
        }
    }
    let mut lin = LinSet::new(n);
    let mut memo: Memo<M::State> = Memo::new();
    let mut state_heap = 0usize;
    let mut state = model.init();
    let mut path: Vec<Frame<M::State>> = Vec::new();
    let mut cands: Vec<u32> = Vec::new();
    let mut seen: std::collections::HashSet<u64, FxBuild> = std::collections::HashSet::default();
    let mut stuck_entry = 0u32;
    let mut stuck_states: Vec<M::State> = Vec::new();
    // The linearized set (prefix, above) when the first of `stuck_states` was recorded.
    let mut stuck_set: (u32, Vec<u32>) = (0, Vec::new());
    let mut longest = 0usize;
    let mut next = Next::Open;
    let mut next_check = 4096u64;

    let finish = |outcome: Outcome, mut stats: Stats, memo_len: usize| {
        stats.memo_entries = memo_len;
        stats.elapsed = start.elapsed();
        (outcome, stats)
    };

    loop {
        match next {
            Next::Open => {
                if list.next[0] == NIL {
                    break;
                }
                // Pass 1: read-only operations.
                next = Next::Fail;
                let mut e = list.next[0];
                let mut opened = false;
                while e != NIL && list.matching[e as usize] != NIL {
                    let op = list.op[e as usize];
                    if !model.is_read_only(op as usize) {
                        e = list.next[e as usize];
                        continue;
                    }
                    stats.steps += 1;
                    if let Some(next_state) = model.step(&state, op as usize) {
                        let oid = id[op as usize];
                        take(model, &mut waiting, op);
                        lin.set(oid);
                        if memo.insert(&lin, &next_state) {
                            state_heap += model.state_heap_bytes(&next_state);
                            let prev = std::mem::replace(&mut state, next_state);
                            path.push(Frame {
                                call: e,
                                prev,
                                forced: true,
                                next: cands.len(),
                                end: cands.len(),
                            });
                            list.lift(e);
                            next = Next::Open;
                        } else {
                            // Seen before, hence failed before: so does this configuration.
                            lin.clear(oid);
                            give_back(model, &mut waiting, op);
                        }
                        opened = true;
                        break;
                    }
                    e = list.next[e as usize];
                }
                if !opened {
                    // Pass 2: the others, earliest completion first.
                    let from = cands.len();
                    let mut e = list.next[0];
                    while e != NIL && list.matching[e as usize] != NIL {
                        if !model.is_read_only(list.op[e as usize] as usize) {
                            cands.push(e);
                        }
                        e = list.next[e as usize];
                    }
                    cands[from..].sort_unstable_by_key(|&c| list.matching[c as usize]);
                    if cands.len() - from > 1 {
                        seen.clear();
                        let mut keep = from;
                        for i in from..cands.len() {
                            let c = cands[i];
                            let dup =
                                model.class(list.op[c as usize] as usize).is_some_and(|k| !seen.insert(k));
                            if !dup {
                                cands[keep] = c;
                                keep += 1;
                            }
                        }
                        cands.truncate(keep);
                    }
                    next = Next::Try { next: from, end: cands.len() };
                }
            }
            Next::Try { next: mut i, end } => {
                next = Next::Fail;
                while i < end {
                    let e = cands[i];
                    i += 1;
                    let op = list.op[e as usize];
                    stats.steps += 1;
                    let Some(next_state) = model.step(&state, op as usize) else {
                        continue;
                    };
                    take(model, &mut waiting, op);
                    if abandons(model, &waiting, &state, &next_state) {
                        give_back(model, &mut waiting, op);
                        continue;
                    }
                    let oid = id[op as usize];
                    lin.set(oid);
                    if memo.insert(&lin, &next_state) {
                        state_heap += model.state_heap_bytes(&next_state);
                        let prev = std::mem::replace(&mut state, next_state);
                        path.push(Frame { call: e, prev, forced: false, next: i, end });
                        list.lift(e);
                        next = Next::Open;
                        break;
                    }
                    lin.clear(oid);
                    give_back(model, &mut waiting, op);
                }
            }
            Next::Fail => {
                // Where the search stood: the first return entry, which nothing gets past.
                let mut e = list.next[0];
                while e != NIL && list.matching[e as usize] != NIL {
                    e = list.next[e as usize];
                }
                if e != NIL {
                    if e > stuck_entry {
                        stuck_entry = e;
                        stuck_states.clear();
                        stuck_set = (lin.prefix, lin.above.clone());
                    }
                    if e == stuck_entry && stuck_states.len() < 8 && !stuck_states.contains(&state) {
                        stuck_states.push(state.clone());
                    }
                }
                // Undo steps up to the last one that had alternatives.
                loop {
                    let Some(f) = path.pop() else {
                        let tag = stuck_states.first().and_then(|s| model.tag(s));
                        let (prefix, above) = &stuck_set;
                        let waiting = (0..n)
                            .filter(|&op| tag.is_some() && model.needs(op) == tag)
                            .filter(|&op| {
                                let i = id[op];
                                i >= *prefix && above.binary_search(&i).is_err()
                            })
                            .take(5)
                            .collect();
                        let stuck = Stuck {
                            op: list.op.get(stuck_entry as usize).copied().unwrap_or(0) as usize,
                            states: stuck_states.iter().map(|s| model.describe(s)).collect(),
                            longest_prefix: longest,
                            waiting,
                        };
                        stats.memory_bytes =
                            stats.memory_bytes.max(memo.bytes() + state_heap + model.model_bytes());
                        return finish(Outcome::NotLinearizable(stuck), stats, memo.len());
                    };
                    state = f.prev;
                    let op = list.op[f.call as usize];
                    lin.clear(id[op as usize]);
                    give_back(model, &mut waiting, op);
                    list.unlift(f.call);
                    cands.truncate(f.end);
                    if !f.forced {
                        next = Next::Try { next: f.next, end: f.end };
                        break;
                    }
                }
            }
        }
        longest = longest.max(path.len());
        if stats.steps > budget.max_steps {
            return finish(Outcome::Unknown(Exhausted::Steps), stats, memo.len());
        }
        if stats.steps >= next_check {
            next_check = stats.steps + 4096;
            if let Some(t) = budget.max_time {
                if start.elapsed() > t {
                    return finish(Outcome::Unknown(Exhausted::Time), stats, memo.len());
                }
            }
            let mem = memo.bytes() + state_heap + model.model_bytes();
            stats.memory_bytes = stats.memory_bytes.max(mem);
            if mem > budget.max_memory_bytes {
                return finish(Outcome::Unknown(Exhausted::Memory), stats, memo.len());
            }
        }
    }
    stats.memory_bytes = stats.memory_bytes.max(memo.bytes() + state_heap + model.model_bytes());
    finish(Outcome::Linearizable, stats, memo.len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn linset_compact_form_is_canonical() {
        let mut s = LinSet::new(200);
        s.set(3);
        s.set(1);
        assert_eq!((s.prefix, s.above.clone()), (0, vec![1, 3]));
        s.set(0);
        assert_eq!((s.prefix, s.above.clone()), (2, vec![3]));
        s.set(2);
        assert_eq!((s.prefix, s.above.clone()), (4, vec![]));
        s.clear(2);
        assert_eq!((s.prefix, s.above.clone()), (2, vec![3]));
        s.clear(0);
        assert_eq!((s.prefix, s.above.clone()), (0, vec![1, 3]));
        s.set(150);
        assert!(s.get(150));
        s.clear(150);
        assert!(!s.get(150));
        assert_eq!((s.prefix, s.above.clone()), (0, vec![1, 3]));
    }
}
