//! Commands larger than a frame: values of 1, 16 and 64 MiB and a MULTI of 2,000 SETs of 1 KB,
//! written through one node of a 3-node store and read back through the others (issue 14 #2:
//! before, no command above about 1 MiB could be written). Uses redis-py (`.ci/run` installs
//! it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::process::Command;

use cluster::{python_ready, repo, Store};

#[cfg_attr(redis_tools_missing, ignore = "CHORUS_SKIP_REDIS=1 and a Redis tool is missing (see build.rs)")]
#[test]
fn values_of_64_mib_and_a_transaction_of_2000_sets_replicate() {
    python_ready();
    // Handling a 64 MiB command holds a node's one worker thread for about half a second on a
    // 2-core machine (docs/kv.md, "Limits"): long enough, at the default 500 ms, for its peers
    // to exclude it. This test is about the command getting through, so it gives the nodes
    // the longer suspicion timeout such values need. (The nodes inherit the variable.)
    std::env::set_var("CHORUS_SUSPECT_TIMEOUT_MS", "3000");
    let s = Store::start_with("large", 3, Vec::new(), Some("always"));
    cluster::wait_converged(&s, std::time::Duration::from_secs(30), false);
    let ports: Vec<String> = s.ports().iter().map(u16::to_string).collect();
    let out = Command::new("python3")
        .arg(repo().join("tests/kv/large_values.py"))
        .args(["--ports", &ports.join(",")])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success(), "large values failed:\n{text}");
}
