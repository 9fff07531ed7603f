//! The store's figures for Prometheus, served beside the runtime's `chorus_*` on the node's
//! metrics port (`metrics_listen`): `chorus_kv_*`. Commands by name and their latency are
//! counted as they run (one atomic increment and one histogram observation per command); the
//! replica's and the storage's figures are read at each scrape ([`ReplicaCollector`]). The list,
//! with what each means, is in docs/metrics.md.

use std::sync::Arc;

use chorus_smr::FSYNC_BUCKETS_US;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::backend::Consistency;
use crate::command::COMMANDS;
use crate::replicated::Replicated;
use crate::store::KvMachine;

/// What a command's latency is filed under.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A write (through the group's total order).
    Write,
    /// A read answered at the group's current state (a barrier through the group).
    ReadLinearizable,
    /// A read answered from this replica's state at once (`READONLY`, or `reads = "local"`).
    ReadLocal,
    /// Everything else: connection commands (PING, AUTH, CLIENT, INFO...) and refusals.
    Other,
}

impl Kind {
    /// The kind of a read with this consistency.
    pub fn read(c: Consistency) -> Kind {
        match c {
            Consistency::Linearizable => Kind::ReadLinearizable,
            _ => Kind::ReadLocal,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Write => "write",
            Kind::ReadLinearizable => "read_linearizable",
            Kind::ReadLocal => "read_local",
            Kind::Other => "other",
        }
    }
}

const KINDS: [Kind; 4] = [Kind::Write, Kind::ReadLinearizable, Kind::ReadLocal, Kind::Other];

/// The store's live metrics (the server counts into them).
#[derive(Debug)]
pub struct KvMetrics {
    /// By the index of the command in [`COMMANDS`].
    commands: Vec<Counter>,
    unknown: Counter,
    latency: [Histogram; 4],
    /// Commands answered by kind (for INFO: the histogram keeps its count to itself).
    answered: [std::sync::atomic::AtomicU64; 4],
}

impl KvMetrics {
    /// Registers the store's metrics under `chorus_kv_` in `registry`.
    pub fn register(registry: &mut Registry) -> Arc<KvMetrics> {
        let by_name: Family<[(&'static str, &'static str); 1], Counter> = Family::default();
        let commands =
            COMMANDS.iter().map(|s| by_name.get_or_create(&[("command", s.name)]).clone()).collect();
        let unknown = Counter::default();
        let by_kind: Family<[(&'static str, &'static str); 1], Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_05, 2.0, 18)));
        let latency = KINDS.map(|k| by_kind.get_or_create(&[("kind", k.label())]).clone());
        let r = registry.sub_registry_with_prefix("chorus_kv");
        r.register("commands", "Commands run, by name (as Redis's INFO commandstats)", by_name);
        r.register("unknown_commands", "Requests naming no command this server knows", unknown.clone());
        r.register(
            "command_duration_seconds",
            "From the command's turn on its connection to its reply, by kind: write, \
             read_linearizable, read_local, other",
            by_kind,
        );
        Arc::new(KvMetrics { commands, unknown, latency, answered: Default::default() })
    }

    /// Counts a command (`index` in [`COMMANDS`], None for an unknown name).
    pub fn command(&self, index: Option<usize>) {
        match index.and_then(|i| self.commands.get(i)) {
            Some(c) => c.inc(),
            None => self.unknown.inc(),
        };
    }

    /// Calls so far of every command called at least once, by name (INFO commandstats).
    pub fn calls(&self) -> Vec<(&'static str, u64)> {
        COMMANDS.iter().zip(&self.commands).map(|(s, c)| (s.name, c.get())).filter(|(_, n)| *n > 0).collect()
    }

    /// Commands of `kind` answered so far.
    pub fn answered(&self, kind: Kind) -> u64 {
        self.answered[KINDS.iter().position(|k| *k == kind).unwrap_or(3)]
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requests naming no known command so far.
    pub fn unknown(&self) -> u64 {
        self.unknown.get()
    }

    /// Files `n` commands of `kind` that took `secs` each (a pipelined run shares one wait).
    pub fn observe(&self, kind: Kind, secs: f64, n: usize) {
        let i = KINDS.iter().position(|k| *k == kind).unwrap_or(3);
        self.answered[i].fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        let h = &self.latency[i];
        for _ in 0..n {
            h.observe(secs);
        }
    }
}

