//! Outbound signing (issue 9, must 3), checked by a verifier no one here wrote: the
//! `standardwebhooks` package from PyPI (`it/fixtures/verify_webhooks.py`), installed
//! into `target/pydeps` by `scripts/pydeps.sh` (scripts/it.sh runs it). Without python3
//! or the package these tests fail, they never skip.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::delivery::consumer_entry;
use crate::helpers::target::{Received, Target};
use crate::helpers::*;

/// A fresh random key in the Standard Webhooks form.
fn new_key() -> String {
    format!("whsec_{}", STANDARD.encode(rand::random::<[u8; 32]>()))
}

fn pydeps() -> PathBuf {
    std::env::var_os("IT_PYDEPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pydeps"))
}

/// The verifier's verdict on each request ("ok" or "refused: ..."), for `secret`.
fn verify(secret: &str, requests: &[(Vec<u8>, HashMap<String, String>)]) -> Vec<String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("it/fixtures/verify_webhooks.py");
    let job = json!({
        "secret": secret,
        "requests": requests.iter().map(|(body, headers)| json!({
            "body": String::from_utf8(body.clone()).expect("bodies are UTF-8 here"),
            "headers": headers,
        })).collect::<Vec<_>>(),
    });
    let mut child = Command::new("python3")
        .arg(&script)
        .env("PYTHONPATH", pydeps())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 is required by the signing tests and cannot run: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the standardwebhooks verifier failed ({}); run scripts/pydeps.sh to install it into {}:\n{}",
        out.status,
        pydeps().display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("verdicts")
}

/// A delivered request as the verifier takes it: its body and the headers it names.
fn as_webhook(r: &Received) -> (Vec<u8>, HashMap<String, String>) {
    let headers = ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .into_iter()
        .filter_map(|k| r.header(k).map(|v| (k.to_owned(), v.to_owned())))
        .collect();
    (r.body.clone(), headers)
}

async fn send(bp: &Bigpipe, target: &Target, path: &str, data: &str) -> String {
    let (status, env) = bp.call(&call_body(&target.url(path), data, "k")).await;
    assert_eq!(status, 200, "{env}");
    env["data"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivery_verifies_and_a_tampered_one_does_not() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("sign");
    let key = new_key();
    let extra = consumer_entry(&topic, &unique("G"), &format!("signingKeys = [\"{key}\"]"));
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &extra))).await;

    let mut ids = vec![
        send(&bp, &target, "/ok", "plain").await,
        send(&bp, &target, "/ok", "ünïcødé 🚀 \"quotes\" <tags> & amps").await,
    ];
    // Fails once, so one call is signed twice, each attempt with its own timestamp.
    ids.push(send(&bp, &target, "/fail/1/503", "{\"json\": [1, 2]}").await);
    poll("four attempts", || async { (target.count() >= 4).then_some(()) }).await;
    let received = target.received();
    assert_eq!(received.len(), 4);
    for r in &received {
        assert_eq!(
            r.header("webhook-id"),
            Some(r.call_id().as_str()),
            "webhook-id is the call id"
        );
        assert!(ids.contains(&r.call_id()));
        let sigs = r.header("webhook-signature").unwrap();
        assert_eq!(sigs.split(' ').count(), 1, "{sigs}");
        assert!(sigs.starts_with("v1,"), "{sigs}");
    }
    let requests: Vec<_> = received.iter().map(as_webhook).collect();
    assert_eq!(
        verify(&key, &requests),
        vec!["ok"; 4],
        "the reference verifier accepts every attempt"
    );

    // The same requests with another key, a changed body or a changed id are refused.
    let other = verify(&new_key(), &requests);
    assert!(other.iter().all(|v| v.starts_with("refused")), "{other:?}");
    let mut tampered = requests.clone();
    for (body, _) in &mut tampered {
        body.push(b'!');
    }
    let mut reid = requests.clone();
    for (_, headers) in &mut reid {
        headers.insert("webhook-id".into(), "another-call".into());
    }
    let mut unsigned = requests.clone();
    for (_, headers) in &mut unsigned {
        headers.remove("webhook-signature");
    }
    for (what, reqs) in [
        ("tampered body", tampered),
        ("changed id", reid),
        ("no signature", unsigned),
    ] {
        let verdicts = verify(&key, &reqs);
        assert!(
            verdicts.iter().all(|v| v.starts_with("refused")),
            "{what}: {verdicts:?}"
        );
    }
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_rotation_both_keys_verify() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("sign-rot");
    let (old, new) = (new_key(), new_key());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("signing.keys");
    std::fs::write(&file, format!("# the next key\n{new}\n")).unwrap();
    let extra = consumer_entry(
        &topic,
        &unique("G"),
        &format!(
            "signingKeys = [\"{old}\"]\nsigningKeysFile = {:?}",
            file.display().to_string()
        ),
    );
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &extra))).await;
    send(&bp, &target, "/ok", "rotating").await;
    poll("the delivery", || async { (target.count() >= 1).then_some(()) }).await;
    let r = &target.received()[0];
    assert_eq!(r.header("webhook-signature").unwrap().split(' ').count(), 2);
    let requests = vec![as_webhook(r)];
    assert_eq!(verify(&old, &requests), ["ok"], "a target still on the old key");
    assert_eq!(verify(&new, &requests), ["ok"], "a target already on the new key");
    assert!(verify(&new_key(), &requests)[0].starts_with("refused"));
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_entry_sends_no_signature_headers_even_forged_ones() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("sign-none");
    // "*" forwards every caller header, yet a caller's webhook-* headers never pass.
    let extra = format!(
        "{}[delivery]\nheaders.forward = [\"*\"]\n",
        consumer_entry(&topic, &unique("G"), "")
    );
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &extra))).await;
    let resp = bp
        .http
        .post(format!("{}/rpc/call", bp.base))
        .header("webhook-id", "forged")
        .header("webhook-timestamp", "1")
        .header("webhook-signature", "v1,Zm9yZ2Vk")
        .header("X-Kept", "yes")
        .body(call_body(&target.url("/ok"), "d", "k").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    poll("the delivery", || async { (target.count() >= 1).then_some(()) }).await;
    let r = &target.received()[0];
    assert_eq!(r.header("x-kept"), Some("yes"));
    for h in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        assert_eq!(r.header(h), None, "{h}");
    }
    bp.stop().await;
    target.stop().await;
}
