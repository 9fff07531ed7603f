//! A client that never reads its replies (issue 14, finding 4): one client stores a
//! 1,000,000-byte value, then pipelines thousands of GETs of it without reading. The node's
//! memory must stay bounded while it does (its replies wait on the client's socket, not in the
//! node), and be given back once the client closes. Measured on a real `chorus-kv` process
//! through /proc (RSS before, the peak during, after).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;
mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cluster::{wait_converged, Store};
use common::Client;

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

#[test]
fn a_client_that_never_reads_cannot_grow_the_nodes_memory() {
    let s = Store::start_with("outbuf", 1, Vec::new(), None);
    wait_converged(&s, Duration::from_secs(30), false);
    let pid = s.pid(0).unwrap();
    let addr = ("127.0.0.1", s.port(0));

    let value = vec![b'v'; 1_000_000];
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(&Client::encode(&[b"SET", b"big", &value])).unwrap();
    let mut ok = [0u8; 5];
    std::io::Read::read_exact(&mut c, &mut ok).unwrap();
    assert_eq!(&ok, b"+OK\r\n");
    let before = rss_mib(pid);

    // 4,000 GETs (4 GB of replies) sent in the background, never read.
    let gets = Client::encode(&[b"GET", b"big"]).repeat(4000);
    let mut w = c.try_clone().unwrap();
    w.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&gets);
    });
    let mut peak = before;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        peak = peak.max(rss_mib(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    let during = peak - before;

    drop(c);
    let _ = writer.join();
    let start = Instant::now();
    let mut after = rss_mib(pid) - before;
    while after > 32.0 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        after = rss_mib(pid) - before;
    }
    eprintln!("node RSS: {before:.1} MiB before; peak +{during:.1} MiB while the client did not read; +{after:.1} MiB after it closed");
    assert!(during < 64.0, "the node grew {during:.1} MiB for one client that does not read (bound: 64 MiB)");
    assert!(after < 32.0, "the node kept {after:.1} MiB after the client closed");

    // And it still serves.
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(&Client::encode(&[b"STRLEN", b"big"])).unwrap();
    let mut reply = [0u8; 10];
    std::io::Read::read_exact(&mut c, &mut reply).unwrap();
    assert_eq!(&reply, b":1000000\r\n");
}
