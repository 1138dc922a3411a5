//! The outbound destination policy (issue 9, Must have 1) against a real broker and real
//! targets on loopback: every one of these calls was delivered (or accepted) before the policy.
//!
//! - ingest: IP-literal hosts the policy refuses, in every spelling, get 403 "目标地址不允许";
//! - connect time: a name resolving to 127.0.0.1 (`localhost`), and a decimal IP written
//!   straight into Kafka, are dead-lettered as "destination not allowed" after one attempt:
//!   no retry, no retry tier, no circuit breaker sample, and the target got nothing;
//! - ACL `targets` refuse URLs outside them at ingest, matching the parsed URL;
//! - a loopback target listed in `delivery.allow` is delivered.

use std::collections::BTreeMap;

use rskafka::client::partition::Compression;
use rskafka::record::Record;
use serde_json::{Value, json};

use crate::delivery::consumer_entry;
use crate::helpers::target::Target;
use crate::helpers::*;

/// Opens after 3 samples under 50 % success: a refusal counted as a failure would open it.
const BREAKER: &str = "[kafka.consumer.list.circuitBreaker]\nbreakPeriod = 30\n\
                       recoverPeriod = 0\nwinSize = 30\nminStats = 3\nhealthRate = 0.5\n";

/// The new refusal, exactly as the caller sees it.
const REFUSED: &str = r#"{"data":"","errno":-1,"msg":"目标地址不允许"}"#;

async fn stats(bp: &Bigpipe) -> Value {
    bp.get("/stats").await.1["data"].clone()
}

