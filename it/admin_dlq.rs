//! The admin API's read side and replay (issue 11, must-have 3): dead letters listed (filters,
//! paging that walks every letter once), shown, counted by a dry run, replayed once (each call
//! delivered again with its call id and `X-Bigpipe-Replay-Of`; a second replay delivers
//! nothing; `force` replays again); a group described as `kafka-consumer-groups --describe`
//! describes it; and `bigpipe admin ...` against a live bigpipe.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use bigpipe::producer::partitioner::go_hash;
use serde_json::{Value, json};

use crate::helpers::target::Target;
use crate::helpers::*;

const TOKEN: &str = "it-admin-token-0123456789";
const PARTITIONS: i32 = 3;
/// Calls dead-lettered per test.
const CALLS: usize = 12;

/// A config: `topic` with 3 partitions, one entry of `group` with two attempts, no retry
/// tiers, one call in flight (so a partition delivers in order), the admin token, and a
/// control topic of the test's own.
fn config(topic: &str, group: &str, control: &str) -> String {
    simple_config(
        topic,
        PARTITIONS,
        &format!(
            "[http.admin]\ntoken = \"{TOKEN}\"\n\n[admin.control]\ntopic = \"{control}\"\n\n\
             [[kafka.consumer.list]]\ntopic = \"{topic}\"\ngroupId = \"{group}\"\nrateLimit = 2000\n\
             concurrency = 1\nretries = 1\nretryBackoff = 10\nretryBackoffMax = 10\nretryTiers = []\n\
             sessionTimeout = 6000\ncommitInterval = 200\n"
        ),
    )
}

/// The admin API of an in-process bigpipe.
struct Admin<'a> {
    bp: &'a Bigpipe,
}

impl Admin<'_> {
    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let r = req
            .bearer_auth(TOKEN)
            .header("X-Bigpipe-Operator", "it-operator")
            .send()
            .await
            .expect("admin request");
        let status = r.status().as_u16();
        let body = r.bytes().await.expect("body");
        let v: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| panic!("not JSON ({status}): {}", String::from_utf8_lossy(&body)));
        (status, v)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.bp.http.get(format!("{}{path}", self.bp.admin)))
            .await
    }

    async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.send(
            self.bp
                .http
                .post(format!("{}{path}", self.bp.admin))
                .body(body.to_owned()),
        )
        .await
    }

    /// A successful answer's data.
    async fn data(&self, path: &str) -> Value {
        let (status, v) = self.get(path).await;
        assert_eq!((status, &v["errno"]), (200, &json!(0)), "{path}: {v}");
        v["data"].clone()
    }

    async fn replay(&self, group: &str, body: Value) -> Value {
        let path = format!("/admin/v1/groups/{group}/deadletters/replay");
        let (status, v) = self.post(&path, &body.to_string()).await;
        assert_eq!(status, 200, "{body}: {v}");
        v["data"].clone()
    }
}

/// Every page of the list with `query`, `limit` letters a page; the ids seen, in order.
async fn walk(admin: &Admin<'_>, group: &str, query: &str, limit: usize) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for pages in 1..=200 {
        let mut path = format!("/admin/v1/groups/{group}/deadletters?limit={limit}{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let data = admin.data(&path).await;
        let page = data["items"].as_array().expect("items");
        assert!(page.len() <= limit, "{data}");
        items.extend(page.iter().cloned());
        match data["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (items, pages),
        }
    }
    panic!("paging did not end");
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Keys that the Go hash puts on partitions 0, 1, 2 (sentinels, one per partition).
fn key_for(partition: i32) -> String {
    (0..)
        .map(|i| format!("sentinel-{i}"))
        .find(|k| go_hash(k, PARTITIONS) == partition)
        .expect("a key for every partition")
}

/// Sends a sentinel call on every partition and waits until the target has it with 200: with
/// one call in flight, everything before it on its partition was delivered first.
async fn caught_up(bp: &Bigpipe, target: &Target, round: &str) {
    let mut sent = Vec::new();
    for p in 0..PARTITIONS {
        let (status, env) = bp
            .call(&call_body(
                &target.url(&format!("/ok/sentinel/{round}")),
                "s",
                &key_for(p),
            ))
            .await;
        assert_eq!(status, 200, "{env}");
        sent.push(env["data"].as_str().unwrap().to_owned());
    }
    poll(&format!("sentinels of {round} delivered"), || async {
        let got = target.received();
        sent.iter()
            .all(|id| got.iter().any(|r| r.call_id() == *id && r.status == 200))
            .then_some(())
    })
    .await;
}

/// 200 deliveries per call id.
fn delivered(target: &Target) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in target.received().iter().filter(|r| r.status == 200) {
        *out.entry(r.call_id()).or_default() += 1;
    }
    out
}

