//! Bad input at a running member's door: garbage before the handshake, bad frames after it, a
//! wrong secret, a non-member that speaks the protocol, a flood of silent connections, and a
//! peer that stops reading. Each must end in a logged error and a closed connection or a dropped
//! frame, with memory bounded and the group going on.
//!
//! Every test starts a small group in-process on loopback, attacks one member's listen address
//! with a raw `TcpStream`, then checks that the member closed the connection (or ignored the
//! frame), that nothing changed the view, and that a multicast afterwards reaches every member.
//! Attackers use distinct node ids per test (88 to 99) so that log lines, which are captured for
//! the whole test binary, can be told apart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use chorus::config::{NodeConfig, Partial};
use chorus::transport::frame;
use chorus::transport::handshake::{self, HandshakeError, Identity, Side};
use chorus::{Event, Events, Member, MemberId, MemberStatus, Order, View, ViewId};
use chorus_core::wire::{self, Ack, Ballot, Data, FrameBody, Msg, Proposal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const SECRET: &str = "test secret 123";
const CLUSTER: &str = "chorus";
/// Bound on any single wait that should succeed quickly.
const T: Duration = Duration::from_secs(10);
/// How long a member may take to close a connection that sent something invalid.
const CLOSE_WITHIN: Duration = Duration::from_secs(3);
/// The runtime's handshake timeout (`HANDSHAKE_TIMEOUT` in runtime.rs).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for a member to register a connection that just passed the handshake (see
/// `the_first_frames_after_the_handshake_are_not_lost` for why the attacks wait that long).
const REGISTER: Duration = Duration::from_millis(100);
/// Long enough after an attack for any view change it caused to show (several suspect timeouts).
const SETTLE: Duration = Duration::from_millis(800);

// ---------------------------------------------------------------------------------------------
// Captured logs

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static LOG_INIT: Once = Once::new();

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        lock(&LOGS).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends warnings and errors of the whole test binary to a buffer the tests search.
fn capture_logs() {
    LOG_INIT.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_max_level(match std::env::var("CHORUS_TEST_LOG").as_deref() {
                Ok("debug") => tracing::Level::DEBUG,
                Ok("info") => tracing::Level::INFO,
                _ => tracing::Level::WARN,
            })
            .with_ansi(false)
            .with_writer(|| LogWriter)
            .try_init();
    });
}

/// Whether one captured log line holds every needle.
fn logged(needles: &[&str]) -> bool {
    let logs = lock(&LOGS);
    String::from_utf8_lossy(&logs).lines().any(|l| needles.iter().all(|n| l.contains(n)))
}

