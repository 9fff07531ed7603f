//! Every committed fuzz corpus input, and every input that once crashed or hung a target
//! (`fuzz/regressions`), through its target's body: none panics. What `bash scripts/fuzz-long.sh`
//! found stays checked in every `cargo test`, without libFuzzer.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    v.sort();
    v
}

/// The targets whose corpus is committed (config_toml's and trace_reader's come with their
/// first hour of fuzzing).
const COMMITTED: [&str; 3] = ["wire_decode", "node_inputs", "resp_request"];

#[test]
fn every_corpus_and_regression_input_runs_clean() {
    let mut total = 0;
    for (name, run) in chorus_fuzz::TARGETS {
        let corpus = inputs(&fuzz_dir().join("corpus").join(name));
        let regressions = inputs(&fuzz_dir().join("regressions").join(name));
        // A corpus that went missing would make this test pass without running anything.
        if COMMITTED.contains(&name) {
            assert!(corpus.len() >= 10, "fuzz/corpus/{name} has {} inputs", corpus.len());
        }
        for path in corpus.iter().chain(&regressions) {
            let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // A panic names the input: `cargo fuzz run {name} PATH` replays it under libFuzzer.
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "fuzz target {name} panics on {}", path.display());
        }
        eprintln!("{name}: {} corpus and {} regression inputs", corpus.len(), regressions.len());
        total += corpus.len() + regressions.len();
    }
    eprintln!("{total} inputs in all");
}
