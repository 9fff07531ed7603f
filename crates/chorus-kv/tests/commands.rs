//! Round trips over raw TCP against a server with a LocalBackend: every command family,
//! RESP2 and RESP3, transactions, WATCH, pipelining, inline commands, authentication.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, TestServer, V};

use chorus_kv::ServerConfig;

fn server() -> TestServer {
    TestServer::start(ServerConfig::default())
}

fn int(n: i64) -> V {
    V::Int(n)
}

#[test]
fn strings() {
    let s = server();
    let mut c = s.client();
    assert_eq!(c.cmd("PING"), V::Simple("PONG".into()));
    assert_eq!(c.cmd("PING hi"), V::bulk("hi"));
    assert_eq!(c.cmd("ECHO hello"), V::bulk("hello"));
    assert_eq!(c.cmd("GET k"), V::Nil);
    assert_eq!(c.cmd("SET k v"), V::ok());
    assert_eq!(c.cmd("GET k"), V::bulk("v"));
    assert_eq!(c.cmd("SET k w NX"), V::Nil);
    assert_eq!(c.cmd("SET k w XX GET"), V::bulk("v"));
    assert_eq!(c.cmd("SET nokey w XX"), V::Nil);
    assert_eq!(c.cmd("SET k2 x NX GET"), V::Nil);
    assert_eq!(c.cmd("GET k2"), V::bulk("x"));
    assert_eq!(c.cmd("SET k v EX 0"), V::err("ERR invalid expire time in 'set' command"));
    assert_eq!(c.cmd("SET k v NX XX"), V::err("ERR syntax error"));
    assert_eq!(c.cmd("SET k v EX"), V::err("ERR syntax error"));
    assert_eq!(c.cmd("SET k v EX x"), V::err("ERR value is not an integer or out of range"));
    assert_eq!(c.cmd("MSET a 1 b 2"), V::ok());
    assert_eq!(c.cmd("MSET a 1 b"), V::err("ERR wrong number of arguments for 'mset' command"));
    assert_eq!(c.cmd("MGET a b nope"), V::Array(vec![V::bulk("1"), V::bulk("2"), V::Nil]));
    assert_eq!(c.cmd("MSETNX a 5 zz 6"), int(0));
    assert_eq!(c.cmd("MSETNX zz 5 yy 6"), int(1));
    assert_eq!(c.cmd("INCR a"), int(2));
    assert_eq!(c.cmd("INCRBY a 10"), int(12));
    assert_eq!(c.cmd("DECR a"), int(11));
    assert_eq!(c.cmd("DECRBY a 20"), int(-9));
    assert_eq!(c.cmd("INCR k"), V::err("ERR value is not an integer or out of range"));
    assert_eq!(c.cmd("INCRBY a x"), V::err("ERR value is not an integer or out of range"));
    assert_eq!(c.cmd("SET big 9223372036854775807"), V::ok());
    assert_eq!(c.cmd("INCR big"), V::err("ERR increment or decrement would overflow"));
    assert_eq!(c.cmd("DECRBY a -9223372036854775808"), V::err("ERR decrement would overflow"));
    assert_eq!(c.cmd("APPEND k xyz"), int(4));
    assert_eq!(c.cmd("APPEND new abc"), int(3));
    assert_eq!(c.cmd("STRLEN k"), int(4));
    assert_eq!(c.cmd("STRLEN nope"), int(0));
    assert_eq!(c.cmd("GETDEL k"), V::bulk("wxyz"));
    assert_eq!(c.cmd("GETDEL k"), V::Nil);
    assert_eq!(c.cmd("SETNX k 1"), int(1));
    assert_eq!(c.cmd("SETNX k 2"), int(0));
    assert_eq!(c.cmd("GETSET k 3"), V::bulk("1"));
    assert_eq!(c.cmd("EXISTS k k nope"), int(2));
    assert_eq!(c.cmd("DEL k a nope"), int(2));
    assert_eq!(c.cmd("EXISTS k"), int(0));
    assert_eq!(c.cmd("GET"), V::err("ERR wrong number of arguments for 'get' command"));
    assert_eq!(
        c.cmd("FOO bar baz"),
        V::err("ERR unknown command 'FOO', with args beginning with: 'bar' 'baz' ")
    );
    // Binary-safe values.
    let v: Vec<u8> = (0..=255u8).collect();
    assert_eq!(c.cmd_args(&[b"SET", b"bin", &v]), V::ok());
    assert_eq!(c.cmd_args(&[b"GET", b"bin"]), V::Bulk(v));
}

