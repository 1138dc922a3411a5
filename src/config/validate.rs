//! Validation: the merged value tree → [`Settings`], collecting every problem on the way.
//!
//! Each key is read leniently (see `reader`), defaulted when absent, and checked for type and
//! range; cross-references are checked in `entries`. Only when nothing at all is wrong is a
//! `Settings` built, so a reload can validate completely before anything is swapped.

use std::path::PathBuf;
use std::time::Duration;

use figment::value::{Dict, Value};

use super::error::ConfigError;
use super::reader::{Checker, lookup};
use super::rules::{
    DEFAULT_BATCH_MAX_CALLS, DEFAULT_IDEMPOTENCY_MAX_KEYS, DEFAULT_IDEMPOTENCY_WINDOW_MS,
    DEFAULT_SCHEDULE_MAX_MS, MAX_BATCH_CALLS, MAX_CHUNK_BYTES, MAX_CONNECTION_RATE, MAX_CONNECTIONS,
    MAX_DELIVERY_THREADS, MAX_IDEMPOTENCY_KEYS, MAX_IDEMPOTENCY_WINDOW_MS, MAX_LOG_QUEUE, MAX_QUEUE_BYTES,
    MAX_QUEUE_CALLS, MAX_SCHEDULE_MS, MAX_WORKERS, bootstrap_server, ms,
};
use super::settings::{
    AckMode, AdminSettings, CaBundle, ControlSettings, DeliverySettings, HttpSettings, IdempotencySettings,
    KafkaSettings, LogSettings, MetricsSettings, ProducerSettings, Settings, ShutdownSettings,
};
use super::source::Sources;
use super::values::batch as record_size;
use super::values::forward::ForwardRules;
use super::values::net::{AddressPolicy, Rule};
use super::{consumer, entries, security};

/// Every key bigpipe reads, in dotted form. Keys of array entries are checked by `entries` and
/// `consumer`.
/// `kafka.producer.ack` is both a key (the `"queue"`/`"kafka"` shorthand) and the parent of
/// `ack.mode`/`ack.timeout.ms`.
pub(crate) const KEYS: &[&str] = &[
    "demo",
    "log.level",
    "log.directory",
    "log.queue.size",
    "kafka.bootstrap.servers",
    "kafka.client.id",
    "kafka.request.timeout.ms",
    "kafka.metadata.refresh.ms",
    "kafka.group.instance.id",
    "kafka.topics",
    "kafka.security.protocol",
    "kafka.sasl.mechanism",
    "kafka.sasl.username",
    "kafka.sasl.password",
    "kafka.sasl.password.file",
    "kafka.ssl.ca.location",
    "kafka.ssl.certificate.location",
    "kafka.ssl.key.location",
    "kafka.ssl.endpoint.identification.hostname",
    "kafka.producer.acl",
    "kafka.producer.retries",
    "kafka.producer.channel.size",
    "kafka.producer.linger.ms",
    "kafka.producer.batch.bytes",
    "kafka.producer.queue.bytes",
    "kafka.producer.queue.reserved",
    "kafka.producer.message.timeout.ms",
    "kafka.producer.ack",
    "kafka.producer.ack.mode",
    "kafka.producer.ack.timeout.ms",
    "kafka.consumer.list",
    "http.server.host",
    "http.server.port",
    "http.server.handler.channel.size",
    "http.server.read.timeout",
    "http.server.write.timeout",
    "http.server.body.limit",
    "http.server.workers",
    "http.server.keepalive.timeout",
    "http.server.max.connections",
    "http.server.max.connection.rate",
    "http.server.schedule.max.ms",
    "http.server.batch.max.calls",
    "http.server.idempotency.topic",
    "http.server.idempotency.partitions",
    "http.server.idempotency.window.ms",
    "http.server.idempotency.max.keys",
    "http.admin.host",
    "http.admin.port",
    "http.admin.token",
    "delivery.threads",
    "delivery.connect.timeout.ms",
    "delivery.keepalive.ms",
    "delivery.response.max.bytes",
    "delivery.headers.drop",
    "delivery.headers.forward",
    "delivery.tls.ca.file",
    "delivery.allow",
    "delivery.deny",
    "shutdown.grace.ms",
    "metrics.max_hosts",
    "admin.control.topic",
];

