//! The simulated application: a small replicated state machine, and its side of state transfer.
//!
//! The state is a hash chain of every total and safe message applied, in delivery order
//! (`chorus_check::trace::chain`), and a count. Its checkpoint is `chorus_check::checkpoint`'s
//! (a header and filler derived from it, checked byte by byte when loaded).
//!
//! With the replicated store on (`crate::store`), the node's replica streams its own checkpoint
//! right after this one, in the same transfer ([`Writer::attach`]): the trace's checker judges the
//! reference machine, the store's checks judge the replica.

use bytes::Bytes;
use chorus_check::checkpoint::{self, Loader};
use chorus_check::trace::chain;
use chorus_core::ViewId;
use chorus_smr::Frozen;

use crate::rng::mix;

/// One life's state machine.
#[derive(Debug, Default)]
pub struct App {
    /// Total and safe messages applied since the group began.
    pub applied: u64,
    /// Hash chain over them.
    pub hash: u64,
    /// It holds the group's state (false while it waits for a transfer).
    pub holds: bool,
    /// The checkpoint it is streaming as a donor.
    pub writer: Option<Writer>,
    loader: Option<Loader>,
}

/// A donor's checkpoint, produced piece by piece from the snapshot taken at the barrier.
#[derive(Debug)]
pub struct Writer {
    /// The view of the transfer.
    pub view: ViewId,
    applied: u64,
    hash: u64,
    len: u64,
    offset: u64,
    /// `finish_checkpoint` was called.
    pub finished: bool,
    /// The core refused a chunk for lack of room; wait for `CheckpointWritable`.
    pub waiting: bool,
    /// A second checkpoint follows this one (the store's replica's), attached by `attach`.
    pub wants_tail: bool,
    tail: Option<Box<dyn Frozen>>,
    attached: bool,
    /// The tail's current piece, and how much of it was taken.
    buf: Vec<u8>,
    buf_at: usize,
}

impl App {
    /// The application of a node that starts a group (holds the empty state) or joins one.
    pub fn new(holds: bool) -> App {
        App { holds, ..App::default() }
    }

    /// Applies a delivered total or safe message (by its payload digest).
    pub fn apply(&mut self, digest: u64) {
        self.applied += 1;
        self.hash = chain(self.hash, digest);
    }

    /// A checkpoint request at the barrier of `view`: snapshot now (`wants_tail`: the store's
    /// checkpoint follows, see [`Writer::attach`]).
    pub fn checkpoint(&mut self, view: ViewId, filler: u64, wants_tail: bool) {
        self.writer = Some(Writer {
            view,
            applied: self.applied,
            hash: self.hash,
            len: checkpoint::HEADER_LEN + filler,
            offset: 0,
            finished: false,
            waiting: false,
            wants_tail,
            tail: None,
            attached: false,
            buf: Vec::new(),
            buf_at: 0,
        });
    }

    /// This member has no state in `view` and will load it.
    pub fn incoming(&mut self) {
        self.holds = false;
        self.applied = 0;
        self.hash = 0;
        self.loader = Some(Loader::new());
    }

    /// Bytes of a checkpoint received so far, if loading.
    pub fn loading_progress(&self) -> Option<u64> {
        self.loader.as_ref().map(Loader::got)
    }

    /// A piece of the checkpoint, as the core handed it over.
    pub fn chunk(&mut self, offset: u64, data: &[u8]) {
        if let Some(l) = &mut self.loader {
            l.feed(offset, data);
        }
    }

    /// The whole checkpoint (`len` bytes, as the core counts) arrived. Returns the state loaded:
    /// the donor's if every byte checked out, else a deliberately different one.
    pub fn loaded(&mut self, len: u64) -> (u64, u64) {
        let Some(l) = self.loader.take() else { return (self.applied, self.hash) };
        let (applied, hash, intact) = l.finish(len);
        self.applied = applied;
        self.hash = if intact { hash } else { mix(hash ^ 0xbad_c0de ^ l.got()) };
        self.holds = true;
        (self.applied, self.hash)
    }
}

impl Writer {
    /// The next piece, at most `max` bytes, without consuming it (`None` when all is written).
    pub fn peek(&mut self, max: usize) -> Option<Bytes> {
        let max = max.max(1);
        if self.offset < self.len {
            let end = self.len.min(self.offset + max as u64);
            let out = checkpoint::piece(self.applied, self.hash, self.offset, end);
            return Some(Bytes::from(out));
        }
        // The tail's pieces may be larger than `max` (the replica's bookkeeping comes whole).
        while self.buf_at >= self.buf.len() {
            let tail = self.tail.as_mut()?;
            self.buf.clear();
            self.buf_at = 0;
            if !tail.next_piece(&mut self.buf, max) {
                self.tail = None;
                return None;
            }
        }
        let end = self.buf.len().min(self.buf_at + max);
        Some(Bytes::copy_from_slice(&self.buf[self.buf_at..end]))
    }

    /// The piece returned by `peek` was accepted.
    pub fn advance(&mut self, n: usize) {
        if self.offset < self.len {
            self.offset += n as u64;
        } else {
            self.buf_at += n;
        }
    }

    /// The store's checkpoint of the same view, streamed after this one.
    pub fn attach(&mut self, tail: Box<dyn Frozen>) {
        self.tail = Some(tail);
        self.attached = true;
    }

    /// A tail is wanted and was never attached: the checkpoint would end short.
    pub fn tail_missing(&self) -> bool {
        self.wants_tail && !self.attached
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(chunk: usize, filler: u64, tamper: Option<usize>) -> (u64, u64) {
        let mut donor = App::new(true);
        for d in [3, 1, 4, 1, 5] {
            donor.apply(d);
        }
        donor.checkpoint(ViewId(2), filler, false);
        let mut joiner = App::new(false);
        joiner.incoming();
        let mut k = 0;
        let mut total = 0;
        while let Some(w) = donor.writer.as_mut() {
            let Some(piece) = w.peek(chunk) else { break };
            w.advance(piece.len());
            let mut piece = piece.to_vec();
            if tamper == Some(k) {
                piece[0] ^= 1;
            }
            joiner.chunk(total, &piece);
            total += piece.len() as u64;
            k += 1;
        }
        assert_eq!(joiner.loading_progress(), Some(total));
        let got = joiner.loaded(total);
        assert_eq!((donor.applied, donor.hash), (5, donor.hash));
        got
    }

    #[test]
    fn intact_transfer_loads_the_donor_state_and_tampering_shows() {
        let mut donor = App::new(true);
        for d in [3, 1, 4, 1, 5] {
            donor.apply(d);
        }
        for (chunk, filler) in [(1, 0), (7, 100), (4096, 10_000)] {
            assert_eq!(transfer(chunk, filler, None), (5, donor.hash));
            assert_ne!(transfer(chunk, filler, Some(1)), (5, donor.hash), "chunk {chunk}");
        }
    }
}
