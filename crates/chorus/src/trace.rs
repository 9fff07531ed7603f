//! The checker's trace written by the runtime itself (`NodeConfig::trace`), for any application:
//! the member's life, its views, its multicasts and its deliveries, in the core's own order (the
//! driver writes each line when the core accepts the multicast or emits the event, before any
//! frame it caused is sent). See docs/trace-format.md.
//!
//! It writes no state lines (`digest`, `state_loaded`) and no `loading` lists: the runtime does
//! not know the application's state. The checker then judges views, the flush, integrity and
//! ordering (G1-G10) and leaves the state checks out. The `chorus node` application writes its
//! own trace with its state instead (it starts its member with `trace` unset).

use std::io::Write;
use std::path::Path;

use chorus_check::trace::{digest, write_jsonl, Ev, Proc, TraceEvent};
use chorus_core::{BlockReason, Event, MemberId, MsgId, Order};

/// Lines buffered and written out before the frames of each pass (`flush`): a frame that
/// leaves this process never gets ahead of the `send` line of a message in it.
pub(crate) struct CoreTrace {
    out: std::io::BufWriter<std::fs::File>,
    me: Proc,
    last_t: u64,
}

fn proc_of(m: MemberId) -> Proc {
    Proc { node: m.node.0, inc: m.inc.0 }
}

fn order(o: Order) -> chorus_check::Order {
    match o {
        Order::Fifo => chorus_check::Order::Fifo,
        Order::Causal => chorus_check::Order::Causal,
        Order::Total => chorus_check::Order::Total,
        Order::Safe => chorus_check::Order::Safe,
    }
}

impl CoreTrace {
    /// Opens (appends to) the trace file and writes this life's `start`.
    pub(crate) fn open(path: &Path, me: MemberId, bootstrap: bool, t: u64) -> std::io::Result<CoreTrace> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let mut tr = CoreTrace { out: std::io::BufWriter::new(file), me: proc_of(me), last_t: 0 };
        tr.write(t, Ev::Start { bootstrap });
        tr.flush();
        Ok(tr)
    }

    fn write(&mut self, t: u64, ev: Ev) {
        // One clock, read in passes: a file's times never go back.
        let t = t.max(self.last_t);
        self.last_t = t;
        // A full disk or a closed file loses trace lines, never the member.
        let _ = write_jsonl(&mut self.out, &TraceEvent { t, p: Some(self.me), ev });
    }

    /// A multicast the core accepted.
    pub(crate) fn send(&mut self, t: u64, id: MsgId, o: Order, payload: &[u8]) {
        let ev = Ev::Send { view: id.view.0, seq: id.seq.0, digest: digest(payload), order: order(o) };
        self.write(t, ev);
    }

    /// An event the core emitted.
    pub(crate) fn event(&mut self, t: u64, e: &Event) {
        match e {
            Event::ViewInstalled { view, recovered, .. } => self.write(
                t,
                Ev::Install {
                    view: view.id.0,
                    members: view.members.iter().copied().map(proc_of).collect(),
                    loading: Vec::new(),
                    recovered: recovered.iter().copied().map(proc_of).collect(),
                },
            ),
            Event::Delivered { id, order: o, payload } => self.write(
                t,
                Ev::Deliver {
                    sender: proc_of(id.sender),
                    view: id.view.0,
                    seq: id.seq.0,
                    digest: digest(payload),
                    order: order(*o),
                },
            ),
            Event::Blocked { reason } => {
                let reason = match reason {
                    BlockReason::Flush => "flush",
                    BlockReason::NoQuorum => "no_quorum",
                    _ => "other",
                };
                self.write(t, Ev::Blocked { reason: reason.into() });
            }
            Event::Suspected { member, .. } => self.write(t, Ev::Suspect { member: proc_of(*member) }),
            // A restart that stood in for its earlier life joins afresh as the life it is.
            Event::Excluded { rejoin_as, .. } if proc_of(*rejoin_as) == self.me => {}
            Event::Excluded { rejoin_as, .. } => {
                self.write(t, Ev::Excluded);
                self.me = proc_of(*rejoin_as);
                self.write(t, Ev::Start { bootstrap: false });
            }
            Event::Left => self.write(t, Ev::Left),
            _ => {}
        }
    }

    /// Writes what is buffered (before the pass's frames go out, and at the end).
    pub(crate) fn flush(&mut self) {
        let _ = self.out.flush();
    }
}
