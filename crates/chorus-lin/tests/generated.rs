//! Histories generated from a real sequential execution, with random overlap between
//! operations, unknown outcomes and failures, must be judged linearizable (and lose no
//! acknowledged append); and large ones must be checked quickly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use chorus_lin::jsonl::{self, Event, Value};
use chorus_lin::{check_history, lost_appends, CheckOptions, EventType, Function, ModelKind, Op, Verdict};
use proptest::prelude::*;

/// One operation of the sequential execution, as generated.
#[derive(Clone, Debug)]
struct Spec {
    /// Which key: keys `r0`, `r1` are registers, `l0`, `l1` lists.
    key: u8,
    /// 0 write/append, 1 read.
    read: bool,
    /// How long before its linearization point it is invoked, and after it returns.
    before: u32,
    after: u32,
    /// 0..=11 ok; 12 unknown (info) but happened; 13 unknown and did not happen; 14 failed;
    /// 15 never completes (happened or not, by parity of `before`).
    outcome: u8,
}

fn spec() -> impl Strategy<Value = Spec> {
    (0u8..4, any::<bool>(), 1u32..6_000, 1u32..6_000, 0u8..16)
        .prop_map(|(key, read, before, after, outcome)| Spec { key, read, before, after, outcome })
}

const KEYS: [&str; 4] = ["r0", "r1", "l0", "l1"];

/// Runs the specs sequentially (operation i takes effect at time 1000 * (i + 1)) and returns the
/// events in real-time order, with final reads of the list keys at the end.
fn execute(specs: &[Spec], kv: bool) -> Vec<Event> {
    let mut registers: HashMap<u8, String> = HashMap::new();
    let mut lists: HashMap<u8, Vec<String>> = HashMap::new();
    // (time, tie-break, event)
    let mut timed: Vec<(u64, u64, Event)> = Vec::new();
    // Processes: when each becomes free (None: retired).
    let mut free_at: Vec<Option<u64>> = Vec::new();
    let mut by_call: Vec<(usize, u64)> = Vec::new();
    let mut calls = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let lin = 1000 * (i as u64 + 1) + 1_000_000_000;
        let call = lin - u64::from(s.before);
        let ret = lin + u64::from(s.after);
        calls.push((call, ret));
        by_call.push((i, call));
    }
    // Assign processes in call order.
    by_call.sort_by_key(|&(_, c)| c);
    let mut process_of = vec![0u64; specs.len()];
    for &(i, call) in &by_call {
        let s = &specs[i];
        let p = free_at.iter().position(|f| f.is_some_and(|t| t < call)).unwrap_or_else(|| {
            free_at.push(None);
            free_at.len() - 1
        });
        free_at[p] = if s.outcome == 15 { None } else { Some(calls[i].1) };
        process_of[i] = p as u64;
    }
    for (i, s) in specs.iter().enumerate() {
        let (call, ret) = calls[i];
        let key = KEYS[usize::from(s.key)].to_owned();
        let is_list = s.key >= 2 && !kv;
        let happened = match s.outcome {
            0..=12 => true,
            15 => s.before % 2 == 0,
            _ => false,
        };
        let value = format!("v{i}");
        let (f, arg, result) = if is_list {
            let l = lists.entry(s.key).or_default();
            if s.read {
                (Function::ReadList, None, Some(Value::List(l.clone())))
            } else {
                if happened {
                    l.push(value.clone());
                }
                (Function::Append, Some(Value::Str(value)), None)
            }
        } else if s.read {
            let r = registers.get(&s.key).cloned();
            let r = if kv { Some(r.unwrap_or_default()) } else { r };
            (Function::Read, None, r.map(Value::Str))
        } else if kv && s.key >= 2 {
            // kv append: string concatenation.
            if happened {
                registers.entry(s.key).or_default().push_str(&value);
            }
            (Function::Append, Some(Value::Str(value)), None)
        } else {
            if happened {
                registers.insert(s.key, value.clone());
            }
            (Function::Write, Some(Value::Str(value)), None)
        };
        let process = process_of[i];
        let ev = |kind, value| Event { process, kind, f, key: Some(key.clone()), value, time_ns: None };
        timed.push((call, 0, ev(EventType::Invoke, arg)));
        match s.outcome {
            0..=11 => timed.push((ret, 1, ev(EventType::Ok, result))),
            12 | 13 => timed.push((ret, 1, ev(EventType::Info, None))),
            14 => timed.push((ret, 1, ev(EventType::Fail, None))),
            _ => {}
        }
    }
    timed.sort_by_key(|(t, tie, _)| (*t, *tie));
    let mut events: Vec<Event> = timed.into_iter().map(|(_, _, e)| e).collect();
    if !kv {
        let final_process = free_at.len() as u64 + 1;
        for k in [2u8, 3] {
            let l = lists.get(&k).cloned().unwrap_or_default();
            for (kind, value) in [(EventType::Invoke, None), (EventType::Ok, Some(Value::List(l)))] {
                events.push(Event {
                    process: final_process,
                    kind,
                    f: Function::ReadList,
                    key: Some(KEYS[usize::from(k)].to_owned()),
                    value,
                    time_ns: None,
                });
            }
        }
    }
    events
}

