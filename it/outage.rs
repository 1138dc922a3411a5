//! Kafka stopped under bigpipe: overload is immediate, nothing accepted is lost.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

/// Starts the broker again even when the test fails half-way.
struct RestartOnDrop(bool);

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        if self.0 {
            kafka_script(&["start"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_overload_at_once_and_queued_calls_survive_an_outage() {
    let _k = kafka_exclusive().await;
    let topic = unique("outage");
    let extra = "[http.server.handler.channel]\nsize = 3\n[kafka.producer.message.timeout]\nms = 180000\n";
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 2, extra))).await;

    kafka_script(&["stop"]);
    let mut restart = RestartOnDrop(true);

    for i in 0..3 {
        let (status, env) = bp
            .call(&call_body("http://127.0.0.1:9/x", &format!("queued-{i}"), ""))
            .await;
        assert_eq!((status, env["errno"].clone()), (200, json!(0)), "{env}");
    }
    for i in 0..5 {
        let started = Instant::now();
        let (status, env) = bp
            .call(&call_body("http://127.0.0.1:9/x", &format!("refused-{i}"), ""))
            .await;
        let took = started.elapsed();
        assert_eq!(status, 503);
        assert_eq!(env, json!({"data": "", "errno": -1, "msg": "超过负载"}));
        assert!(took < Duration::from_millis(500), "overload took {took:?}");
    }
    // An acknowledged call cannot wait for a Kafka that is down and a full queue.
    let mut acked = call_body("http://127.0.0.1:9/x", "acked", "");
    acked["ack"] = json!("kafka");
    let (status, _) = bp.call(&acked).await;
    assert_eq!(status, 503);

    restart.0 = false;
    kafka_script(&["start"]);

    let client = client().await;
    poll("the 3 queued calls in kafka", || async {
        (count_records(&client, &topic, 2).await == 3).then_some(())
    })
    .await;
    let all = read_all(&client, &topic, 2).await;
    let mut data: Vec<String> = all
        .values()
        .flatten()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(r.record.value.as_ref().unwrap()).unwrap();
            v["Data"].as_str().unwrap().to_owned()
        })
        .collect();
    data.sort();
    assert_eq!(data, ["queued-0", "queued-1", "queued-2"]);

    let (_, stats) = bp.get("/stats").await;
    assert_eq!(stats["data"]["serverStats"]["overloadCall"], 6);
    assert_eq!(stats["data"]["serverStats"]["acceptedCall"], 3);
    poll("deliverySuccess 3", || async {
        let (_, s) = bp.get("/stats").await;
        (s["data"]["producerStats"][&topic]["deliverySuccess"] == 3).then_some(())
    })
    .await;
    bp.wait_ready().await;
    bp.stop().await;
}
