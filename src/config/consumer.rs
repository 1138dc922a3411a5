//! `kafka.consumer.list`: one consumer group per entry, with its delivery policy (rate,
//! timeouts, retries, success statuses, dead-lettering) and its Kafka consumer settings (group
//! membership, start offset, prefetch window, commits).

use std::collections::HashMap;
use std::time::Duration;

use figment::value::{Dict, Value};

use super::entries::{TopicNames, array_at, known_topic};
use super::reader::{Checker, show_f64};
use super::rules::{
    MAX_CHUNK_BYTES, MAX_CONCURRENCY, MAX_PREFETCH_RECORDS, MAX_RATE, MAX_RETRIES, MAX_SESSION_MS,
    MIN_PREFETCH_BYTES, MIN_RATE, MIN_SESSION_MS, ms, status_range, topic_name_problem,
};
use super::settings::{Assignor, BreakerSettings, ConsumerSettings, OffsetReset, Ordering};
use super::validate::forward_rules;
use super::values::signing::SigningKey;

/// Every key of a `kafka.consumer.list` entry (Go's camelCase); others are warned about.
pub(crate) const KEYS: &[&str] = &[
    "topic",
    "groupId",
    "rateLimit",
    "timeout",
    "retries",
    "concurrency",
    "circuitBreaker",
    "sessionTimeout",
    "heartbeatInterval",
    "rebalanceTimeout",
    "assignor",
    "autoOffsetReset",
    "deadLetterTopic",
    "successCodes",
    "retryBackoff",
    "retryBackoffMax",
    "retryAfterMax",
    "prefetchRecords",
    "prefetchBytes",
    "commitInterval",
    "drainTimeout",
    "fetchMaxWait",
    "retryTiers",
    "retryFor",
    "hostConcurrency",
    "deadLetterTimeout",
    "stallAfter",
    "forwardHeaders",
    "signingKeys",
    "signingKeysFile",
    "ordering",
];

/// Most signing keys per entry: two sign during a rotation; a third leaves room to stage
/// the next key. Each key costs one HMAC per attempt.
const MAX_SIGNING_KEYS: usize = 3;

/// `sessionTimeout` default; `heartbeatInterval` defaults to a third of the session timeout.
const SESSION_TIMEOUT: Duration = ms(10_000);

/// `deadLetterTimeout` default: `kafka.producer.message.timeout.ms`'s default, the time bigpipe
/// already gives any write into Kafka before giving up on it.
const DEAD_LETTER_TIMEOUT: Duration = ms(300_000);

/// Least `stallAfter` default: a minute is long next to a healthy partition's commit cadence
/// (a call takes `timeout` × attempts at worst, 9 s with the defaults), and short next to an
/// outage an operator must hear about.
const STALL_AFTER: Duration = ms(60_000);

/// Appended to the default dead-letter topic name: `<topic>.dlq`.
const DEAD_LETTER_SUFFIX: &str = ".dlq";

/// `retryTiers` default: uForwarder-style delay topics of 5 s, 1 min and 10 min.
const RETRY_TIERS_MS: [u64; 3] = [5_000, 60_000, 600_000];

/// Shortest tier: a retry due sooner than this waits in the partition's window anyway
/// (the consumer's `tiers::IN_WINDOW_RETRY_MAX`), so a shorter tier would never be used.
const MIN_TIER_MS: u64 = 1_000;

/// Most tiers per entry: each is a topic and a consumer group.
const MAX_TIERS: usize = 8;

