//! Matching addresses against the address rules of `delivery.allow`, `delivery.deny` and
//! ACL `targets`. The rule itself, its syntax and parser, is a config value
//! ([`crate::config::values::net`]); this module adds what the policy asks of it.

use std::net::IpAddr;

pub use crate::config::values::net::Rule;

impl Rule {
    /// Whether `ip` (of the same family) lies in the block and `port` is the rule's, if it
    /// names one. An IPv4 rule never matches an IPv6 address: mapped forms are unwrapped by
    /// the caller ([`super::address::embedded_v4`]).
    pub fn matches(&self, ip: IpAddr, port: u16) -> bool {
        self.port().is_none_or(|p| p == port) && self.contains(ip)
    }

    /// Whether `ip` lies in the block, whatever the port.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr(), ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len()))
                    .unwrap_or(0);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len()))
                    .unwrap_or(0);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> Rule {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn matching_respects_block_family_and_port() {
        let r = rule("10.1.0.0/16");
        assert!(r.matches(ip("10.1.255.3"), 80));
        assert!(!r.matches(ip("10.2.0.1"), 80));
        assert!(
            !r.matches(ip("::ffff:10.1.0.1"), 80),
            "families are not mixed here"
        );
        let r = rule("127.0.0.1:10086");
        assert!(r.matches(ip("127.0.0.1"), 10086));
        assert!(!r.matches(ip("127.0.0.1"), 10087));
        let r = rule("[::1]:8080");
        assert!(r.matches(ip("::1"), 8080));
        assert!(!r.matches(ip("::2"), 8080));
        assert!(rule("0.0.0.0/0").matches(ip("8.8.8.8"), 1));
        assert!(rule("::/0").matches(ip("fe80::1"), 1));
        assert!(rule("10.0.0.1").is_single_host());
        assert!(!rule("10.0.0.0/31").is_single_host());
    }
}
