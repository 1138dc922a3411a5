//! Property tests of the decoders on bigpipe's input paths: the `/rpc/call` parser, the Kafka
//! record codec, the config reader, the fallback batch decoder, the retry headers and
//! `Retry-After`. (The group codec's live beside it, in `group`, as its module is private.)
//!
//! Each property runs a modest number of cases so `cargo test --lib` stays fast; set
//! `PROPTEST_CASES` (for example `PROPTEST_CASES=20000`) for a longer local run. A failure prints
//! the minimal input; turn it into a regular unit test next to the code it breaks.

mod config;
mod fallback;
mod message;
mod request;
mod retry;

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::Value;

/// Cases per property: `PROPTEST_CASES` when set, else `default`. Failures are not persisted
/// to files: the minimal case is printed, and belongs in a unit test.
pub(crate) fn config(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Characters that decoders and escapers get wrong: HTML-sensitive ASCII, quotes and
/// backslashes, U+2028/U+2029, a BOM, the replacement character, DEL, non-BMP, private use.
const NASTY: &[char] = &[
    '<',
    '>',
    '&',
    '"',
    '\\',
    '/',
    '\u{2028}',
    '\u{2029}',
    // Same first byte (0xE2) as U+2028/2029, not escaped.
    '\u{2027}',
    '\u{20ac}',
    '\u{feff}',
    '\u{fffd}',
    '\u{7f}',
    '\u{1F600}',
    '\u{10FFFF}',
    '\u{E000}',
    'é',
    '中',
];

/// A character from one 32-bit draw: a [`NASTY`] one, a control character, a lowercase
/// letter, or any `char` at all (surrogate code points, which no `char` holds, become U+FFFD).
/// One integer per character keeps generation cheap in debug builds, where `cargo test` runs.
fn pick_char(draw: u32) -> char {
    let pick = draw >> 3;
    match draw & 7 {
        0 | 1 => NASTY[pick as usize % NASTY.len()],
        2 => char::from(u8::try_from(pick % 0x20).unwrap_or(0)),
        3 | 4 => char::from(b'a' + u8::try_from(pick % 26).unwrap_or(0)),
        _ => char::from_u32(pick % 0x11_0000).unwrap_or('\u{fffd}'),
    }
}

/// A string of up to `max` characters that decoders and escapers get wrong (see [`pick_char`]).
pub(crate) fn nasty_string(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u32>(), 0..=max).prop_map(|draws| draws.into_iter().map(pick_char).collect())
}

/// Any JSON value, nested a few levels, with object keys drawn partly from `keys` so that
/// decoders meet their own field names holding the wrong types.
pub(crate) fn json_value(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        nasty_string(12).prop_map(Value::String),
    ];
    let key = prop_oneof![
        prop::sample::select(keys).prop_map(str::to_owned),
        nasty_string(6)
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}
