//! The config reader: arbitrary documents, and arbitrary values for the keys it knows, never
//! panic, and every problem names a key; a generated valid configuration loads.

use proptest::prelude::*;
use serde_json::Value;

use super::{config, json_value, nasty_string};
use crate::config::{ConfigError, Format, load_from_str, load_with_env};

/// Every top-level section bigpipe reads; a problem about a parsed document names a key
/// under one of them (or an unknown key the document wrote).
const ROOTS: &[&str] = &["demo", "log", "kafka", "http", "delivery", "shutdown"];

/// Keys as the shipped `conf/bigpipe.toml` writes them (flat, dotted): the validator's own
/// list, so every key added there is exercised here too.
const KEYS: &[&str] = crate::config::KNOWN_KEYS;

/// Keys of the array entries (`kafka.topics`, `kafka.producer.acl`, `kafka.consumer.list`).
const ENTRY_KEYS: &[&str] = &[
    "name",
    "partitions",
    "secret",
    "topic",
    "groupId",
    "rateLimit",
    "timeout",
    "retries",
    "concurrency",
    "successCodes",
    "retryBackoff",
    "retryBackoffMax",
    "retryAfterMax",
    "retryTiers",
    "retryFor",
    "hostConcurrency",
    "deadLetterTopic",
    "autoOffsetReset",
    "sessionTimeout",
    "rebalanceTimeout",
    "assignor",
    "prefetchRecords",
    "prefetchBytes",
    "fetchMaxWait",
    "commitInterval",
    "drainTimeout",
    "deadLetterTimeout",
    "stallAfter",
];

/// A TOML value as text: numbers at the edges, strings, booleans, dates, arrays, inline tables.
fn toml_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        prop::sample::select(vec![
            "0",
            "-1",
            "1",
            "65535",
            "65536",
            "4294967296",
            "1e400",
            "nan",
            "-inf",
            "0.5",
            "1.0",
            "true",
            "false",
            "\"\"",
            "\"2xx\"",
            "\"earliest\"",
            "\"sticky\"",
            "\"debug\"",
            "\"kafka\"",
            "1979-05-27T07:32:00Z",
            "07:32:00",
            "1979-05-27",
            "'literal'",
            "\"\"\"multi\nline\"\"\"",
        ])
        .prop_map(str::to_owned),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        nasty_string(12).prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((prop::sample::select(ENTRY_KEYS), inner), 0..4).prop_map(|v| {
                let fields: Vec<String> = v.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", fields.join(", "))
            }),
        ]
    })
}

/// One line of a TOML-ish document: a known key (flat or in its section) or an entry key with
/// any value, an array-of-tables header, or junk.
fn toml_line() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (prop::sample::select(KEYS), toml_value()).prop_map(|(k, v)| format!("{k} = {v}")),
        3 => (prop::sample::select(ENTRY_KEYS), toml_value()).prop_map(|(k, v)| format!("{k} = {v}")),
        2 => prop::sample::select(vec![
            "[[kafka.topics]]", "[[kafka.producer.acl]]", "[[kafka.consumer.list]]", "[log]", "[kafka]",
            "[kafka.producer]", "[http.server]", "[delivery]", "[shutdown]", "[kafka.consumer]",
        ])
        .prop_map(str::to_owned),
        1 => nasty_string(30),
    ]
}

/// Each problem names a key: a non-empty key and message, and the `<key>: <problem>` line.
fn every_problem_names_a_key(e: &ConfigError) -> Result<(), TestCaseError> {
    prop_assert!(!e.problems.is_empty());
    for p in &e.problems {
        prop_assert!(
            !p.key.trim().is_empty() && !p.message.trim().is_empty(),
            "{:?}",
            p
        );
        let line = format!("{}: {}", p.key, p.message);
        prop_assert!(e.to_string().contains(&line), "{}", line);
    }
    Ok(())
}

