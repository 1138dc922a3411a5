//! Integration tests against a real Kafka broker and real HTTP servers.
//!
//! Run with `make it` (or `make test`), which starts a local Kafka first. The
//! broker address comes from `IT_KAFKA_BOOTSTRAP` (default `127.0.0.1:9092`).
//! When no broker answers, every test fails with a message saying so; nothing
//! is skipped. The tests of the container image (`container`) need a Docker engine and
//! are ignored (listed as such, never passed) unless run with `--include-ignored`, as
//! `make it-docker` does.

mod helpers;

mod admin_control;
mod admin_dlq;
mod batch;
mod breaker;
mod callbacks;
mod callers;
mod chaos;
mod cli;
mod codecs;
mod container;
mod dashboard;
mod delivery;
mod dlq;
mod front;
mod fuzz;
mod group;
mod headers;
mod idempotency;
mod ingest;
mod kafka_tls;
mod limits;
mod metrics;
mod never_stall;
mod openapi;
mod options;
mod ordering;
mod outage;
mod reload;
mod schedule;
mod security;
mod signing;
mod ssrf;
mod tls;
mod wire;
