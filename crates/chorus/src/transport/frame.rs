//! Length-prefixed, checksummed frames on a byte stream.
//!
//! One frame on the wire is `len: u32 BE | crc: u32 BE | payload (len bytes)`, where `crc` is
//! CRC-32 (IEEE, as computed by `crc32fast`) of the payload. TCP already checksums segments,
//! but weakly; the CRC catches corruption its 16-bit sum misses, and a stream that is not ours
//! at all (a port scanner, a misdirected client) fails it at once instead of being decoded.
//!
//! Two readers:
//! - [`FrameReader`] buffers: one read syscall may bring in many frames. Use it once the
//!   connection carries protocol frames.
//! - [`read_frame`] reads exactly one frame and not a byte more, so the stream can be handed
//!   to a [`FrameReader`] afterwards without losing anything. The handshake uses it.
//!
//! Every length is checked against the reader's limit before memory is reserved for it.

use std::fmt;
use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes before the payload: length and checksum, both `u32` big endian.
pub const HEADER_LEN: usize = 8;

/// Most bytes a [`FrameReader`] asks the stream for in one read. Large enough that a burst of
/// small frames costs one syscall; small enough that a reader's buffer stays near the size of
/// the frame it is assembling.
pub const READ_CHUNK: usize = 64 * 1024;

/// Largest payload the header can describe.
const WIRE_MAX: usize = u32::MAX as usize;

/// Why a frame could not be read. Whatever the variant, the stream is no longer aligned on
/// frame boundaries: close the connection.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The stream failed (connection reset, local I/O error).
    #[error("i/o error on the connection: {0}")]
    Io(#[from] io::Error),
    /// The header announces a payload over our limit (the peer's fault). Nothing was
    /// allocated for it.
    #[error("peer sent a frame of {len} bytes, over our limit of {max} (peer's fault)")]
    Oversized {
        /// Payload length announced by the header.
        len: usize,
        /// Our limit.
        max: usize,
    },
    /// The payload does not match its checksum: a corrupted link, or a peer that does not
    /// speak this protocol.
    #[error(
        "frame checksum mismatch: header says {expected:#010x}, payload has {actual:#010x} \
         (corrupted link, or the peer does not speak chorus)"
    )]
    Checksum {
        /// Checksum carried in the header.
        expected: u32,
        /// Checksum of the payload as received.
        actual: u32,
    },
    /// The stream ended in the middle of a frame (the peer or the link failed mid-write).
    #[error("connection closed in the middle of a frame, after {got} bytes of it (peer or link failure)")]
    Truncated {
        /// Bytes of the unfinished frame received, header included.
        got: usize,
    },
}

/// Appends one frame holding `payload` to `out`. Writers coalesce many frames into one buffer
/// and write it with one syscall.
///
/// # Panics
///
/// If `payload` is longer than `u32::MAX` bytes, which the header cannot describe. That is a
/// bug of the caller, which must bound what it sends by the peer's limit anyway; see
/// [`try_encode`] to check instead.
pub fn encode(out: &mut BytesMut, payload: &[u8]) {
    assert!(payload.len() <= WIRE_MAX, "frame payload of {} bytes does not fit a u32 length", payload.len());
    put_frame(out, payload);
}

/// Appends one frame holding `payload` to `out`, unless the payload is longer than `max`
/// (the limit the peer enforces; clamped to `u32::MAX`). Sending a frame the peer rejects
/// would only get the connection closed, so callers check here and drop or split instead.
///
/// # Errors
///
/// [`FrameError::Oversized`] if `payload.len()` exceeds the limit; `out` is then unchanged.
pub fn try_encode(out: &mut BytesMut, payload: &[u8], max: usize) -> Result<(), FrameError> {
    let max = max.min(WIRE_MAX);
    if payload.len() > max {
        return Err(FrameError::Oversized { len: payload.len(), max });
    }
    put_frame(out, payload);
    Ok(())
}

/// Appends a frame; the caller has checked that the length fits a `u32`.
fn put_frame(out: &mut BytesMut, payload: &[u8]) {
    out.reserve(HEADER_LEN + payload.len());
    #[allow(clippy::cast_possible_truncation)] // Checked by both callers.
    out.put_u32(payload.len() as u32);
    out.put_u32(crc32fast::hash(payload));
    out.put_slice(payload);
}

/// Writes one frame and flushes it. For one-off messages (the handshake); bulk writers should
/// [`encode`] into a buffer instead.
///
/// # Errors
///
/// Any error of the stream, or `InvalidInput` if the payload is longer than `u32::MAX`.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, payload: &[u8]) -> io::Result<()> {
    let mut buf = BytesMut::new();
    try_encode(&mut buf, payload, WIRE_MAX).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    w.write_all(&buf).await?;
    w.flush().await
}

