//! Replies that used to be fixed stubs, checked for being real: CONFIG RESETSTAT resets INFO's
//! counters, COMMAND DOCS' `since` is each command's Redis version (compared with a real
//! redis-server), CLIENT LIST/INFO show the connection's own local address and what CLIENT
//! SETINFO set (also as redis-py sets it), INFO's `avg_ttl` is computed, and INFO's Group
//! section reports `pending_requests` rather than a `replication_lag` it cannot know, on one
//! unreplicated server and on a 3-node store of real processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;
mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chorus_kv::ServerConfig;
use common::{Client, TestServer, V};

/// `INFO section` as name -> value.
fn info(c: &mut Client, section: &str) -> BTreeMap<String, String> {
    let text = c.cmd(&format!("INFO {section}")).text();
    text.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

fn num(m: &BTreeMap<String, String>, k: &str) -> u64 {
    m.get(k).unwrap_or_else(|| panic!("no {k} in {m:?}")).parse().unwrap()
}

/// INFO keyspace's `db0` as its fields (keys, expires, avg_ttl).
fn db0(c: &mut Client) -> BTreeMap<String, u64> {
    let ks = info(c, "keyspace");
    let line = ks.get("db0").unwrap_or_else(|| panic!("no db0 in {ks:?}"));
    line.split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}

/// A CLIENT INFO / CLIENT LIST line as its fields.
fn client_fields(line: &str) -> BTreeMap<String, String> {
    line.trim_end()
        .split(' ')
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn config_resetstat_zeroes_the_stats_counters() {
    let s = TestServer::start(ServerConfig { max_clients: 2, ..ServerConfig::default() });
    let mut a = s.client();
    let mut b = s.client();
    for i in 0..5 {
        assert_eq!(a.cmd(&format!("SET k{i} v")), V::ok());
    }
    assert_eq!(b.cmd("GET k1"), V::bulk("v"));
    // A third connection is refused: rejected_connections counts it.
    let mut refused = s.client();
    assert!(String::from_utf8_lossy(&refused.read_to_close()).contains("max number of clients"));

    let before = info(&mut a, "stats");
    assert_eq!(num(&before, "total_connections_received"), 2, "{before:?}");
    assert_eq!(num(&before, "rejected_connections"), 1, "{before:?}");
    assert!(num(&before, "total_commands_processed") >= 7, "{before:?}");

    assert_eq!(a.cmd("CONFIG RESETSTAT"), V::ok());
    let after = info(&mut a, "stats");
    assert_eq!(num(&after, "total_connections_received"), 0, "{after:?}");
    assert_eq!(num(&after, "rejected_connections"), 0, "{after:?}");
    // Only the INFO itself since (Redis says 1 here too: RESETSTAT counts before it resets).
    assert_eq!(num(&after, "total_commands_processed"), 1, "{after:?}");
    // A gauge, not a counter: not reset.
    assert_eq!(num(&info(&mut a, "clients"), "connected_clients"), 2);

    // Counting goes on from zero.
    assert_eq!(b.cmd("PING"), V::Simple("PONG".into()));
    let again = info(&mut a, "stats");
    assert_eq!(num(&again, "total_commands_processed"), 4, "{again:?}");
    assert_eq!(
        a.cmd("CONFIG RESETSTAT now"),
        V::err("ERR wrong number of arguments for 'config|resetstat' command")
    );
}

/// COMMAND DOCS as command -> its `since`, if it has one (RESP2: flat arrays).
fn docs_since(c: &mut Client, names: &[&str]) -> BTreeMap<String, Option<String>> {
    let mut args: Vec<&[u8]> = vec![b"COMMAND", b"DOCS"];
    args.extend(names.iter().map(|n| n.as_bytes()));
    let V::Array(flat) = c.cmd_args(&args) else { panic!("COMMAND DOCS is not an array") };
    flat.chunks(2)
        .map(|p| {
            let V::Array(doc) = &p[1] else { panic!("docs of {:?} not an array: {:?}", p[0], p[1]) };
            let since = doc.chunks(2).find(|f| f[0] == V::bulk("since")).map(|f| f[1].text());
            (p[0].text(), since)
        })
        .collect()
}

#[test]
fn command_docs_since_is_the_version_that_introduced_the_command() {
    let s = TestServer::start(ServerConfig::default());
    let mut c = s.client();
    let docs = docs_since(&mut c, &["get", "getdel", "hstrlen", "expiretime", "mset", "promote"]);
    let want = |v: &str| Some(v.to_owned());
    assert_eq!(docs["get"], want("1.0.0"));
    assert_eq!(docs["getdel"], want("6.2.0"));
    assert_eq!(docs["hstrlen"], want("3.2.0"));
    assert_eq!(docs["expiretime"], want("7.0.0"));
    assert_eq!(docs["mset"], want("1.0.1"));
    // Not a Redis command: no version made up for it.
    assert_eq!(docs["promote"], None);
}

/// A redis-server on a free loopback port, killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("chorus-kv-honest-redis-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "redis-server did not start on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        RedisServer { child, port, dir }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg_attr(redis_tools_missing, ignore = "CHORUS_SKIP_REDIS=1 and a Redis tool is missing (see build.rs)")]
#[test]
fn command_docs_since_agrees_with_redis_server_for_every_command() {
    cluster::needs("redis-server", "redis-server", &["--version"], "apt-get install redis-server");
    let redis = RedisServer::start();
    let s = TestServer::start(ServerConfig::default());
    let mut c = s.client();
    let V::Array(names) = c.cmd("COMMAND LIST") else { panic!() };
    let names: Vec<String> = names.iter().map(V::text).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let ours = docs_since(&mut c, &names);
    let mut r = Client::connect(SocketAddr::from(([127, 0, 0, 1], redis.port)));
    let theirs = docs_since(&mut r, &names);
    assert!(names.len() > 60);
    for n in &names {
        // Redis omits commands it does not have (PROMOTE): no `since` for them here either.
        let want = theirs.get(*n).cloned().flatten();
        assert_eq!(ours[*n], want, "COMMAND DOCS {n}: since");
    }
}

#[test]
fn client_info_and_list_show_the_local_address_and_setinfo() {
    // Bound to another loopback address than 127.0.0.1, so that the local address must come
    // from the socket.
    let s = TestServer::start_on("127.0.0.2:0", ServerConfig::default());
    let mut c = s.client();
    let me = c.w.local_addr().unwrap();
    let server = c.w.peer_addr().unwrap();
    assert_eq!(server.ip().to_string(), "127.0.0.2");
    let f = client_fields(&c.cmd("CLIENT INFO").text());
    assert_eq!(f["laddr"], server.to_string(), "{f:?}");
    assert_eq!(f["addr"], me.to_string(), "{f:?}");
    assert_eq!((f["lib-name"].as_str(), f["lib-ver"].as_str()), ("", ""), "{f:?}");

    assert_eq!(c.cmd("CLIENT SETINFO LIB-NAME mylib"), V::ok());
    assert_eq!(c.cmd("CLIENT SETINFO lib-ver 1.2.3"), V::ok());
    for sub in ["CLIENT INFO", "CLIENT LIST"] {
        let f = client_fields(&c.cmd(sub).text());
        assert_eq!(f["lib-name"], "mylib", "{sub}: {f:?}");
        assert_eq!(f["lib-ver"], "1.2.3", "{sub}: {f:?}");
        assert_eq!(f["laddr"], server.to_string(), "{sub}: {f:?}");
    }
    // Refused values leave what was set; the empty value clears.
    assert_eq!(
        c.cmd_args(&[b"CLIENT", b"SETINFO", b"lib-name", b"two words"]),
        V::err("ERR lib-name cannot contain spaces, newlines or special characters.")
    );
    assert_eq!(c.cmd("CLIENT SETINFO lib-color red"), V::err("ERR Unrecognized option 'lib-color'"));
    assert_eq!(c.cmd_args(&[b"CLIENT", b"SETINFO", b"lib-ver", b""]), V::ok());
    let f = client_fields(&c.cmd("CLIENT INFO").text());
    assert_eq!((f["lib-name"].as_str(), f["lib-ver"].as_str()), ("mylib", ""), "{f:?}");
    // RESET keeps them (Redis: they describe the library behind the connection).
    assert_eq!(c.cmd("RESET"), V::Simple("RESET".into()));
    assert_eq!(client_fields(&c.cmd("CLIENT INFO").text())["lib-name"], "mylib");
    // Another connection has its own.
    let mut other = s.client();
    assert_eq!(client_fields(&other.cmd("CLIENT INFO").text())["lib-name"], "");
}

#[cfg_attr(redis_tools_missing, ignore = "CHORUS_SKIP_REDIS=1 and a Redis tool is missing (see build.rs)")]
#[test]
fn redis_py_sees_its_lib_name_and_the_local_address() {
    cluster::python_ready();
    let s = TestServer::start_on("127.0.0.2:0", ServerConfig::default());
    // redis-py sends CLIENT SETINFO LIB-NAME / LIB-VER when it connects.
    let script = r#"
import sys, redis
host, port = sys.argv[1], int(sys.argv[2])
for proto in (2, 3):
    r = redis.Redis(host=host, port=port, protocol=proto)
    for fields in (r.client_info(), r.client_list()[0]):
        assert fields["lib-name"] == "redis-py", (proto, fields)
        assert fields["lib-ver"] == redis.__version__, (proto, fields)
        assert fields["laddr"] == f"{host}:{port}", (proto, fields)
    r.close()
print("ok")
"#;
    let out = Command::new("python3")
        .args(["-c", script, "127.0.0.2", &s.addr.port().to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "redis-py: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn info_keyspace_avg_ttl_is_the_mean_ttl_of_keys_with_an_expiry() {
    let s = TestServer::start(ServerConfig::default());
    let mut c = s.client();
    assert_eq!(c.cmd("SET a v PX 100000"), V::ok());
    assert_eq!(c.cmd("SET b v PX 200000"), V::ok());
    assert_eq!(c.cmd("SET c v"), V::ok());
    // Few keys: every one is looked at.
    let d = db0(&mut c);
    assert_eq!((d["keys"], d["expires"]), (3, 2), "{d:?}");
    assert!((140_000..=150_000).contains(&d["avg_ttl"]), "{d:?}");
    assert_eq!(c.cmd("PERSIST a"), V::Int(1));
    assert_eq!(c.cmd("PERSIST b"), V::Int(1));
    let d = db0(&mut c);
    assert_eq!((d["expires"], d["avg_ttl"]), (0, 0), "{d:?}");

    // More keys than the sample: half of those with an expiry at 1,000 s, half at 3,000 s,
    // and a quarter of all without; a sample of 1,000 averages close to 2,000 s.
    assert_eq!(c.cmd("FLUSHALL"), V::ok());
    let mut pipe = Vec::new();
    for i in 0..4000 {
        let key = format!("k{i}");
        let ttl = match (i % 4, (i / 4) % 2) {
            (0, _) => None,
            (_, 0) => Some("1000000"),
            _ => Some("3000000"),
        };
        let mut args: Vec<&[u8]> = vec![b"SET", key.as_bytes(), b"v"];
        if let Some(t) = ttl {
            args.extend([&b"PX"[..], t.as_bytes()]);
        }
        pipe.extend(Client::encode(&args));
    }
    c.send_raw(&pipe);
    for _ in 0..4000 {
        assert_eq!(c.read(), V::ok());
    }
    let d = db0(&mut c);
    assert_eq!((d["keys"], d["expires"]), (4000, 3000), "{d:?}");
    assert!((1_800_000..=2_200_000).contains(&d["avg_ttl"]), "{d:?}");
}

#[test]
fn info_group_reports_pending_requests_not_a_replication_lag() {
    let s = TestServer::start(ServerConfig::default());
    let mut c = s.client();
    let g = info(&mut c, "group");
    assert_eq!(num(&g, "pending_requests"), 0, "{g:?}");
    assert!(!g.contains_key("replication_lag"), "{g:?}");
}

#[test]
fn on_a_replicated_store() {
    let s = cluster::Store::up("honest");
    let addr = |i: u16| SocketAddr::from(([127, 0, 0, 1], s.port(i)));
    for i in 0..s.n {
        let g = cluster::info(s.port(i)).expect("INFO group");
        assert!(g.get("pending_requests").is_some_and(|v| v.parse::<u64>().is_ok()), "node {i}: {g:?}");
        assert!(!g.contains_key("replication_lag") && !g.contains_key("pending"), "node {i}: {g:?}");
    }
    let mut c = Client::connect(addr(0));
    assert_eq!(c.cmd("SET t v PX 100000"), V::ok());
    assert_eq!(c.cmd("SET u v"), V::ok());
    let d = db0(&mut c);
    assert_eq!((d["keys"], d["expires"]), (2, 1), "{d:?}");
    assert!((90_000..=100_000).contains(&d["avg_ttl"]), "{d:?}");

    let mut other = Client::connect(addr(1));
    assert_eq!(other.cmd("CLIENT SETINFO LIB-NAME honest-test"), V::ok());
    let f = client_fields(&other.cmd("CLIENT INFO").text());
    assert_eq!(f["laddr"], addr(1).to_string(), "{f:?}");
    assert_eq!(f["addr"], other.w.local_addr().unwrap().to_string(), "{f:?}");
    assert_eq!(f["lib-name"], "honest-test", "{f:?}");

    assert!(num(&info(&mut other, "stats"), "total_commands_processed") >= 2);
    assert_eq!(other.cmd("CONFIG RESETSTAT"), V::ok());
    let st = info(&mut other, "stats");
    assert_eq!(num(&st, "total_connections_received"), 0, "{st:?}");
    assert_eq!(num(&st, "total_commands_processed"), 1, "{st:?}");
}
