//! Rebalancing under load: static members restarted one by one, counted by call id and, per
//! partition, by the longest pause in delivery.

use std::collections::BTreeMap;
use std::time::Duration;

use bigpipe::producer::partitioner::go_hash;
use tokio::time::Instant;

use super::{HEADER, all_cover, wait_delivered};
use crate::group::consumer_process_config;
use crate::helpers::load::{Load, Row};
use crate::helpers::process::Process;
use crate::helpers::target::{Received, Target};
use crate::helpers::*;

/// The keys [`Load`] spreads its calls over: call `load-{i}` has key `k{i % 17}`.
const LOAD_KEYS: u64 = 17;

/// A consumer entry whose session outlasts a process restart, even on a loaded CI machine.
fn static_entry(topic: &str, group: &str) -> String {
    format!(
        "[[kafka.consumer.list]]\ntopic = \"{topic}\"\ngroupId = \"{group}\"\nrateLimit = 2000\n\
         concurrency = 20\nretries = 2\ntimeout = 3000\nretryBackoff = 20\nretryBackoffMax = 200\n\
         sessionTimeout = 10000\nheartbeatInterval = 1000\ncommitInterval = 200\nretryTiers = []\n"
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
            let gap = t.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
            (p, gap)
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
async fn rolling_restart(scenario: &'static str, instance_ids: Option<[&str; 3]>, signal: &str) -> Restart {
    let target = Target::start();
    let topic = unique("rolling");
    let group = unique("G");
    let ingest = Bigpipe::start_ready(&settings(&simple_config(&topic, 6, ""))).await;
    let config = consumer_process_config(&topic, 6, &static_entry(&topic, &group));
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
        let before = target.count();
        poll("load continues", || async {
            (target.count() >= before + 100).then_some(())
        })
        .await;
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
    let r = rolling_restart("rolling restart (SIGTERM), 3 static members", Some(ids), "TERM").await;
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
    let r = rolling_restart("rolling restart (SIGKILL), 3 static members", Some(ids), "KILL").await;
    assert_eq!(
        r.rebalances, 0,
        "the restart takes the dead member's place at once"
    );
    assert_eq!(r.row.lost, 0);
    // Only what a killed member delivered but had not committed comes again.
    assert!(r.row.duplicated <= 100, "duplicates {}", r.row.duplicated);
    assert_others_kept_going(&r);
}

/// Steady load gives each partition a call every ~0.1-0.3 s; a rebalance stops them for the
/// time the group takes to agree again. The bound leaves room for a loaded CI machine.
fn assert_others_kept_going(r: &Restart) {
    assert!(
        r.others_gap < Duration::from_millis(2500),
        "partitions of members not restarting paused {:?}",
        r.others_gap
    );
}

/// The baselines of the rows above, with dynamic members, and proof that the generation count
/// sees rebalances: a SIGTERM leaves the group and the restart joins it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_three_dynamic_members_rebalances_on_every_restart() {
    let _k = kafka().await;
    let r = rolling_restart("rolling restart (SIGTERM), 3 dynamic members", None, "TERM").await;
    assert!(
        r.rebalances >= 3,
        "one rebalance or more per restart: {}",
        r.rebalances
    );
    assert_eq!(r.row.lost, 0);
}

/// A killed dynamic member's partitions wait out its session, and every other partition waits
/// too while the group rebalances around the restart (eager protocol). Duplicates are many here:
/// each kill comes right after the previous stall, while its member is still delivering the
/// backlog faster than its commits (every 200 ms) follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_members_killed_and_restarted_in_turn_stall_the_group() {
    let _k = kafka().await;
    let r = rolling_restart("rolling restart (SIGKILL), 3 dynamic members", None, "KILL").await;
    assert!(
        r.rebalances >= 3,
        "one rebalance or more per restart: {}",
        r.rebalances
    );
    assert_eq!(r.row.lost, 0);
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
