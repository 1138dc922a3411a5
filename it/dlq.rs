//! Every call finishes (issue 8, Must have 3): a dead letter Kafka refuses as
//! too large is written without its value, and one refused even then is
//! reported and counted; either way the partition's committed offset moves
//! on and later calls on the same key are delivered. Also the stall report of
//! Must have 4: a partition behind and not moving shows in `/stats` and `/readyz`.

use std::time::Duration;

use rand::Rng;
use rand::distr::Alphanumeric;
use rskafka::record::RecordAndOffset;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::helpers::target::Target;
use crate::helpers::*;

/// How long a call on the same key may take once the one before it was dead-lettered.
const LATER_CALL_BOUND: Duration = Duration::from_secs(10);

/// Creates `topic` (one partition) with a `max.message.bytes` of `limit`, before bigpipe
/// starts, so bigpipe finds it and does not create it with the broker's default limit.
pub(crate) async fn create_limited_topic(topic: &str, limit: usize) {
    create_topic(
        topic,
        &[
            ("max.message.bytes", limit.to_string()),
            // Keep our snappy batches as they are, so the limit applies to what we send.
            ("compression.type", "producer".into()),
        ],
    )
    .await;
}

/// A consumer entry: one attempt of at most `timeout` ms, fast commits.
fn entry(topic: &str, group: &str, extra: &str) -> String {
    format!(
        "[[kafka.consumer.list]]\ntopic = \"{topic}\"\ngroupId = \"{group}\"\nrateLimit = 2000\n\
         concurrency = 20\nretries = 0\nsessionTimeout = 6000\ncommitInterval = 200\n{extra}\n"
    )
}