/// Reads `kafka.consumer.list` (see [`KEYS`]), default empty.
/// `static_members`: `kafka.group.instance.id` is set, so one process may hold one member per
/// group only.
pub(crate) fn consumers(
    c: &mut Checker<'_>,
    root: &Dict,
    topics: &TopicNames,
    static_members: bool,
) -> Vec<ConsumerSettings> {
    const KEY: &str = "kafka.consumer.list";
    let Some(items) = array_at(c, root, KEY) else {
        return Vec::new();
    };
    let mut consumers = Vec::new();
    let mut first_seen: HashMap<(String, String), String> = HashMap::new();
    let mut group_seen: HashMap<String, String> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{KEY}[{i}]");
        let Some(entry) = c.table(&path, item) else {
            continue;
        };
        let Some(consumer) = consumer(c, entry, &path, topics) else {
            continue;
        };
        let pair = (consumer.topic.clone(), consumer.group_id.clone());
        if let Some(first) = first_seen.get(&pair) {
            // Two entries in one group would split the topic's partitions between them, each
            // with its own limits: almost certainly a copy-paste mistake.
            let key = format!("{path}.groupId");
            let (topic, group_id) = pair;
            c.problem(
                &key,
                entry.get("groupId"),
                format!("topic '{topic}' with groupId '{group_id}' is already consumed by {first}"),
            );
            continue;
        }
        if static_members && let Some(first) = group_seen.get(&consumer.group_id) {
            // Both entries would join the group with this process's one group.instance.id,
            // and each join would fence the other out.
            c.problem(
                &format!("{path}.groupId"),
                entry.get("groupId"),
                format!(
                    "groupId '{}' is also used by {first}; with kafka.group.instance.id set, \
                     two entries of one group in one process would fence each other \
                     (give them different groupIds, or unset kafka.group.instance.id)",
                    consumer.group_id
                ),
            );
            continue;
        }
        group_seen.insert(consumer.group_id.clone(), path.clone());
        first_seen.insert(pair, path);
        consumers.push(consumer);
    }
    consumers
}

