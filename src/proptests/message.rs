//! `message::CallMessage`: Go-compatible encoding round-trips any strings and headers, never
//! writes the characters Go escapes, and decoding never panics.

use proptest::prelude::*;

use super::{config, json_value, nasty_string};
use crate::message::{CallMessage, CallMethod, DecodeError, canonical_header_key};

const KEYS: &[&str] = &["Headers", "Url", "Data", "Topic", "Partition", "CreateTime"];

fn call_message() -> impl Strategy<Value = CallMessage> {
    (
        prop::collection::btree_map(
            nasty_string(16),
            prop::collection::vec(nasty_string(24), 1..4),
            0..6,
        ),
        nasty_string(40),
        nasty_string(200),
        nasty_string(16),
        any::<i32>(),
        any::<i64>(),
        (
            proptest::option::of(any::<i64>()),
            proptest::option::of(proptest::sample::select(vec![
                CallMethod::Post,
                CallMethod::Put,
                CallMethod::Patch,
                CallMethod::Delete,
                CallMethod::Get,
            ])),
            proptest::option::of(nasty_string(16)),
            proptest::option::of(any::<u64>()),
            proptest::option::of(nasty_string(16)),
            proptest::option::of(nasty_string(8)),
        ),
    )
        .prop_map(
            |(
                headers,
                url,
                data,
                topic,
                partition,
                create_time,
                (deliver_at, method, content_type, timeout_ms, callback_url, callback_group),
            )| {
                CallMessage {
                    headers,
                    url,
                    data,
                    topic,
                    partition,
                    create_time,
                    deliver_at,
                    method,
                    content_type,
                    timeout_ms,
                    callback_url,
                    callback_group,
                }
            },
        )
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn encode_then_decode_round_trips(m in call_message()) {
        let bytes = m.encode();
        prop_assert_eq!(CallMessage::decode(&bytes), Ok(m));
    }

    /// Go's `encoding/json` escapes `<`, `>`, `&`, U+2028 and U+2029 and every control
    /// character, so none of them appears raw in a record.
    #[test]
    fn encoding_escapes_like_go(m in call_message()) {
        let text = String::from_utf8(m.encode());
        prop_assert!(text.is_ok(), "the encoding is UTF-8");
        let text = text.expect("checked");
        prop_assert!(
            !text.chars().any(|c| matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') || c < ' '),
            "raw character in {:?}", text
        );
    }

    /// The same bytes as serde_json's own output with Go's five extra escapes applied: those
    /// characters only ever occur inside strings, so a plain replacement is a reference.
    #[test]
    fn encoding_is_serde_json_plus_gos_escapes(m in call_message()) {
        let reference = serde_json::to_string(&m)
            .expect("a message serialises")
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029");
        prop_assert_eq!(String::from_utf8(m.encode()).expect("UTF-8"), reference);
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(value in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(m) = CallMessage::decode(&value) {
            prop_assert!(m.url.len() + m.data.len() + m.topic.len() < value.len());
        }
    }

    /// Any JSON with the record's field names holding any types: a typed error or a message,
    /// and an empty header list is dropped (Go left those out) without failing.
    #[test]
    fn decode_never_panics_on_arbitrary_json(value in json_value(KEYS)) {
        let bytes = serde_json::to_vec(&value).expect("a Value serialises");
        match CallMessage::decode(&bytes) {
            Ok(m) => prop_assert!(m.headers.values().all(|v| !v.is_empty())),
            Err(DecodeError::NotObject) => prop_assert!(!value.is_object()),
            Err(DecodeError::Field(f)) => prop_assert!(KEYS.contains(&f)),
        }
    }

    #[test]
    fn canonical_keys_are_idempotent(key in nasty_string(16)) {
        let once = canonical_header_key(&key);
        prop_assert_eq!(canonical_header_key(&once), once.clone());
        prop_assert_eq!(once.len(), key.len());
    }
}
