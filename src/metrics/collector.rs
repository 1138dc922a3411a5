//! Reads `Stats` at scrape time and writes every `bigpipe_*` family.
//!
//! The counters `/stats` shows are the same atomics read here, so nothing is counted twice
//! and the two views never disagree. Each family is written once, with one sample per label
//! set, from a consistent walk of the entries.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::stats::{ConsumerStats, ProducerStats, Stats};

/// The collector over one process's `Stats`.
#[derive(Debug)]
pub struct StatsCollector {
    stats: Arc<Stats>,
}

impl StatsCollector {
    /// A collector reading `stats`.
    pub fn new(stats: Arc<Stats>) -> Self {
        Self { stats }
    }
}

type Fmt = Result<(), std::fmt::Error>;

fn counter(family: &mut MetricEncoder<'_>, labels: &[(&str, &str)], value: u64) -> Fmt {
    ConstCounter::new(value).encode(family.encode_family(&labels)?)
}

fn gauge(family: &mut MetricEncoder<'_>, labels: &[(&str, &str)], value: i64) -> Fmt {
    ConstGauge::new(value).encode(family.encode_family(&labels)?)
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn load_i(c: &AtomicI64) -> i64 {
    c.load(Ordering::Relaxed)
}

/// A consumer entry with its retry tier lanes (each lane is a consumer group of its own).
struct Entry {
    main: Arc<ConsumerStats>,
    tiers: Vec<Arc<ConsumerStats>>,
}

impl Entry {
    fn lanes(&self) -> impl Iterator<Item = &Arc<ConsumerStats>> {
        std::iter::once(&self.main).chain(&self.tiers)
    }
}

impl Collector for StatsCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Fmt {
        let s = &*self.stats;
        let producers = s.producers();
        let entries: Vec<Entry> = s
            .consumers()
            .into_iter()
            .map(|main| Entry {
                tiers: main.tier_list(),
                main,
            })
            .collect();
        self.server(&mut e)?;
        produce(&mut e, &producers)?;
        partitions(&mut e, &entries)?;
        entry_counters(&mut e, &entries)?;
        delivery(&mut e, &entries)?;
        groups(&mut e, &entries)?;
        Ok(())
    }
}

