//! # chorus: virtual synchrony on real networks
//!
//! The tokio runtime that drives the sans-IO protocol engine [`chorus_core`] over TCP, and its
//! async API. A [`Member`] joins a process group, multicasts with the ordering each message
//! asks for, and reports views, deliveries and state-transfer requests as [`Event`]s.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use chorus::{config::Partial, Event, Member, Order};
//!
//! let cfg = Partial::from_toml(r#"
//!     node = 1
//!     listen = "127.0.0.1:7001"
//!     secret = "correct horse battery"
//!     bootstrap = true
//!     plaintext = true   # or tls_cert, tls_key, tls_ca: see `chorus certs`
//! "#)?.build()?;
//! let (member, mut events) = Member::start(cfg).await?;
//! member.multicast(Order::Total, "hello".into()).await?;
//! while let Some(event) = events.next().await {
//!     if let Event::Delivered { id, payload, .. } = event {
//!         println!("{id:?}: {}", String::from_utf8_lossy(&payload));
//!         break;
//!     }
//! }
//! member.leave().await?;
//! # Ok(()) }
//! ```
//!
//! Transport: one TCP connection per pair of members, frames with a length and a checksum, a
//! handshake that proves both ends know the cluster's secret before anything else is read
//! ([`transport`]). Design notes: `docs/runtime.md`.

pub mod app;
pub mod bench;
pub mod cluster;
pub mod config;
pub mod datadir;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod resolve;
pub mod runtime;
pub mod tls;
mod trace;
pub mod transport;

pub use chorus_core::{
    BlockReason, CheckpointError, Event, GroupId, MemberId, MsgId, NodeId, Order, SendError, Status, View,
    ViewId,
};
pub use runtime::{Events, Member, MemberStatus, MulticastError, ShutDown, StartError, WriteCheckpointError};
