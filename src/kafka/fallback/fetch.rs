//! Fetching one partition's raw record bytes from its leader with our wire client.
//!
//! rskafka hides its connections and its record decoding, so the fallback keeps its own:
//! a bootstrap connection for Metadata and one connection per leader, each dropped after any
//! error and made again on the next call. Every round trip is bounded: connect and ApiVersions
//! by the connection timeout, Metadata by the request timeout, Fetch by the request timeout
//! plus the fetch's `max_wait`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, FetchRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::FetchedItem;
use super::decode::{AbortedTxn, decode_batches};
use crate::kafka::connect::KafkaConnect;
use crate::kafka::wire::{self, BrokerConnection, connect_any};

/// Fetch v13+ names topics by id only; v12 is the last that takes a name, and every Kafka
/// from 2.7 to 4.x serves it.
const FETCH_BY_NAME_MAX: i16 = 12;
/// Metadata v4+ can ask the broker not to auto-create the topic.
const METADATA_NO_AUTO_CREATE: i16 = 4;
/// rskafka fetches read_committed; so do we, so both readers see the same records.
const READ_COMMITTED: i8 = 1;
/// Default cap on one batch's decompressed records (Kafka's own default batch limit is 1 MiB;
/// this leaves room for highly compressible payloads without letting a bomb through).
pub const DEFAULT_MAX_BATCH_BYTES: usize = 64 << 20;

/// The result of one fallback fetch.
#[derive(Debug)]
pub struct FallbackFetch {
    /// Records, skipped ranges and undecodable batches, in offset order, none before the
    /// requested offset.
    pub items: Vec<FetchedItem>,
    /// Where the next fetch starts: one past the last complete batch (the requested offset when
    /// the response held none). Use this, not the last record's offset + 1, to step over
    /// compaction gaps, skipped and undecodable batches alike.
    pub next_offset: i64,
    /// The partition's high watermark, as rskafka's `fetch_records` returns it.
    pub high_watermark: i64,
}

/// One partition of a Fetch response, before decoding.
#[derive(Debug)]
struct RawPartition {
    records: Bytes,
    aborted: Vec<AbortedTxn>,
    high_watermark: i64,
}

/// Errors of a fallback fetch. None of them is about the data: an undecodable batch is a
/// [`FetchedItem::Undecodable`], not an error.
#[derive(Debug, thiserror::Error)]
pub enum FallbackError {
    /// A connection or request failed (connect, timeout, transport, decode of the response
    /// envelope); the connection is dropped and made again on the next call.
    #[error("fallback fetch of {topic}-{partition}")]
    Wire {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The wire error.
        #[source]
        source: wire::Error,
    },
    /// Metadata does not list the partition, or it has no leader right now (retriable).
    #[error("no leader known for {topic}-{partition}")]
    NoLeader {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// The broker answered the partition with an error code. OFFSET_OUT_OF_RANGE means what it
    /// means for rskafka; NOT_LEADER_OR_FOLLOWER and friends are retriable (the leader cache is
    /// already cleared).
    #[error("fetch of {topic}-{partition} at {offset}: {error} (code {code})")]
    Partition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The requested offset.
        offset: i64,
        /// The decoded error.
        error: ResponseError,
        /// The raw code.
        code: i16,
    },
    /// The response has no bytes for our partition although the broker reported no error.
    #[error("fetch response has no entry for {topic}-{partition}")]
    MissingPartition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// The response holds bytes but no whole batch, not even the offset range of a cut one
    /// (fewer than 27 bytes), even when asked again with room for it.
    #[error("fetch of {topic}-{partition} at {offset} returned {received} bytes and no complete batch")]
    NoCompleteBatch {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The requested offset.
        offset: i64,
        /// How many record bytes arrived.
        received: usize,
    },
}

impl FallbackError {
    /// Whether the partition's own data is not the problem, so trying again later may work.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Wire { .. } | Self::NoLeader { .. } | Self::NoCompleteBatch { .. } => true,
            Self::Partition { error, .. } => error.is_retriable(),
            Self::MissingPartition { .. } => false,
        }
    }
}

