//! The headers a call carries to its target.
//!
//! The Go version forwarded the caller's `/rpc/call` headers verbatim,
//! including hop-by-hop ones (`Connection`, `Transfer-Encoding`, …) that
//! describe the caller's connection to bigpipe, not ours to the target, and
//! `Expect: 100-continue`, which curl adds for bodies over 1 KB and which made
//! Go's transport wait a second for a `100 Continue` on every delivery. Here
//! those are dropped, framing headers are left to the HTTP client, and two
//! headers are added so targets can deduplicate at-least-once deliveries.
//!
//! Which of the remaining caller headers travel is an allow-list
//! ([`super::forward`]): by default custom `X-*` headers (minus forwarding,
//! identity and credential ones) and a few descriptive ones, never
//! `Authorization` or `Cookie`.

use std::collections::BTreeMap;

use awc::http::header::{HeaderName, HeaderValue};

use super::forward::HeaderPolicy;

/// Header carrying the call id (the id `/rpc/call` answered with).
pub const CALL_ID_HEADER: &str = "X-Bigpipe-Call-Id";
/// Header telling the target a call was replayed from a dead letter (its
/// `<dlqTopic>/<partition>/<offset>`); absent on calls never dead-lettered.
pub const REPLAY_OF_HEADER: &str = "X-Bigpipe-Replay-Of";
/// Header carrying the 1-based attempt number of this delivery.
pub const ATTEMPT_HEADER: &str = "X-Bigpipe-Attempt";
/// The body's content type, as the Go version sent it.
pub const CONTENT_TYPE: &str = "application/octet-stream";

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the de-facto `Keep-Alive` and
/// `Proxy-Connection`), lower case.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers that are ours to set, lower case: framing and addressing belong
/// to the client (`Host` from the URL, `Content-Length` from the body), `Expect`
/// would stall the request, `Accept-Encoding` would invite compressed
/// answers that we never decompress, and `Content-Type` is set below (as is
/// every `X-Bigpipe-*` header, checked by prefix).
const REPLACED: [&str; 5] = [
    "host",
    "content-length",
    "expect",
    "accept-encoding",
    "content-type",
];

/// Caller headers that a signing entry sets itself (Standard Webhooks, see
/// [`super::signing`]), lower case. Dropped from every call, signed or not:
/// a caller-made signature must never reach a target that checks them.
const SIGNATURE_HEADERS: [&str; 3] = ["webhook-id", "webhook-timestamp", "webhook-signature"];

/// Whether a header is never forwarded, whatever the policy: hop-by-hop, bigpipe's own to set,
/// or a signature header. Any letter case; nothing is allocated, so ingest and delivery skip
/// these before copying anything.
pub fn never_forwarded(name: &str) -> bool {
    let is = |list: &[&str]| list.iter().any(|h| h.eq_ignore_ascii_case(name));
    is(&HOP_BY_HOP)
        || is(&REPLACED)
        || is(&SIGNATURE_HEADERS)
        || name
            .as_bytes()
            .get(..10)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"x-bigpipe-"))
}

/// The stored headers that may travel under `policy`: without hop-by-hop
/// headers (including any the `Connection` header names), without `Host`,
/// `Content-Length`, `Expect`, `Accept-Encoding`, `Content-Type`,
/// `X-Bigpipe-*` and the Standard Webhooks headers, which are bigpipe's to
/// set, and only those `policy` allows. Names and values that are not valid
/// HTTP are skipped: they came from the caller and were never going to reach
/// the target intact. Values may contain non-ASCII bytes (obs-text), which
/// are kept unchanged.
///
/// Ingest stores this (with the union of the topic's policies), and delivery
/// runs it again with the entry's own policy, so records that others wrote
/// straight into Kafka are filtered too.
pub fn forwardable(
    stored: &BTreeMap<String, Vec<String>>,
    policy: &HeaderPolicy,
) -> BTreeMap<String, Vec<String>> {
    forwardable_by(stored, |name| policy.allows(name))
}

/// [`forwardable`] with any rule: `allows` gets the header name as stored.
pub fn forwardable_by(
    stored: &BTreeMap<String, Vec<String>>,
    allows: impl Fn(&str) -> bool,
) -> BTreeMap<String, Vec<String>> {
    // Connection: close, x-secret  →  x-secret is hop-by-hop for this request.
    let named_by_connection: Vec<String> = stored
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, values)| values.iter())
        .flat_map(|v| v.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .filter(|token| !token.is_empty())
        .collect();

    let mut out = BTreeMap::new();
    for (name, values) in stored {
        if never_forwarded(name)
            || named_by_connection.iter().any(|n| n.eq_ignore_ascii_case(name))
            || !allows(name)
            || HeaderName::from_bytes(name.as_bytes()).is_err()
        {
            continue;
        }
        let valid: Vec<String> = values
            .iter()
            .filter(|v| HeaderValue::from_bytes(v.as_bytes()).is_ok())
            .cloned()
            .collect();
        if !valid.is_empty() {
            out.insert(name.clone(), valid);
        }
    }
    out
}

