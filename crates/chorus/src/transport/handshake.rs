//! The handshake that opens every connection: each end proves it knows the cluster secret
//! before a single protocol frame is read.
//!
//! Both ends share a cluster name and a secret. Each contributes a fresh 32-byte random nonce
//! and proves knowledge of the secret with HMAC-SHA256 over a transcript holding both nonces,
//! so a recorded handshake is worthless on a new connection. The two proofs use different
//! labels (`chorus/accept`, `chorus/dial`), so an acceptor's proof cannot be reflected back
//! as a dialer's.
//!
//! ```text
//! dialer                                   acceptor
//!   Hello { magic, version, cluster, node, listen, group_d, clock_d, nonce_d } ->
//!                                          checks magic, version, cluster, node != own
//!                   <- Challenge { node, listen, group_a, clock_a, nonce_a, HMAC(secret, "chorus/accept" | T) }
//!                      (or Reject { reason } and close)
//!   checks the acceptor's MAC, then its node id if one was expected, the groups, the clocks
//!   Proof { HMAC(secret, "chorus/dial" | T) } ->
//!                                          checks the dialer's MAC, then the groups, the clocks
//!                   <- Welcome (or Reject { reason } and close)
//! ```
//!
//! The transcript `T` is `len(cluster) u32 BE | cluster | nonce_d | nonce_a | node_d u64 BE |
//! node_a u64 BE | len(listen_d) u32 BE | listen_d | len(listen_a) u32 BE | listen_a |
//! group_d u64 BE | group_a u64 BE | clock_d u64 BE | clock_a u64 BE`: the listen addresses are
//! covered too, so nobody on the path can substitute the address a peer will later be dialed at.
//!
//! Clocks: each end sends its wall clock (ms since the epoch) and checks the other's against
//! its own when the message arrives; a peer off by more than `Identity::max_clock_skew` is
//! refused, and told by how much. The group judges time through its members' clocks (the
//! store's key expiry), so one host whose clock is wrong must not join it. The error is the
//! network delay of one message at most, far below any sensible bound.
//!
//! Groups: each end says which group it belongs to (0 if none yet: a new node). Two nodes of
//! different groups refuse each other once both are authenticated (the cluster name and
//! secret may be shared by several groups, e.g. a store founded twice by mistake), so a node
//! never hears anything of another group; refusals are counted in `Identity::refusals`.
//!
//! Every message is one [`frame`](super::frame) holding a postcard-encoded [`Message`], read
//! with [`read_frame`], which reads exactly one frame and nothing past it: when [`dial`] or
//! [`accept`] returns, the stream sits at the first protocol frame and can be handed to a
//! [`FrameReader`](super::frame::FrameReader). Authentication only: the connection is not
//! encrypted, and nothing protects it after the handshake against an attacker on the path.
//!
//! Secrets, nonces and MACs are never logged or put in error messages.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::frame::{read_frame, write_frame, FrameError};

/// First bytes of a Hello: tells a chorus node from anything else that connects.
pub const MAGIC: [u8; 4] = *b"CHRS";
/// Handshake version this build speaks.
pub const VERSION: u8 = 3;
/// Largest handshake frame payload. A Hello at its limits takes about 400 bytes.
pub const MAX_HANDSHAKE_FRAME: usize = 1024;
/// Longest cluster name, in bytes.
pub const MAX_CLUSTER_LEN: usize = 64;
/// Longest listen address, in bytes: a host name of 253 bytes, a colon and a port.
pub const MAX_LISTEN_LEN: usize = 259;

/// Length of a nonce and of a MAC.
const NONCE_LEN: usize = 32;
type HmacSha256 = Hmac<Sha256>;
const ACCEPT_LABEL: &[u8] = b"chorus/accept";
const DIAL_LABEL: &[u8] = b"chorus/dial";
/// Sent to a dialer whose proof is wrong; deliberately says nothing more.
const AUTH_FAILED: &str = "authentication failed";

/// Who this node is, as it presents itself to peers.
#[derive(Clone)]
pub struct Identity {
    /// Name of the cluster; both ends must agree. At most [`MAX_CLUSTER_LEN`] bytes.
    pub cluster: String,
    /// Shared secret of the cluster. Must not be empty.
    pub secret: Arc<[u8]>,
    /// This node's id.
    pub node: u64,
    /// Address where this node accepts connections. At most [`MAX_LISTEN_LEN`] bytes.
    pub listen: String,
    /// The group this node belongs to (0: none yet), kept up to date by the member.
    pub group: Arc<AtomicU64>,
    /// Handshakes refused because the peer belongs to another group.
    pub refusals: Arc<AtomicU64>,
    /// The most a peer's wall clock may differ from ours (None: not checked).
    pub max_clock_skew: Option<Duration>,
    /// Our wall clock, in ms since the epoch (a parameter so that tests can shift it).
    pub wall_clock: fn() -> u64,
}

/// The system's wall clock in ms since the epoch (0 if it reads before 1970).
pub fn system_clock_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Identity {
    /// An identity outside any group yet.
    pub fn new(cluster: String, secret: Arc<[u8]>, node: u64, listen: String) -> Identity {
        Identity {
            cluster,
            secret,
            node,
            listen,
            group: Arc::default(),
            refusals: Arc::default(),
            max_clock_skew: None,
            wall_clock: system_clock_ms,
        }
    }

    fn group(&self) -> u64 {
        self.group.load(Ordering::Relaxed)
    }
}

/// Hides the secret, so an `Identity` can be logged.
impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("cluster", &self.cluster)
            .field("secret", &"<redacted>")
            .field("node", &self.node)
            .field("listen", &self.listen)
            .field("group", &self.group())
            .field("max_clock_skew", &self.max_clock_skew)
            .finish()
    }
}

/// The authenticated peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's node id, bound to its proof of the secret.
    pub node: u64,
    /// The address the peer says it listens on (covered by its proof, not checked for
    /// reachability or syntax: parse it before dialing it).
    pub listen: String,
}

