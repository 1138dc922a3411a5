//! `POST /rpc/calls`: one answer per item, in order; a bad item refuses only itself; with
//! `ack: "kafka"` every accepted item is in Kafka when the answer comes.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::delivery::consumer_entry;
use crate::helpers::target::Target;
use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_item_is_answered_on_its_own_and_only_good_ones_are_written() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("batch");
    let extra = consumer_entry(&topic, &unique("G"), "");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 2, &extra))).await;
    let good = |i: usize| {
        call_body(
            &target.url(&format!("/ok/{i}")),
            &format!("b{i}"),
            &format!("k{i}"),
        )
    };
    let mut wrong_secret = good(90);
    wrong_secret["acl"]["secret"] = json!("nope");
    let mut scheduled = good(91);
    scheduled["delay_ms"] = json!(1_500);
    let items = vec![
        good(0),
        json!({"url": "not a url", "data": "d", "partition_key": ""}),
        good(1),
        wrong_secret,
        json!(42),
        call_body("http://169.254.169.254/latest/meta-data", "d", ""),
        scheduled,
        good(2),
    ];
    let body = json!({"calls": items, "ack": "kafka"});
    let before = bp.get("/stats").await.1["data"]["serverStats"].clone();
    let (status, env) = bp.post_raw("/rpc/calls", body.to_string().into_bytes()).await;
    assert_eq!(
        (status, &env["errno"], &env["msg"]),
        (200, &json!(0), &json!("发送成功")),
        "{env}"
    );
    let answers = env["data"].as_array().cloned().unwrap_or_default();
    let summary: Vec<(u64, &str)> = answers
        .iter()
        .map(|a| (a["status"].as_u64().unwrap_or(0), a["msg"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        summary,
        [
            (200, "发送成功"),
            (400, "url无效"),
            (200, "发送成功"),
            (403, "权限错误"),
            (400, "JSON无效"),
            (403, "目标地址不允许"),
            (200, "发送成功"),
            (200, "发送成功"),
        ],
        "{env}"
    );
    let ids: BTreeSet<String> = answers
        .iter()
        .filter(|a| a["errno"] == 0)
        .map(|a| a["data"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ids.len(), 4);
    for refused in answers.iter().filter(|a| a["errno"] != 0) {
        assert_eq!((&refused["data"], &refused["errno"]), (&json!(""), &json!(-1)));
    }
    // ack=kafka: the four accepted calls are in Kafka already, nothing else is.
    let client = client().await;
    assert_eq!(count_records(&client, &topic, 2).await, 4);
    let after = bp.get("/stats").await.1["data"]["serverStats"].clone();
    let delta = |key: &str| after[key].as_u64().unwrap_or(0) - before[key].as_u64().unwrap_or(0);
    assert_eq!(
        (
            delta("receivedCall"),
            delta("acceptedCall"),
            delta("rejectedCall")
        ),
        (8, 4, 4),
        "each item counts as a call: {after}"
    );

    poll("the four calls delivered", || async {
        let got: BTreeSet<String> = target.received().iter().map(|r| r.call_id()).collect();
        (got == ids).then_some(())
    })
    .await;
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_cannot_be_read_as_one_is_refused_whole() {
    let _k = kafka().await;
    let topic = unique("batchbad");
    let extra = "[http.server]\nbatch.max.calls = 3\n";
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, extra))).await;
    let item = call_body("http://127.0.0.1:9/x", "d", "");
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"[]".to_vec(), 400, "JSON无效"),
        (b"{\"calls\":".to_vec(), 400, "JSON无效"),
        (b"{}".to_vec(), 400, "calls无效"),
        (br#"{"calls":{"a":1}}"#.to_vec(), 400, "calls无效"),
        (
            json!({"calls": [item.clone()], "ack": "disk"})
                .to_string()
                .into_bytes(),
            400,
            "ack无效",
        ),
        (
            json!({"calls": [item.clone(), item.clone(), item.clone(), item.clone()]})
                .to_string()
                .into_bytes(),
            413,
            "批量过大",
        ),
    ];
    for (body, status, msg) in cases {
        let (got, env) = bp.post_raw("/rpc/calls", body.clone()).await;
        assert_eq!(
            (got, env["msg"].as_str()),
            (status, Some(msg)),
            "{}: {env}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(env["data"], "");
    }
    let (status, env) = bp.get("/rpc/calls").await;
    assert_eq!((status, env["msg"].as_str()), (405, Some("方法不允许")));
    // An empty batch is a batch: nothing to answer.
    let (status, env) = bp.post_raw("/rpc/calls", br#"{"calls":[]}"#.to_vec()).await;
    assert_eq!((status, &env["data"]), (200, &Value::Array(vec![])), "{env}");
    let client = client().await;
    assert_eq!(count_records(&client, &topic, 1).await, 0);
    bp.stop().await;
}
