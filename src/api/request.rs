//! Parsing of the `/rpc/call` body, with the Go version's checks in its order.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::Uri;
use actix_web::http::header::{HeaderName, HeaderValue};
use serde_json::value::RawValue;

use super::envelope::CallError;
use crate::config::AckMode;
use crate::message::CallMethod;
use crate::rawjson;

/// A well-formed `/rpc/call` request (not yet authorised).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRequest {
    /// Target URL.
    pub url: String,
    /// `url`, parsed (once: the destination check reads it too).
    pub uri: Uri,
    /// Body to POST to the target.
    pub data: String,
    /// Partition key; empty spreads calls over partitions.
    pub partition_key: String,
    /// ACL name.
    pub acl_name: String,
    /// ACL secret.
    pub acl_secret: String,
    /// Per-call acknowledgement mode, when given.
    pub ack: Option<AckMode>,
    /// When the call is due, when the caller scheduled it (`deliver_at` or `delay_ms`).
    pub schedule: Option<Schedule>,
    /// `data` was a JSON object or array (sent as JSON), not a string.
    pub data_is_json: bool,
    /// How the call is delivered, when the caller said.
    pub options: CallOptions,
    /// `callback_url`, and it parsed: where the call's final outcome is POSTed.
    pub callback: Option<(String, Uri)>,
    /// `idempotency_key`: a repeat within the window answers with the first call's id.
    pub idempotency_key: Option<String>,
}

/// The per-call delivery options of a `/rpc/call` body, all optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// `method`: POST (default), PUT, PATCH, DELETE, or GET (no body).
    pub method: Option<CallMethod>,
    /// `headers`: names (as given) and values to send, before the forwarding rules.
    pub headers: Vec<(String, String)>,
    /// `content_type`: the delivery's `Content-Type`.
    pub content_type: Option<String>,
    /// `timeout_ms`: the caller's bound on one attempt (the entry's `timeout` still caps it).
    pub timeout_ms: Option<u64>,
}

/// Most entries in a call's `headers`.
pub const MAX_CALL_HEADERS: usize = 64;

/// Largest `timeout_ms`: an hour, the most any consumer entry's `timeout` can be.
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// When a scheduled call is due, as the caller asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// `deliver_at`: not before this time, ms since the Unix epoch.
    At(i64),
    /// `delay_ms`: not before this long after acceptance.
    After(u64),
}

impl Schedule {
    /// The call's `DeliverAt` when accepted at `now_ms`: `None` when it is due now (a time
    /// in the past means now), the due time otherwise.
    ///
    /// # Errors
    /// A due time more than `max` ahead (the error names the field the caller used).
    pub fn due_ms(self, now_ms: i64, max: Duration) -> Result<Option<i64>, CallError> {
        let max_ms = i64::try_from(max.as_millis()).unwrap_or(i64::MAX);
        match self {
            Self::At(at) if at <= now_ms => Ok(None),
            Self::At(at) if at.saturating_sub(now_ms) > max_ms => Err(CallError::DeliverAt),
            Self::At(at) => Ok(Some(at)),
            Self::After(0) => Ok(None),
            Self::After(delay) => match i64::try_from(delay) {
                Ok(delay) if delay <= max_ms => Ok(Some(now_ms.saturating_add(delay))),
                _ => Err(CallError::DelayMs),
            },
        }
    }
}