/// Reads one entry; `None` when a required key is missing or invalid (already reported).
fn consumer(c: &mut Checker<'_>, entry: &Dict, path: &str, topics: &TopicNames) -> Option<ConsumerSettings> {
    c.unknown_entry_keys(entry, path, KEYS);
    let topic = c.required(entry, path, "topic", |c, key, value| {
        known_topic(c, key, value, topics)
    });
    let group_id = c.required(entry, path, "groupId", Checker::non_empty_string);
    let rate_limit = c.required(entry, path, "rateLimit", rate_limit);
    // Defaults are the values of the shipped Go config; Go had none and panicked instead.
    let timeout = c.optional(entry, path, "timeout", ms(3000), |c, key, value| {
        c.millis(key, value, 1)
    });
    let retries = c.optional(entry, path, "retries", 2, |c, key, value| {
        c.int_in::<u32>(key, value, 0, MAX_RETRIES)
    });
    // Go: 0 made an unbuffered channel and deadlocked the consumer forever.
    let concurrency = c.optional(entry, path, "concurrency", 5, |c, key, value| {
        c.int_in::<usize>(key, value, 1, MAX_CONCURRENCY)
    });
    let circuit_breaker = entry
        .get("circuitBreaker")
        .and_then(|value| circuit_breaker(c, &format!("{path}.circuitBreaker"), value));

    let (session_timeout, heartbeat_interval) = membership(c, entry, path);
    let rebalance_timeout = c.optional(entry, path, "rebalanceTimeout", ms(30_000), |c, key, value| {
        c.millis(key, value, 1)
    });
    let assignor = c.optional(
        entry,
        path,
        "assignor",
        Assignor::CooperativeSticky,
        |c, key, value| {
            c.choice(
                key,
                value,
                &[
                    ("cooperative-sticky", Assignor::CooperativeSticky),
                    ("sticky", Assignor::Sticky),
                    ("range", Assignor::Range),
                    ("roundrobin", Assignor::RoundRobin),
                ],
            )
        },
    );
    // Go started new groups at the newest offset, so a backlog written before the first start
    // was never delivered.
    let offset_reset = c.optional(
        entry,
        path,
        "autoOffsetReset",
        OffsetReset::Earliest,
        |c, key, v| {
            c.choice(
                key,
                v,
                &[
                    ("earliest", OffsetReset::Earliest),
                    ("latest", OffsetReset::Latest),
                ],
            )
        },
    );

    let dead_letter_topic = dead_letter_topic(c, entry, path, topic.as_deref());
    let success_codes = c.optional(entry, path, "successCodes", vec!["2xx".to_owned()], success_codes);
    let (retry_backoff, retry_backoff_max) = retry_backoff(c, entry, path);
    let retry_after_max = c.optional(entry, path, "retryAfterMax", ms(60_000), |c, key, value| {
        c.millis(key, value, 1)
    });

    let prefetch_records = c.optional(entry, path, "prefetchRecords", 1000, |c, key, value| {
        c.int_in::<usize>(key, value, 1, MAX_PREFETCH_RECORDS)
    });
    let prefetch_bytes = c.optional(entry, path, "prefetchBytes", 4 << 20, |c, key, value| {
        c.int_in::<usize>(key, value, MIN_PREFETCH_BYTES, MAX_CHUNK_BYTES)
    });
    let commit_interval = c.optional(entry, path, "commitInterval", ms(1000), |c, key, value| {
        c.millis(key, value, 1)
    });
    let drain_timeout = c.optional(entry, path, "drainTimeout", ms(10_000), |c, key, value| {
        c.millis(key, value, 1)
    });
    let fetch_max_wait = c.optional(entry, path, "fetchMaxWait", ms(500), |c, key, value| {
        c.millis(key, value, 1)
    });
    let retry_tiers = retry_tiers(c, entry, path, topic.as_deref(), group_id.as_deref());
    let retry_for = c.optional(entry, path, "retryFor", Duration::ZERO, |c, key, value| {
        c.millis(key, value, 0)
    });
    // Half the entry's slots by default: one slow host can take half the entry, never all of it.
    let host_concurrency = c.optional(
        entry,
        path,
        "hostConcurrency",
        (concurrency / 2).max(1),
        |c, key, value| c.int_in::<usize>(key, value, 1, i128::try_from(concurrency).unwrap_or(i128::MAX)),
    );
    let dead_letter_timeout = c.optional(
        entry,
        path,
        "deadLetterTimeout",
        DEAD_LETTER_TIMEOUT,
        |c, key, value| c.millis(key, value, 1),
    );
    let stall_after = stall_after(c, entry, path, timeout, retries);
    let forward_headers = c.optional(entry, path, "forwardHeaders", None, |c, key, value| {
        forward_rules(c, key, value).map(Some)
    });
    let signing_keys = signing_keys(c, entry, path);
    let ordering = c.optional(entry, path, "ordering", Ordering::None, |c, key, value| {
        c.choice(key, value, &[("none", Ordering::None), ("key", Ordering::Key)])
    });

    Some(ConsumerSettings {
        topic: topic?,
        group_id: group_id?,
        rate_limit: rate_limit?,
        timeout,
        retries,
        concurrency,
        session_timeout,
        heartbeat_interval,
        rebalance_timeout,
        assignor,
        offset_reset,
        dead_letter_topic,
        success_codes,
        retry_backoff,
        retry_backoff_max,
        retry_after_max,
        prefetch_records,
        prefetch_bytes,
        commit_interval,
        drain_timeout,
        fetch_max_wait,
        circuit_breaker,
        retry_tiers,
        retry_for,
        host_concurrency,
        dead_letter_timeout,
        stall_after,
        forward_headers,
        signing_keys,
        ordering,
    })
}

