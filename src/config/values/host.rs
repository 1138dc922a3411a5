//! What a URL's host is: an IP address, a name to resolve, or a numeric form that different
//! parsers read differently.
//!
//! The URL parser in use (`http::Uri`, shared by the front end and awc) keeps the host as
//! written: `2130706433`, `0x7f.1`, `127.1` and `0177.0.0.1` are all "hosts" to it. actix-tls
//! then parses the host with Rust's strict `IpAddr` parser, and anything that fails goes to the
//! resolver, where `getaddrinfo` applies `inet_aton` rules and turns each of those into
//! 127.0.0.1 (and `0177` into 127 while a browser or Go reads 177). So a host whose last label
//! is numeric but that is not a canonical dotted quad is [`Host::Ambiguous`] and refused: no
//! legitimate caller needs those forms, and refusing beats guessing which reading wins.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A URL host, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IP literal: `10.0.0.1`, `[::1]` (brackets removed).
    Ip(IpAddr),
    /// A DNS name, lower case, without a trailing dot.
    Name(String),
    /// A numeric form other than a canonical IPv4 dotted quad (`2130706433`, `0x7f.1`,
    /// `127.1`, `0177.0.0.1`, `1.2.3.4.5`) or a bracketed form that is not a plain IPv6
    /// address (zone ids, IPvFuture): read differently by different parsers, so refused.
    Ambiguous(String),
}

impl Host {
    /// Classifies `host` as `http::Uri::host` returns it (IPv6 in brackets).
    pub fn parse(host: &str) -> Self {
        if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            return match inner.parse::<Ipv6Addr>() {
                Ok(v6) => Self::Ip(IpAddr::V6(v6)),
                Err(_) => Self::Ambiguous(host.to_owned()),
            };
        }
        let lower = host.to_ascii_lowercase();
        // `a.b.` is the fully qualified `a.b`: the same host to a resolver.
        let name = lower.strip_suffix('.').unwrap_or(&lower);
        if let Ok(v4) = name.parse::<Ipv4Addr>() {
            return Self::Ip(IpAddr::V4(v4));
        }
        let last = name.rsplit('.').next().unwrap_or(name);
        if name.split('.').any(str::is_empty) || is_numeric_label(last) || name.contains(':') {
            return Self::Ambiguous(host.to_owned());
        }
        Self::Name(name.to_owned())
    }
}

/// A label that the WHATWG URL standard (and `inet_aton`) reads as a number: decimal, or
/// hexadecimal with `0x` (octal is decimal digits with a leading 0).
fn is_numeric_label(label: &str) -> bool {
    let hex = label
        .strip_prefix("0x")
        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    hex || (!label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_literals_and_names() {
        assert_eq!(Host::parse("10.0.0.1"), Host::Ip("10.0.0.1".parse().unwrap()));
        assert_eq!(Host::parse("127.0.0.1."), Host::Ip("127.0.0.1".parse().unwrap()));
        assert_eq!(Host::parse("[::1]"), Host::Ip("::1".parse().unwrap()));
        assert_eq!(
            Host::parse("[::ffff:127.0.0.1]"),
            Host::Ip("::ffff:7f00:1".parse().unwrap())
        );
        assert_eq!(
            Host::parse("Api.Example.COM."),
            Host::Name("api.example.com".into())
        );
        assert_eq!(Host::parse("localhost"), Host::Name("localhost".into()));
        assert_eq!(Host::parse("1x.example"), Host::Name("1x.example".into()));
        assert_eq!(Host::parse("host-1.svc"), Host::Name("host-1.svc".into()));
    }

    #[test]
    fn numeric_forms_other_than_the_dotted_quad_are_ambiguous() {
        for host in [
            "2130706433",
            "0x7f000001",
            "0x7f.1",
            "0x7F.0.0.1",
            "127.1",
            "127.0.1",
            "0177.0.0.1",
            "0127.0.0.1",
            "1.2.3.4.5",
            "127.0.0.1..",
            "example.0x10",
            "[fe80::1%25eth0]",
            "[v1.x]",
            "[127.0.0.1]",
            "",
            ".",
        ] {
            assert!(
                matches!(Host::parse(host), Host::Ambiguous(_)),
                "{host:?} → {:?}",
                Host::parse(host)
            );
        }
    }
}