/// Reads partitions with our own wire client, decoding every codec in pure Rust.
///
/// One per process is enough (it is `Send + Sync`; calls on different partitions proceed in
/// parallel, calls to the same leader take turns on its connection).
#[derive(Debug)]
pub struct FallbackFetcher {
    connect: KafkaConnect,
    max_batch_bytes: usize,
    /// The connection used for Metadata; `None` until first use or after an error.
    metadata: Mutex<Option<Arc<BrokerConnection>>>,
    /// Connections to leaders, by `host:port`.
    leaders: Mutex<HashMap<String, Arc<BrokerConnection>>>,
    /// Leader address of each partition, until a fetch there fails.
    leader_of: Mutex<HashMap<(String, i32), String>>,
}

impl FallbackFetcher {
    /// A fetcher that connects as `connect` says; its request timeout bounds each connect and
    /// each request (a fetch may take the timeout + `max_wait`).
    pub fn new(connect: KafkaConnect) -> Self {
        Self {
            connect,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            metadata: Mutex::new(None),
            leaders: Mutex::new(HashMap::new()),
            leader_of: Mutex::new(HashMap::new()),
        }
    }

    /// The same connection settings as the shared rskafka client.
    pub fn for_client(client: &crate::kafka::client::KafkaClient) -> Self {
        Self::new(client.connect().clone())
    }

    /// Caps one batch's decompressed records (default [`DEFAULT_MAX_BATCH_BYTES`]); a batch
    /// over it is [`FetchedItem::Undecodable`].
    #[must_use]
    pub fn with_max_batch_bytes(mut self, max: usize) -> Self {
        self.max_batch_bytes = max;
        self
    }

