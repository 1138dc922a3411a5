//! The leader's part: planning the assignment over the members' subscriptions, and watching
//! the partition counts it assigned.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

use super::super::codec::Subscription;
use super::super::{AssignorKind, assignor};

/// The leader's watch on the partition counts it assigned.
#[derive(Debug)]
pub(super) struct LeaderCheck {
    /// Every topic of the group's subscriptions → its partition count then (`None`: missing).
    pub(super) partitions: BTreeMap<String, Option<i32>>,
    pub(super) next_check: Instant,
    pub(super) inflight: Option<u64>,
}

/// The topics of all decodable subscriptions, sorted, each once.
pub(super) fn subscribed_topics(members: &[(String, Option<Subscription>)]) -> Vec<String> {
    members
        .iter()
        .filter_map(|(_, sub)| sub.as_ref())
        .flat_map(|sub| sub.topics.iter().cloned())
        .collect::<BTreeSet<String>>()
        .into_iter()
        .collect()
}

/// The leader's plan: member id → (topic, partitions) for every member that gets something.
///
/// The assignor runs once per subscribed topic, over the members subscribed to it (with what
/// they owned of it), as Java's assignors do. A cooperative kind leaves out partitions another
/// member still owns (see [`assignor::withhold_moving`]). Undecodable members (`None`) get nothing, and
/// a missing topic (`None` count) assigns nothing.
pub(super) fn plan(
    kind: AssignorKind,
    members: &[(String, Option<Subscription>)],
    counts: &BTreeMap<String, Option<i32>>,
) -> BTreeMap<String, Vec<(String, Vec<i32>)>> {
    let mut plan: BTreeMap<String, Vec<(String, Vec<i32>)>> = BTreeMap::new();
    for (topic, count) in counts {
        let claims: Vec<(String, Vec<i32>, i32)> = members
            .iter()
            .filter_map(|(id, sub)| {
                let sub = sub.as_ref()?;
                sub.topics
                    .contains(topic)
                    .then(|| (id.clone(), sub.owned_of(topic), sub.generation))
            })
            .collect();
        let resolved = assignor::resolve_claims(&claims);
        let mut assigned = assignor::assign(kind, &resolved, count.unwrap_or(0));
        if kind.is_cooperative() {
            assigned = assignor::withhold_moving(&resolved, assigned);
        }
        for (id, parts) in assigned {
            if !parts.is_empty() {
                plan.entry(id).or_default().push((topic.clone(), parts));
            }
        }
    }
    plan
}

/// The topics whose partition count differs between what the leader assigned (`before`) and
/// what the broker says now: (topic, before, now).
pub(super) fn changed_counts(
    before: &BTreeMap<String, Option<i32>>,
    now: &BTreeMap<String, Option<i32>>,
) -> Vec<(String, Option<i32>, Option<i32>)> {
    before
        .iter()
        .filter_map(|(topic, &was)| {
            let count = now.get(topic).copied().flatten();
            (count != was).then(|| (topic.clone(), was, count))
        })
        .collect()
}
