//! The trace: what happened, as JSON lines.

use serde::{Deserialize, Serialize};

/// One process life: a node and its incarnation. A restarted or re-joined node is a new `Proc`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Proc {
    /// Node id.
    pub node: u64,
    /// Incarnation.
    pub inc: u64,
}

/// One line of a trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// Time in nanoseconds (simulated time in the simulator; wall-clock in real runs, used only
    /// for ordering a single process's lines and for reports).
    pub t: u64,
    /// The process the event is about; `None` for harness-wide events (`phase`, `end`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<Proc>,
    /// What happened.
    #[serde(flatten)]
    pub ev: Ev,
}

/// The kinds of trace events. Serialized with an `"ev"` tag, e.g.
/// `{"t":5,"p":{"node":1,"inc":0},"ev":"install","view":3,"members":[...]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Ev {
    /// The process began its life (first boot, restart, or re-join after exclusion).
    Start {
        /// It starts a new group instead of joining one.
        bootstrap: bool,
    },
    /// The process installed a view.
    Install {
        /// View id.
        view: u64,
        /// Members, oldest first.
        members: Vec<Proc>,
    },
    /// The process multicast a message in its current view.
    Send {
        /// The view it was sent in.
        view: u64,
        /// The sender's sequence number in that view (1, 2, ...).
        seq: u64,
        /// A 64-bit digest of the payload (FNV-1a).
        digest: u64,
    },
    /// The process delivered a message.
    Deliver {
        /// The sender.
        sender: Proc,
        /// The view the message names as its sending view.
        view: u64,
        /// The sender's sequence number.
        seq: u64,
        /// Digest of the payload as delivered.
        digest: u64,
    },
    /// The process's failure detector suspects a member.
    Suspect {
        /// The suspected member.
        member: Proc,
    },
    /// The process blocked (`reason` is `flush` or `no_quorum`).
    Blocked {
        /// Why.
        reason: String,
    },
    /// The process learned it was excluded while alive; its life ends here (a `start` of the
    /// next incarnation follows).
    Excluded,
    /// The process left the group gracefully; its life ends here.
    Left,
    /// The process crashed (harness event); its life ends here.
    Crash,
    /// The process was paused (harness event).
    Pause,
    /// The process was resumed (harness event).
    Resume,
    /// The harness changed phase (`p` is `None`). `name` is `liveness` when faults stop and
    /// everything is healed: from then on G12 applies.
    Phase {
        /// Phase name.
        name: String,
    },
    /// The harness declares the run over (`p` is `None`); the checker's end-of-run checks
    /// (G12) judge the state at this point.
    End,
}

/// FNV-1a, the payload digest used in traces.
pub fn digest(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
