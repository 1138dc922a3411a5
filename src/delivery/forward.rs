//! Which caller headers may travel with a call: an allow-list, default-deny.
//!
//! The Go version stored every caller header in the record and forwarded it
//! to the call's URL, which the caller chooses. Anything a gateway or mesh
//! put in front of bigpipe injects (`Authorization`, `Cookie`,
//! `X-Forwarded-For`, client-certificate and identity headers) was therefore
//! replayed to an arbitrary address, and kept in clear in Kafka and the
//! dead-letter topic. Here a header travels only when a rule allows it
//! (`delivery.headers.forward`, or a consumer entry's `forwardHeaders`), and
//! the same rules run at ingest, so a header no consumer would forward never
//! reaches Kafka, the dead-letter topic or a log.
//!
//! # Rules
//! - `Name`: that header (any case).
//! - `Prefix*`: every header whose name starts with `Prefix` (any case),
//!   except the [protected](is_protected) ones.
//! - `*`: every header, protected ones included: the Go behaviour.
//!
//! A protected header (credentials, forwarding and identity headers, see
//! [`PROTECTED`]) travels only under `*` or when its exact name is listed:
//! `X-*` forwards `X-Request-Id` but never `X-Forwarded-For`.
//! `delivery.headers.drop` (a deny list) wins over every rule.
//!
//! The rules are parsed with the config ([`ForwardRules`] is a config value); this module
//! adds the matching.

use std::collections::HashMap;

use crate::config::DeliverySettings;
pub use crate::config::values::forward::{DEFAULT_FORWARD, ForwardRules, RuleError};

/// Protected headers (lower case; a trailing `*` matches any rest). They carry
/// credentials (`Authorization`, `Cookie`, API keys, CSRF tokens, the
/// `X-Auth-Request-*` of oauth2-proxy), say who or where the caller is as seen
/// by a proxy (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`, `Via`), or carry an
/// identity a gateway or mesh vouched for (`X-Forwarded-Client-Cert` of Envoy,
/// `X-Client-Cert`, nginx's `X-SSL-Client-*`, AWS ALB's `X-Amzn-Oidc-*`,
/// Google IAP's `X-Goog-*`, Azure's `X-MS-Client-Principal*`, `X-Envoy-*`).
/// Replayed to a URL the caller picks, each would let the caller borrow an
/// identity or a trust it does not have.
pub const PROTECTED: [&str; 22] = [
    "authorization",
    "cookie",
    "proxy-*",
    "forwarded",
    "via",
    "x-forwarded-*",
    "x-real-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-original-*",
    "x-client-cert*",
    "x-ssl-client-*",
    "x-amzn-*",
    "x-goog-*",
    "x-ms-client-principal*",
    "x-envoy-*",
    "x-api-key",
    "x-auth-*",
    "x-access-token",
    "x-csrf-token",
];

/// Whether `name` (any case) is a protected header: matched only by `*` or its
/// exact name, never by a prefix rule.
pub fn is_protected(name: &str) -> bool {
    is_protected_lower(&name.to_ascii_lowercase())
}

/// [`is_protected`] of a name already in lower case (ingest checks every header of
/// every call against each policy: one lower-casing per check is enough).
fn is_protected_lower(lower: &str) -> bool {
    PROTECTED.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => lower.starts_with(prefix),
        None => lower == *p,
    })
}

impl ForwardRules {
    /// Whether these rules let header `name` (any case) through.
    pub fn allows(&self, name: &str) -> bool {
        self.allows_lower(&name.to_ascii_lowercase())
    }

    fn allows_lower(&self, lower: &str) -> bool {
        if self.forwards_everything() {
            return true;
        }
        if self.exact().iter().any(|e| e == lower) {
            return true;
        }
        !is_protected_lower(lower) && self.prefixes().iter().any(|p| lower.starts_with(p.as_str()))
    }
}

/// The rules one consumer entry delivers with: its allow-list and the global
/// deny list (`delivery.headers.drop`, lower case), which wins.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderPolicy {
    /// What may go.
    pub forward: ForwardRules,
    /// What never goes, lower case.
    pub drop: Vec<String>,
}

impl HeaderPolicy {
    /// The global policy: `delivery.headers.forward` and `.drop`.
    pub fn global(delivery: &DeliverySettings) -> Self {
        Self {
            forward: delivery.forward_headers.clone(),
            drop: delivery.drop_headers.clone(),
        }
    }

    /// Whether header `name` (any case) may travel.
    pub fn allows(&self, name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        !self.drop.contains(&lower) && self.forward.allows_lower(&lower)
    }

    /// The same deny list with `forward` instead (a consumer entry's own list).
    pub fn with_forward(&self, forward: Option<&ForwardRules>) -> Self {
        Self {
            forward: forward.cloned().unwrap_or_else(|| self.forward.clone()),
            drop: self.drop.clone(),
        }
    }
}

/// What ingest keeps of a call's headers, per ACL topic: a header is stored
/// when at least one consumer entry of the topic would forward it. A topic
/// that no entry here consumes (another process may) gets the global policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IngestHeaders {
    /// The global policy (`delivery.headers.forward` and `.drop`).
    global: HeaderPolicy,
    /// Each consumed topic's entries' policies.
    topics: HashMap<String, Vec<HeaderPolicy>>,
}

