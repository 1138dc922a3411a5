//! Pure checks on single values (broker addresses, topic names) and the numeric limits.
//!
//! The upper limits are not Kafka's or the OS's: they exist so that a typo (an extra zero, a
//! value in bytes where ms were meant) fails at load time instead of as a panic, an abort or an
//! overflow somewhere downstream (`Instant + Duration`, `retries + 1`, preallocated queues).

use std::ops::RangeInclusive;

/// `ms` milliseconds as a `Duration`, for defaults.
pub(crate) const fn ms(ms: u64) -> std::time::Duration {
    std::time::Duration::from_millis(ms)
}

/// Longest accepted duration for any `*.ms` / `timeout` key: one week. Far beyond any sane
/// timeout, and far below what would overflow `Instant` arithmetic in other modules.
pub(crate) const MAX_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// `log.queue.size` upper bound: slog-async preallocates its channel, so this bounds memory.
pub(crate) const MAX_LOG_QUEUE: i128 = 1 << 20;

/// Upper bound for byte sizes of single requests and batches (`body.limit`, `batch.bytes`): 1 GiB.
pub(crate) const MAX_CHUNK_BYTES: i128 = 1 << 30;

/// Upper bound for `kafka.producer.queue.bytes`: 1 TiB.
pub(crate) const MAX_QUEUE_BYTES: i128 = 1 << 40;

/// Upper bound for `http.server.handler.channel.size` (Go default 500000).
pub(crate) const MAX_QUEUE_CALLS: i128 = 100_000_000;

/// Upper bound for `kafka.topics[].partitions`; components may keep state per partition.
pub(crate) const MAX_PARTITIONS: i128 = 100_000;

/// Upper bound for `kafka.consumer.list[].concurrency`.
pub(crate) const MAX_CONCURRENCY: i128 = 100_000;

/// Upper bound for `kafka.consumer.list[].retries`; `retries + 1` must never overflow.
pub(crate) const MAX_RETRIES: i128 = 1_000;

/// Upper bound for `http.server.workers` (threads).
pub(crate) const MAX_WORKERS: i128 = 1_024;

/// Upper bound for `http.server.max.connections`, all workers together; far above any
/// process's file descriptor limit, so only a typo reaches it.
pub(crate) const MAX_CONNECTIONS: i128 = 1_000_000;

/// Upper bound for `http.server.max.connection.rate` (new connections per second).
pub(crate) const MAX_CONNECTION_RATE: i128 = 1_000_000;

/// `http.server.schedule.max.ms` default: a week ahead.
pub(crate) const DEFAULT_SCHEDULE_MAX_MS: u64 = 7 * 86_400_000;

/// Upper bound for `http.server.schedule.max.ms`, and what a consumer honours of any record's
/// `DeliverAt` (counted from its `CreateTime`): 365 days.
pub const MAX_SCHEDULE_MS: u64 = 365 * 86_400_000;

/// `http.server.batch.max.calls` default.
pub(crate) const DEFAULT_BATCH_MAX_CALLS: usize = 1_000;

/// Upper bound for `http.server.batch.max.calls`.
pub(crate) const MAX_BATCH_CALLS: i128 = 100_000;

/// `http.server.idempotency.window.ms` default: a day, as the payment APIs keep their keys.
pub(crate) const DEFAULT_IDEMPOTENCY_WINDOW_MS: u64 = 86_400_000;

/// Upper bound for `http.server.idempotency.window.ms`: a week. Every process reads the whole
/// window's claims at start.
pub(crate) const MAX_IDEMPOTENCY_WINDOW_MS: u64 = 7 * 86_400_000;

/// `http.server.idempotency.max.keys` default.
pub(crate) const DEFAULT_IDEMPOTENCY_MAX_KEYS: usize = 1_000_000;

/// Upper bound for `http.server.idempotency.max.keys` (about 20 GB of memory at the longest
/// keys, so only a typo reaches it).
pub(crate) const MAX_IDEMPOTENCY_KEYS: i128 = 100_000_000;

