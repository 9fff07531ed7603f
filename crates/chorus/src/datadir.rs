//! A member's data directory: which node it belongs to, the incarnation counter, and the
//! group membership the core asks to keep (`Node::poll_persist`). An application with its own
//! durable state (a `chorus-smr` replica) keeps it in the same directory.
//!
//! ```text
//! LOCK          one process at a time (chorus_smr::storage::DataDir)
//! node          this node's id and the last incarnation it ran as (written at every start)
//! membership    the group id, the last view, and the view-change acceptor state
//! ```
//!
//! The incarnation grows strictly across restarts whatever the wall clock does: it is the
//! larger of the last one plus 2^16 and the wall clock in milliseconds times 2^16 (the low 16
//! bits number the re-joins within one life). See docs/protocol/recovery.md.

use std::path::Path;
use std::sync::Arc;

use chorus_core::{Membership, Persisted, Recovery};
use chorus_smr::storage::{read_atomic, write_atomic, DataDir, Dir, StorageError};
use serde::{Deserialize, Serialize};

const NODE: &str = "node";
const MEMBERSHIP: &str = "membership";

/// Why a data directory cannot be used. Nothing was started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// The storage layer failed (locked by another process, unreadable, damaged, disk full).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The directory belongs to another node.
    #[error("the data directory belongs to node {found}, not to node {configured}: each node needs its own")]
    OtherNode {
        /// The node id in the directory.
        found: u64,
        /// The configured node id.
        configured: u64,
    },
    /// The membership file does not decode.
    #[error("{file} in the data directory is damaged: {why}")]
    Damaged {
        /// The file.
        file: &'static str,
        /// Why.
        why: String,
    },
}

#[derive(Serialize, Deserialize)]
struct NodeFile {
    node: u64,
    incarnation: u64,
}

/// A member's data directory, opened and locked.
#[derive(Debug)]
pub struct NodeStore {
    lock: Option<DataDir>,
    dir: Arc<dyn Dir>,
    node: u64,
    incarnation: u64,
    persisted: Option<Persisted>,
}

impl NodeStore {
    /// Opens (creating it if needed) and locks `path` for node `node`, and draws this life's
    /// incarnation (`now_ms`: the wall clock).
    pub fn open(path: &Path, node: u64, now_ms: u64) -> Result<NodeStore, DataDirError> {
        let lock = DataDir::open(path)?;
        let dir = lock.dir();
        let mut s = NodeStore::in_dir(dir, node, now_ms)?;
        s.lock = Some(lock);
        Ok(s)
    }

    /// Like [`NodeStore::open`], in a directory already opened (and locked) by the caller.
    pub fn in_dir(dir: Arc<dyn Dir>, node: u64, now_ms: u64) -> Result<NodeStore, DataDirError> {
        let last = match read_atomic(dir.as_ref(), NODE)? {
            None => 0,
            Some(b) => {
                let f: NodeFile = postcard::from_bytes(&b)
                    .map_err(|e| DataDirError::Damaged { file: NODE, why: e.to_string() })?;
                if f.node != node {
                    return Err(DataDirError::OtherNode { found: f.node, configured: node });
                }
                f.incarnation
            }
        };
        let persisted = match read_atomic(dir.as_ref(), MEMBERSHIP)? {
            None => None,
            Some(b) => Some(
                Persisted::decode(&b)
                    .map_err(|e| DataDirError::Damaged { file: MEMBERSHIP, why: e.to_string() })?,
            ),
        };
        // Above the last life and any re-join in it, and above incarnations drawn from the
        // clock by a node that ran without a data directory.
        let from_membership =
            persisted.as_ref().and_then(|p| p.membership.as_ref()).map_or(0, |m| m.me.inc.0);
        let incarnation =
            (last.max(from_membership) >> 16).saturating_add(1).max(now_ms).saturating_mul(1 << 16);
        let file = NodeFile { node, incarnation };
        write_atomic(dir.as_ref(), NODE, &postcard::to_stdvec(&file).unwrap_or_default())?;
        Ok(NodeStore { lock: None, dir, node, incarnation, persisted })
    }

