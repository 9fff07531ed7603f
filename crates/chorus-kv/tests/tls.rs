//! The store's client port over TLS, with the tools users have: `redis-cli --tls` and redis-py
//! with `ssl=True`, without and with client certificates (`tls_client_ca`); a client without a
//! certificate is refused when one is required, and a plaintext client gets nothing. The node's
//! peer link runs over mutual TLS too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use chorus::tls::dev_certs;

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A one-node store with TLS on both ports; `client_ca`: clients must show a certificate.
fn start(dir: &Path, client_ca: bool) -> (Node, u16) {
    let (port, peer) = (free_port(), free_port());
    let f = |n: &str| dir.join(n).display().to_string();
    let toml = format!(
        "[group]\nnode = 1\nlisten = \"127.0.0.1:{peer}\"\nsecret = \"tls test secret\"\nbootstrap = true\n\
         tls_cert = \"{}\"\ntls_key = \"{}\"\ntls_ca = \"{}\"\n\n[kv]\nlisten = \"127.0.0.1:{port}\"\n\
         tls_cert = \"{}\"\ntls_key = \"{}\"\n{}",
        f("node-1.pem"),
        f("node-1-key.pem"),
        f("ca.pem"),
        f("node-1.pem"),
        f("node-1-key.pem"),
        if client_ca { format!("tls_client_ca = \"{}\"\n", f("ca.pem")) } else { String::new() }
    );
    let cfg = dir.join(format!("node-{client_ca}.toml"));
    std::fs::write(&cfg, toml).unwrap();
    let log = std::fs::File::create(dir.join(format!("node-{client_ca}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_chorus-kv"))
        .args(["node", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    (Node(child), port)
}

fn cli(port: u16, tls: &[String], args: &[&str]) -> Output {
    Command::new("redis-cli").args(["-p", &port.to_string()]).args(tls).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Waits until `redis-cli PING` over TLS answers PONG.
fn wait_ready(port: u16, tls: &[String], dir: &Path) {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if stdout(&cli(port, tls, &["PING"])) == "PONG" {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    panic!("the node did not answer over TLS within 30 s; logs:\n{}", logs.join("\n"));
}

fn py(port: u16, script: &str, dir: &Path) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script.replace("PORT", &port.to_string()).replace("DIR", &dir.display().to_string()))
        .output()
        .unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout).trim(), String::from_utf8_lossy(&out.stderr).trim())
}

fn certs(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chorus-kv-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (ca, _) = dev_certs::ensure_ca(&dir, "test").unwrap();
    dev_certs::make_leaf(&dir, &ca, "node-1", &[]).unwrap();
    dev_certs::make_leaf(&dir, &ca, "client", &[]).unwrap();
    dir
}

#[cfg_attr(redis_tools_missing, ignore = "CHORUS_SKIP_REDIS=1 and a Redis tool is missing (see build.rs)")]
#[test]
fn redis_cli_and_redis_py_over_tls() {
    cluster::needs("redis-cli", "redis-cli", &["--version"], "apt-get install redis-tools");
    cluster::python_ready();
    let dir = certs("server");
    let (_node, port) = start(&dir, false);
    let tls = vec!["--tls".to_string(), "--cacert".to_string(), dir.join("ca.pem").display().to_string()];
    wait_ready(port, &tls, &dir);
    assert_eq!(stdout(&cli(port, &tls, &["SET", "greeting", "hello over TLS"])), "OK");
    assert_eq!(stdout(&cli(port, &tls, &["GET", "greeting"])), "hello over TLS");
    // The certificate is checked: redis-cli without the CA refuses the server.
    let o = cli(port, &["--tls".to_string()], &["PING"]);
    assert_ne!(stdout(&o), "PONG", "redis-cli must not trust a certificate of an unknown CA");
    // Plaintext on the TLS port gets no answer.
    let o = cli(port, &[], &["PING"]);
    assert_ne!(stdout(&o), "PONG", "a plaintext client was answered on the TLS port");
    // redis-py with ssl=True, RESP2 and RESP3.
    let got = py(
        port,
        "import redis\n\
         r = redis.Redis(port=PORT, ssl=True, ssl_ca_certs='DIR/ca.pem')\n\
         r.rpush('l', 'a', 'b'); print(r.get('greeting').decode(), r.lrange('l', 0, -1))\n\
         r3 = redis.Redis(port=PORT, ssl=True, ssl_ca_certs='DIR/ca.pem', protocol=3)\n\
         print(r3.incr('n'), r3.hset('h', 'f', 'v'))",
        &dir,
    );
    assert_eq!(got, "hello over TLS [b'a', b'b']\n1 1", "redis-py over TLS");
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg_attr(redis_tools_missing, ignore = "CHORUS_SKIP_REDIS=1 and a Redis tool is missing (see build.rs)")]
#[test]
fn client_certificates_are_required_when_the_config_names_their_ca() {
    cluster::needs("redis-cli", "redis-cli", &["--version"], "apt-get install redis-tools");
    cluster::python_ready();
    let dir = certs("clients");
    let (_node, port) = start(&dir, true);
    let f = |n: &str| dir.join(n).display().to_string();
    let tls = vec![
        "--tls".to_string(),
        "--cacert".to_string(),
        f("ca.pem"),
        "--cert".to_string(),
        f("client.pem"),
        "--key".to_string(),
        f("client-key.pem"),
    ];
    wait_ready(port, &tls, &dir);
    assert_eq!(stdout(&cli(port, &tls, &["SET", "k", "v"])), "OK");
    // Without a client certificate: refused.
    let o = cli(port, &tls[..3], &["PING"]);
    assert_ne!(stdout(&o), "PONG", "a client without a certificate was served");
    // A certificate of another CA: refused.
    let other = certs("other-ca");
    let theirs = vec![
        "--tls".to_string(),
        "--cacert".to_string(),
        f("ca.pem"),
        "--cert".to_string(),
        other.join("client.pem").display().to_string(),
        "--key".to_string(),
        other.join("client-key.pem").display().to_string(),
    ];
    let o = cli(port, &theirs, &["PING"]);
    assert_ne!(stdout(&o), "PONG", "a client with a certificate of another CA was served");
    // redis-py with its certificate.
    let got = py(
        port,
        "import redis\n\
         r = redis.Redis(port=PORT, ssl=True, ssl_ca_certs='DIR/ca.pem', ssl_certfile='DIR/client.pem', ssl_keyfile='DIR/client-key.pem')\n\
         print(r.get('k').decode())",
        &dir,
    );
    assert_eq!(got, "v", "redis-py with a client certificate");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&other);
}
