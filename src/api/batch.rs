//! `POST /rpc/calls`: many calls in one request.
//!
//! The body is `{"calls": [<call>, ...], "ack": "queue" | "kafka"}`, each `<call>` a
//! `/rpc/call` body with its own ACL. Items are independent: each goes through the same
//! checks as a single call and gets its own answer, in order, inside the envelope's `data`:
//! `{"data": <id or "">, "errno": N, "msg": "...", "status": <the HTTP status a single call
//! would have had>}`. A bad item refuses only itself. With `ack: "kafka"` (the batch's or an
//! item's own) the answer comes once every such item is acknowledged or has failed, within
//! one `kafka.producer.ack.timeout.ms` for the whole batch.
//!
//! The whole batch is refused (one envelope, no items) only when it cannot be read as a
//! batch: the body (unreadable, over `http.server.body.limit`, late), not a JSON object,
//! `calls` missing or not an array (`calls无效`), or more than `http.server.batch.max.calls`
//! items (413 `批量过大`), or an `Idempotency-Key` header (`idempotency_key无效`: each item
//! carries its own `idempotency_key`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::ApiState;
use super::envelope::{CallError, envelope};
use super::handlers::{
    Answer, IDEMPOTENCY_KEY, Seen, acknowledged, admit, close_after_response, count_idempotent,
    count_refusal, decide, not_blocked, read_body, submit,
};
use crate::config::AckMode;
use crate::rawjson;
use crate::stats::inc;

/// A batch as read: its items (raw, parsed one by one later) and its own `ack`.
#[derive(Debug)]
pub struct Batch<'a> {
    /// The items, in order.
    pub calls: Vec<&'a RawValue>,
    /// The batch's `ack`, for items without their own.
    pub ack: Option<AckMode>,
}

/// Reads `body` as a batch of at most `max` calls.
///
/// # Errors
/// Not a JSON object ([`CallError::Json`]); `calls` missing or not an array
/// ([`CallError::Batch`]); more than `max` items ([`CallError::BatchTooLarge`]); `ack` not
/// `"queue"` or `"kafka"` ([`CallError::Ack`]).
pub fn parse(body: &[u8], max: usize) -> Result<Batch<'_>, CallError> {
    let fields = rawjson::pick(body, &["calls", "ack"]).map_err(|_| CallError::Json)?;
    let calls = fields.raw("calls").ok_or(CallError::Batch)?;
    // Items stay raw text (serde_json's scanner, no tree): each is parsed by the single
    // call's parser, so a deep or odd item costs what it costs on /rpc/call.
    let calls: Vec<&RawValue> = serde_json::from_str(calls.get()).map_err(|_| CallError::Batch)?;
    if calls.len() > max {
        return Err(CallError::BatchTooLarge);
    }
    let ack = match fields.raw("ack").filter(|raw| raw.get() != "null") {
        None => None,
        Some(raw) => match rawjson::string(raw).as_deref() {
            Some("queue") => Some(AckMode::Queue),
            Some("kafka") => Some(AckMode::Kafka),
            _ => return Err(CallError::Ack),
        },
    };
    Ok(Batch { calls, ack })
}

/// `POST /rpc/calls`.
pub async fn calls(req: HttpRequest, payload: web::Payload, state: web::Data<ApiState>) -> HttpResponse {
    let config = state.config.load_full();
    let read = match not_blocked(&req, &state) {
        Ok(()) => read_body(&req, payload, config.body_limit, state.read_timeout).await,
        Err(e) => Err(e),
    };
    let body = match read {
        Ok(body) => body,
        Err(e) => return refused_whole(&req, &state, &e),
    };
    let batch = match parse(&body, config.batch_max_calls) {
        Ok(batch) => batch,
        Err(e) => return refused_whole(&req, &state, &e),
    };
    // A header would give every item the same key: each item has its own field instead.
    if req.headers().contains_key(IDEMPOTENCY_KEY) {
        return refused_whole(&req, &state, &CallError::IdempotencyKey);
    }
    let deadline = tokio::time::Instant::now() + config.ack_timeout;
    let admitted: Vec<_> = batch
        .calls
        .iter()
        .map(|item| {
            inc(&state.stats.server.received);
            let mut seen = Seen::default();
            let admitted = not_blocked(&req, &state).and_then(|()| {
                admit(
                    &req,
                    &state,
                    &config,
                    item.get().as_bytes(),
                    batch.ack,
                    None,
                    &mut seen,
                )
            });
            (admitted, seen)
        })
        .collect();
    // Idempotency keys are decided together (each a claim write and its read-back); then
    // every item is queued, in order, before any acknowledgement is awaited: they travel in
    // the same Kafka batches. So an item cannot wait for a pending key (it may be another
    // item's): that answers 409 at once.
    let decided = futures::future::join_all(admitted.into_iter().map(|(admitted, seen)| {
        let state = &state;
        async move {
            let decided = match admitted {
                Ok(admitted) => decide(state, &admitted, deadline, false)
                    .await
                    .map(|decided| (admitted, decided)),
                Err(e) => Err(e),
            };
            (decided, seen)
        }
    }))
    .await;
    let queued: Vec<_> = decided
        .into_iter()
        .map(|(decided, mut seen)| {
            let queued = decided.and_then(|(admitted, decided)| submit(&state, admitted, decided, &mut seen));
            (queued, seen)
        })
        .collect();
    let answers = futures::future::join_all(queued.into_iter().map(|(queued, seen)| {
        let state = &state;
        async move {
            let result = match queued {
                Ok(queued) => acknowledged(state, queued, deadline).await,
                Err(e) => Err(e),
            };
            match &result {
                Ok(answer) => count_idempotent(state, answer),
                Err(e) => count_refusal(state, e, &seen),
            }
            item_answer(&result)
        }
    }))
    .await;
    envelope(StatusCode::OK, 0, "发送成功", Value::Array(answers))
}

