//! The HTTP handlers.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::{StatusCode, Uri, header};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use futures::StreamExt;
use serde_json::json;
use slog::{debug, warn};

use super::envelope::{CallError, envelope};
use super::guard::UNKNOWN_SOURCE;
use super::head_guard::CloseSignal;
use super::quota::retry_after_secs;
use super::request;
use super::{ApiConfig, ApiState};
use crate::config::AckMode;
use crate::delivery::forward::IngestHeaders;
use crate::delivery::headers::{forwardable_by, never_forwarded};
use crate::idempotency::{Claim, Decision};
use crate::message::{CallMessage, CallMethod, canonical_header_key};
use crate::metrics::classes as metrics;
use crate::policy::{Destination, Host};
use crate::producer::{Call, ProduceError, Refusal, SubmitError};
use crate::stats::inc;

/// `POST /rpc/call`: validate, authorise and queue one call.
pub async fn call(req: HttpRequest, payload: web::Payload, state: web::Data<ApiState>) -> HttpResponse {
    inc(&state.stats.server.received);
    let mut seen = Seen::default();
    match accept(&req, payload, &state, &mut seen).await {
        Ok(answer) => {
            count_idempotent(&state, &answer);
            accepted(&answer)
        }
        Err(e) => {
            count_refusal(&state, &e, &seen);
            if e == CallError::Timeout {
                close_after_response(&req);
            }
            e.error_response()
        }
    }
}

/// Counts a repeat answered with its key's first id.
pub(super) fn count_idempotent(state: &ApiState, answer: &Answer) {
    if answer.replayed {
        inc(&state.stats.server.idempotent_replays);
    }
}

/// Counts and logs a refused call (one `/rpc/call`, or one item of a batch).
pub(super) fn count_refusal(state: &ApiState, e: &CallError, seen: &Seen) {
    if let Some(reason) = refusal(e, seen.overload) {
        state.stats.server.intake.refused(reason, &seen.acl);
    }
    match e {
        CallError::Overload | CallError::ShuttingDown => inc(&state.stats.server.overload),
        CallError::KafkaFailed | CallError::AckTimeout | CallError::KafkaTooLarge => {}
        CallError::InProgress => inc(&state.stats.server.idempotent_conflicts),
        CallError::IdempotencyUnavailable => inc(&state.stats.server.idempotency_unavailable),
        CallError::RecordTooLarge => {
            inc(&state.stats.server.rejected);
            inc(&state.stats.server.too_large);
        }
        CallError::Destination => {
            inc(&state.stats.server.rejected);
            inc(&state.stats.server.destination_refused);
        }
        CallError::Forbidden => {
            inc(&state.stats.server.rejected);
            inc(&state.stats.server.acl_refused);
        }
        // Counted where they are decided (quota per ACL).
        CallError::Throttled { .. } => inc(&state.stats.server.throttled),
        CallError::Quota { .. } => {}
        _ => inc(&state.stats.server.rejected),
    }
    debug!(state.log, "call refused"; "reason" => %e);
}

/// What [`enqueue`] learnt before it failed, for the refusal's labels.
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// The caller's ACL once it passed the check ("" before: a refused caller's name is
    /// input, and would make a label per guess).
    acl: String,
    /// Why the queue refused the call, if it did.
    overload: Option<Refusal>,
}

/// The `/metrics` refusal reason of `e`; `None` for calls that were accepted and then
/// failed in Kafka (they are not refusals at intake).
fn refusal(e: &CallError, overload: Option<Refusal>) -> Option<metrics::Refusal> {
    use metrics::Refusal as R;
    Some(match e {
        CallError::Overload => match overload {
            Some(Refusal::AclShare) => R::AclShare,
            _ => R::QueueFull,
        },
        // The queue takes nothing more while the process stops.
        CallError::ShuttingDown => R::QueueFull,
        CallError::KafkaFailed
        | CallError::AckTimeout
        | CallError::KafkaTooLarge
        | CallError::InProgress
        | CallError::IdempotencyUnavailable => return None,
        CallError::RecordTooLarge => R::TooLarge,
        CallError::Destination => R::Destination,
        CallError::Forbidden => R::Acl,
        CallError::Throttled { .. } => R::Throttled,
        CallError::Quota { .. } => R::Quota,
        _ => R::Invalid,
    })
}

