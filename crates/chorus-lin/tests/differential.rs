//! The checker against a brute-force one on small random histories (linearizable or not):
//! every order of the operations that respects real time, every choice of which unknown
//! operations happened, applied to a plain sequential implementation of each model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chorus_lin::{check_history, CheckOptions, History, ModelKind, Op, Operation, Verdict};
use proptest::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Register,
    List,
    Kv,
}

/// The sequential specifications, written plainly.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Register(Option<String>),
    List(Vec<String>),
    Kv(String),
}

fn apply(state: &State, op: &Op) -> Option<State> {
    match (state, op) {
        (State::Register(v), Op::Read { result }) => match result {
            None => Some(state.clone()),
            Some(r) => (r == v).then(|| state.clone()),
        },
        (State::Register(_), Op::Write { value }) => Some(State::Register(Some(value.clone()))),
        (State::Register(v), Op::Cas { from, to, swapped }) => {
            let matches = v.as_deref() == Some(from.as_str());
            match swapped {
                Some(true) if matches => Some(State::Register(Some(to.clone()))),
                Some(false) if !matches => Some(state.clone()),
                None if matches => Some(State::Register(Some(to.clone()))),
                None => Some(state.clone()),
                _ => None,
            }
        }
        (State::List(l), Op::Append { value }) => {
            let mut l = l.clone();
            l.push(value.clone());
            Some(State::List(l))
        }
        (State::List(l), Op::ReadList { result }) => match result {
            None => Some(state.clone()),
            Some(r) => (r == l).then(|| state.clone()),
        },
        (State::Kv(s), Op::Read { result }) => match result {
            None => Some(state.clone()),
            Some(r) => (r.as_deref().unwrap_or("") == s).then(|| state.clone()),
        },
        (State::Kv(_), Op::Write { value }) => Some(State::Kv(value.clone())),
        (State::Kv(s), Op::Append { value }) => Some(State::Kv(format!("{s}{value}"))),
        _ => None,
    }
}

/// Whether some order of the not-yet-done operations (each unknown one may be left out)
/// respects real time and the specification.
fn brute(ops: &[Operation], done: &mut Vec<bool>, state: &State) -> bool {
    let pending: Vec<usize> = (0..ops.len()).filter(|&i| !done[i]).collect();
    if pending.iter().all(|&i| ops[i].ret.is_none()) {
        return true; // the unknown ones may never have happened
    }
    for &i in &pending {
        // i can go next if no pending operation completed before i was invoked.
        if pending.iter().any(|&j| ops[j].ret.is_some_and(|r| r < ops[i].call)) {
            continue;
        }
        if let Some(next) = apply(state, &ops[i].op) {
            done[i] = true;
            let ok = brute(ops, done, &next);
            done[i] = false;
            if ok {
                return true;
            }
        }
    }
    false
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![Just("a".to_owned()), Just("b".to_owned()), Just("c".to_owned())]
}

fn op(kind: Kind) -> BoxedStrategy<Op> {
    let known = prop::option::weighted(0.85, any::<()>());
    match kind {
        Kind::Register => prop_oneof![
            (known.clone(), prop::option::of(value())).prop_map(|(k, r)| Op::Read { result: k.map(|_| r) }),
            value().prop_map(|value| Op::Write { value }),
            (value(), value(), prop::option::of(any::<bool>())).prop_map(|(from, to, swapped)| Op::Cas {
                from,
                to,
                swapped
            }),
        ]
        .boxed(),
        Kind::List => prop_oneof![
            value().prop_map(|value| Op::Append { value }),
            (known, prop::collection::vec(value(), 0..4))
                .prop_map(|(k, l)| Op::ReadList { result: k.map(|_| l) }),
        ]
        .boxed(),
        Kind::Kv => prop_oneof![
            (
                known,
                prop::option::of(prop_oneof![
                    Just(String::new()),
                    Just("a".to_owned()),
                    Just("ab".to_owned()),
                    Just("ba".to_owned()),
                    Just("b".to_owned()),
                ])
            )
                .prop_map(|(k, r)| Op::Read { result: k.map(|_| r) }),
            prop_oneof![Just("a".to_owned()), Just("b".to_owned())].prop_map(|value| Op::Write { value }),
            prop_oneof![Just("a".to_owned()), Just("b".to_owned())].prop_map(|value| Op::Append { value }),
        ]
        .boxed(),
    }
}

