//! Many seeds on many threads, the regression list, and the batch summary.
//!
//! Each seed runs on one thread from start to end, so parallelism never touches determinism: a
//! worker takes the next seed from a shared counter and reports its outcome to the caller's
//! thread, which owns the progress display.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant as WallInstant};

use crate::cluster::{run_seed, Failure, Settings};
use crate::marks::{MarkCounts, MarkTable};
use crate::options::{SimOptions, SEC};

/// What a batch keeps of one seed.
#[derive(Clone, Debug)]
pub struct SeedResult {
    /// The seed.
    pub seed: u64,
    /// `None` if it passed.
    pub failure: Option<Failure>,
    /// Hash of its trace.
    pub trace_hash: u64,
    /// Simulated time.
    pub simulated: u64,
    /// Its coverage marks.
    pub marks: MarkCounts,
}

/// Runs one seed, turning a panic into a [`Failure::Panic`].
pub fn run_one(seed: u64, settings: &Settings) -> SeedResult {
    match catch_unwind(AssertUnwindSafe(|| run_seed(seed, settings.clone()))) {
        Ok(o) => SeedResult {
            seed,
            failure: o.failure,
            trace_hash: o.trace_hash,
            simulated: o.simulated,
            marks: o.marks,
        },
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(non-string panic)".to_string());
            SeedResult {
                seed,
                failure: Some(Failure::Panic(msg)),
                trace_hash: 0,
                simulated: 0,
                marks: MarkCounts::default(),
            }
        }
    }
}

/// The result of a batch.
#[derive(Debug, Default)]
pub struct BatchReport {
    /// Every seed's result, in seed-list order.
    pub results: Vec<SeedResult>,
    /// Marks over all seeds.
    pub marks: MarkTable,
    /// Simulated time over all seeds.
    pub simulated: u64,
    /// Wall time of the batch.
    pub wall: Duration,
    /// Worker threads used.
    pub jobs: usize,
}

impl BatchReport {
    /// The seeds that failed.
    pub fn failures(&self) -> impl Iterator<Item = &SeedResult> {
        self.results.iter().filter(|r| r.failure.is_some())
    }

    /// A few lines for the end of a run: counts, speed, marks.
    pub fn summary(&self) -> String {
        let n = self.results.len();
        let failed = self.failures().count();
        let wall = self.wall.as_secs_f64();
        let mut s = format!(
            "seeds {n}, failures {failed}, simulated {:.0}s, wall {:.2}s on {} threads: {:.1} seeds/s, {:.1} ms per seed per thread\n",
            self.simulated as f64 / SEC as f64,
            wall,
            self.jobs,
            n as f64 / wall.max(1e-9),
            wall * 1000.0 * self.jobs as f64 / n.max(1) as f64,
        );
        s += &self.marks.to_string();
        s
    }
}

/// Runs `seeds` on `jobs` threads. `progress(done, total, result)` is called on the calling
/// thread after each seed.
pub fn run_batch(
    seeds: &[u64],
    jobs: usize,
    settings: &Settings,
    mut progress: impl FnMut(usize, usize, &SeedResult),
) -> BatchReport {
    let start = WallInstant::now();
    let jobs = jobs.clamp(1, seeds.len().max(1));
    let next = AtomicUsize::new(0);
    let mut slots: Vec<Option<SeedResult>> = vec![None; seeds.len()];
    let (tx, rx) = mpsc::channel::<(usize, SeedResult)>();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(seed) = seeds.get(i) else { break };
                if tx.send((i, run_one(*seed, settings))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (done, (i, r)) in rx.iter().enumerate() {
            progress(done + 1, seeds.len(), &r);
            slots[i] = Some(r);
        }
    });
    let mut report = BatchReport { wall: start.elapsed(), jobs, ..BatchReport::default() };
    for r in slots.into_iter().flatten() {
        report.marks.add(&r.marks);
        report.simulated += r.simulated;
        report.results.push(r);
    }
    report
}

