//! `chorus-sim`: run seeds, replay one, watch a narrated demo, or benchmark the core.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use chorus_sim::batch::{self, SeedResult};
use chorus_sim::bench;
use chorus_sim::options::SEC;
use chorus_sim::{run_options, Outcome, Settings, SimOptions};

/// `println!` that ends the program quietly when stdout is closed (`chorus-sim ... | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

#[derive(Parser, Debug)]
#[command(name = "chorus-sim", about = "Deterministic simulation of chorus groups, checked after every step")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run many seeds in parallel; exit non-zero if any fails.
    Run {
        /// Seeds: `A..B` (B excluded), `A..=B` or one number.
        #[arg(long, default_value = "0..1000")]
        seeds: String,
        /// Worker threads (default: available cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Also run the seeds listed in this file (one per line, `#` comments).
        #[arg(long)]
        regressions: Option<PathBuf>,
        /// Fail if any coverage mark was never hit.
        #[arg(long)]
        require_marks: bool,
        /// Run every node with this deliberate bug (e.g. SkipFlush; or a store mutant,
        /// ReadsWithoutBarrier or WritesInFifo, on the seeds with the store).
        #[cfg(feature = "mutants")]
        #[arg(long)]
        mutant: Option<String>,
    },
    /// Run one seed, print its options and outcome, write its trace.
    Replay {
        /// The seed.
        #[arg(long)]
        seed: u64,
        /// Where to write the trace (JSON lines); default `seed-N.trace.jsonl`.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Narrate views, blocks, faults.
        #[arg(short, long)]
        verbose: bool,
        /// Run every node with this deliberate bug (e.g. SkipFlush).
        #[cfg(feature = "mutants")]
        #[arg(long)]
        mutant: Option<String>,
    },
    /// A narrated run of a five-node group through a crash, a pause, a partition and a leave.
    Demo,
    /// Benchmark the core alone: deliveries per CPU-second in a 3-node group without faults.
    Bench {
        /// CPU seconds to measure for.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        #[cfg(feature = "mutants")]
        Cmd::Run { seeds, jobs, regressions, require_marks, mutant } => {
            settings_with_mutant(mutant).and_then(|s| run(&seeds, jobs, regressions, require_marks, s))
        }
        #[cfg(not(feature = "mutants"))]
        Cmd::Run { seeds, jobs, regressions, require_marks } => {
            run(&seeds, jobs, regressions, require_marks, Settings::default())
        }
        #[cfg(feature = "mutants")]
        Cmd::Replay { seed, trace, verbose, mutant } => {
            settings_with_mutant(mutant).and_then(|s| replay(seed, trace, verbose, s))
        }
        #[cfg(not(feature = "mutants"))]
        Cmd::Replay { seed, trace, verbose } => replay(seed, trace, verbose, Settings::default()),
        Cmd::Demo => demo(),
        Cmd::Bench { seconds } => bench(seconds),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(feature = "mutants")]
fn settings_with_mutant(name: Option<String>) -> Result<Settings, String> {
    let mut s = Settings::default();
    if let Some(name) = name {
        if let Some(m) = chorus_sim::mutant_by_name(&name) {
            s.mutant = Some(m);
        } else {
            let m =
                chorus_sim::store_mutant_by_name(&name).ok_or_else(|| format!("unknown mutant {name}"))?;
            s.store_mutant = Some(m);
        }
    }
    Ok(s)
}

/// `run`: every seed, a progress display, failures with their replay command, a summary.
fn run(
    seeds: &str,
    jobs: Option<usize>,
    regressions: Option<PathBuf>,
    require_marks: bool,
    settings: Settings,
) -> Result<bool, String> {
    let mut list = batch::parse_seeds(seeds)?;
    if let Some(path) = regressions {
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let extra = batch::parse_regressions(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("{} regression seeds from {}", extra.len(), path.display());
        list.extend(extra);
    }
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let tty = std::io::stderr().is_terminal();
    let bar = if tty { ProgressBar::new(list.len() as u64) } else { ProgressBar::hidden() };
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} seeds, {per_sec}, eta {eta} {msg}")
    {
        bar.set_style(style);
    }
    let mut failed = 0;
    let mut shown = 0;
    let report = batch::run_batch(&list, jobs, &settings, |done, total, r: &SeedResult| {
        bar.inc(1);
        if r.failure.is_some() {
            failed += 1;
            bar.set_message(format!("{failed} failed"));
            if shown < 20 {
                shown += 1;
                bar.suspend(|| eprintln!("{}", batch::describe_failure_for(r, &settings)));
            } else {
                bar.suspend(|| eprintln!("FAILED {} (details omitted; replay it)", r.seed));
            }
        }
        if !tty && (done * 10 / total.max(1)) > ((done - 1) * 10 / total.max(1)) {
            eprintln!("{done}/{total} seeds, {failed} failed");
        }
    });
    bar.finish_and_clear();
    out!("{}", report.summary());
    let failures: Vec<u64> = report.failures().map(|r| r.seed).collect();
    if !failures.is_empty() {
        out!("FAILED seeds: {failures:?}");
        for seed in failures.iter().take(5) {
            out!("  replay: {}", batch::replay_command_for(*seed, &settings));
        }
    }
    let missing = report.marks.total.missing();
    if require_marks && !missing.is_empty() {
        out!("marks never hit: {}", missing.join(", "));
        return Ok(false);
    }
    Ok(failures.is_empty())
}

