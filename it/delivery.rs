//! Kafka → HTTP delivery: every call arrives, retries, dead letters,
//! Retry-After, concurrency and the group rate.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::target::Target;
use crate::helpers::*;

/// A consumer entry in TOML.
pub(crate) fn consumer_entry(topic: &str, group: &str, extra: &str) -> String {
    format!(
        "[[kafka.consumer.list]]\ntopic = \"{topic}\"\ngroupId = \"{group}\"\nrateLimit = 2000\n\
         concurrency = 20\nretries = 2\ntimeout = 3000\nretryBackoff = 20\nretryBackoffMax = 200\n\
         sessionTimeout = 6000\ncommitInterval = 200\n{extra}\n"
    )
}

/// Sends `n` calls with `make(i) -> (path, data, key)`; returns their ids in order.
async fn send_calls(
    bp: &Bigpipe,
    target: &Target,
    n: usize,
    make: impl Fn(usize) -> (String, String, String),
) -> Vec<String> {
    let mut ids = vec![];
    for i in 0..n {
        let (path, data, key) = make(i);
        let (status, env) = bp.call(&call_body(&target.url(&path), &data, &key)).await;
        assert_eq!(status, 200, "{env}");
        ids.push(env["data"].as_str().unwrap().to_owned());
    }
    ids
}

