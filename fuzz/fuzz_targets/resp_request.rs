//! The store's RESP request parser on arbitrary bytes, fed in arbitrary pieces, before and after
//! authentication: it must never panic, and never hand out a request beyond the limits.
#![no_main]

use arbitrary::Arbitrary;
use bytes::BytesMut;
use chorus_kv::resp::{Limits, RequestParser};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    authed: bool,
    /// Where the bytes are cut into reads.
    cuts: Vec<u16>,
    bytes: Vec<u8>,
}

fuzz_target!(|input: Input| {
    // Small limits, so that the fuzzer reaches them.
    let limits = Limits {
        max_bulk_len: 1024,
        max_args: 16,
        max_inline_len: 1024,
        max_request_bytes: 8192,
        unauth_max_args: 4,
        unauth_max_bulk_len: 256,
    };
    let mut parser = RequestParser::new(limits.clone());
    let mut buf = BytesMut::new();
    let mut rest = &input.bytes[..];
    let mut cuts = input.cuts.iter();
    while !rest.is_empty() {
        let n = cuts.next().map_or(rest.len(), |c| usize::from(*c).clamp(1, rest.len()));
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match parser.parse(&mut buf, input.authed) {
                Ok(Some(args)) => {
                    // Multibulk requests obey the argument limits (tighter before AUTH, as
                    // Redis's); an inline one is bounded by its line length.
                    let max_args = limits.max_args.max(limits.max_inline_len);
                    let max_len = limits.max_bulk_len.max(limits.max_inline_len);
                    assert!(args.len() <= max_args, "{} arguments", args.len());
                    assert!(args.iter().all(|a| a.len() <= max_len));
                    let total: usize = args.iter().map(|a| a.len()).sum();
                    assert!(total <= limits.max_request_bytes, "{total} bytes in one request");
                }
                Ok(None) => break,
                Err(_) => return, // The server closes the connection.
            }
        }
    }
});
