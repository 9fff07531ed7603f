//! The trace: what happened, as JSON lines (schema in `docs/trace-format.md`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};

/// One process life: a node and its incarnation. A restarted or re-joined node is a new `Proc`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Proc {
    /// Node id.
    pub node: u64,
    /// Incarnation.
    pub inc: u64,
}

/// Short form used in reports: `n<node>.<inc>`, e.g. `n3.0`.
impl fmt::Display for Proc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}.{}", self.node, self.inc)
    }
}

/// How a multicast is ordered (DESIGN §3 G7–G10). Every mode is FIFO per sender (G7); `causal`
/// adds G8, `total` G9, `safe` G9 and G10. Written in traces as `"fifo"`, `"causal"`, `"total"`
/// or `"safe"`; a `send` or `deliver` line without `order` is `fifo` (traces written before
/// orderings existed).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Per-sender order only.
    #[default]
    Fifo,
    /// After everything its sender had delivered or sent in its view before sending it.
    Causal,
    /// In one order shared by every process that delivers it (with the other total and safe
    /// messages).
    Total,
    /// Total, and uniform: if anyone delivers it in a view, every process that goes on to the
    /// next view delivers it too.
    Safe,
}

impl Order {
    /// Every mode.
    pub const ALL: [Order; 4] = [Order::Fifo, Order::Causal, Order::Total, Order::Safe];

    /// Whether the mode is in the shared total order (`total` and `safe`).
    pub fn is_total(self) -> bool {
        matches!(self, Order::Total | Order::Safe)
    }

