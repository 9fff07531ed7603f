//! What the checker reports.

use std::fmt;

use crate::trace::Proc;

/// A guarantee of DESIGN §3 that a trace broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{guarantee} violated at t={t}ns: {detail}")]
pub struct Violation {
    /// Which guarantee.
    pub guarantee: Guarantee,
    /// Time of the event that broke it (for end-of-run checks: the `end` event).
    pub t: u64,
    /// Who did what, in terms of the trace.
    pub detail: String,
}

/// The guarantees of DESIGN §3 that the checker asserts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Guarantee {
    /// G1: all installs of a view id carry the same member list.
    G1ViewAgreement,
    /// G2: one line of views, each holding a majority of its predecessor.
    G2OneHistory,
    /// G3: a process is a member of every view it installs.
    G3SelfInclusion,
    /// G4: processes that go from v to v+1 delivered the same messages in v.
    G4VirtualSynchrony,
    /// G5: messages are sent and delivered in the current view, which they name.
    G5SendingView,
    /// G6: deliveries match a send, at most once; also trace and process-life integrity.
    G6Integrity,
    /// G7: per sender and view, sequence numbers 1, 2, 3, ... with no gap or reordering.
    G7Fifo,
    /// G8: a causal message is delivered after everything its sender had delivered or sent in
    /// its view before sending it.
    G8Causal,
    /// G9: total and safe messages are delivered in one order shared by every process.
    G9Total,
    /// G10: a safe message delivered by anyone in a view is delivered by every process that goes
    /// on from that view to the next (uniform delivery).
    G10Safe,
    /// G11 (TESTING ST1): within a view, every state reported at its boundary (`digest`) and
    /// every state transferred for it (`state_loaded`) are equal. Also: a `digest` comes once
    /// per view, in the current view, before any delivery in it.
    G11StateTransfer,
    /// G12: after healing, one view of all live processes (none still waiting for its state),
    /// and every multicast delivered.
    G12Liveness,
    /// TESTING ST2 transfer atomicity: a process loading state in a view delivers nothing there
    /// before its `state_loaded`; it loads only in a view that lists it in `loading`, once; a
    /// transfer cut off by a view change restarts in the next view.
    ST2TransferAtomicity,
    /// TESTING ST3 replica determinism (DESIGN G13): a replica's reported state is the one its
    /// own total and safe deliveries give, replayed from its previous report; and equal
    /// `applied` means equal `hash` everywhere.
    ST3ReplicaDeterminism,
    /// G14 durability: a state acknowledged stored by every member of a view (`durable`) is
    /// in every state reported for a later view, whatever crashed in between (the whole group
    /// included).
    G14Durability,
}

impl fmt::Display for Guarantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Guarantee::G1ViewAgreement => "G1 view agreement",
            Guarantee::G2OneHistory => "G2 one history",
            Guarantee::G3SelfInclusion => "G3 self-inclusion",
            Guarantee::G4VirtualSynchrony => "G4 virtual synchrony",
            Guarantee::G5SendingView => "G5 sending-view delivery",
            Guarantee::G6Integrity => "G6 integrity",
            Guarantee::G7Fifo => "G7 FIFO",
            Guarantee::G8Causal => "G8 causal",
            Guarantee::G9Total => "G9 total",
            Guarantee::G10Safe => "G10 safe",
            Guarantee::G11StateTransfer => "G11 state transfer",
            Guarantee::G12Liveness => "G12 liveness",
            Guarantee::ST2TransferAtomicity => "ST2 transfer atomicity",
            Guarantee::ST3ReplicaDeterminism => "ST3 replica determinism",
            Guarantee::G14Durability => "G14 durability",
        })
    }
}

impl Violation {
    pub(crate) fn new(guarantee: Guarantee, t: u64, detail: impl Into<String>) -> Self {
        Violation { guarantee, t, detail: detail.into() }
    }
}

/// A multicast message: sender, sending view, the sender's sequence number in that view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct MsgId {
    pub(crate) sender: Proc,
    pub(crate) view: u64,
    pub(crate) seq: u64,
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, v{}, #{})", self.sender, self.view, self.seq)
    }
}

/// `[n1.0, n2.0]`
pub(crate) fn procs(list: &[Proc]) -> String {
    let items: Vec<String> = list.iter().map(Proc::to_string).collect();
    format!("[{}]", items.join(", "))
}

/// `(n1.0, v3, #1), (n1.0, v3, #2)`
pub(crate) fn msgs(list: &[MsgId]) -> String {
    let items: Vec<String> = list.iter().map(MsgId::to_string).collect();
    items.join(", ")
}
