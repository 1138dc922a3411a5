//! The fault suite: each scenario runs under steady load and counts, by call
//! id, what was sent, accepted, delivered, duplicated and lost. Run alone with
//! `make chaos`; `make test` runs it too. Each scenario prints one table row.

mod rebalance;

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use crate::delivery::consumer_entry;
use crate::group::{consumer_process_config, covers};
use crate::helpers::load::{Load, Row};
use crate::helpers::process::Process;
use crate::helpers::target::Target;
use crate::helpers::*;

const HEADER: &str = "| scenario                                     |  sent | accepted | delivered | duplicated | lost |  recover   |";

async fn all_cover(procs: &[&Process], n: i32) -> bool {
    let mut a = vec![];
    for p in procs {
        a.push(p.partitions(0).await);
    }
    a.iter().all(|p| p.as_ref().is_some_and(|v| !v.is_empty())) && covers(&a, n)
}

/// Waits until the target has received 100 more calls: the load goes on.
async fn load_continues(target: &Target) {
    let before = target.count();
    poll("load continues", || async {
        (target.count() >= before + 100).then_some(())
    })
    .await;
}

/// Waits until every accepted call reached the target (or is in `dead`).
async fn wait_delivered(target: &Target, accepted: &[String]) {
    poll("every accepted call delivered", || async {
        let got: BTreeSet<String> = target
            .received()
            .iter()
            .filter(|r| r.status == 200)
            .map(|r| r.call_id())
            .collect();
        accepted.iter().all(|id| got.contains(id)).then_some(())
    })
    .await;
}

/// Three consumer processes of one group, an in-process ingest, steady load;
/// `fault` signals one process. Returns the row.
async fn member_fault(scenario: &'static str, signal: &str) -> Row {
    let target = Target::start();
    let topic = unique("chaos");
    let group = unique("G");
    let ingest = Bigpipe::start_ready(&settings(&simple_config(&topic, 6, ""))).await;
    let config = consumer_process_config(&topic, 6, &consumer_entry(&topic, &group, ""));
    let mut procs: Vec<Process> = (0..3).map(|_| Process::spawn(&config)).collect();
    let refs: Vec<&Process> = procs.iter().collect();
    poll("3 members cover 6 partitions", || async {
        all_cover(&refs, 6).await.then_some(())
    })
    .await;

    let load = Load::start(ingest.base.clone(), target.url("/ok"), 50, None);
    // Under load for a while before the fault.
    poll("load flowing", || async { (target.count() >= 100).then_some(()) }).await;
    let mut victim = procs.remove(0);
    victim.signal(signal);
    let fault_at = Instant::now();
    if signal == "TERM" {
        assert_eq!(victim.wait(), Some(0), "SIGTERM exits 0");
    } else {
        victim.wait();
    }
    let refs: Vec<&Process> = procs.iter().collect();
    poll("survivors cover 6 partitions", || async {
        all_cover(&refs, 6).await.then_some(())
    })
    .await;
    let recover = fault_at.elapsed();
    // The restarted member joins again under load.
    load_continues(&target).await;
    procs.push(Process::spawn(&config));
    let refs: Vec<&Process> = procs.iter().collect();
    poll("3 members again", || async {
        all_cover(&refs, 6).await.then_some(())
    })
    .await;
    load_continues(&target).await;
    let sent = load.stop().await;
    wait_delivered(&target, &sent.accepted).await;
    let row = Row::tally(scenario, &sent, &target, &BTreeSet::new(), recover);
    for p in &mut procs {
        p.signal("TERM");
        assert_eq!(p.wait(), Some(0));
    }
    ingest.stop().await;
    target.stop().await;
    row
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_one_of_three_then_restart_loses_and_duplicates_nothing() {
    let _k = kafka().await;
    let row = member_fault("SIGTERM 1 of 3 members, then restart", "TERM").await;
    eprintln!("{HEADER}");
    row.print();
    assert_eq!(row.lost, 0);
    assert_eq!(row.duplicated, 0, "a clean exit commits what it delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_one_of_three_loses_nothing() {
    let _k = kafka().await;
    let row = member_fault("SIGKILL 1 of 3 members, then restart", "KILL").await;
    eprintln!("{HEADER}");
    row.print();
    assert_eq!(row.lost, 0);
    // Only calls the victim had delivered but not yet committed come again:
    // at most a commit interval (200 ms) of its share plus its in-flight window.
    assert!(row.duplicated <= 100, "duplicates {}", row.duplicated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_down_for_a_minute_then_every_call_is_delivered() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("targetdown");
    let entry = consumer_entry(&topic, &unique("G"), "")
        .replace("retries = 2", "retries = 1000")
        .replace("retryBackoffMax = 200", "retryBackoffMax = 2000");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 3, &entry))).await;
    let load = Load::start(bp.base.clone(), target.url("/ok"), 20, None);
    poll("load flowing", || async { (target.count() >= 20).then_some(()) }).await;
    target.set_down(true);
    // The outage itself: the target answers 503 for a minute.
    tokio::time::sleep(Duration::from_secs(60)).await;
    target.set_down(false);
    let back = Instant::now();
    let sent = load.stop().await;
    wait_delivered(&target, &sent.accepted).await;
    let row = Row::tally(
        "target down 60 s, then back",
        &sent,
        &target,
        &BTreeSet::new(),
        back.elapsed(),
    );
    eprintln!("{HEADER}");
    row.print();
    assert_eq!(row.lost, 0);
    bp.stop().await;
    target.stop().await;
}

