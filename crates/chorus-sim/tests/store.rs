//! The replicated store in the simulation (`chorus_sim::store`): seeds that run it replay
//! exactly, judge histories that are not empty, and catch the bugs of the replication layer
//! that `chorus-smr`'s own simulation test catches.

use chorus_sim::{run_seed, Settings, SimOptions};

/// The first `n` seeds that run the store.
fn store_seeds(n: usize) -> Vec<u64> {
    (0..).filter(|s| SimOptions::from_seed(*s).store.on).take(n).collect()
}

#[test]
fn about_a_third_of_the_seeds_run_the_store() {
    let on = (0..1000u64).filter(|s| SimOptions::from_seed(*s).store.on).count();
    assert!((250..=350).contains(&on), "{on} of 1000 seeds run the store");
    // It needs state transfer (joiners load the replica's state).
    assert!((0..1000u64).map(SimOptions::from_seed).all(|o| !o.store.on || o.state.on));
}

#[test]
fn a_store_seed_replays_exactly_and_judges_a_real_history() {
    for seed in store_seeds(3) {
        let a = run_seed(seed, Settings::default());
        let b = run_seed(seed, Settings::default());
        assert_eq!(a.failure, None, "seed {seed}");
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed} ran differently twice");
        assert_eq!(a.stats, b.stats, "seed {seed}");
        let s = &a.stats.store;
        assert!(s.ops >= 50 && s.ok >= 20, "seed {seed}: the store's clients did little: {s:?}");
    }
}

#[test]
fn replay_keeps_the_store_history() {
    let seed = store_seeds(1)[0];
    let o = run_seed(seed, Settings::traced(false));
    let history = o.store_history.unwrap_or_default();
    assert!(history.len() > 20, "seed {seed}: {} events", history.len());
    // It reads back as a history `chorus-lin` judges linearizable.
    let h = chorus_lin::jsonl::history_from_events(history).unwrap_or_else(|e| panic!("{e}"));
    let report =
        chorus_lin::check_history(&h, &chorus_lin::CheckOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.verdict(), chorus_lin::Verdict::Linearizable, "{report}");
}

/// `chorus-smr`'s simulation test was shown to catch two mutations of the replica: reads
/// answered without the barrier, and commands multicast in FIFO order instead of safe. The
/// replica has no switch for them, so the simulator plays them where it meets the replica
/// (`StoreMutant`), and the store's checks must catch each on ordinary store seeds.
#[cfg(feature = "mutants")]
mod mutants {
    use chorus_sim::batch::run_batch;
    use chorus_sim::store::StoreMutant;
    use chorus_sim::{Failure, Settings};

    /// Store seeds tried per mutant (each is caught on a quarter of them or more).
    const MAX_SEEDS: usize = 64;

    /// The first store seed on which the store's checks fail with `mutant`, and why; and what
    /// other failures the seeds tried showed.
    fn first_catch(mutant: StoreMutant) -> (Option<(u64, String)>, Vec<String>) {
        let settings = Settings { store_mutant: Some(mutant), ..Settings::default() };
        let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut other = Vec::new();
        for seeds in super::store_seeds(MAX_SEEDS).chunks(jobs * 4) {
            let report = run_batch(seeds, jobs, &settings, |_, _, _| {});
            for r in &report.results {
                match &r.failure {
                    Some(Failure::Store(why)) => return (Some((r.seed, why.clone())), other),
                    Some(f) => other.push(format!("seed {}: {f}", r.seed)),
                    None => {}
                }
            }
        }
        (None, other)
    }

    fn assert_caught(mutant: StoreMutant, shows: &[&str]) {
        let (caught, other) = first_catch(mutant);
        let Some((seed, why)) = caught else {
            panic!("{mutant:?} was not caught in {MAX_SEEDS} store seeds; other failures: {other:#?}")
        };
        eprintln!("{mutant:?} caught at seed {seed}: {why}");
        assert!(shows.iter().any(|s| why.contains(s)), "{mutant:?} at seed {seed}: {why}");
    }

    #[test]
    fn reads_without_the_barrier_break_linearizability() {
        assert_caught(StoreMutant::ReadsWithoutBarrier, &["NOT linearizable"]);
    }

    #[test]
    fn writes_in_fifo_order_make_replicas_diverge() {
        assert_caught(StoreMutant::WritesInFifo, &["replicas disagree", "NOT linearizable", "element"]);
    }

    /// Every store mutant has a test above: a new variant fails to compile here until it gets
    /// one.
    #[test]
    fn every_store_mutant_is_covered() {
        for m in StoreMutant::ALL {
            let test: fn() = match m {
                StoreMutant::ReadsWithoutBarrier => reads_without_the_barrier_break_linearizability,
                StoreMutant::WritesInFifo => writes_in_fifo_order_make_replicas_diverge,
            };
            let _ = test;
            assert_eq!(chorus_sim::store_mutant_by_name(&format!("{m:?}")), Some(m));
        }
    }
}
