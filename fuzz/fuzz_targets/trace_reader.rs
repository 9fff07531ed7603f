//! The checker's trace reader and the checker on arbitrary bytes (a damaged or hostile trace
//! file): reading and checking either succeed or give an error; they never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(events) = chorus_check::read_jsonl(bytes) else { return };
    let mut checker = chorus_check::Checker::new();
    for ev in &events {
        if checker.observe(ev).is_err() {
            return;
        }
    }
    let _ = checker.finish();
});
