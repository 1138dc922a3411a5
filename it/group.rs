//! Several bigpipe processes in one consumer group: partitions shared and
//! taken over, the group rate split, Kafka's own tooling sees our members.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::delivery::consumer_entry;
use crate::helpers::process::Process;
use crate::helpers::target::Target;
use crate::helpers::*;

/// A consumer-only process config: no ACL, one entry on `topic`.
pub(crate) fn consumer_process_config(topic: &str, partitions: i32, entry: &str) -> String {
    format!(
        "[log]\nlevel = \"warning\"\n[kafka]\nbootstrap.servers = \"{{bootstrap}}\"\n\
         topics = [{{ name = \"{topic}\", partitions = {partitions} }}]\n\
         [http.server]\nhost = \"127.0.0.1\"\nport = {{port}}\n{entry}"
    )
}

/// Partitions each process reports for entry 0 (None for a process that does not answer).
async fn assignments(procs: &[&Process]) -> Vec<Option<Vec<i32>>> {
    let mut out = vec![];
    for p in procs {
        out.push(p.partitions(0).await);
    }
    out
}

/// True when the processes' partitions are disjoint and cover 0..n.
pub(crate) fn covers(assigned: &[Option<Vec<i32>>], n: i32) -> bool {
    let mut seen = BTreeSet::new();
    for parts in assigned.iter().flatten() {
        for p in parts {
            if !seen.insert(*p) {
                return false;
            }
        }
    }
    seen == (0..n).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_partitions_and_survive_a_sigkill_without_loss() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("group3");
    let group = unique("G");
    let ingest = Bigpipe::start_ready(&settings(&simple_config(&topic, 6, ""))).await;
    let entry = consumer_entry(&topic, &group, "");
    let config = consumer_process_config(&topic, 6, &entry);
    let mut procs: Vec<Process> = (0..3).map(|_| Process::spawn(&config)).collect();

    let refs: Vec<&Process> = procs.iter().collect();
    poll("3 members own distinct partitions covering all 6", || async {
        let a = assignments(&refs).await;
        (a.iter().all(|p| p.as_ref().is_some_and(|v| !v.is_empty())) && covers(&a, 6)).then_some(())
    })
    .await;

    // Calls flow while the group is stable.
    let mut ids = vec![];
    for i in 0..60 {
        let (s, env) = ingest
            .call(&call_body(&target.url("/ok"), &format!("c{i}"), &format!("k{i}")))
            .await;
        assert_eq!(s, 200);
        ids.push(env["data"].as_str().unwrap().to_owned());
    }
    poll("first 60 delivered", || async {
        (target.count() >= 60).then_some(())
    })
    .await;

    // Kafka's own tool describes the group with our members and committed offsets.
    let describe = poll("kafka-consumer-groups shows 3 members", || async {
        let text = kafka_tool(
            "consumer-groups",
            &bootstrap(),
            &["--describe", "--group", &group],
        )?;
        let rows: Vec<&str> = text.lines().filter(|l| l.contains(&topic)).collect();
        let consumers: BTreeSet<&str> = rows.iter().filter_map(|l| l.split_whitespace().nth(6)).collect();
        let committed = rows
            .iter()
            .filter(|l| l.split_whitespace().nth(3).is_some_and(|c| c != "-"))
            .count();
        (rows.len() == 6 && consumers.len() == 3 && committed == 6).then_some(text)
    })
    .await;
    eprintln!("kafka-consumer-groups --describe:\n{describe}");

    // SIGKILL one member while calls keep coming.
    let victim = procs.remove(0);
    victim.signal("KILL");
    let killed_at = Instant::now();
    for i in 60..120 {
        let (s, env) = ingest
            .call(&call_body(&target.url("/ok"), &format!("c{i}"), &format!("k{i}")))
            .await;
        assert_eq!(s, 200);
        ids.push(env["data"].as_str().unwrap().to_owned());
    }
    let refs: Vec<&Process> = procs.iter().collect();
    poll("2 survivors own all 6 partitions", || async {
        let a = assignments(&refs).await;
        covers(&a, 6).then_some(())
    })
    .await;
    let takeover = killed_at.elapsed();
    eprintln!("takeover after SIGKILL: {takeover:?} (session timeout 6 s)");
    assert!(takeover < Duration::from_secs(20), "takeover took {takeover:?}");

    let delivered = poll("every call delivered", || async {
        let got: BTreeSet<String> = target.received().iter().map(|r| r.call_id()).collect();
        ids.iter().all(|id| got.contains(id)).then_some(got)
    })
    .await;
    let mut per_call: HashMap<String, usize> = HashMap::new();
    for r in target.received() {
        *per_call.entry(r.call_id()).or_default() += 1;
    }
    let duplicates: usize = per_call.values().map(|n| n - 1).sum();
    eprintln!(
        "sent {}, delivered {}, duplicated {duplicates}, lost 0",
        ids.len(),
        delivered.len()
    );
    drop(victim);
    for p in &mut procs {
        p.signal("TERM");
        assert_eq!(p.wait(), Some(0), "clean exit on SIGTERM");
    }
    ingest.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_split_the_group_rate() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("rate");
    let group = unique("G");
    const RATE: f64 = 40.0;
    let ingest = Bigpipe::start_ready(&settings(&simple_config(&topic, 4, ""))).await;
    // A backlog larger than 20 s of the rate, written before the consumers start.
    for i in 0..900 {
        let mut body = call_body(&target.url("/ok"), &format!("r{i}"), "");
        if i == 899 {
            body["ack"] = json!("kafka");
        }
        assert_eq!(ingest.call(&body).await.0, 200);
    }
    let entry =
        consumer_entry(&topic, &group, "").replace("rateLimit = 2000", &format!("rateLimit = {RATE}"));
    let config = consumer_process_config(&topic, 4, &entry);
    let procs = [Process::spawn(&config), Process::spawn(&config)];
    let refs: Vec<&Process> = procs.iter().collect();
    poll("both members own 2 partitions", || async {
        let a = assignments(&refs).await;
        (covers(&a, 4) && a.iter().all(|p| p.as_ref().is_some_and(|v| v.len() == 2))).then_some(())
    })
    .await;
    // Let the stable generation run a moment, then count over 10 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = target.count();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let seen = (target.count() - before) as f64 / 10.0;
    for p in &procs {
        let s = p.stats().await.unwrap_or_default();
        eprintln!(
            "process: success {} partitions {}",
            s["consumerStats"][0]["rpcSuccess"], s["consumerStats"][0]["partitions"]
        );
    }
    eprintln!("group rate {RATE}/s over two processes: measured {seen:.1}/s");
    assert!(
        (seen - RATE).abs() <= RATE * 0.1,
        "measured {seen}/s, want {RATE} ± 10 %"
    );
    ingest.stop().await;
    target.stop().await;
}

