//! Every history in `testdata/linearizability/` (repository root) gets the verdict its
//! `verdicts.tsv` says: the Jepsen etcd compare-and-set logs, the Porcupine kv histories
//! checked per key and whole, and our own JSONL examples.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chorus_lin::{
    check_history, parse_file, verdicts, Budget, CheckOptions, Format, ModelKind, Partition, Verdict,
};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/linearizability")
}

/// Checks every file of `dir` against its `verdicts.tsv`; returns how many checks ran.
fn check_dir(dir: &str, format: Format, model: ModelKind) -> usize {
    let dir = data_dir().join(dir);
    let tsv = std::fs::read_to_string(dir.join("verdicts.tsv")).expect("verdicts.tsv");
    let known = verdicts::parse(&tsv).expect("verdicts.tsv parses");
    assert!(!known.is_empty());
    let mut mismatches = Vec::new();
    let mut with_verdict = BTreeSet::new();
    for k in &known {
        with_verdict.insert(k.file.clone());
        let path = dir.join(&k.file);
        let (history, _) = parse_file(&path, Some(format)).expect("history parses");
        assert!(!history.ops.is_empty(), "{}: no operations", k.file);
        let opts = CheckOptions {
            model,
            partition: k.partition.unwrap_or(Partition::PerKey),
            budget: Budget { max_steps: 50_000_000, max_memory_bytes: 1 << 30, max_time: None },
            stop_at_first_violation: true,
        };
        let start = Instant::now();
        let report = check_history(&history, &opts).expect("check runs");
        let steps: u64 = report.keys.iter().map(|r| r.stats.steps).sum();
        eprintln!(
            "{:<16} {:<8} {:>6} ops {:>10} steps {:>8.3} s  {} (expected {})",
            k.file,
            format!("{:?}", opts.partition),
            history.ops.len(),
            steps,
            start.elapsed().as_secs_f64(),
            report.verdict(),
            k.verdict
        );
        if report.verdict() != k.verdict {
            mismatches.push(format!(
                "{}: got {}, expected {}\n{report}",
                k.file,
                report.verdict(),
                k.verdict
            ));
        }
    }
    // Every history file has a verdict, but for empty ones (etcd_095: that run never started),
    // which are trivially linearizable.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "verdicts.tsv" || with_verdict.contains(&name) {
            continue;
        }
        let (history, _) = parse_file(&path, Some(format)).unwrap();
        assert!(history.ops.is_empty(), "{name} has no verdict but has operations");
        let report = check_history(&history, &CheckOptions::default()).unwrap();
        assert_eq!(report.verdict(), Verdict::Linearizable);
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    known.len()
}

#[test]
fn jepsen_etcd_cas_register() {
    let start = Instant::now();
    let n = check_dir("jepsen-etcd", Format::Jepsen, ModelKind::Cas);
    eprintln!("{n} etcd histories in {:.2} s", start.elapsed().as_secs_f64());
}

#[test]
fn porcupine_kv() {
    let start = Instant::now();
    let n = check_dir("kv", Format::Edn, ModelKind::Kv);
    eprintln!("{n} kv checks in {:.2} s", start.elapsed().as_secs_f64());
}

#[test]
fn own_jsonl_examples() {
    let n = check_dir("jsonl", Format::Jsonl, ModelKind::Auto);
    assert_eq!(n, 4);
}