    /// The name used in traces: `fifo`, `causal`, `total`, `safe`.
    pub fn name(self) -> &'static str {
        match self {
            Order::Fifo => "fifo",
            Order::Causal => "causal",
            Order::Total => "total",
            Order::Safe => "safe",
        }
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One line of a trace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TraceEvent {
    /// Time in nanoseconds (simulated time in the simulator; wall-clock in real runs, used only
    /// for ordering a single process's lines and for reports).
    pub t: u64,
    /// The process the event is about; `None` for harness-wide events (`phase`, `end`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<Proc>,
    /// What happened.
    #[serde(flatten)]
    pub ev: Ev,
}

/// The kinds of trace events. Serialized with an `"ev"` tag, e.g.
/// `{"t":5,"p":{"node":1,"inc":0},"ev":"install","view":3,"members":[...]}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Ev {
    /// The process began its life (first boot, restart, or re-join after exclusion).
    Start {
        /// It starts a new group instead of joining one.
        bootstrap: bool,
    },
    /// The process installed a view.
    Install {
        /// View id.
        view: u64,
        /// Members, oldest first.
        members: Vec<Proc>,
        /// The members that start this view without the group's application state and wait
        /// for a state transfer in it: new joiners, and members whose transfer in the previous
        /// view was cut off by this view change and restarts now. Omitted when empty (and in
        /// traces written before state transfer existed).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        loading: Vec<Proc>,
        /// Members that are restarted processes which spoke for their node's earlier life in
        /// the change that made this view (recovery from a data directory): each counts, for the
        /// majority of the previous view (G2), as the member of its node it replaced. Omitted
        /// when empty.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recovered: Vec<Proc>,
    },
    /// A process that installed `view` without being in its `loading` list reports the state
    /// of its replicated state machine at the view boundary: after everything it delivered in
    /// the previous view, before anything of `view`. Written right after the `install` line.
    Digest {
        /// The view just installed.
        view: u64,
        /// How many `total` and `safe` messages the state machine applied since the group
        /// began.
        applied: u64,
        /// The hash chain over their payload digests, in delivery order (see [`chain`]).
        hash: u64,
    },
    /// A process in the `loading` list of `view` finished loading the state transferred to it
    /// for `view` (the group's state at that view boundary).
    StateLoaded {
        /// The view it loaded state for: its current view.
        view: u64,
        /// `applied` of the loaded state.
        applied: u64,
        /// `hash` of the loaded state.
        hash: u64,
    },
    /// The process multicast a message in its current view.
    Send {
        /// The view it was sent in.
        view: u64,
        /// The sender's sequence number in that view (1, 2, ...).
        seq: u64,
        /// A 64-bit digest of the payload (FNV-1a).
        digest: u64,
        /// How it is to be ordered (`fifo` if absent).
        #[serde(default)]
        order: Order,
    },
    /// The process delivered a message.
    Deliver {
        /// The sender.
        sender: Proc,
        /// The view the message names as its sending view.
        view: u64,
        /// The sender's sequence number.
        seq: u64,
        /// Digest of the payload as delivered.
        digest: u64,
        /// How it was ordered (`fifo` if absent).
        #[serde(default)]
        order: Order,
    },
    /// Every member of the process's view `view` reported its replicated state stored up to
    /// `applied` (the state after that many total and safe messages): writes up to there are
    /// acknowledged as durable (`appendfsync always`), and no later state may lack them (G14).
    Durable {
        /// The view the report is about.
        view: u64,
        /// The position stored everywhere.
        applied: u64,
    },
    /// The process's failure detector suspects a member.
    Suspect {
        /// The suspected member.
        member: Proc,
    },
    /// The process blocked (`reason` is `flush` or `no_quorum`).
    Blocked {
        /// Why.
        reason: String,
    },
    /// The process learned it was excluded while alive; its life ends here (a `start` of the
    /// next incarnation follows).
    Excluded,
    /// The process left the group gracefully; its life ends here.
    Left,
    /// The process crashed (harness event); its life ends here.
    Crash,
    /// The process was paused (harness event).
    Pause,
    /// The process was resumed (harness event).
    Resume,
    /// The harness changed phase (`p` is `None`). `name` is `liveness` when faults stop and
    /// everything is healed: from then on G12 applies.
    Phase {
        /// Phase name.
        name: String,
    },
    /// The harness declares the run over (`p` is `None`); the checker's end-of-run checks
    /// (G12) judge the state at this point.
    End,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// FNV-1a, the payload digest used in traces.
pub fn digest(bytes: &[u8]) -> u64 {
    fnv1a(FNV_OFFSET, bytes)
}

/// One step of the replicated state machine's state hash, as reported in `digest` and
/// `state_loaded` lines: applying a message whose payload digest is `payload_digest` to a state
/// whose hash is `hash` gives the hash `chain(hash, payload_digest)` (and one more `applied`).
///
/// It is FNV-1a over the 8 little-endian bytes of `payload_digest`, starting from `hash` instead
/// of the FNV offset basis: for each byte `b`, `h = (h ^ b) * 0x100000001b3` (wrapping). The
/// initial state, before anything is applied, is `applied` 0 and `hash` 0, and only `total` and
/// `safe` deliveries ([`Order::is_total`]) are applied.
///
/// ```
/// use chorus_check::trace::{chain, digest};
///
/// let (m1, m2) = (digest(b"set x 1"), digest(b"set x 2"));
/// let after_two = chain(chain(0, m1), m2);
/// assert_ne!(after_two, chain(chain(0, m2), m1)); // the order matters
/// assert_eq!(chain(0, 0x0102_0304_0506_0708), 0x6410_0608_e636_9618);
/// ```
pub fn chain(hash: u64, payload_digest: u64) -> u64 {
    fnv1a(hash, &payload_digest.to_le_bytes())
}

fn fnv1a(start: u64, bytes: &[u8]) -> u64 {
    let mut h = start;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// A trace file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// Reading failed.
    #[error("trace line {line}: {source}")]
    Io {
        /// 1-based line number.
        line: usize,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A line is not a valid trace event.
    #[error("trace line {line}: {source}")]
    Json {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        #[source]
        source: serde_json::Error,
    },
}

impl TraceError {
    /// The 1-based line number the error is about.
    pub fn line(&self) -> usize {
        match self {
            TraceError::Io { line, .. } | TraceError::Json { line, .. } => *line,
        }
    }
}

/// Reads a JSON-lines trace. Blank lines are skipped (they still count for line numbers).
pub fn read_jsonl(reader: impl BufRead) -> Result<Vec<TraceEvent>, TraceError> {
    let mut events = Vec::new();
    for (i, text) in reader.lines().enumerate() {
        let line = i + 1;
        let text = text.map_err(|source| TraceError::Io { line, source })?;
        if text.trim().is_empty() {
            continue;
        }
        let ev = serde_json::from_str(&text).map_err(|source| TraceError::Json { line, source })?;
        events.push(ev);
    }
    Ok(events)
}

/// Writes one event as one JSON line.
pub fn write_jsonl(w: &mut impl Write, ev: &TraceEvent) -> io::Result<()> {
    serde_json::to_writer(&mut *w, ev)?;
    w.write_all(b"\n")
}

/// Merges traces written separately (one file per node in real runs) into one, ordered by `t`.
///
/// Each input keeps its own line order even where its `t` goes backwards, because per-process
/// order is what the checker relies on; ties go to the earlier input.
pub fn merge_by_time(traces: Vec<Vec<TraceEvent>>) -> Vec<TraceEvent> {
    let total = traces.iter().map(Vec::len).sum();
    let mut merged = Vec::with_capacity(total);
    let mut inputs: Vec<_> = traces.into_iter().map(Vec::into_iter).collect();
    let mut heads = BinaryHeap::new();
    let mut pending: Vec<Option<TraceEvent>> = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter_mut().enumerate() {
        let head = input.next();
        if let Some(ev) = &head {
            heads.push(Reverse((ev.t, i)));
        }
        pending.push(head);
    }
    while let Some(Reverse((_, i))) = heads.pop() {
        if let Some(ev) = pending[i].take() {
            merged.push(ev);
        }
        if let Some(next) = inputs[i].next() {
            heads.push(Reverse((next.t, i)));
            pending[i] = Some(next);
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(node: u64, inc: u64) -> Proc {
        Proc { node, inc }
    }

    fn every_kind() -> Vec<TraceEvent> {
        let a = Some(p(1, 0));
        let ev = |t, p, ev| TraceEvent { t, p, ev };
        vec![
            ev(1, a, Ev::Start { bootstrap: true }),
            ev(
                2,
                a,
                Ev::Install { view: 1, members: vec![p(1, 0), p(2, 3)], loading: vec![], recovered: vec![] },
            ),
            ev(
                2,
                a,
                Ev::Install {
                    view: 2,
                    members: vec![p(1, 0), p(2, 3)],
                    loading: vec![p(2, 3)],
                    recovered: vec![],
                },
            ),
            ev(2, a, Ev::Digest { view: 2, applied: 0, hash: 0 }),
            ev(2, a, Ev::StateLoaded { view: 2, applied: u64::MAX, hash: u64::MAX }),
            ev(3, a, Ev::Send { view: 1, seq: 1, digest: u64::MAX, order: Order::Fifo }),
            ev(3, a, Ev::Send { view: 1, seq: 2, digest: 1, order: Order::Causal }),
            ev(
                4,
                a,
                Ev::Deliver { sender: p(2, 3), view: 1, seq: 9, digest: digest(b"x"), order: Order::Total },
            ),
            ev(4, a, Ev::Deliver { sender: p(2, 3), view: 1, seq: 10, digest: 2, order: Order::Safe }),
            ev(5, a, Ev::Suspect { member: p(2, 3) }),
            ev(6, a, Ev::Blocked { reason: "flush".to_owned() }),
            ev(7, a, Ev::Excluded),
            ev(8, a, Ev::Left),
            ev(9, a, Ev::Crash),
            ev(10, a, Ev::Pause),
            ev(11, a, Ev::Resume),
            ev(12, None, Ev::Phase { name: "liveness".to_owned() }),
            ev(u64::MAX, None, Ev::End),
        ]
    }

    #[test]
    fn every_event_kind_round_trips_through_jsonl() {
        let events = every_kind();
        let mut buf = Vec::new();
        for ev in &events {
            write_jsonl(&mut buf, ev).unwrap();
        }
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(text.lines().count(), events.len());
        assert_eq!(read_jsonl(text.as_bytes()).unwrap(), events);
    }

    #[test]
    fn the_wire_shape_is_flat_and_tagged() {
        let send = Ev::Send { view: 3, seq: 2, digest: 7, order: Order::Causal };
        let ev = TraceEvent { t: 5, p: Some(p(1, 0)), ev: send };
        let line = serde_json::to_string(&ev).unwrap();
        assert_eq!(
            line,
            r#"{"t":5,"p":{"node":1,"inc":0},"ev":"send","view":3,"seq":2,"digest":7,"order":"causal"}"#
        );
        let end = TraceEvent { t: 9, p: None, ev: Ev::End };
        assert_eq!(serde_json::to_string(&end).unwrap(), r#"{"t":9,"ev":"end"}"#);
    }

    #[test]
    fn lines_without_an_order_are_fifo() {
        let send = r#"{"t":5,"p":{"node":1,"inc":0},"ev":"send","view":3,"seq":2,"digest":7}"#;
        let deliver = r#"{"t":6,"p":{"node":2,"inc":0},"ev":"deliver","sender":{"node":1,"inc":0},"view":3,"seq":2,"digest":7}"#;
        let events = read_jsonl(format!("{send}\n{deliver}\n").as_bytes()).unwrap();
        assert_eq!(events[0].ev, Ev::Send { view: 3, seq: 2, digest: 7, order: Order::Fifo });
        assert_eq!(
            events[1].ev,
            Ev::Deliver { sender: p(1, 0), view: 3, seq: 2, digest: 7, order: Order::Fifo }
        );
    }

    #[test]
    fn installs_without_loading_read_and_write_as_before() {
        let old = r#"{"t":5,"p":{"node":1,"inc":0},"ev":"install","view":3,"members":[{"node":1,"inc":0}]}"#;
        let events = read_jsonl(old.as_bytes()).unwrap();
        assert_eq!(
            events[0].ev,
            Ev::Install { view: 3, members: vec![p(1, 0)], loading: vec![], recovered: vec![] }
        );
        assert_eq!(serde_json::to_string(&events[0]).unwrap(), old);

        let new = TraceEvent {
            t: 5,
            p: Some(p(1, 0)),
            ev: Ev::Install {
                view: 3,
                members: vec![p(1, 0), p(2, 0)],
                loading: vec![p(2, 0)],
                recovered: vec![],
            },
        };
        let line = serde_json::to_string(&new).unwrap();
        assert!(line.ends_with(r#""loading":[{"node":2,"inc":0}]}"#), "{line}");
    }

    #[test]
    fn state_lines_have_their_wire_shape() {
        let digest = TraceEvent { t: 5, p: Some(p(1, 0)), ev: Ev::Digest { view: 3, applied: 2, hash: 9 } };
        assert_eq!(
            serde_json::to_string(&digest).unwrap(),
            r#"{"t":5,"p":{"node":1,"inc":0},"ev":"digest","view":3,"applied":2,"hash":9}"#
        );
        let loaded =
            TraceEvent { t: 6, p: Some(p(2, 0)), ev: Ev::StateLoaded { view: 3, applied: 2, hash: 9 } };
        assert_eq!(
            serde_json::to_string(&loaded).unwrap(),
            r#"{"t":6,"p":{"node":2,"inc":0},"ev":"state_loaded","view":3,"applied":2,"hash":9}"#
        );
        let missing_hash = r#"{"t":6,"p":{"node":2,"inc":0},"ev":"digest","view":3,"applied":2}"#;
        assert_eq!(read_jsonl(missing_hash.as_bytes()).unwrap_err().line(), 1);
    }

    #[test]
    fn chain_is_fnv1a_over_the_digest_bytes_from_the_state() {
        // From the FNV offset basis, chaining is exactly FNV-1a of the 8 little-endian bytes.
        let d: u64 = 0x1122_3344_5566_7788;
        assert_eq!(chain(FNV_OFFSET, d), digest(&d.to_le_bytes()));
        // Order-sensitive, and every step changes the hash.
        let (x, y) = (digest(b"x"), digest(b"y"));
        assert_ne!(chain(chain(0, x), y), chain(chain(0, y), x));
        assert_ne!(chain(0, x), 0);
        assert_ne!(chain(chain(0, x), x), chain(0, x));
    }

    #[test]
    fn orders_are_snake_case_and_unknown_ones_are_rejected() {
        for order in Order::ALL {
            let json = serde_json::to_string(&order).unwrap();
            assert_eq!(json, format!("\"{order}\""));
            assert_eq!(serde_json::from_str::<Order>(&json).unwrap(), order);
        }
        let bad = r#"{"t":5,"p":{"node":1,"inc":0},"ev":"send","view":3,"seq":2,"digest":7,"order":"Total"}"#;
        assert_eq!(read_jsonl(bad.as_bytes()).unwrap_err().line(), 1);
    }

    #[test]
    fn read_errors_name_the_line() {
        let text = "{\"t\":1,\"ev\":\"end\"}\n\n{\"t\":2,\"ev\":\"nonsense\"}\n";
        let err = read_jsonl(text.as_bytes()).unwrap_err();
        assert_eq!(err.line(), 3);
        assert!(err.to_string().starts_with("trace line 3:"), "{err}");

        let missing_field = "{\"t\":1,\"p\":{\"node\":1,\"inc\":0},\"ev\":\"send\",\"view\":1}";
        assert_eq!(read_jsonl(missing_field.as_bytes()).unwrap_err().line(), 1);
    }

    #[test]
    fn read_reports_invalid_utf8_with_its_line() {
        let bytes: &[u8] = b"{\"t\":1,\"ev\":\"end\"}\n\xff\n";
        let err = read_jsonl(bytes).unwrap_err();
        assert!(matches!(err, TraceError::Io { line: 2, .. }), "{err}");
    }

    #[test]
    fn merge_orders_by_time_and_keeps_each_input_in_order() {
        let ev = |t, node| TraceEvent { t, p: Some(p(node, 0)), ev: Ev::Pause };
        // Input 0 has a clock step backwards at its third line: its own order still wins.
        let a = vec![ev(1, 1), ev(4, 1), ev(2, 1)];
        let b = vec![ev(2, 2), ev(3, 2), ev(4, 2)];
        let merged = merge_by_time(vec![a, b]);
        let order: Vec<(u64, u64)> = merged.iter().map(|e| (e.t, e.p.map_or(0, |p| p.node))).collect();
        assert_eq!(order, [(1, 1), (2, 2), (3, 2), (4, 1), (2, 1), (4, 2)]);
    }

    #[test]
    fn proc_displays_compactly() {
        assert_eq!(p(3, 1).to_string(), "n3.1");
    }
}
