//! # chorus-lin: a linearizability checker
//!
//! Checks recorded client histories against a sequential specification, one key at a time
//! (P-compositionality: a history is linearizable iff the history of every key is), with
//! Wing & Gong's search plus Lowe's memoization of (set of linearized operations, state), in the
//! manner of Porcupine. The search has a [`Budget`]; past it the verdict is
//! [`Verdict::Unknown`] rather than a search that runs forever.
//!
//! Models ([`ModelKind`]):
//! * `register` / `cas`: a register starting nil, with `read`, `write` and compare-and-set
//!   (Redis GET/SET; the Jepsen etcd histories);
//! * `kv`: a string per key with `get` (a missing key reads as `""`), `put` and `append` as
//!   string concatenation (the Porcupine kv histories);
//! * `list`: a Redis list per key, starting empty, with `append` (RPUSH of one element) and
//!   `read-list` (LRANGE 0 -1);
//! * `auto` (the default): per key, `list` if the key has appends or read-lists, else
//!   `register`.
//!
//! Every operation ends `ok` (it happened, with this result), `fail` (it certainly did not
//! happen: it is dropped) or `info`/never (unknown: it may take effect at any time after its
//! invocation, or never, and its result is unconstrained; it counts as completing after
//! everything else). Besides linearizability, [`lost_appends`] checks that every acknowledged
//! append is in the final reads.
//!
//! [`txn`] judges multi-key transactions of list appends and reads (a separate history,
//! `chorus-lin txn`) for strict serializability, by Elle's method: dependency cycles rather
//! than a search.
//!
//! ## The JSONL history format
//!
//! One JSON object per line, one line per event, **in real-time order**: a harness writes the
//! `invoke` line before sending the request and the completion line after the answer arrives
//! (the order of lines is what is checked; `time_ns` is informational). Fields:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `process` | integer | the client; at most one operation in flight per process (after an `info`, use a new process number, as Jepsen does) |
//! | `type` | `"invoke"` \| `"ok"` \| `"fail"` \| `"info"` | invocation; happened; did not happen; unknown |
//! | `f` | `"write"` \| `"read"` \| `"append"` \| `"read-list"` | SET, GET, RPUSH of one element, LRANGE 0 -1 |
//! | `key` | string | the key (may be left out on completions; absent everywhere for a single object) |
//! | `value` | string \| null \| array of strings | invoke of `write`/`append`: the value; `ok` of `read`: the value read, `null` for nil; `ok` of `read-list`: the elements; otherwise `null` or absent |
//! | `time_ns` | integer, optional | wall clock, ignored by the checker |
//!
//! Unknown fields are ignored. An invocation without a completion by the end of the file is
//! unknown. Integer values are accepted and read as their decimal text. Example:
//!
//! ```text
//! {"process":3,"type":"invoke","f":"write","key":"k1","value":"5","time_ns":100}
//! {"process":4,"type":"invoke","f":"read","key":"k1","value":null,"time_ns":101}
//! {"process":3,"type":"ok","f":"write","key":"k1","value":"5","time_ns":150}
//! {"process":4,"type":"ok","f":"read","key":"k1","value":"5","time_ns":160}
//! {"process":5,"type":"invoke","f":"append","key":"l1","value":"x1"}
//! {"process":5,"type":"info","f":"append","key":"l1"}
//! {"process":6,"type":"invoke","f":"read-list","key":"l1"}
//! {"process":6,"type":"ok","f":"read-list","key":"l1","value":["x1"]}
//! ```
//!
//! [`jsonl::Event`] is this line as a serde type, [`jsonl::write_event`] writes one, and
//! [`jsonl::history_from_events`] builds a [`History`] from events recorded in memory.
//!
//! ## Use
//!
//! ```
//! use chorus_lin::{check_history, jsonl, lost_appends, CheckOptions, Verdict};
//!
//! let text = r#"
//! {"process":1,"type":"invoke","f":"append","key":"k","value":"a"}
//! {"process":1,"type":"ok","f":"append","key":"k"}
//! {"process":2,"type":"invoke","f":"read-list","key":"k"}
//! {"process":2,"type":"ok","f":"read-list","key":"k","value":["a"]}
//! "#;
//! let history = jsonl::parse(text)?;
//! let report = check_history(&history, &CheckOptions::default())?;
//! assert_eq!(report.verdict(), Verdict::Linearizable, "{report}");
//! assert!(lost_appends(&history).is_ok());
//! # Ok::<(), chorus_lin::Error>(())
//! ```
//!
//! Other formats: [`jepsen`] (Jepsen log lines of one register) and [`edn`] (one EDN map per
//! line); [`verdicts`] reads the `verdicts.tsv` files of the validation data in
//! `testdata/linearizability/`.
//!
//! ## The search, and what makes it fast
//!
//! [`wgl::search`] is Wing & Gong's depth-first search over a doubly linked list of call and
//! return entries, with Lowe's memo of visited (linearized set, state) pairs (the set kept as
//! "the first k operations by return order, plus a few": small even for 100,000 operations).
//! On top of it, each rule keeping every linearization:
//! * read-only operations are linearized as soon as the state allows, without alternatives;
//! * the other candidates are tried earliest deadline first, and of interchangeable ones
//!   (writes of one value) only the first is tried;
//! * a state that some pending read needs and that can never come back (a value written once,
//!   a list, which only grows) is never left while that read is pending;
//! * the lists reads returned fix the order of appends of unique values; unread values of a
//!   register are one state;
//! * intervals are narrowed by what reads reveal, and unknown operations that no read saw are
//!   dropped (see `check.rs`).
//!
//! So register and list histories with unique values (what our tests write) are checked in
//! near-linear time even with 50 clients and tens of thousands of operations per key. The `kv`
//! model (string append, with puts) has none of the last three rules: its non-linearizable
//! histories can exhaust the [`Budget`] (each key gets the whole budget), in which case the key's
//! verdict is [`Verdict::Unknown`]; a history's verdict is the worst of its keys' (not
//! linearizable, then unknown, then linearizable), and
//! [`CheckOptions::stop_at_first_violation`] stops at the first key found not linearizable.
//!
//! The checker is validated on the Porcupine/Jepsen histories with known verdicts
//! (`tests/known_verdicts.rs`), against a brute-force checker on random small histories
//! (`tests/differential.rs`), and on histories generated from sequential executions
//! (`tests/generated.rs`).

