//! The size arithmetic of a Kafka v2 record batch, as upper bounds: what config validation
//! needs to refuse a body limit no batch can hold, and what ingest checks every call against.
//! Measuring a real record is the Kafka side's job (`kafka::record_size`, whose module docs
//! explain the two limits a call must fit).

/// `max.message.bytes` of a topic whose value Kafka has not told us (the broker default of
/// `message.max.bytes`, which topics inherit).
pub const KAFKA_DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

/// Room kept free in every accepted call for the headers a dead letter adds
/// (`bigpipe-dlq-reason`, `-status`, `-attempts`, `-first-attempt-ms`, `-last-attempt-ms`,
/// `-group`, `-source`; see `consumer::dlq::DeadLetter::to_record`).
///
/// This is the contract between ingest and the dead-letter writer: ingest refuses a call whose
/// record plus this reserve does not fit, and the dead-letter side must keep what it adds to a
/// record (header names, values and their varints) within this many bytes, truncating the free
/// text of the reason if it must. 4 KiB holds the fixed headers with a 249-character topic and
/// group id (Kafka's longest topic name) and still leaves about 3 KiB for the reason.
pub const DEAD_LETTER_RESERVE_BYTES: usize = 4096;

/// A v2 record batch's fixed part: base offset (8), batch length (4), partition leader epoch
/// (4), magic (1), CRC (4), attributes (2), last offset delta (4), first and max timestamp
/// (8 + 8), producer id (8), producer epoch (2), base sequence (4), record count (4).
pub const RECORD_BATCH_OVERHEAD: usize = 61;

/// Widest zig-zag varint of an `i32` (lengths, offset delta, header count).
pub const VARINT_MAX: usize = 5;
/// Widest zig-zag varint of an `i64` (timestamp delta).
pub const VARLONG_MAX: usize = 10;

/// Upper bound on one record header of `key` and `value` bytes.
pub fn header_size(key: usize, value: usize) -> usize {
    VARINT_MAX + key + VARINT_MAX + value
}

/// Upper bound on a batch whose records take `records` bytes (sum of [`record_size`]): the
/// fixed header plus the records, plus what snappy may add when the records do not compress.
///
/// Raw snappy (what rskafka writes) never expands a match, so incompressible input costs its
/// length varint (at most 5 bytes) plus one literal tag (at most 5 bytes) per 64 KiB block.
pub fn batch_size(records: usize) -> usize {
    let snappy = 5 + 5 * (records / 65_536 + 1);
    RECORD_BATCH_OVERHEAD + records + snappy
}

/// The largest batch that can be written to a topic: the smaller of our batch limit and the
/// topic's `max.message.bytes`.
pub fn batch_limit(batch_bytes: usize, max_message_bytes: usize) -> usize {
    batch_bytes.min(max_message_bytes)
}

/// A record that can never be written, with the figures that say why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "record needs {needed} bytes (batch of it alone plus {DEAD_LETTER_RESERVE_BYTES} reserved \
     for a dead letter), the limit is {limit}"
)]
pub struct TooLarge {
    /// The batch estimate of the record alone, plus [`DEAD_LETTER_RESERVE_BYTES`].
    pub needed: usize,
    /// The batch limit it was checked against (see [`batch_limit`]).
    pub limit: usize,
}

/// Checks that a record of `record` bytes ([`record_size`]), once dead-lettered, still fits a
/// batch of at most `limit` bytes ([`batch_limit`]).
///
/// # Errors
/// [`TooLarge`] when it does not.
pub fn check_fits(record: usize, limit: usize) -> Result<(), TooLarge> {
    let needed = batch_size(record.saturating_add(DEAD_LETTER_RESERVE_BYTES));
    if needed > limit {
        return Err(TooLarge { needed, limit });
    }
    Ok(())
}

/// The largest record that [`check_fits`] accepts under `limit`, if any: what a caller's body
/// can grow to at most (used by config validation to refuse body limits that can never fit).
pub fn largest_record(limit: usize) -> Option<usize> {
    // batch_size is monotonic, so search down from the bound that ignores snappy's few bytes.
    let mut record = limit
        .checked_sub(RECORD_BATCH_OVERHEAD)?
        .checked_sub(DEAD_LETTER_RESERVE_BYTES)?;
    while check_fits(record, limit).is_err() {
        record = record.checked_sub(1)?;
    }
    Some(record)
}
