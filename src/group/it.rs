//! The group member against a real Kafka (ignored by default; it needs a broker of its own).
//!
//! ```sh
//! BIGPIPE_KAFKA_PORT=9392 BIGPIPE_KAFKA_RUN=/tmp/group-kafka scripts/kafka.sh up
//! BIGPIPE_GROUP_IT_KAFKA=127.0.0.1:9392 cargo test --lib group::it -- --ignored --nocapture
//! ```
//!
//! Three members share a 6-partition topic, commit, are checked with Kafka's own
//! `kafka-consumer-groups` tool, then one leaves cleanly and one dies; the takeover times are
//! printed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{AssignorKind, GroupConfig, GroupEvent, GroupHandle, start};
use crate::kafka::wire::{self, TopicCreation, TopicSpec, admin};

const PARTITIONS: i32 = 6;
const RECORDS_PER_PARTITION: i64 = 10;
const SESSION: Duration = Duration::from_secs(6);

fn bootstrap() -> String {
    std::env::var("BIGPIPE_GROUP_IT_KAFKA").unwrap_or_else(|_| "127.0.0.1:9392".to_owned())
}

fn logger() -> slog::Logger {
    use slog::Drain;
    let decorator = slog_term::PlainSyncDecorator::new(slog_term::TestStdoutWriter);
    let drain = slog_term::FullFormat::new(decorator).build().fuse();
    let drain = slog::LevelFilter::new(drain, slog::Level::Info).fuse();
    slog::Logger::root(drain, slog::o!())
}

/// (generation, partitions) as the member's consumer sees them; `None` between generations.
type Owned = Option<(i32, Vec<i32>)>;

/// One member plus a minimal consumer: it tracks ownership and, on Revoke, commits
/// `4 + partition` for each revoked partition (proving commits work while revoking).
struct TestMember {
    handle: GroupHandle,
    stop: CancellationToken,
    driver: JoinHandle<()>,
    consumer: JoinHandle<()>,
    owned: watch::Receiver<Owned>,
}

fn start_member(i: usize, group: &str, topic: &str, journal: &Arc<Mutex<Vec<String>>>) -> TestMember {
    let config = GroupConfig {
        bootstrap: vec![bootstrap()],
        client_id: format!("bigpipe-it-{i}"),
        group_id: group.to_owned(),
        topic: topic.to_owned(),
        session_timeout: SESSION,
        heartbeat_interval: Duration::from_millis(500),
        rebalance_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(5),
        assignor: AssignorKind::Sticky,
        revoke_timeout: Duration::from_secs(5),
    };
    let stop = CancellationToken::new();
    let log = logger().new(slog::o!("member_no" => i));
    let (handle, mut events, driver) = start(config, log, stop.clone());
    let (tx, owned) = watch::channel(None);
    let journal = Arc::clone(journal);
    let commits = handle.clone();
    let consumer = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                GroupEvent::Assigned {
                    generation,
                    partitions,
                    ..
                } => {
                    journal
                        .lock()
                        .unwrap()
                        .push(format!("{i}: assigned g{generation} {partitions:?}"));
                    tx.send_replace(Some((generation, partitions)));
                }
                GroupEvent::Revoke { partitions, done } => {
                    tx.send_replace(None);
                    let offsets = partitions.iter().map(|&p| (p, 4 + i64::from(p))).collect();
                    let result = commits.commit(offsets).await;
                    journal
                        .lock()
                        .unwrap()
                        .push(format!("{i}: revoke {partitions:?}, commit {result:?}"));
                    assert!(result.is_ok(), "commit while revoking: {result:?}");
                    done.send(()).ok();
                }
                GroupEvent::Lost { partitions } => {
                    journal.lock().unwrap().push(format!("{i}: lost {partitions:?}"));
                    tx.send_replace(None);
                }
            }
        }
        journal.lock().unwrap().push(format!("{i}: events closed"));
    });
    TestMember {
        handle,
        stop,
        driver,
        consumer,
        owned,
    }
}

