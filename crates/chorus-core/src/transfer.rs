//! State transfer at the view barrier: a donor streams the application's checkpoint to the
//! members of a new view that do not hold the state yet, in chunks, with flow control.
//!
//! ```text
//!  install V (proposal.loading = [j1, j2], donor = oldest member not loading)
//!  donor app ◄─ CheckpointRequest(V)         j1, j2 app ◄─ StateIncoming(V, donor)
//!  donor app ─► write_checkpoint(V, chunk)* ─► StateChunk(V, offset, bytes) ─► StateChunk event
//!            ◄─ CheckpointWritable(V)        ◄─ StateAck(V, consumed)  ◄── app polled the event
//!  donor app ─► finish_checkpoint(V)      ─► StateChunk(V, end, last) ──► StateLoaded(V)
//!  donor app ◄─ CheckpointComplete(V)        ◄─ StateAck(V, done)
//! ```
//!
//! Memory is bounded at both ends by `Config::state_window`: the donor accepts a chunk only while
//! the bytes written and not yet consumed by every loading member fit in it, and a loading
//! member acknowledges a chunk only once the application has taken it with `poll_event`. Lost
//! chunks are resent from the last acknowledged offset (go-back-N) when acknowledgements stall.
//!
//! A transfer belongs to one view. If the view changes before it completes (the donor died,
//! a loading member died, or anything else), it is abandoned: the members still loading are
//! listed as loading in the next view too (their promises said they hold no state), deliver
//! nothing of the view they could not load in, and the next view's donor starts over from its
//! state at the new barrier. See docs/protocol/state-transfer.md.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::error::CheckpointError;
use crate::event::Event;
use crate::id::{MemberId, ViewId};
use crate::marks::Mark;
use crate::node::Node;
use crate::time::Instant;
use crate::wire::Msg;

/// Bytes a held message costs beyond its payload and dependencies (its `Data`, the `Bytes`
/// handle and allocation, the store's slot), for the `state_buffer` budget.
const HELD_OVERHEAD: usize = 160;

/// The donor's side of a transfer.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub view: ViewId,
    pub joiners: Vec<JoinerProgress>,
    /// Chunks written and not yet consumed by every loading member: (offset, bytes, last).
    buf: VecDeque<(u64, Bytes, bool)>,
    /// Bytes written so far.
    written: u64,
    finished: bool,
    /// The application was refused for lack of room: tell it when there is room again.
    refused: bool,
}

/// What the donor knows of one loading member.
#[derive(Debug)]
pub(crate) struct JoinerProgress {
    pub member: MemberId,
    /// Bytes it reported consumed.
    acked: u64,
    done: bool,
    /// `acked` when last looked at by the tick, and since when it has not moved.
    seen: u64,
    stalled_since: Option<Instant>,
}

/// A loading member's side of a transfer.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub view: ViewId,
    pub donor: MemberId,
    /// Next offset expected.
    received: u64,
    /// What the application has taken (acknowledged to the donor).
    consumed: u64,
    /// Pieces that arrived ahead of a gap (a reordering network), bounded by the window.
    ahead: std::collections::BTreeMap<u64, (Bytes, bool)>,
    ahead_bytes: u64,
    /// Bytes of new-view messages held (received, not delivered) while loading.
    pub held_bytes: u64,
}

impl Incoming {
    pub(crate) fn new(view: ViewId, donor: MemberId) -> Incoming {
        Incoming {
            view,
            donor,
            received: 0,
            consumed: 0,
            ahead: std::collections::BTreeMap::new(),
            ahead_bytes: 0,
            held_bytes: 0,
        }
    }
}

impl Outgoing {
    pub(crate) fn new(view: ViewId, joiners: &[MemberId]) -> Outgoing {
        let joiners = joiners
            .iter()
            .map(|j| JoinerProgress { member: *j, acked: 0, done: false, seen: 0, stalled_since: None })
            .collect();
        Outgoing { view, joiners, buf: VecDeque::new(), written: 0, finished: false, refused: false }
    }

    /// Bytes written and not consumed by the slowest loading member.
    fn in_flight(&self) -> u64 {
        let low = self.joiners.iter().filter(|j| !j.done).map(|j| j.acked).min().unwrap_or(self.written);
        self.written.saturating_sub(low)
    }

