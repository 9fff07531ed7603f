//! A store of real `chorus-kv` processes on loopback, for the tests that use it as a user would.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chorus_kv::resp_client::Client;

pub const NODES: u16 = 3;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Fails the test unless `cmd args` runs successfully. (A test that needs a Redis tool carries
/// `#[cfg_attr(redis_tools_missing, ignore)]`: built with `CHORUS_SKIP_REDIS=1` on a machine
/// without the tool, it is ignored, and listed so, instead of failing here.) Returns true.
pub fn needs(what: &str, cmd: &str, args: &[&str], install: &str) -> bool {
    let ok = Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{what} is needed ({install}; .ci/run installs it), or build with CHORUS_SKIP_REDIS=1 to ignore this test");
    true
}

/// python3 with redis-py (see [`needs`]).
pub fn python_ready() -> bool {
    needs("python3 with redis-py", "python3", &["-c", "import redis"], "pip install redis")
}

pub struct Store {
    pub dir: PathBuf,
    pub base: u16,
    children: Vec<Option<Child>>,
    /// Each node's `kv.role` ("active" unless set).
    pub roles: Vec<&'static str>,
    /// Nodes in the store.
    pub n: u16,
    /// With data directories (under `dir`), this `kv.appendfsync`; and then every node runs
    /// with one unchanged config (node 1 configured to found the store), as an operator's would.
    pub durable: Option<&'static str>,
    /// More `[kv]` lines for every node's config.
    pub kv_extra: String,
    /// Extra environment for a node's process (its index), from its next start on.
    pub env: BTreeMap<u16, Vec<(String, String)>>,
    /// Each node serves metrics and its status page on `metrics_port(i)`.
    pub metrics: bool,
}

impl Store {
    pub fn port(&self, i: u16) -> u16 {
        self.base + i
    }

    /// Node `i`'s metrics port (with `metrics`).
    pub fn metrics_port(&self, i: u16) -> u16 {
        self.base + 200 + i
    }

    /// Node `i`'s config file (written now).
    pub fn config_file(&self, i: u16) -> PathBuf {
        self.config(i, i == 0)
    }

    /// Node `i`'s data directory (with `durable`).
    pub fn data_dir(&self, i: u16) -> PathBuf {
        self.dir.join(format!("data{}", i + 1))
    }

    fn config(&self, i: u16, bootstrap: bool) -> PathBuf {
        let bootstrap = if self.durable.is_some() { i == 0 } else { bootstrap };
        let seeds: Vec<String> = (0..self.n)
            .filter(|j| *j != i)
            .map(|j| format!("\"{}@127.0.0.1:{}\"", j + 1, self.base + 100 + j))
            .collect();
        // Mutual TLS on the peer links, as the demo and a production store run them: these
        // tests cover the TLS transport under crashes, pauses and restarts.
        let certs = self.dir.join("certs");
        let (cert, key) =
            (certs.join(format!("node-{}.pem", i + 1)), certs.join(format!("node-{}-key.pem", i + 1)));
        if !cert.exists() {
            let (ca, _) = chorus::tls::dev_certs::ensure_ca(&certs, "test").unwrap();
            chorus::tls::dev_certs::make_leaf(&certs, &ca, &format!("node-{}", i + 1), &[]).unwrap();
        }
        let text = format!(
            "[group]\nnode = {}\nlisten = \"127.0.0.1:{}\"\nseeds = [{}]\nsecret = \"faults test secret\"\nbootstrap = {bootstrap}\ntls_cert = \"{}\"\ntls_key = \"{}\"\ntls_ca = \"{}\"\n\n[kv]\nlisten = \"127.0.0.1:{}\"\nrole = \"{}\"\nplaintext = true\n",
            i + 1,
            self.base + 100 + i,
            seeds.join(", "),
            cert.display(),
            key.display(),
            certs.join("ca.pem").display(),
            self.port(i),
            self.roles.get(i as usize).copied().unwrap_or("active")
        );
        let text = if self.metrics {
            text.replace(
                "[kv]\n",
                &format!("metrics_listen = \"127.0.0.1:{}\"\n\n[kv]\n", self.metrics_port(i)),
            )
        } else {
            text
        };
        let text = match self.durable {
            Some(fsync) => text.replace(
                "[kv]\n",
                &format!(
                    "data_dir = \"{}\"\n\n[kv]\nappendfsync = \"{fsync}\"\n{}",
                    self.data_dir(i).display(),
                    self.kv_extra
                ),
            ),
            None => text,
        };
        let path = self.dir.join(format!("node{}-{bootstrap}.toml", i + 1));
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn start(&mut self, i: u16, bootstrap: bool) {
        let cfg = self.config(i, bootstrap);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node{}.log", i + 1)))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_chorus-kv"))
            .args(["node", "--config"])
            .arg(cfg)
            .env("CHORUS_LOG", "info")
            .envs(self.env.get(&i).into_iter().flatten().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children[i as usize] = Some(child);
    }

    pub fn kill(&mut self, i: u16) {
        if let Some(mut c) = self.children[i as usize].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&self, i: u16, sig: &str) {
        let pid = self.children[i as usize].as_ref().unwrap().id();
        let ok = Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success();
        assert!(ok, "kill {sig} {pid} failed");
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        for i in 0..self.n {
            if self.children[i as usize].is_some() {
                let _ = self.signal_cont(i);
            }
            self.kill(i);
        }
    }
}

impl Store {
    fn signal_cont(&self, i: u16) -> bool {
        let Some(c) = self.children[i as usize].as_ref() else { return false };
        Command::new("kill").args(["-CONT", &c.id().to_string()]).status().is_ok_and(|s| s.success())
    }
}

pub fn info(port: u16) -> Option<BTreeMap<String, String>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut c = tokio::time::timeout(Duration::from_secs(2), Client::connect(("127.0.0.1", port)))
            .await
            .ok()?
            .ok()?;
        tokio::time::timeout(Duration::from_secs(2), c.info_group()).await.ok()?.ok()
    })
}

