//! EDN-like history lines, one map per line (the Porcupine kv histories, and Jepsen
//! `history.edn` files of single-key workloads):
//!
//! ```text
//! {:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}
//! {:process 0, :type :ok, :f :get, :key "7", :value ""}
//! ```
//!
//! Functions: `:get`/`:read`, `:put`/`:write`, `:append`, `:cas` (value `[from to]`),
//! `:read-list`. Lines whose `:process` is not an integer (the nemesis) are skipped; other keys
//! (`:time`, `:index`, ...) are ignored.

use crate::error::{Error, Result};
use crate::history::{EventType, Function, History, PairOptions, RawEvent, RawValue};

/// A value of the EDN subset read here.
#[derive(Clone, Debug, PartialEq)]
enum Edn {
    Nil,
    Bool(bool),
    Int(i64),
    Float(String),
    Str(String),
    Keyword(String),
    Symbol(String),
    Vector(Vec<Edn>),
    Map(Vec<(Edn, Edn)>),
}

struct Reader<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn skip_ws(&mut self) {
        while let Some(&c) = self.s.get(self.pos) {
            if c.is_ascii_whitespace() || c == b',' {
                self.pos += 1;
            } else if c == b';' {
                // comment to end of line
                self.pos = self.s.len();
            } else {
                break;
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn value(&mut self, depth: usize) -> Result<Edn, String> {
        if depth > 64 {
            return Err("nested too deeply".to_owned());
        }
        self.skip_ws();
        match self.peek() {
            None => Err("unexpected end of line".to_owned()),
            Some(b'{') => {
                self.pos += 1;
                let mut pairs = Vec::new();
                loop {
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        return Ok(Edn::Map(pairs));
                    }
                    let k = self.value(depth + 1)?;
                    let v = self.value(depth + 1)?;
                    pairs.push((k, v));
                }
            }
            Some(b'[') | Some(b'(') => {
                let close = if self.peek() == Some(b'[') { b']' } else { b')' };
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        return Ok(Edn::Vector(items));
                    }
                    items.push(self.value(depth + 1)?);
                }
            }
            Some(b'"') => {
                self.pos += 1;
                let mut out = Vec::new();
                loop {
                    match self.peek() {
                        None => return Err("unterminated string".to_owned()),
                        Some(b'"') => {
                            self.pos += 1;
                            break;
                        }
                        Some(b'\\') => {
                            self.pos += 1;
                            let c = self.peek().ok_or("unterminated escape")?;
                            self.pos += 1;
                            out.push(match c {
                                b'n' => b'\n',
                                b't' => b'\t',
                                b'r' => b'\r',
                                other => other,
                            });
                        }
                        Some(c) => {
                            self.pos += 1;
                            out.push(c);
                        }
                    }
                }
                String::from_utf8(out).map(Edn::Str).map_err(|_| "a string is not UTF-8".to_owned())
            }
            Some(c) if c == b'}' || c == b']' || c == b')' => Err(format!("unexpected {:?}", c as char)),
            Some(_) => {
                let start = self.pos;
                while let Some(c) = self.peek() {
                    if c.is_ascii_whitespace() || b",{}[]()\";".contains(&c) {
                        break;
                    }
                    self.pos += 1;
                }
                let tok = std::str::from_utf8(&self.s[start..self.pos])
                    .map_err(|_| "a token is not UTF-8".to_owned())?;
                Ok(match tok {
                    "nil" => Edn::Nil,
                    "true" => Edn::Bool(true),
                    "false" => Edn::Bool(false),
                    _ if tok.starts_with(':') => Edn::Keyword(tok[1..].to_owned()),
                    _ => match tok.parse::<i64>() {
                        Ok(i) => Edn::Int(i),
                        Err(_) if tok.parse::<f64>().is_ok() => Edn::Float(tok.to_owned()),
                        Err(_) => Edn::Symbol(tok.to_owned()),
                    },
                })
            }
        }
    }
}