/// The two ends of a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The end that opened the connection.
    Dialer,
    /// The end that accepted it.
    Acceptor,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Dialer => "dialer",
            Side::Acceptor => "acceptor",
        })
    }
}

/// Why a handshake failed. Each message says whose fault it is. After any error, close the
/// connection.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Our side cannot run the handshake, typically because our identity is unusable (our
    /// configuration's fault, not the peer's).
    #[error("cannot run the handshake: {0} (local fault, not the peer's)")]
    Config(&'static str),
    /// The operating system gave us no randomness for a nonce (a local fault).
    #[error("cannot draw a nonce from the OS random source: {0} (local fault)")]
    Rng(getrandom::Error),
    /// The connection failed.
    #[error("i/o error during the handshake: {0}")]
    Io(#[from] std::io::Error),
    /// The handshake did not complete in time: the peer is silent, too slow, or unreachable.
    #[error("handshake did not complete within {0:?} (peer silent or too slow)")]
    Timeout(Duration),
    /// The peer closed the connection between messages.
    #[error("peer closed the connection during the handshake")]
    Closed,
    /// A handshake frame was bad (oversized, corrupted, cut short).
    #[error("bad handshake frame from the peer: {0}")]
    Frame(#[from] FrameError),
    /// A frame that does not decode as a handshake message (the peer's fault).
    #[error("peer sent a malformed handshake message: {0}")]
    Malformed(String),
    /// A well-formed message at the wrong step (the peer's fault).
    #[error("peer sent {got} where {expected} was due (peer's fault)")]
    Unexpected {
        /// The message this step waits for.
        expected: &'static str,
        /// The message that came.
        got: &'static str,
    },
    /// The peer's Hello has the wrong magic or version: not chorus, or an incompatible one.
    #[error(
        "peer speaks protocol \"{theirs}\" version {version}, we speak \"{ours}\" version \
         {VERSION} (the peer is not a compatible chorus node)",
        theirs = .magic.escape_ascii(), ours = MAGIC.escape_ascii()
    )]
    Protocol {
        /// The peer's magic.
        magic: [u8; 4],
        /// The peer's version.
        version: u8,
    },
    /// The peer belongs to another cluster (a misconfigured peer, or a wrong address).
    #[error("peer is in cluster {theirs:?}, we are in {ours:?} (misconfigured peer or wrong address)")]
    WrongCluster {
        /// Our cluster.
        ours: String,
        /// The peer's.
        theirs: String,
    },
    /// The peer belongs to another group of the same cluster (a group founded twice, or nodes
    /// of two stores sharing a name and secret): neither hears anything of the other.
    #[error("peer is in group {theirs:016x}, this node is in group {ours:016x}: refused (two groups with one cluster name and secret)")]
    ForeignGroup {
        /// Our group.
        ours: u64,
        /// The peer's.
        theirs: u64,
    },
    /// The peer failed to prove that it knows the cluster secret: the secrets differ, or the
    /// peer is an impostor.
    #[error("the {peer_is} failed to prove it knows the cluster secret (secrets differ, or an impostor)")]
    BadSecret {
        /// The side that failed: always the other end.
        peer_is: Side,
    },
    /// We dialed one node and another answered (a stale address, or a restarted node with a
    /// new id).
    #[error("dialed node {expected} but node {got} answered (stale address?)")]
    WrongPeer {
        /// The node we meant to reach.
        expected: u64,
        /// The node that proved its identity.
        got: u64,
    },
    /// The peer has our own node id: we reached ourselves, or two nodes share an id.
    #[error("peer claims our own node id {0} (connected to ourselves, or two nodes share an id)")]
    SelfConnect(u64),
    /// The peer's wall clock is too far from ours: one of the two hosts has a wrong clock.
    #[error(
        "node {peer}'s clock is {} ours, more than max_clock_skew ({} ms) allows: refused \
         (fix the clocks, e.g. with NTP)",
        skew_text(*.ahead_ms), .max.as_millis()
    )]
    ClockSkew {
        /// The peer.
        peer: u64,
        /// How far the peer's clock is ahead of ours (negative: behind), in ms.
        ahead_ms: i64,
        /// The bound.
        max: Duration,
    },
    /// The peer refused us, for the reason it gave.
    #[error("peer refused the handshake: {reason:?}")]
    Rejected {
        /// The peer's explanation (untrusted text; escaped when displayed).
        reason: String,
    },
}

/// A handshake message: the payload of one handshake frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Message {
    /// Dialer → acceptor: who I am, and my nonce.
    Hello {
        /// [`MAGIC`].
        magic: [u8; 4],
        /// [`VERSION`].
        version: u8,
        /// The dialer's cluster.
        cluster: String,
        /// The dialer's node id.
        node: u64,
        /// The dialer's listen address.
        listen: String,
        /// The dialer's group (0: none yet).
        group: u64,
        /// The dialer's wall clock, ms since the epoch.
        clock: u64,
        /// The dialer's fresh nonce.
        nonce: [u8; NONCE_LEN],
    },
    /// Either side: I refuse; the connection is closed next.
    Reject {
        /// Why, for the other side's logs.
        reason: String,
    },
    /// Acceptor → dialer: who I am, my nonce, and my proof of the secret.
    Challenge {
        /// The acceptor's node id.
        node: u64,
        /// The acceptor's listen address.
        listen: String,
        /// The acceptor's group (0: none yet).
        group: u64,
        /// The acceptor's wall clock, ms since the epoch.
        clock: u64,
        /// The acceptor's fresh nonce.
        nonce: [u8; NONCE_LEN],
        /// `HMAC(secret, "chorus/accept" | transcript)`.
        mac: [u8; NONCE_LEN],
    },
    /// Dialer → acceptor: my proof of the secret.
    Proof {
        /// `HMAC(secret, "chorus/dial" | transcript)`.
        mac: [u8; NONCE_LEN],
    },
    /// Acceptor → dialer: you are in; protocol frames follow.
    Welcome,
}

