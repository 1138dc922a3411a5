//! Raw `records` bytes of one fetched partition → records, skipped ranges and undecodable
//! batches. Pure and synchronous, so every hostile-input case is a unit test.
//!
//! Batches are split by hand from their headers (baseOffset, batchLength, lastOffsetDelta),
//! so a batch that fails to decode still has an exact offset range to step over. Only the
//! records section goes through kafka-protocol's decoder, with our decompressor.
//!
//! Record batch v2 layout (offsets from the batch start):
//!
//! ```text
//!  0 baseOffset i64     8 batchLength i32 (bytes after this field)   12 partitionLeaderEpoch i32
//! 16 magic i8          17 crc u32 (CRC-32C of bytes 21..end)          21 attributes i16
//! 23 lastOffsetDelta i32   27 baseTimestamp i64   35 maxTimestamp i64   43 producerId i64
//! 51 producerEpoch i16     53 baseSequence i32    57 recordCount i32    61 records...
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use rskafka::record::{Record, RecordAndOffset};

use super::bounds::{self, BatchHeader};
use super::codec;
use super::{FetchedItem, SkipReason, UndecodableReason};

/// baseOffset + batchLength: the bytes before the part that batchLength counts.
const LOG_OVERHEAD: usize = 12;
/// The smallest batchLength of a v2 batch (its header after the length field, no records).
const V2_MIN_BATCH_LENGTH: usize = 61 - LOG_OVERHEAD;
/// Enough of a batch to read baseOffset and lastOffsetDelta (the offset range).
const RANGE_PREFIX: usize = 27;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const PRODUCER_ID_AT: usize = 43;
const RECORD_COUNT_AT: usize = 57;
const RECORDS_AT: usize = 61;
const CODEC_MASK: i16 = 0x07;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;
/// Control record key: version i16, then type i16; type 0 is ABORT, 1 is COMMIT.
const CONTROL_TYPE_ABORT: i16 = 0;

/// One aborted transaction as listed in the fetch response (read_committed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AbortedTxn {
    /// Its first offset in this partition.
    pub first_offset: i64,
    /// The producer that aborted it.
    pub producer_id: i64,
}

/// What one partition's bytes decoded to.
#[derive(Debug)]
pub struct Decoded {
    /// Records, skipped ranges and undecodable batches, in offset order, none before the
    /// requested offset.
    pub items: Vec<FetchedItem>,
    /// The offset after the last complete batch (the requested offset if none): where the next
    /// fetch starts. Past compaction gaps too, which records alone would not show.
    pub next_offset: i64,
    /// The bytes ended inside a batch (the broker cuts the last one at max bytes); that batch
    /// comes whole in the next fetch.
    pub partial_tail: bool,
    /// How many whole batches the bytes held (including any before the requested offset).
    pub complete_batches: usize,
    /// The first batch was cut short, and this many bytes would hold it whole (only when
    /// `first_cut_is_corrupt` was false; then nothing else was decoded).
    pub first_batch_cut: Option<usize>,
}

