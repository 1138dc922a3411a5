//! bigpipe: a durable, rate-limited asynchronous HTTP call pipe on Kafka.
//!
//! # Layout
//!
//! ```text
//!  caller ──POST /rpc/call──► api ──submit()──► producer ──rskafka──► Kafka topic
//!                              │ acl, envelope     │ budget, partitioner, writers      │
//!                              └── stats ◄─────────┘                                   ▼
//!  target ◄──POST url── delivery (awc threads) ◄── consumer (fetch, offsets, rate) ◄── group
//!                                                        └─► dead-letter topic    (our member)
//! ```
//!
//! - [`config`]: figment loading (TOML, or the Go version's flat-key JSON), validation. A leaf:
//!   it names no other module; the parsed values it produces live in [`config::values`].
//! - [`logging`]: slog + slog-async, Go-style lines, hourly files, drop-and-count.
//! - [`api`]: actix-web routes and the Go response envelope.
//! - [`producer`]: bounded ingest queue, partition choice, batching into Kafka.
//! - [`message`]: the Go-compatible Kafka record JSON.
//! - [`group`]: our Kafka consumer-group member (classic protocol) and assignors.
//! - [`consumer`]: per consumer entry, the partitions' fetch loops, offset
//!   tracking, the group rate share, dead letters and stalled-partition reports.
//! - [`delivery`]: one HTTP attempt on awc threads, and the retry policy.
//! - [`policy`]: the outbound destination policy (addresses, per-ACL targets).
//! - [`kafka`]: the shared rskafka client and its cached partition clients, what its errors
//!   mean, partition counts, topic upkeep, our own wire client. It names none of the modules
//!   above it (the `layers` test checks both rules).
//! - [`crypto`]: the TLS crypto provider (graviola, no C) for https delivery and Kafka TLS.
//! - [`control`]: the compacted control topic every process reads (pause, retransmit,
//!   replay markers) and the reader that keeps this process's view of it.
//! - [`idempotency`]: `Idempotency-Key` claims, kept in their own topic every process reads.
//! - [`stats`]: counters and the `/stats` view.
//! - [`metrics`]: the same counters (and per-ACL, per-host, histogram ones) as Prometheus
//!   `/metrics`.
//! - [`app`]: wiring, shutdown order and hot reload; [`shutdown`]: process signals.
//! - [`cli`]: `bigpipe admin ...`, the admin API from the command line.

pub mod alloc;
pub mod api;
pub mod app;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod consumer;
pub mod control;
pub mod crypto;
pub mod delivery;
pub mod group;
pub mod idempotency;
pub mod kafka;
#[cfg(test)]
mod layers;
pub mod logging;
pub mod message;
pub mod metrics;
pub mod policy;
pub mod producer;
#[cfg(test)]
mod proptests;
pub mod rawjson;
pub mod shutdown;
pub mod stats;
