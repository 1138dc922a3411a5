//! Caller headers: default-deny at ingest and at delivery (issue 9, must 2), and what
//! the logs may show of a call (redacted URLs, never the record).

use std::collections::BTreeMap;

use rskafka::client::partition::Compression;
use rskafka::record::Record;
use serde_json::Value;

use crate::delivery::consumer_entry;
use crate::helpers::target::{Received, Target};
use crate::helpers::*;

/// What a caller (or a gateway in front of bigpipe) sends besides the call.
const CREDENTIALS: [(&str, &str); 6] = [
    ("Authorization", "Bearer CALLER-TOKEN-123"),
    ("Cookie", "session=abc"),
    ("X-Forwarded-For", "6.6.6.6"),
    ("Forwarded", "for=6.6.6.6;host=internal"),
    ("X-Real-IP", "10.0.0.1"),
    ("X-Forwarded-Client-Cert", "By=spiffe://mesh/ns/bigpipe"),
];

/// Sends one call to `url` with [`CREDENTIALS`] and `X-Request-Id: req-<n>`; returns its id.
async fn call_with_credentials(bp: &Bigpipe, url: &str, n: usize) -> String {
    let mut req = bp
        .http
        .post(format!("{}/rpc/call", bp.base))
        .header("X-Request-Id", format!("req-{n}"));
    for (k, v) in CREDENTIALS {
        req = req.header(k, v);
    }
    let resp = req
        .body(call_body(url, &format!("data-{n}"), "k").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let env: Value = resp.json().await.unwrap();
    env["data"].as_str().unwrap().to_owned()
}

/// The `Headers` object of the call records in `topic` (one partition).
async fn stored_headers(topic: &str) -> Vec<Value> {
    let records = read_all(&client().await, topic, 1).await;
    records[&0]
        .iter()
        .map(|r| {
            let value: Value = serde_json::from_slice(r.record.value.as_deref().unwrap()).unwrap();
            value["Headers"].clone()
        })
        .collect()
}

fn has(headers: &Value, name: &str) -> bool {
    headers
        .as_object()
        .is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case(name)))
}

