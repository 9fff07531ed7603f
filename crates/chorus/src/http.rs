//! The node's HTTP port (`metrics_listen`): Prometheus metrics, a status page, a health check.
//!
//! - `GET /metrics`: every metric of the registry, in the OpenMetrics text format Prometheus
//!   scrapes (the runtime's `chorus_*` and the application's, e.g. the store's `chorus_kv_*`);
//! - `GET /`: the status page, plain HTML that reads `/status.json` every second;
//! - `GET /status.json`: the member, its view, the last views with their causes, stability and
//!   state-transfer progress ([`PageStatus`]);
//! - `GET /health`: `200 primary` when this node is a member of a view with a majority (it can
//!   serve writes), else `503` and why, for load balancers and readiness probes.
//!
//! Bounded like everything else: at most [`MAX_CONNECTIONS`] at once, the request head within
//! 5 s, a connection at most 30 s. Anything but GET of those paths gets 404 or 405.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::runtime::Member;

/// Connections served at once; more are closed at once (a scraper and a few browsers need few).
pub const MAX_CONNECTIONS: usize = 32;

const PAGE: &str = include_str!("status.html");

/// What the status page shows (`/status.json`).
#[derive(Clone, Debug, Serialize)]
pub struct PageStatus {
    /// This node's id.
    pub node: u64,
    /// Its current member id (`n.incarnation`).
    pub member: String,
    /// Where it is in its life: joining, member, blocked, recovering, left.
    pub status: String,
    /// Whether it is in a view with a majority (`/health` says 200).
    pub primary: bool,
    /// Why not, when it is not.
    pub not_primary_because: Option<String>,
    /// Its group's id, once it has one.
    pub group: Option<String>,
    /// The view it is in.
    pub view: Option<PageView>,
    /// The last views it installed, newest last (at most 32).
    pub history: Vec<PageViewRecord>,
    /// Its own multicasts waiting to become stable, and the window.
    pub stability: PageStability,
    /// The state being loaded, if it is loading.
    pub transfer: Option<PageTransfer>,
    /// Seconds since the member started.
    pub uptime_s: f64,
    /// Multicasts delivered here, all orderings.
    pub delivered: u64,
    /// Multicasts sent from here, all orderings.
    pub sent: u64,
}

/// A view on the page.
#[derive(Clone, Debug, Serialize)]
pub struct PageView {
    /// Its id.
    pub id: u64,
    /// Its members, in rank order.
    pub members: Vec<PageMember>,
}

/// A member of the view on the page.
#[derive(Clone, Debug, Serialize)]
pub struct PageMember {
    /// Its node id.
    pub node: u64,
    /// Its member id.
    pub member: String,
    /// `coordinator` (rank 0, which leads view changes) or `member`.
    pub role: &'static str,
    /// Whether this node has a live connection to it (always true for itself).
    pub connected: bool,
    /// Whether it is this node.
    pub me: bool,
}

/// A view installed, on the page.
#[derive(Clone, Debug, Serialize)]
pub struct PageViewRecord {
    /// Its id.
    pub view: u64,
    /// Its members, as `n1 n2 n3`.
    pub members: String,
    /// When this node installed it (wall clock, ms since the epoch).
    pub at_ms: u64,
    /// What changed: joined, departed, loading, back from disk.
    pub why: String,
}

/// Stability on the page.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PageStability {
    /// Own multicasts not yet stable.
    pub own_msgs: u64,
    /// Their bytes.
    pub own_bytes: u64,
    /// Messages of every sender not yet stable here.
    pub all_msgs: u64,
    /// The send window in messages.
    pub window_msgs: u64,
    /// The send window in bytes.
    pub window_bytes: u64,
}

/// A state transfer in progress, on the page.
#[derive(Clone, Debug, Serialize)]
pub struct PageTransfer {
    /// The view whose state is loaded.
    pub view: u64,
    /// The member streaming it.
    pub donor: String,
    /// Bytes loaded so far.
    pub bytes: u64,
    /// Seconds since loading started.
    pub seconds: f64,
}

/// Serves the port until the member shuts down.
pub(crate) async fn serve(listener: TcpListener, member: Member) {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!("metrics port: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if member.is_shut_down() {
            return;
        }
        let Ok(permit) = gate.clone().try_acquire_owned() else {
            debug!(%from, "metrics port: {MAX_CONNECTIONS} connections already: closed");
            continue;
        };
        let member = member.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let member = member.clone();
                async move { Ok::<_, Infallible>(route(req, member).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), svc);
            if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(30), conn).await {
                debug!(%from, "metrics port: {e}");
            }
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r.headers_mut().insert(hyper::header::CACHE_CONTROL, hyper::header::HeaderValue::from_static("no-store"));
    r
}

async fn route(req: Request<Incoming>, member: Member) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET\n");
    }
    match req.uri().path() {
        "/metrics" => {
            if member.publish_metrics().await.is_err() {
                return reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, "the member has shut down\n");
            }
            let mut text = String::new();
            let encoded = match member.registry().lock() {
                Ok(r) => prometheus_client::encoding::text::encode(&mut text, &r),
                Err(_) => Err(std::fmt::Error),
            };
            let openmetrics = req
                .headers()
                .get_all(hyper::header::ACCEPT)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| v.contains("application/openmetrics-text")));
            match encoded {
                Ok(()) if openmetrics => {
                    reply(StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", text)
                }
                Ok(()) => {
                    reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", classic_text(&text))
                }
                Err(_) => reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, "cannot encode the metrics\n"),
            }
        }
        "/status.json" => match member.page_status().await {
            Ok(p) => match serde_json::to_vec(&p) {
                Ok(body) => reply(StatusCode::OK, "application/json", body),
                Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n")),
            },
            Err(_) => reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, "the member has shut down\n"),
        },
        "/health" => match member.page_status().await {
            Ok(p) if p.primary => reply(StatusCode::OK, TEXT, "primary\n"),
            Ok(p) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!("not primary: {}\n", p.not_primary_because.unwrap_or_default()),
            ),
            Err(_) => reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, "not primary: the member has shut down\n"),
        },
        "/" | "/index.html" => reply(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        _ => reply(StatusCode::NOT_FOUND, TEXT, "not found: try /, /metrics, /status.json or /health\n"),
    }
}

/// OpenMetrics text as Prometheus's older text format (0.0.4), for clients that do not ask for
/// OpenMetrics (curl, `promtool check metrics`, older scrapers): there a counter's `# HELP` and
/// `# TYPE` name its samples' `_total` name, and there is no `# UNIT` or `# EOF` line.
pub fn classic_text(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(name) = line.strip_prefix("# TYPE ").and_then(|r| r.strip_suffix(" counter")) {
            counters.insert(name);
        }
    }
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let comment = ["# HELP ", "# TYPE "].into_iter().find(|p| line.starts_with(p));
        match comment {
            Some(p) => {
                let rest = &line[p.len()..];
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{p}{name}_total {tail}"));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::classic_text;

    #[test]
    fn counters_are_named_with_total_in_the_classic_format() {
        let om = "# HELP a_views Views.\n# TYPE a_views counter\na_views_total 2\n# HELP g A gauge.\n# TYPE g gauge\n# UNIT g seconds\ng 1\n# EOF\n";
        assert_eq!(
            classic_text(om),
            "# HELP a_views_total Views.\n# TYPE a_views_total counter\na_views_total 2\n# HELP g A gauge.\n# TYPE g gauge\ng 1\n"
        );
    }
}
