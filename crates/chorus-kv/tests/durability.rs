//! Durability and recovery, tested as a user would: stores of real `chorus-kv` processes on
//! loopback with data directories and unchanged configs (node 1 configured to found the store,
//! every time), redis-py clients (tests/kv/workload.py) or plain writes, and crashes that a
//! group without stable storage cannot survive:
//!
//! - the whole store SIGKILLed at once, at random moments, several times, under load
//!   (`appendfsync always`): every acknowledged write survives, histories linearizable;
//! - the trap: two crashes 1.5 s apart in a store of three, restarted before the first
//!   one re-joined: the store comes back by itself with every acknowledged write;
//! - rolling restarts in every order: one group;
//! - crash storms on 3 and 5 nodes, each node killed before the previous one re-joined: back
//!   with every acknowledged write;
//! - damaged files (a torn last record, a flipped bit, a missing snapshot) and a full disk:
//!   recovery, or a clear error naming the file; never wrong data.
//!
//! The workloads need python3 with redis-py (`.ci/run` installs it); without it those tests
//! fail unless `CHORUS_SKIP_REDIS=1` says to skip (they print that they did not run).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use chorus_kv::resp_client::{Client, Value};
use cluster::{info, judge, python_ready, wait_converged, workload, Store};

/// A small deterministic generator for the fault schedules (seed printed by each test).
struct Rng(u64);