async fn stats_of(bp: &Bigpipe) -> Value {
    bp.get("/stats").await.1["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_reaches_its_url_once_per_group_with_body_and_headers_intact() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("deliver");
    let g1 = unique("G1");
    let extra = format!(
        "{}{}[delivery]\nheaders.drop = [\"X-Drop-Me\"]\n",
        consumer_entry(&topic, &g1, ""),
        consumer_entry(&topic, &unique("G2"), "")
    );
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 3, &extra))).await;

    let big = "大".repeat(100 * 1024 / 3);
    let mut sent: HashMap<String, String> = HashMap::new();
    for i in 0..30 {
        let data = match i {
            0 => big.clone(),
            1 => "emoji 🚀 and \"quotes\" <tags> & amps".to_owned(),
            _ => format!("call-{i}-ünïcødé"),
        };
        let body = call_body(&target.url(&format!("/ok/{i}")), &data, &format!("key-{}", i % 7));
        let resp = bp
            .http
            .post(format!("{}/rpc/call", bp.base))
            .header("X-Custom", "kept")
            .header("Authorization-Hint", "not forwarded")
            .header("X-Drop-Me", "secret")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let env: Value = resp.json().await.unwrap();
        sent.insert(env["data"].as_str().unwrap().to_owned(), data);
    }

    poll("60 deliveries", || async { (target.count() >= 60).then_some(()) }).await;
    // Commits and counters settle shortly after the last delivery.
    poll("both groups count 30 successes", || async {
        let s = stats_of(&bp).await;
        let ok = |i: usize| s["consumerStats"][i]["rpcSuccess"] == 30;
        (ok(0) && ok(1)).then_some(s)
    })
    .await;
    let received = target.received();
    assert_eq!(received.len(), 60, "no duplicates without faults");
    let mut per_call: HashMap<String, usize> = HashMap::new();
    for r in &received {
        *per_call.entry(r.call_id()).or_default() += 1;
        let data = sent
            .get(&r.call_id())
            .unwrap_or_else(|| panic!("unknown call id {}", r.call_id()));
        assert_eq!(String::from_utf8(r.body.clone()).unwrap(), *data);
        assert_eq!(r.header("x-custom"), Some("kept"));
        assert_eq!(
            r.header("authorization-hint"),
            None,
            "not on the default allow-list (X-* and a few descriptive headers)"
        );
        assert_eq!(r.header("x-drop-me"), None, "delivery.headers.drop");
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert_eq!(r.header("x-bigpipe-attempt"), Some("1"));
        assert_eq!(r.header("content-length"), Some(data.len().to_string().as_str()));
    }
    assert_eq!(per_call.len(), 30);
    assert!(
        per_call.values().all(|&n| n == 2),
        "each group delivers each call once"
    );

    let s = stats_of(&bp).await;
    assert_eq!(s["clientStats"][&topic]["rpcTotal"], 60);
    assert_eq!(s["consumerStats"][0]["groupId"], g1.as_str());
    assert_eq!(s["consumerStats"][1]["handleMessage"], 30);
    // Committed offsets reach the end of every partition.
    poll("offsets committed", || async {
        let s = stats_of(&bp).await;
        let parts = s["consumerStats"][0]["partitions"].as_object()?.clone();
        (parts.len() == 3 && parts.values().all(|p| p["lag"] == 0)).then_some(())
    })
    .await;
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_then_dead_lettered_with_their_reason() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("retry");
    let group = unique("G");
    let extra = consumer_entry(&topic, &group, "");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 2, &extra))).await;

    let ids = send_calls(&bp, &target, 3, |i| match i {
        0 => ("/fail/2/503".into(), "twice".into(), "a".into()),
        1 => ("/always/500".into(), "never".into(), "b".into()),
        _ => ("/always/404".into(), "not-found".into(), "c".into()),
    })
    .await;
    let s = poll("three calls finished", || async {
        let s = stats_of(&bp).await;
        let c = &s["consumerStats"][0];
        (c["rpcSuccess"] == 1 && c["rpcFail"] == 2 && c["deadLettered"] == 2).then_some(s)
    })
    .await;
    let attempts = |id: &str| {
        let mut a: Vec<String> = target
            .received()
            .iter()
            .filter(|r| r.call_id() == id)
            .map(|r| r.header("x-bigpipe-attempt").unwrap_or_default().to_owned())
            .collect();
        a.sort();
        a
    };
    assert_eq!(attempts(&ids[0]), ["1", "2", "3"], "failed twice, then 200");
    assert_eq!(attempts(&ids[1]), ["1", "2", "3"], "retries = 2");
    assert_eq!(attempts(&ids[2]), ["1"], "404 is not retried");
    let c = &s["consumerStats"][0];
    assert_eq!(c["rpcRetries"], 4);
    assert_eq!(c["rpcTotal"], 3);

    let client = client().await;
    let dlq = format!("{topic}.dlq");
    let letters = poll("two dead letters", || async {
        let all = read_all(&client, &dlq, 2).await;
        let letters: Vec<_> = all.into_values().flatten().collect();
        (letters.len() == 2).then_some(letters)
    })
    .await;
    let header = |r: &rskafka::record::RecordAndOffset, k: &str| {
        String::from_utf8(r.record.headers.get(k).cloned().unwrap_or_default()).unwrap()
    };
    for letter in &letters {
        let id = header(letter, "bigpipe-call-id");
        let value: Value = serde_json::from_slice(letter.record.value.as_ref().unwrap()).unwrap();
        assert_eq!(header(letter, "bigpipe-dlq-group"), group);
        if id == ids[1] {
            assert_eq!(value["Data"], "never");
            assert_eq!(header(letter, "bigpipe-dlq-status"), "500");
            assert_eq!(header(letter, "bigpipe-dlq-attempts"), "3");
            assert!(header(letter, "bigpipe-dlq-reason").contains("exhausted"));
        } else {
            assert_eq!(id, ids[2]);
            assert_eq!(header(letter, "bigpipe-dlq-status"), "404");
            assert_eq!(header(letter, "bigpipe-dlq-attempts"), "1");
        }
    }
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_waited_for() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("retryafter");
    // Backoff alone would retry within 20 ms; only Retry-After explains a 2 s wait.
    let extra = consumer_entry(&topic, &unique("G"), "");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &extra))).await;
    let ids = send_calls(&bp, &target, 1, |_| {
        ("/retry-after/2".into(), "x".into(), String::new())
    })
    .await;
    poll("second attempt", || async { (target.count() >= 2).then_some(()) }).await;
    let r = target.received();
    assert_eq!(r[0].status, 429);
    assert_eq!(r[1].call_id(), ids[0]);
    let waited = r[1].at - r[0].at;
    assert!(waited >= Duration::from_millis(1900), "waited only {waited:?}");
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_caps_calls_in_flight() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("concurrency");
    // One host here, so its cap (default: half of concurrency) is lifted to the entry's.
    let extra = consumer_entry(&topic, &unique("G"), "hostConcurrency = 3")
        .replace("concurrency = 20", "concurrency = 3");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 3, &extra))).await;
    send_calls(&bp, &target, 24, |i| {
        ("/slow/150".into(), format!("{i}"), String::new())
    })
    .await;
    poll("24 deliveries", || async { (target.count() >= 24).then_some(()) }).await;
    assert_eq!(
        target.max_in_flight(),
        3,
        "never more than concurrency, and the cap is reached"
    );
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_group_id_on_two_topics_delivers_both() {
    let _k = kafka().await;
    let target = Target::start();
    let (a, b) = (unique("topica"), unique("topicb"));
    let group = unique("G");
    let toml = format!(
        "[log]\nlevel = \"warning\"\n[kafka]\nbootstrap.servers = \"{{bootstrap}}\"\n\
         topics = [{{ name = \"{a}\", partitions = 2 }}, {{ name = \"{b}\", partitions = 3 }}]\n\
         [[kafka.producer.acl]]\nname = \"caller\"\nsecret = \"s3cret\"\ntopic = \"{a}\"\n\
         [[kafka.producer.acl]]\nname = \"other\"\nsecret = \"s3cret\"\ntopic = \"{b}\"\n{}{}",
        consumer_entry(&a, &group, ""),
        consumer_entry(&b, &group, "")
    );
    let bp = Bigpipe::start_ready(&settings(&toml)).await;
    let mut ids = vec![];
    for i in 0..10 {
        let mut body = call_body(&target.url("/ok"), &format!("{i}"), &format!("k{i}"));
        if i % 2 == 1 {
            body["acl"]["name"] = serde_json::json!("other");
        }
        let (status, env) = bp.call(&body).await;
        assert_eq!(status, 200, "{env}");
        ids.push(env["data"].as_str().unwrap().to_owned());
    }
    poll("both topics delivered", || async {
        let got: std::collections::BTreeSet<String> = target.received().iter().map(|r| r.call_id()).collect();
        ids.iter().all(|id| got.contains(id)).then_some(())
    })
    .await;
    let s = stats_of(&bp).await;
    assert_eq!(s["consumerStats"][0]["rpcSuccess"], 5);
    assert_eq!(s["consumerStats"][1]["rpcSuccess"], 5);
    bp.stop().await;
    target.stop().await;
}

#[test]
fn consumer_entry_is_valid_config() {
    let text = simple_config("t", 1, &consumer_entry("t", "G", "")).replace("{bootstrap}", "127.0.0.1:9092");
    let s = bigpipe::config::load_from_str(&text, bigpipe::config::Format::Toml).unwrap();
    assert_eq!(s.consumers.len(), 1);
    assert_eq!(s.consumers[0].dead_letter_topic.as_deref(), Some("t.dlq"));
}
