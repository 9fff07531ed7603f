//! `chorus`: run a member, check traces written by real nodes, or watch a local demo cluster.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use chorus::app::{run_node, NodeOptions};
use chorus::config::Partial;

#[derive(Parser, Debug)]
#[command(name = "chorus", version, about = "Virtual synchrony process groups over TCP")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a member: join (or bootstrap) the group and log views, blocks and state transfers.
    /// Settings come from the config file, then CHORUS_* environment variables, then flags.
    Node {
        /// TOML config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// This node's id.
        #[arg(long)]
        node: Option<u64>,
        /// Address to listen on (host:port).
        #[arg(long)]
        listen: Option<String>,
        /// Members to join through, as id@host:port (repeat or comma-separate).
        #[arg(long, value_delimiter = ',')]
        seed: Vec<String>,
        /// Start a new group.
        #[arg(long)]
        bootstrap: bool,
        /// Write the checker's trace (JSON lines) here.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Multicasts per second to send, cycling through fifo, causal, total and safe.
        #[arg(long, default_value_t = 0.0)]
        send_rate: f64,
        /// Bytes of filler in each checkpoint (so state transfers stream in pieces).
        #[arg(long, default_value_t = 1 << 20)]
        checkpoint_filler: u64,
        /// Log every delivery.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Check traces written by nodes (merged by time) against the guarantees.
    Check {
        /// Trace files (JSON lines).
        #[arg(required = true)]
        traces: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("CHORUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let result = match cli.cmd {
        Cmd::Node { config, node, listen, seed, bootstrap, trace, send_rate, checkpoint_filler, verbose } => {
            let flags = Partial {
                node,
                listen,
                seeds: (!seed.is_empty()).then_some(seed),
                bootstrap: bootstrap.then_some(true),
                trace,
                ..Partial::default()
            };
            node_cmd(
                config,
                flags,
                NodeOptions { send_rate, checkpoint_filler, verbose, ..NodeOptions::default() },
            )
        }
        Cmd::Check { traces } => check(&traces),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn node_cmd(config: Option<PathBuf>, flags: Partial, opts: NodeOptions) -> anyhow::Result<bool> {
    let file = match &config {
        Some(path) => Partial::from_file(path)?,
        None => Partial::default(),
    };
    let env = Partial::from_env(|k| std::env::var(k).ok())?;
    let cfg = file.overridden_by(env).overridden_by(flags).build()?;
    let rt =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")?;
    rt.block_on(async {
        // SIGUSR1 stops this node's traffic (the demo quiets the cluster before its verdict).
        let quiet = opts.quiet.clone();
        tokio::spawn(async move {
            if let Ok(mut usr1) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
            {
                while usr1.recv().await.is_some() {
                    quiet.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        let (stop_tx, stop_rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            let _ = stop_tx.send(()).await;
        });
        run_node(cfg, opts, stop_rx).await
    })?;
    Ok(true)
}

fn check(paths: &[PathBuf]) -> anyhow::Result<bool> {
    let (n, verdict) = chorus::cluster::check_files(paths)?;
    match verdict {
        Ok(()) => {
            println!("{n} events from {} trace(s): every guarantee holds", paths.len());
            Ok(true)
        }
        Err(v) => {
            println!("{n} events from {} trace(s): VIOLATION: {v}", paths.len());
            Ok(false)
        }
    }
}
