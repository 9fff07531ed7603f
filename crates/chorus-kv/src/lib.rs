//! # chorus-kv: a replicated key-value store speaking the Redis protocol
//!
//! - [`resp`]: the incremental request parser (multibulk and inline) with its limits.
//! - [`reply`]: [`Reply`] and its RESP2/RESP3 encodings.
//! - [`command`]: classifying requests into connection commands, reads ([`Query`]) and writes
//!   ([`WriteCmd`], encoded by [`encode_write`] for replication).
//! - [`store`]: [`KvMachine`], the deterministic state machine (`chorus_smr::StateMachine`).
//! - [`backend`]: the [`Backend`] trait the server runs commands through.
//! - [`local`]: [`LocalBackend`], one store without replication.
//! - [`server`]: [`serve`], the TCP server.
//!
//! ## Known differences from redis-server 7.0
//!
//! Checked by `tests/kv/differential.py` (its allowlist) and the tests of this crate:
//!
//! - One database: `SELECT` of anything but 0, and `COPY ... DB n` with n not 0, are
//!   `ERR DB index is out of range`.
//! - Orders: KEYS and SCAN go in key-hash order, hashes and sets in sorted order (Redis: table
//!   order, insertion order for small hashes). SCAN's cursor is a key hash (a decimal u64; Redis
//!   also takes `-1` and the like); COUNT counts the keys visited, never splitting keys of equal
//!   hash, so every key present for the whole iteration is returned exactly once.
//! - DBSIZE does not count keys whose expiry has passed (Redis counts them until it reclaims them).
//! - SET with an EXAT/PXAT already past deletes the key at once (same replies as Redis).
//! - WATCH can abort spuriously after more than 65,536 deletions between WATCH and EXEC (by a
//!   64-bit key hash collision too); it never misses a change.
//! - Connection commands queued in MULTI (PING, ECHO, CLIENT, INFO, ...) run on the node at EXEC,
//!   their replies in place among the replicated commands' replies.
//! - Protocol: a bulk string must be followed by CRLF (Redis skips two bytes unchecked); limits
//!   are tighter by default (64 MiB bulks, 128 MiB requests, see [`ServerConfig`]); breaches of
//!   our own limits have their own texts (`request exceeds the query buffer limit`, `transaction
//!   too large`, `too many watched keys`). Requests are flat arrays: nesting is a protocol error.
//! - Only the `default` user; INFO has the Server, Clients, Memory, Stats, Replication, Group,
//!   Persistence, Keyspace and Commandstats sections (docs/kv.md says what each holds);
//!   CLIENT LIST shows the calling connection only; CONFIG GET knows a few parameters and CONFIG
//!   SET none; COMMAND's flags and categories are simplified and COMMAND DOCS has no argument
//!   lists (redis-cli shows no hints); CLIENT SETINFO (a 7.2 command) is stored and shown by CLIENT LIST/INFO.
//! - Not implemented (an unknown-command error): other types (sorted sets, streams, ...),
//!   Pub/Sub, scripting, blocking commands, INCRBYFLOAT, OBJECT, maxmemory and eviction.

pub mod backend;
pub mod command;
pub mod config;
pub mod local;
pub mod metrics;
pub mod replicated;
pub mod reply;
pub mod resp;
pub mod resp_client;
pub mod server;
pub mod store;

pub use backend::{Backend, BackendError, Consistency, GroupInfo};
pub use command::{decode_write, encode_write, Query, WriteCmd};
pub use local::LocalBackend;
pub use reply::{Protocol, Reply};
pub use server::{serve, ServerConfig};
pub use store::KvMachine;