impl StatsCollector {
    fn server(&self, e: &mut DescriptorEncoder<'_>) -> Fmt {
        let s = &*self.stats;
        let mut f = e.encode_descriptor(
            "bigpipe_build_info",
            "Always 1; the version label tells which bigpipe runs",
            None,
            MetricType::Gauge,
        )?;
        gauge(&mut f, &[("version", env!("CARGO_PKG_VERSION"))], 1)?;
        let mut f = e.encode_descriptor(
            "bigpipe_calls_received",
            "Calls received on /rpc/call",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(load(&s.server.received)).encode(f)?;
        f = e.encode_descriptor(
            "bigpipe_calls_accepted",
            "Calls taken into the ingest queue, per ACL",
            None,
            MetricType::Counter,
        )?;
        for (acl, n) in s.server.intake.accepted.snapshot() {
            counter(&mut f, &[("acl", &acl)], n)?;
        }
        f = e.encode_descriptor(
            "bigpipe_calls_refused",
            "Calls refused, per reason and ACL (\"\" before the ACL check passed)",
            None,
            MetricType::Counter,
        )?;
        for (reason, acl, n) in s.server.intake.refusals() {
            counter(&mut f, &[("reason", reason.as_str()), ("acl", &acl)], n)?;
        }
        f = e.encode_descriptor(
            "bigpipe_ingest_queue_calls",
            "Calls accepted and not yet acknowledged by Kafka",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(load_i(&s.queue.calls)).encode(f)?;
        f = e.encode_descriptor(
            "bigpipe_ingest_queue_bytes",
            "Bytes of the records of those calls",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(load_i(&s.queue.bytes)).encode(f)?;
        f = e.encode_descriptor(
            "bigpipe_log_dropped_lines",
            "Log lines dropped because the async log queue was full",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(load(&s.log_dropped)).encode(f)?;
        f = e.encode_descriptor(
            "bigpipe_config_reloads",
            "Config reloads, per result",
            None,
            MetricType::Counter,
        )?;
        counter(&mut f, &[("result", "applied")], load(&s.reloads))?;
        counter(&mut f, &[("result", "rejected")], load(&s.reloads_rejected))?;
        f = e.encode_descriptor(
            "bigpipe_idempotent_calls",
            "Calls with an idempotency key, per result (claimed: written; replayed: answered \
             with the first id; conflict: 409; unavailable: 503)",
            None,
            MetricType::Counter,
        )?;
        let server = &s.server;
        for (result, n) in [
            ("claimed", &server.idempotent_claims),
            ("replayed", &server.idempotent_replays),
            ("conflict", &server.idempotent_conflicts),
            ("unavailable", &server.idempotency_unavailable),
        ] {
            counter(&mut f, &[("result", result)], load(n))?;
        }
        f = e.encode_descriptor(
            "bigpipe_idempotency_keys",
            "Idempotency keys this process holds in memory",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::try_from(load(&server.idempotency_keys)).unwrap_or(i64::MAX)).encode(f)
    }
}

fn produce(e: &mut DescriptorEncoder<'_>, producers: &[(String, Arc<ProducerStats>)]) -> Fmt {
    let mut f = e.encode_descriptor(
        "bigpipe_produce_duration_seconds",
        "Time from a record's send to Kafka's acknowledgement, per topic",
        None,
        MetricType::Histogram,
    )?;
    for (topic, p) in producers {
        p.duration
            .encode(f.encode_family(&[("topic", topic.as_str())])?)?;
    }
    f = e.encode_descriptor(
        "bigpipe_produce_records",
        "Records produced, per topic and result (ok, failed, too_large)",
        None,
        MetricType::Counter,
    )?;
    for (topic, p) in producers {
        let too_large = load(&p.too_large);
        // `delivery_fail` includes the too-large failures; the label splits them.
        let failed = load(&p.delivery_fail).saturating_sub(too_large);
        for (result, n) in [
            ("ok", load(&p.delivery_success)),
            ("failed", failed),
            ("too_large", too_large),
        ] {
            counter(&mut f, &[("topic", topic), ("result", result)], n)?;
        }
    }
    f = e.encode_descriptor(
        "bigpipe_produce_retries",
        "Produce attempts that failed and were retried, per topic",
        None,
        MetricType::Counter,
    )?;
    for (topic, p) in producers {
        counter(&mut f, &[("topic", topic)], load(&p.retries))?;
    }
    Ok(())
}

/// Per partition gauges, for every lane (entries and their retry tiers).
fn partitions(e: &mut DescriptorEncoder<'_>, entries: &[Entry]) -> Fmt {
    type Pick = fn(&crate::stats::PartitionView) -> Option<i64>;
    let families: [(&str, &str, Pick); 5] = [
        (
            "bigpipe_consumer_lag_records",
            "Records behind the log end (from the committed offset)",
            |v| v.lag(),
        ),
        (
            "bigpipe_consumer_committed_offset",
            "The last committed offset",
            |v| v.committed,
        ),
        (
            "bigpipe_consumer_log_end_offset",
            "The partition's log-end offset",
            |v| v.log_end_offset.or(Some(v.high_watermark)),
        ),
        (
            "bigpipe_consumer_in_flight_calls",
            "Calls read and not finished",
            |v| i64::try_from(v.in_flight).ok(),
        ),
        (
            "bigpipe_consumer_stalled",
            "1 while the partition is behind and not moving",
            |v| Some(i64::from(v.stall.is_some())),
        ),
    ];
    let views: Vec<(&ConsumerStats, Vec<(String, crate::stats::PartitionView)>)> = entries
        .iter()
        .flat_map(Entry::lanes)
        .map(|lane| {
            let views = lane
                .partition_views()
                .into_iter()
                .map(|(p, v)| (p.to_string(), v))
                .collect();
            (&**lane, views)
        })
        .collect();
    for (name, help, pick) in families {
        let mut f = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (lane, list) in &views {
            for (p, v) in list {
                if let Some(value) = pick(v) {
                    let labels = [
                        ("group", lane.group_id.as_str()),
                        ("topic", &lane.topic),
                        ("partition", p),
                    ];
                    gauge(&mut f, &labels, value)?;
                }
            }
        }
    }
    Ok(())
}

/// Per entry counters and gauges (group, topic).
fn entry_counters(e: &mut DescriptorEncoder<'_>, entries: &[Entry]) -> Fmt {
    let mut f = e.encode_descriptor(
        "bigpipe_consumer_paused",
        "1 while the entry is paused by an operator",
        None,
        MetricType::Gauge,
    )?;
    for c in entries.iter().map(|x| &x.main) {
        let paused = i64::from(c.paused.load(Ordering::Relaxed));
        gauge(&mut f, &[("group", &c.group_id), ("topic", &c.topic)], paused)?;
    }
    type Count = fn(&ConsumerStats) -> u64;
    let counters: [(&str, &str, Count); 6] = [
        ("bigpipe_consumer_records", "Records taken from Kafka", |c| {
            load(&c.handle_message)
        }),
        (
            "bigpipe_callbacks",
            "Callback calls written (final outcomes of calls with a callback_url)",
            |c| load(&c.callbacks),
        ),
        (
            "bigpipe_callback_failures",
            "Callbacks that could not be written within deadLetterTimeout (reported in the log)",
            |c| load(&c.callback_failed),
        ),
        (
            "bigpipe_scheduled_calls",
            "Scheduled calls read before they were due",
            |c| load(&c.scheduled),
        ),
        (
            "bigpipe_consumer_invalid_records",
            "Records that are not valid calls",
            |c| load(&c.invalid_message),
        ),
        (
            "bigpipe_dead_letter_failures",
            "Calls whose dead letter could not be written at all",
            |c| load(&c.dead_letter_failed),
        ),
    ];
    for (name, help, count) in counters {
        f = e.encode_descriptor(name, help, None, MetricType::Counter)?;
        for c in entries.iter().map(|x| &x.main) {
            counter(&mut f, &[("group", &c.group_id), ("topic", &c.topic)], count(c))?;
        }
    }
    f = e.encode_descriptor(
        "bigpipe_scheduled_waiting_calls",
        "Scheduled calls this process holds until they are due (more wait in the retry tier topics)",
        None,
        MetricType::Gauge,
    )?;
    for c in entries.iter().map(|x| &x.main) {
        let waiting = c.scheduled_waiting.load(Ordering::Relaxed);
        gauge(&mut f, &[("group", &c.group_id), ("topic", &c.topic)], waiting)?;
    }
    f = e.encode_descriptor(
        "bigpipe_retry_tier_waiting_records",
        "Calls waiting in a retry tier (the tier lane's lag)",
        None,
        MetricType::Gauge,
    )?;
    for x in entries {
        for tier in &x.tiers {
            let waiting: i64 = tier.partition_views().values().filter_map(|v| v.lag()).sum();
            let labels = [
                ("group", x.main.group_id.as_str()),
                ("topic", &x.main.topic),
                ("tier", &tier.topic),
            ];
            gauge(&mut f, &labels, waiting)?;
        }
    }
    Ok(())
}

fn delivery(e: &mut DescriptorEncoder<'_>, entries: &[Entry]) -> Fmt {
    let mains: Vec<&ConsumerStats> = entries.iter().map(|x| &*x.main).collect();
    let mut f = e.encode_descriptor(
        "bigpipe_delivery_attempts",
        "Delivery attempts, per target host (capped by metrics.max_hosts), outcome and status class",
        None,
        MetricType::Counter,
    )?;
    for c in &mains {
        for (host, counters) in c.delivery.hosts.snapshot() {
            for (outcome, class, n) in counters.attempts() {
                let labels = [
                    ("group", c.group_id.as_str()),
                    ("topic", &c.topic),
                    ("host", &host),
                    ("outcome", outcome.as_str()),
                    ("status_class", class.as_str()),
                ];
                counter(&mut f, &labels, n)?;
            }
        }
    }
    f = e.encode_descriptor(
        "bigpipe_delivery_calls",
        "Calls finished, per result (delivered, failed: given up)",
        None,
        MetricType::Counter,
    )?;
    for c in &mains {
        for (result, n) in [("delivered", load(&c.rpc_success)), ("failed", load(&c.rpc_fail))] {
            counter(
                &mut f,
                &[("group", &c.group_id), ("topic", &c.topic), ("result", result)],
                n,
            )?;
        }
    }
    f = e.encode_descriptor(
        "bigpipe_delivery_latency_seconds",
        "Time from the record's CreateTime (acceptance) to the call's delivery",
        None,
        MetricType::Histogram,
    )?;
    for c in &mains {
        let labels = [("group", c.group_id.as_str()), ("topic", &c.topic)];
        c.delivery.latency.encode(f.encode_family(&labels)?)?;
    }
    f = e.encode_descriptor(
        "bigpipe_dead_letters",
        "Calls written to the dead-letter topic, per reason class",
        None,
        MetricType::Counter,
    )?;
    for c in &mains {
        for (reason, n) in c.delivery.dead_letters() {
            let labels = [
                ("group", c.group_id.as_str()),
                ("topic", &c.topic),
                ("reason", reason.as_str()),
            ];
            counter(&mut f, &labels, n)?;
        }
    }
    f = e.encode_descriptor(
        "bigpipe_circuit_state",
        "Circuit breaker per target host: 0 closed, 1 open, 2 half-open",
        None,
        MetricType::Gauge,
    )?;
    for c in &mains {
        for (host, counters) in c.delivery.hosts.snapshot() {
            if let Some(state) = counters.circuit() {
                gauge(
                    &mut f,
                    &[("group", &c.group_id), ("topic", &c.topic), ("host", &host)],
                    state,
                )?;
            }
        }
    }
    Ok(())
}

/// Group membership, per lane (each lane is a group).
fn groups(e: &mut DescriptorEncoder<'_>, entries: &[Entry]) -> Fmt {
    type Pick = fn(&ConsumerStats) -> i64;
    let gauges: [(&str, &str, Pick); 3] = [
        (
            "bigpipe_group_generation",
            "The generation this process joined last",
            |c| load_i(&c.generation),
        ),
        (
            "bigpipe_group_members",
            "Members in the last join as known here (the leader knows all; others count themselves)",
            |c| load_i(&c.members),
        ),
        (
            "bigpipe_group_assigned_partitions",
            "Partitions assigned to this process",
            |c| load_i(&c.assigned_partitions),
        ),
    ];
    let lanes: Vec<&Arc<ConsumerStats>> = entries.iter().flat_map(Entry::lanes).collect();
    for (name, help, pick) in gauges {
        let mut f = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for c in &lanes {
            gauge(&mut f, &[("group", &c.group_id), ("topic", &c.topic)], pick(c))?;
        }
    }
    let mut f = e.encode_descriptor(
        "bigpipe_group_rebalances",
        "Assignments received (one per rebalance this process took part in)",
        None,
        MetricType::Counter,
    )?;
    for c in &lanes {
        counter(
            &mut f,
            &[("group", &c.group_id), ("topic", &c.topic)],
            load(&c.rebalances),
        )?;
    }
    Ok(())
}
