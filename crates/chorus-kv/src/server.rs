//! The TCP server: [`serve`] accepts connections and runs each in its own task.
//!
//! A connection reads what the socket has, parses every complete request in its buffer,
//! handles them in order (awaiting each backend call, or, with
//! [`ServerConfig::concurrent_writes`], issuing a run of consecutive writes together), encodes
//! the replies into one buffer and writes it with one call (also whenever it passes 64 KiB), so
//! a pipeline costs one read and one write per batch.
//!
//! Per connection: the protocol version (HELLO), authentication, name, id, the client library's
//! name and version (CLIENT SETINFO), its local address (CLIENT LIST), the MULTI queue, the
//! WATCHed keys with their versions, the read consistency (`READONLY`: local reads;
//! `READWRITE`: linearizable; the default from [`ServerConfig::read_consistency`]) and the
//! session id and sequence number given to the backend with every write.
//!
//! Limits (see [`ServerConfig`]): every breach is answered with a Redis-style error, and a
//! protocol breach or an overflowing output buffer closes the connection; the server goes on.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::backend::{Backend, BackendError, Consistency};
use crate::command::{
    arity_ok, classify_indexed, encode_write, Classified, Cmd, ConnCmd, Kind, Query, Spec, WriteCmd, COMMANDS,
};
use crate::reply::{Protocol, Reply, NOT_INTEGER, SYNTAX};
use crate::resp::{parse_i64, Limits, RequestParser};
use crate::store::glob_match;

/// The version the server reports (HELLO, INFO): the Redis version whose behaviour it follows.
pub const REDIS_VERSION: &str = "7.0.0";
/// Replies are written out whenever this much is pending, even mid-batch.
const FLUSH_AT: usize = 64 << 10;
/// At most this many requests are parsed ahead of handling.
const MAX_BATCH: usize = 1024;
/// INFO's `avg_ttl` looks at every key of a store this small, else at this many consecutive
/// keys in hash order from a random hash (the hash spreads keys evenly: a fair sample), so
/// that INFO costs a bounded number of reads whatever the store's size.
const AVG_TTL_SAMPLE: u64 = 1000;

/// TLS on the client port: the acceptor (its certificates and client verification).
#[derive(Clone)]
pub struct ClientTls(pub chorus::tls::TlsAcceptor);

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

/// A TLS handshake with a client must end within this (a silent connection is dropped).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's settings (`Debug` does not show the password).
#[derive(Clone)]
pub struct ServerConfig {
    /// TLS on the client port (None: plaintext, as the config said).
    pub tls: Option<ClientTls>,
    /// The password of the `default` user (`requirepass`); `None`: no authentication.
    pub password: Option<String>,
    /// The most connections at once; one more is told `-ERR max number of clients reached` and
    /// closed (default 1024).
    pub max_clients: usize,
    /// Request limits: bulk length (64 MiB), argument count (1 Mi), inline length (64 KiB),
    /// request size (128 MiB), and the tighter ones before authentication.
    pub limits: Limits,
    /// The most reply bytes one connection may have pending; a connection whose replies pass it
    /// (one huge reply, or a pipeline whose replies are not read) is closed (default 256 MiB).
    pub max_output_buffer: usize,
    /// The most commands queued in one MULTI (default 100,000); one more is refused with an
    /// error and the transaction is aborted at EXEC.
    pub max_queued_commands: usize,
    /// The most argument bytes queued in one MULTI (default 128 MiB), likewise.
    pub max_queued_bytes: usize,
    /// The most keys one connection may WATCH (default 10,000).
    pub max_watched_keys: usize,
    /// Reads' consistency on a new connection (default linearizable; `READONLY` switches a
    /// connection to local reads).
    pub read_consistency: Consistency,
    /// Issue a run of consecutive pipelined writes (or of linearizable reads) to the backend
    /// together, before awaiting any.
    /// Only for a backend that submits in call order (the submission done in `write` itself,
    /// before the returned future is polled) and applies one session's writes in `seq` order.
    /// Default false: one write at a time.
    pub concurrent_writes: bool,
    /// Sessions are `session_base | connection id` (ids stay below 2^32): make it unique per
    /// server process and node (default: from the clock and the process id, low 32 bits zero).
    pub session_base: u64,
    /// Where to count commands and their latency for Prometheus (None: not counted).
    pub metrics: Option<std::sync::Arc<crate::metrics::KvMetrics>>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("max_clients", &self.max_clients)
            .field("limits", &self.limits)
            .field("max_output_buffer", &self.max_output_buffer)
            .field("max_queued_commands", &self.max_queued_commands)
            .field("max_queued_bytes", &self.max_queued_bytes)
            .field("max_watched_keys", &self.max_watched_keys)
            .field("read_consistency", &self.read_consistency)
            .field("concurrent_writes", &self.concurrent_writes)
            .field("session_base", &self.session_base)
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let pid = u64::from(std::process::id());
        ServerConfig {
            tls: None,
            password: None,
            max_clients: 1024,
            limits: Limits::default(),
            max_output_buffer: 256 << 20,
            max_queued_commands: 100_000,
            max_queued_bytes: 128 << 20,
            max_watched_keys: 10_000,
            read_consistency: Consistency::Linearizable,
            concurrent_writes: false,
            session_base: (nanos.rotate_left(17) ^ (pid << 40)) & !0xFFFF_FFFF,
            metrics: None,
        }
    }
}

#[derive(Debug)]
struct Shared {
    cfg: ServerConfig,
    clients: AtomicUsize,
    next_id: AtomicU64,
    started: Instant,
    port: u16,
    /// INFO's Stats counters: CONFIG RESETSTAT zeroes them.
    connections: AtomicU64,
    rejected: AtomicU64,
    commands: AtomicU64,
}

