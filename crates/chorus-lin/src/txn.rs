//! Strict serializability of list-append transactions, by Elle's method (Kingsbury & Alvaro,
//! "Elle: Inferring Isolation Anomalies from Experimental Observations", VLDB 2020).
//!
//! A transaction is a list of micro-operations on Redis lists, run in one MULTI/EXEC: appends
//! (RPUSH of one unique element) and reads (LRANGE 0 -1). Because every appended element is
//! unique and a list only grows, every read names the writer of each element it holds, and the
//! longest read of a key gives the order of the appends it saw (every other read must be a
//! prefix of it). From that come the dependencies between transactions:
//!
//! * **ww**: the appender of an element precedes the appender of the next one in the key's order;
//! * **wr**: the appender of a read's last element precedes the reader;
//! * **rw** (anti-dependency): a reader that saw `m` elements precedes the appender of element
//!   `m + 1`, which it did not see;
//! * **rt** (real time): a transaction that completed before another was invoked precedes it
//!   (a transitive reduction, built by a sweep over the history).
//!
//! A cycle in that graph is an anomaly: only ww edges is G0, ww and wr is G1c, one rw is G-single,
//! more is G2; with an rt edge in it, the history is serializable but not strictly so (real
//! time violated). Besides cycles: a read that is not a prefix of the key's longest read
//! (incompatible order), an element no transaction appended or only a failed one did (aborted
//! read, G1a), and a transaction that does not see its own earlier appends (internal).
//!
//! Transactions of unknown outcome (`info`, or no completion) are in the graph through the
//! elements others saw of them, with no real-time edge out of them (they may have taken effect
//! at any later time); failed ones are not in it.
//!
//! ## Format
//!
//! JSON lines in real-time order, one per event, like the single-object histories:
//!
//! ```text
//! {"process":1,"type":"invoke","f":"txn","value":[["append","t0","1-1"],["r","t1",null]]}
//! {"process":1,"type":"ok","f":"txn","value":[["append","t0","1-1"],["r","t1",["2-1"]]]}
//! ```
//!
//! `type` is `invoke`, `ok`, `fail` or `info`; micro-operations are `["append", key, element]`
//! and `["r", key, list or null]` (the list on `ok`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;

use serde::Deserialize;

use crate::error::{Error, Result};

/// One micro-operation as written in the history.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
enum RawMop {
    Append(String, String, String),
    Read(String, String, Option<Vec<String>>),
}

#[derive(Clone, Debug, Deserialize)]
struct Line {
    process: u64,
    #[serde(rename = "type")]
    kind: String,
    f: String,
    value: Vec<RawMop>,
}

/// A micro-operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mop {
    /// RPUSH of one unique element.
    Append {
        /// The list.
        key: String,
        /// The element (unique in the history).
        elem: String,
    },
    /// LRANGE 0 -1.
    Read {
        /// The list.
        key: String,
        /// What it held; `None` unless the transaction completed `ok`.
        list: Option<Vec<String>>,
    },
}

/// How a transaction ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Committed, with these results.
    Ok,
    /// Certainly not committed.
    Fail,
    /// Unknown (timed out, no answer).
    Unknown,
}

/// A transaction of the history.
#[derive(Clone, Debug)]
pub struct Txn {
    /// The line of its invocation (1-based).
    pub line: u64,
    /// The client process.
    pub process: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// Its micro-operations (with the reads' results when `ok`).
    pub mops: Vec<Mop>,
    invoked_at: usize,
    completed_at: Option<usize>,
}