#[test]
fn keys_and_expiry() {
    let s = server();
    let mut c = s.client();
    assert_eq!(c.cmd("SET k v EX 100"), V::ok());
    assert_eq!(c.cmd("TTL k"), int(100));
    let V::Int(pttl) = c.cmd("PTTL k") else { panic!() };
    assert!((99_000..=100_000).contains(&pttl));
    assert_eq!(c.cmd("SET k v KEEPTTL"), V::ok());
    assert_eq!(c.cmd("TTL k"), int(100));
    assert_eq!(c.cmd("SET k v"), V::ok());
    assert_eq!(c.cmd("TTL k"), int(-1));
    assert_eq!(c.cmd("TTL nope"), int(-2));
    assert_eq!(c.cmd("EXPIRE k 50"), int(1));
    assert_eq!(c.cmd("EXPIRE k 60 NX"), int(0));
    assert_eq!(c.cmd("EXPIRE k 40 GT"), int(0));
    assert_eq!(c.cmd("EXPIRE k 40 LT"), int(1));
    assert_eq!(c.cmd("TTL k"), int(40));
    assert_eq!(c.cmd("EXPIRE nope 10"), int(0));
    assert_eq!(c.cmd("PERSIST k"), int(1));
    assert_eq!(c.cmd("PERSIST k"), int(0));
    assert_eq!(c.cmd("EXPIRETIME k"), int(-1));
    assert_eq!(c.cmd("EXPIRE k 10 XX"), int(0));
    assert_eq!(
        c.cmd("EXPIRE k 10 NX XX"),
        V::err("ERR NX and XX, GT or LT options at the same time are not compatible")
    );
    assert_eq!(c.cmd("EXPIRE k x"), V::err("ERR value is not an integer or out of range"));
    assert_eq!(c.cmd("EXPIRE k -1"), int(1));
    assert_eq!(c.cmd("EXISTS k"), int(0));
    // An expiry that fires.
    assert_eq!(c.cmd("SET short v PX 30"), V::ok());
    assert_eq!(c.cmd("SET long v PX 100000"), V::ok());
    std::thread::sleep(std::time::Duration::from_millis(60));
    assert_eq!(c.cmd("GET short"), V::Nil);
    assert_eq!(c.cmd("TTL short"), int(-2));
    assert_eq!(c.cmd("TYPE short"), V::Simple("none".into()));
    assert_eq!(c.cmd("PEXPIREAT long 1"), int(1));
    assert_eq!(c.cmd("GET long"), V::Nil);
    assert_eq!(c.cmd("SETEX se 100 v"), V::ok());
    assert_eq!(c.cmd("TTL se"), int(100));
    assert_eq!(c.cmd("PSETEX pse 0 v"), V::err("ERR invalid expire time in 'psetex' command"));

    assert_eq!(c.cmd("FLUSHALL"), V::ok());
    assert_eq!(c.cmd("MSET a:1 1 a:2 2 b:1 3 c 4"), V::ok());
    assert_eq!(c.cmd("RPUSH list x"), int(1));
    assert_eq!(c.cmd("DBSIZE"), int(5));
    assert_eq!(c.cmd("TYPE list"), V::Simple("list".into()));
    assert_eq!(c.cmd("TYPE c"), V::Simple("string".into()));
    let V::Array(mut keys) = c.cmd("KEYS a:*") else { panic!() };
    keys.sort_by_key(|v| v.text());
    assert_eq!(keys, vec![V::bulk("a:1"), V::bulk("a:2")]);
    // SCAN: a full iteration with a small COUNT returns every key once.
    let mut seen = Vec::new();
    let mut cursor = "0".to_owned();
    loop {
        let V::Array(r) = c.cmd(&format!("SCAN {cursor} COUNT 2")) else { panic!() };
        let V::Array(batch) = &r[1] else { panic!() };
        seen.extend(batch.iter().map(|v| v.text()));
        cursor = r[0].text();
        if cursor == "0" {
            break;
        }
    }
    seen.sort();
    assert_eq!(seen, vec!["a:1", "a:2", "b:1", "c", "list"]);
    let V::Array(r) = c.cmd("SCAN 0 TYPE list COUNT 100") else { panic!() };
    assert_eq!(r[1], V::bulks(&["list"]));
    assert_eq!(c.cmd("SCAN x"), V::err("ERR invalid cursor"));
    assert_eq!(c.cmd("FLUSHDB"), V::ok());
    assert_eq!(c.cmd("DBSIZE"), int(0));
}

