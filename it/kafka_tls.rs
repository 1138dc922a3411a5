//! Both Kafka clients (the wire client for groups and admin, rskafka for produce and fetch)
//! against the test broker's secured listeners, configured through the `kafka.*` security
//! keys exactly as a user writes them: every security mode connects, and a wrong password or
//! an untrusted certificate fails with an error that says so.
//!
//! Listeners and files as in `it/security.rs`: `IT_KAFKA_SECURE_BASE` (the SSL listener;
//! SASL_PLAINTEXT on the next port, SASL_SSL on the one after) and `IT_KAFKA_SECURE_DIR`
//! (ca.pem, client.pem, client.key), written by `scripts/kafka.sh up` to `.kafka/secure/it.env`.
//! Missing: every test fails saying so.

use std::path::PathBuf;
use std::time::Duration;

use bigpipe::config::{Format, load_from_str};
use bigpipe::kafka::client::KafkaClient;
use bigpipe::kafka::connect::KafkaConnect;
use bigpipe::kafka::wire::{self, admin, connect_any};

const HOW: &str = "start the test broker with its secured listeners (`scripts/kafka.sh up`) and \
                   export .kafka/secure/it.env (IT_KAFKA_SECURE_BASE, IT_KAFKA_SECURE_DIR)";

/// The SSL listener's host and port and the directory of the client's files.
fn secure() -> (String, u16, PathBuf) {
    let base = std::env::var("IT_KAFKA_SECURE_BASE")
        .unwrap_or_else(|_| panic!("IT_KAFKA_SECURE_BASE is not set: {HOW}"));
    let dir = std::env::var_os("IT_KAFKA_SECURE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("IT_KAFKA_SECURE_DIR is not set: {HOW}"));
    let (host, port) = base
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("IT_KAFKA_SECURE_BASE={base:?} is not host:port"));
    let port = port
        .parse()
        .unwrap_or_else(|_| panic!("IT_KAFKA_SECURE_BASE={base:?} has no valid port"));
    (host.to_owned(), port, dir)
}

/// A `KafkaConnect` from a `[kafka]` section: `port_offset` from the SSL listener, then the
/// security keys in `keys` (`{dir}` stands for IT_KAFKA_SECURE_DIR).
fn connect(port_offset: u16, keys: &str) -> KafkaConnect {
    let (host, ssl, dir) = secure();
    let keys = keys.replace("{dir}", &dir.display().to_string());
    let text = format!(
        "[kafka]\nbootstrap.servers = \"{host}:{}\"\nclient.id = \"it-kafka-tls\"\n\
         request.timeout.ms = 10000\n{keys}\n",
        ssl + port_offset
    );
    let settings = load_from_str(&text, Format::Toml).unwrap_or_else(|e| panic!("{text}\n{e}"));
    KafkaConnect::from_settings(&settings.kafka).expect("TLS setup")
}

const MTLS: &str = "security.protocol = \"SSL\"\nssl.ca.location = \"{dir}/ca.pem\"\n\
                    ssl.certificate.location = \"{dir}/client.pem\"\nssl.key.location = \"{dir}/client.key\"\n";

fn sasl(protocol: &str, mechanism: &str, password: &str) -> String {
    format!(
        "security.protocol = \"{protocol}\"\nsasl.mechanism = \"{mechanism}\"\n\
         sasl.username = \"bigpipe\"\nsasl.password = \"{password}\"\n\
         ssl.ca.location = \"{{dir}}/ca.pem\"\n"
    )
}

