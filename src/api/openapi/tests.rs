//! The document is well formed, and it and the registered routes are the same set of
//! paths and methods on each listener.

use std::collections::BTreeSet;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::Method;
use actix_web::test as actix_test;
use actix_web::{App, web};
use serde_json::Value;

use super::*;

/// The methods a route is probed with: every one an OpenAPI path item can hold.
const PROBED: &[&str] = &[
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE",
];

type Operation = (String, String);

fn full() -> Value {
    document().expect("the embedded document loads")
}

/// `(METHOD, path)` of every operation in `doc` whose tags meet `tags`.
fn operations(doc: &Value, tags: &[&str]) -> BTreeSet<Operation> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            let Some(op) = item.get(*method) else { continue };
            let tagged = op["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t.as_str().is_some_and(|t| tags.contains(&t))));
            if tagged {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// `#/a/b` resolved in `doc`.
fn resolve<'a>(doc: &'a Value, r: &str) -> Option<&'a Value> {
    r.strip_prefix('#').and_then(|p| doc.pointer(p))
}

/// Follows `$ref`s until a value that is not one (bounded: a cycle is a broken document).
fn deref<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..8 {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => v = resolve(doc, r).unwrap_or_else(|| panic!("{r} does not resolve")),
            None => return v,
        }
    }
    panic!("$ref chain too long at {v}")
}

/// Everything wrong with `doc` as an OpenAPI 3.1 document for these tests' purposes.
fn problems(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if !doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")) {
        out.push(format!("openapi is {}, not 3.1.x", doc["openapi"]));
    }
    let mut all = Vec::new();
    refs(doc, &mut all);
    let broken: Vec<String> = all
        .iter()
        .filter(|r| resolve(doc, r).is_none())
        .map(|r| format!("$ref {r} does not resolve"))
        .collect();
    if !broken.is_empty() {
        // The operations cannot be walked through broken references.
        out.extend(broken);
        return out;
    }
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in METHODS {
            let Some(op) = item.get(*method) else { continue };
            let at = format!("{} {path}", method.to_uppercase());
            let Some(responses) = op["responses"].as_object().filter(|r| !r.is_empty()) else {
                out.push(format!("{at}: no responses"));
                continue;
            };
            let mut with_schema = 0;
            for (status, response) in responses {
                let response = deref(doc, response);
                for (media, content) in response["content"].as_object().into_iter().flatten() {
                    if content.get("schema").is_some() {
                        with_schema += 1;
                    } else {
                        out.push(format!("{at} {status} {media}: no schema"));
                    }
                }
            }
            if with_schema == 0 {
                out.push(format!("{at}: no response has a schema"));
            }
        }
    }
    out
}

