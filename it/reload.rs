//! Hot reload on SIGUSR1, against a real bigpipe process.

use serde_json::{Value, json};

use crate::delivery::consumer_entry;
use crate::helpers::load::Load;
use crate::helpers::process::Process;
use crate::helpers::target::Target;
use crate::helpers::*;

fn config(topic: &str, secret: &str, entries: &str) -> String {
    format!(
        "[log]\nlevel = \"warning\"\n[kafka]\nbootstrap.servers = \"{{bootstrap}}\"\n\
         topics = [{{ name = \"{topic}\", partitions = 3 }}]\n\
         [[kafka.producer.acl]]\nname = \"caller\"\nsecret = \"{secret}\"\ntopic = \"{topic}\"\n\
         [http.server]\nhost = \"127.0.0.1\"\nport = {{port}}\n{entries}"
    )
}

async fn call_status(base: &str, secret: &str, url: &str) -> u16 {
    let mut body = call_body(url, "x", "");
    body["acl"]["secret"] = json!(secret);
    let r = reqwest::Client::new()
        .post(format!("{base}/rpc/call"))
        .body(body.to_string())
        .send()
        .await;
    r.map(|r| r.status().as_u16()).unwrap_or(0)
}

async fn group_ids(p: &Process) -> Vec<String> {
    let s = p.stats().await.unwrap_or(Value::Null);
    s["consumerStats"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c["groupId"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_swaps_acls_and_consumers_and_rejects_a_bad_config() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("reload");
    let (n1, n2) = (unique("G1"), unique("G2"));
    let g1 = consumer_entry(&topic, &n1, "");
    let g2 = consumer_entry(&topic, &n2, "");
    let proc = Process::spawn(&config(&topic, "s3cret", &g1));
    let ok = target.url("/ok");
    poll("process ready", || async {
        let r = reqwest::get(format!("{}/readyz", proc.base)).await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    poll("G1 has partitions", || async {
        proc.partitions(0)
            .await
            .is_some_and(|p| p.len() == 3)
            .then_some(())
    })
    .await;

    // Load through the whole test, with the secret that every config keeps valid... until rotated.
    let load = Load::start(proc.base.clone(), ok.clone(), 20, None);
    poll("G1 delivers", || async { (target.count() >= 20).then_some(()) }).await;
    let before = proc.stats().await.unwrap()["consumerStats"][0]["rpcSuccess"]
        .as_u64()
        .unwrap();

    // 1. Rotate the secret and add G2.
    proc.rewrite_config(&config(&topic, "rotated", &format!("{g1}{g2}")));
    proc.signal("USR1");
    poll("new secret accepted", || async {
        (call_status(&proc.base, "rotated", &ok).await == 200).then_some(())
    })
    .await;
    assert_eq!(
        call_status(&proc.base, "s3cret", &ok).await,
        403,
        "old secret refused after the swap"
    );
    poll("G2 started", || async {
        (group_ids(&proc).await == [n1.clone(), n2.clone()]).then_some(())
    })
    .await;
    let after = proc.stats().await.unwrap()["consumerStats"][0]["rpcSuccess"]
        .as_u64()
        .unwrap();
    assert!(after >= before, "counters are not reset ({before} -> {after})");

    // 2. A bad config is rejected whole; the running one stays.
    proc.rewrite_config(
        &config(&topic, "other", &format!("{g1}{g2}")).replace("partitions = 3", "partitions = 0"),
    );
    proc.signal("USR1");
    poll("reload rejected", || async {
        let s = proc.stats().await?;
        (s["serverStats"]["configReloadsRejected"] == 1).then_some(())
    })
    .await;
    assert_eq!(call_status(&proc.base, "rotated", &ok).await, 200);
    assert_eq!(call_status(&proc.base, "other", &ok).await, 403);

    // 3. Remove G2: it leaves its group cleanly; G1 keeps running.
    proc.rewrite_config(&config(&topic, "rotated", &g1));
    proc.signal("USR1");
    let describe = poll("G2 has no members", || async {
        let text = kafka_tool("consumer-groups", &bootstrap(), &["--describe", "--group", &n2])?;
        text.contains("has no active members").then_some(text)
    })
    .await;
    eprintln!("{describe}");
    let sent = load.stop().await;
    // Calls sent with the old secret after the rotation were refused (403), not dropped.
    poll("every accepted call delivered by G1", || async {
        let got: std::collections::BTreeSet<String> = target.received().iter().map(|r| r.call_id()).collect();
        sent.accepted.iter().all(|id| got.contains(id)).then_some(())
    })
    .await;
    let mut proc = proc;
    proc.signal("TERM");
    assert_eq!(proc.wait(), Some(0));
    target.stop().await;
}
