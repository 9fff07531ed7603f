//! The checker's trace reader and the checker on arbitrary bytes (a damaged or hostile trace
//! file): reading and checking either succeed or give an error; they never panic.
//! The body is `chorus_fuzz::trace_reader` (crates/chorus-fuzz), which `cargo test` also runs over
//! this target's corpus and regressions.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_fuzz::trace_reader(data));