async fn wait_logged(needles: &[&str]) {
    let start = Instant::now();
    while !logged(needles) {
        if start.elapsed() > CLOSE_WITHIN {
            let logs = lock(&LOGS);
            let tail: Vec<&str> = std::str::from_utf8(&logs).unwrap_or("").lines().rev().take(20).collect();
            panic!("no log line with {needles:?}; last lines: {tail:#?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The group

/// What one member's application saw, recorded by a task that reads its events promptly.
#[derive(Debug, Default)]
struct Log {
    views: Vec<View>,
    /// Payloads of at most 64 bytes (markers; the bulk of a flood is only counted).
    small: Vec<Bytes>,
    delivered: usize,
    excluded: usize,
}

struct Group {
    members: Vec<Member>,
    logs: Vec<Arc<Mutex<Log>>>,
}

fn config(node: u64, seeds: &[(u64, SocketAddr)]) -> NodeConfig {
    let mut cfg = Partial {
        node: Some(node),
        listen: Some("127.0.0.1:0".into()),
        seeds: Some(seeds.iter().map(|(n, a)| format!("{n}@{a}")).collect()),
        secret: Some(SECRET.into()),
        plaintext: Some(true),
        bootstrap: Some(seeds.is_empty()),
        heartbeat_ms: Some(20),
        suspect_timeout_ms: Some(200),
        ..Partial::default()
    }
    .build()
    .unwrap();
    cfg.state_transfer = false;
    cfg
}

fn record(mut events: Events) -> Arc<Mutex<Log>> {
    let log = Arc::new(Mutex::new(Log::default()));
    let l = log.clone();
    tokio::spawn(async move {
        while let Some(e) = events.next().await {
            let mut l = lock(&l);
            match e {
                Event::ViewInstalled { view, .. } => l.views.push(view),
                Event::Delivered { payload, .. } => {
                    l.delivered += 1;
                    if payload.len() <= 64 {
                        l.small.push(payload);
                    }
                }
                Event::Excluded { .. } => l.excluded += 1,
                _ => {}
            }
        }
    });
    log
}

/// Polls `cond` every 10 ms; fails the test with `what` and `state()` if it is not met in time.
async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool, state: impl Fn() -> String) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() >= limit {
            // The captured log is shared by every test of this binary: the tail shows what the
            // members logged around the failure (CHORUS_TEST_LOG=info for more).
            let logs = String::from_utf8_lossy(&lock(&LOGS)).into_owned();
            let tail: Vec<&str> = logs.lines().rev().take(200).collect();
            eprintln!("captured log, last {} lines:", tail.len());
            for l in tail.iter().rev() {
                eprintln!("  {l}");
            }
            panic!("timed out after {limit:?} waiting for {what}; state: {}", state());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Group {
    /// Node 1 bootstraps, nodes 2..=n join through it; returns once all have the full view.
    async fn start(n: u64) -> Group {
        capture_logs();
        let (m1, e1) = Member::start(config(1, &[])).await.unwrap();
        let seed = [(1, m1.listen_addr())];
        let mut g = Group { members: vec![m1], logs: vec![record(e1)] };
        for node in 2..=n {
            let (m, e) = Member::start(config(node, &seed)).await.unwrap();
            g.members.push(m);
            g.logs.push(record(e));
        }
        let size = g.members.len();
        g.wait("the full view", T, |g| g.all_views(|v| v.members.len() == size)).await;
        // Everyone in the same view.
        let first = g.view(0).id;
        g.wait("one view everywhere", T, |g| g.all_views(|v| v.id == first)).await;
        g
    }

    async fn wait(&self, what: &str, limit: Duration, cond: impl Fn(&Group) -> bool) {
        wait_until(what, limit, || cond(self), || self.describe()).await;
    }

    fn describe(&self) -> String {
        let mut s = String::new();
        for (i, l) in self.logs.iter().enumerate() {
            let l = lock(l);
            let last = l.views.last().map(|v| format!("{:?} {:?}", v.id, v.members));
            s += &format!(
                "\n  member {}: {} views, last {last:?}; {} delivered; {} exclusions",
                i + 1,
                l.views.len(),
                l.delivered,
                l.excluded
            );
        }
        s
    }

    /// Member `i`'s current view.
    fn view(&self, i: usize) -> View {
        lock(&self.logs[i]).views.last().cloned().expect("a view")
    }

    fn all_views(&self, f: impl Fn(&View) -> bool) -> bool {
        self.logs.iter().all(|l| lock(l).views.last().is_some_and(&f))
    }

    /// How many views each member has installed so far.
    fn view_counts(&self) -> Vec<usize> {
        self.logs.iter().map(|l| lock(l).views.len()).collect()
    }

    /// Fails if any member installed a view since `before` (from [`Group::view_counts`]) or was
    /// excluded.
    fn assert_no_view_change(&self, before: &[usize], after: &str) {
        assert_eq!(self.view_counts(), before, "a view change after {after}: {}", self.describe());
        for (i, l) in self.logs.iter().enumerate() {
            assert_eq!(lock(l).excluded, 0, "member {} was excluded after {after}", i + 1);
        }
    }

    fn delivered_small(&self, i: usize, payload: &[u8]) -> bool {
        lock(&self.logs[i]).small.iter().any(|p| p == payload)
    }

    fn assert_nothing_delivered_starting_with(&self, prefix: &[u8]) {
        for (i, l) in self.logs.iter().enumerate() {
            let l = lock(l);
            let bad: Vec<&Bytes> = l.small.iter().filter(|p| p.starts_with(prefix)).collect();
            assert!(bad.is_empty(), "member {} delivered bogus payloads {bad:?}", i + 1);
        }
    }

    /// The group goes on: a total-order multicast from every member is delivered by every member.
    async fn goes_on(&self, tag: &str) {
        let payloads: Vec<Bytes> =
            (0..self.members.len()).map(|i| Bytes::from(format!("after {tag} from {}", i + 1))).collect();
        for (m, p) in self.members.iter().zip(&payloads) {
            timeout(T, m.multicast(Order::Total, p.clone()))
                .await
                .unwrap_or_else(|_| panic!("multicast after {tag} blocked: {}", self.describe()))
                .unwrap();
        }
        let what = format!("the multicasts after {tag} delivered everywhere");
        self.wait(&what, T, |g| {
            (0..g.members.len()).all(|i| payloads.iter().all(|p| g.delivered_small(i, p)))
        })
        .await;
    }

    async fn status(&self, i: usize) -> MemberStatus {
        timeout(T, self.members[i].status()).await.expect("status in time").expect("member running")
    }

    /// Waits until member `i` has counted more than `before` bad frames; returns the count.
    async fn wait_bad_frames(&self, i: usize, before: u64, what: &str) -> u64 {
        let start = Instant::now();
        loop {
            let n = self.status(i).await.bad_frames;
            if n > before {
                return n;
            }
            assert!(start.elapsed() < CLOSE_WITHIN, "{what}: bad_frames of member {} stayed {n}", i + 1);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn shutdown(self) {
        for m in &self.members {
            m.shutdown().await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The attacker

fn identity(node: u64, secret: &str, listen: &str) -> Identity {
    Identity::new(CLUSTER.into(), Arc::from(secret.as_bytes()), node, listen.into())
}

async fn connect(addr: SocketAddr) -> TcpStream {
    timeout(T, TcpStream::connect(addr)).await.expect("connect in time").expect("connect")
}

/// A connection to `addr` that passed the handshake as `node` (with the right secret) and that
/// the member has had time to register. It claims to listen on a port where nothing listens,
/// so the member's dials back fail fast.
async fn authenticated(addr: SocketAddr, node: u64) -> TcpStream {
    let s = authenticated_now(addr, node).await;
    tokio::time::sleep(REGISTER).await;
    s
}

/// [`authenticated`], returning as soon as the handshake is done.
async fn authenticated_now(addr: SocketAddr, node: u64) -> TcpStream {
    let mut s = connect(addr).await;
    let peer = handshake::dial(&mut s, &identity(node, SECRET, "127.0.0.1:1"), None, T).await.unwrap();
    assert_eq!(peer.listen, addr.to_string());
    s
}

/// Reads (and discards) until the member closes the connection; fails if it does not within
/// `within`. Returns how long it took.
async fn expect_closed(s: &mut TcpStream, within: Duration, what: &str) -> Duration {
    let start = Instant::now();
    let mut buf = vec![0u8; 64 << 10];
    let closed = timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "{what}: the member kept the connection open for {within:?}");
    start.elapsed()
}

/// A raw frame header: payload length and checksum.
fn header(len: u32, crc: u32) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&len.to_be_bytes());
    h[4..].copy_from_slice(&crc.to_be_bytes());
    h
}

fn body(from: MemberId, msgs: Vec<Msg>) -> Bytes {
    wire::encode(&FrameBody { from, to: None, msgs })
}

fn bogus_data(view: ViewId, sender: u16, seq: u64, order: Order, tag: &str) -> Data {
    Data {
        view,
        sender,
        seq,
        order,
        lamport: seq,
        deps: Vec::new(),
        payload: Bytes::from(format!("bogus {tag}")),
    }
}

/// A line of this process's `/proc/self/status` in bytes: `VmRSS` (resident now) or `VmHWM`
/// (the peak resident so far).
fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status (Linux)");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line.split_whitespace().nth(1).and_then(|k| k.parse().ok()).expect("a size in kB");
    kib * 1024
}

/// Memory is per process and the tests of this binary run in parallel: a test that bounds its
/// memory runs in a process of its own. In the test harness's process this runs the test's
/// binary again for this one test, waits, and fails if it failed (returns false: skip the
/// body); in that child process it returns true (run the body).
fn in_own_process(test: &str) -> bool {
    const CHILD: &str = "CHORUS_BAD_INPUT_CHILD";
    if std::env::var(CHILD).as_deref() == Ok(test) {
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, test)
        .output()
        .expect("run the test binary again");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{test}, in its own process:\n{text}");
    assert!(out.status.success(), "{test} failed in its own process ({})", out.status);
    assert!(text.contains("1 passed"), "{test} did not run in its own process");
    false
}

// ---------------------------------------------------------------------------------------------
// 1. Garbage before the handshake

/// Bytes that are not a handshake, right after connecting: an HTTP request, binary noise, a
/// well-framed frame holding no handshake message, a frame cut short by the end of the stream.
/// The member closes each connection at once and logs why; the group goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_before_the_handshake_is_refused() {
    let g = Group::start(3).await;
    let views = g.view_counts();
    let target = g.members[0].listen_addr();

    let mut noise = vec![0u8; 4096];
    let mut x: u32 = 0x9E37_79B9;
    for b in &mut noise {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let mut framed_junk = BytesMut::new();
    frame::encode(&mut framed_junk, b"\xff\xfe this is no handshake message \x00\x01");
    let mut cut = BytesMut::new();
    cut.put_slice(&header(200, 0));
    cut.put_slice(&[7u8; 50]);
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("an HTTP request", b"GET / HTTP/1.1\r\nHost: chorus\r\n\r\n".to_vec(), false),
        ("4 KiB of binary noise", noise, false),
        ("a checksummed frame that is no handshake message", framed_junk.to_vec(), false),
        ("a frame cut short by the end of the stream", cut.to_vec(), true),
    ];
    for (what, bytes, then_eof) in cases {
        let mut s = connect(target).await;
        let local = s.local_addr().unwrap().to_string();
        let _ = s.write_all(&bytes).await;
        if then_eof {
            let _ = s.shutdown().await;
        }
        let took = expect_closed(&mut s, CLOSE_WITHIN, what).await;
        eprintln!("{what}: closed after {took:?}");
        wait_logged(&["connection refused at the handshake", &local]).await;
    }
    // Nothing got past the handshake, so nothing counts as a bad frame (those are counted
    // after it) and no peer was added.
    let st = g.status(0).await;
    assert_eq!(st.bad_frames, 0);
    assert_eq!(st.connected, vec![2, 3]);

    g.goes_on("garbage before the handshake").await;
    g.assert_no_view_change(&views, "garbage before the handshake");
    g.shutdown().await;
}

/// More silent connections than the member handshakes at once (64): the ones over the limit are
/// dropped at once, the others when the handshake times out (5 s); the members' own connections
/// are untouched meanwhile, so the group goes on during the flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_silent_connections_is_bounded_and_times_out() {
    let g = Group::start(3).await;
    let views = g.view_counts();
    let target = g.members[0].listen_addr();
    let start = Instant::now();
    let mut readers = Vec::new();
    for i in 0..150 {
        let mut s = connect(target).await;
        readers.push(tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let r = timeout(HANDSHAKE_TIMEOUT + CLOSE_WITHIN, s.read(&mut buf)).await;
            assert!(matches!(r, Ok(Ok(0) | Err(_))), "silent connection {i} not closed in time: {r:?}");
            start.elapsed()
        }));
    }
    // The group goes on while the handshake slots are taken.
    g.goes_on("a flood of silent connections").await;

    let mut closed_early = 0;
    let mut latest = Duration::ZERO;
    for r in readers {
        let t = r.await.unwrap();
        if t < Duration::from_secs(2) {
            closed_early += 1;
        }
        latest = latest.max(t);
    }
    eprintln!("{closed_early} of 150 silent connections closed within 2 s; the last after {latest:?}");
    assert!(
        closed_early >= 150 - 64,
        "only {closed_early} connections over the handshake limit closed at once"
    );
    assert!(latest >= HANDSHAKE_TIMEOUT - Duration::from_millis(500), "some silent connections should wait");
    wait_logged(&["connection refused at the handshake", "did not complete within"]).await;
    g.goes_on("the silent connections timed out").await;
    g.assert_no_view_change(&views, "a flood of silent connections");
    g.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 2. Bad frames after the handshake

/// After a correct handshake (as non-member node 92): a header announcing 1 GiB, a frame with a
/// wrong checksum, a frame cut short by the end of the stream, a checksummed frame that is no
/// protocol frame. Each closes the connection, counts in `bad_frames` and is logged; a malformed
/// address book is only dropped. The group goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_after_the_handshake_close_the_connection() {
    const ME: u64 = 92;
    if !in_own_process("bad_frames_after_the_handshake_close_the_connection") {
        return;
    }
    let g = Group::start(3).await;
    let views = g.view_counts();
    let target = g.members[1].listen_addr();
    let rss_before = proc_status("VmRSS:");

    let mut good = BytesMut::new();
    frame::encode(&mut good, &body(MemberId::new(ME, 0), Vec::new()));
    let mut bad_crc = good.clone();
    bad_crc[4] ^= 0x5a;
    let mut cut = BytesMut::new();
    cut.put_slice(&header(100, 0));
    cut.put_slice(&[1u8; 10]);
    let mut not_protocol = BytesMut::new();
    frame::encode(&mut not_protocol, b"\x00\x01 not a chorus frame");
    let mut bad_version = BytesMut::new();
    let mut raw = body(MemberId::new(ME, 0), Vec::new()).to_vec();
    raw[2] = 0xee;
    frame::encode(&mut bad_version, &raw);

    let cases: Vec<(&str, Vec<u8>, bool, &str)> = vec![
        ("a header announcing 1 GiB", header(1 << 30, 0).to_vec(), false, "over our limit"),
        ("a header announcing 4 GiB - 1", header(u32::MAX, 0).to_vec(), false, "over our limit"),
        ("a frame with a bad checksum", bad_crc.to_vec(), false, "checksum mismatch"),
        ("a frame cut short by the end of the stream", cut.to_vec(), true, "in the middle of a frame"),
        (
            "a checksummed frame that is not a protocol frame",
            not_protocol.to_vec(),
            false,
            "closing the connection",
        ),
        ("a protocol frame of an unknown version", bad_version.to_vec(), false, "closing the connection"),
    ];
    for (what, bytes, then_eof, log) in cases {
        let before = g.status(1).await.bad_frames;
        let mut s = authenticated(target, ME).await;
        // A good frame first: the connection works until the bad one.
        s.write_all(&good).await.unwrap();
        let _ = s.write_all(&bytes).await;
        if then_eof {
            let _ = s.shutdown().await;
        }
        let took = expect_closed(&mut s, CLOSE_WITHIN, what).await;
        let after = g.wait_bad_frames(1, before, what).await;
        eprintln!("{what}: closed after {took:?}; bad_frames {before} -> {after}");
        wait_logged(&["closing the connection", &format!("peer={ME}"), log]).await;
    }

    // A malformed address book is dropped with a warning; the connection stays up.
    let before = g.status(1).await.bad_frames;
    let mut s = authenticated(target, ME).await;
    frame::write_frame(&mut s, b"\xc4\xab\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff").await.unwrap();
    wait_logged(&["malformed address book ignored", &format!("peer={ME}")]).await;
    let st = g.status(1).await;
    assert_eq!(st.bad_frames, before, "a malformed address book is not a bad frame");
    assert!(st.connected.contains(&ME), "the connection survives a malformed address book: {st:?}");
    let mut buf = [0u8; 1];
    assert!(
        timeout(Duration::from_millis(100), async {
            loop {
                if matches!(s.read(&mut buf).await, Ok(0) | Err(_)) {
                    return;
                }
            }
        })
        .await
        .is_err(),
        "the connection was closed after a malformed address book"
    );
    drop(s);

    g.goes_on("bad frames").await;
    g.assert_no_view_change(&views, "bad frames");
    // Headers announcing gigabytes reserved nothing: the peak stayed near where it began.
    let peak = proc_status("VmHWM:");
    eprintln!("resident {} MiB before, peak {} MiB", rss_before >> 20, peak >> 20);
    assert!(peak < rss_before + (64 << 20), "the peak grew from {rss_before} to {peak} bytes");
    g.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Wrong secret

/// A dialer with the wrong secret, one of the wrong cluster, and one claiming the member's own
/// node id: each handshake fails, the member closes the connection and logs it, adds no peer,
/// and keeps its real connection to the node id the impostor claimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_refused() {
    const ME: u64 = 93;
    let g = Group::start(3).await;
    let views = g.view_counts();
    let target = g.members[0].listen_addr();

    for (what, id) in [
        ("wrong secret", identity(ME, "not the secret at all", "127.0.0.1:1")),
        ("wrong secret, claiming to be node 2", identity(2, "not the secret at all", "127.0.0.1:1")),
        ("wrong cluster", Identity { cluster: "other".into(), ..identity(ME, SECRET, "127.0.0.1:1") }),
        ("the member's own node id", identity(1, SECRET, "127.0.0.1:1")),
    ] {
        let mut s = connect(target).await;
        let local = s.local_addr().unwrap().to_string();
        let r = handshake::dial(&mut s, &id, None, T).await;
        match what {
            "wrong cluster" | "the member's own node id" => {
                assert!(matches!(r, Err(HandshakeError::Rejected { .. })), "{what}: {r:?}");
            }
            _ => assert!(
                matches!(r, Err(HandshakeError::BadSecret { peer_is: Side::Acceptor })),
                "{what}: {r:?}"
            ),
        }
        let took = expect_closed(&mut s, CLOSE_WITHIN, what).await;
        eprintln!("{what}: {r:?}; closed after {took:?}");
        wait_logged(&["connection refused at the handshake", &local]).await;
        let st = g.status(0).await;
        assert_eq!(st.connected, vec![2, 3], "{what}");
        assert_eq!(st.bad_frames, 0, "{what}");
    }

    // The right secret still works (so the above failed for the reason tested).
    let mut s = authenticated(target, ME).await;
    frame::write_frame(&mut s, &body(MemberId::new(ME, 0), Vec::new())).await.unwrap();
    drop(s);

    g.goes_on("wrong secrets").await;
    g.assert_no_view_change(&views, "wrong secrets");
    g.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 4. A non-member that speaks the protocol

/// Node 94, authenticated but in no view, sends every member well-formed protocol messages of
/// the current view: data claiming to be from rank 0, acknowledgements with junk vectors, a
/// leave, installs and accepts of bogus proposals, a prepare with a huge ballot, a NAK for
/// everything, a state chunk. No view changes, nothing bogus is delivered, the group goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_cannot_change_the_view_or_inject_messages() {
    const ME: u64 = 94;
    let g = Group::start(3).await;
    let views = g.view_counts();
    let view = g.view(0);
    let cur = view.id;
    let me = MemberId::new(ME, 0);
    let ballot = Ballot { round: u64::MAX, coord: me };
    let bogus_view = View { id: cur.next(), members: vec![me] };
    let takeover = View { id: cur.next(), members: vec![view.members[0], me] };
    let proposal = |next: View| Proposal {
        prev: cur,
        next,
        cut: vec![u64::MAX; 3],
        loading: Vec::new(),
        recovered: Vec::new(),
        group: chorus_core::GroupId(0),
    };
    let msgs = vec![
        Msg::Data(bogus_data(cur, 0, 1, Order::Fifo, "fifo rank 0 seq 1")),
        Msg::Data(bogus_data(cur, 0, 2, Order::Total, "total rank 0 seq 2")),
        Msg::Data(bogus_data(cur, 1, 1, Order::Causal, "causal rank 1")),
        Msg::Data(bogus_data(cur, 2, 1_000_000, Order::Safe, "safe rank 2 far ahead")),
        Msg::Ack(Ack {
            view: cur,
            received: vec![u64::MAX; 1000],
            sent: u64::MAX,
            suspects: vec![0, 1, 2, 3, u16::MAX],
            wedged: true,
            // The highest clock a frame may claim (beyond it the frame is malformed: see
            // `a_clock_near_overflow_is_refused_at_decode`).
            clock: chorus_core::wire::MAX_CLOCK,
            holds_state: false,
            durable: 0,
        }),
        Msg::Ack(Ack {
            view: cur,
            received: Vec::new(),
            sent: 0,
            suspects: vec![0],
            wedged: false,
            clock: 0,
            holds_state: true,
            durable: 0,
        }),
        Msg::Nak { view: cur, sender: 0, from: 0, to: u64::MAX },
        Msg::Leave { view: cur },
        Msg::Prepare { view: cur, ballot, coord_received: vec![u64::MAX; 3] },
        Msg::Accept {
            view: cur,
            ballot,
            proposal: proposal(takeover.clone()),
            msgs: vec![bogus_data(cur, 0, 1, Order::Fifo, "in accept")],
        },
        Msg::Accepted { view: cur, ballot },
        Msg::Preempted { view: cur, ballot },
        Msg::Install {
            proposal: proposal(bogus_view),
            msgs: vec![bogus_data(cur, 0, 1, Order::Fifo, "cut")],
        },
        Msg::Install { proposal: proposal(takeover), msgs: Vec::new() },
        Msg::StateChunk { view: cur, offset: 0, data: Bytes::from_static(b"bogus state"), last: true },
        Msg::StateAck { view: cur, offset: u64::MAX, done: true },
    ];

    let mut conns = Vec::new();
    for m in &g.members {
        let mut s = authenticated(m.listen_addr(), ME).await;
        // One message per frame, then all of them in one frame.
        for msg in &msgs {
            frame::write_frame(&mut s, &body(me, vec![msg.clone()])).await.unwrap();
        }
        frame::write_frame(&mut s, &body(me, msgs.clone())).await.unwrap();
        conns.push(s);
    }
    tokio::time::sleep(SETTLE).await;
    for i in 0..g.members.len() {
        let st = g.status(i).await;
        assert_eq!(st.bad_frames, 0, "well-formed frames of a non-member are not bad frames");
        assert!(st.connected.contains(&ME), "member {} dropped the non-member's connection", i + 1);
    }
    g.assert_no_view_change(&views, "a non-member's protocol messages");
    g.goes_on("a non-member's protocol messages").await;
    g.assert_no_view_change(&views, "a non-member's protocol messages");
    g.assert_nothing_delivered_starting_with(b"bogus");
    drop(conns);
    g.shutdown().await;
}

/// Node 95, authenticated, sends frames that claim to come from a real member (the frame's
/// `from` is member 2 while the connection is node 95's): a leave in member 2's name and data in
/// its name. The member counts a bad frame, logs it, closes the connection; nothing happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_impersonating_a_member_is_rejected() {
    const ME: u64 = 95;
    let g = Group::start(3).await;
    let views = g.view_counts();
    let view = g.view(0);
    let victim = view.members[1];
    for (what, msgs) in [
        ("a leave in member 2's name", vec![Msg::Leave { view: view.id }]),
        ("data in member 2's name", vec![Msg::Data(bogus_data(view.id, 1, 1, Order::Fifo, "impersonated"))]),
    ] {
        for i in [0, 2] {
            let before = g.status(i).await.bad_frames;
            let mut s = authenticated(g.members[i].listen_addr(), ME).await;
            frame::write_frame(&mut s, &body(victim, msgs.clone())).await.unwrap();
            let took = expect_closed(&mut s, CLOSE_WITHIN, what).await;
            let after = g.wait_bad_frames(i, before, what).await;
            eprintln!("{what} to member {}: closed after {took:?}; bad_frames {before} -> {after}", i + 1);
            wait_logged(&["closing the connection", &format!("peer={ME}")]).await;
        }
    }
    tokio::time::sleep(SETTLE).await;
    g.assert_no_view_change(&views, "impersonation");
    g.goes_on("impersonation").await;
    g.assert_nothing_delivered_starting_with(b"bogus");
    g.shutdown().await;
}

