//! The global address policy: may bigpipe open a connection to this address and port?
//!
//! Checked on every address a target name resolves to (the delivery resolver), on IP-literal
//! hosts before sending, and on IP-literal URLs at ingest.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub use super::net::Rule;
pub use crate::config::values::net::AddressPolicy;

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A `delivery.deny` rule matched.
    #[error("{addr} is in delivery.deny ({rule})")]
    Denied {
        /// The address and port refused.
        addr: SocketAddr,
        /// The rule that matched.
        rule: Rule,
    },
    /// The address is in an always-refused class and no `delivery.allow` rule lifts it.
    #[error("{addr} is a {class} address, refused unless listed in delivery.allow")]
    Special {
        /// The address and port refused.
        addr: SocketAddr,
        /// Its class.
        class: Class,
    },
}

/// Address classes refused unless explicitly allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// 0.0.0.0/8 (Linux connects 0.0.0.0 to the local host), ::.
    Unspecified,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 240.0.0.0/4 (reserved, never a real target).
    Reserved,
    /// Cloud instance metadata services (credentials live there).
    Metadata,
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Loopback => "loopback",
            Self::LinkLocal => "link-local",
            Self::Unspecified => "unspecified",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Reserved => "reserved",
            Self::Metadata => "cloud metadata",
        })
    }
}

/// Metadata services reachable on ordinary-looking addresses: AWS/GCP/Azure/OpenStack IMDS
/// (169.254.169.254), AWS ECS task metadata (169.254.170.2), EKS pod identity
/// (169.254.170.23, fd00:ec2::23), Alibaba (100.100.100.200, inside the CGNAT range that
/// otherwise stays reachable), Oracle (192.0.0.192), AWS IMDS over IPv6 (fd00:ec2::254, inside
/// fc00::/7). Names such as `metadata.google.internal` resolve to one of these.
const METADATA_V4: [Ipv4Addr; 5] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(169, 254, 170, 23),
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(192, 0, 0, 192),
];
const METADATA_V6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254),
    Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0023),
];

/// The always-refused class of `ip`, if any (the address itself, no unwrapping).
pub fn class(ip: IpAddr) -> Option<Class> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if METADATA_V4.contains(&v4) {
                Some(Class::Metadata)
            } else if a == 0 {
                Some(Class::Unspecified)
            } else if a == 127 {
                Some(Class::Loopback)
            } else if a == 169 && b == 254 {
                Some(Class::LinkLocal)
            } else if v4.is_broadcast() {
                Some(Class::Broadcast)
            } else if v4.is_multicast() {
                Some(Class::Multicast)
            } else if a >= 240 {
                Some(Class::Reserved)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if METADATA_V6.contains(&v6) {
                Some(Class::Metadata)
            } else if v6.is_unspecified() {
                Some(Class::Unspecified)
            } else if v6.is_loopback() {
                Some(Class::Loopback)
            } else if first & 0xffc0 == 0xfe80 {
                Some(Class::LinkLocal)
            } else if v6.is_multicast() {
                Some(Class::Multicast)
            } else {
                None
            }
        }
    }
}

/// The IPv4 address an IPv6 address leads to, for the forms that reach one: IPv4-mapped
/// (`::ffff:a.b.c.d`, which a dual-stack socket connects to a.b.c.d), IPv4-compatible
/// (`::a.b.c.d`, deprecated), NAT64 (`64:ff9b::/96`, RFC 6052) and 6to4 (`2002:AABB:CCDD::/48`).
pub fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else {
        return None;
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let bits = u128::from(v6);
    let low = Ipv4Addr::from(u32::try_from(bits & 0xffff_ffff).unwrap_or(0));
    let s = v6.segments();
    // ::a.b.c.d, except :: and ::1, which are IPv6's own.
    if bits >> 32 == 0 && bits > 1 {
        return Some(low);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(low);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::from((u32::from(s[1]) << 16) | u32::from(s[2])));
    }
    None
}

