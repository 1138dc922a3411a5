//! The connect-time destination check: a resolver for awc's connector that resolves a target
//! name and keeps only the addresses the address policy allows, plus the check of IP-literal
//! hosts, which actix-tls connects to without asking any resolver.
//!
//! Judging the resolved addresses (not the name) is what covers a name that points at
//! loopback (`localhost`, `127.0.0.1.nip.io`), DNS rebinding (a name that resolved to a public
//! address at ingest and to 127.0.0.1 now: each connection resolves again and is judged
//! again), and numeric forms that `getaddrinfo` reads with `inet_aton` rules.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;

use actix_tls::connect::Resolve;
use awc::http::Uri;
use futures::future::LocalBoxFuture;

use crate::policy::{AddressPolicy, Host};

/// A destination the policy refuses: the attempt ends as
/// [`AttemptOutcome::Refused`](super::AttemptOutcome::Refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(super) struct NotAllowed(pub(super) String);

/// Resolves names with the system resolver (tokio's `lookup_host`, as actix-tls's default
/// does) and drops refused addresses. Every address refused: [`NotAllowed`], so the attempt
/// fails without a connection being tried.
#[derive(Debug)]
pub(super) struct PolicyResolver {
    pub(super) policy: Arc<AddressPolicy>,
}

impl Resolve for PolicyResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<Vec<SocketAddr>, Box<dyn StdError>>> {
        Box::pin(async move {
            let addrs = match Host::parse(host) {
                // actix-tls hands bracketed IPv6 literals to the resolver.
                Host::Ip(ip) => vec![SocketAddr::new(ip, port)],
                Host::Ambiguous(h) => {
                    return Err(NotAllowed(format!("ambiguous numeric host '{h}'")).into());
                }
                Host::Name(name) => tokio::net::lookup_host((name.as_str(), port)).await?.collect(),
            };
            allowed(&self.policy, host, addrs).map_err(Into::into)
        })
    }
}

/// The addresses of `host` the policy allows, in resolver order; [`NotAllowed`] (naming the
/// first refusal) when none is left.
pub(super) fn allowed(
    policy: &AddressPolicy,
    host: &str,
    addrs: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, NotAllowed> {
    let mut first_refusal = None;
    let kept: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| match policy.check(a.ip(), a.port()) {
            Ok(()) => true,
            Err(r) => {
                first_refusal.get_or_insert(r);
                false
            }
        })
        .collect();
    match (kept.is_empty(), first_refusal) {
        (true, Some(r)) => Err(NotAllowed(format!("{host} resolves to refused addresses: {r}"))),
        // No records at all: let actix-tls report that as the (retryable) DNS failure it is.
        _ => Ok(kept),
    }
}

/// The check of a URL's host before sending: IP literals are judged here (actix-tls never
/// passes them to a resolver) and ambiguous numeric forms are refused; names pass on to
/// [`PolicyResolver`].
pub(super) fn check_literal(policy: &AddressPolicy, uri: &Uri) -> Result<(), NotAllowed> {
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") {
        443
    } else {
        80
    });
    match Host::parse(uri.host().unwrap_or_default()) {
        Host::Ip(ip) => policy.check(ip, port).map_err(|r| NotAllowed(r.to_string())),
        Host::Ambiguous(h) => Err(NotAllowed(format!("ambiguous numeric host '{h}'"))),
        Host::Name(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refused_addresses_are_dropped_and_all_refused_is_an_error() {
        let p = AddressPolicy::strict();
        let kept = allowed(&p, "h", vec![addr("127.0.0.1:80"), addr("10.0.0.1:80")]);
        assert_eq!(kept, Ok(vec![addr("10.0.0.1:80")]));
        let err = allowed(&p, "localhost", vec![addr("127.0.0.1:80"), addr("[::1]:80")]).unwrap_err();
        assert!(
            err.0
                .contains("localhost resolves to refused addresses: 127.0.0.1:80"),
            "{err}"
        );
        assert_eq!(allowed(&p, "h", vec![]), Ok(vec![]));
    }

    #[test]
    fn literal_hosts_are_judged_before_sending() {
        let p = AddressPolicy::strict();
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        assert!(check_literal(&p, &uri("http://127.0.0.1:8080/")).is_err());
        assert!(check_literal(&p, &uri("http://[::ffff:127.0.0.1]/")).is_err());
        assert!(check_literal(&p, &uri("http://2130706433:8080/")).is_err());
        assert!(check_literal(&p, &uri("http://0x7f.1/")).is_err());
        assert!(check_literal(&p, &uri("http://169.254.169.254/latest/")).is_err());
        assert!(check_literal(&p, &uri("http://10.0.0.1:2375/")).is_ok());
        assert!(
            check_literal(&p, &uri("http://localhost/")).is_ok(),
            "names go to the resolver"
        );
        let allow = AddressPolicy::new(vec!["127.0.0.1:8080".parse().unwrap()], vec![]);
        assert!(check_literal(&allow, &uri("http://127.0.0.1:8080/")).is_ok());
        assert!(check_literal(&allow, &uri("https://127.0.0.1/")).is_err());
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_resolving_to_loopback() {
        let r = PolicyResolver {
            policy: Arc::new(AddressPolicy::strict()),
        };
        let err = r.lookup("localhost", 80).await.unwrap_err();
        assert!(err.downcast_ref::<NotAllowed>().is_some(), "{err}");
        let err = r.lookup("[::1]", 80).await.unwrap_err();
        assert!(err.downcast_ref::<NotAllowed>().is_some(), "{err}");
        let r = PolicyResolver {
            policy: Arc::new(AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()], vec![])),
        };
        let addrs = r.lookup("localhost", 80).await.unwrap();
        assert!(addrs.contains(&addr("127.0.0.1:80")), "{addrs:?}");
    }
}