/// Decodes every complete batch in `raw` for a fetch that asked for `from_offset`.
///
/// `aborted` is the fetch response's aborted transaction list; records of those transactions
/// are reported as [`SkipReason::AbortedTransaction`]. `max_batch_bytes` caps one batch's
/// decompressed records.
///
/// Kafka sends the first batch whole whatever the fetch limits (KIP-74). When it is cut short
/// anyway, `first_cut_is_corrupt` decides: false reports how many bytes would hold it
/// ([`Decoded::first_batch_cut`]) so the caller can ask again; true reports it as
/// [`UndecodableReason::Incomplete`], as its length field must then be corrupt.
pub fn decode_batches(
    raw: &Bytes,
    from_offset: i64,
    aborted: &[AbortedTxn],
    max_batch_bytes: usize,
    first_cut_is_corrupt: bool,
) -> Decoded {
    let mut out = Decoded {
        items: Vec::new(),
        next_offset: from_offset,
        partial_tail: false,
        complete_batches: 0,
        first_batch_cut: None,
    };
    let mut txns = AbortedTracker::new(aborted);
    let mut pos = 0;
    let mut first = true;
    while raw.len() - pos >= LOG_OVERHEAD {
        let rest = &raw[pos..];
        let received = rest.len();
        let declared = i32_at(rest, 8).and_then(|l| usize::try_from(l).ok());
        match declared {
            Some(len) if len >= V2_MIN_BATCH_LENGTH || magic(rest).is_some_and(|m| m < 2) => {
                let Some(total) = len.checked_add(LOG_OVERHEAD).filter(|t| *t <= received) else {
                    // Later batches are cut at max bytes; see the function docs for the first.
                    if !first {
                        out.partial_tail = true;
                    } else if first_cut_is_corrupt {
                        out.report_range(rest, from_offset, || UndecodableReason::Incomplete {
                            declared: len,
                            received: received - LOG_OVERHEAD,
                        });
                    } else {
                        out.first_batch_cut = Some(len.saturating_add(LOG_OVERHEAD));
                    }
                    break;
                };
                let batch = raw.slice(pos..pos + total);
                pos += total;
                first = false;
                out.complete_batches += 1;
                out.push_batch(&batch, from_offset, &mut txns, max_batch_bytes);
            }
            _ => {
                // A length that cannot hold a batch header: where the next batch starts is
                // unknown, so nothing after this point can be trusted.
                let length = i32_at(rest, 8).unwrap_or(-1);
                out.report_range(rest, from_offset, || UndecodableReason::BadLength { length });
                break;
            }
        }
    }
    if raw.len() - pos > 0 && raw.len() - pos < LOG_OVERHEAD {
        out.partial_tail = true;
    }
    out
}

impl Decoded {
    /// Reports an undecodable batch from whatever of its header is there; nothing when even
    /// its offset range is cut off or lies before `from_offset`.
    fn report_range(&mut self, batch: &[u8], from_offset: i64, reason: impl FnOnce() -> UndecodableReason) {
        if batch.len() < RANGE_PREFIX {
            return;
        }
        let (base, last) = offset_range(batch);
        if last >= from_offset {
            self.items.push(FetchedItem::Undecodable {
                first_offset: base.max(from_offset),
                last_offset: last,
                reason: reason(),
            });
            self.next_offset = self.next_offset.max(last.saturating_add(1));
        }
    }

    /// Decodes one complete batch into items.
    fn push_batch(
        &mut self,
        batch: &Bytes,
        from_offset: i64,
        txns: &mut AbortedTracker,
        max_batch_bytes: usize,
    ) {
        let (base, last) = offset_range(batch);
        if last < from_offset {
            // Kafka returns the whole batch that holds the requested offset, never one before
            // it; but if it did, there is nothing in it for us.
            return;
        }
        let first_offset = base.max(from_offset);
        self.next_offset = self.next_offset.max(last.saturating_add(1));
        let item = match classify(batch, txns, max_batch_bytes) {
            Err(reason) => FetchedItem::Undecodable {
                first_offset,
                last_offset: last,
                reason,
            },
            Ok(Kind::Skip(why)) => FetchedItem::Skipped {
                first_offset,
                last_offset: last,
                why,
            },
            Ok(Kind::Data) => match records(batch, from_offset, max_batch_bytes) {
                Ok(records) => {
                    self.items.extend(records.into_iter().map(FetchedItem::Record));
                    return;
                }
                Err(reason) => FetchedItem::Undecodable {
                    first_offset,
                    last_offset: last,
                    reason,
                },
            },
        };
        self.items.push(item);
    }
}

/// What a CRC-checked batch holds.
enum Kind {
    Data,
    Skip(SkipReason),
}

