//! Partition assignors run by the group leader: `range`, `roundrobin`, `sticky` and
//! `cooperative-sticky` (sticky, then [`withhold_moving`]), all pure and
//! deterministic (the same members and partitions give the same answer, whatever their order).
//!
//! Each works on one topic: the leader runs the chosen one per subscribed topic, over the
//! members subscribed to it (members of one group may subscribe to different topics), so an
//! assignment here is just member → partitions of that topic.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use super::AssignorKind;

/// Assigns partitions `0..partitions` to `members` (member id, partitions it owned in the last
/// generation).
///
/// Every member appears in the result, possibly with no partitions; every partition goes to
/// exactly one member; member counts differ by at most one. Members are ordered by id (as
/// Java's assignors do), duplicates of an id are merged. `owned` only matters to
/// [`AssignorKind::Sticky`] and [`AssignorKind::CooperativeSticky`]; claims out of range are ignored and a partition claimed twice goes
/// to the member with the smaller id (settle claims by generation first, see
/// [`resolve_claims`]).
pub fn assign(
    kind: AssignorKind,
    members: &[(String, Vec<i32>)],
    partitions: i32,
) -> BTreeMap<String, Vec<i32>> {
    let mut owned: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
    for (id, parts) in members {
        owned
            .entry(id.as_str())
            .or_default()
            .extend(parts.iter().copied());
    }
    let ids: Vec<&str> = owned.keys().copied().collect();
    let count = usize::try_from(partitions).unwrap_or(0);
    let lists = if ids.is_empty() {
        Vec::new()
    } else {
        match kind {
            AssignorKind::Range => range(ids.len(), count),
            AssignorKind::RoundRobin => round_robin(ids.len(), count),
            AssignorKind::Sticky | AssignorKind::CooperativeSticky => {
                let owned: Vec<&BTreeSet<i32>> = owned.values().collect();
                sticky(&owned, count)
            }
        }
    };
    ids.iter()
        .map(|id| (*id).to_owned())
        .zip(lists.into_iter().map(|l| l.into_iter().map(to_i32).collect()))
        .collect()
}

/// The cooperative rule (KIP-429) over an assignment: a partition still owned by another member
/// (`owned`, claims settled by [`resolve_claims`]) is left out of its new member's assignment
/// this round. Its owner, whose assignment lacks it, revokes it and rejoins; the follow-up
/// rebalance then assigns it, unowned. So no partition is ever held by two members at once,
/// and partitions that do not move are never revoked.
pub fn withhold_moving(
    owned: &[(String, Vec<i32>)],
    assignment: BTreeMap<String, Vec<i32>>,
) -> BTreeMap<String, Vec<i32>> {
    let owner: BTreeMap<i32, &str> = owned
        .iter()
        .flat_map(|(id, parts)| parts.iter().map(move |p| (*p, id.as_str())))
        .collect();
    assignment
        .into_iter()
        .map(|(id, parts)| {
            let kept = parts
                .into_iter()
                .filter(|p| owner.get(p).is_none_or(|o| *o == id))
                .collect();
            (id, kept)
        })
        .collect()
}

/// Settles ownership claims before [`assign`]: each member is (id, owned partitions, the
/// generation they were owned in).
///
/// A partition claimed by several members stays with the claim from the highest generation;
/// the others are stale (a member that missed a rebalance still lists its old partitions). On a
/// tie neither claim can be trusted more, and the smaller member id keeps it, for determinism.
pub fn resolve_claims(members: &[(String, Vec<i32>, i32)]) -> Vec<(String, Vec<i32>)> {
    // partition -> (generation, member id) of the best claim so far
    let mut best: BTreeMap<i32, (i32, &str)> = BTreeMap::new();
    for (id, owned, generation) in members {
        for &p in owned {
            let candidate = (*generation, id.as_str());
            best.entry(p)
                .and_modify(|cur| {
                    if candidate.0 > cur.0 || (candidate.0 == cur.0 && candidate.1 < cur.1) {
                        *cur = candidate;
                    }
                })
                .or_insert(candidate);
        }
    }
    members
        .iter()
        .map(|(id, owned, _)| {
            let kept = owned
                .iter()
                .copied()
                .filter(|p| best.get(p).is_some_and(|(_, winner)| *winner == id.as_str()))
                .collect();
            (id.clone(), kept)
        })
        .collect()
}

