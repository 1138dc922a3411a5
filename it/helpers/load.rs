//! Steady load for the fault suite, and the per-scenario accounting by call id.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::target::Target;

/// What the sender saw.
#[derive(Debug, Default)]
pub(crate) struct Sent {
    pub(crate) sent: usize,
    pub(crate) accepted: Vec<String>,
    pub(crate) refused: usize,
    pub(crate) slowest: Duration,
}

/// A task posting calls at a steady rate until stopped.
pub(crate) struct Load {
    stop: CancellationToken,
    task: JoinHandle<()>,
    sent: Arc<Mutex<Sent>>,
}

impl Load {
    /// Posts `per_sec` calls per second to `ingest` (`/rpc/call` base URL) for `url`,
    /// with `"ack": ack` when given.
    pub(crate) fn start(ingest: String, url: String, per_sec: u32, ack: Option<&'static str>) -> Self {
        let stop = CancellationToken::new();
        let sent = Arc::new(Mutex::new(Sent::default()));
        let (s2, st2) = (Arc::clone(&sent), stop.clone());
        let task = tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(per_sec)));
            let mut i = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = st2.cancelled() => break,
                }
                i += 1;
                let mut body = json!({
                    "acl": {"name": "caller", "secret": "s3cret"},
                    "url": url, "data": format!("load-{i}"), "partition_key": format!("k{}", i % 17),
                });
                if let Some(ack) = ack {
                    body["ack"] = json!(ack);
                }
                let started = Instant::now();
                let resp = http
                    .post(format!("{ingest}/rpc/call"))
                    .body(body.to_string())
                    .send()
                    .await;
                let took = started.elapsed();
                let accepted = match resp {
                    Ok(r) if r.status() == 200 => {
                        let v: serde_json::Value = r.json().await.unwrap_or_default();
                        Some(v["data"].as_str().unwrap_or_default().to_owned())
                    }
                    _ => None,
                };
                let mut s = s2.lock().unwrap();
                s.sent += 1;
                s.slowest = s.slowest.max(took);
                match accepted {
                    Some(id) => s.accepted.push(id),
                    None => s.refused += 1,
                }
            }
        });
        Self { stop, task, sent }
    }

    /// Stops sending; returns what was sent.
    pub(crate) async fn stop(self) -> Sent {
        self.stop.cancel();
        self.task.await.ok();
        std::mem::take(&mut *self.sent.lock().unwrap())
    }
}

/// One row of the fault suite's table.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) scenario: &'static str,
    pub(crate) sent: usize,
    pub(crate) accepted: usize,
    pub(crate) delivered: usize,
    pub(crate) duplicated: usize,
    pub(crate) lost: usize,
    pub(crate) recover: Duration,
}

impl Row {
    /// Counts, by call id, what `target` received against what was accepted;
    /// `dead` are call ids known to be dead-lettered (they count as delivered per policy).
    pub(crate) fn tally(
        scenario: &'static str,
        sent: &Sent,
        target: &Target,
        dead: &BTreeSet<String>,
        recover: Duration,
    ) -> Self {
        let mut per_call: HashMap<String, usize> = HashMap::new();
        for r in target.received() {
            if r.status == 200 {
                *per_call.entry(r.call_id()).or_default() += 1;
            }
        }
        let delivered = sent
            .accepted
            .iter()
            .filter(|id| per_call.contains_key(*id) || dead.contains(*id))
            .count();
        let duplicated = per_call.values().map(|n| n - 1).sum();
        Self {
            scenario,
            sent: sent.sent,
            accepted: sent.accepted.len(),
            delivered,
            duplicated,
            lost: sent.accepted.len() - delivered,
            recover,
        }
    }

    /// Prints the row in the suite's table format.
    pub(crate) fn print(&self) {
        eprintln!(
            "| {:<44} | {:>5} | {:>8} | {:>9} | {:>10} | {:>4} | {:>8.1} s |",
            self.scenario,
            self.sent,
            self.accepted,
            self.delivered,
            self.duplicated,
            self.lost,
            self.recover.as_secs_f64()
        );
        println!(
            "CHAOS {} sent={} accepted={} delivered={} duplicated={} lost={} recover_s={:.1}",
            self.scenario,
            self.sent,
            self.accepted,
            self.delivered,
            self.duplicated,
            self.lost,
            self.recover.as_secs_f64()
        );
    }
}