/// `sessionTimeout` bounds in ms. Brokers refuse values outside their own
/// `group.min.session.timeout.ms`..`group.max.session.timeout.ms` (6 s to 30 min by default).
pub(crate) const MIN_SESSION_MS: u64 = 1_000;
/// See [`MIN_SESSION_MS`].
pub(crate) const MAX_SESSION_MS: u64 = 3_600_000;

/// Upper bound for `prefetchRecords`, per partition.
pub(crate) const MAX_PREFETCH_RECORDS: i128 = 1_000_000;

/// Lower bound for `prefetchBytes`, per partition: 1 KiB (the upper bound is [`MAX_CHUNK_BYTES`]).
pub(crate) const MIN_PREFETCH_BYTES: i128 = 1 << 10;

/// Upper bound for `delivery.threads`.
pub(crate) const MAX_DELIVERY_THREADS: i128 = 64;

/// `rateLimit` bounds in calls per second. The lower bound keeps the per-call interval
/// (1 / rate) within `Duration` range; Go turned 0 into "no limit" by accident (seed §5.4).
pub(crate) const MIN_RATE: f64 = 0.001;
/// See [`MIN_RATE`].
pub(crate) const MAX_RATE: f64 = 1_000_000.0;

/// `kafka.producer.acl[].rate` bounds in calls per second, as for `rateLimit`: the interval
/// between calls (1 / rate) stays within `Duration` range.
pub(crate) const MIN_QUOTA_RATE: f64 = MIN_RATE;
/// See [`MIN_QUOTA_RATE`].
pub(crate) const MAX_QUOTA_RATE: f64 = MAX_RATE;
/// Upper bound for `kafka.producer.acl[].burst`, in calls.
pub(crate) const MAX_QUOTA_BURST: u32 = 1_000_000;

