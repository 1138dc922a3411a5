//! Idempotency keys (issue 14, item 3): a repeated submit within the window answers with the
//! first call's id and writes nothing new, across processes, restarts and racing requests.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::delivery::consumer_entry;
use crate::helpers::target::Target;
use crate::helpers::*;

/// Two ACLs on `topic`, the claims in their own `claims` topic, and one consumer group.
fn config(topic: &str, claims: &str, window_ms: u64, group: &str) -> String {
    let extra = format!(
        "[[kafka.producer.acl]]\nname = \"other\"\nsecret = \"0th3r-s3cret\"\ntopic = \"{topic}\"\n\n\
         [http.server]\nidempotency.topic = \"{claims}\"\nidempotency.window.ms = {window_ms}\n\n{}",
        consumer_entry(topic, group, "")
    );
    simple_config(topic, 3, &extra)
}

/// POSTs `body` to `path` of `bp` with an `Idempotency-Key` header when given; returns the
/// status, whether the answer says it is a replay, and the envelope.
async fn post(bp: &Bigpipe, path: &str, body: &Value, header: Option<&str>) -> (u16, bool, Value) {
    let mut request = bp.http.post(format!("{}{path}", bp.base)).body(body.to_string());
    if let Some(key) = header {
        request = request.header("Idempotency-Key", key);
    }
    let r = request.send().await.expect("post");
    let status = r.status().as_u16();
    let replayed = r
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    let envelope = serde_json::from_slice(&r.bytes().await.expect("body")).unwrap_or(Value::Null);
    (status, replayed, envelope)
}

/// Polls until `bp` answers a keyed call: its claims reader has caught up. Each probe waits
/// for Kafka, so a record count taken next includes it.
async fn ready_for_keys(bp: &Bigpipe, target: &Target) {
    poll("idempotency claims read", || async {
        let key = format!("probe-{}", unique("k"));
        let mut body = with_key(call_body(&target.url("/probe"), "p", ""), &key);
        // In Kafka before the answer, so a count of the topic's records taken next holds it.
        body["ack"] = json!("kafka");
        let (status, _, _) = post(bp, "/rpc/call", &body, None).await;
        (status == 200).then_some(())
    })
    .await;
}

fn with_key(mut body: Value, key: &str) -> Value {
    body["idempotency_key"] = json!(key);
    body
}

/// Two processes sharing a topic (3 partitions), a claims topic and a group, both ready for
/// keyed calls, and the records already in the topic (the readiness probes).
struct Pair {
    target: Target,
    topic: String,
    toml: String,
    a: Bigpipe,
    b: Bigpipe,
    client: rskafka::client::Client,
    probes: usize,
}

impl Pair {
    async fn start(prefix: &str) -> Self {
        let target = Target::start();
        let topic = unique(prefix);
        let claims = unique(&format!("{prefix}-claims"));
        let toml = config(&topic, &claims, 86_400_000, &unique("G"));
        let a = Bigpipe::start_ready(&settings(&toml)).await;
        let b = Bigpipe::start_ready(&settings(&toml)).await;
        ready_for_keys(&a, &target).await;
        ready_for_keys(&b, &target).await;
        let client = client().await;
        let probes = count_records(&client, &topic, 3).await;
        Self {
            target,
            topic,
            toml,
            a,
            b,
            client,
            probes,
        }
    }
}

