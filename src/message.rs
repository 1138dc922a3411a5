//! The Kafka record format of a call, shared with the Go version.
//!
//! A record's value is the Go version's `proto.CallMessage` JSON:
//! `{"Headers":{..},"Url":"..","Data":"..","Topic":"..","Partition":2,"CreateTime":1500000000000}`.
//! Encoding reproduces Go's `encoding/json` output byte for byte (field order,
//! sorted header keys, `<`, `>`, `&`, U+2028 and U+2029 escaped), so records
//! written by either implementation look the same to tools that compare them.
//! Decoding applies the Go version's rules, without its bug that kept only the
//! last value of a multi-valued header.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io;

use serde::{Deserialize, Serialize};

use crate::rawjson;

/// Record header that carries the call id (a UUIDv7 string).
pub const CALL_ID_HEADER: &str = "bigpipe-call-id";

/// Record header of a call replayed from a dead-letter topic: `<dlqTopic>/<partition>/<offset>`
/// of its dead letter. Delivery passes it on as `X-Bigpipe-Replay-Of`.
pub const REPLAY_OF_HEADER: &str = "bigpipe-replay-of";

/// One asynchronous call as stored in Kafka.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallMessage {
    /// Headers of the original `/rpc/call` request, keys in Go's canonical form.
    #[serde(rename = "Headers")]
    pub headers: BTreeMap<String, Vec<String>>,
    /// Target URL.
    #[serde(rename = "Url")]
    pub url: String,
    /// Body to POST to the target.
    #[serde(rename = "Data")]
    pub data: String,
    /// Topic chosen by the caller's ACL entry.
    #[serde(rename = "Topic")]
    pub topic: String,
    /// Partition the call was written to (informational).
    #[serde(rename = "Partition")]
    pub partition: i32,
    /// Acceptance time, milliseconds since the Unix epoch.
    #[serde(rename = "CreateTime")]
    pub create_time: i64,
    /// A scheduled call: not delivered before this time, ms since the Unix epoch. Written
    /// only when set, so an unscheduled call's record stays byte for byte the Go version's;
    /// a Go consumer ignores the field and delivers at once (README, "Deliberate differences").
    #[serde(rename = "DeliverAt", default, skip_serializing_if = "Option::is_none")]
    pub deliver_at: Option<i64>,
    /// The HTTP method of the delivery, when not POST (a Go consumer POSTs regardless).
    #[serde(rename = "Method", default, skip_serializing_if = "Option::is_none")]
    pub method: Option<CallMethod>,
    /// The delivery's `Content-Type`, when the caller chose one (else
    /// `application/octet-stream`, as in the Go version).
    #[serde(rename = "ContentType", default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The caller's attempt timeout in ms; delivery uses the smaller of it and its entry's.
    #[serde(rename = "TimeoutMs", default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Where the call's final outcome is POSTed (`callback_url`).
    #[serde(rename = "CallbackUrl", default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// Set on a callback call: the consumer group whose outcome it reports. Only that group
    /// delivers it (bigpipe's other groups on the topic finish it unsent; a Go consumer, which
    /// ignores the field, would deliver it too).
    #[serde(rename = "CallbackGroup", default, skip_serializing_if = "Option::is_none")]
    pub callback_group: Option<String>,
}

/// The HTTP methods a call may be delivered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CallMethod {
    /// The Go version's only method, and the default.
    #[default]
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
    /// `GET`, sent without a body.
    Get,
}

impl CallMethod {
    /// The method named `name` (any case), if it is one a call may use.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Post, Self::Put, Self::Patch, Self::Delete, Self::Get]
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(name))
    }

    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Get => "GET",
        }
    }

    /// Whether the delivery carries the call's data as its body (every method but GET).
    pub fn has_body(self) -> bool {
        self != Self::Get
    }
}

/// Why a record value is not a valid call (Go counted these as `invalidMessage`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The value is not a JSON object.
    #[error("value is not a JSON object")]
    NotObject,
    /// A required field is missing or has the wrong type.
    #[error("field {0} is missing or has the wrong type")]
    Field(&'static str),
}