/// Node 96, authenticated but in no view, tells member 2 "you are not a member of my view
/// 1000". Only a member (or a newer view's member) can know that; from a non-member it must be
/// ignored (it once made member 2 drop out and re-join: one message from a non-member changed
/// the view). The core now takes it only from a life of a node of the view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_cannot_exclude_a_member_with_not_member() {
    const ME: u64 = 96;
    let g = Group::start(3).await;
    let views = g.view_counts();
    let mut s = authenticated(g.members[1].listen_addr(), ME).await;
    let msg = Msg::NotMember { view: ViewId(1000), newest: chorus_core::Incarnation(1 << 40) };
    frame::write_frame(&mut s, &body(MemberId::new(ME, 0), vec![msg])).await.unwrap();
    tokio::time::sleep(SETTLE).await;
    g.assert_no_view_change(&views, "a NotMember from a non-member");
    g.goes_on("a NotMember from a non-member").await;
    g.shutdown().await;
}

/// Node 97, authenticated but in no view, asks member 2 for the install of the view after view
/// 1000. From a non-member that proves nothing and must be ignored (it once made member 2 think
/// it was left behind and re-join).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_cannot_exclude_a_member_with_install_req() {
    const ME: u64 = 97;
    let g = Group::start(3).await;
    let views = g.view_counts();
    let mut s = authenticated(g.members[1].listen_addr(), ME).await;
    let msg = Msg::InstallReq { have: ViewId(1000) };
    frame::write_frame(&mut s, &body(MemberId::new(ME, 0), vec![msg])).await.unwrap();
    tokio::time::sleep(SETTLE).await;
    g.assert_no_view_change(&views, "an InstallReq from a non-member");
    g.goes_on("an InstallReq from a non-member").await;
    g.shutdown().await;
}

