//! End to end through the public API: JSON-lines files in, verdict out.

// Test helpers may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used)]

use chorus_check::trace::{chain, digest, merge_by_time};
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
            line(
                100 + node,
                me,
                Ev::Install { view: 1, members: members.clone(), loading: vec![], recovered: vec![] },
            ),
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

/// Node 1 founds the group and applies one total message; node 2 joins in view 2 and loads
/// `loaded` as its state; both then apply a safe message and report at view 3.
fn state_transfer_trace(loaded: (u64, u64)) -> Vec<TraceEvent> {
    let (a, b) = (p(1), p(2));
    let (d1, d2) = (digest(b"set x 1"), digest(b"set x 2"));
    let after_one = (1, chain(0, d1));
    let after_two = (2, chain(chain(0, d1), d2));
    let evs = [
        (Some(a), Ev::Start { bootstrap: true }),
        (Some(a), Ev::Install { view: 1, members: vec![a], loading: vec![], recovered: vec![] }),
        (Some(a), Ev::Digest { view: 1, applied: 0, hash: 0 }),
        (Some(a), Ev::Send { view: 1, seq: 1, digest: d1, order: Order::Total }),
        (Some(a), Ev::Deliver { sender: a, view: 1, seq: 1, digest: d1, order: Order::Total }),
        (Some(b), Ev::Start { bootstrap: false }),
        (Some(a), Ev::Install { view: 2, members: vec![a, b], loading: vec![b], recovered: vec![] }),
        (Some(a), Ev::Digest { view: 2, applied: after_one.0, hash: after_one.1 }),
        (Some(b), Ev::Install { view: 2, members: vec![a, b], loading: vec![b], recovered: vec![] }),
        (Some(a), Ev::Send { view: 2, seq: 1, digest: d2, order: Order::Safe }),
        (Some(a), Ev::Deliver { sender: a, view: 2, seq: 1, digest: d2, order: Order::Safe }),
        (Some(b), Ev::StateLoaded { view: 2, applied: loaded.0, hash: loaded.1 }),
        (Some(b), Ev::Deliver { sender: a, view: 2, seq: 1, digest: d2, order: Order::Safe }),
        (Some(a), Ev::Install { view: 3, members: vec![a, b], loading: vec![], recovered: vec![] }),
        (Some(a), Ev::Digest { view: 3, applied: after_two.0, hash: after_two.1 }),
        (Some(b), Ev::Install { view: 3, members: vec![a, b], loading: vec![], recovered: vec![] }),
        (Some(b), Ev::Digest { view: 3, applied: after_two.0, hash: after_two.1 }),
        (None, Ev::Phase { name: "liveness".into() }),
        (None, Ev::End),
    ];
    let mut buf = Vec::new();
    for (t, (who, ev)) in evs.into_iter().enumerate() {
        write_jsonl(&mut buf, &line(t as u64 + 1, who, ev)).unwrap();
    }
    read_jsonl(buf.as_slice()).unwrap()
}

#[test]
fn a_state_transfer_round_trips_and_passes() {
    let good = (1, chain(0, digest(b"set x 1")));
    assert_eq!(check_trace(&state_transfer_trace(good)), Ok(()));
}

#[test]
fn a_wrong_transferred_state_is_reported() {
    let v = check_trace(&state_transfer_trace((0, 0))).unwrap_err();
    assert_eq!(v.guarantee, Guarantee::G11StateTransfer);
    assert!(
        v.to_string().starts_with("G11 state transfer violated at t=12ns: at the start of view 2 n2.0"),
        "{v}"
    );
}
