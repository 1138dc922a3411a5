//! Address rules: an IP address or CIDR block, optionally with a port, as written in
//! `delivery.allow`, `delivery.deny` and ACL `targets`.
//!
//! Syntax (one rule per string):
//!
//! | form                     | example            | matches                            |
//! |--------------------------|--------------------|------------------------------------|
//! | `<ip>`                   | `10.0.0.5`, `::1`  | that address, any port             |
//! | `<ip>/<len>`             | `10.1.0.0/16`      | the block, any port                |
//! | `<ipv4>[/<len>]:<port>`  | `127.0.0.1:10086`  | the address or block, on that port |
//! | `[<ipv6>[/<len>]]:<port>`| `[::1]:8080`       | the same for IPv6 (brackets)       |
//!
//! Addresses must be written canonically (`127.0.0.1`, not `127.1` or `0x7f.0.0.1`), and a
//! block must not have host bits set (`10.1.2.3/16` is refused, with the block it probably
//! meant), so a rule always means what it looks like.
//!
//! Matching an address against a rule is the destination policy's job (`policy::net`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// One address rule: a block of addresses and, optionally, one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule {
    /// The block's first address (host bits zero).
    addr: IpAddr,
    /// Prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    prefix: u8,
    /// The only port matched; `None`: every port.
    port: Option<u16>,
}

impl Rule {
    /// The block's first address (host bits zero).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// True for a rule naming one address (`/32`, `/128`), the only kind that may lift the
    /// refusal of a cloud metadata address: a broad block never opens one by accident.
    pub fn is_single_host(&self) -> bool {
        match self.addr {
            IpAddr::V4(_) => self.prefix == 32,
            IpAddr::V6(_) => self.prefix == 128,
        }
    }

    /// The port the rule is limited to, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }
}

impl FromStr for Rule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix('[') {
            let (inside, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("'{s}': '[' without a closing ']'"))?;
            let (addr, prefix) = block(inside)?;
            if addr.is_ipv4() {
                return Err(format!("'{s}': brackets are for IPv6 addresses; write {inside}"));
            }
            let port = match after {
                "" => None,
                _ => Some(port(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| format!("'{s}': expected ':<port>' after ']'"))?,
                )?),
            };
            return Ok(Self { addr, prefix, port });
        }
        match s.matches(':').count() {
            0 => {
                let (addr, prefix) = block(s)?;
                Ok(Self {
                    addr,
                    prefix,
                    port: None,
                })
            }
            1 => {
                let (net, p) = s.split_once(':').unwrap_or((s, ""));
                let (addr, prefix) = block(net)?;
                if addr.is_ipv6() {
                    return Err(format!("'{s}': not an address"));
                }
                Ok(Self {
                    addr,
                    prefix,
                    port: Some(port(p)?),
                })
            }
            // A bare IPv6 address or block; a port needs the bracket form.
            _ => {
                let (addr, prefix) = block(s)
                    .map_err(|e| format!("{e} (an IPv6 address with a port is written [addr]:port)"))?;
                Ok(Self {
                    addr,
                    prefix,
                    port: None,
                })
            }
        }
    }
}

/// `<ip>` or `<ip>/<len>`, canonical, host bits zero.
fn block(s: &str) -> Result<(IpAddr, u8), String> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (s, None),
    };
    let addr = IpAddr::from_str(ip).map_err(|_| {
        format!(
            "'{s}' is not an IP address or CIDR block (write addresses in canonical form, e.g. 127.0.0.1)"
        )
    })?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match len {
        None => max,
        Some(len) => match len.parse::<u8>() {
            Ok(n) if n <= max && !len.starts_with('+') => n,
            _ => return Err(format!("'{s}': prefix length must be 0 to {max}")),
        },
    };
    let network = network(addr, prefix);
    if network != addr {
        return Err(format!(
            "'{s}' has host bits set; the block is {network}/{prefix}"
        ));
    }
    Ok((addr, prefix))
}

/// The first address of `addr`'s `/prefix` block.
fn network(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

fn port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 && !s.starts_with('+') => Ok(p),
        _ => Err(format!("'{s}' is not a port (1 to 65535)")),
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let block = if self.is_single_host() {
            self.addr.to_string()
        } else {
            format!("{}/{}", self.addr, self.prefix)
        };
        match (self.port, self.addr) {
            (None, _) => f.write_str(&block),
            (Some(p), IpAddr::V4(_)) => write!(f, "{block}:{p}"),
            (Some(p), IpAddr::V6(_)) => write!(f, "[{block}]:{p}"),
        }
    }
}

/// `delivery.allow` and `delivery.deny`, parsed. The decision they feed (deny wins, the
/// always-refused classes, what `allow` lifts) is the destination policy's
/// (`policy::address`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
}

impl AddressPolicy {
    /// A policy from `delivery.allow` and `delivery.deny`.
    pub fn new(allow: Vec<Rule>, deny: Vec<Rule>) -> Self {
        Self { allow, deny }
    }

    /// A policy that lifts nothing and denies nothing beyond the always-refused classes.
    pub fn strict() -> Self {
        Self::default()
    }

    /// The `delivery.allow` rules.
    pub fn allow(&self) -> &[Rule] {
        &self.allow
    }

    /// The `delivery.deny` rules.
    pub fn deny(&self) -> &[Rule] {
        &self.deny
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> Rule {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn forms_parse_and_print_canonically() {
        for (text, shown) in [
            ("127.0.0.1", "127.0.0.1"),
            ("127.0.0.1/32", "127.0.0.1"),
            ("10.1.0.0/16", "10.1.0.0/16"),
            ("127.0.0.1:10086", "127.0.0.1:10086"),
            ("10.0.0.0/8:443", "10.0.0.0/8:443"),
            ("::1", "::1"),
            ("fc00::/7", "fc00::/7"),
            ("[::1]:8080", "[::1]:8080"),
            ("[fd00::/8]:443", "[fd00::/8]:443"),
            ("[::1]", "::1"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            (" 10.0.0.1 ", "10.0.0.1"),
        ] {
            assert_eq!(rule(text).to_string(), shown, "{text}");
        }
    }

    #[test]
    fn ambiguous_or_malformed_rules_are_refused() {
        for bad in [
            "",
            "127.1",
            "2130706433",
            "0x7f.0.0.1",
            "010.0.0.1",
            "localhost",
            "10.1.2.3/16",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "127.0.0.1:",
            "127.0.0.1:+80",
            "[127.0.0.1]:80",
            "[::1:80",
            "[::1]80",
            "::1:8080:x",
            "fe80::1%eth0",
        ] {
            assert!(bad.parse::<Rule>().is_err(), "{bad:?} was accepted");
        }
        let err = "10.1.2.3/16".parse::<Rule>().unwrap_err();
        assert!(err.contains("10.1.0.0/16"), "{err}");
    }
}
