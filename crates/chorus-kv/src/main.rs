//! `chorus-kv`: run a store node, or a local 3-node store to try with redis-cli.

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chorus::config::Partial;
use clap::{Parser, Subcommand};

use chorus_kv::config::{self, FileConfig, KvPartial};
use chorus_kv::replicated::Replicated;
use chorus_kv::resp_client::Client;
use chorus_kv::KvMachine;

/// mimalloc: the store allocates and frees a few small buffers per command on several threads;
/// glibc's allocator spent 15-20% of a node's time there (perf, redis-benchmark SET -P 16).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "chorus-kv", version, about = "A replicated key-value store speaking the Redis protocol")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a store node. Settings come from the config file, then CHORUS_* / CHORUS_KV_*
    /// environment variables, then flags.
    Node {
        /// TOML config file (`[group]` and `[kv]` sections; see the docs).
        #[arg(long)]
        config: Option<PathBuf>,
        /// This node's id.
        #[arg(long)]
        node: Option<u64>,
        /// Address to listen on for peers (host:port).
        #[arg(long)]
        group_listen: Option<String>,
        /// Address peers are told to dial (host:port; default: --group-listen). Needed when
        /// listening on every interface (0.0.0.0), e.g. in a container: node-1:7101.
        #[arg(long)]
        group_advertise: Option<String>,
        /// Members to join through, as id@host:port (repeat or comma-separate).
        #[arg(long, value_delimiter = ',')]
        seed: Vec<String>,
        /// Start a new store.
        #[arg(long)]
        bootstrap: bool,
        /// Address Redis clients connect to (host:port).
        #[arg(long)]
        listen: Option<String>,
        /// active or standby.
        #[arg(long)]
        role: Option<String>,
        /// Default read consistency: linearizable or local.
        #[arg(long)]
        reads: Option<String>,
        /// The data directory (membership, write-ahead log, snapshots); without one, a restart
        /// is a new node and a whole-store crash loses everything.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Serve Prometheus metrics (/metrics), the status page (/) and /health over HTTP
        /// here (host:port), e.g. 127.0.0.1:9121.
        #[arg(long)]
        metrics_listen: Option<String>,
        /// When the log is synced: always, everysec or no.
        #[arg(long)]
        appendfsync: Option<String>,
        /// Run unencrypted: the peer links and the client port (else the config gives TLS
        /// files: [group] tls_cert, tls_key, tls_ca and [kv] tls_cert, tls_key).
        #[arg(long)]
        plaintext: bool,
    },
    /// Force this node to bring the store back alone from its own data directory, when a
    /// majority of the store's nodes lost their data for good (like etcd's
    /// --force-new-cluster). Run it with the node stopped, then start the node as usual; the other
    /// nodes join it and load its state. Writes the other nodes held and this one lacks are lost:
    /// see docs/kv.md, "Durability".
    ForceRecovery {
        /// The node's config file (its data directory and node id are read from it).
        #[arg(long)]
        config: PathBuf,
        /// Confirm: without it, only says what would be done.
        #[arg(long)]
        yes: bool,
    },
    /// Health probe (containers, Kubernetes): asks the node on PORT of this host whether it
    /// serves (in a primary view, active or standby, its state loaded); exit 0 if so, else 1
    /// with the reason. Sends AUTH with CHORUS_KV_PASSWORD if set. Plaintext client ports only.
    Health {
        /// The node's Redis port.
        #[arg(long, default_value_t = 6379)]
        port: u16,
        /// The host it listens on.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
    },
    /// A local 3-node store on loopback (Redis ports 7001-7003 by default): writes through one
    /// port, reads through the others, then prints how to use it with redis-cli and runs until
    /// Ctrl-C.
    Demo {
        /// Nodes.
        #[arg(long, default_value_t = 3)]
        nodes: u16,
        /// The first node's Redis port; peers use the ports 100 above, the status pages and metrics
        /// the ports 200 above.
        #[arg(long, default_value_t = 7001)]
        port: u16,
        /// Default read consistency of the nodes: linearizable or local.
        #[arg(long, default_value = "linearizable")]
        reads: String,
        /// Stop after the walk-through instead of running until Ctrl-C (for scripts and tests).
        #[arg(long)]
        exit: bool,
        /// Where configs, logs and data directories go (default: a fresh temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// When the nodes sync their logs: always, everysec or no.
        #[arg(long, default_value = "always")]
        appendfsync: String,
        /// No data directories: everything in memory (no power-cut walk-through then).
        #[arg(long)]
        memory: bool,
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
            group_listen,
            group_advertise,
            seed,
            bootstrap,
            listen,
            role,
            reads,
            data_dir,
            metrics_listen,
            appendfsync,
            plaintext,
        } => {
            let plaintext = plaintext.then_some(true);
            let group = Partial {
                plaintext,
                node,
                listen: group_listen,
                advertise: group_advertise,
                seeds: (!seed.is_empty()).then_some(seed),
                bootstrap: bootstrap.then_some(true),
                data_dir,
                metrics_listen,
                ..Partial::default()
            };
            let kv = KvPartial { listen, role, reads, appendfsync, plaintext, ..KvPartial::default() };
            node_cmd(config, group, kv)
        }
        Cmd::ForceRecovery { config, yes } => force_recovery(&config, yes),
        Cmd::Health { port, host } => health(&host, port),
        Cmd::Demo { nodes, port, reads, exit, dir, appendfsync, memory } => {
            let durability = (!memory).then_some(appendfsync);
            demo(nodes, port, &reads, exit, dir, durability.as_deref())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn node_cmd(path: Option<PathBuf>, group: Partial, kv: KvPartial) -> anyhow::Result<()> {
    let file = match &path {
        Some(p) => config::from_file(p)?,
        None => FileConfig::default(),
    };
    let env = |k: &str| std::env::var(k).ok();
    let group = file.group.overridden_by(Partial::from_env(env)?).overridden_by(group);
    let kv = file.kv.overridden_by(KvPartial::from_env(env)?).overridden_by(kv);
    let cfg = config::build(group, kv)?;
    // Worker threads: CHORUS_KV_THREADS (0: one thread for everything), by default half the
    // cores, and one thread for everything below 4 cores. Cross-thread wake-ups cost more than
    // they bring on a small machine: on 2 cores, redis-benchmark SET -P 16 against 3 nodes ran
    // 15-25% faster with 1 worker than with 2, and 10-15% faster again with the single-thread
    // runtime than with 1 worker (docs/benchmarks.md section 4). Whatever may block for long
    // (loading a transferred state, deleting log files, snapshots) runs on blocking threads.
    let threads: usize = match std::env::var("CHORUS_KV_THREADS") {
        Ok(v) => v.trim().parse().with_context(|| format!("CHORUS_KV_THREADS={v:?} is not a number"))?,
        Err(_) => match std::thread::available_parallelism().map_or(1, |n| n.get()) {
            n if n < 4 => 0,
            n => n / 2,
        },
    };
    let rt = if threads == 0 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
    }
    .context("cannot start tokio")?;
    rt.block_on(async move {
        let listener = chorus::resolve::bind(cfg.listen.as_str())
            .await
            .with_context(|| format!("cannot listen for clients on {}", cfg.listen))?;
        let (member, backend) = start_replica(&cfg).await?;
        eprintln!(
            "chorus-kv node {}: clients on {}, peers on {}{}",
            cfg.group.node,
            cfg.listen,
            member.listen_addr(),
            match (&cfg.group.data_dir, &cfg.durable) {
                (Some(d), Some(o)) => format!(", data in {} (appendfsync {})", d.display(), o.fsync),
                _ => ", no data directory (in memory only)".into(),
            }
        );
        // Stop on Ctrl-C or SIGTERM (gracefully), or when the replica stops by itself (a failed
        // disk, a state that does not load): then with its error, so that a supervisor sees it.
        let fatal = std::sync::Arc::new(std::sync::Mutex::new(None));
        let shutdown = {
            let backend = backend.clone();
            let fatal = fatal.clone();
            async move {
                let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                {
                    Ok(s) => s,
                    Err(_) => return std::future::pending().await,
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: leaving the group and stopping"),
                    _ = term.recv() => tracing::info!("SIGTERM: leaving the group and stopping"),
                    why = backend.stopped() => {
                        if let Ok(mut f) = fatal.lock() {
                            *f = Some(why);
                        }
                    }
                }
            }
        };
        // The store's metrics beside the runtime's, on the node's metrics port.
        let mut server = cfg.server.clone();
        match member.registry().lock() {
            Ok(mut r) => {
                server.metrics = Some(chorus_kv::metrics::KvMetrics::register(&mut r));
                r.sub_registry_with_prefix("chorus_kv").register_collector(Box::new(
                    chorus_kv::metrics::ReplicaCollector { replica: backend.clone() },
                ));
            }
            Err(_) => bail!("the metrics registry is poisoned"),
        }
        if let Some(addr) = member.metrics_addr() {
            eprintln!(
                "chorus-kv node {}: metrics on http://{addr}/metrics, status page on http://{addr}/",
                cfg.group.node
            );
        }
        chorus_kv::serve(listener, backend, server, shutdown).await.context("client listener failed")?;
        if let Some(why) = fatal.lock().ok().and_then(|mut f| f.take()) {
            member.shutdown().await;
            bail!("node {} stopped: {why}", cfg.group.node);
        }
        // Leave the group cleanly: the others install a view without this node at once.
        let _ = tokio::time::timeout(Duration::from_secs(3), member.leave()).await;
        member.shutdown().await;
        Ok(())
    })
}

