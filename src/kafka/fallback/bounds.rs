//! A walk over a batch's (decompressed) records before kafka-protocol decodes them.
//!
//! kafka-protocol reserves room for the declared record count, and for each record's declared
//! header count, before reading any of them, so a batch of a few hundred bytes that declares
//! 2^31 records asks for hundreds of gigabytes and the failed allocation aborts the process. It
//! also adds each record's offset and timestamp deltas to the batch's base values unchecked,
//! which overflows (a panic in debug builds, a wrapped value in release). The walk follows the
//! decoder's own framing (each record is scoped by its length prefix) and refuses any count its
//! bytes cannot hold and any delta that overflows; anything else malformed is left to the
//! decoder, which reports it without allocating for it.
//!
//! Record v2 layout: length varint, attributes i8, timestampDelta varlong, offsetDelta varint,
//! keyLength varint + key, valueLength varint + value, header count varint, headers.

/// The smallest record after its length prefix: attributes, both deltas, key and value
/// lengths and the header count, one byte each.
const MIN_RECORD_BODY: usize = 6;
/// The smallest record with its length prefix.
const MIN_RECORD: usize = MIN_RECORD_BODY + 1;
/// The smallest header: key length and value length, one byte each.
const MIN_HEADER: usize = 2;

/// Why a batch's records were refused before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BoundsError {
    /// More records declared than the records section can hold.
    #[error("{declared} records declared in {room} bytes")]
    RecordCount {
        /// The batch header's record count.
        declared: i32,
        /// The size of the (decompressed) records section.
        room: usize,
    },
    /// A record declares more headers than its remaining bytes can hold.
    #[error("record {index} declares {declared} headers in {room} bytes")]
    HeaderCount {
        /// The record's position in the batch.
        index: usize,
        /// The declared header count.
        declared: i32,
        /// The bytes of the record left for its headers.
        room: usize,
    },
    /// A record's offset or timestamp delta overflows the batch's base value.
    #[error("record {index} offset or timestamp delta overflows the batch base")]
    DeltaOverflow {
        /// The record's position in the batch.
        index: usize,
    },
}

/// What the batch header says the records section holds.
#[derive(Debug, Clone, Copy)]
pub struct BatchHeader {
    /// recordCount.
    pub record_count: i32,
    /// baseOffset.
    pub base_offset: i64,
    /// baseTimestamp.
    pub base_timestamp: i64,
}

/// Walks `records` (the uncompressed records section) against `header`.
///
/// # Errors
/// [`BoundsError`] for a count the bytes cannot hold or a delta that overflows. Truncated or
/// otherwise malformed records end the walk with `Ok`: the decoder fails on the same record,
/// before it reaches any count after it.
pub fn check_records(records: &[u8], header: BatchHeader) -> Result<(), BoundsError> {
    let count = usize::try_from(header.record_count).unwrap_or(0);
    if count.saturating_mul(MIN_RECORD) > records.len() {
        return Err(BoundsError::RecordCount {
            declared: header.record_count,
            room: records.len(),
        });
    }
    let mut rest = records;
    for index in 0..count {
        let Some(body) = next_record(&mut rest) else {
            return Ok(());
        };
        match check_record(body, header, index) {
            Walked::Fine | Walked::Malformed => {}
            Walked::Refused(e) => return Err(e),
        }
    }
    Ok(())
}

enum Walked {
    Fine,
    Malformed,
    Refused(BoundsError),
}

/// Splits the next length-prefixed record off `rest`; `None` when malformed or truncated.
fn next_record<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(varint(rest)?).ok()?;
    let body = rest.get(..len)?;
    *rest = &rest[len..];
    Some(body)
}

fn check_record(mut body: &[u8], header: BatchHeader, index: usize) -> Walked {
    let mut walk = || -> Option<Result<(), BoundsError>> {
        let b = &mut body;
        skip(b, 1)?; // attributes
        let timestamp_delta = varlong(b)?;
        let offset_delta = varint(b)?;
        if header.base_timestamp.checked_add(timestamp_delta).is_none()
            || header.base_offset.checked_add(i64::from(offset_delta)).is_none()
        {
            return Some(Err(BoundsError::DeltaOverflow { index }));
        }
        for _ in 0..2 {
            // Key, then value: -1 is null.
            let len = varint(b)?;
            skip(b, usize::try_from(len).unwrap_or(0))?;
        }
        let headers = varint(b)?;
        let room = b.len();
        if usize::try_from(headers).unwrap_or(0).saturating_mul(MIN_HEADER) > room {
            return Some(Err(BoundsError::HeaderCount {
                index,
                declared: headers,
                room,
            }));
        }
        Some(Ok(()))
    };
    match walk() {
        None => Walked::Malformed,
        Some(Ok(())) => Walked::Fine,
        Some(Err(e)) => Walked::Refused(e),
    }
}

fn skip(b: &mut &[u8], n: usize) -> Option<()> {
    *b = b.get(n..)?;
    Some(())
}

/// An unsigned varint of at most `max_bytes` bytes, read as kafka-protocol reads it (bits past
/// the width are dropped, a longer run simply ends).
fn unsigned(b: &mut &[u8], max_bytes: u32) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..max_bytes {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        value |= u64::from(byte & 0x7f) << (i * 7);
        if byte < 0x80 {
            break;
        }
    }
    Some(value)
}

/// A zigzag varint (i32).
fn varint(b: &mut &[u8]) -> Option<i32> {
    // kafka-protocol accumulates in a u32, so bits past 32 are dropped.
    let z = (unsigned(b, 5)? & 0xffff_ffff) as u32;
    Some(((z >> 1) as i32) ^ -((z & 1) as i32))
}

/// A zigzag varlong (i64).
fn varlong(b: &mut &[u8]) -> Option<i64> {
    let z = unsigned(b, 10)?;
    Some(((z >> 1) as i64) ^ -((z & 1) as i64))
}
