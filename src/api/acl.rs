//! Caller authorisation: ACL name + secret → destination topic.

use std::collections::HashMap;

use subtle::ConstantTimeEq;

use crate::config::AclEntry;
use crate::policy::Targets;

/// The configured callers.
#[derive(Debug, Clone, Default)]
pub struct AclTable {
    by_name: HashMap<String, (String, String)>,
    /// Each ACL's `targets`, for those that have them.
    targets: HashMap<String, Targets>,
}

impl AclTable {
    /// Builds the table. Names are unique (config validation refuses duplicates).
    pub fn new(entries: &[AclEntry]) -> Self {
        let by_name = entries
            .iter()
            .map(|e| (e.name.clone(), (e.secret.clone(), e.topic.clone())))
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

    /// The topic of `name` when `secret` matches, compared in constant time.
    ///
    /// The Go version never compared the secret: knowing a name was enough.
    pub fn check(&self, name: &str, secret: &str) -> Option<&str> {
        let (want, topic) = self.by_name.get(name)?;
        bool::from(want.as_bytes().ct_eq(secret.as_bytes())).then_some(topic.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> AclTable {
        AclTable::new(&[
            AclEntry {
                name: "system-1".into(),
                secret: "you are good".into(),
                topic: "t1".into(),
                targets: None,
            },
            AclEntry {
                name: "system-2".into(),
                secret: "you are bad".into(),
                topic: "t2".into(),
                targets: Some(Targets::new(vec!["*.svc".parse().unwrap()])),
            },
        ])
    }

    #[test]
    fn right_secret_gives_the_entry_topic() {
        assert_eq!(table().check("system-2", "you are bad"), Some("t2"));
    }

    #[test]
    fn targets_are_kept_per_acl() {
        let t = table();
        assert!(t.targets("system-1").is_none());
        assert_eq!(t.targets("system-2").map(|t| t.entries().len()), Some(1));
        assert!(t.targets("system-9").is_none());
    }

    #[test]
    fn wrong_secret_or_name_is_refused() {
        // The Go README's own example secret, which the Go version accepted.
        assert_eq!(table().check("system-1", "i am good"), None);
        assert_eq!(table().check("system-1", ""), None);
        assert_eq!(table().check("system-9", "you are good"), None);
    }
}