/// Parses and checks a body: JSON object, then `url`, `data`,
/// `partition_key`, `acl`, `acl.name`, `acl.secret` (the Go version's order),
/// then the new optional `ack`.
///
/// The body is not built into a `serde_json::Value` tree ([`crate::rawjson`]): 5 allocations
/// per call (the owned strings) instead of ~20, on the hottest path of the process (issue 12).
///
/// # Errors
/// The first failed check, as the Go version reported it.
pub fn parse(body: &[u8]) -> Result<CallRequest, CallError> {
    const KEYS: [&str; 13] = [
        "url",
        "data",
        "partition_key",
        "acl",
        "ack",
        "deliver_at",
        "delay_ms",
        "method",
        "headers",
        "content_type",
        "timeout_ms",
        "callback_url",
        "idempotency_key",
    ];
    const ACL_KEYS: [&str; 2] = ["name", "secret"];
    // Go's json.Unmarshal leaves the request empty for a JSON `null`, so its first check (the
    // url) is what fails; an empty object gives the same answer here.
    let body = if is_json_null(body) {
        b"{}".as_slice()
    } else {
        body
    };
    let fields = rawjson::pick(body, &KEYS).map_err(|_| CallError::Json)?;
    let url = fields.string("url").ok_or(CallError::Url)?;
    // The Go version accepted any string and the call failed later in the
    // consumer; refusing it here tells the caller while they can still fix it.
    let uri = parse_http_url(&url).ok_or(CallError::Url)?;
    // A string, as in Go; or, new, a JSON object or array, kept as its text.
    let (data, data_is_json) = match fields.raw("data") {
        Some(raw) if raw.get().starts_with(['{', '[']) => (Cow::Borrowed(raw.get()), true),
        raw => (raw.and_then(rawjson::string).ok_or(CallError::Data)?, false),
    };
    let partition_key = fields.string("partition_key").ok_or(CallError::PartitionKey)?;
    let acl = fields
        .raw("acl")
        .and_then(|raw| rawjson::pick(raw.get().as_bytes(), &ACL_KEYS).ok())
        .ok_or(CallError::Acl)?;
    let acl_name = acl.string("name").ok_or(CallError::AclName)?;
    let acl_secret = acl.string("secret").ok_or(CallError::AclSecret)?;
    let ack = match fields.raw("ack") {
        None => None,
        Some(raw) if raw.get() == "null" => None,
        Some(raw) => match rawjson::string(raw).as_deref() {
            Some("queue") => Some(AckMode::Queue),
            Some("kafka") => Some(AckMode::Kafka),
            _ => return Err(CallError::Ack),
        },
    };
    let schedule = schedule(
        non_null(fields.raw("deliver_at")),
        non_null(fields.raw("delay_ms")),
    )?;
    let options = options(
        non_null(fields.raw("method")),
        non_null(fields.raw("headers")),
        non_null(fields.raw("content_type")),
        non_null(fields.raw("timeout_ms")),
    )?;
    if options.method.is_some_and(|m| !m.has_body()) && !data.is_empty() {
        // A GET carries no body: data the target would never see is refused, not dropped.
        return Err(CallError::Data);
    }
    let callback = match non_null(fields.raw("callback_url")) {
        None => None,
        Some(raw) => {
            let url = rawjson::string(raw).ok_or(CallError::CallbackUrl)?;
            let uri = parse_http_url(&url).ok_or(CallError::CallbackUrl)?;
            Some((url.into_owned(), uri))
        }
    };
    let idempotency_key = match non_null(fields.raw("idempotency_key")) {
        None => None,
        Some(raw) => {
            let key = rawjson::string(raw).ok_or(CallError::IdempotencyKey)?;
            if !crate::idempotency::valid_key(&key) {
                return Err(CallError::IdempotencyKey);
            }
            Some(key.into_owned())
        }
    };
    Ok(CallRequest {
        url: url.into_owned(),
        uri,
        data: data.into_owned(),
        partition_key: partition_key.into_owned(),
        acl_name: acl_name.into_owned(),
        acl_secret: acl_secret.into_owned(),
        ack,
        schedule,
        data_is_json,
        options,
        callback,
        idempotency_key,
    })
}

/// `method`, `headers`, `content_type` and `timeout_ms` (raw, `null` already read as
/// absent), checked in that order.
fn options(
    method: Option<&RawValue>,
    headers: Option<&RawValue>,
    content_type: Option<&RawValue>,
    timeout_ms: Option<&RawValue>,
) -> Result<CallOptions, CallError> {
    let method = match method {
        None => None,
        Some(raw) => Some(
            rawjson::string(raw)
                .and_then(|m| CallMethod::parse(&m))
                .ok_or(CallError::CallMethod)?,
        ),
    };
    let headers = match headers {
        None => Vec::new(),
        Some(raw) => call_headers(raw).ok_or(CallError::Headers)?,
    };
    let content_type = match content_type {
        None => None,
        Some(raw) => Some(
            rawjson::string(raw)
                .filter(|v| !v.is_empty() && HeaderValue::from_str(v).is_ok())
                .ok_or(CallError::ContentType)?
                .into_owned(),
        ),
    };
    let timeout_ms = match timeout_ms {
        None => None,
        Some(raw) => Some(
            serde_json::from_str::<u64>(raw.get())
                .ok()
                .filter(|ms| (1..=MAX_TIMEOUT_MS).contains(ms))
                .ok_or(CallError::TimeoutMs)?,
        ),
    };
    Ok(CallOptions {
        method,
        headers,
        content_type,
        timeout_ms,
    })
}

