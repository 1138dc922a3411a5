//! How many bytes a record takes once Kafka has it, estimated from above.
//!
//! Both limits a call must fit are measured on the encoded record batch, not on the value
//! alone: rskafka's aggregator refuses a batch over `kafka.producer.batch.bytes`, and the broker
//! refuses a batch over the topic's `max.message.bytes` (which counts the whole v2 batch,
//! header included: its default, 1048588, is 1 MiB plus the 12-byte log overhead). A call is
//! accepted at the door only when a batch holding it *alone*, grown by the headers of a dead
//! letter, fits both; so once accepted it can always be written, and dead-lettered later.
//!
//! The estimates are upper bounds: every varint is counted at its widest, and compression is
//! assumed to gain nothing (plus snappy's framing). Real batches are smaller, so a call near the
//! limit may be refused that would just have fitted; never the other way round.

use rskafka::record::Record;

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
const VARINT_MAX: usize = 5;
/// Widest zig-zag varint of an `i64` (timestamp delta).
const VARLONG_MAX: usize = 10;

/// Upper bound on the bytes of one record inside a v2 batch: its length prefix, attributes,
/// timestamp and offset deltas, key, value and headers, each length at its widest.
pub fn record_size(record: &Record) -> usize {
    let key = record.key.as_ref().map_or(0, Vec::len);
    let value = record.value.as_ref().map_or(0, Vec::len);
    let headers: usize = record
        .headers
        .iter()
        .map(|(k, v)| header_size(k.len(), v.len()))
        .sum();
    // length, attributes, timestamp delta, offset delta, key length, value length, header count
    VARINT_MAX + 1 + VARLONG_MAX + VARINT_MAX + VARINT_MAX + key + VARINT_MAX + value + VARINT_MAX + headers
}

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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn record(key: usize, value: usize, headers: &[(&str, usize)]) -> Record {
        Record {
            key: (key > 0).then(|| vec![b'k'; key]),
            value: Some(vec![b'v'; value]),
            headers: headers
                .iter()
                .map(|(k, n)| ((*k).to_owned(), vec![b'h'; *n]))
                .collect::<BTreeMap<_, _>>(),
            timestamp: chrono::Utc::now(),
        }
    }

    #[test]
    fn record_size_counts_every_part_at_its_widest() {
        // 36 bytes of per-record fields, 10 per header on top of the header's bytes.
        assert_eq!(record_size(&record(0, 0, &[])), 36);
        assert_eq!(record_size(&record(3, 100, &[])), 36 + 3 + 100);
        assert_eq!(
            record_size(&record(3, 100, &[("bigpipe-call-id", 36)])),
            36 + 3 + 100 + 10 + 15 + 36
        );
    }

    #[test]
    fn record_size_is_above_rskafkas_own_approximation() {
        let r = record(8, 5000, &[("a", 5), ("bigpipe-call-id", 36)]);
        assert!(record_size(&r) > r.approximate_size());
    }

    #[test]
    fn batch_size_adds_header_and_snappy_framing() {
        assert_eq!(batch_size(0), 61 + 10);
        assert_eq!(batch_size(65_536), 61 + 65_536 + 15);
        assert_eq!(batch_size(1 << 20), 61 + (1 << 20) + 5 + 5 * 17);
    }

    #[test]
    fn a_megabyte_of_escaped_angle_brackets_does_not_fit_the_default_limits() {
        // 1 MB of '<' in `data` is 6 MB of JSON once Go-style escaped (\u003c).
        let r = record(0, 6 * 1_000_000 + 200, &[("bigpipe-call-id", 36)]);
        let limit = batch_limit(1 << 20, KAFKA_DEFAULT_MAX_MESSAGE_BYTES);
        assert_eq!(limit, 1 << 20);
        let err = check_fits(record_size(&r), limit).unwrap_err();
        assert_eq!(err.limit, 1 << 20);
        assert!(err.needed > 6_000_000, "{err}");
    }

    #[test]
    fn the_dead_letter_reserve_is_kept_free() {
        let limit = 100_000;
        let largest = largest_record(limit).unwrap();
        assert!(check_fits(largest, limit).is_ok());
        assert_eq!(
            check_fits(largest + 1, limit),
            Err(TooLarge {
                needed: limit + 1,
                limit
            })
        );
        // Without the reserve the same record would have fitted.
        assert!(batch_size(largest + 1) <= limit);
        assert_eq!(largest, limit - 61 - 4096 - 5 - 5 * 2);
    }

    #[test]
    fn the_smaller_limit_wins() {
        assert_eq!(batch_limit(1 << 20, 20_000), 20_000);
        assert_eq!(batch_limit(16_384, KAFKA_DEFAULT_MAX_MESSAGE_BYTES), 16_384);
        assert!(largest_record(20_000).unwrap() < 20_000 - 4096);
    }

    #[test]
    fn a_dead_letter_adds_less_than_the_reserve() {
        use crate::consumer::dlq::DeadLetter;
        let original = record(100, 10_000, &[("bigpipe-call-id", 36)]);
        let longest_name = "t".repeat(249);
        let letter = DeadLetter {
            key: original.key.clone(),
            value: original.value.clone().unwrap_or_default(),
            headers: original.headers.clone(),
            source: (i32::MAX, i64::MAX),
            // A reason of 2 KiB: the dead-letter side truncates longer ones.
            reason: "r".repeat(2048),
            last_status: Some(599),
            attempts: u32::MAX,
            first_attempt_ms: i64::MAX,
            last_attempt_ms: i64::MAX,
        };
        let dead = letter.to_record(&longest_name, &longest_name);
        let added = record_size(&dead) - record_size(&original);
        assert!(added <= DEAD_LETTER_RESERVE_BYTES, "{added}");
    }

    #[test]
    fn a_limit_below_the_reserve_fits_nothing() {
        assert_eq!(largest_record(4096), None);
        assert_eq!(largest_record(10), None);
        assert!(check_fits(0, 4096).is_err());
    }
}
