//! The peer frame decoder on arbitrary bytes: it must return a frame or a typed error, never
//! panic, and whatever it accepts must re-encode to a frame that decodes to the same value.
//! The body is `chorus_fuzz::wire_decode` (crates/chorus-fuzz), which `cargo test` also runs over
//! this target's corpus and regressions.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_fuzz::wire_decode(data));
