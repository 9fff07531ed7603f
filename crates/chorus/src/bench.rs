//! `chorus bench`: a group of three members on loopback, every member multicasting, per
//! ordering and payload size; and, in the same run, the raw loopback TCP fan-out it is compared
//! with. A benchmark, not a test: it prints figures and ratios and asserts nothing.
//!
//! By default each member is its own OS process, as `chorus node` runs one and as the peers it is
//! compared with run theirs (three Corosync daemons, three JVMs): `chorus bench` starts three
//! children of its own executable (`chorus bench-member`, hidden from `--help`), each one
//! [`Member`] on its own multi-threaded tokio runtime, connected over real TCP on 127.0.0.1.
//! A fresh group of three is formed for every figure, with state transfer off unless asked for
//! (it only acts at view changes, and none is expected while measuring; a member that sees one
//! in its window says so on stderr). The parent tells the children over stdin when the
//! measured window starts and ends (CLOCK_MONOTONIC instants, one clock for every process on the
//! host), so the three windows coincide; each child reports its figures as lines on stdout; the
//! parent only coordinates and does no group work. `--in-process` keeps the older mode: the three
//! members in the bench's own process, on one runtime.
//!
//! Throughput: every member multicasts as fast as back-pressure lets it (32 multicasts in
//! flight each). Rate at a member = deliveries it counted (all members' messages, own included)
//! between the instants its window really opened and closed, divided by that measured duration
//! (not the nominal one: timers overshoot); the figure is the mean over the three members.
//! Latency: every member multicasts at a fixed rate; a payload carries its send time (read just
//! before `multicast`, so waiting for back-pressure counts); latency = delivery time minus send
//! time at each receiver, over every member's deliveries in the window. CPU (with
//! `CHORUS_BENCH_CPU`): CPU time of the members' process(es) per second of window.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use chorus_core::{Event, Order};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;

use crate::config::{NodeConfig, Partial};
use crate::runtime::{Events, Member};

/// One figure.
#[derive(Clone, Debug, Default)]
pub struct Figure {
    /// Deliveries per second at one member (mean over members), over measured windows.
    pub rate: f64,
    /// `rate` times the payload size, in MB/s (10^6).
    pub mbps: f64,
    /// Median latency, if measured.
    pub p50: Option<Duration>,
    /// 99th percentile latency, if measured.
    pub p99: Option<Duration>,
    /// CPU time the members used per second of measurement (2.0: two cores busy): the three
    /// member processes summed, or the whole bench process in-process; if known. On a shared
    /// machine, `rate / cpu` compares runs better than `rate` alone.
    pub cpu: Option<f64>,
    /// With a scraper: the scrapes of the members' `/metrics` answered.
    pub scrapes: Option<u64>,
}

/// Where the members run.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Each member in its own process: this executable run as `chorus bench-member`.
    Processes {
        /// The `chorus` executable.
        exe: std::path::PathBuf,
    },
    /// The three members in this process, on its tokio runtime.
    InProcess,
}

/// Warm-up before the measured window: connections and windows settle.
const WARMUP: Duration = Duration::from_millis(500);
/// Multicasts in flight per member when running flat out (each task waits for its own).
const FLAT_OUT_TASKS: usize = 32;
/// Longest line a child may write or the parent may send (a `lat` line holds at most
/// `LAT_PER_LINE` numbers of at most 20 digits).
const MAX_LINE: usize = 64 * 1024;
/// Latency samples per `lat` line.
const LAT_PER_LINE: usize = 512;
/// Most latency samples taken from one child (1,000 msgs/s from each of 3 senders for an hour).
const MAX_SAMPLES: usize = 3_000 * 3_600;

/// Parses an ordering's name as `--orders` spells it.
pub fn parse_order(name: &str) -> anyhow::Result<Order> {
    match name {
        "fifo" => Ok(Order::Fifo),
        "causal" => Ok(Order::Causal),
        "total" => Ok(Order::Total),
        "safe" => Ok(Order::Safe),
        other => Err(anyhow::anyhow!("unknown ordering {other:?} (fifo, causal, total, safe)")),
    }
}

