//! The member's figures for Prometheus (served with the status page by [`crate::http`]).
//!
//! The driver counts in plain integers on its hot path ([`Counts`]) and copies them into the
//! Prometheus metrics only when someone scrapes (`Command::Publish`): a member nobody scrapes
//! pays nothing but the increments. Histograms (view changes, flushes, state transfers) are
//! observed when those happen, which is rare.
//!
//! Names follow Prometheus's conventions: `chorus_` first, the unit in the name (`_seconds`,
//! `_bytes`), counters ending in `_total` (the encoder adds it). The list, with what each
//! means, is in docs/metrics.md.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use chorus_core::Order;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The registry a node's metrics are served from; an application adds its own (the store's
/// `chorus_kv_*`) through [`crate::runtime::Member::registry`].
pub type SharedRegistry = Arc<Mutex<Registry>>;

type Labels = [(&'static str, &'static str); 1];
type FloatCounter = Counter<f64, AtomicU64>;

/// The four orderings, as label values, in `Order`'s index.
pub(crate) const ORDERS: [&str; 4] = ["fifo", "causal", "total", "safe"];

/// The label index of an ordering.
pub(crate) fn order_index(o: Order) -> usize {
    match o {
        Order::Fifo => 0,
        Order::Causal => 1,
        Order::Total => 2,
        Order::Safe => 3,
    }
}

/// What the driver counts as it goes (plain integers: no atomics on the hot path).
#[derive(Debug, Default, Clone)]
pub(crate) struct Counts {
    pub views_installed: u64,
    pub suspicions_silent: u64,
    pub suspicions_lagging: u64,
    pub exclusions: u64,
    pub sent_msgs: [u64; 4],
    pub sent_bytes: [u64; 4],
    pub delivered_msgs: [u64; 4],
    pub delivered_bytes: [u64; 4],
    pub state_sent_bytes: u64,
    pub state_received_bytes: u64,
    /// Bytes of the checkpoint being loaded so far (0 when not loading).
    pub state_loading_bytes: u64,
    pub state_loading: bool,
    pub send_blocked_seconds: f64,
}

/// The Prometheus side: handles into the registry.
#[derive(Clone)]
pub(crate) struct RuntimeMetrics {
    views_installed: Counter,
    pub view_change_seconds: Histogram,
    pub flush_seconds: Histogram,
    pub state_transfer_seconds: Histogram,
    members: Gauge,
    primary: Gauge,
    suspicions: Family<Labels, Counter>,
    exclusions: Counter,
    sent_msgs: Family<Labels, Counter>,
    sent_bytes: Family<Labels, Counter>,
    delivered_msgs: Family<Labels, Counter>,
    delivered_bytes: Family<Labels, Counter>,
    retransmissions: Counter,
    unstable_own_msgs: Gauge,
    unstable_own_bytes: Gauge,
    unstable_all_msgs: Gauge,
    window_used: Gauge<f64, AtomicU64>,
    window_full: Counter,
    send_blocked_seconds: FloatCounter,
    state_sent_bytes: Counter,
    state_received_bytes: Counter,
    state_loading: Gauge,
    state_loading_bytes: Gauge,
    connections: Gauge,
    pub handshake_failures: Counter,
    foreign_group_refusals: Counter,
    dropped_frames: Counter,
    bad_frames: Counter,
    local_pauses: Counter,
}

/// What [`RuntimeMetrics::publish`] copies besides [`Counts`]: the core's and the driver's
/// figures of the moment.
pub(crate) struct Snapshot {
    pub members: usize,
    pub primary: bool,
    pub stability: chorus_core::Stability,
    pub retransmissions: u64,
    pub window_full: u64,
    pub connections: usize,
    pub foreign_group_refusals: u64,
    pub dropped_frames: u64,
    pub bad_frames: u64,
    pub local_pauses: u64,
}

/// Durations from a millisecond to a few minutes.
fn seconds_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 18)
}

/// Sets a counter to `to` (counters only go up; the driver's figures only go up).
fn catch_up(c: &Counter, to: u64) {
    let have = c.get();
    if to > have {
        c.inc_by(to - have);
    }
}

fn catch_up_f(c: &FloatCounter, to: f64) {
    let have = c.get();
    if to > have {
        c.inc_by(to - have);
    }
}

