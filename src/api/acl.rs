//! Caller authorisation: ACL name + secret → destination topic (and the ACL's quota).

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::quota::Quota;
use crate::config::AclEntry;
use crate::policy::Targets;

/// Where an authorised caller's calls go.
pub struct AclRoute {
    /// SHA-256 of the secret: compared instead of the secret so the comparison takes the same
    /// time whatever the lengths (`ct_eq` on slices of different lengths returns at once).
    digest: [u8; 32],
    /// Destination topic.
    pub topic: String,
    /// Ingest quota; `None`: unlimited.
    pub quota: Option<Arc<Quota>>,
}

impl std::fmt::Debug for AclRoute {
    /// Without the digest: a fast hash of a weak secret is as good as the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AclRoute")
            .field("digest", &"***")
            .field("topic", &self.topic)
            .field("quota", &self.quota)
            .finish()
    }
}

/// Why a check failed. Both are answered with the same 403; the reason is for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AclRefusal {
    /// No ACL has this name.
    #[error("unknown acl")]
    UnknownName,
    /// The ACL exists, the secret is wrong.
    #[error("wrong secret")]
    WrongSecret,
}

/// The configured callers.
#[derive(Debug, Clone, Default)]
pub struct AclTable {
    by_name: HashMap<String, Arc<AclRoute>>,
    /// Each ACL's `targets`, for those that have them.
    targets: HashMap<String, Targets>,
}

impl AclTable {
    /// Builds the table. Names are unique (config validation refuses duplicates).
    pub fn new(entries: &[AclEntry]) -> Self {
        Self::carrying_over(entries, None)
    }

    /// Builds the table for a reload: an ACL whose quota limits did not change keeps its
    /// quota state, so a reload neither refills nor empties anybody's burst.
    pub fn carrying_over(entries: &[AclEntry], previous: Option<&Self>) -> Self {
        let by_name = entries
            .iter()
            .map(|e| {
                let quota = e.quota.map(|q| {
                    previous
                        .and_then(|p| p.by_name.get(&e.name))
                        .and_then(|r| r.quota.as_ref())
                        .filter(|old| old.same_limits(q.rate, q.burst))
                        .map_or_else(|| Arc::new(Quota::new(q.rate, q.burst)), Arc::clone)
                });
                let route = AclRoute {
                    digest: digest(e.secret.expose()),
                    topic: e.topic.clone(),
                    quota,
                };
                (e.name.clone(), Arc::new(route))
            })
            .collect();
        let targets = entries
            .iter()
            .filter_map(|e| Some((e.name.clone(), e.targets.clone()?)))
            .collect();
        Self { by_name, targets }
    }

    /// The `targets` of ACL `name`; `None` when it has none (any destination the global
    /// policy allows).
    pub fn targets(&self, name: &str) -> Option<&Targets> {
        self.targets.get(name)
    }

    /// The route of `name` when `secret` matches, compared in constant time.
    ///
    /// The Go version never compared the secret: knowing a name was enough.
    ///
    /// # Errors
    /// [`AclRefusal`] saying whether the name or the secret was wrong.
    pub fn check(&self, name: &str, secret: &str) -> Result<&AclRoute, AclRefusal> {
        let given = digest(secret);
        let route = self.by_name.get(name).ok_or(AclRefusal::UnknownName)?;
        if bool::from(route.digest.ct_eq(&given)) {
            Ok(route)
        } else {
            Err(AclRefusal::WrongSecret)
        }
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AclQuota, Secret};

    fn entry(name: &str, secret: &str, topic: &str, quota: Option<AclQuota>) -> AclEntry {
        AclEntry {
            name: name.into(),
            secret: Secret::new(secret),
            topic: topic.into(),
            targets: None,
            quota,
        }
    }

    fn table() -> AclTable {
        AclTable::new(&[
            entry("system-1", "you are good", "t1", None),
            AclEntry {
                targets: Some(Targets::new(vec!["*.svc".parse().unwrap()])),
                ..entry("system-2", "you are bad", "t2", None)
            },
        ])
    }

    #[test]
    fn debug_shows_neither_the_secret_nor_its_digest() {
        let shown = format!("{:?}", table());
        assert!(
            !shown.contains("you are") && !shown.contains("digest: ["),
            "{shown}"
        );
    }

    #[test]
    fn right_secret_gives_the_entry_topic() {
        assert_eq!(table().check("system-2", "you are bad").unwrap().topic, "t2");
    }

    #[test]
    fn targets_are_kept_per_acl() {
        let t = table();
        assert!(t.targets("system-1").is_none());
        assert_eq!(t.targets("system-2").map(|t| t.entries().len()), Some(1));
        assert!(t.targets("system-9").is_none());
    }

    #[test]
    fn wrong_secret_or_name_is_refused_with_the_reason() {
        // The Go README's own example secret, which the Go version accepted.
        let t = table();
        assert_eq!(
            t.check("system-1", "i am good").err(),
            Some(AclRefusal::WrongSecret)
        );
        assert_eq!(t.check("system-1", "").err(), Some(AclRefusal::WrongSecret));
        assert_eq!(
            t.check("system-1", "you are good!").err(),
            Some(AclRefusal::WrongSecret)
        );
        assert_eq!(
            t.check("system-9", "you are good").err(),
            Some(AclRefusal::UnknownName)
        );
    }

    #[test]
    fn a_reload_keeps_unchanged_quota_state_and_resets_changed_ones() {
        let q = |rate| Some(AclQuota { rate, burst: 1 });
        let old = AclTable::new(&[entry("a", "s", "t", q(1.0)), entry("b", "s", "t", q(1.0))]);
        let new = AclTable::carrying_over(
            &[entry("a", "s", "t", q(1.0)), entry("b", "s", "t", q(2.0))],
            Some(&old),
        );
        let quota = |t: &AclTable, n: &str| Arc::clone(t.check(n, "s").unwrap().quota.as_ref().unwrap());
        assert!(Arc::ptr_eq(&quota(&old, "a"), &quota(&new, "a")));
        assert!(!Arc::ptr_eq(&quota(&old, "b"), &quota(&new, "b")));
    }
}