/// Counts a connection while it lives.
struct ClientSlot(Arc<Shared>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves the Redis protocol on `listener` with `backend` until `shutdown` completes; then
/// stops accepting, closes every connection (after the request it is handling) and returns.
pub async fn serve<B: Backend>(
    listener: TcpListener,
    backend: B,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let port = listener.local_addr().map_or(0, |a| a.port());
    let shared = Arc::new(Shared {
        cfg,
        clients: AtomicUsize::new(0),
        next_id: AtomicU64::new(1),
        started: Instant::now(),
        port,
        connections: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
        commands: AtomicU64::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    while tasks.try_join_next().is_some() {}
                    if shared.clients.load(Ordering::Relaxed) >= shared.cfg.max_clients {
                        shared.rejected.fetch_add(1, Ordering::Relaxed);
                        let _ = stream.try_write(b"-ERR max number of clients reached\r\n");
                        continue;
                    }
                    shared.clients.fetch_add(1, Ordering::Relaxed);
                    shared.connections.fetch_add(1, Ordering::Relaxed);
                    let slot = ClientSlot(shared.clone());
                    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
                    // The address this connection reached (the listener may be bound to a
                    // wildcard address): CLIENT LIST's laddr.
                    let local = stream.local_addr().ok();
                    let conn = Conn::new(id, peer, local, backend.clone(), shared.clone());
                    let stop = stop_rx.clone();
                    let tls = shared.cfg.tls.clone();
                    tasks.spawn(async move {
                        let _slot = slot;
                        let _ = stream.set_nodelay(true);
                        match tls {
                            None => conn.run(stream, stop).await,
                            Some(ClientTls(acceptor)) => {
                                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                    Ok(Ok(s)) => conn.run(s, stop).await,
                                    Ok(Err(e)) => tracing::info!(client = %peer, "TLS handshake failed: {e}"),
                                    Err(_) => tracing::info!(client = %peer, "TLS handshake timed out"),
                                }
                            }
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// A command queued by MULTI.
#[derive(Debug)]
enum Queued {
    /// A data command: part of the replicated EXEC.
    Data(Cmd),
    /// A connection command, run locally at EXEC.
    Conn(ConnCmd, &'static Spec, Vec<Bytes>),
}

#[derive(Debug, Default)]
struct Multi {
    queue: Vec<Queued>,
    bytes: usize,
    dirty: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

struct Conn<B> {
    id: u64,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    backend: B,
    shared: Arc<Shared>,
    session: u64,
    seq: u64,
    proto: Protocol,
    authed: bool,
    name: Option<Bytes>,
    /// CLIENT SETINFO LIB-NAME / LIB-VER (kept across RESET, as Redis does: they describe the
    /// client library behind the connection).
    lib_name: Option<Bytes>,
    lib_ver: Option<Bytes>,
    consistency: Consistency,
    multi: Option<Multi>,
    watched: Vec<(Bytes, u64)>,
}

fn err_reply(e: BackendError) -> Reply {
    e.to_reply()
}

fn sub_arity(cmd: &str, sub: &[u8]) -> Reply {
    Reply::error(format!(
        "ERR wrong number of arguments for '{cmd}|{}' command",
        String::from_utf8_lossy(sub).to_ascii_lowercase()
    ))
}

fn unknown_sub(cmd: &str, sub: &[u8]) -> Reply {
    Reply::error(format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        String::from_utf8_lossy(&sub[..sub.len().min(128)]),
        cmd.to_ascii_uppercase()
    ))
}

fn eq(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

/// Polls every future until all are done; the outputs in the order given.
pub(crate) async fn join_ordered<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut outs: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(outs.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outs.into_iter().flatten().collect()
}

impl<B: Backend> Conn<B> {
    fn new(id: u64, peer: SocketAddr, local: Option<SocketAddr>, backend: B, shared: Arc<Shared>) -> Self {
        let session = shared.cfg.session_base | (id & 0xFFFF_FFFF);
        let authed = shared.cfg.password.is_none();
        let consistency = shared.cfg.read_consistency;
        Conn {
            id,
            peer,
            local,
            backend,
            shared,
            session,
            seq: 0,
            proto: Protocol::Resp2,
            authed,
            name: None,
            lib_name: None,
            lib_ver: None,
            consistency,
            multi: None,
            watched: Vec::new(),
        }
    }

    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        mut self,
        mut stream: S,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut parser = RequestParser::new(self.shared.cfg.limits.clone());
        let mut rbuf = BytesMut::with_capacity(16 << 10);
        let mut out = BytesMut::with_capacity(16 << 10);
        let max_out = self.shared.cfg.max_output_buffer;
        loop {
            // Parse what is there (one request at a time before authentication, as AUTH
            // changes the limits for what follows).
            let mut batch = Vec::new();
            let mut fatal = None;
            while batch.len() < MAX_BATCH {
                match parser.parse(&mut rbuf, self.authed) {
                    Ok(Some(args)) => {
                        batch.push(args);
                        if !self.authed {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        fatal = Some(e);
                        break;
                    }
                }
            }
            let more_ready = batch.len() == MAX_BATCH || (!self.authed && !batch.is_empty());
            let mut close = false;
            let metrics = self.shared.cfg.metrics.clone();
            let mut batch = batch
                .into_iter()
                .map(|a| {
                    let (cls, index) = classify_indexed(&a);
                    if let Some(m) = &metrics {
                        m.command(index);
                    }
                    (cls, a)
                })
                .collect::<Vec<_>>()
                .into_iter()
                .peekable();
            while let Some((cls, args)) = batch.next() {
                self.shared.commands.fetch_add(1, Ordering::Relaxed);
                // A run of pipelined writes (or linearizable reads) goes to the backend
                // together, before any is awaited: the writes share multicasts, the reads one
                // barrier, instead of one round trip through the group each.
                let same = |a: &Classified, b: &Classified| {
                    matches!(
                        (a, b),
                        (Classified::Write(_), Classified::Write(_))
                            | (Classified::Read(_), Classified::Read(_))
                    )
                };
                let runs = self.shared.cfg.concurrent_writes
                    && self.authed
                    && self.multi.is_none()
                    && (matches!(cls, Classified::Write(_))
                        || (matches!(cls, Classified::Read(_))
                            && self.consistency == Consistency::Linearizable))
                    && batch.peek().is_some_and(|(next, _)| same(&cls, next));
                let began = metrics.as_ref().map(|_| std::time::Instant::now());
                let flow = if runs {
                    let mut run = vec![cls];
                    while batch.peek().is_some_and(|(next, _)| same(&run[0], next)) {
                        if let Some((c, _)) = batch.next() {
                            self.shared.commands.fetch_add(1, Ordering::Relaxed);
                            run.push(c);
                        }
                    }
                    let kind = if matches!(run[0], Classified::Write(_)) {
                        crate::metrics::Kind::Write
                    } else {
                        crate::metrics::Kind::read(self.consistency)
                    };
                    let results = if matches!(run[0], Classified::Write(_)) {
                        // Writes go to the backend as one batch (one request, one reply).
                        let first_seq = self.seq + 1;
                        let cmds: Vec<Bytes> = run
                            .into_iter()
                            .filter_map(|c| match c {
                                Classified::Write(cmd) => Some(encode_write(&WriteCmd::One(cmd))),
                                _ => None,
                            })
                            .collect();
                        self.seq += cmds.len() as u64;
                        tokio::select! {
                            r = self.backend.writes(self.session, first_seq, cmds) => r,
                            _ = stop.wait_for(|s| *s) => return,
                        }
                    } else {
                        type Pending<'a> =
                            Pin<Box<dyn Future<Output = Result<Reply, BackendError>> + Send + 'a>>;
                        let futs: Vec<Pending<'_>> = run
                            .into_iter()
                            .filter_map(|c| match c {
                                Classified::Read(cmd) => {
                                    Some(Box::pin(self.backend.read(Query(cmd), self.consistency))
                                        as Pending<'_>)
                                }
                                _ => None,
                            })
                            .collect();
                        tokio::select! {
                            r = join_ordered(futs) => r,
                            _ = stop.wait_for(|s| *s) => return,
                        }
                    };
                    if let (Some(m), Some(t)) = (&metrics, began) {
                        m.observe(kind, t.elapsed().as_secs_f64(), results.len());
                    }
                    // Encoded one by one, the output limit checked and the buffer written out
                    // as it fills: a client that pipelines reads of a large value and never
                    // reads its replies blocks on its own socket, and its replies are never all
                    // in memory at once (they share the stored value until encoded).
                    for r in results {
                        r.unwrap_or_else(err_reply).encode(self.proto, &mut out);
                        if out.len() > max_out {
                            tracing::info!(
                                client = self.id,
                                "closing a client whose output buffer passed {max_out} bytes"
                            );
                            return;
                        }
                        if out.len() >= FLUSH_AT && !write_out(&mut stream, &mut out, &mut stop).await {
                            return;
                        }
                    }
                    Flow::Continue
                } else {
                    let kind = match &cls {
                        Classified::Write(_) => crate::metrics::Kind::Write,
                        Classified::Read(_) => crate::metrics::Kind::read(self.consistency),
                        _ => crate::metrics::Kind::Other,
                    };
                    let f = tokio::select! {
                        f = self.handle(cls, args, &mut out) => f,
                        _ = stop.wait_for(|s| *s) => return,
                    };
                    if let (Some(m), Some(t)) = (&metrics, began) {
                        m.observe(kind, t.elapsed().as_secs_f64(), 1);
                    }
                    f
                };
                if out.len() > max_out {
                    tracing::info!(
                        client = self.id,
                        "closing a client whose output buffer passed {max_out} bytes"
                    );
                    return;
                }
                if flow == Flow::Close {
                    close = true;
                    break;
                }
                if out.len() >= FLUSH_AT && !write_out(&mut stream, &mut out, &mut stop).await {
                    return;
                }
            }
            if !close {
                if let Some(e) = fatal {
                    Reply::error(e.to_string()).encode(self.proto, &mut out);
                    close = true;
                }
            }
            if !out.is_empty() && !write_out(&mut stream, &mut out, &mut stop).await {
                return;
            }
            if close {
                let _ = stream.shutdown().await;
                return;
            }
            if more_ready {
                continue;
            }
            // Do not keep a huge buffer around after a huge request.
            if rbuf.is_empty() && rbuf.capacity() > 1 << 20 {
                rbuf = BytesMut::with_capacity(16 << 10);
            }
            rbuf.reserve(16 << 10);
            tokio::select! {
                r = stream.read_buf(&mut rbuf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Handles one request, appending its reply to `out`.
    async fn handle(&mut self, cls: Classified, args: Vec<Bytes>, out: &mut BytesMut) -> Flow {
        let (reply, flow) = self.handle_inner(cls, args).await;
        reply.encode(self.proto, out);
        flow
    }

    async fn handle_inner(&mut self, cls: Classified, args: Vec<Bytes>) -> (Reply, Flow) {
        let cont = |r: Reply| (r, Flow::Continue);
        if let Classified::Reject(r) = cls {
            if let Some(m) = self.multi.as_mut() {
                m.dirty = true;
            }
            return cont(r);
        }
        if !self.authed
            && !matches!(
                cls,
                Classified::Conn(ConnCmd::Auth | ConnCmd::Hello | ConnCmd::Quit | ConnCmd::Reset, _)
            )
        {
            return cont(Reply::err("NOAUTH Authentication required."));
        }
        if self.multi.is_some() {
            let queued = match cls {
                Classified::Conn(
                    cc @ (ConnCmd::Multi
                    | ConnCmd::Exec
                    | ConnCmd::Discard
                    | ConnCmd::Watch
                    | ConnCmd::Quit
                    | ConnCmd::Reset),
                    spec,
                ) => return self.conn_cmd(cc, spec, &args).await,
                Classified::Conn(cc, spec) => Queued::Conn(cc, spec, args.clone()),
                Classified::Read(cmd) | Classified::Write(cmd) => Queued::Data(cmd),
                Classified::Invalid(r) => Queued::Data(Cmd::Fail(match r {
                    Reply::Error(e) => e.into_owned(),
                    _ => "ERR".to_owned(),
                })),
                Classified::Reject(r) => return cont(r),
            };
            let cfg = &self.shared.cfg;
            let size: usize = args.iter().map(|a| a.len() + 16).sum();
            let Some(m) = self.multi.as_mut() else { return cont(Reply::err("ERR internal")) };
            if m.queue.len() >= cfg.max_queued_commands || m.bytes + size > cfg.max_queued_bytes {
                m.dirty = true;
                return cont(Reply::err("ERR transaction too large: the queue limit was reached"));
            }
            m.bytes += size;
            m.queue.push(queued);
            return cont(Reply::simple("QUEUED"));
        }
        match cls {
            Classified::Conn(cc, spec) => self.conn_cmd(cc, spec, &args).await,
            Classified::Read(cmd) => {
                cont(self.backend.read(Query(cmd), self.consistency).await.unwrap_or_else(err_reply))
            }
            Classified::Write(cmd) => cont(self.write(WriteCmd::One(cmd)).await),
            Classified::Invalid(r) | Classified::Reject(r) => cont(r),
        }
    }

    async fn write(&mut self, w: WriteCmd) -> Reply {
        self.seq += 1;
        self.backend.write(self.session, self.seq, encode_write(&w)).await.unwrap_or_else(err_reply)
    }

    /// A connection command. Boxed: EXEC runs queued connection commands through it.
    fn conn_cmd<'a>(
        &'a mut self,
        cc: ConnCmd,
        spec: &'static Spec,
        args: &'a [Bytes],
    ) -> Pin<Box<dyn Future<Output = (Reply, Flow)> + Send + 'a>> {
        Box::pin(async move {
            let cont = |r: Reply| (r, Flow::Continue);
            match cc {
                // A load balancer's health check (HAProxy's, a sidecar's) sends PING and wants
                // PONG: a node that cannot serve says why instead (NOQUORUM outside the primary
                // view; NOTREADY joining or loading), as Redis answers LOADING while it loads.
                // Inside MULTI it is queued like any command (then it answers at EXEC).
                ConnCmd::Ping => match (args.len(), self.backend.serving()) {
                    (1 | 2, Err(e)) => cont(err_reply(e)),
                    (1, Ok(())) => cont(Reply::simple("PONG")),
                    (2, Ok(())) => cont(Reply::Bulk(args[1].clone())),
                    _ => cont(crate::command::wrong_arity(spec.name)),
                },
                ConnCmd::Echo => cont(Reply::Bulk(args[1].clone())),
                ConnCmd::Hello => cont(self.hello(args)),
                ConnCmd::Auth => cont(self.auth(args)),
                ConnCmd::Select => cont(match parse_i64(&args[1]) {
                    None => Reply::err(NOT_INTEGER),
                    Some(0) => Reply::ok(),
                    Some(_) => Reply::err("ERR DB index is out of range"),
                }),
                ConnCmd::Client => cont(self.client(args)),
                ConnCmd::Quit => (Reply::ok(), Flow::Close),
                ConnCmd::Reset => {
                    self.multi = None;
                    self.watched.clear();
                    self.proto = Protocol::Resp2;
                    self.name = None;
                    self.authed = self.shared.cfg.password.is_none();
                    self.consistency = self.shared.cfg.read_consistency;
                    cont(Reply::simple("RESET"))
                }
                ConnCmd::Command => cont(command_cmd(args)),
                ConnCmd::Info => cont(self.info(args).await),
                ConnCmd::Config => cont(self.config(args)),
                ConnCmd::Time => {
                    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                    cont(Reply::Array(vec![
                        Reply::bulk(d.as_secs().to_string()),
                        Reply::bulk(d.subsec_micros().to_string()),
                    ]))
                }
                ConnCmd::Multi => {
                    if self.multi.is_some() {
                        return cont(Reply::err("ERR MULTI calls can not be nested"));
                    }
                    self.multi = Some(Multi::default());
                    cont(Reply::ok())
                }
                ConnCmd::Discard => {
                    if self.multi.take().is_none() {
                        return cont(Reply::err("ERR DISCARD without MULTI"));
                    }
                    self.watched.clear();
                    cont(Reply::ok())
                }
                ConnCmd::Exec => cont(self.exec().await),
                ConnCmd::Watch => {
                    if self.multi.is_some() {
                        return cont(Reply::err("ERR WATCH inside MULTI is not allowed"));
                    }
                    let keys: Vec<Bytes> = args[1..]
                        .iter()
                        .filter(|k| !self.watched.iter().any(|(w, _)| w == *k))
                        .cloned()
                        .collect();
                    if self.watched.len() + keys.len() > self.shared.cfg.max_watched_keys {
                        return cont(Reply::err("ERR too many watched keys"));
                    }
                    if keys.is_empty() {
                        return cont(Reply::ok());
                    }
                    match self.backend.read(Query::versions(keys.clone()), self.consistency).await {
                        Ok(Reply::Array(vs)) if vs.len() == keys.len() => {
                            for (k, v) in keys.into_iter().zip(vs) {
                                let v = if let Reply::Int(v) = v { v as u64 } else { u64::MAX };
                                self.watched.push((k, v));
                            }
                            cont(Reply::ok())
                        }
                        Ok(Reply::Error(e)) => cont(Reply::Error(e)),
                        Ok(_) => cont(Reply::err("ERR unexpected reply to WATCH")),
                        Err(e) => cont(err_reply(e)),
                    }
                }
                ConnCmd::Unwatch => {
                    self.watched.clear();
                    cont(Reply::ok())
                }
                ConnCmd::ReadOnly => {
                    self.consistency = Consistency::Local;
                    cont(Reply::ok())
                }
                ConnCmd::ReadWrite => {
                    self.consistency = Consistency::Linearizable;
                    cont(Reply::ok())
                }
                ConnCmd::Save | ConnCmd::BgSave => {
                    let background = cc == ConnCmd::BgSave;
                    if background && (args.len() > 2 || (args.len() == 2 && !eq(&args[1], "schedule"))) {
                        return cont(crate::command::wrong_arity("bgsave"));
                    }
                    match self.backend.save(background).await {
                        Ok(()) if background => cont(Reply::simple("Background saving started")),
                        Ok(()) => cont(Reply::ok()),
                        Err(e) => cont(err_reply(e)),
                    }
                }
                ConnCmd::LastSave => {
                    cont(Reply::Int(i64::try_from(self.backend.lastsave()).unwrap_or(i64::MAX)))
                }
                ConnCmd::Wait => {
                    let parse = |a: &Bytes| std::str::from_utf8(a).ok().and_then(|t| t.parse::<i64>().ok());
                    match (parse(&args[1]), parse(&args[2])) {
                        (Some(n), Some(t)) if n >= 0 && t >= 0 => {
                            // Every write this node acknowledged is held by every member of the
                            // view already (safe delivery; on disk too with appendfsync always).
                            cont(Reply::Int(i64::try_from(self.backend.replicas()).unwrap_or(i64::MAX)))
                        }
                        _ => cont(Reply::err("ERR value is not an integer or out of range")),
                    }
                }
                ConnCmd::Promote => {
                    let node = match args.get(1) {
                        None => None,
                        Some(a) if args.len() == 2 => {
                            match std::str::from_utf8(a).ok().and_then(|t| t.parse().ok()) {
                                Some(n) => Some(n),
                                None => return cont(Reply::err("ERR PROMOTE takes a node id (a number)")),
                            }
                        }
                        Some(_) => return cont(crate::command::wrong_arity("promote")),
                    };
                    match self.backend.promote(node).await {
                        Ok(()) => cont(Reply::ok()),
                        Err(e) => cont(err_reply(e)),
                    }
                }
            }
        })
    }

    async fn exec(&mut self) -> Reply {
        let Some(m) = self.multi.take() else { return Reply::err("ERR EXEC without MULTI") };
        let watched = std::mem::take(&mut self.watched);
        if m.dirty {
            return Reply::err("EXECABORT Transaction discarded because of previous errors.");
        }
        let mut cmds = Vec::new();
        let mut conns = Vec::new();
        for q in m.queue {
            match q {
                Queued::Data(c) => {
                    cmds.push(c);
                    conns.push(None);
                }
                Queued::Conn(cc, spec, args) => conns.push(Some((cc, spec, args))),
            }
        }
        let n = cmds.len();
        let data = if n == 0 && watched.is_empty() {
            Vec::new()
        } else {
            match self.write(WriteCmd::Exec { watched, cmds }).await {
                Reply::Array(rs) if rs.len() == n => rs,
                Reply::NullArray => return Reply::NullArray,
                Reply::Error(e) => return Reply::Error(e),
                _ => return Reply::err("ERR unexpected reply to EXEC"),
            }
        };
        let mut data = data.into_iter();
        let mut replies = Vec::with_capacity(conns.len());
        for c in conns {
            match c {
                None => replies.push(data.next().unwrap_or(Reply::Null)),
                Some((cc, spec, args)) => replies.push(self.conn_cmd(cc, spec, &args).await.0),
            }
        }
        Reply::Array(replies)
    }

    fn check_password(&self, user: &[u8], pass: &[u8]) -> bool {
        match &self.shared.cfg.password {
            None => user == b"default",
            Some(p) => user == b"default" && ct_eq(p.as_bytes(), pass),
        }
    }

    fn auth(&mut self, args: &[Bytes]) -> Reply {
        let (user, pass) = match args.len() {
            2 => {
                if self.shared.cfg.password.is_none() {
                    return Reply::err(
                        "ERR AUTH <password> called without any password configured for the default user. \
                         Are you sure your configuration is correct?",
                    );
                }
                (&b"default"[..], &args[1][..])
            }
            3 => (&args[1][..], &args[2][..]),
            _ => return Reply::err(SYNTAX),
        };
        if self.check_password(user, pass) {
            self.authed = true;
            Reply::ok()
        } else {
            Reply::err("WRONGPASS invalid username-password pair or user is disabled.")
        }
    }

    fn hello(&mut self, args: &[Bytes]) -> Reply {
        let mut proto = self.proto;
        if args.len() >= 2 {
            match parse_i64(&args[1]) {
                None => return Reply::err("ERR Protocol version is not an integer or out of range"),
                Some(2) => proto = Protocol::Resp2,
                Some(3) => proto = Protocol::Resp3,
                Some(_) => return Reply::err("NOPROTO unsupported protocol version"),
            }
        }
        let mut auth = None;
        let mut setname = None;
        let mut j = 2;
        while j < args.len() {
            let more = args.len() - j - 1;
            if eq(&args[j], "auth") && more >= 2 {
                auth = Some((&args[j + 1], &args[j + 2]));
                j += 3;
            } else if eq(&args[j], "setname") && more >= 1 {
                setname = Some(&args[j + 1]);
                j += 2;
            } else {
                return Reply::error(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(&args[j][..args[j].len().min(128)])
                ));
            }
        }
        if let Some((user, pass)) = auth {
            if !self.check_password(user, pass) {
                return Reply::err("WRONGPASS invalid username-password pair or user is disabled.");
            }
            self.authed = true;
        }
        if !self.authed {
            return Reply::err(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> \
                 AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol \
                 version at the same time",
            );
        }
        if let Some(name) = setname {
            if let Err(r) = valid_name(name) {
                return r;
            }
            self.name = if name.is_empty() { None } else { Some(name.clone()) };
        }
        self.proto = proto;
        let role = self.backend.info().role;
        let role = if role == "standby" { "replica" } else { "master" };
        Reply::Map(vec![
            (Reply::bulk_str("server"), Reply::bulk_str("redis")),
            (Reply::bulk_str("version"), Reply::bulk_str(REDIS_VERSION)),
            (Reply::bulk_str("proto"), Reply::Int(proto.version())),
            (Reply::bulk_str("id"), Reply::Int(self.id as i64)),
            (Reply::bulk_str("mode"), Reply::bulk_str("standalone")),
            (Reply::bulk_str("role"), Reply::bulk_str(role)),
            (Reply::bulk_str("modules"), Reply::Array(vec![])),
        ])
    }

    fn client_line(&self) -> String {
        let text = |b: &Option<Bytes>| {
            b.as_ref().map(|n| String::from_utf8_lossy(n).into_owned()).unwrap_or_default()
        };
        format!(
            "id={} addr={} laddr={} name={} db=0 multi={} watch={} resp={} lib-name={} lib-ver={}\n",
            self.id,
            self.peer,
            self.local.map(|a| a.to_string()).unwrap_or_default(),
            text(&self.name),
            self.multi.as_ref().map_or(-1, |m| m.queue.len() as i64),
            self.watched.len(),
            self.proto.version(),
            text(&self.lib_name),
            text(&self.lib_ver),
        )
    }

    fn client(&mut self, args: &[Bytes]) -> Reply {
        let sub = &args[1];
        let n = args.len();
        let need = |ok: bool| if ok { None } else { Some(sub_arity("client", sub)) };
        let lower = String::from_utf8_lossy(sub).to_ascii_lowercase();
        match lower.as_str() {
            "id" => need(n == 2).unwrap_or(Reply::Int(self.id as i64)),
            "getname" => need(n == 2)
                .unwrap_or_else(|| self.name.as_ref().map_or(Reply::Null, |s| Reply::Bulk(s.clone()))),
            "setname" => need(n == 3).unwrap_or_else(|| match valid_name(&args[2]) {
                Err(r) => r,
                Ok(()) => {
                    self.name = if args[2].is_empty() { None } else { Some(args[2].clone()) };
                    Reply::ok()
                }
            }),
            "setinfo" => need(n == 4).unwrap_or_else(|| {
                let attr = String::from_utf8_lossy(&args[2][..args[2].len().min(128)]).into_owned();
                let value = &args[3];
                let slot = if eq(&args[2], "lib-name") {
                    &mut self.lib_name
                } else if eq(&args[2], "lib-ver") {
                    &mut self.lib_ver
                } else {
                    return Reply::error(format!("ERR Unrecognized option '{attr}'"));
                };
                // The same characters as a name: the value goes into CLIENT LIST's line.
                if valid_name(value).is_err() {
                    return Reply::error(format!(
                        "ERR {attr} cannot contain spaces, newlines or special characters."
                    ));
                }
                *slot = if value.is_empty() { None } else { Some(value.clone()) };
                Reply::ok()
            }),
            "info" => need(n == 2).unwrap_or_else(|| {
                Reply::Verbatim("txt".into(), Bytes::from(self.client_line().into_bytes()))
            }),
            "list" => Reply::Verbatim("txt".into(), Bytes::from(self.client_line().into_bytes())),
            "no-evict" | "no-touch" => need(n == 3).unwrap_or_else(|| {
                if eq(&args[2], "on") || eq(&args[2], "off") {
                    Reply::ok()
                } else {
                    Reply::err(SYNTAX)
                }
            }),
            "help" => Reply::Array(
                [
                    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                    "GETNAME",
                    "    Return the name of the current connection.",
                    "ID",
                    "    Return the ID of the current connection.",
                    "INFO",
                    "    Return information about the current client connection.",
                    "LIST",
                    "    Return information about this client connection (only).",
                    "SETNAME <name>",
                    "    Assign the name <name> to the current connection.",
                    "SETINFO <option> <value>",
                    "    Set client meta attr. Options are:",
                    "    * LIB-NAME: the client lib name.",
                    "    * LIB-VER: the client lib version.",
                ]
                .iter()
                .map(|s| Reply::Simple((*s).into()))
                .collect(),
            ),
            _ => unknown_sub("client", sub),
        }
    }

    fn config(&self, args: &[Bytes]) -> Reply {
        let sub = &args[1];
        let cfg = &self.shared.cfg;
        if eq(sub, "get") {
            if args.len() < 3 {
                return sub_arity("config", sub);
            }
            let params: [(&str, String); 9] = [
                ("maxclients", cfg.max_clients.to_string()),
                ("proto-max-bulk-len", cfg.limits.max_bulk_len.to_string()),
                ("client-query-buffer-limit", cfg.limits.max_request_bytes.to_string()),
                ("save", String::new()),
                ("appendonly", "no".to_owned()),
                ("databases", "1".to_owned()),
                ("timeout", "0".to_owned()),
                ("maxmemory", "0".to_owned()),
                ("cluster-enabled", "no".to_owned()),
            ];
            let mut pairs = Vec::new();
            for (name, value) in &params {
                if args[2..].iter().any(|p| glob_match(p, name.as_bytes(), true)) {
                    pairs.push((Reply::bulk_str(name), Reply::bulk_str(value)));
                }
            }
            Reply::Map(pairs)
        } else if eq(sub, "set") {
            if args.len() < 4 || !args.len().is_multiple_of(2) {
                return sub_arity("config", sub);
            }
            Reply::error(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                String::from_utf8_lossy(&args[2])
            ))
        } else if eq(sub, "resetstat") {
            if args.len() != 2 {
                return sub_arity("config", sub);
            }
            // Every counter INFO's Stats section shows (gauges such as connected_clients
            // stay); the Persistence section's belong to the storage layer and stay too.
            let sh = &self.shared;
            for c in [&sh.connections, &sh.rejected, &sh.commands] {
                c.store(0, Ordering::Relaxed);
            }
            Reply::ok()
        } else {
            unknown_sub("config", sub)
        }
    }

    /// Up to `count` keys from hash `from` on, in hash order (a local SCAN); the next cursor.
    async fn scan_keys(&self, from: u64, count: u64) -> (Vec<Bytes>, u64) {
        let q = Query(Cmd::Scan { cursor: from, pattern: None, count, typ: None });
        match self.backend.read(q, Consistency::Local).await {
            Ok(Reply::Array(v)) => match &v[..] {
                [Reply::Bulk(next), Reply::Array(keys)] => {
                    let next = std::str::from_utf8(next).ok().and_then(|t| t.parse().ok()).unwrap_or(0);
                    let keys = keys.iter().filter_map(|k| match k {
                        Reply::Bulk(k) => Some(k.clone()),
                        _ => None,
                    });
                    (keys.collect(), next)
                }
                _ => (Vec::new(), 0),
            },
            _ => (Vec::new(), 0),
        }
    }

    /// INFO's `avg_ttl`: the mean time to live, in ms, of the keys with an expiry, over every
    /// key when the store holds at most [`AVG_TTL_SAMPLE`] (`keys`), else over a sample of
    /// that many (Redis estimates it from the keys its expiry cycle samples). 0 when none of
    /// the keys looked at has an expiry.
    async fn avg_ttl(&self, keys: i64) -> u64 {
        let all = u64::try_from(keys).is_ok_and(|k| k <= AVG_TTL_SAMPLE);
        let start = if all { 0 } else { random_u64() };
        let (mut sample, next) = self.scan_keys(start, AVG_TTL_SAMPLE).await;
        let short = AVG_TTL_SAMPLE.saturating_sub(sample.len() as u64);
        if next == 0 && start != 0 && short > 0 {
            // Reached the end of the hash space: go on from its start, up to `start`.
            let (more, _) = self.scan_keys(0, short).await;
            sample.extend(more.into_iter().filter(|k| crate::store::key_hash(k) < start));
        }
        let (mut sum, mut n) = (0u128, 0u128);
        for key in sample {
            let q = Query(Cmd::Ttl { key, ms: true, absolute: false });
            // -1: no expiry; -2: gone (or expired) since the scan.
            if let Ok(Reply::Int(ms)) = self.backend.read(q, Consistency::Local).await {
                if let Ok(ms) = u128::try_from(ms) {
                    sum += ms;
                    n += 1;
                }
            }
        }
        sum.checked_div(n).map_or(0, |avg| u64::try_from(avg).unwrap_or(u64::MAX))
    }

    async fn info(&self, args: &[Bytes]) -> Reply {
        let wanted = |s: &str| {
            args.len() < 2
                || args[1..]
                    .iter()
                    .any(|a| eq(a, s) || eq(a, "all") || eq(a, "everything") || eq(a, "default"))
        };
        let sh = &self.shared;
        let mut t = String::new();
        let mut section = |name: &str, lines: Vec<(String, String)>| {
            if wanted(&name.to_ascii_lowercase()) {
                if !t.is_empty() {
                    t.push_str("\r\n");
                }
                t.push_str("# ");
                t.push_str(name);
                t.push_str("\r\n");
                for (k, v) in lines {
                    t.push_str(&k);
                    t.push(':');
                    t.push_str(&v.replace(['\r', '\n'], " "));
                    t.push_str("\r\n");
                }
            }
        };
        let up = sh.started.elapsed().as_secs();
        let s = |k: &str, v: String| (k.to_owned(), v);
        section(
            "Server",
            vec![
                s("redis_version", REDIS_VERSION.to_owned()),
                s("chorus_kv_version", env!("CARGO_PKG_VERSION").to_owned()),
                s("redis_mode", "standalone".to_owned()),
                s("arch_bits", "64".to_owned()),
                s("process_id", std::process::id().to_string()),
                s("tcp_port", sh.port.to_string()),
                s("uptime_in_seconds", up.to_string()),
                s("uptime_in_days", (up / 86400).to_string()),
            ],
        );
        section(
            "Clients",
            vec![
                s("connected_clients", sh.clients.load(Ordering::Relaxed).to_string()),
                s("maxclients", sh.cfg.max_clients.to_string()),
            ],
        );
        // The process's resident memory (no allocator accounting here: it counts the data, the
        // replication buffers and the connections' buffers alike).
        let (rss, peak) = resident_memory();
        section(
            "Memory",
            vec![
                s("used_memory", rss.to_string()),
                s("used_memory_human", human_bytes(rss)),
                s("used_memory_rss", rss.to_string()),
                s("used_memory_rss_human", human_bytes(rss)),
                s("used_memory_peak", peak.to_string()),
                s("used_memory_peak_human", human_bytes(peak)),
                s("maxmemory", "0".to_owned()),
                s("maxmemory_policy", "noeviction".to_owned()),
                s("mem_allocator", "mimalloc".to_owned()),
            ],
        );
        let mut stats = vec![
            s("total_connections_received", sh.connections.load(Ordering::Relaxed).to_string()),
            s("total_commands_processed", sh.commands.load(Ordering::Relaxed).to_string()),
            s("rejected_connections", sh.rejected.load(Ordering::Relaxed).to_string()),
        ];
        if let Some(m) = &sh.cfg.metrics {
            use crate::metrics::Kind;
            stats.push(s("total_writes_processed", m.answered(Kind::Write).to_string()));
            stats.push(s("total_reads_linearizable", m.answered(Kind::ReadLinearizable).to_string()));
            stats.push(s("total_reads_local", m.answered(Kind::ReadLocal).to_string()));
            stats.push(s("unknown_commands", m.unknown().to_string()));
        }
        section("Stats", stats);
        let g = self.backend.info();
        // Every member holds every write, applied in one total order at all of them (virtual
        // synchrony): Redis's master/replica words fit only loosely. An active member takes
        // writes (`master`); a standby forwards them (`slave`).
        section(
            "Replication",
            vec![
                s("role", if g.role == "standby" { "slave" } else { "master" }.to_owned()),
                s("connected_slaves", g.members.len().saturating_sub(1).to_string()),
                s("master_repl_offset", g.applied_index.to_string()),
                s("chorus_replication", "virtual_synchrony".to_owned()),
                s("chorus_members", g.members.len().to_string()),
                s("chorus_serving", if self.backend.serving().is_ok() { "1" } else { "0" }.to_owned()),
            ],
        );
        let mut group = vec![
            s("view_id", g.view_id.to_string()),
            s("members", g.members.join(",")),
            s("role", g.role.clone()),
            s("applied_index", g.applied_index.to_string()),
            s("pending_requests", g.pending_requests.to_string()),
        ];
        group.extend(g.extra.iter().cloned());
        section("Group", group);
        section("Persistence", self.backend.persistence());
        // Like Redis: only when asked for, or with `all` / `everything`.
        let asked = |name: &str| args[1..].iter().any(|a| eq(a, name) || eq(a, "all") || eq(a, "everything"));
        if let (Some(m), true) = (&sh.cfg.metrics, asked("commandstats")) {
            let lines = m
                .calls()
                .into_iter()
                .map(|(name, n)| (format!("cmdstat_{name}"), format!("calls={n}")))
                .collect();
            section("Commandstats", lines);
        }
        if wanted("keyspace") {
            let mut lines = Vec::new();
            if let Ok(Reply::Array(v)) = self.backend.read(Query::keyspace_stats(), Consistency::Local).await
            {
                if let [Reply::Int(keys), Reply::Int(expires)] = v[..] {
                    if keys > 0 {
                        let avg_ttl = if expires > 0 { self.avg_ttl(keys).await } else { 0 };
                        lines.push(s("db0", format!("keys={keys},expires={expires},avg_ttl={avg_ttl}")));
                    }
                }
            }
            section("Keyspace", lines);
        }
        Reply::Verbatim("txt".into(), Bytes::from(t.into_bytes()))
    }
}

/// This process's resident memory and its peak, in bytes (Linux `/proc/self/status`; 0 where
/// it cannot be read).
fn resident_memory() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |k| k * 1024)
    };
    (kib("VmRSS:"), kib("VmHWM:"))
}

/// Redis's `_human` form: 1.50M.
fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.2}G", b as f64 / f64::from(1u32 << 30)),
        b if b >= 1 << 20 => format!("{:.2}M", b as f64 / f64::from(1u32 << 20)),
        b if b >= 1 << 10 => format!("{:.2}K", b as f64 / 1024.0),
        b => format!("{b}B"),
    }
}

/// A random u64: std's hasher keys are random per process and change at every
/// `RandomState::new`; no cryptographic quality needed (a sampling point).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
    h.finish()
}

/// Compares in time independent of where the first difference is.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn valid_name(name: &[u8]) -> Result<(), Reply> {
    if name.iter().all(|&c| (b'!'..=b'~').contains(&c)) {
        Ok(())
    } else {
        Err(Reply::err("ERR Client names cannot contain spaces, newlines or special characters."))
    }
}

fn command_info(s: &Spec) -> Reply {
    let flag = match s.kind {
        Kind::Write => "write",
        Kind::Read => "readonly",
        Kind::Conn(_) => "fast",
    };
    let cat = match s.kind {
        Kind::Write => "@write",
        Kind::Read => "@read",
        Kind::Conn(_) => "@connection",
    };
    Reply::Array(vec![
        Reply::bulk_str(s.name),
        Reply::Int(i64::from(s.arity)),
        Reply::Set(vec![Reply::simple(flag)]),
        Reply::Int(i64::from(s.keys.0)),
        Reply::Int(i64::from(s.keys.1)),
        Reply::Int(i64::from(s.keys.2)),
        Reply::Set(vec![Reply::simple(cat), Reply::Simple(format!("@{}", s.group).into())]),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
    ])
}

fn command_docs(s: &Spec) -> Reply {
    let mut docs = vec![(Reply::bulk_str("summary"), Reply::bulk_str(s.summary))];
    if let Some(v) = crate::command::since(s.name) {
        docs.push((Reply::bulk_str("since"), Reply::bulk_str(v)));
    }
    docs.push((Reply::bulk_str("group"), Reply::bulk_str(s.group)));
    Reply::Map(docs)
}

fn command_cmd(args: &[Bytes]) -> Reply {
    let find = |n: &Bytes| crate::command::lookup(n);
    if args.len() == 1 {
        return Reply::Array(COMMANDS.iter().map(command_info).collect());
    }
    let sub = &args[1];
    let lower = String::from_utf8_lossy(sub).to_ascii_lowercase();
    match lower.as_str() {
        "count" if args.len() == 2 => Reply::Int(COMMANDS.len() as i64),
        "list" => Reply::Array(COMMANDS.iter().map(|s| Reply::bulk_str(s.name)).collect()),
        "info" => {
            if args.len() == 2 {
                return Reply::Array(COMMANDS.iter().map(command_info).collect());
            }
            Reply::Array(args[2..].iter().map(|n| find(n).map_or(Reply::Null, command_info)).collect())
        }
        "docs" => {
            let specs: Vec<&Spec> = if args.len() == 2 {
                COMMANDS.iter().collect()
            } else {
                args[2..].iter().filter_map(find).collect()
            };
            Reply::Map(specs.into_iter().map(|s| (Reply::bulk_str(s.name), command_docs(s))).collect())
        }
        "getkeys" if args.len() >= 3 => match find(&args[2]) {
            Some(s) if arity_ok(s.arity, args.len() - 2) && s.keys.2 > 0 => {
                let cmd = &args[2..];
                let first = s.keys.0 as usize;
                let last =
                    if s.keys.1 < 0 { cmd.len() as i64 + i64::from(s.keys.1) } else { i64::from(s.keys.1) };
                let keys: Vec<Reply> = (first..=last.max(0) as usize)
                    .step_by(s.keys.2 as usize)
                    .filter_map(|i| cmd.get(i).map(|k| Reply::Bulk(k.clone())))
                    .collect();
                Reply::Array(keys)
            }
            Some(_) => Reply::err("ERR The command has no key arguments"),
            None => Reply::err("ERR Invalid command specified"),
        },
        "help" => Reply::Array(
            [
                "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "(no subcommand)",
                "    Return details about all commands.",
                "COUNT",
                "    Return the total number of commands.",
                "DOCS [<command-name> ...]",
                "    Return documentation details about commands.",
                "GETKEYS <full-command>",
                "    Return the keys from a full command.",
                "INFO [<command-name> ...]",
                "    Return details about the commands.",
                "LIST",
                "    Return the names of all commands.",
            ]
            .iter()
            .map(|s| Reply::Simple((*s).into()))
            .collect(),
        ),
        "count" => sub_arity("command", sub),
        "getkeys" => sub_arity("command", sub),
        _ => unknown_sub("command", sub),
    }
}

/// Writes `out` and clears it; false if the connection is gone or the server stops.
async fn write_out<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut BytesMut,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    // The flush pushes a TLS stream's records out (a no-op on a TCP stream).
    let written = async {
        stream.write_all(out).await?;
        stream.flush().await
    };
    let ok = tokio::select! {
        r = written => r.is_ok(),
        _ = stop.wait_for(|s| *s) => false,
    };
    if out.capacity() > 1 << 20 {
        *out = BytesMut::with_capacity(16 << 10);
    } else {
        out.clear();
    }
    ok
}