/// POSTs a call for `url` as `acl`; returns the status and the raw envelope text.
async fn call_raw(bp: &Bigpipe, acl: &str, url: &str) -> (u16, String) {
    let body = json!({
        "acl": {"name": acl, "secret": "s3cret"},
        "url": url,
        "data": "DROP TABLE",
        "partition_key": "",
    });
    let r = bp
        .http
        .post(format!("{}/rpc/call", bp.base))
        .body(body.to_string())
        .send()
        .await
        .expect("post");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_ip_literals_get_403_at_ingest_in_every_spelling() {
    let _k = kafka().await;
    let target = Target::start();
    let port = target.base.rsplit(':').next().unwrap().to_owned();
    let topic = unique("ssrf-ingest");
    // No consumer entry: whatever is accepted is never attempted.
    let text = format!("{STRICT_DESTINATIONS}\n{}", simple_config(&topic, 1, ""));
    let bp = Bigpipe::start_ready(&settings(&text)).await;

    let refused = [
        format!("http://127.0.0.1:{port}/admin/shutdown?force=1"),
        format!("http://2130706433:{port}/"),
        format!("http://0x7f.1:{port}/"),
        format!("http://127.1:{port}/"),
        format!("http://0177.0.0.1:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://admin:pw123@127.0.0.1:{port}/"),
        format!("http://127.0.0.1.:{port}/"),
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/".to_owned(),
        "http://[fd00:ec2::254]/latest/meta-data/".to_owned(),
        "http://100.100.100.200/latest/meta-data/".to_owned(),
        "http://0.0.0.0:8080/".to_owned(),
        "http://[fe80::1]/".to_owned(),
    ];
    for url in &refused {
        let (status, body) = call_raw(&bp, "caller", url).await;
        assert_eq!((status, body.as_str()), (403, REFUSED), "{url}");
    }
    // Private ranges stay reachable, as in the Go version; names are judged at connect time.
    for url in [
        "http://10.0.0.1:2375/containers/create",
        "https://[fd00::1]:8443/",
        "http://localhost:1/",
    ] {
        let (status, body) = call_raw(&bp, "caller", url).await;
        assert_eq!(status, 200, "{url}: {body}");
    }
    // The policy answers only after the ACL check: a wrong secret is still 权限错误.
    let (status, body) = bp
        .call(&json!({"acl": {"name": "caller", "secret": "wrong"},
            "url": format!("http://127.0.0.1:{port}/"), "data": "", "partition_key": ""}))
        .await;
    assert_eq!((status, body["msg"].as_str()), (403, Some("权限错误")));

    let server = &stats(&bp).await["serverStats"];
    assert_eq!(server["destinationRefused"], refused.len(), "{server}");
    assert_eq!(server["rejectedCall"], refused.len() + 1, "{server}");
    assert_eq!(target.count(), 0);
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_resolving_to_loopback_is_dead_lettered_without_retry_or_breaker() {
    let _k = kafka().await;
    let target = Target::start();
    let port = target.base.rsplit(':').next().unwrap().to_owned();
    let topic = unique("ssrf-dns");
    let dlq = format!("{topic}.dlq");
    let extra = consumer_entry(&topic, &unique("G"), BREAKER);
    let text = format!("{STRICT_DESTINATIONS}\n{}", simple_config(&topic, 1, &extra));
    let bp = Bigpipe::start_ready(&settings(&text)).await;

    // Accepted at ingest (a name), refused when its addresses are judged. Open port or
    // closed, the outcome is the same, so /stats no longer tells which local ports answer.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let n = 4;
    for i in 0..n {
        let p = if i == 0 { closed.to_string() } else { port.clone() };
        let url = format!("http://localhost:{p}/admin/{i}");
        let (status, body) = call_raw(&bp, "caller", &url).await;
        assert_eq!(status, 200, "{body}");
    }
    let c = poll("every call dead-lettered", || async {
        let c = stats(&bp).await["consumerStats"][0].clone();
        (c["deadLettered"] == n).then_some(c)
    })
    .await;
    assert_eq!(c["rpcFail"], n, "{c}");
    assert_eq!(c["rpcRetries"], 0, "refused calls are never retried: {c}");
    assert_eq!(c["retryParked"], 0, "refused calls are never parked: {c}");
    assert_eq!(c["circuitsOpen"], 0, "refusals are not target failures: {c}");
    assert_eq!(target.count(), 0, "the target was reached");

    let client = client().await;
    let letters = read_all(&client, &dlq, 1).await.remove(&0).unwrap_or_default();
    assert_eq!(letters.len(), n);
    for l in &letters {
        let h = |k: &str| String::from_utf8_lossy(&l.record.headers[k]).into_owned();
        let reason = h("bigpipe-dlq-reason");
        assert!(
            reason.starts_with("destination not allowed: localhost resolves to refused addresses"),
            "{reason}"
        );
        assert_eq!(h("bigpipe-dlq-attempts"), "1");
    }
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decimal_ip_written_straight_into_kafka_is_refused_at_connect_time() {
    let _k = kafka().await;
    let target = Target::start();
    let port = target.base.rsplit(':').next().unwrap().to_owned();
    let topic = unique("ssrf-decimal");
    let dlq = format!("{topic}.dlq");
    let extra = consumer_entry(&topic, &unique("G"), "autoOffsetReset = \"earliest\"\n");
    let text = format!("{STRICT_DESTINATIONS}\n{}", simple_config(&topic, 1, &extra));
    let bp = Bigpipe::start_ready(&settings(&text)).await;

    // As a writer that skipped the ingest check (an older bigpipe, a script) would.
    let urls = [
        format!("http://2130706433:{port}/admin"),
        format!("http://127.0.0.1:{port}/admin"),
    ];
    let client = client().await;
    let pc = partition(&client, &topic, 0).await;
    let records = urls
        .iter()
        .map(|url| Record {
            key: None,
            value: Some(
                bigpipe::message::CallMessage {
                    headers: BTreeMap::new(),
                    url: url.clone(),
                    data: "DROP TABLE".into(),
                    topic: topic.clone(),
                    partition: 0,
                    create_time: chrono::Utc::now().timestamp_millis(),
                    ..Default::default()
                }
                .encode(),
            ),
            headers: BTreeMap::new(),
            timestamp: chrono::Utc::now(),
        })
        .collect();
    pc.produce(records, Compression::NoCompression)
        .await
        .expect("produce");

    let letters = poll("both calls dead-lettered", || async {
        let l = read_all(&client, &dlq, 1).await.remove(&0).unwrap_or_default();
        (l.len() == urls.len()).then_some(l)
    })
    .await;
    for l in &letters {
        let reason = String::from_utf8_lossy(&l.record.headers["bigpipe-dlq-reason"]).into_owned();
        assert!(reason.starts_with("destination not allowed: "), "{reason}");
    }
    let c = stats(&bp).await["consumerStats"][0].clone();
    assert_eq!(c["rpcRetries"], 0, "{c}");
    assert_eq!(target.count(), 0, "the target was reached");
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_targets_refuse_urls_outside_them_at_ingest() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("ssrf-targets");
    let hooks = target.url("/hooks/");
    let extra = format!(
        "[[kafka.producer.acl]]\nname = \"scoped\"\nsecret = \"s3cret\"\ntopic = \"{topic}\"\n\
         targets = [\"{hooks}\"]\n{}",
        consumer_entry(&topic, &unique("G"), "")
    );
    // Loopback allowed by the helper: only the ACL's targets refuse here.
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &extra))).await;
    let host = target.base.trim_start_matches("http://").to_owned();
    let port = host.rsplit(':').next().unwrap().to_owned();

    for url in [
        target.url("/admin"),
        target.url("/hooks"),
        target.url("/hooksx/a"),
        target.url("/hooks/../admin"),
        target.url("/hooks/%2e%2e/admin"),
        format!("http://localhost:{port}/hooks/a"),
        format!("https://{host}/hooks/a"),
        format!("http://127.0.0.1.evil.example:{port}/hooks/a"),
        format!("http://{host}@evil.example/hooks/a"),
    ] {
        let (status, body) = call_raw(&bp, "scoped", &url).await;
        assert_eq!((status, body.as_str()), (403, REFUSED), "{url}");
    }
    // Inside the targets: accepted and delivered. The ACL without targets is unrestricted.
    let (status, body) = call_raw(&bp, "scoped", &target.url("/hooks/ok")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call_raw(&bp, "caller", &target.url("/ok")).await;
    assert_eq!(status, 200, "{body}");
    poll("both calls delivered", || async {
        (target.count() == 2).then_some(())
    })
    .await;
    let server = &stats(&bp).await["serverStats"];
    assert_eq!(server["destinationRefused"], 9, "{server}");
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_target_listed_in_delivery_allow_is_delivered() {
    let _k = kafka().await;
    let target = Target::start();
    let other = Target::start();
    let host = target.base.trim_start_matches("http://").to_owned();
    let port = host.rsplit(':').next().unwrap().to_owned();
    let topic = unique("ssrf-allow");
    let extra = format!(
        "[delivery]\nallow = [\"{host}\"]\n{}",
        consumer_entry(&topic, &unique("G"), "")
    );
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &extra))).await;

    // By address and by a name resolving to it (its ::1 is dropped, 127.0.0.1 kept).
    for url in [target.url("/ok"), format!("http://localhost:{port}/ok")] {
        let (status, body) = call_raw(&bp, "caller", &url).await;
        assert_eq!(status, 200, "{url}: {body}");
    }
    poll("both calls delivered", || async {
        (target.count() == 2).then_some(())
    })
    .await;
    // The allowance is for that port only.
    let (status, body) = call_raw(&bp, "caller", &other.url("/ok")).await;
    assert_eq!((status, body.as_str()), (403, REFUSED));
    let c = stats(&bp).await["consumerStats"][0].clone();
    assert_eq!(c["rpcSuccess"], 2, "{c}");
    assert_eq!(other.count(), 0);
    bp.stop().await;
    target.stop().await;
    other.stop().await;
}
