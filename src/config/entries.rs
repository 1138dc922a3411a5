//! The array keys `kafka.topics` and `kafka.producer.acl`, and the reference check every ACL and
//! consumer topic goes through (it must be a configured topic). `kafka.consumer.list` is read
//! in `consumer`.

use std::collections::{HashMap, HashSet};

use figment::value::{Dict, Value};

use super::reader::{Checker, lookup};
use super::rules::{MAX_PARTITIONS, topic_name_problem};
use super::settings::{AclEntry, TopicSettings};
use crate::policy::{Target, Targets};

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

/// Reads `kafka.producer.acl`: `[{name, secret, topic}]`, default empty.
pub(crate) fn acl(c: &mut Checker<'_>, root: &Dict, topics: &TopicNames) -> Vec<AclEntry> {
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
        c.unknown_entry_keys(entry, &path, &["name", "secret", "topic", "targets"]);
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
        // Go never compared the secret, so an empty one was harmless; now it would be a password
        // anyone can guess.
        let secret = c.required(entry, &path, "secret", Checker::non_empty_string);
        let topic = c.required(entry, &path, "topic", |c, key, value| {
            known_topic(c, key, value, topics)
        });
        let targets = acl_targets(c, entry, &path, name.as_deref());
        if let (Some(name), Some(secret), Some(topic), Some(targets)) = (name, secret, topic, targets) {
            acl.push(AclEntry {
                name,
                secret,
                topic,
                targets,
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