/// `signingKeys` (an array of `whsec_...` strings) and `signingKeysFile` (a file with one
/// key per line; blank lines and `#` comments skipped), together at most
/// [`MAX_SIGNING_KEYS`]. Problems never quote a key: these values are secrets, so the
/// generic "expected X, got <value>" messages are not used here.
fn signing_keys(c: &mut Checker<'_>, entry: &Dict, path: &str) -> Vec<SigningKey> {
    let mut keys = Vec::new();
    if let Some(value) = entry.get("signingKeys") {
        let key = format!("{path}.signingKeys");
        match value {
            Value::Array(_, items) => {
                for (i, item) in items.iter().enumerate() {
                    let item_key = format!("{key}[{i}]");
                    match item {
                        Value::String(_, text) => match SigningKey::parse(text) {
                            Ok(k) => keys.push(k),
                            Err(e) => c.problem(&item_key, Some(item), e.to_string()),
                        },
                        _ => c.problem(
                            &item_key,
                            Some(item),
                            "expected a string, 'whsec_' followed by base64",
                        ),
                    }
                }
            }
            _ => c.problem(
                &key,
                Some(value),
                "expected an array of strings, each 'whsec_' followed by base64",
            ),
        }
    }
    if let Some(value) = entry.get("signingKeysFile") {
        let key = format!("{path}.signingKeysFile");
        if let Some(file) = c.non_empty_string(&key, value) {
            match std::fs::read_to_string(&file) {
                Err(e) => c.problem(&key, Some(value), format!("cannot read '{file}': {e}")),
                Ok(text) => {
                    let before = keys.len();
                    for (n, line) in text.lines().enumerate() {
                        let line = line.trim();
                        if line.is_empty() || line.starts_with('#') {
                            continue;
                        }
                        match SigningKey::parse(line) {
                            Ok(k) => keys.push(k),
                            Err(e) => c.problem(&key, Some(value), format!("'{file}' line {}: {e}", n + 1)),
                        }
                    }
                    if keys.len() == before {
                        c.problem(&key, Some(value), format!("'{file}' holds no key"));
                    }
                }
            }
        }
    }
    if keys.len() > MAX_SIGNING_KEYS {
        c.problem(
            &format!("{path}.signingKeys"),
            None,
            format!(
                "at most {MAX_SIGNING_KEYS} signing keys (two during a rotation), got {}",
                keys.len()
            ),
        );
    }
    keys
}

/// `retryTiers`: delays in ms of the entry's retry tier topics, increasing, each at least
/// [`MIN_TIER_MS`]; `[]` keeps every retry in the partition's window (the behaviour before
/// tiers). Each tier's topic (`<topic>.retry.<groupId>.<label>`) must be a legal name.
fn retry_tiers(
    c: &mut Checker<'_>,
    entry: &Dict,
    path: &str,
    topic: Option<&str>,
    group_id: Option<&str>,
) -> Vec<Duration> {
    let key = format!("{path}.retryTiers");
    let Some(value) = entry.get("retryTiers") else {
        return RETRY_TIERS_MS.iter().map(|&t| ms(t)).collect();
    };
    let Some(items) = c.array(&key, value) else {
        return Vec::new();
    };
    if items.len() > MAX_TIERS {
        c.problem(
            &key,
            Some(value),
            format!(
                "at most {MAX_TIERS} tiers (each is a topic and a consumer group), got {}",
                items.len()
            ),
        );
        return Vec::new();
    }
    let mut tiers: Vec<Duration> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_key = format!("{key}[{i}]");
        let Some(delay) = c.millis(&item_key, item, MIN_TIER_MS) else {
            continue;
        };
        if let Some(&before) = tiers.last()
            && delay <= before
        {
            c.problem(
                &item_key,
                Some(item),
                format!(
                    "tiers must be in increasing order, got {} ms after {} ms",
                    duration_ms(delay),
                    duration_ms(before)
                ),
            );
            continue;
        }
        // The tier topic names the group too: two entries on one topic must not read each
        // other's retries. A group id is any string to Kafka, a topic name is not.
        if let (Some(topic), Some(group_id)) = (topic, group_id) {
            let name = crate::config::tier_topic_name(topic, group_id, delay);
            if let Some(problem) = topic_name_problem(&name) {
                c.problem(
                    &item_key,
                    Some(item),
                    format!(
                        "retry tier topic '{name}': {problem} (the groupId is part of it; use a groupId of \
                         [a-zA-Z0-9._-], or retryTiers = [] to keep retries in the partition)"
                    ),
                );
            }
        }
        tiers.push(delay);
    }
    tiers
}

/// Every key of `circuitBreaker` (Go's names); all are required.
const BREAKER_KEYS: &[&str] = &[
    "breakPeriod",
    "recoverPeriod",
    "winSize",
    "minStats",
    "healthRate",
];

/// Longest `breakPeriod` or `recoverPeriod`, and `winSize`, in seconds.
const MAX_BREAKER_SECS: i128 = 3600;

