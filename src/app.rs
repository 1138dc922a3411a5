//! Wiring: builds every component from [`Settings`], runs them, reloads them,
//! and stops them in order.
//!
//! Only this module knows every other one. It takes already bound listeners
//! so that tests can start the whole service in-process on `127.0.0.1:0`.

mod consumers;
mod reload;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use arc_swap::ArcSwap;
use slog::{Logger, info, warn};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::acl::AclTable;
use crate::api::admin::context::{EntryRef, GroupAdmin};
use crate::api::admin::{AdminState, AdminToken};
use crate::api::server::{ListenerOptions, worker_count};
use crate::api::{self, ApiConfig, ApiState};
use crate::config::{DeliverySettings, Settings};
use crate::consumer::EntryError;
use crate::control::Control;
use crate::control::reader::ControlReader;
use crate::delivery::forward::{HeaderPolicy, IngestHeaders};
use crate::delivery::{DeliveryPool, PoolConfig};
use crate::idempotency::Idempotency;
use crate::kafka::client::KafkaClient;
use crate::kafka::connect::KafkaConnect;
use crate::kafka::metadata::PartitionTable;
use crate::kafka::topic_limits::TopicLimits;
use crate::kafka::topics::{Readiness, Retention, TopicWatcher, WantedTopic};
use crate::policy::AddressPolicy;
use crate::producer::{Producer, ProducerConfig};
use crate::stats::Stats;
use consumers::ConsumerSet;
pub use consumers::EntryChanges;
pub use reload::ReloadReport;

