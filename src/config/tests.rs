//! End-to-end tests of `config`: text (and environment) in, `Settings` or problems out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::secret;
use super::values::forward::ForwardRules;
use super::values::net::{AddressPolicy, Rule};
use super::values::signing::SigningKey;
use super::*;

// ---------------------------------------------------------------------------------------------
// helpers

fn ok(text: &str, format: Format) -> Settings {
    match load_from_str(text, format) {
        Ok(settings) => settings,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

fn toml(text: &str) -> Settings {
    ok(text, Format::Toml)
}

fn problems(text: &str, format: Format) -> Vec<String> {
    match load_from_str(text, format) {
        Ok(settings) => panic!("expected problems, got {settings:?}"),
        Err(e) => e.problems.iter().map(Problem::to_string).collect(),
    }
}

fn toml_problems(text: &str) -> Vec<String> {
    problems(text, Format::Toml)
}

/// Asserts that `text` is rejected with exactly the one problem `expected`.
fn assert_only_problem(text: &str, expected: &str) {
    assert_eq!(toml_problems(text), vec![expected.to_owned()]);
}

fn with_env(text: &str, format: Format, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let env = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    from_text(text, format, "<test>", env)
}

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conf").join(name)
}

/// The variables the shipped files take their ACL secrets from (scripts/run.sh sets them).
const SHIPPED_SECRETS: [(&str, &str); 2] = [
    ("ACL_SYSTEM_1_SECRET", "first-generated-secret"),
    ("ACL_SYSTEM_2_SECRET", "second-generated-secret"),
];

/// Loads a shipped file with only its secret variables as environment, so stray BIGPIPE_*
/// variables of whoever runs the tests cannot change the outcome.
fn load_shipped(name: &str) -> Settings {
    match load_with_env(&shipped(name), SHIPPED_SECRETS) {
        Ok(settings) => settings,
        Err(e) => panic!("{name} does not load:\n{e}"),
    }
}

const TOPIC_TEST: &str = "[[kafka.topics]]\nname = \"test\"\npartitions = 3\n";

/// The required keys of a consumer entry on topic "test".
const REQUIRED: &str = "topic = \"test\"\ngroupId = \"G\"\nrateLimit = 1\n";

fn consumer_entry(fields: &str) -> String {
    format!("{TOPIC_TEST}[[kafka.consumer.list]]\n{fields}\n")
}

/// `REQUIRED` without the line setting `key`, so that `key` can be set to something else.
fn required_without(key: &str) -> String {
    REQUIRED
        .lines()
        .filter(|line| !line.starts_with(&format!("{key} = ")))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// The one consumer of a config with `REQUIRED` plus `fields`.
fn consumer(fields: &str) -> ConsumerSettings {
    match toml(&consumer_entry(&format!("{REQUIRED}{fields}")))
        .consumers
        .pop()
    {
        Some(consumer) => consumer,
        None => panic!("no consumer built from {fields}"),
    }
}

/// Asserts that `REQUIRED` plus `fields` is rejected with exactly the one problem `expected`.
fn assert_only_consumer_problem(fields: &str, expected: &str) {
    assert_only_problem(&consumer_entry(&format!("{REQUIRED}{fields}")), expected);
}

// ---------------------------------------------------------------------------------------------
// shipped files

#[test]
fn shipped_go_json_loads_with_the_go_values() {
    let s = load_shipped("bigpipe.json");
    assert_eq!(s.http.port, 10086);
    assert_eq!(s.http.read_timeout, Duration::from_millis(5000));
    assert_eq!(s.http.write_timeout, Duration::from_millis(5000));
    assert_eq!(s.producer.queue_calls, 500_000);
    assert_eq!(s.log.level, slog::Level::Debug);
    assert_eq!(s.log.directory, Some(PathBuf::from("./logs")));
    assert_eq!(s.kafka.bootstrap_servers, vec!["localhost:9092"]);
    assert_eq!(
        s.kafka.topics,
        vec![TopicSettings {
            name: "test".into(),
            partitions: 3,
            replication_factor: -1
        }]
    );
    let acl: Vec<_> = s
        .producer
        .acl
        .iter()
        .map(|a| (a.name.as_str(), a.secret.expose(), a.topic.as_str()))
        .collect();
    assert_eq!(
        acl,
        vec![
            ("system-1", "first-generated-secret", "test"),
            ("system-2", "second-generated-secret", "test")
        ]
    );
    let groups: Vec<_> = s.consumers.iter().map(|c| c.group_id.as_str()).collect();
    assert_eq!(groups, vec!["G1", "G2"]);
    for c in &s.consumers {
        assert_eq!(c.topic, "test");
        assert_eq!(c.rate_limit, 100.0);
        assert_eq!(c.timeout, Duration::from_millis(3000));
        assert_eq!(c.retries, 2);
        assert_eq!(c.concurrency, 5);
    }
}

#[test]
fn shipped_go_json_takes_the_defaults_of_the_keys_go_did_not_have() {
    let s = load_shipped("bigpipe.json");
    let defaults = toml("");
    // Except the mock target allowed for the quick start, as in bigpipe.toml.
    let delivery = DeliverySettings {
        destinations: defaults.delivery.destinations.clone(),
        ..s.delivery.clone()
    };
    assert_eq!(delivery, defaults.delivery);
    assert_eq!(s.shutdown, defaults.shutdown);
    for c in &s.consumers {
        let expected = ConsumerSettings {
            group_id: c.group_id.clone(),
            rate_limit: 100.0,
            ..consumer("")
        };
        assert_eq!(c, &expected);
    }
}

#[test]
fn shipped_go_json_warns_only_about_the_ignored_producer_retries() {
    // The Go HEAD file has one key bigpipe ignores; kafka.producer.channel.size was removed from
    // it in Go commit f39ec0e and is covered by `legacy_channel_size_is_ignored_with_a_warning`.
    let s = load_shipped("bigpipe.json");
    assert_eq!(
        s.warnings,
        vec![
            "kafka.producer.retries is ignored: produce errors are retried until \
             kafka.producer.message.timeout.ms"
        ]
    );
}

#[test]
fn shipped_toml_loads_without_warnings() {
    let s = load_shipped("bigpipe.toml");
    assert_eq!(s.warnings, Vec::<String>::new());
    assert_eq!(s.kafka.bootstrap_servers, vec!["127.0.0.1:9092"]);
    assert_eq!(s.log.level, slog::Level::Info);
    assert_eq!(s.log.directory, None);
    assert_eq!(s.http.port, 10086);
}

#[test]
fn shipped_toml_and_go_json_describe_the_same_pipeline() {
    let toml = load_shipped("bigpipe.toml");
    let json = load_shipped("bigpipe.json");
    assert_eq!(toml.kafka.topics, json.kafka.topics);
    assert_eq!(toml.producer.acl, json.producer.acl);
    assert_eq!(toml.consumers, json.consumers);
    assert_eq!(toml.http, json.http);
    assert_eq!(toml.delivery, json.delivery);
    assert_eq!(toml.shutdown, json.shutdown);
    assert_eq!(toml.producer.queue_calls, json.producer.queue_calls);
}

#[test]
fn shipped_toml_spells_out_every_default() {
    // The shipped file documents the defaults; if they drift apart, one of them is wrong.
    let shipped = load_shipped("bigpipe.toml");
    let defaults = toml("");
    assert_eq!(shipped.log, defaults.log);
    assert_eq!(shipped.http, defaults.http);
    // The one delivery key set on purpose: the quick start's mock target is allowed.
    let shipped_delivery = DeliverySettings {
        destinations: defaults.delivery.destinations.clone(),
        ..shipped.delivery.clone()
    };
    assert_eq!(shipped_delivery, defaults.delivery);
    assert_eq!(
        shipped.delivery.destinations,
        AddressPolicy::new(vec!["127.0.0.1:10086".parse().unwrap()], vec![])
    );
    assert_eq!(shipped.shutdown, defaults.shutdown);
    assert_eq!(shipped.kafka.bootstrap_servers, defaults.kafka.bootstrap_servers);
    assert_eq!(shipped.kafka.client_id, defaults.kafka.client_id);
    assert_eq!(shipped.kafka.request_timeout, defaults.kafka.request_timeout);
    assert_eq!(shipped.kafka.metadata_refresh, defaults.kafka.metadata_refresh);
    assert_eq!(shipped.kafka.group_instance_id, defaults.kafka.group_instance_id);
    let strip = |p: &ProducerSettings| ProducerSettings {
        acl: Vec::new(),
        ..p.clone()
    };
    assert_eq!(strip(&shipped.producer), strip(&defaults.producer));
}

// ---------------------------------------------------------------------------------------------
// defaults and formats

#[test]
fn absent_keys_take_their_defaults() {
    let s = toml("");
    assert_eq!(
        s.log,
        LogSettings {
            level: slog::Level::Info,
            directory: None,
            queue_size: 8192
        }
    );
    assert_eq!(
        s.kafka,
        KafkaSettings {
            bootstrap_servers: vec!["127.0.0.1:9092".into()],
            client_id: "bigpipe".into(),
            request_timeout: Duration::from_millis(10_000),
            metadata_refresh: Duration::from_millis(30_000),
            group_instance_id: None,
            topics: vec![],
            security: KafkaSecurity::default(),
        }
    );
    assert_eq!(
        s.producer,
        ProducerSettings {
            acl: vec![],
            linger: Duration::from_millis(5),
            batch_bytes: 1_048_576,
            queue_calls: 500_000,
            queue_bytes: 268_435_456,
            queue_reserved: 0.5,
            message_timeout: Duration::from_millis(300_000),
            default_ack: AckMode::Queue,
            ack_timeout: Duration::from_millis(30_000),
        }
    );
    assert_eq!(s.consumers, vec![]);
    assert_eq!(
        s.http,
        HttpSettings {
            host: "127.0.0.1".into(),
            port: 10086,
            read_timeout: Duration::from_millis(5000),
            write_timeout: Duration::from_millis(5000),
            body_limit: 1_040_384,
            workers: 0,
            keep_alive: Duration::from_millis(5000),
            max_connections: 4096,
            max_connection_rate: 2000,
            schedule_max: Duration::from_millis(604_800_000),
            batch_max_calls: 1000,
            idempotency: IdempotencySettings {
                topic: Some("bigpipe.idempotency".into()),
                partitions: 3,
                window: Duration::from_millis(86_400_000),
                max_keys: 1_000_000,
            },
            admin: AdminSettings {
                host: "127.0.0.1".into(),
                port: 10087,
                token: None,
            },
        }
    );
    assert_eq!(
        s.delivery,
        DeliverySettings {
            threads: 2,
            connect_timeout: Duration::from_millis(3000),
            keep_alive: Duration::from_millis(15_000),
            max_response_body: 65_536,
            drop_headers: vec![],
            forward_headers: ForwardRules::default(),
            tls_ca: None,
            destinations: AddressPolicy::strict(),
        }
    );
    assert_eq!(
        s.shutdown,
        ShutdownSettings {
            grace: Duration::from_millis(30_000)
        }
    );
    assert_eq!(s.metrics, MetricsSettings { max_hosts: 100 });
    assert_eq!(s.control.topic.as_deref(), Some("bigpipe.control"));
    assert!(s.warnings.is_empty());
}

#[test]
fn the_control_topic_is_a_legal_own_topic_or_off() {
    assert_eq!(toml("admin.control.topic = \"\"").control.topic, None);
    assert_eq!(
        toml("admin.control.topic = \"ops.ctl\"").control.topic.as_deref(),
        Some("ops.ctl")
    );
    let found = toml_problems("admin.control.topic = \"a b\"");
    assert!(
        found.iter().any(|p| p.contains("admin.control.topic")),
        "{found:?}"
    );
    let found =
        toml_problems("admin.control.topic = \"calls\"\n[[kafka.topics]]\nname = \"calls\"\npartitions = 1");
    assert!(
        found
            .iter()
            .any(|p| p.contains("admin.control.topic") && p.contains("kafka.topics")),
        "{found:?}"
    );
    let from_env = with_env("", Format::Toml, &[("BIGPIPE_ADMIN_CONTROL_TOPIC", "")]).unwrap();
    assert_eq!(from_env.control.topic, None, "the environment turns it off too");
    let found = toml_problems("admin.control.topic = 5");
    assert!(
        found.iter().any(|p| p.contains("admin.control.topic")),
        "{found:?}"
    );
}

#[test]
fn empty_json_object_equals_empty_toml() {
    assert_eq!(ok("{}", Format::Json), toml(""));
}

#[test]
fn flat_and_nested_json_keys_are_equivalent() {
    let flat = ok(
        r#"{"http.server.port": 1, "kafka.topics": [{"name": "a", "partitions": 1}]}"#,
        Format::Json,
    );
    let nested = ok(
        r#"{"http": {"server": {"port": 1}}, "kafka": {"topics": [{"name": "a", "partitions": 1}]}}"#,
        Format::Json,
    );
    let mixed = ok(
        r#"{"http": {"server.port": 1}, "kafka.topics": [{"name": "a", "partitions": 1}]}"#,
        Format::Json,
    );
    assert_eq!(flat, nested);
    assert_eq!(flat, mixed);
    assert_eq!(flat.http.port, 1);
}

#[test]
fn toml_quoted_dotted_keys_work_like_nesting() {
    let quoted = toml("\"http.server.port\" = 1\n[kafka]\n\"client.id\" = \"x\"");
    assert_eq!(quoted.http.port, 1);
    assert_eq!(quoted.kafka.client_id, "x");
    assert!(quoted.warnings.is_empty());
}

#[test]
fn the_same_key_spelled_twice_is_a_problem() {
    let found = problems(r#"{"log.level": 5, "log": {"level": 4}}"#, Format::Json);
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("log.level: set more than once"), "{found:?}");
}

#[test]
fn format_follows_the_file_extension() {
    assert_eq!(Format::from_path(Path::new("a/b.toml")), Some(Format::Toml));
    assert_eq!(Format::from_path(Path::new("b.JSON")), Some(Format::Json));
    assert_eq!(Format::from_path(Path::new("b.yaml")), None);
    assert_eq!(Format::from_path(Path::new("toml")), None);
}

#[test]
fn missing_file_is_a_problem_naming_the_path() {
    let path = Path::new("/nonexistent/bigpipe-test/conf.toml");
    let no_env: [(&str, &str); 0] = [];
    let Err(e) = load_with_env(path, no_env) else {
        panic!("a missing file loaded");
    };
    assert_eq!(e.problems.len(), 1);
    assert_eq!(e.problems[0].key, path.display().to_string());
    assert!(e.problems[0].message.starts_with("cannot read config file"));
}

#[test]
fn unknown_file_extension_is_a_problem() {
    let Err(e) = load(Path::new("conf/bigpipe.yaml")) else {
        panic!("a .yaml file loaded");
    };
    assert_eq!(e.problems[0].key, "conf/bigpipe.yaml");
    assert!(e.problems[0].message.contains(".toml or .json"));
}

#[test]
fn toml_syntax_error_is_one_single_line_problem() {
    let found = toml_problems("[log\nlevel = 5");
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("<toml>: invalid TOML"), "{found:?}");
    assert!(!found[0].contains('\n'));
}

#[test]
fn json_syntax_error_is_a_problem() {
    let found = problems("{\"log.level\": }", Format::Json);
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("<json>: invalid JSON"), "{found:?}");
}