/// An ordering's name, as [`parse_order`] reads it.
pub fn order_name(order: Order) -> &'static str {
    match order {
        Order::Fifo => "fifo",
        Order::Causal => "causal",
        Order::Total => "total",
        Order::Safe => "safe",
    }
}

/// CPU time used by this process so far (all threads).
fn process_cpu() -> Option<Duration> {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID).ok().map(Duration::from)
}

/// CLOCK_MONOTONIC, in nanoseconds: the clock of latency stamps and window instants. It is one
/// clock for every process on the host (std's `Instant` reads it too, but cannot be sent to
/// another process); wall-clock time could step during a run. Reading it cannot fail on the
/// systems chorus runs on; if it did, 0 would show as absurd figures, not plausible ones.
fn mono_nanos() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_or(0, |t| Duration::from(t).as_nanos() as u64)
}

async fn sleep_until_mono(at: u64) {
    tokio::time::sleep(Duration::from_nanos(at.saturating_sub(mono_nanos()))).await;
}

fn cfg(
    node: u64,
    seed: Option<SocketAddr>,
    state_transfer: bool,
    tls: Option<&Path>,
    metrics: bool,
) -> anyhow::Result<NodeConfig> {
    Ok(Partial {
        node: Some(node),
        listen: Some("127.0.0.1:0".into()),
        seeds: seed.map(|a| vec![format!("1@{a}")]),
        secret: Some("bench secret 0123456789".into()),
        bootstrap: Some(seed.is_none()),
        state_transfer: Some(state_transfer),
        plaintext: Some(tls.is_none()),
        tls_cert: tls.map(|d| d.join(format!("node-{node}.pem"))),
        tls_key: tls.map(|d| d.join(format!("node-{node}-key.pem"))),
        tls_ca: tls.map(|d| d.join(crate::tls::dev_certs::CA_CERT)),
        metrics_listen: metrics.then(|| "127.0.0.1:0".to_string()),
        ..Partial::default()
    }
    .build()?)
}

/// Makes a development CA and the certificates of members 1 to 3 in `dir`, for a TLS bench.
pub fn make_bench_certs(dir: &Path) -> anyhow::Result<()> {
    let (ca, _) = crate::tls::dev_certs::ensure_ca(dir, "bench")?;
    for n in 1..=3 {
        crate::tls::dev_certs::make_leaf(dir, &ca, &format!("node-{n}"), &[])?;
    }
    Ok(())
}

/// The bench has no application state: with state transfer on, the checkpoint a joiner is
/// given is empty.
fn answer(m: &Member, ev: &Event) {
    if let Event::CheckpointRequest { view, .. } = ev {
        let (m, view) = (m.clone(), *view);
        tokio::spawn(async move {
            let _ = m.finish_checkpoint(view).await;
        });
    }
}

/// Waits until every member given is a member of a view of three (reading their events
/// meanwhile: a member whose queue is full stops).
async fn formed(members: &mut [(Member, Events)]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut ok = true;
        for (m, _) in members.iter() {
            let s = m.status().await?;
            ok &= s.view.is_some_and(|v| v.members.len() == 3) && s.status == chorus_core::Status::Member;
        }
        if ok {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the group of 3 did not form within 20 s");
        for (m, e) in members.iter_mut() {
            while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(1), e.next()).await {
                answer(m, &ev);
            }
        }
    }
}