/// Validates the merged tree and builds `Settings`, or returns every problem found.
pub(crate) fn validate(sources: &Sources) -> Result<Settings, ConfigError> {
    let mut c = Checker::new(sources);
    let root = &sources.root;
    check_structure(&mut c, root, "");
    if let [first, rest @ ..] = sources.ignored_env.as_slice() {
        let (names, what) = if rest.is_empty() {
            (first.clone(), "is not a bigpipe setting")
        } else {
            (sources.ignored_env.join(", "), "are not bigpipe settings")
        };
        c.warn(
            "environment",
            None,
            format!(
                "{names} {what}, ignored (BIGPIPE_<KEY> sets only the keys of \
                 conf/bigpipe.toml, such as BIGPIPE_HTTP_SERVER_PORT)"
            ),
        );
    }

    let demo = c.setting(root, "demo", false, demo_flag);
    let log = log(&mut c, root);
    let (kafka, names) = kafka(&mut c, root);
    let producer = producer(&mut c, root, &names, demo);
    let consumers = consumer::consumers(&mut c, root, &names, kafka.group_instance_id.is_some());
    let mut http = http(&mut c, root);
    http.body_limit = body_limit_that_fits(&mut c, root, http.body_limit, producer.batch_bytes);
    let delivery = delivery(&mut c, root);
    let control = control(&mut c, root, &kafka);
    http.idempotency = idempotency(&mut c, root, &kafka, &control);
    let shutdown = ShutdownSettings {
        grace: c.setting(root, "shutdown.grace.ms", ms(30_000), |c, key, v| {
            c.millis(key, v, 1)
        }),
    };
    let metrics = MetricsSettings {
        // At least 1, so some host gets a label; 10 000 at most: past that the series
        // count is a Prometheus problem whatever bigpipe does.
        max_hosts: c.setting(root, "metrics.max_hosts", 100, |c, key, v| {
            c.int_in::<usize>(key, v, 1, 10_000)
        }),
    };

    if !c.problems.is_empty() {
        return Err(ConfigError { problems: c.problems });
    }
    Ok(Settings {
        log,
        kafka,
        producer,
        consumers,
        http,
        delivery,
        shutdown,
        metrics,
        control,
        demo,
        warnings: c.warnings,
    })
}

/// `demo`: a boolean; from the environment `BIGPIPE_DEMO=1` (a number to figment) counts too.
fn demo_flag(c: &mut Checker<'_>, key: &str, value: &Value) -> Option<bool> {
    match value {
        Value::Bool(_, b) => Some(*b),
        Value::Num(_, n) if c.is_from_env(value) && matches!(n.to_u128(), Some(0 | 1)) => {
            Some(n.to_u128() == Some(1))
        }
        _ => {
            c.wrong_type(key, value, "true or false");
            None
        }
    }
}

