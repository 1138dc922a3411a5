//! The Go version's response envelope `{"data":..,"errno":N,"msg":".."}` and
//! the errors `/rpc/call` answers with.
//!
//! Keys are written in sorted order, as Go's `json.Marshal` of a map did, and
//! the `errno`/`msg` pairs are the Go version's, so old clients keep working.
//! Unlike the Go version, the HTTP status carries meaning too (it was always 200).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{Value, json};

/// Builds an envelope response.
pub fn envelope(status: StatusCode, errno: i32, msg: &str, data: Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .body(json!({"data": data, "errno": errno, "msg": msg}).to_string())
}

/// Every way `/rpc/call` (and the routes beside it) can refuse a request.
///
/// The `Display` text is the English gloss, for logs; the wire message is [`CallError::msg`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The body could not be read (client abort, read timeout). Go: errno 1.
    #[error("request body could not be read")]
    Read,
    /// The body exceeds `http.server.body.limit`.
    #[error("request body is larger than the limit")]
    TooLarge,
    /// The call's Kafka record, with room for a dead letter, is larger than a batch
    /// (`kafka.producer.batch.bytes`) or the topic's `max.message.bytes`: it could never be
    /// written, so it is refused before anything is queued.
    #[error("the call's record is larger than Kafka can take")]
    RecordTooLarge,
    /// The body is not a JSON object.
    #[error("body is not a JSON object")]
    Json,
    /// `url` missing, not a string, or not an absolute http(s) URL.
    #[error("url is missing, not a string or not an http(s) URL")]
    Url,
    /// `data` missing or not a string.
    #[error("data is missing or not a string")]
    Data,
    /// `partition_key` missing or not a string.
    #[error("partition_key is missing or not a string")]
    PartitionKey,
    /// `acl` missing or not an object.
    #[error("acl is missing or not an object")]
    Acl,
    /// `acl.name` missing or not a string.
    #[error("acl.name is missing or not a string")]
    AclName,
    /// `acl.secret` missing or not a string.
    #[error("acl.secret is missing or not a string")]
    AclSecret,
    /// `ack` present but not `"queue"` or `"kafka"`.
    #[error("ack is not \"queue\" or \"kafka\"")]
    Ack,
    /// `deliver_at` not an RFC 3339 time or a non-negative integer of ms, or further ahead
    /// than `http.server.schedule.max.ms`.
    #[error("deliver_at is not a time, or too far ahead")]
    DeliverAt,
    /// `delay_ms` not a non-negative integer, longer than `http.server.schedule.max.ms`, or
    /// given together with `deliver_at`.
    #[error("delay_ms is not a non-negative integer, too long, or given with deliver_at")]
    DelayMs,
    /// `method` not one of POST, PUT, PATCH, DELETE, GET.
    #[error("method is not POST, PUT, PATCH, DELETE or GET")]
    CallMethod,
    /// `headers` not an object of at most 64 valid header names with string values.
    #[error("headers is not an object of valid header names and string values")]
    Headers,
    /// `content_type` not a non-empty valid header value.
    #[error("content_type is not a valid header value")]
    ContentType,
    /// `timeout_ms` not an integer from 1 to 3600000.
    #[error("timeout_ms is not an integer from 1 to 3600000")]
    TimeoutMs,
    /// `callback_url` not an absolute http(s) URL.
    #[error("callback_url is not an http(s) URL")]
    CallbackUrl,
    /// `idempotency_key` (or the `Idempotency-Key` header) empty, longer than 255 bytes, with
    /// control characters, the two given and different, or the header on `/rpc/calls` (each
    /// item has its own field).
    #[error("idempotency key is not 1 to 255 bytes without control characters")]
    IdempotencyKey,
    /// An idempotency key was given but `http.server.idempotency.topic` is `""`: the call
    /// would not be deduplicated, so it is refused rather than written.
    #[error("idempotency keys are off")]
    IdempotencyOff,
    /// The key's first call is still on its way to Kafka: try again (`Retry-After`).
    #[error("a call with this idempotency key is in progress")]
    InProgress,
    /// The key could not be decided: the claims are not read up to date, or Kafka did not
    /// take or return the claim in time. Nothing was written; try again (`Retry-After`).
    #[error("idempotency claims unavailable")]
    IdempotencyUnavailable,
    /// `POST /rpc/calls`: the body is not an object with a `calls` array of objects.
    #[error("calls is missing or not an array of objects")]
    Batch,
    /// `POST /rpc/calls`: more calls than `http.server.batch.max.calls`.
    #[error("more calls than the batch limit")]
    BatchTooLarge,
    /// Unknown ACL name or wrong secret.
    #[error("unknown acl name or wrong secret")]
    Forbidden,
    /// The URL is outside the ACL's `targets`, or its host is an IP literal the address
    /// policy refuses (loopback, metadata, `delivery.deny`...) or an ambiguous numeric form.
    #[error("destination not allowed")]
    Destination,
    /// Too many failed ACL checks from this source: blocked for a cool-down, the call is not
    /// looked at. `retry_after` in whole seconds.
    #[error("too many failed acl checks from this source")]
    Throttled {
        /// Seconds until the source is unblocked, for `Retry-After`.
        retry_after: u64,
    },
    /// The caller's ACL is over its quota (`rate`, `burst`). `retry_after` in whole seconds.
    #[error("acl over its ingest quota")]
    Quota {
        /// Seconds until a call fits the quota, for `Retry-After`.
        retry_after: u64,
    },
    /// The ingest queue is full.
    #[error("ingest queue is full")]
    Overload,
    /// bigpipe is shutting down.
    #[error("bigpipe is shutting down")]
    ShuttingDown,
    /// `"ack": "kafka"`: Kafka did not take the record.
    #[error("kafka did not take the record")]
    KafkaFailed,
    /// `"ack": "kafka"`: Kafka refused the record as too large (its limit shrank after the
    /// call was accepted); final, not retried.
    #[error("kafka refused the record as too large")]
    KafkaTooLarge,
    /// `"ack": "kafka"`: no answer from Kafka within `kafka.producer.ack.timeout.ms`.
    #[error("no acknowledgement from kafka in time")]
    AckTimeout,
    /// The method is not allowed on this path.
    #[error("method not allowed")]
    Method,
    /// No such path.
    #[error("no such path")]
    NotFound,
    /// The request (head and body) did not arrive within `http.server.read.timeout`.
    #[error("request not received in time")]
    Timeout,
    /// An admin request without the right `http.admin.token`.
    #[error("admin token missing or wrong")]
    Unauthorized,
}