/// Starts a member's senders: `payload`-byte messages in `order`, at `rate` per second (None:
/// as fast as back-pressure lets it), until `stop`.
fn senders(
    m: &Member,
    order: Order,
    payload: usize,
    rate: Option<f64>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let tasks = if rate.is_some() { 1 } else { FLAT_OUT_TASKS };
    (0..tasks)
        .map(|_| {
            let (m, stop) = (m.clone(), stop.clone());
            tokio::spawn(async move {
                let mut body = vec![0u8; payload.max(8)];
                // Flat out, every message carries the same bytes: one buffer shared by all of
                // them (as the raw TCP figure writes one buffer), so that the figure is the
                // group's cost, not the bench's allocator's. Paced, each carries its send time.
                let same = Bytes::copy_from_slice(&body);
                let mut next = Instant::now();
                while !stop.load(AtomicOrdering::Relaxed) {
                    let msg = match rate {
                        Some(r) => {
                            next += Duration::from_secs_f64(1.0 / r);
                            tokio::time::sleep_until(next.into()).await;
                            body[..8].copy_from_slice(&mono_nanos().to_le_bytes());
                            Bytes::copy_from_slice(&body)
                        }
                        None => same.clone(),
                    };
                    if m.multicast(order, msg).await.is_err() {
                        return;
                    }
                }
            })
        })
        .collect()
}

/// What one member counted in its window.
#[derive(Debug, Default)]
struct Tally {
    /// Deliveries.
    count: u64,
    /// Latencies (nanoseconds), if paced.
    lats: Vec<u64>,
    /// Membership events (block, view, suspicion, exclusion): a figure with any is not a
    /// steady state.
    changes: u64,
}

/// Counts a member's deliveries while `measuring` is set, until `close`; returns its events
/// (still to be read until the member stops) and the tally. The window is a flag the reader
/// looks at: a clock reading per delivery would cost the bench more than some of what it
/// measures.
async fn tally(
    mut e: Events,
    m: Member,
    measuring: Arc<AtomicBool>,
    paced: bool,
    close: impl Future<Output = ()>,
) -> (Events, Tally) {
    let mut t = Tally::default();
    tokio::pin!(close);
    loop {
        tokio::select! {
            biased;
            () = &mut close => break,
            ev = e.next() => match ev {
                Some(Event::Delivered { payload, .. }) => {
                    if !measuring.load(AtomicOrdering::Relaxed) {
                        continue;
                    }
                    t.count += 1;
                    if paced && payload.len() >= 8 {
                        let mut s = [0u8; 8];
                        s.copy_from_slice(&payload[..8]);
                        t.lats.push(mono_nanos().saturating_sub(u64::from_le_bytes(s)));
                    }
                }
                Some(ev) => {
                    if measuring.load(AtomicOrdering::Relaxed)
                        && matches!(
                            ev,
                            Event::Blocked { .. }
                                | Event::ViewInstalled { .. }
                                | Event::Suspected { .. }
                                | Event::Excluded { .. }
                        )
                    {
                        t.changes += 1;
                    }
                    answer(&m, &ev);
                }
                None => break,
            },
        }
    }
    (e, t)
}

/// The measured window as it really was.
#[derive(Clone, Copy, Debug)]
struct Window {
    nanos: u64,
    cpu_nanos: Option<u64>,
}

/// Opens the window (sets `measuring`) at CLOCK_MONOTONIC `start`, closes it at `end`, and
/// returns the instants it really opened and closed at (read just outside the flag's changes).
async fn window(start: u64, end: u64, measuring: &AtomicBool) -> Window {
    sleep_until_mono(start).await;
    let (c0, w0) = (process_cpu(), mono_nanos());
    measuring.store(true, AtomicOrdering::Relaxed);
    sleep_until_mono(end).await;
    measuring.store(false, AtomicOrdering::Relaxed);
    let (c1, w1) = (process_cpu(), mono_nanos());
    Window {
        nanos: w1.saturating_sub(w0).max(1),
        cpu_nanos: c0.zip(c1).map(|(a, b)| b.saturating_sub(a).as_nanos() as u64),
    }
}

