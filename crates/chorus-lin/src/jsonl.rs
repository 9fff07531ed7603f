//! The JSON-lines history format of our own tests (documented in the crate's root docs).

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::history::{EventType, Function, History, PairOptions, RawEvent, RawValue};

/// One line of a JSONL history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The client process (one operation in flight at a time per process).
    pub process: u64,
    /// `invoke`, `ok`, `fail` or `info`.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// `write`, `read`, `append` or `read-list`.
    pub f: Function,
    /// The key (may be left out on completions, and everywhere in a history of one object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The argument (invocations of write/append) or the result (ok completions of reads);
    /// `null` or absent otherwise.
    #[serde(default)]
    pub value: Option<Value>,
    /// Optional wall-clock time; informational only (the order of lines is the real-time
    /// order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_ns: Option<u64>,
}

/// The `value` of an [`Event`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A string: the value written or appended, or the value read.
    Str(String),
    /// An integer, read as its decimal text (accepted on input, never written).
    Int(i64),
    /// A list: the result of a `read-list`.
    List(Vec<String>),
}

impl Event {
    fn into_raw(self, line: u64) -> Result<RawEvent> {
        if self.f == Function::Cas {
            return Err(Error::parse(line, "cas is not part of the JSONL format"));
        }
        let value = match self.value {
            None => RawValue::Nil,
            Some(Value::Str(s)) => RawValue::Str(s),
            Some(Value::Int(i)) => RawValue::Str(i.to_string()),
            Some(Value::List(l)) => RawValue::List(l),
        };
        Ok(RawEvent { line, process: self.process, kind: self.kind, f: self.f, key: self.key, value })
    }
}

/// Parses a JSONL history. Blank lines are skipped; line numbers count every line.
pub fn parse(text: &str) -> Result<History> {
    let mut events = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i as u64 + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            continue;
        }
        let e: Event = serde_json::from_str(trimmed).map_err(|e| Error::parse(line, e.to_string()))?;
        events.push(e.into_raw(line)?);
    }
    History::from_events(events, PairOptions::default())
}

/// Builds a history from events in real-time order (what a test harness that records in
/// memory calls instead of writing a file); event `i` gets time `i + 1`.
pub fn history_from_events(events: impl IntoIterator<Item = Event>) -> Result<History> {
    let raw =
        events.into_iter().enumerate().map(|(i, e)| e.into_raw(i as u64 + 1)).collect::<Result<Vec<_>>>()?;
    History::from_events(raw, PairOptions::default())
}

/// Writes one event as a line.
pub fn write_event(mut w: impl Write, e: &Event) -> std::io::Result<()> {
    serde_json::to_writer(&mut w, e)?;
    w.write_all(b"\n")
}