/// Steady load on one bigpipe while a hostile input is injected: every call of the
/// load (and every injected call that was accepted) must be delivered.
struct Hostile {
    bp: Bigpipe,
    target: Target,
    load: Load,
    topic: String,
}

impl Hostile {
    /// bigpipe on `topic` (1 partition, so the hostile input shares it with the load)
    /// with one consumer entry plus `extra` entry keys, and 20 calls/s flowing.
    async fn start(topic: String, extra: &str) -> Self {
        let target = Target::start();
        let entry = consumer_entry(&topic, &unique("G"), extra);
        let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &entry))).await;
        let load = Load::start(bp.base.clone(), target.url("/ok"), 20, None);
        poll("load flowing", || async { (target.count() >= 20).then_some(()) }).await;
        Self {
            bp,
            target,
            load,
            topic,
        }
    }

    /// Keeps the load going for `secs` after the injection, then counts: the row, with
    /// `injected` (ids accepted from the hostile input that must be delivered too).
    async fn finish(self, scenario: &'static str, injected: &[String], secs: u64) -> Row {
        self.finish_with_dead(scenario, injected, &BTreeSet::new(), secs)
            .await
    }

    /// [`finish`](Self::finish), where `dead` are injected call ids that end as dead
    /// letters (they count as finished, not as lost).
    async fn finish_with_dead(
        self,
        scenario: &'static str,
        injected: &[String],
        dead: &BTreeSet<String>,
        secs: u64,
    ) -> Row {
        let before = self.target.count();
        poll("load still flowing after the injection", || async {
            (self.target.count() >= before + 20 * usize::try_from(secs).unwrap_or(1)).then_some(())
        })
        .await;
        let stopped = Instant::now();
        let mut sent = self.load.stop().await;
        // The injected calls count as sent and accepted too (each was answered 200).
        sent.sent += injected.len();
        sent.accepted.extend(injected.iter().cloned());
        let must_arrive: Vec<String> = sent
            .accepted
            .iter()
            .filter(|id| !dead.contains(*id))
            .cloned()
            .collect();
        wait_delivered(&self.target, &must_arrive).await;
        let row = Row::tally(scenario, &sent, &self.target, dead, stopped.elapsed());
        eprintln!("{HEADER}");
        row.print();
        self.bp.stop().await;
        self.target.stop().await;
        row
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_calls_under_load_are_refused_and_cost_the_others_nothing() {
    let _k = kafka().await;
    let h = Hostile::start(unique("oversize"), "").await;
    for _ in 0..20 {
        let body = call_body(&h.target.url("/ok"), &"<".repeat(1_000_000), "k1");
        let (status, env) = h.bp.call(&body).await;
        assert_eq!(status, 413, "never accepted, so never lost: {env}");
    }
    let row = h.finish("20 x 1 MB of '<' under load (413)", &[], 2).await;
    assert_eq!(row.lost, 0);
    assert_eq!(row.accepted, row.sent, "the oversize calls took nobody's room");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_never_answers_under_load_delays_no_other_call() {
    let _k = kafka().await;
    let h = Hostile::start(unique("blackhole"), "").await;
    let hole = Target::start();
    let mut injected = vec![];
    for i in 0..20 {
        let (status, env) =
            h.bp.call(&call_body(&hole.url("/slow/60000"), &format!("hole-{i}"), "k1"))
                .await;
        assert_eq!(status, 200, "{env}");
        injected.push(env["data"].as_str().unwrap_or_default().to_owned());
    }
    // The load keeps arriving within a second of being sent while the hole holds its slots.
    let before = h.target.count();
    let t0 = Instant::now();
    poll("the load flows past the hole", || async {
        (h.target.count() >= before + 20).then_some(())
    })
    .await;
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "20 load calls took {took:?} behind the hole"
    );
    let row = h.finish("20 calls to a host that never answers", &[], 2).await;
    assert_eq!(row.lost, 0);
    // (The hole's own in-flight count is no measure of bigpipe's cap: the target keeps
    // sleeping on requests bigpipe gave up on. never_stall checks the cap before any timeout.)
    hole.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zstd_batch_from_another_producer_under_load_is_read_and_delivered() {
    let _k = kafka().await;
    let topic = crate::codecs::producer_codec_topic().await;
    let h = Hostile::start(topic, "").await;
    let mut lines = String::new();
    let mut injected = vec![];
    for i in 0..5 {
        let id = format!("zstd-{i}-{}", unique("id"));
        let value = serde_json::json!({
            "Headers": {}, "Url": h.target.url("/ok"), "Data": id,
            "Topic": h.topic, "Partition": 0, "CreateTime": 1,
        });
        lines.push_str(&format!("bigpipe-call-id:{id}\tk1\t{value}\n"));
        injected.push(id);
    }
    let topic = h.topic.clone();
    tokio::task::spawn_blocking(move || crate::codecs::console_produce(&topic, "zstd", &[], &lines))
        .await
        .expect("console producer");
    let row = h.finish("a zstd batch from another producer", &injected, 2).await;
    assert_eq!(row.lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_kafka_refuses_under_load_end_and_the_partition_moves_on() {
    let _k = kafka().await;
    let topic = unique("dlqfull");
    // The dead-letter topic takes 8 KiB: a 64 KiB call's dead letter must go without its value.
    crate::dlq::create_limited_topic(&format!("{topic}.dlq"), 8 * 1024).await;
    let h = Hostile::start(topic, "").await;
    let mut dead = BTreeSet::new();
    let mut injected = vec![];
    for _ in 0..5 {
        let body = call_body(
            &h.target.url("/always/404"),
            &crate::dlq::incompressible(64 * 1024),
            "k1",
        );
        let (status, env) = h.bp.call(&body).await;
        assert_eq!(status, 200, "{env}");
        let id = env["data"].as_str().unwrap_or_default().to_owned();
        dead.insert(id.clone());
        injected.push(id);
    }
    poll("the 5 dead letters written without their values", || async {
        let s = h.bp.get("/stats").await.1["data"]["consumerStats"][0].clone();
        (s["deadLetteredWithoutValue"] == 5).then_some(())
    })
    .await;
    let row = h
        .finish_with_dead("5 dead letters over the DLQ topic's limit", &injected, &dead, 2)
        .await;
    assert_eq!(row.lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_down_for_5_minutes_waits_in_retry_tiers_then_everything_is_delivered() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("longdown");
    // retryFor 10 min keeps calls retrying through the outage (attempts alone would give
    // up); backoff up to 20 s parks them in the 5 s and 1 min tiers.
    let entry = consumer_entry(&topic, &unique("G"), "retryFor = 600000")
        .replace("retryBackoff = 20", "retryBackoff = 1000")
        .replace("retryBackoffMax = 200", "retryBackoffMax = 20000");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 3, &entry))).await;
    let load = Load::start(bp.base.clone(), target.url("/ok"), 5, None);
    poll("load flowing", || async { (target.count() >= 10).then_some(()) }).await;
    target.set_down(true);
    let down_at = Instant::now();
    let outage = Duration::from_secs(300);
    // Throughout the outage the main partitions keep up: their calls wait in the tiers.
    let mut checks = 0;
    let mut max_main_lag = 0;
    while down_at.elapsed() < outage {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let s = bp.get("/stats").await.1["data"]["consumerStats"][0].clone();
        if down_at.elapsed() > Duration::from_secs(20) {
            let main = partitions_lag(&s).unwrap_or(i64::MAX);
            max_main_lag = max_main_lag.max(main);
            checks += 1;
        }
    }
    let s = bp.get("/stats").await.1["data"]["consumerStats"][0].clone();
    let parked = s["retryParked"].as_u64().unwrap_or(0);
    eprintln!(
        "outage: {checks} checks, max main-partition lag {max_main_lag}, parked {parked}, \
         dead letters {}",
        s["deadLettered"]
    );
    // A few calls can be between their read and their park at any moment.
    assert!(
        max_main_lag <= 20,
        "main partitions fell behind during the outage: lag {max_main_lag}"
    );
    assert!(parked > 0, "calls waited in the tiers: {s}");
    target.set_down(false);
    let back = Instant::now();
    let sent = load.stop().await;
    wait_delivered(&target, &sent.accepted).await;
    let row = Row::tally(
        "target down 5 min, calls wait in retry tiers",
        &sent,
        &target,
        &BTreeSet::new(),
        back.elapsed(),
    );
    eprintln!("{HEADER}");
    row.print();
    assert_eq!(row.lost, 0);
    let s = bp.get("/stats").await.1["data"]["consumerStats"][0].clone();
    assert_eq!(s["deadLettered"], 0, "no call gave up: {s}");
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_for_30s_never_hangs_ingest_and_loses_nothing_accepted() {
    let _k = kafka_exclusive().await;
    let target = Target::start();
    let topic = unique("brokerdown");
    let extra = format!(
        "[http.server.handler.channel]\nsize = 100\n{}",
        consumer_entry(&topic, &unique("G"), "")
    );
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 3, &extra))).await;
    let load = Load::start(bp.base.clone(), target.url("/ok"), 20, None);
    poll("load flowing", || async { (target.count() >= 20).then_some(()) }).await;
    kafka_script(&["stop"]);
    // The outage itself: the broker is away for 30 s while calls keep coming.
    tokio::time::sleep(Duration::from_secs(30)).await;
    kafka_script(&["start"]);
    let back = Instant::now();
    bp.wait_ready().await;
    let sent = load.stop().await;
    wait_delivered(&target, &sent.accepted).await;
    let row = Row::tally(
        "single broker down 30 s",
        &sent,
        &target,
        &BTreeSet::new(),
        back.elapsed(),
    );
    eprintln!("{HEADER}");
    row.print();
    eprintln!(
        "slowest /rpc/call during the run: {:?}; refused: {}",
        sent.slowest, sent.refused
    );
    assert_eq!(row.lost, 0);
    assert!(sent.refused > 0, "the 100-call queue filled during the outage");
    assert!(
        sent.slowest < Duration::from_secs(2),
        "ingest hung for {:?}",
        sent.slowest
    );
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_while_kafka_is_down_it_waits_then_works() {
    let _k = kafka_exclusive().await;
    let target = Target::start();
    let topic = unique("coldstart");
    let extra = consumer_entry(&topic, &unique("G"), "");
    kafka_script(&["stop"]);
    struct Restart(bool);
    impl Drop for Restart {
        fn drop(&mut self) {
            if self.0 {
                kafka_script(&["start"]);
            }
        }
    }
    let mut restart = Restart(true);
    let bp = Bigpipe::start(&settings(&simple_config(&topic, 3, &extra)));
    let (status, _) = bp.get("/healthz").await;
    assert_eq!(status, 200);
    let (status, body) = bp.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    // Calls are queued while Kafka is away.
    let (status, env) = bp.call(&call_body(&target.url("/ok"), "early", "")).await;
    assert_eq!(status, 200, "{env}");
    let early = env["data"].as_str().unwrap().to_owned();
    let started = Instant::now();
    restart.0 = false;
    kafka_script(&["start"]);
    bp.wait_ready().await;
    let ready_after = started.elapsed();
    let (status, env) = bp.call(&call_body(&target.url("/ok"), "late", "")).await;
    assert_eq!(status, 200);
    let late = env["data"].as_str().unwrap().to_owned();
    wait_delivered(&target, &[early.clone(), late.clone()]).await;
    let sent = crate::helpers::load::Sent {
        sent: 2,
        accepted: vec![early, late],
        refused: 0,
        slowest: Duration::ZERO,
    };
    let row = Row::tally(
        "started while Kafka was down",
        &sent,
        &target,
        &BTreeSet::new(),
        ready_after,
    );
    eprintln!("{HEADER}");
    row.print();
    assert_eq!(row.lost, 0);
    bp.stop().await;
    target.stop().await;
}

/// Stops the 3-broker cluster when the test ends, however it ends.
struct ClusterDown;

impl Drop for ClusterDown {
    fn drop(&mut self) {
        kafka_script(&["down", "--cluster"]);
    }
}

/// `host:port` of cluster node `n` (1..3), as `scripts/kafka.sh` places it: n*1000 plus
/// `BIGPIPE_KAFKA_CLUSTER_BASE_PORT` (default 9092), so a run with its own base never
/// touches another run's brokers.
fn cluster_node(n: u16) -> String {
    let base = std::env::var("BIGPIPE_KAFKA_CLUSTER_BASE_PORT").map_or(9092, |b| {
        b.parse()
            .unwrap_or_else(|_| panic!("BIGPIPE_KAFKA_CLUSTER_BASE_PORT is not a port: {b}"))
    });
    format!("127.0.0.1:{}", n * 1000 + base)
}

/// The node id that leads `partition` of `topic`, from Kafka's own topic tool.
fn leader_of(bootstrap: &str, topic: &str, partition: i32) -> Option<i32> {
    let text = kafka_tool("topics", bootstrap, &["--describe", "--topic", topic])?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let p = fields.iter().position(|f| *f == "Partition:")?;
        if fields.get(p + 1)?.parse::<i32>().ok()? != partition {
            return None;
        }
        let l = fields.iter().position(|f| *f == "Leader:")?;
        fields.get(l + 1)?.parse().ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_leader_killed_loses_no_acknowledged_call() {
    // Exclusive: three more JVMs on two cores would distort everything else.
    let _k = kafka_exclusive().await;
    kafka_script(&["up", "--cluster"]);
    let _down = ClusterDown;
    let bootstrap = [1, 2, 3].map(cluster_node).join(",");
    let target = Target::start();
    let topic = unique("failover");
    let toml = format!(
        "[log]\nlevel = \"warning\"\n[kafka]\nbootstrap.servers = \"{bootstrap}\"\n\
         topics = [{{ name = \"{topic}\", partitions = 3, replicationFactor = 3 }}]\n\
         [[kafka.producer.acl]]\nname = \"caller\"\nsecret = \"s3cret\"\ntopic = \"{topic}\"\n{}",
        consumer_entry(&topic, &unique("G"), "")
    );
    // Through the helper, which allows the loopback target.
    let s = crate::helpers::settings(&toml);
    let bp = Bigpipe::start_ready(&s).await;
    let load = Load::start(bp.base.clone(), target.url("/ok"), 30, Some("kafka"));
    poll("load flowing", || async { (target.count() >= 30).then_some(()) }).await;
    let leader = poll("leader of partition 0", || async {
        leader_of(&cluster_node(1), &topic, 0)
    })
    .await;
    kafka_script(&["kill-node", &leader.to_string()]);
    let killed = Instant::now();
    let other = cluster_node(if leader == 1 { 2 } else { 1 });
    poll("a new leader", || async {
        leader_of(&other, &topic, 0)
            .filter(|l| *l != leader && *l > 0)
            .map(|_| ())
    })
    .await;
    // Delivery continues on the new leader.
    let before = target.count();
    poll("deliveries continue after the kill", || async {
        (target.count() >= before + 60).then_some(())
    })
    .await;
    let recover = killed.elapsed();
    kafka_script(&["start-node", &leader.to_string()]);
    let sent = load.stop().await;
    wait_delivered(&target, &sent.accepted).await;
    let row = Row::tally(
        "3 brokers, partition leader SIGKILLed",
        &sent,
        &target,
        &BTreeSet::new(),
        recover,
    );
    eprintln!("{HEADER}");
    row.print();
    assert_eq!(row.lost, 0, "every call acknowledged by Kafka is delivered");
    bp.stop().await;
    target.stop().await;
}
