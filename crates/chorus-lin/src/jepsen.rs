//! Jepsen log lines of a single register (the etcd histories):
//!
//! ```text
//! INFO  jepsen.util - 3  :invoke  :cas  [3 0]
//! INFO  jepsen.util - 3  :ok      :cas  [3 0]
//! ```
//!
//! Fields are separated by tabs or spaces. Lines without `jepsen.util - `, and lines whose
//! process is not a number (the nemesis), are skipped. A `:fail` cas is a cas whose compare failed (see
//! [`PairOptions::fail_cas_is_compare_false`]); a `:fail` read or write did not happen; `:info`
//! is an unknown outcome.

use crate::error::{Error, Result};
use crate::history::{EventType, Function, History, PairOptions, RawEvent, RawValue};

const MARK: &str = "jepsen.util - ";

/// Parses a Jepsen log with the default reading of `:fail` cas (the compare failed).
pub fn parse(text: &str) -> Result<History> {
    parse_with(text, PairOptions { fail_cas_is_compare_false: true })
}

/// Parses a Jepsen log.
pub fn parse_with(text: &str, opts: PairOptions) -> Result<History> {
    let mut events = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i as u64 + 1;
        let Some(pos) = raw.find(MARK) else { continue };
        let rest = &raw[pos + MARK.len()..];
        let mut tokens = rest.split_whitespace();
        let Some(Ok(process)) = tokens.next().map(str::parse::<u64>) else {
            continue;
        };
        let kind = match tokens.next() {
            Some(":invoke") => EventType::Invoke,
            Some(":ok") => EventType::Ok,
            Some(":fail") => EventType::Fail,
            Some(":info") => EventType::Info,
            other => {
                return Err(Error::parse(line, format!("expected :invoke/:ok/:fail/:info, got {other:?}")))
            }
        };
        let f = match tokens.next() {
            Some(":read") => Function::Read,
            Some(":write") => Function::Write,
            Some(":cas") => Function::Cas,
            other => return Err(Error::parse(line, format!("expected :read/:write/:cas, got {other:?}"))),
        };
        let value_text = tokens.collect::<Vec<_>>().join(" ");
        let value = parse_value(&value_text)
            .ok_or_else(|| Error::parse(line, format!("cannot read the value {value_text:?}")))?;
        events.push(RawEvent { line, process, kind, f, key: None, value });
    }
    History::from_events(events, opts)
}

fn parse_value(s: &str) -> Option<RawValue> {
    let s = s.trim();
    if s.is_empty() || s == "nil" {
        return Some(RawValue::Nil);
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let parts: Vec<&str> = inner.split_whitespace().collect();
        return match parts.as_slice() {
            [a, b] => Some(RawValue::Pair(scalar(a), scalar(b))),
            _ => None,
        };
    }
    if s.starts_with(':') {
        return Some(RawValue::Other(s.to_owned()));
    }
    Some(RawValue::Str(scalar(s)))
}

fn scalar(s: &str) -> String {
    s.strip_prefix('"').and_then(|r| r.strip_suffix('"')).unwrap_or(s).to_owned()
}
