//! Rebalancing under load: static members restarted one by one, counted by call id and, per
//! partition, by the longest pause in delivery.

use std::collections::BTreeMap;
use std::time::Duration;

use bigpipe::producer::partitioner::go_hash;
use tokio::time::Instant;

use super::{HEADER, all_cover, load_continues, wait_delivered};
use crate::delivery::consumer_entry;
use crate::group::consumer_process_config;
use crate::helpers::load::{Load, Row};
use crate::helpers::process::Process;
use crate::helpers::target::{Received, Target};
use crate::helpers::*;

/// The keys [`Load`] spreads its calls over: call `load-{i}` has key `k{i % 17}`.
const LOAD_KEYS: u64 = 17;

/// A consumer entry whose session outlasts a process restart, even on a loaded CI machine.
fn static_entry(topic: &str, group: &str) -> String {
    entry_with(topic, group, "cooperative-sticky")
}

/// [`static_entry`] with another assignor.
fn entry_with(topic: &str, group: &str, assignor: &str) -> String {
    format!(
        "[[kafka.consumer.list]]\ntopic = \"{topic}\"\ngroupId = \"{group}\"\nrateLimit = 2000\n\
         concurrency = 20\nretries = 2\ntimeout = 3000\nretryBackoff = 20\nretryBackoffMax = 200\n\
         sessionTimeout = 10000\nheartbeatInterval = 1000\ncommitInterval = 200\nretryTiers = []\n\
         assignor = \"{assignor}\"\n"
    )
}

/// The partition a delivered load call came from, by its body (`load-{i}`) and key.
fn partition_of(r: &Received, partitions: i32) -> Option<i32> {
    let body = std::str::from_utf8(&r.body).ok()?;
    let i: u64 = body.strip_prefix("load-")?.parse().ok()?;
    Some(go_hash(&format!("k{}", i % LOAD_KEYS), partitions))
}

/// Per partition, the longest time within `[from, to]` without a successful delivery.
fn longest_gaps(
    received: &[Received],
    partitions: i32,
    from: Instant,
    to: Instant,
) -> BTreeMap<i32, Duration> {
    gaps(received, partitions, from, to)
        .into_iter()
        .map(|(p, gaps)| (p, gaps.into_iter().max().unwrap_or_default()))
        .collect()
}

/// A pause in a partition's deliveries longer than this counts as a stall: under the load
/// here each key gets a call every 17 x 25 ms = 0.425 s, so a partition at least as often.
const STALL: Duration = Duration::from_millis(600);

/// Partition-seconds stalled within `[from, to]`: over every partition, the time of each pause
/// beyond [`STALL`].
fn stalled_time(received: &[Received], partitions: i32, from: Instant, to: Instant) -> Duration {
    gaps(received, partitions, from, to)
        .into_values()
        .flatten()
        .map(|gap| gap.saturating_sub(STALL))
        .fold(Duration::ZERO, |sum, d| sum + d)
}

/// Per partition, every time between two successful deliveries within `[from, to]` (the
/// bounds count as deliveries).
fn gaps(received: &[Received], partitions: i32, from: Instant, to: Instant) -> BTreeMap<i32, Vec<Duration>> {
    let mut times: BTreeMap<i32, Vec<Instant>> = (0..partitions).map(|p| (p, vec![from])).collect();
    for r in received
        .iter()
        .filter(|r| r.status == 200 && r.at > from && r.at < to)
    {
        if let Some(p) = partition_of(r, partitions) {
            times.entry(p).or_default().push(r.at);
        }
    }
    times
        .into_iter()
        .map(|(p, mut t)| {
            t.sort();
            t.push(to);
            (p, t.windows(2).map(|w| w[1] - w[0]).collect())
        })
        .collect()
}

