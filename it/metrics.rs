//! Prometheus `/metrics`, proven with a real Prometheus (Debian's 2.42) and promtool:
//! PromQL answers over live traffic, `promtool check metrics` on a scrape, and the shipped
//! alert rules and Grafana dashboard naming only metrics bigpipe exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::delivery::consumer_entry;
use crate::helpers::process::free_port;
use crate::helpers::target::Target;
use crate::helpers::*;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";
const TOKEN: &str = "metrics-it-token-0123456789";

/// Fails the test (never skips) when a Prometheus tool is missing.
fn require(tool: &str) {
    assert!(
        Path::new(tool).exists(),
        "{tool} is missing: install Debian's Prometheus with `apt-get install -y prometheus` \
         (it ships prometheus and promtool 2.42)"
    );
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A Prometheus server scraping one target every second; killed on drop.
struct Prometheus {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str, token: &str) -> Self {
        require(PROMETHEUS);
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
                 - job_name: bigpipe\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    \
                 authorization:\n      credentials: \"{token}\"\n    static_configs:\n      \
                 - targets: [\"{target}\"]\n"
            ),
        )
        .expect("write prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// The result vector of an instant query, once the query answers at all.
    async fn query(&self, http: &reqwest::Client, promql: &str) -> Option<Vec<Value>> {
        let r = http
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", promql)])
            .send()
            .await
            .ok()?;
        let body: Value = r.json().await.ok()?;
        assert_ne!(body["status"], "error", "{promql}: {body}");
        body["data"]["result"].as_array().cloned()
    }

    /// Polls `promql` until its result is not empty; returns it.
    async fn until_some(&self, http: &reqwest::Client, promql: &str) -> Vec<Value> {
        poll(&format!("Prometheus to answer `{promql}`"), || async {
            self.query(http, promql).await.filter(|r| !r.is_empty())
        })
        .await
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// GETs the admin `/metrics` with `token`; returns status, content type and body.
async fn scrape(bp: &Bigpipe, token: Option<&str>) -> (u16, String, String) {
    let mut request = bp.http.get(format!("{}/metrics", bp.admin));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let r = request.send().await.expect("get /metrics");
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, ctype, r.text().await.expect("body"))
}

/// Runs promtool with `args` and `stdin`; returns (success, stdout + stderr).
fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    require(PROMTOOL);
    use std::io::Write;
    let mut child = Command::new(PROMTOOL)
        .args(args)
        .current_dir(repo(""))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .expect("write stdin");
    drop(input);
    let out = child.wait_with_output().expect("promtool output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The config of the Prometheus test: one fast entry, one throttled to 1 call/s (its
/// backlog is the lag Prometheus must see), the admin token set.
fn config(topic: &str, fast: &str, slow: &str) -> String {
    let extra = format!(
        "[http.admin]\ntoken = \"{TOKEN}\"\n\n{}{}",
        consumer_entry(topic, fast, ""),
        consumer_entry(topic, slow, "").replace("rateLimit = 2000", "rateLimit = 1"),
    );
    simple_config(topic, 2, &extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_bigpipe_and_answers_promql_over_live_traffic() {
    let _k = kafka().await;
    let target = Target::start();
    let topic = unique("metrics");
    let (fast, slow) = (unique("Gfast"), unique("Gslow"));
    let bp = Bigpipe::start_ready(&settings(&config(&topic, &fast, &slow))).await;

    // Behind the admin token like every admin path.
    let (status, _, _) = scrape(&bp, None).await;
    assert_eq!(status, 401, "/metrics without the token");

    let prometheus = Prometheus::start(bp.admin.trim_start_matches("http://"), TOKEN);
    let http = reqwest::Client::new();
    prometheus.until_some(&http, "up == 1").await;

    // Traffic for as long as the queries need: 20 calls a second.
    let stop = tokio_util::sync::CancellationToken::new();
    let sender = {
        let (stop, http, base, url) = (stop.clone(), bp.http.clone(), bp.base.clone(), target.url("/ok"));
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.is_cancelled() {
                let body = call_body(&url, &format!("call-{i}"), &format!("k{i}"));
                let r = http
                    .post(format!("{base}/rpc/call"))
                    .body(body.to_string())
                    .send()
                    .await;
                assert_eq!(r.map(|r| r.status().as_u16()).ok(), Some(200), "call {i}");
                i += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            i
        })
    };

    let accepted = prometheus
        .until_some(&http, "sum(rate(bigpipe_calls_accepted_total[30s])) > 0")
        .await;
    let delivered = prometheus
        .until_some(
            &http,
            &format!(
                r#"sum(rate(bigpipe_delivery_calls_total{{group="{fast}",result="delivered"}}[30s])) > 0"#
            ),
        )
        .await;
    let lag = prometheus
        .until_some(
            &http,
            &format!(r#"sum by (group) (bigpipe_consumer_lag_records{{group="{slow}"}}) > 20"#),
        )
        .await;
    let p99 = prometheus
        .until_some(
            &http,
            &format!(
                r#"histogram_quantile(0.99, sum by (le) (rate(bigpipe_delivery_latency_seconds_bucket{{group="{fast}"}}[30s]))) > 0"#
            ),
        )
        .await;
    let attempts = prometheus
        .until_some(
            &http,
            &format!(r#"sum by (host, outcome, status_class) (bigpipe_delivery_attempts_total{{group="{fast}"}}) > 0"#),
        )
        .await;
    let build = prometheus.until_some(&http, "bigpipe_build_info").await;
    // The one member of each group owns both partitions.
    let assigned = prometheus
        .until_some(
            &http,
            &format!(r#"bigpipe_group_assigned_partitions{{group="{fast}"}} == 2 and bigpipe_group_members{{group="{fast}"}} == 1 and bigpipe_group_generation{{group="{fast}"}} >= 1"#),
        )
        .await;
    // A wrong secret is refused with reason "acl" and no ACL name (the name is input).
    let mut wrong = call_body(&target.url("/x"), "d", "k");
    wrong["acl"]["secret"] = "wrong".into();
    let (status, envelope) = bp.call(&wrong).await;
    assert_eq!(status, 403, "{envelope}");
    let refused = prometheus
        .until_some(&http, r#"bigpipe_calls_refused_total{reason="acl",acl=""} == 1"#)
        .await;
    stop.cancel();
    let sent = sender.await.expect("sender");

    assert_eq!(
        build[0]["metric"]["version"],
        env!("CARGO_PKG_VERSION"),
        "{build:?}"
    );
    assert_eq!(attempts.len(), 1, "one host, all delivered 2xx: {attempts:?}");
    assert_eq!(attempts[0]["metric"]["host"], target.base.as_str());
    assert_eq!(attempts[0]["metric"]["outcome"], "delivered");
    assert_eq!(attempts[0]["metric"]["status_class"], "2xx");
    for (q, r) in [
        ("accepted/s", &accepted),
        ("delivered/s (fast group)", &delivered),
        ("lag (slow group)", &lag),
        ("p99 delivery latency s", &p99),
        ("build info", &build),
        ("assigned partitions (fast group)", &assigned),
        ("refused by acl", &refused),
    ] {
        eprintln!("PromQL {q}: {}", serde_json::to_string(r).unwrap_or_default());
    }
    eprintln!("calls sent: {sent}");

    // The same body Prometheus reads passes promtool's own checks.
    let (status, ctype, body) = scrape(&bp, Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let (ok, problems) = promtool(&["check", "metrics"], Some(&body));
    assert!(
        ok && problems.trim().is_empty(),
        "promtool check metrics: {problems}"
    );
    drop(prometheus);
    bp.stop().await;
    target.stop().await;
}

/// The `bigpipe_*` names in `text` (what follows `bigpipe_` up to the first character that
/// cannot be in a metric name), with histogram series suffixes removed.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("bigpipe_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // `xbigpipe_...` is another name; `${DS_...}`-style inputs never start like this.
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            let name = &tail[..len];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            out.insert(base.to_owned());
        }
        rest = &tail[len.max(1)..];
    }
    out
}

/// The metric names a scrape declares (`# TYPE name type`).
fn exported(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_alerts_and_dashboard_pass_promtool_and_name_only_exported_metrics() {
    let _k = kafka().await;
    let (ok, out) = promtool(&["check", "rules", "deploy/prometheus/bigpipe-alerts.yml"], None);
    assert!(ok, "promtool check rules: {out}");
    let (ok, out) = promtool(
        &["test", "rules", "deploy/prometheus/bigpipe-alerts.test.yml"],
        None,
    );
    assert!(ok, "promtool test rules: {out}");

    let topic = unique("metrics-names");
    let extra = format!(
        "[http.admin]\ntoken = \"{TOKEN}\"\n\n{}",
        consumer_entry(&topic, &unique("G"), "")
    );
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &extra))).await;
    let (status, _, body) = scrape(&bp, Some(TOKEN)).await;
    assert_eq!(status, 200);
    let exported = exported(&body);
    assert!(exported.contains("bigpipe_calls_accepted_total"), "{exported:?}");
    for file in [
        "deploy/prometheus/bigpipe-alerts.yml",
        "deploy/grafana/bigpipe-dashboard.json",
    ] {
        let text = std::fs::read_to_string(repo(file)).expect(file);
        if file.ends_with(".json") {
            let dashboard: Value = serde_json::from_str(&text).expect("dashboard JSON");
            assert!(
                text.contains("${datasource}") || text.contains("${DS_PROMETHEUS}"),
                "the dashboard takes its data source as an input"
            );
            assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() >= 8));
        }
        let used = names_in(&text);
        assert!(!used.is_empty(), "{file} names no bigpipe metric");
        let unknown: Vec<&String> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics bigpipe does not export: {unknown:?}"
        );
    }
    bp.stop().await;
}

