//! Issue 10, must 4: bigpipe against the test broker's secured listeners (`scripts/kafka.sh up`
//! starts them: SSL with client certificates, SASL_PLAINTEXT and SASL_SSL with PLAIN and
//! SCRAM users, StandardAuthorizer with ACLs on `sec-*` only). For each security mode a real
//! bigpipe process ingests with `"ack":"kafka"`, delivers, survives a rebalance when a second
//! process joins, and writes a dead letter; then the errors a user meets first: a missing
//! permission (no Create on the topic) and a wrong password, each in the log and `/readyz`.
//!
//! The listeners come from `IT_KAFKA_SECURE_BASE` (`host:port` of the SSL listener;
//! SASL_PLAINTEXT is the next port, SASL_SSL the one after; default: the plaintext
//! bootstrap's host and port + 2) and the certificates from `IT_KAFKA_SECURE_DIR` (default
//! `<repo>/.kafka/secure`); `scripts/kafka.sh up` writes both into `<run dir>/secure/it.env`
//! and `make it` exports them. When they are missing every test here fails saying so.
//!
//! bigpipe gets exactly the Kafka-style keys users know (`kafka.security.protocol`,
//! `kafka.sasl.mechanism`, `kafka.sasl.username`, `kafka.ssl.ca.location`,
//! `kafka.ssl.certificate.location`, `kafka.ssl.key.location` in its config file) and the
//! password through the environment (`BIGPIPE_KAFKA_SASL_PASSWORD`), as in production.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::group::covers;
use crate::helpers::process::Process;
use crate::helpers::target::Target;
use crate::helpers::*;

/// How to get what these tests need, said by every failure about a missing listener or file.
const HOW: &str = "start the test broker with its secured listeners (`scripts/kafka.sh up`; they are on \
                   unless BIGPIPE_KAFKA_SECURE=0), then export what it wrote: \
                   `set -a; . .kafka/secure/it.env; set +a` (`make it` does both), or point \
                   IT_KAFKA_SECURE_BASE (host:port of the SSL listener; SASL_PLAINTEXT and SASL_SSL on the \
                   next two ports) and IT_KAFKA_SECURE_DIR (ca.pem, client.pem, client.key) at your own";

/// The ACLs of the test broker cover only topics and groups with this prefix.
const PREFIX: &str = "sec-";

/// SASL users of the test broker (scripts/kafka.sh SECURE_USERS).
const USER: (&str, &str) = ("bigpipe", "bigpipe-secret");
const LIMITED: (&str, &str) = ("limited", "limited-secret");

/// The broker's secured listeners and the client's files.
struct Secure {
    host: String,
    /// SSL (client certificate required); SASL_PLAINTEXT is `ssl + 1`, SASL_SSL `ssl + 2`.
    ssl: u16,
    dir: PathBuf,
}

impl Secure {
    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// Reads `IT_KAFKA_SECURE_BASE` / `IT_KAFKA_SECURE_DIR` and checks the files are there and
/// the three listeners accept connections; panics with [`HOW`] otherwise.
async fn secure() -> Secure {
    let base = std::env::var("IT_KAFKA_SECURE_BASE").unwrap_or_else(|_| {
        let plain = bootstrap();
        let (host, port) = plain.rsplit_once(':').expect("IT_KAFKA_BOOTSTRAP is host:port");
        let port: u16 = port.parse().expect("IT_KAFKA_BOOTSTRAP's port");
        format!("{host}:{}", port + 2)
    });
    let (host, port) = base
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("IT_KAFKA_SECURE_BASE={base:?} is not host:port: {HOW}"));
    let ssl: u16 = port
        .parse()
        .unwrap_or_else(|_| panic!("IT_KAFKA_SECURE_BASE={base:?} has no valid port: {HOW}"));
    let dir = std::env::var_os("IT_KAFKA_SECURE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".kafka/secure"));
    for f in ["ca.pem", "client.pem", "client.key"] {
        assert!(
            dir.join(f).is_file(),
            "{} is missing (IT_KAFKA_SECURE_DIR): {HOW}",
            dir.join(f).display()
        );
    }
    for (name, port) in [("SSL", ssl), ("SASL_PLAINTEXT", ssl + 1), ("SASL_SSL", ssl + 2)] {
        let addr = format!("{host}:{port}");
        let ok = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&addr)).await;
        assert!(
            matches!(ok, Ok(Ok(_))),
            "no {name} listener answers at {addr} (IT_KAFKA_SECURE_BASE={base}): {HOW}"
        );
    }
    Secure {
        host: host.to_owned(),
        ssl,
        dir,
    }
}