/// True when all `members` are in one generation and their partitions are disjoint and cover
/// every partition.
fn covers(members: &[&TestMember]) -> bool {
    let views: Vec<Owned> = members.iter().map(|m| m.owned.borrow().clone()).collect();
    let generations: BTreeSet<i32> = views.iter().flatten().map(|(g, _)| *g).collect();
    if views.iter().any(Option::is_none) || generations.len() != 1 {
        return false;
    }
    let mut seen = BTreeSet::new();
    for (_, parts) in views.iter().flatten() {
        for p in parts {
            if !seen.insert(*p) {
                return false;
            }
        }
    }
    seen == (0..PARTITIONS).collect()
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// Runs `scripts/kafka.sh tool consumer-groups ARGS` and returns its stdout.
async fn consumer_groups_tool(args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka.sh");
        let out = std::process::Command::new(script)
            .arg("tool")
            .arg("consumer-groups")
            .args(&args)
            .output()
            .expect("run scripts/kafka.sh");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "tool failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    })
    .await
    .expect("tool thread")
}

/// The tool's table as one map per row, keyed by the header line's column names (cells hold no
/// spaces; empty ones print as "-").
fn table(output: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = output.lines().skip_while(|l| !l.starts_with("GROUP "));
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let names: Vec<&str> = header.split_whitespace().collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            names
                .iter()
                .map(|n| (*n).to_owned())
                .zip(l.split_whitespace().map(str::to_owned))
                .collect()
        })
        .collect()
}