/// Runs one figure: every member multicasting `payload`-byte messages in `order`, at `rate`
/// per second each (None: as fast as it can), for `secs` seconds of measurement; over mutual
/// TLS with the certificates in `tls` ([`make_bench_certs`]) if given, else plaintext. With
/// `scrape`, every member serves metrics and the bench scrapes each one's `/metrics` every
/// second, as Prometheus would (the figure's `scrapes` counts the answers).
#[allow(clippy::too_many_arguments)]
pub async fn figure(
    mode: &Mode,
    order: Order,
    payload: usize,
    rate: Option<f64>,
    secs: f64,
    state_transfer: bool,
    tls: Option<&Path>,
    scrape: bool,
) -> anyhow::Result<Figure> {
    anyhow::ensure!(secs > 0.0 && secs.is_finite(), "--seconds must be positive");
    let (per, scrapes) = match mode {
        Mode::Processes { exe } => {
            processes(exe, Run { order, payload, rate, state_transfer, tls, scrape }, secs).await?
        }
        Mode::InProcess => in_process(order, payload, rate, secs, state_transfer, tls, scrape).await?,
    };
    let mut f = summarize(order, payload, rate.is_some(), per);
    f.scrapes = scrapes;
    Ok(f)
}

/// Scrapes `/metrics` of every address once a second until `stop`; counts the `200` answers.
async fn scraper(addrs: Vec<SocketAddr>, stop: Arc<AtomicBool>) -> u64 {
    let mut ok = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(AtomicOrdering::Relaxed) {
        tick.tick().await;
        for a in &addrs {
            let get = async {
                let mut s = tokio::net::TcpStream::connect(a).await?;
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").await?;
                let mut body = Vec::new();
                s.read_to_end(&mut body).await?;
                Ok::<_, std::io::Error>(body.starts_with(b"HTTP/1.1 200"))
            };
            if let Ok(Ok(true)) = tokio::time::timeout(Duration::from_secs(2), get).await {
                ok += 1;
            }
        }
    }
    ok
}

/// Every member's tally and window, and the members' CPU time per second of window.
type PerMember = (Vec<(Tally, Window)>, Option<f64>);

fn summarize(order: Order, payload: usize, paced: bool, (per, cpu): PerMember) -> Figure {
    let name = order_name(order);
    let changes: u64 = per.iter().map(|(t, _)| t.changes).sum();
    if changes > 0 {
        eprintln!(
            "  [{name} {payload} B: {changes} membership events during the window: not a steady state]"
        );
    }
    let per_member = per.iter().map(|(t, w)| t.count as f64 / (w.nanos as f64 / 1e9)).sum::<f64>()
        / per.len().max(1) as f64;
    let mut lats: Vec<u64> = per.into_iter().flat_map(|(t, _)| t.lats).collect();
    lats.sort_unstable();
    let pct = |p: f64| {
        (!lats.is_empty()).then(|| Duration::from_nanos(lats[((lats.len() - 1) as f64 * p) as usize]))
    };
    if std::env::var_os("CHORUS_BENCH_LAT").is_some() && !lats.is_empty() {
        let q: Vec<String> = [0.5, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999]
            .iter()
            .map(|p| format!("p{}={}us", p * 100.0, pct(*p).map_or(0, |d| d.as_micros())))
            .collect();
        eprintln!("  [{name} {payload} B latency: {}]", q.join(" "));
    }
    if std::env::var_os("CHORUS_BENCH_CPU").is_some() {
        eprintln!(
            "  [{name} {payload} B{}: {per_member:.0} deliv/s, cpu {:.2} cores, {:.0} deliv per cpu-s]",
            if paced { " paced" } else { "" },
            cpu.unwrap_or(0.0),
            per_member / cpu.unwrap_or(f64::NAN)
        );
    }
    Figure {
        rate: per_member,
        mbps: per_member * payload as f64 / 1e6,
        p50: pct(0.5),
        p99: pct(0.99),
        cpu,
        scrapes: None,
    }
}

/// The window's CLOCK_MONOTONIC instants, from now.
fn plan(secs: f64) -> (u64, u64) {
    let start = mono_nanos() + WARMUP.as_nanos() as u64;
    (start, start + Duration::from_secs_f64(secs).as_nanos() as u64)
}

