//! A local cluster of real member processes on loopback, for the demo and the process tests:
//! start, kill (SIGKILL), pause (SIGSTOP/SIGCONT), restart, make leave, then check the traces.
//!
//! Every node runs `chorus node` with a trace file; the harness writes its own trace (crashes,
//! pauses, the liveness phase, the end) and the checker judges all of them merged by time.
//! Each node's stdout (one line per view, block, transfer) is collected for narration and for
//! waiting on conditions ("a view of five").

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chorus_check::{Ev, Proc, TraceEvent};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A line a node printed, with the node and when it arrived.
#[derive(Clone, Debug)]
pub struct Line {
    /// The node.
    pub node: u64,
    /// Seconds since the cluster started.
    pub at: f64,
    /// The text.
    pub text: String,
}

/// What the harness knows of one node from its output.
#[derive(Clone, Debug, Default)]
pub struct NodeView {
    /// Its current incarnation (from "started as" / "re-joining as").
    pub inc: u64,
    /// The members (node ids) of its latest view, and the view id.
    pub view: Option<(u64, Vec<u64>)>,
    /// It is loading state (between "loads the group's state" and "loaded").
    pub loading: bool,
    /// Views installed, state transfers loaded (counters for the summary).
    pub views: u64,
    /// State transfers loaded.
    pub loaded: u64,
}

#[derive(Default)]
struct Shared {
    lines: Vec<Line>,
    nodes: BTreeMap<u64, NodeView>,
}

/// Settings of a local cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// The `chorus` executable.
    pub exe: PathBuf,
    /// Where configs and traces go.
    pub dir: PathBuf,
    /// Multicasts per second per node.
    pub send_rate: f64,
    /// The orderings they cycle through (empty: all four).
    pub orders: Vec<chorus_core::Order>,
    /// Their payloads are padded to at least this many bytes.
    pub payload_bytes: usize,
    /// Heartbeat and suspicion timeout.
    pub heartbeat_ms: u64,
    /// See `heartbeat_ms`.
    pub suspect_timeout_ms: u64,
    /// Checkpoint filler per transfer.
    pub checkpoint_filler: u64,
    /// Echo node lines to stdout as they come.
    pub echo: bool,
}

/// A running local cluster.
pub struct LocalCluster {
    o: ClusterOptions,
    ports: BTreeMap<u64, u16>,
    /// Each node's metrics and status page port.
    metrics_ports: BTreeMap<u64, u16>,
    children: BTreeMap<u64, Child>,
    shared: Arc<Mutex<Shared>>,
    trace: std::fs::File,
    started: Instant,
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCluster").field("dir", &self.o.dir).field("ports", &self.ports).finish()
    }
}