#[test]
fn names_are_read_from_exprs_with_histogram_suffixes_removed() {
    let names = names_in(
        r#"sum(rate(bigpipe_delivery_latency_seconds_bucket{x="y"}[5m])) / bigpipe_x_total
           and mybigpipe_no 1"#,
    );
    let expected: BTreeSet<String> = ["bigpipe_delivery_latency_seconds", "bigpipe_x_total"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    assert_eq!(names, expected);
}

/// Every family with samples in it (circuits, tiers, refusals: a short live run leaves some
/// empty), rendered by the same exporter, passes promtool too.
#[test]
fn promtool_accepts_every_family_with_samples() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use bigpipe::metrics::Exporter;
    use bigpipe::metrics::classes::{DeadLetterReason, Outcome, Refusal};
    use bigpipe::stats::{Stall, Stats, inc};

    let stats = Arc::new(Stats::new(["calls"]));
    inc(&stats.server.received);
    stats.server.intake.accepted.inc("app");
    for reason in Refusal::ALL {
        stats.server.intake.refused(reason, "app");
    }
    stats.server.intake.refused(Refusal::Acl, "");
    let p = stats.producer("calls");
    inc(&p.delivery_success);
    p.duration.observe(Duration::from_millis(3));
    let c = stats.consumer("G", "calls");
    c.set_partition(0, |v| {
        v.committed = Some(5);
        v.log_end_offset = Some(12);
        v.stall = Some(Stall {
            since: std::time::Instant::now(),
            reason: "fetch failing".into(),
        });
    });
    for outcome in Outcome::ALL {
        c.delivery.attempt("http://t:1", outcome, Some(503));
    }
    c.delivery.attempt("http://t:1", Outcome::Timeout, None);
    c.delivery.delivered(1_000, 61_000);
    for reason in DeadLetterReason::ALL {
        c.delivery.dead_lettered(reason);
    }
    c.delivery.circuit("http://t:1", 2);
    c.assigned(3, 2, 1);
    c.paused.store(true, Ordering::Relaxed);
    c.tier("G-retry", "calls-retry")
        .set_partition(0, |v| v.committed = Some(1));
    let text = Exporter::new(stats).render().expect("render");
    for family in [
        "bigpipe_circuit_state{",
        "bigpipe_retry_tier_waiting_records{",
        "bigpipe_consumer_stalled{",
    ] {
        assert!(text.contains(family), "{family} has no sample:\n{text}");
    }
    let (ok, problems) = promtool(&["check", "metrics"], Some(&text));
    assert!(
        ok && problems.trim().is_empty(),
        "promtool check metrics: {problems}\n{text}"
    );
}