impl CallError {
    /// The Go-compatible errno.
    pub fn errno(&self) -> i32 {
        match self {
            Self::Read => 1,
            Self::KafkaFailed => 2,
            Self::AckTimeout => 3,
            Self::KafkaTooLarge => 4,
            _ => -1,
        }
    }

    /// The wire message: the Go version's exact text where it had one.
    pub fn msg(&self) -> &'static str {
        match self {
            Self::Read => "内部错误",
            Self::TooLarge => "请求体过大",
            Self::RecordTooLarge => "消息过大",
            Self::Json => "JSON无效",
            Self::Url => "url无效",
            Self::Data => "data无效",
            Self::PartitionKey => "partition_key无效",
            Self::Acl => "acl无效",
            Self::AclName => "acl.name",
            Self::AclSecret => "acl.secret",
            Self::Ack => "ack无效",
            Self::DeliverAt => "deliver_at无效",
            Self::DelayMs => "delay_ms无效",
            Self::Batch => "calls无效",
            Self::CallMethod => "method无效",
            Self::Headers => "headers无效",
            Self::ContentType => "content_type无效",
            Self::TimeoutMs => "timeout_ms无效",
            Self::CallbackUrl => "callback_url无效",
            Self::BatchTooLarge => "批量过大",
            Self::IdempotencyKey => "idempotency_key无效",
            Self::IdempotencyOff => "幂等键未启用",
            Self::InProgress => "请求处理中",
            Self::IdempotencyUnavailable => "幂等状态不可用",
            Self::Forbidden => "权限错误",
            Self::Destination => "目标地址不允许",
            Self::Throttled { .. } => "请求过于频繁",
            Self::Quota { .. } => "超过配额",
            Self::Overload => "超过负载",
            Self::ShuttingDown => "服务正在关闭",
            Self::KafkaFailed => "Kafka写入失败",
            Self::AckTimeout => "等待Kafka确认超时",
            Self::KafkaTooLarge => "Kafka拒绝:消息过大",
            Self::Method => "方法不允许",
            Self::NotFound => "接口不存在",
            Self::Timeout => "请求超时",
            Self::Unauthorized => "未授权",
        }
    }
}

