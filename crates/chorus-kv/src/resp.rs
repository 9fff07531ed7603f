//! An incremental parser of RESP requests: multibulk (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) and
//! inline (`GET k\r\n`, with Redis's quoting rules), with limits on every length.
//!
//! The parser keeps the state of a partly received multibulk request between calls, so a large
//! request arriving in many reads is scanned once. Every limit breach is a [`ParseError`]: the
//! server replies with its text and closes the connection (as Redis does for protocol errors).
//!
//! Requests are flat arrays of bulk strings, as in Redis: an array inside a request is a
//! protocol error (`expected '$', got '*'`), so request nesting is limited to one level. (Replies
//! read back from the network are limited by [`MAX_REPLY_DEPTH`](crate::reply::MAX_REPLY_DEPTH).)

use bytes::{Buf, Bytes, BytesMut};

/// Limits on what one request may be.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The longest bulk string (Redis's `proto-max-bulk-len`, which defaults to 512 MiB; ours
    /// defaults to 64 MiB).
    pub max_bulk_len: usize,
    /// The most arguments in one multibulk request (default 1,048,576).
    pub max_args: usize,
    /// The longest inline request line or length header (default 64 KiB, as Redis).
    pub max_inline_len: usize,
    /// The most bytes one request may take on the wire, all arguments together (default
    /// 128 MiB; Redis's `client-query-buffer-limit` defaults to 1 GiB).
    pub max_request_bytes: usize,
    /// Before authentication: the most arguments (10) and the longest bulk (16 KiB), as Redis.
    pub unauth_max_args: usize,
    /// See `unauth_max_args`.
    pub unauth_max_bulk_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 64 << 20,
            max_args: 1 << 20,
            max_inline_len: 64 << 10,
            max_request_bytes: 128 << 20,
            unauth_max_args: 10,
            unauth_max_bulk_len: 16 << 10,
        }
    }
}

/// A request that breaks the protocol or a limit. The connection is closed after the reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// `*` followed by something that is not a count within limits.
    #[error("ERR Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// `$` followed by something that is not a length within limits.
    #[error("ERR Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// An argument that does not start with `$`.
    #[error("ERR Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedDollar(u8),
    /// A bulk string not followed by CRLF.
    #[error("ERR Protocol error: expected CRLF after bulk string")]
    ExpectedCrlf,
    /// A `*` header line longer than the inline limit.
    #[error("ERR Protocol error: too big mbulk count string")]
    TooBigMbulkCount,
    /// A `$` header line longer than the inline limit.
    #[error("ERR Protocol error: too big bulk count string")]
    TooBigBulkCount,
    /// An inline request longer than the inline limit.
    #[error("ERR Protocol error: too big inline request")]
    TooBigInline,
    /// An inline request with unbalanced quotes.
    #[error("ERR Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// A request larger than `max_request_bytes`.
    #[error("ERR Protocol error: request exceeds the query buffer limit")]
    RequestTooLarge,
    /// More than `unauth_max_args` arguments before authentication.
    #[error("ERR Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulk,
    /// A bulk longer than `unauth_max_bulk_len` before authentication.
    #[error("ERR Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulk,
}

/// A multibulk request partly received.
#[derive(Debug)]
struct Partial {
    remaining: usize,
    args: Vec<Bytes>,
    /// Bytes of this request consumed so far.
    consumed: usize,
    /// The length of the bulk whose header was read but whose body has not arrived.
    bulk_len: Option<usize>,
}

/// The incremental request parser of one connection.
#[derive(Debug, Default)]
pub struct RequestParser {
    limits: Limits,
    partial: Option<Partial>,
}

/// Finds CRLF in `buf` from `from`; returns the index of the CR.
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 1 < buf.len() {
        match memchr_cr(&buf[i..]) {
            Some(off) => {
                let at = i + off;
                if at + 1 < buf.len() && buf[at + 1] == b'\n' {
                    return Some(at);
                }
                i = at + 1;
            }
            None => return None,
        }
    }
    None
}

fn memchr_cr(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\r')
}

