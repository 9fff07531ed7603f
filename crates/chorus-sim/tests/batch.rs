//! A batch of random seeds: every guarantee holds under the swarm of faults, and the batch
//! reaches every dangerous situation we claim to test (coverage marks, TESTING §2), so that a
//! pass is not a vacuous one.

use std::sync::OnceLock;

use chorus_sim::batch::{describe_failure, run_batch, BatchReport};
use chorus_sim::Settings;

fn batch() -> &'static BatchReport {
    static REPORT: OnceLock<BatchReport> = OnceLock::new();
    REPORT.get_or_init(|| {
        let seeds: Vec<u64> = (0..200).collect();
        let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
        run_batch(&seeds, jobs, &Settings::default(), |_, _, _| {})
    })
}

#[test]
fn two_hundred_seeds_pass() {
    let report = batch();
    let failures: Vec<String> = report.failures().map(describe_failure).collect();
    assert!(failures.is_empty(), "{} seeds failed:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(report.results.len(), 200);
}

#[test]
fn the_batch_hits_every_coverage_mark() {
    let report = batch();
    let missing = report.marks.total.missing();
    assert!(missing.is_empty(), "marks never hit in 200 seeds: {missing:?}\n{}", report.marks);
}
