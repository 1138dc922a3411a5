//! `api::request::parse`: never panics, returns exactly the fields of a valid body, and reports
//! the first bad field in the Go version's order whatever the others hold.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::{config, json_value, nasty_string};
use crate::api::envelope::CallError;
use crate::api::request::parse;
use crate::config::AckMode;

const KEYS: &[&str] = &["url", "data", "partition_key", "acl", "name", "secret", "ack"];

/// An absolute http(s) URL with a DNS-style host, optional port, path and query.
fn http_url() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["http", "https", "HTTP", "Https"]),
        "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,10}){0,3}",
        prop::option::of(1u16..),
        "(/[A-Za-z0-9._~!$&'()*+,;=:@-]{0,10}){0,4}",
        prop::option::of("[A-Za-z0-9=&._~-]{0,20}"),
    )
        .prop_map(|(scheme, host, port, path, query)| {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let query = query.map(|q| format!("?{q}")).unwrap_or_default();
            format!("{scheme}://{host}{port}{path}{query}")
        })
}

/// A string that is not an http(s) URL (or that has no host).
fn not_http_url() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            "http://",
            "https://",
            "http:///x",
            "//h/x",
            "ftp://h/x",
            "file:///etc/passwd",
            "h/x",
            "javascript:alert(1)",
            "http:h",
            "mailto:a@b",
        ])
        .prop_map(str::to_owned),
        nasty_string(24).prop_filter("not http", |s| !s.to_ascii_lowercase().starts_with("http")),
    ]
}

/// A JSON value that is not a string.
fn non_string() -> impl Strategy<Value = Value> {
    json_value(KEYS).prop_filter("not a string", |v| !v.is_string())
}

/// A field's value: `Some((value, good))`, or `None` when the field is absent (which is bad).
type Field = Option<(Value, bool)>;

fn string_field(good: impl Strategy<Value = String> + 'static) -> BoxedStrategy<Field> {
    prop_oneof![
        3 => good.prop_map(|s| Some((json!(s), true))),
        1 => Just(None),
        1 => non_string().prop_map(|v| Some((v, false))),
    ]
    .boxed()
}

/// `data`: a string, or (new) a JSON object or array; any other value is bad.
fn data_field() -> BoxedStrategy<Field> {
    prop_oneof![
        3 => nasty_string(20).prop_map(|s| Some((json!(s), true))),
        1 => Just(None),
        1 => non_string().prop_map(|v| {
            let good = v.is_object() || v.is_array();
            Some((v, good))
        }),
    ]
    .boxed()
}

fn url_field() -> BoxedStrategy<Field> {
    prop_oneof![
        3 => string_field(http_url()),
        1 => not_http_url().prop_map(|s| Some((json!(s), false))),
    ]
    .boxed()
}

/// `acl`: an object of `name` and `secret` fields (good as an object whatever they hold), or
/// absent, or not an object.
#[derive(Debug, Clone)]
enum Acl {
    Object { name: Field, secret: Field },
    Bad(Field),
}

fn acl_field() -> impl Strategy<Value = Acl> {
    prop_oneof![
        4 => (string_field(nasty_string(12)), string_field(nasty_string(12)))
            .prop_map(|(name, secret)| Acl::Object { name, secret }),
        1 => Just(Acl::Bad(None)),
        1 => json_value(KEYS)
            .prop_filter("not an object", |v| !v.is_object())
            .prop_map(|v| Acl::Bad(Some((v, false)))),
    ]
}

/// `ack`: absent, null, "queue" and "kafka" are good; any other value is bad.
fn ack_field() -> impl Strategy<Value = Field> {
    prop_oneof![
        2 => Just(None),
        1 => prop::sample::select(vec![json!(null), json!("queue"), json!("kafka")]).prop_map(|v| Some((v, true))),
        1 => json_value(KEYS)
            .prop_filter("not a valid ack", |v| {
                !matches!(v, Value::Null) && v != "queue" && v != "kafka"
            })
            .prop_map(|v| Some((v, false))),
    ]
}

fn is_good(field: &Field) -> bool {
    matches!(field, Some((_, true)))
}

/// Writes an object from pairs in the given order (duplicates kept, as a caller could send).
fn object_text(pairs: &[(String, Value)]) -> String {
    let fields: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
        .collect();
    format!("{{{}}}", fields.join(","))
}