#[test]
fn lists_hashes_sets() {
    let s = server();
    let mut c = s.client();
    assert_eq!(c.cmd("LPUSH l a b c"), int(3));
    assert_eq!(c.cmd("RPUSH l d"), int(4));
    assert_eq!(c.cmd("LRANGE l 0 -1"), V::bulks(&["c", "b", "a", "d"]));
    assert_eq!(c.cmd("LRANGE l -2 100"), V::bulks(&["a", "d"]));
    assert_eq!(c.cmd("LRANGE l 3 1"), V::Array(vec![]));
    assert_eq!(c.cmd("LLEN l"), int(4));
    assert_eq!(c.cmd("LINDEX l -1"), V::bulk("d"));
    assert_eq!(c.cmd("LINDEX l 10"), V::Nil);
    assert_eq!(c.cmd("LINDEX nope x"), V::Nil);
    assert_eq!(c.cmd("LINDEX l x"), V::err("ERR value is not an integer or out of range"));
    assert_eq!(c.cmd("LPOP l"), V::bulk("c"));
    assert_eq!(c.cmd("RPOP l 2"), V::bulks(&["d", "a"]));
    assert_eq!(c.cmd("LPOP l 0"), V::Array(vec![]));
    assert_eq!(c.cmd("LPOP l 5"), V::bulks(&["b"]));
    assert_eq!(c.cmd("EXISTS l"), int(0));
    assert_eq!(c.cmd("LPOP l"), V::Nil);
    assert_eq!(c.cmd("LPOP l 2"), V::Nil);
    assert_eq!(c.cmd("LPOP l -1"), V::err("ERR value is out of range, must be positive"));
    assert_eq!(c.cmd("LPUSHX l a"), int(0));
    assert_eq!(c.cmd("SET s v"), V::ok());
    let wrongtype = V::err("WRONGTYPE Operation against a key holding the wrong kind of value");
    assert_eq!(c.cmd("LPUSH s a"), wrongtype);
    assert_eq!(c.cmd("HSET s a b"), wrongtype);
    assert_eq!(c.cmd("SADD s a"), wrongtype);
    assert_eq!(c.cmd("LRANGE s 0 1"), wrongtype);

    assert_eq!(c.cmd("HSET h a 1 b 2"), int(2));
    assert_eq!(c.cmd("HSET h a 3 c 4"), int(1));
    assert_eq!(c.cmd("HGET h a"), V::bulk("3"));
    assert_eq!(c.cmd("HGET h z"), V::Nil);
    assert_eq!(c.cmd("HLEN h"), int(3));
    assert_eq!(c.cmd("HMGET h a z"), V::Array(vec![V::bulk("3"), V::Nil]));
    assert_eq!(
        c.cmd("HGETALL h"),
        V::Array(vec![V::bulk("a"), V::bulk("3"), V::bulk("b"), V::bulk("2"), V::bulk("c"), V::bulk("4")])
    );
    assert_eq!(c.cmd("HINCRBY h a 10"), int(13));
    assert_eq!(c.cmd("HINCRBY h new -2"), int(-2));
    assert_eq!(c.cmd("HSET h t text"), int(1));
    assert_eq!(c.cmd("HINCRBY h t 1"), V::err("ERR hash value is not an integer"));
    assert_eq!(c.cmd("HDEL h a b zz"), int(2));
    assert_eq!(c.cmd("HEXISTS h c"), int(1));
    assert_eq!(c.cmd("HSETNX h c 9"), int(0));
    assert_eq!(c.cmd("HMSET h x 1"), V::ok());
    assert_eq!(c.cmd("HSET h a"), V::err("ERR wrong number of arguments for 'hset' command"));
    assert_eq!(c.cmd("HDEL h c new t x"), int(4));
    assert_eq!(c.cmd("EXISTS h"), int(0));

    assert_eq!(c.cmd("SADD st a b a"), int(2));
    assert_eq!(c.cmd("SISMEMBER st a"), int(1));
    assert_eq!(c.cmd("SISMEMBER st z"), int(0));
    assert_eq!(c.cmd("SMISMEMBER st a z"), V::Array(vec![int(1), int(0)]));
    assert_eq!(c.cmd("SCARD st"), int(2));
    assert_eq!(c.cmd("SMEMBERS st"), V::bulks(&["a", "b"]));
    assert_eq!(c.cmd("SREM st a z"), int(1));
    assert_eq!(c.cmd("SREM st b"), int(1));
    assert_eq!(c.cmd("TYPE st"), V::Simple("none".into()));
}