fn read_line(s: &str) -> Result<Edn, String> {
    let mut r = Reader { s: s.as_bytes(), pos: 0 };
    let v = r.value(0)?;
    r.skip_ws();
    if r.pos < r.s.len() {
        return Err("trailing characters after the map".to_owned());
    }
    Ok(v)
}

fn scalar(v: &Edn) -> Option<String> {
    match v {
        Edn::Str(s) | Edn::Float(s) | Edn::Symbol(s) => Some(s.clone()),
        Edn::Int(i) => Some(i.to_string()),
        Edn::Keyword(k) => Some(format!(":{k}")),
        Edn::Bool(b) => Some(b.to_string()),
        Edn::Nil | Edn::Vector(_) | Edn::Map(_) => None,
    }
}

/// Parses an EDN history; a `:fail` cas is a compare that failed.
pub fn parse(text: &str) -> Result<History> {
    let mut events = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i as u64 + 1;
        let t = raw.trim();
        if t.is_empty() || t.starts_with(';') {
            continue;
        }
        let Edn::Map(pairs) = read_line(t).map_err(|m| Error::parse(line, m))? else {
            return Err(Error::parse(line, "expected a map {...}"));
        };
        let get = |name: &str| {
            pairs.iter().find(|(k, _)| matches!(k, Edn::Keyword(n) if n == name)).map(|(_, v)| v)
        };
        let process = match get("process") {
            Some(Edn::Int(p)) if *p >= 0 => *p as u64,
            Some(_) => continue, // :nemesis and the like
            None => return Err(Error::parse(line, "no :process")),
        };
        let kind = match get("type") {
            Some(Edn::Keyword(k)) => match k.as_str() {
                "invoke" => EventType::Invoke,
                "ok" => EventType::Ok,
                "fail" => EventType::Fail,
                "info" => EventType::Info,
                other => return Err(Error::parse(line, format!("unknown :type :{other}"))),
            },
            _ => return Err(Error::parse(line, "no :type keyword")),
        };
        let f = match get("f") {
            Some(Edn::Keyword(k)) => match k.as_str() {
                "get" | "read" => Function::Read,
                "put" | "write" => Function::Write,
                "append" => Function::Append,
                "cas" => Function::Cas,
                "read-list" => Function::ReadList,
                other => return Err(Error::parse(line, format!("unknown :f :{other}"))),
            },
            _ => return Err(Error::parse(line, "no :f keyword")),
        };
        let key = get("key").and_then(scalar);
        let value = match get("value") {
            None | Some(Edn::Nil) => RawValue::Nil,
            Some(Edn::Keyword(k)) => RawValue::Other(format!(":{k}")),
            Some(Edn::Vector(items)) => {
                let items: Option<Vec<String>> = items.iter().map(scalar).collect();
                let Some(items) = items else {
                    return Err(Error::parse(line, "a :value vector must hold scalars"));
                };
                match (f, items.as_slice()) {
                    (Function::Cas, [a, b]) => RawValue::Pair(a.clone(), b.clone()),
                    _ => RawValue::List(items),
                }
            }
            Some(Edn::Map(_)) => return Err(Error::parse(line, "a :value map is not supported")),
            Some(v) => RawValue::Str(scalar(v).unwrap_or_default()),
        };
        events.push(RawEvent { line, process, kind, f, key, value });
    }
    History::from_events(events, PairOptions { fail_cas_is_compare_false: true })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn reads_the_subset() {
        let v = read_line(r#"{:a 1, :b "x \"y\"", :c [1 :k nil], :d {:e true}}"#).unwrap();
        let Edn::Map(p) = v else { panic!() };
        assert_eq!(p.len(), 4);
        assert_eq!(p[1].1, Edn::Str("x \"y\"".to_owned()));
        assert_eq!(p[2].1, Edn::Vector(vec![Edn::Int(1), Edn::Keyword("k".to_owned()), Edn::Nil]));
        assert!(read_line("{:a").is_err());
        assert!(read_line("{:a 1} x").is_err());
        assert!(read_line("\"abc").is_err());
    }
}
