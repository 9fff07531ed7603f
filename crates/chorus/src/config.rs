//! A member's configuration: a TOML file, then environment variables, then flags, each
//! overriding the one before; validated as a whole with errors that name the field.
//!
//! ```toml
//! node = 1
//! listen = "127.0.0.1:7001"
//! seeds = ["2@127.0.0.1:7002", "3@127.0.0.1:7003"]
//! cluster = "demo"
//! secret = "change me"            # or secret_file = "/etc/chorus/secret"
//! bootstrap = true                # exactly one member starts the group
//! state_transfer = true
//! heartbeat_ms = 100
//! suspect_timeout_ms = 500
//! max_clock_skew_ms = 1000        # refuse peers whose wall clock differs more (0: no check)
//! trace = "node-1.trace.jsonl"    # write the checker's trace
//! data_dir = "/var/lib/chorus/1"  # keep the membership on disk (recovery, founding once)
//! tls_cert = "certs/node-1.pem"   # mutual TLS on the peer links (make them: `chorus certs`)
//! tls_key = "certs/node-1-key.pem"
//! tls_ca = "certs/ca.pem"
//! # plaintext = true              # or say that the links go unencrypted (one of the two)
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

/// Default of `max_clock_skew_ms`: NTP keeps hosts within milliseconds; a second is a clock
/// that is wrong, not one that drifts.
pub const DEFAULT_MAX_CLOCK_SKEW_MS: u64 = 1000;

/// A seed: a member to ask when joining, as `id@host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seed {
    /// Its node id.
    pub node: u64,
    /// Where it listens: `host:port`, the host an IP address or a name (resolved again at each
    /// dial: containers and pods change addresses across restarts).
    pub addr: String,
}

impl std::str::FromStr for Seed {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Seed, ConfigError> {
        let bad = |why: &str| ConfigError::Invalid {
            field: "seeds",
            why: format!("{s:?}: {why} (expected id@host:port, e.g. 2@127.0.0.1:7002 or 2@node-2:7002)"),
        };
        let (id, addr) = s.split_once('@').ok_or_else(|| bad("no '@'"))?;
        let node = id.trim().parse().map_err(|_| bad("the id is not a number"))?;
        let addr = addr.trim();
        match host_port(addr) {
            Ok((_, 0)) => Err(bad("port 0 cannot be dialled")),
            Ok(_) => Ok(Seed { node, addr: addr.to_string() }),
            Err(why) => Err(bad(&why)),
        }
    }
}

/// Splits `host:port` into the host and the port, checking both: the host is an IPv4 address,
/// an IPv6 address in brackets (`[::1]:7001`), or a host name (letters, digits, `-`, `_` and
/// `.`, at most 253 bytes).
pub fn host_port(s: &str) -> Result<(&str, u16), String> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| "not host:port".to_string())?;
    let port: u16 = port.parse().map_err(|_| format!("the port {port:?} is not a number from 0 to 65535"))?;
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().map_err(|_| format!("{host} is not an IPv6 address"))?;
        return Ok((host, port));
    }
    if s.len() > crate::transport::handshake::MAX_LISTEN_LEN {
        return Err(format!("longer than {} bytes", crate::transport::handshake::MAX_LISTEN_LEN));
    }
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !host.starts_with(['-', '.']);
    if !name_ok {
        return Err(format!("{host:?} is neither an IP address nor a host name"));
    }
    Ok((host, port))
}

/// Whether `addr` (`host:port`) names every interface (`0.0.0.0`, `[::]`): fine to listen on,
/// but no peer can dial it.
pub(crate) fn is_unspecified(addr: &str) -> bool {
    addr.parse::<SocketAddr>().is_ok_and(|a| a.ip().is_unspecified())
}

