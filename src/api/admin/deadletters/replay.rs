//! Replaying dead letters: which ones (ids, or a filter page), then for each one not yet
//! replayed (or all, with `force`): write the call to the main topic, then its marker.
//!
//! Bounded: at most [`letter::MAX_IDS`] ids, or one filter page of at most
//! [`REPLAY_PAGE`] matches within [`REPLAY_BUDGET`] records read; the first failed write
//! stops the request (Kafka is in trouble; the rest is reported as not attempted).

use std::collections::BTreeSet;
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse};
use rskafka::record::Record;
use serde_json::{Value, json};

use super::cursor::Cursor;
use super::filter::Filter;
use super::letter::{self, MAX_IDS, Summary};
use super::reader::DlqReader;
use super::scan;
use super::{ReplayBody, TopicQuery, dlq_entry, partition_count, query, read_deadline};
use crate::api::admin::audit::{audit, operator};
use crate::api::admin::context::GroupAdmin;
use crate::api::admin::reply::{AdminError, ok};
use crate::control::keys::replay as replay_key;
use crate::kafka::records::RecordWriter;

/// Most letters one filter replay takes; the answer's `nextCursor` goes on.
pub const REPLAY_PAGE: usize = 500;

/// Most records one filter replay reads.
pub const REPLAY_BUDGET: usize = 50_000;

/// Items listed in the answer at most.
const MAX_ITEMS: usize = 500;

/// The letters a request selected, and ids that named nothing.
struct Selection {
    letters: Vec<(Summary, Record)>,
    missing: Vec<String>,
    next: Option<Cursor>,
}

