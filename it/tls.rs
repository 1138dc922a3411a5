//! https targets: delivered over TLS when the target's CA is trusted, refused (and
//! dead-lettered, never sent in clear) when it is not.

use crate::delivery::consumer_entry;
use crate::helpers::target::Target;
use crate::helpers::*;

fn ca_file() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("it/fixtures/tls/ca.pem")
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_targets_are_delivered_when_their_ca_is_trusted() {
    let _k = kafka().await;
    assert!(
        bigpipe::delivery::tls::cpu_supported(),
        "this CPU lacks what the TLS provider needs; https cannot be tested here"
    );
    let target = Target::start_tls();
    assert!(target.url("/ok").starts_with("https://127.0.0.1:"));
    let topic = unique("tls");
    let extra = format!(
        "[delivery]\ntls.ca.file = {:?}\n\n{}",
        ca_file(),
        consumer_entry(&topic, &unique("G"), "")
    );
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &extra))).await;
    for i in 0..3 {
        let (status, env) = bp
            .call(&call_body(&target.url("/ok"), &format!("secret-{i}"), ""))
            .await;
        assert_eq!(status, 200, "{env}");
    }
    poll("three calls delivered over TLS", || async {
        let s = bp.get("/stats").await.1["data"].clone();
        (s["consumerStats"][0]["rpcSuccess"] == 3).then_some(())
    })
    .await;
    let mut bodies: Vec<_> = target.received().into_iter().map(|r| r.body).collect();
    bodies.sort();
    assert_eq!(
        bodies,
        [b"secret-0".to_vec(), b"secret-1".to_vec(), b"secret-2".to_vec()]
    );
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_refused_and_dead_lettered() {
    let _k = kafka().await;
    let target = Target::start_tls();
    let topic = unique("tlsbad");
    // Only the built-in public roots: the test CA is not among them.
    let extra = consumer_entry(&topic, &unique("G"), "").replace("retries = 2", "retries = 1");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &extra))).await;
    let (status, env) = bp.call(&call_body(&target.url("/ok"), "x", "")).await;
    assert_eq!(status, 200, "{env}");
    let c = poll("the call dead-lettered", || async {
        let s = bp.get("/stats").await.1["data"].clone();
        let c = s["consumerStats"][0].clone();
        (c["deadLettered"] == 1).then_some(c)
    })
    .await;
    assert_eq!(c["rpcSuccess"], 0, "{c}");
    assert_eq!(
        c["rpcRetries"], 1,
        "a TLS failure is retried like a connection error: {c}"
    );
    assert_eq!(
        target.count(),
        0,
        "nothing reached the handler without a trusted certificate"
    );
    bp.stop().await;
    target.stop().await;
}