#[test]
fn resp3_and_connection_commands() {
    let s = server();
    let mut c = s.client();
    let V::Array(hello) = c.cmd("HELLO") else { panic!() };
    assert_eq!(hello[4], V::bulk("proto"));
    assert_eq!(hello[5], int(2));
    let V::Map(hello) = c.cmd("HELLO 3 SETNAME conn1") else { panic!() };
    assert!(hello.contains(&(V::bulk("proto"), int(3))));
    assert_eq!(c.cmd("CLIENT GETNAME"), V::bulk("conn1"));
    assert_eq!(c.cmd("GET nope"), V::Nil);
    assert_eq!(c.cmd("HSET h a 1"), int(1));
    assert_eq!(c.cmd("HGETALL h"), V::Map(vec![(V::bulk("a"), V::bulk("1"))]));
    assert_eq!(c.cmd("SADD s x"), int(1));
    assert_eq!(c.cmd("SMEMBERS s"), V::Set(vec![V::bulk("x")]));
    assert_eq!(c.cmd("LPOP nope 2"), V::Nil);
    let V::Verbatim(fmt, info) = c.cmd("INFO") else { panic!() };
    assert_eq!(fmt, "txt");
    let info = String::from_utf8(info).unwrap();
    for needle in [
        "# Server",
        "# Group",
        "view_id:0",
        "members:local",
        "role:standalone",
        "applied_index:",
        "pending_requests:0",
        "db0:keys=2",
    ] {
        assert!(info.contains(needle), "INFO lacks {needle}: {info}");
    }
    let V::Verbatim(_, group) = c.cmd("INFO group") else { panic!() };
    assert!(!String::from_utf8_lossy(&group).contains("# Server"));
    assert_eq!(c.cmd("HELLO 4"), V::err("NOPROTO unsupported protocol version"));
    assert_eq!(c.cmd("HELLO x"), V::err("ERR Protocol version is not an integer or out of range"));
    let V::Array(h) = c.cmd("HELLO 2") else { panic!() };
    assert_eq!(h.len(), 14);
    assert_eq!((&h[4], &h[5]), (&V::bulk("proto"), &int(2)));
    assert_eq!(c.cmd("GET nope"), V::Nil);
    assert_eq!(c.cmd("SELECT 0"), V::ok());
    assert_eq!(c.cmd("SELECT 1"), V::err("ERR DB index is out of range"));
    assert!(matches!(c.cmd("CLIENT ID"), V::Int(_)));
    assert_eq!(c.cmd("CLIENT SETNAME"), V::err("ERR wrong number of arguments for 'client|setname' command"));
    assert_eq!(
        c.cmd_args(&[b"CLIENT", b"SETNAME", b"a b"]),
        V::err("ERR Client names cannot contain spaces, newlines or special characters.")
    );
    assert_eq!(c.cmd("CLIENT FOO"), V::err("ERR unknown subcommand 'FOO'. Try CLIENT HELP."));
    assert!(matches!(c.cmd("COMMAND COUNT"), V::Int(n) if n > 60));
    assert!(matches!(c.cmd("COMMAND DOCS get"), V::Array(v) if v.len() == 2));
    assert!(matches!(c.cmd("COMMAND"), V::Array(v) if v.len() > 60));
    assert_eq!(c.cmd("COMMAND GETKEYS MSET a 1 b 2"), V::bulks(&["a", "b"]));
    let V::Array(cfg) = c.cmd("CONFIG GET save appendonly") else { panic!() };
    assert_eq!(cfg.len(), 4);
    assert_eq!(c.cmd("READONLY"), V::ok());
    assert_eq!(c.cmd("GET nope"), V::Nil);
    assert_eq!(c.cmd("READWRITE"), V::ok());
    assert_eq!(c.cmd("AUTH x"), V::err("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"));
    assert_eq!(c.cmd("RESET"), V::Simple("RESET".into()));
    assert_eq!(c.cmd("CLIENT GETNAME"), V::Nil);
    assert_eq!(c.cmd("QUIT"), V::ok());
    assert!(c.read_to_close().is_empty());
}

