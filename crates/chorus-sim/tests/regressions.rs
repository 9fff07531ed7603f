//! Every seed in `regressions.txt` once exposed a bug; each must keep passing.

use chorus_sim::batch::{describe_failure, parse_regressions, run_batch};
use chorus_sim::Settings;

#[test]
fn regression_seeds_pass() {
    let seeds = parse_regressions(include_str!("../regressions.txt"))
        .unwrap_or_else(|e| panic!("regressions.txt: {e}"));
    assert!(!seeds.is_empty());
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let report = run_batch(&seeds, jobs, &Settings::default(), |_, _, _| {});
    let failures: Vec<String> = report.failures().map(describe_failure).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