#[test]
fn json_top_level_must_be_an_object() {
    assert_eq!(
        problems("[1, 2]", Format::Json),
        vec!["<json>: expected a JSON object at the top level, got an array"]
    );
}

// ---------------------------------------------------------------------------------------------
// log

#[test]
fn log_level_accepts_go_numbers() {
    use slog::Level::*;
    for (n, level) in [(1, Critical), (2, Error), (3, Warning), (4, Info), (5, Debug)] {
        assert_eq!(toml(&format!("log.level = {n}")).log.level, level);
    }
}

#[test]
fn log_level_accepts_names() {
    use slog::Level::*;
    for (name, level) in [
        ("critical", Critical),
        ("error", Error),
        ("warning", Warning),
        ("warn", Warning),
        ("INFO", Info),
        ("debug", Debug),
        ("trace", Trace),
    ] {
        assert_eq!(toml(&format!("log.level = \"{name}\"")).log.level, level);
    }
}

#[test]
fn log_level_out_of_range_or_unknown_is_a_problem() {
    assert_only_problem("log.level = 0", "log.level: must be at least 1, got 0");
    assert_only_problem("log.level = 6", "log.level: must be at most 5, got 6");
    let found = toml_problems("log.level = \"verbose\"");
    assert!(
        found[0].starts_with("log.level: unknown level 'verbose'"),
        "{found:?}"
    );
}

#[test]
fn empty_log_directory_means_stderr() {
    assert_eq!(toml("log.directory = \"\"").log.directory, None);
    assert_eq!(
        toml("log.directory = \"/var/log/bigpipe\"").log.directory,
        Some(PathBuf::from("/var/log/bigpipe"))
    );
}

#[test]
fn log_queue_size_must_be_positive() {
    assert_only_problem("log.queue.size = 0", "log.queue.size: must be at least 1, got 0");
}

// ---------------------------------------------------------------------------------------------
// kafka connection

#[test]
fn bootstrap_servers_accept_a_comma_list_or_an_array() {
    let list = toml("kafka.bootstrap.servers = \"a:9092, b:9093,\"");
    assert_eq!(list.kafka.bootstrap_servers, vec!["a:9092", "b:9093"]);
    let array = toml("kafka.bootstrap.servers = [\"a:9092\", \"[::1]:9093\"]");
    assert_eq!(array.kafka.bootstrap_servers, vec!["a:9092", "[::1]:9093"]);
}

#[test]
fn malformed_bootstrap_server_is_a_problem() {
    assert_only_problem(
        "kafka.bootstrap.servers = \"localhost\"",
        "kafka.bootstrap.servers: malformed bootstrap server 'localhost': expected host:port",
    );
    let found = toml_problems("kafka.bootstrap.servers = \"a:1,b:0,:3\"");
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("'b:0'"));
    assert!(found[1].contains("':3'"));
}

#[test]
fn malformed_bootstrap_array_entry_names_its_index() {
    let found = toml_problems("kafka.bootstrap.servers = [\"a:1\", 5]");
    assert_eq!(
        found,
        vec!["kafka.bootstrap.servers[1]: expected a string, got a number (5)"]
    );
}

#[test]
fn empty_bootstrap_list_is_a_problem() {
    for text in ["kafka.bootstrap.servers = \"\"", "kafka.bootstrap.servers = []"] {
        let found = toml_problems(text);
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("kafka.bootstrap.servers: no bootstrap servers"));
    }
}

#[test]
fn kafka_timeouts_become_durations() {
    let s = toml("[kafka]\nrequest.timeout.ms = 1\nmetadata.refresh.ms = 2\nclient.id = \"c\"");
    assert_eq!(s.kafka.request_timeout, Duration::from_millis(1));
    assert_eq!(s.kafka.metadata_refresh, Duration::from_millis(2));
    assert_eq!(s.kafka.client_id, "c");
    assert_only_problem(
        "kafka.request.timeout.ms = 0",
        "kafka.request.timeout.ms: must be at least 1, got 0",
    );
}

#[test]
fn the_group_instance_id_is_a_literal_or_an_environment_reference() {
    let s = toml("kafka.group.instance.id = \"bigpipe-1\"");
    assert_eq!(s.kafka.group_instance_id.as_deref(), Some("bigpipe-1"));
    let text = "kafka.group.instance.id = \"${POD_NAME}\"";
    let s = with_env(text, Format::Toml, &[("POD_NAME", "pipe-7")]).unwrap();
    assert_eq!(s.kafka.group_instance_id.as_deref(), Some("pipe-7"));
    let s = with_env(text, Format::Toml, &[("BIGPIPE_KAFKA_GROUP_INSTANCE_ID", "")]).unwrap();
    assert_eq!(
        s.kafka.group_instance_id, None,
        "an empty override means dynamic members"
    );
    let problems: Vec<String> = with_env(text, Format::Toml, &[])
        .unwrap_err()
        .problems
        .iter()
        .map(Problem::to_string)
        .collect();
    assert_eq!(
        problems,
        ["kafka.group.instance.id: environment variable POD_NAME is not set"]
    );
    // HOSTNAME is seldom exported; the kernel's host name stands in.
    let s = with_env("kafka.group.instance.id = \"${HOSTNAME}\"", Format::Toml, &[]).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(s.kafka.group_instance_id.as_deref(), Some(host.trim()));
    assert_eq!(toml("").kafka.group_instance_id, None);
}

#[test]
fn the_group_instance_id_follows_kafkas_naming_rule() {
    assert_only_problem(
        "kafka.group.instance.id = \"host 1\"",
        "kafka.group.instance.id: group.instance.id 'host 1' contains ' '; Kafka allows only [a-zA-Z0-9._-]",
    );
    let long = "x".repeat(250);
    assert_only_problem(
        &format!("kafka.group.instance.id = \"{long}\""),
        "kafka.group.instance.id: group.instance.id is 250 characters long, Kafka allows at most 249",
    );
    assert_only_problem(
        "kafka.group.instance.id = \"..\"",
        "kafka.group.instance.id: '..' is not a legal Kafka group.instance.id",
    );
}

#[test]
fn static_members_need_one_entry_per_group() {
    let two = |instance: &str| {
        format!(
            "[kafka]\n{instance}\ntopics = [{{ name = \"a\", partitions = 1 }}, {{ name = \"b\", partitions = 1 }}]\n\
             [[kafka.consumer.list]]\ntopic = \"a\"\ngroupId = \"g\"\nrateLimit = 1\n\
             [[kafka.consumer.list]]\ntopic = \"b\"\ngroupId = \"g\"\nrateLimit = 1\n"
        )
    };
    assert_eq!(
        toml(&two("")).consumers.len(),
        2,
        "dynamic members may share a group"
    );
    assert_only_problem(
        &two("group.instance.id = \"h1\""),
        "kafka.consumer.list[1].groupId: groupId 'g' is also used by kafka.consumer.list[0]; \
         with kafka.group.instance.id set, two entries of one group in one process would fence \
         each other (give them different groupIds, or unset kafka.group.instance.id)",
    );
}

// ---------------------------------------------------------------------------------------------
// kafka.topics

#[test]
fn topic_with_zero_partitions_is_a_problem() {
    // Go crashed in the partitioner (rand.Int31n(0)).
    assert_only_problem(
        "[[kafka.topics]]\nname = \"t\"\npartitions = 0",
        "kafka.topics[0].partitions: must be at least 1, got 0",
    );
}

#[test]
fn topic_needs_name_and_partitions() {
    assert_eq!(
        toml_problems("[[kafka.topics]]\nreplicationFactor = 1"),
        vec![
            "kafka.topics[0].name: required key is missing",
            "kafka.topics[0].partitions: required key is missing"
        ]
    );
}

#[test]
fn illegal_topic_name_is_a_problem() {
    let found = toml_problems("[[kafka.topics]]\nname = \"a/b\"\npartitions = 1");
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("kafka.topics[0].name: topic name 'a/b' contains '/'"));
    let found = toml_problems("[[kafka.topics]]\nname = \"\"\npartitions = 1");
    assert_eq!(found, vec!["kafka.topics[0].name: must not be empty"]);
}

#[test]
fn duplicate_topic_is_a_problem() {
    // Go let the last entry win silently.
    let text = format!("{TOPIC_TEST}{TOPIC_TEST}");
    assert_only_problem(
        &text,
        "kafka.topics[1].name: duplicate topic 'test', first defined at kafka.topics[0]",
    );
}

#[test]
fn replication_factor_is_minus_one_or_positive() {
    assert_eq!(toml(TOPIC_TEST).kafka.topics[0].replication_factor, -1);
    let three = toml(&format!("{TOPIC_TEST}replicationFactor = 3"));
    assert_eq!(three.kafka.topics[0].replication_factor, 3);
    assert_only_problem(
        &format!("{TOPIC_TEST}replicationFactor = 0"),
        "kafka.topics[0].replicationFactor: must be -1 (broker default) or at least 1, got 0",
    );
    assert_only_problem(
        &format!("{TOPIC_TEST}replicationFactor = -2"),
        "kafka.topics[0].replicationFactor: must be at least -1, got -2",
    );
}