impl CallMessage {
    /// Encodes the message as Go's `json.Marshal` would.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + self.url.len() + 256);
        let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
        // Serialising plain strings, maps and integers into a Vec cannot fail.
        if self.serialize(&mut ser).is_err() {
            out.clear();
        }
        out
    }

    /// Decodes a record value with the Go version's validation rules: `Url`,
    /// `Data` and `Topic` strings, `Partition` and `CreateTime` numbers, and
    /// `Headers` present as an object of string arrays. Extra fields are ignored.
    pub fn decode(value: &[u8]) -> Result<Self, DecodeError> {
        const KEYS: [&str; 12] = [
            "Headers",
            "Url",
            "Data",
            "Topic",
            "Partition",
            "CreateTime",
            "DeliverAt",
            "Method",
            "ContentType",
            "TimeoutMs",
            "CallbackUrl",
            "CallbackGroup",
        ];
        // Field by field, without a Value tree (crate::rawjson): this runs for every record
        // a consumer takes.
        let obj = rawjson::pick(value, &KEYS).map_err(|_| DecodeError::NotObject)?;
        let string = |key: &'static str| {
            obj.string(key)
                .map(Cow::into_owned)
                .ok_or(DecodeError::Field(key))
        };
        // Go decoded numbers as float64 and truncated them to int.
        let number = |key: &'static str| {
            obj.raw(key)
                .and_then(|raw| serde_json::from_str::<serde_json::Number>(raw.get()).ok())
                .and_then(|n| n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)))
                .ok_or(DecodeError::Field(key))
        };
        // An object of string arrays; a repeated name keeps its last array, as before.
        let mut headers: BTreeMap<String, Vec<String>> = obj
            .raw("Headers")
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
            .ok_or(DecodeError::Field("Headers"))?;
        // The optional fields: absent or `null` reads as unset; present, they must be valid,
        // so a malformed one is dead-lettered as invalid, never delivered in a way the
        // caller did not ask for.
        let present = |key: &str| obj.raw(key).is_some_and(|raw| raw.get() != "null");
        // Go left out headers with no values; keep that, it changes nothing on the wire.
        headers.retain(|_, values| !values.is_empty());
        Ok(Self {
            headers,
            url: string("Url")?,
            data: string("Data")?,
            topic: string("Topic")?,
            partition: i32::try_from(number("Partition")?).map_err(|_| DecodeError::Field("Partition"))?,
            create_time: number("CreateTime")?,
            deliver_at: match present("DeliverAt") {
                false => None,
                true => Some(number("DeliverAt")?),
            },
            method: match present("Method") {
                false => None,
                true => Some(
                    obj.string("Method")
                        .and_then(|m| CallMethod::parse(&m))
                        .ok_or(DecodeError::Field("Method"))?,
                ),
            },
            content_type: match present("ContentType") {
                false => None,
                true => Some(string("ContentType")?),
            },
            timeout_ms: match present("TimeoutMs") {
                false => None,
                true => Some(
                    obj.raw("TimeoutMs")
                        .and_then(|raw| serde_json::from_str::<u64>(raw.get()).ok())
                        .ok_or(DecodeError::Field("TimeoutMs"))?,
                ),
            },
            callback_url: match present("CallbackUrl") {
                false => None,
                true => Some(string("CallbackUrl")?),
            },
            callback_group: match present("CallbackGroup") {
                false => None,
                true => Some(string("CallbackGroup")?),
            },
        })
    }
}

/// Go's canonical MIME header key: the first letter and every letter after a
/// hyphen upper-cased, the rest lower-cased (`content-type` → `Content-Type`).
/// Keys with characters Go does not canonicalise (space, non-token bytes) are
/// returned unchanged, as Go does.
pub fn canonical_header_key(key: &str) -> String {
    let valid = key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return key.to_owned();
    }
    let mut upper = true;
    key.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

