//! Replies, independent of the protocol version, and their RESP2/RESP3 encodings.
//!
//! A [`Reply`] is what a command produces (the replicated state machine's output, kept in client
//! sessions and so in snapshots). It is encoded for a connection by [`Reply::encode`] with that
//! connection's [`Protocol`]: RESP3 types (maps, sets, doubles, booleans, verbatim strings, one
//! null) fall back to their RESP2 forms as Redis does.
//!
//! Serialization: a reply is serialized as a flat, pre-order list of tokens and rebuilt with a
//! depth limit ([`MAX_REPLY_DEPTH`]), so bytes from the network can never make deserialization
//! recurse without bound.

use std::borrow::Cow;
use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The deepest reply nesting that deserialization accepts (the store never builds more than 4).
pub const MAX_REPLY_DEPTH: usize = 32;

/// The RESP version a connection speaks (`HELLO 2` / `HELLO 3`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2, what every connection starts with.
    #[default]
    Resp2,
    /// RESP3.
    Resp3,
}

impl Protocol {
    /// The version number as HELLO reports it.
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// A reply to one command.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// A status reply (`+OK`).
    Simple(Cow<'static, str>),
    /// An error reply; the text starts with the error code (`ERR ...`, `WRONGTYPE ...`).
    Error(Cow<'static, str>),
    /// An integer.
    Int(i64),
    /// A bulk string.
    Bulk(Bytes),
    /// The null bulk string (`$-1` in RESP2, `_` in RESP3).
    Null,
    /// The null array (`*-1` in RESP2, `_` in RESP3): an aborted EXEC, a pop with a count on a
    /// missing key.
    NullArray,
    /// An array.
    Array(Vec<Reply>),
    /// A map (a flat array of keys and values in RESP2).
    Map(Vec<(Reply, Reply)>),
    /// A set (an array in RESP2).
    Set(Vec<Reply>),
    /// A double (a bulk string in RESP2).
    Double(f64),
    /// A boolean (the integer 1 or 0 in RESP2).
    Bool(bool),
    /// A verbatim string with its 3-letter format (`txt`); a bulk string in RESP2.
    Verbatim(Cow<'static, str>, Bytes),
}

/// The `WRONGTYPE` error.
pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
/// Redis's error for an argument that is not an integer.
pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
/// Redis's generic syntax error.
pub const SYNTAX: &str = "ERR syntax error";

impl Reply {
    /// `+OK`.
    pub const fn ok() -> Reply {
        Reply::Simple(Cow::Borrowed("OK"))
    }

    /// A status reply from a static string.
    pub const fn simple(s: &'static str) -> Reply {
        Reply::Simple(Cow::Borrowed(s))
    }

    /// An error reply from a static string (starting with its code).
    pub const fn err(s: &'static str) -> Reply {
        Reply::Error(Cow::Borrowed(s))
    }

    /// An error reply from a formatted string (starting with its code).
    pub fn error(s: impl Into<String>) -> Reply {
        Reply::Error(Cow::Owned(s.into()))
    }

    /// A bulk string from anything that converts into `Bytes`.
    pub fn bulk(b: impl Into<Bytes>) -> Reply {
        Reply::Bulk(b.into())
    }

    /// A bulk string holding `s`.
    pub fn bulk_str(s: &str) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Appends the reply's encoding in protocol `proto` to `out`.
    pub fn encode(&self, proto: Protocol, out: &mut BytesMut) {
        let resp3 = proto == Protocol::Resp3;
        match self {
            Reply::Simple(s) => line(out, b'+', s.as_bytes()),
            Reply::Error(s) => line(out, b'-', s.as_bytes()),
            Reply::Int(n) => int_line(out, b':', *n),
            Reply::Bulk(b) => bulk(out, b),
            Reply::Null if resp3 => out.put_slice(b"_\r\n"),
            Reply::Null => out.put_slice(b"$-1\r\n"),
            Reply::NullArray if resp3 => out.put_slice(b"_\r\n"),
            Reply::NullArray => out.put_slice(b"*-1\r\n"),
            Reply::Array(items) => {
                int_line(out, b'*', len_i64(items.len()));
                for r in items {
                    r.encode(proto, out);
                }
            }
            Reply::Map(pairs) => {
                if resp3 {
                    int_line(out, b'%', len_i64(pairs.len()));
                } else {
                    int_line(out, b'*', len_i64(pairs.len()).saturating_mul(2));
                }
                for (k, v) in pairs {
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
            Reply::Set(items) => {
                int_line(out, if resp3 { b'~' } else { b'*' }, len_i64(items.len()));
                for r in items {
                    r.encode(proto, out);
                }
            }
            Reply::Double(d) => {
                let text = format_double(*d);
                if resp3 {
                    line(out, b',', text.as_bytes());
                } else {
                    bulk(out, text.as_bytes());
                }
            }
            Reply::Bool(b) if resp3 => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            Reply::Bool(b) => int_line(out, b':', i64::from(*b)),
            Reply::Verbatim(format, body) => {
                if resp3 {
                    let mut fmt3 = [b't', b'x', b't'];
                    for (slot, c) in fmt3.iter_mut().zip(format.bytes()) {
                        *slot = c;
                    }
                    int_line(out, b'=', len_i64(body.len() + 4));
                    out.put_slice(&fmt3);
                    out.put_u8(b':');
                    out.put_slice(body);
                    out.put_slice(b"\r\n");
                } else {
                    bulk(out, body);
                }
            }
        }
    }

    /// The reply encoded in protocol `proto`, as a fresh buffer (tests, tools).
    pub fn to_bytes(&self, proto: Protocol) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(proto, &mut out);
        out.freeze()
    }
}

fn len_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Formats a double the way Redis prints one (`inf`, `-inf`, `nan`, shortest round trip).
fn format_double(d: f64) -> String {
    if d.is_nan() {
        "nan".to_owned()
    } else if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        let mut s = String::new();
        let _ = write!(s, "{d}");
        s
    }
}

/// A one-line reply; CR and LF in the text become spaces (as Redis does), so that no text can
/// break the framing.
fn line(out: &mut BytesMut, tag: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(tag);
    if text.iter().any(|&c| c == b'\r' || c == b'\n') {
        out.extend(text.iter().map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }));
    } else {
        out.put_slice(text);
    }
    out.put_slice(b"\r\n");
}

fn int_line(out: &mut BytesMut, tag: u8, n: i64) {
    let mut buf = itoa_buf();
    let digits = fmt_i64(n, &mut buf);
    out.reserve(digits.len() + 3);
    out.put_u8(tag);
    out.put_slice(digits);
    out.put_slice(b"\r\n");
}

fn bulk(out: &mut BytesMut, b: &[u8]) {
    let mut buf = itoa_buf();
    let digits = fmt_i64(len_i64(b.len()), &mut buf);
    out.reserve(b.len() + digits.len() + 5);
    out.put_u8(b'$');
    out.put_slice(digits);
    out.put_slice(b"\r\n");
    out.put_slice(b);
    out.put_slice(b"\r\n");
}

const fn itoa_buf() -> [u8; 20] {
    [0u8; 20]
}

/// Writes `n` in decimal at the end of `buf`, returning the digits.
pub(crate) fn fmt_i64(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let neg = n < 0;
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if neg {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

// ---- serialization: a flat pre-order token list, rebuilt with a depth limit ----

/// Borrowed bytes serialized as a byte string (not a sequence of integers).
struct RawBytes<'a>(&'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// One token of a serialized reply (the serializing side, borrowing). The variant order must
/// match [`Tok`].
#[derive(Serialize)]
enum TokRef<'a> {
    Simple(&'a str),
    Error(&'a str),
    Int(i64),
    Bulk(RawBytes<'a>),
    Null,
    NullArray,
    Array(u64),
    Map(u64),
    Set(u64),
    Double(f64),
    Bool(bool),
    Verbatim(&'a str, RawBytes<'a>),
}

/// One token of a serialized reply (the deserializing side, owning).
#[derive(Deserialize)]
enum Tok {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Bytes),
    Null,
    NullArray,
    Array(u64),
    Map(u64),
    Set(u64),
    Double(f64),
    Bool(bool),
    Verbatim(String, Bytes),
}

fn flatten<'a>(r: &'a Reply, out: &mut Vec<TokRef<'a>>) {
    match r {
        Reply::Simple(s) => out.push(TokRef::Simple(s)),
        Reply::Error(s) => out.push(TokRef::Error(s)),
        Reply::Int(n) => out.push(TokRef::Int(*n)),
        Reply::Bulk(b) => out.push(TokRef::Bulk(RawBytes(b))),
        Reply::Null => out.push(TokRef::Null),
        Reply::NullArray => out.push(TokRef::NullArray),
        Reply::Array(items) => {
            out.push(TokRef::Array(items.len() as u64));
            for i in items {
                flatten(i, out);
            }
        }
        Reply::Map(pairs) => {
            out.push(TokRef::Map(pairs.len() as u64));
            for (k, v) in pairs {
                flatten(k, out);
                flatten(v, out);
            }
        }
        Reply::Set(items) => {
            out.push(TokRef::Set(items.len() as u64));
            for i in items {
                flatten(i, out);
            }
        }
        Reply::Double(d) => out.push(TokRef::Double(*d)),
        Reply::Bool(b) => out.push(TokRef::Bool(*b)),
        Reply::Verbatim(f, b) => out.push(TokRef::Verbatim(f, RawBytes(b))),
    }
}

impl Serialize for Reply {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut toks = Vec::new();
        flatten(self, &mut toks);
        s.collect_seq(toks)
    }
}

/// Rebuilds one reply from `toks[*pos..]`; `depth` is the nesting of the reply being built.
fn rebuild(toks: &mut std::vec::IntoIter<Tok>, depth: usize) -> Result<Reply, String> {
    if depth > MAX_REPLY_DEPTH {
        return Err(format!("reply nested deeper than {MAX_REPLY_DEPTH}"));
    }
    let tok = toks.next().ok_or("truncated reply")?;
    let items = |n: u64, toks: &mut std::vec::IntoIter<Tok>| -> Result<Vec<Reply>, String> {
        // Every item takes at least one token: a count beyond what is left is a lie.
        let n = usize::try_from(n).map_err(|_| "bad length")?;
        if n > toks.len() {
            return Err("reply length beyond its tokens".to_owned());
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(rebuild(toks, depth + 1)?);
        }
        Ok(v)
    };
    Ok(match tok {
        Tok::Simple(s) => Reply::Simple(Cow::Owned(s)),
        Tok::Error(s) => Reply::Error(Cow::Owned(s)),
        Tok::Int(n) => Reply::Int(n),
        Tok::Bulk(b) => Reply::Bulk(b),
        Tok::Null => Reply::Null,
        Tok::NullArray => Reply::NullArray,
        Tok::Array(n) => Reply::Array(items(n, toks)?),
        Tok::Set(n) => Reply::Set(items(n, toks)?),
        Tok::Map(n) => {
            let flat = items(n.checked_mul(2).ok_or("bad map length")?, toks)?;
            let mut pairs = Vec::with_capacity(flat.len() / 2);
            let mut it = flat.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            Reply::Map(pairs)
        }
        Tok::Double(d) => Reply::Double(d),
        Tok::Bool(b) => Reply::Bool(b),
        Tok::Verbatim(f, b) => Reply::Verbatim(Cow::Owned(f), b),
    })
}

impl<'de> Deserialize<'de> for Reply {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let toks: Vec<Tok> = Vec::deserialize(d)?;
        let mut it = toks.into_iter();
        let r = rebuild(&mut it, 1).map_err(serde::de::Error::custom)?;
        if it.len() != 0 {
            return Err(serde::de::Error::custom("trailing reply tokens"));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(r: &Reply, p: Protocol) -> Vec<u8> {
        r.to_bytes(p).to_vec()
    }

    #[test]
    fn encodings() {
        use Protocol::*;
        assert_eq!(enc(&Reply::ok(), Resp2), b"+OK\r\n");
        assert_eq!(enc(&Reply::error("ERR a\r\nb"), Resp2), b"-ERR a  b\r\n");
        assert_eq!(enc(&Reply::Int(-12), Resp2), b":-12\r\n");
        assert_eq!(enc(&Reply::Int(i64::MIN), Resp2), b":-9223372036854775808\r\n");
        assert_eq!(enc(&Reply::bulk_str("ab"), Resp3), b"$2\r\nab\r\n");
        assert_eq!(enc(&Reply::Null, Resp2), b"$-1\r\n");
        assert_eq!(enc(&Reply::Null, Resp3), b"_\r\n");
        assert_eq!(enc(&Reply::NullArray, Resp2), b"*-1\r\n");
        let m = Reply::Map(vec![(Reply::bulk_str("a"), Reply::Int(1))]);
        assert_eq!(enc(&m, Resp2), b"*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&m, Resp3), b"%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&Reply::Set(vec![]), Resp3), b"~0\r\n");
        assert_eq!(enc(&Reply::Bool(true), Resp2), b":1\r\n");
        assert_eq!(enc(&Reply::Bool(false), Resp3), b"#f\r\n");
        assert_eq!(enc(&Reply::Double(1.5), Resp3), b",1.5\r\n");
        assert_eq!(enc(&Reply::Double(1.5), Resp2), b"$3\r\n1.5\r\n");
        let v = Reply::Verbatim(Cow::Borrowed("txt"), Bytes::from_static(b"hi"));
        assert_eq!(enc(&v, Resp3), b"=6\r\ntxt:hi\r\n");
        assert_eq!(enc(&v, Resp2), b"$2\r\nhi\r\n");
    }

    #[test]
    fn serde_round_trip_and_depth_limit() {
        let r = Reply::Array(vec![
            Reply::ok(),
            Reply::Map(vec![(Reply::bulk_str("k"), Reply::Set(vec![Reply::Int(3), Reply::Null]))]),
            Reply::NullArray,
            Reply::Double(2.5),
            Reply::Bool(true),
            Reply::err("ERR x"),
            Reply::Verbatim(Cow::Borrowed("txt"), Bytes::from_static(b"x")),
        ]);
        let bytes = postcard::to_allocvec(&r).unwrap();
        let back: Reply = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, r);

        let mut deep = Reply::Int(1);
        for _ in 0..MAX_REPLY_DEPTH + 5 {
            deep = Reply::Array(vec![deep]);
        }
        let bytes = postcard::to_allocvec(&deep).unwrap();
        assert!(postcard::from_bytes::<Reply>(&bytes).is_err());
        // A lying length.
        let bytes = postcard::to_allocvec(&Reply::Array(vec![Reply::Int(1)])).unwrap();
        let mut bad = bytes.clone();
        bad[2] = 100; // the array's count
        assert!(postcard::from_bytes::<Reply>(&bad).is_err());
        for cut in 0..bytes.len() {
            assert!(postcard::from_bytes::<Reply>(&bytes[..cut]).is_err());
        }
    }
}