/// Parses a transaction history (JSON lines; see the module docs).
pub fn parse(text: &str) -> Result<Vec<Txn>> {
    let mut txns: Vec<Txn> = Vec::new();
    let mut open: HashMap<u64, usize> = HashMap::new();
    let mut event = 0usize;
    for (i, raw) in text.lines().enumerate() {
        let line = i as u64 + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(trimmed).map_err(|e| Error::parse(line, e.to_string()))?;
        if l.f != "txn" {
            return Err(Error::parse(
                line,
                format!("f is {:?}: a transaction history holds only \"txn\"", l.f),
            ));
        }
        event += 1;
        let mops = l
            .value
            .into_iter()
            .map(|m| match m {
                RawMop::Append(f, key, elem) if f == "append" => Ok(Mop::Append { key, elem }),
                RawMop::Read(f, key, list) if f == "r" => Ok(Mop::Read { key, list }),
                RawMop::Append(f, ..) | RawMop::Read(f, ..) => {
                    Err(Error::parse(line, format!("unknown micro-operation {f:?} (append or r)")))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        match l.kind.as_str() {
            "invoke" => {
                if open.contains_key(&l.process) {
                    return Err(Error::parse(
                        line,
                        format!("process {} invokes while one is in flight", l.process),
                    ));
                }
                open.insert(l.process, txns.len());
                txns.push(Txn {
                    line,
                    process: l.process,
                    outcome: Outcome::Unknown,
                    mops,
                    invoked_at: event,
                    completed_at: None,
                });
            }
            kind @ ("ok" | "fail" | "info") => {
                let Some(idx) = open.remove(&l.process) else {
                    return Err(Error::parse(
                        line,
                        format!("process {} completes with nothing in flight", l.process),
                    ));
                };
                let t = &mut txns[idx];
                if kind == "ok" {
                    if mops.len() != t.mops.len() {
                        return Err(Error::parse(
                            line,
                            "the completion's micro-operations differ from the invocation's",
                        ));
                    }
                    t.outcome = Outcome::Ok;
                    t.mops = mops;
                    t.completed_at = Some(event);
                } else if kind == "fail" {
                    t.outcome = Outcome::Fail;
                }
            }
            other => return Err(Error::parse(line, format!("unknown type {other:?}"))),
        }
    }
    Ok(txns)
}

/// A dependency between two transactions.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dep {
    /// Write-write: appended the element before.
    Ww,
    /// Write-read: appended what the other read last.
    Wr,
    /// Read-write: read before the other's append.
    Rw,
    /// Real time: completed before the other was invoked.
    Rt,
}

impl fmt::Display for Dep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dep::Ww => "ww",
            Dep::Wr => "wr",
            Dep::Rw => "rw",
            Dep::Rt => "rt",
        })
    }
}

/// Something that is not strictly serializable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anomaly {
    /// A cycle of dependencies.
    Cycle {
        /// G0, G1c, G-single, G2, or real-time.
        kind: &'static str,
        /// (line of the transaction's invocation, its dependency on the next), round the cycle.
        steps: Vec<(u64, Dep)>,
    },
    /// Two reads of a key that are not prefixes of one another.
    IncompatibleOrder {
        /// The list.
        key: String,
        /// One read.
        a: Vec<String>,
        /// The key's longest read.
        b: Vec<String>,
    },
    /// An element read that no transaction appended, or only a failed one (G1a).
    AbortedRead {
        /// The list.
        key: String,
        /// The element.
        elem: String,
        /// The reader's invocation line.
        reader_line: u64,
    },
    /// An element appended twice (the workload promises unique elements).
    DuplicateAppend {
        /// The element.
        elem: String,
    },
    /// A transaction that did not see its own earlier append, or saw one too early.
    Internal {
        /// Its invocation line.
        line: u64,
        /// The list.
        key: String,
    },
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Anomaly::Cycle { kind, steps } => {
                write!(f, "{kind} cycle:")?;
                for (line, dep) in steps {
                    write!(f, " txn@{line} -{dep}->")?;
                }
                if let Some((first, _)) = steps.first() {
                    write!(f, " txn@{first}")?;
                }
                Ok(())
            }
            Anomaly::IncompatibleOrder { key, a, b } => {
                write!(f, "incompatible order on {key}: {a:?} and {b:?} are not prefixes of one another")
            }
            Anomaly::AbortedRead { key, elem, reader_line } => {
                write!(f, "aborted read (G1a): txn@{reader_line} read {elem:?} in {key}, which no committed or unknown txn appended")
            }
            Anomaly::DuplicateAppend { elem } => write!(f, "element {elem:?} appended twice"),
            Anomaly::Internal { line, key } => {
                write!(f, "internal: txn@{line} read {key} inconsistently with its own appends")
            }
        }
    }
}

