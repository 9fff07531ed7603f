//! A node's TOML config (the store's file: `[group]` and `[kv]`), arbitrary text: parsing and
//! building either succeed or give an error; they never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(file) = toml::from_str::<chorus_kv::config::FileConfig>(text) else { return };
    if file.group.secret_file.is_some() {
        return; // It would read a file named by the input.
    }
    let _ = chorus_kv::config::build(file.group.clone(), file.kv);
    let _ = chorus::config::Partial::from_toml(text).and_then(|p| p.build());
});