/// Node 98, authenticated but in no view, asks the coordinator to let in a newer incarnation of
/// member 2: a join in another node's name, which only that node (or a member forwarding its
/// request) may send (the coordinator once admitted it, and the live member 2 was replaced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_cannot_join_in_a_members_name() {
    const ME: u64 = 98;
    let g = Group::start(3).await;
    let views = g.view_counts();
    let victim = g.view(0).members[1];
    let newer = MemberId { node: victim.node, inc: chorus_core::Incarnation(victim.inc.0 + 1) };
    let mut s = authenticated(g.members[0].listen_addr(), ME).await;
    frame::write_frame(
        &mut s,
        &body(MemberId::new(ME, 0), vec![Msg::Join { joiner: newer, group: None, founding: false }]),
    )
    .await
    .unwrap();
    tokio::time::sleep(SETTLE).await;
    g.assert_no_view_change(&views, "a join in member 2's name");
    g.goes_on("a join in member 2's name").await;
    g.shutdown().await;
}

/// Node 88, authenticated but in no view, asks the coordinator to let in node 77, which does not
/// exist: a join on behalf of another node that is not a member's forward, to be ignored (the
/// ghost was once let in, then suspected and removed: two view changes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_cannot_join_another_node() {
    const ME: u64 = 88;
    let g = Group::start(3).await;
    let views = g.view_counts();
    let mut s = authenticated(g.members[0].listen_addr(), ME).await;
    let ghost = MemberId::new(77, 1);
    frame::write_frame(
        &mut s,
        &body(MemberId::new(ME, 0), vec![Msg::Join { joiner: ghost, group: None, founding: false }]),
    )
    .await
    .unwrap();
    tokio::time::sleep(SETTLE).await;
    g.assert_no_view_change(&views, "a join for node 77 sent by node 88");
    g.goes_on("a join for another node").await;
    g.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 5. A peer that stops reading

