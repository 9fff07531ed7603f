//! The differential test: tests/kv/differential.py runs the same random command sequences
//! against this server (LocalBackend) and a real redis-server, comparing every reply.
//!
//! Needs redis-server, python3 and redis-py (CI installs them): if one is missing the test
//! fails, or is ignored if CHORUS_SKIP_REDIS=1 was set when it was built (build.rs).
//! CHORUS_DIFF_SEEDS (default "1,2,3") and CHORUS_DIFF_COUNT (default 2000) tune it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chorus_kv::ServerConfig;
use common::{Client, TestServer, V};

fn have(cmd: &str, arg: &str) -> bool {
    Command::new(cmd).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// A redis-server on a free loopback port, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    pub port: u16,
    child: Child,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--daemonize", "no", "--logfile", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start redis-server");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                drop(s);
                let mut c = Client::connect(format!("127.0.0.1:{port}").parse().unwrap());
                if c.cmd("PING") == V::Simple("PONG".into()) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not come up on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        RedisServer { port, child }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/kv/differential.py")
}

#[cfg_attr(redis_tools_missing, ignore = "CHORUS_SKIP_REDIS=1 and a Redis tool is missing (see build.rs)")]
#[test]
fn differential_against_redis_server() {
    let missing = [
        (!have("redis-server", "--version")).then_some("redis-server"),
        (!Command::new("python3")
            .args(["-c", "import redis"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()))
        .then_some("python3 with redis-py"),
    ];
    if let Some(what) = missing.iter().flatten().next() {
        panic!("{what} is required by this test (build with CHORUS_SKIP_REDIS=1 to ignore it)");
    }
    let redis = RedisServer::start();
    let ours = TestServer::start(ServerConfig::default());
    let seeds = std::env::var("CHORUS_DIFF_SEEDS").unwrap_or_else(|_| "1,2,3".into());
    let count = std::env::var("CHORUS_DIFF_COUNT").unwrap_or_else(|_| "2000".into());
    for seed in seeds.split(',') {
        for proto in ["2", "3"] {
            let t = Instant::now();
            let out = Command::new("python3")
                .arg(script())
                .arg(ours.addr.to_string())
                .arg(format!("127.0.0.1:{}", redis.port))
                .args(["--seed", seed.trim(), "--count", &count, "--protocol", proto])
                .output()
                .expect("cannot run python3");
            let text = String::from_utf8_lossy(&out.stdout);
            print!("{text}");
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
            assert!(
                out.status.success(),
                "differential test failed (seed {seed}, protocol {proto}):\n{text}"
            );
            println!("  ({:.1}s)", t.elapsed().as_secs_f64());
        }
    }
}