/// The verdict on a transaction history.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Committed transactions.
    pub ok: usize,
    /// Transactions of unknown outcome.
    pub unknown: usize,
    /// Failed transactions.
    pub failed: usize,
    /// Keys read or appended.
    pub keys: usize,
    /// Edges of the dependency graph, by kind.
    pub edges: BTreeMap<Dep, usize>,
    /// What is wrong (nothing for a strictly serializable history).
    pub anomalies: Vec<Anomaly>,
}

impl Report {
    /// No anomaly.
    pub fn is_ok(&self) -> bool {
        self.anomalies.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for a in &self.anomalies {
            writeln!(f, "{a}")?;
        }
        let edges: Vec<String> = self.edges.iter().map(|(d, n)| format!("{d} {n}")).collect();
        write!(
            f,
            "{} txns ({} ok, {} unknown, {} failed) on {} keys; dependencies: {}; {}",
            self.ok + self.unknown + self.failed,
            self.ok,
            self.unknown,
            self.failed,
            self.keys,
            if edges.is_empty() { "none".to_string() } else { edges.join(", ") },
            if self.is_ok() {
                "no cycle: strictly serializable".to_string()
            } else {
                format!("{} anomalies: NOT strictly serializable", self.anomalies.len())
            }
        )
    }
}