fn health(host: &str, port: u16) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let info = rt.block_on(async {
        let probe = async {
            let mut c = Client::connect((host, port)).await?;
            if let Ok(pw) = std::env::var("CHORUS_KV_PASSWORD") {
                c.cmd(&["AUTH", &pw]).await?;
            }
            c.info_group().await
        };
        tokio::time::timeout(Duration::from_secs(2), probe)
            .await
            .map_err(|_| anyhow::anyhow!("no answer from {host}:{port} within 2 s"))?
            .with_context(|| format!("cannot ask {host}:{port}"))
    })?;
    let role = info.get("role").map_or("?", String::as_str);
    let view = info.get("view_id").map_or("?", String::as_str);
    if matches!(role, "active" | "standby") {
        println!("ready: {role}, view {view}, {} members", members(&info));
        Ok(())
    } else {
        bail!("not ready: role {role}, view {view}, {} members", members(&info))
    }
}

fn force_recovery(path: &std::path::Path, yes: bool) -> anyhow::Result<()> {
    let file = config::from_file(path)?;
    let env = |k: &str| std::env::var(k).ok();
    let group = file.group.overridden_by(Partial::from_env(env)?);
    let cfg = config::build(group, file.kv)?;
    let Some(dir) = &cfg.group.data_dir else {
        bail!("{} sets no data_dir: nothing to recover from", path.display())
    };
    let now = chorus::runtime::wall_nanos() / 1_000_000;
    let mut store = chorus::datadir::NodeStore::open(dir, cfg.group.node, now)
        .with_context(|| format!("cannot use {} (is the node still running?)", dir.display()))?;
    let Some(m) = store.membership().cloned() else {
        bail!("node {} was not a member when it stopped (it left or was excluded): its state is not the group's", cfg.group.node)
    };
    let owner = chorus_smr::Stored::owner(store.dir().as_ref())?;
    if owner != Some(m.me) {
        bail!(
            "node {}'s stored state is not its own in its last view (it was still loading it): it cannot give the state",
            cfg.group.node
        );
    }
    println!("node {}: last view {} {:?}", cfg.group.node, m.view.id.0, m.view.members);
    println!(
        "this makes node {} bring the store back alone with its stored state; the other nodes",
        cfg.group.node
    );
    println!("then join it and load that state. Writes they held and this node lacks are lost, and if any");
    println!("of them still runs with its data, two stores may exist: stop them for good first.");
    if !yes {
        println!("nothing done: run again with --yes to do it");
        return Ok(());
    }
    let (from, to) = store.force_recovery()?;
    println!(
        "done: node {} now speaks alone for view {} (was in view {}); start it as usual",
        cfg.group.node, to.id.0, from.id.0
    );
    Ok(())
}