#[test]
fn topics_must_be_an_array_of_tables() {
    assert_eq!(
        problems(r#"{"kafka.topics": {"name": "t"}}"#, Format::Json),
        vec!["kafka.topics: expected an array, got a table"]
    );
    assert_eq!(
        problems(r#"{"kafka.topics": ["t"]}"#, Format::Json),
        vec!["kafka.topics[0]: expected a table (JSON object), got a string ('t')"]
    );
}

#[test]
fn broken_topics_do_not_cascade_into_reference_problems() {
    // Only the real problem is reported, not "topic 'test' is not in kafka.topics" as well.
    let text = r#"{"kafka.topics": 5,
                   "kafka.producer.acl": [{"name": "a", "secret": "s", "topic": "test"}]}"#;
    assert_eq!(
        problems(text, Format::Json),
        vec!["kafka.topics: expected an array, got a number (5)"]
    );
}

// ---------------------------------------------------------------------------------------------
// kafka.producer

#[test]
fn acl_topic_must_be_a_configured_topic() {
    let text = format!("{TOPIC_TEST}[[kafka.producer.acl]]\nname = \"a\"\nsecret = \"s\"\ntopic = \"nope\"");
    assert_only_problem(
        &text,
        "kafka.producer.acl[0].topic: topic 'nope' is not in kafka.topics",
    );
}

#[test]
fn duplicate_acl_name_is_a_problem() {
    let entry = "[[kafka.producer.acl]]\nname = \"a\"\nsecret = \"s\"\ntopic = \"test\"\n";
    assert_only_problem(
        &format!("{TOPIC_TEST}{entry}{entry}"),
        "kafka.producer.acl[1].name: duplicate ACL name 'a', first defined at kafka.producer.acl[0]",
    );
}

#[test]
fn acl_name_and_secret_must_not_be_empty() {
    let text = format!("{TOPIC_TEST}[[kafka.producer.acl]]\nname = \"\"\nsecret = \"\"\ntopic = \"test\"");
    assert_eq!(
        toml_problems(&text),
        vec![
            "kafka.producer.acl[0].name: must not be empty",
            "kafka.producer.acl[0].secret: must not be empty"
        ]
    );
}

#[test]
fn acl_entry_with_missing_keys_names_each() {
    assert_eq!(
        toml_problems("[[kafka.producer.acl]]\nsecrett = \"s\""),
        vec![
            "kafka.producer.acl[0].name: required key is missing",
            "kafka.producer.acl[0].secret: required key is missing (or set \
             kafka.producer.acl[0].secret_file to a file holding the secret)",
            "kafka.producer.acl[0].topic: required key is missing"
        ]
    );
}

#[test]
fn legacy_producer_keys_are_ignored_with_warnings() {
    let s = toml("[kafka.producer]\nretries = 2\nchannel.size = 200000");
    assert_eq!(
        s.warnings,
        vec![
            "kafka.producer.retries is ignored: produce errors are retried until \
             kafka.producer.message.timeout.ms",
            "kafka.producer.channel.size is ignored: the call queue is sized by \
             http.server.handler.channel.size",
        ]
    );
}

#[test]
fn handler_channel_size_sets_queue_calls_and_must_be_positive() {
    assert_eq!(
        toml("http.server.handler.channel.size = 7").producer.queue_calls,
        7
    );
    // Go: 0 overloaded every call, a negative size panicked.
    assert_only_problem(
        "http.server.handler.channel.size = 0",
        "http.server.handler.channel.size: must be at least 1, got 0",
    );
    assert_only_problem(
        "http.server.handler.channel.size = -1",
        "http.server.handler.channel.size: must be at least 1, got -1",
    );
}

#[test]
fn producer_sizes_and_timeouts_are_read() {
    let s = toml(
        "[kafka.producer]\nlinger.ms = 0\nbatch.bytes = 16384\nqueue.bytes = 20\n\
         queue.reserved = 0.25\nmessage.timeout.ms = 30",
    );
    assert_eq!(s.producer.linger, Duration::ZERO);
    assert_eq!(s.producer.batch_bytes, 16384);
    assert_eq!(s.producer.queue_bytes, 20);
    assert_eq!(s.producer.queue_reserved, 0.25);
    assert_eq!(s.producer.message_timeout, Duration::from_millis(30));
    assert_only_problem(
        "kafka.producer.batch.bytes = 0",
        "kafka.producer.batch.bytes: must be at least 1, got 0",
    );
}

#[test]
fn queue_reserved_is_a_fraction() {
    assert_eq!(
        toml("kafka.producer.queue.reserved = 0").producer.queue_reserved,
        0.0
    );
    assert_eq!(
        toml("kafka.producer.queue.reserved = 1").producer.queue_reserved,
        1.0
    );
    assert_only_problem(
        "kafka.producer.queue.reserved = 1.5",
        "kafka.producer.queue.reserved: must be a fraction from 0 to 1 of the queue reserved for \
         the ACLs, got 1.5",
    );
    assert_only_problem(
        "kafka.producer.queue.reserved = \"half\"",
        "kafka.producer.queue.reserved: expected a number, got a string ('half')",
    );
}

#[test]
fn a_body_limit_no_batch_can_hold_is_refused() {
    assert_only_problem(
        "http.server.body.limit = 1048576",
        "http.server.body.limit: 1048576 bytes can never be written to Kafka: with \
         kafka.producer.batch.bytes = 1048576, a record may have at most 1044334 bytes (batch \
         overhead and 4096 bytes reserved for dead-letter headers taken off); lower \
         http.server.body.limit to at most 1044334 or raise kafka.producer.batch.bytes",
    );
    // At the bound it is fine, and a larger batch makes room for a larger body.
    assert_eq!(
        toml("http.server.body.limit = 1044334").http.body_limit,
        1_044_334
    );
    let s = toml("http.server.body.limit = 2000000\nkafka.producer.batch.bytes = 2100000");
    assert_eq!(s.http.body_limit, 2_000_000);
}

#[test]
fn an_unset_body_limit_follows_a_small_batch_down() {
    let s = toml("kafka.producer.batch.bytes = 16384");
    assert_eq!(s.http.body_limit, 12_217);
    assert_eq!(values::batch::largest_record(16_384), Some(12_217));
}

#[test]
fn a_batch_too_small_for_any_call_is_refused() {
    assert_only_problem(
        "kafka.producer.batch.bytes = 4000",
        "kafka.producer.batch.bytes: 4000 bytes cannot hold any call: a batch needs 71 bytes of \
         overhead and 4096 bytes reserved for dead-letter headers",
    );
}

#[test]
fn ack_mode_and_timeout_are_read() {
    let s = toml("[kafka.producer]\nack.mode = \"kafka\"\nack.timeout.ms = 1500");
    assert_eq!(s.producer.default_ack, AckMode::Kafka);
    assert_eq!(s.producer.ack_timeout, Duration::from_millis(1500));
    let shorthand = toml("kafka.producer.ack = \"kafka\"");
    assert_eq!(shorthand.producer.default_ack, AckMode::Kafka);
    assert_eq!(shorthand.producer.ack_timeout, Duration::from_millis(30_000));
}

#[test]
fn unknown_ack_mode_is_a_problem() {
    assert_only_problem(
        "kafka.producer.ack.mode = \"disk\"",
        "kafka.producer.ack.mode: expected \"queue\" or \"kafka\", got 'disk'",
    );
    assert_only_problem(
        "kafka.producer.ack = 1",
        "kafka.producer.ack: expected \"queue\", \"kafka\" or a table with mode and timeout.ms, \
         got a number (1)",
    );
}

#[test]
fn ack_shorthand_next_to_ack_timeout_is_a_problem() {
    let found = problems(
        r#"{"kafka.producer.ack": "kafka", "kafka.producer.ack.timeout.ms": 5}"#,
        Format::Json,
    );
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("kafka.producer.ack: set more than once"));
    assert!(found[0].contains("kafka.producer.ack.mode"));
}

// ---------------------------------------------------------------------------------------------
// kafka.consumer.list

#[test]
fn consumer_optional_keys_default_to_the_go_shipped_values() {
    let s = toml(&consumer_entry(
        "topic = \"test\"\ngroupId = \"G\"\nrateLimit = 0.5",
    ));
    assert_eq!(
        s.consumers,
        vec![ConsumerSettings {
            topic: "test".into(),
            group_id: "G".into(),
            rate_limit: 0.5,
            timeout: Duration::from_millis(3000),
            retries: 2,
            concurrency: 5,
            session_timeout: Duration::from_millis(10_000),
            heartbeat_interval: Duration::from_millis(3333),
            rebalance_timeout: Duration::from_millis(30_000),
            assignor: Assignor::CooperativeSticky,
            offset_reset: OffsetReset::Earliest,
            dead_letter_topic: Some("test.dlq".into()),
            success_codes: vec!["2xx".into()],
            retry_backoff: Duration::from_millis(200),
            retry_backoff_max: Duration::from_millis(30_000),
            retry_after_max: Duration::from_millis(60_000),
            prefetch_records: 1000,
            prefetch_bytes: 4_194_304,
            commit_interval: Duration::from_millis(1000),
            drain_timeout: Duration::from_millis(10_000),
            fetch_max_wait: Duration::from_millis(500),
            circuit_breaker: None,
            retry_tiers: vec![
                Duration::from_secs(5),
                Duration::from_secs(60),
                Duration::from_secs(600)
            ],
            retry_for: Duration::ZERO,
            host_concurrency: 2,
            dead_letter_timeout: Duration::from_millis(300_000),
            stall_after: Duration::from_millis(60_000),
            forward_headers: None,
            signing_keys: vec![],
            ordering: Ordering::None,
        }]
    );
}

#[test]
fn consumer_concurrency_zero_is_a_problem() {
    // Go: an unbuffered channel, and the consumer deadlocked forever.
    let ok_entry = "[[kafka.consumer.list]]\ntopic = \"test\"\ngroupId = \"A\"\nrateLimit = 1\n";
    let text = format!(
        "{TOPIC_TEST}{ok_entry}[[kafka.consumer.list]]\ntopic = \"test\"\ngroupId = \"B\"\n\
         rateLimit = 1\nconcurrency = 0"
    );
    assert_only_problem(
        &text,
        "kafka.consumer.list[1].concurrency: must be at least 1, got 0",
    );
}

#[test]
fn consumer_topic_must_be_a_configured_topic() {
    assert_only_problem(
        &consumer_entry("topic = \"nope\"\ngroupId = \"G\"\nrateLimit = 1"),
        "kafka.consumer.list[0].topic: topic 'nope' is not in kafka.topics",
    );
}

#[test]
fn consumer_group_id_must_not_be_empty() {
    assert_only_problem(
        &consumer_entry("topic = \"test\"\ngroupId = \"\"\nrateLimit = 1"),
        "kafka.consumer.list[0].groupId: must not be empty",
    );
}

#[test]
fn consumer_rate_limit_must_be_positive() {
    // Go: 0 became "no limit" by a float-to-int accident.
    assert_only_problem(
        &consumer_entry("topic = \"test\"\ngroupId = \"G\"\nrateLimit = 0"),
        "kafka.consumer.list[0].rateLimit: must be greater than 0 calls per second, got 0",
    );
    assert_only_problem(
        &consumer_entry("topic = \"test\"\ngroupId = \"G\"\nrateLimit = -3.5"),
        "kafka.consumer.list[0].rateLimit: must be greater than 0 calls per second, got -3.5",
    );
    assert_only_problem(
        &consumer_entry("topic = \"test\"\ngroupId = \"G\""),
        "kafka.consumer.list[0].rateLimit: required key is missing",
    );
}

#[test]
fn consumer_timeout_and_retries_are_range_checked() {
    let found = toml_problems(&consumer_entry(
        "topic = \"test\"\ngroupId = \"G\"\nrateLimit = 1\ntimeout = 0\nretries = -1",
    ));
    assert_eq!(
        found,
        vec![
            "kafka.consumer.list[0].timeout: must be at least 1, got 0",
            "kafka.consumer.list[0].retries: must be at least 0, got -1"
        ]
    );
}

#[test]
fn duplicate_topic_and_group_is_a_problem() {
    let entry = "[[kafka.consumer.list]]\ntopic = \"test\"\ngroupId = \"G\"\nrateLimit = 1\n";
    assert_only_problem(
        &format!("{TOPIC_TEST}{entry}{entry}"),
        "kafka.consumer.list[1].groupId: topic 'test' with groupId 'G' is already consumed by \
         kafka.consumer.list[0]",
    );
}

#[test]
fn same_group_on_different_topics_is_fine() {
    let text = format!(
        "{TOPIC_TEST}[[kafka.topics]]\nname = \"other\"\npartitions = 1\n\
         [[kafka.consumer.list]]\ntopic = \"test\"\ngroupId = \"G\"\nrateLimit = 1\n\
         [[kafka.consumer.list]]\ntopic = \"other\"\ngroupId = \"G\"\nrateLimit = 1\n"
    );
    assert_eq!(toml(&text).consumers.len(), 2);
}

#[test]
fn unknown_entry_keys_are_warnings() {
    let text = format!(
        "{TOPIC_TEST}[[kafka.consumer.list]]\ntopic = \"test\"\ngroupId = \"G\"\nrateLimit = 1\n\
         url = \"http://x\"\n[kafka.consumer.list.circuitBreaker]\nbreakPeriod = 10\n\
         recoverPeriod = 30\nwinSize = 60\nminStats = 100\nhealthRate = 0.85\nslowStart = 1"
    );
    let s = toml(&text);
    assert_eq!(
        s.warnings,
        vec![
            "unknown key 'kafka.consumer.list[0].url' is ignored",
            "unknown key 'kafka.consumer.list[0].circuitBreaker.slowStart' is ignored",
        ]
    );
    assert!(s.consumers[0].circuit_breaker.is_some());
}

/// The README example of the Go version, in its JSON config.
const GO_BREAKER: &str =
    r#"{"breakPeriod":10,"recoverPeriod":30,"winSize":60,"minStats":100,"healthRate":0.85}"#;

#[test]
fn the_go_circuit_breaker_is_read_from_go_json() {
    let text = format!(
        r#"{{"kafka.topics": [{{"name": "test", "partitions": 3}}],
            "kafka.consumer.list": [{{"topic": "test", "groupId": "G", "rateLimit": 100,
                                      "circuitBreaker": {GO_BREAKER}}}]}}"#
    );
    let s = ok(&text, Format::Json);
    assert_eq!(
        s.consumers[0].circuit_breaker,
        Some(BreakerSettings {
            break_period: Duration::from_secs(10),
            recover_period: Duration::from_secs(30),
            window_secs: 60,
            min_stats: 100,
            health_rate: 0.85,
        })
    );
}

#[test]
fn every_missing_circuit_breaker_key_is_named() {
    // Go panicked on the first missing key.
    let problems = toml_problems(&consumer_entry(&format!(
        "{REQUIRED}[kafka.consumer.list.circuitBreaker]\nwinSize = 60"
    )));
    let key = "kafka.consumer.list[0].circuitBreaker";
    assert_eq!(
        problems,
        vec![
            format!("{key}.breakPeriod: required key is missing"),
            format!("{key}.recoverPeriod: required key is missing"),
            format!("{key}.minStats: required key is missing"),
            format!("{key}.healthRate: required key is missing"),
        ]
    );
}

#[test]
fn circuit_breaker_values_are_checked() {
    let entry = |fields: &str| {
        consumer_entry(&format!(
            "{REQUIRED}[kafka.consumer.list.circuitBreaker]\nbreakPeriod = 10\n\
             recoverPeriod = 30\n{fields}"
        ))
    };
    let key = "kafka.consumer.list[0].circuitBreaker";
    // Go's check was `> 100` where it meant `> 1`: 50 passed and nothing ever broke.
    assert_only_problem(
        &entry("winSize = 60\nminStats = 1\nhealthRate = 50"),
        &format!("{key}.healthRate: must be a success rate greater than 0 and at most 1, got 50"),
    );
    assert_only_problem(
        &entry("winSize = 0\nminStats = 1\nhealthRate = 1"),
        &format!("{key}.winSize: must be at least 1, got 0"),
    );
    assert_only_problem(
        &entry("winSize = 60\nminStats = 0\nhealthRate = 0.5"),
        &format!("{key}.minStats: must be at least 1, got 0"),
    );
    assert_only_problem(
        &entry("winSize = 60\nminStats = 1\nhealthRate = 0"),
        &format!("{key}.healthRate: must be a success rate greater than 0 and at most 1, got 0"),
    );
    assert_only_problem(
        &consumer_entry(&format!("{REQUIRED}circuitBreaker = true")),
        &format!("{key}: expected a table (JSON object), got a boolean (true)"),
    );
    let c = consumer(
        "[kafka.consumer.list.circuitBreaker]\nbreakPeriod = 0\nrecoverPeriod = 0\n\
         winSize = 1\nminStats = 1\nhealthRate = 1",
    );
    assert_eq!(c.circuit_breaker.map(|b| b.break_period), Some(Duration::ZERO));
}

