//! Kafka plumbing shared by the producer and the consumer groups.
//!
//! - [`connect`]: [`connect::KafkaConnect`], how to reach Kafka (bootstrap, client id,
//!   timeout, TLS from [`tls`], SASL), used by both clients below.
//! - [`client`]: the shared rskafka client, connected lazily so bigpipe can
//!   start while Kafka is down, with a timeout around every call (rskafka 0.6
//!   has none of its own).
//! - [`wire`]: our own protocol connection for the APIs rskafka lacks
//!   (CreateTopics with configs, and the consumer-group APIs).
//! - [`fallback`]: reads a partition rskafka cannot decode (lz4/zstd batches, corrupt
//!   ones) with the wire client and pure-Rust codecs.
//! - [`partitions`]: the one cached partition-client lookup (per topic, partition and
//!   purpose), used by every produce, fetch and offset request.
//! - [`fault`]: what an rskafka error means for the next attempt (final, new position,
//!   retry) and for the cached partition client.
//! - [`metadata`]: the partition-count table, and which partition-count reader serves whom.
//! - [`follow`]: reads one partition of a state topic (control, idempotency) whole, forever.
//! - [`records`]: single-record writes for the consumer side (retry tiers).
//! - [`topics`]: creates the configured topics and keeps partition counts,
//!   `max.message.bytes` ([`topic_limits`]) and readiness up to date.
//! - [`record_size`]: what a record costs once encoded, and the limits it must fit
//!   (with the [`record_size::DEAD_LETTER_RESERVE_BYTES`] shared with dead letters).

pub mod client;
pub mod connect;
pub mod fallback;
pub mod fault;
pub mod follow;
pub mod metadata;
pub mod partitions;
pub mod record_size;
pub mod records;
pub mod tls;
pub mod topic_limits;
pub mod topics;
pub mod wire;