/// Starts bigpipe with a target that answers 503, sends [`CALLS`] calls and waits until all
/// are dead-lettered. Returns the call ids.
async fn dead_lettered(bp: &Bigpipe, target: &Target, group: &str) -> BTreeSet<String> {
    target.set_down(true);
    let mut sent = BTreeSet::new();
    for i in 0..CALLS {
        let (status, env) = bp
            .call(&call_body(
                &target.url(&format!("/ok/{i}")),
                &format!("call {i}"),
                &format!("key-{i}"),
            ))
            .await;
        assert_eq!(status, 200, "{env}");
        sent.insert(env["data"].as_str().unwrap().to_owned());
    }
    poll("every call dead-lettered", || async {
        let stats = bp.get("/stats").await.1;
        let entry = stats["data"]["consumerStats"]
            .as_array()?
            .iter()
            .find(|c| c["groupId"] == group)?
            .clone();
        (entry["deadLettered"].as_u64()? >= CALLS as u64).then_some(())
    })
    .await;
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_are_listed_shown_and_replayed_once() {
    let _kafka = kafka().await;
    let topic = unique("it-adm-dlq");
    let group = unique("g-adm-dlq");
    let dlq = format!("{topic}.dlq");
    let target = Target::start();
    let bp = Bigpipe::start_ready(&settings(&config(&topic, &group, &unique("it-adm-ctl")))).await;
    let admin = Admin { bp: &bp };
    let sent = dead_lettered(&bp, &target, &group).await;

    // The list, 5 a page: every letter once, each one of our calls.
    let (all, pages) = walk(&admin, &group, "", 5).await;
    let all_ids = ids(&all);
    assert_eq!(all_ids.len(), CALLS, "{all_ids:?}");
    assert_eq!(
        all_ids.iter().collect::<BTreeSet<_>>().len(),
        CALLS,
        "{all_ids:?}"
    );
    assert!(pages >= 3, "{CALLS} letters at 5 a page took {pages} pages");
    let call_ids: BTreeSet<String> = all
        .iter()
        .map(|i| i["callId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(call_ids, sent);
    let first = &all[0];
    assert_eq!(first["status"], 503, "{first}");
    assert_eq!(first["attempts"], 2, "{first}");
    assert_eq!(first["replayed"], Value::Null, "{first}");
    assert_eq!(first["host"], json!(target.base), "{first}");

    // Filters: each selects all or none of these letters.
    let authority = target.base.trim_start_matches("http://");
    let now_ms = chrono::Utc::now().timestamp_millis();
    for (query, expected) in [
        ("&reason=http%20503".to_owned(), CALLS),
        ("&reason=timeout".to_owned(), 0),
        ("&status=5xx".to_owned(), CALLS),
        ("&status=500".to_owned(), 0),
        (format!("&host={authority}"), CALLS),
        ("&host=elsewhere.example".to_owned(), 0),
        (format!("&until={now_ms}"), CALLS),
        (format!("&since={}", now_ms + 60_000), 0),
    ] {
        let (items, _) = walk(&admin, &group, &query, 500).await;
        assert_eq!(items.len(), expected, "{query}");
    }

    // One letter in full.
    let id = first["id"].as_str().unwrap();
    let one = admin
        .data(&format!("/admin/v1/groups/{group}/deadletters/{id}"))
        .await;
    assert_eq!(one["callId"], first["callId"]);
    assert_eq!(one["headers"]["bigpipe-dlq-status"], "503", "{one}");
    assert_eq!(
        one["headers"]["bigpipe-dlq-source"]
            .as_str()
            .map(|s| s.starts_with(&topic)),
        Some(true)
    );
    let value: Value = serde_json::from_str(one["value"].as_str().expect("value")).expect("call JSON");
    assert!(
        value["Url"].as_str().unwrap().starts_with(&target.base),
        "{value}"
    );

    // A dry run counts and writes nothing.
    let client = client().await;
    let main_before = count_records(&client, &topic, PARTITIONS).await;
    let dry = admin.replay(&group, json!({"filter": {}, "dryRun": true})).await;
    assert_eq!(
        (
            dry["matched"].as_u64(),
            dry["replayed"].as_u64(),
            dry["dryRun"].as_bool()
        ),
        (Some(CALLS as u64), Some(CALLS as u64), Some(true)),
        "{dry}"
    );
    assert_eq!(
        count_records(&client, &topic, PARTITIONS).await,
        main_before,
        "a dry run wrote"
    );

    // The target is fixed: replay everything.
    target.set_down(false);
    let done = admin.replay(&group, json!({"filter": {"status": 503}})).await;
    assert_eq!(
        (
            done["matched"].as_u64(),
            done["replayed"].as_u64(),
            done["alreadyReplayed"].as_u64()
        ),
        (Some(CALLS as u64), Some(CALLS as u64), Some(0)),
        "{done}"
    );
    poll("every replayed call delivered", || async {
        let got = delivered(&target);
        sent.iter().all(|id| got.contains_key(id)).then_some(())
    })
    .await;
    for r in target
        .received()
        .iter()
        .filter(|r| r.status == 200 && sent.contains(&r.call_id()))
    {
        let of = r.header("x-bigpipe-replay-of").expect("replay header");
        assert!(of.starts_with(&format!("{dlq}/")), "{of}");
    }
    // The list shows who replayed.
    let listed = admin
        .data(&format!("/admin/v1/groups/{group}/deadletters?limit=500"))
        .await;
    for item in listed["items"].as_array().unwrap() {
        assert_eq!(item["replayed"]["count"], 1, "{item}");
        assert_eq!(item["replayed"]["by"], "it-operator", "{item}");
    }

    // Again: nothing replayed, nothing delivered twice.
    let again = admin.replay(&group, json!({"ids": all_ids})).await;
    assert_eq!(
        (again["replayed"].as_u64(), again["alreadyReplayed"].as_u64()),
        (Some(0), Some(CALLS as u64)),
        "{again}"
    );
    caught_up(&bp, &target, "after-second-replay").await;
    let got = delivered(&target);
    for id in &sent {
        assert_eq!(got.get(id), Some(&1), "{id} delivered {:?} times", got.get(id));
    }

    // Forced: two of them once more.
    let forced = admin
        .replay(&group, json!({"ids": &all_ids[..2], "force": true}))
        .await;
    assert_eq!(forced["replayed"].as_u64(), Some(2), "{forced}");
    caught_up(&bp, &target, "after-force").await;
    let got = delivered(&target);
    let twice: Vec<&String> = sent.iter().filter(|id| got.get(*id) == Some(&2)).collect();
    assert_eq!(twice.len(), 2, "{got:?}");
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_admin_input_gets_a_4xx_envelope() {
    let _kafka = kafka().await;
    let topic = unique("it-adm-bad");
    let group = unique("g-adm-bad");
    let bp = Bigpipe::start_ready(&settings(&config(&topic, &group, &unique("it-adm-ctl")))).await;
    let admin = Admin { bp: &bp };
    let dl = format!("/admin/v1/groups/{group}/deadletters");
    let gets = [
        (format!("{dl}?cursor=garbage!"), 400),
        (format!("{dl}?cursor=djE7MDotNQ"), 400), // "v1;0:-5"
        (format!("{dl}?limit=0"), 400),
        (format!("{dl}?limit=501"), 400),
        (format!("{dl}?limit=ten"), 400),
        (format!("{dl}?status=42"), 400),
        (format!("{dl}?since=yesterday"), 400),
        (format!("{dl}?since=10&until=5"), 400),
        (format!("{dl}?colour=red"), 400),
        (format!("{dl}/x"), 400),
        (format!("{dl}/1-2-3"), 400),
        (format!("{dl}/-1-2"), 400),
        (format!("{dl}/999-0"), 404),
        (format!("{dl}/0-999999"), 404),
        ("/admin/v1/groups/no-such-group/deadletters".to_owned(), 404),
        ("/admin/v1/groups/no-such-group".to_owned(), 404),
        (format!("/admin/v1/groups/{group}?topic=other"), 404),
        (format!("/admin/v1/groups/{group}?x=1"), 400),
        ("/admin/v1/groups?x=1".to_owned(), 400),
    ];
    for (path, want) in gets {
        let (status, v) = admin.get(&path).await;
        assert_eq!(status, want, "{path}: {v}");
        assert_eq!(v["errno"], -1, "{path}: {v}");
        assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{path}: {v}");
    }
    let replay = format!("{dl}/replay");
    let too_many: Vec<String> = (0..501).map(|i| format!("0-{i}")).collect();
    let posts = [
        ("not json".to_owned(), 400),
        ("{}".to_owned(), 400),
        (json!({"ids": ["0-1"], "filter": {}}).to_string(), 400),
        (json!({"ids": []}).to_string(), 400),
        (json!({"ids": ["zero"]}).to_string(), 400),
        (json!({"ids": too_many}).to_string(), 400),
        (json!({"ids": ["0-1"], "cursor": "x"}).to_string(), 400),
        (json!({"filter": {"status": "9xx"}}).to_string(), 400),
        (json!({"filter": {"colour": "red"}}).to_string(), 400),
        (json!({"filter": {}, "dryRun": "yes"}).to_string(), 400),
        (json!({"filter": {}, "cursor": "%%%"}).to_string(), 400),
        (format!("{{\"ids\":[\"{}\"]}}", "9".repeat(70_000)), 413),
    ];
    for (body, want) in posts {
        let (status, v) = admin.post(&replay, &body).await;
        assert_eq!(status, want, "{}: {v}", &body[..body.len().min(80)]);
        assert_eq!(v["errno"], -1, "{v}");
    }
    // Without the token: 401, before anything else.
    let r = bp.http.get(format!("{}{dl}", bp.admin)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    bp.stop().await;
}

/// Column `name` of each data row of `kafka-consumer-groups --describe` output, by partition.
fn tool_column(text: &str, topic: &str, name: &str) -> BTreeMap<i32, String> {
    let mut lines = text.lines().skip_while(|l| !l.contains("PARTITION"));
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_else(|| panic!("no header in:\n{text}"))
        .split_whitespace()
        .collect();
    let at = |n: &str| {
        header
            .iter()
            .position(|h| *h == n)
            .unwrap_or_else(|| panic!("{n} in {header:?}"))
    };
    let (t, p, c) = (at("TOPIC"), at("PARTITION"), at(name));
    lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols.get(t) == Some(&topic))
        .map(|cols| (cols[p].parse().unwrap(), cols[c].to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_is_described_as_kafka_describes_it() {
    let _kafka = kafka().await;
    let topic = unique("it-adm-desc");
    let group = unique("g-adm-desc");
    let control = unique("it-adm-ctl");
    let target = Target::start();
    let bp = Bigpipe::start_ready(&settings(&config(&topic, &group, &control))).await;
    let admin = Admin { bp: &bp };
    for i in 0..9 {
        let (status, env) = bp
            .call(&call_body(&target.url("/ok"), "x", &format!("k{i}")))
            .await;
        assert_eq!(status, 200, "{env}");
    }
    poll("9 calls delivered", || async {
        (target.count() >= 9).then_some(())
    })
    .await;

    let groups = admin.data("/admin/v1/groups").await;
    assert_eq!(
        groups["groups"],
        json!([{"group": group, "topic": topic, "paused": false, "deadLetterTopic": format!("{topic}.dlq")}])
    );
    // Stable, everything committed: what our API and Kafka's tool say must agree.
    let ours = poll("group stable and committed", || async {
        let d = admin.data(&format!("/admin/v1/groups/{group}")).await;
        let rows = d["partitions"].as_array()?;
        let done = d["state"] == "Stable"
            && rows.len() == PARTITIONS as usize
            && rows
                .iter()
                .all(|r| r["lag"] == 0 && r["committed"].is_i64() && r["owner"].is_string());
        done.then_some(d)
    })
    .await;
    let text = kafka_tool(
        "consumer-groups",
        &bootstrap(),
        &["--describe", "--group", &group],
    )
    .expect("kafka-consumer-groups.sh runs");
    let committed = tool_column(&text, &topic, "CURRENT-OFFSET");
    let ends = tool_column(&text, &topic, "LOG-END-OFFSET");
    let owners = tool_column(&text, &topic, "CONSUMER-ID");
    assert_eq!(committed.len(), PARTITIONS as usize, "{text}");
    for row in ours["partitions"].as_array().unwrap() {
        let p = row["partition"].as_i64().unwrap() as i32;
        assert_eq!(
            row["committed"].to_string(),
            committed[&p],
            "partition {p}\n{text}\n{ours}"
        );
        assert_eq!(
            row["logEnd"].to_string(),
            ends[&p],
            "partition {p}\n{text}\n{ours}"
        );
        assert_eq!(
            row["owner"].as_str(),
            Some(owners[&p].as_str()),
            "partition {p}\n{text}\n{ours}"
        );
        // This process owns every partition: its own view is there too.
        assert_eq!(row["local"]["stalled"], false, "{row}");
    }
    let members = ours["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{ours}");
    assert_eq!(members[0]["partitions"], json!([0, 1, 2]), "{ours}");
    assert!(
        !ours["protocol"].as_str().unwrap_or_default().is_empty(),
        "{ours}"
    );

    // A pause written to the control topic (by any process) shows in the list and describe.
    let stop = tokio_util::sync::CancellationToken::new();
    let other = other_process_control(&control, &stop);
    poll("the other control reader caught up", || async {
        other.caught_up().then_some(())
    })
    .await;
    other
        .put(
            &format!("pause/{group}/{topic}"),
            json!({"paused": true, "by": "it"}),
        )
        .await
        .expect("pause");
    poll("the pause shows", || async {
        let g = admin.data("/admin/v1/groups").await;
        (g["groups"][0]["paused"] == true).then_some(())
    })
    .await;
    assert_eq!(
        admin.data(&format!("/admin/v1/groups/{group}")).await["paused"],
        true
    );
    stop.cancel();
    bp.stop().await;
    target.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_unreachable_is_a_bounded_503() {
    // No broker at this address: the describe answers 503 with why, within its bound.
    let port = process::free_port();
    let text = config("it-adm-none", "g-adm-none", "it-adm-ctl-none")
        .replace("{bootstrap}", &format!("127.0.0.1:{port}"))
        .replace("[kafka]\n", "[kafka]\nrequest.timeout.ms = 1000\n");
    let s = match bigpipe::config::load_from_str(&text, bigpipe::config::Format::Toml) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let bp = Bigpipe::start(&s);
    let admin = Admin { bp: &bp };
    let started = tokio::time::Instant::now();
    let (status, v) = admin.get("/admin/v1/groups/g-adm-none").await;
    assert_eq!(status, 503, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("kafka"), "{v}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    bp.stop().await;
}

/// A `Control` of its own on `topic`, as another bigpipe process has.
fn other_process_control(
    topic: &str,
    stop: &tokio_util::sync::CancellationToken,
) -> std::sync::Arc<bigpipe::control::Control> {
    use bigpipe::kafka::{client::KafkaClient, connect::KafkaConnect};
    let timeout = std::time::Duration::from_secs(10);
    let client = std::sync::Arc::new(KafkaClient::new(KafkaConnect::plaintext(
        vec![bootstrap()],
        "it-adm",
        timeout,
    )));
    let control = bigpipe::control::Control::new(topic.to_owned(), std::sync::Arc::clone(&client), timeout);
    let reader = bigpipe::control::reader::ControlReader {
        control: std::sync::Arc::clone(&control),
        client,
        log: test_logger(),
    };
    tokio::spawn(reader.run(stop.clone()));
    control
}

/// `bigpipe --config <file> admin ...`; exit code and stdout+stderr.
fn cli(config: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bigpipe"))
        .arg("--config")
        .arg(config)
        .arg("admin")
        .args(args)
        .env("USER", "it-cli")
        .output()
        .expect("run bigpipe admin");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_lists_and_dry_runs_against_a_live_bigpipe() {
    let _kafka = kafka().await;
    let topic = unique("it-adm-cli");
    let group = unique("g-adm-cli");
    let control = unique("it-adm-ctl");
    let target = Target::start();
    let bp = Bigpipe::start_ready(&settings(&config(&topic, &group, &control))).await;
    let sent = dead_lettered(&bp, &target, &group).await;

    // The CLI's config names the admin listener and its token, as an operator's file would.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bigpipe.toml");
    let port = bp.admin.rsplit(':').next().unwrap();
    let text = config(&topic, &group, &control)
        .replace("{bootstrap}", &bootstrap())
        .replace("[http.admin]\n", &format!("[http.admin]\nport = {port}\n"));
    std::fs::write(&path, text).unwrap();

    let (code, out) = cli(&path, &["groups"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&group) && out.contains(&format!("{topic}.dlq")),
        "{out}"
    );

    let (code, out) = cli(&path, &["deadletters", "list", &group, "--limit", "5", "--all"]);
    assert_eq!(code, 0, "{out}");
    for id in &sent {
        assert_eq!(out.matches(id.as_str()).count(), 1, "{id} in:\n{out}");
    }
    assert!(out.contains(&format!("{CALLS} dead letters")), "{out}");

    let (code, out) = cli(
        &path,
        &["--json", "deadletters", "list", &group, "--status", "500"],
    );
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(v["items"], json!([]), "{out}");

    let (code, out) = cli(
        &path,
        &["deadletters", "replay", &group, "--status", "5xx", "--dry-run"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "dry run: matched {CALLS}, replayed {CALLS}, already replayed 0"
        )),
        "{out}"
    );

    let (code, out) = cli(&path, &["describe", &group]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("state Stable") && out.contains("PARTITION  COMMITTED"),
        "{out}"
    );

    // Steering through the CLI: pause shows in the list, resume clears it.
    let (code, out) = cli(&path, &["pause", &group]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(": paused"), "{out}");
    let (_, out) = cli(&path, &["--json", "groups"]);
    let v: Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(v["groups"][0]["paused"], true, "{out}");
    let (code, out) = cli(&path, &["resume", &group]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(": running"), "{out}");

    // Errors: the server's message and a non-zero exit.
    let (code, out) = cli(&path, &["deadletters", "show", &group, "not-an-id"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("400") && out.contains("not-an-id"), "{out}");
    let bad_token = dir.path().join("token");
    std::fs::write(&bad_token, "wrong-token-0123456789").unwrap();
    let (code, out) = cli(&path, &["--token-file", bad_token.to_str().unwrap(), "groups"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("401"), "{out}");
    bp.stop().await;
    target.stop().await;
}
