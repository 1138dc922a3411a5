//! Steering a consumer entry for its whole group, through the control topic:
//! `POST /admin/v1/groups/{group}/pause|resume?topic=t` and
//! `POST /admin/v1/groups/{group}/retransmit?topic=t` with `{"from", "dryRun"}`.
//!
//! Each writes one control record and answers once this process has read it back; every
//! process's consumer entry follows the record (see `crate::consumer::gate` and
//! `crate::consumer::seek`).

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use chrono::DateTime;
use rskafka::client::partition::OffsetAt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AdminState;
use super::audit::{audit, operator};
use super::context::{EntryRef, GroupAdmin};
use super::reply::{AdminError, json_body, ok};
use crate::consumer::seek::Seek;
use crate::control::{Control, ControlError, keys};
use crate::kafka::client::{self, bounded};
use crate::kafka::partitions::{PartitionKey, Purpose};
use crate::kafka::wire::{self, groups};

/// The latest time a retransmit may name (9999-12-31T23:59:59.999Z): far enough for any
/// real use, and within what `chrono` and Kafka's ListOffsets both represent.
const MAX_FROM_MS: i64 = 253_402_300_799_999;

/// Registers the routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/admin/v1/groups/{group}/pause").route(web::post().to(pause)))
        .service(web::resource("/admin/v1/groups/{group}/resume").route(web::post().to(resume)))
        .service(web::resource("/admin/v1/groups/{group}/retransmit").route(web::post().to(retransmit)));
}

async fn pause(req: HttpRequest, state: web::Data<AdminState>, group: web::Path<String>) -> HttpResponse {
    if let Err(refused) = super::authorize(&req, &state) {
        return refused.error_response();
    }
    set_paused(&req, &state, &group, true)
        .await
        .unwrap_or_else(|e| e.response())
}

async fn resume(req: HttpRequest, state: web::Data<AdminState>, group: web::Path<String>) -> HttpResponse {
    if let Err(refused) = super::authorize(&req, &state) {
        return refused.error_response();
    }
    set_paused(&req, &state, &group, false)
        .await
        .unwrap_or_else(|e| e.response())
}

async fn retransmit(
    req: HttpRequest,
    state: web::Data<AdminState>,
    group: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    if let Err(refused) = super::authorize(&req, &state) {
        return refused.error_response();
    }
    retransmit_entry(&req, &state, &group, payload)
        .await
        .unwrap_or_else(|e| e.response())
}

/// The group context, the control topic and the entry of the path.
fn target<'a>(
    req: &HttpRequest,
    state: &'a AdminState,
    group: &str,
) -> Result<(&'a Arc<GroupAdmin>, &'a Arc<Control>, EntryRef), AdminError> {
    let ctx = state
        .groups
        .as_ref()
        .ok_or_else(|| AdminError::Conflict("group administration is not available".into()))?;
    let control = state
        .control
        .as_ref()
        .ok_or_else(|| AdminError::Conflict("control topic disabled".into()))?;
    let entry = ctx.entry_of(req, group)?;
    Ok((ctx, control, entry))
}

/// A failed control write: the record may hold without this process having seen it (503
/// either way: Kafka did not answer in time).
fn control_failed(e: &ControlError) -> AdminError {
    match e {
        ControlError::NotAnObject | ControlError::EmptyKey => AdminError::BadRequest(e.to_string()),
        ControlError::Write(_) | ControlError::NotSeen { .. } => {
            AdminError::Unavailable(format!("control topic: {}", wire::error_chain(e)))
        }
    }
}

