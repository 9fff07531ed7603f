//! A store node's configuration: the group part (`[group]`, the `chorus` runtime's settings)
//! and the store part (`[kv]`), from a TOML file, then `CHORUS_*` / `CHORUS_KV_*` environment
//! variables, then flags.
//!
//! ```toml
//! [group]
//! node = 1
//! listen = "127.0.0.1:7101"          # peers
//! seeds = ["2@127.0.0.1:7102", "3@127.0.0.1:7103"]
//! secret = "change me, at least 8 bytes"
//! bootstrap = true                    # the first node of a new store only
//!
//! [kv]
//! listen = "127.0.0.1:7001"          # Redis clients
//! role = "active"                     # or "standby"
//! reads = "linearizable"              # default for new connections; or "local"
//! appendfsync = "always"              # with group.data_dir: always, everysec or no
//! tls_cert = "certs/node-1.pem"       # TLS for clients (redis-cli --tls), with tls_key;
//! tls_key = "certs/node-1-key.pem"    # tls_client_ca too: clients must show a certificate
//! # plaintext = true                  # or say that clients connect unencrypted
//! ```
//!
//! The group's peer links need `[group] tls_cert`, `tls_key`, `tls_ca` or `plaintext = true`
//! likewise (`chorus certs` makes development certificates).

use std::path::{Path, PathBuf};

use chorus::config::{NodeConfig, Partial};
use chorus_smr::{DurableOptions, Fsync, ReplicaConfig, Role};
use serde::Deserialize;

use crate::backend::Consistency;
use crate::server::ServerConfig;

/// The file's layout.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The group member's settings (see `chorus::config`).
    #[serde(default)]
    pub group: Partial,
    /// The store's settings.
    #[serde(default)]
    pub kv: KvPartial,
}

/// The store's optional settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvPartial {
    /// Address Redis clients connect to (default 127.0.0.1:6379).
    pub listen: Option<String>,
    /// `requirepass`: clients must AUTH with it.
    pub password: Option<String>,
    /// `active` (default) or `standby`.
    pub role: Option<String>,
    /// Reads' consistency on a new connection: `linearizable` (default) or `local`.
    pub reads: Option<String>,
    /// Serve local reads while this node has no quorum (stale, but available). Default false.
    pub stale_reads: Option<bool>,
    /// The most client connections (default 1024).
    pub max_clients: Option<usize>,
    /// The most requests waiting for the group at this node (default 65536).
    pub max_pending: Option<usize>,
    /// Client sessions remembered for duplicate suppression (default 65536; must be equal at
    /// every node).
    pub max_sessions: Option<usize>,
    /// When the write-ahead log is synced (with `group.data_dir`): `always` (default: a write
    /// is acknowledged once on every member's disk), `everysec` or `no`. See docs/kv.md.
    pub appendfsync: Option<String>,
    /// A snapshot is taken once the log holds this many MiB (default 64) and half as
    /// much as the last snapshot.
    pub snapshot_log_mb: Option<u64>,
    /// The log is kept in files of this many KiB (default 65536); files wholly behind a
    /// snapshot are deleted.
    pub wal_segment_kb: Option<u64>,
    /// The certificate clients see (PEM), with `tls_key`: the client port speaks TLS.
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Clients must show a certificate signed by this CA (PEM; Redis's `tls-auth-clients`).
    pub tls_client_ca: Option<PathBuf>,
    /// Clients connect unencrypted (only when no `tls_*` is given).
    pub plaintext: Option<bool>,
}

impl KvPartial {
    /// `other`'s fields where set, else these.
    pub fn overridden_by(self, o: KvPartial) -> KvPartial {
        KvPartial {
            listen: o.listen.or(self.listen),
            password: o.password.or(self.password),
            role: o.role.or(self.role),
            reads: o.reads.or(self.reads),
            stale_reads: o.stale_reads.or(self.stale_reads),
            max_clients: o.max_clients.or(self.max_clients),
            max_pending: o.max_pending.or(self.max_pending),
            max_sessions: o.max_sessions.or(self.max_sessions),
            appendfsync: o.appendfsync.or(self.appendfsync),
            snapshot_log_mb: o.snapshot_log_mb.or(self.snapshot_log_mb),
            wal_segment_kb: o.wal_segment_kb.or(self.wal_segment_kb),
            tls_cert: o.tls_cert.or(self.tls_cert),
            tls_key: o.tls_key.or(self.tls_key),
            tls_client_ca: o.tls_client_ca.or(self.tls_client_ca),
            plaintext: o.plaintext.or(self.plaintext),
        }
    }