/// Reads the replica's and the storage's figures at each scrape.
pub struct ReplicaCollector {
    /// The replica.
    pub replica: Replicated<KvMachine>,
}

impl std::fmt::Debug for ReplicaCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplicaCollector")
    }
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> Result<(), std::fmt::Error> {
    ConstGauge::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    ConstCounter::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl prometheus_client::collector::Collector for ReplicaCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.replica.status();
        gauge(
            &mut e,
            "applied_index",
            "Commands applied here; the same at every replica for the same state (replication lag: \
             max over the nodes minus this)",
            int(s.applied),
        )?;
        gauge(&mut e, "log_position", "Entries of the replicated log applied here", int(s.pos))?;
        gauge(
            &mut e,
            "pending_requests",
            "Commands and reads of this node waiting for the group",
            int(s.pending as u64),
        )?;
        gauge(
            &mut e,
            "sessions",
            "Client sessions remembered (for exactly-once writes)",
            int(s.sessions as u64),
        )?;
        counter(
            &mut e,
            "bad_messages",
            "Messages from the group that could not be read and were skipped",
            s.bad_messages,
        )?;
        let phase = format!("{:?}", s.phase).to_lowercase();
        let role = s.role.map_or_else(|| "none".to_string(), |r| r.to_string());
        let mut info = e.encode_descriptor(
            "replica",
            "1, labelled with this replica's phase (ready, joining, loading, noquorum, left) and role",
            None,
            MetricType::Gauge,
        )?;
        let labels = [("phase", phase.as_str()), ("role", role.as_str())];
        ConstGauge::new(1i64).encode(info.encode_family(&labels)?)?;
        let Some(st) = self.replica.storage() else { return Ok(()) };
        gauge(&mut e, "wal_bytes", "Bytes of the write-ahead log on disk", int(st.log_bytes))?;
        gauge(&mut e, "wal_segments", "Segment files of the write-ahead log", int(st.log_segments as u64))?;
        gauge(
            &mut e,
            "wal_last_position",
            "Position of the last entry written to the log",
            int(st.last_pos),
        )?;
        gauge(
            &mut e,
            "wal_synced_position",
            "Position up to which the log is on disk (fsynced)",
            int(st.synced_pos),
        )?;
        let mut h = e.encode_descriptor(
            "wal_fsync_duration_seconds",
            "fsyncs of the write-ahead log by duration",
            None,
            MetricType::Histogram,
        )?;
        let mut buckets: Vec<(f64, u64)> = FSYNC_BUCKETS_US
            .iter()
            .zip(st.fsync_buckets.iter())
            .map(|(ub, n)| (*ub as f64 / 1e6, *n))
            .collect();
        buckets.push((f64::INFINITY, st.fsync_buckets[FSYNC_BUCKETS_US.len()]));
        h.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            st.fsync_total_us as f64 / 1e6,
            st.fsyncs,
            &buckets,
            None,
        )?;
        counter(&mut e, "snapshots_written", "Snapshots written since start", st.snapshots_written)?;
        gauge(
            &mut e,
            "snapshot_bytes",
            "Size of the latest snapshot on disk",
            int(st.snapshot.map_or(0, |x| x.1)),
        )?;
        gauge(
            &mut e,
            "snapshot_position",
            "Log position of the latest snapshot on disk",
            int(st.snapshot.map_or(0, |x| x.0)),
        )?;
        gauge(
            &mut e,
            "snapshot_last_success_timestamp_seconds",
            "When the last snapshot finished (0: none since start)",
            int(st.last_snapshot_ms / 1000),
        )?;
        Ok(())
    }
}
