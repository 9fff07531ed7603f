//! The README's first command, `chorus-kv demo`, as a newcomer runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

/// A base port for a demo of three nodes (`base..base+3` for clients, `base+100..` for peers),
/// away from the other tests' ranges (21,000-25,000).
fn base(salt: u32) -> u16 {
    26_000 + ((std::process::id() ^ salt) % 300) as u16 * 10
}

fn demo(port: u16, dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chorus-kv"))
        .args(["demo", "--exit", "--port", &port.to_string(), "--dir"])
        .arg(dir)
        .args(extra)
        .output()
        .expect("run chorus-kv demo")
}

/// The walk-through ends well: writes read back through every node, a node killed and
/// re-joined with the state, and with `appendfsync always` the whole store killed at once and
/// back with everything.
#[test]
fn the_demo_runs_its_walk_through() {
    let port = base(1);
    let dir = std::env::temp_dir().join(format!("chorus-kv-demo-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = demo(port, &dir, &["--appendfsync", "always"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}\n{stdout}");
    for want in [
        "all 3 nodes are in one view",
        "every replica has the same applied index and state digest",
        "everything written before the power cut is there, on every node",
    ] {
        assert!(stdout.contains(want), "the demo did not say {want:?}:\n{stdout}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A port in use (here by a bare listener; in the review, another store) stops the demo at
/// once, naming the port: it never talks to a process it did not start.
#[test]
fn the_demo_refuses_ports_in_use() {
    for (salt, taken_at) in [(2, 1), (3, 101)] {
        let port = base(salt);
        let taken = port + taken_at;
        let _holder = std::net::TcpListener::bind(("127.0.0.1", taken)).expect("bind the test's port");
        let dir = std::env::temp_dir().join(format!("chorus-kv-demo-busy-{}-{salt}", std::process::id()));
        let out = demo(port, &dir, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "the demo ran with port {taken} taken");
        assert!(stderr.contains(&format!("port {taken} ")), "the error does not name port {taken}: {stderr}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("one view"),
            "the demo went on to a walk-through"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