/// Checks a parsed transaction history.
pub fn check(txns: &[Txn]) -> Report {
    let mut r = Report::default();
    for t in txns {
        match t.outcome {
            Outcome::Ok => r.ok += 1,
            Outcome::Unknown => r.unknown += 1,
            Outcome::Fail => r.failed += 1,
        }
    }
    // Who appended each element (committed or unknown: a failed one appended nothing).
    let mut writer: HashMap<&str, usize> = HashMap::new();
    let mut keys: BTreeSet<&str> = BTreeSet::new();
    for (i, t) in txns.iter().enumerate() {
        for m in &t.mops {
            match m {
                Mop::Append { key, elem } => {
                    keys.insert(key);
                    if t.outcome != Outcome::Fail && writer.insert(elem, i).is_some() {
                        r.anomalies.push(Anomaly::DuplicateAppend { elem: elem.clone() });
                    }
                }
                Mop::Read { key, .. } => {
                    keys.insert(key);
                }
            }
        }
    }
    r.keys = keys.len();
    // Internal consistency, and the reads of committed transactions by key.
    let mut reads: BTreeMap<&str, Vec<(usize, &[String])>> = BTreeMap::new();
    for (i, t) in txns.iter().enumerate() {
        if t.outcome != Outcome::Ok {
            continue;
        }
        let mut own: HashMap<&str, Vec<&str>> = HashMap::new();
        for m in &t.mops {
            match m {
                Mop::Append { key, elem } => own.entry(key).or_default().push(elem),
                Mop::Read { key, list: Some(list) } => {
                    let mine = own.get(key.as_str()).map_or(&[][..], Vec::as_slice);
                    let tail_ok = list.len() >= mine.len()
                        && list[list.len() - mine.len()..]
                            .iter()
                            .map(String::as_str)
                            .eq(mine.iter().copied());
                    if !tail_ok {
                        r.anomalies.push(Anomaly::Internal { line: t.line, key: key.clone() });
                    }
                    // Only what others appended before: the part before the txn's own.
                    reads.entry(key).or_default().push((i, &list[..list.len().saturating_sub(mine.len())]));
                    if !mine.is_empty() {
                        // The txn's own appends follow what it read: it is the writer of those
                        // positions, and its read of the rest orders it after their writers.
                        reads.entry(key).or_default().push((i, list.as_slice()));
                    }
                }
                Mop::Read { .. } => {}
            }
        }
    }
    let n = txns.len();
    let mut adj: Vec<Vec<(usize, Dep)>> = vec![Vec::new(); n];
    let mut add = |r: &mut Report, a: usize, b: usize, d: Dep| {
        if a != b {
            adj[a].push((b, d));
            *r.edges.entry(d).or_default() += 1;
        }
    };
    for (key, rs) in &reads {
        // The key's order: the longest read; every other must be a prefix of it.
        let Some(longest) = rs.iter().map(|(_, l)| *l).max_by_key(|l| l.len()) else { continue };
        let mut consistent = true;
        for (_, l) in rs {
            if longest[..l.len()] != **l {
                r.anomalies.push(Anomaly::IncompatibleOrder {
                    key: key.to_string(),
                    a: l.to_vec(),
                    b: longest.to_vec(),
                });
                consistent = false;
                break;
            }
        }
        for (reader, l) in rs {
            for e in l.iter() {
                if !writer.contains_key(e.as_str()) {
                    r.anomalies.push(Anomaly::AbortedRead {
                        key: key.to_string(),
                        elem: e.clone(),
                        reader_line: txns[*reader].line,
                    });
                }
            }
        }
        if !consistent {
            continue;
        }
        let w = |e: &String| writer.get(e.as_str()).copied();
        for pair in longest.windows(2) {
            if let (Some(a), Some(b)) = (w(&pair[0]), w(&pair[1])) {
                add(&mut r, a, b, Dep::Ww);
            }
        }
        for (reader, l) in rs {
            if let Some(last) = l.last().and_then(w) {
                add(&mut r, last, *reader, Dep::Wr);
            }
            if let Some(next) = longest.get(l.len()).and_then(w) {
                add(&mut r, *reader, next, Dep::Rw);
            }
        }
    }
    // Real time: a sweep in the order of events, keeping the committed transactions not yet
    // known to precede another committed one (a transitive reduction).
    let mut order: Vec<(usize, bool, usize)> = Vec::new(); // (event, is completion, txn)
    for (i, t) in txns.iter().enumerate() {
        if t.outcome == Outcome::Fail {
            continue;
        }
        order.push((t.invoked_at, false, i));
        if let Some(c) = t.completed_at {
            order.push((c, true, i));
        }
    }
    order.sort_unstable();
    let mut frontier: BTreeSet<usize> = BTreeSet::new();
    let mut preds: HashMap<usize, Vec<usize>> = HashMap::new();
    for (_, done, i) in order {
        if done {
            for p in preds.remove(&i).unwrap_or_default() {
                frontier.remove(&p);
            }
            frontier.insert(i);
        } else {
            let ps: Vec<usize> = frontier.iter().copied().collect();
            for &p in &ps {
                add(&mut r, p, i, Dep::Rt);
            }
            preds.insert(i, ps);
        }
    }
    for comp in sccs(&adj) {
        if comp.len() > 1 {
            if let Some(steps) = cycle_in(&adj, &comp) {
                let rw = steps.iter().filter(|(_, d)| *d == Dep::Rw).count();
                let rt = steps.iter().any(|(_, d)| *d == Dep::Rt);
                let wr = steps.iter().any(|(_, d)| *d == Dep::Wr);
                let kind = match (rt, rw, wr) {
                    (true, ..) => "real-time (strict serializability)",
                    (false, 0, false) => "G0",
                    (false, 0, true) => "G1c",
                    (false, 1, _) => "G-single",
                    _ => "G2",
                };
                let steps = steps.into_iter().map(|(t, d)| (txns[t].line, d)).collect();
                r.anomalies.push(Anomaly::Cycle { kind, steps });
            }
        }
    }
    r
}

/// Strongly connected components (Tarjan's, iterative: histories have many transactions).
fn sccs(adj: &[Vec<(usize, Dep)>]) -> Vec<Vec<usize>> {
    let n = adj.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    let mut next = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work: Vec<(usize, usize)> = vec![(root, 0)];
        while let Some(&mut (v, ref mut edge)) = work.last_mut() {
            if *edge == 0 && index[v] == usize::MAX {
                index[v] = next;
                low[v] = next;
                next += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&(w, _)) = adj[v].get(*edge) {
                *edge += 1;
                if index[w] == usize::MAX {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut comp = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                out.push(comp);
            }
        }
    }
    out
}

