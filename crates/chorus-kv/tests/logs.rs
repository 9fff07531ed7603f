//! What an operator reads in a node's log (issue: "logs an operator can read"): each view with
//! why it changed (joined, departed, loading the state), state transfers with the donor and
//! bytes, SIGTERM; plain text by default, JSON lines with `CHORUS_LOG_FORMAT=json`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::time::Duration;

fn log(s: &cluster::Store, i: u16) -> String {
    std::fs::read_to_string(s.dir.join(format!("node{}.log", i + 1))).unwrap_or_default()
}

#[test]
fn views_transfers_and_departures_are_logged_with_their_causes() {
    let mut s = cluster::Store::up("logs");
    // Node 2 restarts with JSON logs: it joins as a new member and loads the state.
    s.env.insert(1, vec![("CHORUS_LOG_FORMAT".into(), "json".into())]);
    s.kill(1);
    s.start(1, false);
    cluster::wait_converged(&s, Duration::from_secs(30), true);
    // Node 3 crashes: the others install a view without it, and say why.
    s.kill(2);
    cluster::wait_for("a view without node 3 in node 1's log", Duration::from_secs(30), || {
        log(&s, 0).lines().any(|l| l.contains("installed: 2 members [n1 n2]; departed: n3"))
    });
    let text = log(&s, 0);
    assert!(text.lines().any(|l| l.contains("state transfer: giving the state to n2")), "{text}");
    assert!(!text.contains('\u{1b}'), "ANSI colour codes in a log file:\n{text}");

    let json: Vec<serde_json::Value> = log(&s, 1)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let messages: Vec<&str> = json.iter().filter_map(|v| v["fields"]["message"].as_str()).collect();
    assert!(
        messages.iter().any(|m| m.starts_with("state transfer: loading the group's state from n")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.starts_with("state transfer: loaded the state of view")),
        "{messages:?}"
    );
    assert!(messages.iter().any(|m| m.contains("departed: n3")), "{messages:?}");
    assert!(json.iter().all(|v| v["level"].is_string() && v["timestamp"].is_string()), "{json:?}");

    // SIGTERM is logged before the node leaves.
    s.signal(0, "-TERM");
    cluster::wait_for("node 1's SIGTERM line", Duration::from_secs(15), || {
        log(&s, 0).contains("SIGTERM: leaving the group and stopping")
    });
}