impl IngestHeaders {
    /// From the global policy and each entry's `(topic, forwardHeaders)`.
    pub fn new<'a>(
        global: HeaderPolicy,
        entries: impl IntoIterator<Item = (&'a str, Option<&'a ForwardRules>)>,
    ) -> Self {
        let mut topics: HashMap<String, Vec<HeaderPolicy>> = HashMap::new();
        for (topic, forward) in entries {
            topics
                .entry(topic.to_owned())
                .or_default()
                .push(global.with_forward(forward));
        }
        Self { global, topics }
    }

    /// Whether a call for `topic` keeps header `name` in its record.
    pub fn keeps(&self, topic: &str, name: &str) -> bool {
        match self.topics.get(topic) {
            Some(policies) => policies.iter().any(|p| p.allows(name)),
            None => self.global.allows(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[&str]) -> ForwardRules {
        ForwardRules::parse(list).unwrap()
    }

    #[test]
    fn the_default_forwards_custom_and_descriptive_headers_only() {
        let d = ForwardRules::default();
        for ok in [
            "X-Request-Id",
            "x-trace",
            "X-Custom",
            "Accept",
            "accept-language",
            "Content-Language",
            "User-Agent",
            "traceparent",
            "Tracestate",
        ] {
            assert!(d.allows(ok), "{ok}");
        }
        for denied in [
            "Authorization",
            "Cookie",
            "Proxy-Authorization",
            "Forwarded",
            "Via",
            "X-Forwarded-For",
            "x-forwarded-host",
            "X-Forwarded-Client-Cert",
            "X-Real-IP",
            "X-Client-Cert",
            "X-SSL-Client-Verify",
            "X-Amzn-Oidc-Data",
            "X-Goog-Authenticated-User-Email",
            "X-MS-Client-Principal-Name",
            "X-Envoy-Peer-Metadata",
            "X-Api-Key",
            "X-Auth-Request-Access-Token",
            "X-Original-URL",
            "Content-Type",
            "Origin",
            "Referer",
            "Authorization-Hint",
        ] {
            assert!(!d.allows(denied), "{denied}");
        }
    }

    #[test]
    fn a_pattern_never_matches_a_protected_header_but_an_exact_name_does() {
        let r = rules(&["X-*", "Auth*", "Co*"]);
        assert!(r.allows("X-Request-Id"));
        assert!(r.allows("Authorization-Hint"), "not protected itself");
        assert!(!r.allows("Authorization"));
        assert!(!r.allows("Cookie"));
        assert!(!r.allows("X-Forwarded-For"));
        let r = rules(&["X-*", "Authorization", "x-forwarded-for"]);
        assert!(r.allows("authorization"));
        assert!(r.allows("X-Forwarded-For"));
        assert!(
            !r.allows("X-Forwarded-Proto"),
            "one exact name restores one header"
        );
        assert!(!r.allows("Cookie"));
    }

    #[test]
    fn star_is_the_go_behaviour() {
        let r = rules(&["*"]);
        for h in [
            "Authorization",
            "Cookie",
            "X-Forwarded-For",
            "Forwarded",
            "Content-Type",
            "Anything",
        ] {
            assert!(r.allows(h), "{h}");
        }
        assert!(ForwardRules::all().allows("cookie"));
    }

    #[test]
    fn an_empty_list_forwards_nothing() {
        let r = rules(&[]);
        assert!(!r.allows("X-Request-Id"));
        assert_eq!(r, ForwardRules::none());
    }

    #[test]
    fn bad_rules_are_refused_with_their_index() {
        assert_eq!(ForwardRules::parse(["X-*", ""]), Err((1, RuleError::Empty)));
        for bad in ["*X", "X-*-*", "a b", "X*Y", "**", "é", "X:"] {
            assert_eq!(ForwardRules::check(bad), Err(RuleError::Invalid), "{bad}");
        }
        for good in ["X-Request-Id", "x-*", "*", "Accept"] {
            assert_eq!(ForwardRules::check(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn the_deny_list_wins_even_over_star() {
        let p = HeaderPolicy {
            forward: ForwardRules::all(),
            drop: vec!["cookie".into(), "x-secret".into()],
        };
        assert!(!p.allows("Cookie"));
        assert!(!p.allows("X-SECRET"));
        assert!(p.allows("Authorization"));
    }

    #[test]
    fn ingest_keeps_what_any_entry_of_the_topic_forwards() {
        let global = HeaderPolicy {
            forward: ForwardRules::default(),
            drop: vec!["x-drop".into()],
        };
        let auth = rules(&["Authorization"]);
        let ingest = IngestHeaders::new(global, [("a", None), ("a", Some(&auth)), ("b", None)]);
        assert!(
            ingest.keeps("a", "Authorization"),
            "the second entry of a forwards it"
        );
        assert!(ingest.keeps("a", "X-Request-Id"), "the first entry forwards it");
        assert!(!ingest.keeps("b", "Authorization"));
        assert!(
            !ingest.keeps("a", "X-Drop"),
            "the deny list applies at ingest too"
        );
        assert!(ingest.keeps("unconsumed", "X-Request-Id"), "global policy");
        assert!(!ingest.keeps("unconsumed", "Cookie"));
    }
}