    fn trim(&mut self) {
        let low = self.joiners.iter().filter(|j| !j.done).map(|j| j.acked).min();
        match low {
            None => self.buf.clear(),
            Some(low) => {
                while let Some((off, data, last)) = self.buf.front() {
                    if !*last && off + data.len() as u64 <= low {
                        self.buf.pop_front();
                    } else {
                        break;
                    }
                }
            }
        }
    }

    fn complete(&self) -> bool {
        self.joiners.iter().all(|j| j.done)
    }
}

impl Node {
    /// At the install of a view with loading members: the donor gets a checkpoint request, a
    /// loading member starts waiting.
    pub(crate) fn state_barrier(&mut self, loading: &[MemberId], restarted: bool) {
        let me = self.me;
        let Some(m) = self.member_mut() else { return };
        let view = m.view.id;
        if loading.is_empty() {
            return;
        }
        let Some(donor) = m.view.members.iter().copied().find(|x| !loading.contains(x)) else { return };
        if loading.contains(&me) {
            m.awaiting_state = true;
            m.incoming = Some(Incoming::new(view, donor));
            if restarted {
                self.marks.hit(Mark::TransferRestarted);
            }
            self.push_event(Event::StateIncoming { view, donor });
        } else if donor == me {
            m.outgoing = Some(Outgoing::new(view, loading));
            if loading.len() >= 2 {
                self.marks.hit(Mark::SeveralJoinersServed);
            }
            #[cfg(feature = "mutants")]
            if self.cfg.mutant == Some(crate::Mutant::CheckpointBeforeCut) {
                return; // Asked already, before the cut was delivered.
            }
            self.push_event(Event::CheckpointRequest { view, joiners: loading.to_vec() });
        }
    }

    /// Mutant `CheckpointBeforeCut`: ask for the checkpoint before delivering the cut, so that
    /// the state handed on misses the end of the old view.
    #[cfg(feature = "mutants")]
    pub(crate) fn early_checkpoint(&mut self, p: &crate::wire::Proposal) {
        let donor = p.next.members.iter().copied().find(|x| !p.loading.contains(x));
        if !p.loading.is_empty() && donor == Some(self.me) {
            self.push_event(Event::CheckpointRequest { view: p.next.id, joiners: p.loading.clone() });
        }
    }

    /// How many bytes of checkpoint `write_checkpoint` accepts now for `view` (0 if none was
    /// requested, or it is finished).
    pub fn checkpoint_room(&self, view: ViewId) -> usize {
        let Some(o) = self.member().and_then(|m| m.outgoing.as_ref()) else { return 0 };
        if o.view != view || o.finished {
            return 0;
        }
        self.cfg.state_window.saturating_sub(o.in_flight()) as usize
    }

    /// Streams the next piece of the checkpoint asked for by `Event::CheckpointRequest { view }`.
    /// Pieces are at most `Config::max_payload` and `Config::state_window` bytes; when `Config::state_window` bytes are
    /// waiting for the loading members, the chunk is refused with `WindowFull` and
    /// `Event::CheckpointWritable` follows once there is room again.
    pub fn write_checkpoint(&mut self, view: ViewId, chunk: Bytes) -> Result<(), CheckpointError> {
        let max = self.cfg.max_payload.min(usize::try_from(self.cfg.state_window).unwrap_or(usize::MAX));
        let window = self.cfg.state_window;
        let o = self.open_checkpoint(view)?;
        if chunk.len() > max {
            return Err(CheckpointError::TooLarge { len: chunk.len(), max });
        }
        if o.in_flight() + chunk.len() as u64 > window {
            o.refused = true;
            self.marks.hit(Mark::StateWindowFull);
            return Err(CheckpointError::WindowFull);
        }
        if !chunk.is_empty() {
            self.push_piece(view, chunk, false);
        }
        Ok(())
    }

    /// Ends the checkpoint for `view`: the loading members get `Event::StateLoaded` once they
    /// have everything, and this member `Event::CheckpointComplete` once they all have.
    pub fn finish_checkpoint(&mut self, view: ViewId) -> Result<(), CheckpointError> {
        self.open_checkpoint(view)?.finished = true;
        self.push_piece(view, Bytes::new(), true);
        Ok(())
    }

    /// The transfer this member gives for `view`, if it is still being written.
    fn open_checkpoint(&mut self, view: ViewId) -> Result<&mut Outgoing, CheckpointError> {
        match self.member_mut().and_then(|m| m.outgoing.as_mut()) {
            Some(o) if o.view == view && o.finished => Err(CheckpointError::Finished(view)),
            Some(o) if o.view == view => Ok(o),
            _ => Err(CheckpointError::NotRequested(view)),
        }
    }