/// Walks the tree once: unknown keys become warnings (Go ignored them, but a typo should be
/// visible), and a scalar where a table of known keys belongs (`"kafka": 5`) becomes one problem
/// instead of one "missing" per key below it.
fn check_structure(c: &mut Checker<'_>, dict: &Dict, prefix: &str) {
    for (key, value) in dict {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let is_key = KEYS.contains(&path.as_str());
        let is_parent = KEYS.iter().any(|k| {
            k.strip_prefix(path.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
        });
        match value {
            Value::Dict(_, inner) if is_parent => check_structure(c, inner, &path),
            _ if is_key => {}
            _ if is_parent => c.wrong_type(&path, value, "a table of sub-keys"),
            _ => c.warn(&path, Some(value), format!("unknown key '{path}' is ignored")),
        }
    }
}

fn log(c: &mut Checker<'_>, root: &Dict) -> LogSettings {
    let level = c.setting(root, "log.level", slog::Level::Info, log_level);
    let directory = c.setting(root, "log.directory", None, |c, key, value| {
        let dir = c.string(key, value)?;
        Some((!dir.is_empty()).then(|| PathBuf::from(dir)))
    });
    let queue_size = c.setting(root, "log.queue.size", 8192, |c, key, value| {
        c.int_in::<usize>(key, value, 1, MAX_LOG_QUEUE)
    });
    LogSettings {
        level,
        directory,
        queue_size,
    }
}

/// `log.level`: Go's numbers (1 FATAL .. 5 DEBUG) or a level name.
fn log_level(c: &mut Checker<'_>, key: &str, value: &Value) -> Option<slog::Level> {
    use slog::Level;
    match value {
        Value::Num(..) => c.int_in::<u8>(key, value, 1, 5).map(|n| match n {
            1 => Level::Critical, // Go's FATAL, which never exited either
            2 => Level::Error,
            3 => Level::Warning,
            4 => Level::Info,
            _ => Level::Debug,
        }),
        Value::String(..) | Value::Char(..) => {
            let name = c.string(key, value)?;
            let level = match name.to_ascii_lowercase().as_str() {
                "critical" | "fatal" => Level::Critical,
                "error" => Level::Error,
                "warning" | "warn" => Level::Warning,
                "info" => Level::Info,
                "debug" => Level::Debug,
                "trace" => Level::Trace,
                _ => {
                    c.problem(
                        key,
                        Some(value),
                        format!(
                            "unknown level '{name}'; expected 1-5 or one of critical, error, \
                             warning, info, debug, trace"
                        ),
                    );
                    return None;
                }
            };
            Some(level)
        }
        _ => {
            c.wrong_type(key, value, "a level number 1-5 or a level name");
            None
        }
    }
}

/// The `kafka.*` connection keys and `kafka.topics`, plus the topic names for reference checks.
fn kafka(c: &mut Checker<'_>, root: &Dict) -> (KafkaSettings, entries::TopicNames) {
    let bootstrap_servers = c.setting(
        root,
        "kafka.bootstrap.servers",
        vec!["127.0.0.1:9092".to_owned()],
        bootstrap_servers,
    );
    let client_id = c.setting(root, "kafka.client.id", "bigpipe".to_owned(), Checker::string);
    let request_timeout = c.setting(root, "kafka.request.timeout.ms", ms(10_000), |c, key, v| {
        c.millis(key, v, 1)
    });
    let metadata_refresh = c.setting(root, "kafka.metadata.refresh.ms", ms(30_000), |c, key, v| {
        c.millis(key, v, 1)
    });
    let group_instance_id = c.setting(root, "kafka.group.instance.id", None, group_instance_id);
    let (topics, names) = entries::topics(c, root);
    let security = security::kafka_security(c, root);
    let kafka = KafkaSettings {
        bootstrap_servers,
        client_id,
        request_timeout,
        metadata_refresh,
        group_instance_id,
        topics,
        security,
    };
    (kafka, names)
}

/// `kafka.group.instance.id`: a literal, or a whole-value `${NAME}` reference to an environment
/// variable (as for secrets), so one config file serves every process. `${HOSTNAME}` falls back
/// to the kernel's host name, since shells set `HOSTNAME` without exporting it. `""` (for
/// example from an empty variable override): dynamic membership. `Some(None)`: dynamic.
fn group_instance_id(c: &mut Checker<'_>, key: &str, value: &Value) -> Option<Option<String>> {
    let raw = c.string(key, value)?;
    let id = match super::secret::env_reference(&raw) {
        None => raw,
        Some(name) => match c.vars().get(name) {
            Some(v) => v.clone(),
            None if name == "HOSTNAME" => match std::fs::read_to_string(HOSTNAME_FILE) {
                Ok(host) => host.trim().to_owned(),
                Err(e) => {
                    c.problem(
                        key,
                        Some(value),
                        format!("HOSTNAME is not set and {HOSTNAME_FILE} cannot be read: {e}"),
                    );
                    return None;
                }
            },
            None => {
                c.problem(
                    key,
                    Some(value),
                    format!("environment variable {name} is not set"),
                );
                return None;
            }
        },
    };
    if id.is_empty() {
        return Some(None);
    }
    if let Some(problem) = super::rules::instance_id_problem(&id) {
        c.problem(key, Some(value), problem);
        return None;
    }
    Some(Some(id))
}

/// Where Linux keeps the host name (read without libc, so the static build needs nothing).
const HOSTNAME_FILE: &str = "/proc/sys/kernel/hostname";

/// `kafka.bootstrap.servers`: `"host:port,host:port"` (Go's librdkafka form) or an array.
fn bootstrap_servers(c: &mut Checker<'_>, key: &str, value: &Value) -> Option<Vec<String>> {
    // (path to report, entry text)
    let entries: Vec<(String, String)> = match value {
        Value::String(_, list) => list
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty()) // tolerate "a:1,b:2," as librdkafka does
            .map(|entry| (key.to_owned(), entry.to_owned()))
            .collect(),
        Value::Array(_, items) => {
            let mut entries = Vec::new();
            let mut all_strings = true;
            for (i, item) in items.iter().enumerate() {
                let path = format!("{key}[{i}]");
                match c.string(&path, item) {
                    Some(entry) => entries.push((path, entry)),
                    None => all_strings = false,
                }
            }
            if !all_strings {
                return None; // reported per item; "no servers" on top would be noise
            }
            entries
        }
        _ => {
            c.wrong_type(
                key,
                value,
                "a string \"host:port,host:port\" or an array of strings",
            );
            return None;
        }
    };
    if entries.is_empty() {
        c.problem(
            key,
            Some(value),
            "no bootstrap servers; expected \"host:port,host:port\"",
        );
        return None;
    }
    let mut servers = Vec::with_capacity(entries.len());
    let mut ok = true;
    for (path, entry) in entries {
        match bootstrap_server(&entry) {
            Ok(server) => servers.push(server),
            Err(reason) => {
                c.problem(
                    &path,
                    Some(value),
                    format!("malformed bootstrap server '{entry}': {reason}"),
                );
                ok = false;
            }
        }
    }
    ok.then_some(servers)
}

