//! The running consumer entries, keyed by (topic, groupId), so a reload can
//! keep the unchanged ones and start or stop the others.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use slog::{Logger, info, warn};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::ConsumerSettings;
use crate::consumer::{self, EntryContext, EntryError};
use crate::control::Control;
use crate::delivery::DeliveryPool;
use crate::delivery::forward::HeaderPolicy;
use crate::group::ScaleDown;
use crate::kafka::client::KafkaClient;
use crate::kafka::metadata::PartitionTable;
use crate::stats::Stats;

/// One running consumer entry.
#[derive(Debug)]
struct Entry {
    settings: ConsumerSettings,
    stop: CancellationToken,
    /// Set before `stop` when the entry goes for good: its static members leave their groups.
    scale_down: ScaleDown,
    task: JoinHandle<()>,
}

/// Every running consumer entry and what they need to start.
#[derive(Debug)]
pub(super) struct ConsumerSet {
    entries: BTreeMap<(String, String), Entry>,
    client: Arc<KafkaClient>,
    table: Arc<PartitionTable>,
    pool: Arc<DeliveryPool>,
    headers: HeaderPolicy,
    stats: Arc<Stats>,
    /// The control topic every entry's gate follows (`None`: off).
    pub(super) control: Option<Arc<Control>>,
    /// `kafka.group.instance.id` (`None`: dynamic members). It cannot change by reload.
    pub(super) instance_id: Option<String>,
    log: Logger,
}

/// What a reload did to the consumer entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryChanges {
    /// Entries left running untouched.
    pub kept: Vec<String>,
    /// New entries started.
    pub started: Vec<String>,
    /// Removed entries, stopped (they left their groups).
    pub stopped: Vec<String>,
    /// Changed entries, stopped and started again with the new settings.
    pub restarted: Vec<String>,
}

fn key(s: &ConsumerSettings) -> (String, String) {
    (s.topic.clone(), s.group_id.clone())
}

fn name(k: &(String, String)) -> String {
    format!("{}/{}", k.0, k.1)
}

impl ConsumerSet {
    pub(super) fn new(
        client: Arc<KafkaClient>,
        table: Arc<PartitionTable>,
        pool: Arc<DeliveryPool>,
        headers: HeaderPolicy,
        stats: Arc<Stats>,
        log: Logger,
    ) -> Self {
        Self {
            entries: BTreeMap::new(),
            control: None,
            instance_id: None,
            client,
            table,
            pool,
            headers,
            stats,
            log,
        }
    }

    /// Starts one entry. Its counters continue from any earlier run of the same entry.
    pub(super) fn start(&mut self, settings: ConsumerSettings) -> Result<(), EntryError> {
        let mut ctx = EntryContext::new(
            settings.clone(),
            Arc::clone(&self.client),
            Arc::clone(&self.table),
            Arc::clone(&self.pool),
            &self.headers,
            &self.stats,
            &self.log,
        )?;
        ctx.control = self.control.clone();
        ctx.instance_id = self.instance_id.clone();
        let scale_down = ctx.scale_down.clone();
        let stop = CancellationToken::new();
        let task = tokio::spawn(consumer::run(Arc::new(ctx), stop.clone()));
        self.entries.insert(
            key(&settings),
            Entry {
                settings,
                stop,
                scale_down,
                task,
            },
        );
        Ok(())
    }

    async fn stop_entry(&self, k: &(String, String), entry: Entry, grace: Duration) {
        entry.stop.cancel();
        let mut task = entry.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            warn!(self.log, "consumer entry did not stop in time; aborted, its uncommitted calls are delivered again";
                "entry" => name(k));
            task.abort();
        }
    }

    /// Brings the running entries in line with `wanted`.
    ///
    /// # Errors
    /// When a new entry cannot be built; entries already changed stay changed.
    pub(super) async fn apply(
        &mut self,
        wanted: &[ConsumerSettings],
        grace: Duration,
    ) -> Result<EntryChanges, EntryError> {
        let mut changes = EntryChanges::default();
        let wanted_keys: BTreeMap<(String, String), &ConsumerSettings> =
            wanted.iter().map(|s| (key(s), s)).collect();
        let current: Vec<(String, String)> = self.entries.keys().cloned().collect();
        for k in current {
            let keep = wanted_keys
                .get(&k)
                .is_some_and(|s| self.entries.get(&k).is_some_and(|e| &e.settings == *s));
            if keep {
                changes.kept.push(name(&k));
                continue;
            }
            if let Some(entry) = self.entries.remove(&k) {
                // A removed entry's static members leave; a changed one keeps its place, so
                // its restart moves no partitions.
                if !wanted_keys.contains_key(&k) {
                    entry.scale_down.set();
                }
                self.stop_entry(&k, entry, grace).await;
            }
            if wanted_keys.contains_key(&k) {
                changes.restarted.push(name(&k));
            } else {
                changes.stopped.push(name(&k));
            }
        }
        for (k, s) in wanted_keys {
            if !self.entries.contains_key(&k) {
                self.start(s.clone())?;
                if !changes.restarted.contains(&name(&k)) {
                    changes.started.push(name(&k));
                }
            }
        }
        info!(self.log, "consumer entries reloaded"; "kept" => ?changes.kept, "started" => ?changes.started,
            "stopped" => ?changes.stopped, "restarted" => ?changes.restarted);
        Ok(changes)
    }

    /// Marks the coming stop of every entry as a scale-down: static members leave their
    /// groups instead of keeping their partitions for a restart.
    pub(super) fn scale_down(&self) {
        for entry in self.entries.values() {
            entry.scale_down.set();
        }
    }

    /// Stops every entry: revoke, commit, leave the group (static members only when scaling
    /// down); bounded by `grace`.
    pub(super) async fn stop_all(mut self, grace: Duration) {
        let entries = std::mem::take(&mut self.entries);
        for (_, e) in entries.iter() {
            e.stop.cancel();
        }
        let this = &self;
        futures::future::join_all(
            entries
                .into_iter()
                .map(|(k, e)| async move { this.stop_entry(&k, e, grace).await }),
        )
        .await;
    }
}
