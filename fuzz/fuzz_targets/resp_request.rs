//! The store's RESP request parser on arbitrary bytes, fed in arbitrary pieces, before and after
//! authentication: it must never panic, and never hand out a request beyond the limits.
//! The body is `chorus_fuzz::resp_request` (crates/chorus-fuzz), which `cargo test` also runs over
//! this target's corpus and regressions.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_fuzz::resp_request(data));
