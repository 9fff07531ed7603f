//! The replicated store with the tools users have: redis-cli and redis-benchmark (Debian's
//! redis-tools) and redis-py (PyPI), against a 3-node store of real `chorus-kv` processes.
//! `.ci/run` installs them; without them this test fails, unless `CHORUS_SKIP_REDIS=1` says to
//! skip (it then prints that it did not run). (`tools.rs` runs the same tools against one
//! unreplicated server.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::process::{Command, Stdio};
use std::time::Duration;

use cluster::{python_ready, repo, wait_converged, Store};

fn tool(name: &str) {
    cluster::needs(name, name, &["--version"], "apt-get install redis-tools");
}

/// Runs redis-cli with `args` against `port`, feeding `stdin`; returns stdout.
fn cli(port: u16, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut c = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "redis-cli {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[cfg_attr(redis_tools_missing, ignore = "CHORUS_SKIP_REDIS=1 and a Redis tool is missing (see build.rs)")]
#[test]
fn redis_cli_redis_benchmark_and_redis_py_against_three_nodes() {
    tool("redis-cli");
    tool("redis-benchmark");
    python_ready();
    let s = Store::up("tools");
    let p = s.ports();

    // redis-cli: written through one port, read through another.
    assert_eq!(cli(p[0], &["SET", "greeting", "hello"], ""), "OK\n");
    assert_eq!(cli(p[1], &["GET", "greeting"], ""), "hello\n");
    assert_eq!(cli(p[2], &["APPEND", "greeting", " world"], ""), "11\n");
    assert_eq!(cli(p[0], &["GET", "greeting"], ""), "hello world\n");
    // A session on one connection, commands on stdin.
    let out = cli(
        p[1],
        &[],
        "MULTI\nINCR visits\nINCR visits\nEXEC\nRPUSH q a b\nLRANGE q 0 -1\nPING\nCOMMAND COUNT\nSELECT 1\n",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..6], ["OK", "QUEUED", "QUEUED", "1", "2", "2"], "{out}");
    assert_eq!(&lines[6..9], ["a", "b", "PONG"], "{out}");
    assert!(lines[9].parse::<u32>().is_ok_and(|n| n > 50), "COMMAND COUNT: {out}");
    assert!(lines[10].starts_with("ERR"), "SELECT 1 must fail: {out}");
    assert_eq!(cli(p[2], &["GET", "visits"], ""), "2\n");
    assert!(cli(p[0], &["INFO", "group"], "").contains("role:active"));

    // redis-benchmark: every request answered without an error, at every pipeline depth.
    for pipeline in ["1", "16"] {
        let out = Command::new("redis-benchmark")
            .args([
                "-p",
                &p[0].to_string(),
                "-t",
                "set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,mset",
                "-n",
                "2000",
                "-c",
                "10",
            ])
            .args(["-P", pipeline, "--csv"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "redis-benchmark failed: {stderr}");
        assert!(!stderr.to_lowercase().contains("error"), "redis-benchmark reported errors: {stderr}");
        let tests = text.lines().filter(|l| l.starts_with('"') && !l.starts_with("\"test\"")).count();
        assert!(tests >= 10, "redis-benchmark -P {pipeline} ran {tests} tests:\n{text}");
    }
    // The benchmark's writes reached every replica.
    wait_converged(&s, Duration::from_secs(20), true);
    let sizes: Vec<String> = p.iter().map(|port| cli(*port, &["DBSIZE"], "")).collect();
    assert!(sizes.iter().all(|x| x == &sizes[0]), "DBSIZE differs: {sizes:?}");

    // redis-py, RESP2 and RESP3, every node.
    let ports: Vec<String> = p.iter().map(u16::to_string).collect();
    let out = Command::new("python3")
        .arg(repo().join("tests/kv/redispy_smoke.py"))
        .args(["--ports", &ports.join(",")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "redis-py smoke failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