/// A security mode of the test broker, as a client configures it.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// TLS with a client certificate (principal `User:CN=bigpipe`).
    Mtls,
    SaslPlaintextScram256,
    SaslSslScram512,
    SaslSslPlain,
}

impl Mode {
    fn protocol(self) -> &'static str {
        match self {
            Mode::Mtls => "SSL",
            Mode::SaslPlaintextScram256 => "SASL_PLAINTEXT",
            Mode::SaslSslScram512 | Mode::SaslSslPlain => "SASL_SSL",
        }
    }

    fn mechanism(self) -> Option<&'static str> {
        match self {
            Mode::Mtls => None,
            Mode::SaslPlaintextScram256 => Some("SCRAM-SHA-256"),
            Mode::SaslSslScram512 => Some("SCRAM-SHA-512"),
            Mode::SaslSslPlain => Some("PLAIN"),
        }
    }

    fn port(self, s: &Secure) -> u16 {
        match self.protocol() {
            "SSL" => s.ssl,
            "SASL_PLAINTEXT" => s.ssl + 1,
            _ => s.ssl + 2,
        }
    }
}

/// The `[kafka]` keys of `mode` (without `topics`) and the environment with the password.
/// `trust_ca`: false leaves `ssl.ca.location` out, so only the built-in roots are trusted.
fn kafka_keys(
    mode: Mode,
    s: &Secure,
    (user, password): (&str, &str),
    trust_ca: bool,
) -> (String, Vec<(&'static str, String)>) {
    let mut keys = format!(
        "bootstrap.servers = \"{}:{}\"\nsecurity.protocol = \"{}\"\n",
        s.host,
        mode.port(s),
        mode.protocol()
    );
    let mut env = vec![];
    if mode.protocol().ends_with("SSL") && trust_ca {
        keys += &format!("ssl.ca.location = {:?}\n", s.file("ca.pem"));
    }
    if let Mode::Mtls = mode {
        keys += &format!(
            "ssl.certificate.location = {:?}\nssl.key.location = {:?}\n",
            s.file("client.pem"),
            s.file("client.key")
        );
    }
    if let Some(mechanism) = mode.mechanism() {
        keys += &format!("sasl.mechanism = \"{mechanism}\"\nsasl.username = \"{user}\"\n");
        env.push(("BIGPIPE_KAFKA_SASL_PASSWORD", password.to_owned()));
    }
    (keys, env)
}

/// A process config: ingest on `topic` (ACL `caller`/`s3cret`, `partitions`), one consumer
/// entry of `group` delivering it with one attempt (a 4xx is dead-lettered into
/// `<topic>.dlq`, which bigpipe creates), logging into `logs`. The control and idempotency
/// topics carry the prefix the limited principals' ACLs allow.
fn process_config(kafka: &str, topic: &str, partitions: i32, group: &str, logs: &Path) -> String {
    format!(
        "admin.control.topic = \"{PREFIX}bigpipe.control\"\n\
         [log]\nlevel = \"info\"\ndirectory = {logs:?}\n\
         [kafka]\n{kafka}topics = [{{ name = \"{topic}\", partitions = {partitions} }}]\n\
         [http.server]\nhost = \"127.0.0.1\"\nport = {{port}}\n\
         idempotency.topic = \"{PREFIX}bigpipe.idempotency\"\n\
         [[kafka.producer.acl]]\nname = \"caller\"\nsecret = \"s3cret\"\ntopic = \"{topic}\"\n\
         [[kafka.consumer.list]]\ntopic = \"{topic}\"\ngroupId = \"{group}\"\nrateLimit = 2000\n\
         concurrency = 20\nretries = 0\ntimeout = 3000\nsessionTimeout = 6000\ncommitInterval = 200\n",
        logs = logs.display().to_string()
    )
}

/// Every log file bigpipe wrote into `dir`, as text.
fn log_text(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        text += &std::fs::read_to_string(entry.path()).unwrap_or_default();
    }
    text
}

/// The admin `/readyz` of `p`: status and body (None while it does not answer).
async fn admin_readyz(p: &Process) -> Option<(u16, Value)> {
    let r = reqwest::get(format!("{}/readyz", p.admin)).await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.unwrap_or(Value::Null)))
}