#[test]
fn transactions_and_watch() {
    let s = server();
    let mut c = s.client();
    let mut other = s.client();
    assert_eq!(c.cmd("MULTI"), V::ok());
    assert_eq!(c.cmd("SET a 1"), V::Simple("QUEUED".into()));
    assert_eq!(c.cmd("INCR a"), V::Simple("QUEUED".into()));
    assert_eq!(c.cmd("LPUSH a x"), V::Simple("QUEUED".into()));
    assert_eq!(c.cmd("SET a 1 BAD"), V::Simple("QUEUED".into()));
    assert_eq!(c.cmd("PING"), V::Simple("QUEUED".into()));
    assert_eq!(c.cmd("GET a"), V::Simple("QUEUED".into()));
    assert_eq!(c.cmd("MULTI"), V::err("ERR MULTI calls can not be nested"));
    assert_eq!(c.cmd("WATCH a"), V::err("ERR WATCH inside MULTI is not allowed"));
    assert_eq!(
        c.cmd("EXEC"),
        V::Array(vec![
            V::ok(),
            int(2),
            V::err("WRONGTYPE Operation against a key holding the wrong kind of value"),
            V::err("ERR syntax error"),
            V::Simple("PONG".into()),
            V::bulk("2"),
        ])
    );
    assert_eq!(c.cmd("EXEC"), V::err("ERR EXEC without MULTI"));
    assert_eq!(c.cmd("DISCARD"), V::err("ERR DISCARD without MULTI"));
    // A queue-time error aborts the whole transaction.
    assert_eq!(c.cmd("MULTI"), V::ok());
    assert_eq!(c.cmd("SET a 5"), V::Simple("QUEUED".into()));
    assert_eq!(c.cmd("GET"), V::err("ERR wrong number of arguments for 'get' command"));
    assert_eq!(c.cmd("EXEC"), V::err("EXECABORT Transaction discarded because of previous errors."));
    assert_eq!(c.cmd("GET a"), V::bulk("2"));
    assert_eq!(c.cmd("MULTI"), V::ok());
    assert_eq!(c.cmd("SET a 5"), V::Simple("QUEUED".into()));
    assert_eq!(c.cmd("DISCARD"), V::ok());
    assert_eq!(c.cmd("GET a"), V::bulk("2"));
    // WATCH: a change by another client aborts; no change commits.
    assert_eq!(c.cmd("WATCH a"), V::ok());
    assert_eq!(other.cmd("SET a 3"), V::ok());
    assert_eq!(c.cmd("MULTI"), V::ok());
    assert_eq!(c.cmd("SET a 10"), V::Simple("QUEUED".into()));
    assert_eq!(c.cmd("EXEC"), V::Nil);
    assert_eq!(c.cmd("GET a"), V::bulk("3"));
    assert_eq!(c.cmd("WATCH a missing"), V::ok());
    assert_eq!(other.cmd("SET unrelated 1"), V::ok());
    assert_eq!(other.cmd("DEL unrelated"), int(1));
    assert_eq!(c.cmd("MULTI"), V::ok());
    assert_eq!(c.cmd("SET a 10"), V::Simple("QUEUED".into()));
    assert_eq!(c.cmd("EXEC"), V::Array(vec![V::ok()]));
    // Watching a missing key that gets created and deleted again aborts.
    assert_eq!(c.cmd("WATCH missing"), V::ok());
    assert_eq!(other.cmd("SET missing 1"), V::ok());
    assert_eq!(other.cmd("DEL missing"), int(1));
    assert_eq!(c.cmd("MULTI"), V::ok());
    assert_eq!(c.cmd("GET a"), V::Simple("QUEUED".into()));
    assert_eq!(c.cmd("EXEC"), V::Nil);
    // A SET already expired (EXAT in the past) of a missing key is a change too, as in Redis:
    // the key is set and expired at once (found by the differential test).
    assert_eq!(c.cmd("WATCH never"), V::ok());
    assert_eq!(other.cmd("SET never 1 EXAT 1 NX"), V::ok());
    assert_eq!(c.cmd("MULTI"), V::ok());
    assert_eq!(c.cmd("GET never"), V::Simple("QUEUED".into()));
    assert_eq!(c.cmd("EXEC"), V::Nil);
    // UNWATCH forgets.
    assert_eq!(c.cmd("WATCH a"), V::ok());
    assert_eq!(other.cmd("SET a 4"), V::ok());
    assert_eq!(c.cmd("UNWATCH"), V::ok());
    assert_eq!(c.cmd("MULTI"), V::ok());
    assert_eq!(c.cmd("GET a"), V::Simple("QUEUED".into()));
    assert_eq!(c.cmd("EXEC"), V::Array(vec![V::bulk("4")]));
    // A key that expires between WATCH and EXEC aborts.
    assert_eq!(c.cmd("SET e v PX 40"), V::ok());
    assert_eq!(c.cmd("WATCH e"), V::ok());
    std::thread::sleep(std::time::Duration::from_millis(80));
    assert_eq!(c.cmd("MULTI"), V::ok());
    assert_eq!(c.cmd("GET e"), V::Simple("QUEUED".into()));
    assert_eq!(c.cmd("EXEC"), V::Nil);
    // A key already expired when watched does not.
    assert_eq!(c.cmd("SET e v PX 10"), V::ok());
    std::thread::sleep(std::time::Duration::from_millis(40));
    assert_eq!(c.cmd("WATCH e"), V::ok());
    assert_eq!(c.cmd("MULTI"), V::ok());
    assert_eq!(c.cmd("SET x 1"), V::Simple("QUEUED".into()));
    assert_eq!(c.cmd("EXEC"), V::Array(vec![V::ok()]));
}

