//! Pipelined writes on a 3-node store of real processes: a connection's run of writes goes to the
//! replica as one batch (one request, one reply for the lot), and each command still gets its
//! own reply, in order: results, errors of single commands amid the others, duplicates of
//! nothing, and, when the node has no quorum, one refusal per command.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Client, V};

#[test]
fn pipelined_writes_are_answered_one_by_one_in_order() {
    let mut s = cluster::Store::up("pipelines");
    let addr = |i: u16| SocketAddr::from(([127, 0, 0, 1], s.port(i)));
    let mut c = Client::connect(addr(0));
    assert_eq!(c.cmd("SET str text"), V::ok());

    // 600 writes in one send: several batches of the server's parser, mixed kinds, an error in
    // every tenth (a list command on a string) that must not disturb the others.
    let mut raw = Vec::new();
    let mut want = Vec::new();
    for i in 0..600u32 {
        let key = format!("k{i}");
        let val = i.to_string();
        match i % 10 {
            3 => {
                raw.extend(Client::encode(&[b"LPUSH", b"str", b"x"]));
                want.push(V::err("WRONGTYPE Operation against a key holding the wrong kind of value"));
            }
            5 => {
                raw.extend(Client::encode(&[b"INCR", b"counter"]));
                want.push(V::Int(i64::from(i / 10) + 1));
            }
            _ => {
                raw.extend(Client::encode(&[b"SET", key.as_bytes(), val.as_bytes()]));
                want.push(V::ok());
            }
        }
    }
    c.send_raw(&raw);
    for (i, w) in want.iter().enumerate() {
        assert_eq!(&c.read(), w, "reply {i}");
    }
    // Applied once each, at every node.
    for node in 0..s.n {
        let mut r = Client::connect(addr(node));
        assert_eq!(r.cmd("GET counter"), V::bulk("60"), "node {node}");
        assert_eq!(r.cmd("GET k599"), V::bulk("599"), "node {node}");
        assert_eq!(r.cmd("GET str"), V::bulk("text"), "node {node}");
    }

    // Without a quorum: each pipelined write refused, in order, none applied. (A write in
    // flight when the quorum goes waits for its outcome, which the group's recovery may still
    // decide: so the test waits for the node to know, before it writes.)
    s.kill(1);
    s.kill(2);
    cluster::wait_for("node 1 to lose its quorum", Duration::from_secs(30), || {
        cluster::info(s.port(0)).is_some_and(|g| g.get("role").is_some_and(|r| r == "noquorum"))
    });
    let mut raw = Vec::new();
    for i in 0..50u32 {
        raw.extend(Client::encode(&[b"SET", format!("late{i}").as_bytes(), b"v"]));
    }
    c.send_raw(&raw);
    for i in 0..50 {
        match c.read() {
            V::Err(e) if e.starts_with("NOQUORUM") => {}
            other => panic!("reply {i} without a quorum: {other:?}"),
        }
    }
    assert!(matches!(c.cmd("GET late0"), V::Err(e) if e.starts_with("NOQUORUM")));
}