/// Accepts connections as node `node` and completes the handshake, then holds them open without
/// ever reading: a peer that stopped reading (a paused process; its kernel still accepts). Returns
/// the address and the connections (to write on, or to hold).
async fn listen_and_never_read(
    node: u64,
) -> (SocketAddr, Arc<tokio::sync::Mutex<Vec<TcpStream>>>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let id = identity(node, SECRET, &addr.to_string());
    let held = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let h = held.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let (id, held) = (id.clone(), h.clone());
            tokio::spawn(async move {
                if handshake::accept(&mut s, &id, T).await.is_ok() {
                    held.lock().await.push(s);
                }
            });
        }
    });
    (addr, held, task)
}

async fn lock_held(held: &tokio::sync::Mutex<Vec<TcpStream>>) -> tokio::sync::MutexGuard<'_, Vec<TcpStream>> {
    timeout(T, held.lock()).await.expect("lock")
}

/// Node 99 joins a group of 3 (a correct handshake, then `Join`), then never reads a byte nor
/// sends one more, from its own connection or from those the members open to it, while the
/// members multicast 20,000 messages of 1 KiB. Node 99 is suspected and removed; the real
/// members deliver everything; memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_removed_and_the_group_goes_on() {
    const ME: u64 = 99;
    const TOTAL: usize = 20_000;
    if !in_own_process("a_peer_that_stops_reading_is_removed_and_the_group_goes_on") {
        return;
    }
    let g = Group::start(3).await;
    let real: Vec<MemberId> = g.view(0).members.clone();
    let base: Vec<usize> = g.logs.iter().map(|l| lock(l).delivered).collect();
    let rss_before = proc_status("VmRSS:");

    let (addr, _held, listener) = listen_and_never_read(ME).await;
    let mut s = connect(g.members[0].listen_addr()).await;
    handshake::dial(&mut s, &identity(ME, SECRET, &addr.to_string()), Some(1), T).await.unwrap();
    tokio::time::sleep(REGISTER).await;
    let joiner = MemberId::new(ME, 1);
    frame::write_frame(&mut s, &body(joiner, vec![Msg::Join { joiner, group: None, founding: false }]))
        .await
        .unwrap();
    let start = Instant::now();

    // The flood starts at once, so node 99 is let in while it runs.
    let mut senders = Vec::new();
    for (i, m) in g.members.iter().enumerate() {
        let m = m.clone();
        senders.push(tokio::spawn(async move {
            for k in 0..TOTAL / 3 + usize::from(i < TOTAL % 3) {
                let mut p = vec![b'x'; 1024];
                p[..16].copy_from_slice(&(((i as u64) << 32) | k as u64).to_be_bytes().repeat(2));
                timeout(T, m.multicast(Order::Fifo, Bytes::from(p)))
                    .await
                    .expect("multicast in time")
                    .unwrap();
            }
        }));
    }

    g.wait("a view with node 99", T, |g| {
        g.logs.iter().all(|l| lock(l).views.iter().any(|v| v.members.contains(&joiner)))
    })
    .await;
    let admitted = start.elapsed();
    g.wait("a view without node 99", Duration::from_secs(20), |g| {
        g.all_views(|v| v.members == real)
            && g.logs.iter().all(|l| lock(l).views.iter().any(|v| v.members.contains(&joiner)))
    })
    .await;
    let removed = start.elapsed();
    for s in senders {
        timeout(Duration::from_secs(30), s).await.expect("the flood is sent in time").unwrap();
    }
    g.wait("every multicast delivered by every real member", Duration::from_secs(30), |g| {
        g.logs.iter().zip(&base).all(|(l, b)| lock(l).delivered >= b + TOTAL)
    })
    .await;
    let delivered = start.elapsed();
    let mut dropped = Vec::new();
    for i in 0..3 {
        dropped.push(g.status(i).await.dropped_frames);
    }
    eprintln!(
        "node 99 admitted after {admitted:?}, removed after {removed:?}; {TOTAL} multicasts delivered \
         everywhere after {delivered:?}; dropped_frames {dropped:?}"
    );
    for (i, l) in g.logs.iter().enumerate() {
        let l = lock(l);
        assert_eq!(l.delivered, base[i] + TOTAL, "member {} delivered a wrong number", i + 1);
        assert_eq!(l.excluded, 0, "member {} was excluded", i + 1);
        assert_eq!(l.views.last().map(|v| &v.members), Some(&real));
    }
    // The peak of this process (it runs this test alone): retransmissions to node 99 queued
    // while it was in the view (at most 32 MiB per member), windows, batches, for three members.
    let peak = proc_status("VmHWM:");
    eprintln!("resident {} MiB before, peak {} MiB", rss_before >> 20, peak >> 20);
    assert!(peak < rss_before + (512 << 20), "the peak grew from {rss_before} to {peak} bytes");
    g.goes_on("a peer that stopped reading").await;
    drop(s);
    listener.abort();
    g.shutdown().await;
}

