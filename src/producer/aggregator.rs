//! The batch aggregator of the partition writers: rskafka's `RecordAggregator`, but measuring
//! records as Kafka will ([`record_size`]) and capping batches at what the topic can take.
//!
//! rskafka's own aggregator counts only key, value and header bytes against
//! `kafka.producer.batch.bytes`. A batch of many small records then carries tens of bytes of
//! per-record framing it did not count, and nothing caps it at the topic's
//! `max.message.bytes`, so the broker could refuse a whole batch of calls that each fit.
//! Counting the same way as the ingest check makes "accepted at the door" imply "fits a batch
//! of its own here".

use rskafka::client::producer::Error as ProducerError;
use rskafka::client::producer::aggregator::{
    Aggregator, Error, RecordAggregatorStatusDeaggregator, StatusDeaggregator, TryPush,
};
use rskafka::record::Record;

use crate::kafka::record_size::{batch_size, record_size};

/// Batches records up to `limit` bytes of encoded batch ([`batch_size`]).
#[derive(Debug)]
pub struct SizedAggregator {
    /// Largest batch: the smaller of `batch.bytes` and the topic's `max.message.bytes` when
    /// the writer's producer was built (a writer rebuilds it after any produce error).
    limit: usize,
    /// Sum of [`record_size`] of the records held.
    records_bytes: usize,
    records: Vec<Record>,
}

impl SizedAggregator {
    /// An empty aggregator for batches of at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            records_bytes: 0,
            records: Vec::new(),
        }
    }
}

impl Aggregator for SizedAggregator {
    type Input = Record;
    type Tag = usize;
    type StatusDeaggregator = Deaggregator;

    /// `NoCapacity` when the record does not fit next to the ones held; rskafka then flushes
    /// and retries on an empty aggregator, and reports `Error::TooLarge` if it still does not
    /// fit (a record the ingest check let through under a limit that has since shrunk).
    fn try_push(&mut self, record: Record) -> Result<TryPush<Record, usize>, Error> {
        let size = record_size(&record);
        if batch_size(self.records_bytes + size) > self.limit {
            return Ok(TryPush::NoCapacity(record));
        }
        self.records_bytes += size;
        self.records.push(record);
        Ok(TryPush::Aggregated(self.records.len() - 1))
    }

    fn flush(&mut self) -> Result<(Vec<Record>, Deaggregator), Error> {
        self.records_bytes = 0;
        Ok((std::mem::take(&mut self.records), Deaggregator::default()))
    }
}

/// Maps a batch's offsets back to its records: the n-th record pushed got the n-th offset.
#[derive(Debug, Default, Clone, Copy)]
pub struct Deaggregator(RecordAggregatorStatusDeaggregator);

impl StatusDeaggregator for Deaggregator {
    type Status = i64;
    type Tag = usize;

    fn deaggregate(&self, input: &[i64], tag: usize) -> Result<i64, Error> {
        self.0.deaggregate(input, tag)
    }
}

/// Who found a record too large.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TooLargeCause {
    /// Our batch aggregator: larger than an empty batch may be (`batch.bytes`, or the
    /// topic's `max.message.bytes` lowered since the call was accepted).
    #[error("larger than a batch may be")]
    Batch,
    /// The broker answered `MESSAGE_TOO_LARGE` or `RECORD_LIST_TOO_LARGE`.
    #[error("the broker refused it as too large")]
    Broker,
}

/// Whether a produce error means the record can never be written as it is, and who said
/// so: rskafka's aggregator found it too large for an empty batch, or the broker answered
/// `MESSAGE_TOO_LARGE` or `RECORD_LIST_TOO_LARGE`. Retrying cannot help.
pub fn too_large(error: &ProducerError) -> Option<TooLargeCause> {
    use crate::kafka::fault::{Fault, fault};
    match error {
        ProducerError::TooLarge => Some(TooLargeCause::Batch),
        ProducerError::Client(e) => (fault(e) == Fault::TooLarge).then_some(TooLargeCause::Broker),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn record(value: usize) -> Record {
        Record {
            key: None,
            value: Some(vec![b'v'; value]),
            headers: BTreeMap::new(),
            timestamp: chrono::Utc::now(),
        }
    }

    #[test]
    fn batches_are_capped_by_the_encoded_size_not_the_payload() {
        // 100 records of 10 bytes: rskafka would count 1000 bytes, Kafka needs about 4600.
        let mut agg = SizedAggregator::new(2000);
        let mut pushed = 0;
        while let TryPush::Aggregated(tag) = agg.try_push(record(10)).unwrap() {
            assert_eq!(tag, pushed);
            pushed += 1;
        }
        assert_eq!(pushed, (2000 - 61 - 10) / 46);
        let (records, deagg) = agg.flush().unwrap();
        assert_eq!(records.len(), pushed);
        assert_eq!(deagg.deaggregate(&[7, 8, 9], 2).unwrap(), 9);
        // Empty again after a flush.
        assert!(matches!(
            agg.try_push(record(10)).unwrap(),
            TryPush::Aggregated(0)
        ));
    }

    #[test]
    fn a_record_over_the_limit_never_fits() {
        let mut agg = SizedAggregator::new(1000);
        assert!(matches!(
            agg.try_push(record(1000)).unwrap(),
            TryPush::NoCapacity(_)
        ));
    }

    #[test]
    fn too_large_errors_are_recognised() {
        use rskafka::client::error::{Error as ClientError, ProtocolError};
        use std::sync::Arc;
        let server = |protocol_error| {
            ProducerError::Client(Arc::new(ClientError::ServerError {
                protocol_error,
                error_message: None,
                request: rskafka::client::error::RequestContext::Partition("t".into(), 0),
                response: None,
                is_virtual: false,
            }))
        };
        assert_eq!(too_large(&ProducerError::TooLarge), Some(TooLargeCause::Batch));
        let broker = Some(TooLargeCause::Broker);
        assert_eq!(too_large(&server(ProtocolError::MessageTooLarge)), broker);
        assert_eq!(too_large(&server(ProtocolError::RecordListTooLarge)), broker);
        assert_eq!(too_large(&server(ProtocolError::NotLeaderOrFollower)), None);
        assert_eq!(too_large(&ProducerError::FlushError("x".into())), None);
    }
}
