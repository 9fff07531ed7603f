//! `chorus bench`: a group of three members on loopback, every member multicasting, per
//! ordering and payload size; and, in the same run, the raw loopback TCP fan-out it is compared
//! with. A benchmark, not a test: it prints figures and ratios and asserts nothing.
//!
//! The three members run in this process, on one tokio runtime (the machine's cores shared as
//! they would be by three processes), over real TCP connections on 127.0.0.1. Throughput: every
//! member multicasts as fast as back-pressure lets it; figure = deliveries per second at one
//! member (all members' messages, own included), mean over members. Latency: every member
//! multicasts at a fixed rate; a payload carries its send time; latency = delivery time minus
//! send time at each receiver (one clock: one process).

use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use chorus_core::{Event, Order};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{NodeConfig, Partial};
use crate::runtime::{Events, Member};

/// One figure.
#[derive(Clone, Debug, Default)]
pub struct Figure {
    /// Deliveries per second at one member (mean over members).
    pub rate: f64,
    /// `rate` times the payload size, in MB/s (10^6).
    pub mbps: f64,
    /// Median latency, if measured.
    pub p50: Option<Duration>,
    /// 99th percentile latency, if measured.
    pub p99: Option<Duration>,
    /// CPU time the whole process used per second of measurement (2.0: two cores busy), if
    /// known: on a shared machine, `rate / cpu` compares runs better than `rate` alone.
    pub cpu: Option<f64>,
}

/// CPU time used by this process so far (all threads).
fn process_cpu() -> Option<Duration> {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID).ok().map(Duration::from)
}

fn cfg(node: u64, seed: Option<std::net::SocketAddr>) -> anyhow::Result<NodeConfig> {
    Ok(Partial {
        node: Some(node),
        listen: Some("127.0.0.1:0".into()),
        seeds: seed.map(|a| vec![format!("1@{a}")]),
        secret: Some("bench secret 0123456789".into()),
        bootstrap: Some(seed.is_none()),
        state_transfer: Some(false),
        ..Partial::default()
    }
    .build()?)
}

async fn group() -> anyhow::Result<Vec<(Member, Events)>> {
    let (m1, e1) = Member::start(cfg(1, None)?).await?;
    let seed = Some(m1.listen_addr());
    let mut out = vec![(m1, e1)];
    for n in 2..=3 {
        out.push(Member::start(cfg(n, seed)?).await?);
    }
    // Wait for every member to be in the view of three.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut ok = true;
        for (m, _) in &out {
            let s = m.status().await?;
            ok &= s.view.is_some_and(|v| v.members.len() == 3) && s.status == chorus_core::Status::Member;
        }
        if ok {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the group of 3 did not form");
        for (_, e) in out.iter_mut() {
            while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(1), e.next()).await {}
        }
    }
    Ok(out)
}