fn print_stats(o: &Outcome) {
    let s = &o.stats;
    out!(
        "  simulated {:.2}s, {} steps, {} trace events; views up to v{}; {} multicasts, {} deliveries",
        o.simulated as f64 / SEC as f64,
        s.steps,
        s.trace_events,
        s.highest_view,
        s.sends,
        s.deliveries
    );
    out!(
        "  faults: {} crashes, {} pauses, {} partitions, {} leaves, {} exclusions, {} garbage frames; network: {} frames, {} lost, {} duplicated",
        s.crashes, s.pauses, s.partitions, s.leaves, s.exclusions, s.garbage, s.net.sent, s.net.lost, s.net.duplicated
    );
    let k = &s.store;
    if o.options.store.on {
        out!(
            "  store: {} operations: {} ok, {} failed, {} unknown ({} uncertain, {} cut off, {} timed out); {} transactions, {} writes sent again",
            k.ops, k.ok, k.failed, k.unknown, k.uncertain, k.cut_off, k.timed_out, k.transactions, k.retries
        );
        if !k.refusals.is_empty() {
            let r: Vec<String> = k.refusals.iter().map(|(why, n)| format!("{n} {why}")).collect();
            out!("  store refusals: {}", r.join(", "));
        }
    }
}

/// `replay`: one seed, everything about it, its trace on disk.
fn replay(seed: u64, trace: Option<PathBuf>, verbose: bool, mut settings: Settings) -> Result<bool, String> {
    settings.keep_trace = true;
    settings.narrate = verbose;
    let o = run_options(SimOptions::from_seed(seed), settings);
    out!("{}", o.options);
    for line in &o.narration {
        out!("{line}");
    }
    print_stats(&o);
    match &o.failure {
        None => out!("PASS seed {seed}"),
        Some(f) => out!("FAILED seed {seed}: {f}"),
    }
    out!("trace hash {:016x}", o.trace_hash);
    let path = trace.unwrap_or_else(|| PathBuf::from(format!("seed-{seed}.trace.jsonl")));
    let file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut w = BufWriter::new(file);
    for ev in o.trace.iter().flatten() {
        chorus_check::write_jsonl(&mut w, ev).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    w.flush().map_err(|e| format!("{}: {e}", path.display()))?;
    out!("trace written to {} ({} events)", path.display(), o.trace.as_ref().map_or(0, Vec::len));
    if let Some(events) = &o.store_history {
        // Next to the trace: the store's history as judged, for `chorus-lin check`.
        let path = path.with_extension("").with_extension("store.jsonl");
        let file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut w = BufWriter::new(file);
        for e in events {
            chorus_lin::jsonl::write_event(&mut w, e).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        w.flush().map_err(|e| format!("{}: {e}", path.display()))?;
        out!("store history written to {} ({} events)", path.display(), events.len());
    }
    Ok(o.failure.is_none())
}

/// `demo`: a short narrated story with the checker's verdict.
fn demo() -> Result<bool, String> {
    let options = SimOptions::demo(1);
    out!("chorus demo: a simulated group of 5 nodes (n0..n4) on a 5-10 ms network,");
    out!("each member multicasting 20 msgs/s (each one FIFO, causal, total or safe at random),");
    out!("every step judged by the checker.");
    out!("Script: crash n4 at 2s, pause n2 for 1.5s at 4.5s, cut n0 off at 7s, n3 leaves at 9s.");
    out!("Members are n<node>.<life>: n2.1 is node 2 re-joined after an exclusion, n4.r1 is node 4");
    out!("restarted after a crash; each is a new member. (vN: msgs sent in the old view, flush time)\n");
    let settings = Settings { narrate: true, ..Settings::default() };
    let o = run_options(options, settings);
    for line in &o.narration {
        out!("{line}");
    }
    let s = &o.stats;
    out!();
    out!(
        "{} views installed, {} multicasts, {} deliveries, {} crash, {} exclusions, {} leave, {:.1}s simulated",
        s.highest_view,
        s.sends,
        s.deliveries,
        s.crashes,
        s.exclusions,
        s.leaves,
        o.simulated as f64 / SEC as f64
    );
    if let Some((v, members)) = &o.final_view {
        let m: Vec<String> = members.iter().copied().map(chorus_sim::recorder::show).collect();
        out!("final view v{v}: [{}]", m.join(" "));
    }
    match &o.failure {
        None => {
            out!("checker: all guarantees held (view agreement, one history, self-inclusion, virtual");
            out!("synchrony, sending-view delivery, integrity, FIFO, causal, total and safe order,");
            out!("liveness after healing)");
        }
        Some(f) => out!("checker: FAILED: {f}"),
    }
    out!("Next: `cargo run --release -p chorus-sim -- run --seeds 0..1000` runs a thousand random seeds.");
    Ok(o.failure.is_none())
}

/// `bench`: deliveries per CPU-second of the core alone, for each ordering.
fn bench(seconds: f64) -> Result<bool, String> {
    use chorus_core::Order;
    let budget = Duration::from_secs_f64(seconds.max(0.1));
    out!("core bench: 3 members, every member multicasting 64-byte payloads as fast as its window");
    out!("allows, no faults, zero delay; thread CPU time, {seconds:.1} s per ordering");
    out!(
        "  {:<7} {:>16} {:>12} {:>16} {:>15}",
        "order",
        "deliveries/CPU-s",
        "vs FIFO",
        "frames/delivery",
        "bytes/delivery"
    );
    let mut fifo = None;
    for order in Order::ALL {
        let r = bench::run_bench(budget, order)?;
        let per = |x: u64| x as f64 / r.deliveries.max(1) as f64;
        let rate = r.deliveries_per_cpu_sec();
        let base = *fifo.get_or_insert(rate);
        out!(
            "  {:<7} {:>16.0} {:>11.0}% {:>16.3} {:>15.1}",
            format!("{order:?}").to_lowercase(),
            rate,
            100.0 * rate / base,
            per(r.frames),
            per(r.bytes)
        );
    }
    Ok(true)
}
