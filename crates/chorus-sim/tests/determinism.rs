//! Determinism (STYLE §7.2 rule 10): a seed is the whole run. The same seed run twice gives the
//! same trace, event for event, so any failure replays exactly from its seed.

use chorus_sim::{run_seed, Settings};

#[test]
fn the_same_seed_gives_the_same_trace() {
    for seed in 0..10 {
        let a = run_seed(seed, Settings::default());
        let b = run_seed(seed, Settings::default());
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed} ran differently twice");
        assert_eq!(a.stats, b.stats, "seed {seed}");
        assert!(a.stats.trace_events > 0, "seed {seed} recorded nothing");
    }
}

#[test]
fn keeping_the_trace_does_not_change_the_run() {
    let kept = run_seed(3, Settings::traced(true));
    let plain = run_seed(3, Settings::default());
    assert_eq!(kept.trace_hash, plain.trace_hash);
    assert_eq!(kept.trace.as_ref().map(Vec::len), Some(plain.stats.trace_events as usize));
    assert!(!kept.narration.is_empty());
}

#[test]
fn different_seeds_give_different_runs() {
    let hashes: std::collections::BTreeSet<u64> =
        (0..10).map(|s| run_seed(s, Settings::default()).trace_hash).collect();
    assert_eq!(hashes.len(), 10);
}
