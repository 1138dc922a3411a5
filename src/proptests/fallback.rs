//! `kafka::fallback::decode::decode_batches`, the reader of batches rskafka cannot decode: on
//! arbitrary bytes, and on valid batches mutated behind a fixed-up CRC (so the mutation reaches
//! the records decoder), it never panics, stays in its offset range and does bounded work.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, Record, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType,
};
use proptest::prelude::*;

use super::config;
use crate::kafka::fallback::FetchedItem;
use crate::kafka::fallback::decode::{AbortedTxn, Decoded, decode_batches};

/// The decompressed size cap the tests use (the fetcher's default is larger).
const MAX_BATCH_BYTES: usize = 1 << 20;
const ATTRIBUTES_AT: usize = 21;
const CRC_AT: usize = 17;
/// The smallest record (length, attributes, timestamp and offset deltas, key and value
/// lengths, header count: one byte each).
const MIN_RECORD_BYTES: usize = 7;

fn record(offset: i64, key: &[u8], value: &[u8]) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: i32::try_from(offset).unwrap_or(0),
        timestamp: 1_700_000_000_000 + offset,
        key: Some(Bytes::copy_from_slice(key)),
        value: Some(Bytes::copy_from_slice(value)),
        headers: [("h".into(), Some(Bytes::copy_from_slice(key)))].into(),
    }
}

/// An uncompressed v2 batch of `count` records from `base`.
fn batch(base: i64, count: i64, payload: &[u8]) -> Vec<u8> {
    let records: Vec<Record> = (base..base + count).map(|o| record(o, b"k", payload)).collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("a small batch encodes");
    buf.to_vec()
}

fn fix_crc(batch: &mut [u8]) {
    if batch.len() > ATTRIBUTES_AT {
        let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

fn aborted() -> impl Strategy<Value = Vec<AbortedTxn>> {
    prop::collection::vec(
        (any::<i64>(), any::<i64>()).prop_map(|(first_offset, producer_id)| AbortedTxn {
            first_offset,
            producer_id,
        }),
        0..3,
    )
}

/// Items never start before the requested offset, nor run backwards; the work done is bounded
/// by the input: at most one item per record that fits the input or the decompression cap.
fn check(raw: &[u8], from: i64, d: &Decoded) -> Result<(), TestCaseError> {
    prop_assert!(d.next_offset >= from);
    let bound =
        d.complete_batches + 1 + (raw.len() + d.complete_batches * MAX_BATCH_BYTES) / MIN_RECORD_BYTES;
    prop_assert!(
        d.items.len() <= bound,
        "{} items from {} bytes",
        d.items.len(),
        raw.len()
    );
    for item in &d.items {
        match item {
            FetchedItem::Record(r) => prop_assert!(r.offset >= from),
            FetchedItem::Skipped {
                first_offset,
                last_offset,
                ..
            }
            | FetchedItem::Undecodable {
                first_offset,
                last_offset,
                ..
            } => {
                prop_assert!(*first_offset >= from && last_offset >= first_offset);
            }
        }
    }
    Ok(())
}

/// A mutation of a valid batch: overwrite bytes at positions (modulo the length).
#[derive(Debug, Clone)]
enum Mutation {
    Byte(usize, u8),
    I32(usize, i32),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Byte(at, b)),
        (
            prop_oneof![Just(57usize), Just(23), Just(8), Just(61), any::<usize>()],
            prop_oneof![
                Just(i32::MAX),
                Just(i32::MIN),
                Just(-1),
                Just(0x0fff_ffff),
                any::<i32>()
            ]
        )
            .prop_map(|(at, v)| Mutation::I32(at, v)),
    ]
}

fn apply(batch: &mut [u8], m: &Mutation) {
    let len = batch.len();
    match *m {
        Mutation::Byte(at, b) => batch[at % len] = b,
        Mutation::I32(at, v) => {
            let at = at % len.saturating_sub(4).max(1);
            if at + 4 <= len {
                batch[at..at + 4].copy_from_slice(&v.to_be_bytes());
            }
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_bytes_never_panic(
        raw in prop::collection::vec(any::<u8>(), 0..1024),
        from in prop_oneof![Just(0i64), any::<i64>()],
        aborted in aborted(),
        first_cut_is_corrupt in any::<bool>(),
    ) {
        let d = decode_batches(&Bytes::from(raw.clone()), from, &aborted, MAX_BATCH_BYTES, first_cut_is_corrupt);
        check(&raw, from, &d)?;
    }

    /// Valid batches with bytes changed after the CRC, which is then fixed up: the damage
    /// reaches the header fields, the compression bits and the records decoder.
    #[test]
    fn mutated_batches_behind_a_good_crc_never_panic(
        base in 0i64..1_000_000,
        count in 1i64..8,
        payload in prop::collection::vec(any::<u8>(), 0..64),
        mutations in prop::collection::vec(mutation(), 1..4),
        keep_crc in any::<bool>(),
        from_delta in 0i64..10,
        second in any::<bool>(),
    ) {
        let mut raw = batch(base, count, &payload);
        for m in &mutations {
            apply(&mut raw, m);
        }
        if !keep_crc {
            fix_crc(&mut raw);
        }
        if second {
            raw.extend(batch(base + count, 2, b"next"));
        }
        let from = base + from_delta;
        let d = decode_batches(&Bytes::from(raw.clone()), from, &[], MAX_BATCH_BYTES, false);
        check(&raw, from, &d)?;
    }

    /// Unmutated batches decode to exactly their records at or after `from`.
    #[test]
    fn valid_batches_decode_to_their_records(base in 0i64..1_000_000, count in 1i64..8, from_delta in 0i64..8) {
        let raw = batch(base, count, b"value");
        let from = base + from_delta;
        let d = decode_batches(&Bytes::from(raw), from, &[], MAX_BATCH_BYTES, false);
        let offsets: Vec<i64> = d.items.iter().map(FetchedItem::last_offset).collect();
        let want: Vec<i64> = (from..base + count).collect();
        prop_assert_eq!(offsets, want);
        prop_assert!(d.items.iter().all(|i| matches!(i, FetchedItem::Record(_))));
    }
}