fn put(pairs: &mut Vec<(String, Value)>, key: &str, field: &Field) {
    if let Some((v, _)) = field {
        pairs.push((key.to_owned(), v.clone()));
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn never_panics_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(req) = parse(&body) {
            prop_assert!(req.url.len() + req.data.len() < body.len());
        }
    }

    #[test]
    fn never_panics_on_deep_nesting(depth in 0usize..20_000, open in prop::sample::select(vec!["[", "{\"url\":", "{\"acl\":"])) {
        let body = open.repeat(depth);
        prop_assert_eq!(parse(body.as_bytes()).err(), Some(CallError::Json));
    }

    /// Whatever JSON arrives, a success carries exactly the body's own strings.
    #[test]
    fn never_panics_on_arbitrary_json(value in json_value(KEYS)) {
        let body = serde_json::to_vec(&value).expect("a Value serialises");
        if let Ok(req) = parse(&body) {
            let get = |k: &str| value.get(k).and_then(Value::as_str);
            prop_assert_eq!(Some(req.url.as_str()), get("url"));
            prop_assert_eq!(Some(req.data.as_str()), get("data"));
            prop_assert_eq!(Some(req.partition_key.as_str()), get("partition_key"));
            prop_assert_eq!(Some(req.acl_name.as_str()), value["acl"]["name"].as_str());
            prop_assert_eq!(Some(req.acl_secret.as_str()), value["acl"]["secret"].as_str());
        }
    }

    /// A valid body, its fields in any order, after shadowed junk values of the same keys
    /// (the last value wins, as in Go), with unknown extra keys: parse returns exactly its fields.
    #[test]
    fn valid_requests_parse_to_their_fields(
        url in http_url(),
        data in nasty_string(40),
        partition_key in nasty_string(12),
        name in nasty_string(12),
        secret in nasty_string(12),
        ack in prop::option::of(prop::sample::select(vec![None, Some(AckMode::Queue), Some(AckMode::Kafka)])),
        junk in prop::collection::vec((prop::sample::select(KEYS), json_value(KEYS)), 0..4),
        extra in prop::collection::vec(("x-[a-z]{1,6}", json_value(KEYS)), 0..3),
        order in Just((0..6).collect::<Vec<usize>>()).prop_shuffle(),
    ) {
        let acl = json!({"name": name, "secret": secret});
        let ack_value = ack.map(|a| match a {
            None => Value::Null,
            Some(AckMode::Queue) => json!("queue"),
            Some(AckMode::Kafka) => json!("kafka"),
        });
        let good: Vec<(String, Value)> = vec![
            ("url".into(), json!(url)),
            ("data".into(), json!(data)),
            ("partition_key".into(), json!(partition_key)),
            ("acl".into(), acl),
            ("ack".into(), ack_value.clone().unwrap_or(Value::Null)),
            ("x-extra".into(), json!(1)),
        ];
        let mut pairs: Vec<(String, Value)> = junk.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        pairs.extend(extra);
        pairs.extend(order.iter().map(|&i| good[i].clone()));
        let body = object_text(&pairs);
        let req = parse(body.as_bytes());
        prop_assert!(req.is_ok(), "{:?} for {}", req, body);
        let req = req.expect("checked");
        prop_assert_eq!(&req.url, &url);
        prop_assert_eq!(&req.data, &data);
        prop_assert_eq!(&req.partition_key, &partition_key);
        prop_assert_eq!(&req.acl_name, &name);
        prop_assert_eq!(&req.acl_secret, &secret);
        prop_assert_eq!(req.ack, ack.flatten());
    }

    /// The error is the first bad field in Go's order (url, data, partition_key, acl,
    /// acl.name, acl.secret, then ack), whatever the fields after it hold.
    #[test]
    fn first_bad_field_in_go_order_wins(
        url in url_field(),
        data in data_field(),
        partition_key in string_field(nasty_string(8)),
        acl in acl_field(),
        ack in ack_field(),
        order in Just((0..5).collect::<Vec<usize>>()).prop_shuffle(),
    ) {
        let mut fields: Vec<Vec<(String, Value)>> = vec![Vec::new(); 5];
        put(&mut fields[0], "url", &url);
        put(&mut fields[1], "data", &data);
        put(&mut fields[2], "partition_key", &partition_key);
        let (acl_good, name, secret) = match &acl {
            Acl::Object { name, secret } => {
                let mut inner = Vec::new();
                put(&mut inner, "name", name);
                put(&mut inner, "secret", secret);
                let obj: serde_json::Map<String, Value> = inner.into_iter().collect();
                fields[3].push(("acl".into(), Value::Object(obj)));
                (true, name.clone(), secret.clone())
            }
            Acl::Bad(field) => {
                put(&mut fields[3], "acl", field);
                (false, None, None)
            }
        };
        put(&mut fields[4], "ack", &ack);
        let pairs: Vec<(String, Value)> = order.iter().flat_map(|&i| fields[i].clone()).collect();
        let body = object_text(&pairs);

        let expected = [
            (is_good(&url), CallError::Url),
            (is_good(&data), CallError::Data),
            (is_good(&partition_key), CallError::PartitionKey),
            (acl_good, CallError::Acl),
            (is_good(&name), CallError::AclName),
            (is_good(&secret), CallError::AclSecret),
            (ack.is_none() || is_good(&ack), CallError::Ack),
        ]
        .into_iter()
        .find(|(good, _)| !good)
        .map(|(_, err)| err);
        prop_assert_eq!(parse(body.as_bytes()).err(), expected, "{}", body);
    }
}