/// Everything a member needs to run.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's id, unique in the cluster.
    pub node: u64,
    /// The address to listen on for peers (`host:port`; a host name is resolved when the node
    /// starts; port 0 picks a free one).
    pub listen: String,
    /// The address peers are told to dial (`host:port`): `advertise` if given, else `listen`.
    /// It travels to every member and is resolved again at each dial, so a host name follows a
    /// container or pod to its new address. Port 0 stands for the port actually bound.
    pub advertise: String,
    /// Members to join through.
    pub seeds: Vec<Seed>,
    /// The cluster's name: peers of another cluster are refused at the handshake.
    pub cluster: String,
    /// The shared secret peers prove they know (HMAC-SHA256 over fresh nonces).
    pub secret: Arc<[u8]>,
    /// Start a new group instead of joining one.
    pub bootstrap: bool,
    /// Transfer the application's state to joiners at the view barrier.
    pub state_transfer: bool,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Silence after which a member is suspected.
    pub suspect_timeout: Duration,
    /// The most a peer's wall clock may differ from ours: a peer further off is refused at the
    /// handshake, both ways, and told why (None: no check). Applications that judge time
    /// through the group (the store's key expiry) rely on it: see docs/kv.md, "Time".
    pub max_clock_skew: Option<Duration>,
    /// Where to write the trace the checker reads (JSON lines), if anywhere: the runtime writes
    /// the member's lives, views, multicasts and deliveries there, in the core's order, flushed
    /// before each pass's frames (docs/trace-format.md; no state lines).
    pub trace: Option<PathBuf>,
    /// The data directory: the group this node belongs to and its last membership, so that a
    /// restart never founds a second group and can recover the group when crashes took its
    /// majority (docs/protocol/recovery.md). Without it, a restart is a new node.
    pub data_dir: Option<PathBuf>,
    /// Recovery from disks (no member alive holding the state) waits for every member of the
    /// last view instead of a majority: for applications that acknowledge writes before every
    /// member stored them (docs/protocol/recovery.md). Set by the application, not the file.
    pub recover_all: bool,
    /// The largest multicast payload (1 MiB by default). Larger ones than a batch travel in
    /// pieces; one larger than the send window goes alone. Set by the application.
    pub max_payload: usize,
    /// The most members a view may have (64 by default). With `max_payload` it bounds the
    /// largest view-change message, which receivers put together from pieces. Set by the
    /// application.
    pub max_members: usize,
    /// Mutual TLS on the peer links (None: plaintext; a config file must say `plaintext = true`
    /// for that). Every node of a cluster runs with TLS or none does.
    pub tls: Option<Arc<crate::tls::PeerTls>>,
    /// Where to serve Prometheus metrics (`/metrics`), the status page (`/`) and the health
    /// check (`/health`) over HTTP (`host:port`; None: not served). See docs/metrics.md.
    pub metrics_listen: Option<String>,
}

/// The configuration is unusable (the operator's fault). Nothing was started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TOML does not parse or has unknown or mistyped fields.
    #[error("{path}: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A field is missing or has a value that cannot work.
    #[error("config field `{field}`: {why}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        why: String,
    },
}

/// The optional fields, as read from a file, the environment or flags (later ones override).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partial {
    /// See [`NodeConfig::node`].
    pub node: Option<u64>,
    /// See [`NodeConfig::listen`].
    pub listen: Option<String>,
    /// See [`NodeConfig::advertise`].
    pub advertise: Option<String>,
    /// See [`NodeConfig::seeds`] (`id@host:port`).
    pub seeds: Option<Vec<String>>,
    /// See [`NodeConfig::cluster`].
    pub cluster: Option<String>,
    /// See [`NodeConfig::secret`].
    pub secret: Option<String>,
    /// A file holding the secret (its first line).
    pub secret_file: Option<PathBuf>,
    /// See [`NodeConfig::bootstrap`].
    pub bootstrap: Option<bool>,
    /// See [`NodeConfig::state_transfer`].
    pub state_transfer: Option<bool>,
    /// See [`NodeConfig::heartbeat`], in milliseconds.
    pub heartbeat_ms: Option<u64>,
    /// See [`NodeConfig::suspect_timeout`], in milliseconds.
    pub suspect_timeout_ms: Option<u64>,
    /// See [`NodeConfig::max_clock_skew`], in milliseconds (default 1000; 0 turns the check off).
    pub max_clock_skew_ms: Option<u64>,
    /// See [`NodeConfig::trace`].
    pub trace: Option<PathBuf>,
    /// See [`NodeConfig::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// This node's certificate for the peer links (PEM), with `tls_key` and `tls_ca`.
    pub tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// The CA every node's certificate is signed by (PEM).
    pub tls_ca: Option<PathBuf>,
    /// Run the peer links unencrypted (only when no `tls_*` is given).
    pub plaintext: Option<bool>,
    /// See [`NodeConfig::metrics_listen`].
    pub metrics_listen: Option<String>,
}