async fn in_process(
    order: Order,
    payload: usize,
    rate: Option<f64>,
    secs: f64,
    state_transfer: bool,
    tls: Option<&Path>,
    scrape: bool,
) -> anyhow::Result<(PerMember, Option<u64>)> {
    let (m1, e1) = Member::start(cfg(1, None, state_transfer, tls, scrape)?).await?;
    let seed = Some(m1.listen_addr());
    let mut members = vec![(m1, e1)];
    for n in 2..=3 {
        members.push(Member::start(cfg(n, seed, state_transfer, tls, scrape)?).await?);
    }
    formed(&mut members).await?;
    let scraping = Arc::new(AtomicBool::new(false));
    let scrapes = scrape.then(|| {
        let addrs = members.iter().filter_map(|(m, _)| m.metrics_addr()).collect();
        tokio::spawn(scraper(addrs, scraping.clone()))
    });
    let (start, end) = plan(secs);
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let (mut readers, mut closes, mut handles, mut sending) = (vec![], vec![], vec![], vec![]);
    for (m, e) in members {
        let (tx, rx) = oneshot::channel::<()>();
        let close = async move {
            let _ = rx.await;
        };
        readers.push(tokio::spawn(tally(e, m.clone(), measuring.clone(), rate.is_some(), close)));
        closes.push(tx);
        sending.extend(senders(&m, order, payload, rate, &stop));
        handles.push(m);
    }
    let w = window(start, end, &measuring).await;
    for c in closes {
        let _ = c.send(());
    }
    let mut per = Vec::new();
    for r in readers {
        let (_, t) = r.await.context("reader")?;
        per.push((t, w));
    }
    stop.store(true, AtomicOrdering::Relaxed);
    for m in &handles {
        m.shutdown().await;
    }
    for s in sending {
        s.abort();
    }
    // One process: its CPU time is all three members'.
    let cpu = w.cpu_nanos.map(|c| c as f64 / w.nanos as f64);
    scraping.store(true, AtomicOrdering::Relaxed);
    let scrapes = match scrapes {
        Some(t) => Some(t.await.context("scraper")?),
        None => None,
    };
    Ok(((per, cpu), scrapes))
}

/// What a member process of one figure runs.
#[derive(Clone, Copy)]
struct Run<'a> {
    order: Order,
    payload: usize,
    rate: Option<f64>,
    state_transfer: bool,
    tls: Option<&'a Path>,
    /// Members serve metrics, scraped every second.
    scrape: bool,
}

/// Reads one line of at most `MAX_LINE` bytes, without its newline; None at the end.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> anyhow::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = (&mut *r).take(MAX_LINE as u64).read_until(b'\n', &mut buf).await?;
    if n == 0 {
        return Ok(None);
    }
    anyhow::ensure!(buf.pop() == Some(b'\n'), "a line longer than {MAX_LINE} bytes, or cut short");
    Ok(Some(String::from_utf8(buf).context("a line that is not UTF-8")?))
}

/// One member process.
struct Child {
    node: u64,
    // Killed (SIGKILL) when dropped: whatever way the bench ends, no member outlives it. A
    // child also exits on its own when its stdin closes (the parent gone, even by SIGKILL).
    process: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    out: BufReader<tokio::process::ChildStdout>,
}