    /// The directory, for an application that keeps its state beside the membership.
    pub fn dir(&self) -> Arc<dyn Dir> {
        self.dir.clone()
    }

    /// This life's incarnation.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The node id.
    pub fn node(&self) -> u64 {
        self.node
    }

    /// What the directory says of the group, if this node was ever in one.
    pub fn persisted(&self) -> Option<&Persisted> {
        self.persisted.as_ref()
    }

    /// The last membership, if the node was a member when it stopped.
    pub fn membership(&self) -> Option<&Membership> {
        self.persisted.as_ref().and_then(|p| p.membership.as_ref())
    }

    /// What the core needs to come back into its last view, offering the stored application
    /// state at `state` (see `chorus_smr::Replica::offer`).
    pub fn recovery(&self, state: Option<u64>) -> Option<Recovery> {
        self.membership().map(|m| Recovery { membership: m.clone(), state })
    }

    /// **Forces** this node to recover the group alone, from its own stored state, when a
    /// majority of the group's last view is lost for good (etcd's `--force-new-cluster`): the
    /// membership becomes a view of this node's last member alone, one above the last view it
    /// knew, so that on its next start it speaks for that member alone, founds the next view with
    /// its state, and lets the others join and load it. Returns (the view it was in, the view it
    /// now speaks for). Risk: if the lost members were not lost (only cut off), or held writes
    /// this node lacks, those writes are gone and two histories may exist; use it only on the
    /// node with the most recent state, with every other node of the last view stopped for good.
    pub fn force_recovery(&mut self) -> Result<(chorus_core::View, chorus_core::View), DataDirError> {
        let Some(p) = self.persisted.clone() else {
            return Err(DataDirError::Damaged {
                file: MEMBERSHIP,
                why: "this node never belonged to a group".into(),
            });
        };
        let Some(m) = p.membership.clone() else {
            return Err(DataDirError::Damaged {
                file: MEMBERSHIP,
                why: "this node was not a member when it stopped (it left or was excluded): its state is not the group's"
                    .into(),
            });
        };
        let view = chorus_core::View { id: p.last_view.max(m.view.id).next(), members: vec![m.me] };
        let forced = Persisted {
            group: p.group,
            membership: Some(Membership {
                view: view.clone(),
                me: m.me,
                created_by: None,
                promised: None,
                accepted: None,
            }),
            last_view: view.id,
        };
        self.save(&forced)?;
        Ok((m.view, view))
    }

    /// Stores the core's record durably.
    pub fn save(&mut self, p: &Persisted) -> Result<(), StorageError> {
        write_atomic(self.dir.as_ref(), MEMBERSHIP, &p.encode())?;
        self.persisted = Some(p.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chorus_core::{GroupId, MemberId, View, ViewId};
    use chorus_smr::storage::SimDir;

    #[test]
    fn incarnations_grow_and_the_directory_is_one_nodes() {
        let dir: Arc<dyn Dir> = Arc::new(SimDir::new());
        let a = NodeStore::in_dir(dir.clone(), 3, 1_000).unwrap().incarnation();
        // The clock went back: still higher.
        let b = NodeStore::in_dir(dir.clone(), 3, 10).unwrap().incarnation();
        assert!(b > a, "{b} > {a}");
        let mut s = NodeStore::in_dir(dir.clone(), 3, 10).unwrap();
        let c = s.incarnation();
        assert!(c > b);
        // A membership whose member re-joined many times within a life keeps the next above it.
        let me = MemberId::new(3, c + 5);
        let view = View { id: ViewId(9), members: vec![me] };
        let m = Membership { view, me, created_by: None, promised: None, accepted: None };
        s.save(&Persisted { group: GroupId(7), membership: Some(m.clone()), last_view: ViewId(9) }).unwrap();
        let s = NodeStore::in_dir(dir.clone(), 3, 10).unwrap();
        assert!(s.incarnation() > c + 5);
        assert_eq!(s.membership(), Some(&m));
        assert_eq!(s.recovery(Some(4)).map(|r| r.state), Some(Some(4)));
        assert!(matches!(
            NodeStore::in_dir(dir, 4, 10),
            Err(DataDirError::OtherNode { found: 3, configured: 4 })
        ));
    }
}
