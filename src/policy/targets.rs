//! Per-ACL `targets`: the destinations one caller may aim bigpipe at.
//!
//! Each entry is one of:
//! - a **URL prefix**, `http://` or `https://` + host [+ `:port`] [+ path]:
//!   `"https://api.example.com/hooks/"`. It matches URLs with the same scheme, host and
//!   port (the scheme's default when omitted) whose path starts with the prefix's path on a
//!   segment boundary (`/hooks` matches `/hooks` and `/hooks/x`, not `/hooksx`).
//! - a **host pattern** [+ `:port`]: `"billing.internal"`, `"*.svc.cluster.local"` (any name
//!   below it, not the name itself), `"billing.internal:8443"`. Either scheme; any port when
//!   none is given.
//! - an **address rule** (see [`super::net`]): `"10.1.0.0/16"`, `"10.0.0.5:8080"`,
//!   `"[fd00::1]:443"`. It matches URLs whose host is an IP literal in it.
//!
//! Matching works on the URL as parsed (the same parse awc connects with), never on the raw
//! string: scheme, host lower-cased without a trailing dot, port with its default, path. So
//! `https://api.example.com.evil.com/` and `https://api.example.com@evil/` do not match the
//! prefix `https://api.example.com/`: their hosts are `api.example.com.evil.com` and `evil`.
//! Userinfo is never part of what is compared. A URL whose path has dot segments (`/hooks/../admin`,
//! also percent-encoded) or encoded slashes matches no prefix with a path: the target would
//! normalise it to somewhere else.
//!
//! The entries and their parser are config values ([`crate::config::values::targets`]);
//! this module adds the matching.

use crate::config::values::targets::has_traversal;
pub use crate::config::values::targets::{Destination, Scheme, Target, Targets};

use super::host::Host;

impl Target {
    /// Whether `dest` is within this target.
    pub fn matches(&self, dest: &Destination) -> bool {
        match self {
            Self::Prefix {
                scheme,
                host,
                port,
                path,
                ..
            } => {
                *scheme == dest.scheme
                    && *host == dest.host
                    && !matches!(host, Host::Ambiguous(_))
                    && *port == dest.port
                    && path_within(&dest.path, path)
            }
            Self::Host { name, wildcard, port } => {
                let Host::Name(host) = &dest.host else {
                    return false;
                };
                let name_ok = if *wildcard {
                    host.strip_suffix(name.as_str())
                        .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
                } else {
                    host == name
                };
                name_ok && port.is_none_or(|p| p == dest.port)
            }
            Self::Net(rule) => match dest.host {
                Host::Ip(ip) => rule.matches(ip, dest.port),
                _ => false,
            },
        }
    }
}

