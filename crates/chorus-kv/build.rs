//! Tests that cannot run on this machine are compiled as ignored, so that `cargo test` lists
//! them as "ignored", never as passed:
//! - `cfg(redis_tools_missing)`: the tests that drive the stock Redis tools (redis-server,
//!   redis-cli, redis-benchmark, redis-py) fail when a tool is missing, unless
//!   `CHORUS_SKIP_REDIS=1` is set when they are built and a tool is missing;
//! - `cfg(faketime_missing)`: the clock-skew test needs Debian's libfaketime; it fails without
//!   it if `CHORUS_REQUIRE_FAKETIME=1` (scripts/test.sh sets it once it installed faketime);
//! - `cfg(not_root)`: the full-disk test mounts a small tmpfs, which needs root.

use std::process::{Command, Stdio};

fn runs(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Where Debian's faketime package puts the library (the clock-skew test preloads it).
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(redis_tools_missing)");
    println!("cargo::rustc-check-cfg=cfg(faketime_missing)");
    println!("cargo::rustc-check-cfg=cfg(not_root)");
    println!("cargo::rerun-if-env-changed=CHORUS_SKIP_REDIS");
    println!("cargo::rerun-if-env-changed=CHORUS_REQUIRE_FAKETIME");
    println!("cargo::rerun-if-changed={LIBFAKETIME}");
    if !std::path::Path::new(LIBFAKETIME).exists()
        && std::env::var("CHORUS_REQUIRE_FAKETIME").as_deref() != Ok("1")
    {
        println!("cargo::warning={LIBFAKETIME} is missing: the clock-skew test is ignored (apt-get install faketime)");
        println!("cargo::rustc-cfg=faketime_missing");
    }
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout == b"0\n");
    if !root {
        println!("cargo::rustc-cfg=not_root");
    }
    if std::env::var("CHORUS_SKIP_REDIS").as_deref() != Ok("1") {
        return;
    }
    let missing = [
        ("redis-server", &["--version"][..]),
        ("redis-cli", &["--version"][..]),
        ("redis-benchmark", &["--version"][..]),
        ("python3", &["-c", "import redis"][..]),
    ]
    .iter()
    .filter(|(cmd, args)| !runs(cmd, args))
    .map(|(cmd, _)| *cmd)
    .collect::<Vec<_>>();
    if !missing.is_empty() {
        println!(
            "cargo::warning=CHORUS_SKIP_REDIS=1 and {} missing: the tests that need them are ignored",
            missing.join(", ")
        );
        println!("cargo::rustc-cfg=redis_tools_missing");
    }
}