#[test]
fn consumer_group_and_delivery_keys_are_read() {
    let c = consumer(
        "sessionTimeout = 6000\nheartbeatInterval = 1000\nrebalanceTimeout = 60000\n\
         assignor = \"RoundRobin\"\nautoOffsetReset = \"latest\"\ndeadLetterTopic = \"elsewhere\"\n\
         successCodes = [\"2xx\", \"304\", \"400-404\", \"5XX\"]\nretryBackoff = 0\n\
         retryBackoffMax = 0\nretryAfterMax = 1\nprefetchRecords = 1\nprefetchBytes = 1024\n\
         commitInterval = 2\ndrainTimeout = 3\nfetchMaxWait = 4",
    );
    assert_eq!(c.session_timeout, Duration::from_millis(6000));
    assert_eq!(c.heartbeat_interval, Duration::from_millis(1000));
    assert_eq!(c.rebalance_timeout, Duration::from_millis(60_000));
    assert_eq!(c.assignor, Assignor::RoundRobin);
    assert_eq!(c.offset_reset, OffsetReset::Latest);
    // Need not be in kafka.topics: bigpipe creates it.
    assert_eq!(c.dead_letter_topic.as_deref(), Some("elsewhere"));
    assert_eq!(c.success_codes, vec!["2xx", "304", "400-404", "5xx"]);
    assert_eq!(c.retry_backoff, Duration::ZERO);
    assert_eq!(c.retry_backoff_max, Duration::ZERO);
    assert_eq!(c.retry_after_max, Duration::from_millis(1));
    assert_eq!(c.prefetch_records, 1);
    assert_eq!(c.prefetch_bytes, 1024);
    assert_eq!(c.commit_interval, Duration::from_millis(2));
    assert_eq!(c.drain_timeout, Duration::from_millis(3));
    assert_eq!(c.fetch_max_wait, Duration::from_millis(4));
    assert_eq!(consumer("assignor = \"range\"").assignor, Assignor::Range);
    assert_eq!(consumer("assignor = \"sticky\"").assignor, Assignor::Sticky);
    assert_eq!(
        consumer("assignor = \"cooperative-sticky\"").assignor,
        Assignor::CooperativeSticky
    );
    assert_eq!(
        consumer("autoOffsetReset = \"EARLIEST\"").offset_reset,
        OffsetReset::Earliest
    );
}

#[test]
fn heartbeat_defaults_to_a_third_of_the_session_timeout() {
    let c = consumer("sessionTimeout = 6000");
    assert_eq!(c.heartbeat_interval, Duration::from_millis(2000));
    let c = consumer("sessionTimeout = 1000");
    assert_eq!(c.heartbeat_interval, Duration::from_millis(333));
}

#[test]
fn session_timeout_is_range_checked() {
    assert_only_consumer_problem(
        "sessionTimeout = 999",
        "kafka.consumer.list[0].sessionTimeout: must be at least 1000, got 999",
    );
    assert_only_consumer_problem(
        "sessionTimeout = 3600001",
        "kafka.consumer.list[0].sessionTimeout: must be at most 3600000, got 3600001",
    );
    assert_eq!(
        consumer("sessionTimeout = 3600000").session_timeout,
        Duration::from_secs(3600)
    );
}

#[test]
fn heartbeat_must_be_shorter_than_the_session_timeout() {
    assert_only_consumer_problem(
        "heartbeatInterval = 10000",
        "kafka.consumer.list[0].heartbeatInterval: must be less than sessionTimeout (10000), got 10000",
    );
    assert_only_consumer_problem(
        "sessionTimeout = 6000\nheartbeatInterval = 7000",
        "kafka.consumer.list[0].heartbeatInterval: must be less than sessionTimeout (6000), got 7000",
    );
    assert_only_consumer_problem(
        "heartbeatInterval = 0",
        "kafka.consumer.list[0].heartbeatInterval: must be at least 1, got 0",
    );
    assert_eq!(
        consumer("heartbeatInterval = 9999").heartbeat_interval,
        Duration::from_millis(9999)
    );
}

#[test]
fn invalid_session_timeout_does_not_cascade_into_the_heartbeat_check() {
    // Comparing with the default 10000 the user did not choose would only confuse.
    assert_only_consumer_problem(
        "sessionTimeout = 500\nheartbeatInterval = 20000",
        "kafka.consumer.list[0].sessionTimeout: must be at least 1000, got 500",
    );
}

#[test]
fn unknown_assignor_or_offset_reset_is_a_problem() {
    assert_only_consumer_problem(
        "assignor = \"cooperative\"",
        "kafka.consumer.list[0].assignor: expected \"cooperative-sticky\", \"sticky\", \"range\" or \
         \"roundrobin\", got 'cooperative'",
    );
    assert_only_consumer_problem(
        "autoOffsetReset = \"none\"",
        "kafka.consumer.list[0].autoOffsetReset: expected \"earliest\" or \"latest\", got 'none'",
    );
    assert_only_consumer_problem(
        "autoOffsetReset = 1",
        "kafka.consumer.list[0].autoOffsetReset: expected a string, got a number (1)",
    );
}

#[test]
fn empty_dead_letter_topic_turns_dead_lettering_off() {
    assert_eq!(consumer("deadLetterTopic = \"\"").dead_letter_topic, None);
}

#[test]
fn dead_letter_topic_must_be_a_legal_name_other_than_the_topic() {
    assert_only_consumer_problem(
        "deadLetterTopic = \"test\"",
        "kafka.consumer.list[0].deadLetterTopic: must differ from the entry's topic, got 'test' \
         (\"\" turns dead-lettering off)",
    );
    assert_only_consumer_problem(
        "deadLetterTopic = \"a/b\"",
        "kafka.consumer.list[0].deadLetterTopic: topic name 'a/b' contains '/'; Kafka allows only \
         [a-zA-Z0-9._-]",
    );
    assert_only_consumer_problem(
        "deadLetterTopic = 5",
        "kafka.consumer.list[0].deadLetterTopic: expected a string, got a number (5)",
    );
}

#[test]
fn too_long_default_dead_letter_topic_is_a_problem() {
    // A legal 249-character topic has no legal "<topic>.dlq".
    let topic = "t".repeat(249);
    let text = format!(
        "[[kafka.topics]]\nname = \"{topic}\"\npartitions = 1\n\
         [[kafka.consumer.list]]\ntopic = \"{topic}\"\ngroupId = \"G\"\nrateLimit = 1"
    );
    assert_only_problem(
        &text,
        "kafka.consumer.list[0].deadLetterTopic: topic name is 253 characters long, Kafka allows at \
         most 249 (the default, '<topic>.dlq'); set deadLetterTopic, or \"\" to turn dead-lettering off",
    );
    let off = toml(&format!("{text}\ndeadLetterTopic = \"\""));
    assert_eq!(off.consumers[0].dead_letter_topic, None);
}

#[test]
fn dead_letter_topic_of_an_unknown_topic_is_not_derived() {
    // Only the real problem: no default dead-letter name is derived from a rejected topic.
    assert_only_problem(
        &consumer_entry("topic = \"nope\"\ngroupId = \"G\"\nrateLimit = 1"),
        "kafka.consumer.list[0].topic: topic 'nope' is not in kafka.topics",
    );
}

#[test]
fn success_codes_are_syntax_checked_each_naming_its_index() {
    let found = toml_problems(&consumer_entry(&format!(
        "{REQUIRED}successCodes = [\"600\", 200, \"2xx\", \"204-200\", \"6xx\", \"20x\"]"
    )));
    assert_eq!(
        found,
        vec![
            "kafka.consumer.list[0].successCodes[0]: '600' is not an HTTP status (100-599), a range \
             like \"200-204\" or a class like \"2xx\"",
            "kafka.consumer.list[0].successCodes[1]: expected a string, got a number (200)",
            "kafka.consumer.list[0].successCodes[3]: range '204-200' starts above its end",
            "kafka.consumer.list[0].successCodes[4]: '6xx' is not a status class; expected 1xx to 5xx",
            "kafka.consumer.list[0].successCodes[5]: '20x' is not an HTTP status (100-599), a range \
             like \"200-204\" or a class like \"2xx\"",
        ]
    );
}

#[test]
fn success_codes_must_be_a_non_empty_array() {
    assert_only_consumer_problem(
        "successCodes = []",
        "kafka.consumer.list[0].successCodes: must list at least one status, e.g. [\"2xx\"]; with \
         none every call would fail",
    );
    assert_only_consumer_problem(
        "successCodes = \"2xx\"",
        "kafka.consumer.list[0].successCodes: expected an array, got a string ('2xx')",
    );
}

#[test]
fn retry_backoff_max_must_not_be_below_retry_backoff() {
    assert_only_consumer_problem(
        "retryBackoff = 500\nretryBackoffMax = 100",
        "kafka.consumer.list[0].retryBackoffMax: must be at least retryBackoff (500), got 100",
    );
    // The default cap is at fault when only retryBackoff is raised: the message says so.
    assert_only_consumer_problem(
        "retryBackoff = 60000",
        "kafka.consumer.list[0].retryBackoffMax: must be at least retryBackoff (60000), got 30000 \
         (the default)",
    );
    // An invalid retryBackoff is not compared as well.
    assert_only_consumer_problem(
        "retryBackoff = -1\nretryBackoffMax = 100",
        "kafka.consumer.list[0].retryBackoff: must be at least 0, got -1",
    );
    let c = consumer("retryBackoff = 60000\nretryBackoffMax = 60000");
    assert_eq!(c.retry_backoff_max, Duration::from_millis(60_000));
}

#[test]
fn prefetch_window_is_range_checked() {
    let found = toml_problems(&consumer_entry(&format!(
        "{REQUIRED}prefetchRecords = 0\nprefetchBytes = 1023"
    )));
    assert_eq!(
        found,
        vec![
            "kafka.consumer.list[0].prefetchRecords: must be at least 1, got 0",
            "kafka.consumer.list[0].prefetchBytes: must be at least 1024, got 1023",
        ]
    );
    let found = toml_problems(&consumer_entry(&format!(
        "{REQUIRED}prefetchRecords = 1000001\nprefetchBytes = 1073741825"
    )));
    assert_eq!(
        found,
        vec![
            "kafka.consumer.list[0].prefetchRecords: must be at most 1000000, got 1000001",
            "kafka.consumer.list[0].prefetchBytes: must be at most 1073741824, got 1073741825",
        ]
    );
    let c = consumer("prefetchRecords = 1000000\nprefetchBytes = 1073741824");
    assert_eq!((c.prefetch_records, c.prefetch_bytes), (1_000_000, 1 << 30));
}

#[test]
fn consumer_timeouts_must_be_positive() {
    let found = toml_problems(&consumer_entry(&format!(
        "{REQUIRED}rebalanceTimeout = 0\nretryAfterMax = 0\ncommitInterval = 0\ndrainTimeout = 0\n\
         fetchMaxWait = 0\ndeadLetterTimeout = 0\nstallAfter = 0"
    )));
    let expected: Vec<String> = [
        "rebalanceTimeout",
        "retryAfterMax",
        "commitInterval",
        "drainTimeout",
        "fetchMaxWait",
        "deadLetterTimeout",
        "stallAfter",
    ]
    .iter()
    .map(|key| format!("kafka.consumer.list[0].{key}: must be at least 1, got 0"))
    .collect();
    assert_eq!(found, expected);
    assert_only_consumer_problem(
        "fetchMaxWait = 604800001",
        "kafka.consumer.list[0].fetchMaxWait: must be at most 604800000, got 604800001",
    );
}

#[test]
fn consumer_dead_letter_timeout_and_stall_after_are_read() {
    let c = consumer("deadLetterTimeout = 5000\nstallAfter = 20000\ntimeout = 1000\nretries = 1");
    assert_eq!(c.dead_letter_timeout, Duration::from_millis(5000));
    assert_eq!(c.stall_after, Duration::from_millis(20_000));
}

#[test]
fn consumer_stall_after_defaults_to_a_minute_or_twice_the_worst_call() {
    // 3 s × 3 attempts = 9 s: the minute wins.
    assert_eq!(consumer("").stall_after, Duration::from_millis(60_000));
    // 20 s × 3 attempts = 60 s: twice that, so a slow but healthy call never looks stalled.
    assert_eq!(
        consumer("timeout = 20000").stall_after,
        Duration::from_millis(120_000)
    );
    assert_eq!(
        consumer("timeout = 10000\nretries = 9").stall_after,
        Duration::from_millis(200_000)
    );
}