/// `circuitBreaker`: a table with the five keys of [`BREAKER_KEYS`]; `None` when anything is
/// missing or invalid (reported). Go panicked on a missing key and accepted any `healthRate`
/// up to 100 (its check was `> 100` instead of `> 1`).
fn circuit_breaker(c: &mut Checker<'_>, key: &str, value: &Value) -> Option<BreakerSettings> {
    let table = c.table(key, value)?;
    c.unknown_entry_keys(table, key, BREAKER_KEYS);
    let seconds = |c: &mut Checker<'_>, name: &str, min: i128| {
        c.required(table, key, name, |c, k, v| {
            c.int_in::<u64>(k, v, min, MAX_BREAKER_SECS)
        })
    };
    let break_period = seconds(c, "breakPeriod", 0);
    let recover_period = seconds(c, "recoverPeriod", 0);
    let window = c.required(table, key, "winSize", |c, k, v| {
        c.int_in::<u32>(k, v, 1, MAX_BREAKER_SECS)
    });
    let min_stats = c.required(table, key, "minStats", |c, k, v| {
        c.int_in::<u32>(k, v, 1, i128::from(u32::MAX))
    });
    let health_rate = c.required(table, key, "healthRate", |c, k, v| {
        let rate = c.number(k, v)?;
        if rate > 0.0 && rate <= 1.0 {
            return Some(rate);
        }
        c.problem(
            k,
            Some(v),
            format!(
                "must be a success rate greater than 0 and at most 1, got {}",
                show_f64(rate)
            ),
        );
        None
    });
    Some(BreakerSettings {
        break_period: Duration::from_secs(break_period?),
        recover_period: Duration::from_secs(recover_period?),
        window_secs: window?,
        min_stats: min_stats?,
        health_rate: health_rate?,
    })
}

/// `rateLimit`: calls per second for the whole entry, fractions allowed (Go truncated to int).
fn rate_limit(c: &mut Checker<'_>, key: &str, value: &Value) -> Option<f64> {
    let rate = c.number(key, value)?;
    let shown = show_f64(rate);
    let message = if rate <= 0.0 {
        format!("must be greater than 0 calls per second, got {shown}")
    } else if rate < MIN_RATE {
        format!("must be at least {MIN_RATE} calls per second, got {shown}")
    } else if rate > MAX_RATE {
        format!(
            "must be at most {} calls per second, got {shown}",
            show_f64(MAX_RATE)
        )
    } else {
        return Some(rate);
    };
    c.problem(key, Some(value), message);
    None
}

/// `sessionTimeout` and `heartbeatInterval` (default a third of the session timeout, and always
/// shorter than it, or the member would be evicted between two heartbeats).
fn membership(c: &mut Checker<'_>, entry: &Dict, path: &str) -> (Duration, Duration) {
    let session = c.optional_checked(entry, path, "sessionTimeout", SESSION_TIMEOUT, |c, key, v| {
        c.millis_in(key, v, MIN_SESSION_MS, MAX_SESSION_MS)
    });
    let third = ms(duration_ms(session.unwrap_or(SESSION_TIMEOUT)) / 3);
    let heartbeat = c.optional_checked(entry, path, "heartbeatInterval", third, |c, key, v| {
        c.millis(key, v, 1)
    });
    if let (Some(session), Some(heartbeat)) = (session, heartbeat)
        && heartbeat >= session
    {
        out_of_order(
            c,
            entry,
            path,
            ("heartbeatInterval", heartbeat),
            "less than",
            ("sessionTimeout", session),
        );
    }
    (session.unwrap_or(SESSION_TIMEOUT), heartbeat.unwrap_or(third))
}

/// `stallAfter`: default the larger of [`STALL_AFTER`] and twice the worst time of one call's
/// attempts (`timeout` × (`retries` + 1)), so that a slow but healthy target is not reported
/// as a stall. A value below that worst time is allowed (a warning): it reports every call
/// that uses its attempts as a stall.
fn stall_after(c: &mut Checker<'_>, entry: &Dict, path: &str, timeout: Duration, retries: u32) -> Duration {
    let attempts = timeout.saturating_mul(retries.saturating_add(1));
    let default = STALL_AFTER.max(attempts.saturating_mul(2));
    let stall_after = c.optional(entry, path, "stallAfter", default, |c, key, value| {
        c.millis(key, value, 1)
    });
    if stall_after < attempts {
        let key = format!("{path}.stallAfter");
        let message = format!(
            "{key} ({} ms) is below timeout × attempts ({} ms): a call that only uses its \
             attempts will be reported as a stall",
            duration_ms(stall_after),
            duration_ms(attempts)
        );
        c.warn(&key, entry.get("stallAfter"), message);
    }
    stall_after
}

