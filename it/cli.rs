//! The binary's command line: config checking.

use std::process::Command;

fn bigpipe(args: &[&str]) -> (i32, String) {
    bigpipe_with_env(args, &[])
}

fn bigpipe_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bigpipe"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run bigpipe");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn shipped_configs_pass_check_config() {
    // They carry no secret: they name the variables scripts/run.sh fills.
    let secrets = [("ACL_SYSTEM_1_SECRET", "one"), ("ACL_SYSTEM_2_SECRET", "two")];
    for path in ["conf/bigpipe.toml", "conf/bigpipe.json"] {
        let (code, text) = bigpipe_with_env(&["--config", path, "check-config"], &secrets);
        assert_eq!(code, 0, "{path}: {text}");
    }
}

#[test]
fn check_config_lists_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(
        &path,
        r#"{"kafka.bootstrap.servers":"nohost","kafka.topics":[{"name":"t","partitions":0}],
            "kafka.producer.acl":[{"name":"a","secret":"s","topic":"missing"}],
            "kafka.consumer.list":[{"topic":"t","groupId":"g","rateLimit":0,"timeout":100,"retries":1,"concurrency":0}]}"#,
    )
    .unwrap();
    let (code, text) = bigpipe(&["--config", path.to_str().unwrap(), "check-config"]);
    assert_ne!(code, 0);
    for key in [
        "kafka.bootstrap.servers",
        "kafka.topics[0].partitions",
        "kafka.producer.acl[0].topic",
        "kafka.consumer.list[0].rateLimit",
        "kafka.consumer.list[0].concurrency",
    ] {
        assert!(text.contains(key), "{key} missing from:\n{text}");
    }
}

#[test]
fn missing_config_file_is_reported() {
    let (code, text) = bigpipe(&["--config", "/nonexistent/bigpipe.toml", "check-config"]);
    assert_ne!(code, 0);
    assert!(text.contains("/nonexistent/bigpipe.toml"), "{text}");
}