/// A `serde_json` formatter that escapes like Go's `encoding/json` (HTML-safe).
#[derive(Debug, Clone, Copy)]
struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // Scans bytes, not chars, with memchr: this runs over every byte of every call, and the
        // characters to escape are either ASCII or start with the byte 0xE2 (U+2028 and U+2029
        // are E2 80 A8 and E2 80 A9). Each kind's next position is searched again only once
        // passed, so a string full of them stays linear.
        let bytes = fragment.as_bytes();
        let ascii_from = |i: usize| memchr::memchr3(b'<', b'>', b'&', &bytes[i..]).map(|p| p + i);
        let e2_from = |i: usize| memchr::memchr(0xE2, &bytes[i..]).map(|p| p + i);
        let mut next_ascii = ascii_from(0);
        let mut next_e2 = e2_from(0);
        let mut start = 0;
        loop {
            let i = match (next_ascii, next_e2) {
                (Some(a), Some(e)) => a.min(e),
                (Some(p), None) | (None, Some(p)) => p,
                (None, None) => break,
            };
            // The escape and how many bytes it replaces.
            let escape = match bytes[i] {
                b'<' => Some(("\\u003c", 1)),
                b'>' => Some(("\\u003e", 1)),
                b'&' => Some(("\\u0026", 1)),
                _ => match bytes.get(i + 1..i + 3) {
                    Some([0x80, 0xA8]) => Some(("\\u2028", 3)),
                    Some([0x80, 0xA9]) => Some(("\\u2029", 3)),
                    _ => None,
                },
            };
            let after = match escape {
                Some((escaped, len)) => {
                    writer.write_all(&bytes[start..i])?;
                    writer.write_all(escaped.as_bytes())?;
                    start = i + len;
                    start
                }
                None => i + 1,
            };
            if next_ascii.is_some_and(|p| p < after) {
                next_ascii = ascii_from(after);
            }
            if next_e2.is_some_and(|p| p < after) {
                next_e2 = e2_from(after);
            }
        }
        writer.write_all(&bytes[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CallMessage {
        let mut headers = BTreeMap::new();
        headers.insert("User-Agent".into(), vec!["curl/7.29.0".into()]);
        headers.insert("Accept".into(), vec!["*/*".into()]);
        CallMessage {
            headers,
            url: "http://localhost:10086/rpc/server/mock".into(),
            data: "hello123123123".into(),
            topic: "test".into(),
            partition: 2,
            create_time: 1_500_000_000_000,
            ..CallMessage::default()
        }
    }

    #[test]
    fn encodes_exactly_like_go() {
        let text = String::from_utf8(sample().encode()).unwrap();
        assert_eq!(
            text,
            r#"{"Headers":{"Accept":["*/*"],"User-Agent":["curl/7.29.0"]},"Url":"http://localhost:10086/rpc/server/mock","Data":"hello123123123","Topic":"test","Partition":2,"CreateTime":1500000000000}"#
        );
    }

    #[test]
    fn escapes_html_characters_like_go() {
        let mut m = sample();
        m.data = "a<b>&c\u{2028}d\"é中".into();
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(
            text.contains(r#""Data":"a\u003cb\u003e\u0026c\u2028d\"é中""#),
            "{text}"
        );
        assert_eq!(CallMessage::decode(text.as_bytes()).unwrap(), m);
    }

    #[test]
    fn decodes_go_record_and_keeps_every_header_value() {
        let go = r#"{"Headers":{"X-Multi":["a","b"],"Empty":[]},"Url":"u","Data":"d","Topic":"t","Partition":1.0,"CreateTime":5,"Extra":true}"#;
        let m = CallMessage::decode(go.as_bytes()).unwrap();
        assert_eq!(m.headers["X-Multi"], ["a", "b"]);
        assert!(!m.headers.contains_key("Empty"));
        assert_eq!((m.partition, m.create_time), (1, 5));
    }

    #[test]
    fn rejects_what_go_rejected() {
        let cases = [
            ("[]", DecodeError::NotObject),
            ("not json", DecodeError::NotObject),
            (
                r#"{"Url":"u","Data":"d","Topic":"t","Partition":1,"CreateTime":5}"#,
                DecodeError::Field("Headers"),
            ),
            (
                r#"{"Headers":{"A":"x"},"Url":"u","Data":"d","Topic":"t","Partition":1,"CreateTime":5}"#,
                DecodeError::Field("Headers"),
            ),
            (
                r#"{"Headers":{"A":[1]},"Url":"u","Data":"d","Topic":"t","Partition":1,"CreateTime":5}"#,
                DecodeError::Field("Headers"),
            ),
            (
                r#"{"Headers":{},"Url":1,"Data":"d","Topic":"t","Partition":1,"CreateTime":5}"#,
                DecodeError::Field("Url"),
            ),
            (
                r#"{"Headers":{},"Url":"u","Data":{},"Topic":"t","Partition":1,"CreateTime":5}"#,
                DecodeError::Field("Data"),
            ),
            (
                r#"{"Headers":{},"Url":"u","Data":"d","Partition":1,"CreateTime":5}"#,
                DecodeError::Field("Topic"),
            ),
            (
                r#"{"Headers":{},"Url":"u","Data":"d","Topic":"t","Partition":"1","CreateTime":5}"#,
                DecodeError::Field("Partition"),
            ),
            (
                r#"{"Headers":{},"Url":"u","Data":"d","Topic":"t","Partition":1}"#,
                DecodeError::Field("CreateTime"),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(CallMessage::decode(input.as_bytes()), Err(want), "{input}");
        }
    }

    #[test]
    fn a_schedule_is_one_more_field_go_ignores() {
        let mut m = sample();
        m.deliver_at = Some(1_500_000_060_000);
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(
            text.ends_with(r#""CreateTime":1500000000000,"DeliverAt":1500000060000}"#),
            "{text}"
        );
        assert_eq!(CallMessage::decode(text.as_bytes()).unwrap(), m);
        // Go's record rules (spec §2) read only the six old fields: the same call, due now.
        let go_view = CallMessage {
            deliver_at: None,
            ..CallMessage::decode(text.as_bytes()).unwrap()
        };
        assert_eq!(go_view, sample());
        let null = text.replace("1500000060000", "null");
        assert_eq!(CallMessage::decode(null.as_bytes()).unwrap().deliver_at, None);
        let bad = text.replace("1500000060000", r#""soon""#);
        assert_eq!(
            CallMessage::decode(bad.as_bytes()),
            Err(DecodeError::Field("DeliverAt"))
        );
    }

    /// What a Go consumer does with a call that uses the new options (spec §2.2 and §5): its
    /// decoder reads the six fields it knows and ignores the rest, so it POSTs `Data` to `Url`
    /// with the stored `Headers` (per-call headers included: they are stored there) and
    /// `Content-Type: application/octet-stream`, at once and with its own timeout.
    #[test]
    fn new_options_are_extra_fields_a_go_consumer_ignores() {
        let mut m = sample();
        m.headers.insert("X-Per-Call".into(), vec!["1".into()]);
        m.method = Some(CallMethod::Delete);
        m.content_type = Some("application/json".into());
        m.timeout_ms = Some(2_500);
        m.data = r#"{"a":[1,2]}"#.into();
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(
            text.ends_with(
                r#""CreateTime":1500000000000,"Method":"DELETE","ContentType":"application/json","TimeoutMs":2500}"#
            ),
            "{text}"
        );
        assert_eq!(CallMessage::decode(text.as_bytes()).unwrap(), m);
        // Go's rules: the six fields, each of the type Go wants, extra keys ignored.
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let go = value.as_object().unwrap();
        assert!(go["Url"].is_string() && go["Data"].is_string() && go["Topic"].is_string());
        assert!(go["Partition"].is_number() && go["CreateTime"].is_number());
        assert!(
            go["Headers"].as_object().unwrap().values().all(|v| v
                .as_array()
                .unwrap()
                .iter()
                .all(serde_json::Value::is_string))
        );
        assert_eq!(go["Data"], r#"{"a":[1,2]}"#, "JSON data travels as Go's string");
        assert_eq!(
            go["Headers"]["X-Per-Call"][0], "1",
            "a Go consumer forwards it too"
        );
        for (field, bad) in [
            ("Method", r#""TRACE""#),
            ("Method", "1"),
            ("ContentType", "5"),
            ("TimeoutMs", "-1"),
        ] {
            let value = text.replacen(
                &format!(r#""{field}":"#),
                &format!(r#""{field}":{bad},"Ignored":"#),
                1,
            );
            assert_eq!(
                CallMessage::decode(value.as_bytes()),
                Err(DecodeError::Field(field)),
                "{value}"
            );
        }
        assert_eq!(CallMethod::parse("patch"), Some(CallMethod::Patch));
        assert_eq!(CallMethod::parse("HEAD"), None);
        assert!(!CallMethod::Get.has_body() && CallMethod::Delete.has_body());
    }

    #[test]
    fn canonical_keys_match_go() {
        assert_eq!(canonical_header_key("content-type"), "Content-Type");
        assert_eq!(canonical_header_key("X-CUSTOM-id"), "X-Custom-Id");
        assert_eq!(canonical_header_key("accept"), "Accept");
        assert_eq!(canonical_header_key("bad key"), "bad key");
    }
}
