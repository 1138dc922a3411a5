//! A fallback reader for record batches that rskafka cannot decode.
//!
//! rskafka 0.6 fails a whole fetch when one batch in it uses a codec whose feature is off
//! (lz4 and zstd compile C, which the static musl build must not) or is corrupt, so one such
//! batch written by another producer would stop a partition forever. When rskafka's fetch fails
//! that way ([`is_decode_error`]), the consumer reads the same offset through
//! [`FallbackFetcher::fetch`]: our own wire client fetches the raw bytes from the partition
//! leader and this module decodes every codec Kafka has in pure Rust (gzip, snappy, lz4,
//! zstd). A batch that still cannot be decoded comes back as [`FetchedItem::Undecodable`] with
//! its exact offset range, so the caller steps over it and dead-letters it by reference.
//!
//! - [`codec`]: decompression, capped, for each codec.
//! - [`decode`]: raw partition bytes → [`FetchedItem`]s (pure, unit-tested).
//! - [`fetch`]: leader lookup and the Fetch request, every call bounded by a timeout.

pub mod bounds;
pub mod codec;
pub mod decode;
pub mod fetch;

use rskafka::record::RecordAndOffset;

pub use codec::DecompressError;
pub use fetch::{FallbackError, FallbackFetch, FallbackFetcher};

use super::wire::CodecError;

/// One entry of a fallback fetch, in offset order.
#[derive(Debug)]
pub enum FetchedItem {
    /// A record, exactly as rskafka's `fetch_records` would have returned it.
    Record(RecordAndOffset),
    /// Offsets that hold no calls by design; commit past them.
    Skipped {
        /// First offset of the range (never before the requested offset).
        first_offset: i64,
        /// Last offset of the range, inclusive.
        last_offset: i64,
        /// Why they hold no calls.
        why: SkipReason,
    },
    /// A batch that cannot be decoded: step over it, dead-letter the range by reference.
    Undecodable {
        /// The batch's base offset, or the requested offset when the fetch started inside it.
        first_offset: i64,
        /// baseOffset + lastOffsetDelta from the batch header, inclusive.
        last_offset: i64,
        /// What is wrong with it (its `Display` is fit for a dead-letter header).
        reason: UndecodableReason,
    },
}

impl FetchedItem {
    /// The last offset this item covers.
    pub fn last_offset(&self) -> i64 {
        match self {
            Self::Record(r) => r.offset,
            Self::Skipped { last_offset, .. } | Self::Undecodable { last_offset, .. } => *last_offset,
        }
    }
}

/// Why a range of offsets holds no calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// A transaction marker (COMMIT or ABORT) batch.
    ControlBatch,
    /// Records of a transaction that was aborted (the fetch is read_committed, as rskafka's).
    AbortedTransaction,
}

/// Why a record batch cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum UndecodableReason {
    /// The batch length cannot hold a batch header; nothing after it is read.
    #[error("batch length {length} cannot hold a batch header")]
    BadLength {
        /// The length field as read.
        length: i32,
    },
    /// The first batch of the response is cut short (Kafka always sends it whole, so its
    /// length field is corrupt).
    #[error("batch declares {declared} bytes but the response holds only {received}")]
    Incomplete {
        /// What the length field says.
        declared: usize,
        /// What arrived.
        received: usize,
    },
    /// Only record batch v2 (magic 2) is read; Kafka 4 writes nothing older.
    #[error("record batch magic {magic} is not supported")]
    UnsupportedMagic {
        /// The magic byte.
        magic: i8,
    },
    /// The CRC-32C of the batch does not match its header: the bytes changed after writing.
    #[error("CRC-32C mismatch: header {expected:#010x}, data {actual:#010x}")]
    Crc {
        /// The CRC in the header.
        expected: u32,
        /// The CRC of the bytes.
        actual: u32,
    },
    /// The attributes name a compression codec that does not exist.
    #[error("unknown compression codec {bits}")]
    UnknownCodec {
        /// The three codec bits.
        bits: i16,
    },
    /// The records section does not decompress.
    #[error("cannot decompress the records")]
    Decompress(#[source] DecompressError),
    /// A count or delta in the records that their bytes cannot hold or that overflows,
    /// refused before decoding (see [`bounds`]).
    #[error("records out of bounds: {0}")]
    Bounds(bounds::BoundsError),
    /// The (decompressed) records do not parse.
    #[error("cannot decode the records")]
    Records(#[source] CodecError),
    /// A record's timestamp is outside what a date can hold.
    #[error("record {offset} has timestamp {millis} ms, out of range")]
    Timestamp {
        /// The record's offset.
        offset: i64,
        /// Its timestamp.
        millis: i64,
    },
}

/// Whether an rskafka fetch error means "the response could not be decoded", i.e. a batch
/// rskafka cannot read: retrying with rskafka fails the same way, use [`FallbackFetcher`].
///
/// rskafka decodes record batches while it reads the Fetch response body, so an unknown codec
/// (`Malformed("Unimplemented compression: Zstd")`), a CRC mismatch or a malformed batch all
/// surface as `Request(ReadVersionedError(..))` or, for bytes left over, `Request(TooMuchData)`.
/// Transport errors (`IO`, `Poisoned`, framing) are not decode errors.
pub fn is_decode_error(e: &rskafka::client::error::Error) -> bool {
    use rskafka::client::error::{Error, RequestError};
    matches!(
        e,
        Error::Request(
            RequestError::ReadVersionedError(_)
                | RequestError::ReadError(_)
                | RequestError::TooMuchData { .. }
        )
    )
}

/// [`is_decode_error`] for the shared client's error (a timeout is not one).
pub fn is_client_decode_error(e: &super::client::Error) -> bool {
    matches!(e, super::client::Error::Kafka(k) if is_decode_error(k))
}
