//! `docs/trace-format.md` shows one example line per event kind: they must parse, be in the
//! canonical form the writers produce, and cover every kind.

// Test helpers may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use chorus_check::TraceEvent;

const DOC: &str = include_str!("../../../docs/trace-format.md");

fn example_lines() -> Vec<&'static str> {
    let mut lines = Vec::new();
    let mut in_json = false;
    for line in DOC.lines() {
        match line.trim() {
            "```json" => in_json = true,
            "```" => in_json = false,
            l if in_json && !l.is_empty() => lines.push(l),
            _ => {}
        }
    }
    lines
}

#[test]
fn every_example_line_parses_and_is_canonical() {
    let lines = example_lines();
    assert!(!lines.is_empty());
    for line in lines {
        let ev: TraceEvent = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(serde_json::to_string(&ev).unwrap(), line);
    }
}

#[test]
fn every_event_kind_has_an_example() {
    let kinds: BTreeSet<String> = example_lines()
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["ev"].to_string())
        .collect();
    let all = [
        "start",
        "install",
        "digest",
        "state_loaded",
        "durable",
        "send",
        "deliver",
        "suspect",
        "blocked",
        "excluded",
        "left",
        "crash",
        "pause",
        "resume",
        "phase",
        "end",
    ];
    for kind in all {
        assert!(kinds.contains(&format!("\"{kind}\"")), "no example for `{kind}`");
    }
}