/// Waits until `p`'s public `/readyz` says ready; on timeout fails with its admin `/readyz`
/// detail and the log, which say why.
async fn wait_ready(p: &Process, logs: &Path, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(r) = reqwest::get(format!("{}/readyz", p.base)).await
            && r.status() == 200
        {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: not ready after {WAIT:?}\nadmin /readyz: {:?}\nlog:\n{}",
                admin_readyz(p).await,
                log_text(logs)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `n` calls to `url` through `p` with `"ack":"kafka"` (keys `{tag}{i}`); returns their
/// ids. A 200 with this ack means Kafka has the record.
async fn send_acked(p: &Process, url: &str, n: usize, tag: &str) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut ids = vec![];
    for i in 0..n {
        let mut body = call_body(url, &format!("{tag}{i}"), &format!("{tag}{i}"));
        body["ack"] = json!("kafka");
        let r = http
            .post(format!("{}/rpc/call", p.base))
            .body(body.to_string())
            .send()
            .await
            .expect("post");
        let status = r.status().as_u16();
        let env: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "call {tag}{i} with ack=kafka: {env}");
        ids.push(env["data"].as_str().expect("call id").to_owned());
    }
    ids
}

/// Waits until the target received every call of `ids`.
async fn delivered(target: &Target, ids: &[String], what: &str) {
    poll(what, || async {
        let got: BTreeSet<String> = target.received().iter().map(|r| r.call_id()).collect();
        ids.iter().all(|id| got.contains(id)).then_some(())
    })
    .await;
}

/// `consumerStats[0].rpcSuccess` of `p` (0 while it does not answer).
async fn successes(p: &Process) -> u64 {
    p.stats()
        .await
        .and_then(|s| s["consumerStats"][0]["rpcSuccess"].as_u64())
        .unwrap_or(0)
}