/// `headers`: an object of at most [`MAX_CALL_HEADERS`] names, each a valid HTTP header
/// name with a string (or an array of strings) of valid header values.
fn call_headers(raw: &RawValue) -> Option<Vec<(String, String)>> {
    // Borrowed raw values: each is judged on its own, without a tree.
    let object: BTreeMap<String, &RawValue> = serde_json::from_str(raw.get()).ok()?;
    if object.len() > MAX_CALL_HEADERS {
        return None;
    }
    let mut out = Vec::with_capacity(object.len());
    for (name, value) in object {
        HeaderName::from_bytes(name.as_bytes()).ok()?;
        let values: Vec<String> = match rawjson::string(value) {
            Some(one) => vec![one.into_owned()],
            None => serde_json::from_str(value.get()).ok()?,
        };
        for value in values {
            HeaderValue::from_str(&value).ok()?;
            out.push((name.clone(), value));
        }
    }
    Some(out)
}

/// A field's raw value, `null` read as absent (as for `ack`).
fn non_null(raw: Option<&RawValue>) -> Option<&RawValue> {
    raw.filter(|r| r.get() != "null")
}

/// `deliver_at` (an RFC 3339 time, or ms since the epoch as a non-negative integer) or
/// `delay_ms` (a non-negative integer); not both.
fn schedule(
    deliver_at: Option<&RawValue>,
    delay_ms: Option<&RawValue>,
) -> Result<Option<Schedule>, CallError> {
    match (deliver_at, delay_ms) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(CallError::DelayMs),
        (Some(raw), None) => {
            let at = match rawjson::string(raw) {
                Some(text) => chrono::DateTime::parse_from_rfc3339(&text)
                    .ok()
                    .map(|t| t.timestamp_millis()),
                None => serde_json::from_str::<u64>(raw.get())
                    .ok()
                    .and_then(|ms| i64::try_from(ms).ok()),
            };
            at.map(|at| Some(Schedule::At(at))).ok_or(CallError::DeliverAt)
        }
        (None, Some(raw)) => serde_json::from_str::<u64>(raw.get())
            .map(|ms| Some(Schedule::After(ms)))
            .map_err(|_| CallError::DelayMs),
    }
}

/// Whether `body` is the JSON literal `null`, with JSON's whitespace around it.
fn is_json_null(body: &[u8]) -> bool {
    let json_ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = body.iter().position(|b| !json_ws(b)).unwrap_or(body.len());
    let end = body.iter().rposition(|b| !json_ws(b)).map_or(start, |i| i + 1);
    body.get(start..end) == Some(b"null".as_slice())
}