/// Node 89 joins (a correct handshake, then `Join`) and never reads, but keeps sending heartbeats
/// (acknowledgements that say it received nothing) to every member, from its own connection and
/// on those the members open to it, while the members multicast 20,000 messages. Its
/// acknowledgements never advance, so nothing the members send becomes stable and every
/// sender's window fills (3 x 4096 messages delivered, then nothing). Each member suspects it
/// once its acknowledgements have stood still for `lag_timeout` (3 s here) and the group
/// removes it and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_but_heartbeats_does_not_stop_the_group() {
    const ME: u64 = 89;
    const TOTAL: usize = 20_000;
    let g = Group::start(3).await;
    let real: Vec<MemberId> = g.view(0).members.clone();
    let base: Vec<usize> = g.logs.iter().map(|l| lock(l).delivered).collect();

    let (addr, held, listener) = listen_and_never_read(ME).await;
    let mut s = connect(g.members[0].listen_addr()).await;
    handshake::dial(&mut s, &identity(ME, SECRET, &addr.to_string()), Some(1), T).await.unwrap();
    tokio::time::sleep(REGISTER).await;
    let joiner = MemberId::new(ME, 1);
    frame::write_frame(&mut s, &body(joiner, vec![Msg::Join { joiner, group: None, founding: false }]))
        .await
        .unwrap();
    lock_held(&held).await.push(s);
    g.wait("a view with node 89", T, |g| g.all_views(|v| v.members.contains(&joiner))).await;
    let view = g.view(0);
    let n = view.members.len();
    let heartbeat = {
        let held = held.clone();
        tokio::spawn(async move {
            let ack = Ack {
                view: view.id,
                received: vec![0; n],
                sent: 0,
                suspects: Vec::new(),
                wedged: false,
                clock: 0,
                holds_state: true,
                durable: 0,
            };
            let frame = body(joiner, vec![Msg::Ack(ack)]);
            loop {
                for s in lock_held(&held).await.iter_mut() {
                    let _ = timeout(Duration::from_millis(50), frame::write_frame(s, &frame)).await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let start = Instant::now();
    let mut senders = Vec::new();
    for (i, m) in g.members.iter().enumerate() {
        let m = m.clone();
        senders.push(tokio::spawn(async move {
            for k in 0..TOTAL / 3 + usize::from(i < TOTAL % 3) {
                let mut p = vec![b'y'; 1024];
                p[..8].copy_from_slice(&k.to_be_bytes());
                m.multicast(Order::Fifo, Bytes::from(p)).await.unwrap();
            }
        }));
    }
    wait_until(
        "every multicast delivered by every real member",
        Duration::from_secs(30),
        || g.logs.iter().zip(&base).all(|(l, b)| lock(l).delivered >= b + TOTAL),
        || {
            let mut d = g.describe();
            d += &format!("\n  node 89 still in the view: {}", g.view(0).members.contains(&joiner));
            d
        },
    )
    .await;
    eprintln!("all delivered after {:?}; final view {:?}", start.elapsed(), g.view(0));
    for s in senders {
        timeout(T, s).await.expect("the flood is sent").unwrap();
    }
    assert!(g.all_views(|v| v.members == real), "node 89 is still in the view: {}", g.describe());
    // Removed for its standing acknowledgements, not its silence (the simulator cannot make
    // this case: crates/chorus-sim/src/marks.rs, `OPTIONAL`).
    assert!(
        logged(&["suspects n89.1", "acknowledgements stood still"]),
        "no member logged suspecting node 89 for its standing acknowledgements"
    );
    heartbeat.abort();
    listener.abort();
    g.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 6. The first frames of a connection

/// Frames that arrive right after the handshake must be handled like any other: an impersonating
/// frame (closes the connection) or a header announcing 1 GiB (closes it too). Each try uses a
/// fresh node id and sends at once, without the pause the other tests take. Today the reader
/// task of a new connection starts before the driver hears of the connection (`NetEvent::Up`),
/// so its first frame can be dropped as "from a connection already replaced", or its `Bad` and
/// `Down` come first and the driver then registers a connection whose reader is gone: never
/// closed (about 1 in 4 tries here; the other tests wait `REGISTER` after the handshake).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_frames_after_the_handshake_are_not_lost() {
    let g = Group::start(2).await;
    let target = g.members[0].listen_addr();
    let victim = g.view(0).members[1];
    let mut kept_open = Vec::new();
    for k in 0..40u64 {
        let node = 1000 + k;
        let mut s = authenticated_now(target, node).await;
        let what = if k % 2 == 0 {
            frame::write_frame(&mut s, &body(victim, Vec::new())).await.unwrap();
            "impersonating frame"
        } else {
            s.write_all(&header(1 << 30, 0)).await.unwrap();
            "1 GiB header"
        };
        let mut buf = vec![0u8; 64 << 10];
        let closed = timeout(Duration::from_secs(1), async {
            loop {
                if matches!(s.read(&mut buf).await, Ok(0) | Err(_)) {
                    return;
                }
            }
        })
        .await;
        if closed.is_err() {
            let st = g.status(0).await;
            kept_open.push(format!(
                "node {node} ({what}): still open after 1 s, registered: {}",
                st.connected.contains(&node)
            ));
        }
    }
    assert!(kept_open.is_empty(), "{} of 40 connections kept open: {kept_open:#?}", kept_open.len());
    g.goes_on("first frames").await;
    g.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 7. Frames read faster than the member handles them

/// Node 97, authenticated, sends 200 checksummed frames of 4 MiB while member 1 is stalled (its
/// application takes no events, so once its event queue is full of its own deliveries its
/// driver waits, and reads nothing from the inbound queue). The member's
/// reader for that connection takes frames only within its budget (2 x max_frame, 8 MiB)
/// and then stops reading, so TCP pushes back on node 97: the member's peak memory stays far
/// below the 800 MiB sent. (Before the budget, the shared inbound queue took up to 1,024
/// frames from one connection.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_read_while_the_member_is_stalled_are_bounded_per_connection() {
    const ME: u64 = 97;
    if !in_own_process("frames_read_while_the_member_is_stalled_are_bounded_per_connection") {
        return;
    }
    capture_logs();
    // A group of one, whose events are never taken: its own multicasts, delivered to itself,
    // fill its event queue (4,096) and then its driver waits. No other member sends to it.
    let (m1, _e1) = Member::start(config(1, &[])).await.unwrap();
    // Connected and registered while member 1 still runs.
    let mut s = authenticated(m1.listen_addr(), ME).await;
    let rss_before = proc_status("VmRSS:");
    let sent = Arc::new(AtomicUsize::new(0));
    let flood = {
        let (m1, sent) = (m1.clone(), sent.clone());
        tokio::spawn(async move {
            for k in 0..6000u32 {
                if m1.multicast(Order::Fifo, Bytes::from(k.to_be_bytes().to_vec())).await.is_err() {
                    return;
                }
                sent.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    wait_until(
        "member 1 sent as much as its event queue holds",
        T,
        || sent.load(Ordering::SeqCst) >= 4000,
        || format!("{} sent", sent.load(Ordering::SeqCst)),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let frame = vec![0x5au8; 4 << 20];
    let mut written = 0;
    for _ in 0..200 {
        match timeout(Duration::from_secs(2), frame::write_frame(&mut s, &frame)).await {
            Ok(Ok(())) => written += 1,
            Ok(Err(e)) => {
                panic!("the member closed the connection after {written} frames ({e}): it was not stalled")
            }
            Err(_) => break, // The member stopped reading: TCP pushes back.
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak = proc_status("VmHWM:");
    eprintln!(
        "{written} frames of 4 MiB written before the member pushed back; resident {} MiB before, peak {} MiB",
        rss_before >> 20,
        peak >> 20
    );
    assert!(written < 200, "the member read all 800 MiB while stalled");
    assert!(peak < rss_before + (320 << 20), "the peak grew from {rss_before} to {peak} bytes");
    flood.abort();
    drop(s);
    m1.shutdown().await;
}
