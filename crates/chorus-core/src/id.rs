//! Identifiers: newtypes so that a node id is never taken for a view id.

use core::fmt;
use serde::{Deserialize, Serialize};

/// A process's stable name, as configured (the runtime maps it to an address).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

/// Which life of a node this is. A restarted or re-joining process uses a higher incarnation
/// and is a new member: nothing of its earlier life carries over.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Incarnation(pub u64);

/// A member of a group: one incarnation of one node.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MemberId {
    /// The node.
    pub node: NodeId,
    /// Its incarnation.
    pub inc: Incarnation,
}

impl MemberId {
    /// Member `node` in its incarnation `inc`.
    pub const fn new(node: u64, inc: u64) -> Self {
        MemberId { node: NodeId(node), inc: Incarnation(inc) }
    }
}

/// A group's identity, drawn at random when the group is founded and kept in every member's
/// data directory: members refuse peers of another group, so that a node restarted with a
/// config that says "found a group" can never start a second one unnoticed.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupId(pub u64);

/// A view's number. Views form one line: every installed view has id one more than its
/// predecessor's.
#[derive(Copy, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ViewId(pub u64);

impl ViewId {
    /// The id of the view after this one.
    pub const fn next(self) -> ViewId {
        ViewId(self.0 + 1)
    }
}

/// A sender's sequence number within one view, starting at 1.
#[derive(Copy, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Seqno(pub u64);

/// Names one multicast: who sent it, in which view, and its place in the sender's sequence.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MsgId {
    /// The sending member.
    pub sender: MemberId,
    /// The view it was sent (and so is delivered) in.
    pub view: ViewId,
    /// The sender's sequence number in that view.
    pub seq: Seqno,
}

/// A view: an id and the ordered member list, oldest member first. The first member is the
/// coordinator unless it is suspected.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct View {
    /// The view's id.
    pub id: ViewId,
    /// Members, oldest first.
    #[serde(deserialize_with = "crate::wire::budget_vec")]
    pub members: Vec<MemberId>,
}

impl View {
    /// Position of `m` in the member list.
    pub fn rank_of(&self, m: MemberId) -> Option<usize> {
        self.members.iter().position(|x| *x == m)
    }

    /// Whether a member of the view is a life of node `n`.
    pub fn contains_node(&self, n: NodeId) -> bool {
        self.members.iter().any(|x| x.node == n)
    }

    /// Whether `m` is a member.
    pub fn contains(&self, m: MemberId) -> bool {
        self.members.contains(&m)
    }

    /// Size of a majority of this view.
    pub fn majority(&self) -> usize {
        self.members.len() / 2 + 1
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}
impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}
impl fmt::Debug for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "i{}", self.0)
    }
}
impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}.{}", self.node.0, self.inc.0)
    }
}
impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
impl fmt::Debug for ViewId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}
impl fmt::Display for ViewId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}
impl fmt::Debug for Seqno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}
impl fmt::Debug for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}@{:?}{:?}", self.sender, self.view, self.seq)
    }
}
impl fmt::Debug for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}{:?}", self.id, self.members)
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}