fn id_of(env: &Value) -> String {
    env["data"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_key_answers_with_the_first_id_across_processes_and_restarts() {
    let _k = kafka().await;
    let Pair {
        target,
        topic,
        toml,
        a,
        b,
        client,
        probes,
    } = Pair::start("idem").await;

    // First submit through A, waiting for Kafka; repeats through B (header) and A (field).
    let mut first = call_body(&target.url("/once"), "order 42", "");
    first["ack"] = json!("kafka");
    let (status, replayed, env) = post(&a, "/rpc/call", &with_key(first.clone(), "order-42"), None).await;
    assert_eq!((status, replayed), (200, false), "{env}");
    let id = id_of(&env);
    let (status, replayed, env) = post(&b, "/rpc/call", &first, Some("order-42")).await;
    assert_eq!((status, replayed, id_of(&env)), (200, true, id.clone()), "{env}");
    assert_eq!(env["msg"], "发送成功");
    // A repeat is decided by its key, not its body: a changed body still answers the first id.
    let changed = with_key(call_body(&target.url("/once"), "changed", ""), "order-42");
    let (status, replayed, env) = post(&a, "/rpc/call", &changed, None).await;
    assert_eq!((status, replayed, id_of(&env)), (200, true, id.clone()), "{env}");

    // The same key under another ACL is another call.
    let mut other = with_key(call_body(&target.url("/other"), "o", ""), "order-42");
    other["acl"] = json!({"name": "other", "secret": "0th3r-s3cret"});
    other["ack"] = json!("kafka");
    let (status, replayed, env) = post(&b, "/rpc/call", &other, None).await;
    assert_eq!((status, replayed), (200, false), "{env}");
    let other_id = id_of(&env);
    assert_ne!(other_id, id);

    // Only the two first submits are in Kafka.
    assert_eq!(count_records(&client, &topic, 3).await - probes, 2);
    let stats = a.get("/stats").await.1["data"]["serverStats"].clone();
    assert!(stats["idempotentReplays"].as_u64() >= Some(1), "{stats}");
    assert!(stats["idempotencyKeys"].as_u64() >= Some(2), "{stats}");

    // A process started later rebuilds the claims from Kafka before it answers for a key.
    a.stop().await;
    let c = Bigpipe::start_ready(&settings(&toml)).await;
    let (status, replayed, env) = post(&c, "/rpc/call", &first, Some("order-42")).await;
    assert_eq!((status, replayed, id_of(&env)), (200, true, id.clone()), "{env}");
    assert_eq!(count_records(&client, &topic, 3).await - probes, 2);

    poll("each call delivered", || async {
        let got: BTreeSet<String> = target.received().iter().map(|r| r.call_id()).collect();
        (got.contains(&id) && got.contains(&other_id)).then_some(())
    })
    .await;
    let once: Vec<_> = target
        .received()
        .into_iter()
        .filter(|r| r.body == b"order 42" || r.body == b"changed")
        .collect();
    assert_eq!(once.len(), 1, "the keyed call was delivered once: {once:?}");
    assert_eq!(once[0].body, b"order 42", "with the first submit's body");
    b.stop().await;
    c.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_submits_of_one_key_on_two_processes_write_one_call() {
    let _k = kafka().await;
    let Pair {
        target,
        topic,
        a,
        b,
        client,
        probes,
        ..
    } = Pair::start("idemrace").await;

    // 40 keys, each submitted 6 times at once: 3 through each process.
    const KEYS: usize = 40;
    let requests = (0..KEYS).flat_map(|k| (0..6).map(move |n| (k, n)));
    let answers = futures::future::join_all(requests.map(|(k, n)| {
        let (bp, target) = (if n % 2 == 0 { &a } else { &b }, &target);
        async move {
            let mut body = call_body(&target.url(&format!("/race/{k}")), &format!("k{k}"), "");
            body["ack"] = json!("kafka");
            (
                k,
                post(bp, "/rpc/call", &with_key(body, &format!("race-{k}")), None).await,
            )
        }
    }))
    .await;
    let mut ids: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for (k, (status, _, env)) in &answers {
        *statuses.entry(*status).or_default() += 1;
        match status {
            200 => {
                ids.entry(*k).or_default().insert(id_of(env));
            }
            409 => assert_eq!(env["msg"], "请求处理中", "{env}"),
            // A loaded machine may not decide a key or hear Kafka within the ack timeout:
            // those answers say "retry", which the next loop does. Nothing else may come.
            503 => assert_eq!(env["msg"], "幂等状态不可用", "{env}"),
            504 => assert_eq!(env["msg"], "等待Kafka确认超时", "{env}"),
            _ => panic!("key {k}: {status} {env}"),
        }
    }
    println!("racing submits: {statuses:?}");
    for (k, set) in &ids {
        assert_eq!(set.len(), 1, "key {k} answered with more than one id: {set:?}");
    }
    // Every other answer was told to retry: a retry gets the key's first id.
    for k in 0..KEYS {
        let retry = with_key(call_body(&target.url("/late"), "x", ""), &format!("race-{k}"));
        let (status, env) = poll("a retry answered 200", || async {
            let (status, _, env) = post(&b, "/rpc/call", &retry, None).await;
            (status != 409 && status != 503).then_some((status, env))
        })
        .await;
        let first = ids.get(&k).and_then(|s| s.iter().next().cloned());
        match first {
            Some(first) => assert_eq!((status, id_of(&env)), (200, first), "key {k}: {env}"),
            // No submit of this key got an id: the retry must, and it is the only one.
            None => {
                assert_eq!(status, 200, "key {k}: {env}");
                ids.entry(k).or_default().insert(id_of(&env));
            }
        }
    }
    let written = count_records(&client, &topic, 3).await - probes;
    assert_eq!(written, KEYS, "one call per key in Kafka ({statuses:?})");
    poll("one delivery per key", || async {
        let got = target
            .received()
            .iter()
            .filter(|r| r.body.starts_with(b"k"))
            .count();
        (got >= KEYS).then_some(())
    })
    .await;
    let mut per_key: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in target.received().iter().filter(|r| r.body.starts_with(b"k")) {
        per_key
            .entry(String::from_utf8_lossy(&r.body).into_owned())
            .or_default()
            .insert(r.call_id());
    }
    assert_eq!(per_key.len(), KEYS);
    assert!(per_key.values().all(|s| s.len() == 1), "{per_key:?}");
    a.stop().await;
    b.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_expire_with_the_window_and_bad_keys_are_refused() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("idemwin");
    let claims = unique("idemwin-claims");
    let toml = config(&topic, &claims, 1_000, &unique("G"));
    let bp = Bigpipe::start_ready(&settings(&toml)).await;
    ready_for_keys(&bp, &target).await;

    // The window: a repeat answers the first id until 1 s after the first submit.
    let mut body = with_key(call_body(&target.url("/w"), "w", ""), "window-key");
    body["ack"] = json!("kafka");
    let started = Instant::now();
    let (status, _, env) = post(&bp, "/rpc/call", &body, None).await;
    assert_eq!(status, 200, "{env}");
    let first = id_of(&env);
    let (_, replayed, env) = post(&bp, "/rpc/call", &body, None).await;
    if started.elapsed() < Duration::from_millis(900) {
        assert!(replayed, "a repeat inside the window: {env}");
        assert_eq!(id_of(&env), first);
    }
    let renewed = poll("a new id once the window passed", || async {
        let (status, replayed, env) = post(&bp, "/rpc/call", &body, None).await;
        (status == 200 && !replayed && id_of(&env) != first).then(|| started.elapsed())
    })
    .await;
    assert!(
        renewed >= Duration::from_millis(1_000),
        "renewed after {renewed:?}"
    );

    // Bad keys, and a header and a field that disagree.
    let plain = call_body(&target.url("/bad"), "b", "");
    let long = "k".repeat(256);
    for (body, header, msg) in [
        (with_key(plain.clone(), ""), None, "idempotency_key无效"),
        (with_key(plain.clone(), &long), None, "idempotency_key无效"),
        (with_key(plain.clone(), "a"), Some("b"), "idempotency_key无效"),
        (plain.clone(), Some(long.as_str()), "idempotency_key无效"),
    ] {
        let (status, _, env) = post(&bp, "/rpc/call", &body, header).await;
        assert_eq!(
            (status, env["msg"].as_str()),
            (400, Some(msg)),
            "{body} {header:?}"
        );
    }
    // The same key in the field and the header is fine.
    let (status, _, env) = post(&bp, "/rpc/call", &with_key(plain.clone(), "same"), Some("same")).await;
    assert_eq!(status, 200, "{env}");

    // A batch carries keys per item; the header would key every item alike and is refused.
    let batch = json!({"calls": [with_key(plain.clone(), "b1"), with_key(plain.clone(), "b1"),
        with_key(plain.clone(), "b2")], "ack": "kafka"});
    let (status, _, env) = post(&bp, "/rpc/calls", &batch, Some("b1")).await;
    assert_eq!(
        (status, env["msg"].as_str()),
        (400, Some("idempotency_key无效")),
        "{env}"
    );
    let (status, _, env) = post(&bp, "/rpc/calls", &batch, None).await;
    assert_eq!(status, 200, "{env}");
    let items = env["data"].as_array().cloned().unwrap_or_default();
    let b1: Vec<u64> = items[..2]
        .iter()
        .map(|i| i["status"].as_u64().unwrap_or(0))
        .collect();
    // The two items of key b1 race: one is written, the other finds it pending (409 at
    // once: a batch does not wait on its own items).
    let mut sorted = b1.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [200, 409], "{env}");
    assert_eq!(items[2]["status"], 200, "{env}");
    let (status, _, env) = post(&bp, "/rpc/calls", &batch, None).await;
    assert_eq!(status, 200, "{env}");
    let again = env["data"].as_array().cloned().unwrap_or_default();
    let b1_id = items
        .iter()
        .find(|i| i["status"] == 200)
        .map(|i| i["data"].clone());
    for (n, want) in [
        (0, b1_id.clone()),
        (1, b1_id),
        (2, Some(items[2]["data"].clone())),
    ] {
        assert_eq!(Some(again[n]["data"].clone()), want, "item {n}: {env}");
        assert_eq!(again[n]["replayed"], true, "item {n}: {env}");
    }
    bp.stop().await;

    // With idempotency off, a key is refused rather than silently not deduplicated.
    let off = format!(
        "{}\n",
        simple_config(&unique("idemoff"), 1, "[http.server]\nidempotency.topic = \"\"\n")
    );
    let bp = Bigpipe::start_ready(&settings(&off)).await;
    let (status, _, env) = post(&bp, "/rpc/call", &plain, Some("k")).await;
    assert_eq!(
        (status, env["msg"].as_str()),
        (400, Some("幂等键未启用")),
        "{env}"
    );
    let (status, _, env) = post(&bp, "/rpc/call", &plain, None).await;
    assert_eq!(status, 200, "{env}");
    bp.stop().await;
    target.stop().await;
}