impl Child {
    fn spawn(exe: &Path, node: u64, seed: Option<SocketAddr>, run: &Run<'_>) -> anyhow::Result<Child> {
        let Run { order, payload, rate, state_transfer, tls, scrape } = *run;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args(["bench-member", "--node", &node.to_string(), "--order", order_name(order)])
            .args(["--payload", &payload.to_string()]);
        if let Some(a) = seed {
            cmd.args(["--seed", &a.to_string()]);
        }
        if let Some(r) = rate {
            cmd.args(["--rate", &r.to_string()]);
        }
        if state_transfer {
            cmd.arg("--state-transfer");
        }
        if let Some(dir) = tls {
            cmd.arg("--tls-dir").arg(dir);
        }
        if scrape {
            cmd.arg("--metrics");
        }
        // Its stderr (logs, errors) is ours; stdout carries its figures.
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true);
        let mut process = cmd.spawn().with_context(|| format!("cannot run {}", exe.display()))?;
        let stdin = process.stdin.take().context("no stdin pipe to a member process")?;
        let out = process.stdout.take().context("no stdout pipe from a member process")?;
        Ok(Child { node, process, stdin, out: BufReader::new(out) })
    }

    /// The next line, by `deadline`.
    async fn line(&mut self, what: &str, deadline: tokio::time::Instant) -> anyhow::Result<String> {
        let n = self.node;
        let got = tokio::time::timeout_at(deadline, read_line(&mut self.out))
            .await
            .map_err(|_| anyhow::anyhow!("member n{n} did not send {what} in time"))?
            .with_context(|| format!("reading {what} from member n{n}"))?;
        match got {
            Some(l) => Ok(l),
            None => {
                // It exited (its stderr, ours, says why): say how.
                let status = tokio::time::timeout(Duration::from_secs(1), self.process.wait()).await;
                let how = match status {
                    Ok(Ok(s)) => s.to_string(),
                    _ => "its output closed".to_string(),
                };
                Err(anyhow::anyhow!("member n{n} ended before sending {what} ({how})"))
            }
        }
    }

    async fn expect(&mut self, word: &str, deadline: tokio::time::Instant) -> anyhow::Result<String> {
        let l = self.line(word, deadline).await?;
        match l.strip_prefix(word) {
            Some(rest) if rest.is_empty() || rest.starts_with(' ') => Ok(rest.trim().to_string()),
            _ => Err(anyhow::anyhow!("member n{}: expected {word:?}, got {l:?}", self.node)),
        }
    }

    async fn send(&mut self, line: &str) -> anyhow::Result<()> {
        let n = self.node;
        let stdin = &mut self.stdin;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .with_context(|| format!("writing to member n{n}"))?;
        stdin.flush().await.with_context(|| format!("writing to member n{n}"))
    }

    /// Reads `lat` lines, then the `result` line.
    async fn results(&mut self, deadline: tokio::time::Instant) -> anyhow::Result<(Tally, Window)> {
        let n = self.node;
        let mut t = Tally::default();
        loop {
            let l = self.line("its figures", deadline).await?;
            let mut words = l.split_ascii_whitespace();
            match words.next() {
                Some("lat") => {
                    for w in words {
                        t.lats.push(w.parse().with_context(|| format!("member n{n}: latency {w:?}"))?);
                    }
                    anyhow::ensure!(t.lats.len() <= MAX_SAMPLES, "member n{n}: over {MAX_SAMPLES} latencies");
                }
                Some("result") => {
                    let f: Vec<&str> = words.collect();
                    let [count, nanos, cpu, changes] = f[..] else {
                        anyhow::bail!("member n{n}: result line {l:?} has not 4 fields");
                    };
                    let num = |w: &str, what: &str| -> anyhow::Result<u64> {
                        w.parse().with_context(|| format!("member n{n}: {what} {w:?} in {l:?}"))
                    };
                    t.count = num(count, "count")?;
                    t.changes = num(changes, "membership events")?;
                    let w = Window {
                        nanos: num(nanos, "window")?.max(1),
                        cpu_nanos: if cpu == "-" { None } else { Some(num(cpu, "cpu")?) },
                    };
                    return Ok((t, w));
                }
                _ => anyhow::bail!("member n{n}: unexpected line {l:?}"),
            }
        }
    }

    /// Stops it (SIGSTOP), so that it does not see, and log, the others going.
    fn pause(&self) {
        if let Some(pid) = self.process.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGSTOP,
            );
        }
    }

    /// Kills it and reaps it.
    async fn end(mut self) {
        let _ = self.process.kill().await;
    }
}

