//! A member of a 3-node view fed an arbitrary sequence of inputs: raw frames (mostly valid
//! protocol messages with fuzzed fields, from members and strangers), timer ticks, multicasts
//! and leave. The node must never panic, whatever the peers say.
//! The body is `chorus_fuzz::node_inputs` (crates/chorus-fuzz), which `cargo test` also runs over
//! this target's corpus and regressions.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_fuzz::node_inputs(data));
