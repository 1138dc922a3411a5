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
