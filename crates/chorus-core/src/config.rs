//! Configuration of one member, validated before a [`Node`](crate::Node) is built.

use core::time::Duration;

use crate::error::ConfigError;
use crate::id::{GroupId, Incarnation, MemberId, NodeId, ViewId};
use crate::recovery::Recovery;

/// Everything a [`Node`](crate::Node) needs to know up front. Build with [`Config::new`] and
/// adjust fields; [`Config::validate`] (called by `Node::new`) rejects inconsistent values.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's name.
    pub node: NodeId,
    /// This life's incarnation; should grow across restarts of the same node. One that does
    /// not (drawn from a clock that went back) is refused by members that know a newer one of
    /// this node, with that one: the node then re-joins above it (`Event::Excluded`).
    pub incarnation: Incarnation,
    /// Nodes to ask when joining.
    pub seeds: Vec<NodeId>,
    /// Found a new group if none exists: once a majority of the configured nodes (this one and
    /// its seeds) answer that they belong to no group, and none of them with a lower id is
    /// configured to found one too; until then (and for good, if any of them is a member of a
    /// group) the node asks to join like any other. Never when `group` or `recovery` is set: a
    /// node that was ever a member never founds again. A node without seeds founds at once.
    pub bootstrap: bool,
    /// The group this node belongs to, as its data directory says (None: it never was a
    /// member of one, or keeps no data directory). It is let into no other group.
    pub group: Option<GroupId>,
    /// The identity of the group this node founds, if it does (random, drawn by the caller:
    /// the core has no randomness of its own).
    pub new_group: GroupId,
    /// What the node's data directory says of its earlier life (see `Node::poll_persist`): it
    /// comes back into that view to speak for its old member in the view change, and joins the
    /// next view as this new incarnation (docs/protocol/recovery.md).
    pub recovery: Option<Recovery>,
    /// The caller stores every `Node::poll_persist` record before the frames that follow it
    /// (a data directory). Then a restart whose directory holds no membership of a view that
    /// names an earlier life of its node knows that life never acted in that view (it never
    /// installed it), and may speak for it there (docs/protocol/recovery.md).
    pub durable_membership: bool,
    /// The highest view any earlier life of this node installed, from its data directory
    /// (`Persisted::last_view`).
    pub last_view: ViewId,
    /// When no member alive holds the state and the view must be recovered from the members'
    /// stable storage, wait for every member of the view (not only a majority) to be back:
    /// needed when the application acknowledges writes before every member stored them
    /// (otherwise a member cut off, alive, may hold acknowledged writes the others lack).
    pub recover_all: bool,
    /// A node restarted from stable storage waits this long, on top of `suspect_timeout`, before
    /// it suspects a member of its stored view it has not heard from: after a whole group
    /// restarts, its nodes open their stored state at different speeds, and one left out of the
    /// recovered view by a few milliseconds must then load the whole state from another.
    pub recovery_grace: Duration,
    /// How often members send heartbeats (which also carry acknowledgements).
    pub heartbeat_interval: Duration,
    /// Silence after which a member is suspected (and so removed from the view).
    pub suspect_timeout: Duration,
    /// A member that keeps heartbeating but whose acknowledgement of this member's messages
    /// stands still this long (while more were sent) is suspected like a silent one: it would
    /// otherwise hold every sender's window full for ever. Members loading the state are
    /// exempt (they may hold acknowledgements back on purpose).
    pub lag_timeout: Duration,
    /// Granularity of the core's housekeeping (retransmission requests, timeouts).
    pub tick_interval: Duration,
    /// Minimum time between two retransmission requests for the same gap.
    pub retransmit_interval: Duration,
    /// Longest wait before acknowledging a total or safe message when there is no traffic to
    /// piggyback the acknowledgement on (their delivery waits for every member's).
    pub ack_delay: Duration,
    /// A view-change round that has not completed in this time is retried with a higher ballot.
    pub flush_timeout: Duration,
    /// How often a joiner repeats its join request.
    pub join_retry_interval: Duration,
    /// Largest number of a sender's messages that may be unstable at once (back-pressure).
    pub window_msgs: u32,
    /// Largest number of payload bytes of a sender's messages that may be unstable at once.
    pub window_bytes: u64,
    /// Largest application payload (and checkpoint chunk, with `state_window`). A payload
    /// larger than `window_bytes` is sent alone, once the sender's earlier messages are stable.
    pub max_payload: usize,
    /// Largest frame accepted from or sent to a peer. A message that does not fit one batch
    /// of frames (about 1 MiB, at most half of this) is cut into pieces (`Msg::Frag`).
    pub max_frame: usize,
    /// Largest message put back together from pieces: it must hold the largest view-change
    /// message, whose flush carries up to a window of every member (see `validate`).
    pub max_message: usize,
    /// Largest number of members in a view (joins beyond it are refused).
    pub max_members: usize,
    /// Seed of the core's deterministic random choices (jitter of retries).
    pub seed: u64,
    /// Whether the application transfers state to joiners at the view barrier. When on, the
    /// oldest member holding the state gets `Event::CheckpointRequest` after installing a view
    /// that adds members, and a joiner delivers nothing of its first view until
    /// `Event::StateLoaded`. Off by default: joiners start delivering at once. The
    /// coordinator's setting decides for each view change: set it alike on every member.
    pub state_transfer: bool,
    /// Checkpoint bytes a donor may have sent and not yet seen consumed by every loading
    /// member: the memory a transfer takes at each end.
    pub state_window: u64,
    /// Bytes of new-view messages (payload plus per-message overhead) a loading member holds
    /// before it stops acknowledging more (the senders then stop at their windows until the
    /// state is loaded).
    pub state_buffer: u64,
    /// A deliberate protocol bug, for showing that the simulator's checkers catch it.
    #[cfg(feature = "mutants")]
    pub mutant: Option<crate::Mutant>,
}

