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
        /// Address peers are told to dial (host:port; default: --listen). Needed when
        /// listening on every interface (0.0.0.0), e.g. in a container: node-1:7001.
        #[arg(long)]
        advertise: Option<String>,
        /// Members to join through, as id@host:port (repeat or comma-separate).
        #[arg(long, value_delimiter = ',')]
        seed: Vec<String>,
        /// Start a new group.
        #[arg(long)]
        bootstrap: bool,
        /// Write the checker's trace (JSON lines) here.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Serve Prometheus metrics (/metrics), the status page (/) and /health over HTTP
        /// here (host:port), e.g. 127.0.0.1:9101.
        #[arg(long)]
        metrics_listen: Option<String>,
        /// This node's certificate for mutual TLS on the peer links (PEM; with --tls-key and
        /// --tls-ca; `chorus certs` makes them).
        #[arg(long)]
        tls_cert: Option<PathBuf>,
        /// This node's private key (PEM).
        #[arg(long)]
        tls_key: Option<PathBuf>,
        /// The CA that signs every node's certificate (PEM).
        #[arg(long)]
        tls_ca: Option<PathBuf>,
        /// Run the peer links unencrypted (the config must choose: TLS or this).
        #[arg(long)]
        plaintext: bool,
        /// Multicasts per second to send, cycling through --orders.
        #[arg(long, default_value_t = 0.0)]
        send_rate: f64,
        /// The orderings the multicasts cycle through (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "fifo,causal,total,safe")]
        orders: Vec<String>,
        /// Pad each multicast's payload to at least this many bytes.
        #[arg(long, default_value_t = 0)]
        payload_bytes: usize,
        /// Bytes of filler in each checkpoint (so state transfers stream in pieces).
        #[arg(long, default_value_t = 1 << 20)]
        checkpoint_filler: u64,
        /// Log every delivery.
        #[arg(short, long)]
        verbose: bool,
    },
    /// A local group of real member processes on loopback: traffic in every ordering, a
    /// member killed and restarted (state transfer), one paused past its timeout (false
    /// suspicion, exclusion, re-join), narrated; ends with the trace checker's verdict.
    Demo {
        /// Members.
        #[arg(long, default_value_t = 5)]
        nodes: u64,
        /// Where configs and traces go (default: a fresh temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Multicasts per second per member.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
    },
    /// Benchmark: 3 member processes on loopback, every member multicasting, per ordering and
    /// payload size (throughput, and latency at 1,000 msgs/s per member), next to raw TCP fan-out.
    Bench {
        /// Seconds measured per figure.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Orderings to run (default: all four).
        #[arg(long, value_delimiter = ',')]
        orders: Vec<String>,
        /// Run the 3 members in this process, on one tokio runtime (the older figures).
        #[arg(long)]
        in_process: bool,
        /// Turn state transfer on (a joiner gets an empty checkpoint).
        #[arg(long)]
        state_transfer: bool,
        /// Run every figure twice, over plaintext and over mutual TLS (development
        /// certificates made for the run), and give the cost of encryption as a ratio.
        #[arg(long)]
        tls: bool,
        /// Run every figure (64 B) with and without metrics served and scraped every second,
        /// interleaved, and give the cost of metrics as a ratio.
        #[arg(long, conflicts_with = "tls")]
        metrics: bool,
        /// Rounds of each setting with --tls or --metrics (the median is given).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// One member process of `chorus bench`, driven by it over stdin and stdout.
    #[command(hide = true)]
    BenchMember(chorus::bench::MemberArgs),
    /// Make a development CA (once: one already in DIR is used, not replaced) and a
    /// certificate it signs for each NAME, for mutual TLS on the peer links and TLS on the
    /// store's client port: DIR/ca.pem, DIR/NAME.pem and DIR/NAME-key.pem. Each certificate
    /// names NAME, every --host, localhost, 127.0.0.1 and ::1. For development and tests: in
    /// production, use your own CA.
    Certs {
        /// Where the files go (made if missing).
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Extra host names or IP addresses the certificates are valid for (repeat or
        /// comma-separate; `*.chorus.default.svc` style wildcards work).
        #[arg(long = "host", value_delimiter = ',')]
        hosts: Vec<String>,
        /// The certificates to make, e.g. node-1 node-2 node-3 client.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Check traces written by nodes (merged by time) against the guarantees.
    Check {
        /// Trace files (JSON lines).
        #[arg(required = true)]
        traces: Vec<PathBuf>,
    },
    /// Work with traces: `chorus trace svg FILES... > run.svg` draws a space-time diagram.
    Trace {
        #[command(subcommand)]
        cmd: TraceCmd,
    },
}

#[derive(Subcommand, Debug)]
enum TraceCmd {
    /// Draw traces (merged by time) as an SVG space-time diagram on standard output: a time
    /// line per process life, views as bands, multicasts as arrows coloured by ordering, the
    /// flush, installs, state transfers, suspicions, crashes. Time runs in event order.
    Svg {
        /// Trace files (JSON lines): real nodes' traces, or `chorus-sim replay --trace`'s.
        #[arg(required = true)]
        traces: Vec<PathBuf>,
        /// Only events at or after this time (the traces' nanoseconds).
        #[arg(long)]
        from: Option<u64>,
        /// Only events at or before this time.
        #[arg(long)]
        to: Option<u64>,
        /// Only the change to this view: from its first sign (a suspicion, a flush, a crash)
        /// to the last state loaded in it.
        #[arg(long)]
        view: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A node logs what an operator needs (views and why, suspicions, transfers, quorum); the
    // other commands only warnings.
    chorus::logging::init(if matches!(cli.cmd, Cmd::Node { .. }) { "info" } else { "warn" });
    let result = match cli.cmd {
        Cmd::Node {
            config,
            node,
            listen,
            advertise,
            seed,
            bootstrap,
            trace,
            metrics_listen,
            tls_cert,
            tls_key,
            tls_ca,
            plaintext,
            send_rate,
            orders,
            payload_bytes,
            checkpoint_filler,
            verbose,
        } => {
            let orders = match orders.iter().map(|o| chorus::bench::parse_order(o.trim())).collect() {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("error: --orders: {e:#}");
                    return ExitCode::from(2);
                }
            };
            let flags = Partial {
                node,
                listen,
                advertise,
                seeds: (!seed.is_empty()).then_some(seed),
                bootstrap: bootstrap.then_some(true),
                trace,
                tls_cert,
                tls_key,
                tls_ca,
                plaintext: plaintext.then_some(true),
                metrics_listen,
                ..Partial::default()
            };
            node_cmd(
                config,
                flags,
                NodeOptions {
                    send_rate,
                    orders,
                    payload_bytes,
                    checkpoint_filler,
                    verbose,
                    ..NodeOptions::default()
                },
            )
        }
        Cmd::Check { traces } => check(&traces),
        Cmd::Trace { cmd: TraceCmd::Svg { traces, from, to, view } } => trace_svg(&traces, from, to, view),
        Cmd::Certs { dir, hosts, names } => certs(&dir, &hosts, &names),
        Cmd::Demo { nodes, dir, rate } => demo(nodes, dir, rate),
        Cmd::Bench { seconds, orders, in_process, state_transfer, tls, metrics, rounds } => {
            bench(seconds, &orders, in_process, state_transfer, tls, metrics, rounds.max(1))
        }
        Cmd::BenchMember(args) => chorus::bench::member_main(args),
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

fn certs(dir: &std::path::Path, hosts: &[String], names: &[String]) -> anyhow::Result<bool> {
    use chorus::tls::dev_certs::{ensure_ca, make_leaf, CaOutcome, CA_CERT, CA_KEY};
    let (ca, outcome) = ensure_ca(dir, "chorus")?;
    match outcome {
        CaOutcome::Made => println!(
            "made a development CA: {} (its key {}: keep it private)",
            dir.join(CA_CERT).display(),
            dir.join(CA_KEY).display()
        ),
        CaOutcome::Kept => println!("using the CA already in {}", dir.join(CA_CERT).display()),
    }
    for name in names {
        let (cert, key) = make_leaf(dir, &ca, name, hosts)?;
        println!("{name}: {} and {}", cert.display(), key.display());
    }
    if let Some(first) = names.first() {
        println!(
            "\nIn {first}'s config:\n  tls_cert = \"{}\"\n  tls_key = \"{}\"\n  tls_ca = \"{}\"",
            dir.join(format!("{first}.pem")).display(),
            dir.join(format!("{first}-key.pem")).display(),
            dir.join(CA_CERT).display()
        );
    }
    Ok(true)
}

/// `chorus bench --tls`: each figure over plaintext and over mutual TLS, interleaved (plain,
/// TLS, plain, TLS) so that a shared machine's drift hits both alike; the ratio is TLS over
/// plaintext of the medians.
async fn bench_tls(
    mode: &chorus::bench::Mode,
    orders: &[chorus::Order],
    secs: f64,
    state_transfer: bool,
    certs: &std::path::Path,
    rounds: usize,
) -> anyhow::Result<()> {
    use chorus::bench::{figure, order_name};
    let rounds_n = rounds;
    println!("chorus bench --tls: 3 member processes over loopback, every member multicasting as fast as");
    println!(
        "back-pressure lets it; each figure {rounds_n} times over plaintext and {rounds_n} times over mutual TLS"
    );
    println!("(rustls, aws-lc-rs; TLS 1.3), interleaved; deliveries/s at one member over {secs} s, median of rounds;");
    println!("CPU = the members' CPU time per second of window, summed (cores)");
    println!();
    println!(
        "  {:<7} {:>7} {:>12} {:>12} {:>9} {:>10} {:>10} {:>9}",
        "order", "payload", "plain/s", "TLS/s", "TLS/plain", "CPU plain", "CPU TLS", "CPU ratio"
    );
    for payload in [64usize, 1024] {
        for order in orders {
            let (mut plain, mut tls, mut cpu_p, mut cpu_t) = (vec![], vec![], vec![], vec![]);
            for _ in 0..rounds_n {
                let p = figure(mode, *order, payload, None, secs, state_transfer, None, false).await?;
                let t = figure(mode, *order, payload, None, secs, state_transfer, Some(certs), false).await?;
                plain.push(p.rate);
                tls.push(t.rate);
                cpu_p.extend(p.cpu);
                cpu_t.extend(t.cpu);
            }
            let (p, t) = (median(plain), median(tls));
            let (cp, ct) = (median(cpu_p), median(cpu_t));
            println!(
                "  {:<7} {:>6}B {:>12.0} {:>12.0} {:>9.2} {:>10.2} {:>10.2} {:>9.2}",
                order_name(*order),
                payload,
                p,
                t,
                t / p.max(1e-9),
                cp,
                ct,
                ct / cp.max(1e-9)
            );
        }
    }
    Ok(())
}

/// The median of the figures of a bench's rounds (0 if none).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// `chorus bench --metrics`: each figure with and without metrics served and scraped.
async fn bench_metrics(
    mode: &chorus::bench::Mode,
    orders: &[chorus::Order],
    secs: f64,
    state_transfer: bool,
    rounds: usize,
) -> anyhow::Result<()> {
    use chorus::bench::{figure, order_name};
    println!(
        "chorus bench --metrics: 3 member processes over loopback, every member multicasting 64 B as fast"
    );
    println!(
        "as back-pressure lets it; each figure {rounds} times without metrics and {rounds} times with every"
    );
    println!("member serving metrics and the bench scraping each one's /metrics every second, interleaved;");
    println!("deliveries/s at one member over {secs} s, median of rounds; CPU = the members' CPU time per");
    println!("second of window, summed (cores)");
    println!();
    println!(
        "  {:<7} {:>12} {:>12} {:>8} {:>17} {:>10} {:>10} {:>8}",
        "order", "plain/s", "scraped/s", "ratio", "round ratios", "CPU plain", "CPU scr.", "scrapes"
    );
    for order in orders {
        let (mut plain, mut scraped, mut cpu_p, mut cpu_s, mut scrapes) = (vec![], vec![], vec![], vec![], 0);
        for r in 0..rounds {
            // Alternate which goes first: a drift of the machine falls on both.
            let first_scraped = r % 2 == 1;
            for scrape in [first_scraped, !first_scraped] {
                let f = figure(mode, *order, 64, None, secs, state_transfer, None, scrape).await?;
                if scrape {
                    scraped.push(f.rate);
                    cpu_s.extend(f.cpu);
                    scrapes += f.scrapes.unwrap_or(0);
                } else {
                    plain.push(f.rate);
                    cpu_p.extend(f.cpu);
                }
            }
        }
        // The ratio of each round's pair (run back to back), then their median: the machine's
        // drift between rounds cancels out.
        let mut ratios: Vec<f64> = plain.iter().zip(&scraped).map(|(p, s)| s / p.max(1e-9)).collect();
        ratios.sort_by(f64::total_cmp);
        let (lo, hi) = (ratios.first().copied().unwrap_or(0.0), ratios.last().copied().unwrap_or(0.0));
        let (p, s) = (median(plain), median(scraped));
        let (cp, cs) = (median(cpu_p), median(cpu_s));
        println!(
            "  {:<7} {:>12.0} {:>12.0} {:>8.3} {:>17} {:>10.2} {:>10.2} {:>8}",
            order_name(*order),
            p,
            s,
            median(ratios),
            format!("{lo:.2}..{hi:.2}"),
            cp,
            cs,
            scrapes
        );
    }
    println!();
    println!(
        "ratio = deliveries/s with metrics scraped over without, per round (the pair run back to back),"
    );
    println!("median of rounds (1.000: no cost); round ratios: the lowest and the highest");
    Ok(())
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
                _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: leaving the group and stopping"),
                _ = term.recv() => tracing::info!("SIGTERM: leaving the group and stopping"),
            }
            let _ = stop_tx.send(()).await;
        });
        run_node(cfg, opts, stop_rx).await
    })?;
    Ok(true)
}