/// Parses a decimal integer with Redis's `string2ll` rules: optional `-`, no `+`, no leading
/// zeros, no spaces, within `i64`.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = if s[0] == b'-' { (true, &s[1..]) } else { (false, s) };
    if digits.is_empty() || !(b'1'..=b'9').contains(&digits[0]) {
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    if neg {
        if v > (i64::MAX as u64) + 1 {
            None
        } else {
            Some((v as i64).wrapping_neg())
        }
    } else {
        i64::try_from(v).ok()
    }
}

impl RequestParser {
    /// A parser with these limits.
    pub fn new(limits: Limits) -> Self {
        RequestParser { limits, partial: None }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Takes the next complete request from `buf`, consuming its bytes. `Ok(None)`: more bytes
    /// are needed. Empty requests (`*0`, `*-1`, blank lines) are skipped. `authed`: whether the
    /// connection is authenticated (the tighter pre-authentication limits apply otherwise).
    pub fn parse(&mut self, buf: &mut BytesMut, authed: bool) -> Result<Option<Vec<Bytes>>, ParseError> {
        loop {
            if self.partial.is_none() {
                if buf.is_empty() {
                    return Ok(None);
                }
                if buf[0] == b'*' {
                    match self.multibulk_header(buf, authed)? {
                        None => return Ok(None),
                        Some(0) => continue,
                        Some(_) => {}
                    }
                } else {
                    match self.inline(buf)? {
                        None => return Ok(None),
                        Some(args) if args.is_empty() => continue,
                        Some(args) => return Ok(Some(args)),
                    }
                }
            }
            return self.multibulk_body(buf, authed);
        }
    }

    /// Reads `*N\r\n`. `Some(0)` for an empty request (nothing pending).
    fn multibulk_header(&mut self, buf: &mut BytesMut, authed: bool) -> Result<Option<usize>, ParseError> {
        let Some(cr) = find_crlf(buf, 1) else {
            if buf.len() > self.limits.max_inline_len {
                return Err(ParseError::TooBigMbulkCount);
            }
            return Ok(None);
        };
        if cr > self.limits.max_inline_len {
            return Err(ParseError::TooBigMbulkCount);
        }
        let n = parse_i64(&buf[1..cr]).ok_or(ParseError::InvalidMultibulkLength)?;
        if n > i64::from(i32::MAX) || n > self.limits.max_args as i64 {
            return Err(ParseError::InvalidMultibulkLength);
        }
        if !authed && n > self.limits.unauth_max_args as i64 {
            return Err(ParseError::UnauthenticatedMultibulk);
        }
        buf.advance(cr + 2);
        if n <= 0 {
            return Ok(Some(0));
        }
        let n = n as usize;
        self.partial = Some(Partial {
            remaining: n,
            args: Vec::with_capacity(n.min(1024)),
            consumed: cr + 2,
            bulk_len: None,
        });
        Ok(Some(n))
    }

    fn multibulk_body(&mut self, buf: &mut BytesMut, authed: bool) -> Result<Option<Vec<Bytes>>, ParseError> {
        let limits = &self.limits;
        let Some(p) = self.partial.as_mut() else { return Ok(None) };
        while p.remaining > 0 {
            let len = match p.bulk_len {
                Some(len) => len,
                None => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    if buf[0] != b'$' {
                        return Err(ParseError::ExpectedDollar(buf[0]));
                    }
                    let Some(cr) = find_crlf(buf, 1) else {
                        if buf.len() > limits.max_inline_len {
                            return Err(ParseError::TooBigBulkCount);
                        }
                        return Ok(None);
                    };
                    if cr > limits.max_inline_len {
                        return Err(ParseError::TooBigBulkCount);
                    }
                    let n = parse_i64(&buf[1..cr]).ok_or(ParseError::InvalidBulkLength)?;
                    if n < 0 || n as u64 > limits.max_bulk_len as u64 {
                        return Err(ParseError::InvalidBulkLength);
                    }
                    let n = n as usize;
                    if !authed && n > limits.unauth_max_bulk_len {
                        return Err(ParseError::UnauthenticatedBulk);
                    }
                    p.consumed += cr + 2;
                    if p.consumed.saturating_add(n) > limits.max_request_bytes {
                        return Err(ParseError::RequestTooLarge);
                    }
                    buf.advance(cr + 2);
                    p.bulk_len = Some(n);
                    n
                }
            };
            if buf.len() < len + 2 {
                // Make room for the whole bulk at once rather than growing step by step.
                if len >= 32 << 10 {
                    buf.reserve(len + 2 - buf.len());
                }
                return Ok(None);
            }
            if &buf[len..len + 2] != b"\r\n" {
                return Err(ParseError::ExpectedCrlf);
            }
            let arg = buf.split_to(len).freeze();
            buf.advance(2);
            p.consumed += len + 2;
            p.args.push(arg);
            p.bulk_len = None;
            p.remaining -= 1;
        }
        Ok(self.partial.take().map(|p| p.args))
    }

