//! Scheduled calls (`deliver_at`, `delay_ms`): never early, on time within about a second,
//! waiting in Kafka's retry tiers across a restart and a rebalance.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::delivery::consumer_entry;
use crate::helpers::target::{Received, Target};
use crate::helpers::*;

fn epoch_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Maps the target's arrival instants to epoch ms: one reading of both clocks.
struct Clock {
    instant: Instant,
    epoch_ms: i64,
}

impl Clock {
    fn now() -> Self {
        Self {
            instant: Instant::now(),
            epoch_ms: epoch_ms(),
        }
    }

    fn epoch_of(&self, r: &Received) -> i64 {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        if r.at >= self.instant {
            self.epoch_ms + ms(r.at - self.instant)
        } else {
            self.epoch_ms - ms(self.instant - r.at)
        }
    }
}

/// The `q` quantile (0..=1) of sorted `values`.
fn quantile(sorted: &[i64], q: f64) -> i64 {
    let last = sorted.len().saturating_sub(1);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((last as f64) * q).round() as usize;
    sorted.get(index.min(last)).copied().unwrap_or_default()
}

/// A scheduled call body, in one of the three forms a caller may use (`delay_ms` only for a
/// time ahead: it cannot be negative).
fn scheduled_body(url: &str, i: usize, due_ms: i64, now_ms: i64) -> Value {
    let mut body = call_body(url, &format!("s{i}"), &format!("k{}", i % 17));
    match i % 3 {
        0 if due_ms >= now_ms => body["delay_ms"] = json!(due_ms - now_ms),
        0 | 1 => body["deliver_at"] = json!(due_ms),
        _ => {
            let at = chrono::DateTime::from_timestamp_millis(due_ms).unwrap_or_default();
            body["deliver_at"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        }
    }
    body
}

/// The lateness of each arrival (ms after its call's due time; negative: early), per call,
/// of the group that signs (`signed`) or of the one that does not.
fn lateness(
    target: &Target,
    clock: &Clock,
    due: &BTreeMap<String, i64>,
    signed: bool,
) -> BTreeMap<String, Vec<i64>> {
    let mut late: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in target.received() {
        if r.header("webhook-signature").is_some() != signed {
            continue;
        }
        if let Some(&due) = due.get(&r.call_id()) {
            late.entry(r.call_id())
                .or_default()
                .push(clock.epoch_of(&r) - due);
        }
    }
    late
}

/// Prints and returns (min, p50, p99 of first arrivals, max, arrivals beyond one per call) of
/// `late`.
fn figures(
    what: &str,
    late: &BTreeMap<String, Vec<i64>>,
    start: i64,
    due: &BTreeMap<String, i64>,
) -> (i64, i64, i64, i64, usize) {
    let mut all: Vec<i64> = late.values().flatten().copied().collect();
    all.sort_unstable();
    let extra = all.len() - late.len();
    let mut first: Vec<i64> = late.values().filter_map(|v| v.iter().min().copied()).collect();
    first.sort_unstable();
    // The third figure is the p99 of each call's first arrival: a second arrival is the
    // at-least-once repeat of a delivery already made, not the call's lateness.
    let figures = (
        all.first().copied().unwrap_or_default(),
        quantile(&all, 0.5),
        quantile(&first, 0.99),
        all.last().copied().unwrap_or_default(),
        extra,
    );
    let slow: Vec<(i64, i64)> = late
        .iter()
        .flat_map(|(id, v)| v.iter().map(|l| (due[id] - start, *l)))
        .filter(|(_, l)| *l > 1_000)
        .collect();
    eprintln!(
        "{what}: {} arrivals of {} calls ({extra} extra); lateness ms: min {}, p50 {}, p99 {}, \
         max {}; first arrivals: p99 {}, max {}; later than 1 s (due ms after the first send, \
         late ms): {slow:?}",
        all.len(),
        late.len(),
        figures.0,
        figures.1,
        figures.2,
        figures.3,
        quantile(&first, 0.99),
        first.last().copied().unwrap_or_default(),
    );
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_calls_arrive_on_time_across_a_restart_and_a_rebalance() {
    let _k = kafka().await;
    let target = Target::start();
    let clock = Clock::now();
    let topic = unique("sched");
    // Two groups: one with the default retry tiers (scheduled calls wait in Kafka), one with
    // `retryTiers = []` (they wait in the partition's window).
    let tiered = unique("G");
    let windowed = unique("W");
    let extra = format!(
        "{}{}",
        consumer_entry(&topic, &tiered, "heartbeatInterval = 1000"),
        consumer_entry(
            &topic,
            &windowed,
            // Signed, so the target tells its deliveries from the other group's.
            &format!(
                "retryTiers = []\nheartbeatInterval = 1000\nsigningKeys = [\"whsec_{}\"]",
                "A".repeat(43) + "="
            )
        )
    );
    let config = settings(&simple_config(&topic, 3, &extra));
    let first = Bigpipe::start_ready(&config).await;

    // 300 calls due 8 s to 20 s from now, spread evenly, in the three forms; 10 more due in
    // the past (delivered at once) and 10 due within a second (held in the window).
    let start = epoch_ms();
    let mut due: BTreeMap<String, i64> = BTreeMap::new();
    let mut now_calls = BTreeSet::new();
    // The 300 calls scheduled seconds ahead: the lateness bound is theirs. A call due within
    // half a second of its acceptance measures the pipeline's own latency, which a loaded CI
    // machine stretches past a second.
    let mut ahead = BTreeSet::new();
    for i in 0..320 {
        let now = epoch_ms();
        let at = match i {
            0..300 => start + 8_000 + i64::try_from(i * 40).unwrap_or(0),
            300..310 => now - 60_000,
            _ => now + 500,
        };
        let (status, env) = first.call(&scheduled_body(&target.url("/ok"), i, at, now)).await;
        assert_eq!(status, 200, "{env}");
        let id = env["data"].as_str().unwrap_or_default().to_owned();
        if (300..310).contains(&i) {
            now_calls.insert(id.clone());
        } else if i < 300 {
            ahead.insert(id.clone());
        }
        due.insert(id, at.max(now));
    }
    let sent_in = epoch_ms() - start;
    assert!(
        sent_in < 6_000,
        "sending took {sent_in} ms: the restart would overlap the due times"
    );
    // At least the 300 later calls are read before they are due; the 10 due within half a
    // second may be read after (a slow machine), and then they are not scheduled any more.
    poll("the tiered group parked the 300 later calls", || async {
        let s = first.get("/stats").await.1["data"]["consumerStats"][0].clone();
        (s["scheduled"].as_u64() >= Some(300) && s["retryParked"].as_u64() >= Some(300)).then_some(())
    })
    .await;
    let waiting = first.get("/stats").await.1["data"]["consumerStats"][1]["scheduledWaiting"].clone();
    assert!(
        waiting.as_i64() >= Some(290),
        "the windowed group holds them: {waiting}"
    );
    poll("the calls due now delivered by both groups", || async {
        let both = [true, false].map(|signed| lateness(&target, &clock, &due, signed));
        let arrived = now_calls
            .iter()
            .filter(|id| both.iter().all(|late| late.contains_key(*id)));
        (arrived.count() == now_calls.len()).then_some(())
    })
    .await;

    // Restart: the parked calls wait in the tier topics, the windowed ones are read again.
    first.stop().await;
    let second = Bigpipe::start_ready(&config).await;
    eprintln!("restarted {} ms after the first send", epoch_ms() - start);
    // A rebalance while the calls come due: a third member joins both groups.
    let until_first_due = (start + 9_000 - epoch_ms()).max(0);
    tokio::time::sleep(Duration::from_millis(u64::try_from(until_first_due).unwrap_or(0))).await;
    let third = Bigpipe::start_ready(&config).await;
    eprintln!(
        "third member started {} ms after the first send",
        epoch_ms() - start
    );

    let deadline = Instant::now() + Duration::from_secs(50);
    loop {
        let both = [true, false].map(|signed| lateness(&target, &clock, &due, signed));
        if both.iter().all(|late| late.len() == due.len()) {
            break;
        }
        if Instant::now() > deadline {
            for (signed, late) in [true, false].iter().zip(&both) {
                let missing: Vec<(&String, i64)> = due
                    .iter()
                    .filter(|(id, _)| !late.contains_key(*id))
                    .map(|(id, at)| (id, at - start))
                    .collect();
                eprintln!(
                    "not delivered, signed group {signed} (id, due ms after the first send): {missing:?}"
                );
            }
            for bp in [&second, &third] {
                eprintln!(
                    "stats of a member: {}",
                    bp.get("/stats").await.1["data"]["consumerStats"]
                );
            }
            panic!("not every call delivered by both groups");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tiered = lateness(&target, &clock, &due, false);
    let (min, _, _, _, extra) = figures("scheduled calls, retry tiers", &tiered, start, &due);
    // Never early: the target stamps arrivals after bigpipe sent them, on the same clock.
    assert!(min >= -5, "a call arrived {} ms early", -min);
    let seconds_ahead: BTreeMap<String, Vec<i64>> =
        tiered.into_iter().filter(|(id, _)| ahead.contains(id)).collect();
    let (_, _, p99, _, _) = figures(
        "of them, the 300 scheduled 8 s or more ahead",
        &seconds_ahead,
        start,
        &due,
    );
    assert!(p99 <= 1_000, "p99 lateness of first arrivals {p99} ms");
    // The parked calls are committed on the main topic at once; only calls held by a member
    // that left can come twice, and the restart was a graceful one.
    assert!(extra <= 20, "{extra} calls delivered twice");
    let (min, ..) = figures(
        "scheduled calls, retryTiers = []",
        &lateness(&target, &clock, &due, true),
        start,
        &due,
    );
    assert!(min >= -5, "a call arrived {} ms early", -min);
    let s = second.get("/stats").await.1["data"]["consumerStats"].clone();
    assert_eq!(
        (s[0]["rpcFail"].as_u64(), s[1]["rpcFail"].as_u64()),
        (Some(0), Some(0)),
        "{s}"
    );
    second.stop().await;
    third.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_is_checked_at_intake_and_stored_as_one_more_record_field() {
    let _k = kafka().await;
    let topic = unique("schedin");
    let extra = "[http.server]\nschedule.max.ms = 60000\n";
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, extra))).await;
    let url = "http://127.0.0.1:9/never";
    let now = epoch_ms();
    let cases = [
        (json!({"delay_ms": 60_001}), "delay_ms无效"),
        (json!({"delay_ms": -1}), "delay_ms无效"),
        (json!({"delay_ms": "5"}), "delay_ms无效"),
        (json!({"delay_ms": 5, "deliver_at": now + 5}), "delay_ms无效"),
        (json!({"deliver_at": now + 120_000}), "deliver_at无效"),
        (json!({"deliver_at": "next tuesday"}), "deliver_at无效"),
    ];
    for (fields, msg) in cases {
        let mut body = call_body(url, "d", "");
        for (k, v) in fields.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, env) = bp.call(&body).await;
        assert_eq!((status, env["msg"].as_str()), (400, Some(msg)), "{fields}: {env}");
        assert_eq!(env["errno"], -1);
    }
    let mut body = call_body(url, "d", "");
    body["delay_ms"] = json!(30_000);
    body["ack"] = json!("kafka");
    let (status, env) = bp.call(&body).await;
    assert_eq!(status, 200, "{env}");
    let mut past = call_body(url, "d", "");
    past["deliver_at"] = json!("2001-09-09T01:46:40Z");
    past["ack"] = json!("kafka");
    let (status, env) = bp.call(&past).await;
    assert_eq!(status, 200, "{env}");

    // The records as Kafka holds them: the Go fields, plus DeliverAt on the scheduled one.
    let client = client().await;
    let records = read_all(&client, &topic, 1).await;
    let values: Vec<Value> = records[&0]
        .iter()
        .map(|r| serde_json::from_slice(r.record.value.as_deref().unwrap_or_default()).unwrap())
        .collect();
    let scheduled = &values[0];
    let due = scheduled["DeliverAt"].as_i64().unwrap_or_default();
    let created = scheduled["CreateTime"].as_i64().unwrap_or_default();
    assert_eq!(due - created, 30_000, "{scheduled}");
    for field in ["Headers", "Url", "Data", "Topic", "Partition", "CreateTime"] {
        assert!(scheduled.get(field).is_some(), "{field} kept: {scheduled}");
    }
    assert_eq!(scheduled["Data"], "d");
    assert!(
        values[1].get("DeliverAt").is_none(),
        "a past time is now: {}",
        values[1]
    );
    bp.stop().await;
}
