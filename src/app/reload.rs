//! Hot reload (SIGUSR1): apply a new, fully validated config without dropping a call.
//!
//! Reloadable: ACLs (secret files and `${ENV}` references are read again; an
//! ACL quota whose `rate` and `burst` are unchanged keeps its state, so a
//! reload neither refills nor empties a burst; the per-source throttle on failed
//! ACL checks is not reset), `ack.mode`, `ack.timeout.ms`, `http.server.body.limit`,
//! the ingest queue limits (`http.server.handler.channel.size`,
//! `kafka.producer.queue.bytes`, `kafka.producer.queue.reserved`, and the
//! ACLs that get a reserve) and `message.timeout.ms` (for new calls),
//! topics (new ones are created), consumer entries (unchanged ones keep
//! running, added ones start, removed ones leave their groups, changed ones
//! leave and join again), and `log.level` (applied by the caller, who owns the
//! logger). Everything else is kept at its start-up value and reported as
//! needing a restart: the HTTP listener (`http.server.host`, `port`,
//! `workers`, `read.timeout`, `write.timeout`, `keepalive.timeout`, `max.connections`,
//! `max.connection.rate`, and `http.admin.*`), the Kafka connection
//! (`kafka.bootstrap.servers`, `client.id`, `request.timeout.ms`,
//! `metadata.refresh.ms`, `security.protocol`, `sasl.*`, `ssl.*`), batching (`kafka.producer.linger.ms`,
//! `batch.bytes`), `delivery.*`, `log.directory`, `log.queue.size`,
//! `shutdown.grace.ms`, `admin.control.topic` and `http.server.idempotency.*`.

use std::sync::Arc;

use slog::{info, warn};

use super::consumers::EntryChanges;
use super::{Running, admin_entries, api_config, producer_config, wanted_topics};
use crate::config::Settings;
use crate::consumer::EntryError;

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Consumer entries kept, started, stopped and restarted.
    pub consumers: EntryChanges,
    /// Keys whose new value only takes effect after a restart.
    pub restart_needed: Vec<&'static str>,
}

/// The keys that changed between `boot` and `new` but cannot change at run time.
pub(super) fn restart_needed(boot: &Settings, new: &Settings) -> Vec<&'static str> {
    let (h, n) = (&boot.http, &new.http);
    let checks: [(&'static str, bool); 26] = [
        ("http.server.keepalive.timeout", h.keep_alive != n.keep_alive),
        (
            "http.server.max.connections",
            h.max_connections != n.max_connections,
        ),
        (
            "http.server.max.connection.rate",
            h.max_connection_rate != n.max_connection_rate,
        ),
        ("http.admin.host", h.admin.host != n.admin.host),
        ("http.admin.port", h.admin.port != n.admin.port),
        ("http.admin.token", h.admin.token != n.admin.token),
        ("http.server.host", boot.http.host != new.http.host),
        ("http.server.port", boot.http.port != new.http.port),
        ("http.server.workers", boot.http.workers != new.http.workers),
        (
            "http.server.read.timeout",
            boot.http.read_timeout != new.http.read_timeout,
        ),
        (
            "http.server.write.timeout",
            boot.http.write_timeout != new.http.write_timeout,
        ),
        (
            "kafka.bootstrap.servers",
            boot.kafka.bootstrap_servers != new.kafka.bootstrap_servers,
        ),
        ("kafka.client.id", boot.kafka.client_id != new.kafka.client_id),
        (
            "kafka.group.instance.id",
            boot.kafka.group_instance_id != new.kafka.group_instance_id,
        ),
        (
            "kafka.request.timeout.ms",
            boot.kafka.request_timeout != new.kafka.request_timeout,
        ),
        (
            "kafka.metadata.refresh.ms",
            boot.kafka.metadata_refresh != new.kafka.metadata_refresh,
        ),
        // One entry for the whole group: protocol, SASL credentials (a password file read
        // again counts) and TLS files all feed the connection settings built at start.
        (
            "kafka.security.protocol/sasl.*/ssl.*",
            boot.kafka.security != new.kafka.security,
        ),
        (
            "kafka.producer.linger.ms",
            boot.producer.linger != new.producer.linger,
        ),
        (
            "kafka.producer.batch.bytes",
            boot.producer.batch_bytes != new.producer.batch_bytes,
        ),
        ("delivery", boot.delivery != new.delivery),
        ("log.directory", boot.log.directory != new.log.directory),
        ("log.queue.size", boot.log.queue_size != new.log.queue_size),
        ("shutdown.grace.ms", boot.shutdown != new.shutdown),
        ("kafka.topics[].partitions", partitions_changed(boot, new)),
        ("admin.control.topic", boot.control != new.control),
        (
            "http.server.idempotency.*",
            boot.http.idempotency != new.http.idempotency,
        ),
    ];
    checks
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(k, _)| k)
        .collect()
}