/// `url` parsed, when it is an absolute `http` or `https` URL with a host.
fn parse_http_url(url: &str) -> Option<Uri> {
    let uri = url.parse::<Uri>().ok()?;
    (matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some_and(|h| !h.is_empty()))
        .then_some(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"acl":{"name":"system-1","secret":"s"},"url":"http://localhost:10086/rpc/server/mock","data":"hello","partition_key":"k"}"#;

    #[test]
    fn accepts_the_go_readme_example() {
        let req = parse(GOOD.as_bytes()).unwrap();
        assert_eq!(req.url, "http://localhost:10086/rpc/server/mock");
        assert_eq!((req.data.as_str(), req.partition_key.as_str()), ("hello", "k"));
        assert_eq!(
            (req.acl_name.as_str(), req.acl_secret.as_str()),
            ("system-1", "s")
        );
        assert_eq!(req.ack, None);
    }

    #[test]
    fn each_malformed_field_gets_its_go_error_in_go_order() {
        let cases: &[(&str, CallError)] = &[
            ("", CallError::Json),
            ("[1,2]", CallError::Json),
            ("\"str\"", CallError::Json),
            ("{bad json", CallError::Json),
            // Go: a `null` body decodes to an empty request, refused for its url.
            ("null", CallError::Url),
            (" \n null\t", CallError::Url),
            ("nul", CallError::Json),
            ("null null", CallError::Json),
            // Everything wrong: url is checked first.
            ("{}", CallError::Url),
            (r#"{"url":5}"#, CallError::Url),
            (r#"{"url":"not a url","data":"d"}"#, CallError::Url),
            (r#"{"url":"ftp://h/x","data":"d"}"#, CallError::Url),
            (r#"{"url":"http://h/"}"#, CallError::Data),
            // New: JSON data is accepted (Go refused it), so the next check answers.
            (r#"{"url":"http://h/","data":{"a":1}}"#, CallError::PartitionKey),
            (r#"{"url":"http://h/","data":5}"#, CallError::Data),
            (r#"{"url":"http://h/","data":"d"}"#, CallError::PartitionKey),
            (
                r#"{"url":"http://h/","data":"d","partition_key":1}"#,
                CallError::PartitionKey,
            ),
            (
                r#"{"url":"http://h/","data":"d","partition_key":""}"#,
                CallError::Acl,
            ),
            (
                r#"{"url":"http://h/","data":"d","partition_key":"","acl":"x"}"#,
                CallError::Acl,
            ),
            (
                r#"{"url":"http://h/","data":"d","partition_key":"","acl":{}}"#,
                CallError::AclName,
            ),
            (
                r#"{"url":"http://h/","data":"d","partition_key":"","acl":{"name":1}}"#,
                CallError::AclName,
            ),
            (
                r#"{"url":"http://h/","data":"d","partition_key":"","acl":{"name":"n"}}"#,
                CallError::AclSecret,
            ),
            (
                r#"{"url":"http://h/","data":"d","partition_key":"","acl":{"name":"n","secret":false}}"#,
                CallError::AclSecret,
            ),
            (
                r#"{"url":"http://h/","data":"d","partition_key":"","acl":{"name":"n","secret":"s"},"ack":"disk"}"#,
                CallError::Ack,
            ),
            (
                r#"{"url":"http://h/","data":"d","partition_key":"","acl":{"name":"n","secret":"s"},"ack":1}"#,
                CallError::Ack,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(parse(body.as_bytes()).as_ref().err(), Some(want), "{body}");
        }
    }

    /// A deliberate difference (README): Go replaced invalid UTF-8 in `data` with U+FFFD and
    /// stored a call the caller never sent; here the body is refused.
    #[test]
    fn invalid_utf8_inside_a_known_field_is_refused() {
        let body = b"{\"url\":\"http://h/\",\"data\":\"a\xffb\",\"partition_key\":\"\"}";
        assert_eq!(parse(body).err(), Some(CallError::Json));
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_and_escaped_keys_count() {
        let body = r#"{"url":"http://first/","u\u0072l":"http://last/","data":"a","data":"b","partition_key":"","acl":{"name":"x","name":"n","secret":"s"},"extra":{"deep":[1,2,{"x":null}]}}"#;
        let req = parse(body.as_bytes()).unwrap();
        assert_eq!((req.url.as_str(), req.data.as_str()), ("http://last/", "b"));
        assert_eq!(req.acl_name, "n");
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let body = r#"{"url":"http:\/\/h\/p","data":"a\"b\n\u4e2d","partition_key":"\/k","acl":{"name":"n","secret":"s\\"},"ack":"k\u0061fka"}"#;
        let req = parse(body.as_bytes()).unwrap();
        assert_eq!(req.url, "http://h/p");
        assert_eq!(req.data, "a\"b\n中");
        assert_eq!(req.partition_key, "/k");
        assert_eq!(req.acl_secret, "s\\");
        assert_eq!(req.ack, Some(AckMode::Kafka));
    }

    #[test]
    fn deep_nesting_is_read_without_recursion_and_judged_like_any_value() {
        // Known fields are kept as raw text and unknown ones skipped, both by serde_json's
        // iterative scanner: 100,000 levels cost no stack, and the body is judged field by
        // field as Go judged it (Go accepted deep nesting; a Value tree stopped at 128).
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let cases = [
            (format!(r#"{{"x":{deep},"url":"http://h/"}}"#), CallError::Data),
            (
                format!(r#"{{"url":"http://h/","data":{deep}}}"#),
                CallError::PartitionKey,
            ),
            (
                format!(r#"{{"url":"http://h/","data":"d","partition_key":"","acl":{{"name":{deep}}}}}"#),
                CallError::AclName,
            ),
            (
                format!(r#"{{"url":"http://h/","data":{}"#, "[".repeat(100_000)),
                CallError::Json,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(parse(body.as_bytes()).err(), Some(want));
        }
    }

    #[test]
    fn ack_modes_parse() {
        let with = |ack: &str| GOOD.replacen('{', &format!(r#"{{"ack":{ack},"#), 1);
        assert_eq!(
            parse(with(r#""kafka""#).as_bytes()).unwrap().ack,
            Some(AckMode::Kafka)
        );
        assert_eq!(
            parse(with(r#""queue""#).as_bytes()).unwrap().ack,
            Some(AckMode::Queue)
        );
        assert_eq!(parse(with("null").as_bytes()).unwrap().ack, None);
    }

    #[test]
    fn schedules_parse_in_either_form_and_are_refused_when_malformed() {
        let with = |fields: &str| GOOD.replacen('{', &format!("{{{fields},"), 1);
        let parsed = |fields: &str| parse(with(fields).as_bytes()).map(|r| r.schedule);
        assert_eq!(parsed(r#""delay_ms":1500"#), Ok(Some(Schedule::After(1500))));
        assert_eq!(
            parsed(r#""deliver_at":1700000000000"#),
            Ok(Some(Schedule::At(1_700_000_000_000)))
        );
        assert_eq!(
            parsed(r#""deliver_at":"2023-11-14T22:13:20+00:00""#),
            Ok(Some(Schedule::At(1_700_000_000_000)))
        );
        assert_eq!(
            parsed(r#""deliver_at":"2023-11-15T06:13:20.5+08:00""#),
            Ok(Some(Schedule::At(1_700_000_000_500)))
        );
        assert_eq!(parsed(r#""deliver_at":null,"delay_ms":null"#), Ok(None));
        for (fields, want) in [
            (r#""delay_ms":-1"#, CallError::DelayMs),
            (r#""delay_ms":1.5"#, CallError::DelayMs),
            (r#""delay_ms":"10""#, CallError::DelayMs),
            (r#""delay_ms":1e400"#, CallError::DelayMs),
            (r#""delay_ms":1,"deliver_at":2"#, CallError::DelayMs),
            (r#""deliver_at":"tomorrow""#, CallError::DeliverAt),
            (r#""deliver_at":"2023-11-14 22:13:20""#, CallError::DeliverAt),
            (r#""deliver_at":-5"#, CallError::DeliverAt),
            (r#""deliver_at":{}"#, CallError::DeliverAt),
            (r#""deliver_at":18446744073709551615"#, CallError::DeliverAt),
        ] {
            assert_eq!(parsed(fields), Err(want), "{fields}");
        }
    }

    #[test]
    fn delivery_options_parse_and_each_bad_one_has_its_error() {
        let with = |fields: &str| GOOD.replacen('{', &format!("{{{fields},"), 1);
        let parsed = |fields: &str| parse(with(fields).as_bytes());
        let req = parsed(
            r#""method":"put","headers":{"X-One":"1","x-many":["a","b"]},"content_type":"text/csv","timeout_ms":2500"#,
        )
        .unwrap();
        assert_eq!(
            req.options,
            CallOptions {
                method: Some(CallMethod::Put),
                headers: vec![
                    ("X-One".into(), "1".into()),
                    ("x-many".into(), "a".into()),
                    ("x-many".into(), "b".into())
                ],
                content_type: Some("text/csv".into()),
                timeout_ms: Some(2500),
            }
        );
        assert_eq!(
            parsed(r#""method":null,"headers":null"#).unwrap().options,
            CallOptions::default()
        );
        let get = GOOD.replace(r#""data":"hello""#, r#""data":"""#);
        let get = get.replacen('{', r#"{"method":"GET","#, 1);
        assert_eq!(
            parse(get.as_bytes()).unwrap().options.method,
            Some(CallMethod::Get)
        );
        let too_many: String = (0..=MAX_CALL_HEADERS)
            .map(|i| format!(r#""X-{i}":"v""#))
            .collect::<Vec<_>>()
            .join(",");
        for (fields, want) in [
            (r#""method":"GET""#, CallError::Data),
            (r#""method":"TRACE""#, CallError::CallMethod),
            (r#""method":1"#, CallError::CallMethod),
            (r#""headers":"X-A: 1""#, CallError::Headers),
            (r#""headers":{"bad name":"v"}"#, CallError::Headers),
            (r#""headers":{"X-A":"line\nbreak"}"#, CallError::Headers),
            (r#""headers":{"X-A":1}"#, CallError::Headers),
            (r#""headers":{"X-A":[1]}"#, CallError::Headers),
            (&format!(r#""headers":{{{too_many}}}"#), CallError::Headers),
            (r#""content_type":"""#, CallError::ContentType),
            (r#""content_type":"a\u0000b""#, CallError::ContentType),
            (r#""content_type":[]"#, CallError::ContentType),
            (r#""timeout_ms":0"#, CallError::TimeoutMs),
            (r#""timeout_ms":3600001"#, CallError::TimeoutMs),
            (r#""timeout_ms":"5""#, CallError::TimeoutMs),
        ] {
            assert_eq!(parsed(fields).err(), Some(want), "{fields}");
        }
    }

    #[test]
    fn data_may_be_json_and_is_kept_as_its_text() {
        let body = GOOD.replace(r#""data":"hello""#, r#""data":{"a":[1,{"b":"é"}]}"#);
        let req = parse(body.as_bytes()).unwrap();
        assert_eq!(
            (req.data.as_str(), req.data_is_json),
            (r#"{"a":[1,{"b":"é"}]}"#, true)
        );
        let body = GOOD.replace(r#""data":"hello""#, r#""data":[]"#);
        assert_eq!(parse(body.as_bytes()).unwrap().data, "[]");
        for data in ["1", "true", "null"] {
            let body = GOOD.replace(r#""data":"hello""#, &format!(r#""data":{data}"#));
            assert_eq!(parse(body.as_bytes()).err(), Some(CallError::Data), "{data}");
        }
        assert!(!parse(GOOD.as_bytes()).unwrap().data_is_json);
    }

    #[test]
    fn a_due_time_in_the_past_is_now_and_one_too_far_is_refused() {
        let week = Duration::from_secs(7 * 86_400);
        let now = 1_000_000;
        assert_eq!(Schedule::At(now - 1).due_ms(now, week), Ok(None));
        assert_eq!(Schedule::At(now).due_ms(now, week), Ok(None));
        assert_eq!(Schedule::At(now + 1).due_ms(now, week), Ok(Some(now + 1)));
        assert_eq!(Schedule::After(0).due_ms(now, week), Ok(None));
        assert_eq!(Schedule::After(2_000).due_ms(now, week), Ok(Some(now + 2_000)));
        let max = i64::try_from(week.as_millis()).unwrap();
        assert_eq!(Schedule::At(now + max).due_ms(now, week), Ok(Some(now + max)));
        assert_eq!(
            Schedule::At(now + max + 1).due_ms(now, week),
            Err(CallError::DeliverAt)
        );
        assert_eq!(
            Schedule::After(u64::MAX).due_ms(now, week),
            Err(CallError::DelayMs)
        );
        assert_eq!(
            Schedule::After(1).due_ms(now, Duration::ZERO),
            Err(CallError::DelayMs)
        );
    }

    #[test]
    fn empty_partition_key_and_unicode_are_fine() {
        let body = r#"{"acl":{"name":"n","secret":"s"},"url":"https://例子.测试/路径","data":"数据 ✓","partition_key":""}"#;
        let req = parse(body.as_bytes());
        // Non-ASCII hosts must be IDNA-encoded by the caller, like any HTTP client requires.
        assert_eq!(req.err(), Some(CallError::Url));
        let body = r#"{"acl":{"name":"n","secret":"s"},"url":"https://xn--fsqu00a.xn--0zwm56d/p?q=1","data":"数据 ✓","partition_key":""}"#;
        assert_eq!(parse(body.as_bytes()).unwrap().data, "数据 ✓");
    }

    #[test]
    fn idempotency_key_is_a_bounded_string_without_control_characters() {
        let with = |key: &str| {
            format!(
                r#"{{"acl":{{"name":"n","secret":"s"}},"url":"http://h/","data":"","partition_key":"","idempotency_key":{key}}}"#
            )
        };
        let key = |body: String| parse(body.as_bytes()).map(|r| r.idempotency_key);
        assert_eq!(key(with(r#""order-42""#)), Ok(Some("order-42".to_owned())));
        assert_eq!(key(with("null")), Ok(None));
        assert_eq!(
            key(with(&format!(r#""{}""#, "k".repeat(255)))),
            Ok(Some("k".repeat(255)))
        );
        for bad in [r#""""#, "42", r#"["k"]"#, r#""a\u0000b""#, r#""tab\there""#] {
            assert_eq!(key(with(bad)), Err(CallError::IdempotencyKey), "{bad}");
        }
        assert_eq!(
            key(with(&format!(r#""{}""#, "k".repeat(256)))),
            Err(CallError::IdempotencyKey)
        );
    }
}
