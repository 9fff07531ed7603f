//! The transport over real TCP sockets: handshake, then protocol frames on the same stream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use chorus::transport::frame::{self, FrameReader};
use chorus::transport::handshake::{self, HandshakeError, Identity, PeerInfo, Side};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};

const T: Duration = Duration::from_secs(10);

fn identity(node: u64, secret: &[u8], listen: &str) -> Identity {
    Identity::new("test".into(), Arc::from(secret), node, listen.into())
}

/// All frames coalesced into one buffer and one write, then the end of the stream.
async fn write_all_frames(mut wr: OwnedWriteHalf, frames: Vec<Vec<u8>>) {
    let mut buf = BytesMut::new();
    for f in &frames {
        frame::encode(&mut buf, f);
    }
    wr.write_all(&buf).await.unwrap();
    wr.shutdown().await.unwrap();
}

/// Handshake over loopback TCP, then a batch of frames coalesced into one write each way,
/// read back through `FrameReader`s on the split halves.
#[tokio::test]
async fn tcp_handshake_then_frames() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let acceptor_id = identity(2, b"k", &addr);
    let dialer_id = identity(1, b"k", "127.0.0.1:1");
    let frames: Vec<Vec<u8>> = (0..2000u32).map(|i| i.to_be_bytes().repeat(i as usize % 50)).collect();

    let server = {
        let frames = frames.clone();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let peer = handshake::accept(&mut stream, &acceptor_id, T).await.unwrap();
            let (rd, wr) = stream.into_split();
            let writer = tokio::spawn(write_all_frames(wr, frames));
            let mut reader = FrameReader::new(rd, 1 << 20);
            let mut got = Vec::new();
            while let Some(f) = reader.next().await.unwrap() {
                got.push(f.to_vec());
            }
            writer.await.unwrap();
            (peer, got)
        })
    };

    let mut stream = TcpStream::connect(&addr).await.unwrap();
    let peer = handshake::dial(&mut stream, &dialer_id, Some(2), T).await.unwrap();
    assert_eq!(peer, PeerInfo { node: 2, listen: addr.clone() });
    let (rd, wr) = stream.into_split();
    // Both ends write while they read, so neither blocks on a full socket buffer.
    let writer = tokio::spawn(write_all_frames(wr, frames.clone()));
    let mut reader = FrameReader::new(rd, 1 << 20);
    for want in &frames {
        assert_eq!(reader.next().await.unwrap().unwrap(), want.as_slice());
    }
    assert!(reader.next().await.unwrap().is_none());
    writer.await.unwrap();

    let (peer, got) = server.await.unwrap();
    assert_eq!(peer, PeerInfo { node: 1, listen: "127.0.0.1:1".into() });
    assert_eq!(got, frames);
}

/// Wrong secret over TCP: the acceptor's Reject reaches the dialer before the close.
#[tokio::test]
async fn tcp_wrong_secret() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let acceptor_id = identity(2, b"right", &addr);
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        handshake::accept(&mut stream, &acceptor_id, T).await
    });
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    let res = handshake::dial(&mut stream, &identity(1, b"wrong", "x"), None, T).await;
    assert!(matches!(res, Err(HandshakeError::BadSecret { peer_is: Side::Acceptor })), "{res:?}");
    let res = server.await.unwrap();
    assert!(matches!(res, Err(HandshakeError::Rejected { .. })), "{res:?}");
}