/// The wire client opens a connection and reads cluster metadata in every mode and mechanism.
#[tokio::test]
async fn wire_client_connects_in_every_security_mode() {
    let modes = [
        ("SSL with a client certificate", 0, MTLS.to_owned()),
        (
            "SASL_PLAINTEXT PLAIN",
            1,
            sasl("SASL_PLAINTEXT", "PLAIN", "bigpipe-secret"),
        ),
        (
            "SASL_PLAINTEXT SCRAM-SHA-256",
            1,
            sasl("SASL_PLAINTEXT", "SCRAM-SHA-256", "bigpipe-secret"),
        ),
        (
            "SASL_PLAINTEXT SCRAM-SHA-512",
            1,
            sasl("SASL_PLAINTEXT", "scram-sha-512", "bigpipe-secret"),
        ),
        ("SASL_SSL PLAIN", 2, sasl("SASL_SSL", "PLAIN", "bigpipe-secret")),
        (
            "SASL_SSL SCRAM-SHA-256",
            2,
            sasl("sasl_ssl", "SCRAM-SHA-256", "bigpipe-secret"),
        ),
        (
            "SASL_SSL SCRAM-SHA-512",
            2,
            sasl("SASL_SSL", "SCRAM-SHA-512", "bigpipe-secret"),
        ),
    ];
    for (name, offset, keys) in modes {
        let connect = connect(offset, &keys);
        let conn = connect_any(&connect)
            .await
            .unwrap_or_else(|e| panic!("{name}: {}", wire::error_chain(&e)));
        let brokers = admin::broker_count(&conn)
            .await
            .unwrap_or_else(|e| panic!("{name}: {}", wire::error_chain(&e)));
        assert!(brokers >= 1, "{name}");
    }
}

/// A wrong password is an authentication error naming the mechanism and the broker's reason.
#[tokio::test]
async fn wire_client_reports_a_wrong_password_as_authentication_failure() {
    for (offset, protocol, mechanism) in [
        (1, "SASL_PLAINTEXT", "PLAIN"),
        (1, "SASL_PLAINTEXT", "SCRAM-SHA-256"),
        (2, "SASL_SSL", "SCRAM-SHA-512"),
    ] {
        let connect = connect(offset, &sasl(protocol, mechanism, "not-the-password"));
        let addr = connect.bootstrap()[0].clone();
        let err = wire::BrokerConnection::connect(&addr, &connect)
            .await
            .unwrap_err();
        let text = wire::error_chain(&err);
        assert!(
            matches!(&err, wire::Error::Authentication { mechanism: m, .. } if m.eq_ignore_ascii_case(mechanism)),
            "{protocol} {mechanism}: {text}"
        );
        assert!(text.contains("SASL_AUTHENTICATION_FAILED"), "{text}");
    }
}

/// Without the test CA the broker's certificate is untrusted (the built-in roots do not know
/// it); a certificate for another name fails unless the server-name override names it.
#[tokio::test]
async fn wire_client_refuses_an_untrusted_or_misnamed_broker_certificate() {
    let no_ca = "security.protocol = \"SSL\"\nssl.certificate.location = \"{dir}/client.pem\"\n\
                 ssl.key.location = \"{dir}/client.key\"\n";
    let err = connect_any(&connect(0, no_ca)).await.unwrap_err();
    let text = wire::error_chain(&err);
    assert!(
        text.contains("TLS handshake") && text.contains("invalid peer certificate"),
        "{text}"
    );
    assert_eq!(err.security_failure(), Some("TLS handshake failed"), "{text}");

    let misnamed = format!("{MTLS}ssl.endpoint.identification.hostname = \"kafka.example.com\"\n");
    let err = connect_any(&connect(0, &misnamed)).await.unwrap_err();
    let text = wire::error_chain(&err);
    assert!(
        text.contains("not valid for name \"kafka.example.com\""),
        "{text}"
    );

    // The broker's certificate names localhost too: the override makes the name checked.
    let renamed = format!("{MTLS}ssl.endpoint.identification.hostname = \"localhost\"\n");
    connect_any(&connect(0, &renamed))
        .await
        .expect("override to a name the certificate has");
}

