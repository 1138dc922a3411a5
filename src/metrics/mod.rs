//! Prometheus metrics: `GET /metrics` on the admin listener.
//!
//! - [`collector`] reads `stats::Stats` at scrape time (the same atomics `/stats` shows);
//! - [`intake`], [`delivery`] hold what only metrics need (per ACL, per host, histograms),
//!   kept on the `Stats` structs so the hot paths reach them without a lookup;
//! - [`hosts`] caps the host label (`metrics.max_hosts`), [`classes`] holds the closed label
//!   values, [`histogram`] is a lock-free histogram.
//!
//! Encoded by prometheus-client in the classic text format 0.0.4, which Prometheus scrapes
//! and `promtool check metrics` checks.

pub mod acl;
pub mod classes;
pub mod collector;
pub mod delivery;
pub mod histogram;
pub mod hosts;
pub mod intake;

use std::sync::Arc;

use prometheus_client::registry::Registry;

use crate::stats::Stats;

/// The `Content-Type` of [`Exporter::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The registry behind `/metrics`.
#[derive(Debug)]
pub struct Exporter {
    registry: Registry,
}

impl Exporter {
    /// An exporter of `stats`.
    pub fn new(stats: Arc<Stats>) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(collector::StatsCollector::new(stats)));
        Self { registry }
    }

    /// Every metric, as Prometheus text 0.0.4.
    ///
    /// # Errors
    /// Only if formatting fails, which writing to a `String` does not.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::metrics::classes::{DeadLetterReason, Outcome, Refusal};
    use crate::stats::inc;

    #[test]
    fn every_family_is_rendered_with_its_labels() {
        let stats = Arc::new(Stats::new(["calls"]));
        inc(&stats.server.received);
        stats.server.intake.accepted.inc("app");
        stats.server.intake.refused(Refusal::Quota, "app");
        let p = stats.producer("calls");
        inc(&p.delivery_success);
        p.duration.observe(std::time::Duration::from_millis(3));
        let c = stats.consumer("G", "calls");
        c.set_partition(0, |v| {
            v.committed = Some(5);
            v.log_end_offset = Some(12);
        });
        c.delivery.attempt("http://t:1", Outcome::Delivered, Some(200));
        c.delivery.delivered(1_000, 1_020);
        c.delivery.dead_lettered(DeadLetterReason::NotRetryable);
        c.delivery.circuit("http://t:1", 1);
        c.assigned(3, 2, 1);
        c.paused.store(true, Ordering::Relaxed);
        inc(&c.scheduled);
        inc(&c.callbacks);
        c.scheduled_waiting.store(4, Ordering::Relaxed);
        inc(&stats.server.idempotent_replays);
        stats.server.idempotency_keys.store(9, Ordering::Relaxed);
        let tier = c.tier("G-retry-5s", "calls-retry-5s");
        tier.set_partition(0, |v| {
            v.committed = Some(1);
            v.log_end_offset = Some(4);
        });
        let text = Exporter::new(Arc::clone(&stats)).render().expect("renders");
        for line in [
            "# TYPE bigpipe_calls_received_total counter",
            "bigpipe_calls_received_total 1",
            r#"bigpipe_build_info{version=""#,
            r#"bigpipe_calls_accepted_total{acl="app"} 1"#,
            r#"bigpipe_calls_refused_total{reason="quota",acl="app"} 1"#,
            r#"bigpipe_produce_records_total{topic="calls",result="ok"} 1"#,
            r#"bigpipe_produce_duration_seconds_bucket{topic="calls",le="0.005"} 1"#,
            r#"bigpipe_consumer_lag_records{group="G",topic="calls",partition="0"} 7"#,
            r#"bigpipe_consumer_log_end_offset{group="G",topic="calls",partition="0"} 12"#,
            r#"bigpipe_consumer_paused{group="G",topic="calls"} 1"#,
            r#"bigpipe_delivery_attempts_total{group="G",topic="calls",host="http://t:1",outcome="delivered",status_class="2xx"} 1"#,
            r#"bigpipe_delivery_latency_seconds_bucket{group="G",topic="calls",le="0.025"} 1"#,
            r#"bigpipe_dead_letters_total{group="G",topic="calls",reason="not_retryable"} 1"#,
            r#"bigpipe_circuit_state{group="G",topic="calls",host="http://t:1"} 1"#,
            r#"bigpipe_group_generation{group="G",topic="calls"} 3"#,
            r#"bigpipe_group_members{group="G",topic="calls"} 2"#,
            r#"bigpipe_group_rebalances_total{group="G",topic="calls"} 1"#,
            r#"bigpipe_retry_tier_waiting_records{group="G",topic="calls",tier="calls-retry-5s"} 3"#,
            r#"bigpipe_scheduled_calls_total{group="G",topic="calls"} 1"#,
            r#"bigpipe_callbacks_total{group="G",topic="calls"} 1"#,
            r#"bigpipe_callback_failures_total{group="G",topic="calls"} 0"#,
            r#"bigpipe_scheduled_waiting_calls{group="G",topic="calls"} 4"#,
            r#"bigpipe_config_reloads_total{result="rejected"} 0"#,
            r#"bigpipe_idempotent_calls_total{result="replayed"} 1"#,
            r#"bigpipe_idempotent_calls_total{result="claimed"} 0"#,
            "bigpipe_idempotency_keys 9",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
