//! The array keys `kafka.topics` and `kafka.producer.acl`, and the reference check every ACL and
//! consumer topic goes through (it must be a configured topic). `kafka.consumer.list` is read
//! in `consumer`.

use std::collections::{HashMap, HashSet};

use figment::value::{Dict, Value};

use std::path::Path;

use super::reader::{Checker, lookup, show_f64};
use super::rules::{MAX_PARTITIONS, MAX_QUOTA_BURST, MAX_QUOTA_RATE, MIN_QUOTA_RATE, topic_name_problem};
use super::secret::{self, Secret};
use super::settings::{AclEntry, AclQuota, TopicSettings};
use super::values::targets::{Target, Targets};

/// Names of the configured topics, for checking references to them.
///
/// `None` when `kafka.topics` itself is broken (not an array, an entry without a name): then
/// "topic 'x' is not in kafka.topics" would be noise on top of the real problem, so it is skipped.
pub(crate) type TopicNames = Option<HashSet<String>>;

/// Reads `kafka.topics`: `[{name, partitions, replicationFactor?}]`, default empty.
pub(crate) fn topics(c: &mut Checker<'_>, root: &Dict) -> (Vec<TopicSettings>, TopicNames) {
    const KEY: &str = "kafka.topics";
    let Some(items) = array_at(c, root, KEY) else {
        let names = lookup(root, KEY).is_none().then(HashSet::new);
        return (Vec::new(), names);
    };
    let mut topics = Vec::new();
    let mut names = Some(HashSet::new());
    let mut first_seen: HashMap<String, String> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{KEY}[{i}]");
        let Some(entry) = c.table(&path, item) else {
            names = None;
            continue;
        };
        c.unknown_entry_keys(entry, &path, &["name", "partitions", "replicationFactor"]);
        let name = c.required(entry, &path, "name", |c, key, value| {
            let name = c.string(key, value)?;
            // Go let a duplicate silently replace the earlier entry; here it is an error.
            if let Some(first) = first_seen.get(&name) {
                c.problem(
                    key,
                    Some(value),
                    format!("duplicate topic '{name}', first defined at {first}"),
                );
            } else {
                first_seen.insert(name.clone(), path.clone());
            }
            if let Some(problem) = topic_name_problem(&name) {
                c.problem(key, Some(value), problem);
            }
            Some(name)
        });
        let partitions = c.required(entry, &path, "partitions", |c, key, value| {
            c.int_in::<i32>(key, value, 1, MAX_PARTITIONS)
        });
        let replication_factor = c.optional(entry, &path, "replicationFactor", -1, |c, key, value| {
            let factor = c.int_in::<i16>(key, value, -1, i128::from(i16::MAX))?;
            if factor == 0 {
                c.problem(
                    key,
                    Some(value),
                    "must be -1 (broker default) or at least 1, got 0",
                );
                return None;
            }
            Some(factor)
        });
        match (name, &mut names) {
            (Some(name), Some(set)) => {
                set.insert(name.clone());
                if let Some(partitions) = partitions {
                    topics.push(TopicSettings {
                        name,
                        partitions,
                        replication_factor,
                    });
                }
            }
            (None, _) => names = None,
            (Some(_), None) => {}
        }
    }
    (topics, names)
}

/// Reads `kafka.producer.acl`: `[{name, secret | secret_file, topic, rate?, burst?}]`, default
/// empty. The whole section is read [redacted](Checker::redacted): it holds secrets.
///
/// `demo` allows the README's sample secrets (see [`secret::SAMPLE_SECRETS`]).
pub(crate) fn acl(c: &mut Checker<'_>, root: &Dict, topics: &TopicNames, demo: bool) -> Vec<AclEntry> {
    c.redacted(|c| acl_entries(c, root, topics, demo))
}

fn acl_entries(c: &mut Checker<'_>, root: &Dict, topics: &TopicNames, demo: bool) -> Vec<AclEntry> {
    const KEY: &str = "kafka.producer.acl";
    let Some(items) = array_at(c, root, KEY) else {
        return Vec::new();
    };
    let mut acl = Vec::new();
    let mut first_seen: HashMap<String, String> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{KEY}[{i}]");
        let Some(entry) = c.table(&path, item) else {
            continue;
        };
        c.unknown_entry_keys(
            entry,
            &path,
            &[
                "name",
                "secret",
                "secret_file",
                "topic",
                "targets",
                "rate",
                "burst",
            ],
        );
        let name = c.required(entry, &path, "name", |c, key, value| {
            let name = c.non_empty_string(key, value)?;
            // Go: last duplicate wins silently, so a copy-paste error changed a caller's topic.
            if let Some(first) = first_seen.get(&name) {
                c.problem(
                    key,
                    Some(value),
                    format!("duplicate ACL name '{name}', first defined at {first}"),
                );
                return None;
            }
            first_seen.insert(name.clone(), path.clone());
            Some(name)
        });
        let secret = secret_of(c, entry, &path, name.as_deref(), demo);
        let topic = c.required(entry, &path, "topic", |c, key, value| {
            known_topic(c, key, value, topics)
        });
        let targets = acl_targets(c, entry, &path, name.as_deref());
        let quota = quota_of(c, entry, &path);
        if let (Some(name), Some(secret), Some(topic), Some(targets), Some(quota)) =
            (name, secret, topic, targets, quota)
        {
            acl.push(AclEntry {
                name,
                secret,
                topic,
                targets,
                quota,
            });
        }
    }
    acl
}