/// rskafka (produce, fetch, offsets) connects with the same settings, over TLS too (the
/// vendored rskafka's `transport-tls` with our graviola `ClientConfig`).
#[tokio::test]
async fn rskafka_client_connects_in_every_security_mode() {
    for (offset, keys) in [
        (0, MTLS.to_owned()),
        (1, sasl("SASL_PLAINTEXT", "SCRAM-SHA-256", "bigpipe-secret")),
        (1, sasl("SASL_PLAINTEXT", "PLAIN", "bigpipe-secret")),
        (2, sasl("SASL_SSL", "SCRAM-SHA-512", "bigpipe-secret")),
        (2, sasl("SASL_SSL", "PLAIN", "bigpipe-secret")),
    ] {
        let client = KafkaClient::new(connect(offset, &keys));
        let kafka = client.get().await.unwrap_or_else(|e| panic!("{keys}: {e:?}"));
        tokio::time::timeout(Duration::from_secs(10), kafka.list_topics())
            .await
            .expect("list_topics in time")
            .expect("list_topics");
    }
    // A refused login is reported at once (rskafka alone would retry until its deadline
    // and then say only "timed out").
    let client = KafkaClient::new(connect(1, &sasl("SASL_PLAINTEXT", "SCRAM-SHA-256", "wrong")));
    let started = std::time::Instant::now();
    let err = client.get().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let security = err.connect_error().and_then(wire::Error::security_failure);
    assert_eq!(security, Some("authentication failed"), "{err}");
}

/// A TCP relay to `upstream` that counts the connections made through it.
async fn counting_relay(upstream: String) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind relay");
    let addr = listener.local_addr().expect("relay addr").to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                    // Either side closing ends the relay of this connection; nothing to report.
                    tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                        .await
                        .ok();
                }
            });
        }
    });
    (addr, count)
}

/// A wrong password: `/readyz` answers 503 naming authentication, the log says it once, and
/// bigpipe keeps retrying with backoff, not in a loop (connections counted through a relay).
#[tokio::test]
async fn a_wrong_password_shows_in_readyz_and_the_log_once_and_retries_slowly() {
    use std::sync::atomic::Ordering;

    use crate::helpers::{Bigpipe, CapturedLog, poll, settings, simple_config, unique};

    let (host, ssl, _dir) = secure();
    let (relay, connections) = counting_relay(format!("{host}:{}", ssl + 1)).await;
    let topic = unique("sec-wrongpw");
    let text = simple_config(&topic, 1, "")
        .replace("{bootstrap}", &relay)
        .replace(
            "[kafka]\n",
            "[kafka]\nsecurity.protocol = \"SASL_PLAINTEXT\"\nsasl.mechanism = \"SCRAM-SHA-256\"\n\
         sasl.username = \"bigpipe\"\nsasl.password = \"not-the-password\"\n",
        );
    let captured = CapturedLog::default();
    let log = {
        use slog::Drain;
        let decorator = slog_term::PlainSyncDecorator::new(captured.clone());
        slog::Logger::root(slog_term::FullFormat::new(decorator).build().fuse(), slog::o!())
    };
    let bp = Bigpipe::start_with_log(&settings(&text), log);

    let detail = poll("/readyz naming the authentication failure", || async {
        let (status, body) = bp.get("/readyz").await;
        let text = body.to_string();
        (status == 503 && text.contains("kafka authentication failed")).then_some(text)
    })
    .await;
    assert!(detail.contains("SASL_AUTHENTICATION_FAILED"), "{detail}");
    assert!(!detail.contains("not-the-password"), "{detail}");

    // Over the next 10 s: 1 s, 2 s, 4 s, 8 s backoff leaves at most a handful of attempts.
    let before = connections.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let attempts = connections.load(Ordering::SeqCst) - before;
    assert!((1..=6).contains(&attempts), "{attempts} connections in 10 s");

    let log = captured.text();
    let lines = log
        .lines()
        .filter(|l| l.contains("kafka metadata refresh failed"))
        .count();
    assert_eq!(lines, 1, "the failure is logged once, not per retry:\n{log}");
    assert!(!log.contains("not-the-password"), "{log}");
    bp.stop().await;
}