/// Up to 7 operations with random intervals; about one in six of unknown outcome.
fn history(kind: Kind) -> impl Strategy<Value = Vec<Operation>> {
    prop::collection::vec((op(kind), 0u64..20, 1u64..12, 0u8..6), 1..8).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (op, start, len, unknown))| {
                // Distinct times: 100 * t + i.
                let call = start * 100 + i as u64;
                let ret = (start + len) * 100 + 50 + i as u64;
                let unknown = unknown == 0;
                let op = match (op, unknown) {
                    (Op::Read { .. }, true) => Op::Read { result: None },
                    (Op::ReadList { .. }, true) => Op::ReadList { result: None },
                    (Op::Cas { from, to, .. }, true) => Op::Cas { from, to, swapped: None },
                    (Op::Cas { from, to, swapped: None }, false) => Op::Cas { from, to, swapped: Some(true) },
                    (op, _) => op,
                };
                // An operation with an unknown result has an unknown outcome.
                let unknown =
                    unknown || matches!(op, Op::Read { result: None } | Op::ReadList { result: None });
                Operation { process: i as u64, key: "k".to_owned(), op, call, ret: (!unknown).then_some(ret) }
            })
            .collect()
    })
}

fn agree(kind: Kind, ops: Vec<Operation>) -> Result<(), TestCaseError> {
    let init = match kind {
        Kind::Register => State::Register(None),
        Kind::List => State::List(Vec::new()),
        Kind::Kv => State::Kv(String::new()),
    };
    let expected = brute(&ops, &mut vec![false; ops.len()], &init);
    let model = match kind {
        Kind::Register => ModelKind::Register,
        Kind::List => ModelKind::List,
        Kind::Kv => ModelKind::Kv,
    };
    let history = History { ops };
    let report = check_history(&history, &CheckOptions { model, ..CheckOptions::default() }).unwrap();
    let want = if expected { Verdict::Linearizable } else { Verdict::NotLinearizable };
    prop_assert_eq!(report.verdict(), want, "{:#?}\n{}", history.ops, report);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn register_agrees_with_brute_force(ops in history(Kind::Register)) {
        agree(Kind::Register, ops)?;
    }

    #[test]
    fn list_agrees_with_brute_force(ops in history(Kind::List)) {
        agree(Kind::List, ops)?;
    }

    #[test]
    fn kv_agrees_with_brute_force(ops in history(Kind::Kv)) {
        agree(Kind::Kv, ops)?;
    }
}

/// Histories with unique values (where the checker narrows intervals and orders appends by
/// what reads show): built so that reads mostly return written values.
fn unique_history(list: bool) -> impl Strategy<Value = Vec<Operation>> {
    prop::collection::vec((any::<bool>(), 0u64..20, 1u64..12, 0u8..8, 0usize..8, 0usize..4), 1..8).prop_map(
        move |specs| {
            let n = specs.len();
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (read, start, len, outcome, pick, take))| {
                    let call = start * 100 + i as u64;
                    let ret = (start + len) * 100 + 50 + i as u64;
                    let unknown = outcome == 0;
                    // Reads return values written by some operation (v0..v{n-1}), or nil/none.
                    let op = match (list, read) {
                        (false, false) => Op::Write { value: format!("v{i}") },
                        (false, true) => Op::Read {
                            result: (!unknown).then(|| (pick < n && pick != i).then(|| format!("v{pick}"))),
                        },
                        (true, false) => Op::Append { value: format!("v{i}") },
                        (true, true) => Op::ReadList {
                            result: (!unknown).then(|| {
                                (0..n)
                                    .filter(|&j| j != i)
                                    .skip(pick % 3)
                                    .take(take)
                                    .map(|j| format!("v{j}"))
                                    .collect()
                            }),
                        },
                    };
                    Operation {
                        process: i as u64,
                        key: "k".to_owned(),
                        op,
                        call,
                        ret: (!unknown).then_some(ret),
                    }
                })
                .collect()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn unique_register_agrees_with_brute_force(ops in unique_history(false)) {
        agree(Kind::Register, ops)?;
    }

    #[test]
    fn unique_list_agrees_with_brute_force(ops in unique_history(true)) {
        agree(Kind::List, ops)?;
    }
}
