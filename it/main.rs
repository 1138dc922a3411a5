//! Integration tests against a real Kafka broker and real HTTP servers.
//!
//! Run with `make it` (or `make test`), which starts a local Kafka first. The
//! broker address comes from `BIGPIPE_IT_KAFKA` (default `127.0.0.1:9092`).
//! When no broker answers, every test fails with a message saying so; nothing
//! is skipped.

mod helpers;

mod cli;
mod ingest;
mod outage;
