//! The state machine alone: determinism, expiry by the command's time only, snapshots and
//! restore (with validation), the digest, transactions with watched versions, and any bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use chorus_kv::command::{classify, Classified, Cmd, WriteCmd};
use chorus_kv::{encode_write, KvMachine, Query, Reply};
use chorus_smr::{Ctx, StateMachine};
use proptest::prelude::*;

fn args(line: &str) -> Vec<Bytes> {
    line.split(' ').map(|w| Bytes::copy_from_slice(w.as_bytes())).collect()
}

/// Encodes the write `line` (panics if it is not one).
fn w(line: &str) -> Bytes {
    match classify(&args(line)) {
        Classified::Write(cmd) => encode_write(&WriteCmd::One(cmd)),
        other => panic!("{line}: not a write: {other:?}"),
    }
}

fn q(line: &str) -> Query {
    Query::from_args(&args(line)).unwrap()
}

struct Run {
    m: KvMachine,
    index: u64,
}

impl Run {
    fn new() -> Self {
        Run { m: KvMachine::new(), index: 0 }
    }
    fn apply(&mut self, line: &str, now_ms: u64) -> Reply {
        self.index += 1;
        self.m.apply(&w(line), &Ctx { index: self.index, now_ms })
    }
    fn apply_raw(&mut self, cmd: &[u8], now_ms: u64) -> Reply {
        self.index += 1;
        self.m.apply(cmd, &Ctx { index: self.index, now_ms })
    }
}

fn bulk(s: &str) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn expiry_follows_the_commands_time_only() {
    let mut r = Run::new();
    assert_eq!(r.apply("SET k v PX 100", 1_000), Reply::ok());
    assert_eq!(r.m.query(&q("GET k"), 1_050), bulk("v"));
    assert_eq!(r.m.query(&q("GET k"), 1_100), bulk("v"));
    assert_eq!(r.m.query(&q("GET k"), 1_101), Reply::Null);
    assert_eq!(r.m.query(&q("PTTL k"), 1_060), Reply::Int(40));
    assert_eq!(r.m.query(&q("DBSIZE"), 1_200), Reply::Int(0));
    assert_eq!(r.m.raw_len(), 1);
    // Any later write deletes it (the purge at the start of apply), deterministically.
    assert_eq!(r.apply("SET other x", 1_200), Reply::ok());
    assert_eq!(r.m.raw_len(), 1);
    assert_eq!(r.m.query(&q("EXISTS k"), 0), Reply::Int(0));
    // A write sees time from its context, not the wall clock: far in the past is fine.
    assert_eq!(r.apply("SET e v EX 10", 5), Reply::ok());
    assert_eq!(r.m.query(&q("TTL e"), 5), Reply::Int(10));
    assert_eq!(r.apply("INCR n", 9_000), Reply::Int(1));
    assert_eq!(r.m.query(&q("GET e"), 9_000), bulk("v"));
    assert_eq!(r.apply("INCR n", 10_006), Reply::Int(2));
    assert_eq!(r.m.query(&q("GET e"), 10_006), Reply::Null);
    assert_eq!(r.apply("EXPIRE n 1", 20_000), Reply::Int(1));
    assert_eq!(r.m.query(&q("EXPIRETIME n"), 0), Reply::Int(21));
}

#[test]
fn transactions_check_watched_versions_at_apply() {
    let mut r = Run::new();
    r.apply("SET a 1", 10);
    let Reply::Array(v) =
        r.m.query(&Query::versions(vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]), 10)
    else {
        panic!()
    };
    let vs: Vec<u64> = v.iter().map(|x| if let Reply::Int(i) = x { *i as u64 } else { panic!() }).collect();
    let exec = |watched: Vec<(&'static str, u64)>| {
        encode_write(&WriteCmd::Exec {
            watched: watched.into_iter().map(|(k, v)| (Bytes::from_static(k.as_bytes()), v)).collect(),
            cmds: vec![Cmd::IncrBy(Bytes::from_static(b"a"), 5), Cmd::Get(Bytes::from_static(b"a"))],
        })
    };
    let good = exec(vec![("a", vs[0]), ("b", vs[1])]);
    assert_eq!(r.apply_raw(&good, 11), Reply::Array(vec![Reply::Int(6), bulk("6")]));
    // a changed (by that very transaction): the same EXEC now aborts.
    assert_eq!(r.apply_raw(&good, 12), Reply::NullArray);
    // b created then deleted: aborts too.
    let vb = vs[1];
    r.apply("SET b 1", 13);
    r.apply("DEL b", 14);
    let Reply::Array(v) = r.m.query(&Query::versions(vec![Bytes::from_static(b"a")]), 15) else { panic!() };
    let Reply::Int(va) = v[0] else { panic!() };
    assert_eq!(r.apply_raw(&exec(vec![("a", va as u64), ("b", vb)]), 15), Reply::NullArray);
    assert_eq!(
        r.apply_raw(&exec(vec![("a", va as u64)]), 16),
        Reply::Array(vec![Reply::Int(11), bulk("11")])
    );
}

