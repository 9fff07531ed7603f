//! # chorus-check: the trace format and the checker of DESIGN §3
//!
//! Every way of running chorus (the deterministic simulator, real processes) writes the same
//! trace: one JSON object per line, described in `docs/trace-format.md` and by [`TraceEvent`].
//! [`Checker`] reads a trace event by event and reports the first [`Violation`] of a guarantee.
//!
//! What it checks ([`Guarantee`]; one module per invariant, each stating its checkable form):
//! DESIGN §3 G1 view agreement, G2 one history, G3 self-inclusion, G4 virtual synchrony, G5
//! sending-view delivery, G6 integrity, G7 FIFO, G8 causal, G9 total, G10 safe, G11 state
//! transfer (TESTING ST1), G12 liveness; and TESTING §2.4 ST2 transfer atomicity and ST3
//! replica determinism (the "same prefix, same state" half of G13). The state-transfer checks
//! read the `loading` list of `install` lines and the `digest` and `state_loaded` lines, whose
//! state hash is [`trace::chain`]; traces without them pass those checks trivially.
//!
//! ```
//! use chorus_check::{check_trace, Ev, Order, Proc, TraceEvent};
//!
//! let a = Proc { node: 1, inc: 0 };
//! let trace = [
//!     TraceEvent { t: 1, p: Some(a), ev: Ev::Start { bootstrap: true } },
//!     TraceEvent { t: 2, p: Some(a), ev: Ev::Install { view: 1, members: vec![a], loading: vec![], recovered: vec![] } },
//!     TraceEvent { t: 3, p: Some(a), ev: Ev::Send { view: 1, seq: 1, digest: 7, order: Order::Total } },
//!     TraceEvent {
//!         t: 4,
//!         p: Some(a),
//!         ev: Ev::Deliver { sender: a, view: 1, seq: 1, digest: 7, order: Order::Total },
//!     },
//! ];
//! assert_eq!(check_trace(&trace), Ok(()));
//! ```

#![warn(missing_docs)]

mod checker;
pub mod checkpoint;
mod hash;
mod invariants;
pub mod svg;
#[cfg(test)]
mod testkit;
pub mod trace;
mod violation;

pub use checker::{check_trace, Checker};
pub use trace::{read_jsonl, write_jsonl, Ev, Order, Proc, TraceError, TraceEvent};
pub use violation::{Guarantee, Violation};