#[test]
fn pipelining_and_inline() {
    let s = server();
    let mut c = s.client();
    let mut raw = Vec::new();
    for i in 0..500 {
        raw.extend(Client::encode(&[b"SET", format!("k{i}").as_bytes(), format!("{i}").as_bytes()]));
        raw.extend(Client::encode(&[b"INCR", format!("k{i}").as_bytes()]));
    }
    raw.extend_from_slice(b"PING\r\nECHO \"a b\"\r\n\r\nGET k7\n");
    c.send_raw(&raw);
    for i in 0..500 {
        assert_eq!(c.read(), V::ok());
        assert_eq!(c.read(), int(i + 1));
    }
    assert_eq!(c.read(), V::Simple("PONG".into()));
    assert_eq!(c.read(), V::bulk("a b"));
    assert_eq!(c.read(), V::bulk("8"));
    // A request split across many writes.
    let req = Client::encode(&[b"SET", b"split", &vec![b'x'; 100_000]]);
    for chunk in req.chunks(777) {
        c.send_raw(chunk);
    }
    assert_eq!(c.read(), V::ok());
    assert_eq!(c.cmd("STRLEN split"), int(100_000));
}

#[test]
fn authentication() {
    let s = TestServer::start(ServerConfig { password: Some("sekret".into()), ..ServerConfig::default() });
    let mut c = s.client();
    assert_eq!(c.cmd("GET a"), V::err("NOAUTH Authentication required."));
    assert_eq!(c.cmd("FOO"), V::err("ERR unknown command 'FOO', with args beginning with: "));
    assert!(matches!(c.cmd("HELLO 3"), V::Err(e) if e.starts_with("NOAUTH HELLO must be called")));
    assert_eq!(c.cmd("AUTH wrong"), V::err("WRONGPASS invalid username-password pair or user is disabled."));
    assert_eq!(c.cmd("AUTH sekret"), V::ok());
    assert_eq!(c.cmd("SET a 1"), V::ok());
    let mut c2 = s.client();
    assert_eq!(
        c2.cmd("HELLO 3 AUTH default wrong"),
        V::err("WRONGPASS invalid username-password pair or user is disabled.")
    );
    let V::Map(_) = c2.cmd("HELLO 3 AUTH default sekret") else { panic!() };
    assert_eq!(c2.cmd("GET a"), V::bulk("1"));
    assert_eq!(c2.cmd("RESET"), V::Simple("RESET".into()));
    assert_eq!(c2.cmd("GET a"), V::err("NOAUTH Authentication required."));
    let mut c3 = s.client();
    assert_eq!(c3.cmd("AUTH default sekret"), V::ok());
    assert_eq!(c3.cmd("GET a"), V::bulk("1"));
}

#[test]
fn concurrent_writes_keep_request_order() {
    let s = TestServer::start(ServerConfig { concurrent_writes: true, ..ServerConfig::default() });
    let mut c = s.client();
    let mut raw = Vec::new();
    for i in 0..300 {
        raw.extend(Client::encode(&[b"INCR", b"n"]));
        if i % 50 == 0 {
            raw.extend(Client::encode(&[b"GET", b"n"]));
        }
    }
    raw.extend(Client::encode(&[b"MULTI"]));
    raw.extend(Client::encode(&[b"INCR", b"n"]));
    raw.extend(Client::encode(&[b"INCR", b"n"]));
    raw.extend(Client::encode(&[b"EXEC"]));
    c.send_raw(&raw);
    for i in 0..300 {
        assert_eq!(c.read(), int(i + 1));
        if i % 50 == 0 {
            assert_eq!(c.read(), V::bulk(&(i + 1).to_string()));
        }
    }
    assert_eq!(c.read(), V::ok());
    assert_eq!(c.read(), V::Simple("QUEUED".into()));
    assert_eq!(c.read(), V::Simple("QUEUED".into()));
    assert_eq!(c.read(), V::Array(vec![int(301), int(302)]));
}