/// Ingest, delivery, a rebalance and a dead letter through `mode`.
async fn round_trip(mode: Mode) {
    let _k = kafka().await;
    let s = secure().await;
    let target = Target::start();
    let topic = unique(&format!("{PREFIX}round"));
    let group = unique(&format!("{PREFIX}G"));
    let (kafka, env) = kafka_keys(mode, &s, USER, true);
    let (logs_a, logs_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Process::spawn_with_env(&process_config(&kafka, &topic, 2, &group, logs_a.path()), &env);
    wait_ready(&a, logs_a.path(), &format!("{mode:?}: the first process")).await;

    // Ingest with a Kafka acknowledgement: the records are in the topic (read back through the
    // plaintext listener), then delivered.
    let ids = send_acked(&a, &target.url("/ok"), 10, "a").await;
    let client = client().await;
    assert_eq!(
        count_records(&client, &topic, 2).await,
        10,
        "{mode:?}: records in {topic}"
    );
    delivered(&target, &ids, &format!("{mode:?}: the first 10 calls delivered")).await;

    // A second process joins the group: both own a partition, both deliver.
    let b = Process::spawn_with_env(&process_config(&kafka, &topic, 2, &group, logs_b.path()), &env);
    wait_ready(&b, logs_b.path(), &format!("{mode:?}: the second process")).await;
    poll(
        &format!("{mode:?}: the two processes share the 2 partitions"),
        || async {
            let owned = [a.partitions(0).await, b.partitions(0).await];
            (owned.iter().all(|p| p.as_ref().is_some_and(|v| !v.is_empty())) && covers(&owned, 2))
                .then_some(())
        },
    )
    .await;
    let before = (successes(&a).await, successes(&b).await);
    let more = send_acked(&a, &target.url("/ok"), 20, "b").await;
    delivered(
        &target,
        &more,
        &format!("{mode:?}: 20 calls after the rebalance delivered"),
    )
    .await;
    poll(
        &format!("{mode:?}: both processes delivered after the rebalance"),
        || async {
            let now = (successes(&a).await, successes(&b).await);
            (now.0 > before.0 && now.1 > before.1).then_some(())
        },
    )
    .await;

    // A 4xx: the call is dead-lettered into <topic>.dlq, which bigpipe created through the
    // secured listener (its Create ACL), and read back here through the plaintext one.
    let dead = send_acked(&a, &target.url("/always/404"), 1, "dead")
        .await
        .remove(0);
    let dlq = format!("{topic}.dlq");
    let letter = poll(&format!("{mode:?}: the dead letter in {dlq}"), || async {
        let topics = client.list_topics().await.ok()?;
        let partitions = topics.iter().find(|t| t.name == dlq)?.partitions.len();
        let records = read_all(&client, &dlq, i32::try_from(partitions).ok()?).await;
        records
            .into_values()
            .flatten()
            .find(|r| r.record.headers.get("bigpipe-call-id").map(|v| v.as_slice()) == Some(dead.as_bytes()))
    })
    .await;
    assert_eq!(
        letter
            .record
            .headers
            .get("bigpipe-dlq-status")
            .map(|v| v.as_slice()),
        Some(&b"404"[..]),
        "{mode:?}: the dead letter's status header"
    );

    for mut p in [a, b] {
        p.signal("TERM");
        assert_eq!(p.wait(), Some(0), "{mode:?}: clean exit on SIGTERM");
    }
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_ingest_delivery_rebalance_and_dead_letter() {
    round_trip(Mode::Mtls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_plaintext_scram_sha_256_ingest_delivery_rebalance_and_dead_letter() {
    round_trip(Mode::SaslPlaintextScram256).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_scram_sha_512_ingest_delivery_rebalance_and_dead_letter() {
    round_trip(Mode::SaslSslScram512).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_plain_ingest_delivery_rebalance_and_dead_letter() {
    round_trip(Mode::SaslSslPlain).await;
}

/// Spawns a process with `kafka` keys on a fresh topic it must create, and waits until its
/// admin `/readyz` is 503 with a body that, lowercased, contains every word of `words`, and its
/// log does too. Returns the process (still running: no panic, no exit).
async fn refused(kafka: &str, env: &[(&str, String)], words: &[&str], what: &str) -> Process {
    let topic = unique(&format!("{PREFIX}refused"));
    let group = unique(&format!("{PREFIX}G"));
    let logs = tempfile::tempdir().unwrap();
    let p = Process::spawn_with_env(&process_config(kafka, &topic, 1, &group, logs.path()), env);
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    loop {
        last = admin_readyz(&p).await.or(last);
        let log = log_text(logs.path()).to_lowercase();
        let readyz_names = last.as_ref().is_some_and(|(status, body)| {
            let body = body.to_string().to_lowercase();
            *status == 503 && words.iter().all(|w| body.contains(w))
        });
        if readyz_names && words.iter().all(|w| log.contains(w)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: after {WAIT:?} /readyz and the log must both name {words:?}\n\
             admin /readyz: {last:?}\nlog:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Still there and still saying so a moment later: it retries instead of exiting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, _) = admin_readyz(&p).await.expect("the process still answers");
    assert_eq!(status, 503, "{what}");
    // The topic was not created behind the refusal.
    let topics = client().await.list_topics().await.expect("list topics");
    assert!(!topics.iter().any(|t| t.name == topic), "{what}: {topic} exists");
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_create_permission_shows_in_the_log_and_readyz() {
    let _k = kafka().await;
    let s = secure().await;
    // User:limited may do everything bigpipe needs on sec-* except Create on topics.
    let (kafka, env) = kafka_keys(Mode::SaslPlaintextScram256, &s, LIMITED, true);
    let mut p = refused(&kafka, &env, &["authoriz"], "no Create ACL").await;
    p.signal("TERM");
    assert_eq!(p.wait(), Some(0), "clean exit on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_makes_readyz_name_authentication() {
    let _k = kafka().await;
    let s = secure().await;
    let (kafka, env) = kafka_keys(Mode::SaslSslScram512, &s, (USER.0, "not-the-password"), true);
    let mut p = refused(&kafka, &env, &["authentication"], "wrong password").await;
    p.signal("TERM");
    assert_eq!(p.wait(), Some(0), "clean exit on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_broker_certificate_makes_readyz_name_the_certificate() {
    let _k = kafka().await;
    let s = secure().await;
    // No ssl.ca.location: the test CA is not among the built-in roots.
    let (kafka, env) = kafka_keys(Mode::SaslSslScram512, &s, USER, false);
    let mut p = refused(&kafka, &env, &["certificate"], "untrusted certificate").await;
    p.signal("TERM");
    assert_eq!(p.wait(), Some(0), "clean exit on SIGTERM");
}