impl Message {
    fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "Hello",
            Message::Reject { .. } => "Reject",
            Message::Challenge { .. } => "Challenge",
            Message::Proof { .. } => "Proof",
            Message::Welcome => "Welcome",
        }
    }
}

/// Authenticates the peer at the other end of a connection we opened.
///
/// `expect` is the node id we meant to reach, if known. `timeout` bounds the whole handshake.
/// On success the stream is positioned at the first protocol frame.
///
/// # Errors
///
/// See [`HandshakeError`]; in particular [`HandshakeError::BadSecret`] with
/// `peer_is: Side::Acceptor` if the acceptor cannot prove the secret, and
/// [`HandshakeError::Rejected`] if the acceptor refuses us (wrong cluster, wrong secret, ...).
pub async fn dial<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    me: &Identity,
    expect: Option<u64>,
    timeout: Duration,
) -> Result<PeerInfo, HandshakeError> {
    check_identity(me)?;
    tokio::time::timeout(timeout, dial_inner(stream, me, expect))
        .await
        .map_err(|_| HandshakeError::Timeout(timeout))?
}

/// Authenticates the peer at the other end of a connection we accepted.
///
/// `timeout` bounds the whole handshake, so a peer that connects and stays silent is dropped.
/// On success the stream is positioned at the first protocol frame.
///
/// # Errors
///
/// See [`HandshakeError`]; in particular [`HandshakeError::BadSecret`] with
/// `peer_is: Side::Dialer` if the dialer cannot prove the secret (it is told only
/// "authentication failed"), and [`HandshakeError::WrongCluster`],
/// [`HandshakeError::Protocol`], [`HandshakeError::SelfConnect`] for a Hello we refuse (the
/// dialer is told why).
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    me: &Identity,
    timeout: Duration,
) -> Result<PeerInfo, HandshakeError> {
    check_identity(me)?;
    tokio::time::timeout(timeout, accept_inner(stream, me))
        .await
        .map_err(|_| HandshakeError::Timeout(timeout))?
}

async fn dial_inner<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    me: &Identity,
    expect: Option<u64>,
) -> Result<PeerInfo, HandshakeError> {
    let nonce_d = nonce()?;
    let group_d = me.group();
    let clock_d = (me.wall_clock)();
    send(
        stream,
        &Message::Hello {
            magic: MAGIC,
            version: VERSION,
            cluster: me.cluster.clone(),
            node: me.node,
            listen: me.listen.clone(),
            group: group_d,
            clock: clock_d,
            nonce: nonce_d,
        },
    )
    .await?;

    let (node, listen, group_a, clock_a, nonce_a, mac) = match recv(stream).await? {
        Message::Challenge { node, listen, group, clock, nonce, mac } => {
            (node, listen, group, clock, nonce, mac)
        }
        Message::Reject { reason } => return Err(HandshakeError::Rejected { reason }),
        other => return Err(HandshakeError::Unexpected { expected: "Challenge", got: other.name() }),
    };
    if listen.len() > MAX_LISTEN_LEN {
        let err = HandshakeError::Malformed(format!(
            "listen address of {} bytes, over {MAX_LISTEN_LEN}",
            listen.len()
        ));
        return Err(refuse(stream, "listen address too long", err).await);
    }
    let transcript = Transcript {
        cluster: &me.cluster,
        nonce_d: &nonce_d,
        nonce_a: &nonce_a,
        node_d: me.node,
        node_a: node,
        listen_d: &me.listen,
        listen_a: &listen,
        group_d,
        group_a,
        clock_d,
        clock_a,
    }
    .bytes();
    if keyed(&me.secret, ACCEPT_LABEL, &transcript)?.verify_slice(&mac).is_err() {
        let err = HandshakeError::BadSecret { peer_is: Side::Acceptor };
        return Err(refuse(stream, AUTH_FAILED, err).await);
    }
    // Authenticated from here on: `node` is covered by the MAC.
    if node == me.node {
        let err = HandshakeError::SelfConnect(node);
        return Err(refuse(stream, "you have my node id", err).await);
    }
    if let Some(expected) = expect {
        if node != expected {
            let err = HandshakeError::WrongPeer { expected, got: node };
            let reason = format!("dialed node {expected}, reached node {node}");
            return Err(refuse(stream, &reason, err).await);
        }
    }
    if let Err(err) = same_group(me, group_a) {
        return Err(refuse(stream, &err.to_string(), err).await);
    }
    if let Err((err, reason)) = close_clocks(me, node, clock_a, (me.wall_clock)()) {
        return Err(refuse(stream, &reason, err).await);
    }
    let proof = sign(keyed(&me.secret, DIAL_LABEL, &transcript)?);
    send(stream, &Message::Proof { mac: proof }).await?;

    match recv(stream).await? {
        Message::Welcome => {
            tracing::debug!(peer = node, %listen, "handshake done (dialer)");
            Ok(PeerInfo { node, listen })
        }
        Message::Reject { reason } => Err(HandshakeError::Rejected { reason }),
        other => Err(HandshakeError::Unexpected { expected: "Welcome", got: other.name() }),
    }
}