fn producer(c: &mut Checker<'_>, root: &Dict, topics: &entries::TopicNames, demo: bool) -> ProducerSettings {
    // Keys of the Go version that have no meaning here: accepted so old files load, but said.
    if let Some(value) = lookup(root, "kafka.producer.retries") {
        c.warn(
            "kafka.producer.retries",
            Some(value),
            "kafka.producer.retries is ignored: produce errors are retried until \
             kafka.producer.message.timeout.ms",
        );
    }
    if let Some(value) = lookup(root, "kafka.producer.channel.size") {
        c.warn(
            "kafka.producer.channel.size",
            Some(value),
            "kafka.producer.channel.size is ignored: the call queue is sized by \
             http.server.handler.channel.size",
        );
    }
    let acl = entries::acl(c, root, topics, demo);
    let linger = c.setting(root, "kafka.producer.linger.ms", ms(5), |c, key, v| {
        c.millis(key, v, 0)
    });
    let batch_bytes = c.setting(root, "kafka.producer.batch.bytes", 1 << 20, |c, key, v| {
        c.int_in::<usize>(key, v, 1, MAX_CHUNK_BYTES)
    });
    // Go: 0 made every call "overloaded", a negative size panicked at startup.
    let queue_calls = c.setting(root, "http.server.handler.channel.size", 500_000, |c, key, v| {
        c.int_in::<usize>(key, v, 1, MAX_QUEUE_CALLS)
    });
    let queue_bytes = c.setting(root, "kafka.producer.queue.bytes", 1 << 28, |c, key, v| {
        c.int_in::<usize>(key, v, 1, MAX_QUEUE_BYTES)
    });
    let queue_reserved = c.setting(root, "kafka.producer.queue.reserved", 0.5, |c, key, v| {
        let fraction = c.number(key, v)?;
        if !(0.0..=1.0).contains(&fraction) {
            c.problem(
                key,
                Some(v),
                format!(
                    "must be a fraction from 0 to 1 of the queue reserved for the ACLs, got {}",
                    super::reader::show_f64(fraction)
                ),
            );
            return None;
        }
        Some(fraction)
    });
    let message_timeout = c.setting(
        root,
        "kafka.producer.message.timeout.ms",
        ms(300_000),
        |c, key, v| c.millis(key, v, 1),
    );
    let (default_ack, ack_timeout) = ack(c, root);
    ProducerSettings {
        acl,
        linger,
        batch_bytes,
        queue_calls,
        queue_bytes,
        queue_reserved,
        message_timeout,
        default_ack,
        ack_timeout,
    }
}

