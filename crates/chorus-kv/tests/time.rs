//! Time and expiry on real processes (issue 14, finding 1): a key whose expiry has passed is
//! never read back, by either kind of read, at any node, even when no write follows; and one
//! node whose clock runs ahead cannot expire everyone's keys: it is refused at the handshake.
//!
//! The second test runs node 3 under libfaketime (Debian's `faketime` package; `.ci/run`
//! installs it); without it the test says so and does not run, unless CHORUS_REQUIRE_FAKETIME=1
//! makes that a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::path::Path;
use std::time::Duration;

use chorus_kv::resp_client::{Client, Value};
use cluster::{info, wait_converged, wait_for, Store};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// One client per node, kept open (so READONLY/READWRITE stay set on it).
struct Clients {
    rt: tokio::runtime::Runtime,
    conns: Vec<Client>,
}

impl Clients {
    fn new(s: &Store) -> Clients {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let conns =
            s.ports().iter().map(|p| rt.block_on(Client::connect(("127.0.0.1", *p))).unwrap()).collect();
        Clients { rt, conns }
    }

    /// Node `i` (0-based) runs `args`.
    fn cmd(&mut self, i: usize, args: &[&str]) -> Value {
        let c = &mut self.conns[i];
        self.rt.block_on(c.cmd(args)).unwrap()
    }

    fn int(&mut self, i: usize, args: &[&str]) -> i64 {
        match self.cmd(i, args) {
            Value::Int(n) => n,
            other => panic!("{args:?} at node {}: {other:?}", i + 1),
        }
    }
}

#[test]
fn an_expired_key_is_never_read_back_by_any_read_at_any_node() {
    let s = Store::up("time-expiry");
    let mut c = Clients::new(&s);
    assert_eq!(c.cmd(0, &["SET", "k", "v", "PX", "200"]), Value::Simple("OK".into()));
    assert_eq!(c.cmd(0, &["GET", "k"]), Value::Bulk(b"v".to_vec()));
    // A key whose lifetime counts down with no write in between.
    assert_eq!(c.cmd(0, &["SET", "t", "v", "PX", "20000"]), Value::Simple("OK".into()));
    let first = c.int(0, &["PTTL", "t"]);
    // Real time has to pass for a key to expire: nothing else is waited for here.
    std::thread::sleep(Duration::from_millis(700));

    // No write since: linearizable reads (the default) judge expiry now, not at the last write.
    for i in 0..3 {
        assert_eq!(c.cmd(i, &["GET", "k"]), Value::Nil, "linearizable GET at node {}", i + 1);
        assert_eq!(c.int(i, &["PTTL", "k"]), -2, "linearizable PTTL at node {}", i + 1);
    }
    let later = c.int(0, &["PTTL", "t"]);
    assert!(later <= first - 600, "PTTL must count down without writes: {first} then {later}");
    // Local reads, then linearizable ones again on the same connection: never back in time.
    for i in 0..3 {
        assert_eq!(c.cmd(i, &["READONLY"]), Value::Simple("OK".into()));
        assert_eq!(c.cmd(i, &["GET", "k"]), Value::Nil, "local GET at node {}", i + 1);
        assert_eq!(c.cmd(i, &["READWRITE"]), Value::Simple("OK".into()));
        assert_eq!(
            c.cmd(i, &["GET", "k"]),
            Value::Nil,
            "linearizable GET after a local one at node {}",
            i + 1
        );
    }
    // A write that reads the key sees it gone too.
    assert_eq!(c.int(1, &["INCR", "k"]), 1);
}

fn log_has(path: &Path, needle: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|l| l.contains(needle))
}

#[cfg_attr(faketime_missing, ignore = "libfaketime is missing (apt-get install faketime; see build.rs)")]
#[test]
fn a_node_whose_clock_runs_ahead_is_refused_and_cannot_expire_the_groups_keys() {
    assert!(Path::new(LIBFAKETIME).exists(), "{LIBFAKETIME} is missing (apt-get install faketime)");
    let mut s = Store::up("time-skew");
    // Node 3 comes back with its clock 10 minutes ahead (the monotonic clock untouched, as an
    // NTP-less host whose wall clock is wrong).
    s.kill(2);
    s.env.insert(
        2,
        vec![
            ("LD_PRELOAD".into(), LIBFAKETIME.into()),
            ("FAKETIME".into(), "+600s".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
            ("FAKETIME_NO_CACHE".into(), "1".into()),
        ],
    );
    s.start(2, false);
    let (log1, log3) = (s.dir.join("node1.log"), s.dir.join("node3.log"));
    wait_for("node 3 to be refused for its clock", Duration::from_secs(20), || {
        log_has(&log3, "s behind ours, more than max_clock_skew") || log_has(&log3, "your clock is 6")
    });
    assert!(
        log_has(&log1, "node 3's clock is 6") || log_has(&log1, "your clock is"),
        "node 1 must say why it refuses node 3 (logs in {})",
        s.dir.display()
    );

    let mut c = Clients::new(&s);
    assert_eq!(c.cmd(0, &["SET", "k", "v", "EX", "60"]), Value::Simple("OK".into()));
    // Node 3 is in no view: it takes no write, so its clock reaches nobody's keys.
    match c.cmd(2, &["SET", "other", "x"]) {
        Value::Error(_) => {}
        other => panic!("node 3, refused by the group, must not take writes: {other:?}"),
    }
    let members = info(s.port(0)).and_then(|i| i.get("members").cloned()).unwrap_or_default();
    assert_eq!(members.split(',').count(), 2, "nodes 1 and 2 go on without node 3: {members}");
    let ttl = c.int(0, &["TTL", "k"]);
    assert!(
        (58..=60).contains(&ttl),
        "TTL through node 1 must be about 60, not moved by node 3's clock: {ttl}"
    );
    assert!((58..=60).contains(&c.int(1, &["TTL", "k"])));

    // Its clock fixed, node 3 is let back in and serves the same keys.
    s.kill(2);
    s.env.remove(&2);
    s.start(2, false);
    wait_converged(&s, Duration::from_secs(30), false);
    let mut c = Clients::new(&s);
    let ttl = c.int(2, &["TTL", "k"]);
    assert!((55..=60).contains(&ttl), "TTL through node 3: {ttl}");
}