    /// Fetches `topic`-`partition` from `offset`, like rskafka's
    /// `fetch_records(offset, 1..max_bytes, max_wait_ms)`, and decodes every batch it can.
    ///
    /// Records before `offset` (Kafka sends the whole batch that holds it) are dropped; a
    /// batch cut short at the end of the response is left for the next fetch; control batches
    /// and aborted transactions come back as [`FetchedItem::Skipped`]; a batch that cannot be
    /// decoded as [`FetchedItem::Undecodable`] with its offset range. Continue at
    /// [`FallbackFetch::next_offset`].
    ///
    /// # Errors
    /// [`FallbackError`]: connection, leader or partition errors, never the data's content.
    ///
    /// # Time
    /// Each round trip is bounded by the timeout (Fetch by timeout + `max_wait`). A call with
    /// nothing cached makes up to: connect + ApiVersions per bootstrap address tried, Metadata,
    /// connect + ApiVersions to the leader, and one or (for a cut first batch) two Fetches.
    /// With connections cached it is one Fetch. Wrap it in `kafka::client::bounded` for a
    /// single bound.
    ///
    /// # Cancellation
    /// Safe: dropping the future mid-request poisons that connection, and the next call makes
    /// a new one.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: i32,
        max_wait: Duration,
    ) -> Result<FallbackFetch, FallbackError> {
        let mut raw = self
            .fetch_raw(topic, partition, offset, max_bytes, max_wait)
            .await?;
        let mut decoded = decode_batches(&raw.records, offset, &raw.aborted, self.max_batch_bytes, false);
        if let Some(needed) = decoded.first_batch_cut {
            // Kafka sends the first batch whole whatever the limits (KIP-74), so this broker
            // does not, or the length is corrupt: ask once more with room for all of it, and
            // only if it is still cut short call it undecodable.
            let room = i32::try_from(needed).unwrap_or(i32::MAX).max(max_bytes);
            raw = self.fetch_raw(topic, partition, offset, room, max_wait).await?;
            decoded = decode_batches(&raw.records, offset, &raw.aborted, self.max_batch_bytes, true);
        }
        if decoded.complete_batches == 0 && decoded.items.is_empty() && !raw.records.is_empty() {
            return Err(FallbackError::NoCompleteBatch {
                topic: topic.to_owned(),
                partition,
                offset,
                received: raw.records.len(),
            });
        }
        Ok(FallbackFetch {
            items: decoded.items,
            next_offset: decoded.next_offset,
            high_watermark: raw.high_watermark,
        })
    }

    /// One Fetch round trip to the leader: the partition's bytes, or its error.
    async fn fetch_raw(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: i32,
        max_wait: Duration,
    ) -> Result<RawPartition, FallbackError> {
        let wire_err = |source| FallbackError::Wire {
            topic: topic.to_owned(),
            partition,
            source,
        };
        let leader = self.leader(topic, partition).await?;
        let conn = self.leader_connection(&leader).await.map_err(wire_err)?;
        let version = conn
            .negotiate_version(ApiKey::Fetch, Some(FETCH_BY_NAME_MAX))
            .map_err(wire_err)?;
        let resp = conn
            .request_with(
                fetch_request(topic, partition, offset, max_bytes, max_wait),
                Some(version),
                Some(self.connect.request_timeout().saturating_add(max_wait)),
            )
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                self.forget(topic, partition, &leader);
                return Err(wire_err(e));
            }
        };
        if resp.error_code != 0 {
            self.forget(topic, partition, &leader);
            return Err(wire_err(wire::Error::server(
                ApiKey::Fetch,
                resp.error_code,
                None,
            )));
        }
        let data = resp
            .responses
            .into_iter()
            .filter(|t| t.topic.0.as_str() == topic)
            .flat_map(|t| t.partitions)
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| FallbackError::MissingPartition {
                topic: topic.to_owned(),
                partition,
            })?;
        if let Some(error) = ResponseError::try_from_code(data.error_code) {
            if matches!(
                error,
                ResponseError::NotLeaderOrFollower
                    | ResponseError::FencedLeaderEpoch
                    | ResponseError::UnknownLeaderEpoch
                    | ResponseError::UnknownTopicOrPartition
                    | ResponseError::LeaderNotAvailable
            ) {
                self.forget(topic, partition, &leader);
            }
            return Err(FallbackError::Partition {
                topic: topic.to_owned(),
                partition,
                offset,
                error,
                code: data.error_code,
            });
        }
        Ok(RawPartition {
            aborted: data
                .aborted_transactions
                .unwrap_or_default()
                .iter()
                .map(|t| AbortedTxn {
                    first_offset: t.first_offset,
                    producer_id: t.producer_id.0,
                })
                .collect(),
            records: data.records.unwrap_or_default(),
            high_watermark: data.high_watermark,
        })
    }

    /// The leader's address, from the cache or from Metadata.
    async fn leader(&self, topic: &str, partition: i32) -> Result<String, FallbackError> {
        let key = (topic.to_owned(), partition);
        if let Some(addr) = lock(&self.leader_of).get(&key) {
            return Ok(addr.clone());
        }
        let wire_err = |source| FallbackError::Wire {
            topic: topic.to_owned(),
            partition,
            source,
        };
        let conn = self.metadata_connection().await.map_err(wire_err)?;
        let found = leader_from_metadata(&conn, topic, partition).await;
        let addr = match found {
            Ok(Some(addr)) => addr,
            Ok(None) => {
                return Err(FallbackError::NoLeader {
                    topic: topic.to_owned(),
                    partition,
                });
            }
            Err(e) => {
                *lock(&self.metadata) = None;
                return Err(wire_err(e));
            }
        };
        lock(&self.leader_of).insert(key, addr.clone());
        Ok(addr)
    }

    async fn metadata_connection(&self) -> wire::Result<Arc<BrokerConnection>> {
        if let Some(conn) = lock(&self.metadata).as_ref().filter(|c| c.poisoned().is_none()) {
            return Ok(Arc::clone(conn));
        }
        let conn = Arc::new(connect_any(&self.connect).await?);
        *lock(&self.metadata) = Some(Arc::clone(&conn));
        Ok(conn)
    }

    async fn leader_connection(&self, addr: &str) -> wire::Result<Arc<BrokerConnection>> {
        if let Some(conn) = lock(&self.leaders).get(addr).filter(|c| c.poisoned().is_none()) {
            return Ok(Arc::clone(conn));
        }
        let conn = Arc::new(BrokerConnection::connect(addr, &self.connect).await?);
        lock(&self.leaders).insert(addr.to_owned(), Arc::clone(&conn));
        Ok(conn)
    }

    /// Drops what a failed fetch may have been wrong about: the partition's leader and the
    /// connection to it.
    fn forget(&self, topic: &str, partition: i32, leader: &str) {
        lock(&self.leader_of).remove(&(topic.to_owned(), partition));
        lock(&self.leaders).remove(leader);
    }
}

/// A poisoned cache lock only means another call panicked mid-update of a map of
/// connections; the map is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn fetch_request(
    topic: &str,
    partition: i32,
    offset: i64,
    max_bytes: i32,
    max_wait: Duration,
) -> FetchRequest {
    let max_bytes = max_bytes.max(1);
    FetchRequest::default()
        .with_max_wait_ms(i32::try_from(max_wait.as_millis()).unwrap_or(i32::MAX))
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_isolation_level(READ_COMMITTED)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(max_bytes),
                ]),
        ])
}