impl Rng {
    fn from_env(test: &str) -> Rng {
        let seed =
            std::env::var("CHORUS_DURABILITY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
            });
        eprintln!("{test}: seed {seed} (CHORUS_DURABILITY_SEED={seed} replays the schedule)");
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

fn sleep_until(t0: Instant, at: Duration) {
    std::thread::sleep(at.saturating_sub(t0.elapsed()));
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// `SET key value` through `port`; true if acknowledged with OK.
fn set(port: u16, key: &str, value: &str) -> bool {
    rt().block_on(async {
        let Ok(Ok(mut c)) =
            tokio::time::timeout(Duration::from_secs(2), Client::connect(("127.0.0.1", port))).await
        else {
            return false;
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(5), c.cmd(&["SET", key, value])).await,
            Ok(Ok(Value::Simple(s))) if s == "OK"
        )
    })
}

/// `GET key` through `port`.
fn get(port: u16, key: &str) -> Option<Value> {
    rt().block_on(async {
        let mut c = tokio::time::timeout(Duration::from_secs(2), Client::connect(("127.0.0.1", port)))
            .await
            .ok()?
            .ok()?;
        tokio::time::timeout(Duration::from_secs(5), c.cmd(&["GET", key])).await.ok()?.ok()
    })
}

/// Writes `n` keys `prefix:i` through rotating nodes until each is acknowledged; returns them.
fn write_acked(s: &Store, prefix: &str, n: usize) -> BTreeMap<String, String> {
    let mut acked = BTreeMap::new();
    let start = Instant::now();
    for i in 0..n {
        let (k, v) = (format!("{prefix}:{i}"), format!("v{i}-{}", start.elapsed().as_nanos()));
        let mut tries = 0;
        while !set(s.port((i as u16 + tries) % s.n), &k, &v) {
            tries += 1;
            assert!(start.elapsed() < Duration::from_secs(60), "cannot write {k}");
            std::thread::sleep(Duration::from_millis(100));
        }
        acked.insert(k, v);
    }
    acked
}

/// Every acknowledged key reads back its value through every node.
fn assert_all_there(s: &Store, acked: &BTreeMap<String, String>) {
    for port in s.ports() {
        for (k, v) in acked {
            let got = get(port, k);
            assert_eq!(
                got,
                Some(Value::Bulk(v.clone().into_bytes())),
                "{k} through port {port} (logs in {})",
                s.dir.display()
            );
        }
    }
}

#[cfg_attr(redis_tools_missing, ignore = "CHORUS_SKIP_REDIS=1 and a Redis tool is missing (see build.rs)")]
#[test]
fn whole_store_crashes_under_load_lose_no_acknowledged_write() {
    python_ready();
    let mut rng = Rng::from_env("whole_store_crashes");
    let mut s = Store::start_with("durable-whole", 3, Vec::new(), Some("always"));
    wait_converged(&s, Duration::from_secs(30), false);
    let history = s.dir.join("history.jsonl");
    let mut w = workload(&s, 30, &history);
    let t0 = Instant::now();
    for round in 0..3u64 {
        let at = Duration::from_millis(4_000 + round * 8_000 + rng.below(3_000));
        sleep_until(t0, at);
        eprintln!("nemesis: SIGKILL every node ({:.1} s)", t0.elapsed().as_secs_f64());
        for i in 0..s.n {
            s.kill(i);
        }
        std::thread::sleep(Duration::from_millis(300 + rng.below(1_200)));
        let mut order: Vec<u16> = (0..s.n).collect();
        rng.shuffle(&mut order);
        eprintln!(
            "nemesis: restart in the order {:?}, unchanged configs",
            order.iter().map(|i| i + 1).collect::<Vec<_>>()
        );
        for i in order {
            s.start(i, false);
            std::thread::sleep(Duration::from_millis(rng.below(500)));
        }
    }
    assert!(w.wait().unwrap().success(), "the workload failed (history in {})", history.display());
    let infos = wait_converged(&s, Duration::from_secs(30), true);
    eprintln!("converged: view {}, applied {}", infos[0]["view_id"], infos[0]["applied_index"]);
    judge(&history, 200);
}

/// The trap, with a workload running: node 3 is SIGKILLed (restarted 4 s later); 1.5 s
/// after the first crash node 2 is SIGKILLed and restarted within 1 s. Before recovery the
/// store refused everything for good; now it comes back by itself.
#[cfg_attr(redis_tools_missing, ignore = "CHORUS_SKIP_REDIS=1 and a Redis tool is missing (see build.rs)")]
#[test]
fn two_quick_crashes_recover_without_an_operator() {
    python_ready();
    let mut s = Store::start_with("durable-two-crashes", 3, Vec::new(), Some("always"));
    wait_converged(&s, Duration::from_secs(30), false);
    let history = s.dir.join("history.jsonl");
    let mut w = workload(&s, 20, &history);
    let t0 = Instant::now();
    sleep_until(t0, Duration::from_secs(3));
    eprintln!("nemesis: SIGKILL node 3");
    s.kill(2);
    sleep_until(t0, Duration::from_millis(4_500));
    eprintln!("nemesis: SIGKILL node 2");
    s.kill(1);
    sleep_until(t0, Duration::from_millis(5_300));
    eprintln!("nemesis: restart node 2");
    s.start(1, false);
    sleep_until(t0, Duration::from_secs(7));
    eprintln!("nemesis: restart node 3");
    s.start(2, false);
    assert!(w.wait().unwrap().success(), "the workload failed (history in {})", history.display());
    let infos = wait_converged(&s, Duration::from_secs(30), true);
    eprintln!("converged: view {}, applied {}", infos[0]["view_id"], infos[0]["applied_index"]);
    judge(&history, 200);
}

/// Every node restarted in turn with its unchanged config (node 1's says to found the store),
/// in every order: one group, all data there.
#[test]
fn rolling_restarts_in_every_order_keep_one_group() {
    let mut s = Store::start_with("durable-rolling", 3, Vec::new(), Some("always"));
    let first = wait_converged(&s, Duration::from_secs(30), false);
    let acked = write_acked(&s, "roll", 20);
    let orders = [[0u16, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
    for order in orders {
        for i in order {
            s.kill(i);
            s.start(i, false);
            wait_converged(&s, Duration::from_secs(30), false);
        }
        // One group: every node in one view of all three (wait_converged), the state equal.
        let infos = wait_converged(&s, Duration::from_secs(30), true);
        eprintln!("order {:?}: view {}", order.map(|i| i + 1), infos[0]["view_id"]);
    }
    let last = wait_converged(&s, Duration::from_secs(30), true);
    assert!(last[0]["view_id"].parse::<u64>().unwrap() > first[0]["view_id"].parse::<u64>().unwrap());
    assert_all_there(&s, &acked);
}

/// Every order of `0..n`.
fn permutations(n: u16) -> Vec<Vec<u16>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for at in 0..=p.len() {
            let mut q = p.clone();
            q.insert(at, n - 1);
            out.push(q);
        }
    }
    out
}

/// Storms: every node killed and restarted one after another, each before the previous one
/// re-joined; the store is back, with every acknowledged write, once its processes run. Three
/// nodes in all 6 orders; five nodes in 2 random orders (`CHORUS_STORM_ORDERS5=all` runs all
/// 120, about 15 minutes: outside CI).
#[test]
fn crash_storms_on_three_and_five_nodes() {
    let mut rng = Rng::from_env("crash_storms");
    let all5 = std::env::var("CHORUS_STORM_ORDERS5").as_deref() == Ok("all");
    for (n, orders) in [(3u16, 6usize), (5, if all5 { 120 } else { 2 })] {
        let mut s = Store::start_with(&format!("durable-storm{n}"), n, Vec::new(), Some("always"));
        wait_converged(&s, Duration::from_secs(40), false);
        let mut acked = BTreeMap::new();
        let mut all = permutations(n);
        if orders < all.len() {
            rng.shuffle(&mut all);
            all.truncate(orders);
        }
        for (k, order) in all.into_iter().enumerate() {
            acked.extend(write_acked(&s, &format!("storm{n}-{k}"), 10));
            eprintln!("{n} nodes, storm {k}: order {:?}", order.iter().map(|i| i + 1).collect::<Vec<_>>());
            for i in order {
                s.kill(i);
                std::thread::sleep(Duration::from_millis(100 + rng.below(400)));
                s.start(i, false);
                // Before it re-joined: a view change takes about a second here.
                std::thread::sleep(Duration::from_millis(50 + rng.below(250)));
            }
            wait_converged(&s, Duration::from_secs(40), true);
        }
        assert_all_there(&s, &acked);
    }
}

/// The newest `wal-*.log` of a node's data directory.
fn last_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("wal-")))
        .collect();
    segs.sort();
    segs.pop().expect("a log segment")
}

