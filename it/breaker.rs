//! Circuit breakers against a real broker and two real targets: a failing target's calls
//! are held, not spent on attempts, while another target's calls keep flowing; held calls
//! are delivered once the target is back.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::delivery::consumer_entry;
use crate::helpers::target::Target;
use crate::helpers::*;

/// Opens after 3 samples under 50 % success; stays open at least 5 s.
const BREAKER: &str = "[kafka.consumer.list.circuitBreaker]\nbreakPeriod = 5\n\
                       recoverPeriod = 0\nwinSize = 5\nminStats = 3\nhealthRate = 0.5\n";

/// No retry tiers: held calls wait in the partition's window, as in the Go version.
const NO_TIERS: &str = "retryTiers = []\n";

async fn consumer_stats(bp: &Bigpipe) -> (Value, Value) {
    let s = bp.get("/stats").await.1["data"].clone();
    let client = s["clientStats"]
        .as_object()
        .and_then(|m| m.values().next().cloned());
    (s["consumerStats"][0].clone(), client.unwrap_or_default())
}

async fn send(bp: &Bigpipe, url: &str, data: &str) {
    let (status, env) = bp.call(&call_body(url, data, "")).await;
    assert_eq!(status, 200, "{env}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_is_held_while_others_flow_then_delivered() {
    let _k = kafka().await;
    let broken = Target::start();
    let healthy = Target::start();
    let topic = unique("breaker");
    let extra = consumer_entry(&topic, &unique("G"), &format!("{NO_TIERS}{BREAKER}"))
        .replace("retries = 2", "retries = 0");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &extra))).await;

    broken.set_down(true);
    for i in 0..3 {
        send(&bp, &broken.url("/ok"), &format!("lost-{i}")).await;
    }
    poll("three failures open the circuit", || async {
        let (c, client) = consumer_stats(&bp).await;
        (c["circuitsOpen"] == 1 && c["deadLettered"] == 3 && client["circuitIsBreak"] == 1).then_some(())
    })
    .await;
    assert_eq!(broken.count(), 3, "retries = 0: one attempt each");

    // Calls to the failing host are held without an attempt...
    send(&bp, &broken.url("/ok"), "held-1").await;
    send(&bp, &broken.url("/ok"), "held-2").await;
    poll("two calls held", || async {
        let (c, _) = consumer_stats(&bp).await;
        (c["circuitHeld"] == 2).then_some(())
    })
    .await;
    // ...while another host's call goes through at once.
    send(&bp, &healthy.url("/ok"), "other-host").await;
    poll("the other host's call delivered", || async {
        (healthy.count() == 1).then_some(())
    })
    .await;
    let (c, _) = consumer_stats(&bp).await;
    assert_eq!(c["circuitsOpen"], 1, "still open: {c}");
    assert_eq!(c["circuitHeld"], 2, "{c}");
    assert_eq!(broken.count(), 3, "nothing sent to the open circuit");

    broken.set_down(false);
    let c = poll("held calls delivered and the circuit closed", || async {
        let (c, client) = consumer_stats(&bp).await;
        (c["rpcSuccess"] == 3
            && c["circuitHeld"] == 0
            && c["circuitsOpen"] == 0
            && client["circuitIsBreak"] == 0)
            .then_some(c)
    })
    .await;
    assert_eq!(c["rpcFail"], 3, "held calls were never failed: {c}");
    assert_eq!(c["deadLettered"], 3, "{c}");
    let received = broken.received();
    assert_eq!(received.len(), 5);
    let mut bodies: Vec<_> = received[3..].iter().map(|r| r.body.clone()).collect();
    bodies.sort();
    assert_eq!(bodies, [b"held-1".to_vec(), b"held-2".to_vec()]);
    // breakPeriod is 5 s from the third failure: no attempt came earlier.
    let gap = received[3].at - received[2].at;
    assert!(
        gap >= Duration::from_millis(4900),
        "first attempt after the break came after {gap:?}"
    );
    bp.stop().await;
    broken.stop().await;
    healthy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_calls_leave_at_once_on_shutdown_and_are_delivered_after_restart() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("breakstop");
    // A drain this long would show in the shutdown time if held calls waited for it.
    let extra = consumer_entry(
        &topic,
        &unique("G"),
        &format!("drainTimeout = 15000\n{NO_TIERS}{BREAKER}"),
    )
    .replace("retries = 2", "retries = 0");
    let config = settings(&simple_config(&topic, 1, &extra));
    let bp = Bigpipe::start_ready(&config).await;

    target.set_down(true);
    for i in 0..3 {
        send(&bp, &target.url("/ok"), &format!("lost-{i}")).await;
    }
    poll("the circuit opens", || async {
        let (c, _) = consumer_stats(&bp).await;
        (c["circuitsOpen"] == 1 && c["deadLettered"] == 3).then_some(())
    })
    .await;
    send(&bp, &target.url("/ok"), "held-1").await;
    send(&bp, &target.url("/ok"), "held-2").await;
    poll("two calls held", || async {
        let (c, _) = consumer_stats(&bp).await;
        (c["circuitHeld"] == 2).then_some(())
    })
    .await;
    let t0 = std::time::Instant::now();
    bp.stop().await;
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "shutdown took {took:?} with two held calls"
    );
    assert_eq!(target.count(), 3, "held calls were not sent on the way out");

    target.set_down(false);
    let bp = Bigpipe::start_ready(&config).await;
    let delivered = poll("held calls delivered by the next process", || async {
        let mut ok: Vec<_> = target
            .received()
            .into_iter()
            .filter(|r| r.status == 200)
            .map(|r| r.body)
            .collect();
        ok.sort();
        (ok.len() == 2).then_some(ok)
    })
    .await;
    assert_eq!(delivered, [b"held-1".to_vec(), b"held-2".to_vec()]);
    assert_eq!(
        target.count(),
        5,
        "dead-lettered calls were committed, not sent again"
    );
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tiers_held_calls_are_parked_not_kept_in_the_partition() {
    let _k = kafka().await;
    let broken = Target::start();
    let healthy = Target::start();
    let topic = unique("breaktier");
    // retryFor: parked calls may wait a minute for the circuit to close.
    let extra = consumer_entry(&topic, &unique("G"), &format!("retryFor = 60000\n{BREAKER}"))
        .replace("retries = 2", "retries = 0");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &extra))).await;

    broken.set_down(true);
    for i in 0..3 {
        send(&bp, &broken.url("/ok"), &format!("fail-{i}")).await;
    }
    poll("three failures open the circuit", || async {
        let (c, _) = consumer_stats(&bp).await;
        (c["circuitsOpen"] == 1).then_some(())
    })
    .await;
    send(&bp, &broken.url("/ok"), "held-1").await;
    send(&bp, &broken.url("/ok"), "held-2").await;
    send(&bp, &healthy.url("/ok"), "other-host").await;
    poll(
        "held calls parked, the other host delivered, the partition committed",
        || async {
            let (c, _) = consumer_stats(&bp).await;
            let lag: Option<i64> = c["partitions"]
                .as_object()?
                .values()
                .map(|p| p["lag"].as_i64())
                .sum();
            (c["retryParked"].as_u64()? >= 2 && healthy.count() == 1 && lag == Some(0)).then_some(())
        },
    )
    .await;
    let (c, _) = consumer_stats(&bp).await;
    assert_eq!(c["circuitHeld"], 0, "nothing held in the partition: {c}");

    broken.set_down(false);
    poll(
        "every call to the broken host delivered once it is back",
        || async {
            let ok: BTreeSet<Vec<u8>> = broken
                .received()
                .into_iter()
                .filter(|r| r.status == 200)
                .map(|r| r.body)
                .collect();
            (ok.len() == 5).then_some(())
        },
    )
    .await;
    let (c, _) = consumer_stats(&bp).await;
    assert_eq!(c["deadLettered"], 0, "retryFor kept every call: {c}");
    bp.stop().await;
    broken.stop().await;
    healthy.stop().await;
}