/// `path` is `prefix` or below it, and carries nothing a server would normalise away.
fn path_within(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    if has_traversal(path) {
        return false;
    }
    if prefix.ends_with('/') {
        path.starts_with(prefix)
    } else {
        path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

impl Targets {
    /// Whether any target matches `dest`.
    pub fn allows(&self, dest: &Destination) -> bool {
        self.entries().iter().any(|t| t.matches(dest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(list: &[&str]) -> Targets {
        Targets::new(
            list.iter()
                .map(|s| s.parse().unwrap_or_else(|e| panic!("{s}: {e}")))
                .collect(),
        )
    }

    fn allowed(t: &Targets, url: &str) -> bool {
        Destination::parse(url).is_some_and(|d| t.allows(&d))
    }

    #[test]
    fn url_prefixes_match_on_the_parsed_url() {
        let t = targets(&["https://api.example.com/hooks/"]);
        for url in [
            "https://api.example.com/hooks/",
            "https://api.example.com/hooks/a/b?x=1",
            "HTTPS://API.EXAMPLE.COM/hooks/a",
            "https://api.example.com./hooks/a",
            "https://api.example.com:443/hooks/a",
            // Userinfo is not compared; the host is still api.example.com.
            "https://evil@api.example.com/hooks/a",
        ] {
            assert!(allowed(&t, url), "{url} refused");
        }
        for url in [
            "https://api.example.com.evil.com/hooks/a",
            "https://api.example.com@evil/hooks/a",
            "https://api.example.com:pw@evil.com/hooks/a",
            "https://api.example.com:8443/hooks/a",
            "http://api.example.com/hooks/a",
            "https://api.example.com/hooks",
            "https://api.example.com/hooksx",
            "https://api.example.com/admin",
            "https://api.example.com/hooks/../admin",
            "https://api.example.com/hooks/%2e%2e/admin",
            "https://api.example.com/hooks/%2E./admin",
            "https://api.example.com/hooks/..%2fadmin",
            "https://api.example.com/hooks/./x",
            "https://xapi.example.com/hooks/a",
            "https://api.example.co/hooks/a",
        ] {
            assert!(!allowed(&t, url), "{url} allowed");
        }
        let t = targets(&["http://billing.internal:8080/v1"]);
        assert!(allowed(&t, "http://billing.internal:8080/v1"));
        assert!(allowed(&t, "http://billing.internal:8080/v1/pay"));
        assert!(!allowed(&t, "http://billing.internal:8080/v10"));
        assert!(!allowed(&t, "http://billing.internal/v1"));
        let t = targets(&["http://localhost:10086"]);
        assert!(allowed(&t, "http://localhost:10086/rpc/server/mock"));
        assert!(!allowed(&t, "http://localhost:10087/rpc/server/mock"));
    }

    #[test]
    fn the_host_is_what_the_connection_goes_to_not_what_the_string_starts_with() {
        let host = |url: &str| Destination::parse(url).map(|d| d.host);
        assert_eq!(
            host("https://api.example.com@evil/hooks/a"),
            Some(Host::Name("evil".into()))
        );
        assert_eq!(
            host("https://api.example.com:pw@evil.com/hooks/a"),
            Some(Host::Name("evil.com".into()))
        );
        assert_eq!(
            host("http://user:pw@127.0.0.1:8080/"),
            Some(Host::Ip("127.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            host("http://api.example.com.evil.com/"),
            Some(Host::Name("api.example.com.evil.com".into()))
        );
        // Two '@': the parser (awc's too) takes the last one, so the host is c.
        assert_eq!(host("http://a@b@c/"), Some(Host::Name("c".into())));
    }

    #[test]
    fn host_patterns_match_names_only() {
        let t = targets(&["*.svc.cluster.local", "billing.internal:8443"]);
        assert!(allowed(&t, "http://a.svc.cluster.local/x"));
        assert!(allowed(&t, "https://a.b.svc.cluster.local:9000/x"));
        assert!(allowed(&t, "https://A.SVC.Cluster.Local./x"));
        assert!(!allowed(&t, "http://svc.cluster.local/x"));
        assert!(!allowed(&t, "http://evilsvc.cluster.local/x"));
        assert!(!allowed(&t, "http://a.svc.cluster.local.evil.com/x"));
        assert!(!allowed(&t, "http://a.svc.cluster.local@evil.com/x"));
        assert!(allowed(&t, "https://billing.internal:8443/x"));
        assert!(!allowed(&t, "https://billing.internal/x"));
        assert!(!allowed(&t, "https://billing.internal:8444/x"));
    }

    #[test]
    fn address_rules_match_ip_literal_hosts_only() {
        let t = targets(&["10.1.0.0/16", "[fd00::1]:443"]);
        assert!(allowed(&t, "http://10.1.2.3/x"));
        assert!(allowed(&t, "http://10.1.2.3:8080/x"));
        assert!(!allowed(&t, "http://10.2.0.1/x"));
        assert!(allowed(&t, "https://[fd00::1]/x"));
        assert!(!allowed(&t, "http://[fd00::1]/x"));
        // The same address in an ambiguous spelling matches nothing.
        assert!(!allowed(&t, "http://10.1.515/x"));
        assert!(!allowed(&t, "http://167903747/x"));
    }

    #[test]
    fn malformed_targets_are_refused() {
        for bad in [
            "",
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "https://example.com/?q=1",
            "https://example.com/#x",
            "https://2130706433/",
            "https://example.com/a/../b",
            "exa mple.com",
            "*.",
            "*",
            "a.*.com",
            "example.com:0",
            "example.com:http",
            "127.1",
            "10.1.2.3/16",
            "https:///x",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn targets_print_as_written() {
        for s in ["https://api.example.com/hooks/", "*.svc.local:80", "10.0.0.0/8"] {
            assert_eq!(s.parse::<Target>().unwrap().to_string(), s);
        }
    }
}