/// Partition counts of existing topics come from Kafka; a changed count in
/// the config does not repartition a topic.
fn partitions_changed(boot: &Settings, new: &Settings) -> bool {
    new.kafka.topics.iter().any(|t| {
        boot.kafka
            .topics
            .iter()
            .any(|b| b.name == t.name && b.partitions != t.partitions)
    })
}

impl Running {
    /// Applies `new` (already validated in full by the caller). The swap of
    /// the handlers' settings is atomic: a request sees either the old or the
    /// new ACLs and limits, never a mix, and no call is dropped.
    ///
    /// # Errors
    /// When a new consumer entry cannot be built.
    pub async fn reload(&mut self, new: Settings) -> Result<ReloadReport, EntryError> {
        let restart = restart_needed(&self.boot, &new);
        for key in &restart {
            warn!(self.log, "config key changed but needs a restart; keeping the running value"; "key" => key);
        }
        // Topics first, so that calls for a new ACL topic have a partition count
        // before the new ACL lets them in.
        for t in &new.kafka.topics {
            if self.table.count(&t.name).is_none() {
                self.table.set(&t.name, t.partitions);
            }
        }
        // The control and claims topics in force are the ones read since start (their keys
        // need a restart): keep those present, not new names nobody reads.
        let mut in_force = Settings {
            control: self.boot.control.clone(),
            ..new.clone()
        };
        in_force.http.idempotency = self.boot.http.idempotency.clone();
        self.topics.store(Arc::new(wanted_topics(&in_force)));
        let p = producer_config(&new);
        self.producer
            .handle()
            .reconfigure(&p.budget_limits(), p.message_timeout);
        // The body limit is the only `http.server` key that is reloadable. Ingest keeps the
        // headers that delivery forwards: the entries' new forwardHeaders, but the start-up
        // `delivery.headers.*`, which the delivery side keeps until a restart. ACL quotas
        // whose limits are unchanged keep their state (no refill by reload).
        let previous = self.api_config.load_full();
        self.api_config.store(Arc::new(api_config(
            &new,
            &self.boot.delivery,
            &self.destinations,
            Some(&previous),
        )));
        let consumers = self
            .consumers
            .apply(&new.consumers, new.shutdown.grace.min(self.boot.shutdown.grace))
            .await?;
        self.groups.entries.store(Arc::new(admin_entries(&new)));
        info!(self.log, "config reloaded"; "restart_needed" => ?restart);
        Ok(ReloadReport {
            consumers,
            restart_needed: restart,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Format, load_from_str};

    fn settings(extra: &str) -> Settings {
        load_from_str(
            &format!("[kafka]\ntopics = [{{name = \"t\", partitions = 3}}]\n{extra}"),
            Format::Toml,
        )
        .unwrap()
    }

    #[test]
    fn listener_limits_and_the_admin_listener_need_a_restart() {
        let boot = settings("");
        let new = settings(
            "[http.server]\nkeepalive.timeout = 1\nmax.connections = 2\nmax.connection.rate = 3\n\
             [http.admin]\nport = 4\ntoken = \"0123456789abcdef\"\n",
        );
        assert_eq!(
            restart_needed(&boot, &new),
            [
                "http.server.keepalive.timeout",
                "http.server.max.connections",
                "http.server.max.connection.rate",
                "http.admin.port",
                "http.admin.token",
            ]
        );
    }

    #[test]
    fn listener_and_connection_changes_need_a_restart() {
        let boot = settings("[http.server]\nport = 1000\n");
        let new = settings("[http.server]\nport = 2000\nbody.limit = 10\n[kafka.producer.linger]\nms = 50\n");
        assert_eq!(
            restart_needed(&boot, &new),
            ["http.server.port", "kafka.producer.linger.ms"]
        );
    }

    #[test]
    fn a_new_control_topic_needs_a_restart() {
        let boot = settings("");
        let new = settings("[admin.control]\ntopic = \"\"\n");
        assert_eq!(restart_needed(&boot, &new), ["admin.control.topic"]);
    }

    #[test]
    fn kafka_security_changes_need_a_restart() {
        let boot = settings("");
        let new = settings(
            "[kafka.security]\nprotocol = \"SASL_PLAINTEXT\"\n[kafka.sasl]\nmechanism = \"PLAIN\"\n\
             username = \"u\"\npassword = \"p\"\n",
        );
        assert_eq!(
            restart_needed(&boot, &new),
            ["kafka.security.protocol/sasl.*/ssl.*"]
        );
    }

    #[test]
    fn reloadable_changes_need_no_restart() {
        let boot = settings("");
        let new = settings(
            "[http.server]\nbody.limit = 10\nhandler.channel.size = 5\n[[kafka.producer.acl]]\nname = \"n\"\n\
             secret = \"s\"\ntopic = \"t\"\n",
        );
        assert!(restart_needed(&boot, &new).is_empty());
    }
}