async fn accept_inner<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    me: &Identity,
) -> Result<PeerInfo, HandshakeError> {
    let (magic, version, cluster, node, listen, group_d, clock_d, nonce_d) = match recv(stream).await {
        Ok(Message::Hello { magic, version, cluster, node, listen, group, clock, nonce }) => {
            (magic, version, cluster, node, listen, group, clock, nonce)
        }
        Ok(other) => {
            let err = HandshakeError::Unexpected { expected: "Hello", got: other.name() };
            return Err(refuse(stream, "expected Hello", err).await);
        }
        Err(err @ HandshakeError::Malformed(_)) => return Err(refuse(stream, "malformed Hello", err).await),
        // Not even a frame: probably not a chorus node; do not answer.
        Err(err) => return Err(err),
    };
    if magic != MAGIC || version != VERSION {
        let reason = format!("this node speaks \"{}\" version {VERSION}", MAGIC.escape_ascii());
        let err = HandshakeError::Protocol { magic, version };
        return Err(refuse(stream, &reason, err).await);
    }
    if cluster.len() > MAX_CLUSTER_LEN || listen.len() > MAX_LISTEN_LEN {
        let err = HandshakeError::Malformed(format!(
            "cluster name of {} bytes (max {MAX_CLUSTER_LEN}) or listen address of {} bytes \
             (max {MAX_LISTEN_LEN})",
            cluster.len(),
            listen.len()
        ));
        return Err(refuse(stream, "cluster name or listen address too long", err).await);
    }
    if cluster != me.cluster {
        let reason = format!("wrong cluster: you are in {cluster:?}, this node is in {:?}", me.cluster);
        let err = HandshakeError::WrongCluster { ours: me.cluster.clone(), theirs: cluster };
        return Err(refuse(stream, &reason, err).await);
    }
    if node == me.node {
        let reason = format!("you have this node's id {node} (connected to yourself?)");
        return Err(refuse(stream, &reason, HandshakeError::SelfConnect(node)).await);
    }

    let nonce_a = nonce()?;
    let group_a = me.group();
    // Our clock when the dialer's arrived: checked once the dialer has proved who it is.
    let clock_a = (me.wall_clock)();
    let transcript = Transcript {
        cluster: &me.cluster,
        nonce_d: &nonce_d,
        nonce_a: &nonce_a,
        node_d: node,
        node_a: me.node,
        listen_d: &listen,
        listen_a: &me.listen,
        group_d,
        group_a,
        clock_d,
        clock_a,
    }
    .bytes();
    let mac = sign(keyed(&me.secret, ACCEPT_LABEL, &transcript)?);
    let challenge = Message::Challenge {
        node: me.node,
        listen: me.listen.clone(),
        group: group_a,
        clock: clock_a,
        nonce: nonce_a,
        mac,
    };
    send(stream, &challenge).await?;

    let proof = match recv(stream).await? {
        Message::Proof { mac } => mac,
        Message::Reject { reason } => return Err(HandshakeError::Rejected { reason }),
        other => {
            let err = HandshakeError::Unexpected { expected: "Proof", got: other.name() };
            return Err(refuse(stream, "expected Proof", err).await);
        }
    };
    if keyed(&me.secret, DIAL_LABEL, &transcript)?.verify_slice(&proof).is_err() {
        let err = HandshakeError::BadSecret { peer_is: Side::Dialer };
        return Err(refuse(stream, AUTH_FAILED, err).await);
    }
    if let Err(err) = same_group(me, group_d) {
        return Err(refuse(stream, &err.to_string(), err).await);
    }
    if let Err((err, reason)) = close_clocks(me, node, clock_d, clock_a) {
        return Err(refuse(stream, &reason, err).await);
    }
    send(stream, &Message::Welcome).await?;
    tracing::debug!(peer = node, %listen, "handshake done (acceptor)");
    Ok(PeerInfo { node, listen })
}

/// Both ends in one group, or one of them in none yet. A refusal is counted.
fn same_group(me: &Identity, theirs: u64) -> Result<(), HandshakeError> {
    let ours = me.group();
    if ours != 0 && theirs != 0 && ours != theirs {
        me.refusals.fetch_add(1, Ordering::Relaxed);
        return Err(HandshakeError::ForeignGroup { ours, theirs });
    }
    Ok(())
}

/// The peer's clock (`theirs`, read when its message arrived at `ours`) is within the bound.
/// On refusal: the error for our logs and the reason for the peer's.
fn close_clocks(me: &Identity, peer: u64, theirs: u64, ours: u64) -> Result<(), (HandshakeError, String)> {
    let Some(max) = me.max_clock_skew else { return Ok(()) };
    let ahead_ms = i64::try_from(i128::from(theirs) - i128::from(ours)).unwrap_or(i64::MAX);
    if ahead_ms.unsigned_abs() <= max.as_millis() as u64 {
        return Ok(());
    }
    let reason = format!(
        "your clock is {} node {}'s, more than its max_clock_skew ({} ms) allows (fix the clocks, e.g. with NTP)",
        skew_text(ahead_ms),
        me.node,
        max.as_millis()
    );
    Err((HandshakeError::ClockSkew { peer, ahead_ms, max }, reason))
}

/// "1.500 s ahead of" / "600.000 s behind".
fn skew_text(ahead_ms: i64) -> String {
    let way = if ahead_ms >= 0 { "ahead of" } else { "behind" };
    format!("{}.{:03} s {way}", ahead_ms.unsigned_abs() / 1000, ahead_ms.unsigned_abs() % 1000)
}

/// Refuses our own identity before anything is sent, rather than let the peer find out.
fn check_identity(me: &Identity) -> Result<(), HandshakeError> {
    if me.secret.is_empty() {
        return Err(HandshakeError::Config("the cluster secret is empty"));
    }
    if me.cluster.len() > MAX_CLUSTER_LEN {
        return Err(HandshakeError::Config("the cluster name is longer than 64 bytes"));
    }
    if me.listen.len() > MAX_LISTEN_LEN {
        return Err(HandshakeError::Config("the listen address is longer than 259 bytes"));
    }
    Ok(())
}

/// Everything both proofs cover. Lengths prefix the variable fields so that no two different
/// transcripts have the same bytes.
struct Transcript<'a> {
    cluster: &'a str,
    nonce_d: &'a [u8; NONCE_LEN],
    nonce_a: &'a [u8; NONCE_LEN],
    node_d: u64,
    node_a: u64,
    listen_d: &'a str,
    listen_a: &'a str,
    group_d: u64,
    group_a: u64,
    clock_d: u64,
    clock_a: u64,
}