/// Builds the headers for the target from the stored caller headers
/// (Go-canonical keys, every value kept, in order): [`forwardable`] under
/// `policy`, then `Content-Type: application/octet-stream`,
/// `X-Bigpipe-Call-Id: <call_id>` and `X-Bigpipe-Attempt: <attempt>`.
pub fn outbound_headers(
    stored: &BTreeMap<String, Vec<String>>,
    call_id: &str,
    attempt: u32,
    policy: &HeaderPolicy,
) -> Vec<(String, String)> {
    outbound_headers_with(stored, call_id, attempt, policy, Some(CONTENT_TYPE))
}

/// [`outbound_headers`] with the call's own `Content-Type` (`None`: none, for a GET).
pub fn outbound_headers_with(
    stored: &BTreeMap<String, Vec<String>>,
    call_id: &str,
    attempt: u32,
    policy: &HeaderPolicy,
    content_type: Option<&str>,
) -> Vec<(String, String)> {
    let kept = forwardable(stored, policy);
    let mut out = Vec::with_capacity(kept.values().map(Vec::len).sum::<usize>() + 3);
    for (name, values) in kept {
        for value in values {
            out.push((name.clone(), value));
        }
    }
    if let Some(content_type) = content_type {
        out.push(("Content-Type".to_owned(), content_type.to_owned()));
    }
    if HeaderValue::from_bytes(call_id.as_bytes()).is_ok() {
        out.push((CALL_ID_HEADER.to_owned(), call_id.to_owned()));
    }
    out.push((ATTEMPT_HEADER.to_owned(), attempt.to_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::forward::ForwardRules;

    /// Every header, as the Go version forwarded them, so only the fixed rules act.
    fn go() -> HeaderPolicy {
        HeaderPolicy {
            forward: ForwardRules::all(),
            drop: vec![],
        }
    }

    fn stored(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, vs)| ((*k).to_owned(), vs.iter().map(|v| (*v).to_owned()).collect()))
            .collect()
    }

    #[test]
    fn never_forwarded_ignores_case_and_allocates_nothing_to_decide() {
        for name in [
            "Host",
            "CONTENT-LENGTH",
            "connection",
            "X-Bigpipe-Anything",
            "x-BIGPIPE-",
            "Webhook-Signature",
        ] {
            assert!(never_forwarded(name), "{name}");
        }
        for name in [
            "X-Request-Id",
            "x-bigpipe",
            "X-Bigpip-Call-Id",
            "Content-Language",
            "é",
        ] {
            assert!(!never_forwarded(name), "{name}");
        }
    }

    fn names(h: &[(String, String)]) -> Vec<String> {
        h.iter().map(|(k, _)| k.to_ascii_lowercase()).collect()
    }

    #[test]
    fn hop_by_hop_and_replaced_headers_are_dropped() {
        let s = stored(&[
            ("Connection", &["keep-alive, X-Private-Hop", "Upgrade"]),
            ("Keep-Alive", &["timeout=5"]),
            ("Proxy-Connection", &["keep-alive"]),
            ("Proxy-Authenticate", &["Basic"]),
            ("Proxy-Authorization", &["Basic Zm9vOmJhcg=="]),
            ("Te", &["trailers"]),
            ("Trailer", &["Expires"]),
            ("Transfer-Encoding", &["chunked"]),
            ("Upgrade", &["websocket"]),
            ("X-Private-Hop", &["secret"]),
            ("Host", &["bigpipe.internal:10086"]),
            ("Content-Length", &["42"]),
            ("Expect", &["100-continue"]),
            ("Accept-Encoding", &["gzip"]),
            ("Content-Type", &["application/json"]),
            ("X-Bigpipe-Call-Id", &["spoofed"]),
            ("X-Bigpipe-Attempt", &["99"]),
            ("Webhook-Id", &["forged"]),
            ("webhook-timestamp", &["1"]),
            ("Webhook-Signature", &["v1,forged"]),
            ("User-Agent", &["curl/8.5.0"]),
        ]);
        let h = outbound_headers(&s, "0193-abc", 2, &go());
        assert_eq!(
            h,
            vec![
                ("User-Agent".to_owned(), "curl/8.5.0".to_owned()),
                ("Content-Type".to_owned(), "application/octet-stream".to_owned()),
                ("X-Bigpipe-Call-Id".to_owned(), "0193-abc".to_owned()),
                ("X-Bigpipe-Attempt".to_owned(), "2".to_owned()),
            ]
        );
    }

    #[test]
    fn connection_tokens_match_case_insensitively() {
        let s = stored(&[
            ("Connection", &[" x-hop ,"]),
            ("X-Hop", &["1"]),
            ("X-Keep", &["2"]),
        ]);
        let n = names(&outbound_headers(&s, "id", 1, &go()));
        assert!(!n.contains(&"x-hop".to_owned()));
        assert!(n.contains(&"x-keep".to_owned()));
    }

    #[test]
    fn under_star_end_to_end_headers_and_every_value_are_kept() {
        let s = stored(&[
            ("Accept", &["text/plain", "application/json"]),
            ("Authorization", &["Bearer t"]),
            ("Cookie", &["a=1", "b=2"]),
            ("X-Unicode", &["héllo wörld ✓"]),
        ]);
        let h = outbound_headers(&s, "id-1", 1, &go());
        let get = |k: &str| -> Vec<&str> {
            h.iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(get("Accept"), ["text/plain", "application/json"]);
        assert_eq!(get("Cookie"), ["a=1", "b=2"]);
        assert_eq!(get("Authorization"), ["Bearer t"]);
        assert_eq!(get("X-Unicode"), ["héllo wörld ✓"]);
        assert_eq!(get("X-Bigpipe-Call-Id"), ["id-1"]);
        assert_eq!(get("X-Bigpipe-Attempt"), ["1"]);
        assert_eq!(get("Content-Type"), ["application/octet-stream"]);
    }

    #[test]
    fn invalid_names_and_values_are_skipped() {
        let s = stored(&[
            ("Bad Name", &["x"]),
            ("", &["x"]),
            ("X-Ok", &["fine", "line\r\nX-Injected: 1", "nul\0"]),
        ]);
        let h = outbound_headers(&s, "bad\nid", 3, &go());
        assert_eq!(
            h,
            vec![
                ("X-Ok".to_owned(), "fine".to_owned()),
                ("Content-Type".to_owned(), "application/octet-stream".to_owned()),
                ("X-Bigpipe-Attempt".to_owned(), "3".to_owned()),
            ]
        );
    }

    #[test]
    fn empty_store_still_gets_ids() {
        let h = outbound_headers(&BTreeMap::new(), "id", 1, &HeaderPolicy::default());
        assert_eq!(
            names(&h),
            ["content-type", "x-bigpipe-call-id", "x-bigpipe-attempt"]
        );
    }

    #[test]
    fn configured_headers_are_dropped_whatever_their_case() {
        let mut s = BTreeMap::new();
        s.insert("Authorization".to_owned(), vec!["Bearer secret".to_owned()]);
        s.insert("Cookie".to_owned(), vec!["a=1".to_owned()]);
        s.insert("X-Keep".to_owned(), vec!["yes".to_owned()]);
        let policy = HeaderPolicy {
            forward: ForwardRules::all(),
            drop: vec!["authorization".to_owned(), "cookie".to_owned()],
        };
        let h = outbound_headers(&s, "id", 1, &policy);
        let names: Vec<&str> = h.iter().map(|(k, _)| k.as_str()).collect();
        assert!(names.contains(&"X-Keep"));
        assert!(
            !names
                .iter()
                .any(|n| n.eq_ignore_ascii_case("authorization") || n.eq_ignore_ascii_case("cookie"))
        );
        // With "*" and no deny list both are forwarded, as the Go version did.
        let all = outbound_headers(&s, "id", 1, &go());
        assert!(all.iter().any(|(k, _)| k == "Authorization") && all.iter().any(|(k, _)| k == "Cookie"));
    }

    #[test]
    fn by_default_credentials_and_forwarding_headers_stay_behind() {
        let s = stored(&[
            ("Authorization", &["Bearer CALLER-TOKEN"]),
            ("Cookie", &["session=abc"]),
            ("X-Forwarded-For", &["6.6.6.6"]),
            ("Forwarded", &["for=6.6.6.6"]),
            ("X-Real-Ip", &["10.0.0.1"]),
            ("X-Forwarded-Client-Cert", &["By=spiffe://x"]),
            ("X-Request-Id", &["req-1"]),
            ("User-Agent", &["curl/8"]),
            ("Origin", &["https://evil"]),
        ]);
        let h = outbound_headers(&s, "id", 1, &HeaderPolicy::default());
        assert_eq!(
            names(&h),
            [
                "user-agent",
                "x-request-id",
                "content-type",
                "x-bigpipe-call-id",
                "x-bigpipe-attempt"
            ]
        );
    }

    #[test]
    fn forwardable_is_what_ingest_stores() {
        let s = stored(&[
            ("Connection", &["X-Hop"]),
            ("X-Hop", &["1"]),
            ("Authorization", &["Bearer t"]),
            ("X-Ok", &["a", "bad\r\nvalue", "b"]),
            ("Content-Type", &["application/json"]),
        ]);
        let kept = forwardable(&s, &HeaderPolicy::default());
        assert_eq!(kept, stored(&[("X-Ok", &["a", "b"])]));
        let all = forwardable(&s, &go());
        assert!(all.contains_key("Authorization"));
        assert!(!all.contains_key("X-Hop") && !all.contains_key("Connection"));
    }
}
