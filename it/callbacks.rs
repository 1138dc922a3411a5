//! `callback_url`: the final outcome of a call (delivered with its status, or dead-lettered
//! with the reason) is POSTed there, signed like a delivery, once per consumer group, and
//! at least once: a callback target that is down gets it when it is back (within the
//! entry's retry budget: here `retryFor` 8 s).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::helpers::target::Target;
use crate::helpers::*;

fn entry(topic: &str, group: &str) -> String {
    format!(
        "[[kafka.consumer.list]]\ntopic = \"{topic}\"\ngroupId = \"{group}\"\nrateLimit = 2000\n\
         concurrency = 20\nretries = 1\nretryFor = 8000\ntimeout = 3000\nretryBackoff = 50\n\
         retryBackoffMax = 400\nsessionTimeout = 6000\ncommitInterval = 200\nretryTiers = [1000]\n\
         signingKeys = [\"whsec_{}=\"]\n",
        "A".repeat(43)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_group_reports_each_outcome_to_the_callback_url_at_least_once() {
    let _k = kafka().await;
    let target = Target::start();
    let callbacks = Target::start();
    let topic = unique("cb");
    let (g1, g2) = (unique("G1"), unique("G2"));
    let extra = format!("{}{}", entry(&topic, &g1), entry(&topic, &g2));
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 2, &extra))).await;
    // The callback target is down at first: every callback fails until it is back.
    callbacks.set_down(true);
    let send = |path: &str, data: &str| {
        let mut body = call_body(&target.url(path), data, "k");
        body["callback_url"] = json!(callbacks.url("/done"));
        body
    };
    let mut ids: BTreeMap<&str, String> = BTreeMap::new();
    for (name, path) in [("ok", "/ok"), ("teapot", "/always/418"), ("down", "/always/503")] {
        let (status, env) = bp.call(&send(path, name)).await;
        assert_eq!(status, 200, "{env}");
        ids.insert(name, env["data"].as_str().unwrap_or_default().to_owned());
    }
    // A refused callback destination refuses the call.
    let mut bad = call_body(&target.url("/ok"), "x", "k");
    bad["callback_url"] = json!("http://169.254.169.254/");
    assert_eq!(bp.call(&bad).await.0, 403);
    bad["callback_url"] = json!("ftp://x/");
    assert_eq!(bp.call(&bad).await.1["msg"], "callback_url无效");

    // The delivered and the not-retryable calls end at once; the third keeps failing for
    // the entry's `retryFor`.
    poll("both groups wrote the first two callbacks", || async {
        let s = bp.get("/stats").await.1["data"]["consumerStats"].clone();
        (s[0]["callbacks"] == 2 && s[1]["callbacks"] == 2).then_some(())
    })
    .await;
    poll("the callbacks retried while the target was down", || async {
        (callbacks.received().len() >= 6).then_some(())
    })
    .await;
    callbacks.set_down(false);
    poll(
        "six callbacks arrived, the last after the third call's retry budget",
        || async {
            let ok = callbacks
                .received()
                .into_iter()
                .filter(|r| r.status == 200)
                .count();
            (ok >= 6).then_some(())
        },
    )
    .await;

    let mut outcomes: BTreeMap<(String, String), Value> = BTreeMap::new();
    for r in callbacks.received().into_iter().filter(|r| r.status == 200) {
        let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.header("webhook-signature").is_some(), "signed like a delivery");
        let call_id = body["call_id"].as_str().unwrap_or_default().to_owned();
        assert_eq!(r.call_id(), format!("{call_id}.callback"));
        let group = body["group"].as_str().unwrap_or_default().to_owned();
        assert!(
            outcomes.insert((call_id, group), body).is_none(),
            "one callback per call and group"
        );
    }
    assert_eq!(outcomes.len(), 6, "{outcomes:?}");
    for group in [&g1, &g2] {
        let of = |name: &str| outcomes[&(ids[name].clone(), group.clone())].clone();
        let ok = of("ok");
        assert_eq!(
            (&ok["outcome"], &ok["status"], &ok["attempts"]),
            (&json!("delivered"), &json!(200), &json!(1))
        );
        assert!(ok.get("reason").is_none());
        let teapot = of("teapot");
        assert_eq!(
            (&teapot["outcome"], &teapot["status"]),
            (&json!("dead_lettered"), &json!(418))
        );
        assert_eq!(teapot["reason"], "status 418 is not retryable");
        let down = of("down");
        assert_eq!(down["outcome"], "dead_lettered");
        assert!(down["attempts"].as_u64() >= Some(2), "{down}");
        assert!(
            down["reason"]
                .as_str()
                .unwrap_or_default()
                .starts_with("attempts exhausted"),
            "{down}"
        );
    }
    // Nothing of the call itself travels: not its data, not the caller's headers.
    for r in callbacks.received() {
        let text = String::from_utf8_lossy(&r.body);
        assert!(!text.contains("teapot") && !text.contains("s3cret"), "{text}");
    }
    bp.stop().await;
    target.stop().await;
    callbacks.stop().await;
}
