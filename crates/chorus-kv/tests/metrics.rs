//! What an operator's Prometheus and browser see (issue 10): the metrics of 3 real nodes
//! through a crash and a re-join move as they must, pass `promtool check metrics`, and the
//! health check turns away a node without a quorum; the status page, rendered by headless
//! Chromium, shows the members of the view before and after a crash, without console errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use chorus_kv::resp_client::Client;

/// `GET path` on `port`: (status, body), or None if the node does not answer.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

fn scrape(s: &cluster::Store, i: u16) -> String {
    match get(s.metrics_port(i), "/metrics") {
        Some((200, body)) => body,
        other => panic!("node {} metrics: {other:?}; logs in {}", i + 1, s.dir.display()),
    }
}

/// The value of the sample `name` (with its labels, as written: `a_total{cause="silent"}`).
fn value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

/// Set by scripts/test.sh where it installed the tools: then a missing one fails the test.
fn required() -> Option<std::ffi::OsString> {
    std::env::var_os("CHORUS_REQUIRE_METRICS_TOOLS")
}

/// `promtool check metrics` (Debian's `prometheus` package) accepts the text.
fn promtool_accepts(text: &str) {
    if Command::new("promtool").arg("--version").output().is_err() {
        assert!(required().is_none(), "promtool missing, and CHORUS_REQUIRE_METRICS_TOOLS is set");
        eprintln!("SKIP promtool check: promtool not installed (apt-get install prometheus)");
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn redis(port: u16, args: &[&str]) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut c = Client::connect(("127.0.0.1", port)).await.unwrap();
        format!("{:?}", c.cmd(args).await.unwrap())
    })
}

/// A reply as text: a bulk string's bytes, a status or an error's text.
fn redis_text(port: u16, args: &[&str]) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut c = Client::connect(("127.0.0.1", port)).await.unwrap();
        match c.cmd(args).await.unwrap() {
            chorus_kv::resp_client::Value::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
            chorus_kv::resp_client::Value::Simple(t) | chorus_kv::resp_client::Value::Error(t) => t,
            other => format!("{other:?}"),
        }
    })
}

/// INFO `section`'s field `key`.
fn info_field(port: u16, section: &str, key: &str) -> String {
    let text = redis_text(port, &["INFO", section]);
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("INFO {section} has no {key}:\n{text}"))
}

fn members(s: &cluster::Store, i: u16) -> Option<f64> {
    let (_, body) = get(s.metrics_port(i), "/metrics")?;
    Some(value(&body, "chorus_view_members"))
}

/// The size of the last state node `i` loaded, from its log.
fn loaded_bytes(s: &cluster::Store, i: u16) -> Option<u64> {
    let log = std::fs::read_to_string(s.dir.join(format!("node{}.log", i + 1))).ok()?;
    let line = log.lines().rev().find(|l| l.contains("state transfer: loaded the state of view"))?;
    let (_, rest) = line.split_once(" (")?;
    rest.split(' ').next()?.parse().ok()
}