#[test]
fn malformed_commands_are_errors_not_panics() {
    let mut r = Run::new();
    for bad in [&b""[..], b"\x00", b"\x01", b"\x01\xff\xff\xff\xff\xff", b"\x02abc", b"\x01\x00\x05"] {
        assert!(r.apply_raw(bad, 1).is_error(), "{bad:?}");
    }
    let good = w("RPUSH l a b c");
    for cut in 0..good.len() {
        assert!(r.apply_raw(&good[..cut], 1).is_error());
    }
    assert_eq!(r.apply_raw(&good, 1), Reply::Int(3));
    // A write is not a query.
    assert!(Query::from_args(&args("SET a b")).is_err());
}

/// A store with every kind of value, expiries and tombstones.
fn populated() -> Run {
    let mut r = Run::new();
    let lines = [
        "SET s1 hello",
        "SET s2 world EX 1000",
        "INCRBY n 42",
        "RPUSH l a b c d",
        "LPUSH l z",
        "HSET h f1 v1 f2 v2",
        "SADD st x y z",
        "SET gone 1",
        "DEL gone",
        "SET short v PX 5",
        "PEXPIRE l 999999",
    ];
    for (i, l) in lines.iter().enumerate() {
        r.apply(l, 1_000 + i as u64);
    }
    r
}

#[test]
fn snapshot_restore_round_trip() {
    let r = populated();
    let mut snap = Vec::new();
    r.m.snapshot(&mut snap);
    let mut m2 = KvMachine::new();
    m2.apply(&w("SET junk 1"), &Ctx { index: 1, now_ms: 1 });
    m2.restore(&snap).unwrap();
    assert_eq!(m2.digest(), r.m.digest());
    let mut snap2 = Vec::new();
    m2.snapshot(&mut snap2);
    assert_eq!(snap, snap2);
    for line in
        ["GET s1", "TTL s2", "LRANGE l 0 -1", "HGETALL h", "SMEMBERS st", "GET junk", "DBSIZE", "PTTL l"]
    {
        assert_eq!(m2.query(&q(line), 1_100), r.m.query(&q(line), 1_100), "{line}");
    }
    // Equal states after equal commands, different otherwise.
    let mut a = populated();
    let mut b = populated();
    a.apply("SET s1 other", 2_000);
    assert_ne!(a.m.digest(), b.m.digest());
    b.apply("SET s1 other", 2_000);
    assert_eq!(a.m.digest(), b.m.digest());
    m2.reset();
    assert_eq!(m2.digest(), KvMachine::new().digest());
    assert_eq!(m2.query(&q("DBSIZE"), 0), Reply::Int(0));
}