async fn set_paused(
    req: &HttpRequest,
    state: &AdminState,
    group: &str,
    paused: bool,
) -> Result<HttpResponse, AdminError> {
    let (ctx, control, entry) = target(req, state, group)?;
    let key = keys::pause(&entry.group, &entry.topic);
    control
        .put(&key, json!({"paused": paused, "by": operator(req)}))
        .await
        .map_err(|e| control_failed(&e))?;
    let action = if paused { "pause" } else { "resume" };
    audit(
        &ctx.log,
        req,
        action,
        &format!("group={} topic={}", entry.group, entry.topic),
    );
    Ok(ok(
        json!({"group": entry.group, "topic": entry.topic, "paused": paused}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetransmitBody {
    from: Value,
    #[serde(rename = "dryRun", default)]
    dry_run: bool,
}

/// `from`: an RFC 3339 time or epoch milliseconds, between 1970 and 9999.
fn from_ms(from: &Value) -> Result<i64, AdminError> {
    let ms = match from {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| AdminError::BadRequest("from: epoch milliseconds must be an integer".into()))?,
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map_err(|e| AdminError::BadRequest(format!("from: not an RFC 3339 time: {e}")))?
            .timestamp_millis(),
        _ => {
            return Err(AdminError::BadRequest(
                "from: an RFC 3339 time or epoch milliseconds".into(),
            ));
        }
    };
    if !(0..=MAX_FROM_MS).contains(&ms) {
        return Err(AdminError::BadRequest(
            "from: must be between 1970-01-01 and 9999-12-31".into(),
        ));
    }
    Ok(ms)
}

async fn retransmit_entry(
    req: &HttpRequest,
    state: &AdminState,
    group: &str,
    payload: web::Payload,
) -> Result<HttpResponse, AdminError> {
    let (ctx, control, entry) = target(req, state, group)?;
    let body: RetransmitBody = json_body(payload).await?;
    let from_ms = from_ms(&body.from)?;
    let partitions = ctx
        .table
        .count(&entry.topic)
        .ok_or_else(|| AdminError::Unavailable(format!("partition count of {} unknown yet", entry.topic)))?;
    let all: Vec<i32> = (0..partitions).collect();
    let targets = target_offsets(ctx, &entry.topic, &all, from_ms).await?;
    let conn = groups::connect_coordinator(ctx.client.connect(), &entry.group)
        .await
        .map_err(|e| AdminError::kafka(&e))?;
    let committed = groups::committed_offsets(&conn, &entry.group, &entry.topic, &all)
        .await
        .map_err(|e| AdminError::kafka(&e))?;
    let rows: Vec<Value> = targets
        .iter()
        .map(|(p, to)| json!({"partition": p, "from": committed.get(p).copied().flatten(), "to": to}))
        .collect();
    let answer = |applied: bool| {
        ok(json!({
            "group": entry.group,
            "topic": entry.topic,
            "from_ms": from_ms,
            "partitions": rows,
            "applied": applied,
        }))
    };
    if body.dry_run {
        return Ok(answer(false));
    }
    let seek = Seek {
        id: uuid::Uuid::now_v7().to_string(),
        from_ms,
        offsets: targets.clone(),
    };
    let mut value = seek.to_value();
    value["by"] = Value::from(operator(req));
    control
        .put(&keys::seek(&entry.group, &entry.topic), value)
        .await
        .map_err(|e| control_failed(&e))?;
    audit(
        &ctx.log,
        req,
        "retransmit",
        &format!(
            "group={} topic={} from_ms={from_ms} seek={} offsets={targets:?}",
            entry.group, entry.topic, seek.id
        ),
    );
    Ok(answer(true))
}

/// Per partition, the first offset whose record time is at or after `from_ms` (ListOffsets
/// by timestamp); the log end where no record is that recent.
async fn target_offsets(
    ctx: &GroupAdmin,
    topic: &str,
    partitions: &[i32],
    from_ms: i64,
) -> Result<BTreeMap<i32, i64>, AdminError> {
    let at = DateTime::from_timestamp_millis(from_ms)
        .ok_or_else(|| AdminError::BadRequest("from: out of range".into()))?;
    let lookups = partitions.iter().map(|&p| async move {
        let key = PartitionKey::new(topic.to_owned(), p, Purpose::Offsets);
        let pc = ctx.client.partition(&key).await?;
        let timeout = ctx.client.timeout();
        let ask = |at: OffsetAt| bounded("list offsets", timeout, pc.get_offset(at));
        let found = ask(OffsetAt::Timestamp(at))
            .await
            .and_then(|r| r.map_err(client::Error::from));
        let offset = match found {
            Ok(offset) if offset >= 0 => Ok(offset),
            // -1: no record at or after the time.
            Ok(_) => ask(OffsetAt::Latest)
                .await
                .and_then(|r| r.map_err(client::Error::from)),
            Err(e) => Err(e),
        };
        if let Err(e) = &offset {
            ctx.client.partition_failed(&key, &pc, e);
        }
        offset.map(|o| (p, o))
    });
    futures::future::join_all(lookups)
        .await
        .into_iter()
        .collect::<Result<BTreeMap<i32, i64>, client::Error>>()
        .map_err(|e| AdminError::kafka(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_takes_rfc3339_or_epoch_ms_within_bounds() {
        assert_eq!(from_ms(&json!(1_700_000_000_000_i64)).unwrap(), 1_700_000_000_000);
        assert_eq!(
            from_ms(&json!("2023-11-14T22:13:20Z")).unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            from_ms(&json!("2023-11-14T23:13:20+01:00")).unwrap(),
            1_700_000_000_000
        );
        for bad in [
            json!(-1),
            json!(1.5),
            json!(MAX_FROM_MS + 1),
            json!("yesterday"),
            json!(null),
            json!([1]),
            json!(u64::MAX),
        ] {
            assert!(matches!(from_ms(&bad), Err(AdminError::BadRequest(_))), "{bad}");
        }
    }
}