/// Each problem of a document that parsed names a key under a known section, the document's
/// own unknown key, or the entry it concerns; never just the document.
fn problems_name_document_keys(e: &ConfigError, label: &str) -> Result<(), TestCaseError> {
    every_problem_names_a_key(e)?;
    for p in &e.problems {
        prop_assert!(p.key != label, "a parsed document's problem names no key: {}", p);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn arbitrary_text_never_panics(text in nasty_string(200), json in any::<bool>()) {
        let format = if json { Format::Json } else { Format::Toml };
        if let Err(e) = load_from_str(&text, format) {
            every_problem_names_a_key(&e)?;
        }
    }

    #[test]
    fn toml_documents_never_panic(lines in prop::collection::vec(toml_line(), 0..16)) {
        let text = lines.join("\n");
        if let Err(e) = load_from_str(&text, Format::Toml) {
            every_problem_names_a_key(&e)?;
        }
    }

    /// The Go version's flat-key JSON with any value for each known key.
    #[test]
    fn any_value_for_known_keys_is_a_named_problem(
        pairs in prop::collection::vec((prop::sample::select(KEYS), json_value(ENTRY_KEYS)), 1..5),
    ) {
        let doc: serde_json::Map<String, Value> = pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let text = Value::Object(doc.clone()).to_string();
        if let Err(e) = load_from_str(&text, Format::Json) {
            problems_name_document_keys(&e, "<json>")?;
            for p in &e.problems {
                let root = p.key.split(['.', '[']).next().unwrap_or_default();
                prop_assert!(ROOTS.contains(&root) || doc.keys().any(|k| p.key.starts_with(k.as_str())), "{}", p);
            }
        }
    }

    /// Array entries (topics, ACLs, consumer entries) holding any values.
    #[test]
    fn any_entry_values_are_named_problems(
        list in prop::sample::select(vec!["kafka.topics", "kafka.producer.acl", "kafka.consumer.list"]),
        entries in prop::collection::vec(prop::collection::vec((prop::sample::select(ENTRY_KEYS), json_value(ENTRY_KEYS)), 0..6), 1..3),
    ) {
        let entries: Vec<Value> = entries
            .into_iter()
            .map(|e| Value::Object(e.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
            .collect();
        let text = serde_json::json!({ list: entries }).to_string();
        if let Err(e) = load_from_str(&text, Format::Json) {
            problems_name_document_keys(&e, "<json>")?;
        }
    }

    /// `BIGPIPE_*` overrides of known keys with any value, in figment's env syntax or not.
    #[test]
    fn any_env_override_is_a_named_problem(
        vars in prop::collection::vec(
            (
                prop::sample::select(KEYS),
                prop_oneof![
                    nasty_string(16),
                    prop::sample::select(vec![
                        "[a, b", "[1, [2, {x = 1}]]", "{x=1}", "[", "]", "-1", "99999999999999999999", "true",
                        "\"quoted\"", "", " ", "1.5", "nan", "[[kafka.topics]]",
                    ])
                    .prop_map(str::to_owned),
                ],
            ),
            1..4,
        ),
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bigpipe.toml");
        std::fs::write(&path, "").expect("write config");
        let env: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (format!("BIGPIPE_{}", k.replace('.', "_").to_ascii_uppercase()), v.clone()))
            .collect();
        if let Err(e) = load_with_env(&path, env) {
            problems_name_document_keys(&e, &path.display().to_string())?;
        }
    }

    /// A configuration generated within the documented ranges loads, with its values.
    #[test]
    fn generated_valid_configs_load(
        level in prop::sample::select(vec!["debug", "info", "warn", "error"]),
        port in 1u16..,
        partitions in 1i32..64,
        topic in "[a-z][a-z0-9_-]{0,20}",
        acl in "[a-z][a-z0-9-]{0,12}",
        secret in "[A-Za-z0-9]{24,40}",
        group in "[A-Za-z][A-Za-z0-9_-]{0,12}",
        rate in 1u32..10_000,
        retries in 0u32..20,
        concurrency in 1u32..64,
        timeout in 1u32..120_000,
        linger in 0u32..1000,
        ack in prop::sample::select(vec!["queue", "kafka"]),
    ) {
        let text = format!(
            "[log]\nlevel = \"{level}\"\n\
             [kafka]\nbootstrap.servers = \"127.0.0.1:9092\"\n\
             [[kafka.topics]]\nname = \"{topic}\"\npartitions = {partitions}\n\
             [kafka.producer]\nlinger.ms = {linger}\nack.mode = \"{ack}\"\n\
             [[kafka.producer.acl]]\nname = \"{acl}\"\nsecret = \"{secret}\"\ntopic = \"{topic}\"\n\
             [[kafka.consumer.list]]\ntopic = \"{topic}\"\ngroupId = \"{group}\"\nrateLimit = {rate}\n\
             timeout = {timeout}\nretries = {retries}\nconcurrency = {concurrency}\n\
             [http.server]\nport = {port}\n"
        );
        let settings = load_from_str(&text, Format::Toml);
        prop_assert!(settings.is_ok(), "{}\n{}", text, settings.err().map(|e| e.to_string()).unwrap_or_default());
        let settings = settings.expect("checked");
        prop_assert_eq!(settings.http.port, port);
        prop_assert_eq!(settings.kafka.topics.len(), 1);
    }
}
