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

use std::fmt;
use std::str::FromStr;

use actix_web::http::Uri;

use super::host::Host;
use super::net::Rule;

/// A call's destination, parsed once from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// The host, normalised.
    pub host: Host,
    /// The port, or the scheme's default.
    pub port: u16,
    /// The path as written (`/` when empty).
    pub path: String,
}

/// The schemes bigpipe delivers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http://`
    Http,
    /// `https://`
    Https,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

impl Destination {
    /// Parses an absolute http(s) URL; `None` for anything else.
    pub fn parse(url: &str) -> Option<Self> {
        Self::from_uri(&url.parse::<Uri>().ok()?)
    }

    /// The destination of an already parsed URL; `None` unless it is absolute http(s) with a host.
    pub fn from_uri(uri: &Uri) -> Option<Self> {
        let scheme = match uri.scheme_str()? {
            s if s.eq_ignore_ascii_case("http") => Scheme::Http,
            s if s.eq_ignore_ascii_case("https") => Scheme::Https,
            _ => return None,
        };
        let host = uri.host().filter(|h| !h.is_empty())?;
        Some(Self {
            scheme,
            host: Host::parse(host),
            port: uri.port_u16().unwrap_or(scheme.default_port()),
            path: match uri.path() {
                "" => "/".to_owned(),
                p => p.to_owned(),
            },
        })
    }
}

/// One `targets` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A URL prefix.
    Prefix {
        /// Its scheme.
        scheme: Scheme,
        /// Its host (an IP literal or a name; never ambiguous).
        host: Host,
        /// Its port, or the scheme's default.
        port: u16,
        /// Its path, starting with `/`.
        path: String,
        /// As written, for messages.
        text: String,
    },
    /// A host name or `*.` pattern, optionally with a port.
    Host {
        /// The exact name, or the suffix after `*.` when `wildcard`.
        name: String,
        /// `*.name`: any name below `name`.
        wildcard: bool,
        /// The only port matched, if any.
        port: Option<u16>,
    },
    /// IP-literal hosts in a block, optionally on one port.
    Net(Rule),
}

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

/// A `.` or `..` segment (also as `%2e`), or an encoded `/` or `\`.
fn has_traversal(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || lower.contains('\\') {
        return true;
    }
    lower
        .split('/')
        .map(|seg| seg.replace("%2e", "."))
        .any(|seg| seg == "." || seg == "..")
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return prefix(text);
        }
        if lower.contains("://") {
            return Err(format!("'{text}': only http:// and https:// URLs are delivered"));
        }
        if let Ok(rule) = text.parse::<Rule>() {
            return Ok(Self::Net(rule));
        }
        host_pattern(text)
    }
}

fn prefix(text: &str) -> Result<Target, String> {
    let uri = text
        .parse::<Uri>()
        .map_err(|e| format!("'{text}' is not a valid URL: {e}"))?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(format!("'{text}': a target URL has no user info"));
    }
    if uri.query().is_some() || text.contains('#') {
        return Err(format!("'{text}': a target URL has no query or fragment"));
    }
    let dest = Destination::from_uri(&uri).ok_or_else(|| format!("'{text}' has no host"))?;
    if let Host::Ambiguous(h) = &dest.host {
        return Err(format!(
            "'{text}': host '{h}' is not a canonical IP address or a name"
        ));
    }
    if has_traversal(&dest.path) {
        return Err(format!(
            "'{text}': the path has '.' or '..' segments or encoded slashes"
        ));
    }
    Ok(Target::Prefix {
        scheme: dest.scheme,
        host: dest.host,
        port: dest.port,
        path: dest.path,
        text: text.to_owned(),
    })
}

fn host_pattern(text: &str) -> Result<Target, String> {
    let (host, port) = match text.rsplit_once(':') {
        Some((host, p)) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => (host, Some(n)),
            _ => return Err(format!("'{text}': '{p}' is not a port (1 to 65535)")),
        },
        None => (text, None),
    };
    let (wildcard, name) = match host.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, host),
    };
    let name = name.to_ascii_lowercase();
    let name = name.strip_suffix('.').unwrap_or(&name).to_owned();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || !name.split('.').all(label_ok) {
        return Err(format!(
            "'{text}' is not a URL prefix (http://, https://), a host name, a '*.' host \
             pattern or an IP address/CIDR block"
        ));
    }
    if !matches!(Host::parse(&name), Host::Name(_)) {
        return Err(format!(
            "'{text}': '{name}' is a numeric host that is not a canonical IP address"
        ));
    }
    Ok(Target::Host { name, wildcard, port })
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Prefix { text, .. } => f.write_str(text),
            Self::Host { name, wildcard, port } => {
                let star = if *wildcard { "*." } else { "" };
                match port {
                    Some(p) => write!(f, "{star}{name}:{p}"),
                    None => write!(f, "{star}{name}"),
                }
            }
            Self::Net(rule) => write!(f, "{rule}"),
        }
    }
}

/// An ACL's `targets`: a call must match at least one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets(Vec<Target>);

impl Targets {
    /// The list (may be empty: then nothing matches).
    pub fn new(targets: Vec<Target>) -> Self {
        Self(targets)
    }

    /// Whether any target matches `dest`.
    pub fn allows(&self, dest: &Destination) -> bool {
        self.0.iter().any(|t| t.matches(dest))
    }

    /// The entries.
    pub fn entries(&self) -> &[Target] {
        &self.0
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