/// `kafka.producer.ack.mode` + `kafka.producer.ack.timeout.ms`, or the shorthand
/// `kafka.producer.ack = "kafka"`. A key cannot be both a value and a table in TOML, hence
/// `ack.mode` as the canonical spelling.
fn ack(c: &mut Checker<'_>, root: &Dict) -> (AckMode, Duration) {
    const MODE: AckMode = AckMode::Queue;
    let timeout = ms(30_000);
    match lookup(root, "kafka.producer.ack") {
        None => (MODE, timeout),
        Some(value @ (Value::String(..) | Value::Char(..))) => {
            let mode = ack_mode(c, "kafka.producer.ack", value).unwrap_or(MODE);
            (mode, timeout)
        }
        Some(Value::Dict(..)) => {
            let mode = c.setting(root, "kafka.producer.ack.mode", MODE, ack_mode);
            let timeout = c.setting(root, "kafka.producer.ack.timeout.ms", timeout, |c, key, v| {
                c.millis(key, v, 1)
            });
            (mode, timeout)
        }
        Some(value) => {
            c.wrong_type(
                "kafka.producer.ack",
                value,
                "\"queue\", \"kafka\" or a table with mode and timeout.ms",
            );
            (MODE, timeout)
        }
    }
}

fn ack_mode(c: &mut Checker<'_>, key: &str, value: &Value) -> Option<AckMode> {
    c.choice(
        key,
        value,
        &[("queue", AckMode::Queue), ("kafka", AckMode::Kafka)],
    )
}

fn http(c: &mut Checker<'_>, root: &Dict) -> HttpSettings {
    let host = c.setting(
        root,
        "http.server.host",
        // Loopback by default: bigpipe is opened to the network on purpose, not by accident.
        "127.0.0.1".to_owned(),
        Checker::non_empty_string,
    );
    // 0 binds an ephemeral port: what tests want.
    let port = c.setting(root, "http.server.port", 10086, |c, key, v| {
        c.int_in::<u16>(key, v, 0, i128::from(u16::MAX))
    });
    // Go treated 0 as "no timeout"; here a timeout must be real, so 0 is refused.
    let read_timeout = c.setting(root, "http.server.read.timeout", ms(5000), |c, key, v| {
        c.millis(key, v, 1)
    });
    let write_timeout = c.setting(root, "http.server.write.timeout", ms(5000), |c, key, v| {
        c.millis(key, v, 1)
    });
    let body_limit = c.setting(root, "http.server.body.limit", DEFAULT_BODY_LIMIT, |c, key, v| {
        c.int_in::<usize>(key, v, 1, MAX_CHUNK_BYTES)
    });
    let workers = c.setting(root, "http.server.workers", 0, |c, key, v| {
        c.int_in::<usize>(key, v, 0, MAX_WORKERS)
    });
    // 0 turns keep-alive off (actix's `KeepAlive::Disabled`).
    let keep_alive = c.setting(root, "http.server.keepalive.timeout", ms(5000), |c, key, v| {
        c.millis(key, v, 0)
    });
    let max_connections = c.setting(root, "http.server.max.connections", 4096, |c, key, v| {
        c.int_in::<usize>(key, v, 1, MAX_CONNECTIONS)
    });
    let max_connection_rate = c.setting(root, "http.server.max.connection.rate", 2000, |c, key, v| {
        c.int_in::<u32>(key, v, 0, MAX_CONNECTION_RATE)
    });
    // 0 refuses every scheduled call; the cap keeps a call's hops through the largest retry
    // tier (one Kafka write per tier delay) bounded.
    let schedule_max = c.setting(
        root,
        "http.server.schedule.max.ms",
        ms(DEFAULT_SCHEDULE_MAX_MS),
        |c, key, v| c.millis_in(key, v, 0, MAX_SCHEDULE_MS),
    );
    let batch_max_calls = c.setting(
        root,
        "http.server.batch.max.calls",
        DEFAULT_BATCH_MAX_CALLS,
        |c, key, v| c.int_in::<usize>(key, v, 1, MAX_BATCH_CALLS),
    );
    HttpSettings {
        host,
        port,
        read_timeout,
        write_timeout,
        body_limit,
        workers,
        keep_alive,
        max_connections,
        max_connection_rate,
        schedule_max,
        batch_max_calls,
        // Filled in by `idempotency` once the control topic is known.
        idempotency: IdempotencySettings {
            topic: None,
            partitions: 1,
            window: Duration::ZERO,
            max_keys: 0,
        },
        admin: admin(c, root),
    }
}

