//! The member's phase within a generation, and which phase may follow which.

use tokio::time::Instant;

use super::super::AssignorKind;
use super::super::codec::Subscription;

/// What happens once a revoke is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
    Rejoin,
    Leave,
}

#[derive(Debug)]
pub(super) enum Phase {
    /// Not in a generation; JoinGroup goes out as soon as the coordinator is known and no
    /// backoff is pending.
    Unjoined,
    Joining {
        seq: u64,
        sent: Instant,
    },
    /// Leader only: waiting for the partition counts of the subscribed topics to run the
    /// assignor.
    Assigning {
        seq: u64,
        kind: AssignorKind,
        /// Members and their subscriptions; `None` if undecodable (they get nothing).
        members: Vec<(String, Option<Subscription>)>,
        /// KIP-814: the coordinator keeps the group's assignment (a static leader rejoined a
        /// stable group); only the partition-count watch is set up, SyncGroup carries nothing.
        skip: bool,
    },
    Syncing {
        seq: u64,
        sent: Instant,
    },
    Stable,
    /// The consumer is stopping the partitions; the generation stays valid for commits and
    /// heartbeats keep the session alive (the coordinator answers them with
    /// REBALANCE_IN_PROGRESS meanwhile, which is expected here).
    Revoking {
        token: u64,
        deadline: Instant,
        then: After,
        /// The partitions being stopped: all owned (eager, or stopping), or only those a
        /// cooperative assignment moved elsewhere.
        partitions: Vec<i32>,
    },
    Leaving {
        seq: u64,
    },
    Stopped,
}

impl Phase {
    /// Stable or Revoking: we hold a valid generation and must heartbeat.
    pub(super) fn in_generation(&self) -> bool {
        matches!(self, Self::Stable | Self::Revoking { .. })
    }

    /// The phase's name, for logs and assertion messages.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Self::Unjoined => "Unjoined",
            Self::Joining { .. } => "Joining",
            Self::Assigning { .. } => "Assigning",
            Self::Syncing { .. } => "Syncing",
            Self::Stable => "Stable",
            Self::Revoking { .. } => "Revoking",
            Self::Leaving { .. } => "Leaving",
            Self::Stopped => "Stopped",
        }
    }

    /// Whether `to` may follow this phase: the diagram in the module docs, as a table.
    /// [`super::Member`] changes phase only through a method that asserts it.
    pub(super) fn may_become(&self, to: &Phase) -> bool {
        use Phase as P;
        match to {
            P::Joining { .. } => matches!(self, P::Unjoined),
            P::Assigning { .. } => matches!(self, P::Joining { .. }),
            // A follower syncs straight after its join; the leader after assigning.
            P::Syncing { .. } => matches!(self, P::Joining { .. } | P::Assigning { .. }),
            P::Stable => matches!(self, P::Syncing { .. }),
            // A stop during a cooperative partial revoke goes on to revoke the rest.
            P::Revoking { .. } => matches!(self, P::Stable | P::Revoking { .. }),
            // Errors, a revoke done, a lost session: back to the start from any live phase.
            P::Unjoined => !matches!(self, P::Unjoined | P::Leaving { .. } | P::Stopped),
            P::Leaving { .. } => !matches!(self, P::Leaving { .. } | P::Stopped),
            P::Stopped => !matches!(self, P::Stopped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(now: Instant) -> Vec<Phase> {
        vec![
            Phase::Unjoined,
            Phase::Joining { seq: 1, sent: now },
            Phase::Assigning {
                seq: 1,
                kind: AssignorKind::Sticky,
                members: Vec::new(),
                skip: false,
            },
            Phase::Syncing { seq: 1, sent: now },
            Phase::Stable,
            Phase::Revoking {
                token: 1,
                deadline: now,
                then: After::Rejoin,
                partitions: vec![0],
            },
            Phase::Leaving { seq: 1 },
            Phase::Stopped,
        ]
    }

    #[test]
    fn transition_table_matches_the_diagram() {
        let now = Instant::now();
        let legal: Vec<(&str, &str)> = all(now)
            .iter()
            .flat_map(|from| {
                all(now)
                    .into_iter()
                    .filter(|to| from.may_become(to))
                    .map(|to| (from.name(), to.name()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let expected = [
            ("Unjoined", "Joining"),
            ("Unjoined", "Leaving"),
            ("Unjoined", "Stopped"),
            ("Joining", "Unjoined"),
            ("Joining", "Assigning"),
            ("Joining", "Syncing"),
            ("Joining", "Leaving"),
            ("Joining", "Stopped"),
            ("Assigning", "Unjoined"),
            ("Assigning", "Syncing"),
            ("Assigning", "Leaving"),
            ("Assigning", "Stopped"),
            ("Syncing", "Unjoined"),
            ("Syncing", "Stable"),
            ("Syncing", "Leaving"),
            ("Syncing", "Stopped"),
            ("Stable", "Unjoined"),
            ("Stable", "Revoking"),
            ("Stable", "Leaving"),
            ("Stable", "Stopped"),
            ("Revoking", "Unjoined"),
            ("Revoking", "Revoking"),
            ("Revoking", "Leaving"),
            ("Revoking", "Stopped"),
            ("Leaving", "Stopped"),
        ];
        assert_eq!(legal, expected);
    }
}