/// The group generation `p` joined last, from its `/metrics`.
async fn generation(p: &Process, group: &str, topic: &str) -> Option<i64> {
    let text = reqwest::get(format!("{}/metrics", p.admin))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let series = format!("bigpipe_group_generation{{group=\"{group}\",topic=\"{topic}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// What a rolling restart did.
struct Restart {
    row: Row,
    /// Generations the group went through (the rebalances).
    rebalances: i64,
    /// The longest delivery pause on the partitions of the member being restarted...
    restarted_gap: Duration,
    /// ...and on everybody else's.
    others_gap: Duration,
}

/// Three members of one group under steady load, each in turn stopped with `signal` (`TERM`,
/// `KILL`) and started again. `instance_ids`: static members with these ids; `None`: dynamic.
/// `assignor`: the entry's.
async fn rolling_restart(
    scenario: &'static str,
    instance_ids: Option<[&str; 3]>,
    signal: &str,
    assignor: &str,
) -> Restart {
    let target = Target::start();
    let topic = unique("rolling");
    let group = unique("G");
    let ingest = Bigpipe::start_ready(&settings(&simple_config(&topic, 6, ""))).await;
    let config = consumer_process_config(&topic, 6, &entry_with(&topic, &group, assignor));
    let spawn = |i: usize| match instance_ids {
        Some(ids) => {
            Process::spawn_with_env(&config, &[("BIGPIPE_KAFKA_GROUP_INSTANCE_ID", ids[i].to_owned())])
        }
        None => Process::spawn(&config),
    };
    let mut procs: Vec<Process> = (0..3).map(spawn).collect();
    let refs: Vec<&Process> = procs.iter().collect();
    poll("3 members cover 6 partitions", || async {
        all_cover(&refs, 6).await.then_some(())
    })
    .await;
    let generation_before = poll("one generation for all three", || async {
        let mut seen = Vec::new();
        for p in &refs {
            seen.push(generation(p, &group, &topic).await?);
        }
        (seen.iter().all(|g| *g == seen[0]) && seen[0] > 0).then(|| seen[0])
    })
    .await;

    let load = Load::start(ingest.base.clone(), target.url("/ok"), 50, None);
    poll("load flowing", || async { (target.count() >= 100).then_some(()) }).await;
    let mut windows = Vec::new();
    for i in 0..3 {
        let mine = procs[i].partitions(0).await.unwrap_or_default();
        let from = Instant::now();
        procs[i].signal(signal);
        let code = procs[i].wait();
        if signal == "TERM" {
            assert_eq!(code, Some(0), "SIGTERM exits 0");
        }
        procs[i] = spawn(i);
        let refs: Vec<&Process> = procs.iter().collect();
        let restarted = &procs[i];
        poll(
            "the restarted member has partitions and all 6 are owned",
            || async {
                let back = restarted.partitions(0).await.is_some_and(|p| !p.is_empty());
                (back && all_cover(&refs, 6).await).then_some(())
            },
        )
        .await;
        windows.push((mine, from, Instant::now()));
        load_continues(&target).await;
    }
    let sent = load.stop().await;
    wait_delivered(&target, &sent.accepted).await;

    let received = target.received();
    let (mut others_gap, mut restarted_gap, mut slowest) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for (mine, from, to) in &windows {
        slowest = slowest.max(*to - *from);
        for (p, gap) in longest_gaps(&received, 6, *from, *to) {
            if mine.contains(&p) {
                restarted_gap = restarted_gap.max(gap);
            } else {
                others_gap = others_gap.max(gap);
            }
        }
    }
    let mut generation_after = generation_before;
    for p in &procs {
        let g = generation(p, &group, &topic).await;
        generation_after = generation_after.max(g.unwrap_or_default());
    }
    let row = Row::tally(scenario, &sent, &target, &Default::default(), slowest);
    for p in &mut procs {
        p.signal("TERM");
        assert_eq!(p.wait(), Some(0));
    }
    ingest.stop().await;
    target.stop().await;
    let restart = Restart {
        row,
        rebalances: generation_after - generation_before,
        restarted_gap,
        others_gap,
    };
    eprintln!("{HEADER}");
    restart.row.print();
    println!(
        "REBALANCE {scenario}: rebalances={} longest gap: restarted member's partitions {:.1} s, \
         the others' {:.1} s",
        restart.rebalances,
        restart.restarted_gap.as_secs_f64(),
        restart.others_gap.as_secs_f64()
    );
    restart
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_three_static_members_moves_nothing() {
    let _k = kafka().await;
    let ids = ["static-a", "static-b", "static-c"];
    let scenario = "rolling restart (SIGTERM), 3 static members";
    let r = rolling_restart(scenario, Some(ids), "TERM", "cooperative-sticky").await;
    assert_eq!(
        r.rebalances, 0,
        "every member is still in the generation it started in"
    );
    assert_eq!(r.row.lost, 0);
    assert_eq!(r.row.duplicated, 0, "a clean stop commits what it delivered");
    assert_others_kept_going(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_members_killed_and_restarted_in_turn_move_nothing() {
    let _k = kafka().await;
    let ids = ["static-a", "static-b", "static-c"];
    let scenario = "rolling restart (SIGKILL), 3 static members";
    let r = rolling_restart(scenario, Some(ids), "KILL", "cooperative-sticky").await;
    assert_eq!(
        r.rebalances, 0,
        "the restart takes the dead member's place at once"
    );
    assert_eq!(r.row.lost, 0);
    // Only what a killed member delivered but had not committed comes again.
    assert!(r.row.duplicated <= 100, "duplicates {}", r.row.duplicated);
    assert_others_kept_going(&r);
}

/// Steady load gives each partition a call every ~0.1-0.4 s; a rebalance stops them for the
/// time the group takes to agree again. The bound leaves room for a loaded CI machine.
fn assert_others_kept_going(r: &Restart) {
    assert!(
        r.others_gap < Duration::from_millis(2500),
        "partitions of members not restarting paused {:?}",
        r.others_gap
    );
}

/// Dynamic members rebalance on every restart (a SIGTERM leaves, the restart joins): proof
/// that the generation count sees rebalances.
fn assert_rebalanced_and_lost_nothing(r: &Restart) {
    assert!(
        r.rebalances >= 3,
        "one rebalance or more per restart: {}",
        r.rebalances
    );
    assert_eq!(r.row.lost, 0);
}

/// The baseline of the static rows, with dynamic (cooperative) members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_three_dynamic_members_rebalances_on_every_restart() {
    let _k = kafka().await;
    let scenario = "rolling restart (SIGTERM), 3 dynamic members";
    let r = rolling_restart(scenario, None, "TERM", "cooperative-sticky").await;
    assert_rebalanced_and_lost_nothing(&r);
}

/// A killed dynamic member's partitions wait out its session; cooperative members keep
/// delivering the others meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_cooperative_members_killed_in_turn_stall_only_the_dead_ones_partitions() {
    let _k = kafka().await;
    let scenario = "rolling restart (SIGKILL), 3 dynamic members";
    let r = rolling_restart(scenario, None, "KILL", "cooperative-sticky").await;
    assert_rebalanced_and_lost_nothing(&r);
    assert_others_kept_going(&r);
}

/// The same with eager members (the behaviour before cooperative rebalancing): the restart's
/// join starts a rebalance that waits for the dead member's session, and every partition
/// waits with it. Duplicates are many: each kill comes right after the previous stall, while
/// its member delivers the backlog faster than its commits (every 200 ms) follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_eager_members_killed_in_turn_stall_the_whole_group() {
    let _k = kafka().await;
    let scenario = "rolling restart (SIGKILL), 3 dynamic members, eager";
    let r = rolling_restart(scenario, None, "KILL", "sticky").await;
    assert_rebalanced_and_lost_nothing(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_told_to_scale_down_leaves_and_its_partitions_move_at_once() {
    let _k = kafka().await;
    let topic = unique("scaledown");
    let group = unique("G");
    let config = consumer_process_config(&topic, 6, &static_entry(&topic, &group));
    let spawn =
        |id: &str| Process::spawn_with_env(&config, &[("BIGPIPE_KAFKA_GROUP_INSTANCE_ID", id.to_owned())]);
    let (mut going, mut staying) = (spawn("static-going"), spawn("static-staying"));
    let both = [&going, &staying];
    poll("2 static members cover 6 partitions", || async {
        all_cover(&both, 6).await.then_some(())
    })
    .await;
    let signalled = Instant::now();
    going.signal("USR2");
    assert_eq!(going.wait(), Some(0), "SIGUSR2 is a clean stop");
    poll("the remaining member owns all 6", || async {
        all_cover(&[&staying], 6).await.then_some(())
    })
    .await;
    // Without LeaveGroup the coordinator would keep the partitions for the session (10 s).
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(8), "partitions moved after {took:?}");
    staying.signal("TERM");
    assert_eq!(staying.wait(), Some(0));
}

/// What ten members joining and leaving did to the two that stayed.
struct Churn {
    row: Row,
    rebalances: i64,
    /// Per partition, the longest time without a delivery over the whole churn: the worst.
    longest_gap: Duration,
    /// Partition-seconds stalled (see [`stalled_time`]).
    stalled: Duration,
}

/// Two steady members under load; ten times a third joins, gets partitions and leaves
/// (SIGTERM). `assignor` is the entry's; the calls go to the target's `path`.
async fn churn(scenario: &'static str, assignor: &str, path: &str) -> Churn {
    let target = Target::start();
    let topic = unique("churn");
    let group = unique("G");
    let ingest = Bigpipe::start_ready(&settings(&simple_config(&topic, 6, ""))).await;
    let entry = consumer_entry(&topic, &group, &format!("assignor = \"{assignor}\""));
    let config = consumer_process_config(&topic, 6, &entry);
    let mut steady: Vec<Process> = (0..2).map(|_| Process::spawn(&config)).collect();
    let refs: Vec<&Process> = steady.iter().collect();
    poll("2 members cover 6", || async {
        all_cover(&refs, 6).await.then_some(())
    })
    .await;
    let generation_before = poll("both in one generation", || async {
        let (a, b) = (
            generation(refs[0], &group, &topic).await?,
            generation(refs[1], &group, &topic).await?,
        );
        (a == b && a > 0).then_some(a)
    })
    .await;
    let load = Load::start(ingest.base.clone(), target.url(path), 40, None);
    poll("load flowing", || async { (target.count() >= 40).then_some(()) }).await;
    let started = Instant::now();
    for round in 0..10 {
        let mut joiner = Process::spawn(&config);
        poll("joiner gets partitions", || async {
            joiner
                .partitions(0)
                .await
                .is_some_and(|p| !p.is_empty())
                .then_some(())
        })
        .await;
        joiner.signal("TERM");
        assert_eq!(joiner.wait(), Some(0), "round {round}");
    }
    poll("2 members cover 6 again", || async {
        all_cover(&refs, 6).await.then_some(())
    })
    .await;
    let settled = Instant::now();
    let recover = settled - started;
    let sent = load.stop().await;
    wait_delivered(&target, &sent.accepted).await;
    let received = target.received();
    let longest_gap = longest_gaps(&received, 6, started, settled)
        .into_values()
        .max()
        .unwrap_or_default();
    let stalled = stalled_time(&received, 6, started, settled);
    let mut generation_after = generation_before;
    for p in &refs {
        generation_after = generation_after.max(generation(p, &group, &topic).await.unwrap_or_default());
    }
    let row = Row::tally(scenario, &sent, &target, &Default::default(), recover);
    drop(refs);
    for p in &mut steady {
        p.signal("TERM");
        assert_eq!(p.wait(), Some(0));
    }
    ingest.stop().await;
    target.stop().await;
    let churn = Churn {
        row,
        rebalances: generation_after - generation_before,
        longest_gap,
        stalled,
    };
    eprintln!("{HEADER}");
    churn.row.print();
    println!(
        "REBALANCE {scenario}: settle={:.1} s rebalances={} longest per-partition gap {:.1} s \
         stalled partition-seconds {:.1}",
        recover.as_secs_f64(),
        churn.rebalances,
        churn.longest_gap.as_secs_f64(),
        churn.stalled.as_secs_f64()
    );
    churn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_members_joining_and_leaving_cooperatively_lose_nothing() {
    let _k = kafka().await;
    let c = churn(
        "10 members join and leave, cooperative-sticky",
        "cooperative-sticky",
        "/ok",
    )
    .await;
    assert_eq!(c.row.lost, 0);
    // A leave and the next join usually share a rebalance: at least one per round.
    assert!(c.rebalances >= 10, "rebalances {}", c.rebalances);
}

/// The baseline of the row above (and the fault suite's "10 members join and leave" row from
/// before cooperative rebalancing): eager `sticky`, where every rebalance stops every partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_members_joining_and_leaving_eagerly_lose_nothing() {
    let _k = kafka().await;
    let c = churn("10 members join and leave, sticky (eager)", "sticky", "/ok").await;
    assert_eq!(c.row.lost, 0);
    assert!(c.rebalances >= 10, "rebalances {}", c.rebalances);
}

/// With a target that takes 500 ms, an eager revoke waits for the calls in flight on every
/// partition; a cooperative one only on the partitions that move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_members_churning_over_a_slow_target_stall_less_cooperatively() {
    let _k = kafka().await;
    let eager = churn(
        "10 members join and leave, 500 ms target, sticky",
        "sticky",
        "/slow/500",
    )
    .await;
    let coop = churn(
        "10 members join and leave, 500 ms target, cooperative-sticky",
        "cooperative-sticky",
        "/slow/500",
    )
    .await;
    assert_eq!(eager.row.lost + coop.row.lost, 0);
    println!(
        "REBALANCE stalled partition-seconds, cooperative / eager: {:.2}",
        coop.stalled.as_secs_f64() / eager.stalled.as_secs_f64().max(0.001)
    );
}

/// Partition → client id of its owner, from `kafka-consumer-groups --describe` (rows of
/// `topic` only; `-` while unowned).
fn owners(group: &str, topic: &str) -> Option<BTreeMap<i32, String>> {
    let text = kafka_tool("consumer-groups", &bootstrap(), &["--describe", "--group", group])?;
    let mut owners = BTreeMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(1) == Some(&topic) && cols.len() >= 9 {
            owners.insert(cols[2].parse().ok()?, cols[8].to_owned());
        }
    }
    Some(owners)
}

/// Kafka's own console consumer (Java, `cooperative-sticky`) in the group.
struct JavaConsumer(Option<std::process::Child>);

impl JavaConsumer {
    fn start(group: &str, topic: &str) -> Self {
        let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh");
        let child = std::process::Command::new(script)
            .args(["tool", "console-consumer", "--bootstrap-server", &bootstrap()])
            .args(["--topic", topic, "--group", group])
            .args(["--consumer-property", "group.protocol=classic"])
            .args(["--consumer-property", "client.id=java-console"])
            .args([
                "--consumer-property",
                "partition.assignment.strategy=org.apache.kafka.clients.consumer.CooperativeStickyAssignor",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run the console consumer");
        Self(Some(child))
    }

    /// SIGTERM (the consumer leaves its group in a shutdown hook); returns what it logged.
    fn stop(mut self) -> String {
        let Some(child) = self.0.take() else {
            return String::new();
        };
        let pid = child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .ok();
        let out = child.wait_with_output().expect("console consumer exit");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for JavaConsumer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// The group's partitions are split between bigpipe's members and a Java consumer, with
/// bigpipe leading and then with the Java consumer leading: the protocol is Kafka's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_java_cooperative_consumer_shares_the_group_with_bigpipe() {
    let _k = kafka().await;
    let topic = unique("java");
    let group = unique("G");
    let entry = consumer_entry(&topic, &group, "");
    let config = consumer_process_config(&topic, 6, &entry);
    let spread = |want_java: bool| {
        let (group, topic) = (group.clone(), topic.clone());
        move || {
            let (group, topic) = (group.clone(), topic.clone());
            async move {
                let owners = tokio::task::spawn_blocking(move || owners(&group, &topic))
                    .await
                    .ok()??;
                let clients: std::collections::BTreeSet<&str> = owners.values().map(String::as_str).collect();
                let all_owned = owners.len() == 6 && !clients.contains("-");
                let java = clients.contains("java-console");
                (all_owned && java == want_java && clients.len() == if want_java { 2 } else { 1 })
                    .then_some(owners)
            }
        }
    };
    // bigpipe first: it leads, and assigns to the Java member too.
    let mut members: Vec<Process> = (0..2).map(|_| Process::spawn(&config)).collect();
    let refs: Vec<&Process> = members.iter().collect();
    poll("2 bigpipe members cover 6", || async {
        all_cover(&refs, 6).await.then_some(())
    })
    .await;
    let java = JavaConsumer::start(&group, &topic);
    let shared = poll("Java and bigpipe share the 6 partitions", spread(true)).await;
    eprintln!("owners with bigpipe leading: {shared:?}");
    let mut bigpipe_owned: Vec<i32> = Vec::new();
    for p in &refs {
        bigpipe_owned.extend(p.partitions(0).await.unwrap_or_default());
    }
    bigpipe_owned.sort_unstable();
    let java_owned: Vec<i32> = shared
        .iter()
        .filter(|(_, client)| client.as_str() == "java-console")
        .map(|(p, _)| *p)
        .collect();
    assert!(!java_owned.is_empty());
    assert!(
        java_owned.iter().all(|p| !bigpipe_owned.contains(p)),
        "{java_owned:?} / {bigpipe_owned:?}"
    );
    // bigpipe goes; the Java consumer takes everything and leads.
    drop(refs);
    for p in &mut members {
        p.signal("TERM");
        assert_eq!(p.wait(), Some(0));
    }
    poll("the Java consumer owns all 6", || async {
        let (group, topic) = (group.clone(), topic.clone());
        let owners = tokio::task::spawn_blocking(move || owners(&group, &topic))
            .await
            .ok()??;
        (owners.len() == 6 && owners.values().all(|c| c == "java-console")).then_some(())
    })
    .await;
    // bigpipe comes back into a group the Java consumer leads: it is handed partitions over
    // the cooperative two-step.
    let members: Vec<Process> = (0..2).map(|_| Process::spawn(&config)).collect();
    let refs: Vec<&Process> = members.iter().collect();
    let shared = poll("Java leads and shares the 6 partitions again", || async {
        let bigpipe_has = {
            let mut all = true;
            for p in &refs {
                all &= p.partitions(0).await.is_some_and(|v| !v.is_empty());
            }
            all
        };
        let owners = spread(true)().await?;
        let clients: std::collections::BTreeSet<&str> = owners.values().map(String::as_str).collect();
        (bigpipe_has && clients.len() == 2).then_some(owners)
    })
    .await;
    eprintln!("owners with Java leading: {shared:?}");
    let log = java.stop();
    assert!(
        !log.contains("ERROR") && !log.contains("Exception"),
        "the Java consumer logged errors:\n{log}"
    );
}