/// Checks magic, CRC and codec bits, and sorts out control and aborted batches.
fn classify(
    batch: &Bytes,
    txns: &mut AbortedTracker,
    max_batch_bytes: usize,
) -> Result<Kind, UndecodableReason> {
    let magic = magic(batch).unwrap_or(-1);
    if magic != 2 {
        return Err(UndecodableReason::UnsupportedMagic { magic });
    }
    let expected = u32_at(batch, CRC_AT).unwrap_or(0);
    let actual = crc32c::crc32c(batch.get(ATTRIBUTES_AT..).unwrap_or_default());
    if expected != actual {
        return Err(UndecodableReason::Crc { expected, actual });
    }
    let attributes = i16_at(batch, ATTRIBUTES_AT).unwrap_or(0);
    let codec_bits = attributes & CODEC_MASK;
    if codec_bits > Compression::Zstd as i16 {
        return Err(UndecodableReason::UnknownCodec { bits: codec_bits });
    }
    let producer_id = i64_at(batch, PRODUCER_ID_AT).unwrap_or(-1);
    let (_, last) = offset_range(batch);
    if attributes & TRANSACTIONAL_BIT != 0 {
        txns.open_up_to(last);
    }
    if attributes & CONTROL_BIT != 0 {
        if control_type(batch, max_batch_bytes)? == Some(CONTROL_TYPE_ABORT) {
            txns.close(producer_id);
        }
        return Ok(Kind::Skip(SkipReason::ControlBatch));
    }
    if attributes & TRANSACTIONAL_BIT != 0 && txns.is_aborted(producer_id) {
        return Ok(Kind::Skip(SkipReason::AbortedTransaction));
    }
    Ok(Kind::Data)
}

/// The marker type of a control batch (its one record's key), `None` for an empty batch.
fn control_type(batch: &Bytes, max_batch_bytes: usize) -> Result<Option<i16>, UndecodableReason> {
    let set = decode_set(batch, max_batch_bytes)?;
    Ok(set
        .records
        .first()
        .and_then(|r| r.key.as_ref())
        .and_then(|k| i16_at(k, 2)))
}

/// The batch's records at or after `from_offset`, in rskafka's shape. All or nothing: a record
/// that cannot be represented makes the whole batch undecodable.
fn records(
    batch: &Bytes,
    from_offset: i64,
    max_batch_bytes: usize,
) -> Result<Vec<RecordAndOffset>, UndecodableReason> {
    let set = decode_set(batch, max_batch_bytes)?;
    set.records
        .into_iter()
        .filter(|r| r.offset >= from_offset)
        .map(|r| {
            let timestamp =
                chrono::DateTime::from_timestamp_millis(r.timestamp).ok_or(UndecodableReason::Timestamp {
                    offset: r.offset,
                    millis: r.timestamp,
                })?;
            Ok(RecordAndOffset {
                offset: r.offset,
                record: Record {
                    key: r.key.map(|b| b.to_vec()),
                    value: r.value.map(|b| b.to_vec()),
                    // rskafka's headers have no null value; an empty one is the closest.
                    headers: r
                        .headers
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.map(|b| b.to_vec()).unwrap_or_default()))
                        .collect::<BTreeMap<_, _>>(),
                    timestamp,
                },
            })
        })
        .collect()
}