/// Errors while starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The HTTP listener could not be used.
    #[error("http listener: {0}")]
    Listen(#[from] std::io::Error),
    /// The delivery threads could not be started.
    #[error("delivery threads: {0}")]
    Delivery(std::io::Error),
    /// A consumer entry could not be built.
    #[error(transparent)]
    Consumer(#[from] EntryError),
    /// TLS for https targets could not be set up.
    #[error("delivery.tls: {0}")]
    Tls(#[from] crate::delivery::tls::TlsError),
    /// TLS towards Kafka could not be set up (the message names the `kafka.ssl.*` key).
    #[error(transparent)]
    KafkaTls(#[from] crate::kafka::tls::TlsSetupError),
}

/// The two bound listeners bigpipe serves: callers on `public` (`http.server.*`), operators
/// on `admin` (`http.admin.*`).
#[derive(Debug)]
pub struct Listeners {
    /// `/rpc/call`, the mock target, `/healthz`, `/readyz` (status only).
    pub public: TcpListener,
    /// `/stats`, `/readyz` with its detail, `/healthz`.
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds both listeners from the config.
    ///
    /// # Errors
    /// When either address cannot be bound; the message names the key.
    pub fn bind(settings: &Settings) -> std::io::Result<Self> {
        let bind = |key: &str, host: &str, port: u16| {
            let listener = TcpListener::bind((host, port))
                .map_err(|e| std::io::Error::new(e.kind(), format!("{key} {host}:{port}: {e}")))?;
            listener.set_nonblocking(true)?;
            Ok::<_, std::io::Error>(listener)
        };
        let h = &settings.http;
        Ok(Self {
            public: bind("http.server", &h.host, h.port)?,
            admin: bind("http.admin", &h.admin.host, h.admin.port)?,
        })
    }
}

/// A running bigpipe.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    admin_addr: SocketAddr,
    server: ServerHandle,
    server_task: JoinHandle<std::io::Result<()>>,
    admin: ServerHandle,
    admin_task: JoinHandle<std::io::Result<()>>,
    producer: Producer,
    pool: Arc<DeliveryPool>,
    consumers: ConsumerSet,
    api_config: Arc<ArcSwap<ApiConfig>>,
    /// The address policy the delivery threads apply (`delivery.*` needs a restart), shared
    /// with the front end so ingest and connect-time checks always agree, also after a reload.
    destinations: Arc<AddressPolicy>,
    /// The admin API's view of the consumer entries, replaced on reload.
    groups: Arc<GroupAdmin>,
    topics: Arc<ArcSwap<Vec<WantedTopic>>>,
    table: Arc<PartitionTable>,
    /// The settings bigpipe started with: keys that need a restart keep these values.
    boot: Settings,
    stats: Arc<Stats>,
    readiness: Arc<Readiness>,
    stop: CancellationToken,
    tracker: TaskTracker,
    log: Logger,
}

/// Starts every component on the current tokio runtime.
///
/// # Errors
/// When a listener cannot be served, the delivery threads cannot start, or
/// a consumer entry cannot be built.
pub fn start(
    settings: &Settings,
    listeners: Listeners,
    log: Logger,
    stats: Arc<Stats>,
) -> Result<Running, StartError> {
    let addr = listeners.public.local_addr()?;
    let admin_addr = listeners.admin.local_addr()?;
    let client = Arc::new(KafkaClient::new(KafkaConnect::from_settings(&settings.kafka)?));
    // Configured counts are a fallback until metadata answers.
    let table = Arc::new(PartitionTable::new(
        settings
            .kafka
            .topics
            .iter()
            .map(|t| (t.name.as_str(), t.partitions)),
    ));
    let limits = Arc::new(TopicLimits::new());
    let readiness = Arc::new(Readiness::default());
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();

    let topics = Arc::new(ArcSwap::from_pointee(wanted_topics(settings)));
    let watcher = TopicWatcher {
        topics: Arc::clone(&topics),
        client: Arc::clone(&client),
        table: Arc::clone(&table),
        limits: Arc::clone(&limits),
        readiness: Arc::clone(&readiness),
        refresh: settings.kafka.metadata_refresh,
        log: log.new(slog::o!("component" => "topics")),
    };
    tracker.spawn(watcher.run(stop.clone()));
    let control = start_control(settings, &client, &tracker, &stop, &log);
    let idempotency = Idempotency::start(settings, &client, &table, &stats, &tracker, &stop, &log);

    let producer = Producer::start(
        &producer_config(settings),
        Arc::clone(&client),
        Arc::clone(&table),
        limits,
        Arc::clone(&stats),
        log.new(slog::o!("component" => "producer")),
    );

    let d = &settings.delivery;
    let destinations = Arc::new(d.destinations.clone());
    let tls = crate::delivery::tls::client_config(d.tls_ca.as_ref().map(|ca| ca.pem.as_slice()))?;
    if tls.is_none() {
        warn!(
            log,
            "https targets are not supported on this CPU (the TLS crypto provider needs \
            AES-NI, PCLMULQDQ, AVX2, BMI1/2 and ADX); https calls will be dead-lettered"
        );
    }
    let pool = Arc::new(
        DeliveryPool::start(
            PoolConfig {
                threads: d.threads,
                connect_timeout: d.connect_timeout,
                keep_alive: d.keep_alive,
                max_response_body: d.max_response_body,
                tls,
                destinations: Arc::clone(&destinations),
            },
            log.new(slog::o!("component" => "delivery")),
        )
        .map_err(StartError::Delivery)?,
    );
    let mut consumers = ConsumerSet::new(
        Arc::clone(&client),
        Arc::clone(&table),
        Arc::clone(&pool),
        HeaderPolicy::global(&settings.delivery),
        Arc::clone(&stats),
        log.new(slog::o!("component" => "consumer")),
    );
    consumers.control = control.clone();
    consumers.instance_id = settings.kafka.group_instance_id.clone();
    for entry in &settings.consumers {
        consumers.start(entry.clone())?;
    }

    let api_config = Arc::new(ArcSwap::from_pointee(api_config(
        settings,
        &settings.delivery,
        &destinations,
        None,
    )));
    let state = ApiState {
        producer: producer.handle(),
        config: Arc::clone(&api_config),
        stats: Arc::clone(&stats),
        readiness: Arc::clone(&readiness),
        control: control.clone(),
        idempotency,
        read_timeout: settings.http.read_timeout,
        guard: api::guard::CallerGuard::default(),
        log: log.new(slog::o!("component" => "api")),
    };
    let h = &settings.http;
    let options = ListenerOptions {
        name: "bigpipe-public",
        workers: worker_count(h.workers),
        read_timeout: h.read_timeout,
        write_timeout: h.write_timeout,
        keep_alive: h.keep_alive,
        max_connections: h.max_connections,
        max_connection_rate: h.max_connection_rate,
        shutdown_timeout: settings.shutdown.grace,
    };
    let server = api::serve(state, listeners.public, &options)?;
    let handle = server.handle();
    let server_task = tokio::spawn(server);
    // One worker and a small cap: the admin listener serves a few operators and scrapers,
    // and is apart from the public one so a flood there cannot lock operators out.
    let admin_options = ListenerOptions {
        name: "bigpipe-admin",
        workers: 1,
        max_connections: 64,
        max_connection_rate: 0,
        ..options
    };
    let groups = Arc::new(GroupAdmin {
        client: Arc::clone(&client),
        table: Arc::clone(&table),
        entries: ArcSwap::from_pointee(admin_entries(settings)),
        stats: Arc::clone(&stats),
        control: control.clone(),
        log: log.new(slog::o!("component" => "admin")),
    });
    let admin_state = AdminState {
        stats: Arc::clone(&stats),
        readiness: Arc::clone(&readiness),
        token: h.admin.token.as_deref().map(AdminToken::new),
        metrics: Arc::new(crate::metrics::Exporter::new(Arc::clone(&stats))),
        control: control.clone(),
        groups: Some(Arc::clone(&groups)),
    };
    let admin_server = api::serve_admin(admin_state, listeners.admin, &admin_options)?;
    let admin = admin_server.handle();
    let admin_task = tokio::spawn(admin_server);
    info!(log, "bigpipe started"; "addr" => %addr, "admin_addr" => %admin_addr, "topics" => settings.kafka.topics.len(),
        "consumers" => settings.consumers.len());
    Ok(Running {
        addr,
        admin_addr,
        server: handle,
        server_task,
        admin,
        admin_task,
        producer,
        pool,
        consumers,
        api_config,
        destinations,
        groups,
        topics,
        table,
        boot: settings.clone(),
        stats,
        readiness,
        stop,
        tracker,
        log,
    })
}

/// The configured topics plus every consumer entry's dead-letter and retry tier
/// topics, created like its source topic (same partitions, so a call keeps its
/// partition number, and with it its key's neighbours, through the tiers).
fn wanted_topics(settings: &Settings) -> Vec<WantedTopic> {
    let mut topics: Vec<WantedTopic> = settings
        .kafka
        .topics
        .iter()
        .map(|t| WantedTopic {
            name: t.name.clone(),
            partitions: t.partitions,
            replication_factor: t.replication_factor,
            retention: Retention::Default,
        })
        .collect();
    for c in &settings.consumers {
        let Some(source) = settings.kafka.topics.iter().find(|t| t.name == c.topic) else {
            continue;
        };
        let tiers = c.retry_tiers.iter().map(|&d| c.tier_topic(d));
        for name in c.dead_letter_topic.iter().cloned().chain(tiers) {
            if !topics.iter().any(|t| t.name == name) {
                topics.push(WantedTopic {
                    name,
                    partitions: source.partitions,
                    replication_factor: source.replication_factor,
                    retention: Retention::Default,
                });
            }
        }
    }
    // One partition: the reader reads it in order, and every key's history is one sequence.
    if let Some(name) = &settings.control.topic
        && !topics.iter().any(|t| &t.name == name)
    {
        topics.push(WantedTopic {
            name: name.clone(),
            partitions: 1,
            replication_factor: -1,
            retention: Retention::Compact,
        });
    }
    if let Some(name) = &settings.http.idempotency.topic
        && !topics.iter().any(|t| &t.name == name)
    {
        topics.push(WantedTopic {
            name: name.clone(),
            partitions: settings.http.idempotency.partitions,
            replication_factor: -1,
            retention: Retention::Expire(crate::idempotency::retention(settings)),
        });
    }
    topics
}

/// The control topic's handle and its reader task (cancelled with `stop`, after the
/// consumers have stopped), or `None` when `admin.control.topic` is `""`.
fn start_control(
    settings: &Settings,
    client: &Arc<KafkaClient>,
    tracker: &TaskTracker,
    stop: &CancellationToken,
    log: &Logger,
) -> Option<Arc<Control>> {
    let topic = settings.control.topic.clone()?;
    let control = Control::new(topic, Arc::clone(client), settings.kafka.request_timeout);
    let reader = ControlReader {
        control: Arc::clone(&control),
        client: Arc::clone(client),
        log: log.new(slog::o!("component" => "control")),
    };
    tracker.spawn(reader.run_on_shared_connection(stop.clone()));
    Some(control)
}

/// The consumer entries as the admin API names them.
fn admin_entries(settings: &Settings) -> Vec<EntryRef> {
    settings
        .consumers
        .iter()
        .map(|c| EntryRef {
            group: c.group_id.clone(),
            topic: c.topic.clone(),
            dead_letter_topic: c.dead_letter_topic.clone(),
        })
        .collect()
}

/// The ingest pipeline's settings.
fn producer_config(settings: &Settings) -> ProducerConfig {
    let p = &settings.producer;
    ProducerConfig {
        queue_calls: p.queue_calls,
        queue_bytes: p.queue_bytes,
        queue_reserved: p.queue_reserved,
        acls: p.acl.iter().map(|a| a.name.clone()).collect(),
        linger: p.linger,
        batch_bytes: p.batch_bytes,
        message_timeout: p.message_timeout,
    }
}

/// The handlers' settings. `delivery` is the delivery config in force (the start-up
/// one: `delivery.*` needs a restart), so ingest keeps what delivery will forward;
/// `destinations` is the address policy the delivery threads share; `previous` (on reload)
/// lends its unchanged quotas.
fn api_config(
    settings: &Settings,
    delivery: &DeliverySettings,
    destinations: &Arc<AddressPolicy>,
    previous: Option<&ApiConfig>,
) -> ApiConfig {
    let entries = settings
        .consumers
        .iter()
        .map(|c| (c.topic.as_str(), c.forward_headers.as_ref()));
    ApiConfig {
        headers: IngestHeaders::new(HeaderPolicy::global(delivery), entries),
        destinations: Arc::clone(destinations),
        acl: AclTable::carrying_over(&settings.producer.acl, previous.map(|p| &p.acl)),
        default_ack: settings.producer.default_ack,
        ack_timeout: settings.producer.ack_timeout,
        body_limit: settings.http.body_limit,
        schedule_max: settings.http.schedule_max,
        batch_max_calls: settings.http.batch_max_calls,
    }
}

impl Running {
    /// The address the public HTTP listener is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the admin HTTP listener is bound to.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Kafka readiness.
    pub fn readiness(&self) -> &Arc<Readiness> {
        &self.readiness
    }

    /// Makes the coming [`Running::shutdown`] a scale-down: the static members
    /// (`kafka.group.instance.id`) leave their groups, so their partitions move at once
    /// instead of waiting out the session timeout for a restart that will not come.
    pub fn scale_down(&self) {
        self.consumers.scale_down();
    }

    /// Stops in order, each step bounded by `grace`: HTTP stops taking calls
    /// (requests in progress finish); the ingest queue is flushed to Kafka;
    /// consumer entries stop fetching, let in-flight deliveries finish (or
    /// abandon them after their drain timeout, uncommitted), commit and leave
    /// their groups; then the delivery threads and background tasks end.
    pub async fn shutdown(self, grace: Duration) {
        let started = tokio::time::Instant::now();
        info!(self.log, "shutting down"; "grace_ms" => grace.as_millis());
        self.server.stop(true).await;
        if let Err(e) = self.server_task.await {
            warn!(self.log, "http server task failed"; "error" => %e);
        }

        let left = |started: tokio::time::Instant| grace.saturating_sub(started.elapsed());
        let unwritten = self.producer.shutdown(left(started)).await;
        self.consumers.stop_all(left(started)).await;
        match Arc::try_unwrap(self.pool) {
            Ok(pool) => pool.shutdown(left(started).max(Duration::from_millis(100))).await,
            Err(_) => warn!(self.log, "delivery threads still referenced at shutdown"),
        }
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        // The admin listener stops last, so operators can watch the drain in /stats.
        self.admin.stop(true).await;
        if let Err(e) = self.admin_task.await {
            warn!(self.log, "admin http server task failed"; "error" => %e);
        }
        info!(self.log, "bigpipe stopped"; "unwritten_calls" => unwritten,
            "took_ms" => started.elapsed().as_millis());
    }
}