/// Splits a header into (payload length, checksum).
fn parse_header(header: &[u8; HEADER_LEN]) -> (usize, u32) {
    let [l0, l1, l2, l3, c0, c1, c2, c3] = *header;
    // A u32 always fits a usize on the platforms tokio supports (32 and 64 bits).
    let len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
    (len, u32::from_be_bytes([c0, c1, c2, c3]))
}

/// Checks a payload against the checksum of its header.
fn verify(payload: &[u8], expected: u32) -> Result<(), FrameError> {
    let actual = crc32fast::hash(payload);
    if actual == expected {
        Ok(())
    } else {
        Err(FrameError::Checksum { expected, actual })
    }
}

/// Reads exactly one frame of at most `max_len` payload bytes, and not a byte past it.
///
/// Slower than a [`FrameReader`] (two reads per frame at least) but leaves the stream exactly
/// at the next frame boundary, so a handshake can run on a stream that is then handed to a
/// [`FrameReader`] with nothing lost in between. It allocates the payload as soon as the header
/// is in, so keep `max_len` small. Not cancel-safe: if the future is dropped mid-frame the
/// stream is misaligned, so only use it under a deadline that abandons the connection.
///
/// # Errors
///
/// `Ok(None)` on a clean end of stream before the first byte; [`FrameError::Truncated`] on an
/// end of stream inside the frame; [`FrameError::Oversized`] before reading (or allocating)
/// the payload; [`FrameError::Checksum`]; [`FrameError::Io`].
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max_len: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let got = read_full(r, &mut header).await?;
    if got == 0 {
        return Ok(None);
    }
    if got < HEADER_LEN {
        return Err(FrameError::Truncated { got });
    }
    let (len, expected) = parse_header(&header);
    if len > max_len {
        return Err(FrameError::Oversized { len, max: max_len });
    }
    let mut payload = vec![0u8; len];
    let got = read_full(r, &mut payload).await?;
    if got < len {
        return Err(FrameError::Truncated { got: HEADER_LEN + got });
    }
    verify(&payload, expected)?;
    Ok(Some(payload))
}

/// Fills `buf` unless the stream ends first; returns how many bytes were read. Unlike
/// `read_exact`, says how far it got, for [`FrameError::Truncated`].
async fn read_full<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let n = match buf.get_mut(got..) {
            Some(rest) => r.read(rest).await?,
            None => break,
        };
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

/// Reads frames from a stream, many per read syscall.
///
/// The buffer holds at most one unfinished frame plus one [`READ_CHUNK`]: at most
/// `max_len + HEADER_LEN + READ_CHUNK` bytes, and memory for a large frame grows with the
/// bytes that actually arrive, not with what its header claims.
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max_len: usize,
}