    /// Appends a piece (the end marker if `last`) and sends it to every member still loading.
    fn push_piece(&mut self, view: ViewId, data: Bytes, last: bool) {
        let Some(o) = self.member_mut().and_then(|m| m.outgoing.as_mut()) else { return };
        let offset = o.written;
        o.written += data.len() as u64;
        o.buf.push_back((offset, data.clone(), last));
        let to: Vec<MemberId> = o.joiners.iter().filter(|j| !j.done).map(|j| j.member).collect();
        for j in to {
            self.queue_member(j, Msg::StateChunk { view, offset, data: data.clone(), last });
        }
    }

    /// Writes a whole (small) checkpoint at once: `write_checkpoint` in pieces, then
    /// `finish_checkpoint`. Refused with `TooLarge` if it does not fit in the room there is.
    pub fn provide_checkpoint(&mut self, view: ViewId, state: Bytes) -> Result<(), CheckpointError> {
        if self.member().and_then(|m| m.outgoing.as_ref()).is_none_or(|o| o.view != view) {
            return Err(CheckpointError::NotRequested(view));
        }
        let room = self.checkpoint_room(view);
        if state.len() > room {
            return Err(CheckpointError::TooLarge { len: state.len(), max: room });
        }
        let piece = self.cfg.max_payload.max(1);
        let mut at = 0;
        while at < state.len() {
            let end = (at + piece).min(state.len());
            self.write_checkpoint(view, state.slice(at..end))?;
            at = end;
        }
        self.finish_checkpoint(view)
    }

    /// A chunk from the donor.
    pub(crate) fn on_state_chunk(
        &mut self,
        from: MemberId,
        view: ViewId,
        offset: u64,
        data: Bytes,
        last: bool,
    ) {
        #[cfg(feature = "mutants")]
        let any_offset = self.cfg.mutant == Some(crate::Mutant::ChunkOutOfOrder);
        #[cfg(not(feature = "mutants"))]
        let any_offset = false;
        let window = self.cfg.state_window;
        let Some(m) = self.member_mut() else { return };
        let wedged = m.wedged;
        let Some(inc) = m.incoming.as_mut() else { return };
        if inc.view != view || inc.donor != from || !m.awaiting_state || wedged {
            // Once wedged, whether this member holds the state is fixed: it promised so.
            return;
        }
        if any_offset {
            let received = offset.max(inc.received).saturating_add(data.len() as u64);
            self.take_piece(view, offset, data, last, received);
            return;
        }
        if offset < inc.received {
            // A resend: our acknowledgement may have been lost. Say where we are.
            let ack = Msg::StateAck { view, offset: inc.consumed, done: false };
            self.marks.hit(Mark::StateRetransmitted);
            self.queue_member(from, ack);
            return;
        }
        if offset > inc.received {
            // Ahead of a gap: keep it if it fits in the window (the donor sends no further).
            let len = data.len() as u64;
            // Checked: `offset` is the donor's word, and may be anything.
            let fits = offset.checked_add(len).is_some_and(|end| end <= inc.received.saturating_add(window));
            if fits && inc.ahead_bytes + len <= window {
                if let Some((old, _)) = inc.ahead.insert(offset, (data, last)) {
                    inc.ahead_bytes -= old.len() as u64;
                }
                inc.ahead_bytes += len;
            }
            return;
        }
        let mut next = Some((data, last));
        while let Some((data, last)) = next.take() {
            let Some(inc) = self.member_mut().and_then(|m| m.incoming.as_mut()) else { return };
            let at = inc.received;
            let received = at + data.len() as u64;
            inc.received = received;
            next = inc.ahead.remove(&received);
            if let Some((d, _)) = &next {
                inc.ahead_bytes -= d.len() as u64;
            }
            self.take_piece(view, at, data, last, received);
            if last {
                return;
            }
        }
    }

    /// Hands a piece to the application; the last one completes the transfer.
    fn take_piece(&mut self, view: ViewId, offset: u64, data: Bytes, last: bool, len: u64) {
        if let Some(inc) = self.member_mut().and_then(|m| m.incoming.as_mut()) {
            inc.received = len;
        }
        if !data.is_empty() {
            self.push_event(Event::StateChunk { view, offset, data });
        }
        if last {
            let Some(m) = self.member_mut() else { return };
            m.awaiting_state = false;
            m.state_acks = None;
            if let Some(inc) = m.incoming.as_mut() {
                inc.ahead.clear();
                inc.ahead_bytes = 0;
            }
            for p in m.peers.iter_mut() {
                p.ack_dirty = true;
            }
            self.push_event(Event::StateLoaded { view, len });
            self.pump();
        }
    }