/// The `host:port` of the partition's leader, `None` while it has none.
async fn leader_from_metadata(
    conn: &BrokerConnection,
    topic: &str,
    partition: i32,
) -> wire::Result<Option<String>> {
    let version = conn.negotiate_version(ApiKey::Metadata, None)?;
    let mut req = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(topic.to_owned())))),
    ]));
    if version >= METADATA_NO_AUTO_CREATE {
        req = req.with_allow_auto_topic_creation(false);
    }
    let resp = conn.request_with_version(req, version).await?;
    let leader = resp
        .topics
        .iter()
        .filter(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic) && t.error_code == 0)
        .flat_map(|t| &t.partitions)
        .find(|p| p.partition_index == partition && p.error_code == 0)
        .map(|p| p.leader_id.0);
    Ok(leader.and_then(|id| {
        resp.brokers
            .iter()
            .find(|b| b.node_id.0 == id)
            .map(|b| format!("{}:{}", b.host.as_str(), b.port))
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;
    use kafka_protocol::messages::{ApiKey, FetchRequest};
    use kafka_protocol::protocol::{Decodable, VersionRange};
    use kafka_protocol::records::Compression;

    use super::super::decode::tests::batch;
    use super::*;
    use crate::kafka::wire::testing::{Answer, Behaviour, FakeBroker};

    const T: Duration = Duration::from_secs(5);
    const WAIT: Duration = Duration::from_millis(100);

    async fn broker(behaviour: Behaviour) -> FakeBroker {
        let apis = [
            (ApiKey::Metadata, VersionRange { min: 0, max: 12 }),
            (ApiKey::Fetch, VersionRange { min: 4, max: 17 }),
        ];
        let behaviour = Behaviour {
            topics: vec![("t".to_owned(), 2)],
            advertise_self: true,
            ..behaviour
        };
        FakeBroker::start_with(&apis, behaviour).await
    }

    fn count(broker: &FakeBroker, api: ApiKey) -> usize {
        broker.seen().iter().filter(|(k, _)| *k == api as i16).count()
    }

    #[tokio::test]
    async fn fetches_from_the_leader_by_name_and_read_committed() {
        let broker = broker(Behaviour {
            fetch_records: batch(40..=44, Compression::Zstd),
            high_watermark: 45,
            ..Behaviour::default()
        })
        .await;
        let fetcher = FallbackFetcher::new(KafkaConnect::plaintext(vec![broker.addr()], "t", T));
        let got = fetcher.fetch("t", 1, 42, 5000, WAIT).await.unwrap();
        let offsets: Vec<i64> = got.items.iter().map(FetchedItem::last_offset).collect();
        assert_eq!(offsets, vec![42, 43, 44]);
        assert_eq!((got.next_offset, got.high_watermark), (45, 45));

        let sent = broker
            .requests()
            .into_iter()
            .find(|r| r.api_key == ApiKey::Fetch as i16)
            .unwrap();
        assert_eq!(
            sent.version, FETCH_BY_NAME_MAX,
            "the last version that names topics"
        );
        let req = FetchRequest::decode(&mut sent.body.clone(), sent.version).unwrap();
        assert_eq!(
            (req.isolation_level, req.max_bytes, req.max_wait_ms),
            (1, 5000, 100)
        );
        assert_eq!(req.topics[0].topic.0.as_str(), "t");
        let p = &req.topics[0].partitions[0];
        assert_eq!(
            (p.partition, p.fetch_offset, p.partition_max_bytes),
            (1, 42, 5000)
        );

        // The leader and its connection are kept: the next fetch is one Fetch, nothing else.
        let before = broker.seen().len();
        fetcher.fetch("t", 1, 45, 5000, WAIT).await.unwrap();
        assert_eq!(
            broker.seen()[before..],
            [(ApiKey::Fetch as i16, FETCH_BY_NAME_MAX)]
        );
    }

    #[tokio::test]
    async fn a_leader_change_is_a_retriable_error_that_clears_the_cache() {
        let broker = broker(Behaviour {
            fetch_records: batch(0..=1, Compression::Lz4),
            high_watermark: 2,
            fetch_errors: Arc::new(Mutex::new([6].into())), // NOT_LEADER_OR_FOLLOWER
            ..Behaviour::default()
        })
        .await;
        let fetcher = FallbackFetcher::new(KafkaConnect::plaintext(vec![broker.addr()], "t", T));
        let err = fetcher.fetch("t", 0, 0, 5000, WAIT).await.unwrap_err();
        assert!(
            matches!(
                err,
                FallbackError::Partition {
                    error: ResponseError::NotLeaderOrFollower,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.is_retriable());
        let got = fetcher.fetch("t", 0, 0, 5000, WAIT).await.unwrap();
        assert_eq!(got.items.len(), 2);
        assert_eq!(
            count(&broker, ApiKey::Metadata),
            2,
            "the leader was looked up again"
        );
    }

    #[tokio::test]
    async fn bad_bytes_are_items_not_errors() {
        let mut bad = batch(7..=9, Compression::Gzip).to_vec();
        let at = bad.len() - 2;
        bad[at] ^= 0xff;
        let broker = broker(Behaviour {
            fetch_records: Bytes::from(bad),
            high_watermark: 10,
            ..Behaviour::default()
        })
        .await;
        let fetcher = FallbackFetcher::new(KafkaConnect::plaintext(vec![broker.addr()], "t", T));
        let got = fetcher.fetch("t", 0, 7, 5000, WAIT).await.unwrap();
        assert!(
            matches!(
                got.items[..],
                [FetchedItem::Undecodable {
                    first_offset: 7,
                    last_offset: 9,
                    reason: super::super::UndecodableReason::Crc { .. },
                }]
            ),
            "{:?}",
            got.items
        );
        assert_eq!(got.next_offset, 10);
    }

    #[tokio::test]
    async fn a_cut_first_batch_is_asked_for_again_with_room_then_undecodable() {
        let whole = batch(3..=5, Compression::Snappy);
        let broker = broker(Behaviour {
            fetch_records: whole.slice(..whole.len() - 10),
            high_watermark: 6,
            ..Behaviour::default()
        })
        .await;
        let fetcher = FallbackFetcher::new(KafkaConnect::plaintext(vec![broker.addr()], "t", T));
        let got = fetcher.fetch("t", 0, 3, 50, WAIT).await.unwrap();
        assert!(
            matches!(
                got.items[..],
                [FetchedItem::Undecodable {
                    first_offset: 3,
                    last_offset: 5,
                    reason: super::super::UndecodableReason::Incomplete { .. },
                }]
            ),
            "{:?}",
            got.items
        );
        let fetches: Vec<i32> = broker
            .requests()
            .into_iter()
            .filter(|r| r.api_key == ApiKey::Fetch as i16)
            .map(|r| {
                FetchRequest::decode(&mut r.body.clone(), r.version)
                    .unwrap()
                    .max_bytes
            })
            .collect();
        assert_eq!(fetches, vec![50, i32::try_from(whole.len()).unwrap()]);
    }

    #[tokio::test]
    async fn a_silent_broker_fails_within_the_timeout() {
        let broker = broker(Behaviour {
            answer: Answer::Never,
            ..Behaviour::default()
        })
        .await;
        let bound = Duration::from_millis(300);
        let fetcher = FallbackFetcher::new(KafkaConnect::plaintext(vec![broker.addr()], "t", bound));
        let started = Instant::now();
        let err = fetcher.fetch("t", 0, 0, 5000, WAIT).await.unwrap_err();
        assert!(
            matches!(
                err,
                FallbackError::Wire {
                    source: wire::Error::Timeout { .. },
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(started.elapsed() < bound * 3, "{:?}", started.elapsed());
        // The poisoned connection is not reused: the next call connects again.
        let before = count(&broker, ApiKey::ApiVersions);
        assert!(fetcher.fetch("t", 0, 0, 5000, WAIT).await.is_err());
        assert_eq!(count(&broker, ApiKey::ApiVersions), before + 1);
    }

    #[tokio::test]
    async fn an_unknown_partition_has_no_leader() {
        let broker = broker(Behaviour::default()).await;
        let fetcher = FallbackFetcher::new(KafkaConnect::plaintext(vec![broker.addr()], "t", T));
        let err = fetcher.fetch("t", 9, 0, 5000, WAIT).await.unwrap_err();
        assert!(
            matches!(err, FallbackError::NoLeader { partition: 9, .. }),
            "{err:?}"
        );
        let err = fetcher.fetch("nope", 0, 0, 5000, WAIT).await.unwrap_err();
        assert!(matches!(err, FallbackError::NoLeader { .. }), "{err:?}");
    }
}
