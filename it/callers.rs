//! Callers: secrets from the environment or a file, the sample secrets refused, failed ACL
//! checks throttled per source, and per-ACL quotas.

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::process;
use crate::helpers::*;

/// Never delivered (no consumer entry in these tests). A name, not an IP literal: ingest judges
/// names only by the ACL's `targets`, so the tests that build their settings without the
/// helpers' loopback allowance are not refused by the destination policy.
const MOCK: &str = "http://target.invalid:9/target";

fn body_of(acl: &str, secret: &str) -> Value {
    json!({
        "acl": {"name": acl, "secret": secret},
        "url": MOCK,
        "data": "d",
        "partition_key": "",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_guesses_from_one_source_are_throttled_and_others_are_not() {
    let _k = kafka().await;
    let topic = unique("callers-throttle");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, ""))).await;
    let attacker = client_from(IpAddr::from([127, 0, 0, 1]));

    let mut answers = Vec::new();
    for i in 0..200 {
        let (status, retry_after, env) = bp
            .call_from(&attacker, &body_of("caller", &format!("guess-{i}")))
            .await;
        answers.push((status, retry_after, env["msg"].as_str().unwrap_or("").to_owned()));
    }
    // 10 checked and refused (403), then 429 without a check for the rest.
    assert!(
        answers[..10].iter().all(|a| a.0 == 403 && a.2 == "权限错误"),
        "{:?}",
        &answers[..11]
    );
    for (status, retry_after, msg) in &answers[10..] {
        assert_eq!((*status, msg.as_str()), (429, "请求过于频繁"));
        assert!(
            retry_after.is_some_and(|s| (1..=60).contains(&s)),
            "{retry_after:?}"
        );
    }
    // The right secret from the blocked source is not even checked during the cool-down.
    let (status, _, _) = bp.call_from(&attacker, &call_body(MOCK, "d", "")).await;
    assert_eq!(status, 429);
    // Another source is not affected, wrong or right.
    let other = client_from(IpAddr::from([127, 0, 0, 2]));
    let (status, _, _) = bp.call_from(&other, &body_of("caller", "wrong")).await;
    assert_eq!(status, 403);
    let (status, _, env) = bp.call_from(&other, &call_body(MOCK, "d", "")).await;
    assert_eq!(status, 200, "{env}");

    let (_, stats) = bp.get("/stats").await;
    let server = &stats["data"]["serverStats"];
    assert_eq!(server["aclRefused"], 11, "{server}");
    assert_eq!(server["throttledCall"], 191, "{server}");
    bp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_come_from_an_environment_variable_or_a_file() {
    let _k = kafka().await;
    let topic = unique("callers-secrets");
    let dir = tempfile::tempdir().unwrap();
    let secret_path = dir.path().join("file.secret");
    std::fs::write(&secret_path, "secret-from-file\n").unwrap();
    let config_path = dir.path().join("bigpipe.toml");
    let text = format!(
        r#"
[kafka]
bootstrap.servers = "{bootstrap}"
topics = [{{ name = "{topic}", partitions = 1 }}]

[[kafka.producer.acl]]
name = "from-env"
secret = "${{IT_CALLER_SECRET}}"
topic = "{topic}"

[[kafka.producer.acl]]
name = "from-file"
secret_file = {path:?}
topic = "{topic}"
"#,
        bootstrap = bootstrap(),
        path = secret_path.display().to_string(),
    );
    std::fs::write(&config_path, text).unwrap();
    let s = bigpipe::config::load_with_env(&config_path, [("IT_CALLER_SECRET", "secret-from-env")])
        .unwrap_or_else(|e| panic!("{e}"));
    let bp = Bigpipe::start_ready(&s).await;
    for (acl, secret, want) in [
        ("from-env", "secret-from-env", 200),
        ("from-file", "secret-from-file", 200),
        ("from-env", "${IT_CALLER_SECRET}", 403),
        ("from-file", "secret-from-file\n", 403),
    ] {
        let (status, env) = bp.call(&body_of(acl, secret)).await;
        assert_eq!(status, want, "{acl} {secret:?}: {env}");
    }
    bp.stop().await;
}

/// Runs the binary on `toml` with extra environment; returns the child.
fn spawn_binary(toml: &str, env: &[(&str, &str)]) -> (std::process::Child, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bigpipe.toml");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(toml.as_bytes())
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bigpipe"));
    cmd.arg("--config")
        .arg(&path)
        .env_remove("BIGPIPE_DEMO")
        // Not the default 10087, which parallel tests (or a running bigpipe) may hold.
        .env("BIGPIPE_HTTP_ADMIN_PORT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    (cmd.spawn().expect("spawn bigpipe"), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_sample_secret_refuses_to_start_unless_demo() {
    let _k = kafka().await;
    let topic = unique("callers-sample");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let toml = format!(
        "[kafka]\nbootstrap.servers = \"{}\"\ntopics = [{{ name = \"{topic}\", partitions = 1 }}]\n\
         [http.server]\nport = {port}\n\
         [[kafka.producer.acl]]\nname = \"system-1\"\nsecret = \"you are good\"\ntopic = \"{topic}\"\n",
        bootstrap()
    );
    let (mut child, _dir) = spawn_binary(&toml, &[]);
    // A binary that starts anyway must fail the test, not hang it.
    let exited = poll("bigpipe to exit", || {
        let status = child.try_wait().unwrap();
        async move { status }
    });
    let exited = tokio::time::timeout(Duration::from_secs(30), exited).await;
    if exited.is_err() {
        child.kill().ok();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(exited.is_ok(), "bigpipe started with the sample secret: {stderr}");
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("kafka.producer.acl[0].secret: ACL 'system-1' uses a sample secret")
            && stderr.contains("demo = true")
            && !stderr.contains("you are good"),
        "{stderr}"
    );

    // Told it is a demo, it starts and takes the sample secret.
    let (child, _dir) = spawn_binary(&toml, &[("BIGPIPE_DEMO", "true")]);
    // Stopped however the test ends: a failed assertion must not leave it running.
    let _child = KillOnDrop(child);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    poll("demo bigpipe answers", || async {
        let r = http.get(format!("{base}/healthz")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let r = http
        .post(format!("{base}/rpc/call"))
        .body(body_of("system-1", "you are good").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Kills and reaps the child when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_over_its_quota_gets_429_and_another_acl_is_unaffected() {
    let _k = kafka().await;
    let topic = unique("callers-quota");
    // 0.1 call/s with a burst of 3: the fourth call in a row waits about 10 s.
    let extra = format!(
        "[[kafka.producer.acl]]\nname = \"limited\"\nsecret = \"l\"\ntopic = \"{topic}\"\nrate = 0.1\nburst = 3\n"
    );
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &extra))).await;
    let client = reqwest::Client::new();
    for i in 0..3 {
        let (status, _, env) = bp.call_from(&client, &body_of("limited", "l")).await;
        assert_eq!(status, 200, "call {i}: {env}");
    }
    let (status, retry_after, env) = bp.call_from(&client, &body_of("limited", "l")).await;
    assert_eq!(status, 429, "{env}");
    assert_eq!(env, json!({"data": "", "errno": -1, "msg": "超过配额"}));
    assert!(
        retry_after.is_some_and(|s| (1..=10).contains(&s)),
        "{retry_after:?}"
    );
    // The ACL without a quota keeps going.
    for _ in 0..20 {
        let (status, _, env) = bp.call_from(&client, &call_body(MOCK, "d", "")).await;
        assert_eq!(status, 200, "{env}");
    }
    let (_, stats) = bp.get("/stats").await;
    let server = &stats["data"]["serverStats"];
    assert_eq!(server["quotaRefused"], 1, "{server}");
    assert_eq!(server["quotaRefusedByAcl"], json!({"limited": 1}), "{server}");
    assert_eq!(server["acceptedCall"], 23, "{server}");
    bp.stop().await;
}

/// Every log line the process wrote so far to the hourly files in `dir`.
fn log_text(dir: &std::path::Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        text += &std::fs::read_to_string(entry.path()).unwrap_or_default();
    }
    text
}

fn process_config(topic: &str, logs: &std::path::Path, secret: &str) -> String {
    format!(
        "[log]\nlevel = \"info\"\ndirectory = {:?}\n\
         [kafka]\nbootstrap.servers = \"{{bootstrap}}\"\ntopics = [{{ name = \"{topic}\", partitions = 1 }}]\n\
         [http.server]\nport = {{port}}\n\
         [[kafka.producer.acl]]\nname = \"caller\"\nsecret = {secret}\ntopic = \"{topic}\"\n",
        logs.display().to_string()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_logged_at_warning_rate_limited_escaped_and_without_the_secret() {
    let _k = kafka().await;
    let topic = unique("callers-log");
    let logs = tempfile::tempdir().unwrap();
    let p = process::Process::spawn(&process_config(&topic, logs.path(), "\"s3cret\""));
    let http = reqwest::Client::new();
    poll("bigpipe answers", || async { p.stats().await }).await;

    // Five wrong guesses, one with a hostile ACL name: a single warning line (the rest are
    // suppressed for 10 s), no guess in the log, the ESC escaped.
    let hostile = "evil\u{1b}[2K\u{1b}[1G[FATAL] forged";
    for (name, guess) in [(hostile, "GUESS-0")]
        .into_iter()
        .chain((1..5).map(|_| ("caller", "GUESS-n")))
    {
        let r = http
            .post(format!("{}/rpc/call", p.base))
            .body(body_of(name, guess).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    }
    let text = poll("the refusal warning", || async {
        let text = log_text(logs.path());
        text.contains("call refused: acl check failed").then_some(text)
    })
    .await;
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("acl check failed")).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].starts_with("[WARNING]"), "{text}");
    assert!(lines[0].contains("source=127.0.0.1"), "{text}");
    assert!(
        lines[0].contains(r#"acl="evil\u{1b}[2K\u{1b}[1G[FATAL] forged""#),
        "{text}"
    );
    assert!(lines[0].contains(r#"reason="unknown acl""#), "{text}");
    assert!(!text.contains("GUESS") && !text.contains('\u{1b}'), "{text}");

    // A reload with a mistyped secret is rejected without echoing it.
    p.rewrite_config(&process_config(&topic, logs.path(), "123456789"));
    p.signal("USR1");
    let text = poll("the rejected reload", || async {
        let text = log_text(logs.path());
        text.contains("reload rejected").then_some(text)
    })
    .await;
    assert!(text.contains("kafka.producer.acl[0].secret"), "{text}");
    assert!(!text.contains("123456789"), "{text}");
}