impl<R> fmt::Debug for FrameReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameReader")
            .field("buffered", &self.buf.len())
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader accepting payloads of at most `max_len` bytes (clamped to `u32::MAX`, the
    /// most a header can announce).
    pub fn new(inner: R, max_len: usize) -> Self {
        Self { inner, buf: BytesMut::new(), max_len: max_len.min(WIRE_MAX) }
    }

    /// The payload limit.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Bytes read from the stream but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The underlying stream. Reading from it directly skips the buffered bytes.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The stream and the bytes read from it but not yet returned, so none are lost.
    pub fn into_parts(self) -> (R, BytesMut) {
        (self.inner, self.buf)
    }

    /// The next frame's payload, or `Ok(None)` on a clean end of stream between frames.
    ///
    /// Cancel-safe: all state is in the buffer, which a read either extends or leaves alone,
    /// so the future can be dropped in a `select!` and `next` called again without loss.
    ///
    /// # Errors
    ///
    /// [`FrameError::Oversized`] as soon as the header is in (before reserving memory for the
    /// payload), [`FrameError::Checksum`], [`FrameError::Truncated`] on an end of stream
    /// inside a frame, [`FrameError::Io`]. After an error the stream is misaligned: drop it.
    pub async fn next(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(payload) = self.take_frame()? {
                return Ok(Some(payload));
            }
            // Never more than one chunk per read, so a reader of small frames keeps a small
            // buffer and a large frame is assembled chunk by chunk.
            self.buf.reserve(READ_CHUNK);
            let n = self.inner.read_buf(&mut (&mut self.buf).limit(READ_CHUNK)).await?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated { got: self.buf.len() })
                };
            }
        }
    }

    /// Splits the first frame off the buffer if it is complete.
    fn take_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        let Some(header) = self.buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let (len, expected) = parse_header(header);
        if len > self.max_len {
            return Err(FrameError::Oversized { len, max: self.max_len });
        }
        if self.buf.len() - HEADER_LEN < len {
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        let payload = self.buf.split_to(len).freeze();
        verify(&payload, expected)?;
        Ok(Some(payload))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::ReadBuf;

    /// A reader over fixed bytes that hands out at most `step` bytes per read and counts the
    /// reads that returned data.
    struct Trickle {
        data: Bytes,
        step: usize,
        reads: usize,
    }

    impl Trickle {
        fn new(data: impl Into<Bytes>, step: usize) -> Self {
            Self { data: data.into(), step, reads: 0 }
        }
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = self.step.min(buf.remaining()).min(self.data.len());
            if n > 0 {
                self.reads += 1;
                let chunk = self.data.split_to(n);
                buf.put_slice(&chunk);
            }
            Poll::Ready(Ok(()))
        }
    }

    fn payloads() -> Vec<Vec<u8>> {
        (0..500u32).map(|i| (0..(i % 37)).map(|j| (i * 31 + j) as u8).collect()).collect()
    }

    fn encoded(payloads: &[Vec<u8>]) -> BytesMut {
        let mut out = BytesMut::new();
        for p in payloads {
            encode(&mut out, p);
        }
        out
    }

    async fn read_all<R: AsyncRead + Unpin>(r: &mut FrameReader<R>) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        while let Some(p) = r.next().await.unwrap() {
            got.push(p.to_vec());
        }
        got
    }

    #[test]
    fn header_layout() {
        let mut out = BytesMut::new();
        encode(&mut out, b"abc");
        assert_eq!(out.len(), HEADER_LEN + 3);
        assert_eq!(&out[..4], &3u32.to_be_bytes());
        assert_eq!(&out[4..8], &crc32fast::hash(b"abc").to_be_bytes());
        assert_eq!(&out[8..], b"abc");
    }

    #[tokio::test]
    async fn roundtrip_many_frames_in_one_read() {
        let ps = payloads();
        let wire = encoded(&ps);
        assert!(wire.len() < READ_CHUNK, "test wants all frames in one chunk");
        let mut r = FrameReader::new(Trickle::new(wire.freeze(), usize::MAX), 1024);
        assert_eq!(read_all(&mut r).await, ps);
        // One read brought every frame in; the next one saw the end of the stream.
        assert_eq!(r.get_ref().reads, 1);
    }

    #[tokio::test]
    async fn roundtrip_one_byte_at_a_time() {
        let ps = payloads();
        let mut r = FrameReader::new(Trickle::new(encoded(&ps).freeze(), 1), 1024);
        assert_eq!(read_all(&mut r).await, ps);
    }

    #[tokio::test]
    async fn roundtrip_over_tiny_duplex() {
        let ps = payloads();
        let (mut w, rd) = tokio::io::duplex(3);
        let wire = encoded(&ps);
        let writer = tokio::spawn(async move {
            w.write_all(&wire).await.unwrap();
            // Dropping `w` ends the stream.
        });
        let mut r = FrameReader::new(rd, 1024);
        assert_eq!(read_all(&mut r).await, ps);
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn write_frame_then_read_frame_leaves_the_rest() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write_frame(&mut a, b"first").await.unwrap();
        write_frame(&mut a, b"second").await.unwrap();
        drop(a);
        assert_eq!(read_frame(&mut b, 16).await.unwrap().unwrap(), b"first");
        let mut r = FrameReader::new(b, 16);
        assert_eq!(r.next().await.unwrap().unwrap(), &b"second"[..]);
        assert!(r.next().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn empty_payload() {
        let mut wire = BytesMut::new();
        encode(&mut wire, b"");
        encode(&mut wire, b"x");
        let mut r = FrameReader::new(Trickle::new(wire.freeze(), 5), 0);
        assert_eq!(r.next().await.unwrap().unwrap().len(), 0);
        // `x` exceeds a limit of 0.
        assert!(matches!(r.next().await, Err(FrameError::Oversized { len: 1, max: 0 })));
    }

    /// A header claiming 4 GiB is refused as soon as it is read, with nothing reserved for it
    /// (the buffer stays at one read chunk) and without waiting for the payload.
    #[tokio::test]
    async fn oversized_rejected_without_allocating() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&u32::MAX.to_be_bytes());
        wire.extend_from_slice(&0u32.to_be_bytes());
        // The stream stays open: a reader that waited for the payload would hang.
        let (mut w, rd) = tokio::io::duplex(64);
        w.write_all(&wire).await.unwrap();
        let mut r = FrameReader::new(rd, 1 << 20);
        match r.next().await {
            Err(FrameError::Oversized { len, max }) => {
                assert_eq!(len, u32::MAX as usize);
                assert_eq!(max, 1 << 20);
            }
            other => panic!("expected Oversized, got {other:?}"),
        }
        assert!(r.buf.capacity() <= 2 * READ_CHUNK, "{}", r.buf.capacity());

        let (mut w, mut rd) = tokio::io::duplex(64);
        w.write_all(&wire).await.unwrap();
        assert!(matches!(read_frame(&mut rd, 1024).await, Err(FrameError::Oversized { .. })));
        drop(w);
    }

    #[tokio::test]
    async fn bad_checksum() {
        let mut wire = BytesMut::new();
        encode(&mut wire, b"hello");
        let last = wire.len() - 1;
        wire[last] ^= 0x01;
        let mut r = FrameReader::new(Trickle::new(wire.clone().freeze(), 2), 1024);
        match r.next().await {
            Err(FrameError::Checksum { expected, actual }) => {
                assert_eq!(expected, crc32fast::hash(b"hello"));
                assert_eq!(actual, crc32fast::hash(b"helln"));
            }
            other => panic!("expected Checksum, got {other:?}"),
        }
        let mut t = Trickle::new(wire.freeze(), 2);
        assert!(matches!(read_frame(&mut t, 1024).await, Err(FrameError::Checksum { .. })));
    }

    #[tokio::test]
    async fn truncated_frame() {
        let mut wire = BytesMut::new();
        encode(&mut wire, b"whole");
        encode(&mut wire, b"cut short");
        let cut = wire.len() - 3;
        let wire = wire.freeze().slice(..cut);
        let mut r = FrameReader::new(Trickle::new(wire.clone(), 4), 1024);
        assert_eq!(r.next().await.unwrap().unwrap(), &b"whole"[..]);
        match r.next().await {
            Err(FrameError::Truncated { got }) => assert_eq!(got, HEADER_LEN + 6),
            other => panic!("expected Truncated, got {other:?}"),
        }

        // Cut inside the header.
        let mut t = Trickle::new(wire.slice(..HEADER_LEN + 5 + 3), 1);
        assert_eq!(read_frame(&mut t, 1024).await.unwrap().unwrap(), b"whole");
        assert!(matches!(read_frame(&mut t, 1024).await, Err(FrameError::Truncated { got: 3 })));
        let mut r = FrameReader::new(Trickle::new(wire.slice(HEADER_LEN + 5..HEADER_LEN + 8), 1), 1024);
        assert!(matches!(r.next().await, Err(FrameError::Truncated { got: 3 })));
    }

    #[tokio::test]
    async fn clean_eof() {
        let mut r = FrameReader::new(Trickle::new(Bytes::new(), 1), 1024);
        assert!(r.next().await.unwrap().is_none());
        let mut t = Trickle::new(Bytes::new(), 1);
        assert!(read_frame(&mut t, 1024).await.unwrap().is_none());
    }

    /// A frame at the limit among many small ones: the buffer never holds more than one
    /// frame plus one chunk, and its allocation stays within twice that.
    #[tokio::test]
    async fn buffer_stays_bounded() {
        let max = 1 << 20;
        let mut ps: Vec<Vec<u8>> = (0..3000u32).map(|i| vec![i as u8; 100]).collect();
        ps.insert(1500, vec![7u8; max]);
        ps.push(vec![9u8; max]);
        let mut r = FrameReader::new(Trickle::new(encoded(&ps).freeze(), usize::MAX), max);
        let bound = max + HEADER_LEN + READ_CHUNK;
        let mut got = Vec::new();
        loop {
            let next = r.next().await.unwrap();
            assert!(r.buf.len() <= bound, "buffered {}", r.buf.len());
            assert!(r.buf.capacity() <= 2 * bound, "capacity {}", r.buf.capacity());
            match next {
                Some(p) => got.push(p.to_vec()),
                None => break,
            }
        }
        assert_eq!(got, ps);
    }

    #[test]
    fn try_encode_checks_the_limit() {
        let mut out = BytesMut::new();
        assert!(matches!(try_encode(&mut out, &[0; 10], 9), Err(FrameError::Oversized { len: 10, max: 9 })));
        assert!(out.is_empty());
        try_encode(&mut out, &[0; 10], 10).unwrap();
        assert_eq!(out.len(), HEADER_LEN + 10);
    }
}