/// The success envelope, written directly: this is the hot path, and a call
/// id (a UUID) never needs escaping. Same bytes as [`envelope`]. A repeat of an idempotency
/// key's call says so in `Idempotent-Replayed: true` (the body is the first answer's).
fn accepted(answer: &Answer) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    if answer.replayed {
        response.insert_header((IDEMPOTENT_REPLAYED, "true"));
    }
    response.content_type("application/json").body(format!(
        r#"{{"data":"{}","errno":0,"msg":"发送成功"}}"#,
        answer.id
    ))
}

/// The request header carrying an idempotency key.
pub(super) const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The response header that marks an answer as a repeat of the key's first.
const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

async fn accept(
    req: &HttpRequest,
    payload: web::Payload,
    state: &ApiState,
    seen: &mut Seen,
) -> Result<Answer, CallError> {
    // A source that failed too many ACL checks is refused before its body is even read.
    not_blocked(req, state)?;
    // One snapshot for the whole request, so a reload never mixes old and new settings.
    let config = state.config.load_full();
    let body = read_body(req, payload, config.body_limit, state.read_timeout).await?;
    let header_key = idempotency_header(req)?;
    let admitted = admit(req, state, &config, &body, None, header_key, seen)?;
    let deadline = tokio::time::Instant::now() + config.ack_timeout;
    let decided = decide(state, &admitted, deadline, true).await?;
    let queued = submit(state, admitted, decided, seen)?;
    acknowledged(state, queued, deadline).await
}

/// The `Idempotency-Key` header, when present.
///
/// # Errors
/// [`CallError::IdempotencyKey`]: more than one, or not a valid key.
pub(super) fn idempotency_header(req: &HttpRequest) -> Result<Option<String>, CallError> {
    let mut values = req.headers().get_all(IDEMPOTENCY_KEY);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(CallError::IdempotencyKey);
    }
    match value.to_str() {
        Ok(key) if crate::idempotency::valid_key(key) => Ok(Some(key.to_owned())),
        _ => Err(CallError::IdempotencyKey),
    }
}

/// `Err` while the request's source is blocked for failed ACL checks.
pub(super) fn not_blocked(req: &HttpRequest, state: &ApiState) -> Result<(), CallError> {
    let source = req.peer_addr().map_or(UNKNOWN_SOURCE, |a| a.ip());
    match state.guard.blocked(source) {
        Some(left) => Err(CallError::Throttled {
            retry_after: retry_after_secs(left),
        }),
        None => Ok(()),
    }
}

/// A call that passed every check, ready for the queue.
#[derive(Debug)]
pub(super) struct Admitted {
    /// The call as the producer takes it (`want_ack` still the caller's).
    call: Call,
    /// The call id, which an idempotency claim binds its key to.
    id: uuid::Uuid,
    /// The caller's idempotency key, when given.
    idempotency_key: Option<String>,
}

/// What to do with an admitted call once its idempotency key (if any) is decided.
#[derive(Debug)]
pub(super) enum Decided {
    /// Queue it; settle the claim (when there is one) once Kafka answered.
    Fresh(Option<Claim>),
    /// Its key's call is in Kafka already: answer with that id.
    Replay(String),
}

/// A call in the queue: its id, and Kafka's acknowledgement when the caller waits for it.
#[derive(Debug)]
pub(super) struct Queued {
    /// The call id.
    pub id: String,
    ack: Option<tokio::sync::oneshot::Receiver<crate::producer::AckResult>>,
    /// The answer repeats an idempotency key's first.
    replayed: bool,
}

/// The answer to one accepted call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Answer {
    /// The call id.
    pub id: String,
    /// A repeat of an idempotency key: nothing new was written.
    pub replayed: bool,
}