/// Starts the member and the replica: from the data directory if there is one (the stored
/// state is offered for recovery if this node owns it), else in memory.
async fn start_replica(cfg: &config::KvConfig) -> anyhow::Result<(chorus::Member, Replicated<KvMachine>)> {
    let (Some(path), Some(opts)) = (&cfg.group.data_dir, &cfg.durable) else {
        let (member, events) = chorus::Member::start(cfg.group.clone()).await?;
        let backend = Replicated::start(member.clone(), events, KvMachine::new(), cfg.replica.clone());
        return Ok((member, backend));
    };
    let now = chorus::runtime::wall_nanos() / 1_000_000;
    let store = chorus::datadir::NodeStore::open(path, cfg.group.node, now)
        .with_context(|| format!("cannot use the data directory {}", path.display()))?;
    let me = chorus::MemberId::new(cfg.group.node, store.incarnation());
    let last = store.membership().map(|m| m.me);
    let (prepared, offered) =
        Replicated::open(KvMachine::new(), me, cfg.replica.clone(), store.dir(), opts.clone(), last)
            .with_context(|| format!("cannot load the state stored in {}", path.display()))?;
    match (store.membership(), offered) {
        (Some(m), Some(pos)) => eprintln!(
            "chorus-kv node {}: back from the data directory; last view {}; stored state at position {pos}",
            cfg.group.node, m.view.id.0
        ),
        (Some(m), None) => eprintln!(
            "chorus-kv node {}: back from the data directory; last view {}; no state of its own (it loads one)",
            cfg.group.node, m.view.id.0
        ),
        (None, _) => {}
    }
    let mut group = cfg.group.clone();
    group.data_dir = None; // Opened here, shared with the replica.
    let (member, events) = chorus::Member::start_stored(group, store, offered).await?;
    let backend = prepared.start(member.clone(), events);
    Ok((member, backend))
}