impl Partial {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Partial, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Partial::from_toml(&text).map_err(|e| match e {
            ConfigError::Toml { message, .. } => ConfigError::Toml { path: path.to_path_buf(), message },
            other => other,
        })
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Partial, ConfigError> {
        toml::from_str(text)
            .map_err(|e| ConfigError::Toml { path: PathBuf::from("<toml>"), message: e.to_string() })
    }

    /// Reads `CHORUS_NODE`, `CHORUS_LISTEN`, `CHORUS_ADVERTISE`, `CHORUS_SEEDS` (comma-separated), `CHORUS_CLUSTER`,
    /// `CHORUS_SECRET`, `CHORUS_SECRET_FILE`, `CHORUS_BOOTSTRAP`, `CHORUS_STATE_TRANSFER`,
    /// `CHORUS_HEARTBEAT_MS`, `CHORUS_SUSPECT_TIMEOUT_MS`, `CHORUS_MAX_CLOCK_SKEW_MS`,
    /// `CHORUS_TRACE`, `CHORUS_DATA_DIR`, `CHORUS_TLS_CERT`, `CHORUS_TLS_KEY`, `CHORUS_TLS_CA`,
    /// `CHORUS_PLAINTEXT`, `CHORUS_METRICS_LISTEN` from `get`. `CHORUS_NODE=ordinal` takes the id from `HOSTNAME` (a
    /// StatefulSet pod `name-N` is node N+1); `CHORUS_BOOTSTRAP_NODE=N` sets `bootstrap` for node
    /// N only.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Partial, ConfigError> {
        let num = |key: &'static str, field: &'static str| -> Result<Option<u64>, ConfigError> {
            get(key)
                .map(|v| {
                    v.trim().parse().map_err(|_| ConfigError::Invalid {
                        field,
                        why: format!("{key}={v:?} is not a number"),
                    })
                })
                .transpose()
        };
        let flag = |key: &'static str, field: &'static str| -> Result<Option<bool>, ConfigError> {
            get(key)
                .map(|v| match v.trim() {
                    "1" | "true" | "yes" => Ok(true),
                    "0" | "false" | "no" => Ok(false),
                    _ => {
                        Err(ConfigError::Invalid { field, why: format!("{key}={v:?} is not true or false") })
                    }
                })
                .transpose()
        };
        // A StatefulSet's pods share one template: `CHORUS_NODE=ordinal` takes the node id from
        // the host name's ordinal (pod `chorus-kv-0` is node 1), and `CHORUS_BOOTSTRAP_NODE=1`
        // makes node 1 alone found the group.
        let node = match get("CHORUS_NODE").as_deref().map(str::trim) {
            Some("ordinal") => Some(node_from_hostname(get("HOSTNAME"))?),
            _ => num("CHORUS_NODE", "node")?,
        };
        let bootstrap = match (num("CHORUS_BOOTSTRAP_NODE", "bootstrap")?, node) {
            (Some(b), Some(n)) => Some(b == n),
            (Some(_), None) => {
                return Err(ConfigError::Invalid {
                    field: "bootstrap",
                    why: "CHORUS_BOOTSTRAP_NODE needs CHORUS_NODE".into(),
                })
            }
            (None, _) => flag("CHORUS_BOOTSTRAP", "bootstrap")?,
        };
        Ok(Partial {
            node,
            listen: get("CHORUS_LISTEN"),
            advertise: get("CHORUS_ADVERTISE"),
            seeds: get("CHORUS_SEEDS")
                .map(|s| s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()),
            cluster: get("CHORUS_CLUSTER"),
            secret: get("CHORUS_SECRET"),
            secret_file: get("CHORUS_SECRET_FILE").map(PathBuf::from),
            bootstrap,
            state_transfer: flag("CHORUS_STATE_TRANSFER", "state_transfer")?,
            heartbeat_ms: num("CHORUS_HEARTBEAT_MS", "heartbeat_ms")?,
            suspect_timeout_ms: num("CHORUS_SUSPECT_TIMEOUT_MS", "suspect_timeout_ms")?,
            max_clock_skew_ms: num("CHORUS_MAX_CLOCK_SKEW_MS", "max_clock_skew_ms")?,
            trace: get("CHORUS_TRACE").map(PathBuf::from),
            data_dir: get("CHORUS_DATA_DIR").map(PathBuf::from),
            tls_cert: get("CHORUS_TLS_CERT").map(PathBuf::from),
            tls_key: get("CHORUS_TLS_KEY").map(PathBuf::from),
            tls_ca: get("CHORUS_TLS_CA").map(PathBuf::from),
            plaintext: flag("CHORUS_PLAINTEXT", "plaintext")?,
            metrics_listen: get("CHORUS_METRICS_LISTEN"),
        })
    }

    /// `other`'s fields where set, else these.
    pub fn overridden_by(self, other: Partial) -> Partial {
        Partial {
            node: other.node.or(self.node),
            listen: other.listen.or(self.listen),
            advertise: other.advertise.or(self.advertise),
            seeds: other.seeds.or(self.seeds),
            cluster: other.cluster.or(self.cluster),
            secret: other.secret.or(self.secret),
            secret_file: other.secret_file.or(self.secret_file),
            bootstrap: other.bootstrap.or(self.bootstrap),
            state_transfer: other.state_transfer.or(self.state_transfer),
            heartbeat_ms: other.heartbeat_ms.or(self.heartbeat_ms),
            suspect_timeout_ms: other.suspect_timeout_ms.or(self.suspect_timeout_ms),
            max_clock_skew_ms: other.max_clock_skew_ms.or(self.max_clock_skew_ms),
            trace: other.trace.or(self.trace),
            data_dir: other.data_dir.or(self.data_dir),
            tls_cert: other.tls_cert.or(self.tls_cert),
            tls_key: other.tls_key.or(self.tls_key),
            tls_ca: other.tls_ca.or(self.tls_ca),
            plaintext: other.plaintext.or(self.plaintext),
            metrics_listen: other.metrics_listen.or(self.metrics_listen),
        }
    }

    /// Checks and completes the configuration.
    pub fn build(self) -> Result<NodeConfig, ConfigError> {
        let missing = |field: &'static str, hint: &str| ConfigError::Invalid {
            field,
            why: format!("missing ({hint})"),
        };
        let node = self.node.ok_or_else(|| missing("node", "a unique number per member, e.g. node = 1"))?;
        let listen_text = self
            .listen
            .ok_or_else(|| missing("listen", "the address peers connect to, e.g. 127.0.0.1:7001"))?;
        let listen = listen_text.trim().to_string();
        host_port(&listen).map_err(|why| ConfigError::Invalid {
            field: "listen",
            why: format!("{listen_text:?}: {why} (e.g. 127.0.0.1:7001 or node-1:7001)"),
        })?;
        let advertise = match self.advertise {
            Some(a) => {
                let a = a.trim().to_string();
                host_port(&a).map_err(|why| ConfigError::Invalid {
                    field: "advertise",
                    why: format!("{a:?}: {why} (e.g. node-1:7001)"),
                })?;
                if is_unspecified(&a) {
                    return Err(ConfigError::Invalid {
                        field: "advertise",
                        why: format!("{a:?} names every interface: peers cannot dial it"),
                    });
                }
                a
            }
            None if is_unspecified(&listen) => {
                return Err(ConfigError::Invalid {
                    field: "advertise",
                    why: format!(
                        "missing: listen is {listen}, every interface, which peers cannot dial; say where \
                         they reach this node (advertise = \"node-1:7001\", CHORUS_ADVERTISE, --advertise)"
                    ),
                })
            }
            None => listen.clone(),
        };
        let seeds: Vec<Seed> =
            self.seeds.unwrap_or_default().iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
        let seeds: Vec<Seed> = seeds.into_iter().filter(|s| s.node != node).collect();
        let bootstrap = self.bootstrap.unwrap_or(false);
        if !bootstrap && seeds.is_empty() {
            return Err(ConfigError::Invalid {
                field: "seeds",
                why: "a member that does not bootstrap needs at least one other member to join through"
                    .into(),
            });
        }
        let cluster = self.cluster.unwrap_or_else(|| "chorus".to_string());
        if cluster.is_empty() || cluster.len() > 64 {
            return Err(ConfigError::Invalid { field: "cluster", why: "must be 1 to 64 bytes".into() });
        }
        let secret = match (self.secret, self.secret_file) {
            (Some(s), None) => s,
            (None, Some(path)) => {
                let text =
                    std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path, source })?;
                text.lines().next().unwrap_or_default().to_string()
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid {
                    field: "secret",
                    why: "give secret or secret_file, not both".into(),
                })
            }
            (None, None) => return Err(missing("secret", "the cluster's shared secret, or secret_file")),
        };
        if secret.len() < 8 {
            return Err(ConfigError::Invalid { field: "secret", why: "shorter than 8 bytes".into() });
        }
        let tls = peer_tls(self.tls_cert, self.tls_key, self.tls_ca, self.plaintext)?;
        let metrics_listen = match self.metrics_listen.map(|m| m.trim().to_string()) {
            Some(m) => {
                host_port(&m).map_err(|why| ConfigError::Invalid {
                    field: "metrics_listen",
                    why: format!("{m:?}: {why} (e.g. 127.0.0.1:9101 or 0.0.0.0:9101)"),
                })?;
                Some(m)
            }
            None => None,
        };
        let heartbeat = Duration::from_millis(self.heartbeat_ms.unwrap_or(100));
        let suspect_timeout = Duration::from_millis(self.suspect_timeout_ms.unwrap_or(500));
        if heartbeat.is_zero() || suspect_timeout < heartbeat * 2 {
            return Err(ConfigError::Invalid {
                field: "suspect_timeout_ms",
                why: format!(
                    "{} ms must be at least twice heartbeat_ms ({} ms), which must be positive",
                    suspect_timeout.as_millis(),
                    heartbeat.as_millis()
                ),
            });
        }
        Ok(NodeConfig {
            node,
            listen,
            advertise,
            seeds,
            cluster,
            secret: Arc::from(secret.into_bytes()),
            bootstrap,
            state_transfer: self.state_transfer.unwrap_or(true),
            heartbeat,
            suspect_timeout,
            max_clock_skew: match self.max_clock_skew_ms.unwrap_or(DEFAULT_MAX_CLOCK_SKEW_MS) {
                0 => None,
                ms => Some(Duration::from_millis(ms)),
            },
            trace: self.trace,
            data_dir: self.data_dir,
            recover_all: false,
            max_payload: 1 << 20,
            max_members: 64,
            tls,
            metrics_listen,
        })
    }
}