/// Parses one call `body` and takes it through the checks (its own fields, the ACL, the
/// destination, the quota); `batch_ack` is a batch's own `ack`, used when the call has
/// none; `header_key` the request's `Idempotency-Key`.
pub(super) fn admit(
    req: &HttpRequest,
    state: &ApiState,
    config: &ApiConfig,
    body: &[u8],
    batch_ack: Option<AckMode>,
    header_key: Option<String>,
    seen: &mut Seen,
) -> Result<Admitted, CallError> {
    let call = request::parse(body)?;
    // A request's own checks come before the ACL's, as in the Go version.
    let idempotency_key = match (call.idempotency_key, header_key) {
        (Some(field), Some(header)) if field != header => return Err(CallError::IdempotencyKey),
        (field, header) => field.or(header),
    };
    if idempotency_key.is_some() && state.idempotency.is_none() {
        return Err(CallError::IdempotencyOff);
    }
    let now = chrono::Utc::now().timestamp_millis();
    let deliver_at = match call.schedule {
        Some(schedule) => schedule.due_ms(now, config.schedule_max)?,
        None => None,
    };
    let route = match config.acl.check(&call.acl_name, &call.acl_secret) {
        Ok(route) => route,
        Err(why) => {
            let source = req.peer_addr().map_or(UNKNOWN_SOURCE, |a| a.ip());
            state.guard.refused(&state.log, source, &call.acl_name, why);
            return Err(CallError::Forbidden);
        }
    };
    seen.acl.clone_from(&call.acl_name);
    // After authorisation, so the policy answers only to callers who hold an ACL, and
    // before the quota, so a refused destination spends none of it.
    if let Err(why) = destination_allowed(config, &call.acl_name, &call.uri) {
        debug!(state.log, "call refused: destination not allowed"; "acl" => &call.acl_name, "why" => why);
        return Err(CallError::Destination);
    }
    // The callback is a call of this caller's too: the same targets and address policy.
    if let Some((_, uri)) = &call.callback
        && let Err(why) = destination_allowed(config, &call.acl_name, uri)
    {
        debug!(state.log, "call refused: callback destination not allowed"; "acl" => &call.acl_name, "why" => why);
        return Err(CallError::Destination);
    }
    if let Some(quota) = &route.quota
        && let Err(wait) = quota.try_acquire()
    {
        state.stats.server.quota_refused_acl(&call.acl_name);
        return Err(CallError::Quota {
            retry_after: retry_after_secs(wait),
        });
    }
    let topic = route.topic.as_str();
    let id = uuid::Uuid::now_v7();
    let mut headers = caller_headers(req, &config.headers, topic);
    if !call.options.headers.is_empty() {
        headers.extend(call_headers(&call.options.headers, &config.headers, topic));
    }
    let message = CallMessage {
        headers,
        url: call.url,
        data: call.data,
        topic: topic.to_owned(),
        partition: 0,
        create_time: now,
        deliver_at,
        // POST is what a record without `Method` means: left out, the record stays Go's.
        method: call.options.method.filter(|m| *m != CallMethod::Post),
        content_type: call
            .options
            .content_type
            .or_else(|| call.data_is_json.then(|| "application/json".to_owned())),
        timeout_ms: call.options.timeout_ms,
        callback_url: call.callback.map(|(url, _)| url),
        callback_group: None,
    };
    let want_ack = call.ack.or(batch_ack).unwrap_or(config.default_ack) == AckMode::Kafka;
    Ok(Admitted {
        call: Call {
            id: id.to_string(),
            acl: call.acl_name,
            key: call.partition_key,
            message,
            want_ack,
        },
        id,
        idempotency_key,
    })
}

/// Decides an admitted call's idempotency key, by `deadline`; a call without one goes on.
/// `wait_pending`: see [`crate::idempotency::Idempotency::claim`].
///
/// # Errors
/// [`CallError::InProgress`] while the key's first call is on its way;
/// [`CallError::IdempotencyUnavailable`] when the key cannot be decided in time.
pub(super) async fn decide(
    state: &ApiState,
    admitted: &Admitted,
    deadline: tokio::time::Instant,
    wait_pending: bool,
) -> Result<Decided, CallError> {
    let Some(key) = admitted.idempotency_key.as_deref() else {
        return Ok(Decided::Fresh(None));
    };
    let idempotency = state.idempotency.as_ref().ok_or(CallError::IdempotencyOff)?;
    match idempotency
        .claim(&admitted.call.acl, key, admitted.id, deadline, wait_pending)
        .await
    {
        Ok(Decision::New(claim)) => Ok(Decided::Fresh(Some(claim))),
        Ok(Decision::Replay(id)) => Ok(Decided::Replay(id)),
        Ok(Decision::InProgress) => Err(CallError::InProgress),
        Err(e) => {
            warn!(state.log, "idempotency key not decided"; "acl" => &admitted.call.acl, "error" => %e);
            Err(CallError::IdempotencyUnavailable)
        }
    }
}