/// An ACL entry's `targets`: `Some(None)` when absent (warned: the caller may aim bigpipe at
/// anything the global policy allows), `None` when invalid (problem recorded).
fn acl_targets(c: &mut Checker<'_>, entry: &Dict, path: &str, name: Option<&str>) -> Option<Option<Targets>> {
    let key = format!("{path}.targets");
    let Some(value) = entry.get("targets") else {
        c.warn(
            &key,
            None,
            format!(
                "{path} ({}) has no targets: its callers may send calls to any address \
                 delivery.allow/deny permit; list the URL prefixes, hosts or CIDRs it calls",
                name.unwrap_or("?")
            ),
        );
        return Some(None);
    };
    let items = c.array(&key, value)?;
    if items.is_empty() {
        c.problem(
            &key,
            Some(value),
            "is empty, which would refuse every call; remove the key or list the destinations",
        );
        return None;
    }
    let targets = c.each_string(&key, items, |s| s.parse::<Target>())?;
    Some(Some(Targets::new(targets)))
}

/// The entry's secret: `secret` (a value or a `${NAME}` reference) or `secret_file`, exactly
/// one. A README sample secret is refused unless `demo`.
fn secret_of(
    c: &mut Checker<'_>,
    entry: &Dict,
    path: &str,
    name: Option<&str>,
    demo: bool,
) -> Option<Secret> {
    let key = format!("{path}.secret");
    let file_key = format!("{path}.secret_file");
    let (resolved, used_key) = match (entry.get("secret"), entry.get("secret_file")) {
        (Some(_), Some(value)) => {
            c.problem(
                &file_key,
                Some(value),
                format!("set either {key} or {file_key}, not both"),
            );
            return None;
        }
        (None, None) => {
            c.problem(
                &key,
                None,
                format!("required key is missing (or set {file_key} to a file holding the secret)"),
            );
            return None;
        }
        (Some(value), None) => {
            // Go never compared the secret, so an empty one was harmless; now it would be a
            // password anyone can guess.
            let raw = c.non_empty_string(&key, value)?;
            (secret::from_value(&raw, c.vars()).map_err(|e| (e, value)), key)
        }
        (None, Some(value)) => {
            let raw = c.non_empty_string(&file_key, value)?;
            (
                secret::from_file(Path::new(&raw)).map_err(|e| (e, value)),
                file_key,
            )
        }
    };
    let secret = match resolved {
        Ok(secret) => secret,
        Err((e, value)) => {
            c.problem(&used_key, Some(value), e.to_string());
            return None;
        }
    };
    if !demo && secret::is_sample(&secret) {
        let who = name.map_or_else(String::new, |n| format!("ACL '{n}' "));
        c.problem(
            &used_key,
            entry.get("secret").or_else(|| entry.get("secret_file")),
            format!(
                "{who}uses a sample secret printed in the README, which anyone can read: give it a \
                 secret of your own (secret_file = \"/path\" or secret = \"${{ENV_NAME}}\"), or set \
                 demo = true (env BIGPIPE_DEMO=true) to run the demo"
            ),
        );
        return None;
    }
    Some(secret)
}

/// The entry's ingest quota: `rate` calls per second (0.001 to 1000000) with `burst` (1 to
/// 1000000, default `rate` rounded up). No `rate`: no quota. `None` when either is invalid.
fn quota_of(c: &mut Checker<'_>, entry: &Dict, path: &str) -> Option<Option<AclQuota>> {
    let rate = c.optional_checked(entry, path, "rate", None, |c, key, value| {
        let rate = c.number(key, value)?;
        if !(MIN_QUOTA_RATE..=MAX_QUOTA_RATE).contains(&rate) {
            c.problem(
                key,
                Some(value),
                format!(
                    "must be from {MIN_QUOTA_RATE} to {MAX_QUOTA_RATE} calls per second, got {}",
                    show_f64(rate)
                ),
            );
            return None;
        }
        Some(Some(rate))
    })?;
    let burst = c.optional_checked(entry, path, "burst", None, |c, key, value| {
        c.int_in::<u32>(key, value, 1, i128::from(MAX_QUOTA_BURST))
            .map(Some)
    })?;
    match (rate, burst) {
        (None, None) => Some(None),
        (None, Some(_)) => {
            c.problem(
                &format!("{path}.burst"),
                entry.get("burst"),
                format!("needs {path}.rate (calls per second) as well"),
            );
            None
        }
        (Some(rate), burst) => Some(Some(AclQuota {
            rate,
            // In range: rate is at most 1000000.
            burst: burst.unwrap_or_else(|| (rate.ceil() as u32).max(1)),
        })),
    }
}

pub(crate) fn known_topic(
    c: &mut Checker<'_>,
    key: &str,
    value: &Value,
    topics: &TopicNames,
) -> Option<String> {
    let topic = c.non_empty_string(key, value)?;
    match topics {
        Some(names) if !names.contains(&topic) => {
            c.problem(
                key,
                Some(value),
                format!("topic '{topic}' is not in kafka.topics"),
            );
            None
        }
        _ => Some(topic),
    }
}

pub(crate) fn array_at<'v>(c: &mut Checker<'_>, root: &'v Dict, key: &str) -> Option<&'v [Value]> {
    let value = lookup(root, key)?;
    c.array(key, value)
}
