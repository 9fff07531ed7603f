//! [`LocalBackend`]: one [`KvMachine`] behind a mutex, not replicated. Writes are applied at
//! once with the wall clock (made monotone) as their time. For tests and the differential test.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chorus_smr::{Ctx, StateMachine};

use crate::backend::{Backend, BackendError, Consistency, GroupInfo};
use crate::command::Query;
use crate::reply::Reply;
use crate::store::KvMachine;

#[derive(Debug, Default)]
struct Inner {
    machine: KvMachine,
    index: u64,
    last_now: u64,
}

/// A single, non-replicated store.
#[derive(Clone, Debug, Default)]
pub struct LocalBackend {
    inner: Arc<Mutex<Inner>>,
}

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl LocalBackend {
    /// A backend over an empty store.
    pub fn new() -> Self {
        LocalBackend::default()
    }

    /// A backend over `machine`.
    pub fn with_machine(machine: KvMachine) -> Self {
        LocalBackend { inner: Arc::new(Mutex::new(Inner { machine, index: 0, last_now: 0 })) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a consistent store (apply does not panic).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a write now (the synchronous form of [`Backend::write`]).
    pub fn apply_now(&self, cmd: &[u8]) -> Reply {
        let mut g = self.lock();
        g.index += 1;
        g.last_now = g.last_now.max(wall_ms());
        let ctx = Ctx { index: g.index, now_ms: g.last_now };
        g.machine.apply(cmd, &ctx)
    }

    /// Runs a read now.
    pub fn query_now(&self, q: &Query) -> Reply {
        let g = self.lock();
        let now = g.last_now.max(wall_ms());
        g.machine.query(q, now)
    }

    /// The store's digest.
    pub fn digest(&self) -> u64 {
        self.lock().machine.digest()
    }

    /// A copy of the store.
    pub fn machine(&self) -> KvMachine {
        self.lock().machine.clone()
    }
}

impl Backend for LocalBackend {
    async fn write(&self, _session: u64, _seq: u64, cmd: Bytes) -> Result<Reply, BackendError> {
        Ok(self.apply_now(&cmd))
    }

    async fn read(&self, q: Query, _c: Consistency) -> Result<Reply, BackendError> {
        Ok(self.query_now(&q))
    }

    fn info(&self) -> GroupInfo {
        let g = self.lock();
        GroupInfo {
            view_id: 0,
            members: vec!["local".to_owned()],
            role: "standalone".to_owned(),
            applied_index: g.index,
            pending_requests: 0,
            extra: Vec::new(),
        }
    }
}