#[test]
fn consumer_stall_after_below_the_worst_call_is_a_warning() {
    let s = toml(&consumer_entry(&format!(
        "{REQUIRED}timeout = 10000\nretries = 2\nstallAfter = 1000"
    )));
    assert_eq!(s.consumers[0].stall_after, Duration::from_millis(1000));
    assert_eq!(
        s.warnings,
        vec![
            "kafka.consumer.list[0].stallAfter (1000 ms) is below timeout × attempts (30000 ms): \
             a call that only uses its attempts will be reported as a stall"
        ]
    );
    let s = toml(&consumer_entry(&format!(
        "{REQUIRED}timeout = 10000\nretries = 2\nstallAfter = 30000"
    )));
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

#[test]
fn new_consumer_keys_problems_are_reported_with_the_entry_index() {
    let ok_entry = format!("[[kafka.consumer.list]]\n{REQUIRED}");
    let text = format!(
        "{TOPIC_TEST}{ok_entry}[[kafka.consumer.list]]\ntopic = \"test\"\ngroupId = \"B\"\n\
         rateLimit = 1\nassignor = \"x\"\ncommitInterval = \"1s\""
    );
    let Err(e) = load_from_str(&text, Format::Toml) else {
        panic!("accepted");
    };
    let keys: Vec<&str> = e.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "kafka.consumer.list[1].assignor",
            "kafka.consumer.list[1].commitInterval"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// delivery and shutdown

#[test]
fn delivery_and_shutdown_settings_are_read() {
    let s = toml(
        "[delivery]\nthreads = 64\nconnect.timeout.ms = 1\nkeepalive.ms = 2\n\
         response.max.bytes = 0\nheaders.drop = [\"Authorization\", \"cookie\"]\n[shutdown]\ngrace.ms = 3",
    );
    assert_eq!(
        s.delivery,
        DeliverySettings {
            threads: 64,
            connect_timeout: Duration::from_millis(1),
            keep_alive: Duration::from_millis(2),
            max_response_body: 0,
            drop_headers: vec!["authorization".to_owned(), "cookie".to_owned()],
            forward_headers: ForwardRules::default(),
            tls_ca: None,
            destinations: AddressPolicy::strict(),
        }
    );
    assert_eq!(s.shutdown.grace, Duration::from_millis(3));
    // The Go JSON spelling works too.
    let json = ok(r#"{"delivery.threads": 3, "shutdown.grace.ms": 4}"#, Format::Json);
    assert_eq!(json.delivery.threads, 3);
    assert_eq!(json.shutdown.grace, Duration::from_millis(4));
}

#[test]
fn delivery_and_shutdown_values_are_range_checked() {
    let found = toml_problems(
        "[delivery]\nthreads = 0\nconnect.timeout.ms = 0\nkeepalive.ms = 0\n\
         response.max.bytes = -1\n[shutdown]\ngrace.ms = 0",
    );
    assert_eq!(
        found,
        vec![
            "delivery.threads: must be at least 1, got 0",
            "delivery.connect.timeout.ms: must be at least 1, got 0",
            "delivery.keepalive.ms: must be at least 1, got 0",
            "delivery.response.max.bytes: must be at least 0, got -1",
            "shutdown.grace.ms: must be at least 1, got 0",
        ]
    );
    assert_only_problem(
        "delivery.threads = 65",
        "delivery.threads: must be at most 64, got 65",
    );
    assert_only_problem(
        "delivery.response.max.bytes = 1073741825",
        "delivery.response.max.bytes: must be at most 1073741824, got 1073741825",
    );
}

#[test]
fn scalar_in_place_of_the_delivery_table_is_one_problem() {
    assert_eq!(
        problems(r#"{"delivery": 2}"#, Format::Json),
        vec!["delivery: expected a table of sub-keys, got a number (2)"]
    );
}

// ---------------------------------------------------------------------------------------------
// http

#[test]
fn schedule_and_batch_bounds_name_the_key() {
    for (line, want) in [
        (
            "http.server.schedule.max.ms = 31536000001",
            "http.server.schedule.max.ms",
        ),
        ("http.server.batch.max.calls = 0", "http.server.batch.max.calls"),
        (
            "http.server.batch.max.calls = 100001",
            "http.server.batch.max.calls",
        ),
        (
            "http.server.idempotency.window.ms = 999",
            "http.server.idempotency.window.ms",
        ),
        (
            "http.server.idempotency.window.ms = 604800001",
            "http.server.idempotency.window.ms",
        ),
        (
            "http.server.idempotency.max.keys = 0",
            "http.server.idempotency.max.keys",
        ),
        (
            "http.server.idempotency.partitions = 0",
            "http.server.idempotency.partitions",
        ),
        (
            "http.server.idempotency.topic = \"a b\"",
            "http.server.idempotency.topic",
        ),
        (
            "http.server.idempotency.topic = \"bigpipe.control\"",
            "http.server.idempotency.topic",
        ),
    ] {
        let problems = toml_problems(line);
        assert!(
            problems.len() == 1 && problems[0].starts_with(want),
            "{line}: {problems:?}"
        );
    }
}

#[test]
fn http_settings_are_read() {
    let s = toml(
        "[http.server]\nhost = \"127.0.0.1\"\nport = 0\nread.timeout = 1\nwrite.timeout = 2\n\
         body.limit = 3\nworkers = 4\nkeepalive.timeout = 0\nmax.connections = 7\n\
         max.connection.rate = 0\nschedule.max.ms = 0\nbatch.max.calls = 5\n\
         idempotency.topic = \"\"\nidempotency.partitions = 1\nidempotency.window.ms = 1000\n\
         idempotency.max.keys = 1\n\
         [http.admin]\nhost = \"::1\"\nport = 0\n\
         token = \"0123456789abcdef\"",
    );
    assert_eq!(
        s.http,
        HttpSettings {
            host: "127.0.0.1".into(),
            port: 0,
            read_timeout: Duration::from_millis(1),
            write_timeout: Duration::from_millis(2),
            body_limit: 3,
            workers: 4,
            keep_alive: Duration::ZERO,
            max_connections: 7,
            max_connection_rate: 0,
            schedule_max: Duration::ZERO,
            batch_max_calls: 5,
            idempotency: IdempotencySettings {
                topic: None,
                partitions: 1,
                window: Duration::from_secs(1),
                max_keys: 1,
            },
            admin: AdminSettings {
                host: "::1".into(),
                port: 0,
                token: Some("0123456789abcdef".into()),
            },
        }
    );
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

#[test]
fn http_limits_are_range_checked() {
    assert_only_problem(
        "http.server.max.connections = 0",
        "http.server.max.connections: must be at least 1, got 0",
    );
    assert_only_problem(
        "http.server.max.connection.rate = -1",
        "http.server.max.connection.rate: must be at least 0, got -1",
    );
    assert_only_problem(
        "http.admin.port = 70000",
        "http.admin.port: must be at most 65535, got 70000",
    );
}

#[test]
fn admin_token_problems_never_show_the_token() {
    for (text, value) in [
        ("http.admin.token = \"short-secret\"", "short-secret"),
        ("http.admin.token = \"has space in the token\"", "has space"),
        ("http.admin.token = 123456789012345678", "123456789012345678"),
    ] {
        let shown = toml_problems(text).join("\n");
        assert!(shown.starts_with("http.admin.token: "), "{shown}");
        assert!(!shown.contains(value), "{shown}");
    }
}

#[test]
fn an_admin_listener_off_loopback_without_a_token_is_warned_about() {
    let s = toml("[http.admin]\nhost = \"0.0.0.0\"");
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(s.warnings[0].contains("http.admin.host"), "{:?}", s.warnings);
    for quiet in [
        "[http.admin]\nhost = \"0.0.0.0\"\ntoken = \"0123456789abcdef\"",
        "[http.admin]\nhost = \"localhost\"",
        "[http.admin]\nhost = \"127.0.0.2\"",
        "[http.admin]\nhost = \"::1\"",
    ] {
        assert!(toml(quiet).warnings.is_empty(), "{quiet}");
    }
}

#[test]
fn port_out_of_range_is_a_problem() {
    assert_only_problem(
        "http.server.port = 70000",
        "http.server.port: must be at most 65535, got 70000",
    );
}

#[test]
fn http_timeouts_must_be_positive() {
    assert_only_problem(
        "http.server.read.timeout = 0",
        "http.server.read.timeout: must be at least 1, got 0",
    );
}

// ---------------------------------------------------------------------------------------------
// types

#[test]
fn string_where_a_number_is_expected_is_a_problem() {
    assert_only_problem(
        "http.server.port = \"8080\"",
        "http.server.port: expected an integer, got a string ('8080')",
    );
}

#[test]
fn negative_number_for_an_unsigned_key_is_a_problem() {
    assert_only_problem(
        "http.server.body.limit = -5",
        "http.server.body.limit: must be at least 1, got -5",
    );
}

#[test]
fn fractional_number_for_an_integer_key_is_rejected_not_truncated() {
    // Go truncated 2.9 to 2 without a word.
    let text = r#"{"kafka.topics": [{"name": "t", "partitions": 2.9}]}"#;
    assert_eq!(
        problems(text, Format::Json),
        vec!["kafka.topics[0].partitions: expected an integer, got 2.9 (fractions are not truncated)"]
    );
    // An integral float loses nothing.
    let whole = ok(r#"{"http.server.port": 8080.0}"#, Format::Json);
    assert_eq!(whole.http.port, 8080);
}

#[test]
fn huge_numbers_are_problems() {
    assert_only_problem(
        "http.server.read.timeout = 9223372036854775807",
        "http.server.read.timeout: must be at most 604800000, got 9223372036854775807",
    );
    let found = problems(r#"{"http.server.workers": 1e300}"#, Format::Json);
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("http.server.workers: expected an integer"));
    let found = problems(r#"{"http.server.port": 18446744073709551615}"#, Format::Json);
    assert_eq!(
        found,
        vec!["http.server.port: must be at most 65535, got 18446744073709551615"]
    );
}

#[test]
fn null_is_a_problem_not_a_default() {
    assert_eq!(
        problems(r#"{"http.server.port": null}"#, Format::Json),
        vec!["http.server.port: expected an integer, got null"]
    );
}

#[test]
fn scalar_in_place_of_a_table_is_one_problem() {
    assert_eq!(
        problems(r#"{"kafka": 5}"#, Format::Json),
        vec!["kafka: expected a table of sub-keys, got a number (5)"]
    );
}

#[test]
fn unknown_top_level_key_is_a_warning() {
    let s = ok(r#"{"http.server.prot": 1, "extra": {"a": 1}}"#, Format::Json);
    assert_eq!(
        s.warnings,
        vec![
            "unknown key 'extra' is ignored",
            "unknown key 'http.server.prot' is ignored"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// all problems at once

#[test]
fn every_problem_is_reported_together() {
    let text = r#"{
        "log.level": "loud",
        "kafka.bootstrap.servers": "localhost",
        "kafka.topics": [{"name": "test", "partitions": 0}],
        "kafka.producer.acl": [{"name": "a", "secret": "s", "topic": "nope"}],
        "kafka.consumer.list": [{"topic": "test", "groupId": "G", "rateLimit": 1, "concurrency": 0}],
        "http.server.port": "abc"
    }"#;
    let Err(e) = load_from_str(text, Format::Json) else {
        panic!("accepted");
    };
    let keys: Vec<&str> = e.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "log.level",
            "kafka.bootstrap.servers",
            "kafka.topics[0].partitions",
            "kafka.producer.acl[0].topic",
            "kafka.consumer.list[0].concurrency",
            "http.server.port",
        ]
    );
    // Display: one "<key>: <problem>" line per problem.
    let shown = e.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(
        lines[4],
        "kafka.consumer.list[0].concurrency: must be at least 1, got 0"
    );
}

#[test]
fn type_and_range_problems_are_reported_together() {
    let found = toml_problems("[http.server]\nport = \"x\"\nworkers = 5000\nbody.limit = []");
    assert_eq!(
        found,
        vec![
            "http.server.port: expected an integer, got a string ('x')",
            "http.server.body.limit: expected an integer, got an array",
            "http.server.workers: must be at most 1024, got 5000",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// environment overrides

#[test]
fn env_overrides_file_values() {
    let s = with_env(
        "[http.server]\nport = 10086\n",
        Format::Toml,
        &[
            ("BIGPIPE_HTTP_SERVER_PORT", "8080"),
            ("BIGPIPE_KAFKA_BOOTSTRAP_SERVERS", "a:9092,b:9092"),
            ("BIGPIPE_LOG_LEVEL", "debug"),
            ("HTTP_SERVER_PORT", "1"),
        ],
    );
    let s = s.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.http.port, 8080);
    assert_eq!(s.kafka.bootstrap_servers, vec!["a:9092", "b:9092"]);
    assert_eq!(s.log.level, slog::Level::Debug);
    assert!(s.warnings.is_empty());
}

#[test]
fn env_overrides_delivery_threads_and_shutdown_grace() {
    let s = with_env(
        "[delivery]\nthreads = 2\n[shutdown]\ngrace.ms = 30000\n",
        Format::Toml,
        &[
            ("BIGPIPE_DELIVERY_THREADS", "8"),
            ("BIGPIPE_SHUTDOWN_GRACE_MS", "5000"),
            ("BIGPIPE_DELIVERY_KEEPALIVE_MS", "100"),
        ],
    );
    let s = s.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.delivery.threads, 8);
    assert_eq!(s.shutdown.grace, Duration::from_millis(5000));
    assert_eq!(s.delivery.keep_alive, Duration::from_millis(100));
    assert!(s.warnings.is_empty());
    // Over the Go JSON too, which has neither key.
    let go = load_with_env(&shipped("bigpipe.json"), SHIPPED_SECRETS).map(|s| s.delivery.threads);
    let overridden = load_with_env(
        &shipped("bigpipe.json"),
        [
            ("BIGPIPE_DELIVERY_THREADS", "3"),
            ("BIGPIPE_SHUTDOWN_GRACE_MS", "1"),
        ]
        .into_iter()
        .chain(SHIPPED_SECRETS),
    );
    assert_eq!(go.ok(), Some(2));
    let overridden = overridden.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(overridden.delivery.threads, 3);
    assert_eq!(overridden.shutdown.grace, Duration::from_millis(1));
}

#[test]
fn bad_delivery_env_value_names_the_variable() {
    let Err(e) = with_env(
        "",
        Format::Toml,
        &[
            ("BIGPIPE_DELIVERY_THREADS", "100"),
            ("BIGPIPE_SHUTDOWN_GRACE_MS", "soon"),
        ],
    ) else {
        panic!("accepted");
    };
    assert_eq!(
        e.to_string(),
        "delivery.threads: must be at most 64, got 100 \
         (set by environment variable BIGPIPE_DELIVERY_THREADS)\n\
         shutdown.grace.ms: expected an integer, got a string ('soon') \
         (set by environment variable BIGPIPE_SHUTDOWN_GRACE_MS)"
    );
}

#[test]
fn env_consumer_list_is_checked_like_the_file() {
    let Err(e) = with_env(
        TOPIC_TEST,
        Format::Toml,
        &[(
            "BIGPIPE_KAFKA_CONSUMER_LIST",
            "[{topic=\"test\", groupId=\"G\", rateLimit=1, deadLetterTopic=\"test\"}]",
        )],
    ) else {
        panic!("accepted");
    };
    assert_eq!(e.problems.len(), 1);
    assert_eq!(e.problems[0].key, "kafka.consumer.list[0].deadLetterTopic");
    assert!(
        e.problems[0]
            .message
            .ends_with("(set by environment variable BIGPIPE_KAFKA_CONSUMER_LIST)"),
        "{e}"
    );
}

#[test]
fn env_overrides_flat_json_too() {
    let s = with_env(
        r#"{"http.server.handler.channel.size": 500000}"#,
        Format::Json,
        &[("BIGPIPE_HTTP_SERVER_HANDLER_CHANNEL_SIZE", "10")],
    );
    assert_eq!(s.map(|s| s.producer.queue_calls).ok(), Some(10));
}

#[test]
fn bad_env_value_names_the_variable() {
    let Err(e) = with_env("", Format::Toml, &[("BIGPIPE_HTTP_SERVER_PORT", "http")]) else {
        panic!("accepted");
    };
    assert_eq!(
        e.to_string(),
        "http.server.port: expected an integer, got a string ('http') \
         (set by environment variable BIGPIPE_HTTP_SERVER_PORT)"
    );
}

#[test]
fn numeric_env_value_is_accepted_for_a_string_key() {
    let s = with_env("", Format::Toml, &[("BIGPIPE_KAFKA_CLIENT_ID", "42")]);
    assert_eq!(s.map(|s| s.kafka.client_id).ok(), Some("42".to_owned()));
    // ...but not from a file, where the user chose the type.
    assert_only_problem(
        "kafka.client.id = 42",
        "kafka.client.id: expected a string, got a number (42)",
    );
}

#[test]
fn unknown_env_variable_is_a_warning() {
    let s = with_env("", Format::Toml, &[("BIGPIPE_HTTP_SERVER_PROT", "1")]);
    assert_eq!(
        s.map(|s| s.warnings).ok(),
        Some(vec![
            "BIGPIPE_HTTP_SERVER_PROT is not a bigpipe setting, ignored (BIGPIPE_<KEY> sets \
             only the keys of conf/bigpipe.toml, such as BIGPIPE_HTTP_SERVER_PORT)"
                .to_owned()
        ])
    );
}

#[test]
fn other_programs_bigpipe_variables_are_named_once_and_never_read() {
    let env = [
        ("BIGPIPE_BIN", "/usr/local/bin/bigpipe"),
        ("BIGPIPE_KAFKA_VERSION", "4.3.1"),
        ("BIGPIPE_LOG_LEVEL", "debug"),
    ];
    let s = with_env("", Format::Toml, &env).unwrap();
    assert_eq!(s.log.level, slog::Level::Debug, "a real key still works");
    assert_eq!(
        s.warnings,
        [
            "BIGPIPE_BIN, BIGPIPE_KAFKA_VERSION are not bigpipe settings, ignored (BIGPIPE_<KEY> \
          sets only the keys of conf/bigpipe.toml, such as BIGPIPE_HTTP_SERVER_PORT)"
        ]
    );
}

#[test]
fn env_can_replace_an_array_key() {
    let s = with_env(
        TOPIC_TEST,
        Format::Toml,
        &[("BIGPIPE_KAFKA_TOPICS", "[{name=\"a\", partitions=2}]")],
    );
    let topics = s.map(|s| s.kafka.topics).unwrap_or_default();
    assert_eq!(topics.len(), 1);
    assert_eq!(topics[0].name, "a");
    assert_eq!(topics[0].partitions, 2);
}

#[test]
fn load_with_env_reads_a_file_and_overrides() {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("tempdir: {e}"),
    };
    let path = dir.path().join("c.json");
    if let Err(e) = std::fs::write(&path, r#"{"http.server.port": 1, "log.level": 2}"#) {
        panic!("write: {e}");
    }
    let s = load_with_env(&path, [("BIGPIPE_HTTP_SERVER_PORT", "2"), ("PATH", "/bin")]);
    let s = s.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.http.port, 2);
    assert_eq!(s.log.level, slog::Level::Error);
}

// ---------------------------------------------------------------------------------------------
// robustness

/// Values of every JSON shape that could trip a parser: wrong types, signs, sizes, nulls.
const JSON_VALUES: &[&str] = &[
    "null",
    "true",
    "0",
    "-1",
    "2.9",
    "1e300",
    "-1e300",
    "18446744073709551616",
    "-9223372036854775809",
    "340282366920938463463374607431768211456",
    "\"\"",
    "\"abc\"",
    "\"localhost\"",
    "\"a:1,b\"",
    "[]",
    "[null]",
    "[1, \"x\"]",
    "[[]]",
    "[{}]",
    "{}",
    "{\"a\": 1}",
    "[{\"name\": null, \"partitions\": -1, \"topic\": [], \"groupId\": {}, \"rateLimit\": \"x\", \"concurrency\": 1e300, \"timeout\": -0.5, \"retries\": 2.5, \"replicationFactor\": 70000, \"secret\": 5, \"circuitBreaker\": null}]",
    "[{\"name\": \"test\", \"partitions\": 3, \"topic\": \"test\", \"groupId\": \"G\", \"rateLimit\": 1e-300}]",
    "[{\"topic\": \"test\", \"groupId\": \"G\", \"rateLimit\": 1, \"sessionTimeout\": 1e300, \"heartbeatInterval\": -1, \"rebalanceTimeout\": null, \"assignor\": [], \"autoOffsetReset\": {}, \"deadLetterTopic\": null, \"successCodes\": [null, 200, \"\", \"-\", \"1-\", \"xx\", \"99999-1\", \"\\u00e9xx\"], \"retryBackoff\": 18446744073709551616, \"retryBackoffMax\": -0.5, \"retryAfterMax\": \"1s\", \"prefetchRecords\": 2.5, \"prefetchBytes\": -1e300, \"commitInterval\": true, \"drainTimeout\": [1], \"fetchMaxWait\": 1e-300}]",
    "[{\"topic\": \"test\", \"groupId\": \"G\", \"rateLimit\": 1, \"sessionTimeout\": 1000, \"heartbeatInterval\": 604800000, \"retryBackoff\": 604800000, \"retryBackoffMax\": 0, \"deadLetterTopic\": \"test\", \"successCodes\": [\"5xx\", \"100-599\", \"599\"]}]",
];

const TOML_VALUES: &[&str] = &[
    "true",
    "0",
    "-1",
    "2.9",
    "nan",
    "inf",
    "-inf",
    "9223372036854775807",
    "-9223372036854775808",
    "1979-05-27T07:32:00Z",
    "07:32:00",
    "\"\"",
    "\"abc\"",
    "[]",
    "[1, \"x\"]",
    "[[]]",
    "[{}]",
    "{}",
    "{ a = 1 }",
    "[{ name = 1, partitions = nan, topic = [], groupId = {}, rateLimit = inf, concurrency = -9223372036854775808, timeout = 1e300, retries = -0.0, replicationFactor = 1979-05-27 }]",
    "[{ topic = \"test\", groupId = \"G\", rateLimit = 1, sessionTimeout = nan, heartbeatInterval = inf, rebalanceTimeout = 1979-05-27, assignor = 1, autoOffsetReset = \"\", deadLetterTopic = \"..\", successCodes = [[], {}, \"2xx-\", \"\\u00e9\"], retryBackoff = -inf, retryBackoffMax = 9223372036854775807, retryAfterMax = -9223372036854775808, prefetchRecords = 07:32:00, prefetchBytes = 1e300, commitInterval = {}, drainTimeout = -0.0, fetchMaxWait = \"\" }]",
];

/// Runs `load_from_str` with panics caught, and checks the invariants every answer must keep.
fn assert_no_panic(text: &str, format: Format) {
    let result = std::panic::catch_unwind(|| load_from_str(text, format));
    match result {
        Err(_) => panic!("load_from_str panicked on {format:?} input:\n{text}"),
        Ok(Ok(settings)) => {
            assert!(settings.warnings.iter().all(|w| !w.contains('\n')), "{text}");
        }
        Ok(Err(e)) => {
            assert!(!e.problems.is_empty(), "{text}");
            for p in &e.problems {
                assert!(!p.key.is_empty() && !p.message.is_empty(), "{text}: {p:?}");
                assert!(
                    !p.key.contains('\n') && !p.message.contains('\n'),
                    "{text}: {p:?}"
                );
            }
            assert_eq!(e.to_string().lines().count(), e.problems.len(), "{text}");
        }
    }
}

#[test]
fn malformed_documents_never_panic() {
    let mut keys: Vec<String> = validate::KEYS.iter().map(|k| (*k).to_owned()).collect();
    keys.extend(["log", "kafka", "kafka.producer", "http.server", "x.y", "a..b"].map(String::from));

    for key in &keys {
        for value in JSON_VALUES {
            assert_no_panic(&format!("{{\"{key}\": {value}}}"), Format::Json);
        }
        for value in TOML_VALUES {
            assert_no_panic(&format!("{key} = {value}"), Format::Toml);
        }
    }
    // Every consumer entry key with every kind of value, next to valid required keys.
    for key in consumer::KEYS {
        let others = required_without(key);
        for value in JSON_VALUES {
            // The TOML entry as a JSON object: `topic = "test"` → `"topic": "test"`.
            let mut fields: Vec<String> = others
                .lines()
                .filter_map(|line| line.split_once(" = "))
                .map(|(k, v)| format!("\"{k}\": {v}"))
                .collect();
            fields.push(format!("\"{key}\": {value}"));
            let text = format!(
                "{{\"kafka.topics\": [{{\"name\": \"test\", \"partitions\": 1}}], \
                 \"kafka.consumer.list\": [{{{}}}]}}",
                fields.join(", ")
            );
            assert_no_panic(&text, Format::Json);
        }
        for value in TOML_VALUES {
            assert_no_panic(&consumer_entry(&format!("{others}{key} = {value}")), Format::Toml);
        }
    }
    for text in [
        "",
        " ",
        "[]",
        "5",
        "\"x\"",
        "null",
        "true",
        "{",
        "{\"a\":}",
        "\u{0}",
        "{\"\": 1}",
        "{\".\": 1}",
        "{\"log.\": 1}",
    ] {
        assert_no_panic(text, Format::Json);
    }
    for text in [
        "[",
        "= 5",
        "a =",
        "\u{0}",
        "[[kafka.topics]]\n[kafka]\ntopics = 1",
        "\"\" = 1",
    ] {
        assert_no_panic(text, Format::Toml);
    }
}

#[test]
fn malformed_values_of_every_key_are_rejected_with_that_key() {
    // Every key bigpipe reads refuses an array of nulls (no key takes one), naming the key.
    for key in validate::KEYS {
        if ["kafka.producer.retries", "kafka.producer.channel.size"].contains(key) {
            continue; // ignored keys accept anything
        }
        // sasl.* and ssl.* are read only when the protocol uses them (else: a warning).
        let protocol = if key.starts_with("kafka.sasl.") || key.starts_with("kafka.ssl.") {
            "\"kafka.security.protocol\": \"SASL_SSL\", "
        } else {
            ""
        };
        let text = format!("{{{protocol}\"{key}\": [null]}}");
        let Err(e) = load_from_str(&text, Format::Json) else {
            panic!("{text} was accepted");
        };
        assert!(e.problems.iter().any(|p| p.key.starts_with(key)), "{text}: {e}");
    }
}

#[test]
fn malformed_values_of_every_consumer_key_are_rejected_with_that_key() {
    // Every entry key refuses an array of tables (no key takes one), naming the key.
    for key in consumer::KEYS {
        let text = consumer_entry(&format!("{}{key} = [{{}}]", required_without(key)));
        let Err(e) = load_from_str(&text, Format::Toml) else {
            panic!("{text} was accepted");
        };
        let path = format!("kafka.consumer.list[0].{key}");
        assert!(e.problems.iter().any(|p| p.key.starts_with(&path)), "{text}: {e}");
    }
}

#[test]
fn the_tls_ca_file_is_read_and_checked_when_the_config_loads() {
    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("it/fixtures/tls/ca.pem");
    let s = toml(&format!(
        "[delivery]\ntls.ca.file = {:?}\n",
        ca.display().to_string()
    ));
    let bundle = s.delivery.tls_ca.expect("read");
    assert_eq!(bundle.path, ca);
    assert!(bundle.pem.starts_with(b"-----BEGIN CERTIFICATE-----"));

    let missing = toml_problems("[delivery]\ntls.ca.file = \"/nonexistent/ca.pem\"\n");
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(
        missing[0].starts_with("delivery.tls.ca.file: cannot read '/nonexistent/ca.pem': "),
        "{missing:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.txt");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let shown = not_pem.display().to_string();
    assert_only_problem(
        &format!("[delivery]\ntls.ca.file = {shown:?}\n"),
        &format!("delivery.tls.ca.file: '{shown}' holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
    );
    assert_only_problem(
        "[delivery]\ntls.ca.file = \"\"\n",
        "delivery.tls.ca.file: must not be empty",
    );
}

#[test]
fn forward_headers_are_read_globally_and_per_entry() {
    let s = toml(&format!(
        "{}[delivery]\nheaders.forward = [\"*\"]\n",
        consumer_entry(&format!(
            "{REQUIRED}forwardHeaders = [\"X-Request-*\", \"Authorization\"]"
        ))
    ));
    assert_eq!(s.delivery.forward_headers, ForwardRules::all());
    assert!(
        s.warnings
            .iter()
            .any(|w| w.starts_with("delivery.headers.forward contains \"*\": every caller header")),
        "{:?}",
        s.warnings
    );
    let entry = s.consumers[0].forward_headers.as_ref().unwrap();
    assert_eq!(
        *entry,
        ForwardRules::parse(["X-Request-*", "Authorization"]).unwrap()
    );
    // JSON, flat Go-style key.
    let json = ok(r#"{"delivery.headers.forward": ["X-A"]}"#, Format::Json);
    assert_eq!(
        json.delivery.forward_headers,
        ForwardRules::parse(["X-A"]).unwrap()
    );
    // The restore line, from the environment.
    let env = with_env(
        "",
        Format::Toml,
        &[("BIGPIPE_DELIVERY_HEADERS_FORWARD", "[\"*\"]")],
    )
    .unwrap();
    assert_eq!(env.delivery.forward_headers, ForwardRules::all());
    // An empty list forwards nothing (not the default).
    let none = toml("[delivery]\nheaders.forward = []\n");
    assert_eq!(none.delivery.forward_headers, ForwardRules::none());
}

#[test]
fn forward_rules_must_be_names_or_patterns() {
    let text = toml_problems(&format!(
        "{}[delivery]\nheaders.forward = [\"X-*\", \"*X\", \"\", 3]\n",
        consumer_entry(&format!("{REQUIRED}forwardHeaders = \"X-*\""))
    ))
    .join("\n");
    assert!(
        text.contains("delivery.headers.forward[1]: is not a header name, a 'Prefix*' pattern or \"*\""),
        "{text}"
    );
    assert!(
        text.contains("delivery.headers.forward[2]: must not be empty"),
        "{text}"
    );
    assert!(
        text.contains("delivery.headers.forward[3]: expected a string"),
        "{text}"
    );
    assert!(
        text.contains("kafka.consumer.list[0].forwardHeaders: expected an array"),
        "{text}"
    );
}

/// The standardwebhooks library's test key (24 bytes).
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[test]
fn signing_keys_are_read_from_the_entry_and_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    let second = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    std::fs::write(&file, format!("# rotation\n\n  {second}  \n")).unwrap();
    let s = toml(&consumer_entry(&format!(
        "{REQUIRED}signingKeys = [\"{WHSEC}\"]\nsigningKeysFile = {:?}",
        file.display().to_string()
    )));
    assert_eq!(
        s.consumers[0].signing_keys,
        [
            SigningKey::parse(WHSEC).unwrap(),
            SigningKey::parse(second).unwrap()
        ]
    );
    assert!(
        toml(&consumer_entry(REQUIRED)).consumers[0]
            .signing_keys
            .is_empty()
    );
}

#[test]
fn signing_key_problems_never_quote_the_key() {
    // Each of these holds something secret-looking that must not appear in any message.
    let secret = "SECRETSECRETSECRETSECRET";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    let cases = [
        (
            format!("signingKeys = [\"{secret}\"]"),
            "kafka.consumer.list[0].signingKeys[0]: must be a Standard Webhooks secret, 'whsec_' followed by base64",
        ),
        (
            format!("signingKeys = \"whsec_{secret}\""),
            "kafka.consumer.list[0].signingKeys: expected an array of strings, each 'whsec_' followed by base64",
        ),
        (
            format!("signingKeys = [\"whsec_{secret}!\"]"),
            "kafka.consumer.list[0].signingKeys[0]: the part after 'whsec_' is not valid base64",
        ),
        (
            "signingKeys = [\"whsec_AAAA\"]".to_owned(),
            "kafka.consumer.list[0].signingKeys[0]: decodes to 3 bytes; a key must have 24 to 64",
        ),
        (
            format!("signingKeys = [{{ k = \"{secret}\" }}]"),
            "kafka.consumer.list[0].signingKeys[0]: expected a string, 'whsec_' followed by base64",
        ),
    ];
    for (line, want) in cases {
        let got = toml_problems(&consumer_entry(&format!("{REQUIRED}{line}")));
        assert_eq!(got, [want.to_owned()], "{line}");
    }
    let got = toml_problems(&consumer_entry(&format!(
        "{REQUIRED}signingKeysFile = {:?}",
        file.display().to_string()
    )))
    .join("\n");
    assert!(
        got.contains("line 1: must be a Standard Webhooks secret"),
        "{got}"
    );
    assert!(!got.contains(secret), "{got}");
    let missing = toml_problems(&consumer_entry(&format!(
        "{REQUIRED}signingKeysFile = \"/nonexistent/keys\""
    )));
    assert!(
        missing[0].starts_with("kafka.consumer.list[0].signingKeysFile: cannot read '/nonexistent/keys'"),
        "{missing:?}"
    );
    let four = format!("signingKeys = [{}]", vec![format!("\"{WHSEC}\""); 4].join(", "));
    assert_eq!(
        toml_problems(&consumer_entry(&format!("{REQUIRED}{four}"))),
        ["kafka.consumer.list[0].signingKeys: at most 3 signing keys (two during a rotation), got 4"]
    );
}

#[test]
fn drop_headers_must_be_header_names() {
    let err = load_from_str(
        "[delivery]\nheaders.drop = [\"ok\", \"bad name\", 3]\n",
        Format::Toml,
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("delivery.headers.drop[1]: is not an HTTP header name"),
        "{text}"
    );
    assert!(text.contains("delivery.headers.drop[2]"), "{text}");
}

#[test]
fn retry_tiers_default_names_and_off() {
    let c = consumer("");
    let names: Vec<(String, String)> = c
        .retry_tiers
        .iter()
        .map(|&d| (c.tier_topic(d), c.tier_group(d)))
        .collect();
    assert_eq!(
        names,
        vec![
            ("test.retry.G.5s".to_owned(), "G.retry.5s".to_owned()),
            ("test.retry.G.1m".to_owned(), "G.retry.1m".to_owned()),
            ("test.retry.G.10m".to_owned(), "G.retry.10m".to_owned()),
        ]
    );
    assert!(consumer("retryTiers = []").retry_tiers.is_empty());
    assert_eq!(
        consumer("retryTiers = [1500, 7200000]").retry_tiers,
        vec![Duration::from_millis(1500), Duration::from_secs(7200)]
    );
    assert_eq!(crate::config::tier_label(Duration::from_millis(1500)), "1500ms");
}

#[test]
fn retry_tiers_must_increase_and_be_long_enough() {
    assert_only_consumer_problem(
        "retryTiers = [5000, 5000]",
        "kafka.consumer.list[0].retryTiers[1]: tiers must be in increasing order, got 5000 ms after 5000 ms",
    );
    assert_only_consumer_problem(
        "retryTiers = [500]",
        "kafka.consumer.list[0].retryTiers[0]: must be at least 1000, got 500",
    );
}

#[test]
fn host_concurrency_defaults_to_half_and_is_at_most_concurrency() {
    assert_eq!(consumer("concurrency = 1").host_concurrency, 1);
    assert_eq!(consumer("concurrency = 9").host_concurrency, 4);
    assert_only_consumer_problem(
        "concurrency = 4\nhostConcurrency = 5",
        "kafka.consumer.list[0].hostConcurrency: must be at most 4, got 5",
    );
}

#[test]
fn retry_for_is_a_duration() {
    assert_eq!(consumer("retryFor = 300000").retry_for, Duration::from_secs(300));
    assert_eq!(consumer("").retry_for, Duration::ZERO);
}

#[test]
fn a_group_id_that_cannot_name_a_tier_topic_is_a_problem_unless_tiers_are_off() {
    let text = consumer_entry(&format!("{REQUIRED}retryTiers = [5000]"))
        .replace("groupId = \"G\"", "groupId = \"G:1\"");
    let found = problems(&text, Format::Toml);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("kafka.consumer.list[0].retryTiers[0]: retry tier topic 'test.retry.G:1.5s'"),
        "{found:?}"
    );
    let off =
        consumer_entry(&format!("{REQUIRED}retryTiers = []")).replace("groupId = \"G\"", "groupId = \"G:1\"");
    assert!(toml(&off).consumers[0].retry_tiers.is_empty());
}

// ---------------------------------------------------------------------------------------------
// destination policy: delivery.allow / delivery.deny and ACL targets

#[test]
fn allow_and_deny_are_read_as_address_rules() {
    let s = toml(
        "[delivery]\nallow = [\"127.0.0.1:10086\", \"[::1]:8080\", \"169.254.0.0/16\"]\n\
         deny = [\"10.0.0.0/8\", \"fd00::/8\"]\n",
    );
    let p = &s.delivery.destinations;
    let shown = |rules: &[Rule]| rules.iter().map(ToString::to_string).collect::<Vec<_>>();
    assert_eq!(
        shown(p.allow()),
        ["127.0.0.1:10086", "[::1]:8080", "169.254.0.0/16"]
    );
    assert_eq!(shown(p.deny()), ["10.0.0.0/8", "fd00::/8"]);
    // From the environment too, as the shipped file documents.
    let s = with_env(
        "",
        Format::Toml,
        &[("BIGPIPE_DELIVERY_ALLOW", "[\"127.0.0.1:9\"]")],
    )
    .unwrap();
    assert_eq!(shown(s.delivery.destinations.allow()), ["127.0.0.1:9"]);
}

#[test]
fn bad_address_rules_are_problems_at_their_index() {
    let text =
        toml_problems("[delivery]\nallow = [\"127.1\", \"10.1.2.3/16\", \"ok\"]\ndeny = \"10.0.0.0/8\"\n");
    assert_eq!(text.len(), 4, "{text:?}");
    assert!(
        text[0].starts_with("delivery.allow[0]: '127.1' is not an IP address"),
        "{text:?}"
    );
    assert!(
        text[1].starts_with("delivery.allow[1]: '10.1.2.3/16' has host bits set; the block is 10.1.0.0/16"),
        "{text:?}"
    );
    assert!(text[2].starts_with("delivery.allow[2]: 'ok'"), "{text:?}");
    assert_eq!(
        text[3],
        "delivery.deny: expected an array, got a string ('10.0.0.0/8')"
    );
}

const ACL_WITH: &str = "[[kafka.producer.acl]]\nname = \"a\"\nsecret = \"s\"\ntopic = \"test\"\n";

#[test]
fn acl_targets_are_read_and_matched() {
    let s = toml(&format!(
        "{TOPIC_TEST}{ACL_WITH}targets = [\"https://api.example.com/hooks/\", \"*.svc.local\", \"10.1.0.0/16\"]\n"
    ));
    let targets = s.producer.acl[0].targets.as_ref().expect("targets");
    let shown: Vec<String> = targets.entries().iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        ["https://api.example.com/hooks/", "*.svc.local", "10.1.0.0/16"]
    );
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

#[test]
fn an_acl_without_targets_is_warned_about() {
    let s = toml(&format!("{TOPIC_TEST}{ACL_WITH}"));
    assert_eq!(s.producer.acl[0].targets, None);
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(
        s.warnings[0].starts_with("kafka.producer.acl[0] (a) has no targets"),
        "{:?}",
        s.warnings
    );
}

#[test]
fn bad_or_empty_acl_targets_are_problems() {
    assert_eq!(
        toml_problems(&format!("{TOPIC_TEST}{ACL_WITH}targets = []\n")),
        [
            "kafka.producer.acl[0].targets: is empty, which would refuse every call; remove the key or list the destinations"
        ]
    );
    let text = toml_problems(&format!(
        "{TOPIC_TEST}{ACL_WITH}targets = [\"ftp://x/\", \"https://u:p@x/\", \"2130706433\", 5]\n"
    ));
    assert_eq!(text.len(), 4, "{text:?}");
    for (i, p) in text.iter().enumerate() {
        assert!(
            p.starts_with(&format!("kafka.producer.acl[0].targets[{i}]: ")),
            "{p}"
        );
    }
}
// ACL secrets and quotas

fn acl_config(fields: &str) -> String {
    format!("{TOPIC_TEST}[[kafka.producer.acl]]\nname = \"a\"\ntopic = \"test\"\n{fields}\n")
}

#[test]
fn shipped_files_carry_no_usable_secret() {
    // Without the variables they name, the shipped files do not load: no secret is built in.
    for name in ["bigpipe.toml", "bigpipe.json"] {
        let no_env: [(&str, &str); 0] = [];
        let e = load_with_env(&shipped(name), no_env).unwrap_err().to_string();
        assert!(
            e.contains("kafka.producer.acl[0].secret: refers to environment variable ACL_SYSTEM_1_SECRET, which is not set"),
            "{name}: {e}"
        );
        let text = std::fs::read_to_string(shipped(name)).unwrap();
        for sample in secret::SAMPLE_SECRETS {
            assert!(!text.contains(sample), "{name} still ships {sample:?}");
        }
    }
}

#[test]
fn shipped_toml_listens_on_loopback_only() {
    assert_eq!(load_shipped("bigpipe.toml").http.host, "127.0.0.1");
    assert_eq!(toml("").http.host, "127.0.0.1");
}

#[test]
fn secret_from_an_environment_reference() {
    let s = with_env(
        &acl_config("secret = \"${A_SECRET}\""),
        Format::Toml,
        &[("A_SECRET", "from env")],
    )
    .unwrap();
    assert_eq!(s.producer.acl[0].secret.expose(), "from env");
    // Unset: the key and the variable are named.
    let e = with_env(&acl_config("secret = \"${A_SECRET}\""), Format::Toml, &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "kafka.producer.acl[0].secret: refers to environment variable A_SECRET, which is not set"
    );
}

#[test]
fn secret_from_a_file_without_its_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.secret");
    std::fs::write(&path, "from a file\n").unwrap();
    let s = toml(&acl_config(&format!(
        "secret_file = {:?}",
        path.display().to_string()
    )));
    assert_eq!(s.producer.acl[0].secret.expose(), "from a file");
    let missing = dir.path().join("missing");
    let problems = toml_problems(&acl_config(&format!(
        "secret_file = {:?}",
        missing.display().to_string()
    )));
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].starts_with("kafka.producer.acl[0].secret_file: cannot read secret file")
            && problems[0].contains("missing"),
        "{problems:?}"
    );
}

#[test]
fn secret_and_secret_file_are_exclusive_and_one_is_required() {
    assert_eq!(
        toml_problems(&acl_config("secret = \"s\"\nsecret_file = \"/x\"")),
        [
            "kafka.producer.acl[0].secret_file: set either kafka.producer.acl[0].secret or \
          kafka.producer.acl[0].secret_file, not both"
        ]
    );
    assert_eq!(
        toml_problems(&acl_config("")),
        ["kafka.producer.acl[0].secret: required key is missing (or set \
          kafka.producer.acl[0].secret_file to a file holding the secret)"]
    );
}

#[test]
fn a_mistyped_secret_is_not_echoed() {
    for (value, kind) in [
        ("123456789", "a number"),
        ("true", "a boolean"),
        ("[\"hunter2\"]", "an array"),
    ] {
        let problems = toml_problems(&acl_config(&format!("secret = {value}")));
        assert_eq!(
            problems,
            [format!(
                "kafka.producer.acl[0].secret: expected a string, got {kind}"
            )]
        );
    }
    // The whole section from the environment, mistyped: not echoed either.
    let e = with_env(
        TOPIC_TEST,
        Format::Toml,
        &[("BIGPIPE_KAFKA_PRODUCER_ACL", "name=a secret=hunter2")],
    )
    .unwrap_err()
    .to_string();
    assert!(!e.contains("hunter2"), "{e}");
    // Debug of the settings does not show it.
    let s = toml(&acl_config("secret = \"hunter2\""));
    assert!(!format!("{s:?}").contains("hunter2"));
}

#[test]
fn readme_sample_secrets_are_refused_unless_demo() {
    let config = acl_config("secret = \"you are good\"");
    let problems = toml_problems(&config);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("kafka.producer.acl[0].secret: ACL 'a' uses a sample secret")
            && problems[0].contains("demo = true")
            && !problems[0].contains("you are good"),
        "{problems:?}"
    );
    assert!(toml(&format!("demo = true\n{config}")).demo);
    let demo_env = with_env(&config, Format::Toml, &[("BIGPIPE_DEMO", "1")]).unwrap();
    assert!(demo_env.demo);
    assert!(with_env(&config, Format::Toml, &[("BIGPIPE_DEMO", "true")]).is_ok());
    // Through a reference too.
    assert!(
        with_env(
            &acl_config("secret = \"${S}\""),
            Format::Toml,
            &[("S", "you are bad")]
        )
        .is_err()
    );
    assert_eq!(
        toml_problems(&format!("demo = \"yes\"\n{TOPIC_TEST}")),
        ["demo: expected true or false, got a string ('yes')"]
    );
}

#[test]
fn acl_quota_rate_and_burst() {
    let s = toml(&acl_config("secret = \"s\"\nrate = 2.5"));
    assert_eq!(s.producer.acl[0].quota, Some(AclQuota { rate: 2.5, burst: 3 }));
    let s = toml(&acl_config("secret = \"s\"\nrate = 0.01\nburst = 20"));
    assert_eq!(
        s.producer.acl[0].quota,
        Some(AclQuota {
            rate: 0.01,
            burst: 20
        })
    );
    assert_eq!(toml(&acl_config("secret = \"s\"")).producer.acl[0].quota, None);
    assert_eq!(
        toml_problems(&acl_config("secret = \"s\"\nburst = 5")),
        ["kafka.producer.acl[0].burst: needs kafka.producer.acl[0].rate (calls per second) as well"]
    );
    assert_eq!(
        toml_problems(&acl_config("secret = \"s\"\nrate = 0")),
        ["kafka.producer.acl[0].rate: must be from 0.001 to 1000000 calls per second, got 0"]
    );
    assert_eq!(
        toml_problems(&acl_config("secret = \"s\"\nrate = 1\nburst = 0")),
        ["kafka.producer.acl[0].burst: must be at least 1, got 0"]
    );
}

// ---------------------------------------------------------------------------------------------
// kafka.security.protocol, kafka.sasl.*, kafka.ssl.*

fn kafka_tls_fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("it/fixtures/kafka-tls")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn kafka_security_defaults_to_plaintext() {
    assert_eq!(toml("").kafka.security, KafkaSecurity::default());
    assert_eq!(toml("").kafka.security.protocol, SecurityProtocol::Plaintext);
}

#[test]
fn sasl_ssl_with_every_key_from_the_file() {
    let text = format!(
        "[kafka]\nsecurity.protocol = \"sasl_ssl\"\nsasl.mechanism = \"scram-sha-512\"\n\
         sasl.username = \"bigpipe\"\nsasl.password = \"${{KAFKA_PW}}\"\n\
         ssl.ca.location = \"{}\"\nssl.certificate.location = \"{}\"\nssl.key.location = \"{}\"\n\
         ssl.endpoint.identification.hostname = \"broker.test\"\n",
        kafka_tls_fixture("ca.pem"),
        kafka_tls_fixture("client.pem"),
        kafka_tls_fixture("client.key"),
    );
    let s = with_env(&text, Format::Toml, &[("KAFKA_PW", "pw-from-env")]).expect("valid");
    let sec = &s.kafka.security;
    assert_eq!(sec.protocol, SecurityProtocol::SaslSsl);
    let sasl = sec.sasl.as_ref().expect("sasl");
    assert_eq!(sasl.mechanism, SaslMechanism::ScramSha512);
    assert_eq!(sasl.username, "bigpipe");
    assert_eq!(sasl.password.expose(), "pw-from-env");
    let tls = sec.tls.as_ref().expect("tls");
    assert!(
        tls.ca
            .as_ref()
            .unwrap()
            .pem
            .starts_with(b"-----BEGIN CERTIFICATE-----")
    );
    assert!(tls.certificate.is_some() && tls.key.is_some());
    assert_eq!(tls.server_name.as_deref(), Some("broker.test"));
    // Neither the password nor the key's content is printed.
    let shown = format!("{s:?}");
    assert!(
        !shown.contains("pw-from-env") && !shown.contains("PRIVATE KEY"),
        "{shown}"
    );
}

#[test]
fn security_keys_from_the_environment_with_the_password_as_set() {
    let s = with_env(
        "",
        Format::Toml,
        &[
            ("BIGPIPE_KAFKA_SECURITY_PROTOCOL", "SSL"),
            ("BIGPIPE_KAFKA_SSL_CA_LOCATION", &kafka_tls_fixture("ca.pem")),
            (
                "BIGPIPE_KAFKA_SSL_CERTIFICATE_LOCATION",
                &kafka_tls_fixture("client.pem"),
            ),
            ("BIGPIPE_KAFKA_SSL_KEY_LOCATION", &kafka_tls_fixture("client.key")),
        ],
    )
    .expect("valid");
    assert_eq!(s.kafka.security.protocol, SecurityProtocol::Ssl);
    assert!(s.kafka.security.tls.as_ref().unwrap().key.is_some());

    let s = with_env(
        "",
        Format::Toml,
        &[
            ("BIGPIPE_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("BIGPIPE_KAFKA_SASL_MECHANISM", "PLAIN"),
            ("BIGPIPE_KAFKA_SASL_USERNAME", "007"),
            // figment would read this as the number 42; the password is the text as set.
            ("BIGPIPE_KAFKA_SASL_PASSWORD", "0042"),
        ],
    )
    .expect("valid");
    let sasl = s.kafka.security.sasl.expect("sasl");
    assert_eq!((sasl.username.as_str(), sasl.password.expose()), ("007", "0042"));
    assert!(s.kafka.security.tls.is_none());
}

#[test]
fn sasl_password_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pw");
    std::fs::write(&path, "from-file\n").unwrap();
    let text = format!(
        "[kafka]\nsecurity.protocol = \"SASL_PLAINTEXT\"\nsasl.mechanism = \"SCRAM-SHA-256\"\n\
         sasl.username = \"u\"\nsasl.password.file = \"{}\"\n",
        path.display()
    );
    let sasl = toml(&text).kafka.security.sasl.expect("sasl");
    assert_eq!(sasl.password.expose(), "from-file");
    let env = with_env(
        "[kafka]\nsecurity.protocol = \"SASL_PLAINTEXT\"\nsasl.mechanism = \"PLAIN\"\nsasl.username = \"u\"\n",
        Format::Toml,
        &[("BIGPIPE_KAFKA_SASL_PASSWORD_FILE", &path.display().to_string())],
    )
    .expect("valid");
    assert_eq!(env.kafka.security.sasl.unwrap().password.expose(), "from-file");

    let missing = toml_problems(
        "[kafka]\nsecurity.protocol = \"SASL_PLAINTEXT\"\nsasl.mechanism = \"PLAIN\"\n\
         sasl.username = \"u\"\nsasl.password.file = \"/nonexistent/pw\"\n",
    );
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(
        missing[0].starts_with("kafka.sasl.password.file: cannot read secret file /nonexistent/pw"),
        "{missing:?}"
    );
}

#[test]
fn sasl_without_its_keys_names_each_missing_key() {
    let p = toml_problems("[kafka]\nsecurity.protocol = \"SASL_SSL\"\n");
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(p[0].starts_with("kafka.sasl.mechanism: required"), "{p:?}");
    assert!(p[1].starts_with("kafka.sasl.username: required"), "{p:?}");
    assert!(p[2].starts_with("kafka.sasl.password: required"), "{p:?}");

    assert_only_problem(
        "[kafka]\nsecurity.protocol = \"TLS\"\n",
        "kafka.security.protocol: expected \"PLAINTEXT\", \"SSL\", \"SASL_PLAINTEXT\" or \"SASL_SSL\", got 'TLS'",
    );
    let p = toml_problems(
        "[kafka]\nsecurity.protocol = \"SASL_PLAINTEXT\"\nsasl.mechanism = \"GSSAPI\"\n\
         sasl.username = \"\"\nsasl.password = \"${UNSET_KAFKA_PW}\"\n",
    );
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(
        p[0].starts_with("kafka.sasl.mechanism: expected \"PLAIN\""),
        "{p:?}"
    );
    assert_eq!(p[1], "kafka.sasl.username: must not be empty");
    assert_eq!(
        p[2],
        "kafka.sasl.password: refers to environment variable UNSET_KAFKA_PW, which is not set"
    );
}

#[test]
fn ssl_files_are_read_and_checked_when_the_config_loads() {
    let ssl = |keys: &str| toml_problems(&format!("[kafka]\nsecurity.protocol = \"SSL\"\n{keys}"));
    let p = ssl("ssl.ca.location = \"/nonexistent/ca.pem\"\n");
    assert!(
        p.len() == 1 && p[0].starts_with("kafka.ssl.ca.location: cannot read '/nonexistent/ca.pem': "),
        "{p:?}"
    );
    let key = kafka_tls_fixture("client.key");
    let p = ssl(&format!("ssl.ca.location = \"{key}\"\n"));
    assert_eq!(
        p,
        vec![format!(
            "kafka.ssl.ca.location: '{key}' holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        )]
    );
    let cert = kafka_tls_fixture("client.pem");
    let p = ssl(&format!("ssl.key.location = \"{cert}\"\n"));
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].starts_with("kafka.ssl.key.location: ") && p[0].contains("holds no PEM private key"),
        "{p:?}"
    );
    let p = ssl(&format!("ssl.key.location = \"{key}\"\n"));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("kafka.ssl.certificate.location: required when kafka.ssl.key.location"),
        "{p:?}"
    );

    let p = ssl(&format!("ssl.certificate.location = \"{cert}\"\n"));
    assert_eq!(
        p,
        vec![
            "kafka.ssl.key.location: required when kafka.ssl.certificate.location is set (the certificate's private key)"
                .to_owned()
        ]
    );

    let dir = tempfile::tempdir().unwrap();
    let encrypted = dir.path().join("enc.key");
    std::fs::write(
        &encrypted,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let p = ssl(&format!(
        "ssl.certificate.location = \"{cert}\"\nssl.key.location = \"{}\"\n",
        encrypted.display()
    ));
    assert!(p.len() == 1 && p[0].contains("encrypted private key"), "{p:?}");

    let p = ssl("ssl.endpoint.identification.hostname = \"not a name!\"\n");
    assert_eq!(
        p,
        vec![
            "kafka.ssl.endpoint.identification.hostname: 'not a name!' is not a DNS name or IP address"
                .to_owned()
        ]
    );
}

#[test]
fn security_keys_of_another_mode_are_ignored_with_a_warning() {
    let s = toml("[kafka]\nsasl.mechanism = \"PLAIN\"\nssl.ca.location = \"/nonexistent\"\n");
    assert_eq!(s.kafka.security, KafkaSecurity::default());
    assert!(
        s.warnings.iter().any(
            |w| w.contains("kafka.sasl.mechanism is ignored") && w.contains("SASL_PLAINTEXT or SASL_SSL")
        ),
        "{:?}",
        s.warnings
    );
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("kafka.ssl.ca.location is ignored")),
        "{:?}",
        s.warnings
    );
}

#[test]
fn security_keys_are_known_keys() {
    for key in security::SECURITY_KEYS {
        assert!(validate::KEYS.contains(key), "{key} missing from validate::KEYS");
    }
}

#[test]
fn metrics_max_hosts_is_read_and_range_checked() {
    assert_eq!(toml("[metrics]\nmax_hosts = 7").metrics.max_hosts, 7);
    assert_only_problem(
        "metrics.max_hosts = 0",
        "metrics.max_hosts: must be at least 1, got 0",
    );
    assert_only_problem(
        "[metrics]\nmax_hosts = 10001",
        "metrics.max_hosts: must be at most 10000, got 10001",
    );
    assert_only_problem(
        "[metrics]\nmax_hosts = \"many\"",
        "metrics.max_hosts: expected an integer, got a string ('many')",
    );
}