impl AddressPolicy {
    /// May bigpipe connect to `ip` on `port`?
    ///
    /// Order of the decision, for each form of the address (itself, and the IPv4 address an
    /// IPv4-mapped, IPv4-compatible, NAT64 or 6to4 IPv6 address carries):
    /// 1. in `deny` → refused (deny wins over allow, and covers private ranges too);
    /// 2. in an always-refused class ([`Class`]) → refused unless an `allow` rule matches it
    ///    (for a cloud metadata address, only a rule naming exactly that address);
    /// 3. otherwise allowed: private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7)
    ///    stay reachable, as in the Go version, because calling internal services is the job.
    ///
    /// # Errors
    /// The [`Refusal`], naming the address and the rule or class.
    pub fn check(&self, ip: IpAddr, port: u16) -> Result<(), Refusal> {
        let addr = SocketAddr::new(ip, port);
        let forms = [Some(ip), embedded_v4(ip).map(IpAddr::V4)];
        let forms = forms.iter().flatten().copied();
        for form in forms.clone() {
            if let Some(rule) = self.deny().iter().find(|r| r.matches(form, port)) {
                return Err(Refusal::Denied { addr, rule: *rule });
            }
        }
        for form in forms {
            let Some(class) = class(form) else { continue };
            let lifted = self.allow().iter().any(|r| {
                (r.matches(form, port) || r.matches(ip, port))
                    && (class != Class::Metadata || r.is_single_host())
            });
            if !lifted {
                return Err(Refusal::Special { addr, class });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> AddressPolicy {
        let rules = |l: &[&str]| l.iter().map(|s| s.parse().unwrap()).collect();
        AddressPolicy::new(rules(allow), rules(deny))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Every hostile form of a local or metadata address, each refused by default.
    const REFUSED: &[(&str, Class)] = &[
        ("127.0.0.1", Class::Loopback),
        ("127.255.255.254", Class::Loopback),
        ("::1", Class::Loopback),
        ("::ffff:127.0.0.1", Class::Loopback),
        ("::ffff:7f00:1", Class::Loopback),
        ("::127.0.0.1", Class::Loopback),
        ("64:ff9b::127.0.0.1", Class::Loopback),
        ("2002:7f00:1::", Class::Loopback),
        ("0.0.0.0", Class::Unspecified),
        ("0.1.2.3", Class::Unspecified),
        ("::", Class::Unspecified),
        ("::ffff:0.0.0.0", Class::Unspecified),
        ("169.254.1.1", Class::LinkLocal),
        ("fe80::1", Class::LinkLocal),
        ("febf::1", Class::LinkLocal),
        ("169.254.169.254", Class::Metadata),
        ("::ffff:169.254.169.254", Class::Metadata),
        ("64:ff9b::a9fe:a9fe", Class::Metadata),
        ("169.254.170.2", Class::Metadata),
        ("fd00:ec2::254", Class::Metadata),
        ("100.100.100.200", Class::Metadata),
        ("192.0.0.192", Class::Metadata),
        ("224.0.0.1", Class::Multicast),
        ("239.255.255.250", Class::Multicast),
        ("ff02::1", Class::Multicast),
        ("255.255.255.255", Class::Broadcast),
        ("240.0.0.1", Class::Reserved),
    ];

    #[test]
    fn local_link_local_metadata_and_their_ipv6_forms_are_refused_by_default() {
        let p = AddressPolicy::strict();
        for (addr, want) in REFUSED {
            match p.check(ip(addr), 80) {
                Err(Refusal::Special { class, .. }) => assert_eq!(class, *want, "{addr}"),
                other => panic!("{addr}: {other:?}"),
            }
        }
    }

    #[test]
    fn private_and_public_addresses_stay_reachable_by_default() {
        let p = AddressPolicy::strict();
        for addr in [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "100.64.0.1",
            "100.100.100.201",
            "fd00::1",
            "fc00::1",
            "8.8.8.8",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "fec0::1",
        ] {
            assert_eq!(p.check(ip(addr), 443), Ok(()), "{addr}");
        }
    }

    #[test]
    fn allow_lifts_exactly_what_it_names() {
        let p = policy(&["127.0.0.1:10086", "[::1]:8080", "169.254.0.0/16"], &[]);
        assert_eq!(p.check(ip("127.0.0.1"), 10086), Ok(()));
        assert_eq!(p.check(ip("::ffff:127.0.0.1"), 10086), Ok(()));
        assert!(p.check(ip("127.0.0.1"), 10087).is_err());
        assert!(p.check(ip("127.0.0.2"), 10086).is_err());
        assert_eq!(p.check(ip("::1"), 8080), Ok(()));
        assert!(p.check(ip("::1"), 80).is_err());
        assert_eq!(p.check(ip("169.254.1.1"), 80), Ok(()));
        // A block never opens a metadata address; naming it does.
        assert!(matches!(
            p.check(ip("169.254.169.254"), 80),
            Err(Refusal::Special {
                class: Class::Metadata,
                ..
            })
        ));
        let p = policy(&["169.254.169.254"], &[]);
        assert_eq!(p.check(ip("169.254.169.254"), 80), Ok(()));
    }

    #[test]
    fn deny_wins_over_allow_and_covers_private_ranges() {
        let p = policy(&["127.0.0.0/8"], &["127.0.0.1:2375", "10.0.0.0/8", "fd00::/8"]);
        assert_eq!(p.check(ip("127.0.0.1"), 80), Ok(()));
        assert!(matches!(
            p.check(ip("127.0.0.1"), 2375),
            Err(Refusal::Denied { .. })
        ));
        assert!(matches!(
            p.check(ip("10.9.9.9"), 443),
            Err(Refusal::Denied { .. })
        ));
        assert!(matches!(
            p.check(ip("::ffff:10.9.9.9"), 443),
            Err(Refusal::Denied { .. })
        ));
        assert!(matches!(p.check(ip("fd12::1"), 443), Err(Refusal::Denied { .. })));
        assert_eq!(p.check(ip("192.168.0.1"), 443), Ok(()));
    }

    #[test]
    fn refusals_name_the_address_and_why() {
        let err = AddressPolicy::strict()
            .check(ip("127.0.0.1"), 8080)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "127.0.0.1:8080 is a loopback address, refused unless listed in delivery.allow"
        );
    }
}
