//! Not a test: runs a server with a LocalBackend for manual use (redis-cli, redis-benchmark,
//! tests/kv/differential.py):
//! `CHORUS_KV_ADDR=127.0.0.1:7777 cargo test --release -p chorus-kv --test serve_local -- --ignored --nocapture`
//! (stops after CHORUS_KV_SECONDS, default 600).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

#[test]
#[ignore = "a server for manual use"]
fn serve_local() {
    let addr = std::env::var("CHORUS_KV_ADDR").unwrap_or_else(|_| "127.0.0.1:7777".into());
    let secs = std::env::var("CHORUS_KV_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let mut cfg = chorus_kv::ServerConfig::default();
    if let Ok(p) = std::env::var("CHORUS_KV_PASSWORD") {
        cfg.password = Some(p);
    }
    let server = common::TestServer::start_on(&addr, cfg);
    println!("serving on {}", server.addr);
    std::thread::sleep(Duration::from_secs(secs));
}