#[test]
fn metrics_follow_a_crash_and_a_rejoin() {
    let mut s = cluster::Store::fresh("metrics", 3, Vec::new(), None, "");
    s.metrics = true;
    s.start_every();
    cluster::wait_converged(&s, Duration::from_secs(30), false);
    // Some state, so that the re-joining node loads something.
    let value_1k = "v".repeat(1024);
    for k in 0..200 {
        assert_eq!(redis(s.port(0), &["SET", &format!("key{k}"), &value_1k]), "Simple(\"OK\")");
    }
    let before: Vec<String> = (0..3).map(|i| scrape(&s, i)).collect();
    for text in &before {
        promtool_accepts(text);
    }
    assert_eq!(value(&before[0], "chorus_kv_commands_total{command=\"set\"}"), 200.0);
    assert_eq!(value(&before[0], "chorus_kv_command_duration_seconds_count{kind=\"write\"}"), 200.0);
    // INFO carries the same figures, Redis's way.
    let p1 = s.port(0);
    assert!(redis_text(p1, &["INFO", "commandstats"]).contains("cmdstat_set:calls=200"));
    assert_eq!(info_field(p1, "stats", "total_writes_processed"), "200");
    assert!(info_field(p1, "memory", "used_memory_rss").parse::<u64>().unwrap() > 1 << 20);
    assert_eq!(info_field(p1, "replication", "role"), "master");
    assert_eq!(info_field(p1, "replication", "chorus_members"), "3");
    assert_eq!(redis_text(p1, &["PING"]), "PONG");
    for (i, text) in before.iter().enumerate() {
        assert_eq!(value(text, "chorus_view_members"), 3.0, "node {}", i + 1);
        assert_eq!(value(text, "chorus_primary_view"), 1.0, "node {}", i + 1);
        assert_eq!(get(s.metrics_port(i as u16), "/health").map(|r| r.0), Some(200));
    }

    // Node 3 crashes; the survivors install a view of 2; it restarts as a new member and
    // loads the state from one of them.
    s.kill(2);
    cluster::wait_for("a view of 2 at both survivors", Duration::from_secs(30), || {
        (0..2).all(|i| members(&s, i) == Some(2.0))
    });
    s.start(2, false);
    cluster::wait_converged(&s, Duration::from_secs(30), true);
    cluster::wait_for("a view of 3 at every node", Duration::from_secs(30), || {
        (0..3).all(|i| members(&s, i) == Some(3.0))
    });
    let after: Vec<String> = (0..3).map(|i| scrape(&s, i)).collect();
    for text in &after {
        promtool_accepts(text);
    }
    let delta = |i: usize, name: &str| value(&after[i], name) - value(&before[i], name);
    let silent = "chorus_suspicions_total{cause=\"silent\"}";
    for i in 0..2 {
        assert_eq!(
            delta(i, "chorus_views_installed_total"),
            2.0,
            "node {}: one view without 3, one with it",
            i + 1
        );
        assert!(delta(i, silent) <= 1.0, "node {} suspected the crashed node more than once", i + 1);
        assert_eq!(delta(i, "chorus_suspicions_total{cause=\"lagging\"}"), 0.0);
        assert_eq!(delta(i, "chorus_view_change_duration_seconds_count"), 2.0);
    }
    assert!(delta(0, silent) + delta(1, silent) >= 1.0, "nobody suspected the crashed node");
    // The transfer: what the joiner loaded is what its donor streamed, and its log says so.
    let size = loaded_bytes(&s, 2).expect("node 3's log names the state it loaded");
    assert!(size > 200 * 1024, "the state holds the 200 KiB written: {size}");
    assert_eq!(value(&after[2], "chorus_state_transfer_received_bytes_total"), size as f64);
    assert_eq!(
        delta(0, "chorus_state_transfer_sent_bytes_total")
            + delta(1, "chorus_state_transfer_sent_bytes_total"),
        size as f64,
        "the donor streamed the state once"
    );
    assert_eq!(value(&after[2], "chorus_state_transfer_duration_seconds_count"), 1.0);
    assert_eq!(value(&after[2], "chorus_state_transfer_loading"), 0.0);
    let applied: Vec<f64> = after.iter().map(|t| value(t, "chorus_kv_applied_index")).collect();
    assert!(applied.iter().all(|a| *a == applied[0] && *a >= 200.0), "{applied:?}");

    // Two crashes: node 1 alone has no quorum, and its health check says so.
    s.kill(1);
    s.kill(2);
    cluster::wait_for("node 1's /health to turn it away", Duration::from_secs(30), || {
        get(s.metrics_port(0), "/health")
            .is_some_and(|(code, body)| code == 503 && body.contains("no quorum"))
    });
    assert_eq!(value(&scrape(&s, 0), "chorus_primary_view"), 0.0);
    // A load balancer's PING gets an error, not PONG, and INFO says the node does not serve.
    let ping = redis_text(p1, &["PING"]);
    assert!(ping.starts_with("NOQUORUM"), "PING at a node without quorum: {ping}");
    assert_eq!(info_field(p1, "replication", "chorus_serving"), "0");
}

/// Headless Chromium's DOM of node `i`'s status page after its script ran, and its console.
fn render(s: &cluster::Store, i: u16, shot: &str) -> (String, String) {
    let url = format!("http://127.0.0.1:{}/", s.metrics_port(i));
    let common = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000"];
    let dom = Command::new("chromium")
        .args(common)
        .args(["--enable-logging=stderr", "--v=0", "--dump-dom", &url])
        .output()
        .unwrap();
    // A phone's width: the page must read there too (the picture is for a human to look at).
    let _ = Command::new("chromium")
        .args(common)
        .args(["--hide-scrollbars", "--window-size=420,900"])
        .arg(format!("--screenshot={}", s.dir.join(shot).display()))
        .arg(&url)
        .output();
    (String::from_utf8_lossy(&dom.stdout).into_owned(), String::from_utf8_lossy(&dom.stderr).into_owned())
}

fn member_rows(dom: &str) -> usize {
    let Some((_, rest)) = dom.split_once("<tbody id=\"members\">") else { return 0 };
    rest.split("</tbody>").next().unwrap_or("").matches("<tr>").count()
}

#[test]
fn status_page_shows_the_view_in_chromium() {
    if Command::new("chromium").arg("--version").output().is_err() {
        assert!(required().is_none(), "chromium missing, and CHORUS_REQUIRE_METRICS_TOOLS is set");
        eprintln!("SKIP status page test: chromium not installed (apt-get install chromium)");
        return;
    }
    let mut s = cluster::Store::fresh("statuspage", 3, Vec::new(), None, "");
    s.metrics = true;
    s.start_every();
    cluster::wait_converged(&s, Duration::from_secs(30), false);
    let (dom, console) = render(&s, 0, "page-3-members.png");
    assert_eq!(member_rows(&dom), 3, "{dom}");
    assert!(dom.contains(">primary<"), "{dom}");
    let errors: Vec<&str> = console.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(errors.is_empty(), "console messages: {errors:?}");

    s.kill(2);
    cluster::wait_for("a view of 2 at node 1", Duration::from_secs(30), || members(&s, 0) == Some(2.0));
    let (dom, console) = render(&s, 0, "page-2-members.png");
    assert_eq!(member_rows(&dom), 2, "{dom}");
    assert!(dom.contains("departed: n3"), "the view history says why: {dom}");
    let errors: Vec<&str> = console.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(errors.is_empty(), "console messages: {errors:?}");
    eprintln!("screenshots: {}", s.dir.join("page-*-members.png").display());
}
