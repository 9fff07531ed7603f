//! A node's TOML config (the store's file: `[group]` and `[kv]`), arbitrary text: parsing and
//! building either succeed or give an error; they never panic.
//! The body is `chorus_fuzz::config_toml` (crates/chorus-fuzz), which `cargo test` also runs over
//! this target's corpus and regressions.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_fuzz::config_toml(data));