/// Runs one figure: every member multicasting `payload`-byte messages in `order`, at `rate`
/// per second each (None: as fast as it can), for `secs` seconds of measurement.
pub async fn figure(order: Order, payload: usize, rate: Option<f64>, secs: f64) -> anyhow::Result<Figure> {
    let members = group().await?;
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    // Flat out: many multicasts in flight per member (each task waits for its own); at a fixed
    // rate: one task per member.
    let tasks = if rate.is_some() { 1 } else { 32 };
    for (m, _) in members.iter().flat_map(|x| std::iter::repeat_n(x, tasks)) {
        let (m, stop) = (m.clone(), stop.clone());
        senders.push(tokio::spawn(async move {
            let mut body = vec![0u8; payload.max(8)];
            // Flat out, every message carries the same bytes: one buffer shared by all of them
            // (as the raw TCP figure writes one buffer), so that the figure is the group's cost,
            // not the bench's allocator's. Paced, each payload carries its send time.
            let same = Bytes::copy_from_slice(&body);
            let mut next = Instant::now();
            while !stop.load(AtomicOrdering::Relaxed) {
                let msg = match rate {
                    Some(r) => {
                        next += Duration::from_secs_f64(1.0 / r);
                        tokio::time::sleep_until(next.into()).await;
                        let sent = t0.elapsed().as_nanos() as u64;
                        body[..8].copy_from_slice(&sent.to_le_bytes());
                        Bytes::copy_from_slice(&body)
                    }
                    None => same.clone(),
                };
                if m.multicast(order, msg).await.is_err() {
                    return;
                }
            }
        }));
    }
    let warmup = Duration::from_millis(500);
    let measure = Duration::from_secs_f64(secs);
    // The measured window, as a flag the readers look at (a clock reading per delivery would
    // cost the bench more than some of what it measures).
    let measuring = Arc::new(AtomicBool::new(false));
    let end = tokio::time::Instant::now() + warmup + measure;
    let clock = {
        let measuring = measuring.clone();
        tokio::spawn(async move {
            tokio::time::sleep(warmup).await;
            let (c0, w0) = (process_cpu(), Instant::now());
            measuring.store(true, AtomicOrdering::Relaxed);
            tokio::time::sleep(measure).await;
            measuring.store(false, AtomicOrdering::Relaxed);
            let (c1, w1) = (process_cpu(), Instant::now());
            c0.zip(c1).map(|(a, b)| b.saturating_sub(a).as_secs_f64() / (w1 - w0).as_secs_f64())
        })
    };
    let mut readers = Vec::new();
    let mut events: Vec<Events> = Vec::new();
    let mut handles = Vec::new();
    for (m, e) in members {
        handles.push(m);
        events.push(e);
    }
    for mut e in events {
        let measuring = measuring.clone();
        readers.push(tokio::spawn(async move {
            let mut count = 0u64;
            let mut lat = Vec::new();
            let deadline = tokio::time::sleep_until(end);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    biased;
                    () = &mut deadline => break,
                    ev = e.next() => match ev {
                        Some(Event::Delivered { payload, .. }) => {
                            if !measuring.load(AtomicOrdering::Relaxed) {
                                continue;
                            }
                            count += 1;
                            if rate.is_some() && payload.len() >= 8 {
                                let mut s = [0u8; 8];
                                s.copy_from_slice(&payload[..8]);
                                let now = t0.elapsed().as_nanos() as u64;
                                lat.push(now.saturating_sub(u64::from_le_bytes(s)));
                            }
                        }
                        Some(_) => {}
                        None => break,
                    },
                }
            }
            (count, lat)
        }));
    }
    let mut total = 0u64;
    let mut lats = Vec::new();
    for r in readers {
        let (c, l) = r.await.context("reader")?;
        total += c;
        lats.extend(l);
    }
    let cpu = clock.await.context("clock")?;
    stop.store(true, AtomicOrdering::Relaxed);
    for m in &handles {
        m.shutdown().await;
    }
    for s in senders {
        s.abort();
    }
    let per_member = total as f64 / 3.0 / measure.as_secs_f64();
    lats.sort_unstable();
    let pct = |p: f64| {
        (!lats.is_empty()).then(|| Duration::from_nanos(lats[((lats.len() - 1) as f64 * p) as usize]))
    };
    if std::env::var_os("CHORUS_BENCH_LAT").is_some() && !lats.is_empty() {
        let q: Vec<String> = [0.5, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999]
            .iter()
            .map(|p| format!("p{}={}us", p * 100.0, pct(*p).map_or(0, |d| d.as_micros())))
            .collect();
        eprintln!("  [{order:?} {payload} B latency: {}]", q.join(" "));
    }
    if std::env::var_os("CHORUS_BENCH_CPU").is_some() {
        eprintln!(
            "  [{order:?} {payload} B{}: {per_member:.0} deliv/s, cpu {:.2} cores, {:.0} deliv per cpu-s]",
            if rate.is_some() { " paced" } else { "" },
            cpu.unwrap_or(0.0),
            per_member / cpu.unwrap_or(f64::NAN)
        );
    }
    Ok(Figure {
        rate: per_member,
        mbps: per_member * payload as f64 / 1e6,
        p50: pct(0.5),
        p99: pct(0.99),
        cpu,
    })
}

/// Raw loopback TCP fan-out: one sender writes `payload`-byte messages to two receivers in
/// 64 KiB writes; MB/s per receiver.
pub async fn tcp_fanout(payload: usize, secs: f64) -> anyhow::Result<Figure> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut receivers = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        receivers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 1 << 16];
            let mut n = 0u64;
            while let Ok(k) = s.read(&mut buf).await {
                if k == 0 {
                    break;
                }
                n += k as u64;
            }
            n
        }));
    }
    let mut outs = Vec::new();
    for _ in 0..2 {
        let (s, _) = listener.accept().await?;
        s.set_nodelay(true)?;
        outs.push(s);
    }
    let batch = vec![7u8; (65536 / payload.max(1)).max(1) * payload.max(1)];
    let end = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        for o in outs.iter_mut() {
            o.write_all(&batch).await?;
        }
    }
    drop(outs);
    let mut bytes = 0;
    for r in receivers {
        bytes += r.await?;
    }
    let per = bytes as f64 / 2.0 / secs;
    Ok(Figure { rate: per / payload as f64, mbps: per / 1e6, p50: None, p99: None, cpu: None })
}
