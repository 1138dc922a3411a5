//! The machine's timers, as a table: which deadlines exist, and the fixed durations behind
//! them. Each deadline is derived from the state ([`super::Member::timer`]), so a timer can
//! never outlive the state that armed it.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::BackoffConfig;

/// Every deadline the machine can wait for. [`super::Member::next_deadline`] is the earliest
/// armed one; `drive` acts on each that has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// The backoff gate before the next FindCoordinator or JoinGroup.
    Backoff,
    /// The consumer must acknowledge a revoke by then (`revoke_timeout`).
    Revoke,
    /// Without a live heartbeat by then the session is over (`session_timeout`).
    Session,
    /// The next heartbeat goes out (`heartbeat_interval`).
    Heartbeat,
    /// The leader's next look at the partition counts it assigned.
    LeaderCheck,
}

impl Timer {
    pub(super) const ALL: [Timer; 5] = [
        Timer::Backoff,
        Timer::Revoke,
        Timer::Session,
        Timer::Heartbeat,
        Timer::LeaderCheck,
    ];
}

/// Wait after a configuration-class error (INCONSISTENT_GROUP_PROTOCOL, INVALID_SESSION_TIMEOUT,
/// GROUP_AUTHORIZATION_FAILED, GROUP_MAX_SIZE_REACHED, an unsupported broker): an operator has
/// to act, retrying faster only floods the logs.
pub(super) const FATAL_RETRY: Duration = Duration::from_secs(30);

/// How often the leader re-reads the partition counts of the topics it assigned; a change
/// triggers a rebalance so new partitions get an owner (Java's leader does the same on its
/// metadata refresh).
pub(super) const METADATA_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// The leader's check while a subscribed topic is missing: bigpipe creates its topics
/// (retry tiers, new entries) while the groups join, and their partitions should get
/// an owner within a second of existing, not at the next 30 s check.
pub(super) const MISSING_TOPIC_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// When the leader checks partition counts next, given the counts it knows.
pub(super) fn next_check_after(now: Instant, counts: &BTreeMap<String, Option<i32>>) -> Instant {
    if counts.values().any(Option::is_none) {
        now + MISSING_TOPIC_CHECK_INTERVAL
    } else {
        now + METADATA_CHECK_INTERVAL
    }
}

/// Retry delay for a heartbeat that failed without ending the membership (at most the
/// heartbeat interval).
pub(super) const HEARTBEAT_RETRY: Duration = Duration::from_millis(200);

/// How long after a member starts its expected start-up states are info, not warnings: a new
/// broker creates its offsets topic (no coordinator yet, then NOT_COORDINATOR), and bigpipe
/// creates its own topics while its groups join. Still so after this, they are warned about.
pub(super) const STARTUP_GRACE: Duration = Duration::from_secs(30);

/// Heartbeat interval while a follow-up rebalance is announced (cooperative protocol): members
/// learn of a rebalance only from a heartbeat answer, and the partitions held back wait for it.
pub(super) const PROMPT_HEARTBEAT: Duration = Duration::from_millis(250);

/// Backoff for finding the coordinator and for rejoining after transient errors. The cap is
/// short (Java's `retry.backoff.max.ms` is 1 s) because a member that backs off past the
/// coordinator's return keeps its partitions idle for nothing; with full jitter even many
/// members polling a missing coordinator stay cheap.
pub(super) const RETRY_BACKOFF: BackoffConfig = BackoffConfig {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(2),
    factor: 2.0,
};