#[test]
fn the_document_is_openapi_3_1_with_resolving_refs_and_schemas_on_every_operation() {
    let doc = full();
    assert_eq!(problems(&doc), Vec::<String>::new());
    assert_eq!(problems(&public_view(&doc)), Vec::<String>::new());
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn the_checks_catch_a_broken_document() {
    let mut doc = full();
    doc["paths"]["/stats"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["allOf"][0]
        ["$ref"] = Value::from("#/components/schemas/Nothing");
    doc["paths"]["/healthz"]["get"]["responses"] = serde_json::json!({});
    doc["openapi"] = Value::from("3.0.3");
    let found = problems(&doc);
    assert!(found.iter().any(|p| p.contains("3.0.3")), "{found:?}");
    assert!(
        found.iter().any(|p| p.contains("#/components/schemas/Nothing")),
        "{found:?}"
    );
    doc["paths"]["/stats"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["allOf"][0]
        ["$ref"] = Value::from("#/components/schemas/Success");
    let found = problems(&doc);
    assert!(
        found.iter().any(|p| p == "GET /healthz: no responses"),
        "{found:?}"
    );
}

#[test]
fn the_public_view_holds_only_public_operations_and_nothing_of_the_admin_token() {
    let view = public_view(&full());
    let paths: BTreeSet<&str> = view["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        paths,
        BTreeSet::from([
            "/healthz",
            "/openapi.json",
            "/readyz",
            "/rpc/call",
            "/rpc/calls",
            "/rpc/server/mock"
        ])
    );
    let text = view.to_string();
    for absent in [
        "\"security\"",
        "securitySchemes",
        "\"401\"",
        "GroupDetail",
        "DeadLetter",
        "\"admin\"",
    ] {
        assert!(!text.contains(absent), "{absent} in the public view");
    }
    assert!(text.contains("#/components/schemas/CallRequest"));
    assert!(view["components"]["schemas"]["CallRequest"].is_object());
}

/// Every full path actix would route for the app, read from the `Debug` form of its resource
/// map: actix offers no public way to list its routes. Scopes nest, so a node's path is its
/// ancestors' patterns joined. Panics when the form has changed beyond reading.
fn registered_patterns(rmap: &str) -> BTreeSet<String> {
    // (depth the node's braces opened at, its patterns)
    let mut stack: Vec<(usize, Option<Vec<String>>)> = Vec::new();
    let mut out = BTreeSet::new();
    let mut depth = 0usize;
    let bytes = rmap.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &rmap[i..];
        if rest.starts_with("ResourceMap {") {
            depth += 1;
            stack.push((depth, None));
            i += "ResourceMap {".len();
            continue;
        }
        if let Some(after) = rest.strip_prefix("patterns: ") {
            let (patterns, used) = debug_patterns(after);
            if let Some(top) = stack.last_mut().filter(|t| t.1.is_none()) {
                top.1 = Some(patterns);
            }
            i += "patterns: ".len() + used;
            continue;
        }
        if rest.starts_with("nodes: None") && !stack.is_empty() {
            let mut prefixes = vec![String::new()];
            for (_, patterns) in &stack {
                let patterns = patterns.clone().unwrap_or_default();
                prefixes = prefixes
                    .iter()
                    .flat_map(|p| patterns.iter().map(move |q| format!("{p}{q}")))
                    .collect();
            }
            out.extend(prefixes);
            i += "nodes: None".len();
            continue;
        }
        match bytes[i] {
            b'"' => i += string_len(rest),
            b'{' | b'[' | b'(' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' | b')' => {
                if stack.last().is_some_and(|t| t.0 == depth) {
                    stack.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => i += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    assert!(!out.is_empty(), "no route found in actix's resource map:\n{rmap}");
    out
}

/// `Single("..")` or `List([".."])` at the start of `s`: the patterns and the bytes used.
fn debug_patterns(s: &str) -> (Vec<String>, usize) {
    let close = if s.starts_with("Single(") { ")" } else { "])" };
    let mut i = s.find('(').map_or(s.len(), |p| p + 1);
    let mut found = Vec::new();
    while i < s.len() {
        let rest = &s[i..];
        if rest.starts_with(close) {
            return (found, i + close.len());
        }
        if rest.starts_with('"') {
            let n = string_len(rest);
            found.push(unescape(&rest[1..n - 1]));
            i += n;
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    panic!("unreadable patterns in actix's resource map: {s}")
}

/// The length of the Debug string literal at the start of `s`, quotes included.
fn string_len(s: &str) -> usize {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '"') => return i + 1,
            _ => {}
        }
    }
    s.len()
}

fn unescape(s: &str) -> String {
    s.replace("\\\"", "\"").replace("\\\\", "\\")
}

/// `{name:regex}` segments written as `{name}`, as OpenAPI writes them.
fn normalize(pattern: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    let mut skipping = false;
    for c in pattern.chars() {
        match c {
            '{' => {
                depth += 1;
                if depth == 1 {
                    out.push(c);
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    skipping = false;
                    out.push(c);
                }
            }
            ':' if depth == 1 => skipping = true,
            _ if skipping || depth > 1 => {}
            _ => out.push(c),
        }
    }
    out
}

/// A concrete path for a pattern: every `{name}` filled in.
fn example(pattern: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in pattern.chars() {
        match c {
            '{' => {
                inside = true;
                out.push_str("0-0");
            }
            '}' => inside = false,
            _ if inside => {}
            _ => out.push(c),
        }
    }
    out
}

/// Sends `method path` to `app`: the pattern that handled it, or None when the default
/// service answered (no such path) or the path's resource refused the method (405). The app
/// has no state, so handlers that need it answer 500: that still counts as handled.
async fn handled<S>(app: &S, method: &str, path: &str) -> Option<String>
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    let req = actix_test::TestRequest::default()
        .method(method)
        .uri(path)
        .to_request();
    let res = actix_test::call_service(app, req).await;
    let pattern = res.request().match_pattern()?;
    (res.status() != actix_web::http::StatusCode::METHOD_NOT_ALLOWED).then(|| normalize(&pattern))
}

/// The operations `configure` really routes, and the documented ones that it does not.
async fn compare(
    configure: fn(&mut web::ServiceConfig),
    documented: &BTreeSet<Operation>,
) -> (Vec<String>, Vec<String>) {
    // One extra route hands out the resource map, read after everything is registered.
    let app = actix_test::init_service(App::new().configure(configure).route(
        "/__routes__",
        web::get().to(|req: actix_web::HttpRequest| async move { format!("{:?}", req.resource_map()) }),
    ))
    .await;
    let rmap = actix_test::call_and_read_body(
        &app,
        actix_test::TestRequest::get().uri("/__routes__").to_request(),
    )
    .await;
    let patterns = registered_patterns(&String::from_utf8_lossy(&rmap));
    let mut real = BTreeSet::new();
    for pattern in patterns
        .iter()
        .map(|p| normalize(p))
        .filter(|p| p != "/__routes__")
    {
        for method in PROBED {
            if handled(&app, method, &example(&pattern)).await.as_deref() == Some(pattern.as_str()) {
                real.insert((method.to_string(), pattern.clone()));
            }
        }
    }
    let undocumented = real
        .difference(documented)
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    let mut unrouted = Vec::new();
    for (method, path) in documented {
        if handled(&app, method, &example(path)).await.as_deref() != Some(path.as_str()) {
            unrouted.push(format!("{method} {path}"));
        }
    }
    (undocumented, unrouted)
}

#[actix_web::test]
async fn the_public_listener_routes_exactly_the_public_operations() {
    let documented = operations(&public_view(&full()), PUBLIC_TAGS);
    let (undocumented, unrouted) = compare(crate::api::routes, &documented).await;
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "public listener: routed but not in src/api/openapi.json: {undocumented:?}; \
         documented but not routed: {unrouted:?}"
    );
}

#[actix_web::test]
async fn the_admin_listener_routes_exactly_the_admin_operations() {
    let documented = operations(&full(), &["admin", "both"]);
    let (undocumented, unrouted) = compare(crate::api::admin::routes, &documented).await;
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "admin listener: routed but not in src/api/openapi.json: {undocumented:?}; \
         documented but not routed: {unrouted:?}"
    );
}

