//! Test helpers: a server with a LocalBackend on an ephemeral port (its own thread and
//! runtime), and a blocking RESP client that parses RESP2 and RESP3 replies.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use chorus_kv::{serve, LocalBackend, ServerConfig};

/// A running server; stopped (and joined) on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    pub backend: LocalBackend,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start(cfg: ServerConfig) -> TestServer {
        Self::start_on("127.0.0.1:0", cfg)
    }

    pub fn start_on(addr: &str, cfg: ServerConfig) -> TestServer {
        let backend = LocalBackend::new();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let b = backend.clone();
        let addr = addr.to_owned();
        let thread = std::thread::spawn(move || {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                serve(listener, b, cfg, async move {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        TestServer { addr, backend, stop: Some(stop_tx), thread: Some(thread) }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A parsed reply.
#[derive(Clone, Debug, PartialEq)]
pub enum V {
    Simple(String),
    Err(String),
    Int(i64),
    Bulk(Vec<u8>),
    /// `$-1`, `*-1` or `_`.
    Nil,
    Array(Vec<V>),
    Map(Vec<(V, V)>),
    Set(Vec<V>),
    Double(String),
    Bool(bool),
    Verbatim(String, Vec<u8>),
}

impl V {
    pub fn bulk(s: &str) -> V {
        V::Bulk(s.as_bytes().to_vec())
    }
    pub fn ok() -> V {
        V::Simple("OK".into())
    }
    pub fn err(s: &str) -> V {
        V::Err(s.into())
    }
    pub fn bulks(items: &[&str]) -> V {
        V::Array(items.iter().map(|s| V::bulk(s)).collect())
    }
    pub fn text(&self) -> String {
        match self {
            V::Bulk(b) | V::Verbatim(_, b) => String::from_utf8_lossy(b).into_owned(),
            V::Simple(s) | V::Err(s) => s.clone(),
            other => format!("{other:?}"),
        }
    }
}

pub struct Client {
    pub r: BufReader<TcpStream>,
    pub w: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_nodelay(true).unwrap();
        Client { r: BufReader::new(s.try_clone().unwrap()), w: s }
    }

    pub fn encode(args: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    pub fn send(&mut self, args: &[&[u8]]) {
        self.w.write_all(&Self::encode(args)).unwrap();
    }

    pub fn send_raw(&mut self, raw: &[u8]) {
        self.w.write_all(raw).unwrap();
    }

    /// Sends a command (space-separated words) and reads its reply.
    pub fn cmd(&mut self, line: &str) -> V {
        let words: Vec<&[u8]> = line.split(' ').map(|w| w.as_bytes()).collect();
        self.send(&words);
        self.read()
    }

    pub fn cmd_args(&mut self, args: &[&[u8]]) -> V {
        self.send(args);
        self.read()
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        let n = self.r.read_line(&mut l).unwrap();
        assert!(n > 0, "connection closed");
        assert!(l.ends_with("\r\n"), "bad line {l:?}");
        l.truncate(l.len() - 2);
        l
    }

    fn body(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n + 2];
        self.r.read_exact(&mut b).unwrap();
        assert_eq!(&b[n..], b"\r\n");
        b.truncate(n);
        b
    }

    pub fn read(&mut self) -> V {
        let l = self.line();
        let (tag, rest) = l.split_at(1);
        match tag {
            "+" => V::Simple(rest.into()),
            "-" => V::Err(rest.into()),
            ":" => V::Int(rest.parse().unwrap()),
            "_" => V::Nil,
            "," => V::Double(rest.into()),
            "#" => V::Bool(rest == "t"),
            "$" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    V::Nil
                } else {
                    V::Bulk(self.body(n as usize))
                }
            }
            "=" => {
                let n: usize = rest.parse().unwrap();
                let b = self.body(n);
                V::Verbatim(String::from_utf8_lossy(&b[..3]).into(), b[4..].to_vec())
            }
            "*" | "~" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    return V::Nil;
                }
                let items = (0..n).map(|_| self.read()).collect();
                if tag == "*" {
                    V::Array(items)
                } else {
                    V::Set(items)
                }
            }
            "%" => {
                let n: usize = rest.parse().unwrap();
                V::Map((0..n).map(|_| (self.read(), self.read())).collect())
            }
            other => panic!("unknown reply type {other:?} in {l:?}"),
        }
    }

    /// Reads until the server closes the connection; returns what came.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        let _ = self.r.read_to_end(&mut v);
        v
    }
}