impl Transcript<'_> {
    fn bytes(&self) -> Vec<u8> {
        let mut t = Vec::with_capacity(
            3 * 4 + 2 * NONCE_LEN + 6 * 8 + self.cluster.len() + self.listen_d.len() + self.listen_a.len(),
        );
        put_str(&mut t, self.cluster);
        t.extend_from_slice(self.nonce_d);
        t.extend_from_slice(self.nonce_a);
        t.extend_from_slice(&self.node_d.to_be_bytes());
        t.extend_from_slice(&self.node_a.to_be_bytes());
        put_str(&mut t, self.listen_d);
        put_str(&mut t, self.listen_a);
        t.extend_from_slice(&self.group_d.to_be_bytes());
        t.extend_from_slice(&self.group_a.to_be_bytes());
        t.extend_from_slice(&self.clock_d.to_be_bytes());
        t.extend_from_slice(&self.clock_a.to_be_bytes());
        t
    }
}

/// Appends a string prefixed by its length; callers have bounded it far below `u32::MAX`.
fn put_str(t: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    t.extend_from_slice(&len.to_be_bytes());
    t.extend_from_slice(s.as_bytes());
}

/// An HMAC-SHA256 keyed with the secret, fed with a label and the transcript.
fn keyed(secret: &[u8], label: &[u8], transcript: &[u8]) -> Result<HmacSha256, HandshakeError> {
    // HMAC takes keys of any length, so this never fails; no reason to panic if it did.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .map_err(|_| HandshakeError::Config("the cluster secret is not a usable HMAC key"))?;
    mac.update(label);
    mac.update(transcript);
    Ok(mac)
}

fn sign(mac: HmacSha256) -> [u8; NONCE_LEN] {
    mac.finalize().into_bytes().into()
}

fn nonce() -> Result<[u8; NONCE_LEN], HandshakeError> {
    let mut n = [0u8; NONCE_LEN];
    getrandom::fill(&mut n).map_err(HandshakeError::Rng)?;
    Ok(n)
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, msg: &Message) -> Result<(), HandshakeError> {
    // Our messages are bounded by construction (names and addresses checked), well under
    // the frame limit; an encoding failure would be a bug, reported rather than panicked on.
    let bytes = postcard::to_stdvec(msg)
        .map_err(|_| HandshakeError::Config("cannot encode our own handshake message"))?;
    write_frame(stream, &bytes).await?;
    Ok(())
}

/// Reads exactly one handshake frame (never past it, see the module doc) and decodes it.
async fn recv<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Message, HandshakeError> {
    let Some(payload) = read_frame(stream, MAX_HANDSHAKE_FRAME).await? else {
        return Err(HandshakeError::Closed);
    };
    let (msg, rest) = postcard::take_from_bytes::<Message>(&payload)
        .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(HandshakeError::Malformed(format!(
            "{} trailing bytes after a {}",
            rest.len(),
            msg.name()
        )));
    }
    Ok(msg)
}