/// kafka-protocol's batch decoder with our decompressor, after [`bounds::check_records`] on the
/// records it will read. Its closure must return its own (anyhow) error, so our typed error is
/// kept aside and put back afterwards.
fn decode_set(
    batch: &Bytes,
    max_batch_bytes: usize,
) -> Result<kafka_protocol::records::RecordSet, UndecodableReason> {
    let header = BatchHeader {
        record_count: i32_at(batch, RECORD_COUNT_AT).unwrap_or(0),
        base_offset: i64_at(batch, 0).unwrap_or(0),
        base_timestamp: i64_at(batch, BASE_TIMESTAMP_AT).unwrap_or(0),
    };
    let codec_bits = i16_at(batch, ATTRIBUTES_AT).unwrap_or(0) & CODEC_MASK;
    if codec_bits == Compression::None as i16 {
        bounds::check_records(batch.get(RECORDS_AT..).unwrap_or_default(), header)
            .map_err(UndecodableReason::Bounds)?;
    }
    let failed: RefCell<Option<UndecodableReason>> = RefCell::new(None);
    let mut buf = batch.clone();
    let result = RecordBatchDecoder::decode_with_custom_compression(
        &mut buf,
        Some(|data: &mut Bytes, codec: Compression| {
            let checked = codec::decompress(codec, data, max_batch_bytes)
                .map_err(UndecodableReason::Decompress)
                .and_then(|plain| {
                    bounds::check_records(&plain, header).map_err(UndecodableReason::Bounds)?;
                    Ok(plain)
                });
            checked.map_err(|reason| {
                let stand_in = std::io::Error::other(reason.to_string());
                *failed.borrow_mut() = Some(reason);
                stand_in.into()
            })
        }),
    );
    result.map_err(|e| match failed.borrow_mut().take() {
        Some(reason) => reason,
        None => UndecodableReason::Records(e.into()),
    })
}

/// The batch's first and last offsets from its header (`batch` holds at least
/// [`RANGE_PREFIX`] bytes). A negative delta counts as 0 so the range never runs backwards.
/// A legacy (magic 0/1) message has one offset, the last of its inner messages when
/// compressed.
fn offset_range(batch: &[u8]) -> (i64, i64) {
    let base = i64_at(batch, 0).unwrap_or(0);
    if magic(batch).is_some_and(|m| m < 2) {
        return (base, base);
    }
    let delta = i32_at(batch, LAST_OFFSET_DELTA_AT).unwrap_or(0).max(0);
    (base, base.saturating_add(i64::from(delta)))
}

fn magic(batch: &[u8]) -> Option<i8> {
    batch.get(MAGIC_AT).map(|b| i8::from_be_bytes([*b]))
}

fn i16_at(b: &[u8], at: usize) -> Option<i16> {
    b.get(at..at + 2)?.try_into().ok().map(i16::from_be_bytes)
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    b.get(at..at + 4)?.try_into().ok().map(i32::from_be_bytes)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)?.try_into().ok().map(u32::from_be_bytes)
}

fn i64_at(b: &[u8], at: usize) -> Option<i64> {
    b.get(at..at + 8)?.try_into().ok().map(i64::from_be_bytes)
}

/// Which producers are inside an aborted transaction at the current batch, as Kafka's Java
/// consumer tracks it: a transaction opens when a batch reaches its first offset and closes
/// at the producer's ABORT marker.
#[derive(Debug)]
struct AbortedTracker {
    pending: Vec<AbortedTxn>,
    next: usize,
    open: Vec<i64>,
}

impl AbortedTracker {
    fn new(aborted: &[AbortedTxn]) -> Self {
        let mut pending = aborted.to_vec();
        pending.sort_unstable();
        Self {
            pending,
            next: 0,
            open: Vec::new(),
        }
    }

    fn open_up_to(&mut self, last_offset: i64) {
        while let Some(t) = self
            .pending
            .get(self.next)
            .filter(|t| t.first_offset <= last_offset)
        {
            self.open.push(t.producer_id);
            self.next += 1;
        }
    }

    fn close(&mut self, producer_id: i64) {
        self.open.retain(|p| *p != producer_id);
    }

    fn is_aborted(&self, producer_id: i64) -> bool {
        self.open.contains(&producer_id)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::records::{
        NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, RecordBatchEncoder,
        RecordEncodeOptions, TimestampType,
    };

    use super::super::codec::DecompressError;
    use super::super::codec::tests::compress;
    use super::*;

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    const T0: i64 = 1_700_000_000_000;

    fn record(offset: i64) -> kafka_protocol::records::Record {
        kafka_protocol::records::Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            offset,
            // kafka-protocol's encoder starts a new batch when offset - sequence changes.
            sequence: i32::try_from(offset).unwrap(),
            timestamp: T0 + offset,
            key: Some(Bytes::from(format!("k{offset}"))),
            value: Some(Bytes::from(format!("value {offset} ").repeat(20))),
            headers: [("h".into(), Some(Bytes::from(format!("{offset}"))))].into(),
        }
    }

