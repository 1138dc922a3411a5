//! Per-call delivery options: `method`, `headers`, `content_type`, `timeout_ms` and `data`
//! as JSON, from `/rpc/call` through Kafka to the target.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::helpers::target::Target;
use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_arrives_with_its_method_headers_type_and_json_data() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("opts");
    // retries = 0: a call whose own timeout expires fails at once, where the entry's 3 s
    // timeout would have waited for the slow target.
    let extra = format!(
        "[[kafka.consumer.list]]\ntopic = \"{topic}\"\ngroupId = \"{}\"\nrateLimit = 2000\n\
         concurrency = 20\nretries = 0\ntimeout = 3000\nsessionTimeout = 6000\n\
         commitInterval = 200\nretryTiers = []\n[delivery]\nheaders.drop = [\"X-Dropped\"]\n",
        unique("G")
    );
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 2, &extra))).await;
    let send = |path: &str, fields: Value| {
        let mut body = call_body(&target.url(path), "plain", "k");
        for (k, v) in fields.as_object().cloned().unwrap_or_default() {
            body[k] = v;
        }
        body
    };
    let cases = [
        ("/ok/delete", json!({"method": "DELETE"})),
        ("/ok/put", json!({"method": "put", "content_type": "text/csv"})),
        (
            "/ok/patch",
            json!({"method": "PATCH", "data": {"op": "inc", "by": [1, 2]}}),
        ),
        ("/ok/get", json!({"method": "GET", "data": ""})),
        (
            "/ok/headers",
            json!({"headers": {"X-Per-Call": "yes", "x-multi": ["a", "b"], "X-Dropped": "no", "Connection": "close"}}),
        ),
        ("/slow/1500", json!({"timeout_ms": 300})),
        ("/slow/700", json!({})),
    ];
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for (path, fields) in cases {
        let (status, env) = bp.call(&send(path, fields.clone())).await;
        assert_eq!(status, 200, "{fields}: {env}");
        ids.insert(
            path.to_owned(),
            env["data"].as_str().unwrap_or_default().to_owned(),
        );
    }
    poll(
        "every call but the timed-out one delivered, that one failed",
        || async {
            let s = bp.get("/stats").await.1["data"]["consumerStats"][0].clone();
            (s["rpcSuccess"] == 6 && s["rpcFail"] == 1).then_some(())
        },
    )
    .await;
    let received = target.received();
    let got = |path: &str| {
        received
            .iter()
            .find(|r| r.call_id() == ids[path] && r.status == 200)
            .unwrap_or_else(|| panic!("{path} not delivered: {received:?}"))
    };
    let delete = got("/ok/delete");
    assert_eq!(
        (delete.method.as_str(), delete.body.as_slice()),
        ("DELETE", &b"plain"[..])
    );
    assert_eq!(delete.header("content-type"), Some("application/octet-stream"));
    let put = got("/ok/put");
    assert_eq!(
        (put.method.as_str(), put.header("content-type")),
        ("PUT", Some("text/csv"))
    );
    let patch = got("/ok/patch");
    assert_eq!(patch.method, "PATCH");
    assert_eq!(patch.header("content-type"), Some("application/json"));
    let sent: Value = serde_json::from_slice(&patch.body).unwrap_or_default();
    assert_eq!(sent, json!({"op": "inc", "by": [1, 2]}));
    let get = got("/ok/get");
    assert_eq!((get.method.as_str(), get.body.len()), ("GET", 0));
    assert_eq!(get.header("content-type"), None);
    let headers = got("/ok/headers");
    assert_eq!(headers.header("x-per-call"), Some("yes"));
    assert_eq!(
        headers.headers.get("x-multi").cloned().unwrap_or_default(),
        ["a", "b"]
    );
    assert_eq!(headers.header("x-dropped"), None, "delivery.headers.drop applies");
    assert_eq!(headers.method, "POST");
    // The slow target answered both, but bigpipe had given up on the 300 ms one.
    let s = bp.get("/stats").await.1["data"]["consumerStats"][0].clone();
    assert_eq!(s["deadLettered"], 1, "{s}");
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_are_refused_with_their_own_error() {
    let _k = kafka().await;
    let topic = unique("optsbad");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, ""))).await;
    let cases = [
        (json!({"method": "TRACE"}), "method无效"),
        (json!({"method": "GET"}), "data无效"),
        (json!({"headers": ["X-A", "1"]}), "headers无效"),
        (json!({"headers": {"X-A": "a\nb"}}), "headers无效"),
        (json!({"content_type": 5}), "content_type无效"),
        (json!({"timeout_ms": 0}), "timeout_ms无效"),
        (json!({"data": 5}), "data无效"),
    ];
    for (fields, msg) in cases {
        let mut body = call_body("http://127.0.0.1:9/x", "d", "");
        for (k, v) in fields.as_object().cloned().unwrap_or_default() {
            body[k] = v;
        }
        let (status, env) = bp.call(&body).await;
        assert_eq!((status, env["msg"].as_str()), (400, Some(msg)), "{fields}: {env}");
    }
    bp.stop().await;
}
