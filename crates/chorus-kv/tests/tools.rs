//! The stock Redis tools against this server: redis-cli (RESP2 and RESP3, inline and
//! multibulk) and redis-benchmark with pipelining. Needs them installed (CI does): fails if
//! they are missing, or is ignored if CHORUS_SKIP_REDIS=1 was set when it was built (build.rs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::Instant;

use chorus_kv::ServerConfig;
use common::TestServer;

/// Fails the test if `tool` is missing (build with CHORUS_SKIP_REDIS=1 to ignore it instead).
fn require(tool: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{tool} is required by this test (build with CHORUS_SKIP_REDIS=1 to ignore the test)");
}

fn cli(port: u16, extra: &[&str], args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(extra)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

#[cfg_attr(redis_tools_missing, ignore = "CHORUS_SKIP_REDIS=1 and a Redis tool is missing (see build.rs)")]
#[test]
fn redis_cli() {
    require("redis-cli");
    let s = TestServer::start(ServerConfig { password: Some("pw".into()), ..ServerConfig::default() });
    let port = s.addr.port();
    let auth = ["-a", "pw", "--no-auth-warning"];
    assert_eq!(cli(port, &[], &["PING"]), "NOAUTH Authentication required.");
    assert_eq!(cli(port, &auth, &["PING"]), "PONG");
    assert_eq!(cli(port, &auth, &["SET", "greeting", "hello world"]), "OK");
    assert_eq!(cli(port, &auth, &["GET", "greeting"]), "hello world");
    assert_eq!(cli(port, &auth, &["HSET", "h", "a", "1", "b", "2"]), "2");
    assert_eq!(cli(port, &auth, &["HGETALL", "h"]), "a\n1\nb\n2");
    // RESP3: HELLO 3 with AUTH.
    assert_eq!(cli(port, &["-3", "-a", "pw", "--no-auth-warning"], &["HGETALL", "h"]), "a 1\nb 2");
    assert_eq!(cli(port, &auth, &["INCR", "greeting"]), "ERR value is not an integer or out of range");
    let info = cli(port, &auth, &["INFO", "group"]);
    assert!(info.contains("# Group") && info.contains("role:standalone"), "{info}");
    // Commands from standard input, one per line (inline-style input, multibulk on the wire).
    let mut child = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "-a", "pw", "--no-auth-warning"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"RPUSH l a b c\nLRANGE l 0 -1\nDBSIZE\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), "3\na\nb\nc\n3");
}

#[cfg_attr(redis_tools_missing, ignore = "CHORUS_SKIP_REDIS=1 and a Redis tool is missing (see build.rs)")]
#[test]
fn redis_benchmark_pipelined() {
    require("redis-benchmark");
    let s = TestServer::start(ServerConfig::default());
    let t = Instant::now();
    let out = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &s.addr.port().to_string(),
            "-q",
            "-n",
            "20000",
            "-P",
            "16",
            "-c",
            "4",
        ])
        .args(["-t", "ping,set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,mset,lrange_100"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    assert!(out.status.success(), "{text}");
    let finals: Vec<&str> = text.lines().filter(|l| l.contains("requests per second")).collect();
    println!("{}\n({:.1}s)", finals.join("\n"), t.elapsed().as_secs_f64());
    for name in [
        "PING_INLINE",
        "PING_MBULK",
        "SET",
        "GET",
        "INCR",
        "LPUSH",
        "RPUSH",
        "LPOP",
        "RPOP",
        "SADD",
        "HSET",
        "MSET",
        "LRANGE_100",
    ] {
        assert!(finals.iter().any(|l| l.trim_start().starts_with(name)), "no result for {name}:\n{text}");
    }
    let mut c = s.client();
    assert_eq!(c.cmd("STRLEN key:__rand_int__"), common::V::Int(3));
}