    /// The application took `ev` from the queue: acknowledge state it consumed.
    pub(crate) fn consumed(&mut self, ev: &Event) {
        let (view, offset, done) = match ev {
            Event::StateChunk { view, offset, data } => {
                (*view, offset.saturating_add(data.len() as u64), false)
            }
            Event::StateLoaded { view, len } => (*view, *len, true),
            _ => return,
        };
        let Some(inc) = self.member_mut().and_then(|m| m.incoming.as_mut()) else { return };
        if inc.view == view {
            inc.consumed = inc.consumed.max(offset);
            let donor = inc.donor;
            self.queue_member(donor, Msg::StateAck { view, offset, done });
        }
    }

    /// A loading member's acknowledgement.
    pub(crate) fn on_state_ack(&mut self, from: MemberId, view: ViewId, offset: u64, done: bool) {
        let window = self.cfg.state_window;
        let Some(o) = self.member_mut().and_then(|m| m.outgoing.as_mut()) else { return };
        if o.view != view {
            return;
        }
        let written = o.written;
        let finished = o.finished;
        let Some(j) = o.joiners.iter_mut().find(|j| j.member == from) else { return };
        j.acked = j.acked.max(offset.min(written));
        j.done |= done && finished && offset == written;
        o.trim();
        let writable = o.refused && !o.finished && o.in_flight() <= window / 2;
        if writable {
            o.refused = false;
        }
        let complete = o.complete();
        if complete {
            if let Some(m) = self.member_mut() {
                m.outgoing = None;
            }
            self.push_event(Event::CheckpointComplete { view });
        } else if writable {
            self.push_event(Event::CheckpointWritable { view });
        }
    }

    /// The donor's timer: resend from the last acknowledged offset to a loading member whose
    /// acknowledgements stalled (a chunk or an acknowledgement was lost).
    pub(crate) fn state_tick(&mut self, now: Instant) {
        let patience = self.cfg.retransmit_interval * 2;
        let Some(m) = self.member_mut() else { return };
        let Some(o) = m.outgoing.as_mut() else { return };
        let view = o.view;
        let mut resend = Vec::new();
        for j in o.joiners.iter_mut().filter(|j| !j.done) {
            let owed = j.acked < o.written || o.finished;
            if j.acked != j.seen || !owed {
                j.seen = j.acked;
                j.stalled_since = None;
                continue;
            }
            let since = *j.stalled_since.get_or_insert(now);
            if now.since(since) >= patience {
                j.stalled_since = Some(now);
                resend.push((j.member, j.acked));
            }
        }
        let mut out = Vec::new();
        for (to, from) in resend {
            for (offset, data, last) in o.buf.iter().filter(|(off, _, _)| *off >= from) {
                out.push((to, Msg::StateChunk { view, offset: *offset, data: data.clone(), last: *last }));
            }
        }
        if !out.is_empty() {
            self.marks.hit(Mark::StateRetransmitted);
        }
        for (to, msg) in out {
            self.queue_member(to, msg);
        }
    }

    /// While loading, new-view messages wait; count their bytes, and once more than
    /// `Config::state_buffer` wait, stop acknowledging more (senders then stop at their
    /// window), so that the buffer stays bounded.
    pub(crate) fn note_held(&mut self, s: usize, before: u64) {
        let budget = self.cfg.state_buffer;
        let Some(m) = self.member_mut() else { return };
        if !m.awaiting_state {
            return;
        }
        // Count what a held message costs in memory, not only its payload: small messages are
        // mostly overhead (the message, its dependency vector, the store's slot).
        let added: u64 = m.senders[s]
            .range(before + 1, m.senders[s].received)
            .map(|d| (d.payload.len() + HELD_OVERHEAD + 8 * d.deps.len()) as u64)
            .sum();
        let Some(inc) = m.incoming.as_mut() else { return };
        inc.held_bytes += added;
        if inc.held_bytes > budget && m.state_acks.is_none() {
            m.state_acks = Some(m.senders.iter().map(|st| st.received).collect());
            self.marks.hit(Mark::StateBufferFull);
        }
    }
}