fn to_text(events: &[Event]) -> String {
    let mut out = Vec::new();
    for e in events {
        jsonl::write_event(&mut out, e).unwrap();
    }
    String::from_utf8(out).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Registers and lists (the JSONL format, model chosen per key).
    #[test]
    fn sequential_executions_are_linearizable(specs in prop::collection::vec(spec(), 1..120)) {
        let events = execute(&specs, false);
        let history = jsonl::parse(&to_text(&events)).unwrap();
        let report = check_history(&history, &CheckOptions::default()).unwrap();
        prop_assert_eq!(report.verdict(), Verdict::Linearizable, "{}", report);
        let lost = lost_appends(&history);
        prop_assert!(lost.is_ok(), "{:?}", lost.lost);
        // The whole-history check agrees.
        let whole = CheckOptions { partition: chorus_lin::Partition::Whole, model: ModelKind::Auto, ..CheckOptions::default() };
        if let Ok(r) = check_history(&history, &whole) {
            prop_assert_eq!(r.verdict(), Verdict::Linearizable, "{}", r);
        }
    }

    /// The kv model (get/put/append as string concatenation), from in-memory events.
    #[test]
    fn sequential_kv_executions_are_linearizable(specs in prop::collection::vec(spec(), 1..120)) {
        let events = execute(&specs, true);
        let history = jsonl::history_from_events(events).unwrap();
        let opts = CheckOptions { model: ModelKind::Kv, ..CheckOptions::default() };
        let report = check_history(&history, &opts).unwrap();
        prop_assert_eq!(report.verdict(), Verdict::Linearizable, "{}", report);
    }
}

/// A small deterministic generator (splitmix64), for the large histories.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` operations on one key, about `procs` in flight at once, `unknown_pct` % unknown.
fn large(seed: u64, n: usize, procs: u64, list: bool, unknown_pct: u64) -> Vec<Spec> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            // Each operation spans about `procs` linearization points.
            let span = 1000 * procs;
            let r = rng.below(100);
            Spec {
                key: if list { 2 } else { 0 },
                read: rng.below(2) == 0,
                before: 1 + rng.below(span) as u32,
                after: 1 + rng.below(span) as u32,
                outcome: if r < unknown_pct {
                    12 + (r % 2) as u8
                } else if r < unknown_pct + 2 {
                    14
                } else {
                    0
                },
            }
        })
        .collect()
}

fn check_large(name: &str, specs: &[Spec]) -> chorus_lin::History {
    let events = execute(specs, false);
    let start = Instant::now();
    let history = jsonl::history_from_events(events).unwrap();
    let parsed = start.elapsed();
    let report = check_history(&history, &CheckOptions::default()).unwrap();
    let by_key: BTreeMap<&str, (usize, u64)> =
        report.keys.iter().filter(|k| k.ops > 1).map(|k| (k.key.as_str(), (k.ops, k.stats.steps))).collect();
    eprintln!(
        "{name}: {:?} in {:.3} s (building the history {:.3} s), (ops, steps) per key {by_key:?}",
        report.verdict(),
        start.elapsed().as_secs_f64(),
        parsed.as_secs_f64()
    );
    assert_eq!(report.verdict(), Verdict::Linearizable, "{report}");
    assert!(lost_appends(&history).is_ok());
    history
}

#[test]
fn large_register_history() {
    let mut history = check_large(
        "register, 30000 ops on one key, ~50 in flight, 5% unknown",
        &large(1, 30_000, 50, false, 5),
    );
    // Make one read in the middle stale: it returns the value of an early write that a later
    // write overwrote before the read was invoked.
    let ops = &history.ops;
    let ok_write = |o: &chorus_lin::Operation| matches!(o.op, Op::Write { .. }) && o.ret.is_some();
    let old = ops.iter().position(ok_write).unwrap();
    let old_ret = ops[old].ret.unwrap();
    let newer = ops.iter().position(|o| ok_write(o) && o.call > old_ret).unwrap();
    let newer_ret = ops[newer].ret.unwrap();
    let read = (ops.len() / 2..ops.len())
        .find(|&i| matches!(ops[i].op, Op::Read { result: Some(_) }) && ops[i].call > newer_ret)
        .unwrap();
    let Op::Write { value } = ops[old].op.clone() else { unreachable!() };
    history.ops[read].op = Op::Read { result: Some(Some(value)) };
    let start = Instant::now();
    let report = check_history(&history, &CheckOptions::default()).unwrap();
    eprintln!(
        "... with one stale read: {:?} in {:.3} s\n{report}",
        report.verdict(),
        start.elapsed().as_secs_f64()
    );
    assert_eq!(report.verdict(), Verdict::NotLinearizable);
}

#[test]
fn large_list_history() {
    check_large("list, 8000 ops on one key, ~50 in flight, 5% unknown", &large(2, 8_000, 50, true, 5));
}

#[test]
fn many_keys() {
    // 40000 operations, ~20 in flight: nine in ten on the two registers, the rest on the two
    // lists (whose reads return whole lists, so their size grows as the square of the length).
    let mut rng = Rng(3);
    let mut specs = large(4, 40_000, 20, false, 5);
    for s in &mut specs {
        s.key = if rng.below(10) == 0 { 2 + rng.below(2) as u8 } else { rng.below(2) as u8 };
    }
    check_large("4 keys (2 registers, 2 lists), 40000 ops, ~20 in flight, 5% unknown", &specs);
}