/// A shortest cycle through the component's first node, inside the component (BFS).
fn cycle_in(adj: &[Vec<(usize, Dep)>], comp: &[usize]) -> Option<Vec<(usize, Dep)>> {
    let inside: HashSet<usize> = comp.iter().copied().collect();
    let start = *comp.first()?;
    let mut prev: HashMap<usize, (usize, Dep)> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &(w, d) in &adj[v] {
            if !inside.contains(&w) {
                continue;
            }
            if w == start {
                // Walk back from v to the start.
                let mut steps = vec![(v, d)];
                let mut at = v;
                while at != start {
                    let (p, pd) = prev[&at];
                    steps.push((p, pd));
                    at = p;
                }
                steps.reverse();
                return Some(steps);
            }
            if let std::collections::hash_map::Entry::Vacant(e) = prev.entry(w) {
                e.insert((v, d));
                queue.push_back(w);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn run(lines: &[&str]) -> Report {
        check(&parse(&lines.join("\n")).unwrap())
    }

    #[test]
    fn a_serial_history_has_no_anomaly() {
        let r = run(&[
            r#"{"process":1,"type":"invoke","f":"txn","value":[["append","x","1"],["r","y",null]]}"#,
            r#"{"process":1,"type":"ok","f":"txn","value":[["append","x","1"],["r","y",[]]]}"#,
            r#"{"process":2,"type":"invoke","f":"txn","value":[["r","x",null],["append","y","2"],["r","y",null]]}"#,
            r#"{"process":2,"type":"ok","f":"txn","value":[["r","x",["1"]],["append","y","2"],["r","y",["2"]]]}"#,
            r#"{"process":3,"type":"invoke","f":"txn","value":[["r","x",null],["r","y",null]]}"#,
            r#"{"process":3,"type":"ok","f":"txn","value":[["r","x",["1"]],["r","y",["2"]]]}"#,
        ]);
        assert!(r.is_ok(), "{r}");
        assert_eq!(r.ok, 3);
        assert!(r.edges.get(&Dep::Wr).is_some_and(|&n| n >= 2), "{r}");
        assert!(r.edges.contains_key(&Dep::Rw) && r.edges.contains_key(&Dep::Rt), "{r}");
    }

    #[test]
    fn each_reading_the_others_write_is_g1c() {
        // Concurrent: T1 appends x and reads y holding T2's append; T2 the other way round.
        let r = run(&[
            r#"{"process":1,"type":"invoke","f":"txn","value":[["append","x","1"],["r","y",null]]}"#,
            r#"{"process":2,"type":"invoke","f":"txn","value":[["append","y","2"],["r","x",null]]}"#,
            r#"{"process":1,"type":"ok","f":"txn","value":[["append","x","1"],["r","y",["2"]]]}"#,
            r#"{"process":2,"type":"ok","f":"txn","value":[["append","y","2"],["r","x",["1"]]]}"#,
        ]);
        assert!(matches!(&r.anomalies[..], [Anomaly::Cycle { kind: "G1c", .. }]), "{r}");
    }

    #[test]
    fn write_skew_is_g2() {
        // Each reads the other's key empty, then appends to its own: two anti-dependencies.
        let r = run(&[
            r#"{"process":1,"type":"invoke","f":"txn","value":[["r","x",null],["append","y","1"]]}"#,
            r#"{"process":2,"type":"invoke","f":"txn","value":[["r","y",null],["append","x","2"]]}"#,
            r#"{"process":1,"type":"ok","f":"txn","value":[["r","x",[]],["append","y","1"]]}"#,
            r#"{"process":2,"type":"ok","f":"txn","value":[["r","y",[]],["append","x","2"]]}"#,
            r#"{"process":3,"type":"invoke","f":"txn","value":[["r","x",null],["r","y",null]]}"#,
            r#"{"process":3,"type":"ok","f":"txn","value":[["r","x",["2"]],["r","y",["1"]]]}"#,
        ]);
        assert!(matches!(&r.anomalies[..], [Anomaly::Cycle { kind: "G2", .. }]), "{r}");
    }

    #[test]
    fn a_stale_read_after_a_commit_violates_real_time() {
        // T1 commits x=[1]; T2, invoked after, still reads x empty: serializable (T2 first)
        // but not strictly.
        let r = run(&[
            r#"{"process":1,"type":"invoke","f":"txn","value":[["append","x","1"]]}"#,
            r#"{"process":1,"type":"ok","f":"txn","value":[["append","x","1"]]}"#,
            r#"{"process":2,"type":"invoke","f":"txn","value":[["r","x",null]]}"#,
            r#"{"process":2,"type":"ok","f":"txn","value":[["r","x",[]]]}"#,
            r#"{"process":3,"type":"invoke","f":"txn","value":[["r","x",null]]}"#,
            r#"{"process":3,"type":"ok","f":"txn","value":[["r","x",["1"]]]}"#,
        ]);
        assert!(
            matches!(&r.anomalies[..], [Anomaly::Cycle { kind: "real-time (strict serializability)", steps }] if steps.len() == 2),
            "{r}"
        );
    }

    #[test]
    fn orders_aborted_reads_and_own_writes_are_checked() {
        let r = run(&[
            r#"{"process":1,"type":"invoke","f":"txn","value":[["append","x","1"]]}"#,
            r#"{"process":1,"type":"fail","f":"txn","value":[["append","x","1"]]}"#,
            r#"{"process":2,"type":"invoke","f":"txn","value":[["r","x",null]]}"#,
            r#"{"process":2,"type":"ok","f":"txn","value":[["r","x",["1"]]]}"#,
        ]);
        assert!(matches!(&r.anomalies[..], [Anomaly::AbortedRead { .. }]), "{r}");
        let r = run(&[
            r#"{"process":1,"type":"invoke","f":"txn","value":[["append","x","1"],["append","x","2"]]}"#,
            r#"{"process":1,"type":"info","f":"txn","value":[["append","x","1"],["append","x","2"]]}"#,
            r#"{"process":2,"type":"invoke","f":"txn","value":[["r","x",null]]}"#,
            r#"{"process":2,"type":"ok","f":"txn","value":[["r","x",["1","2"]]]}"#,
            r#"{"process":3,"type":"invoke","f":"txn","value":[["r","x",null]]}"#,
            r#"{"process":3,"type":"ok","f":"txn","value":[["r","x",["2"]]]}"#,
        ]);
        assert!(matches!(&r.anomalies[..], [Anomaly::IncompatibleOrder { .. }]), "{r}");
        let r = run(&[
            r#"{"process":1,"type":"invoke","f":"txn","value":[["append","x","1"],["r","x",null]]}"#,
            r#"{"process":1,"type":"ok","f":"txn","value":[["append","x","1"],["r","x",[]]]}"#,
        ]);
        assert!(matches!(&r.anomalies[..], [Anomaly::Internal { .. }]), "{r}");
        // An unknown transaction seen by others is ordered by what they saw: no anomaly.
        let r = run(&[
            r#"{"process":1,"type":"invoke","f":"txn","value":[["append","x","1"]]}"#,
            r#"{"process":1,"type":"info","f":"txn","value":[["append","x","1"]]}"#,
            r#"{"process":2,"type":"invoke","f":"txn","value":[["r","x",null]]}"#,
            r#"{"process":2,"type":"ok","f":"txn","value":[["r","x",["1"]]]}"#,
        ]);
        assert!(r.is_ok(), "{r}");
    }

    #[test]
    fn bad_lines_name_their_line() {
        let e = parse("{\"process\":1,\"type\":\"invoke\",\"f\":\"append\",\"value\":[]}").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }
}
