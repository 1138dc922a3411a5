//! Kafka's framing: every request and response is an `i32` big-endian byte count followed by
//! that many bytes. This file knows nothing about what is inside a frame.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Default largest frame we read or write: 100 MiB, rskafka's default `max_message_size`.
///
/// Our calls (admin, group membership) exchange kilobytes; the guard exists so that a corrupt
/// or hostile size prefix cannot make us allocate gigabytes.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 100 * 1024 * 1024;

/// Errors reading or writing one frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The size prefix is negative, so the peer is not speaking Kafka (or the stream is
    /// misaligned).
    #[error("frame size {size} is negative")]
    NegativeSize {
        /// The prefix as read.
        size: i32,
    },

    /// The frame is larger than the configured maximum. The body is *not* skipped (see
    /// [`read_frame`]).
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The frame's size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },

    /// The peer closed the connection before a whole frame was read.
    #[error("connection closed by the broker")]
    Eof,

    /// Any other socket error.
    #[error("socket error")]
    Io(#[source] std::io::Error),
}

impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> Self {
        // `read_exact` reports a close mid-frame as `UnexpectedEof`; give it its own variant so
        // callers can tell "broker went away" from a real socket error.
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Self::Eof
        } else {
            Self::Io(e)
        }
    }
}

/// Reads one frame and returns its body (without the size prefix).
///
/// An oversize frame is reported without reading (skipping) its body: the caller poisons the
/// connection anyway, and draining up to 2 GiB just to keep a socket we are about to drop
/// would be wasted work.
///
/// # Errors
/// [`FrameError::NegativeSize`], [`FrameError::TooLarge`], [`FrameError::Eof`] if the stream
/// ends before a complete frame, [`FrameError::Io`] otherwise.
///
/// # Cancellation
/// Not cancel safe: dropping the future mid-frame loses the bytes already consumed.
pub async fn read_frame<R>(reader: &mut R, max_bytes: usize) -> Result<Bytes, FrameError>
where
    R: AsyncRead + Unpin,
{
    let size = reader.read_i32().await?;
    let size = usize::try_from(size).map_err(|_| FrameError::NegativeSize { size })?;
    if size > max_bytes {
        return Err(FrameError::TooLarge { size, max: max_bytes });
    }
    let mut body = vec![0u8; size];
    reader.read_exact(&mut body).await?;
    Ok(Bytes::from(body))
}

/// Writes `payload` as one frame and flushes.
///
/// Prefix and payload go out in one `write_all`, so a small request leaves as one TCP
/// segment even with `TCP_NODELAY` set; the copy costs nothing at our message sizes.
///
/// # Errors
/// [`FrameError::TooLarge`] (nothing written) if `payload` exceeds `max_bytes` or `i32::MAX`;
/// [`FrameError::Io`]/[`FrameError::Eof`] if the socket fails, possibly after a partial write.
///
/// # Cancellation
/// Not cancel safe: dropping the future may leave a partial frame on the wire.
pub async fn write_frame<W>(writer: &mut W, payload: &[u8], max_bytes: usize) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
{
    let max = max_bytes.min(i32::MAX as usize);
    let size = i32::try_from(payload.len())
        .ok()
        .filter(|_| payload.len() <= max)
        .ok_or(FrameError::TooLarge {
            size: payload.len(),
            max,
        })?;
    let mut buf = BytesMut::with_capacity(4 + payload.len());
    buf.put_i32(size);
    buf.put_slice(payload);
    writer.write_all(&buf).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[tokio::test]
    async fn round_trip_several_frames() {
        let (mut a, mut b) = duplex(1024);
        let frames: [&[u8]; 3] = [b"hello", b"", &[7u8; 300]];
        for f in frames {
            write_frame(&mut a, f, 1024).await.unwrap();
        }
        for f in frames {
            let got = read_frame(&mut b, 1024).await.unwrap();
            assert_eq!(&got[..], f);
        }
    }

    #[tokio::test]
    async fn size_prefix_is_big_endian_i32() {
        let (mut a, mut b) = duplex(64);
        write_frame(&mut a, b"abc", 64).await.unwrap();
        drop(a);
        let mut raw = Vec::new();
        b.read_to_end(&mut raw).await.unwrap();
        assert_eq!(raw, [0, 0, 0, 3, b'a', b'b', b'c']);
    }

    #[tokio::test]
    async fn oversize_read_is_rejected_before_allocating() {
        let (mut a, mut b) = duplex(64);
        a.write_all(&i32::MAX.to_be_bytes()).await.unwrap();
        let err = read_frame(&mut b, 1024).await.unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { size, max: 1024 } if size == i32::MAX as usize),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn negative_size_is_rejected() {
        let (mut a, mut b) = duplex(64);
        a.write_all(&(-5i32).to_be_bytes()).await.unwrap();
        let err = read_frame(&mut b, 1024).await.unwrap_err();
        assert!(matches!(err, FrameError::NegativeSize { size: -5 }), "{err:?}");
    }

    #[tokio::test]
    async fn eof_in_prefix_and_in_body() {
        // Closed before a whole size prefix.
        let (mut a, mut b) = duplex(64);
        a.write_all(&[0, 0]).await.unwrap();
        drop(a);
        let err = read_frame(&mut b, 1024).await.unwrap_err();
        assert!(matches!(err, FrameError::Eof), "{err:?}");

        // Closed with the body half sent.
        let (mut a, mut b) = duplex(64);
        a.write_all(&[0, 0, 0, 10, 1, 2, 3]).await.unwrap();
        drop(a);
        let err = read_frame(&mut b, 1024).await.unwrap_err();
        assert!(matches!(err, FrameError::Eof), "{err:?}");

        // Closed cleanly between frames: also Eof, there is no partial frame to report.
        let (a, mut b) = duplex(64);
        drop(a);
        let err = read_frame(&mut b, 1024).await.unwrap_err();
        assert!(matches!(err, FrameError::Eof), "{err:?}");
    }

    #[tokio::test]
    async fn oversize_write_writes_nothing() {
        let (mut a, mut b) = duplex(64);
        let err = write_frame(&mut a, &[0u8; 33], 32).await.unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { size: 33, max: 32 }),
            "{err:?}"
        );
        drop(a);
        let mut raw = Vec::new();
        b.read_to_end(&mut raw).await.unwrap();
        assert!(raw.is_empty());
    }

    #[tokio::test]
    async fn write_to_closed_peer_is_an_error() {
        let (mut a, b) = duplex(64);
        drop(b);
        let err = write_frame(&mut a, b"x", 64).await.unwrap_err();
        assert!(matches!(err, FrameError::Io(_) | FrameError::Eof), "{err:?}");
    }
}
