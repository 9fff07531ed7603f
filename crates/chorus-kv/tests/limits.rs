//! Limits and bad input: every breach gets a Redis-style error and/or a closed connection, and
//! the server goes on serving others.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use chorus_kv::resp::{Limits, RequestParser};
use chorus_kv::ServerConfig;
use common::{Client, TestServer, V};
use proptest::prelude::*;

/// Sends `raw`, then reads everything until the server closes the connection.
fn closes_with(s: &TestServer, raw: &[u8]) -> String {
    let mut c = s.client();
    c.send_raw(raw);
    String::from_utf8_lossy(&c.read_to_close()).into_owned()
}

fn still_serving(s: &TestServer) {
    let mut c = s.client();
    assert_eq!(c.cmd("PING"), V::Simple("PONG".into()));
    assert_eq!(c.cmd("SET alive yes"), V::ok());
    assert_eq!(c.cmd("GET alive"), V::bulk("yes"));
}

#[test]
fn protocol_errors_close_the_connection() {
    let s = TestServer::start(ServerConfig::default());
    let cases: &[(&[u8], &str)] = &[
        (b"*x\r\n", "-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*3000000000\r\n", "-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*2000000\r\n", "-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\n$-5\r\n", "-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n$100000000\r\n", "-ERR Protocol error: invalid bulk length\r\n"),
        (b"*2\r\n$1\r\na\r\n*1\r\n", "-ERR Protocol error: expected '$', got '*'\r\n"),
        (b"*1\r\n$4\r\nPINGxx", "-ERR Protocol error: expected CRLF after bulk string\r\n"),
        (b"SET a \"unbalanced\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n"),
        (b"PING\r\n*x\r\n", "+PONG\r\n-ERR Protocol error: invalid multibulk length\r\n"),
    ];
    for (raw, want) in cases {
        assert_eq!(closes_with(&s, raw), *want, "for {:?}", String::from_utf8_lossy(raw));
    }
    // An inline request with no end.
    let got = closes_with(&s, &vec![b'a'; 100_000]);
    assert_eq!(got, "-ERR Protocol error: too big inline request\r\n");
    let mut big = b"*".to_vec();
    big.extend(std::iter::repeat_n(b'9', 100_000));
    assert_eq!(closes_with(&s, &big), "-ERR Protocol error: too big mbulk count string\r\n");
    still_serving(&s);
}

#[test]
fn garbage_never_takes_the_server_down() {
    let s = TestServer::start(ServerConfig::default());
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..40 {
        let mut raw = Vec::new();
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            raw.push(match seed % 10 {
                0 => b'*',
                1 => b'$',
                2 => b'\r',
                3 => b'\n',
                4 => b'0' + (seed >> 8) as u8 % 10,
                _ => (seed >> 16) as u8,
            });
        }
        let mut c = s.client();
        c.send_raw(&raw);
        let _ = c.w.shutdown(std::net::Shutdown::Write);
        let _ = c.read_to_close();
    }
    still_serving(&s);
}

#[test]
fn configured_limits() {
    let cfg = ServerConfig {
        limits: Limits { max_bulk_len: 1000, max_args: 10, max_request_bytes: 5000, ..Limits::default() },
        max_output_buffer: 50_000,
        max_queued_commands: 3,
        max_watched_keys: 2,
        ..ServerConfig::default()
    };
    let s = TestServer::start(cfg);
    let mut c = s.client();
    assert_eq!(c.cmd_args(&[b"SET", b"k", &[b'x'; 1000]]), V::ok());
    assert_eq!(
        closes_with(&s, &Client::encode(&[b"SET", b"k", &[b'x'; 1001]])),
        "-ERR Protocol error: invalid bulk length\r\n"
    );
    let many: Vec<&[u8]> = std::iter::repeat_n(&b"a"[..], 11).collect();
    assert_eq!(closes_with(&s, &Client::encode(&many)), "-ERR Protocol error: invalid multibulk length\r\n");
    let big: Vec<&[u8]> = std::iter::repeat_n(&[b'y'; 900][..], 6).collect();
    assert_eq!(
        closes_with(&s, &Client::encode(&big)),
        "-ERR Protocol error: request exceeds the query buffer limit\r\n"
    );
    // The output buffer: a reply beyond it closes the connection.
    for i in 0..60 {
        assert_eq!(c.cmd_args(&[b"RPUSH", b"list", &[b'z'; 1000]]), V::Int(i + 1));
    }
    let mut d = s.client();
    d.send_raw(&Client::encode(&[b"LRANGE", b"list", b"0", b"-1"]));
    assert!(d.read_to_close().is_empty());
    // The MULTI queue.
    assert_eq!(c.cmd("MULTI"), V::ok());
    for _ in 0..3 {
        assert_eq!(c.cmd("INCR n"), V::Simple("QUEUED".into()));
    }
    assert_eq!(c.cmd("INCR n"), V::err("ERR transaction too large: the queue limit was reached"));
    assert_eq!(c.cmd("EXEC"), V::err("EXECABORT Transaction discarded because of previous errors."));
    assert_eq!(c.cmd("WATCH a b c"), V::err("ERR too many watched keys"));
    assert_eq!(c.cmd("WATCH a b"), V::ok());
    still_serving(&s);
}

