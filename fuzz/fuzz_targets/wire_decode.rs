//! The peer frame decoder on arbitrary bytes: it must return a frame or a typed error, never
//! panic, and whatever it accepts must re-encode to a frame that decodes to the same value.
#![no_main]

use chorus_core::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = wire::decode(data, 1 << 20) {
        let again = wire::encode(&body);
        assert_eq!(wire::decode(&again, 1 << 20).ok(), Some(body));
    }
});
