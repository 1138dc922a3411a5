//! What the group and dead-letter handlers share: the Kafka client, partition counts, the
//! consumer entries of this process's config, their counters and the control topic.

use std::sync::Arc;

use arc_swap::ArcSwap;
use slog::Logger;

use super::reply::AdminError;
use crate::control::Control;
use crate::kafka::client::KafkaClient;
use crate::kafka::metadata::PartitionTable;
use crate::stats::Stats;

/// One consumer entry as the admin API names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRef {
    /// Consumer group id.
    pub group: String,
    /// Source (main) topic.
    pub topic: String,
    /// Dead-letter topic, if the entry has one.
    pub dead_letter_topic: Option<String>,
}

/// The shared state of the group and dead-letter handlers.
#[derive(Debug)]
pub struct GroupAdmin {
    /// The shared Kafka client (rskafka partition clients, wire connections' settings).
    pub client: Arc<KafkaClient>,
    /// Partition counts from metadata.
    pub table: Arc<PartitionTable>,
    /// The consumer entries in force (replaced on reload).
    pub entries: ArcSwap<Vec<EntryRef>>,
    /// Per-entry counters, for the `local` state of owned partitions.
    pub stats: Arc<Stats>,
    /// The control topic; `None` when `admin.control.topic` is "" (replay markers off).
    pub control: Option<Arc<Control>>,
    /// Logger for audit lines.
    pub log: Logger,
}

/// Why a path's group (and `topic`) names no entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// No entry has this group id (and topic).
    #[error("unknown group {0}")]
    Unknown(String),
    /// The group id has several entries and no topic was given.
    #[error("topic required: group {0} consumes several topics")]
    TopicRequired(String),
}

impl From<EntryError> for AdminError {
    fn from(e: EntryError) -> Self {
        match e {
            EntryError::Unknown(_) => AdminError::NotFound(e.to_string()),
            EntryError::TopicRequired(_) => AdminError::BadRequest(e.to_string()),
        }
    }
}

/// `?topic=` alone (describe, pause, resume, retransmit, show, replay).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicQuery {
    /// The entry's topic, needed when the group id has several entries.
    pub topic: Option<String>,
}

/// The request's query string as `T`.
///
/// # Errors
/// A 400 naming what is wrong with it.
pub fn query<T: serde::de::DeserializeOwned>(req: &actix_web::HttpRequest) -> Result<T, AdminError> {
    actix_web::web::Query::<T>::from_query(req.query_string())
        .map(actix_web::web::Query::into_inner)
        .map_err(|e| AdminError::BadRequest(format!("query: {e}")))
}

/// The group administration state of an admin request, after its token check.
///
/// # Errors
/// [`AdminError::Unauthorized`]; a 409 when the listener serves no group administration.
pub fn of<'a>(
    req: &actix_web::HttpRequest,
    state: &'a super::AdminState,
) -> Result<&'a Arc<GroupAdmin>, AdminError> {
    super::authorize(req, state).map_err(|_| AdminError::Unauthorized)?;
    state
        .groups
        .as_ref()
        .ok_or_else(|| AdminError::Conflict("group administration is not available".into()))
}

impl GroupAdmin {
    /// The entry of `group` (on `topic`, needed when the group has several entries).
    ///
    /// # Errors
    /// [`EntryError`].
    pub fn entry(&self, group: &str, topic: Option<&str>) -> Result<EntryRef, EntryError> {
        let entries = self.entries.load();
        let mut found = entries
            .iter()
            .filter(|e| e.group == group && topic.is_none_or(|t| t == e.topic));
        match (found.next(), found.next()) {
            (Some(e), None) => Ok(e.clone()),
            (Some(_), Some(_)) => Err(EntryError::TopicRequired(group.to_owned())),
            (None, _) => Err(EntryError::Unknown(group.to_owned())),
        }
    }

    /// The entry of the path's `group` and the request's `?topic=`.
    ///
    /// # Errors
    /// A 400 for a bad query or a missing topic, a 404 for an unknown group.
    pub fn entry_of(&self, req: &actix_web::HttpRequest, group: &str) -> Result<EntryRef, AdminError> {
        let q: TopicQuery = query(req)?;
        Ok(self.entry(group, q.topic.as_deref())?)
    }

    /// True when the entry is paused group-wide (its control key says so).
    pub fn paused(&self, entry: &EntryRef) -> bool {
        let key = crate::control::keys::pause(&entry.group, &entry.topic);
        is_paused(self.control.as_ref().and_then(|c| c.get(&key)).as_ref())
    }
}

/// True when a pause value says paused: `{"paused": true}` (the control topic's format).
fn is_paused(value: Option<&serde_json::Value>) -> bool {
    value
        .and_then(|v| v.get("paused"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_an_explicit_pause_pauses() {
        assert!(is_paused(Some(&json!({"paused": true, "by": "ops"}))));
        assert!(!is_paused(Some(&json!({"paused": false}))));
        assert!(!is_paused(Some(&json!({"paused": "yes"}))));
        assert!(!is_paused(Some(&json!(true))));
        assert!(!is_paused(None));
    }
}