/// Queues an admitted call as decided (a replay queues nothing).
pub(super) fn submit(
    state: &ApiState,
    admitted: Admitted,
    decided: Decided,
    seen: &mut Seen,
) -> Result<Queued, CallError> {
    let claim = match decided {
        Decided::Replay(id) => {
            return Ok(Queued {
                id,
                ack: None,
                replayed: true,
            });
        }
        Decided::Fresh(claim) => claim,
    };
    let Admitted { mut call, .. } = admitted;
    let want_ack = call.want_ack;
    // A claimed key is settled by Kafka's answer, whether or not the caller waits for it.
    call.want_ack |= claim.is_some();
    let id = call.id.clone();
    let acl = call.acl.clone();
    let topic = call.message.topic.clone();
    let submitted = state.producer.submit(call);
    let ack = match (submitted, claim) {
        (Ok(ack), None) => ack,
        (Ok(ack), Some(claim)) => settle_after_ack(state, claim, ack, want_ack),
        (Err(e), claim) => {
            if let Some(claim) = claim {
                release(state, claim);
            }
            return Err(submit_refused(state, e, &acl, &topic, seen));
        }
    };
    inc(&state.stats.server.accepted);
    state.stats.server.intake.accepted.inc(&acl);
    Ok(Queued {
        id,
        ack,
        replayed: false,
    })
}

