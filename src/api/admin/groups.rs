//! `/admin/v1/groups`: the consumer entries of this process's config, and one group as
//! `kafka-consumer-groups --describe` shows it (from Kafka: the coordinator's description,
//! committed offsets, log ends) plus this process's own state of the partitions it owns.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::AdminState;
use super::context::{EntryRef, GroupAdmin};
use super::deadletters::reader::DlqReader;
use super::reply::{AdminError, ok};
use crate::group::codec::decode_assignment;
use crate::kafka::wire::{self, groups};

/// Registers the routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/admin/v1/groups").route(web::get().to(list)))
        .service(web::resource("/admin/v1/groups/{group}").route(web::get().to(describe)));
}

async fn list(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    let ctx = match crate::api::admin::context::of(&req, &state) {
        Ok(c) => c,
        Err(e) => return e.response(),
    };
    if !req.query_string().is_empty() {
        return AdminError::BadRequest("query: this path takes no parameters".into()).response();
    }
    let groups: Vec<Value> = ctx
        .entries
        .load()
        .iter()
        .map(|e| {
            json!({
                "group": e.group,
                "topic": e.topic,
                "paused": ctx.paused(e),
                "deadLetterTopic": e.dead_letter_topic,
            })
        })
        .collect();
    ok(json!({ "groups": groups }))
}

async fn describe(req: HttpRequest, state: web::Data<AdminState>, path: web::Path<String>) -> HttpResponse {
    let ctx = match crate::api::admin::context::of(&req, &state) {
        Ok(c) => c,
        Err(e) => return e.response(),
    };
    describe_entry(&req, ctx, &path)
        .await
        .unwrap_or_else(|e| e.response())
}

/// What Kafka says of the group.
struct FromKafka {
    description: groups::GroupDescription,
    committed: BTreeMap<i32, Option<i64>>,
    log_ends: BTreeMap<i32, Option<i64>>,
}

async fn ask_kafka(ctx: &GroupAdmin, entry: &EntryRef, partitions: i32) -> Result<FromKafka, AdminError> {
    let wire_error = |e: wire::Error| AdminError::kafka(&e);
    let conn = groups::connect_coordinator(ctx.client.connect(), &entry.group)
        .await
        .map_err(wire_error)?;
    let description = groups::describe_group(&conn, &entry.group)
        .await
        .map_err(wire_error)?;
    let all: Vec<i32> = (0..partitions).collect();
    let committed = groups::committed_offsets(&conn, &entry.group, &entry.topic, &all)
        .await
        .map_err(wire_error)?;
    let reader = DlqReader::new(Arc::clone(&ctx.client), &entry.topic);
    let ends = futures::future::join_all(all.iter().map(|&p| {
        let reader = &reader;
        async move { (p, reader.log_end(p).await) }
    }))
    .await;
    let mut log_ends = BTreeMap::new();
    for (p, end) in ends {
        log_ends.insert(p, Some(end.map_err(|e| AdminError::kafka(&e))?));
    }
    Ok(FromKafka {
        description,
        committed,
        log_ends,
    })
}

async fn describe_entry(
    req: &HttpRequest,
    ctx: &GroupAdmin,
    group: &str,
) -> Result<HttpResponse, AdminError> {
    let entry = ctx.entry_of(req, group)?;
    let partitions = ctx.table.count(&entry.topic).ok_or_else(|| {
        AdminError::Unavailable(format!("partition count of {} not known yet", entry.topic))
    })?;
    // Connect, find the coordinator, three requests, the log ends: a few round trips.
    let bound = ctx.client.timeout() * 4;
    let kafka = tokio::time::timeout(bound, ask_kafka(ctx, &entry, partitions))
        .await
        .map_err(|_| AdminError::Unavailable(format!("kafka did not answer within {bound:?}")))??;

    let mut owners: BTreeMap<i32, String> = BTreeMap::new();
    let members: Vec<Value> = kafka
        .description
        .members
        .iter()
        .map(|m| {
            // An unreadable assignment (another client's protocol) shows as none.
            let mut mine: Vec<i32> = decode_assignment(&m.assignment)
                .unwrap_or_default()
                .into_iter()
                .filter(|(t, _)| *t == entry.topic)
                .flat_map(|(_, p)| p)
                .collect();
            mine.sort_unstable();
            for p in &mine {
                owners.insert(*p, m.member_id.clone());
            }
            json!({
                "memberId": m.member_id,
                "clientId": m.client_id,
                "host": m.client_host,
                "instanceId": m.instance_id,
                "partitions": mine,
            })
        })
        .collect();
    let entry_stats = ctx.stats.consumer(&entry.group, &entry.topic);
    let local = entry_stats.partition_views();
    // DescribeGroups does not tell the generation: this process's member knows the one of its
    // last assignment (0, shown as null, before the first).
    let generation =
        Some(entry_stats.generation.load(std::sync::atomic::Ordering::Relaxed)).filter(|g| *g > 0);
    let rows: Vec<Value> = (0..partitions)
        .map(|p| {
            let committed = kafka.committed.get(&p).copied().flatten();
            let log_end = kafka.log_ends.get(&p).copied().flatten();
            let lag = match (committed, log_end) {
                (Some(c), Some(e)) => Some((e - c).max(0)),
                _ => None,
            };
            let local = local.get(&p).map(|v| {
                json!({
                    "position": v.position,
                    // As of the last commit tick (progress.rs samples it).
                    "inFlight": v.in_flight,
                    "stalled": v.stall.is_some(),
                    "stalledReason": v.stall.as_ref().map(|s| s.reason.clone()),
                })
            });
            json!({
                "partition": p,
                "owner": owners.get(&p),
                "committed": committed,
                "logEnd": log_end,
                "lag": lag,
                "local": local,
            })
        })
        .collect();
    Ok(ok(json!({
        "group": entry.group,
        "topic": entry.topic,
        "state": kafka.description.state,
        "protocol": kafka.description.protocol,
        "generation": generation,
        "paused": ctx.paused(&entry),
        "members": members,
        "partitions": rows,
    })))
}