#[test]
fn max_clients() {
    let s = TestServer::start(ServerConfig { max_clients: 2, ..ServerConfig::default() });
    let mut a = s.client();
    let mut b = s.client();
    assert_eq!(a.cmd("PING"), V::Simple("PONG".into()));
    assert_eq!(b.cmd("PING"), V::Simple("PONG".into()));
    let mut c = s.client();
    assert_eq!(String::from_utf8_lossy(&c.read_to_close()), "-ERR max number of clients reached\r\n");
    drop(a);
    // The slot frees once the server sees the close.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut d = s.client();
        d.send_raw(b"PING\r\n");
        let got = d.read_to_close_or_line();
        if got == "+PONG\r\n" {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed: {got:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(b.cmd("PING"), V::Simple("PONG".into()));
}

#[test]
fn unauthenticated_limits() {
    let s = TestServer::start(ServerConfig { password: Some("pw".into()), ..ServerConfig::default() });
    let many: Vec<&[u8]> = std::iter::repeat_n(&b"a"[..], 11).collect();
    assert_eq!(
        closes_with(&s, &Client::encode(&many)),
        "-ERR Protocol error: unauthenticated multibulk length\r\n"
    );
    assert_eq!(
        closes_with(&s, &Client::encode(&[b"AUTH", &[b'p'; 20_000]])),
        "-ERR Protocol error: unauthenticated bulk length\r\n"
    );
    // Pipelined AUTH then a large request: the limits lift at once.
    let mut c = s.client();
    let mut raw = Client::encode(&[b"AUTH", b"pw"]);
    raw.extend(Client::encode(&[b"SET", b"k", &[b'v'; 50_000]]));
    c.send_raw(&raw);
    assert_eq!(c.read(), V::ok());
    assert_eq!(c.read(), V::ok());
}

#[test]
fn shutdown_with_idle_clients() {
    let s = TestServer::start(ServerConfig::default());
    let mut c = s.client();
    assert_eq!(c.cmd("PING"), V::Simple("PONG".into()));
    let t = Instant::now();
    drop(s);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(c.read_to_close().is_empty());
}

trait ReadLine {
    fn read_to_close_or_line(&mut self) -> String;
}

impl ReadLine for Client {
    /// The first line, or whatever came before the close.
    fn read_to_close_or_line(&mut self) -> String {
        use std::io::BufRead;
        let mut l = String::new();
        let _ = self.r.read_line(&mut l);
        l
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The parser takes any bytes in any chunking without panicking, and a stream of valid
    /// requests comes out the same however it is cut.
    #[test]
    fn parser_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600), cut in 1usize..50) {
        let mut p = RequestParser::new(Limits { max_bulk_len: 100, max_args: 20, ..Limits::default() });
        let mut buf = BytesMut::new();
        'outer: for chunk in data.chunks(cut) {
            buf.extend_from_slice(chunk);
            loop {
                match p.parse(&mut buf, true) {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => break 'outer,
                }
            }
        }
    }

    #[test]
    fn chunking_does_not_matter(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..6), cut in 1usize..30) {
        let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
        let mut raw = Client::encode(&refs);
        raw.extend(Client::encode(&refs));
        let mut p = RequestParser::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for chunk in raw.chunks(cut) {
            buf.extend_from_slice(chunk);
            while let Some(r) = p.parse(&mut buf, true).unwrap() {
                got.push(r);
            }
        }
        prop_assert_eq!(got.len(), 2);
        for r in got {
            prop_assert_eq!(r.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), args.clone());
        }
    }
}