/// The walk-through's last act: a power cut of the whole store, and a restart of every node with
/// the command it had (node 1's config still says to found the store; its data directory says
/// it belongs to one): everything written is read back.
fn whole_store_restart(
    group: &mut Nodes,
    exe: &std::path::Path,
    configs: &[PathBuf],
    dir: &std::path::Path,
    ports: &[u16],
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    let keys = ["demo:greeting", "demo:counter", "demo:list", "demo:while-down"];
    let before = rt.block_on(read_keys(ports[0], &keys))?;
    println!();
    println!("[demo] SIGKILL every node at once (a power cut): every write was acknowledged once on every node's disk");
    for i in 0..group.children.len() {
        group.kill(i);
    }
    println!("[demo] restart them with the same commands, the last one first; node 1's config still says bootstrap = true");
    for i in (0..group.children.len()).rev() {
        group.children[i] = Some(spawn_node(exe, &configs[i], dir, i as u16)?);
    }
    for i in 0..ports.len() {
        group.wait_ready(i, ports.len() as u16, Duration::from_secs(40))?;
    }
    println!("[demo] the store recovered from the data directories: one group, every node active");
    for p in ports {
        let after = rt.block_on(read_keys(*p, &keys))?;
        for (k, (a, b)) in keys.iter().zip(before.iter().zip(&after)) {
            println!("[{p}] {} {k} -> {b}", if k.ends_with("list") { "LRANGE" } else { "GET" });
            if a != b {
                bail!("after the restart, {k} reads {b} through port {p}; it was {a}");
            }
        }
    }
    converged(group, Duration::from_secs(20))?;
    println!("[demo] everything written before the power cut is there, on every node");
    Ok(())
}

async fn read_keys(port: u16, keys: &[&str]) -> anyhow::Result<Vec<chorus_kv::resp_client::Value>> {
    let mut c = Client::connect(("127.0.0.1", port)).await?;
    let mut out = Vec::new();
    for k in keys {
        let v = if k.ends_with("list") {
            c.cmd(&["LRANGE", k, "0", "-1"]).await?
        } else {
            c.cmd(&["GET", k]).await?
        };
        out.push(v);
    }
    Ok(out)
}

/// The nodes the demo started: `None` for one it killed on purpose.
struct Nodes {
    children: Vec<Option<Child>>,
    ports: Vec<u16>,
    dir: PathBuf,
}

impl Nodes {
    /// Fails if a node the demo started has exited: with its status and the end of its log.
    fn check_running(&mut self) -> anyhow::Result<()> {
        for (i, c) in self.children.iter_mut().enumerate() {
            let Some(child) = c else { continue };
            if let Ok(Some(status)) = child.try_wait() {
                let log = self.dir.join(format!("node{}.log", i + 1));
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(3).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!(
                    "node {} exited ({status}); the end of {}:\n  {}",
                    i + 1,
                    log.display(),
                    tail.join("\n  ")
                );
            }
        }
        Ok(())
    }