/// Parses `A..B` (B excluded), `A..=B`, or a single seed `A`.
pub fn parse_seeds(s: &str) -> Result<Vec<u64>, String> {
    let num = |x: &str| x.trim().parse::<u64>().map_err(|e| format!("bad seed {x:?}: {e}"));
    if let Some((a, b)) = s.split_once("..=") {
        let (a, b) = (num(a)?, num(b)?);
        return if a <= b { Ok((a..=b).collect()) } else { Err(format!("empty range {s}")) };
    }
    if let Some((a, b)) = s.split_once("..") {
        let (a, b) = (num(a)?, num(b)?);
        return if a < b { Ok((a..b).collect()) } else { Err(format!("empty range {s}")) };
    }
    Ok(vec![num(s)?])
}

/// Parses a regression list: one seed per line, `#` starts a comment (the cause).
pub fn parse_regressions(text: &str) -> Result<Vec<u64>, String> {
    let mut seeds = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let body = line.split('#').next().unwrap_or("").trim();
        if body.is_empty() {
            continue;
        }
        let seed = body.parse::<u64>().map_err(|e| format!("line {}: {body:?}: {e}", i + 1))?;
        seeds.push(seed);
    }
    Ok(seeds)
}

/// The command that replays `seed` and writes its trace.
pub fn replay_command(seed: u64) -> String {
    format!("cargo run --release -p chorus-sim -- replay --seed {seed} --trace seed-{seed}.trace.jsonl")
}

/// The replay command for a run with these settings (a mutant needs the feature and the flag).
pub fn replay_command_for(seed: u64, settings: &Settings) -> String {
    #[cfg(feature = "mutants")]
    {
        let name =
            settings.mutant.map(|m| format!("{m:?}")).or(settings.store_mutant.map(|m| format!("{m:?}")));
        if let Some(m) = name {
            return format!(
                "cargo run --release -p chorus-sim --features mutants -- replay --seed {seed} --mutant {m} --trace seed-{seed}.trace.jsonl"
            );
        }
    }
    let _ = settings;
    replay_command(seed)
}

/// Everything a reader needs about a failed seed: options, failure, how to replay it.
pub fn describe_failure(r: &SeedResult) -> String {
    describe_failure_for(r, &Settings::default())
}

/// [`describe_failure`] for a run with these settings.
pub fn describe_failure_for(r: &SeedResult, settings: &Settings) -> String {
    let failure = r.failure.as_ref().map(ToString::to_string).unwrap_or_default();
    format!(
        "FAILED {}\n{}\n  failure    {}\n  replay     {}\n",
        r.seed,
        SimOptions::from_seed(r.seed),
        failure,
        replay_command_for(r.seed, settings)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges_parse() {
        assert_eq!(parse_seeds("3..6"), Ok(vec![3, 4, 5]));
        assert_eq!(parse_seeds("3..=4"), Ok(vec![3, 4]));
        assert_eq!(parse_seeds("9"), Ok(vec![9]));
        assert!(parse_seeds("6..3").is_err());
        assert!(parse_seeds("x..3").is_err());
    }

    #[test]
    fn regressions_parse_with_comments() {
        let text = "# header\n12 # flush lost a message\n\n  7\n";
        assert_eq!(parse_regressions(text), Ok(vec![12, 7]));
        assert!(parse_regressions("12x\n").is_err());
    }

    #[test]
    fn failure_report_names_the_replay_command() {
        let r = SeedResult {
            seed: 42,
            failure: Some(Failure::Livelock("x".into())),
            trace_hash: 0,
            simulated: 0,
            marks: MarkCounts::default(),
        };
        let text = describe_failure(&r);
        assert!(text.contains("replay --seed 42 --trace seed-42.trace.jsonl"));
        assert!(text.contains("livelock"));
        assert!(text.contains("seed 42"));
    }
}
