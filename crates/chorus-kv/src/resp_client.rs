//! A minimal RESP2 client for the demo and the tests (not for applications: use any Redis
//! client library).

use std::collections::BTreeMap;
use std::fmt;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, ToSocketAddrs};

/// A reply, as the client reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:1`
    Int(i64),
    /// `$3\r\nabc` (lossy UTF-8)
    Bulk(Vec<u8>),
    /// `$-1` / `*-1`
    Nil,
    /// `*2 ...`
    Array(Vec<Value>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Simple(s) => write!(f, "{s}"),
            Value::Error(e) => write!(f, "(error) {e}"),
            Value::Int(i) => write!(f, "(integer) {i}"),
            Value::Bulk(b) => write!(f, "\"{}\"", String::from_utf8_lossy(b)),
            Value::Nil => write!(f, "(nil)"),
            Value::Array(v) => {
                write!(f, "[")?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{x}")?;
                }
                write!(f, "]")
            }
        }
    }
}

/// One connection.
#[derive(Debug)]
pub struct Client {
    stream: BufReader<TcpStream>,
}

/// The longest reply line or bulk the client accepts (it talks to our own servers).
const MAX: usize = 64 << 20;

impl Client {
    /// Connects.
    pub async fn connect(addr: impl ToSocketAddrs) -> std::io::Result<Client> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Client { stream: BufReader::new(s) })
    }

    /// Sends one command and reads its reply.
    pub async fn cmd(&mut self, args: &[&str]) -> std::io::Result<Value> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.stream.get_mut().write_all(&out).await?;
        self.read().await
    }

    /// INFO group, as name -> value.
    pub async fn info_group(&mut self) -> std::io::Result<BTreeMap<String, String>> {
        let v = self.cmd(&["INFO", "group"]).await?;
        let text = match v {
            Value::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
            other => return Err(bad(format!("INFO returned {other}"))),
        };
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect())
    }

    async fn line(&mut self) -> std::io::Result<String> {
        let mut line = Vec::new();
        let n = (&mut self.stream).take(MAX as u64).read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        if !line.ends_with(b"\r\n") {
            return Err(bad("reply line without CRLF".into()));
        }
        line.truncate(line.len() - 2);
        String::from_utf8(line).map_err(|_| bad("reply line is not UTF-8".into()))
    }

    /// Reads one reply.
    pub fn read(
        &mut self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Value>> + Send + '_>> {
        Box::pin(async move {
            let line = self.line().await?;
            let (kind, rest) = line.split_at_checked(1).ok_or_else(|| bad("empty reply line".into()))?;
            let num = || rest.parse::<i64>().map_err(|_| bad(format!("bad number {rest:?}")));
            Ok(match kind {
                "+" => Value::Simple(rest.to_string()),
                "-" => Value::Error(rest.to_string()),
                ":" => Value::Int(num()?),
                "$" => {
                    let n = num()?;
                    if n < 0 {
                        Value::Nil
                    } else {
                        let n = usize::try_from(n).map_err(|_| bad("bad length".into()))?;
                        if n > MAX {
                            return Err(bad("bulk too long".into()));
                        }
                        let mut b = vec![0; n + 2];
                        self.stream.read_exact(&mut b).await?;
                        b.truncate(n);
                        Value::Bulk(b)
                    }
                }
                "*" => {
                    let n = num()?;
                    if n < 0 {
                        Value::Nil
                    } else {
                        let mut v = Vec::new();
                        for _ in 0..n {
                            v.push(self.read().await?);
                        }
                        Value::Array(v)
                    }
                }
                _ => return Err(bad(format!("unknown reply type {kind:?}"))),
            })
        })
    }
}

fn bad(why: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why)
}