/// Waits until every node is active in one view of all nodes; returns the INFOs.
pub fn wait_converged(s: &Store, within: Duration, same_state: bool) -> Vec<BTreeMap<String, String>> {
    let start = Instant::now();
    let mut last = Vec::new();
    while start.elapsed() < within {
        let infos: Vec<_> = (0..s.n).filter_map(|i| info(s.port(i))).collect();
        let good = infos.len() == s.n as usize
            && infos.iter().all(|i| {
                i.get("role").map(String::as_str) == Some("active")
                    && i.get("members").is_some_and(|m| m.split(',').count() == s.n as usize)
            })
            && infos.iter().all(|i| i.get("view_id") == infos[0].get("view_id"))
            && (!same_state
                || infos.iter().all(|i| {
                    i.get("applied_index") == infos[0].get("applied_index")
                        && i.get("state_digest_index") == i.get("applied_index")
                        && i.get("state_digest") == infos[0].get("state_digest")
                }));
        if good {
            return infos;
        }
        last = infos;
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "the store did not converge within {within:?}; last INFOs: {last:#?}; logs in {}",
        s.dir.display()
    );
}

/// Polls `f` every 100 ms until it holds; panics naming `what` after `within`.
pub fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < within {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

pub fn wait_until(mut f: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

impl Store {
    /// A fresh store of NODES nodes, all active in one view.
    pub fn up(name: &str) -> Store {
        let s = Store::start_all(name, Vec::new());
        wait_converged(&s, Duration::from_secs(30), false);
        s
    }

    /// A fresh store whose nodes have these roles, all in one view (not waiting for roles).
    pub fn start_all(name: &str, roles: Vec<&'static str>) -> Store {
        Store::start_with(name, NODES, roles, None)
    }

    /// `n` nodes, with data directories if `durable` (see [`Store::durable`]).
    pub fn start_with(name: &str, n: u16, roles: Vec<&'static str>, durable: Option<&'static str>) -> Store {
        Store::start_configured(name, n, roles, durable, "")
    }

    /// As [`Store::start_with`], with `kv_extra` lines in every node's `[kv]` section.
    pub fn start_configured(
        name: &str,
        n: u16,
        roles: Vec<&'static str>,
        durable: Option<&'static str>,
        kv_extra: &str,
    ) -> Store {
        let mut s = Store::fresh(name, n, roles, durable, kv_extra);
        s.start_every();
        s
    }

    /// A store not started yet (set its fields, then [`Store::start_every`]).
    pub fn fresh(
        name: &str,
        n: u16,
        roles: Vec<&'static str>,
        durable: Option<&'static str>,
        kv_extra: &str,
    ) -> Store {
        let dir = std::env::temp_dir().join(format!("chorus-kv-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let salt = name.bytes().fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b)));
        let base = 21_000 + ((std::process::id() ^ salt) % 400) as u16 * 10;
        Store {
            dir,
            base,
            children: (0..n).map(|_| None).collect(),
            roles,
            n,
            durable,
            kv_extra: kv_extra.into(),
            env: BTreeMap::new(),
            metrics: false,
        }
    }

    /// Starts every node at once, as an operator starts a new store: node 1 founds the group
    /// once a majority of the nodes answer that they belong to none.
    pub fn start_every(&mut self) {
        self.start(0, true);
        for i in 1..self.n {
            self.start(i, false);
        }
    }

    /// The Redis ports.
    pub fn ports(&self) -> Vec<u16> {
        (0..self.n).map(|i| self.port(i)).collect()
    }

    /// Node `i`'s process id, if it runs.
    pub fn pid(&self, i: u16) -> Option<u32> {
        self.children[i as usize].as_ref().map(Child::id)
    }

    /// Whether node `i`'s process runs.
    pub fn running(&self, i: u16) -> bool {
        self.children[i as usize].is_some()
    }

    /// Waits for node `i`'s process to exit by itself (within `within`); its exit status and
    /// the last lines of its log.
    pub fn wait_exit(&mut self, i: u16, within: Duration) -> Option<(std::process::ExitStatus, String)> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(c) = self.children[i as usize].as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.children[i as usize] = None;
                    let log = std::fs::read_to_string(self.dir.join(format!("node{}.log", i + 1)))
                        .unwrap_or_default();
                    return Some((status, log));
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// tests/kv/workload.py against every node of `s`: 6 redis-py clients, register and
/// list-append, for `seconds`, the history written to `history`.
pub fn workload(s: &Store, seconds: u64, history: &std::path::Path) -> Child {
    let ports: Vec<String> = s.ports().iter().map(u16::to_string).collect();
    Command::new("python3")
        .arg(repo().join("tests/kv/workload.py"))
        .args(["--ports", &ports.join(","), "--seconds", &seconds.to_string(), "--clients", "6", "--history"])
        .arg(history)
        .spawn()
        .unwrap()
}

/// Linearizable per key, and no acknowledged append missing from the final reads (at least
/// `min_appends` of them checked).
pub fn judge(history: &std::path::Path, min_appends: usize) {
    let text = std::fs::read_to_string(history).unwrap();
    let h = chorus_lin::jsonl::parse(&text).unwrap();
    let report = chorus_lin::check_history(&h, &chorus_lin::CheckOptions::default()).unwrap();
    eprintln!("{report}");
    assert_eq!(
        report.verdict(),
        chorus_lin::Verdict::Linearizable,
        "history {}: {report}",
        history.display()
    );
    let lost = chorus_lin::lost_appends(&h);
    assert!(lost.is_ok(), "acknowledged appends lost (history {}): {lost:?}", history.display());
    assert!(lost.keys_without_final_read.is_empty(), "keys without a final read: {lost:?}");
    assert!(
        lost.appends_checked >= min_appends,
        "only {} acknowledged appends checked (history {})",
        lost.appends_checked,
        history.display()
    );
    eprintln!(
        "no acknowledged append lost: {} appends checked against {} final reads",
        lost.appends_checked, lost.final_reads
    );
}
