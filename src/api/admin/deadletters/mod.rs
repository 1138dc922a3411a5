//! `/admin/v1/groups/{group}/deadletters`: list (paged, filtered), show one, replay.
//!
//! ```text
//!  GET  .../deadletters?topic&reason&status&host&since&until&cursor&limit   one bounded page
//!  GET  .../deadletters/{partition}-{offset}?topic                         summary+headers+value
//!  POST .../deadletters/replay?topic  {"ids":[..]} | {"filter":{..}}, dryRun, force, cursor
//! ```
//!
//! A replay writes the call back to the entry's main topic (see [`letter::replay_record`])
//! and then a marker `replay/<dlqTopic>/<partition>/<offset>` to the control topic; a letter
//! with a marker is skipped (`alreadyReplayed`) unless `force`.

pub mod cursor;
pub mod filter;
pub mod letter;
pub mod reader;
pub mod replay;
pub mod scan;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AdminState;
use super::context::{EntryRef, GroupAdmin, TopicQuery, query};
use super::reply::{AdminError, json_body, ok};
use cursor::Cursor;
use filter::{Filter, RawFilter};
use reader::DlqReader;

/// Default and largest page size of the list.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

/// Registers the routes (`replay` before `{id}`, which would otherwise take it).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/admin/v1/groups/{group}/deadletters/replay").route(web::post().to(replay_handler)),
    )
    .service(web::resource("/admin/v1/groups/{group}/deadletters/{id}").route(web::get().to(show)))
    .service(web::resource("/admin/v1/groups/{group}/deadletters").route(web::get().to(list)));
}

/// The list's query parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    topic: Option<String>,
    reason: Option<String>,
    status: Option<String>,
    host: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// The entry of the path's group and its dead-letter topic.
fn dlq_entry(ctx: &GroupAdmin, group: &str, topic: Option<&str>) -> Result<(EntryRef, String), AdminError> {
    let entry = ctx.entry(group, topic)?;
    let dlq = entry
        .dead_letter_topic
        .clone()
        .ok_or_else(|| AdminError::NotFound(format!("group {group} has no dead-letter topic")))?;
    Ok((entry, dlq))
}

fn partition_count(ctx: &GroupAdmin, topic: &str) -> Result<i32, AdminError> {
    ctx.table
        .count(topic)
        .ok_or_else(|| AdminError::Unavailable(format!("partition count of {topic} not known yet")))
}

/// How long one list or show request may spend on Kafka: a few round trips' worth.
fn read_deadline(ctx: &GroupAdmin) -> Duration {
    ctx.client.timeout() * 4
}

fn replay_marker(ctx: &GroupAdmin, dlq: &str, partition: i32, offset: i64) -> Option<Value> {
    ctx.control
        .as_ref()
        .and_then(|c| c.get(&crate::control::keys::replay(dlq, partition, offset)))
}

async fn list(req: HttpRequest, state: web::Data<AdminState>, path: web::Path<String>) -> HttpResponse {
    let ctx = match crate::api::admin::context::of(&req, &state) {
        Ok(c) => c,
        Err(e) => return e.response(),
    };
    list_page(&req, ctx, &path).await.unwrap_or_else(|e| e.response())
}

async fn list_page(req: &HttpRequest, ctx: &GroupAdmin, group: &str) -> Result<HttpResponse, AdminError> {
    let q: ListQuery = query(req)?;
    let limit = match q.limit.as_deref().map(str::trim) {
        None | Some("") => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| AdminError::BadRequest(format!("limit: expected 1..={MAX_LIMIT}")))?,
    };
    let filter = Filter::parse(RawFilter {
        reason: q.reason,
        status: q.status.map(Value::String),
        host: q.host,
        since: q.since.map(Value::String),
        until: q.until.map(Value::String),
    })
    .map_err(AdminError::bad)?;
    let cursor = match q.cursor.as_deref() {
        None | Some("") => Cursor::default(),
        Some(c) => Cursor::decode(c).map_err(|e| AdminError::BadRequest(format!("cursor: {e}")))?,
    };
    let (_, dlq) = dlq_entry(ctx, group, q.topic.as_deref())?;
    let partitions = partition_count(ctx, &dlq)?;
    let reader = DlqReader::new(Arc::clone(&ctx.client), &dlq);
    let page = tokio::time::timeout(
        read_deadline(ctx),
        scan::page(&reader, partitions, &filter, &cursor, limit, scan::SCAN_BUDGET),
    )
    .await
    .map_err(|_| AdminError::Unavailable(format!("kafka did not answer within {:?}", read_deadline(ctx))))?
    .map_err(|e| AdminError::kafka(&e))?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|(s, _)| s.to_json(replay_marker(ctx, &dlq, s.partition, s.offset)))
        .collect();
    Ok(ok(json!({
        "items": items,
        "nextCursor": page.next.map(|c| c.encode()),
    })))
}

async fn show(
    req: HttpRequest,
    state: web::Data<AdminState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let ctx = match crate::api::admin::context::of(&req, &state) {
        Ok(c) => c,
        Err(e) => return e.response(),
    };
    let (group, id) = path.into_inner();
    show_one(&req, ctx, &group, &id)
        .await
        .unwrap_or_else(|e| e.response())
}

async fn show_one(
    req: &HttpRequest,
    ctx: &GroupAdmin,
    group: &str,
    id: &str,
) -> Result<HttpResponse, AdminError> {
    let q: TopicQuery = query(req)?;
    let (partition, offset) = letter::parse_id(id).map_err(AdminError::bad)?;
    let (_, dlq) = dlq_entry(ctx, group, q.topic.as_deref())?;
    if partition >= partition_count(ctx, &dlq)? {
        return Err(AdminError::NotFound(format!("no dead letter {id}")));
    }
    let reader = DlqReader::new(Arc::clone(&ctx.client), &dlq);
    let record = tokio::time::timeout(read_deadline(ctx), reader.record_at(partition, offset))
        .await
        .map_err(|_| {
            AdminError::Unavailable(format!("kafka did not answer within {:?}", read_deadline(ctx)))
        })?
        .map_err(|e| AdminError::kafka(&e))?
        .ok_or_else(|| AdminError::NotFound(format!("no dead letter {id}")))?;
    let summary = letter::Summary::read(&dlq, partition, offset, &record);
    let mut data = summary.to_json(replay_marker(ctx, &dlq, partition, offset));
    let headers: BTreeMap<&str, String> = record
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    data["headers"] = json!(headers);
    data["value"] = json!(record.value.as_deref().map(String::from_utf8_lossy));
    Ok(ok(data))
}

/// The replay request body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplayBody {
    /// Letters by id (`<partition>-<offset>`), at most [`letter::MAX_IDS`].
    pub ids: Option<Vec<String>>,
    /// Or every letter matching this filter (one bounded page per request).
    pub filter: Option<RawFilter>,
    /// Count only; write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Replay letters already replayed too.
    #[serde(default)]
    pub force: bool,
    /// Where a filter replay goes on (its `nextCursor`).
    pub cursor: Option<String>,
}

async fn replay_handler(
    req: HttpRequest,
    state: web::Data<AdminState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let ctx = match crate::api::admin::context::of(&req, &state) {
        Ok(c) => c,
        Err(e) => return e.response(),
    };
    let body = match json_body::<ReplayBody>(payload).await {
        Ok(b) => b,
        Err(e) => return e.response(),
    };
    replay::run(&req, ctx, &path, body)
        .await
        .unwrap_or_else(|e| e.response())
}
