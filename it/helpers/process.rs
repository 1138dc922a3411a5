//! bigpipe as a real child process, for tests that kill or signal it.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};

/// A bigpipe child process with its own config file and HTTP ports.
pub(crate) struct Process {
    child: Option<Child>,
    /// The public listener.
    pub(crate) base: String,
    /// The admin listener (`/stats`, `/readyz` detail).
    pub(crate) admin: String,
    port: u16,
    admin_port: u16,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Process {
    /// Starts the binary with `toml` as config; `{port}` in it is replaced by a free port.
    ///
    /// The admin listener gets a free port too: `{admin_port}` in `toml` is replaced by it,
    /// and when `toml` has no `{admin_port}` the child gets it through
    /// `BIGPIPE_HTTP_ADMIN_PORT`, so parallel tests never share the default 10087.
    pub(crate) fn spawn(toml: &str) -> Self {
        Self::spawn_with_env(toml, &[])
    }

    /// Like [`Process::spawn`], with `env` added to the child's environment (e.g. a
    /// `BIGPIPE_KAFKA_SASL_PASSWORD` that should not be in the config file).
    pub(crate) fn spawn_with_env(toml: &str, env: &[(&str, String)]) -> Self {
        let port = free_port();
        let admin_port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bigpipe.toml");
        let text = substitute(toml, port, admin_port);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_bigpipe"));
        // The child sees only the BIGPIPE_* variables a test gives it: the scripts that run
        // the tests have their own (BIGPIPE_KAFKA_VERSION...), which bigpipe would name in a
        // start-up warning.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("BIGPIPE_") {
                command.env_remove(name);
            }
        }
        // The test targets listen on loopback, refused unless allowed (see `super::settings`).
        // An environment variable, so the test's own TOML stays as written.
        if !super::sets_own_allow(&text) {
            command.env("BIGPIPE_DELIVERY_ALLOW", super::LOOPBACK_ALLOW);
        }
        if !toml.contains("{admin_port}") {
            command.env("BIGPIPE_HTTP_ADMIN_PORT", admin_port.to_string());
        }
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let child = command
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn bigpipe");
        Self {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin_port}"),
            port,
            admin_port,
            config: path,
            _dir: dir,
        }
    }

    /// Replaces the config file (same `{port}`, `{admin_port}` and `{bootstrap}`
    /// substitutions); send SIGUSR1 to apply.
    pub(crate) fn rewrite_config(&self, toml: &str) {
        std::fs::write(&self.config, substitute(toml, self.port, self.admin_port)).unwrap();
    }

    /// The process id.
    pub(crate) fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// Sends `signal` (e.g. "KILL", "TERM") with kill(1).
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit; returns its exit code (None when killed by a signal).
    pub(crate) fn wait(&mut self) -> Option<i32> {
        self.child
            .take()
            .and_then(|mut c| c.wait().ok())
            .and_then(|s| s.code())
    }

    /// GETs `/stats` `data` from the admin listener, or None while the process does not answer.
    pub(crate) async fn stats(&self) -> Option<serde_json::Value> {
        let r = reqwest::get(format!("{}/stats", self.admin)).await.ok()?;
        let v: serde_json::Value = r.json().await.ok()?;
        Some(v["data"].clone())
    }

    /// Partitions currently assigned to consumer entry `index`, per `/stats`.
    pub(crate) async fn partitions(&self, index: usize) -> Option<Vec<i32>> {
        let stats = self.stats().await?;
        let parts = stats["consumerStats"][index]["partitions"].as_object()?;
        Some(parts.keys().filter_map(|k| k.parse().ok()).collect())
    }
}

/// `toml` with its placeholders filled in.
fn substitute(toml: &str, port: u16, admin_port: u16) -> String {
    toml.replace("{port}", &port.to_string())
        .replace("{admin_port}", &admin_port.to_string())
        .replace("{bootstrap}", &super::bootstrap())
}

/// A free port below Linux's ephemeral range (32768+), so no client socket
/// can take it between this check and the child's bind.
pub(crate) fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    NEXT.compare_exchange(
        0,
        20000 + (std::process::id() % 500) as u16 * 20,
        Ordering::SeqCst,
        Ordering::SeqCst,
    )
    .ok();
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = 20000 + (port - 20000) % 12000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }
}