/// `http.server.idempotency.*`. The topic is a legal name apart from the data topics and the
/// control topic (the claims reader would misread either), or `""` (off).
fn idempotency(
    c: &mut Checker<'_>,
    root: &Dict,
    kafka: &KafkaSettings,
    control: &ControlSettings,
) -> IdempotencySettings {
    let topic = c.setting(
        root,
        "http.server.idempotency.topic",
        Some("bigpipe.idempotency".to_owned()),
        |c, key, v| {
            let name = c.string(key, v)?;
            if name.is_empty() {
                return Some(None);
            }
            if let Some(problem) = super::rules::topic_name_problem(&name) {
                c.problem(key, Some(v), problem);
                return None;
            }
            if kafka.topics.iter().any(|t| t.name == name) || control.topic.as_ref() == Some(&name) {
                c.problem(
                    key,
                    Some(v),
                    format!("'{name}' is a data or control topic; the idempotency claims need their own"),
                );
                return None;
            }
            Some(Some(name))
        },
    );
    let partitions = c.setting(root, "http.server.idempotency.partitions", 3, |c, key, v| {
        c.int_in::<i32>(key, v, 1, 1000)
    });
    let window = c.setting(
        root,
        "http.server.idempotency.window.ms",
        ms(DEFAULT_IDEMPOTENCY_WINDOW_MS),
        |c, key, v| c.millis_in(key, v, 1000, MAX_IDEMPOTENCY_WINDOW_MS),
    );
    let max_keys = c.setting(
        root,
        "http.server.idempotency.max.keys",
        DEFAULT_IDEMPOTENCY_MAX_KEYS,
        |c, key, v| c.int_in::<usize>(key, v, 1, MAX_IDEMPOTENCY_KEYS),
    );
    IdempotencySettings {
        topic,
        partitions,
        window,
        max_keys,
    }
}

/// `http.admin.*`. A token is optional on loopback; on any other address the admin surface
/// (counters, topic names, broker errors) would be open to the network, so check-config warns.
fn admin(c: &mut Checker<'_>, root: &Dict) -> AdminSettings {
    let host = c.setting(
        root,
        "http.admin.host",
        "127.0.0.1".to_owned(),
        Checker::non_empty_string,
    );
    let port = c.setting(root, "http.admin.port", 10087, |c, key, v| {
        c.int_in::<u16>(key, v, 0, i128::from(u16::MAX))
    });
    let token = c.setting(root, "http.admin.token", None, |c, key, v| {
        // Not `c.string`: its wrong-type message quotes the value, and this one is a secret.
        let Value::String(_, token) = v else {
            c.problem(key, Some(v), "expected a string");
            return None;
        };
        let token = token.clone();
        // Empty means "no token", so an unset environment variable in a template reads as unset.
        if token.is_empty() {
            return Some(None);
        }
        if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            // The value is a credential: the message never shows it.
            c.problem(
                key,
                Some(v),
                "must be at least 16 printable ASCII characters without spaces",
            );
            return None;
        }
        Some(Some(token))
    });
    if token.is_none() && !is_loopback(&host) {
        c.warn(
            "http.admin.host",
            lookup(root, "http.admin.host"),
            format!(
                "http.admin.host: '{host}' is not a loopback address and http.admin.token is not \
                 set: /stats and the /readyz detail are open to anyone who can reach it"
            ),
        );
    }
    AdminSettings { host, port, token }
}