fn label(key: &'static str, value: &'static str) -> Labels {
    [(key, value)]
}

impl RuntimeMetrics {
    /// Registers the member's metrics under `chorus_` in `registry`.
    pub fn register(registry: &mut Registry) -> RuntimeMetrics {
        let m = RuntimeMetrics {
            views_installed: Counter::default(),
            view_change_seconds: Histogram::new(seconds_buckets()),
            flush_seconds: Histogram::new(seconds_buckets()),
            state_transfer_seconds: Histogram::new(seconds_buckets()),
            members: Gauge::default(),
            primary: Gauge::default(),
            suspicions: Family::default(),
            exclusions: Counter::default(),
            sent_msgs: Family::default(),
            sent_bytes: Family::default(),
            delivered_msgs: Family::default(),
            delivered_bytes: Family::default(),
            retransmissions: Counter::default(),
            unstable_own_msgs: Gauge::default(),
            unstable_own_bytes: Gauge::default(),
            unstable_all_msgs: Gauge::default(),
            window_used: Gauge::default(),
            window_full: Counter::default(),
            send_blocked_seconds: FloatCounter::default(),
            state_sent_bytes: Counter::default(),
            state_received_bytes: Counter::default(),
            state_loading: Gauge::default(),
            state_loading_bytes: Gauge::default(),
            connections: Gauge::default(),
            handshake_failures: Counter::default(),
            foreign_group_refusals: Counter::default(),
            dropped_frames: Counter::default(),
            bad_frames: Counter::default(),
            local_pauses: Counter::default(),
        };
        // Every label value present from the start, so that rates work from the first scrape.
        for o in ORDERS {
            for f in [&m.sent_msgs, &m.sent_bytes, &m.delivered_msgs, &m.delivered_bytes] {
                drop(f.get_or_create(&label("order", o)));
            }
        }
        for c in ["silent", "lagging"] {
            drop(m.suspicions.get_or_create(&label("cause", c)));
        }
        let r = registry.sub_registry_with_prefix("chorus");
        r.register("views_installed", "Views this node installed", m.views_installed.clone());
        r.register(
            "view_change_duration_seconds",
            "From the first sign of a view change here (a suspicion, or the flush) to the install",
            m.view_change_seconds.clone(),
        );
        r.register(
            "flush_duration_seconds",
            "From the block that starts the flush to the install of the next view",
            m.flush_seconds.clone(),
        );
        r.register("view_members", "Members of this node's view (0 without one)", m.members.clone());
        r.register(
            "primary_view",
            "1 when this node is a member of a view that has a majority (it can serve), else 0",
            m.primary.clone(),
        );
        r.register("suspicions", "Members this node suspected, by cause", m.suspicions.clone());
        r.register(
            "exclusions",
            "Times this node learned it was excluded while alive, and re-joined",
            m.exclusions.clone(),
        );
        r.register("messages_sent", "Multicasts this node sent, by ordering", m.sent_msgs.clone());
        r.register(
            "message_bytes_sent",
            "Payload bytes this node multicast, by ordering",
            m.sent_bytes.clone(),
        );
        r.register("messages_delivered", "Multicasts delivered here, by ordering", m.delivered_msgs.clone());
        r.register(
            "message_bytes_delivered",
            "Payload bytes delivered here, by ordering",
            m.delivered_bytes.clone(),
        );
        r.register(
            "retransmissions",
            "Retransmission requests this node answered with messages",
            m.retransmissions.clone(),
        );
        r.register(
            "unstable_messages",
            "This node's own multicasts not yet received by every member (kept until they are)",
            m.unstable_own_msgs.clone(),
        );
        r.register("unstable_bytes", "Payload bytes of those messages", m.unstable_own_bytes.clone());
        r.register(
            "unstable_messages_all_senders",
            "Messages of every sender received here and not yet stable",
            m.unstable_all_msgs.clone(),
        );
        r.register(
            "send_window_used_ratio",
            "The larger of unstable messages and bytes over the send window (1: sends wait)",
            m.window_used.clone(),
        );
        r.register("send_window_full", "Times a multicast waited for the send window", m.window_full.clone());
        r.register(
            "send_blocked_seconds",
            "Time multicasts waited for the window or a view change (back-pressure)",
            m.send_blocked_seconds.clone(),
        );
        r.register(
            "state_transfer_sent_bytes",
            "Checkpoint bytes this node streamed to joiners (as donor)",
            m.state_sent_bytes.clone(),
        );
        r.register(
            "state_transfer_received_bytes",
            "Checkpoint bytes this node loaded (as joiner)",
            m.state_received_bytes.clone(),
        );
        r.register(
            "state_transfer_duration_seconds",
            "From the start of loading the state to the end, at the joiner",
            m.state_transfer_seconds.clone(),
        );
        r.register(
            "state_transfer_loading",
            "1 while this node loads the group's state",
            m.state_loading.clone(),
        );
        r.register(
            "state_transfer_loaded_bytes",
            "Bytes of the checkpoint being loaded so far (progress; 0 when not loading)",
            m.state_loading_bytes.clone(),
        );
        r.register("peer_connections", "Authenticated connections to peers", m.connections.clone());
        r.register(
            "handshake_failures",
            "Peer connections refused at the handshake (TLS, secret, cluster, clock, timeouts)",
            m.handshake_failures.clone(),
        );
        r.register(
            "foreign_group_refusals",
            "Peer connections refused because the peer belongs to another group",
            m.foreign_group_refusals.clone(),
        );
        r.register(
            "dropped_frames",
            "Frames dropped for a slow or dead peer (its queue full, or waiting beyond max_message)",
            m.dropped_frames.clone(),
        );
        r.register(
            "bad_frames",
            "Connections closed because the peer sent something invalid",
            m.bad_frames.clone(),
        );
        r.register(
            "local_pauses",
            "Times this process itself did not run for over twice the heartbeat (stopped, starved)",
            m.local_pauses.clone(),
        );
        m
    }

