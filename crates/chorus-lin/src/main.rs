//! `chorus-lin check FILE...`: the linearizability verdict on recorded histories.
//! `chorus-lin txn FILE...`: strict serializability of list-append transactions (Elle's
//! method; see the `txn` module).
//!
//! Exit code: 0 every history is linearizable (and no acknowledged append is lost), 1 some
//! history is not (or loses an append), 2 otherwise: a verdict is unknown (budget exceeded) or
//! an input could not be read. A violation wins over the rest.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chorus_lin::{
    check_history, lost_appends, parse_file, Budget, CheckOptions, Format, ModelKind, Partition, Resolved,
    Verdict,
};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(name = "chorus-lin", version, about = "A linearizability checker for recorded histories")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check histories: per key verdicts, op counts, time, and an explanation of violations.
    Check(CheckArgs),
    /// Check transaction histories (MULTI of list appends and reads) for strict
    /// serializability: dependency cycles (G0, G1c, G-single, G2, real time), incompatible
    /// orders, aborted reads, internal reads.
    Txn {
        /// Transaction history files (JSON lines, `"f":"txn"`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn txn_file(path: &Path) -> anyhow::Result<Status> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let start = Instant::now();
    let txns = chorus_lin::txn::parse(&text).with_context(|| format!("reading {}", path.display()))?;
    let report = chorus_lin::txn::check(&txns);
    println!("== {}", path.display());
    println!("{report} ({:.3} s)", start.elapsed().as_secs_f64());
    Ok(if report.is_ok() { Status::Ok } else { Status::Violation })
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    /// History files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The model (default: auto for jsonl, cas for jepsen, kv for edn).
    #[arg(long, value_enum)]
    model: Option<ModelArg>,
    /// The format (default: detected from the first line).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Check all keys as one object instead of each key on its own (slow).
    #[arg(long)]
    whole: bool,
    /// Step budget per key.
    #[arg(long, default_value_t = Budget::default().max_steps)]
    max_steps: u64,
    /// Memory budget per key, MiB.
    #[arg(long, default_value_t = (Budget::default().max_memory_bytes >> 20) as u64)]
    max_memory_mb: u64,
    /// Time budget per key, seconds (none by default).
    #[arg(long)]
    timeout: Option<f64>,
    /// Stop at the first key found not linearizable (keys are first searched with a small
    /// budget, so an easy violation is found before a hard key uses the whole budget).
    #[arg(long)]
    stop_at_first: bool,
    /// Skip the lost-append check of list keys.
    #[arg(long)]
    no_lost_check: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModelArg {
    Auto,
    Register,
    Cas,
    Kv,
    List,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    Jsonl,
    Jepsen,
    Edn,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    Ok,
    Unknown,
    Violation,
}

fn check_file(path: &Path, args: &CheckArgs) -> anyhow::Result<Status> {
    let format = args.format.map(|f| match f {
        FormatArg::Jsonl => Format::Jsonl,
        FormatArg::Jepsen => Format::Jepsen,
        FormatArg::Edn => Format::Edn,
    });
    let (history, format) =
        parse_file(path, format).with_context(|| format!("reading {}", path.display()))?;
    let model = match args.model {
        Some(ModelArg::Auto) => ModelKind::Auto,
        Some(ModelArg::Register) => ModelKind::Register,
        Some(ModelArg::Cas) => ModelKind::Cas,
        Some(ModelArg::Kv) => ModelKind::Kv,
        Some(ModelArg::List) => ModelKind::List,
        None => format.map_or(ModelKind::Auto, Format::default_model),
    };
    let timeout = match args.timeout {
        Some(t) if t.is_finite() && t >= 0.0 => Some(Duration::from_secs_f64(t)),
        Some(t) => anyhow::bail!("--timeout {t}: not a number of seconds"),
        None => None,
    };
    let opts = CheckOptions {
        model,
        partition: if args.whole { Partition::Whole } else { Partition::PerKey },
        budget: Budget {
            max_steps: args.max_steps,
            max_memory_bytes: usize::try_from(args.max_memory_mb.saturating_mul(1 << 20))
                .unwrap_or(usize::MAX),
            max_time: timeout,
        },
        stop_at_first_violation: args.stop_at_first,
    };
    let start = Instant::now();
    let report = check_history(&history, &opts).with_context(|| format!("checking {}", path.display()))?;
    println!("== {}", path.display());
    print!("{report}");
    let mut status = match report.verdict() {
        Verdict::Linearizable => Status::Ok,
        Verdict::Unknown => Status::Unknown,
        Verdict::NotLinearizable => Status::Violation,
    };
    let has_lists = report.keys.iter().any(|k| k.model == Resolved::List);
    if has_lists && !args.no_lost_check {
        let lost = lost_appends(&history);
        for l in &lost.lost {
            println!("{l}");
        }
        if !lost.keys_without_final_read.is_empty() {
            println!("no final read (lost appends not checked) on keys: {:?}", lost.keys_without_final_read);
        }
        println!(
            "lost appends: {} of {} acknowledged appends checked against {} final reads",
            lost.lost.len(),
            lost.appends_checked,
            lost.final_reads
        );
        if !lost.is_ok() {
            status = Status::Violation;
        }
    }
    println!(
        "{}: {} ({} ops, {} keys, {:.3} s)",
        path.display(),
        report.verdict(),
        report.ops(),
        report.keys.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(status)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut worst = Status::Ok;
    let mut bad_input = false;
    let (files, args) = match cli.command {
        Command::Check(args) => (args.files.clone(), Some(args)),
        Command::Txn { files } => (files, None),
    };
    for f in &files {
        let r = match &args {
            Some(a) => check_file(f, a),
            None => txn_file(f),
        };
        match r {
            Ok(s) => worst = worst.max(s),
            Err(e) => {
                eprintln!("error: {e:#}");
                bad_input = true;
            }
        }
    }
    match worst {
        Status::Violation => ExitCode::from(1),
        _ if bad_input => ExitCode::from(2),
        Status::Unknown => ExitCode::from(2),
        Status::Ok => ExitCode::SUCCESS,
    }
}