/// `admin.control.topic`: a legal topic name apart from the data topics, or `""` (off).
fn control(c: &mut Checker<'_>, root: &Dict, kafka: &KafkaSettings) -> ControlSettings {
    let topic = c.setting(
        root,
        "admin.control.topic",
        Some("bigpipe.control".to_owned()),
        |c, key, v| {
            let name = c.string(key, v)?;
            if name.is_empty() {
                return Some(None);
            }
            if let Some(problem) = super::rules::topic_name_problem(&name) {
                c.problem(key, Some(v), problem);
                return None;
            }
            // Compaction and the control reader's JSON would both wreck a topic of calls.
            if kafka.topics.iter().any(|t| t.name == name) {
                c.problem(
                    key,
                    Some(v),
                    format!("'{name}' is one of kafka.topics; the control topic needs its own"),
                );
                return None;
            }
            Some(Some(name))
        },
    );
    ControlSettings { topic }
}

/// True for `localhost` and loopback IP literals (`127.0.0.0/8`, `::1`).
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The default `http.server.body.limit`: 1 MiB less 8 KiB, so that with the default
/// `batch.bytes` (1 MiB) the largest body still fits a batch next to the dead-letter reserve.
pub(crate) const DEFAULT_BODY_LIMIT: usize = (1 << 20) - (8 << 10);

/// `http.server.body.limit` against `kafka.producer.batch.bytes`.
///
/// A body becomes a record about as large as itself (the Go JSON wrapper roughly replaces the
/// request's), so a body limit above the largest record a batch can take
/// ([`record_size::largest_record`]: batch overhead and [`DEAD_LETTER_RESERVE_BYTES`] off) lets
/// in calls that can never be written: refused. Left unset, the limit is the default or that
/// largest record, whichever is smaller.
///
/// [`DEAD_LETTER_RESERVE_BYTES`]: record_size::DEAD_LETTER_RESERVE_BYTES
fn body_limit_that_fits(c: &mut Checker<'_>, root: &Dict, body_limit: usize, batch_bytes: usize) -> usize {
    const BODY: &str = "http.server.body.limit";
    const BATCH: &str = "kafka.producer.batch.bytes";
    let Some(largest) = record_size::largest_record(batch_bytes) else {
        c.problem(
            BATCH,
            lookup(root, BATCH),
            format!(
                "{batch_bytes} bytes cannot hold any call: a batch needs {} bytes of overhead \
                 and {} bytes reserved for dead-letter headers",
                record_size::batch_size(0),
                record_size::DEAD_LETTER_RESERVE_BYTES
            ),
        );
        return body_limit;
    };
    match lookup(root, BODY) {
        // Unset: follow the batch size down rather than blame a key the user never wrote.
        None => body_limit.min(largest),
        Some(value) if body_limit > largest => {
            c.problem(
                BODY,
                Some(value),
                format!(
                    "{body_limit} bytes can never be written to Kafka: with {BATCH} = \
                     {batch_bytes}, a record may have at most {largest} bytes (batch overhead and \
                     {} bytes reserved for dead-letter headers taken off); lower {BODY} to at \
                     most {largest} or raise {BATCH}",
                    record_size::DEAD_LETTER_RESERVE_BYTES
                ),
            );
            body_limit
        }
        Some(_) => body_limit,
    }
}

