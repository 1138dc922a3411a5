//! The OpenAPI 3.1 document of both listeners, served at `GET /openapi.json`.
//!
//! The document is written by hand (`openapi.json` beside this file) and embedded: a reader
//! sees the contract as one file, and it needs no crate to produce it. It is JSON rather than
//! YAML so serde_json reads it and no YAML parser is added. Tags say where an operation lives:
//! `public` (public listener only), `admin` (admin listener only), `both`. The admin listener
//! serves the whole document; the public listener a view cut from the same text at startup
//! ([`public_view`]), so the two can never disagree. Tests (`openapi/tests.rs`) keep the
//! document and the registered routes the same set of paths and methods.

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use actix_web::{HttpResponse, web};
use serde_json::{Map, Value};

/// The hand-written document.
const DOCUMENT: &str = include_str!("openapi.json");

/// Tags of the operations the public listener shows.
const PUBLIC_TAGS: &[&str] = &["public", "both"];

/// The HTTP methods an OpenAPI path item can hold.
pub(crate) const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Why the embedded document cannot be served (a broken build, caught by the unit tests).
#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    /// The file is not JSON.
    #[error("src/api/openapi.json is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The file is JSON but not an object with `info` and `paths`.
    #[error("src/api/openapi.json has no `info` or `paths` object")]
    Shape,
}

/// One listener's document, rendered once.
#[derive(Debug, Clone)]
pub struct OpenApiDoc(web::Bytes);

impl OpenApiDoc {
    /// The whole document, for the admin listener.
    ///
    /// # Errors
    /// When the embedded file is broken.
    pub fn admin() -> Result<Self, OpenApiError> {
        Ok(Self(render(&document()?)))
    }

    /// The public operations only, for the public listener.
    ///
    /// # Errors
    /// When the embedded file is broken.
    pub fn public() -> Result<Self, OpenApiError> {
        Ok(Self(render(&public_view(&document()?))))
    }

    /// The `200` answer carrying the document.
    pub fn response(&self) -> HttpResponse {
        HttpResponse::Ok()
            .content_type("application/json")
            .body(self.0.clone())
    }
}

fn render(doc: &Value) -> web::Bytes {
    web::Bytes::from(doc.to_string())
}

/// The embedded document, its `info.version` set to this build's version.
///
/// # Errors
/// When the embedded file is broken.
pub fn document() -> Result<Value, OpenApiError> {
    let mut doc: Value = serde_json::from_str(DOCUMENT)?;
    if !doc.get("paths").is_some_and(Value::is_object) {
        return Err(OpenApiError::Shape);
    }
    let info = doc
        .get_mut("info")
        .and_then(Value::as_object_mut)
        .ok_or(OpenApiError::Shape)?;
    info.insert("version".into(), Value::from(env!("CARGO_PKG_VERSION")));
    Ok(doc)
}

/// The view of `full` the public listener serves: the operations tagged `public` or `both`,
/// without the admin token (no security requirement, no 401 answers, no security scheme),
/// and without the components only the admin operations use.
pub fn public_view(full: &Value) -> Value {
    let mut doc = full.clone();
    let Some(root) = doc.as_object_mut() else {
        return doc;
    };
    root.remove("security");
    if let Some(tags) = root.get_mut("tags").and_then(Value::as_array_mut) {
        tags.retain(|t| t["name"].as_str().is_some_and(|n| PUBLIC_TAGS.contains(&n)));
    }
    if let Some(paths) = root.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            if let Some(item) = item.as_object_mut() {
                keep_public_operations(item);
            }
        }
        paths.retain(|_, item| METHODS.iter().any(|m| item.get(*m).is_some()));
    }
    if let Some(components) = root.get_mut("components").and_then(Value::as_object_mut) {
        components.remove("securitySchemes");
    }
    prune_components(&mut doc);
    doc
}

/// Drops from a path item the operations not on the public listener, and from the rest
/// what belongs to the admin token.
fn keep_public_operations(item: &mut Map<String, Value>) {
    for method in METHODS {
        let public = item.get(*method).is_some_and(|op| {
            op["tags"].as_array().is_some_and(|tags| {
                tags.iter()
                    .any(|t| t.as_str().is_some_and(|t| PUBLIC_TAGS.contains(&t)))
            })
        });
        if !public {
            item.remove(*method);
            continue;
        }
        if let Some(op) = item.get_mut(*method).and_then(Value::as_object_mut) {
            op.remove("security");
            if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                responses.remove("401");
            }
        }
    }
}

/// Removes the components nothing outside `components` reaches, directly or through other
/// components, so the public view does not describe the admin API's bodies.
fn prune_components(doc: &mut Value) {
    if doc.get("components").is_none() {
        return;
    }
    let mut outside = doc.clone();
    if let Some(root) = outside.as_object_mut() {
        root.remove("components");
    }
    let mut reached: BTreeSet<String> = BTreeSet::new();
    let mut todo: Vec<String> = Vec::new();
    refs(&outside, &mut todo);
    while let Some(r) = todo.pop() {
        if !reached.insert(r.clone()) {
            continue;
        }
        if let Some(target) = doc.pointer(r.trim_start_matches('#')) {
            refs(target, &mut todo);
        }
    }
    let Some(kinds) = doc.get_mut("components").and_then(Value::as_object_mut) else {
        return;
    };
    for (kind, entries) in kinds.iter_mut() {
        if let Some(entries) = entries.as_object_mut() {
            entries.retain(|name, _| reached.contains(&format!("#/components/{kind}/{name}")));
        }
    }
    kinds.retain(|_, entries| entries.as_object().is_none_or(|e| !e.is_empty()));
}

/// Every `$ref` string under `v`.
pub(crate) fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// Registers `GET /openapi.json` on the public listener (the admin one has its own, behind
/// the token: `admin::openapi`).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/openapi.json").route(web::get().to(public_document)));
}

/// `GET /openapi.json` on the public listener.
async fn public_document(doc: web::Data<OpenApiDoc>) -> HttpResponse {
    doc.response()
}
