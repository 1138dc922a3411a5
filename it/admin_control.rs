//! The control topic and what steers consumers through it: pause/resume for a whole group,
//! across processes and restarts, and retransmit (a group moved back to a point in time).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bigpipe::control::Control;
use bigpipe::control::reader::ControlReader;
use bigpipe::kafka::client::KafkaClient;
use bigpipe::kafka::connect::KafkaConnect;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::delivery::consumer_entry;
use crate::group::{consumer_process_config, covers};
use crate::helpers::process::Process;
use crate::helpers::target::Target;
use crate::helpers::{
    Bigpipe, bootstrap, call_body, client, create_topic, kafka, partitions_lag, poll, read_all, settings,
    simple_config, test_logger, unique,
};

/// A `Control` with its own Kafka client and reader, as one bigpipe process has.
async fn control_process(topic: &str, stop: &CancellationToken) -> Arc<Control> {
    let connect = KafkaConnect::plaintext(vec![bootstrap()], "it-control", Duration::from_secs(10));
    let client = Arc::new(KafkaClient::new(connect));
    let control = Control::new(topic.to_owned(), Arc::clone(&client), Duration::from_secs(10));
    let reader = ControlReader {
        control: Arc::clone(&control),
        client,
        log: test_logger(),
    };
    tokio::spawn(reader.run(stop.clone()));
    control
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_in_one_process_is_read_in_another_and_by_a_late_starter() {
    let _kafka = kafka().await;
    let topic = unique("it-control");
    create_topic(&topic, &[("cleanup.policy", "compact".into())]).await;
    let stop = CancellationToken::new();
    let a = control_process(&topic, &stop).await;
    let b = control_process(&topic, &stop).await;
    poll("both readers caught up", || async {
        (a.caught_up() && b.caught_up()).then_some(())
    })
    .await;
    let mut changes = b.subscribe();
    changes.borrow_and_update();

    a.put("pause/g/t", json!({"paused": true, "by": "it"}))
        .await
        .expect("put");
    // Read-your-writes: the writer's own view has it when put returns.
    assert_eq!(a.get("pause/g/t").unwrap()["paused"], true);
    poll("b sees the put", || async {
        b.get("pause/g/t").filter(|v| v["paused"] == true)
    })
    .await;
    assert!(changes.has_changed().unwrap(), "b's subscribers were told");

    a.put("pause/g/t", json!({"paused": false, "by": "it"}))
        .await
        .unwrap();
    a.put("other", json!({"x": 1})).await.unwrap();
    a.put("other", serde_json::Value::Null).await.unwrap();
    poll("b sees the resume and the tombstone", || async {
        let resumed = b.get("pause/g/t").is_some_and(|v| v["paused"] == false);
        (resumed && b.get("other").is_none()).then_some(())
    })
    .await;

    // A process started later knows everything once caught up (the first catch-up is what
    // consumer entries wait for).
    let late = control_process(&topic, &stop).await;
    poll("late reader caught up", || async {
        late.caught_up().then_some(())
    })
    .await;
    assert_eq!(late.get("pause/g/t").unwrap()["paused"], false);
    assert_eq!(late.get("other"), None);
    assert!(late.status().error.is_none());
    stop.cancel();
}

/// A two-member group config on `topic` with its own control topic.
fn member_config(topic: &str, partitions: i32, group: &str, control: &str) -> String {
    let entry = consumer_entry(topic, group, "");
    format!(
        "admin.control.topic = \"{control}\"\n{}",
        consumer_process_config(topic, partitions, &entry)
    )
}

/// POSTs to an admin path of `admin` (a base URL) as operator "it"; status and envelope.
async fn admin_post(admin: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{admin}{path}"))
        .header("x-bigpipe-operator", "it");
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let r = request.send().await.expect("admin post");
    let status = r.status().as_u16();
    let bytes = r.bytes().await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Entry 0 of a process's `/stats`.
async fn entry_stats(p: &Process) -> Option<Value> {
    Some(p.stats().await?["consumerStats"][0].clone())
}

/// Waits until the processes own disjoint partitions covering `0..n`.
async fn wait_covered(procs: &[&Process], n: i32) {
    poll("members own every partition", || async {
        let mut assigned = vec![];
        for p in procs {
            assigned.push(p.partitions(0).await);
        }
        covers(&assigned, n).then_some(())
    })
    .await;
}

/// Sends `n` calls to `/ok`; returns their ids. The last one waits for Kafka, so all are in
/// the topic when this returns.
async fn send(ingest: &Bigpipe, target: &Target, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = vec![];
    for i in 0..n {
        let mut body = call_body(&target.url("/ok"), &format!("{prefix}{i}"), &format!("k{i}"));
        if i + 1 == n {
            body["ack"] = json!("kafka");
        }
        let (status, env) = ingest.call(&body).await;
        assert_eq!(status, 200, "{env}");
        ids.push(env["data"].as_str().unwrap().to_owned());
    }
    ids
}

/// Deliveries per call id.
fn deliveries(target: &Target) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for r in target.received() {
        *out.entry(r.call_id()).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_holds_for_the_whole_group_and_across_a_restart_and_resume_delivers_everything() {
    let _kafka = kafka().await;
    let target = Target::start();
    let (topic, group, control) = (unique("pause"), unique("G"), unique("ctl"));
    let ingest = Bigpipe::start_ready(&settings(&simple_config(&topic, 4, ""))).await;
    let config = member_config(&topic, 4, &group, &control);
    let a = Process::spawn(&config);
    let mut b = Process::spawn(&config);
    wait_covered(&[&a, &b], 4).await;

    let before = send(&ingest, &target, "before", 20).await;
    poll("calls before the pause delivered", || async {
        (target.count() >= before.len()).then_some(())
    })
    .await;

    let path = format!("/admin/v1/groups/{group}/pause?topic={topic}");
    let (status, env) = admin_post(&a.admin, &path, None).await;
    assert_eq!(status, 200, "{env}");
    assert_eq!(
        env["data"],
        json!({"group": group, "topic": topic, "paused": true})
    );
    for p in [&a, &b] {
        poll("both processes show paused", || async {
            (entry_stats(p).await?["paused"] == true).then_some(())
        })
        .await;
    }

    // Accepted while paused, not delivered: the lag shows them waiting, nothing is in flight.
    let during = send(&ingest, &target, "during", 20).await;
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(5) {
        assert_eq!(target.count(), before.len(), "a call was delivered while paused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    poll("the paused calls show as lag, none in flight", || async {
        let (sa, sb) = (entry_stats(&a).await?, entry_stats(&b).await?);
        let total = partitions_lag(&sa)? + partitions_lag(&sb)?;
        let in_flight = sa["inFlight"].as_i64()? + sb["inFlight"].as_i64()?;
        (total == during.len() as i64 && in_flight == 0).then_some(())
    })
    .await;

    // A restarted member stays paused: the pause is in Kafka, not in a process.
    b.signal("TERM");
    assert_eq!(b.wait(), Some(0), "clean exit on SIGTERM");
    let b = Process::spawn(&config);
    poll("the restarted member is paused", || async {
        (entry_stats(&b).await?["paused"] == true).then_some(())
    })
    .await;
    wait_covered(&[&a, &b], 4).await;
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(3) {
        assert_eq!(target.count(), before.len(), "delivered after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Resume through the other member: everything arrives, nothing lost.
    let path = format!("/admin/v1/groups/{group}/resume?topic={topic}");
    let (status, env) = admin_post(&b.admin, &path, None).await;
    assert_eq!(status, 200, "{env}");
    assert_eq!(env["data"]["paused"], false);
    let got = poll("every call delivered after the resume", || async {
        let got = deliveries(&target);
        before
            .iter()
            .chain(&during)
            .all(|id| got.contains_key(id))
            .then_some(got)
    })
    .await;
    let duplicates: usize = got.values().map(|n| n - 1).sum();
    eprintln!(
        "paused: {} before, {} during, delivered {} ids, {duplicates} duplicates",
        before.len(),
        during.len(),
        got.len()
    );
    for p in [&a, &b] {
        assert_eq!(entry_stats(p).await.unwrap()["paused"], false);
    }
    drop((a, b));
    ingest.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmit_delivers_the_calls_after_its_time_once_more_with_members_running() {
    let _kafka = kafka().await;
    let target = Target::start();
    let (topic, group, control) = (unique("rtx"), unique("G"), unique("ctl"));
    let partitions = 3;
    let ingest = Bigpipe::start_ready(&settings(&simple_config(&topic, partitions, ""))).await;
    let config = member_config(&topic, partitions, &group, &control);
    let a = Process::spawn(&config);
    let b = Process::spawn(&config);
    wait_covered(&[&a, &b], partitions).await;

    let early = send(&ingest, &target, "early", 15).await;
    poll("early calls delivered", || async {
        (target.count() >= early.len()).then_some(())
    })
    .await;
    let t = chrono::Utc::now();
    let late = send(&ingest, &target, "late", 15).await;
    poll("late calls delivered", || async {
        (target.count() >= early.len() + late.len()).then_some(())
    })
    .await;

    // The expected targets: per partition, the first record at or after T.
    let records = read_all(&client().await, &topic, partitions).await;
    let expected: Vec<(i32, i64, i64)> = records
        .iter()
        .map(|(p, rs)| {
            let end = rs.last().map_or(0, |r| r.offset + 1);
            let to = rs
                .iter()
                .find(|r| r.record.timestamp >= t)
                .map_or(end, |r| r.offset);
            (*p, to, end)
        })
        .collect();
    let path = format!("/admin/v1/groups/{group}/retransmit?topic={topic}");
    let dry = json!({"from": t.timestamp_millis(), "dryRun": true});
    let answer = poll("a dry run answers the committed and target offsets", || async {
        let (status, env) = admin_post(&a.admin, &path, Some(dry.clone())).await;
        assert_eq!(status, 200, "{env}");
        let rows = env["data"]["partitions"].as_array()?.clone();
        let all_committed = expected
            .iter()
            .all(|(p, _, end)| rows.iter().any(|r| r["partition"] == *p && r["from"] == *end));
        all_committed.then_some(env)
    })
    .await;
    let rows = answer["data"]["partitions"].as_array().unwrap();
    for (p, to, _) in &expected {
        let row = rows.iter().find(|r| r["partition"] == *p).unwrap();
        assert_eq!(row["to"], *to, "partition {p}: {answer}");
    }
    assert_eq!(answer["data"]["applied"], false);
    assert_eq!(answer["data"]["from_ms"], t.timestamp_millis());
    eprintln!("retransmit dry run: {}", answer["data"]);
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(2) {
        assert_eq!(
            target.count(),
            early.len() + late.len(),
            "a dry run moved something"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Applied (the time as RFC 3339 this time), through the other member.
    let rfc3339 = t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (status, env) = admin_post(&b.admin, &path, Some(json!({"from": rfc3339}))).await;
    assert_eq!(status, 200, "{env}");
    assert_eq!(env["data"]["applied"], true);
    let want = early.len() + 2 * late.len();
    poll("the late calls delivered again", || async {
        (target.count() >= want).then_some(())
    })
    .await;
    // Nothing more comes (a second application would send the late calls a third time).
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(3) {
        assert_eq!(target.count(), want, "delivered more than once more");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = deliveries(&target);
    for id in &early {
        assert_eq!(got.get(id), Some(&1), "early call {id}");
    }
    for id in &late {
        assert_eq!(got.get(id), Some(&2), "late call {id}");
    }
    drop((a, b));
    ingest.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steering_refuses_bad_input_and_a_disabled_control_topic() {
    let _kafka = kafka().await;
    let topic = unique("steer");
    let group = unique("G");
    let entry = consumer_entry(&topic, &group, "");
    let on = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &entry))).await;
    let base = format!("/admin/v1/groups/{group}");
    let cases: Vec<(String, Option<Value>, u16)> = vec![
        (format!("/admin/v1/groups/nope-{group}/pause"), None, 404),
        (format!("{base}/pause?topic=other"), None, 404),
        (format!("{base}/pause?bogus=1"), None, 400),
        (format!("{base}/retransmit"), Some(json!({"dryRun": true})), 400),
        (format!("{base}/retransmit"), Some(json!({"from": "soon"})), 400),
        (format!("{base}/retransmit"), Some(json!({"from": -5})), 400),
        (
            format!("{base}/retransmit"),
            Some(json!({"from": 1, "x": 1})),
            400,
        ),
        (format!("{base}/retransmit"), Some(json!([1, 2])), 400),
    ];
    for (path, body, want) in &cases {
        let (status, env) = admin_post(&on.admin, path, body.clone()).await;
        assert_eq!(status, *want, "{path} {body:?}: {env}");
        assert_eq!(env["errno"], -1, "{env}");
    }
    let r = reqwest::Client::new()
        .post(format!("{}{base}/retransmit", on.admin))
        .body(vec![b' '; 70 * 1024])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let r = reqwest::get(format!("{}{base}/pause", on.admin)).await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    on.stop().await;

    let off = format!("admin.control.topic = \"\"\n{}", simple_config(&topic, 1, &entry));
    let off = Bigpipe::start_ready(&settings(&off)).await;
    for action in ["pause", "resume"] {
        let (status, env) = admin_post(&off.admin, &format!("{base}/{action}"), None).await;
        assert_eq!(status, 409, "{env}");
        assert_eq!(env["msg"], "control topic disabled");
    }
    let (status, _) = admin_post(
        &off.admin,
        &format!("{base}/retransmit"),
        Some(json!({"from": 1, "dryRun": true})),
    )
    .await;
    assert_eq!(status, 409);
    off.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmit_written_while_no_member_runs_is_applied_once_despite_restarts() {
    let _kafka = kafka().await;
    let target = Target::start();
    let (topic, group, control_topic) = (unique("rtx2"), unique("G"), unique("ctl"));
    let partitions = 2;
    let ingest = Bigpipe::start_ready(&settings(&simple_config(&topic, partitions, ""))).await;
    let config = member_config(&topic, partitions, &group, &control_topic);
    let mut a = Process::spawn(&config);
    wait_covered(&[&a], partitions).await;
    let early = send(&ingest, &target, "early", 10).await;
    poll("early calls delivered", || async {
        (target.count() >= early.len()).then_some(())
    })
    .await;
    let t = chrono::Utc::now();
    let late = send(&ingest, &target, "late", 10).await;
    poll("late calls delivered", || async {
        (target.count() >= early.len() + late.len()).then_some(())
    })
    .await;
    a.signal("TERM");
    assert_eq!(a.wait(), Some(0));

    // The seek record as the admin API writes it, put while the group has no member.
    let records = read_all(&client().await, &topic, partitions).await;
    let offsets: serde_json::Map<String, Value> = records
        .iter()
        .map(|(p, rs)| {
            let end = rs.last().map_or(0, |r| r.offset + 1);
            let to = rs
                .iter()
                .find(|r| r.record.timestamp >= t)
                .map_or(end, |r| r.offset);
            (p.to_string(), json!(to))
        })
        .collect();
    let stop = CancellationToken::new();
    let control = control_process(&control_topic, &stop).await;
    poll("control read", || async { control.caught_up().then_some(()) }).await;
    let seek = json!({"id": uuid::Uuid::now_v7().to_string(), "fromMs": t.timestamp_millis(),
        "offsets": offsets, "by": "it"});
    control
        .put(&bigpipe::control::keys::seek(&group, &topic), seek)
        .await
        .unwrap();
    stop.cancel();

    // Members starting later apply it when their partitions are assigned...
    let a = Process::spawn(&config);
    let mut b = Process::spawn(&config);
    let want = early.len() + 2 * late.len();
    poll("the late calls delivered again", || async {
        (target.count() >= want).then_some(())
    })
    .await;
    wait_covered(&[&a, &b], partitions).await;
    // ...and partitions that move afterwards (a member restarts) are not moved back again:
    // their committed metadata names the seek.
    b.signal("TERM");
    assert_eq!(b.wait(), Some(0));
    wait_covered(&[&a], partitions).await;
    let b = Process::spawn(&config);
    wait_covered(&[&a, &b], partitions).await;
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(3) {
        assert_eq!(target.count(), want, "the retransmit was applied twice");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = deliveries(&target);
    assert!(early.iter().all(|id| got.get(id) == Some(&1)), "early calls once");
    assert!(late.iter().all(|id| got.get(id) == Some(&2)), "late calls twice");
    drop((a, b));
    ingest.stop().await;
    target.stop().await;
}