fn delivery(c: &mut Checker<'_>, root: &Dict) -> DeliverySettings {
    let threads = c.setting(root, "delivery.threads", 2, |c, key, v| {
        c.int_in::<usize>(key, v, 1, MAX_DELIVERY_THREADS)
    });
    let connect_timeout = c.setting(root, "delivery.connect.timeout.ms", ms(3000), |c, key, v| {
        c.millis(key, v, 1)
    });
    let keep_alive = c.setting(root, "delivery.keepalive.ms", ms(15_000), |c, key, v| {
        c.millis(key, v, 1)
    });
    // 0: the body is not read at all; the status alone decides (successCodes).
    let max_response_body = c.setting(root, "delivery.response.max.bytes", 65_536, |c, key, v| {
        c.int_in::<usize>(key, v, 0, MAX_CHUNK_BYTES)
    });
    let drop_headers = c.setting(root, "delivery.headers.drop", Vec::new(), header_names);
    let forward_headers = c.setting(
        root,
        "delivery.headers.forward",
        ForwardRules::default(),
        forward_rules,
    );
    let tls_ca = c.setting(root, "delivery.tls.ca.file", None, |c, key, v| {
        ca_bundle(c, key, v).map(Some)
    });
    let allow = c.setting(root, "delivery.allow", Vec::new(), address_rules);
    let deny = c.setting(root, "delivery.deny", Vec::new(), address_rules);
    DeliverySettings {
        threads,
        connect_timeout,
        keep_alive,
        max_response_body,
        drop_headers,
        forward_headers,
        tls_ca,
        destinations: AddressPolicy::new(allow, deny),
    }
}

/// `delivery.allow` / `delivery.deny`: an array of address rules (`"127.0.0.1:10086"`,
/// `"10.1.0.0/16"`, `"[::1]:8080"`; syntax in [`super::values::net`]).
fn address_rules(c: &mut Checker<'_>, key: &str, value: &Value) -> Option<Vec<Rule>> {
    let items = c.array(key, value)?;
    c.each_string(key, items, |s| s.parse::<Rule>())
}

/// `delivery.tls.ca.file`: a readable PEM file with at least one certificate, read now so
/// that check-config catches what would otherwise fail at start-up.
fn ca_bundle(c: &mut Checker<'_>, key: &str, value: &Value) -> Option<CaBundle> {
    let path = c.non_empty_string(key, value)?;
    let pem = match std::fs::read(&path) {
        Ok(pem) => pem,
        Err(e) => {
            c.problem(key, Some(value), format!("cannot read '{path}': {e}"));
            return None;
        }
    };
    if let Err(why) = super::values::pem::ca_certificates(&pem) {
        c.problem(key, Some(value), format!("'{path}' {why}"));
        return None;
    }
    Some(CaBundle {
        path: path.into(),
        pem,
    })
}

/// `delivery.headers.drop`: an array of HTTP header names, stored lower case.
fn header_names(c: &mut Checker<'_>, key: &str, value: &Value) -> Option<Vec<String>> {
    let items = c.array(key, value)?;
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    c.each_string(key, items, |name| {
        if name.is_empty() || !name.bytes().all(token) {
            return Err("is not an HTTP header name".to_owned());
        }
        Ok(name.to_ascii_lowercase())
    })
}

/// `delivery.headers.forward` and a consumer entry's `forwardHeaders`: an array of header
/// names, `Prefix*` patterns and `"*"` (see [`super::values::forward`]).
pub(crate) fn forward_rules(c: &mut Checker<'_>, key: &str, value: &Value) -> Option<ForwardRules> {
    let items = c.array(key, value)?;
    let rules = c.each_string(key, items, |rule| {
        ForwardRules::check(rule)
            .map(|()| rule.to_owned())
            .map_err(|e| e.to_string())
    })?;
    let parsed = ForwardRules::parse(&rules).ok()?;
    if parsed.forwards_everything() {
        c.warn(
            key,
            Some(value),
            format!(
                "{key} contains \"*\": every caller header, Authorization and Cookie included, is \
                 stored in Kafka and forwarded to the call's URL (the Go behaviour); list exact \
                 names instead to forward only those"
            ),
        );
    }
    Some(parsed)
}