    /// SIGKILLs node `i` (index) and reaps it.
    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children.get_mut(i).and_then(Option::take) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until node `i` answers, is the process the demo started (not another program on
    /// its port), and is active in a view of at least `want` members.
    fn wait_ready(&mut self, i: usize, want: u16, within: Duration) -> anyhow::Result<()> {
        let port = self.ports[i];
        let pid = self.children[i].as_ref().map(Child::id);
        wait(&format!("node {} (port {port}) was not ready", i + 1), within, || {
            self.check_running()?;
            let (info, their_pid) = match info_and_pid(port) {
                Ok(x) => x,
                Err(e) => return Ok(Err(e.to_string())),
            };
            if pid.is_some() && their_pid != pid {
                bail!(
                    "the process answering on port {port} is not the node the demo started (pid {their_pid:?}, \
                     not {pid:?}): another program uses that port; pick others with --port"
                );
            }
            let role = info.get("role").cloned().unwrap_or_default();
            if role == "active" && members(&info) >= usize::from(want) {
                Ok(Ok(()))
            } else {
                Ok(Err(format!("role {role}, {} members", members(&info))))
            }
        })
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

/// Fails if a port the demo needs is taken, naming it.
fn ports_free(ports: &[u16]) -> anyhow::Result<()> {
    for p in ports {
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", *p)) {
            bail!("port {p} on 127.0.0.1 is not free ({e}): another store or program uses it; pick other ports with --port");
        }
    }
    Ok(())
}

fn demo(
    nodes: u16,
    port: u16,
    reads: &str,
    exit: bool,
    dir: Option<PathBuf>,
    appendfsync: Option<&str>,
) -> anyhow::Result<()> {
    if !(1..=9).contains(&nodes) {
        bail!("--nodes must be 1 to 9");
    }
    if let Some(f) = appendfsync {
        f.parse::<chorus_smr::Fsync>().map_err(|why| anyhow::anyhow!("--appendfsync: {why}"))?;
    }
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("chorus-kv-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let exe = std::env::current_exe().context("cannot find this program")?;
    let peer = |i: u16| format!("{}@127.0.0.1:{}", i + 1, port + 100 + i);
    println!(
        "chorus-kv demo: {nodes} nodes on loopback, mutual TLS between them; configs, certificates and logs in {}",
        dir.display()
    );
    let ports: Vec<u16> = (0..nodes).map(|i| port + i).collect();
    let peer_ports: Vec<u16> = (0..nodes).map(|i| port + 100 + i).collect();
    let metrics_ports: Vec<u16> = (0..nodes).map(|i| port + 200 + i).collect();
    ports_free(&[ports.as_slice(), peer_ports.as_slice(), metrics_ports.as_slice()].concat())?;
    let mut group = Nodes { children: Vec::new(), ports: ports.clone(), dir: dir.clone() };
    let mut configs = Vec::new();
    // Mutual TLS on the peer links: a development CA and a certificate per node, made once in
    // the directory (a rerun with --dir keeps them). Clients connect in plaintext, so that
    // redis-cli works as is (docs/kv.md says how to turn TLS on for them).
    let certs = dir.join("certs");
    let (ca, _) = chorus::tls::dev_certs::ensure_ca(&certs, "chorus-kv demo")?;
    for i in 0..nodes {
        let name = format!("node-{}", i + 1);
        if !certs.join(format!("{name}.pem")).exists() || !certs.join(format!("{name}-key.pem")).exists() {
            chorus::tls::dev_certs::make_leaf(&certs, &ca, &name, &[])?;
        }
    }
    for i in 0..nodes {
        let seeds: Vec<String> = (0..nodes).filter(|j| *j != i).map(|j| format!("\"{}\"", peer(j))).collect();
        let (data, fsync) = match appendfsync {
            Some(f) => (
                format!("data_dir = \"{}\"\n", dir.join(format!("node{}", i + 1)).display()),
                format!("appendfsync = \"{f}\"\n"),
            ),
            None => (String::new(), String::new()),
        };
        let cert = |f: String| certs.join(f).display().to_string();
        let tls = format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\ntls_ca = \"{}\"\n",
            cert(format!("node-{}.pem", i + 1)),
            cert(format!("node-{}-key.pem", i + 1)),
            cert(chorus::tls::dev_certs::CA_CERT.to_string())
        );
        let toml = format!(
            "[group]\nnode = {}\nlisten = \"127.0.0.1:{}\"\nseeds = [{}]\nsecret = \"chorus-kv demo secret\"\nbootstrap = {}\nmetrics_listen = \"127.0.0.1:{}\"\n{data}{tls}\n[kv]\nlisten = \"127.0.0.1:{}\"\nreads = \"{reads}\"\nplaintext = true\n{fsync}",
            i + 1,
            port + 100 + i,
            seeds.join(", "),
            i == 0,
            port + 200 + i,
            port + i
        );
        let path = dir.join(format!("node{}.toml", i + 1));
        std::fs::write(&path, toml).with_context(|| format!("cannot write {}", path.display()))?;
        let child = spawn_node(&exe, &path, &dir, i)?;
        configs.push(path);
        println!(
            "  node {}: redis on 127.0.0.1:{}, peers on 127.0.0.1:{}, status page http://127.0.0.1:{}/ (metrics at /metrics)",
            i + 1,
            port + i,
            port + 100 + i,
            port + 200 + i
        );
        group.children.push(Some(child));
    }
    for i in 0..ports.len() {
        group.wait_ready(i, nodes, Duration::from_secs(30))?;
    }
    println!("all {nodes} nodes are in one view; every node is active");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(walk_through(&ports))?;
    if nodes >= 3 {
        // A crash and a re-join with state transfer (the last node: never the bootstrap one).
        let victim = usize::from(nodes) - 1;
        let vport = ports[victim];
        println!();
        println!("[demo] SIGKILL node {} (port {vport})", victim + 1);
        group.kill(victim);
        wait_members(&mut group, 0, nodes - 1, Duration::from_secs(20))?;
        println!("[demo] the others installed a view without it (suspected by timeout, removed)");
        rt.block_on(async {
            let mut w = Client::connect(("127.0.0.1", ports[0])).await?;
            let r = w.cmd(&["SET", "demo:while-down", "written while node 3 was dead"]).await?;
            println!("[{}] SET demo:while-down ... -> {r}", ports[0]);
            anyhow::Ok(())
        })?;
        println!(
            "[demo] restart node {}: it joins as a new member and loads the state from a donor",
            victim + 1
        );
        group.children[victim] = Some(spawn_node(&exe, &configs[victim], &dir, victim as u16)?);
        group.wait_ready(victim, nodes, Duration::from_secs(30))?;
        rt.block_on(async {
            let mut r = Client::connect(("127.0.0.1", vport)).await?;
            let v = r.cmd(&["GET", "demo:while-down"]).await?;
            println!("[{vport}] GET demo:while-down -> {v}");
            if v == chorus_kv::resp_client::Value::Nil {
                bail!("the restarted node does not have the write made while it was down");
            }
            anyhow::Ok(())
        })?;
        let infos = converged(&mut group, Duration::from_secs(20))?;
        for (p, i) in ports.iter().zip(&infos) {
            println!(
                "[{p}] view {} member {} applied {} state digest {}",
                i.get("view_id").map_or("?", String::as_str),
                i.get("member").map_or("?", String::as_str),
                i.get("applied_index").map_or("?", String::as_str),
                i.get("state_digest").map_or("?", String::as_str),
            );
        }
        println!("[demo] every replica has the same applied index and state digest");
        if appendfsync == Some("always") {
            whole_store_restart(&mut group, &exe, &configs, &dir, &ports, &rt)?;
        }
    }
    println!();
    println!("Try it (redis-cli from the redis-tools package, or any Redis client):");
    println!("  redis-cli -p {} SET greeting hello", ports[0]);
    println!("  redis-cli -p {} GET greeting", ports[ports.len() - 1]);
    println!("  redis-cli -p {} INFO group", ports[0]);
    println!("  redis-benchmark -p {} -t set,get -n 100000 -P 16 -q", ports[0]);
    if exit {
        println!("demo done (--exit): stopping the nodes");
        return Ok(());
    }
    println!("Running until Ctrl-C.");
    rt.block_on(async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    });
    println!("stopping the nodes");
    Ok(())
}

fn spawn_node(
    exe: &std::path::Path,
    config: &std::path::Path,
    dir: &std::path::Path,
    i: u16,
) -> anyhow::Result<Child> {
    let log =
        std::fs::OpenOptions::new().create(true).append(true).open(dir.join(format!("node{}.log", i + 1)))?;
    Command::new(exe)
        .args(["node", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start a node")
}

type Info = std::collections::BTreeMap<String, String>;

/// INFO group of the node on `port`, or why not.
fn info(port: u16) -> anyhow::Result<Info> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    Ok(rt.block_on(async {
        let mut c = Client::connect(("127.0.0.1", port)).await?;
        c.info_group().await
    })?)
}

fn members(i: &Info) -> usize {
    i.get("members").map_or(0, |m| m.split(',').filter(|s| !s.is_empty()).count())
}

/// INFO group of the node on `port`, and the process id it reports (INFO server).
fn info_and_pid(port: u16) -> anyhow::Result<(Info, Option<u32>)> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let mut c = Client::connect(("127.0.0.1", port)).await?;
        let group = c.info_group().await?;
        let server = match c.cmd(&["INFO", "server"]).await? {
            chorus_kv::resp_client::Value::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
            _ => String::new(),
        };
        let pid =
            server.lines().find_map(|l| l.trim().strip_prefix("process_id:")).and_then(|v| v.parse().ok());
        Ok((group, pid))
    })
}

