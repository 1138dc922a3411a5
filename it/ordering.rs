//! `ordering = "key"`: the calls of one partition key arrive one at a time, in acceptance
//! order, under random failures; other keys stay parallel; a call that keeps failing holds
//! only its own key until it is dead-lettered.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;

use crate::helpers::target::Target;
use crate::helpers::*;

const KEYS: usize = 100;
const CALLS: usize = 10_000;

fn entry(topic: &str, ordering: &str) -> String {
    format!(
        "[[kafka.consumer.list]]\ntopic = \"{topic}\"\ngroupId = \"{}\"\nrateLimit = 20000\n\
         concurrency = 64\nhostConcurrency = 64\nretries = 10\ntimeout = 3000\nretryBackoff = 5\n\
         retryBackoffMax = 40\nsessionTimeout = 6000\ncommitInterval = 200\nprefetchRecords = 4000\n\
         ordering = \"{ordering}\"\n",
        unique("G")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_calls_over_a_hundred_keys_arrive_in_order_per_key_under_random_failures() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("order");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 4, &entry(&topic, "key")))).await;

    // A key whose calls always fail goes first: it is held, not the others.
    let mut items = Vec::new();
    for seq in 0..3 {
        items.push(call_body(
            &target.url("/always/503"),
            &format!("stuck:{seq}"),
            "stuck",
        ));
    }
    let started = Instant::now();
    let mut sent = 0;
    for i in 0..CALLS {
        let key = format!("key-{}", i % KEYS);
        let seq = i / KEYS;
        items.push(call_body(&target.url("/flaky/20"), &format!("{key}:{seq}"), &key));
        if items.len() == 500 || i == CALLS - 1 {
            let body = json!({"calls": std::mem::take(&mut items), "ack": "kafka"});
            let (status, env) = bp.post_raw("/rpc/calls", body.to_string().into_bytes()).await;
            assert_eq!(status, 200, "{env}");
            let answers = env["data"].as_array().cloned().unwrap_or_default();
            assert!(answers.iter().all(|a| a["errno"] == 0), "{env}");
            sent += answers.len();
        }
    }
    assert_eq!(sent, CALLS + 3);
    poll(
        "every call delivered and the stuck key's calls dead-lettered",
        || async {
            let s = bp.get("/stats").await.1["data"]["consumerStats"][0].clone();
            (s["rpcSuccess"] == CALLS && s["deadLettered"] == 3).then_some(())
        },
    )
    .await;
    let took = started.elapsed();

    // Kafka's own order (offsets) per key, for the record.
    let client = client().await;
    let mut kafka_order: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (_, records) in read_all(&client, &topic, 4).await {
        for r in records {
            let value: serde_json::Value =
                serde_json::from_slice(r.record.value.as_deref().unwrap_or_default()).unwrap_or_default();
            let data = value["Data"].as_str().unwrap_or_default().to_owned();
            let (key, seq) = data.rsplit_once(':').unwrap_or_default();
            kafka_order
                .entry(key.to_owned())
                .or_default()
                .push(seq.parse().unwrap_or(0));
        }
    }
    let kafka_swaps: usize = kafka_order
        .values()
        .map(|v| v.windows(2).filter(|w| w[1] < w[0]).count())
        .sum();
    eprintln!("keys stored out of acceptance order in Kafka: {kafka_swaps}");
    // Per key, in arrival order, every attempt's sequence number: never going back.
    let received = target.received();
    let mut per_key: BTreeMap<String, Vec<(u64, u16)>> = BTreeMap::new();
    for r in &received {
        let text = String::from_utf8_lossy(&r.body).into_owned();
        let (key, seq) = text.rsplit_once(':').unwrap_or_default();
        per_key
            .entry(key.to_owned())
            .or_default()
            .push((seq.parse().unwrap_or(u64::MAX), r.status));
    }
    let mut out_of_order = 0;
    // Keys whose deliveries are not each call once, in acceptance order.
    let mut keys_misordered = 0;
    for (key, attempts) in &per_key {
        for pair in attempts.windows(2) {
            if pair[1].0 < pair[0].0 || (pair[1].0 > pair[0].0 && pair[0].1 != 200 && key != "stuck") {
                out_of_order += 1;
            }
        }
        let delivered: Vec<u64> = attempts.iter().filter(|a| a.1 == 200).map(|a| a.0).collect();
        let want: Vec<u64> = (0..(CALLS / KEYS) as u64).collect();
        if key != "stuck" && delivered != want {
            keys_misordered += 1;
        }
    }
    let failed = received.iter().filter(|r| r.status == 503).count();
    eprintln!(
        "ordering=key: {CALLS} calls over {KEYS} keys (+3 on a key that always fails) in {took:?}; \
         {} attempts, {failed} answered 503; steps backwards or past an undelivered call: {out_of_order}; \
         keys misordered: {keys_misordered}; most requests in flight at the target: {}",
        received.len(),
        target.max_in_flight()
    );
    assert_eq!((kafka_swaps, out_of_order, keys_misordered), (0, 0, 0));
    assert_eq!(
        per_key["stuck"].iter().map(|a| a.0).collect::<Vec<_>>(),
        [0; 11]
            .iter()
            .chain(&[1; 11])
            .chain(&[2; 11])
            .copied()
            .collect::<Vec<_>>(),
        "the stuck key's calls: 11 attempts each, one after the other"
    );
    assert!(target.max_in_flight() > 1, "different keys run in parallel");
    bp.stop().await;
    target.stop().await;
}