#[test]
fn restore_validates() {
    let r = populated();
    let mut snap = Vec::new();
    r.m.snapshot(&mut snap);
    let before = r.m.digest();
    let mut m = r.m.clone();
    for cut in 0..snap.len() {
        assert!(m.restore(&snap[..cut]).is_err(), "cut {cut}");
        assert_eq!(m.digest(), before, "a failed restore changed the state");
    }
    let mut trailing = snap.clone();
    trailing.push(0);
    assert!(m.restore(&trailing).is_err());
    let mut magic = snap.clone();
    magic[0] ^= 1;
    assert!(m.restore(&magic).is_err());
    // A huge count claims more than the bytes hold.
    let mut lie = b"CHORUSKV1".to_vec();
    lie.extend([0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(m.restore(&lie).is_err());
}

/// Words for random commands over a small key space.
const CMDS: &[&str] = &[
    "SET k{} v{}",
    "SET k{} {} EX {}",
    "SET k{} {} PX {} NX",
    "SET k{} v XX GET",
    "GET k{}",
    "INCR k{}",
    "INCRBY k{} {}",
    "APPEND k{} x{}",
    "DEL k{} k{}",
    "GETDEL k{}",
    "SETNX k{} {}",
    "EXPIRE k{} {}",
    "PEXPIRE k{} {} GT",
    "PERSIST k{}",
    "LPUSH k{} a{} b",
    "RPUSH k{} {}",
    "LPOP k{}",
    "RPOP k{} {}",
    "HSET k{} f{} {}",
    "HINCRBY k{} f{} {}",
    "HDEL k{} f{}",
    "SADD k{} m{} m{}",
    "SREM k{} m{}",
    "MSET k{} {} k{} {}",
    "FLUSHALL",
    "EXPIREAT k{} {}",
    "SETEX k{} {} v",
    "LPUSHX k{} {}",
];

fn render(template: &str, nums: &[u8]) -> String {
    let mut out = String::new();
    let mut it = nums.iter();
    let mut parts = template.split("{}").peekable();
    while let Some(p) = parts.next() {
        out.push_str(p);
        if parts.peek().is_some() {
            out.push_str(&(it.next().copied().unwrap_or(1) % 5).to_string());
        }
    }
    out
}

fn script() -> impl Strategy<Value = Vec<(usize, Vec<u8>, u16)>> {
    proptest::collection::vec(
        (0..CMDS.len(), proptest::collection::vec(any::<u8>(), 4), any::<u16>()),
        1..120,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The same commands with the same contexts give the same replies and the same digest, also
    /// through a snapshot/restore in the middle and with a purge-heavy time line.
    #[test]
    fn determinism(steps in script(), split in 0usize..120) {
        let mut a = KvMachine::new();
        let mut b = KvMachine::new();
        let mut now = 1_000u64;
        for (i, (c, nums, dt)) in steps.iter().enumerate() {
            now += u64::from(*dt % 3000);
            let line = render(CMDS[*c], nums);
            let cmd = match classify(&args(&line)) {
                Classified::Write(cmd) => encode_write(&WriteCmd::One(cmd)),
                _ => continue,
            };
            let ctx = Ctx { index: i as u64 + 1, now_ms: now };
            if i == split {
                let mut snap = Vec::new();
                b.snapshot(&mut snap);
                let mut fresh = KvMachine::new();
                fresh.restore(&snap).unwrap();
                prop_assert_eq!(fresh.digest(), b.digest());
                b = fresh;
            }
            let ra = a.apply(&cmd, &ctx);
            let rb = b.apply(&cmd, &ctx);
            prop_assert_eq!(ra, rb);
            prop_assert_eq!(a.digest(), b.digest());
        }
        let mut sa = Vec::new();
        let mut sb = Vec::new();
        a.snapshot(&mut sa);
        b.snapshot(&mut sb);
        prop_assert_eq!(sa, sb);
        for k in 0..5 {
            let key = format!("k{k}");
            prop_assert_eq!(a.query(&q(&format!("TYPE {key}")), now), b.query(&q(&format!("TYPE {key}")), now));
        }
        prop_assert_eq!(a.query(&q("KEYS *"), now), b.query(&q("KEYS *"), now));
    }

    /// Any bytes given to apply or restore: an error, never a panic.
    #[test]
    fn any_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut r = populated();
        let _ = r.apply_raw(&data, 5_000);
        let mut with_magic = b"CHORUSKV1".to_vec();
        with_magic.extend_from_slice(&data);
        let _ = r.m.restore(&with_magic);
        let _ = r.m.restore(&data);
        let mut flipped = Vec::new();
        populated().m.snapshot(&mut flipped);
        if !data.is_empty() {
            let i = data[0] as usize % flipped.len();
            flipped[i] ^= data[data.len() - 1] | 1;
            let _ = KvMachine::new().restore(&flipped);
        }
    }
}