fn to_i32(p: usize) -> i32 {
    // Partitions come from an i32 count, so they always fit.
    i32::try_from(p).unwrap_or(i32::MAX)
}

/// Java's RangeAssignor: contiguous blocks, the first `partitions % n` members one larger.
fn range(n: usize, partitions: usize) -> Vec<Vec<usize>> {
    let (per, extra) = (partitions / n, partitions % n);
    (0..n)
        .map(|i| {
            let start = i * per + i.min(extra);
            let len = per + usize::from(i < extra);
            (start..start + len).collect()
        })
        .collect()
}

/// Partition `k` goes to member `k % n`.
fn round_robin(n: usize, partitions: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); n];
    for p in 0..partitions {
        out[p % n].push(p);
    }
    out
}

/// Keeps as much of each member's ownership as balance allows, then hands the rest to the least
/// loaded members.
///
/// With `q = P / n` and `r = P % n`, a balanced assignment gives `r` members `q + 1` partitions
/// and the rest `q`. Every member keeps up to `q` of its owned partitions; up to `r` members
/// that own more keep one extra (those owning most first, so fewest move). What is left, plus
/// unowned partitions, fills members below `q` (least loaded first), then the remaining
/// `q + 1` slots. Only partitions above a member's share, or without a live owner, move.
fn sticky(owned: &[&BTreeSet<i32>], partitions: usize) -> Vec<Vec<usize>> {
    let n = owned.len();
    let (q, r) = (partitions / n, partitions % n);
    // Valid claims; a partition claimed twice stays with the first (smaller id) member.
    let mut taken = vec![false; partitions];
    let valid: Vec<Vec<usize>> = owned
        .iter()
        .map(|set| {
            set.iter()
                .filter_map(|&p| usize::try_from(p).ok())
                .filter(|&p| p < partitions && !std::mem::replace(&mut taken[p], true))
                .collect()
        })
        .collect();

    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (Reverse(valid[i].len()), i));
    let mut extras_left = r;
    let mut has_extra = vec![false; n];
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut assigned = vec![false; partitions];
    for i in order {
        let cap = if valid[i].len() > q && extras_left > 0 {
            extras_left -= 1;
            has_extra[i] = true;
            q + 1
        } else {
            q
        };
        for &p in valid[i].iter().take(cap) {
            out[i].push(p);
            assigned[p] = true;
        }
    }

    for p in (0..partitions).filter(|&p| !assigned[p]) {
        // Below the floor first, least loaded (then smallest id) first; then the members that
        // may still take one over the floor. The pool is exactly the sum of these gaps.
        let target = (0..n)
            .filter(|&i| out[i].len() < q)
            .min_by_key(|&i| (out[i].len(), i))
            .or_else(|| (0..n).find(|&i| !has_extra[i] && out[i].len() == q));
        if let Some(i) = target {
            if out[i].len() == q {
                has_extra[i] = true;
            }
            out[i].push(p);
        }
    }
    for list in &mut out {
        list.sort_unstable();
    }
    out
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    use super::*;

    const KINDS: [AssignorKind; 4] = [
        AssignorKind::CooperativeSticky,
        AssignorKind::Sticky,
        AssignorKind::Range,
        AssignorKind::RoundRobin,
    ];

    fn members(spec: &[(&str, &[i32])]) -> Vec<(String, Vec<i32>)> {
        spec.iter()
            .map(|(id, owned)| ((*id).to_owned(), owned.to_vec()))
            .collect()
    }

    fn fresh(n: usize) -> Vec<(String, Vec<i32>)> {
        (0..n).map(|i| (format!("m{i:02}"), Vec::new())).collect()
    }

    /// Every partition exactly once, every member present, counts within one of each other.
    fn check_valid(out: &BTreeMap<String, Vec<i32>>, members: &[(String, Vec<i32>)], partitions: i32) {
        let ids: BTreeSet<&str> = members.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(out.keys().map(String::as_str).collect::<BTreeSet<_>>(), ids);
        let mut all: Vec<i32> = out.values().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..partitions.max(0)).collect::<Vec<_>>(), "{out:?}");
        if let (Some(min), Some(max)) = (out.values().map(Vec::len).min(), out.values().map(Vec::len).max()) {
            assert!(max - min <= 1, "unbalanced: {out:?}");
        }
    }

    fn moved(before: &BTreeMap<String, Vec<i32>>, after: &BTreeMap<String, Vec<i32>>) -> usize {
        before
            .iter()
            .map(|(id, parts)| {
                let now: BTreeSet<i32> = after.get(id).into_iter().flatten().copied().collect();
                parts.iter().filter(|p| !now.contains(p)).count()
            })
            .sum()
    }

    fn as_members(a: &BTreeMap<String, Vec<i32>>) -> Vec<(String, Vec<i32>)> {
        a.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    #[test]
    fn range_gives_contiguous_blocks_like_java() {
        let out = assign(AssignorKind::Range, &fresh(3), 7);
        assert_eq!(out["m00"], vec![0, 1, 2]);
        assert_eq!(out["m01"], vec![3, 4]);
        assert_eq!(out["m02"], vec![5, 6]);
    }

    #[test]
    fn round_robin_deals_in_member_order() {
        let out = assign(AssignorKind::RoundRobin, &fresh(3), 7);
        assert_eq!(out["m00"], vec![0, 3, 6]);
        assert_eq!(out["m01"], vec![1, 4]);
        assert_eq!(out["m02"], vec![2, 5]);
    }

    #[test]
    fn edge_cases() {
        for kind in KINDS {
            assert!(assign(kind, &[], 6).is_empty());
            let out = assign(kind, &fresh(2), 0);
            assert_eq!(out.len(), 2);
            assert!(out.values().all(Vec::is_empty));
            // More members than partitions: some get nothing, but all are listed.
            let m = fresh(5);
            let out = assign(kind, &m, 3);
            check_valid(&out, &m, 3);
            assert_eq!(out.values().filter(|v| v.is_empty()).count(), 2);
            // Negative counts are treated as zero.
            assert!(assign(kind, &fresh(1), -4)["m00"].is_empty());
        }
    }

    #[test]
    fn order_of_members_does_not_matter() {
        let mut rng = StdRng::seed_from_u64(7);
        let m = members(&[("c", &[0, 1, 2]), ("a", &[5]), ("b", &[3, 9, 4])]);
        for kind in KINDS {
            let expected = assign(kind, &m, 10);
            for _ in 0..10 {
                let mut shuffled = m.clone();
                shuffled.shuffle(&mut rng);
                assert_eq!(assign(kind, &shuffled, 10), expected);
            }
        }
    }

    #[test]
    fn sticky_keeps_a_balanced_assignment_unchanged() {
        let m = members(&[("a", &[4, 5]), ("b", &[0, 2]), ("c", &[1, 3])]);
        let out = assign(AssignorKind::Sticky, &m, 6);
        assert_eq!(out, m.into_iter().collect::<BTreeMap<_, _>>());
    }

    #[test]
    fn sticky_new_member_takes_only_its_share() {
        let first = assign(AssignorKind::Sticky, &fresh(3), 12);
        let mut m = as_members(&first);
        m.push(("m99".to_owned(), Vec::new()));
        let second = assign(AssignorKind::Sticky, &m, 12);
        check_valid(&second, &m, 12);
        assert_eq!(second["m99"].len(), 3);
        assert_eq!(moved(&first, &second), 3, "{first:?} -> {second:?}");
    }

    #[test]
    fn sticky_removed_member_only_its_partitions_move() {
        let first = assign(AssignorKind::Sticky, &fresh(4), 10);
        let mut m = as_members(&first);
        let (gone, gone_parts) = m.remove(1);
        let second = assign(AssignorKind::Sticky, &m, 10);
        check_valid(&second, &m, 10);
        for (id, parts) in &first {
            if *id != gone {
                assert!(
                    parts.iter().all(|p| second[id].contains(p)),
                    "{id} lost some of {parts:?}"
                );
            }
        }
        assert_eq!(moved(&first, &second), gone_parts.len());
    }

    #[test]
    fn sticky_unbalanced_ownership_moves_the_minimum() {
        // a owns everything; b and c are new: a keeps 2, only 4 move.
        let m = members(&[("a", &[0, 1, 2, 3, 4, 5]), ("b", &[]), ("c", &[])]);
        let out = assign(AssignorKind::Sticky, &m, 6);
        assert_eq!(out["a"], vec![0, 1]);
        assert_eq!(out["b"].len(), 2);
        assert_eq!(out["c"].len(), 2);
        // With 7 partitions the owner of most keeps the extra one.
        let m = members(&[("a", &[0, 1, 2, 3]), ("b", &[4, 5]), ("c", &[6])]);
        let out = assign(AssignorKind::Sticky, &m, 7);
        assert_eq!(out["a"], vec![0, 1, 2]);
        assert_eq!(out["b"], vec![4, 5]);
        assert_eq!(out["c"], vec![3, 6]);
    }

    #[test]
    fn sticky_ignores_out_of_range_and_doubly_claimed_partitions() {
        // The topic shrank view (claims 7, -1) and a stale double claim on 1.
        let m = members(&[("a", &[1, 7, -1]), ("b", &[1, 2])]);
        let out = assign(AssignorKind::Sticky, &m, 4);
        check_valid(&out, &m, 4);
        assert!(out["a"].contains(&1));
        assert!(out["b"].contains(&2));
    }

    #[test]
    fn resolve_claims_prefers_the_newest_generation() {
        let claims = vec![
            ("a".to_owned(), vec![0, 1, 2], 3),
            ("b".to_owned(), vec![2, 3], 5),
            ("c".to_owned(), vec![3, 4], 5),
        ];
        let resolved = resolve_claims(&claims);
        assert_eq!(
            resolved,
            vec![
                ("a".to_owned(), vec![0, 1]),
                ("b".to_owned(), vec![2, 3]), // tie on 3 at gen 5: smaller id
                ("c".to_owned(), vec![4]),
            ]
        );
    }

    #[test]
    fn cooperative_withholds_what_another_member_still_owns() {
        // c joins a and b: the sticky target moves one partition from each to c.
        let m = members(&[("a", &[0, 1, 2]), ("b", &[3, 4, 5]), ("c", &[])]);
        let target = assign(AssignorKind::CooperativeSticky, &m, 6);
        let first = withhold_moving(&m, target.clone());
        assert!(
            first["c"].is_empty(),
            "c gets nothing until a and b let go: {first:?}"
        );
        assert_eq!(
            first["a"].len() + first["b"].len(),
            4,
            "a and b keep 2 each: {first:?}"
        );
        // a and b revoke what they lost and rejoin; now nobody owns those two.
        let second = withhold_moving(
            &as_members(&first),
            assign(AssignorKind::CooperativeSticky, &as_members(&first), 6),
        );
        check_valid(&second, &m, 6);
        assert_eq!(second, target, "the follow-up round reaches the sticky target");
    }

    /// Cooperative rounds from random ownerships through random churn: no partition is ever
    /// assigned while another member owns it, nobody loses a partition the target leaves with
    /// it, and the follow-up round always reaches a valid, balanced assignment.
    #[test]
    fn property_cooperative_rounds_never_double_own_and_settle_in_two() {
        let mut rng = StdRng::seed_from_u64(0xc00b);
        for _ in 0..500 {
            let partitions = rng.random_range(1..30);
            let n = rng.random_range(1..8);
            let mut owned = assign(AssignorKind::Sticky, &fresh(n), partitions);
            // Churn: some leave, some join.
            owned.retain(|_, _| rng.random_bool(0.7));
            for j in 0..rng.random_range(0..4) {
                owned.insert(format!("new-{j}"), Vec::new());
            }
            if owned.is_empty() {
                continue;
            }
            let m = as_members(&owned);
            let target = assign(AssignorKind::CooperativeSticky, &m, partitions);
            let first = withhold_moving(&m, target.clone());
            let mut holder: BTreeMap<i32, &str> = BTreeMap::new();
            for (id, parts) in &owned {
                for p in parts {
                    holder.insert(*p, id);
                }
            }
            for (id, parts) in &first {
                for p in parts {
                    assert!(
                        holder.get(p).is_none_or(|h| h == id),
                        "{p} given to {id} while {holder:?}"
                    );
                }
                // What the target leaves with a member is in its first-round assignment.
                for p in &target[id] {
                    if owned[id].contains(p) {
                        assert!(parts.contains(p), "{id} revoked {p} that stays with it");
                    }
                }
            }
            // Revokes done: each member owns exactly its first-round assignment.
            let after = as_members(&first);
            let second = withhold_moving(
                &after,
                assign(AssignorKind::CooperativeSticky, &after, partitions),
            );
            check_valid(&second, &m, partitions);
        }
    }

    /// Random memberships, ownerships and partition counts: the invariants hold for every kind,
    /// and sticky never takes a partition from a member that stays within its share.
    #[test]
    fn property_random_inputs() {
        let mut rng = StdRng::seed_from_u64(0x5eed);
        for _ in 0..2000 {
            let partitions = rng.random_range(0..40);
            let n = rng.random_range(1..9);
            let m: Vec<(String, Vec<i32>)> = (0..n)
                .map(|i| {
                    let owned = (0..rng.random_range(0..8))
                        .map(|_| rng.random_range(-2..45))
                        .collect();
                    (format!("member-{i}"), owned)
                })
                .collect();
            for kind in KINDS {
                let out = assign(kind, &m, partitions);
                check_valid(&out, &m, partitions);
            }
            let out = assign(AssignorKind::Sticky, &m, partitions);
            let floor = usize::try_from(partitions).unwrap() / n;
            let mut seen = BTreeSet::new();
            for (id, owned) in &m {
                // Valid claims not already taken by a smaller id.
                let mut valid: Vec<i32> = owned
                    .iter()
                    .copied()
                    .filter(|p| (0..partitions).contains(p))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .filter(|p| seen.insert(*p))
                    .collect();
                valid.truncate(floor);
                assert!(
                    valid.iter().all(|p| out[id].contains(p)),
                    "{id} lost {valid:?}: {m:?} -> {out:?}"
                );
            }
        }
    }

    /// Membership churn over many generations: each step moves exactly the partitions that
    /// balance requires.
    #[test]
    fn property_sticky_churn_moves_only_what_balance_requires() {
        let mut rng = StdRng::seed_from_u64(42);
        let partitions = 24;
        let mut current = assign(AssignorKind::Sticky, &fresh(3), partitions);
        let mut next_id = 100;
        for _ in 0..300 {
            let mut m = as_members(&current);
            let joining = m.len() < 2 || (m.len() < 10 && rng.random_bool(0.5));
            let removed = if joining {
                m.push((format!("m{next_id}"), Vec::new()));
                next_id += 1;
                Vec::new()
            } else {
                let i = rng.random_range(0..m.len());
                m.remove(i).1
            };
            let after = assign(AssignorKind::Sticky, &m, partitions);
            check_valid(&after, &m, partitions);
            let n = m.len();
            if joining {
                // Only the new member's share moves, taken from the others.
                assert_eq!(moved(&current, &after), after[&m[n - 1].0].len());
            } else {
                // Survivors keep everything: removals only grow the share.
                assert_eq!(moved(&current, &after), removed.len());
            }
            current = after;
        }
    }
}
