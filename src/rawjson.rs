//! Reading a few fields of a JSON object without building a `serde_json::Value` tree.
//!
//! The two hottest decoders of the process (the `/rpc/call` body and the Kafka record value)
//! each read five or six known fields. A `Value` tree allocates every key and every string and
//! then the caller copies the strings again; here each wanted field stays as the raw JSON text
//! it has in the input (borrowed, checked by serde_json's scanner), unknown fields are skipped,
//! and strings without escapes are borrowed too (issue 12). serde_json skips and captures raw
//! values with an iterative scanner, so deep nesting costs no stack.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The wanted fields of one JSON object, as raw JSON text borrowed from the input.
#[derive(Debug)]
pub struct Picked<'a, const N: usize> {
    keys: &'static [&'static str; N],
    values: [Option<&'a RawValue>; N],
}

/// Reads `json` as one JSON object (and nothing after it) and keeps the fields named in
/// `keys`; a key that appears twice keeps its last value, as `serde_json::Map` did. Keys
/// written with escapes (`"u\u0072l"`) count as their unescaped text.
///
/// # Errors
/// `json` is not one JSON object (syntax, not an object, trailing characters).
pub fn pick<'a, const N: usize>(
    json: &'a [u8],
    keys: &'static [&'static str; N],
) -> Result<Picked<'a, N>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let values = Seed { keys }.deserialize(&mut de)?;
    de.end()?;
    Ok(Picked { keys, values })
}

impl<'a, const N: usize> Picked<'a, N> {
    /// The raw JSON of field `key`, if the object has it (`null` included).
    pub fn raw(&self, key: &str) -> Option<&'a RawValue> {
        self.keys
            .iter()
            .position(|k| *k == key)
            .and_then(|i| self.values[i])
    }

    /// Field `key` when it is a JSON string; `None` when absent or of another kind.
    pub fn string(&self, key: &str) -> Option<Cow<'a, str>> {
        self.raw(key).and_then(string)
    }
}

/// The string a raw JSON value holds, borrowed when it has no escapes; `None` for any other
/// kind of value.
pub fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    if !text.starts_with('"') {
        return None;
    }
    // serde_json checked that the text is one valid JSON string: without a backslash, its
    // content is exactly what lies between the quotes.
    if !text.contains('\\') {
        return text.get(1..text.len() - 1).map(Cow::Borrowed);
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

struct Seed<const N: usize> {
    keys: &'static [&'static str; N],
}

impl<'de, const N: usize> DeserializeSeed<'de> for Seed<N> {
    type Value = [Option<&'de RawValue>; N];

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for Seed<N> {
    type Value = [Option<&'de RawValue>; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut values = [None; N];
        while let Some(wanted) = map.next_key_seed(Key { keys: self.keys })? {
            match wanted {
                Some(i) => values[i] = Some(map.next_value::<&'de RawValue>()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(values)
    }
}

/// A key, looked up in the wanted keys as it is read: borrowed from the input when it has no
/// escapes (serde's `Cow<str>` would copy every key), unescaped only when it has.
struct Key<const N: usize> {
    keys: &'static [&'static str; N],
}

impl<'de, const N: usize> DeserializeSeed<'de> for Key<N> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<const N: usize> Visitor<'_> for Key<N> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.keys.iter().position(|k| *k == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: [&str; 3] = ["a", "b", "c"];

    #[test]
    fn keeps_wanted_fields_raw_and_the_last_duplicate() {
        let p = pick(
            br#"{"a":1,"x":{"y":[1,2]},"b":"two","a":[3],"\u0063":null}"#,
            &KEYS,
        )
        .unwrap();
        assert_eq!(p.raw("a").map(RawValue::get), Some("[3]"));
        assert_eq!(p.string("b").as_deref(), Some("two"));
        assert_eq!(p.raw("c").map(RawValue::get), Some("null"));
        assert_eq!(p.string("c"), None);
        assert_eq!(p.raw("zzz").map(RawValue::get), None);
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let p = pick(br#"{"a":"plain \u4e2d","b":"plain"}"#, &KEYS).unwrap();
        assert!(matches!(p.string("a"), Some(Cow::Owned(s)) if s == "plain 中"));
        assert!(matches!(p.string("b"), Some(Cow::Borrowed("plain"))));
    }

    #[test]
    fn anything_but_one_object_is_an_error() {
        for bad in [
            &b""[..],
            b"[]",
            b"\"s\"",
            b"{",
            b"{} {}",
            b"{\"a\":1,}",
            b"{\"a\":\"\xff\"}",
        ] {
            assert!(pick(bad, &KEYS).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn deep_nesting_costs_no_stack() {
        let deep = format!(r#"{{"x":{}{},"a":1}}"#, "[".repeat(200_000), "]".repeat(200_000));
        assert_eq!(
            pick(deep.as_bytes(), &KEYS).unwrap().raw("a").map(RawValue::get),
            Some("1")
        );
    }
}