/// Damage between a kill and the restart: a torn last record recovers to the last whole
/// record; a flipped bit stops the node with an error naming the file and offset; a missing
/// snapshot behind a truncated log stops it naming what is missing. Never wrong data: the
/// group's state is equal everywhere afterwards.
#[test]
fn damaged_files_recover_or_stop_with_a_clear_error() {
    // Small log files, so that a snapshot leaves the log starting after position 1.
    let mut s =
        Store::start_configured("durable-damage", 3, Vec::new(), Some("always"), "wal_segment_kb = 8\n");
    wait_converged(&s, Duration::from_secs(30), false);
    let mut acked = write_acked(&s, "dmg", 30);

    // 1. A torn last record: cut a few bytes off the end of node 3's log.
    s.kill(2);
    let seg = last_segment(&s.data_dir(2));
    // The log keeps zeros reserved past its last record: cut inside the record itself.
    let bytes = std::fs::read(&seg).unwrap();
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i as u64 + 1);
    std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(end - 5).unwrap();
    s.start(2, false);
    wait_converged(&s, Duration::from_secs(30), true);
    let log = std::fs::read_to_string(s.dir.join("node3.log")).unwrap();
    assert!(log.contains("torn"), "the torn record was not reported: {log}");

    // 2. A flipped bit in the middle of a record: a clear error, and the node does not run.
    acked.extend(write_acked(&s, "dmg2", 10));
    s.kill(2);
    let seg = last_segment(&s.data_dir(2));
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    s.start(2, false);
    let (status, log) = s.wait_exit(2, Duration::from_secs(20)).expect("a node with a damaged log must stop");
    assert!(!status.success());
    let name = seg.file_name().unwrap().to_string_lossy().to_string();
    assert!(log.contains("damaged") && log.contains(&name), "the error does not name the damage: {log}");
    // The operator's way out: the damaged directory moved aside, the node joins afresh.
    std::fs::rename(s.data_dir(2), s.dir.join("data3.damaged")).unwrap();
    s.start(2, false);
    wait_converged(&s, Duration::from_secs(30), true);

    // 3. A snapshot removed while the log behind it is gone: the log no longer starts at 1.
    let port = s.port(2);
    for round in 0..3 {
        acked.extend(write_acked(&s, &format!("dmg3-{round}"), 200));
        let saved = rt().block_on(async {
            let mut c = Client::connect(("127.0.0.1", port)).await.unwrap();
            c.cmd(&["SAVE"]).await.unwrap()
        });
        assert_eq!(saved, Value::Simple("OK".into()));
    }
    s.kill(2);
    let dir = s.data_dir(2);
    let snaps: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "snap"))
        .collect();
    assert_eq!(snaps.len(), 1, "one snapshot in {}", dir.display());
    let first_seg = {
        let mut segs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
            .filter(|n| n.starts_with("wal-"))
            .collect();
        segs.sort();
        segs[0].clone()
    };
    std::fs::remove_file(&snaps[0]).unwrap();
    s.start(2, false);
    assert_ne!(first_seg, format!("wal-{:020}.log", 1), "the log behind the snapshot was not dropped");
    let (status, log) =
        s.wait_exit(2, Duration::from_secs(20)).expect("a node missing its snapshot must stop");
    assert!(!status.success());
    assert!(log.contains("missing"), "the error does not say what is missing: {log}");
    std::fs::rename(&dir, s.dir.join("data3.nosnap")).unwrap();
    s.start(2, false);
    wait_converged(&s, Duration::from_secs(30), true);
    assert_all_there(&s, &acked);
    assert!(info(s.port(0)).is_some());
}