fn ids(raw: &[String]) -> Result<Vec<(i32, i64)>, AdminError> {
    if raw.is_empty() {
        return Err(AdminError::BadRequest("ids: empty".into()));
    }
    if raw.len() > MAX_IDS {
        return Err(AdminError::BadRequest(format!("ids: more than {MAX_IDS}")));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for id in raw {
        let parsed = letter::parse_id(id).map_err(|e| AdminError::BadRequest(format!("ids: {e}")))?;
        if seen.insert(parsed) {
            out.push(parsed);
        }
    }
    Ok(out)
}

async fn select(reader: &DlqReader, partitions: i32, body: &ReplayBody) -> Result<Selection, AdminError> {
    let kafka = |e: crate::kafka::client::Error| AdminError::kafka(&e);
    match (&body.ids, &body.filter) {
        (Some(raw), None) => {
            if body.cursor.is_some() {
                return Err(AdminError::BadRequest("cursor: only with a filter".into()));
            }
            let wanted = ids(raw)?;
            let mut letters = Vec::new();
            let mut missing = Vec::new();
            for (p, o) in wanted {
                let found = if p < partitions {
                    reader.record_at(p, o).await.map_err(kafka)?
                } else {
                    None
                };
                match found {
                    Some(r) => letters.push((Summary::read(reader.topic(), p, o, &r), r)),
                    None => missing.push(format!("{p}-{o}")),
                }
            }
            Ok(Selection {
                letters,
                missing,
                next: None,
            })
        }
        (None, Some(raw)) => {
            let filter =
                Filter::parse(raw.clone()).map_err(|e| AdminError::BadRequest(format!("filter.{e}")))?;
            let cursor = match body.cursor.as_deref() {
                None | Some("") => Cursor::default(),
                Some(c) => Cursor::decode(c).map_err(|e| AdminError::BadRequest(format!("cursor: {e}")))?,
            };
            let page = scan::page(reader, partitions, &filter, &cursor, REPLAY_PAGE, REPLAY_BUDGET)
                .await
                .map_err(kafka)?;
            Ok(Selection {
                letters: page.items,
                missing: Vec::new(),
                next: page.next,
            })
        }
        _ => Err(AdminError::BadRequest(
            "give either ids or filter (an empty filter {} takes every letter)".into(),
        )),
    }
}

/// Runs a replay request.
pub async fn run(
    req: &HttpRequest,
    ctx: &GroupAdmin,
    group: &str,
    body: ReplayBody,
) -> Result<HttpResponse, AdminError> {
    let q: TopicQuery = query(req)?;
    let (entry, dlq) = dlq_entry(ctx, group, q.topic.as_deref())?;
    let control = match (&ctx.control, body.dry_run) {
        (Some(c), _) => Some(Arc::clone(c)),
        (None, true) => None,
        (None, false) => {
            return Err(AdminError::Conflict(
                "control topic disabled: replays need it for their markers (admin.control.topic)".into(),
            ));
        }
    };
    let partitions = partition_count(ctx, &dlq)?;
    let main_partitions = partition_count(ctx, &entry.topic)?;
    let reader = DlqReader::new(Arc::clone(&ctx.client), &dlq);
    let selection = tokio::time::timeout(read_deadline(ctx) * 4, select(&reader, partitions, &body))
        .await
        .map_err(|_| AdminError::Unavailable("kafka did not answer in time".into()))??;

    let by = operator(req);
    let writer = RecordWriter::new(entry.topic.clone(), Arc::clone(&ctx.client));
    let (mut replayed, mut already) = (0usize, 0usize);
    let mut items: Vec<Value> = selection
        .missing
        .iter()
        .map(|id| json!({"id": id, "callId": null, "replayed": false, "reason": "not found"}))
        .collect();
    let mut failed: Option<String> = None;
    for (summary, record) in &selection.letters {
        let key = replay_key(&dlq, summary.partition, summary.offset);
        let marker = control.as_ref().and_then(|c| c.get(&key));
        let skip = if let Some(why) = &failed {
            Some(format!("not attempted: {why}"))
        } else if marker.is_some() && !body.force {
            already += 1;
            Some("already replayed".to_owned())
        } else if summary.value_omitted {
            Some("value omitted from the dead letter (too large); nothing to replay".to_owned())
        } else {
            None
        };
        let outcome = match (skip, &control) {
            (Some(why), _) => Err(why),
            (None, _) if body.dry_run => Ok(()),
            (None, None) => Err("control topic disabled".to_owned()),
            (None, Some(control)) => {
                let partition = letter::replay_partition(record, summary.partition, main_partitions);
                let out = letter::replay_record(&dlq, summary.partition, summary.offset, record);
                match writer.write(partition, out, ctx.client.timeout() * 2).await {
                    Ok(offset) => {
                        let count = marker
                            .as_ref()
                            .and_then(|m| m.get("count"))
                            .and_then(Value::as_u64)
                            .unwrap_or(0)
                            + 1;
                        let value = json!({
                            "atMs": chrono::Utc::now().timestamp_millis(),
                            "by": by,
                            "count": count,
                            "to": format!("{}/{partition}/{offset}", entry.topic),
                        });
                        // The call is in the main topic now; a lost marker only means a later
                        // replay without force could send it again, so say so.
                        control
                            .put(&key, value)
                            .await
                            .map_err(|e| format!("replayed, but its marker was not written: {e}"))
                    }
                    Err(e) => {
                        let why = format!("write to {} failed: {e}", entry.topic);
                        failed = Some(why.clone());
                        Err(why)
                    }
                }
            }
        };
        let done = match &outcome {
            Ok(()) => true,
            Err(why) => why.starts_with("replayed,"),
        };
        if done {
            replayed += 1;
        }
        if items.len() < MAX_ITEMS {
            let mut item = json!({"id": summary.id(), "callId": summary.call_id, "replayed": done});
            if let Err(why) = outcome {
                item["reason"] = json!(why);
            }
            items.push(item);
        }
    }
    if !body.dry_run {
        audit(
            &ctx.log,
            req,
            "replay dead letters",
            &format!(
                "group={group} topic={} dead_letter_topic={dlq} matched={} replayed={replayed} \
                 already_replayed={already} force={}",
                entry.topic,
                selection.letters.len(),
                body.force
            ),
        );
    }
    Ok(ok(json!({
        "matched": selection.letters.len(),
        "replayed": replayed,
        "alreadyReplayed": already,
        "dryRun": body.dry_run,
        "items": items,
        "nextCursor": selection.next.map(|c| c.encode()),
    })))
}
