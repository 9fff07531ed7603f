//! # chorus-check: the trace format and the checker of DESIGN §3
//!
//! Every way of running chorus (the deterministic simulator, real processes) writes the same
//! trace: one JSON object per line, described in `docs/trace-format.md` and by [`TraceEvent`].
//! [`Checker`] reads a trace event by event and reports the first [`Violation`] of a guarantee.

#![warn(missing_docs)]

pub mod trace;

pub use trace::{Ev, Proc, TraceEvent};
