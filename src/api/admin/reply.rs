//! The answers of the group and dead-letter handlers: the envelope with errno 0 on success,
//! and one error type whose variants carry the status of the admin contract.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use futures::StreamExt;
use serde_json::Value;

use crate::api::envelope::envelope;

/// Largest admin request body (JSON), in bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Why an admin request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// Bad input: 400.
    #[error("{0}")]
    BadRequest(String),
    /// Unknown group or dead letter: 404.
    #[error("{0}")]
    NotFound(String),
    /// The action conflicts with the configuration or state: 409.
    #[error("{0}")]
    Conflict(String),
    /// Kafka could not answer: 503.
    #[error("{0}")]
    Unavailable(String),
    /// The body is larger than [`BODY_LIMIT`]: 413.
    #[error("request body larger than {BODY_LIMIT} bytes")]
    TooLarge,
    /// No or the wrong bearer token: the admin listener's usual 401.
    #[error("unauthorized")]
    Unauthorized,
}

impl AdminError {
    /// The envelope response.
    pub fn response(&self) -> HttpResponse {
        let status = match self {
            Self::Unauthorized => {
                return actix_web::ResponseError::error_response(
                    &crate::api::envelope::CallError::Unauthorized,
                );
            }
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        };
        envelope(status, -1, &self.to_string(), Value::Null)
    }

    /// A 400 from any displayable error.
    pub fn bad(e: impl std::fmt::Display) -> Self {
        Self::BadRequest(e.to_string())
    }

    /// A 503 from any error, its causes included.
    pub fn kafka(e: &(dyn std::error::Error + 'static)) -> Self {
        Self::Unavailable(format!(
            "kafka unavailable: {}",
            crate::kafka::wire::error_chain(e)
        ))
    }
}

/// The success envelope.
pub fn ok(data: Value) -> HttpResponse {
    envelope(StatusCode::OK, 0, "success", data)
}

/// Reads a JSON body of at most [`BODY_LIMIT`] bytes; an empty body reads as `{}`.
///
/// # Errors
/// [`AdminError::TooLarge`], or a 400 saying what is wrong with the JSON.
pub async fn json_body<T: serde::de::DeserializeOwned>(
    mut payload: actix_web::web::Payload,
) -> Result<T, AdminError> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| AdminError::BadRequest(format!("body unreadable: {e}")))?;
        if body.len() + chunk.len() > BODY_LIMIT {
            return Err(AdminError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        body = b"{}".to_vec();
    }
    serde_json::from_slice(&body).map_err(|e| AdminError::BadRequest(format!("invalid JSON body: {e}")))
}