/// `retryBackoff` and `retryBackoffMax`, the cap, which must not be below the first delay.
fn retry_backoff(c: &mut Checker<'_>, entry: &Dict, path: &str) -> (Duration, Duration) {
    const BACKOFF: Duration = ms(200);
    const BACKOFF_MAX: Duration = ms(30_000);
    // 0 retries at once; the entry's rateLimit still paces the attempts.
    let first = c.optional_checked(entry, path, "retryBackoff", BACKOFF, |c, key, v| {
        c.millis(key, v, 0)
    });
    let max = c.optional_checked(entry, path, "retryBackoffMax", BACKOFF_MAX, |c, key, v| {
        c.millis(key, v, 0)
    });
    if let (Some(first), Some(max)) = (first, max)
        && max < first
    {
        out_of_order(
            c,
            entry,
            path,
            ("retryBackoffMax", max),
            "at least",
            ("retryBackoff", first),
        );
    }
    (first.unwrap_or(BACKOFF), max.unwrap_or(BACKOFF_MAX))
}

/// Reports that `key` (value `got`) must be `relation` `other` (value `bound`). The key may be
/// absent, its default at fault: then the message says so.
fn out_of_order(
    c: &mut Checker<'_>,
    entry: &Dict,
    path: &str,
    (key, got): (&str, Duration),
    relation: &str,
    (other, bound): (&str, Duration),
) {
    let value = entry.get(key);
    let default = if value.is_none() { " (the default)" } else { "" };
    c.problem(
        &format!("{path}.{key}"),
        value,
        format!(
            "must be {relation} {other} ({}), got {}{default}",
            duration_ms(bound),
            duration_ms(got)
        ),
    );
}

/// `deadLetterTopic`: default `<topic>.dlq`; `""` turns dead-lettering off (`None`). The name
/// must be a legal topic name other than the entry's own topic; bigpipe creates it, so it need
/// not be in `kafka.topics`. `topic` is `None` when the entry's topic is invalid (reported).
fn dead_letter_topic(c: &mut Checker<'_>, entry: &Dict, path: &str, topic: Option<&str>) -> Option<String> {
    let key = format!("{path}.deadLetterTopic");
    let value = entry.get("deadLetterTopic");
    let name = match value {
        Some(value) => c.string(&key, value)?,
        None => format!("{}{DEAD_LETTER_SUFFIX}", topic?),
    };
    if name.is_empty() {
        return None;
    }
    let problem = if Some(name.as_str()) == topic {
        Some(format!(
            "must differ from the entry's topic, got '{name}' (\"\" turns dead-lettering off)"
        ))
    } else {
        topic_name_problem(&name)
    };
    let Some(problem) = problem else {
        return Some(name);
    };
    let problem = match value {
        Some(_) => problem,
        None => format!(
            "{problem} (the default, '<topic>{DEAD_LETTER_SUFFIX}'); set deadLetterTopic, or \"\" \
             to turn dead-lettering off"
        ),
    };
    c.problem(&key, value, problem);
    None
}

/// `successCodes`: a non-empty array of statuses, ranges and classes (`rules::status_range`).
fn success_codes(c: &mut Checker<'_>, key: &str, value: &Value) -> Option<Vec<String>> {
    let items = c.array(key, value)?;
    if items.is_empty() {
        c.problem(
            key,
            Some(value),
            "must list at least one status, e.g. [\"2xx\"]; with none every call would fail",
        );
        return None;
    }
    c.each_string(key, items, |code| {
        status_range(code).map(|_| code.to_ascii_lowercase())
    })
}

/// Whole milliseconds of a validated duration (at most a week, so the conversion never fails).
fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