    /// Copies the driver's counts and the figures of the moment (at a scrape).
    pub fn publish(&self, c: &Counts, s: &Snapshot) {
        catch_up(&self.views_installed, c.views_installed);
        catch_up(&self.suspicions.get_or_create(&label("cause", "silent")), c.suspicions_silent);
        catch_up(&self.suspicions.get_or_create(&label("cause", "lagging")), c.suspicions_lagging);
        catch_up(&self.exclusions, c.exclusions);
        for (i, o) in ORDERS.iter().enumerate() {
            let l = label("order", o);
            catch_up(&self.sent_msgs.get_or_create(&l), c.sent_msgs[i]);
            catch_up(&self.sent_bytes.get_or_create(&l), c.sent_bytes[i]);
            catch_up(&self.delivered_msgs.get_or_create(&l), c.delivered_msgs[i]);
            catch_up(&self.delivered_bytes.get_or_create(&l), c.delivered_bytes[i]);
        }
        catch_up(&self.state_sent_bytes, c.state_sent_bytes);
        catch_up(&self.state_received_bytes, c.state_received_bytes);
        self.state_loading.set(i64::from(c.state_loading));
        self.state_loading_bytes.set(i64::try_from(c.state_loading_bytes).unwrap_or(i64::MAX));
        catch_up_f(&self.send_blocked_seconds, c.send_blocked_seconds);
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.members.set(gauge(s.members as u64));
        self.primary.set(i64::from(s.primary));
        let st = &s.stability;
        self.unstable_own_msgs.set(gauge(st.own_msgs));
        self.unstable_own_bytes.set(gauge(st.own_bytes));
        self.unstable_all_msgs.set(gauge(st.all_msgs));
        let ratio = |used: u64, of: u64| if of == 0 { 0.0 } else { used as f64 / of as f64 };
        self.window_used.set(ratio(st.own_msgs, st.window_msgs).max(ratio(st.own_bytes, st.window_bytes)));
        catch_up(&self.retransmissions, s.retransmissions);
        catch_up(&self.window_full, s.window_full);
        self.connections.set(gauge(s.connections as u64));
        catch_up(&self.foreign_group_refusals, s.foreign_group_refusals);
        catch_up(&self.dropped_frames, s.dropped_frames);
        catch_up(&self.bad_frames, s.bad_frames);
        catch_up(&self.local_pauses, s.local_pauses);
    }
}