/// Settles `claim` once Kafka answered for its call, then passes the answer on to the caller
/// when it waits for it. Settling first: once the caller has its answer, a repeat finds the
/// key done rather than pending.
fn settle_after_ack(
    state: &ApiState,
    claim: Claim,
    ack: Option<tokio::sync::oneshot::Receiver<crate::producer::AckResult>>,
    want_ack: bool,
) -> Option<tokio::sync::oneshot::Receiver<crate::producer::AckResult>> {
    let (Some(idempotency), Some(ack)) = (state.idempotency.clone(), ack) else {
        return None;
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let log = state.log.clone();
    tokio::spawn(async move {
        let outcome = ack.await;
        idempotency
            .settle(&claim, matches!(outcome, Ok(Ok(_))), &log)
            .await;
        // A dropped acknowledgement (the producer stopped) drops `tx` too: the caller then
        // hears that Kafka failed.
        if let Ok(outcome) = outcome {
            tx.send(outcome).ok();
        }
    });
    want_ack.then_some(rx)
}

/// Frees a claimed key whose call was refused by the queue.
fn release(state: &ApiState, claim: Claim) {
    if let Some(idempotency) = state.idempotency.clone() {
        let log = state.log.clone();
        tokio::spawn(async move { idempotency.settle(&claim, false, &log).await });
    }
}

/// The answer to a call the queue refused, counted.
fn submit_refused(state: &ApiState, e: SubmitError, acl: &str, topic: &str, seen: &mut Seen) -> CallError {
    match e {
        SubmitError::Overload(why) => {
            let stats = &state.stats.server;
            inc(match why {
                Refusal::QueueFull => &stats.overload_queue_full,
                Refusal::AclShare => &stats.overload_acl_share,
            });
            stats.overloaded_acl(acl);
            seen.overload = Some(why);
            CallError::Overload
        }
        SubmitError::TooLarge(e) => {
            debug!(state.log, "call refused: record too large"; "acl" => acl,
                "topic" => topic, "needed" => e.needed, "limit" => e.limit);
            CallError::RecordTooLarge
        }
        SubmitError::ShuttingDown => CallError::ShuttingDown,
        SubmitError::UnknownTopic(t) => {
            // Config validation ties every ACL topic to kafka.topics, so this is a bug.
            warn!(state.log, "acl topic has no partition count"; "topic" => t);
            CallError::KafkaFailed
        }
    }
}

/// The call's answer once Kafka acknowledged it (at once when the caller did not ask to
/// wait), waiting until `deadline` at most.
pub(super) async fn acknowledged(
    state: &ApiState,
    queued: Queued,
    deadline: tokio::time::Instant,
) -> Result<Answer, CallError> {
    let Queued { id, ack, replayed } = queued;
    if let Some(ack) = ack {
        match tokio::time::timeout_at(deadline, ack).await {
            Ok(Ok(Ok(_offset))) => {}
            Ok(Ok(Err(ProduceError::TooLarge(_)))) => return Err(CallError::KafkaTooLarge),
            Ok(Ok(Err(e))) => {
                warn!(state.log, "acknowledged call failed"; "call_id" => &id, "error" => %e);
                return Err(CallError::KafkaFailed);
            }
            Ok(Err(_)) => return Err(CallError::KafkaFailed),
            Err(_) => return Err(CallError::AckTimeout),
        }
    }
    Ok(Answer { id, replayed })
}

/// The ingest destination check: the ACL's `targets`, then, for an IP-literal host, the
/// global address policy (names are judged at connect time, on what they resolve to).
/// `Err` says why, for the log.
fn destination_allowed(config: &ApiConfig, acl: &str, uri: &Uri) -> Result<(), String> {
    // `request::parse` accepted the URL as absolute http(s) with a host.
    let dest = Destination::from_uri(uri).ok_or_else(|| "not an http(s) URL".to_owned())?;
    if let Some(targets) = config.acl.targets(acl)
        && !targets.allows(&dest)
    {
        return Err("outside the ACL's targets".to_owned());
    }
    match dest.host {
        Host::Ip(ip) => config
            .destinations
            .check(ip, dest.port)
            .map_err(|r| r.to_string()),
        Host::Ambiguous(h) => Err(format!("ambiguous numeric host '{h}'")),
        Host::Name(_) => Ok(()),
    }
}

/// Reads the body, refusing it as soon as it passes `limit` bytes, or when it has not all
/// arrived within `deadline` of the handler's start (the head's own deadline is actix's
/// `client_request_timeout`, also `http.server.read.timeout`).
///
/// The buffer grows with the bytes that arrive: a declared `Content-Length` reserves nothing,
/// so a head that promises 1 MiB and sends nothing costs no memory.
pub(super) async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    deadline: Duration,
) -> Result<web::BytesMut, CallError> {
    if declared_length(req.head()).is_some_and(|n| n > limit as u64) {
        return Err(CallError::TooLarge);
    }
    tokio::time::timeout(deadline, read_limited(payload, limit))
        .await
        .map_err(|_| CallError::Timeout)?
}

