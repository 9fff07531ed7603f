//! The contract between the server and whatever executes commands: [`Backend`].
//!
//! The replicated backend (on chorus-smr) and [`LocalBackend`](crate::local::LocalBackend) (one
//! store, no replication) implement it. Every [`BackendError`] becomes a Redis error reply
//! ([`BackendError::to_reply`]) whose code says whether the command was applied.

use std::future::Future;

use bytes::Bytes;

use crate::command::Query;
use crate::reply::Reply;

/// How a read is served.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Consistency {
    /// From this node's state as it is (possibly behind the group): `READONLY`.
    Local,
    /// Reflecting every write that completed before the read started: `READWRITE`.
    #[default]
    Linearizable,
}

/// What INFO's `# Group` section shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupInfo {
    /// The current view's id.
    pub view_id: u64,
    /// The members of the view, as the backend names them (e.g. `node.incarnation`).
    pub members: Vec<String>,
    /// This node's role (e.g. `primary`, `member`, `standby`, `standalone`).
    pub role: String,
    /// The log index of the last command applied here.
    pub applied_index: u64,
    /// This node's commands and reads waiting for the group. Not a replication lag: a replica
    /// learns of commands only as they are delivered, in one order at every member, so it
    /// knows no later index to measure a lag against (compare `applied_index` across nodes).
    pub pending_requests: u64,
    /// More `name:value` lines for the section.
    pub extra: Vec<(String, String)>,
}

/// Why a backend could not serve a request. [`to_reply`](Self::to_reply) gives the reply sent
/// to the client; its code says whether the command was applied.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// This node is not in a primary component: the command was not applied.
    #[error("NOQUORUM this node is not in the primary component; the command was not applied")]
    NoQuorum,
    /// This node is a standby and does not take writes (or linearizable reads): not applied.
    #[error("READONLY this node is a standby; the command was not applied")]
    Standby,
    /// The command may or may not have been applied (e.g. the view changed while it was in
    /// flight and the outcome could not be learned).
    #[error("UNCERTAIN the outcome of the command is unknown: {0}")]
    Uncertain(String),
    /// The node is joining the group or loading the state from another node: not applied.
    #[error("NOTREADY this node is joining the group or loading its state; the command was not applied")]
    NotReady,
    /// The node is shutting down: the command was not applied.
    #[error("SHUTDOWN the node is shutting down; the command was not applied")]
    ShuttingDown,
    /// Too many requests in flight: the command was not applied; retry later.
    #[error("TRYAGAIN the node is overloaded; the command was not applied")]
    Overloaded,
    /// Anything else (the text is sent after `ERR`).
    #[error("ERR {0}")]
    Other(String),
}

impl BackendError {
    /// The Redis error reply for this error.
    pub fn to_reply(&self) -> Reply {
        Reply::error(self.to_string())
    }

    /// Whether the command certainly was not applied.
    pub fn is_definite(&self) -> bool {
        !matches!(self, BackendError::Uncertain(_) | BackendError::Other(_))
    }
}

/// Executes commands for the server.
pub trait Backend: Clone + Send + Sync + 'static {
    /// Replicates and applies a write (bytes from [`encode_write`](crate::command::encode_write));
    /// `session`/`seq` identify the client request for duplicate suppression (`seq` starts at 1
    /// and grows by one per write of the session).
    fn write(
        &self,
        session: u64,
        seq: u64,
        cmd: Bytes,
    ) -> impl Future<Output = Result<Reply, BackendError>> + Send;
    /// Replicates and applies pipelined writes of one session, requests `first_seq`,
    /// `first_seq + 1`, ...: results in the order given. Backends that can take them in one
    /// step do (one request and one reply for the lot); by default, one `write` each.
    fn writes(
        &self,
        session: u64,
        first_seq: u64,
        cmds: Vec<Bytes>,
    ) -> impl Future<Output = Vec<Result<Reply, BackendError>>> + Send {
        let futs: Vec<_> = (first_seq..).zip(cmds).map(|(seq, cmd)| self.write(session, seq, cmd)).collect();
        crate::server::join_ordered(futs)
    }
    /// Runs a read with the given consistency.
    fn read(&self, q: Query, c: Consistency) -> impl Future<Output = Result<Reply, BackendError>> + Send;
    /// The group's state for INFO.
    fn info(&self) -> GroupInfo;
    /// Makes a standby active (`PROMOTE [node]`): this node, or the member with node id `node`.
    /// Returns once the promotion is applied. Backends without replicas refuse it.
    fn promote(&self, node: Option<u64>) -> impl Future<Output = Result<(), BackendError>> + Send {
        let _ = node;
        std::future::ready(Err(BackendError::Other("PROMOTE needs a replicated store".into())))
    }
    /// INFO's `# Persistence` section.
    fn persistence(&self) -> Vec<(String, String)> {
        vec![("aof_enabled".into(), "0".into()), ("rdb_bgsave_in_progress".into(), "0".into())]
    }
    /// Writes a snapshot (`background`: BGSAVE, else SAVE, which returns once it is on disk).
    fn save(&self, background: bool) -> impl Future<Output = Result<(), BackendError>> + Send {
        let _ = background;
        std::future::ready(Err(BackendError::Other("this store keeps no data directory".into())))
    }
    /// Unix time (seconds) of the last snapshot written, 0 if none.
    fn lastsave(&self) -> u64 {
        0
    }
    /// Replicas (other than this node) that hold every write this node acknowledged: for WAIT.
    fn replicas(&self) -> u64 {
        0
    }
    /// Whether this node serves now (PING answers PONG only then): a node outside the primary
    /// view, joining, loading its state or leaving says why, as the store's writes would.
    /// A standby serves (it answers writes with a redirection, and reads).
    fn serving(&self) -> Result<(), BackendError> {
        Ok(())
    }
}