/// Polls `ready` every 100 ms for `within`: `Ok(Ok(v))` ends the wait, `Ok(Err(state))` goes
/// on, `Err` fails at once (a node exited). Fails with `what` and the last state it saw.
fn wait<T>(
    what: &str,
    within: Duration,
    mut ready: impl FnMut() -> anyhow::Result<Result<T, String>>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < within {
        match ready()? {
            Ok(v) => return Ok(v),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what} within {within:?} (last: {last}); see the nodes' logs")
}

/// Waits until node `i` is in a view of exactly `want` members.
fn wait_members(group: &mut Nodes, i: usize, want: u16, within: Duration) -> anyhow::Result<()> {
    let port = group.ports[i];
    wait(&format!("the node on port {port} did not reach a view of {want} members"), within, || {
        group.check_running()?;
        let i = match info(port) {
            Ok(i) => i,
            Err(e) => return Ok(Err(e.to_string())),
        };
        Ok(if members(&i) == usize::from(want) { Ok(()) } else { Err(format!("{} members", members(&i))) })
    })
}

/// Waits until every node reports the same applied index with an up-to-date state digest.
fn converged(group: &mut Nodes, within: Duration) -> anyhow::Result<Vec<Info>> {
    let ports = group.ports.clone();
    wait("the replicas did not converge", within, || {
        group.check_running()?;
        let infos = match ports.iter().map(|p| info(*p)).collect::<anyhow::Result<Vec<_>>>() {
            Ok(i) => i,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let key = |i: &Info, k: &str| i.get(k).cloned().unwrap_or_default();
        let same = infos.iter().all(|i| {
            key(i, "applied_index") == key(&infos[0], "applied_index")
                && key(i, "state_digest_index") == key(i, "applied_index")
                && key(i, "state_digest") == key(&infos[0], "state_digest")
        });
        Ok(if same { Ok(infos) } else { Err(format!("{infos:?}")) })
    })
}

async fn walk_through(ports: &[u16]) -> anyhow::Result<()> {
    let first = ports[0];
    let mut w = Client::connect(("127.0.0.1", first)).await?;
    println!();
    println!(
        "[{first}] SET demo:greeting \"hello from {first}\"  -> {}",
        w.cmd(&["SET", "demo:greeting", &format!("hello from {first}")]).await?
    );
    println!("[{first}] INCR demo:counter  -> {}", w.cmd(&["INCR", "demo:counter"]).await?);
    println!("[{first}] RPUSH demo:list a b c  -> {}", w.cmd(&["RPUSH", "demo:list", "a", "b", "c"]).await?);
    for p in ports {
        let mut r = Client::connect(("127.0.0.1", *p)).await?;
        let g = r.cmd(&["GET", "demo:greeting"]).await?;
        let n = r.cmd(&["INCR", "demo:counter"]).await?;
        let l = r.cmd(&["LRANGE", "demo:list", "0", "-1"]).await?;
        println!("[{p}] GET demo:greeting -> {g}; INCR demo:counter -> {n}; LRANGE demo:list 0 -1 -> {l}");
        if g != chorus_kv::resp_client::Value::Bulk(format!("hello from {first}").into_bytes()) {
            bail!("node {p} did not return the value written through {first}: {g}");
        }
    }
    let mut infos = Vec::new();
    for p in ports {
        let mut r = Client::connect(("127.0.0.1", *p)).await?;
        let info = r.info_group().await?;
        infos.push((p, info));
    }
    for (p, info) in &infos {
        println!(
            "[{p}] view {} members {} role {} applied {}",
            info.get("view_id").map_or("?", String::as_str),
            info.get("members").map_or("?", String::as_str),
            info.get("role").map_or("?", String::as_str),
            info.get("applied_index").map_or("?", String::as_str),
        );
    }
    Ok(())
}
