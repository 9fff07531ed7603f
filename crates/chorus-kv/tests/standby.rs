//! Active-passive: standby nodes apply every write but serve no client until promoted, on
//! command (`PROMOTE [node]`) or when an active node fails. Three real `chorus-kv` processes:
//! node 1 active, nodes 2 and 3 standby.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::time::Duration;

use chorus_kv::resp_client::{Client, Value};
use cluster::{info, wait_for, Store};

fn cmd(port: u16, args: &[&str]) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut c = Client::connect(("127.0.0.1", port)).await.unwrap();
        c.cmd(args).await.unwrap()
    })
}

fn role(port: u16) -> String {
    info(port).and_then(|i| i.get("role").cloned()).unwrap_or_default()
}

fn is_error(v: &Value, prefix: &str) -> bool {
    matches!(v, Value::Error(e) if e.starts_with(prefix))
}

#[test]
fn standbys_serve_no_one_until_promoted_on_command_or_when_an_active_node_fails() {
    let mut s = Store::start_all("standby", vec!["active", "standby", "standby"]);
    let p = s.ports();
    wait_for("node 1 active, nodes 2 and 3 standby in a view of 3", Duration::from_secs(30), || {
        role(p[0]) == "active"
            && role(p[1]) == "standby"
            && role(p[2]) == "standby"
            && info(p[2]).is_some_and(|i| i.get("members").is_some_and(|m| m.split(',').count() == 3))
    });

    // Standbys refuse reads and writes, with a definite error; the active node serves.
    assert_eq!(cmd(p[0], &["SET", "k", "v1"]), Value::Simple("OK".into()));
    for port in [p[1], p[2]] {
        let w = cmd(port, &["SET", "k", "nope"]);
        assert!(is_error(&w, "READONLY"), "a standby took a write: {w}");
        let r = cmd(port, &["GET", "k"]);
        assert!(is_error(&r, "READONLY"), "a standby served a read: {r}");
    }
    // ... but apply every write: same applied index as the active node.
    wait_for("the standbys to apply the write", Duration::from_secs(10), || {
        let a = info(p[0]).and_then(|i| i.get("applied_index").cloned());
        a.is_some()
            && [p[1], p[2]].iter().all(|q| info(*q).and_then(|i| i.get("applied_index").cloned()) == a)
    });

    // On command: node 1 promotes node 2.
    // PROMOTE answers once the promotion is applied at the node that sent it; node 2 applies
    // it at the same point of the total order, moments later.
    assert_eq!(cmd(p[0], &["PROMOTE", "2"]), Value::Simple("OK".into()));
    wait_for("node 2 promoted", Duration::from_secs(5), || role(p[1]) == "active");
    assert_eq!(cmd(p[1], &["GET", "k"]), Value::Bulk(b"v1".to_vec()), "the promoted node has the state");
    assert_eq!(cmd(p[1], &["SET", "k", "v2"]), Value::Simple("OK".into()));
    assert!(is_error(&cmd(p[2], &["GET", "k"]), "READONLY"), "node 3 is still a standby");
    assert!(is_error(&cmd(p[0], &["PROMOTE", "9"]), "ERR"), "promoting a node not in the view");

    // On failure: node 1 (active) dies; node 3, the remaining standby, takes its place.
    s.kill(0);
    wait_for("node 3 promoted after node 1 failed", Duration::from_secs(20), || role(p[2]) == "active");
    assert_eq!(cmd(p[2], &["GET", "k"]), Value::Bulk(b"v2".to_vec()));
    assert_eq!(cmd(p[2], &["SET", "k", "v3"]), Value::Simple("OK".into()));
    assert_eq!(cmd(p[1], &["GET", "k"]), Value::Bulk(b"v3".to_vec()));
}