fn trace_svg(
    paths: &[PathBuf],
    from: Option<u64>,
    to: Option<u64>,
    view: Option<u64>,
) -> anyhow::Result<bool> {
    let mut traces = Vec::new();
    for p in paths {
        let f = std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
        traces.push(
            chorus_check::trace::read_jsonl(std::io::BufReader::new(f))
                .with_context(|| format!("{}", p.display()))?,
        );
    }
    let merged = chorus_check::trace::merge_by_time(traces);
    let svg = chorus_check::svg::render(&merged, &chorus_check::svg::Window { from, to, view })?;
    use std::io::Write as _;
    std::io::stdout().write_all(svg.as_bytes()).context("cannot write the diagram")?;
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

fn demo(n: u64, dir: Option<PathBuf>, rate: f64) -> anyhow::Result<bool> {
    use chorus::cluster::{ClusterOptions, LocalCluster};
    use std::time::Duration;
    anyhow::ensure!((3..=9).contains(&n), "--nodes must be between 3 and 9");
    let dir = dir.unwrap_or_else(|| std::env::temp_dir().join(format!("chorus-demo-{}", std::process::id())));
    let exe = std::env::current_exe().context("cannot find the chorus executable")?;
    let o = ClusterOptions {
        exe,
        dir: dir.clone(),
        send_rate: rate,
        orders: Vec::new(),
        payload_bytes: 0,
        heartbeat_ms: 100,
        suspect_timeout_ms: 500,
        checkpoint_filler: 4 << 20,
        echo: true,
    };
    let say = |c: &LocalCluster, text: &str| println!("{:>7.2}s  == {text}", c.elapsed());
    let all: Vec<u64> = (1..=n).collect();
    let mut c = LocalCluster::new(o, n)?;
    println!("chorus demo: {n} member processes on 127.0.0.1, each multicasting {rate} messages/s in");
    println!("fifo, causal, total and safe order; state: a hash chain of the total and safe messages");
    println!("(checkpoints of 4 MiB streamed to joiners). Traces in {}\n", dir.display());
    say(
        &c,
        &format!("starting n1..n{n}: n1 founds the group once a majority answers that no group exists yet"),
    );
    for node in 1..=n {
        c.start(node)?;
    }
    let v = c.wait_view(&all, Duration::from_secs(30))?;
    say(&c, &format!("all {n} members are in view v{v} and hold the state; traffic flows for 2 s"));
    for node in 1..=n {
        if let Some(a) = c.metrics_addr(node) {
            println!("           n{node}: status page http://{a}/  metrics http://{a}/metrics");
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    say(&c, &format!("killing n{n} with SIGKILL (a crash): the others suspect it and change the view"));
    c.kill(n)?;
    let rest: Vec<u64> = (1..n).collect();
    let v = c.wait_view(&rest, Duration::from_secs(15))?;
    say(&c, &format!("view v{v} without n{n}; restarting it: a new incarnation joins and loads the state"));
    c.start(n)?;
    let v = c.wait_view(&all, Duration::from_secs(30))?;
    say(&c, &format!("n{n} is back in view v{v}; pausing n2 with SIGSTOP for 2 s, past its 500 ms timeout"));
    c.pause(2)?;
    let without2: Vec<u64> = all.iter().copied().filter(|x| *x != 2).collect();
    let v = c.wait_view(&without2, Duration::from_secs(15))?;
    say(&c, &format!("view v{v} excludes n2 although it is alive (false suspicion)"));
    std::thread::sleep(Duration::from_millis(1200));
    say(&c, "resuming n2 with SIGCONT: it learns it was excluded and re-joins as a new member");
    c.resume(2)?;
    let v = c.wait_view(&all, Duration::from_secs(30))?;
    say(&c, &format!("all {n} members are in view v{v} again; stopping the traffic"));
    c.liveness_phase()?;
    c.quiet()?;
    std::thread::sleep(Duration::from_millis(1500));
    c.wait_view(&all, Duration::from_secs(30))?;
    c.end()?;
    let nodes = c.nodes();
    let (events, verdict) = c.check()?;
    println!();
    println!("summary");
    for (node, v) in &nodes {
        println!(
            "  n{node}: {} views installed, {} state transfers loaded, last view {}",
            v.views,
            v.loaded,
            v.view.as_ref().map_or("-".to_string(), |(id, _)| format!("v{id}"))
        );
    }
    let traces = c.traces();
    let delivered = count_deliveries(&traces);
    println!("  {delivered} deliveries in all; {events} trace events in {} files", traces.len());
    match verdict {
        Ok(()) => {
            println!(
                "  checker: every guarantee holds (G1-G12, ST2, ST3) - `chorus check {}/*.jsonl`",
                dir.display()
            );
            Ok(true)
        }
        Err(v) => {
            println!("  checker: VIOLATION: {v}");
            Ok(false)
        }
    }
}

fn count_deliveries(traces: &[PathBuf]) -> usize {
    traces
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| t.lines().filter(|l| l.contains("\"ev\":\"deliver\"")).count())
        .sum()
}

fn bench(
    secs: f64,
    orders: &[String],
    in_process: bool,
    state_transfer: bool,
    tls: bool,
    metrics: bool,
    rounds: usize,
) -> anyhow::Result<bool> {
    use chorus::bench::{figure, make_bench_certs, order_name, parse_order, tcp_fanout, Mode};
    use chorus::Order;
    let orders: Vec<Order> = if orders.is_empty() {
        Order::ALL.to_vec()
    } else {
        orders.iter().map(|o| parse_order(o)).collect::<Result<_, _>>()?
    };
    let mode = if in_process {
        Mode::InProcess
    } else {
        Mode::Processes { exe: std::env::current_exe().context("cannot find the chorus executable")? }
    };
    // Certificates for the TLS figures, in a directory removed at the end.
    struct Certs(PathBuf);
    impl Drop for Certs {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let certs = if tls {
        let dir = std::env::temp_dir().join(format!("chorus-bench-certs-{}", std::process::id()));
        let certs = Certs(dir);
        make_bench_certs(&certs.0)?;
        Some(certs)
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let run = async {
        if metrics {
            return bench_metrics(&mode, &orders, secs, state_transfer, rounds).await;
        }
        if let Some(c) = &certs {
            return bench_tls(&mode, &orders, secs, state_transfer, &c.0, rounds).await;
        }
        let members = match mode {
            Mode::InProcess => "3 members in this process (one tokio runtime)",
            Mode::Processes { .. } => "3 member processes (one tokio runtime each, as `chorus node`)",
        };
        println!("chorus bench: {members} over loopback TCP,");
        println!(
            "state transfer {}, a fresh group per figure, every member multicasting; rate = deliveries/s at one",
            if state_transfer { "on" } else { "off" }
        );
        println!("member (all senders) over its measured window of {secs} s after 0.5 s warm-up, mean over members;");
        println!(
            "latency = delivery minus send time (CLOCK_MONOTONIC); raw TCP fan-out 1->2 in 64 KiB writes"
        );
        let ms = |d: Option<std::time::Duration>| {
            d.map_or("-".to_string(), |d| format!("{:.0} us", d.as_secs_f64() * 1e6))
        };
        for payload in [64usize, 1024] {
            let tcp = tcp_fanout(payload, secs.min(2.0)).await?;
            println!();
            println!(
                "payload {payload} B: raw TCP fan-out {:.0} msgs/s, {:.1} MB/s per receiver",
                tcp.rate, tcp.mbps
            );
            println!(
                "  {:<7} {:>12} {:>9} {:>9}   {:>9} {:>9}",
                "order", "deliv/s", "MB/s", "vs TCP", "p50@1k/s", "p99@1k/s"
            );
            for order in &orders {
                let t = figure(&mode, *order, payload, None, secs, state_transfer, None, false).await?;
                let l =
                    figure(&mode, *order, payload, Some(1000.0), secs, state_transfer, None, false).await?;
                println!(
                    "  {:<7} {:>12.0} {:>9.1} {:>8.1}%   {:>9} {:>9}",
                    order_name(*order),
                    t.rate,
                    t.mbps,
                    100.0 * t.mbps / tcp.mbps.max(1e-9),
                    ms(l.p50),
                    ms(l.p99)
                );
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    // On Ctrl-C or SIGTERM, `run` is dropped: that kills the member processes (a signal's
    // default action would end this process without doing so).
    let interrupted = async {
        let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            return std::future::pending().await;
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => if r.is_err() { std::future::pending::<()>().await },
            _ = term.recv() => {}
        }
    };
    rt.block_on(async {
        let r = tokio::select! {
            biased;
            () = interrupted => Err(anyhow::anyhow!("interrupted")),
            r = run => r,
        };
        if r.is_err() {
            // Member processes killed on the way out: a moment for the runtime to reap them.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        r
    })?;
    Ok(true)
}