    /// A batch holding `records`, encoded by kafka-protocol with our test compressor.
    fn encode(records: &[kafka_protocol::records::Record], codec: Compression) -> Bytes {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode_with_custom_compression(
            &mut buf,
            records,
            &RecordEncodeOptions {
                version: 2,
                compression: codec,
            },
            Some(|plain: &mut BytesMut, out: &mut BytesMut, c: Compression| {
                out.put_slice(&compress(c, plain));
                Ok(())
            }),
        )
        .unwrap();
        buf.freeze()
    }

    pub(crate) fn batch(offsets: std::ops::RangeInclusive<i64>, codec: Compression) -> Bytes {
        encode(&offsets.map(record).collect::<Vec<_>>(), codec)
    }

    fn concat(parts: &[&Bytes]) -> Bytes {
        parts
            .iter()
            .flat_map(|b| b.iter().copied())
            .collect::<Vec<u8>>()
            .into()
    }

    /// Rewrites the CRC so that only the change under test is wrong with the batch.
    fn fix_crc(batch: &mut [u8]) {
        let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    }

    fn decode(raw: &Bytes, from: i64) -> Decoded {
        decode_batches(raw, from, &[], 1 << 20, true)
    }

    fn offsets(d: &Decoded) -> Vec<i64> {
        d.items
            .iter()
            .filter_map(|i| match i {
                FetchedItem::Record(r) => Some(r.offset),
                _ => None,
            })
            .collect()
    }

