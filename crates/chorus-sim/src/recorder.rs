//! Where trace events go: the checker (always), a running hash (always), the full trace and a
//! human narration (on request).
//!
//! Why a hash and not the trace: a batch of thousands of seeds cannot keep every trace, but the
//! determinism test must compare two runs event by event. A 64-bit hash of every event,
//! including its time, is as good as the trace for "did the same thing happen", and costs a few
//! nanoseconds per event.

use core::hash::{Hash, Hasher};
use std::collections::{BTreeMap, BTreeSet};

use chorus_check::{Checker, Ev, Proc, TraceEvent, Violation};

use crate::options::SEC;

/// FNV-1a as a [`Hasher`]: fixed keys, so the same events hash the same in every process (the
/// standard library's `DefaultHasher` makes no such promise across releases).
#[derive(Debug, Clone, Copy)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv64 {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    // Integers are hashed whole: trace events are mostly integers, and this keeps hashing cheap.
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0 ^ x).wrapping_mul(0x0100_0000_01b3);
        self.0 ^= self.0 >> 29;
    }
}

/// Takes every trace event of a run.
#[derive(Debug)]
pub struct Recorder {
    checker: Checker,
    hash: Fnv64,
    /// Events recorded.
    pub events: u64,
    /// The full trace, if asked for.
    pub trace: Option<Vec<TraceEvent>>,
    /// The narration, if asked for.
    pub narrator: Option<Narrator>,
}

impl Recorder {
    /// A recorder that keeps the trace and narrates only if asked.
    pub fn new(keep_trace: bool, narrate: bool) -> Recorder {
        Recorder {
            checker: Checker::new(),
            hash: Fnv64::default(),
            events: 0,
            trace: keep_trace.then(Vec::new),
            narrator: narrate.then(Narrator::default),
        }
    }

    /// Records one event; the checker's verdict on it.
    pub fn record(&mut self, ev: TraceEvent) -> Result<(), Violation> {
        self.events += 1;
        ev.hash(&mut self.hash);
        let verdict = self.checker.observe(&ev);
        if let Some(n) = &mut self.narrator {
            n.event(&ev);
        }
        if let Some(t) = &mut self.trace {
            t.push(ev);
        }
        verdict
    }

    /// The checker's end-of-run judgement (after the `End` event).
    pub fn finish(&mut self) -> Result<(), Violation> {
        self.checker.finish()
    }

    /// The checker's end-of-run safety checks alone, for a run whose liveness is not judged.
    pub fn finish_safety(&mut self) -> Result<(), Violation> {
        self.checker.finish_safety()
    }

    /// Hash of every event so far.
    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    /// Adds a harness line to the narration (partitions, restarts), if narrating.
    pub fn note(&mut self, t: u64, text: impl FnOnce() -> String) {
        if let Some(n) = &mut self.narrator {
            n.line(t, text());
        }
    }
}

/// Turns trace events into a readable story: one line per view (not per member installing it),
/// per fault, per suspicion; deliveries are only counted, per view.
#[derive(Debug, Default)]
pub struct Narrator {
    /// The story so far.
    pub lines: Vec<String>,
    views: BTreeMap<u64, Vec<Proc>>,
    /// When each view's flush began (first member to block).
    flushes: BTreeMap<u64, u64>,
    suspected: BTreeSet<Proc>,
    /// Current view of each live process.
    current: BTreeMap<Proc, u64>,
    /// Multicasts sent in each view.
    sent: BTreeMap<u64, u64>,
    /// The last line, if it was a suspicion: (time, suspecter), so that simultaneous ones merge.
    last_suspicion: Option<(u64, Proc)>,
}

/// A member, readably: `n3.0`; a restarted node's lives are `n3.r1`, `n3.r1.1` (restart count
/// is the incarnation's high 32 bits, exclusions the low ones).
pub fn show(p: Proc) -> String {
    let (restarts, rejoins) = (p.inc >> 32, p.inc & 0xffff_ffff);
    match (restarts, rejoins) {
        (0, k) => format!("n{}.{k}", p.node),
        (r, 0) => format!("n{}.r{r}", p.node),
        (r, k) => format!("n{}.r{r}.{k}", p.node),
    }
}

fn procs(list: &[Proc]) -> String {
    let items: Vec<String> = list.iter().copied().map(show).collect();
    items.join(" ")
}

/// `12.345s`, right-aligned.
pub fn stamp(t: u64) -> String {
    format!("{:>8.3}s", t as f64 / SEC as f64)
}

impl Narrator {
    fn line(&mut self, t: u64, text: String) {
        self.last_suspicion = None;
        self.lines.push(format!("{}  {}", stamp(t), text));
    }

