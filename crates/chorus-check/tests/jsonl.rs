//! End to end through the public API: JSON-lines files in, verdict out.

// Test helpers may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used)]

use chorus_check::trace::{digest, merge_by_time};
use chorus_check::{check_trace, read_jsonl, write_jsonl, Checker, Ev, Guarantee, Order, Proc, TraceEvent};

fn p(node: u64) -> Proc {
    Proc { node, inc: 0 }
}

fn line(t: u64, p: Option<Proc>, ev: Ev) -> TraceEvent {
    TraceEvent { t, p, ev }
}

/// Three nodes, one view, a multicast from node 1, each node's lines in its own file.
fn per_node_files(deliver_at_3: bool) -> Vec<Vec<u8>> {
    let members = vec![p(1), p(2), p(3)];
    let d = digest(b"hello");
    let mut files = Vec::new();
    for node in 1..=3 {
        let me = Some(p(node));
        let mut evs = vec![
            line(10 + node, me, Ev::Start { bootstrap: node == 1 }),
            line(100 + node, me, Ev::Install { view: 1, members: members.clone() }),
        ];
        if node == 1 {
            evs.push(line(200, me, Ev::Send { view: 1, seq: 1, digest: d, order: Order::Total }));
        }
        if node != 3 || deliver_at_3 {
            evs.push(line(
                300 + node,
                me,
                Ev::Deliver { sender: p(1), view: 1, seq: 1, digest: d, order: Order::Total },
            ));
        }
        if node == 1 {
            // The harness's lines travel in node 1's file here; any file would do.
            evs.push(line(250, None, Ev::Phase { name: "liveness".into() }));
            evs.push(line(1000, None, Ev::End));
        }
        let mut buf = Vec::new();
        for ev in &evs {
            write_jsonl(&mut buf, ev).unwrap();
        }
        files.push(buf);
    }
    files
}

fn merged(files: &[Vec<u8>]) -> Vec<TraceEvent> {
    merge_by_time(files.iter().map(|f| read_jsonl(f.as_slice()).unwrap()).collect())
}

#[test]
fn merged_per_node_files_pass() {
    let events = merged(&per_node_files(true));
    assert_eq!(check_trace(&events), Ok(()));
}

#[test]
fn a_missing_delivery_is_reported_at_finish() {
    let events = merged(&per_node_files(false));
    let mut checker = Checker::new();
    for ev in &events {
        assert_eq!(checker.observe(ev), Ok(()), "safety holds");
    }
    let v = checker.finish().unwrap_err();
    assert_eq!(v.guarantee, Guarantee::G12Liveness);
    assert_eq!(v.t, 1000);
    assert!(v.detail.contains("n3.0 never delivered (n1.0, v1, #1)"), "{v}");
}