fn assert_no_credentials(r: &Received) {
    for (k, _) in CREDENTIALS {
        assert_eq!(r.header(&k.to_ascii_lowercase()), None, "{k} reached the target");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_reach_neither_the_target_nor_kafka_nor_the_dead_letter_topic() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("hdr-deny");
    let extra = consumer_entry(&topic, &unique("G"), "");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &extra))).await;

    call_with_credentials(&bp, &target.url("/ok"), 1).await;
    // 404 is not retryable: dead-lettered at once.
    call_with_credentials(&bp, &target.url("/always/404"), 2).await;
    poll("two deliveries", || async { (target.count() >= 2).then_some(()) }).await;
    for r in target.received() {
        assert_no_credentials(&r);
        assert!(
            r.header("x-request-id").is_some_and(|v| v.starts_with("req-")),
            "X-Request-Id is allowed"
        );
    }

    let stored = stored_headers(&topic).await;
    assert_eq!(stored.len(), 2);
    for headers in &stored {
        for (k, _) in CREDENTIALS {
            assert!(!has(headers, k), "{k} stored in Kafka: {headers}");
        }
        assert!(has(headers, "X-Request-Id"), "{headers}");
    }
    let dlq = format!("{topic}.dlq");
    let letters = poll("the dead letter", || async {
        let records = read_all(&client().await, &dlq, 1).await;
        (!records[&0].is_empty()).then(|| records[&0].clone())
    })
    .await;
    let raw = String::from_utf8_lossy(letters[0].record.value.as_deref().unwrap()).into_owned();
    for (k, v) in CREDENTIALS {
        assert!(!raw.contains(v), "{k} in the dead letter: {raw}");
    }
    assert!(raw.contains("req-2"), "{raw}");
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_restore_line_forwards_and_stores_them_as_the_go_version_did() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("hdr-star");
    let extra = format!(
        "{}[delivery]\nheaders.forward = [\"*\"]\n",
        consumer_entry(&topic, &unique("G"), "")
    );
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &extra))).await;
    call_with_credentials(&bp, &target.url("/ok"), 1).await;
    poll("one delivery", || async { (target.count() >= 1).then_some(()) }).await;
    let r = &target.received()[0];
    for (k, v) in CREDENTIALS {
        assert_eq!(r.header(&k.to_ascii_lowercase()), Some(v), "{k}");
    }
    let stored = stored_headers(&topic).await;
    for (k, _) in CREDENTIALS {
        assert!(has(&stored[0], k), "{k} not stored: {}", stored[0]);
    }
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_list_replaces_the_global_one_and_ingest_keeps_the_union() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("hdr-entry");
    let extra = format!(
        "{}{}",
        consumer_entry(&topic, &unique("G1"), ""),
        consumer_entry(&topic, &unique("G2"), "forwardHeaders = [\"Authorization\"]"),
    );
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &extra))).await;
    call_with_credentials(&bp, &target.url("/ok"), 1).await;
    poll("two deliveries, one per group", || async {
        (target.count() >= 2).then_some(())
    })
    .await;
    let received = target.received();
    let with_auth: Vec<&Received> = received
        .iter()
        .filter(|r| r.header("authorization").is_some())
        .collect();
    assert_eq!(with_auth.len(), 1, "only G2 forwards Authorization");
    assert_eq!(
        with_auth[0].header("x-request-id"),
        None,
        "G2's list replaces X-*"
    );
    assert_eq!(with_auth[0].header("cookie"), None);
    let other = received
        .iter()
        .find(|r| r.header("authorization").is_none())
        .unwrap();
    assert_eq!(other.header("x-request-id"), Some("req-1"));
    let stored = stored_headers(&topic).await;
    assert!(has(&stored[0], "Authorization") && has(&stored[0], "X-Request-Id"));
    assert!(!has(&stored[0], "Cookie") && !has(&stored[0], "X-Forwarded-For"));
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_written_straight_into_kafka_are_filtered_at_delivery() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("hdr-direct");
    let extra = consumer_entry(&topic, &unique("G"), "");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &extra))).await;
    let mut headers: BTreeMap<&str, Vec<&str>> = CREDENTIALS.iter().map(|(k, v)| (*k, vec![*v])).collect();
    headers.insert("X-Request-Id", vec!["direct"]);
    let value = serde_json::json!({
        "Headers": headers, "Url": target.url("/ok"), "Data": "d", "Topic": topic,
        "Partition": 0, "CreateTime": 1,
    });
    let record = Record {
        key: None,
        value: Some(value.to_string().into_bytes()),
        headers: BTreeMap::new(),
        timestamp: chrono::Utc::now(),
    };
    partition(&client().await, &topic, 0)
        .await
        .produce(vec![record], Compression::NoCompression)
        .await
        .expect("produce");
    poll("the delivery", || async { (target.count() >= 1).then_some(()) }).await;
    let r = &target.received()[0];
    assert_no_credentials(r);
    assert_eq!(r.header("x-request-id"), Some("direct"));
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_show_redacted_urls_and_never_the_record() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("hdr-log");
    let extra = consumer_entry(&topic, &unique("G"), "deadLetterTopic = \"\"");
    let (bp, log) = Bigpipe::start_logged(&settings(&simple_config(&topic, 1, &extra))).await;
    let url =
        target
            .url("/always/404?token=URL-SECRET-1&a=b")
            .replacen("http://", "http://admin:PW-SECRET-2@", 1);
    let resp = bp
        .http
        .post(format!("{}/rpc/call", bp.base))
        .header("X-Request-Id", "HEADER-SECRET-3")
        .body(call_body(&url, "DATA-SECRET-4", "k").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = poll("the call dropped without a dead-letter topic", || async {
        let text = log.text();
        text.contains("call dropped after its last attempt")
            .then_some(text)
    })
    .await;
    for secret in ["URL-SECRET-1", "PW-SECRET-2", "HEADER-SECRET-3", "DATA-SECRET-4"] {
        assert!(!text.contains(secret), "{secret} logged:\n{text}");
    }
    assert!(text.contains("/always/404?token=***&a=***"), "{text}");
    assert!(text.contains("http://***@127.0.0.1"), "{text}");
    bp.stop().await;
    target.stop().await;
}