/// A full disk (a small tmpfs as node 3's data directory): the node stops with a clear error,
/// the others go on; with room again it recovers. Needs root (mount); skipped otherwise, saying
/// so.
#[cfg_attr(not_root, ignore = "mounting a small tmpfs needs root")]
#[test]
fn a_full_disk_stops_the_node_with_a_clear_error() {
    let mut s = Store::start_with("durable-full", 3, Vec::new(), Some("always"));
    let dir = s.data_dir(2);
    std::fs::create_dir_all(&dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        panic!("cannot mount a tmpfs on {} as root", dir.display());
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(dir.clone());
    // The nodes were started before the mount: restart node 3 onto it.
    s.kill(2);
    s.start(2, false);
    wait_converged(&s, Duration::from_secs(30), false);
    // Fill node 3's disk: big values until it stops.
    let big = "x".repeat(64 << 10);
    let mut stopped = None;
    for i in 0..200 {
        set(s.port(0), &format!("full:{i}"), &big);
        if let Some(exit) = s.wait_exit(2, Duration::from_millis(10)) {
            stopped = Some(exit);
            break;
        }
    }
    let (status, log) = stopped.expect("node 3 must stop once its disk is full");
    assert!(!status.success());
    assert!(log.contains("disk is full"), "the error does not say the disk is full: {log}");
    // The others go on.
    assert!(set(s.port(0), "after-full", "yes"));
    // Room again: remount bigger; node 3 recovers and catches up.
    let grown =
        Command::new("mount").args(["-o", "remount,size=64m"]).arg(&dir).status().is_ok_and(|s| s.success());
    assert!(grown, "cannot grow the tmpfs");
    s.start(2, false);
    wait_converged(&s, Duration::from_secs(30), true);
    assert_eq!(get(s.port(2), "after-full"), Some(Value::Bulk(b"yes".to_vec())));
}

/// When a majority's disks are lost for good, the store cannot come back by itself (it cannot
/// know what they held); `chorus-kv force-recovery` makes one node bring it back alone from its
/// own files, and new nodes join it.
#[test]
fn force_recovery_brings_the_store_back_from_one_node() {
    let mut s = Store::start_with("durable-force", 3, Vec::new(), Some("always"));
    wait_converged(&s, Duration::from_secs(30), false);
    let acked = write_acked(&s, "force", 30);
    for i in 0..s.n {
        s.kill(i);
    }
    for i in 1..s.n {
        std::fs::remove_dir_all(s.data_dir(i)).unwrap();
    }
    // Alone, node 1 waits: a majority of its last view is needed to know no later view exists.
    s.start(0, false);
    std::thread::sleep(Duration::from_secs(4));
    let i = info(s.port(0));
    assert!(
        i.as_ref().is_some_and(|i| i.get("role").map(String::as_str) != Some("active")),
        "node 1 serves alone: {i:?}"
    );
    assert!(!set(s.port(0), "alone", "x"), "node 1 took a write alone");
    s.kill(0);
    let cfg = s.config_file(0);
    let dry = Command::new(env!("CARGO_BIN_EXE_chorus-kv"))
        .args(["force-recovery", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(dry.status.success() && String::from_utf8_lossy(&dry.stdout).contains("--yes"));
    let out = Command::new(env!("CARGO_BIN_EXE_chorus-kv"))
        .args(["force-recovery", "--yes", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "force-recovery failed: {}", String::from_utf8_lossy(&out.stderr));
    s.start(0, false);
    for i in 1..s.n {
        s.start(i, false);
    }
    wait_converged(&s, Duration::from_secs(40), true);
    assert_all_there(&s, &acked);
}

/// INFO persistence, SAVE, BGSAVE, LASTSAVE and WAIT on a store with data directories.
#[test]
fn persistence_commands_report_and_save() {
    let s = Store::start_with("durable-cmds", 3, Vec::new(), Some("always"));
    wait_converged(&s, Duration::from_secs(30), false);
    write_acked(&s, "cmd", 20);
    let port = s.port(0);
    let (persistence, saved, bg, last, waited) = rt().block_on(async {
        let mut c = Client::connect(("127.0.0.1", port)).await.unwrap();
        let p = c.cmd(&["INFO", "persistence"]).await.unwrap();
        let last0 = c.cmd(&["LASTSAVE"]).await.unwrap();
        let saved = c.cmd(&["SAVE"]).await.unwrap();
        let bg = c.cmd(&["BGSAVE"]).await.unwrap();
        let last = c.cmd(&["LASTSAVE"]).await.unwrap();
        let waited = c.cmd(&["WAIT", "2", "100"]).await.unwrap();
        (p, saved, bg, (last0, last), waited)
    });
    let text = match persistence {
        Value::Bulk(b) => String::from_utf8(b).unwrap(),
        other => panic!("INFO persistence: {other:?}"),
    };
    for field in
        ["aof_enabled:1", "appendfsync:always", "wal_fsyncs:", "wal_synced_pos:", "rdb_last_bgsave_status:ok"]
    {
        assert!(text.contains(field), "INFO persistence lacks {field}: {text}");
    }
    let fsyncs: u64 =
        text.lines().find_map(|l| l.strip_prefix("wal_fsyncs:")).unwrap().trim().parse().unwrap();
    assert!(fsyncs > 0, "no fsync counted: {text}");
    assert_eq!(saved, Value::Simple("OK".into()));
    assert!(matches!(bg, Value::Simple(ref t) if t.contains("Background saving")), "{bg:?}");
    let (Value::Int(before), Value::Int(after)) = last else { panic!("LASTSAVE: {last:?}") };
    assert!(after > before && after > 1_600_000_000, "LASTSAVE {before} -> {after}");
    assert_eq!(waited, Value::Int(2), "WAIT: every write is on both other members");
}