    /// Reads `CHORUS_KV_LISTEN`, `CHORUS_KV_PASSWORD`, `CHORUS_KV_ROLE`, `CHORUS_KV_READS`,
    /// `CHORUS_KV_APPENDFSYNC`, `CHORUS_KV_TLS_CERT`, `CHORUS_KV_TLS_KEY`,
    /// `CHORUS_KV_TLS_CLIENT_CA`, `CHORUS_KV_PLAINTEXT` (1/true/yes or 0/false/no).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<KvPartial, KvConfigError> {
        let plaintext = match get("CHORUS_KV_PLAINTEXT").as_deref().map(str::trim) {
            None => None,
            Some("1" | "true" | "yes") => Some(true),
            Some("0" | "false" | "no") => Some(false),
            Some(v) => {
                return Err(KvConfigError::Invalid {
                    field: "plaintext",
                    why: format!("CHORUS_KV_PLAINTEXT={v:?} is not true or false"),
                })
            }
        };
        Ok(KvPartial {
            listen: get("CHORUS_KV_LISTEN"),
            password: get("CHORUS_KV_PASSWORD"),
            role: get("CHORUS_KV_ROLE"),
            reads: get("CHORUS_KV_READS"),
            appendfsync: get("CHORUS_KV_APPENDFSYNC"),
            tls_cert: get("CHORUS_KV_TLS_CERT").map(PathBuf::from),
            tls_key: get("CHORUS_KV_TLS_KEY").map(PathBuf::from),
            tls_client_ca: get("CHORUS_KV_TLS_CLIENT_CA").map(PathBuf::from),
            plaintext,
            ..KvPartial::default()
        })
    }
}

/// A store node's whole configuration, checked.
#[derive(Debug, Clone)]
pub struct KvConfig {
    /// The group member.
    pub group: NodeConfig,
    /// Where Redis clients connect (`host:port`; a host name is resolved at start).
    pub listen: String,
    /// The replica.
    pub replica: ReplicaConfig,
    /// The Redis server.
    pub server: ServerConfig,
    /// How the replica keeps its state in `group.data_dir` (None without one).
    pub durable: Option<DurableOptions>,
}

/// The configuration is unusable (the operator's fault).
#[derive(Debug, thiserror::Error)]
pub enum KvConfigError {
    /// The group part.
    #[error(transparent)]
    Group(#[from] chorus::config::ConfigError),
    /// The file.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A store setting.
    #[error("kv.{field}: {why}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
}

/// The largest command the store replicates, encoded: a transaction of the most RESP lets a
/// client queue (128 MiB), with room for its encoding.
pub const MAX_COMMAND: usize = 130 << 20;

/// Reads a TOML file.
pub fn from_file(path: &Path) -> Result<FileConfig, KvConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| KvConfigError::File { path: path.to_path_buf(), message: e.to_string() })?;
    toml::from_str(&text)
        .map_err(|e| KvConfigError::File { path: path.to_path_buf(), message: e.to_string() })
}