    /// Reads one inline request (a line). `Some(vec![])` for a blank line.
    fn inline(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ParseError> {
        let Some(nl) = buf.iter().position(|&c| c == b'\n') else {
            if buf.len() > self.limits.max_inline_len {
                return Err(ParseError::TooBigInline);
            }
            return Ok(None);
        };
        if nl > self.limits.max_inline_len {
            return Err(ParseError::TooBigInline);
        }
        let line = buf.split_to(nl + 1);
        let mut end = nl;
        if end > 0 && line[end - 1] == b'\r' {
            end -= 1;
        }
        let args = split_args(&line[..end]).ok_or(ParseError::UnbalancedQuotes)?;
        if args.len() > self.limits.max_args {
            return Err(ParseError::InvalidMultibulkLength);
        }
        Ok(Some(args))
    }
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Splits an inline request into arguments with Redis's `sdssplitargs` rules: double quotes
/// with `\xHH`, `\n`, `\r`, `\t`, `\b`, `\a` escapes; single quotes with `\'`; a closing quote
/// must be followed by a space or the end. `None` for unbalanced quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Bytes>> {
    let at = |i: usize| -> u8 { line.get(i).copied().unwrap_or(0) };
    let mut args = Vec::new();
    let mut p = 0usize;
    loop {
        while p < line.len() && is_space(line[p]) {
            p += 1;
        }
        if p >= line.len() {
            return Some(args);
        }
        let mut cur = Vec::new();
        let (mut inq, mut insq, mut done) = (false, false, false);
        while !done {
            let c = at(p);
            if inq {
                if p >= line.len() {
                    return None;
                }
                if c == b'\\' && at(p + 1) == b'x' {
                    if let (Some(h), Some(l)) = (hex_val(at(p + 2)), hex_val(at(p + 3))) {
                        cur.push(h * 16 + l);
                        p += 4;
                        continue;
                    }
                }
                if c == b'\\' && p + 1 < line.len() {
                    p += 1;
                    cur.push(match line[p] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if p + 1 < line.len() && !is_space(line[p + 1]) {
                        return None;
                    }
                    done = true;
                } else {
                    cur.push(c);
                }
            } else if insq {
                if p >= line.len() {
                    return None;
                }
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    if p + 1 < line.len() && !is_space(line[p + 1]) {
                        return None;
                    }
                    done = true;
                } else {
                    cur.push(c);
                }
            } else if p >= line.len() {
                done = true;
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => inq = true,
                    b'\'' => insq = true,
                    _ => cur.push(c),
                }
            }
            if p < line.len() {
                p += 1;
            }
        }
        args.push(Bytes::from(cur));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> (Vec<Vec<Bytes>>, Option<ParseError>) {
        let mut p = RequestParser::default();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match p.parse(&mut buf, true) {
                Ok(Some(a)) => out.push(a),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    fn strs(v: &[Bytes]) -> Vec<&[u8]> {
        v.iter().map(|b| &b[..]).collect()
    }

    #[test]
    fn multibulk_and_inline() {
        let (reqs, err) =
            parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n*0\r\n*-1\r\n\r\nset a 'b c' \"\\x41\\n\"\n");
        assert_eq!(err, None);
        assert_eq!(reqs.len(), 3);
        assert_eq!(strs(&reqs[0]), vec![&b"GET"[..], b"k"]);
        assert_eq!(strs(&reqs[1]), vec![&b"PING"[..]]);
        assert_eq!(strs(&reqs[2]), vec![&b"set"[..], b"a", b"b c", b"A\n"]);
    }

    #[test]
    fn byte_at_a_time() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\n0123456789\r\nECHO hi\r\n";
        let mut p = RequestParser::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &b in input.iter() {
            buf.extend_from_slice(&[b]);
            while let Some(a) = p.parse(&mut buf, true).unwrap() {
                out.push(a);
            }
        }
        assert_eq!(out.len(), 2);
        assert_eq!(strs(&out[0]), vec![&b"SET"[..], b"k", b"0123456789"]);
        assert_eq!(strs(&out[1]), vec![&b"ECHO"[..], b"hi"]);
    }

    #[test]
    fn errors() {
        let e = |i: &[u8]| parse_all(i).1;
        assert_eq!(e(b"*x\r\n"), Some(ParseError::InvalidMultibulkLength));
        assert_eq!(e(b"*3000000000\r\n"), Some(ParseError::InvalidMultibulkLength));
        assert_eq!(e(b"*2\r\n$1\r\na\r\n*1\r\n"), Some(ParseError::ExpectedDollar(b'*')));
        assert_eq!(e(b"*1\r\n$-5\r\n"), Some(ParseError::InvalidBulkLength));
        assert_eq!(e(b"*1\r\n$100000000\r\n"), Some(ParseError::InvalidBulkLength));
        assert_eq!(e(b"*1\r\n$3\r\nabcXY"), Some(ParseError::ExpectedCrlf));
        assert_eq!(e(b"echo \"abc\r\n"), Some(ParseError::UnbalancedQuotes));
        assert_eq!(e(b"echo \"a\"b\r\n"), Some(ParseError::UnbalancedQuotes));
        assert_eq!(e(&[b'a'; 70000]), Some(ParseError::TooBigInline));
        let mut big = b"*".to_vec();
        big.extend(std::iter::repeat_n(b'1', 70000));
        assert_eq!(e(&big), Some(ParseError::TooBigMbulkCount));
        let mut p = RequestParser::default();
        let mut buf = BytesMut::from(&b"*11\r\n"[..]);
        assert_eq!(p.parse(&mut buf, false), Err(ParseError::UnauthenticatedMultibulk));
        let mut buf = BytesMut::from(&b"*1\r\n$20000\r\n"[..]);
        assert_eq!(p.parse(&mut buf, false), Err(ParseError::UnauthenticatedBulk));
        let limits = Limits { max_request_bytes: 100, ..Limits::default() };
        let mut p = RequestParser::new(limits);
        let mut buf = BytesMut::from(&b"*3\r\n$50\r\n"[..]);
        buf.extend_from_slice(&[b'x'; 50]);
        buf.extend_from_slice(b"\r\n$50\r\n");
        assert_eq!(p.parse(&mut buf, true), Err(ParseError::RequestTooLarge));
        assert_eq!(ParseError::ExpectedDollar(b'*').to_string(), "ERR Protocol error: expected '$', got '*'");
    }

    #[test]
    fn integers() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        for bad in [&b""[..], b"-", b"-0", b"01", b"+1", b" 1", b"1 ", b"1a"] {
            assert_eq!(parse_i64(bad), None, "{:?}", bad);
        }
    }

    #[test]
    fn split_like_redis() {
        let s = |l: &[u8]| split_args(l).map(|v| v.iter().map(|b| b.to_vec()).collect::<Vec<_>>());
        assert_eq!(s(b"  "), Some(vec![]));
        assert_eq!(s(b"echo a\\x41b"), Some(vec![b"echo".to_vec(), b"a\\x41b".to_vec()]));
        assert_eq!(s(b"echo \"a\\x41b\""), Some(vec![b"echo".to_vec(), b"aAb".to_vec()]));
        assert_eq!(s(b"'it\\'s'"), Some(vec![b"it's".to_vec()]));
        assert_eq!(s(b"a\"b c\""), Some(vec![b"ab c".to_vec()]));
        assert_eq!(s(b"\"abc"), None);
        assert_eq!(s(b"'abc"), None);
    }
}