async fn create_topic_with_records(topic: &str) {
    let conn = wire::connect_any(&[bootstrap()], "group-it", Duration::from_secs(10))
        .await
        .expect("broker reachable (start it: see the module docs)");
    let spec = TopicSpec {
        name: topic.to_owned(),
        partitions: PARTITIONS,
        replication_factor: 1,
        configs: Vec::new(),
    };
    let created = admin::create_topics(&conn, &[spec], Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(created[0].1, TopicCreation::Created);
    let client = ClientBuilder::new(vec![bootstrap()]).build().await.unwrap();
    for p in 0..PARTITIONS {
        let partition = client
            .partition_client(topic, p, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let records = (0..RECORDS_PER_PARTITION)
            .map(|n| Record {
                key: None,
                value: Some(format!("record {n}").into_bytes()),
                headers: BTreeMap::new(),
                timestamp: chrono::Utc::now(),
            })
            .collect();
        partition
            .produce(records, Compression::NoCompression)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs its own Kafka: see the module docs"]
async fn three_members_share_commit_show_in_kafka_tools_and_take_over() {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let topic = format!("group-it-{id}");
    let group = format!("group-it-g-{id}");
    create_topic_with_records(&topic).await;
    let journal = Arc::new(Mutex::new(Vec::new()));

    // 1. Three members split the 6 partitions.
    let started = Instant::now();
    let members: Vec<TestMember> = (0..3)
        .map(|i| start_member(i, &group, &topic, &journal))
        .collect();
    let all: Vec<&TestMember> = members.iter().collect();
    wait_until("3 members cover 6 partitions", Duration::from_secs(30), || {
        covers(&all)
    })
    .await;
    let first_join = started.elapsed();
    for m in &members {
        let (_, parts) = m.owned.borrow().clone().unwrap();
        assert_eq!(parts.len(), 2, "sticky balances 6 over 3");
        assert!(m.handle.current().is_some());
    }

    // 2. Each commits `3 + p` for its partitions; OffsetFetch sees all of them.
    for m in &members {
        let (_, parts) = m.owned.borrow().clone().unwrap();
        let offsets = parts.iter().map(|&p| (p, 3 + i64::from(p))).collect();
        m.handle.commit(offsets).await.unwrap();
    }
    let committed = members[0]
        .handle
        .committed((0..PARTITIONS).collect())
        .await
        .unwrap();
    let expected: BTreeMap<i32, Option<i64>> = (0..PARTITIONS).map(|p| (p, Some(3 + i64::from(p)))).collect();
    assert_eq!(committed, expected);

    // 3. Kafka's own tool shows our members, their partitions, the offsets and the lag.
    let base = vec![
        "--bootstrap-server".to_owned(),
        bootstrap(),
        "--describe".to_owned(),
        "--group".to_owned(),
        group.clone(),
    ];
    let members_view =
        consumer_groups_tool([base.clone(), vec!["--members".into(), "--verbose".into()]].concat()).await;
    println!("--- kafka-consumer-groups --describe --members --verbose\n{members_view}");
    let rows = table(&members_view);
    for i in 0..3 {
        let client = format!("bigpipe-it-{i}");
        let row = rows
            .iter()
            .find(|r| r["CLIENT-ID"] == client)
            .unwrap_or_else(|| panic!("member {client} not listed:\n{members_view}"));
        assert_eq!(row["#PARTITIONS"], "2", "{row:?}");
        // "ASSIGNMENT" before Kafka 4.0, "CURRENT-ASSIGNMENT" since (KIP-848 columns).
        let assignment = row
            .get("CURRENT-ASSIGNMENT")
            .or_else(|| row.get("ASSIGNMENT"))
            .unwrap();
        assert!(assignment.starts_with(&topic), "{row:?}");
    }
    let offsets_view = consumer_groups_tool(base).await;
    println!("--- kafka-consumer-groups --describe\n{offsets_view}");
    let rows = table(&offsets_view);
    for row in &rows {
        assert_eq!(row["TOPIC"], topic, "{row:?}");
        let p: i64 = row["PARTITION"].parse().unwrap();
        assert_eq!(row["CURRENT-OFFSET"], (3 + p).to_string(), "{row:?}");
        assert_eq!(
            row["LOG-END-OFFSET"],
            RECORDS_PER_PARTITION.to_string(),
            "{row:?}"
        );
        assert_eq!(row["LAG"], (RECORDS_PER_PARTITION - 3 - p).to_string(), "{row:?}");
        assert!(row["CLIENT-ID"].starts_with("bigpipe-it-"), "{row:?}");
    }
    assert_eq!(rows.len(), PARTITIONS as usize, "{offsets_view}");

    // 4. A clean stop (Revoke + commit + LeaveGroup): the others take over at once.
    let mut members = members.into_iter();
    let m0 = members.next().unwrap();
    let m1 = members.next().unwrap();
    let m2 = members.next().unwrap();
    m0.stop.cancel();
    let pair = [&m1, &m2];
    let clean_takeover = wait_until(
        "2 members cover 6 after a LeaveGroup",
        Duration::from_secs(20),
        || covers(&pair),
    )
    .await;
    tokio::time::timeout(Duration::from_secs(10), m0.driver)
        .await
        .expect("stopped member ends")
        .unwrap();
    m0.consumer.await.unwrap();
    // The revoke commits (4 + p) of every member went through.
    let committed = m2.handle.committed((0..PARTITIONS).collect()).await.unwrap();
    let expected: BTreeMap<i32, Option<i64>> = (0..PARTITIONS).map(|p| (p, Some(4 + i64::from(p)))).collect();
    assert_eq!(committed, expected);

    // 5. A dead member (no LeaveGroup, no heartbeats): takeover after the session timeout.
    m1.driver.abort();
    m1.consumer.abort();
    let one = [&m2];
    let crash_takeover = wait_until("1 member covers 6 after a crash", SESSION * 4, || covers(&one)).await;

    println!("--- timeline\n{}", journal.lock().unwrap().join("\n"));
    println!(
        "first join of 3 members: {first_join:?}\nclean stop (LeaveGroup) takeover: {clean_takeover:?} \
         (stop → both survivors assigned)\ncrash (abort, session {SESSION:?}) takeover: {crash_takeover:?}"
    );
    assert!(clean_takeover < Duration::from_secs(5), "{clean_takeover:?}");
    assert!(
        crash_takeover >= SESSION - Duration::from_secs(1),
        "{crash_takeover:?}"
    );
    assert!(crash_takeover < SESSION * 3, "{crash_takeover:?}");

    m2.stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), m2.driver)
        .await
        .expect("last member ends")
        .unwrap();
}

/// Runs `scripts/kafka.sh COMMAND` for the broker of `BIGPIPE_GROUP_IT_KAFKA_RUN`.
async fn broker_control(command: &'static str, run_dir: String, port: String) {
    tokio::task::spawn_blocking(move || {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka.sh");
        let out = std::process::Command::new(script)
            .arg(command)
            .env("BIGPIPE_KAFKA_RUN", run_dir)
            .env("BIGPIPE_KAFKA_PORT", port)
            .output()
            .expect("run scripts/kafka.sh");
        assert!(
            out.status.success(),
            "kafka.sh {command} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    })
    .await
    .expect("kafka.sh thread");
}

/// Stops the broker under a stable member and starts it again: the member must give its
/// partitions up (Lost) about one session timeout after its last heartbeat, keep looking for
/// the coordinator, and rejoin once it is back.
///
/// It stops a broker, so it only runs when `BIGPIPE_GROUP_IT_KAFKA_RUN` names the run dir of
/// a broker of your own (the `BIGPIPE_KAFKA_RUN` it was started with), never the shared one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stops and restarts its own Kafka: see the docs"]
async fn coordinator_outage_loses_partitions_after_the_session_then_rejoins() {
    let run_dir = std::env::var("BIGPIPE_GROUP_IT_KAFKA_RUN")
        .expect("set BIGPIPE_GROUP_IT_KAFKA_RUN to the run dir of your own broker");
    let port = bootstrap().rsplit(':').next().unwrap().to_owned();
    assert_ne!(port, "9092", "refusing to stop the shared broker");
    let id = uuid::Uuid::now_v7().simple().to_string();
    let topic = format!("group-it-outage-{id}");
    create_topic_with_records(&topic).await;
    let journal = Arc::new(Mutex::new(Vec::new()));
    let member = start_member(0, &format!("group-it-outage-g-{id}"), &topic, &journal);
    let solo = [&member];
    wait_until("1 member owns 6", Duration::from_secs(30), || covers(&solo)).await;
    let generation = member.owned.borrow().clone().unwrap().0;

    let down = Instant::now();
    broker_control("stop", run_dir.clone(), port.clone()).await;
    let stop_took = down.elapsed();
    let lost = wait_until("partitions lost", SESSION * 3, || {
        journal.lock().unwrap().iter().any(|l| l.contains("lost"))
    })
    .await
        + stop_took;
    assert!(member.owned.borrow().is_none());

    let up = Instant::now();
    broker_control("start", run_dir, port).await;
    let start_took = up.elapsed();
    let rejoined = wait_until("rejoined after the outage", Duration::from_secs(60), || {
        covers(&solo)
            && member
                .owned
                .borrow()
                .as_ref()
                .is_some_and(|(g, _)| *g > generation)
    })
    .await
        + start_took;

    println!("--- timeline\n{}", journal.lock().unwrap().join("\n"));
    println!(
        "broker stop took {stop_took:?}; partitions Lost {lost:?} after the stop began (session \
         {SESSION:?})\nbroker start took {start_took:?}; member reassigned {rejoined:?} after the \
         start began"
    );
    assert!(lost >= SESSION - Duration::from_secs(1), "{lost:?}");
    assert!(lost < SESSION + stop_took + Duration::from_secs(2), "{lost:?}");

    member.stop.cancel();
    tokio::time::timeout(Duration::from_secs(20), member.driver)
        .await
        .expect("member ends")
        .unwrap();
}