#[test]
fn route_patterns_are_read_through_scopes_and_regex_segments() {
    let rmap = r#"ResourceMap { pattern: ResourceDef { id: 0, name: None, patterns: Single(""), is_prefix: true }, named: {}, parent: RefCell { value: (Weak) }, nodes: Some([ResourceMap { pattern: ResourceDef { id: 0, name: None, patterns: Single("/stats"), is_prefix: false, pat_type: Static("/stats"), segments: [Const("/stats")] }, named: {}, parent: RefCell { value: (Weak) }, nodes: None }, ResourceMap { pattern: ResourceDef { id: 1, name: None, patterns: Single("/admin/v1"), is_prefix: true, pat_type: Dynamic(Regex("^/admin/v1(?:/|$)"), []) }, named: {}, parent: RefCell { value: (Weak) }, nodes: Some([ResourceMap { pattern: ResourceDef { id: 2, name: None, patterns: Single("/groups/{group:[^/]{1,9}}"), is_prefix: false, pat_type: Dynamic(Regex("^/groups/(?P<group>[^/]{1,9})$"), ["group"]), segments: [Const("/groups/"), Var("group")] }, named: {}, parent: RefCell { value: (Weak) }, nodes: None }]) }]) }"#;
    let found: BTreeSet<String> = registered_patterns(rmap).iter().map(|p| normalize(p)).collect();
    assert_eq!(
        found,
        BTreeSet::from(["/stats".to_owned(), "/admin/v1/groups/{group}".to_owned()])
    );
    assert_eq!(
        example("/admin/v1/groups/{group}/deadletters/{id}"),
        "/admin/v1/groups/0-0/deadletters/0-0"
    );
}