#![warn(missing_docs)]

mod check;
pub mod edn;
mod error;
mod history;
pub mod jepsen;
pub mod jsonl;
mod lost;
pub mod models;
pub mod txn;
pub mod verdicts;
pub mod wgl;

use std::path::Path;

pub use check::{
    check_history, check_key, CheckOptions, KeyReport, ModelKind, Partition, Report, Resolved, Verdict,
    Violation,
};
pub use error::{Error, Result};
pub use history::{EventType, Function, History, Op, Operation, PairOptions, RawEvent, RawValue};
pub use lost::{lost_appends, LostAppend, LostReport};
pub use wgl::{Budget, Exhausted, Stats};

/// The file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// [`jsonl`].
    Jsonl,
    /// [`jepsen`].
    Jepsen,
    /// [`edn`].
    Edn,
}

impl Format {
    /// Guesses the format from the first non-blank line: `{"` is JSONL, `{:` is EDN, a line
    /// with `jepsen.util` is a Jepsen log. `None` if the text is empty or unrecognised.
    pub fn detect(text: &str) -> Option<Format> {
        let first = text.lines().map(str::trim).find(|l| !l.is_empty())?;
        if first.starts_with("{\"") {
            Some(Format::Jsonl)
        } else if first.starts_with("{:") {
            Some(Format::Edn)
        } else if first.contains("jepsen.util") {
            Some(Format::Jepsen)
        } else {
            None
        }
    }

    /// The model a format's histories are checked with by default.
    pub fn default_model(self) -> ModelKind {
        match self {
            Format::Jsonl => ModelKind::Auto,
            Format::Jepsen => ModelKind::Cas,
            Format::Edn => ModelKind::Kv,
        }
    }
}

/// Parses a history in the given format.
pub fn parse_str(text: &str, format: Format) -> Result<History> {
    match format {
        Format::Jsonl => jsonl::parse(text),
        Format::Jepsen => jepsen::parse(text),
        Format::Edn => edn::parse(text),
    }
}

/// Reads and parses a history file; with no format given it is detected (an empty file is an
/// empty history).
pub fn parse_file(path: &Path, format: Option<Format>) -> Result<(History, Option<Format>)> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    let format = format.or_else(|| Format::detect(&text));
    match format {
        Some(f) => Ok((parse_str(&text, f)?, Some(f))),
        None if text.trim().is_empty() => Ok((History::default(), None)),
        None => Err(Error::parse(1, "cannot tell the format (JSONL, Jepsen log or EDN); give --format")),
    }
}