/// The request's `Content-Length`, when present and a number.
pub(crate) fn declared_length(req: &actix_web::dev::RequestHead) -> Option<u64> {
    req.headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

async fn read_limited(mut payload: web::Payload, limit: usize) -> Result<web::BytesMut, CallError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| CallError::Read)?;
        if body.len() + chunk.len() > limit {
            return Err(CallError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The caller's headers as the Go version stored them (canonical keys, every
/// value, without `Host` and `Transfer-Encoding`), less every header that no
/// consumer entry of `topic` would forward: those never reach Kafka, the
/// dead-letter topic or a log (see `crate::delivery::forward`).
fn caller_headers(req: &HttpRequest, keep: &IngestHeaders, topic: &str) -> BTreeMap<String, Vec<String>> {
    // Names a `Connection` header lists are hop-by-hop for this request (usually none: no
    // allocation then).
    let named_by_connection: Vec<String> = req
        .headers()
        .get_all(header::CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .filter(|token| !token.is_empty())
        .collect();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in req.headers() {
        // actix keeps names in lower case. Most of what a caller sends (Host, Content-Length,
        // Content-Type, Connection) is never forwarded: skipped before anything is copied.
        let lower = name.as_str();
        if never_forwarded(lower) || named_by_connection.iter().any(|n| n == lower) {
            continue;
        }
        let key = canonical_header_key(lower);
        if !keep.keeps(topic, &key) {
            continue;
        }
        headers
            .entry(key)
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    if headers.is_empty() {
        return headers;
    }
    // The same rules delivery applies (value validity among them), so what is stored is
    // exactly what could travel.
    forwardable_by(&headers, |name| keep.keeps(topic, name))
}

/// A call's own `headers` as the record keeps them: the same forwarding rules as the
/// request's headers. They replace request headers of the same name (the caller said so
/// explicitly).
fn call_headers(
    given: &[(String, String)],
    keep: &IngestHeaders,
    topic: &str,
) -> BTreeMap<String, Vec<String>> {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in given {
        let lower = name.to_ascii_lowercase();
        if never_forwarded(&lower) {
            continue;
        }
        let key = canonical_header_key(&lower);
        if keep.keeps(topic, &key) {
            headers.entry(key).or_default().push(value.clone());
        }
    }
    forwardable_by(&headers, |name| keep.keeps(topic, name))
}

/// `/rpc/server/mock`: a target that accepts any method and body (200, empty body), up to
/// `http.server.body.limit` bytes received within `http.server.read.timeout`; larger bodies
/// get 413 and late ones 408, as on `/rpc/call`.
///
/// The body is read (and discarded) so the connection can be kept alive: a
/// response sent before the request body is consumed makes actix close it.
pub async fn mock(req: HttpRequest, payload: web::Payload, state: web::Data<ApiState>) -> HttpResponse {
    let limit = state.config.load().body_limit;
    if declared_length(req.head()).is_some_and(|n| n > limit as u64) {
        return CallError::TooLarge.error_response();
    }
    match tokio::time::timeout(state.read_timeout, discard_limited(payload, limit)).await {
        Ok(Ok(())) => HttpResponse::Ok().finish(),
        Ok(Err(e)) => e.error_response(),
        Err(_) => {
            close_after_response(&req);
            CallError::Timeout.error_response()
        }
    }
}

/// Ends the connection right after this response, instead of letting actix drain the rest
/// of a late body for up to `http.server.write.timeout` (see `super::head_guard`).
pub(super) fn close_after_response(req: &HttpRequest) {
    if let Some(signal) = req.conn_data::<CloseSignal>() {
        signal.close_after_response();
    }
}

/// Reads and drops a body, counting its bytes against `limit`.
async fn discard_limited(mut payload: web::Payload, limit: usize) -> Result<(), CallError> {
    let mut seen = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| CallError::Read)?;
        seen = seen.saturating_add(chunk.len());
        if seen > limit {
            return Err(CallError::TooLarge);
        }
    }
    Ok(())
}

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> HttpResponse {
    envelope(StatusCode::OK, 0, "success", json!("alive"))
}

/// `GET /readyz` on the public listener: ready or not, nothing more. Broker addresses,
/// topics and errors are for operators, on the admin listener (`super::admin`).
pub async fn readyz(state: web::Data<ApiState>) -> HttpResponse {
    if readiness(&state.readiness, &state.stats, state.control.as_deref()).is_ok() {
        envelope(StatusCode::OK, 0, "success", json!("ready"))
    } else {
        envelope(
            StatusCode::SERVICE_UNAVAILABLE,
            -1,
            "not ready",
            json!("not ready"),
        )
    }
}

/// Kafka is reachable, every configured topic exists, the control topic (when on) has been
/// read up to date and reads without error, and no owned partition is stalled (behind its log
/// end without moving for its entry's `stallAfter`). `Ok` carries the readiness detail, `Err`
/// why not ready (each stalled partition, with its reason).
pub(crate) fn readiness(
    readiness: &crate::kafka::topics::Readiness,
    stats: &crate::stats::Stats,
    control: Option<&crate::control::Control>,
) -> Result<String, String> {
    let detail = readiness.detail();
    if !readiness.is_ready() {
        return Err(detail);
    }
    if let Some(control) = control {
        let status = control.status();
        // Consumer entries wait for the first catch-up (a pause written before this process
        // started must hold): until then nothing is delivered, which readiness must say.
        match (status.caught_up, status.error) {
            (_, Some(error)) => {
                return Err(format!("control topic {} unreadable: {error}", control.topic()));
            }
            (false, None) => {
                return Err(format!(
                    "control topic {} not read up to date yet",
                    control.topic()
                ));
            }
            (true, None) => {}
        }
    }
    let stalled = stats.stalled_partitions();
    if stalled.is_empty() {
        return Ok(detail);
    }
    let names: Vec<String> = stalled.iter().map(ToString::to_string).collect();
    Err(format!(
        "{} stalled partition(s): {}",
        stalled.len(),
        names.join("; ")
    ))
}

/// Any other method than POST on `/rpc/call`. The `Allow` header is required on a 405
/// (RFC 9110, section 15.5.6); schemathesis found it missing. Counted as received and
/// rejected, as the Go version counted every request to `/rpc/call`.
pub async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    // The public listener always has its state; the 405 layer's own unit test does not.
    if let Some(state) = req.app_data::<web::Data<ApiState>>() {
        inc(&state.stats.server.received);
        inc(&state.stats.server.rejected);
    }
    let mut response = CallError::Method.error_response();
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    response
}

/// Any unknown path.
pub async fn not_found() -> HttpResponse {
    CallError::NotFound.error_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    #[actix_web::test]
    async fn a_refused_method_says_which_one_is_allowed() {
        let resp = method_not_allowed(actix_web::test::TestRequest::get().to_http_request()).await;
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers().get(header::ALLOW).unwrap(), "POST");
        let body = resp.into_body().try_into_bytes().unwrap();
        assert_eq!(
            &body[..],
            r#"{"data":"","errno":-1,"msg":"方法不允许"}"#.as_bytes()
        );
    }

    #[test]
    fn fast_success_envelope_matches_the_general_one() {
        let id = uuid::Uuid::now_v7().to_string();
        let answer = Answer {
            id: id.clone(),
            replayed: false,
        };
        let fast = accepted(&answer).into_body().try_into_bytes().unwrap();
        let general = envelope(StatusCode::OK, 0, "发送成功", json!(id))
            .into_body()
            .try_into_bytes()
            .unwrap();
        assert_eq!(fast, general);
    }

    #[test]
    fn the_idempotency_header_is_one_valid_key() {
        use actix_web::test::TestRequest;
        let with = |values: &[&[u8]]| {
            let mut req = TestRequest::post();
            for v in values {
                req = req.append_header((IDEMPOTENCY_KEY, header::HeaderValue::from_bytes(v).unwrap()));
            }
            idempotency_header(&req.to_http_request())
        };
        assert_eq!(with(&[]), Ok(None));
        assert_eq!(with(&[b"order-42"]), Ok(Some("order-42".to_owned())));
        assert_eq!(with(&[b"a", b"a"]), Err(CallError::IdempotencyKey), "twice");
        assert_eq!(with(&[b""]), Err(CallError::IdempotencyKey));
        assert_eq!(with(&[&[b'k'; 256]]), Err(CallError::IdempotencyKey));
        assert_eq!(
            with(&[b"caf\xc3\xa9"]),
            Err(CallError::IdempotencyKey),
            "not visible ASCII"
        );
    }

    #[test]
    fn refusals_get_their_metrics_reason_and_kafka_failures_none() {
        use metrics::Refusal as R;
        let cases = [
            (CallError::Overload, Some(Refusal::AclShare), Some(R::AclShare)),
            (CallError::Overload, Some(Refusal::QueueFull), Some(R::QueueFull)),
            (CallError::ShuttingDown, None, Some(R::QueueFull)),
            (CallError::RecordTooLarge, None, Some(R::TooLarge)),
            (CallError::Destination, None, Some(R::Destination)),
            (CallError::Forbidden, None, Some(R::Acl)),
            (CallError::Throttled { retry_after: 1 }, None, Some(R::Throttled)),
            (CallError::Quota { retry_after: 1 }, None, Some(R::Quota)),
            (CallError::Timeout, None, Some(R::Invalid)),
            (CallError::KafkaFailed, None, None),
            (CallError::AckTimeout, None, None),
            (CallError::KafkaTooLarge, None, None),
            (CallError::InProgress, None, None),
            (CallError::IdempotencyUnavailable, None, None),
            (CallError::IdempotencyKey, None, Some(R::Invalid)),
            (CallError::IdempotencyOff, None, Some(R::Invalid)),
        ];
        for (error, overload, expected) in cases {
            assert_eq!(refusal(&error, overload), expected, "{error:?}");
        }
    }
}
