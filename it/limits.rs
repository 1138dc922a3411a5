//! Limits at the door: a call Kafka could never take is refused before it is queued, a record
//! Kafka refuses anyway fails at once, and one ACL's flood cannot take the others' share of
//! the ingest queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::helpers::*;

const MOCK: &str = "http://127.0.0.1:9/target";

/// `n` characters that snappy cannot compress (random base64 alphabet), so that the broker
/// sees about as many bytes as the call holds.
fn noise(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (0..n)
        .map(|_| char::from(ALPHABET[usize::from(rand::random::<u8>() % 64)]))
        .collect()
}

/// Creates `topic` with one partition and `max.message.bytes` = `max`, before bigpipe sees it.
async fn create_topic_with_max_message_bytes(topic: &str, max: usize) {
    create_topic(
        topic,
        &[
            ("max.message.bytes", max.to_string()),
            ("compression.type", "snappy".into()),
        ],
    )
    .await;
}

fn with_ack(mut body: Value) -> Value {
    body["ack"] = json!("kafka");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_of_angle_brackets_is_refused_with_413_and_nothing_is_written() {
    let _k = kafka().await;
    let topic = unique("limits-big");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, ""))).await;

    // Under the body limit (1040384), but 6 MB once escaped as \u003c in the record.
    let big = call_body(MOCK, &"<".repeat(1_000_000), "k");
    let (status, env) = bp.call(&with_ack(big)).await;
    assert_eq!(status, 413, "{env}");
    assert_eq!(env, json!({"data": "", "errno": -1, "msg": "消息过大"}));

    // A call under the limit is accepted; with ack=kafka it is in the topic when answered.
    let small = call_body(MOCK, &"<".repeat(100_000), "k");
    let (status, env) = bp.call(&with_ack(small)).await;
    assert_eq!((status, env["errno"].clone()), (200, json!(0)), "{env}");
    let id = env["data"].as_str().expect("call id").to_owned();

    let client = client().await;
    let all = read_all(&client, &topic, 1).await;
    let ids: Vec<&[u8]> = all[&0]
        .iter()
        .map(|r| r.record.headers["bigpipe-call-id"].as_slice())
        .collect();
    assert_eq!(ids, vec![id.as_bytes()], "only the small call is in the topic");

    let (_, stats) = bp.get("/stats").await;
    let server = &stats["data"]["serverStats"];
    assert_eq!(server["tooLargeCall"], 1);
    assert_eq!(server["acceptedCall"], 1);
    assert_eq!(stats["data"]["producerStats"][&topic]["deliveryFail"], 0);
    bp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topics_small_max_message_bytes_is_read_from_kafka_and_enforced() {
    let _k = kafka().await;
    let topic = unique("limits-topic");
    create_topic_with_max_message_bytes(&topic, 20_000).await;
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, ""))).await;

    // 30 KB: far below batch.bytes (1 MiB), above the topic's 20000 bytes.
    let (status, env) = bp.call(&call_body(MOCK, &noise(30_000), "")).await;
    assert_eq!(status, 413, "{env}");
    assert_eq!(env["msg"], "消息过大");
    // 10 KB plus the 4 KiB dead-letter reserve still fits.
    let (status, env) = bp.call(&with_ack(call_body(MOCK, &noise(10_000), ""))).await;
    assert_eq!((status, env["errno"].clone()), (200, json!(0)), "{env}");
    let client = client().await;
    assert_eq!(count_records(&client, &topic, 1).await, 1);
    bp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_kafka_refuses_as_too_large_fails_at_once_without_retries() {
    let _k = kafka().await;
    let topic = unique("limits-ack");
    // Long retry budgets: a retried call would wait for them; a final error must not.
    let extra = "[kafka.producer]\nmessage.timeout.ms = 120000\nack.timeout.ms = 100000\n\
                 [kafka.metadata]\nrefresh.ms = 600000\n";
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, extra))).await;

    // Lower the topic's limit behind bigpipe's back: it keeps the default until its next
    // refresh (10 minutes away), so its own check lets the call through and Kafka refuses it.
    let out = kafka_tool(
        "configs",
        &bootstrap(),
        &[
            "--alter",
            "--entity-type",
            "topics",
            "--entity-name",
            &topic,
            "--add-config",
            "max.message.bytes=20000",
        ],
    )
    .expect("run kafka-configs");
    assert!(out.contains("Completed updating config"), "{out}");

    let started = Instant::now();
    let (status, env) = bp.call(&with_ack(call_body(MOCK, &noise(60_000), ""))).await;
    let took = started.elapsed();
    assert_eq!(status, 413, "{env}");
    assert_eq!(env, json!({"data": "", "errno": 4, "msg": "Kafka拒绝:消息过大"}));
    assert!(took < Duration::from_secs(10), "answered after {took:?}");

    let (_, stats) = bp.get("/stats").await;
    let producer = &stats["data"]["producerStats"][&topic];
    assert_eq!(producer["tooLarge"], 1, "{producer}");
    assert_eq!(producer["deliveryFail"], 1, "{producer}");
    assert_eq!(producer["deliveryRetries"], 0, "{producer}");
    let client = client().await;
    assert_eq!(count_records(&client, &topic, 1).await, 0);
    bp.stop().await;
}