/// `n` random alphanumeric characters: snappy cannot shrink them much.
pub(crate) fn incompressible(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

async fn consumer_stats(bp: &Bigpipe) -> Value {
    bp.get("/stats").await.1["data"]["consumerStats"][0].clone()
}

fn header(r: &RecordAndOffset, k: &str) -> Option<String> {
    r.record
        .headers
        .get(k)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Sends a call to `/ok` on `key` and returns how long it took to arrive.
async fn later_call_arrives(bp: &Bigpipe, target: &Target, key: &str) -> Duration {
    let sent = Instant::now();
    let (status, env) = bp.call(&call_body(&target.url("/ok/later"), "later", key)).await;
    assert_eq!(status, 200, "{env}");
    let id = env["data"].as_str().expect("call id").to_owned();
    let arrived = poll("the later call", || async {
        target.received().iter().find(|r| r.call_id() == id).map(|r| r.at)
    })
    .await;
    arrived.saturating_duration_since(sent)
}

/// Polls until the entry's partition 0 has committed at least `offset`.
async fn committed_at_least(bp: &Bigpipe, offset: i64) -> Value {
    poll(&format!("committed offset {offset}"), || async {
        let c = consumer_stats(bp).await;
        (c["partitions"]["0"]["committed"].as_i64() >= Some(offset)).then_some(c)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_too_large_for_its_topic_is_written_without_its_value() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("dlqbig");
    let dlq = format!("{topic}.dlq");
    // The call fits its own topic (broker default, 1 MB) but its dead letter does not fit this.
    create_limited_topic(&dlq, 8 * 1024).await;
    let group = unique("G");
    let extra = entry(&topic, &group, &format!("deadLetterTopic = \"{dlq}\""));
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &extra))).await;

    let data = incompressible(64 * 1024);
    let (status, env) = bp
        .call(&call_body(&target.url("/always/404"), &data, "same-key"))
        .await;
    assert_eq!(status, 200, "{env}");
    let id = env["data"].as_str().unwrap().to_owned();
    // The symptom first: the committed offset moves past the dead-lettered call.
    committed_at_least(&bp, 1).await;
    let c = consumer_stats(&bp).await;
    assert_eq!(c["deadLetteredWithoutValue"], 1, "{c}");
    assert_eq!(c["deadLettered"], 1, "{c}");
    assert_eq!(c["deadLetterFailed"], 0, "{c}");
    let took = later_call_arrives(&bp, &target, "same-key").await;
    assert!(took <= LATER_CALL_BOUND, "the later call took {took:?}");
    committed_at_least(&bp, 2).await;

    let client = client().await;
    let original = read_all(&client, &topic, 1).await.remove(&0).unwrap();
    let original = original[0].record.value.clone().expect("the call's value");
    let letters = read_all(&client, &dlq, 1).await.remove(&0).unwrap();
    assert_eq!(letters.len(), 1, "one dead letter");
    let letter = &letters[0];
    assert_eq!(letter.record.value, None, "the value is left out");
    assert_eq!(letter.record.key.as_deref(), Some(&b"same-key"[..]));
    assert_eq!(header(letter, "bigpipe-call-id").as_deref(), Some(id.as_str()));
    assert_eq!(header(letter, "bigpipe-dlq-status").as_deref(), Some("404"));
    assert_eq!(
        header(letter, "bigpipe-dlq-group").as_deref(),
        Some(group.as_str())
    );
    assert_eq!(header(letter, "bigpipe-dlq-source"), Some(format!("{topic}/0/0")));
    assert_eq!(
        header(letter, "bigpipe-dlq-value-bytes"),
        Some(original.len().to_string())
    );
    let sha: String = Sha256::digest(&original)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(header(letter, "bigpipe-dlq-value-sha256"), Some(sha));
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_refused_even_without_its_value_is_reported_and_the_partition_moves() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("dlqtiny");
    let dlq = format!("{topic}.dlq");
    // Smaller than any record batch with our headers: even the value-less letter is refused.
    create_limited_topic(&dlq, 100).await;
    let extra = entry(&topic, &unique("G"), &format!("deadLetterTopic = \"{dlq}\""));
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &extra))).await;

    let (status, env) = bp
        .call(&call_body(&target.url("/always/404"), "small", "same-key"))
        .await;
    assert_eq!(status, 200, "{env}");
    committed_at_least(&bp, 1).await;
    let c = consumer_stats(&bp).await;
    assert_eq!(c["deadLetterFailed"], 1, "{c}");
    assert_eq!(c["deadLettered"], 0, "{c}");
    let took = later_call_arrives(&bp, &target, "same-key").await;
    assert!(took <= LATER_CALL_BOUND, "the later call took {took:?}");
    committed_at_least(&bp, 2).await;

    let client = client().await;
    assert_eq!(count_records(&client, &dlq, 1).await, 0, "nothing was written");
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_kafka_keeps_refusing_is_retried_within_its_budget_then_reported() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("dlqisr");
    let dlq = format!("{topic}.dlq");
    // A compacted topic refuses records without a key (INVALID_RECORD), and a call with an
    // empty partition_key has none: an error that is not "too large" and never clears.
    create_topic(&dlq, &[("cleanup.policy", "compact".into())]).await;
    let budget = Duration::from_millis(3000);
    let extra = entry(
        &topic,
        &unique("G"),
        &format!(
            "deadLetterTopic = \"{dlq}\"\ndeadLetterTimeout = {}",
            budget.as_millis()
        ),
    );
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &extra))).await;

    let sent = Instant::now();
    let (status, env) = bp.call(&call_body(&target.url("/always/404"), "small", "")).await;
    assert_eq!(status, 200, "{env}");
    committed_at_least(&bp, 1).await;
    let took = sent.elapsed();
    let c = consumer_stats(&bp).await;
    assert_eq!(c["deadLetterFailed"], 1, "{c}");
    assert_eq!(c["deadLettered"], 0, "{c}");
    // It kept trying for the budget, not more than the budget plus a commit and a timeout.
    assert!(took >= budget, "reported after {took:?}, before the budget");
    assert!(
        took <= budget + Duration::from_secs(30),
        "reported after {took:?}"
    );
    // One partition: a later call without a key lands behind it.
    let took = later_call_arrives(&bp, &target, "").await;
    assert!(took <= LATER_CALL_BOUND, "the later call took {took:?}");
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_behind_and_not_moving_is_reported_stalled_until_it_moves() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("stall");
    let group = unique("G");
    // One call that takes 6 s holds the partition's position; stallAfter is far shorter
    // (config warns about that, which is the point here).
    let extra = entry(&topic, &group, "timeout = 20000\nstallAfter = 1000");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &extra))).await;

    let (status, env) = bp.call(&call_body(&target.url("/slow/6000"), "slow", "k")).await;
    assert_eq!(status, 200, "{env}");
    let c = poll("the partition reported stalled", || async {
        let c = consumer_stats(&bp).await;
        (c["stalledPartitions"] == 1).then_some(c)
    })
    .await;
    let p = &c["partitions"]["0"];
    assert_eq!(p["stalled"], true, "{p}");
    assert_eq!(p["logEndOffset"], 1, "{p}");
    assert_eq!(p["lag"], 1, "{p}");
    assert!(p["stalledForMs"].as_u64().unwrap() >= 1000, "{p}");
    let reason = p["stalledReason"].as_str().unwrap();
    assert!(reason.contains("offset 0 has not finished"), "{reason}");
    let (status, ready) = bp.get("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    let detail = ready["data"].as_str().unwrap();
    assert!(
        detail.contains(&format!("group {group} topic {topic} partition 0")),
        "{detail}"
    );
    assert!(detail.contains("has not finished"), "{detail}");

    // The slow call finishes: the partition moves again and readiness comes back.
    poll("the partition moving again", || async {
        let c = consumer_stats(&bp).await;
        let p = &c["partitions"]["0"];
        (c["stalledPartitions"] == 0 && p["stalled"] == false && p["committed"] == 1).then_some(())
    })
    .await;
    bp.wait_ready().await;
    assert_eq!(consumer_stats(&bp).await["partitions"]["0"]["lag"], 0);
    bp.stop().await;
    target.stop().await;
}