/// Checks one bootstrap server and returns it normalised (trimmed).
///
/// Accepts `host:port` and `[ipv6]:port`. The host must be non-empty and made of hostname
/// characters; the port must be 1-65535. The error is the reason, without the entry itself.
pub(crate) fn bootstrap_server(entry: &str) -> Result<String, String> {
    let entry = entry.trim();
    if entry.contains("://") {
        return Err("expected host:port, not a URL".to_owned());
    }
    let bracketed = entry.starts_with('[');
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let (host, port) = rest
            .split_once("]:")
            .ok_or_else(|| "expected [ipv6]:port".to_owned())?;
        if host.is_empty() || !host.chars().all(|c| c.is_ascii_hexdigit() || ":.%".contains(c)) {
            return Err("malformed IPv6 address".to_owned());
        }
        (host, port)
    } else {
        let (host, port) = entry
            .rsplit_once(':')
            .ok_or_else(|| "expected host:port".to_owned())?;
        if host.contains(':') {
            return Err("expected host:port; write IPv6 addresses as [addr]:port".to_owned());
        }
        if host.is_empty() {
            return Err("expected host:port, the host is empty".to_owned());
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        {
            return Err(format!("'{host}' is not a host name or address"));
        }
        (host, port)
    };
    let port = match port.parse::<u16>() {
        Ok(port) if port > 0 => port,
        _ => return Err(format!("port '{port}' is not a number from 1 to 65535")),
    };
    Ok(if bracketed {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// Why `name` is not a legal Kafka topic name, if it is not (Kafka's own rule: 1-249 characters
/// of `[a-zA-Z0-9._-]`, and not `.` or `..`).
pub(crate) fn topic_name_problem(name: &str) -> Option<String> {
    kafka_name_problem("topic name", name)
}

/// Why `id` is not a legal `group.instance.id`, if it is not: Kafka checks it as it checks a
/// topic name (`JoinGroupRequest.validateGroupInstanceId`).
pub(crate) fn instance_id_problem(id: &str) -> Option<String> {
    kafka_name_problem("group.instance.id", id)
}

/// Kafka's rule for names (`what`): 1-249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn kafka_name_problem(what: &str, name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if name.len() > 249 {
        return Some(format!(
            "{what} is {} characters long, Kafka allows at most 249",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Some(format!("'{name}' is not a legal Kafka {what}"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c)))
    {
        return Some(format!(
            "{what} '{name}' contains '{bad}'; Kafka allows only [a-zA-Z0-9._-]"
        ));
    }
    None
}

/// The HTTP statuses one `successCodes` entry stands for: a class `"2xx"` (`1xx` to `5xx`, the
/// `x`s in either case), a status `"204"`, or an inclusive range `"200-204"`, all within
/// 100-599. The error is the reason, naming the entry.
pub(crate) fn status_range(code: &str) -> Result<RangeInclusive<u16>, String> {
    if let Some(class) = code.strip_suffix("xx").or_else(|| code.strip_suffix("XX")) {
        return match class {
            "1" | "2" | "3" | "4" | "5" => {
                let first = class.parse::<u16>().unwrap_or_default() * 100;
                Ok(first..=first + 99)
            }
            _ => Err(format!("'{code}' is not a status class; expected 1xx to 5xx")),
        };
    }
    let (first, last) = code.split_once('-').unwrap_or((code, code));
    let (first, last) = (status(code, first)?, status(code, last)?);
    if first > last {
        return Err(format!("range '{code}' starts above its end"));
    }
    Ok(first..=last)
}

fn status(code: &str, part: &str) -> Result<u16, String> {
    match part.parse::<u16>() {
        Ok(status @ 100..=599) if part.len() == 3 && part.bytes().all(|b| b.is_ascii_digit()) => Ok(status),
        _ => Err(format!(
            "'{code}' is not an HTTP status (100-599), a range like \"200-204\" or a class like \"2xx\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_server_accepts_host_port_and_bracketed_ipv6() {
        assert_eq!(
            bootstrap_server(" localhost:9092 "),
            Ok("localhost:9092".to_owned())
        );
        assert_eq!(bootstrap_server("10.0.0.1:1"), Ok("10.0.0.1:1".to_owned()));
        assert_eq!(bootstrap_server("[::1]:9092"), Ok("[::1]:9092".to_owned()));
    }

    #[test]
    fn bootstrap_server_rejects_malformed_entries() {
        for bad in [
            "localhost",
            ":9092",
            "host:",
            "host:0",
            "host:65536",
            "host:x",
            "::1:9092",
            "[]:9092",
            "[::1]",
            "http://host:9092",
            "a b:1",
        ] {
            assert!(bootstrap_server(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert_eq!(topic_name_problem("test.topic_1-a"), None);
        assert!(topic_name_problem("").is_some());
        assert!(topic_name_problem("..").is_some());
        assert!(topic_name_problem("a/b").is_some());
        assert!(topic_name_problem(&"x".repeat(250)).is_some());
        assert_eq!(topic_name_problem(&"x".repeat(249)), None);
    }

    #[test]
    fn status_ranges_are_classes_statuses_or_ranges() {
        assert_eq!(status_range("2xx"), Ok(200..=299));
        assert_eq!(status_range("5XX"), Ok(500..=599));
        assert_eq!(status_range("204"), Ok(204..=204));
        assert_eq!(status_range("200-204"), Ok(200..=204));
        assert_eq!(status_range("100-599"), Ok(100..=599));
        assert_eq!(status_range("301-301"), Ok(301..=301));
    }

    #[test]
    fn malformed_status_ranges_are_refused() {
        for bad in [
            "",
            "x",
            "xx",
            "0xx",
            "6xx",
            "2x",
            "22xx",
            "2Xx",
            "99",
            "600",
            "0200",
            "+200",
            " 200",
            "200 ",
            "2000",
            "-200",
            "200-",
            "200-600",
            "204-200",
            "200-204-206",
            "2xx-3xx",
            "200–204",
        ] {
            assert!(status_range(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            status_range("204-200"),
            Err("range '204-200' starts above its end".to_owned())
        );
    }
}