async fn processes(exe: &Path, run: Run<'_>, secs: f64) -> anyhow::Result<(PerMember, Option<u64>)> {
    let soon = |s: u64| tokio::time::Instant::now() + Duration::from_secs(s);
    // `listen ADDR [METRICS_ADDR]`.
    let addrs = |node: u64, line: String| -> anyhow::Result<Vec<SocketAddr>> {
        line.split_ascii_whitespace()
            .map(|a| a.parse().with_context(|| format!("member n{node}: address {a:?}")))
            .collect()
    };
    let mut c1 = Child::spawn(exe, 1, None, &run)?;
    let a1 = addrs(1, c1.expect("listen", soon(20)).await?)?;
    let seed = *a1.first().context("member n1 gave no listen address")?;
    let mut c2 = Child::spawn(exe, 2, Some(seed), &run)?;
    let mut c3 = Child::spawn(exe, 3, Some(seed), &run)?;
    // n2 and n3 report their addresses too (they join through n1; their metrics are scraped).
    let (l2, l3) = tokio::try_join!(c2.expect("listen", soon(20)), c3.expect("listen", soon(20)))?;
    let metrics: Vec<SocketAddr> =
        [a1, addrs(2, l2)?, addrs(3, l3)?].iter().filter_map(|a| a.get(1).copied()).collect();
    let formed = soon(30);
    tokio::try_join!(c1.expect("ready", formed), c2.expect("ready", formed), c3.expect("ready", formed))?;
    let scraping = Arc::new(AtomicBool::new(false));
    let scrapes = run.scrape.then(|| tokio::spawn(scraper(metrics, scraping.clone())));
    let (start, end) = plan(secs);
    let go = format!("go {start} {end}");
    for c in [&mut c1, &mut c2, &mut c3] {
        c.send(&go).await?;
    }
    let by = soon(30) + Duration::from_nanos(end.saturating_sub(mono_nanos()));
    let (r1, r2, r3) = tokio::try_join!(c1.results(by), c2.results(by), c3.results(by))?;
    // Measured: stop all three, then kill them (a member that saw another go would log it).
    for c in [&c1, &c2, &c3] {
        c.pause();
    }
    tokio::join!(c1.end(), c2.end(), c3.end());
    // Each process measured its own CPU time over its window.
    let per = vec![r1, r2, r3];
    let cpu = per.iter().map(|(_, w)| w.cpu_nanos.map(|c| c as f64 / w.nanos as f64)).sum::<Option<f64>>();
    scraping.store(true, AtomicOrdering::Relaxed);
    let scrapes = match scrapes {
        Some(t) => Some(t.await.context("scraper")?),
        None => None,
    };
    Ok(((per, cpu), scrapes))
}

/// `chorus bench-member`: one member of `chorus bench`, driven by it (hidden from `--help`).
#[derive(clap::Args, Debug)]
pub struct MemberArgs {
    /// This node's id (1 founds the group).
    #[arg(long)]
    node: u64,
    /// Node 1's address (absent: this node founds the group).
    #[arg(long)]
    seed: Option<SocketAddr>,
    /// Ordering to multicast in.
    #[arg(long, value_parser = parse_order)]
    order: Order,
    /// Payload bytes.
    #[arg(long)]
    payload: usize,
    /// Multicasts per second (absent: as fast as back-pressure lets it).
    #[arg(long)]
    rate: Option<f64>,
    /// Turn state transfer on.
    #[arg(long)]
    state_transfer: bool,
    /// Mutual TLS with the certificates in this directory (`make_bench_certs`).
    #[arg(long)]
    tls_dir: Option<std::path::PathBuf>,
    /// Serve metrics on a free port (told to the bench on the `listen` line).
    #[arg(long)]
    metrics: bool,
}

/// Runs `chorus bench-member`. Protocol, one line each way at a time: it writes `listen ADDR`
/// once started and `ready` once in a view of three; reads `go START END` (CLOCK_MONOTONIC
/// nanoseconds of the window), multicasts from then on, and after END writes its latencies as
/// `lat NS NS ...` lines (if paced) and `result DELIVERIES WINDOW_NS CPU_NS|- MEMBERSHIP_EVENTS`;
/// it keeps multicasting and delivering (the others may still be measuring) until the bench
/// stops and kills it. If its stdin closes (the bench is gone), it exits at once. It ignores
/// SIGINT: the bench handles Ctrl-C and kills its members.
pub fn member_main(a: MemberArgs) -> anyhow::Result<bool> {
    // The runtime `chorus node` runs a member on.
    let rt =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")?;
    rt.block_on(member(a))?;
    Ok(true)
}