/// The node id of a StatefulSet's pod: its host name's ordinal plus one (`chorus-kv-0` is 1).
fn node_from_hostname(env: Option<String>) -> Result<u64, ConfigError> {
    let name = match env {
        Some(h) => h,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default(),
    };
    let name = name.trim();
    let ordinal = name.rsplit_once('-').and_then(|(_, n)| n.parse::<u64>().ok());
    match ordinal {
        Some(n) if n < u64::MAX => Ok(n + 1),
        _ => Err(ConfigError::Invalid {
            field: "node",
            why: format!("CHORUS_NODE=ordinal: the host name {name:?} does not end in -NUMBER (a StatefulSet pod's does)"),
        }),
    }
}

/// The peer links' TLS from the three files, or plaintext when the config says so and gives
/// none of them: encryption is never dropped by an omission.
fn peer_tls(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
    plaintext: Option<bool>,
) -> Result<Option<Arc<crate::tls::PeerTls>>, ConfigError> {
    let invalid = |field, why: String| ConfigError::Invalid { field, why };
    match (cert, key, ca, plaintext.unwrap_or(false)) {
        (None, None, None, true) => Ok(None),
        (None, None, None, false) => Err(invalid(
            "tls_cert",
            "missing: the peer links need TLS (tls_cert, tls_key and tls_ca; `chorus certs` makes a \
             development CA and certificates), or say `plaintext = true` (CHORUS_PLAINTEXT=1, --plaintext) \
             to run them unencrypted"
                .into(),
        )),
        (Some(_), _, _, true) | (_, Some(_), _, true) | (_, _, Some(_), true) => {
            Err(invalid("plaintext", "plaintext = true and tls_* files are both given: choose one".into()))
        }
        (Some(cert), Some(key), Some(ca), false) => {
            let files = crate::tls::TlsFiles { cert, key, ca };
            let tls = crate::tls::PeerTls::load(&files).map_err(|e| invalid("tls_cert", e.to_string()))?;
            Ok(Some(Arc::new(tls)))
        }
        (cert, key, _, false) => {
            let field = if cert.is_none() {
                "tls_cert"
            } else if key.is_none() {
                "tls_key"
            } else {
                "tls_ca"
            };
            Err(invalid(field, "missing: TLS needs tls_cert, tls_key and tls_ca together".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const GOOD: &str = r#"
        node = 1
        listen = "127.0.0.1:7001"
        seeds = ["2@127.0.0.1:7002"]
        secret = "correct horse"
        plaintext = true
    "#;

    #[test]
    fn file_env_and_flags_layer() {
        let file = Partial::from_toml(GOOD).unwrap();
        let env =
            Partial::from_env(|k| (k == "CHORUS_LISTEN").then(|| "127.0.0.1:9001".to_string())).unwrap();
        let flags = Partial { heartbeat_ms: Some(50), ..Partial::default() };
        let c = file.overridden_by(env).overridden_by(flags).build().unwrap();
        assert_eq!((c.listen.as_str(), c.advertise.as_str()), ("127.0.0.1:9001", "127.0.0.1:9001"));
        assert_eq!(c.heartbeat, Duration::from_millis(50));
        assert_eq!(c.seeds, vec![Seed { node: 2, addr: "127.0.0.1:7002".into() }]);
        assert_eq!(c.cluster, "chorus");
    }

    #[test]
    fn host_names_and_the_advertised_address() {
        let p = Partial::from_toml(GOOD).unwrap();
        // Names in seeds and listen, kept as written (resolved at each dial).
        let c = Partial {
            listen: Some("node-1:7001".into()),
            seeds: Some(vec!["2@chorus-2.chorus.default.svc:7101".into(), "3@[::1]:7003".into()]),
            ..p.clone()
        }
        .build()
        .unwrap();
        assert_eq!((c.listen.as_str(), c.advertise.as_str()), ("node-1:7001", "node-1:7001"));
        let seeds: Vec<&str> = c.seeds.iter().map(|s| s.addr.as_str()).collect();
        assert_eq!(seeds, ["chorus-2.chorus.default.svc:7101", "[::1]:7003"]);
        // Every interface: peers must be told where to dial.
        let all = Partial { listen: Some("0.0.0.0:7001".into()), ..p.clone() };
        let e = all.clone().build().unwrap_err().to_string();
        assert!(e.contains("advertise") && e.contains("CHORUS_ADVERTISE"), "{e}");
        let c = Partial { advertise: Some("node-1:7001".into()), ..all }.build().unwrap();
        assert_eq!((c.listen.as_str(), c.advertise.as_str()), ("0.0.0.0:7001", "node-1:7001"));
        for (field, bad) in [
            ("listen", Partial { listen: Some("node 1:7001".into()), ..p.clone() }),
            ("listen", Partial { listen: Some("node-1".into()), ..p.clone() }),
            ("listen", Partial { listen: Some("node-1:70000".into()), ..p.clone() }),
            ("seeds", Partial { seeds: Some(vec!["2@node-2:0".into()]), ..p.clone() }),
            ("seeds", Partial { seeds: Some(vec!["2@[nope]:7002".into()]), ..p.clone() }),
            ("advertise", Partial { advertise: Some("[::]:7001".into()), ..p.clone() }),
        ] {
            let e = bad.build().unwrap_err().to_string();
            assert!(e.contains(&format!("`{field}`")), "{field}: {e}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let e = Partial::from_toml("node = 1\nlisten = 3").unwrap_err().to_string();
        assert!(e.contains("listen"), "{e}");
        let e = Partial::from_toml("nodee = 1").unwrap_err().to_string();
        assert!(e.contains("nodee"), "{e}");
        let p = Partial::from_toml(GOOD).unwrap();
        let e =
            Partial { seeds: Some(vec!["2-127.0.0.1".into()]), ..p.clone() }.build().unwrap_err().to_string();
        assert!(e.contains("seeds") && e.contains("id@host:port"), "{e}");
        let e = Partial { secret: Some("short".into()), ..p.clone() }.build().unwrap_err().to_string();
        assert!(e.contains("secret"), "{e}");
        let e = Partial { suspect_timeout_ms: Some(100), ..p.clone() }.build().unwrap_err().to_string();
        assert!(e.contains("suspect_timeout_ms"), "{e}");
        let e = Partial { seeds: None, ..p }.build().unwrap_err().to_string();
        assert!(e.contains("seeds"), "{e}");
        let e = Partial::from_env(|k| (k == "CHORUS_NODE").then(|| "x".to_string())).unwrap_err().to_string();
        assert!(e.contains("CHORUS_NODE"), "{e}");
        // A StatefulSet pod: the node id from the host name, node 1 alone founds the group.
        for (host, node, boots) in [("chorus-kv-0", 1, true), ("chorus-kv-2", 3, false)] {
            let p = Partial::from_env(|k| match k {
                "CHORUS_NODE" => Some("ordinal".into()),
                "HOSTNAME" => Some(host.into()),
                "CHORUS_BOOTSTRAP_NODE" => Some("1".into()),
                _ => None,
            })
            .unwrap();
            assert_eq!((p.node, p.bootstrap), (Some(node), Some(boots)), "{host}");
        }
        let e = Partial::from_env(|k| match k {
            "CHORUS_NODE" => Some("ordinal".into()),
            "HOSTNAME" => Some("laptop".into()),
            _ => None,
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("laptop"), "{e}");
    }

    #[test]
    fn peer_links_are_encrypted_unless_the_config_says_plaintext() {
        let p = Partial::from_toml(GOOD).unwrap();
        assert!(p.clone().build().unwrap().tls.is_none());
        // Silence is not consent: without TLS files and without plaintext, no start.
        let e = Partial { plaintext: None, ..p.clone() }.build().unwrap_err().to_string();
        assert!(
            e.contains("tls_cert") && e.contains("plaintext = true") && e.contains("chorus certs"),
            "{e}"
        );
        let e = Partial { plaintext: Some(false), ..p.clone() }.build().unwrap_err().to_string();
        assert!(e.contains("tls_cert"), "{e}");
        // Both at once is a contradiction.
        let e = Partial { tls_ca: Some("ca.pem".into()), ..p.clone() }.build().unwrap_err().to_string();
        assert!(e.contains("choose one"), "{e}");
        // Half of TLS names the missing file.
        let half = Partial {
            plaintext: None,
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            ..p.clone()
        };
        let e = half.clone().build().unwrap_err().to_string();
        assert!(e.contains("`tls_ca`"), "{e}");
        // A file that is not there is named.
        let e =
            Partial { tls_ca: Some("/nonexistent/ca.pem".into()), ..half }.build().unwrap_err().to_string();
        assert!(e.contains("c.pem"), "{e}");
        // Files that work: a development CA.
        let dir = std::env::temp_dir().join(format!("chorus-config-tls-{}", std::process::id()));
        let (ca, _) = crate::tls::dev_certs::ensure_ca(&dir, "test").unwrap();
        let (cert, key) = crate::tls::dev_certs::make_leaf(&dir, &ca, "node-1", &[]).unwrap();
        let env = |k: &str| match k {
            "CHORUS_TLS_CERT" => Some(cert.display().to_string()),
            "CHORUS_TLS_KEY" => Some(key.display().to_string()),
            "CHORUS_TLS_CA" => Some(dir.join("ca.pem").display().to_string()),
            _ => None,
        };
        let c = Partial { plaintext: None, ..p.clone() }
            .overridden_by(Partial::from_env(env).unwrap())
            .build()
            .unwrap();
        assert!(c.tls.is_some());
        // A key of another certificate is refused, naming the key.
        let (_, other_key) = crate::tls::dev_certs::make_leaf(&dir, &ca, "node-2", &[]).unwrap();
        let e = Partial {
            plaintext: None,
            tls_cert: Some(cert),
            tls_key: Some(other_key.clone()),
            tls_ca: Some(dir.join("ca.pem")),
            ..p
        }
        .build()
        .unwrap_err()
        .to_string();
        assert!(e.contains(&other_key.display().to_string()), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