    fn undecodable(d: &Decoded) -> Vec<(i64, i64, &UndecodableReason)> {
        d.items
            .iter()
            .filter_map(|i| match i {
                FetchedItem::Undecodable {
                    first_offset,
                    last_offset,
                    reason,
                } => Some((*first_offset, *last_offset, reason)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn every_codec_decodes_to_the_records() {
        for codec in CODECS {
            let raw = concat(&[&batch(10..=12, codec), &batch(13..=13, codec)]);
            let d = decode(&raw, 10);
            assert_eq!(offsets(&d), vec![10, 11, 12, 13], "{codec:?}");
            assert_eq!((d.next_offset, d.partial_tail), (14, false), "{codec:?}");
            let FetchedItem::Record(r) = &d.items[1] else {
                panic!("{codec:?}")
            };
            assert_eq!(r.record.key.as_deref(), Some(&b"k11"[..]));
            assert_eq!(r.record.value.as_deref(), Some("value 11 ".repeat(20).as_bytes()));
            assert_eq!(r.record.headers.get("h").map(Vec::as_slice), Some(&b"11"[..]));
            assert_eq!(r.record.timestamp.timestamp_millis(), T0 + 11, "{codec:?}");
        }
    }

    #[test]
    fn a_null_header_value_reads_as_empty() {
        // rskafka fails the whole fetch on one (its header value cannot be null).
        let r = kafka_protocol::records::Record {
            headers: [
                ("gone".into(), None),
                ("h".into(), Some(Bytes::from_static(b"x"))),
            ]
            .into(),
            ..record(4)
        };
        let d = decode(&encode(&[r], Compression::Lz4), 0);
        let FetchedItem::Record(got) = &d.items[0] else {
            panic!("{:?}", d.items)
        };
        assert_eq!(got.record.headers.get("gone"), Some(&Vec::new()));
        assert_eq!(got.record.headers.get("h").map(Vec::as_slice), Some(&b"x"[..]));
    }

    #[test]
    fn offsets_before_the_requested_one_are_dropped() {
        let raw = batch(10..=14, Compression::Zstd);
        let d = decode(&raw, 12);
        assert_eq!(offsets(&d), vec![12, 13, 14]);
        assert_eq!(d.next_offset, 15);
    }

    #[test]
    fn a_corrupted_byte_is_undecodable_with_the_batch_range() {
        for codec in CODECS {
            let mut bad = batch(13..=15, codec).to_vec();
            let last = bad.len() - 3;
            bad[last] ^= 0x5a;
            let raw = concat(&[&batch(10..=12, codec), &Bytes::from(bad), &batch(16..=17, codec)]);
            let d = decode(&raw, 10);
            assert_eq!(offsets(&d), vec![10, 11, 12, 16, 17], "{codec:?}");
            let bad = undecodable(&d);
            assert_eq!(bad.len(), 1, "{codec:?}");
            assert_eq!((bad[0].0, bad[0].1), (13, 15), "{codec:?}");
            assert!(
                matches!(bad[0].2, UndecodableReason::Crc { .. }),
                "{codec:?}: {:?}",
                bad[0].2
            );
            assert_eq!(d.next_offset, 18);
        }
    }

    #[test]
    fn fetch_starting_inside_an_undecodable_batch_reports_from_the_requested_offset() {
        let mut bad = batch(20..=29, Compression::Lz4).to_vec();
        bad[70] ^= 1;
        let d = decode(&Bytes::from(bad), 25);
        let bad = undecodable(&d);
        assert_eq!((bad[0].0, bad[0].1), (25, 29));
        assert_eq!(d.next_offset, 30);
    }

    #[test]
    fn data_that_does_not_decompress_is_undecodable() {
        for codec in CODECS.into_iter().skip(1) {
            let mut bad = batch(5..=7, codec).to_vec();
            // Garble the compressed payload but keep the CRC right: a producer wrote it so.
            for b in &mut bad[61..75] {
                *b = 0xff;
            }
            fix_crc(&mut bad);
            let d = decode(&Bytes::from(bad), 5);
            let bad = undecodable(&d);
            assert_eq!((bad.len(), bad[0].0, bad[0].1), (1, 5, 7), "{codec:?}");
            assert!(
                matches!(bad[0].2, UndecodableReason::Decompress(_)),
                "{codec:?}: {:?}",
                bad[0].2
            );
        }
    }

    #[test]
    fn unknown_codec_bits_and_records_that_do_not_parse() {
        let mut unknown = batch(0..=1, Compression::None).to_vec();
        unknown[ATTRIBUTES_AT + 1] |= 0x07;
        fix_crc(&mut unknown);
        let mut garbled = batch(2..=3, Compression::None).to_vec();
        garbled[61] = 0x7f; // first record's length varint: far past the end
        fix_crc(&mut garbled);
        let d = decode(&concat(&[&Bytes::from(unknown), &Bytes::from(garbled)]), 0);
        let bad = undecodable(&d);
        assert!(
            matches!(bad[0], (0, 1, UndecodableReason::UnknownCodec { bits: 7 })),
            "{bad:?}"
        );
        assert!(matches!(bad[1], (2, 3, UndecodableReason::Records(_))), "{bad:?}");
        assert_eq!(d.next_offset, 4);
    }

    #[test]
    fn a_decompression_bomb_is_undecodable() {
        let raw = batch(0..=3, Compression::Zstd);
        let d = decode_batches(&raw, 0, &[], 100, true);
        assert!(matches!(
            undecodable(&d)[0],
            (
                0,
                3,
                UndecodableReason::Decompress(DecompressError::TooLarge { limit: 100, .. })
            )
        ));
    }

    #[test]
    fn a_truncated_last_batch_is_left_for_the_next_fetch() {
        let full = concat(&[
            &batch(10..=12, Compression::Snappy),
            &batch(13..=15, Compression::Snappy),
        ]);
        let first_len = batch(10..=12, Compression::Snappy).len();
        for cut in [first_len + 5, first_len + 40, full.len() - 1] {
            let d = decode(&full.slice(..cut), 10);
            assert_eq!(offsets(&d), vec![10, 11, 12], "cut at {cut}");
            assert!(undecodable(&d).is_empty());
            assert_eq!((d.next_offset, d.partial_tail), (13, true), "cut at {cut}");
        }
    }

    #[test]
    fn a_cut_first_batch_asks_for_room_first_then_is_a_corrupt_length() {
        let raw = batch(10..=12, Compression::None);
        let d = decode_batches(&raw.slice(..raw.len() - 1), 10, &[], 1 << 20, false);
        assert!(d.items.is_empty());
        assert_eq!((d.first_batch_cut, d.next_offset), (Some(raw.len()), 10));

        let d = decode(&raw.slice(..raw.len() - 1), 10);
        assert!(matches!(
            undecodable(&d)[0],
            (10, 12, UndecodableReason::Incomplete { .. })
        ));
        assert_eq!(d.next_offset, 13);
        // Not even the offset range arrived: nothing to report, nothing to step over.
        let d = decode(&raw.slice(..20), 10);
        assert!(d.items.is_empty());
        assert_eq!(d.next_offset, 10);
    }

    #[test]
    fn a_length_too_small_for_a_header_stops_the_parse() {
        let mut bad = batch(3..=4, Compression::None).to_vec();
        bad[8..12].copy_from_slice(&10i32.to_be_bytes());
        let raw = concat(&[
            &batch(0..=2, Compression::None),
            &Bytes::from(bad),
            &batch(5..=6, Compression::None),
        ]);
        let d = decode(&raw, 0);
        assert_eq!(offsets(&d), vec![0, 1, 2]);
        assert!(matches!(
            undecodable(&d)[0],
            (3, 4, UndecodableReason::BadLength { length: 10 })
        ));
        assert_eq!(d.next_offset, 5);
    }

    fn txn_records(
        offsets: std::ops::RangeInclusive<i64>,
        producer_id: i64,
    ) -> Vec<kafka_protocol::records::Record> {
        offsets
            .map(|o| kafka_protocol::records::Record {
                transactional: true,
                producer_id,
                producer_epoch: 0,
                sequence: i32::try_from(o).unwrap(),
                ..record(o)
            })
            .collect()
    }

    fn marker(offset: i64, producer_id: i64, kind: i16) -> Bytes {
        let mut key = BytesMut::new();
        key.put_i16(0);
        key.put_i16(kind);
        let r = kafka_protocol::records::Record {
            control: true,
            key: Some(key.freeze()),
            value: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
            headers: Default::default(),
            ..txn_records(offset..=offset, producer_id).remove(0)
        };
        encode(&[r], Compression::None)
    }

    #[test]
    fn control_batches_and_aborted_transactions_are_skipped() {
        let raw = concat(&[
            &encode(&txn_records(0..=1, 7), Compression::Gzip), // aborted below
            &encode(&txn_records(2..=2, 8), Compression::Gzip), // committed
            &marker(3, 7, CONTROL_TYPE_ABORT),
            &marker(4, 8, 1),
            &encode(&txn_records(5..=5, 7), Compression::Zstd), // a later, committed transaction
            &marker(6, 7, 1),
        ]);
        let aborted = [AbortedTxn {
            first_offset: 0,
            producer_id: 7,
        }];
        let d = decode_batches(&raw, 0, &aborted, 1 << 20, true);
        let got: Vec<_> = d
            .items
            .iter()
            .map(|i| match i {
                FetchedItem::Record(r) => (r.offset, r.offset, None),
                FetchedItem::Skipped {
                    first_offset,
                    last_offset,
                    why,
                } => (*first_offset, *last_offset, Some(*why)),
                FetchedItem::Undecodable { reason, .. } => panic!("{reason}"),
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 1, Some(SkipReason::AbortedTransaction)),
                (2, 2, None),
                (3, 3, Some(SkipReason::ControlBatch)),
                (4, 4, Some(SkipReason::ControlBatch)),
                (5, 5, None),
                (6, 6, Some(SkipReason::ControlBatch)),
            ]
        );
        assert_eq!(d.next_offset, 7);
    }

    #[test]
    fn empty_and_garbage_input() {
        let d = decode(&Bytes::new(), 3);
        assert!(d.items.is_empty() && !d.partial_tail && d.next_offset == 3);
        let d = decode(&Bytes::from_static(&[1, 2, 3]), 3);
        assert!(d.items.is_empty() && d.partial_tail);
        for len in 0..70 {
            let junk: Bytes = (0..len).map(|i| (i * 37 % 256) as u8).collect::<Vec<u8>>().into();
            let _ = decode(&junk, 0);
        }
    }

    /// A batch header from a real batch around a hand-written records section, with the
    /// given record count and base timestamp, its length and CRC fixed up.
    fn hand_written(records: &[u8], count: i32, base_timestamp: i64) -> Bytes {
        let mut raw = batch(0..=0, Compression::None)[..RECORDS_AT].to_vec();
        raw.extend_from_slice(records);
        let length = i32::try_from(raw.len() - LOG_OVERHEAD).unwrap();
        raw[8..12].copy_from_slice(&length.to_be_bytes());
        raw[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8].copy_from_slice(&base_timestamp.to_be_bytes());
        raw[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
        fix_crc(&mut raw);
        raw.into()
    }

    /// One record: attributes 0, both deltas `ts_delta`/0, null key and value, then the header
    /// count as raw varint bytes.
    fn record_bytes(ts_delta_zigzag: u8, header_count: &[u8]) -> Vec<u8> {
        let mut body = vec![0, ts_delta_zigzag, 0, 1, 1];
        body.extend_from_slice(header_count);
        let mut out = vec![u8::try_from(body.len() * 2).unwrap()];
        out.extend(body);
        out
    }

    fn bounds_reason(raw: &Bytes) -> Option<bounds::BoundsError> {
        match &decode(raw, 0).items[..] {
            [
                FetchedItem::Undecodable {
                    reason: UndecodableReason::Bounds(e),
                    ..
                },
            ] => Some(*e),
            _ => None,
        }
    }

    /// Found by `proptests::fallback`: kafka-protocol reserved room for the declared record
    /// count (and for each record's header count) before reading, so a batch declaring 2^31
    /// records aborted the process on a failed 377 GB allocation; and it added each delta to
    /// the base timestamp unchecked (a panic in debug builds).
    #[test]
    fn counts_and_deltas_the_records_cannot_hold_are_refused() {
        let fine = record_bytes(0, &[0]);
        let raw = hand_written(&fine, i32::MAX, T0);
        assert!(matches!(
            bounds_reason(&raw),
            Some(bounds::BoundsError::RecordCount {
                declared: i32::MAX,
                ..
            })
        ));
        // Header count i32::MAX as a zigzag varint.
        let raw = hand_written(&record_bytes(0, &[0xfe, 0xff, 0xff, 0xff, 0x0f]), 1, T0);
        assert!(matches!(
            bounds_reason(&raw),
            Some(bounds::BoundsError::HeaderCount {
                index: 0,
                declared: i32::MAX,
                ..
            })
        ));
        // A timestamp delta of +2 on a base of i64::MAX.
        let raw = hand_written(&record_bytes(4, &[0]), 1, i64::MAX);
        assert_eq!(
            bounds_reason(&raw),
            Some(bounds::BoundsError::DeltaOverflow { index: 0 })
        );
        // The same hand-written record with sane values decodes.
        let items = decode(&hand_written(&fine, 1, T0), 0).items;
        assert!(matches!(&items[..], [FetchedItem::Record(r)] if r.record.value.is_none()));
    }
}
