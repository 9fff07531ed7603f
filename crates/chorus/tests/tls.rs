//! Members over mutual TLS on loopback: a group of three forms and delivers in total order; a
//! node whose certificate comes from another CA, a node that speaks plaintext, and a node whose
//! certificate does not name the address it is dialed at are refused, each with its reason in
//! the log, and the first two never disturb the group.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use chorus::config::Partial;
use chorus::tls::dev_certs;
use chorus::{Event, Member, Order};
use tokio::time::timeout;

/// Every log line of this test binary, to look for the refusals' reasons.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static LogBuf {
    static LOGS: OnceLock<LogBuf> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = LogBuf::default();
        let w = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .with_ansi(false)
            .with_writer(move || w.clone())
            .init();
        buf
    })
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("chorus-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A node's config: TLS with `certs/NAME.pem` (`tls` = Some(dir, name)), else plaintext.
fn config(
    node: u64,
    listen: &str,
    seeds: &[(u64, std::net::SocketAddr)],
    tls: Option<(&Path, &str)>,
) -> chorus::config::NodeConfig {
    let mut c = Partial {
        node: Some(node),
        listen: Some(listen.into()),
        seeds: Some(seeds.iter().map(|(n, a)| format!("{n}@{a}")).collect()),
        secret: Some("tls test secret".into()),
        bootstrap: Some(seeds.is_empty()),
        heartbeat_ms: Some(20),
        suspect_timeout_ms: Some(300),
        plaintext: tls.is_none().then_some(true),
        tls_cert: tls.map(|(d, n)| d.join(format!("{n}.pem"))),
        tls_key: tls.map(|(d, n)| d.join(format!("{n}-key.pem"))),
        tls_ca: tls.map(|(d, _)| d.join(dev_certs::CA_CERT)),
        ..Partial::default()
    }
    .build()
    .unwrap();
    c.state_transfer = false;
    c
}

async fn wait_view(events: &mut chorus::Events, size: usize) -> chorus::View {
    timeout(Duration::from_secs(10), async {
        loop {
            match events.next().await {
                Some(Event::ViewInstalled { view, .. }) if view.members.len() == size => return view,
                Some(_) => {}
                None => panic!("member stopped"),
            }
        }
    })
    .await
    .expect("a view of the expected size")
}

/// Waits until the log holds `what` (another task logs it).
async fn log_shows(what: &str, within: Duration) -> bool {
    let end = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < end {
        if log_text().contains(what) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_over_mutual_tls_delivers_and_refuses_strangers_with_reasons() {
    logs();
    let ours = temp_dir("ours");
    let (ca, _) = dev_certs::ensure_ca(&ours, "ours").unwrap();
    for name in ["node-1", "node-2", "node-3", "node-8"] {
        dev_certs::make_leaf(&ours, &ca, name, &[]).unwrap();
    }
    let theirs = temp_dir("theirs");
    let (other_ca, _) = dev_certs::ensure_ca(&theirs, "theirs").unwrap();
    dev_certs::make_leaf(&theirs, &other_ca, "node-9", &[]).unwrap();

    // Three members over TLS.
    let (m1, e1) = Member::start(config(1, "127.0.0.1:0", &[], Some((&ours, "node-1")))).await.unwrap();
    let seed = [(1, m1.listen_addr())];
    let mut members = vec![m1];
    let mut events = vec![e1];
    for node in 2..=3 {
        let name = format!("node-{node}");
        let (m, e) = Member::start(config(node, "127.0.0.1:0", &seed, Some((&ours, &name)))).await.unwrap();
        members.push(m);
        events.push(e);
    }
    let mut view = None;
    for e in events.iter_mut() {
        view = Some(wait_view(e, 3).await.id);
    }
    const EACH: usize = 20;
    for (i, m) in members.iter().enumerate() {
        for k in 0..EACH {
            m.multicast(Order::Total, Bytes::from(format!("{i}:{k}"))).await.unwrap();
        }
    }
    let mut orders = Vec::new();
    for e in events.iter_mut() {
        let mut got = Vec::new();
        timeout(Duration::from_secs(10), async {
            while got.len() < EACH * 3 {
                if let Some(Event::Delivered { payload, .. }) = e.next().await {
                    got.push(payload);
                }
            }
        })
        .await
        .expect("every total-order multicast delivered over TLS");
        orders.push(got);
    }
    assert!(orders.iter().all(|o| o == &orders[0]), "one total order at every member");

    // Strangers: a certificate of another CA, and plaintext. Neither gets in.
    let (m9, mut e9) =
        Member::start(config(9, "127.0.0.1:0", &seed, Some((&theirs, "node-9")))).await.unwrap();
    let (m7, mut e7) = Member::start(config(7, "127.0.0.1:0", &seed, None)).await.unwrap();
    assert!(
        log_shows("UnknownIssuer", Duration::from_secs(5)).await,
        "a certificate of another CA is refused as such:\n{}",
        log_text()
    );
    assert!(
        log_shows("does not speak TLS", Duration::from_secs(5)).await,
        "a plaintext peer is refused as such:\n{}",
        log_text()
    );
    assert!(
        log_shows("does the peer run with TLS?", Duration::from_secs(5)).await,
        "the plaintext dialer is told why:\n{}",
        log_text()
    );
    let quiet = timeout(Duration::from_secs(2), async {
        loop {
            let (who, ev) = tokio::select! {
                ev = e9.next() => ("node 9", ev),
                ev = e7.next() => ("node 7", ev),
                ev = events[0].next() => ("the group", ev),
            };
            match ev {
                Some(Event::ViewInstalled { view, .. }) => return format!("{who} installed {view:?}"),
                Some(_) => {}
                None => return format!("{who} stopped"),
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "{}", quiet.unwrap_or_default());
    assert_eq!(members[0].status().await.unwrap().view.map(|v| v.id), view, "the group was not disturbed");
    m9.shutdown().await;
    m7.shutdown().await;

    // A node dialed at an address its certificate does not name (127.0.0.2; it names
    // 127.0.0.1, localhost and ::1): node 8 founds a group there, and node 10, whose only
    // seed it is, refuses it and says why.
    let (m8, _e8) = Member::start(config(8, "127.0.0.2:0", &[], Some((&ours, "node-8")))).await.unwrap();
    let (m10, _e10) =
        Member::start(config(10, "127.0.0.1:0", &[(8, m8.listen_addr())], Some((&ours, "node-1"))))
            .await
            .unwrap();
    assert!(
        log_shows("not valid for name \"127.0.0.2\"", Duration::from_secs(10)).await,
        "a certificate that does not name the dialed address is refused as such:\n{}",
        log_text()
    );
    m10.shutdown().await;
    m8.shutdown().await;
    for m in members {
        m.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&ours);
    let _ = std::fs::remove_dir_all(&theirs);
}