impl Config {
    /// Defaults suited to a LAN: heartbeats every 100 ms, suspicion after 500 ms of silence.
    pub fn new(node: NodeId, incarnation: Incarnation) -> Self {
        Config {
            node,
            incarnation,
            seeds: Vec::new(),
            bootstrap: false,
            heartbeat_interval: Duration::from_millis(100),
            suspect_timeout: Duration::from_millis(500),
            recovery_grace: Duration::from_secs(2),
            lag_timeout: Duration::from_secs(3),
            tick_interval: Duration::from_millis(10),
            retransmit_interval: Duration::from_millis(50),
            ack_delay: Duration::from_millis(1),
            flush_timeout: Duration::from_millis(1000),
            join_retry_interval: Duration::from_millis(250),
            window_msgs: 4096,
            window_bytes: 4 << 20,
            max_payload: 1 << 20,
            max_frame: 4 << 20,
            max_message: 320 << 20,
            max_members: 64,
            seed: 0,
            group: None,
            new_group: GroupId(0),
            recovery: None,
            recover_all: false,
            durable_membership: false,
            last_view: ViewId(0),
            state_transfer: false,
            state_window: 8 << 20,
            state_buffer: 16 << 20,
            #[cfg(feature = "mutants")]
            mutant: None,
        }
    }

    /// This member's identity.
    pub fn member_id(&self) -> MemberId {
        MemberId { node: self.node, inc: self.incarnation }
    }

    /// The most a view change's Promise, Accept or Install can carry: every member's unstable
    /// messages, at most a window each (`window_bytes`, or one message of up to `max_payload`
    /// alone), with their headers; `max_message` must hold it.
    pub fn largest_flush(&self) -> u64 {
        let per_member =
            self.window_bytes.max(self.max_payload as u64).saturating_add(u64::from(self.window_msgs) * 64);
        (self.max_members as u64).saturating_mul(per_member).saturating_add(1 << 20)
    }

    /// Checks that the values make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |what: &'static str, why: String| Err(ConfigError::Invalid { what, why });
        if self.heartbeat_interval.is_zero() || self.tick_interval.is_zero() {
            return bad("heartbeat_interval/tick_interval", "must be positive".into());
        }
        if self.suspect_timeout < self.heartbeat_interval * 2 {
            return bad(
                "suspect_timeout",
                format!(
                    "{:?} is less than twice heartbeat_interval ({:?}): live members would be suspected",
                    self.suspect_timeout, self.heartbeat_interval
                ),
            );
        }
        if self.lag_timeout < self.suspect_timeout {
            return bad(
                "lag_timeout",
                format!(
                    "{:?} is less than suspect_timeout ({:?}): a member briefly behind would be suspected",
                    self.lag_timeout, self.suspect_timeout
                ),
            );
        }
        if self.flush_timeout.is_zero() || self.join_retry_interval.is_zero() {
            return bad("flush_timeout/join_retry_interval", "must be positive".into());
        }
        if self.window_msgs == 0 || self.window_bytes == 0 {
            return bad("window_msgs/window_bytes", "must be positive".into());
        }
        if self.state_window == 0 || self.state_buffer == 0 {
            return bad("state_window/state_buffer", "must be positive".into());
        }
        if self.max_members < 1 {
            return bad("max_members", "must be at least 1".into());
        }
        if self.max_frame < 4096 {
            return bad(
                "max_frame",
                "smaller than 4096 bytes (larger messages go in pieces, but not that small)".into(),
            );
        }
        // A view change's Promise, Accept and Install each carry, in one message, every
        // unstable message the receiver lacks: up to a window of every member, plus the
        // messages' headers. Cut into pieces, it must still fit `max_message` once whole.
        let need = self.largest_flush();
        if (self.max_message as u64) < need || self.max_message < self.max_frame {
            return bad(
                "max_message",
                format!(
                    "{} bytes cannot hold a view change's flush of max_members ({}) full windows \
                     (window_bytes {}, or one message of max_payload {} alone; window_msgs {}): it \
                     needs {need} bytes, and at least max_frame",
                    self.max_message, self.max_members, self.window_bytes, self.max_payload, self.window_msgs
                ),
            );
        }
        if let Some(r) = &self.recovery {
            let me = r.membership.me;
            if me.node != self.node || me.inc >= self.incarnation || !r.membership.view.contains(me) {
                return bad(
                    "recovery",
                    format!(
                        "the recovered member {me} must be an earlier incarnation of node {} ({:?}) and a member of its view",
                        self.node.0, self.incarnation
                    ),
                );
            }
        }
        if !self.bootstrap && self.seeds.is_empty() && self.recovery.is_none() {
            return bad(
                "seeds",
                "a node that does not bootstrap needs at least one seed to join through".into(),
            );
        }
        Ok(())
    }
}