/// Tells the peer why we give up (best effort: it may be gone), closes our side, and returns
/// `err` for the caller.
async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, reason: &str, err: HandshakeError) -> HandshakeError {
    let reject = Message::Reject { reason: reason.to_owned() };
    if send(stream, &reject).await.is_ok() {
        let _ = stream.shutdown().await;
    }
    err
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::transport::frame::{self, FrameReader, HEADER_LEN};
    use tokio::io::{duplex, AsyncReadExt, DuplexStream};

    const T: Duration = Duration::from_secs(5);

    fn id(node: u64, secret: &[u8]) -> Identity {
        Identity::new("prod".into(), Arc::from(secret), node, format!("10.0.0.{node}:7000"))
    }

    async fn run(
        d: &Identity,
        a: &Identity,
        expect: Option<u64>,
    ) -> (Result<PeerInfo, HandshakeError>, Result<PeerInfo, HandshakeError>) {
        let (mut cd, mut ca) = duplex(4096);
        tokio::join!(dial(&mut cd, d, expect, T), accept(&mut ca, a, T))
    }

    /// Sends raw bytes as the dialer, and returns what the acceptor says plus the dialer end.
    async fn accept_raw(bytes: &[u8]) -> (Result<PeerInfo, HandshakeError>, DuplexStream) {
        let (mut cd, mut ca) = duplex(4096);
        cd.write_all(bytes).await.unwrap();
        let res = accept(&mut ca, &id(2, b"s3cret"), T).await;
        (res, cd)
    }

    fn hello(node: u64) -> Message {
        Message::Hello {
            magic: MAGIC,
            version: VERSION,
            cluster: "prod".into(),
            node,
            listen: "x:1".into(),
            group: 0,
            clock: 0,
            nonce: [7; 32],
        }
    }

    fn framed(msg: &Message) -> Vec<u8> {
        let mut out = bytes::BytesMut::new();
        frame::encode(&mut out, &postcard::to_stdvec(msg).unwrap());
        out.to_vec()
    }

    /// What the acceptor sent back: a Reject's reason, or None if it sent nothing.
    async fn reply(mut cd: DuplexStream) -> Option<Message> {
        let payload = read_frame(&mut cd, MAX_HANDSHAKE_FRAME).await.ok()??;
        postcard::from_bytes(&payload).ok()
    }

    #[tokio::test]
    async fn success_both_sides_learn_each_other() {
        let (d, a) = (id(1, b"s3cret"), id(2, b"s3cret"));
        let (rd, ra) = run(&d, &a, Some(2)).await;
        assert_eq!(rd.unwrap(), PeerInfo { node: 2, listen: a.listen.clone() });
        assert_eq!(ra.unwrap(), PeerInfo { node: 1, listen: d.listen.clone() });
        // Without an expected id, too.
        let (rd, ra) = run(&d, &a, None).await;
        assert_eq!(rd.unwrap().node, 2);
        assert_eq!(ra.unwrap().node, 1);
    }

    #[tokio::test]
    async fn dialer_with_wrong_secret() {
        let (rd, ra) = run(&id(1, b"guess"), &id(2, b"s3cret"), None).await;
        // The dialer cannot verify the acceptor either: it refuses first.
        assert!(matches!(rd, Err(HandshakeError::BadSecret { peer_is: Side::Acceptor })), "{rd:?}");
        assert!(matches!(ra, Err(HandshakeError::Rejected { .. })), "{ra:?}");
    }

    /// A dialer that does not know the secret but skips checking the acceptor (an impostor)
    /// still cannot get in: the acceptor finds its proof wrong.
    #[tokio::test]
    async fn impostor_dialer_is_refused_by_the_acceptor() {
        let (mut cd, mut ca) = duplex(4096);
        let acceptor = tokio::spawn(async move {
            let r = accept(&mut ca, &id(2, b"s3cret"), T).await;
            (r, ca)
        });
        cd.write_all(&framed(&hello(1))).await.unwrap();
        let challenge = read_frame(&mut cd, MAX_HANDSHAKE_FRAME).await.unwrap().unwrap();
        let Message::Challenge { mac, .. } = postcard::from_bytes(&challenge).unwrap() else {
            panic!("expected a Challenge");
        };
        // Replaying the acceptor's own MAC as a proof does not work either.
        cd.write_all(&framed(&Message::Proof { mac })).await.unwrap();
        let (ra, _ca) = acceptor.await.unwrap();
        assert!(matches!(ra, Err(HandshakeError::BadSecret { peer_is: Side::Dialer })), "{ra:?}");
        let reply = reply(cd).await;
        assert_eq!(reply, Some(Message::Reject { reason: AUTH_FAILED.into() }));
    }

    #[tokio::test]
    async fn acceptor_with_wrong_secret() {
        let (rd, ra) = run(&id(1, b"s3cret"), &id(2, b"guess"), None).await;
        assert!(matches!(rd, Err(HandshakeError::BadSecret { peer_is: Side::Acceptor })), "{rd:?}");
        match ra {
            Err(HandshakeError::Rejected { reason }) => assert_eq!(reason, AUTH_FAILED),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn wrong_cluster() {
        let d = id(1, b"s3cret");
        let mut a = id(2, b"s3cret");
        a.cluster = "staging".into();
        let (rd, ra) = run(&d, &a, None).await;
        match ra {
            Err(HandshakeError::WrongCluster { ours, theirs }) => {
                assert_eq!((ours.as_str(), theirs.as_str()), ("staging", "prod"));
            }
            other => panic!("{other:?}"),
        }
        match rd {
            Err(e @ HandshakeError::Rejected { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("prod") && msg.contains("staging"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn wrong_magic_or_version() {
        for (magic, version) in [(*b"HTTP", VERSION), (MAGIC, VERSION + 1)] {
            let mut h = hello(1);
            if let Message::Hello { magic: m, version: v, .. } = &mut h {
                (*m, *v) = (magic, version);
            }
            let (res, cd) = accept_raw(&framed(&h)).await;
            match res {
                Err(HandshakeError::Protocol { magic: m, version: v }) => {
                    assert_eq!((m, v), (magic, version));
                }
                other => panic!("{other:?}"),
            }
            assert!(matches!(reply(cd).await, Some(Message::Reject { .. })));
        }
    }

    #[tokio::test]
    async fn garbage_instead_of_hello() {
        // An HTTP client: "GET " read as a length is over the limit.
        let (res, cd) = accept_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(matches!(res, Err(HandshakeError::Frame(FrameError::Oversized { .. }))), "{res:?}");
        assert_eq!(reply(cd).await, None, "no answer to something that is not a frame");

        // A well-formed frame with nonsense inside.
        let mut wire = bytes::BytesMut::new();
        frame::encode(&mut wire, &[0xff; 40]);
        let (res, cd) = accept_raw(&wire).await;
        assert!(matches!(res, Err(HandshakeError::Malformed(_))), "{res:?}");
        assert!(matches!(reply(cd).await, Some(Message::Reject { .. })));

        // A valid message followed by junk in the same frame.
        let mut payload = postcard::to_stdvec(&hello(1)).unwrap();
        payload.push(0);
        let mut wire = bytes::BytesMut::new();
        frame::encode(&mut wire, &payload);
        let (res, _) = accept_raw(&wire).await;
        assert!(matches!(res, Err(HandshakeError::Malformed(_))), "{res:?}");

        // A corrupted frame.
        let mut wire = framed(&hello(1));
        let last = wire.len() - 1;
        wire[last] ^= 0x80;
        let (res, _) = accept_raw(&wire).await;
        assert!(matches!(res, Err(HandshakeError::Frame(FrameError::Checksum { .. }))), "{res:?}");

        // A message out of turn.
        let (res, _) = accept_raw(&framed(&Message::Welcome)).await;
        assert!(
            matches!(res, Err(HandshakeError::Unexpected { expected: "Hello", got: "Welcome" })),
            "{res:?}"
        );

        // Every prefix of a valid Hello, then the end of the stream: never a panic.
        let wire = framed(&hello(1));
        for cut in 0..wire.len() {
            let (mut cd, mut ca) = duplex(4096);
            cd.write_all(&wire[..cut]).await.unwrap();
            drop(cd);
            let res = accept(&mut ca, &id(2, b"s3cret"), T).await;
            match (cut, res) {
                (0, Err(HandshakeError::Closed)) => {}
                (_, Err(HandshakeError::Frame(FrameError::Truncated { got }))) => assert_eq!(got, cut),
                (_, other) => panic!("cut {cut}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn hello_fields_over_their_limits() {
        let mut h = hello(1);
        if let Message::Hello { listen, .. } = &mut h {
            *listen = "a".repeat(MAX_LISTEN_LEN + 1);
        }
        let (res, _) = accept_raw(&framed(&h)).await;
        assert!(matches!(res, Err(HandshakeError::Malformed(_))), "{res:?}");
    }

    #[tokio::test]
    async fn oversized_hello_refused_before_allocating() {
        // A header claiming 4 GiB, and the connection left open: an acceptor that tried to
        // read (or allocate) the payload would wait for it and time out instead.
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        let (mut cd, mut ca) = duplex(4096);
        cd.write_all(&header).await.unwrap();
        let res = accept(&mut ca, &id(2, b"s3cret"), Duration::from_secs(30)).await;
        match res {
            Err(HandshakeError::Frame(FrameError::Oversized { len, max })) => {
                assert_eq!((len, max), (u32::MAX as usize, MAX_HANDSHAKE_FRAME));
            }
            other => panic!("{other:?}"),
        }
        drop(cd);
    }

    #[tokio::test]
    async fn silent_peer_times_out() {
        let short = Duration::from_millis(100);
        let (_cd, mut ca) = duplex(4096);
        let res = accept(&mut ca, &id(2, b"s3cret"), short).await;
        assert!(matches!(res, Err(HandshakeError::Timeout(t)) if t == short), "{res:?}");

        // A dialer whose acceptor reads the Hello and then says nothing.
        let (mut cd, _ca) = duplex(4096);
        let res = dial(&mut cd, &id(1, b"s3cret"), None, short).await;
        assert!(matches!(res, Err(HandshakeError::Timeout(_))), "{res:?}");
    }

    #[tokio::test]
    async fn peer_closes_mid_handshake() {
        let (mut cd, ca) = duplex(4096);
        drop(ca);
        let res = dial(&mut cd, &id(1, b"s3cret"), None, T).await;
        assert!(matches!(res, Err(HandshakeError::Io(_) | HandshakeError::Closed)), "{res:?}");
    }

    #[tokio::test]
    async fn expect_mismatch() {
        let (rd, ra) = run(&id(1, b"s3cret"), &id(2, b"s3cret"), Some(3)).await;
        assert!(matches!(rd, Err(HandshakeError::WrongPeer { expected: 3, got: 2 })), "{rd:?}");
        assert!(matches!(ra, Err(HandshakeError::Rejected { .. })), "{ra:?}");
    }

    #[tokio::test]
    async fn self_connect_refused() {
        let me = id(5, b"s3cret");
        let (rd, ra) = run(&me, &me, None).await;
        assert!(matches!(ra, Err(HandshakeError::SelfConnect(5))), "{ra:?}");
        assert!(matches!(rd, Err(HandshakeError::Rejected { .. })), "{rd:?}");
    }

    #[tokio::test]
    async fn invalid_own_identity_sends_nothing() {
        let mut me = id(1, b"");
        let (mut cd, mut ca) = duplex(4096);
        let res = dial(&mut cd, &me, None, T).await;
        assert!(matches!(res, Err(HandshakeError::Config(_))), "{res:?}");
        me = id(1, b"s3cret");
        me.cluster = "c".repeat(MAX_CLUSTER_LEN + 1);
        let res = dial(&mut cd, &me, None, T).await;
        assert!(matches!(res, Err(HandshakeError::Config(_))), "{res:?}");
        drop(cd);
        let mut rest = Vec::new();
        ca.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    /// Protocol frames sent right behind the handshake, in both directions, reach a
    /// `FrameReader` created only after the handshake returned.
    #[tokio::test]
    async fn frames_right_after_the_handshake_are_not_lost() {
        let (d, a) = (id(1, b"s3cret"), id(2, b"s3cret"));
        let (mut cd, mut ca) = duplex(4096);
        let acceptor = async {
            accept(&mut ca, &a, T).await.unwrap();
            // Straight behind the Welcome, in the same buffer.
            frame::write_frame(&mut ca, b"from acceptor").await.unwrap();
            let mut r = FrameReader::new(&mut ca, 1 << 20);
            r.next().await.unwrap().unwrap()
        };
        let dialer = async {
            dial(&mut cd, &d, Some(2), T).await.unwrap();
            frame::write_frame(&mut cd, b"from dialer").await.unwrap();
            let mut r = FrameReader::new(&mut cd, 1 << 20);
            r.next().await.unwrap().unwrap()
        };
        let (got_a, got_d) = tokio::join!(acceptor, dialer);
        assert_eq!(got_a, &b"from dialer"[..]);
        assert_eq!(got_d, &b"from acceptor"[..]);
    }

    /// The same, with each last handshake message and the first protocol frame arriving in
    /// one write, so a reader that buffered past the handshake would swallow the frame.
    #[tokio::test]
    async fn frame_in_the_same_write_as_the_last_handshake_message() {
        let secret = b"s3cret";
        let (d, a) = (id(1, secret), id(2, secret));

        // A scripted acceptor: Welcome and a protocol frame in one write.
        let (mut cd, mut ca) = duplex(4096);
        let script = async {
            let hello = read_frame(&mut ca, MAX_HANDSHAKE_FRAME).await.unwrap().unwrap();
            let Message::Hello { nonce: nonce_d, listen, clock: clock_d, .. } =
                postcard::from_bytes(&hello).unwrap()
            else {
                panic!("expected Hello");
            };
            let nonce_a = [9u8; 32];
            let t = Transcript {
                cluster: &a.cluster,
                nonce_d: &nonce_d,
                nonce_a: &nonce_a,
                node_d: 1,
                node_a: 2,
                listen_d: &listen,
                listen_a: &a.listen,
                group_d: 0,
                group_a: 0,
                clock_d,
                clock_a: 5,
            }
            .bytes();
            let mac = sign(keyed(secret, ACCEPT_LABEL, &t).unwrap());
            let challenge = Message::Challenge {
                node: 2,
                listen: a.listen.clone(),
                group: 0,
                clock: 5,
                nonce: nonce_a,
                mac,
            };
            ca.write_all(&framed(&challenge)).await.unwrap();
            read_frame(&mut ca, MAX_HANDSHAKE_FRAME).await.unwrap().unwrap();
            let mut both = framed(&Message::Welcome);
            frame::write_frame(&mut both, b"protocol").await.unwrap();
            ca.write_all(&both).await.unwrap();
        };
        let (res, ()) = tokio::join!(dial(&mut cd, &d, Some(2), T), script);
        assert_eq!(res.unwrap().node, 2);
        let mut r = FrameReader::new(&mut cd, 1 << 20);
        assert_eq!(r.next().await.unwrap().unwrap(), &b"protocol"[..]);

        // A scripted dialer: Proof and a protocol frame in one write.
        let (mut cd, mut ca) = duplex(4096);
        let script = async {
            let nonce_d = [3u8; 32];
            let h = Message::Hello {
                magic: MAGIC,
                version: VERSION,
                cluster: d.cluster.clone(),
                node: 1,
                listen: d.listen.clone(),
                group: 0,
                clock: 7,
                nonce: nonce_d,
            };
            cd.write_all(&framed(&h)).await.unwrap();
            let c = read_frame(&mut cd, MAX_HANDSHAKE_FRAME).await.unwrap().unwrap();
            let Message::Challenge { nonce: nonce_a, clock: clock_a, .. } = postcard::from_bytes(&c).unwrap()
            else {
                panic!("expected Challenge");
            };
            let t = Transcript {
                cluster: &d.cluster,
                nonce_d: &nonce_d,
                nonce_a: &nonce_a,
                node_d: 1,
                node_a: 2,
                listen_d: &d.listen,
                listen_a: &a.listen,
                group_d: 0,
                group_a: 0,
                clock_d: 7,
                clock_a,
            }
            .bytes();
            let mac = sign(keyed(secret, DIAL_LABEL, &t).unwrap());
            let mut both = framed(&Message::Proof { mac });
            frame::write_frame(&mut both, b"eager").await.unwrap();
            cd.write_all(&both).await.unwrap();
        };
        let (res, ()) = tokio::join!(accept(&mut ca, &a, T), script);
        assert_eq!(res.unwrap().node, 1);
        let mut r = FrameReader::new(&mut ca, 1 << 20);
        assert_eq!(r.next().await.unwrap().unwrap(), &b"eager"[..]);
    }

    #[tokio::test]
    async fn a_peer_whose_clock_is_off_is_refused_both_ways_and_told_why() {
        fn ten_minutes_ahead() -> u64 {
            system_clock_ms() + 600_000
        }
        fn half_a_second_ahead() -> u64 {
            system_clock_ms() + 500
        }
        let max = Some(Duration::from_secs(1));
        let good = |node| Identity { max_clock_skew: max, ..id(node, b"s3cret") };
        let fast = |node| Identity { wall_clock: ten_minutes_ahead, ..good(node) };
        // Within the bound: accepted.
        let (rd, ra) = run(&good(1), &Identity { wall_clock: half_a_second_ahead, ..good(2) }, Some(2)).await;
        assert!(rd.is_ok() && ra.is_ok(), "{rd:?} {ra:?}");
        // The acceptor's clock is ahead: the dialer refuses, and the acceptor hears why.
        let (rd, ra) = run(&good(1), &fast(2), Some(2)).await;
        match rd {
            Err(HandshakeError::ClockSkew { peer: 2, ahead_ms, .. }) => {
                assert!((599_000..601_000).contains(&ahead_ms))
            }
            other => panic!("{other:?}"),
        }
        let told = ra.unwrap_err().to_string();
        assert!(told.contains("your clock is 6") && told.contains("s ahead of node 1's"), "{told}");
        // The dialer's clock is ahead: it sees the acceptor's behind, and refuses first.
        let (rd, ra) = run(&fast(1), &good(2), Some(2)).await;
        assert!(
            matches!(rd, Err(HandshakeError::ClockSkew { peer: 2, ahead_ms, .. }) if ahead_ms < -599_000),
            "{rd:?}"
        );
        assert!(ra.unwrap_err().to_string().contains("s behind node 1's"));
        // A dialer without the check is still refused by an acceptor with it.
        let (rd, ra) = run(&Identity { max_clock_skew: None, ..fast(1) }, &good(2), Some(2)).await;
        assert!(rd.is_err() && matches!(ra, Err(HandshakeError::ClockSkew { .. })), "{rd:?} {ra:?}");
        let shown =
            HandshakeError::ClockSkew { peer: 3, ahead_ms: -1500, max: Duration::from_secs(1) }.to_string();
        assert_eq!(shown, "node 3's clock is 1.500 s behind ours, more than max_clock_skew (1000 ms) allows: refused (fix the clocks, e.g. with NTP)");
    }

    #[tokio::test]
    async fn nodes_of_two_groups_refuse_each_other() {
        let (d, a) = (id(1, b"s3cret"), id(2, b"s3cret"));
        // A new node (no group yet) talks to anyone.
        a.group.store(7, Ordering::Relaxed);
        let (rd, ra) = run(&d, &a, Some(2)).await;
        assert!(rd.is_ok() && ra.is_ok(), "{rd:?} {ra:?}");
        d.group.store(7, Ordering::Relaxed);
        let (rd, ra) = run(&d, &a, Some(2)).await;
        assert!(rd.is_ok() && ra.is_ok(), "{rd:?} {ra:?}");
        // Two groups: the dialer, which learns first, refuses, and the acceptor hears why.
        d.group.store(8, Ordering::Relaxed);
        let (rd, ra) = run(&d, &a, Some(2)).await;
        assert!(matches!(rd, Err(HandshakeError::ForeignGroup { ours: 8, theirs: 7 })), "{rd:?}");
        assert!(
            matches!(&ra, Err(HandshakeError::Rejected { reason }) if reason.contains("group")),
            "{ra:?}"
        );
        assert_eq!(d.refusals.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn secret_is_not_in_debug_output() {
        let shown = format!("{:?}", id(1, b"very-secret-value"));
        assert!(!shown.contains("very-secret"), "{shown}");
    }

    #[test]
    fn transcripts_differ_when_fields_shift() {
        let n = [0u8; 32];
        let t = |cluster, listen_d, listen_a| {
            let (group_d, group_a) = (0, 0);
            Transcript {
                cluster,
                nonce_d: &n,
                nonce_a: &n,
                node_d: 1,
                node_a: 2,
                listen_d,
                listen_a,
                group_d,
                group_a,
                clock_d: 1,
                clock_a: 2,
            }
            .bytes()
        };
        assert_ne!(t("ab", "c", ""), t("ab", "", "c"));
        assert_ne!(t("a", "bc", ""), t("ab", "c", ""));
    }
}
