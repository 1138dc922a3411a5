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

//!
//! The arithmetic on sizes (batch bounds, the limits, [`check_fits`]) is shared with config
//! validation and lives with the config ([`crate::config::values::batch`]); this module
//! measures records.

use rskafka::record::Record;

pub use crate::config::values::batch::{
    DEAD_LETTER_RESERVE_BYTES, KAFKA_DEFAULT_MAX_MESSAGE_BYTES, RECORD_BATCH_OVERHEAD, TooLarge, batch_limit,
    batch_size, check_fits, header_size, largest_record,
};
use crate::config::values::batch::{VARINT_MAX, VARLONG_MAX};

/// Upper bound on the bytes of one record inside a v2 batch: its length prefix, attributes,
/// timestamp and offset deltas, key, value and headers, each length at its widest.
pub fn record_size(record: &Record) -> usize {
    parts_size(
        record.key.as_ref().map_or(0, Vec::len),
        record.value.as_ref().map_or(0, Vec::len),
        record.headers.iter().map(|(k, v)| (k.len(), v.len())),
    )
}

/// [`record_size`] of a record not built yet: its key and value lengths and each header's
/// name and value lengths.
pub fn parts_size(key: usize, value: usize, headers: impl IntoIterator<Item = (usize, usize)>) -> usize {
    let headers: usize = headers.into_iter().map(|(k, v)| header_size(k, v)).sum();
    // length, attributes, timestamp delta, offset delta, key length, value length, header count
    VARINT_MAX + 1 + VARLONG_MAX + VARINT_MAX + VARINT_MAX + key + VARINT_MAX + value + VARINT_MAX + headers
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
