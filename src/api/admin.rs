//! The admin listener's routes: `/stats`, `/metrics` ([`metrics`]), `/readyz` with its
//! detail, `/healthz`, `/openapi.json`, and the live page `/dashboard` (`dashboard`).
//!
//! Kept off the public listener because they tell a caller more than it needs: topic names,
//! group ids, offsets, which target hosts answered (a port scanner, with `/stats`), broker
//! addresses and errors. It binds `http.admin.host` (loopback by default); when
//! `http.admin.token` is set, every request must carry `Authorization: Bearer <token>`,
//! except the dashboard's page and assets, which hold no data (the page's own data
//! requests carry the token).

pub mod context;
mod dashboard;
pub mod deadletters;
pub mod groups;
mod metrics;
pub mod reply;
pub mod steer;

pub use reply::BODY_LIMIT;

use std::sync::Arc;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub mod audit;

pub use audit::audit;

use super::envelope::{CallError, envelope};
use super::handlers::{healthz, not_found, readiness};
use crate::kafka::topics::Readiness;
use crate::stats::Stats;

mod openapi;

/// What the admin handlers share.
#[derive(Debug)]
pub struct AdminState {
    /// Counters, for `/stats`.
    pub stats: Arc<Stats>,
    /// Kafka readiness, for `/readyz`.
    pub readiness: Arc<Readiness>,
    /// The required bearer token, if any.
    pub token: Option<AdminToken>,
    /// The Prometheus registry over `stats`, for `/metrics`.
    pub metrics: Arc<crate::metrics::Exporter>,
    /// The control topic (`None`: `admin.control.topic` is `""`; pause, retransmit and replay
    /// markers answer 409 "control topic disabled").
    pub control: Option<Arc<crate::control::Control>>,
    /// Groups and dead letters (`/admin/v1/groups...`); `None` in tests that serve only
    /// the counters.
    pub groups: Option<Arc<context::GroupAdmin>>,
}

/// A bearer token, kept as its SHA-256 digest: comparing digests in constant time hides the
/// token's length as well as its bytes (subtle's `ct_eq` on slices returns early on a length
/// mismatch).
#[derive(Clone)]
pub struct AdminToken([u8; 32]);

impl AdminToken {
    /// The token `secret`.
    pub fn new(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// True when `presented` is the token.
    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.0.ct_eq(&digest).into()
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// Registers the admin routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/stats").route(web::get().to(stats)))
        .service(web::resource("/readyz").route(web::get().to(readyz)))
        .service(web::resource("/healthz").route(web::get().to(admin_healthz)))
        .configure(metrics::routes)
        .configure(openapi::routes)
        .configure(deadletters::routes)
        .configure(groups::routes)
        .configure(steer::routes)
        .configure(dashboard::routes)
        .default_service(web::to(admin_not_found));
}

/// `Ok` when no token is configured or the request carries it.
fn authorize(req: &HttpRequest, state: &AdminState) -> Result<(), CallError> {
    let Some(token) = &state.token else {
        return Ok(());
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    match presented {
        Some(p) if token.matches(p) => Ok(()),
        _ => Err(CallError::Unauthorized),
    }
}

/// The 401 a request without the token gets instead of a 405 (`super::not_allowed`), so
/// which methods a path takes cannot be probed without it either.
pub fn refuse_unauthorized(req: &HttpRequest) -> Option<HttpResponse> {
    let state = req.app_data::<web::Data<AdminState>>()?;
    authorize(req, state)
        .err()
        .map(|refused| refused.error_response())
}

/// The credentials of an `Authorization: Bearer <token>` value (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// `GET /stats`: every counter, in the Go version's shape.
async fn stats(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    if let Err(refused) = authorize(&req, &state) {
        return refused.error_response();
    }
    envelope(StatusCode::OK, 0, "success", state.stats.to_json())
}

/// `GET /readyz` with its detail: the brokers, the topics, each stalled partition and why.
async fn readyz(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    if let Err(refused) = authorize(&req, &state) {
        return refused.error_response();
    }
    match readiness(&state.readiness, &state.stats, state.control.as_deref()) {
        Ok(detail) => envelope(StatusCode::OK, 0, "success", json!(detail)),
        Err(why) => envelope(StatusCode::SERVICE_UNAVAILABLE, -1, "not ready", json!(why)),
    }
}

async fn admin_healthz(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    if let Err(refused) = authorize(&req, &state) {
        return refused.error_response();
    }
    healthz().await
}

/// Unknown paths: 401 before 404 when a token is needed, so paths cannot be probed without it.
async fn admin_not_found(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    if let Err(refused) = authorize(&req, &state) {
        return refused.error_response();
    }
    not_found().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_only_itself() {
        let t = AdminToken::new("0123456789abcdef");
        assert!(t.matches("0123456789abcdef"));
        assert!(!t.matches("0123456789abcdeF"));
        assert!(!t.matches("0123456789abcdef0"));
        assert!(!t.matches(""));
        assert!(!format!("{t:?}").contains("0123"));
    }

    #[test]
    fn bearer_credentials_are_read_case_insensitively() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
