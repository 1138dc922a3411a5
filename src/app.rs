//! Wiring: builds every component from [`Settings`], runs them, and stops them
//! in order.
//!
//! Only this module knows every other one. It takes an already bound listener
//! so that tests can start the whole service in-process on `127.0.0.1:0`.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use slog::{Logger, info, warn};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::acl::AclTable;
use crate::api::{self, ApiState, ServerOptions};
use crate::config::Settings;
use crate::kafka::client::KafkaClient;
use crate::kafka::topics::{Readiness, TopicWatcher, WantedTopic};
use crate::producer::partitioner::PartitionTable;
use crate::producer::{Producer, ProducerConfig};
use crate::stats::Stats;

/// Errors while starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The HTTP listener could not be used.
    #[error("http listener: {0}")]
    Listen(#[from] std::io::Error),
}

/// A running bigpipe.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    server: ServerHandle,
    server_task: JoinHandle<std::io::Result<()>>,
    producer: Producer,
    stats: Arc<Stats>,
    readiness: Arc<Readiness>,
    stop: CancellationToken,
    tracker: TaskTracker,
    log: Logger,
}

/// Starts every component on the current tokio runtime.
///
/// # Errors
/// When the listener cannot be served.
pub fn start(
    settings: &Settings,
    listener: TcpListener,
    log: Logger,
    stats: Arc<Stats>,
) -> Result<Running, StartError> {
    let addr = listener.local_addr()?;
    let client = Arc::new(KafkaClient::new(
        settings.kafka.bootstrap_servers.clone(),
        settings.kafka.client_id.clone(),
        settings.kafka.request_timeout,
    ));
    // Configured counts are a fallback until metadata answers.
    let table = Arc::new(PartitionTable::new(
        settings
            .kafka
            .topics
            .iter()
            .map(|t| (t.name.as_str(), t.partitions)),
    ));
    let readiness = Arc::new(Readiness::default());
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();

    let watcher = TopicWatcher {
        topics: settings
            .kafka
            .topics
            .iter()
            .map(|t| WantedTopic {
                name: t.name.clone(),
                partitions: t.partitions,
                replication_factor: t.replication_factor,
            })
            .collect(),
        client: Arc::clone(&client),
        table: Arc::clone(&table),
        readiness: Arc::clone(&readiness),
        refresh: settings.kafka.metadata_refresh,
        log: log.new(slog::o!("component" => "topics")),
    };
    tracker.spawn(watcher.run(stop.clone()));

    let p = &settings.producer;
    let producer = Producer::start(
        &ProducerConfig {
            queue_calls: p.queue_calls,
            queue_bytes: p.queue_bytes,
            linger: p.linger,
            batch_bytes: p.batch_bytes,
            message_timeout: p.message_timeout,
        },
        Arc::clone(&client),
        table,
        Arc::clone(&stats),
        log.new(slog::o!("component" => "producer")),
    );

    let state = ApiState {
        producer: producer.handle(),
        acl: AclTable::new(&p.acl),
        stats: Arc::clone(&stats),
        readiness: Arc::clone(&readiness),
        default_ack: p.default_ack,
        ack_timeout: p.ack_timeout,
        body_limit: settings.http.body_limit,
        log: log.new(slog::o!("component" => "api")),
    };
    let options = ServerOptions {
        workers: settings.http.workers,
        read_timeout: settings.http.read_timeout,
        write_timeout: settings.http.write_timeout,
        shutdown_timeout: Duration::from_secs(10),
    };
    let server = api::serve(state, listener, &options)?;
    let handle = server.handle();
    let server_task = tokio::spawn(server);
    info!(log, "bigpipe started"; "addr" => %addr, "topics" => settings.kafka.topics.len());
    Ok(Running {
        addr,
        server: handle,
        server_task,
        producer,
        stats,
        readiness,
        stop,
        tracker,
        log,
    })
}

impl Running {
    /// The address the HTTP server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Kafka readiness.
    pub fn readiness(&self) -> &Arc<Readiness> {
        &self.readiness
    }

    /// Stops in order: HTTP (requests in progress finish), then the ingest
    /// queue is flushed to Kafka within `grace`, then background tasks end.
    pub async fn shutdown(self, grace: Duration) {
        info!(self.log, "shutting down"; "grace_ms" => grace.as_millis());
        self.server.stop(true).await;
        if let Err(e) = self.server_task.await {
            warn!(self.log, "http server task failed"; "error" => %e);
        }
        let unwritten = self.producer.shutdown(grace).await;
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        info!(self.log, "bigpipe stopped"; "unwritten_calls" => unwritten);
    }
}