/// Checks and completes the configuration.
pub fn build(group: Partial, kv: KvPartial) -> Result<KvConfig, KvConfigError> {
    if group.state_transfer == Some(false) {
        return Err(chorus::config::ConfigError::Invalid {
            field: "state_transfer",
            why: "the store needs state transfer (members that join load the state from it)".into(),
        }
        .into());
    }
    let mut group = Partial { state_transfer: Some(true), ..group }.build()?;
    // One command is one multicast: a 64 MiB value, or a transaction of up to 128 MiB queued
    // (the RESP limits), plus its encoding. A store's group is small: 16 members at most keeps
    // the largest view-change message (which receivers put together from pieces) near 2 GiB.
    group.max_payload = MAX_COMMAND + (1 << 20);
    group.max_members = 16;
    let fsync: Fsync = kv
        .appendfsync
        .as_deref()
        .unwrap_or("always")
        .parse()
        .map_err(|why| KvConfigError::Invalid { field: "appendfsync", why })?;
    let durable = group.data_dir.as_ref().map(|_| DurableOptions {
        fsync,
        snapshot_log_bytes: kv.snapshot_log_mb.unwrap_or(64).max(1) << 20,
        wal: chorus_smr::storage::WalOptions {
            // A log record is one multicast's commands.
            max_record: u32::try_from(group.max_payload + (1 << 20)).unwrap_or(u32::MAX),
            segment_bytes: kv.wal_segment_kb.unwrap_or(64 << 10).max(4) << 10,
            ..chorus_smr::storage::WalOptions::default()
        },
    });
    // Writes acknowledged before every member stored them: recovering from disks alone needs
    // every member of the last view (docs/protocol/recovery.md).
    group.recover_all = fsync != Fsync::Always;
    let listen_text = kv.listen.unwrap_or_else(|| "127.0.0.1:6379".into());
    let listen = listen_text.trim().to_string();
    chorus::config::host_port(&listen).map_err(|why| KvConfigError::Invalid {
        field: "listen",
        why: format!("{listen_text:?}: {why} (e.g. 127.0.0.1:6379 or 0.0.0.0:6379)"),
    })?;
    if listen == group.listen {
        return Err(KvConfigError::Invalid {
            field: "listen",
            why: "the same address as group.listen".into(),
        });
    }
    let role = match kv.role.as_deref().unwrap_or("active") {
        "active" => Role::Active,
        "standby" => Role::Standby,
        other => {
            return Err(KvConfigError::Invalid {
                field: "role",
                why: format!("{other:?}: use active or standby"),
            })
        }
    };
    let reads = match kv.reads.as_deref().unwrap_or("linearizable") {
        "linearizable" => Consistency::Linearizable,
        "local" => Consistency::Local,
        other => {
            return Err(KvConfigError::Invalid {
                field: "reads",
                why: format!("{other:?}: use linearizable or local"),
            })
        }
    };
    let positive = |field: &'static str, v: Option<usize>, default: usize| match v {
        Some(0) => Err(KvConfigError::Invalid { field, why: "must be at least 1".into() }),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    let replica = ReplicaConfig {
        max_command: MAX_COMMAND,
        role,
        stale_reads_without_quorum: kv.stale_reads.unwrap_or(false),
        max_sessions: positive("max_sessions", kv.max_sessions, 65_536)?,
        max_pending: positive("max_pending", kv.max_pending, 65_536)?,
        ..ReplicaConfig::default()
    };
    let tls = match (kv.tls_cert, kv.tls_key, kv.tls_client_ca, kv.plaintext.unwrap_or(false)) {
        (None, None, None, true) => None,
        (None, None, None, false) => {
            return Err(KvConfigError::Invalid {
                field: "tls_cert",
                why: "missing: the client port needs TLS (tls_cert and tls_key, and tls_client_ca to \
                      require client certificates; `chorus certs` makes development ones), or say \
                      `plaintext = true` in [kv] (CHORUS_KV_PLAINTEXT=1, --plaintext) to let clients \
                      connect unencrypted"
                    .into(),
            })
        }
        (Some(_), _, _, true) | (_, Some(_), _, true) | (_, _, Some(_), true) => {
            return Err(KvConfigError::Invalid {
                field: "plaintext",
                why: "plaintext = true and tls_* files are both given: choose one".into(),
            })
        }
        (Some(cert), Some(key), ca, false) => Some(crate::server::ClientTls(
            chorus::tls::client_acceptor(&cert, &key, ca.as_deref())
                .map_err(|e| KvConfigError::Invalid { field: "tls_cert", why: e.to_string() })?,
        )),
        (cert, _, _, false) => {
            return Err(KvConfigError::Invalid {
                field: if cert.is_none() { "tls_cert" } else { "tls_key" },
                why: "missing: TLS for clients needs tls_cert and tls_key together".into(),
            })
        }
    };
    let server = ServerConfig {
        tls,
        password: kv.password,
        max_clients: positive("max_clients", kv.max_clients, 1024)?,
        read_consistency: reads,
        concurrent_writes: true,
        ..ServerConfig::default()
    };
    Ok(KvConfig { group, listen, replica, server, durable })
}