async fn say(out: &mut tokio::io::Stdout, line: &str) -> anyhow::Result<()> {
    out.write_all(format!("{line}\n").as_bytes()).await.context("writing to the bench")?;
    out.flush().await.context("writing to the bench")
}

async fn member(a: MemberArgs) -> anyhow::Result<()> {
    // Ctrl-C at a terminal reaches the whole process group: leave it to the bench, which kills
    // its members (the handler stays installed whether or not this is kept).
    let _ctrl_c = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot handle SIGINT")?;
    let mut out = tokio::io::stdout();
    let (go_tx, go_rx) = oneshot::channel::<String>();
    tokio::spawn(async move {
        let mut input = BufReader::new(tokio::io::stdin());
        let mut go = Some(go_tx);
        loop {
            match read_line(&mut input).await {
                Ok(Some(l)) => match go.take() {
                    Some(tx) => {
                        let _ = tx.send(l);
                    }
                    None => {
                        eprintln!("bench member: unexpected input {l:?}");
                        std::process::exit(2);
                    }
                },
                // The bench has every figure or is gone: nothing left to do, stop at once.
                Ok(None) => std::process::exit(0),
                Err(e) => {
                    eprintln!("bench member: reading stdin: {e:#}");
                    std::process::exit(2);
                }
            }
        }
    });
    let (m, e) =
        Member::start(cfg(a.node, a.seed, a.state_transfer, a.tls_dir.as_deref(), a.metrics)?).await?;
    let metrics = m.metrics_addr().map(|a| format!(" {a}")).unwrap_or_default();
    say(&mut out, &format!("listen {}{metrics}", m.listen_addr())).await?;
    let mut me = [(m, e)];
    formed(&mut me).await?;
    say(&mut out, "ready").await?;
    let [(m, e)] = me;
    let go = go_rx.await.context("no go from the bench")?;
    let bad = || format!("expected \"go START END\", got {go:?}");
    let (start, end) = match go.split_ascii_whitespace().collect::<Vec<_>>()[..] {
        ["go", s, e] => (s.parse::<u64>().with_context(bad)?, e.parse::<u64>().with_context(bad)?),
        _ => anyhow::bail!(bad()),
    };
    let measuring = Arc::new(AtomicBool::new(false));
    let (close_tx, close_rx) = oneshot::channel::<()>();
    let close = async move {
        let _ = close_rx.await;
    };
    let paced = a.rate.is_some();
    let reader = tokio::spawn(tally(e, m.clone(), measuring.clone(), paced, close));
    let stop = Arc::new(AtomicBool::new(false));
    let _sending = senders(&m, a.order, a.payload, a.rate, &stop);
    let w = window(start, end, &measuring).await;
    let _ = close_tx.send(());
    let (mut e, t) = reader.await.context("reader")?;
    // Keep delivering (a member whose event queue is full stops) until the bench closes stdin.
    let m2 = m.clone();
    tokio::spawn(async move {
        while let Some(ev) = e.next().await {
            answer(&m2, &ev);
        }
    });
    for chunk in t.lats.chunks(LAT_PER_LINE) {
        let nums: Vec<String> = chunk.iter().map(u64::to_string).collect();
        say(&mut out, &format!("lat {}", nums.join(" "))).await?;
    }
    let cpu = w.cpu_nanos.map_or("-".to_string(), |c| c.to_string());
    say(&mut out, &format!("result {} {} {cpu} {}", t.count, w.nanos, t.changes)).await?;
    std::future::pending::<()>().await;
    Ok(())
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
    Ok(Figure { rate: per / payload as f64, mbps: per / 1e6, p50: None, p99: None, cpu: None, scrapes: None })
}