/// A port free now, for a node to bind a moment later. Taken below Linux's ephemeral range
/// (32768 and up): a port the kernel hands out (`bind :0`) can also be given to an outgoing
/// connection before the node binds it (seen once in CI: "Address already in use").
fn free_port() -> anyhow::Result<u16> {
    const LOW: u32 = 26_000;
    const SPAN: u32 = 6_000;
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(37) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = (LOW + (start + n) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port in {LOW}..{}", LOW + SPAN)
}

impl LocalCluster {
    /// A cluster of nodes `1..=n` (none started yet).
    pub fn new(o: ClusterOptions, n: u64) -> anyhow::Result<LocalCluster> {
        std::fs::create_dir_all(&o.dir).with_context(|| format!("cannot create {}", o.dir.display()))?;
        let (mut ports, mut metrics_ports) = (BTreeMap::new(), BTreeMap::new());
        for node in 1..=n {
            ports.insert(node, free_port()?);
            metrics_ports.insert(node, free_port()?);
        }
        let trace_path = o.dir.join("harness.trace.jsonl");
        let trace = std::fs::File::create(&trace_path)
            .with_context(|| format!("cannot create {}", trace_path.display()))?;
        Ok(LocalCluster {
            o,
            ports,
            metrics_ports,
            children: BTreeMap::new(),
            shared: Arc::new(Mutex::new(Shared::default())),
            trace,
            started: Instant::now(),
        })
    }

    /// Adds node `node` (a port is found for it); start it with [`LocalCluster::start`].
    pub fn add(&mut self, node: u64) -> anyhow::Result<()> {
        let port = free_port()?;
        self.ports.insert(node, port);
        self.metrics_ports.insert(node, free_port()?);
        Ok(())
    }

    /// Where node `node` serves its metrics (`/metrics`) and status page (`/`).
    pub fn metrics_addr(&self, node: u64) -> Option<String> {
        self.metrics_ports.get(&node).map(|p| format!("127.0.0.1:{p}"))
    }

    fn trace_path(&self, node: u64) -> PathBuf {
        self.o.dir.join(format!("node-{node}.trace.jsonl"))
    }

    /// Every trace file written so far.
    pub fn traces(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> =
            self.ports.keys().map(|n| self.trace_path(*n)).filter(|p| p.exists()).collect();
        v.push(self.o.dir.join("harness.trace.jsonl"));
        v
    }

    /// Starts (or restarts) `node`. Node 1 is configured to found the group, every time, as an
    /// operator's unchanged config would say: it founds one only once a majority of the nodes
    /// answer that they belong to none, and otherwise joins the group that exists.
    pub fn start(&mut self, node: u64) -> anyhow::Result<()> {
        let port = *self.ports.get(&node).context("unknown node")?;
        let bootstrap = node == 1;
        let seeds: Vec<String> = self
            .ports
            .iter()
            .filter(|(n, _)| **n != node)
            .map(|(n, p)| format!("{n}@127.0.0.1:{p}"))
            .collect();
        let mut cmd = Command::new(&self.o.exe);
        cmd.arg("node")
            .arg("--node")
            .arg(node.to_string())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--seed")
            .arg(seeds.join(","))
            .arg("--trace")
            .arg(self.trace_path(node))
            .arg("--metrics-listen")
            .arg(self.metrics_addr(node).context("unknown node")?)
            .arg("--send-rate")
            .arg(self.o.send_rate.to_string())
            .arg("--payload-bytes")
            .arg(self.o.payload_bytes.to_string())
            .arg("--checkpoint-filler")
            .arg(self.o.checkpoint_filler.to_string())
            .env("CHORUS_SECRET", "local demo secret")
            .env("CHORUS_CLUSTER", "local-demo")
            .env("CHORUS_HEARTBEAT_MS", self.o.heartbeat_ms.to_string())
            .env("CHORUS_SUSPECT_TIMEOUT_MS", self.o.suspect_timeout_ms.to_string())
            // The members share the demo's terminal: warnings only, unless asked for more.
            .env("CHORUS_LOG", std::env::var("CHORUS_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if bootstrap {
            cmd.arg("--bootstrap");
        }
        if !self.o.orders.is_empty() {
            let names: Vec<&str> = self.o.orders.iter().map(|o| crate::bench::order_name(*o)).collect();
            cmd.arg("--orders").arg(names.join(","));
        }
        // Mutual TLS on the peer links, as in production: a development CA in the directory,
        // and a certificate per node (made once, kept across restarts).
        let certs = self.o.dir.join("certs");
        let (cert, key) =
            (certs.join(format!("node-{node}.pem")), certs.join(format!("node-{node}-key.pem")));
        if !cert.exists() || !key.exists() {
            let (ca, _) = crate::tls::dev_certs::ensure_ca(&certs, "local-demo")?;
            crate::tls::dev_certs::make_leaf(&certs, &ca, &format!("node-{node}"), &[])?;
        }
        cmd.env("CHORUS_TLS_CERT", &cert)
            .env("CHORUS_TLS_KEY", &key)
            .env("CHORUS_TLS_CA", certs.join(crate::tls::dev_certs::CA_CERT));
        let mut child = cmd.spawn().with_context(|| format!("cannot run {}", self.o.exe.display()))?;
        let out = child.stdout.take().context("no stdout")?;
        let shared = self.shared.clone();
        let started = self.started;
        let echo = self.o.echo;
        if let Ok(mut s) = self.shared.lock() {
            s.nodes.entry(node).or_default();
        }
        std::thread::spawn(move || {
            for text in BufReader::new(out).lines().map_while(Result::ok) {
                let at = started.elapsed().as_secs_f64();
                if echo {
                    println!("{at:>7.2}s  {text}");
                }
                if let Ok(mut s) = shared.lock() {
                    note(s.nodes.entry(node).or_default(), &text);
                    s.lines.push(Line { node, at, text });
                }
            }
        });
        self.children.insert(node, child);
        Ok(())
    }

    fn proc_of(&self, node: u64) -> Proc {
        let inc = self.shared.lock().ok().and_then(|s| s.nodes.get(&node).map(|n| n.inc)).unwrap_or(0);
        Proc { node, inc }
    }

    fn record(&mut self, p: Option<Proc>, ev: Ev) -> anyhow::Result<()> {
        chorus_check::trace::write_jsonl(
            &mut self.trace,
            &TraceEvent { t: crate::runtime::trace_nanos(), p, ev },
        )?;
        self.trace.flush()?;
        Ok(())
    }

    /// Kills `node` with SIGKILL (a crash).
    pub fn kill(&mut self, node: u64) -> anyhow::Result<()> {
        let p = self.proc_of(node);
        if let Some(mut child) = self.children.remove(&node) {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.record(Some(p), Ev::Crash)?;
        if let Ok(mut s) = self.shared.lock() {
            if let Some(n) = s.nodes.get_mut(&node) {
                n.view = None;
            }
        }
        Ok(())
    }

    fn signal(&self, node: u64, sig: Signal) -> anyhow::Result<()> {
        let child = self.children.get(&node).context("node not running")?;
        kill(Pid::from_raw(child.id() as i32), sig).with_context(|| format!("cannot signal node {node}"))?;
        Ok(())
    }

    /// Pauses `node` (SIGSTOP): alive, silent.
    pub fn pause(&mut self, node: u64) -> anyhow::Result<()> {
        self.signal(node, Signal::SIGSTOP)?;
        let p = self.proc_of(node);
        self.record(Some(p), Ev::Pause)
    }

    /// Resumes a paused node (SIGCONT).
    pub fn resume(&mut self, node: u64) -> anyhow::Result<()> {
        self.signal(node, Signal::SIGCONT)?;
        let p = self.proc_of(node);
        self.record(Some(p), Ev::Resume)
    }

    /// Asks `node` to leave gracefully (SIGTERM); it exits once a view without it is installed.
    pub fn leave(&mut self, node: u64) -> anyhow::Result<()> {
        self.signal(node, Signal::SIGTERM)
    }

    /// Stops the traffic of every node (SIGUSR1).
    pub fn quiet(&mut self) -> anyhow::Result<()> {
        for node in self.children.keys() {
            self.signal(*node, Signal::SIGUSR1)?;
        }
        Ok(())
    }

    /// Marks the start of the liveness phase in the harness trace (faults are over).
    pub fn liveness_phase(&mut self) -> anyhow::Result<()> {
        self.record(None, Ev::Phase { name: "liveness".into() })
    }

    /// Ends the run: writes `end` to the harness trace and kills every node.
    pub fn end(&mut self) -> anyhow::Result<()> {
        self.record(None, Ev::End)?;
        for (_, mut c) in std::mem::take(&mut self.children) {
            let _ = c.kill();
            let _ = c.wait();
        }
        Ok(())
    }

    /// A copy of what the harness knows of each node.
    pub fn nodes(&self) -> BTreeMap<u64, NodeView> {
        self.shared.lock().map(|s| s.nodes.clone()).unwrap_or_default()
    }

    /// Lines printed so far.
    pub fn lines(&self) -> Vec<Line> {
        self.shared.lock().map(|s| s.lines.clone()).unwrap_or_default()
    }

    /// Waits until every running node is in one view whose members are exactly `members` and
    /// none is loading state.
    pub fn wait_view(&self, members: &[u64], timeout: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + timeout;
        let mut want = members.to_vec();
        want.sort_unstable();
        loop {
            let nodes = self.nodes();
            let views: Vec<Option<&(u64, Vec<u64>)>> = want
                .iter()
                .map(|n| nodes.get(n).filter(|v| !v.loading).and_then(|v| v.view.as_ref()))
                .collect();
            if let Some(Some((id, first))) = views.first() {
                let mut sorted = first.clone();
                sorted.sort_unstable();
                if sorted == want && views.iter().all(|v| v.is_some_and(|(i, _)| i == id)) {
                    return Ok(*id);
                }
            }
            if Instant::now() > deadline {
                anyhow::bail!("no common view of {want:?} within {timeout:?}; nodes: {nodes:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Checks every trace, merged; returns the number of events and the verdict.
    pub fn check(&self) -> anyhow::Result<(usize, Result<(), chorus_check::Violation>)> {
        check_files(&self.traces())
    }

    /// Deliveries per node so far, from the nodes' traces (every life of a node together).
    pub fn deliveries(&self) -> anyhow::Result<BTreeMap<u64, usize>> {
        let mut out = BTreeMap::new();
        for (node, path) in self.ports.keys().map(|n| (*n, self.trace_path(*n))) {
            let Ok(f) = std::fs::File::open(&path) else { continue };
            let events = chorus_check::trace::read_jsonl(std::io::BufReader::new(f))
                .with_context(|| format!("{}", path.display()))?;
            let n = events.iter().filter(|e| matches!(e.ev, Ev::Deliver { .. })).count();
            out.insert(node, n);
        }
        Ok(out)
    }

    /// Seconds since the cluster started.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The directory holding configs and traces.
    pub fn dir(&self) -> &Path {
        &self.o.dir
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.children) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Updates what the harness knows of a node from one of its lines.
fn note(n: &mut NodeView, text: &str) {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.get(1..) {
        Some(["started", "as", id, ..])
        | Some(["was", "excluded", "while", "alive;", "re-joining", "as", id]) => {
            n.inc = id.split('.').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            n.view = None;
            n.loading = false;
        }
        Some(["view", v, ..]) => {
            let id = v.trim_start_matches('v').parse().unwrap_or(0);
            // "n1 view v3 [n1 n2 n3]  +n3": the members are between the brackets.
            let inside = text.split_once('[').and_then(|(_, r)| r.split_once(']')).map_or("", |(m, _)| m);
            let members =
                inside.split_whitespace().filter_map(|w| w.strip_prefix('n')?.parse().ok()).collect();
            n.view = Some((id, members));
            n.views += 1;
        }
        Some(["loads", ..]) => n.loading = true,
        Some(["loaded", ..]) => {
            n.loading = false;
            n.loaded += 1;
        }
        Some(["left", ..]) => n.view = None,
        _ => {}
    }
}

/// Reads trace files, merges them by time, and checks them (G12 too if the harness ended the run).
pub fn check_files(paths: &[PathBuf]) -> anyhow::Result<(usize, Result<(), chorus_check::Violation>)> {
    let mut traces = Vec::new();
    for p in paths {
        let f = std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
        let events = chorus_check::trace::read_jsonl(std::io::BufReader::new(f))
            .with_context(|| format!("{}", p.display()))?;
        traces.push(events);
    }
    let merged = chorus_check::trace::merge_by_time(traces);
    let mut checker = chorus_check::Checker::new();
    let ended = merged.iter().any(|e| matches!(e.ev, Ev::End));
    let verdict = merged.iter().try_for_each(|e| checker.observe(e)).and_then(|()| {
        if ended {
            checker.finish()
        } else {
            checker.finish_safety()
        }
    });
    Ok((merged.len(), verdict))
}
