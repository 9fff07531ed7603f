//! # chorus-sim: the deterministic simulator (FoundationDB / TigerBeetle VOPR style)
//!
//! Many [`chorus_core::Node`]s run in one thread against a simulated network, a nemesis and a
//! workload; every trace event goes through the [`chorus_check::Checker`] as it happens. All
//! randomness derives from one `u64` seed, so a failing seed replays exactly (same commit, same
//! seed, same events: [`Outcome::trace_hash`] proves it).
//!
//! Why simulate instead of running processes: the interleavings that break group membership
//! (a crash in the middle of a flush, a partition that heals while a view change is under way,
//! a paused member that wakes up in an old view) are rare on real machines and impossible to
//! reproduce there. In simulation they happen thousands of times a minute, and every one can be
//! replayed and narrated.
//!
//! Layout:
//! - [`options`]: what a seed's run looks like (swarm-randomised).
//! - [`network`]: TCP-like links with delay, breaks, duplicates, partitions.
//! - [`nemesis`]: crashes, pauses, partitions, churn, garbage frames.
//! - [`workload`]: tagged multicasts.
//! - [`store`]: on some seeds, the replicated key-value store at every node, its clients, and
//!   the judgement of their history.
//! - [`cluster`]: the event loop, the phases, the trace.
//! - [`recorder`]: checker, trace hash, kept trace, narration.
//! - [`marks`]: coverage marks.
//! - [`batch`]: many seeds on many threads, regressions, summaries.
//! - [`bench`]: the core alone, for throughput figures.

pub mod app;
pub mod batch;
pub mod bench;
pub mod cluster;
pub mod marks;
pub mod nemesis;
pub mod network;
pub mod options;
pub mod recorder;
pub mod rng;
pub mod stbench;
pub mod store;
pub mod workload;

pub use cluster::{run_options, run_seed, Failure, Outcome, RunStats, Settings};
pub use marks::{MarkCounts, MarkTable, SimMark};
pub use options::SimOptions;

/// Every mutant of `chorus-core` (the tests check that each one is caught).
#[cfg(feature = "mutants")]
pub const ALL_MUTANTS: [chorus_core::Mutant; 15] = chorus_core::Mutant::ALL;

#[cfg(feature = "mutants")]
fn same_name(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.chars().filter(|c| c.is_alphanumeric()).collect::<String>().to_lowercase();
    norm(a) == norm(b)
}

/// The mutant called `name` (its variant name, e.g. `SkipFlush`; case, `-` and `_` ignored).
#[cfg(feature = "mutants")]
pub fn mutant_by_name(name: &str) -> Option<chorus_core::Mutant> {
    ALL_MUTANTS.into_iter().find(|m| same_name(&format!("{m:?}"), name))
}

/// The store mutant called `name` (e.g. `WritesInFifo`), as [`mutant_by_name`].
#[cfg(feature = "mutants")]
pub fn store_mutant_by_name(name: &str) -> Option<store::StoreMutant> {
    store::StoreMutant::ALL.into_iter().find(|m| same_name(&format!("{m:?}"), name))
}
