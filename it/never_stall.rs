//! Nothing stalls: a slow or failing target never holds a partition for the
//! others. Calls wait for their retries in retry tier topics, and one host gets
//! at most `hostConcurrency` of the entry's slots.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::delivery::consumer_entry;
use crate::helpers::target::Target;
use crate::helpers::*;

async fn entry_stats(bp: &Bigpipe) -> Value {
    bp.get("/stats").await.1["data"]["consumerStats"][0].clone()
}

/// Sum of the lag over the partitions of a stats object (None until every partition
/// has a committed offset).
fn lag(view: &Value) -> Option<i64> {
    let parts = view["partitions"].as_object()?;
    if parts.is_empty() {
        return None;
    }
    parts.values().map(|p| p["lag"].as_i64()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_host_does_not_delay_a_healthy_host_on_the_same_key() {
    let _k = kafka().await;
    let slow = Target::start();
    let healthy = Target::start();
    let topic = unique("slowhost");
    // The numbers: timeout 2 s, concurrency 5; hostConcurrency defaults to 2.
    let entry = consumer_entry(&topic, &unique("G"), "")
        .replace("concurrency = 20", "concurrency = 5")
        .replace("timeout = 3000", "timeout = 2000");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &entry))).await;

    for i in 0..20 {
        let (status, env) = bp
            .call(&call_body(
                &slow.url("/slow/60000"),
                &format!("slow-{i}"),
                "same-key",
            ))
            .await;
        assert_eq!(status, 200, "{env}");
    }
    poll("the slow host holds its slots", || async {
        (slow.max_in_flight() >= 2).then_some(())
    })
    .await;
    let sent = Instant::now();
    let (status, env) = bp
        .call(&call_body(&healthy.url("/ok"), "healthy", "same-key"))
        .await;
    assert_eq!(status, 200, "{env}");
    poll("the healthy call delivered", || async {
        (healthy.count() == 1).then_some(())
    })
    .await;
    let took = sent.elapsed();
    eprintln!("healthy call behind 20 calls to a host that never answers: delivered in {took:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(
        slow.max_in_flight() <= 2,
        "hostConcurrency caps the slow host at 2 of 5 slots, saw {}",
        slow.max_in_flight()
    );
    bp.stop().await;
    healthy.stop().await;
    slow.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_wait_in_a_tier_topic_and_the_partition_moves_on() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("tiers");
    let group = unique("G");
    // Retry-After 3 s: the retry is due later than the in-window limit, so it is parked
    // in the 5 s tier; the target answers 429 once per call, then 200.
    let entry = consumer_entry(&topic, &group, "retryTiers = [5000, 60000]");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 2, &entry))).await;

    let mut ids = BTreeSet::new();
    let started = Instant::now();
    for i in 0..10 {
        let (status, env) = bp
            .call(&call_body(
                &target.url("/retry-after/3"),
                &format!("c{i}"),
                &format!("k{i}"),
            ))
            .await;
        assert_eq!(status, 200, "{env}");
        ids.insert(env["data"].as_str().unwrap().to_owned());
    }
    poll(
        "every call parked and the main partitions committed past them",
        || async {
            let s = entry_stats(&bp).await;
            (s["retryParked"] == 10 && lag(&s) == Some(0)).then_some(())
        },
    )
    .await;
    // Kafka's own view: the main group is at the log end; the tier topic holds 10 records.
    let client = client().await;
    assert_eq!(
        count_records(&client, &format!("{topic}.retry.{group}.5s"), 2).await,
        10
    );
    let described = kafka_tool(
        "kafka-consumer-groups.sh",
        &bootstrap(),
        &["--describe", "--group", &format!("{group}.retry.5s")],
    )
    .unwrap_or_default();
    eprintln!("{described}");
    poll("every call delivered from the tier", || async {
        let got: BTreeSet<String> = target
            .received()
            .iter()
            .filter(|r| r.status == 200)
            .map(|r| r.call_id())
            .collect();
        (got == ids).then_some(())
    })
    .await;
    let took = started.elapsed();
    for r in target.received().iter().filter(|r| r.status == 200) {
        assert_eq!(
            r.header("x-bigpipe-attempt"),
            Some("2"),
            "the tier keeps the attempt count"
        );
    }
    assert!(took >= Duration::from_secs(3), "Retry-After honoured: {took:?}");
    let s = entry_stats(&bp).await;
    assert_eq!(s["rpcSuccess"], 10, "{s}");
    assert_eq!(s["deadLettered"], 0, "{s}");
    assert_eq!(s["retryTiers"][0]["topic"], format!("{topic}.retry.{group}.5s"));
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_groups_on_one_topic_retry_their_own_calls_only() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("twotiers");
    let extra = format!(
        "{}{}",
        consumer_entry(&topic, &unique("G1"), "retryTiers = [5000]"),
        consumer_entry(&topic, &unique("G2"), "retryTiers = [5000]")
    );
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &extra))).await;
    // The target answers the first request of each call 429 + Retry-After 2: one group's
    // copy is parked in its tier, the other group's is delivered at once.
    let mut ids = BTreeSet::new();
    for i in 0..5 {
        let (status, env) = bp
            .call(&call_body(&target.url("/retry-after/2"), &format!("c{i}"), "k"))
            .await;
        assert_eq!(status, 200, "{env}");
        ids.insert(env["data"].as_str().unwrap().to_owned());
    }
    poll("each call delivered once per group", || async {
        let ok = target.received().iter().filter(|r| r.status == 200).count();
        (ok >= 10).then_some(())
    })
    .await;
    // Give a wrongly shared tier time to deliver a third copy, then count.
    poll("5 parked, and both tiers read to their end", || async {
        let s = bp.get("/stats").await.1["data"]["consumerStats"].clone();
        let parked: u64 = (0..2).filter_map(|i| s[i]["retryParked"].as_u64()).sum();
        let drained = |i: usize| partitions_lag(&s[i]["retryTiers"][0]) == Some(0);
        (parked == 5 && drained(0) && drained(1)).then_some(())
    })
    .await;
    let mut per_call: std::collections::HashMap<String, usize> = Default::default();
    for r in target.received().iter().filter(|r| r.status == 200) {
        *per_call.entry(r.call_id()).or_default() += 1;
    }
    assert_eq!(per_call.keys().cloned().collect::<BTreeSet<_>>(), ids);
    assert!(
        per_call.values().all(|&n| n == 2),
        "once per group, never a third time from the other group's tier: {per_call:?}"
    );
    bp.stop().await;
    target.stop().await;
}