/// The answer to a batch refused whole, counted as one refused request.
fn refused_whole(req: &HttpRequest, state: &ApiState, e: &CallError) -> HttpResponse {
    inc(&state.stats.server.received);
    count_refusal(state, e, &Seen::default());
    if *e == CallError::Timeout {
        close_after_response(req);
    }
    e.error_response()
}

/// One item's answer: a single call's envelope plus the HTTP status it would have had, and
/// `"replayed": true` for the repeat of an idempotency key (the single call's header).
fn item_answer(result: &Result<Answer, CallError>) -> Value {
    match result {
        Ok(Answer { id, replayed: false }) => {
            json!({"data": id, "errno": 0, "msg": "发送成功", "status": 200})
        }
        Ok(Answer { id, replayed: true }) => {
            json!({"data": id, "errno": 0, "msg": "发送成功", "replayed": true, "status": 200})
        }
        Err(e) => json!({
            "data": "",
            "errno": e.errno(),
            "msg": e.msg(),
            "status": e.status_code().as_u16(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALL: &str = r#"{"acl":{"name":"n","secret":"s"},"url":"http://h/","data":"d","partition_key":""}"#;

    #[test]
    fn a_batch_is_an_object_with_an_array_of_calls() {
        let body = format!(r#"{{"calls":[{CALL},{CALL},5,"x",null],"ack":"kafka"}}"#);
        let batch = parse(body.as_bytes(), 10).unwrap();
        assert_eq!(batch.calls.len(), 5);
        assert_eq!(batch.calls[0].get(), CALL);
        assert_eq!(batch.calls[2].get(), "5");
        assert_eq!(batch.ack, Some(AckMode::Kafka));
        assert_eq!(parse(br#"{"calls":[]}"#, 10).unwrap().calls.len(), 0);
    }

    #[test]
    fn only_an_unreadable_batch_is_refused_whole() {
        let cases: &[(&str, CallError)] = &[
            ("", CallError::Json),
            ("[]", CallError::Json),
            ("null", CallError::Json),
            ("{}", CallError::Batch),
            (r#"{"calls":{}}"#, CallError::Batch),
            (r#"{"calls":"x"}"#, CallError::Batch),
            (r#"{"calls":[1,2,3,4]}"#, CallError::BatchTooLarge),
            (r#"{"calls":[],"ack":"disk"}"#, CallError::Ack),
        ];
        for (body, want) in cases {
            assert_eq!(parse(body.as_bytes(), 3).err().as_ref(), Some(want), "{body}");
        }
    }

    #[test]
    fn a_deep_item_is_kept_raw_without_recursion() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let body = format!(r#"{{"calls":[{deep},{CALL}]}}"#);
        let batch = parse(body.as_bytes(), 10).unwrap();
        assert_eq!(batch.calls.len(), 2);
        assert_eq!(
            crate::api::request::parse(batch.calls[0].get().as_bytes()).err(),
            Some(CallError::Json)
        );
    }

    #[test]
    fn item_answers_carry_the_single_call_envelope_and_status() {
        assert_eq!(
            item_answer(&Ok(Answer {
                id: "id-1".into(),
                replayed: false
            }))
            .to_string(),
            r#"{"data":"id-1","errno":0,"msg":"发送成功","status":200}"#
        );
        assert_eq!(
            item_answer(&Ok(Answer {
                id: "id-1".into(),
                replayed: true
            }))
            .to_string(),
            r#"{"data":"id-1","errno":0,"msg":"发送成功","replayed":true,"status":200}"#
        );
        assert_eq!(
            item_answer(&Err(CallError::InProgress)).to_string(),
            r#"{"data":"","errno":-1,"msg":"请求处理中","status":409}"#
        );
        assert_eq!(
            item_answer(&Err(CallError::Url)).to_string(),
            r#"{"data":"","errno":-1,"msg":"url无效","status":400}"#
        );
        assert_eq!(
            item_answer(&Err(CallError::KafkaFailed)).to_string(),
            r#"{"data":"","errno":2,"msg":"Kafka写入失败","status":503}"#
        );
    }
}
