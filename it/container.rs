//! The FROM scratch bigpipe image (issue 10, must 7) run as users run it: a container on the
//! host's network, a config mounted at /etc/bigpipe, the broker under test, a target on the
//! host. Needs a Docker engine and the image of `scripts/images.sh bigpipe`, so a plain
//! `make it` lists these tests as ignored; `make it-docker` runs them.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use serde_json::Value;

use crate::delivery::consumer_entry;
use crate::helpers::process::free_port;
use crate::helpers::target::Target;
use crate::helpers::{LOOPBACK_ALLOW, call_body, kafka, poll, simple_config, unique};

/// The image under test: `BIGPIPE_IMAGE` as scripts/images.sh reads it, else its default.
fn image() -> String {
    std::env::var("BIGPIPE_IMAGE").unwrap_or_else(|_| "bigpipe:local".into())
}

/// Runs `docker` with `args`; fails the test when docker cannot be run at all.
fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e} (make it-docker sets Docker up)"))
}

/// `docker` with `args`, which must succeed; its stdout, trimmed.
fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A container removed when the test ends, however it ends; its log is printed when the
/// test failed.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let out = docker(&["logs", &self.0]);
            eprintln!(
                "---- log of container {} ----\n{}{}",
                self.0,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        docker(&["rm", "-f", &self.0]);
    }
}

/// Every path in the image's file system, from `docker export` of a container never started.
fn image_files(image: &str) -> Vec<String> {
    let name = unique("bigpipe-files");
    docker_ok(&["create", "--pull", "never", "--name", &name, image]);
    let _gone = Container(name.clone());
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("docker export {name} | tar -t"))
        .output()
        .expect("run docker export | tar -t");
    assert!(out.status.success(), "docker export {name} | tar -t failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_end_matches('/').to_owned())
        .collect()
}

#[test]
#[ignore = "needs a Docker engine and the bigpipe:local image: make it-docker runs it"]
fn the_image_holds_the_static_binary_and_its_config_and_no_shell_or_libc() {
    let files = image_files(&image());
    for wanted in [
        "usr/local/bin/bigpipe",
        "etc/bigpipe/bigpipe.toml",
        "etc/passwd",
        "etc/group",
    ] {
        assert!(files.iter().any(|f| f == wanted), "{wanted} missing: {files:?}");
    }
    let foreign: Vec<&String> = files
        .iter()
        .filter(|f| {
            ["bin", "sbin", "lib", "lib64", "usr/bin", "usr/lib", "usr/sbin"]
                .iter()
                .any(|d| f.as_str() == *d || f.starts_with(&format!("{d}/")))
        })
        .collect();
    assert!(foreign.is_empty(), "not a FROM scratch image: {foreign:?}");
    assert_eq!(
        docker_ok(&["image", "inspect", "-f", "{{.Config.User}}", &image()]),
        "10086:10086"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine and the bigpipe:local image: make it-docker runs it"]
async fn the_image_delivers_a_call_to_the_host_reports_ready_and_stops_on_sigterm() {
    let _k = kafka().await;
    let topic = unique("container");
    let target = Target::start();
    let (port, admin_port) = (free_port(), free_port());
    let toml = simple_config(
        &topic,
        1,
        &format!(
            "{}\n[http.server]\nport = {port}\n[http.admin]\nport = {admin_port}\n",
            consumer_entry(&topic, &unique("G"), "")
        ),
    )
    .replace("{bootstrap}", &crate::helpers::bootstrap());
    // The container runs as uid 10086: the mounted dir and file must be readable by it.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("bigpipe.toml"), toml).expect("write config");
    for (path, mode) in [
        (dir.path().to_path_buf(), 0o755),
        (dir.path().join("bigpipe.toml"), 0o644),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let name = unique("bigpipe-it");
    let mount = format!("{}:/etc/bigpipe:ro", dir.path().display());
    let allow = format!("BIGPIPE_DELIVERY_ALLOW={LOOPBACK_ALLOW}");
    docker_ok(&[
        "run",
        "-d",
        "--pull",
        "never",
        "--name",
        &name,
        "--network",
        "host",
        // the image listens on every interface for published ports; host networking
        // publishes nothing, so keep the test's listener on loopback
        "-e",
        "BIGPIPE_HTTP_SERVER_HOST=127.0.0.1",
        "-e",
        &allow,
        "-v",
        &mount,
        &image(),
    ]);
    let container = Container(name);

    let http = reqwest::Client::new();
    let admin = format!("http://127.0.0.1:{admin_port}");
    let ready: Value = poll("the container's admin /readyz 200", || async {
        let r = http.get(format!("{admin}/readyz")).send().await.ok()?;
        (r.status() == 200).then_some(())?;
        r.json().await.ok()
    })
    .await;
    assert_eq!(ready["errno"], 0, "{ready}");

    let r = http
        .post(format!("http://127.0.0.1:{port}/rpc/call"))
        .body(call_body(&target.url("/ok"), "from a container", "k").to_string())
        .send()
        .await
        .expect("post to the container");
    assert_eq!(r.status(), 200);
    let envelope: Value = r.json().await.expect("envelope");
    let id = envelope["data"].as_str().expect("call id").to_owned();
    let got = poll("the call delivered to the host", || async {
        target.received().into_iter().find(|c| c.call_id() == id)
    })
    .await;
    assert_eq!(got.body, b"from a container");

    // Not root inside: the kernel's view of the container's process.
    let pid = docker_ok(&["inspect", "-f", "{{.State.Pid}}", &container.0]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or_default();
    assert_eq!(
        uid.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["10086"; 4],
        "{uid}"
    );

    // bigpipe is the container's PID 1 with no init: `docker stop`'s SIGTERM must still stop
    // it gracefully (exit 0), well before docker's SIGKILL.
    docker_ok(&["stop", "-t", "30", &container.0]);
    assert_eq!(
        docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", &container.0]),
        "0"
    );
    target.stop().await;
}