/// Two processes started together on a topic nobody created yet: bigpipe creates it while the
/// group forms, and the leader assigns it as soon as it exists. (It once waited for its 30 s
/// metadata check.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_at_start_is_consumed_within_seconds() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("fresh");
    let group = unique("G");
    let config = consumer_process_config(&topic, 4, &consumer_entry(&topic, &group, ""));
    // Each process logs its warnings (the config's level) into its own directory.
    let logs = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut procs: Vec<Process> = (0..2)
        .map(|i| {
            let dir = logs.path().join(i.to_string()).display().to_string();
            Process::spawn_with_env(&config, &[("BIGPIPE_LOG_DIRECTORY", dir)])
        })
        .collect();
    let refs: Vec<&Process> = procs.iter().collect();
    poll("both processes own partitions of the new topic", || async {
        let a = assignments(&refs).await;
        (a.iter().all(|p| p.as_ref().is_some_and(|v| !v.is_empty())) && covers(&a, 4)).then_some(())
    })
    .await;
    let took = started.elapsed();
    eprintln!("a new topic assigned to 2 starting processes after {took:?}");
    assert!(took < Duration::from_secs(15), "assigned after {took:?}");
    let ingest = Bigpipe::start_ready(&settings(&simple_config(&topic, 4, ""))).await;
    let (status, env) = ingest.call(&call_body(&target.url("/ok"), "fresh", "k")).await;
    assert_eq!(status, 200, "{env}");
    poll("the call is delivered", || async {
        (target.count() == 1).then_some(())
    })
    .await;
    drop(refs);
    for p in &mut procs {
        p.signal("TERM");
        assert_eq!(p.wait(), Some(0));
    }
    // A clean start (topics created meanwhile, groups formed) is no cause for a warning.
    let mut warnings = Vec::new();
    for i in 0..2 {
        for file in std::fs::read_dir(logs.path().join(i.to_string())).unwrap() {
            let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
            warnings.extend(text.lines().map(str::to_owned));
        }
    }
    assert_eq!(warnings, Vec::<String>::new(), "warning lines in a clean start");
    ingest.stop().await;
    target.stop().await;
}
