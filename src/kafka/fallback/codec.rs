//! Decompression of a record batch's records section, for every codec Kafka has, in pure Rust.
//!
//! Each decoder's output is capped (`limit`): the input comes from whoever can produce to the
//! topic, and a few kilobytes of zstd can claim gigabytes.

use std::io::Read;

use bytes::Bytes;
use kafka_protocol::records::Compression;

/// The snappy-java ("xerial") stream header Kafka's Java producer writes: magic, version 1,
/// compatible version 1. Without it the payload is one raw snappy block (librdkafka can
/// write either).
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// Why a batch's records could not be decompressed.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    /// The codec's decoder rejected the bytes.
    #[error("{codec:?} data is corrupt")]
    Corrupt {
        /// The codec named in the batch attributes.
        codec: Compression,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },
    /// The decompressed records would exceed the cap.
    #[error("{codec:?} data decompresses to more than {limit} bytes")]
    TooLarge {
        /// The codec named in the batch attributes.
        codec: Compression,
        /// The cap that was hit.
        limit: usize,
    },
    /// A snappy-java block length points past the end of the data.
    #[error("snappy-java block of {block} bytes at byte {at}, only {left} left")]
    SnappyFraming {
        /// Where the block's length prefix starts.
        at: usize,
        /// The length it claims.
        block: usize,
        /// What is left after the prefix.
        left: usize,
    },
}

/// Decompresses `data` as written with `codec`, to at most `limit` bytes.
///
/// # Errors
/// [`DecompressError`] when the data is not valid for its codec or inflates beyond `limit`.
pub fn decompress(codec: Compression, data: &Bytes, limit: usize) -> Result<Bytes, DecompressError> {
    let out = match codec {
        Compression::None => return Ok(data.clone()),
        Compression::Gzip => read_capped(codec, flate2::read::MultiGzDecoder::new(&data[..]), limit)?,
        Compression::Snappy => snappy(data, limit)?,
        Compression::Lz4 => read_capped(codec, lz4_flex::frame::FrameDecoder::new(&data[..]), limit)?,
        Compression::Zstd => zstd(data, limit)?,
    };
    Ok(Bytes::from(out))
}

/// Reads `reader` to its end, failing once more than `limit` bytes come out.
fn read_capped<R: Read>(codec: Compression, reader: R, limit: usize) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|source| DecompressError::Corrupt { codec, source })?;
    if out.len() > limit {
        return Err(DecompressError::TooLarge { codec, limit });
    }
    Ok(out)
}

/// Kafka's snappy: snappy-java's block stream (`[u32 length][raw block]...` after a 16-byte
/// header), or a single raw block when the header is absent.
fn snappy(data: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    if !data.starts_with(XERIAL_MAGIC) {
        return snappy_block(data, limit, Vec::new());
    }
    let mut out = Vec::new();
    let mut at = XERIAL_HEADER_LEN.min(data.len());
    while at < data.len() {
        let Some(prefix) = data.get(at..at + 4) else {
            return Err(DecompressError::SnappyFraming {
                at,
                block: 4,
                left: data.len() - at,
            });
        };
        let block = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        let start = at + 4;
        let Some(bytes) = start.checked_add(block).and_then(|end| data.get(start..end)) else {
            return Err(DecompressError::SnappyFraming {
                at,
                block,
                left: data.len() - start,
            });
        };
        out = snappy_block(bytes, limit, out)?;
        at = start + block;
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`, checking its declared length against `limit`
/// *before* allocating.
fn snappy_block(block: &[u8], limit: usize, mut out: Vec<u8>) -> Result<Vec<u8>, DecompressError> {
    let codec = Compression::Snappy;
    let corrupt = |e: snap::Error| DecompressError::Corrupt {
        codec,
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    };
    let len = snap::raw::decompress_len(block).map_err(corrupt)?;
    let start = out.len();
    if start.saturating_add(len) > limit {
        return Err(DecompressError::TooLarge { codec, limit });
    }
    out.resize(start + len, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(corrupt)?;
    out.truncate(start + written);
    Ok(out)
}

/// zstd, frame after frame: a producer may concatenate frames, and the format allows it.
fn zstd(data: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    let codec = Compression::Zstd;
    let mut rest = data;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let decoder =
            ruzstd::decoding::StreamingDecoder::new(&mut rest).map_err(|e| DecompressError::Corrupt {
                codec,
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?;
        let left = limit - out.len();
        out.extend(read_capped(codec, decoder, left)?);
    }
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests {
    use std::io::Write;

    use super::*;

    /// Compresses `data` the way Kafka's Java producer does, for building test batches.
    pub(crate) fn compress(codec: Compression, data: &[u8]) -> Vec<u8> {
        match codec {
            Compression::None => data.to_vec(),
            Compression::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(data).unwrap();
                enc.finish().unwrap()
            }
            Compression::Snappy => {
                // snappy-java framing, with small blocks so that a test crosses a block edge.
                let mut out = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
                for chunk in data.chunks(64) {
                    let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
                    out.extend_from_slice(&u32::try_from(block.len()).unwrap().to_be_bytes());
                    out.extend_from_slice(&block);
                }
                out
            }
            Compression::Lz4 => {
                let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
                enc.write_all(data).unwrap();
                enc.finish().unwrap()
            }
            Compression::Zstd => {
                ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
            }
        }
    }

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn sample() -> Vec<u8> {
        (0..5000u32).flat_map(|i| (i % 251).to_le_bytes()).collect()
    }

    #[test]
    fn every_codec_round_trips() {
        let data = sample();
        for codec in ALL {
            let packed = Bytes::from(compress(codec, &data));
            let got = decompress(codec, &packed, data.len()).unwrap();
            assert_eq!(got, data, "{codec:?}");
        }
    }

    #[test]
    fn output_over_the_cap_is_refused() {
        let data = sample();
        for codec in ALL.into_iter().skip(1) {
            let packed = Bytes::from(compress(codec, &data));
            let err = decompress(codec, &packed, data.len() - 1).unwrap_err();
            assert!(
                matches!(err, DecompressError::TooLarge { .. }),
                "{codec:?}: {err:?}"
            );
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let junk = Bytes::from_static(b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01\xff\xff\xff\xff");
        for codec in ALL.into_iter().skip(1) {
            assert!(decompress(codec, &junk, 1 << 20).is_err(), "{codec:?}");
            let half = Bytes::from(compress(codec, &sample())).slice(..40);
            assert!(decompress(codec, &half, 1 << 20).is_err(), "{codec:?} truncated");
        }
    }

    #[test]
    fn raw_snappy_without_the_java_header() {
        let data = sample();
        let raw = Bytes::from(snap::raw::Encoder::new().compress_vec(&data).unwrap());
        assert_eq!(decompress(Compression::Snappy, &raw, data.len()).unwrap(), data);
    }
}