    fn event(&mut self, ev: &TraceEvent) {
        let t = ev.t;
        let who = ev.p.map(show).unwrap_or_default();
        match &ev.ev {
            Ev::Send { view, .. } => *self.sent.entry(*view).or_default() += 1,
            Ev::Deliver { .. } => {}
            Ev::Install { view, members, loading, recovered } => {
                if let Some(p) = ev.p {
                    self.current.insert(p, *view);
                }
                if self.views.contains_key(view) {
                    return;
                }
                let prev_id = self.views.range(..*view).next_back().map(|(id, _)| *id);
                let prev = prev_id.and_then(|id| self.views.get(&id)).cloned().unwrap_or_default();
                let joined: Vec<Proc> = members.iter().filter(|m| !prev.contains(m)).copied().collect();
                let departed: Vec<Proc> = prev.iter().filter(|m| !members.contains(m)).copied().collect();
                let mut text = format!("view v{view} [{}]", procs(members));
                if !joined.is_empty() {
                    text += &format!("  +{}", procs(&joined));
                }
                if !departed.is_empty() {
                    text += &format!("  -{}", procs(&departed));
                }
                if !loading.is_empty() {
                    text += &format!("  loading {}", procs(loading));
                }
                if !recovered.is_empty() {
                    text += &format!("  recovered from disk {}", procs(recovered));
                }
                if let Some(p) = prev_id {
                    let sent = self.sent.get(&p).copied().unwrap_or(0);
                    let flush = self
                        .flushes
                        .get(&p)
                        .map(|f| format!(", flush {} ms", t.saturating_sub(*f) / 1_000_000));
                    text += &format!("   (v{p}: {sent} msgs{})", flush.unwrap_or_default());
                }
                self.line(t, text);
                self.views.insert(*view, members.clone());
                self.suspected.clear();
            }
            Ev::StateLoaded { view, applied, .. } => {
                self.line(t, format!("{who} loaded the state of v{view} ({applied} applied)"));
            }
            Ev::Blocked { reason } if reason == "flush" => {
                if let Some(v) = ev.p.and_then(|p| self.current.get(&p).copied()) {
                    self.flushes.entry(v).or_insert(t);
                }
            }
            Ev::Blocked { reason } => {
                self.line(t, format!("{who} blocked ({reason}): it cannot reach a majority of its view"));
            }
            Ev::Suspect { member } => {
                let Some(p) = ev.p else { return };
                if !self.suspected.insert(*member) {
                    return;
                }
                match (self.last_suspicion, self.lines.last_mut()) {
                    (Some((lt, lp)), Some(last)) if lt == t && lp == p => {
                        *last += &format!(" {}", show(*member))
                    }
                    _ => {
                        self.line(t, format!("{who} suspects {}", show(*member)));
                        self.last_suspicion = Some((t, p));
                    }
                }
            }
            Ev::Start { bootstrap: true } => self.line(t, format!("{who} starts and bootstraps the group")),
            Ev::Start { bootstrap: false } => self.line(t, format!("{who} starts and asks to join")),
            Ev::Excluded => {
                self.line(t, format!("{who} learns it was excluded; it re-joins as a new member"))
            }
            Ev::Left => self.line(t, format!("{who} left the group")),
            Ev::Crash => self.line(t, format!("{who} CRASHES")),
            Ev::Pause => self.line(t, format!("{who} is paused")),
            Ev::Resume => self.line(t, format!("{who} resumes")),
            Ev::Phase { name } => {
                self.line(t, format!("--- phase: {name} (faults stop, everything heals) ---"))
            }
            Ev::End => self.line(t, "--- end ---".to_string()),
            Ev::Digest { .. } | Ev::Durable { .. } => {}
        }
        if matches!(ev.ev, Ev::Crash | Ev::Excluded | Ev::Left) {
            if let Some(p) = ev.p {
                self.current.remove(&p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(node: u64) -> Proc {
        Proc { node, inc: 0 }
    }

    #[test]
    fn hash_depends_on_every_field() {
        let a = TraceEvent { t: 1, p: Some(p(1)), ev: Ev::Crash };
        let mut b = a.clone();
        b.t = 2;
        let h = |e: &TraceEvent| {
            let mut r = Recorder::new(false, false);
            let _ = r.record(e.clone());
            r.hash()
        };
        assert_ne!(h(&a), h(&b));
        assert_eq!(h(&a), h(&a.clone()));
    }

    #[test]
    fn restarted_lives_read_well() {
        assert_eq!(show(Proc { node: 3, inc: 0 }), "n3.0");
        assert_eq!(show(Proc { node: 3, inc: 2 }), "n3.2");
        assert_eq!(show(Proc { node: 3, inc: 1 << 32 }), "n3.r1");
        assert_eq!(show(Proc { node: 3, inc: (2 << 32) | 1 }), "n3.r2.1");
    }

    #[test]
    fn narration_tells_each_view_once() {
        let mut r = Recorder::new(true, true);
        let install = |node, view, members: Vec<Proc>| TraceEvent {
            t: 0,
            p: Some(p(node)),
            ev: Ev::Install { view, members, loading: Vec::new(), recovered: Vec::new() },
        };
        let _ = r.record(TraceEvent { t: 0, p: Some(p(0)), ev: Ev::Start { bootstrap: true } });
        let _ = r.record(install(0, 1, vec![p(0)]));
        r.note(5, || "hello".to_string());
        let lines = r.narrator.as_ref().map(|n| n.lines.clone()).unwrap_or_default();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[1].contains("view v1 [n0.0]"), "{lines:?}");
        assert_eq!(r.trace.as_ref().map(Vec::len), Some(2));
        assert_eq!(r.events, 2);
    }
}
