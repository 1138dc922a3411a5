//! Per-ACL `targets` as written and parsed: URL prefixes, host patterns and address rules,
//! and the [`Destination`] a URL parses to (a target prefix and a call's URL share that
//! parse, so they are compared like for like).
//!
//! Which calls a target lets through is the destination policy's job (`policy::targets`,
//! whose module docs describe the matching).

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

/// A `.` or `..` segment (also as `%2e`), or an encoded `/` or `\`: a path a server would
/// normalise to somewhere else.
pub fn has_traversal(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || lower.contains('\\') {
        return true;
    }
    lower
        .split('/')
        .map(|seg| seg.replace("%2e", "."))
        .any(|seg| seg == "." || seg == "..")
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

    /// The entries.
    pub fn entries(&self) -> &[Target] {
        &self.0
    }
}