impl ResponseError for CallError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Read
            | Self::Json
            | Self::Url
            | Self::Data
            | Self::PartitionKey
            | Self::Acl
            | Self::AclName
            | Self::AclSecret
            | Self::Ack
            | Self::DeliverAt
            | Self::DelayMs
            | Self::Batch
            | Self::CallMethod
            | Self::Headers
            | Self::ContentType
            | Self::TimeoutMs
            | Self::CallbackUrl
            | Self::IdempotencyKey
            | Self::IdempotencyOff => StatusCode::BAD_REQUEST,
            Self::InProgress => StatusCode::CONFLICT,
            Self::TooLarge | Self::RecordTooLarge | Self::KafkaTooLarge | Self::BatchTooLarge => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::Forbidden | Self::Destination => StatusCode::FORBIDDEN,
            Self::Throttled { .. } | Self::Quota { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Overload | Self::ShuttingDown | Self::KafkaFailed | Self::IdempotencyUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::AckTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Method => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = envelope(self.status_code(), self.errno(), self.msg(), json!(""));
        if matches!(self, Self::Timeout) {
            // The rest of a late body may still be on its way: the connection cannot be
            // reused, so say so (actix closes it too, as the body was not read to its end).
            response
                .head_mut()
                .set_connection_type(actix_web::http::ConnectionType::Close);
        }
        if matches!(self, Self::Unauthorized) {
            response.headers_mut().insert(
                actix_web::http::header::WWW_AUTHENTICATE,
                actix_web::http::header::HeaderValue::from_static("Bearer"),
            );
        }
        let retry_after = match self {
            Self::Throttled { retry_after } | Self::Quota { retry_after } => Some(*retry_after),
            // Decided within moments: the first call's own ack, or the claims reader.
            Self::InProgress | Self::IdempotencyUnavailable => Some(1),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from(seconds),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    #[test]
    fn envelope_keys_are_sorted_like_go() {
        let resp = CallError::Forbidden.error_response();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let body = resp.into_body().try_into_bytes().unwrap();
        assert_eq!(&body[..], r#"{"data":"","errno":-1,"msg":"权限错误"}"#.as_bytes());
    }

    #[test]
    fn a_refused_destination_is_a_403_with_its_own_message() {
        let resp = CallError::Destination.error_response();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let body = resp.into_body().try_into_bytes().unwrap();
        assert_eq!(
            &body[..],
            r#"{"data":"","errno":-1,"msg":"目标地址不允许"}"#.as_bytes()
        );
    }

    #[test]
    fn throttle_and_quota_answer_429_with_retry_after() {
        for (e, msg) in [
            (CallError::Throttled { retry_after: 60 }, "请求过于频繁"),
            (CallError::Quota { retry_after: 60 }, "超过配额"),
        ] {
            let resp = e.error_response();
            assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(resp.headers().get("retry-after").unwrap(), "60");
            let body = resp.into_body().try_into_bytes().unwrap();
            let want = format!(r#"{{"data":"","errno":-1,"msg":"{msg}"}}"#);
            assert_eq!(&body[..], want.as_bytes());
        }
    }

    #[test]
    fn go_messages_are_kept_verbatim() {
        assert_eq!(CallError::AclName.msg(), "acl.name");
        assert_eq!(CallError::AclSecret.msg(), "acl.secret");
        assert_eq!(CallError::Overload.msg(), "超过负载");
        assert_eq!(CallError::Read.errno(), 1);
        assert_eq!(CallError::Overload.status_code(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn a_record_too_large_has_its_own_message_apart_from_the_body_limit() {
        assert_eq!(
            CallError::RecordTooLarge.status_code(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(CallError::RecordTooLarge.msg(), "消息过大");
        assert_ne!(CallError::RecordTooLarge.msg(), CallError::TooLarge.msg());
        assert_eq!(
            (CallError::KafkaTooLarge.errno(), CallError::KafkaTooLarge.msg()),
            (4, "Kafka拒绝:消息过大")
        );
    }
}