/// A second and third ACL on the same topic, next to `simple_config`'s `caller`.
const MORE_ACLS: &str = r#"
[[kafka.producer.acl]]
name = "flooder-2"
secret = "f2"
topic = "{topic}"

[[kafka.producer.acl]]
name = "quiet"
secret = "q"
topic = "{topic}"
"#;

fn body_of(acl: &str, secret: &str, data: &str) -> Value {
    json!({
        "acl": {"name": acl, "secret": secret},
        "url": MOCK,
        "data": data,
        "partition_key": "",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_flooding_acls_get_503_while_a_quiet_acl_keeps_getting_200() {
    let _k = kafka().await;
    let topic = unique("limits-fair");
    // A 2 s linger keeps every accepted call in the queue; 21 calls in all, half reserved:
    // 3 per ACL (10 / 3, rounded down), the rest shared.
    let extra = format!(
        "{}\n[kafka.producer]\nlinger.ms = 2000\n[http.server]\nhandler.channel.size = 21\n",
        MORE_ACLS.replace("{topic}", &topic)
    );
    let bp = Arc::new(Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &extra))).await);

    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let mut flooders = vec![];
    for (acl, secret) in [("caller", "s3cret"), ("flooder-2", "f2")] {
        for _ in 0..3 {
            let (bp, stop, refused) = (Arc::clone(&bp), Arc::clone(&stop), Arc::clone(&refused));
            flooders.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let (status, env) = bp.call(&body_of(acl, secret, "flood")).await;
                    match status {
                        200 => {}
                        503 => {
                            assert_eq!(env["msg"], "超过负载", "{env}");
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("flooder got {other}: {env}"),
                    }
                }
            }));
        }
    }
    // Only once the queue is full for the flooders does the quiet caller's answer mean anything.
    poll("flooders refused", || async {
        (refused.load(Ordering::Relaxed) >= 10).then_some(())
    })
    .await;
    for i in 0..3 {
        let (status, env) = bp.call(&body_of("quiet", "q", &format!("quiet-{i}"))).await;
        assert_eq!(
            (status, env["errno"].clone()),
            (200, json!(0)),
            "quiet call {i}: {env}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.await.expect("flooder");
    }

    let (_, stats) = bp.get("/stats").await;
    let server = &stats["data"]["serverStats"];
    assert!(server["overloadAclShare"].as_u64() > Some(0), "{server}");
    let by_acl = &server["overloadByAcl"];
    assert!(by_acl.get("quiet").is_none(), "{by_acl}");
    let flooded = by_acl["caller"].as_u64().unwrap_or(0) + by_acl["flooder-2"].as_u64().unwrap_or(0);
    assert_eq!(Some(flooded), server["overloadCall"].as_u64(), "{server}");

    // Every quiet call reaches Kafka.
    let client = client().await;
    poll("quiet calls in kafka", || async {
        let all = read_all(&client, &topic, 1).await;
        let quiet = all[&0]
            .iter()
            .filter(|r| {
                let value: Value =
                    serde_json::from_slice(r.record.value.as_deref().unwrap_or(b"{}")).unwrap_or(Value::Null);
                value["Data"].as_str().is_some_and(|d| d.starts_with("quiet-"))
            })
            .count();
        (quiet == 3).then_some(())
    })
    .await;
    match Arc::try_unwrap(bp) {
        Ok(bp) => bp.stop().await,
        Err(_) => panic!("a flooder still holds bigpipe"),
    }
}
