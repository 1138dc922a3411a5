//! `/rpc/call` into a real Kafka: record format, partitioning, refusals, acks.

use std::time::Duration;

use bigpipe::message::CALL_ID_HEADER;
use serde_json::{Value, json};

use crate::helpers::*;

const MOCK: &str = "http://127.0.0.1:9/target";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_call_is_in_its_topic_with_the_go_fields() {
    let _k = kafka().await;
    let topic = unique("ingest");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 3, ""))).await;
    let before = chrono::Utc::now().timestamp_millis();

    let body = call_body(MOCK, "héllo <wörld> & 中文", "k1");
    let resp = bp
        .http
        .post(format!("{}/rpc/call", bp.base))
        .header("X-Trace", "t-1")
        .header("X-Multi", "a")
        .header("x-multi", "b")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let env: Value = resp.json().await.unwrap();
    assert_eq!(env["errno"], 0);
    assert_eq!(env["msg"], "发送成功");
    let id = env["data"].as_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);

    let client = client().await;
    let want_partition = bigpipe::producer::partitioner::go_hash("k1", 3);
    let records = poll("record in kafka", || async {
        let all = read_all(&client, &topic, 3).await;
        (all.values().map(Vec::len).sum::<usize>() == 1).then_some(all)
    })
    .await;
    let record = &records[&want_partition][0].record;
    assert_eq!(record.key.as_deref(), Some(&b"k1"[..]));
    assert_eq!(record.headers[CALL_ID_HEADER], id.as_bytes());
    let raw = String::from_utf8(record.value.clone().unwrap()).unwrap();
    // Go's encoder escapes <, > and &; ours does the same.
    assert!(
        raw.contains(r#""Data":"héllo \u003cwörld\u003e \u0026 中文""#),
        "{raw}"
    );
    let value: Value = serde_json::from_str(&raw).unwrap();
    let keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["CreateTime", "Data", "Headers", "Partition", "Topic", "Url"]
    );
    assert_eq!(value["Url"], MOCK);
    assert_eq!(value["Topic"], topic.as_str());
    assert_eq!(value["Partition"], want_partition);
    let created = value["CreateTime"].as_i64().unwrap();
    assert!(created >= before && created <= chrono::Utc::now().timestamp_millis());
    assert_eq!(value["Headers"]["X-Trace"], json!(["t-1"]));
    assert_eq!(value["Headers"]["X-Multi"], json!(["a", "b"]));
    assert!(value["Headers"].get("Host").is_none());
    assert!(raw.starts_with(r#"{"Headers":{"#), "Go field order: {raw}");

    let (_, stats) = bp.get("/stats").await;
    assert_eq!(stats["data"]["serverStats"]["acceptedCall"], 1);
    assert_eq!(stats["data"]["serverStats"]["receivedCall"], 1);
    poll("deliverySuccess", || async {
        let (_, s) = bp.get("/stats").await;
        (s["data"]["producerStats"][&topic]["deliverySuccess"] == 1).then_some(())
    })
    .await;
    bp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_lands_on_the_partition_the_go_hash_predicts() {
    let _k = kafka().await;
    let topic = unique("hash");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 5, ""))).await;
    // Computed by hand with h = (h*33 + code point) % 5, from 0:
    //   "ab":    97%5=2; (66+98)%5=4                                  → 4
    //   "中":    U+4E2D = 20013; 20013%5=3                             → 3
    //   "uid-1": 117%5=2; (66+105)%5=1; (33+100)%5=3; (99+45)%5=4; (132+49)%5=1 → 1
    //   "z":     122%5=2                                               → 2
    let vectors = [("ab", 4), ("中", 3), ("uid-1", 1), ("z", 2)];
    for (key, _) in vectors {
        for i in 0..3 {
            let (status, env) = bp.call(&call_body(MOCK, &format!("{key}-{i}"), key)).await;
            assert_eq!((status, env["errno"].clone()), (200, json!(0)), "{env}");
        }
    }
    let client = client().await;
    let all = poll("12 records", || async {
        let all = read_all(&client, &topic, 5).await;
        (all.values().map(Vec::len).sum::<usize>() == 12).then_some(all)
    })
    .await;
    for (key, want) in vectors {
        for (partition, records) in &all {
            let n = records
                .iter()
                .filter(|r| r.record.key.as_deref() == Some(key.as_bytes()))
                .count();
            let expected = if *partition == want { 3 } else { 0 };
            assert_eq!(n, expected, "key {key} on partition {partition}");
        }
    }
    bp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_get_their_errno_and_write_nothing() {
    let _k = kafka().await;
    let topic = unique("refuse");
    let extra = "[http.server]\nbody.limit = 2048\n";
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 2, extra))).await;

    let good = call_body(MOCK, "d", "k");
    let mut wrong_secret = good.clone();
    wrong_secret["acl"]["secret"] = json!("i am good");
    let mut unknown_name = good.clone();
    unknown_name["acl"]["name"] = json!("nobody");
    let cases: Vec<(Vec<u8>, u16, i64, &str)> = vec![
        (wrong_secret.to_string().into_bytes(), 403, -1, "权限错误"),
        (unknown_name.to_string().into_bytes(), 403, -1, "权限错误"),
        (b"not json".to_vec(), 400, -1, "JSON无效"),
        (b"[1]".to_vec(), 400, -1, "JSON无效"),
        // As in Go, `null` decodes to an empty request: its url is what is wrong.
        (b"null".to_vec(), 400, -1, "url无效"),
        (br#"{"data":"d"}"#.to_vec(), 400, -1, "url无效"),
        (br#"{"url":"nope","data":"d"}"#.to_vec(), 400, -1, "url无效"),
        (br#"{"url":"http://h/","data":1}"#.to_vec(), 400, -1, "data无效"),
        (br#"{"url":"http://h/","data":"d"}"#.to_vec(), 400, -1, "partition_key无效"),
        (br#"{"url":"http://h/","data":"d","partition_key":""}"#.to_vec(), 400, -1, "acl无效"),
        (br#"{"url":"http://h/","data":"d","partition_key":"","acl":{}}"#.to_vec(), 400, -1, "acl.name"),
        (br#"{"url":"http://h/","data":"d","partition_key":"","acl":{"name":"caller"}}"#.to_vec(), 400, -1, "acl.secret"),
        (
            json!({"acl":{"name":"caller","secret":"s3cret"},"url":MOCK,"data":"x".repeat(4096),"partition_key":""})
                .to_string()
                .into_bytes(),
            413,
            -1,
            "请求体过大",
        ),
    ];
    for (body, status, errno, msg) in &cases {
        let (got_status, env) = bp.post_raw("/rpc/call", body.clone()).await;
        assert_eq!(got_status, *status, "{}", String::from_utf8_lossy(body));
        assert_eq!(env, json!({"data": "", "errno": errno, "msg": msg}));
    }
    // Other methods get 405 with the envelope, counted as received and rejected (as Go
    // counted every request to /rpc/call).
    let r = bp.http.get(format!("{}/rpc/call", bp.base)).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.json::<Value>().await.unwrap()["errno"], -1);

    // One good call with a Kafka acknowledgement: afterwards the topic holds exactly it.
    let mut acked = good.clone();
    acked["ack"] = json!("kafka");
    let (status, env) = bp.call(&acked).await;
    assert_eq!(status, 200, "{env}");
    let client = client().await;
    assert_eq!(count_records(&client, &topic, 2).await, 1);

    let (_, stats) = bp.get("/stats").await;
    let server = &stats["data"]["serverStats"];
    assert_eq!(server["receivedCall"], cases.len() + 2);
    assert_eq!(server["acceptedCall"], 1);
    assert_eq!(server["rejectedCall"], cases.len() + 1);
    bp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_ack_answers_only_once_the_record_is_readable() {
    let _k = kafka().await;
    let topic = unique("ack");
    // A long linger makes a queue-mode answer come long before the write.
    let extra = "[kafka.producer]\nlinger.ms = 300\n";
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, extra))).await;
    let client = client().await;
    for i in 0..5 {
        let mut body = call_body(MOCK, &format!("acked-{i}"), "");
        body["ack"] = json!("kafka");
        let (status, env) = bp.call(&body).await;
        assert_eq!((status, env["errno"].clone()), (200, json!(0)), "{env}");
        // No polling: the record must already be there.
        let all = read_all(&client, &topic, 1).await;
        assert_eq!(all[&0].len(), i + 1);
        let value: Value = serde_json::from_slice(all[&0][i].record.value.as_ref().unwrap()).unwrap();
        assert_eq!(value["Data"], format!("acked-{i}"));
    }
    bp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_topics_are_created_and_readiness_follows_kafka() {
    let _k = kafka().await;
    let topic = unique("create");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 4, ""))).await;
    let client = client().await;
    let listed = client.list_topics().await.unwrap();
    let t = listed.iter().find(|t| t.name == topic).expect("topic created");
    assert_eq!(t.partitions.len(), 4);
    let (status, body) = bp.get("/healthz").await;
    assert_eq!((status, body["errno"].clone()), (200, json!(0)));
    bp.stop().await;

    // Pointing at a port where no broker listens: alive, not ready, calls still queue.
    let mut s = settings(&simple_config(&topic, 4, ""));
    s.kafka.bootstrap_servers = vec!["127.0.0.1:1".into()];
    let bp = Bigpipe::start(&s);
    let (status, _) = bp.get("/healthz").await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = bp.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["errno"], -1);
    bp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_target_and_stats_keep_the_go_shapes() {
    let _k = kafka().await;
    let topic = unique("shapes");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, ""))).await;
    let r = bp
        .http
        .post(format!("{}/rpc/server/mock", bp.base))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = bp.http.get(format!("{}/stats", bp.admin)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.starts_with(r#"{"data":{"clientStats":"#), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (v["errno"].clone(), v["msg"].clone()),
        (json!(0), json!("success"))
    );
    for key in ["acceptedCall", "overloadCall", "receivedCall"] {
        assert!(v["data"]["serverStats"][key].is_u64(), "{key}");
    }
    for key in ["deliveryFail", "deliverySuccess"] {
        assert!(v["data"]["producerStats"][&topic][key].is_u64(), "{key}");
    }
    bp.stop().await;
}
