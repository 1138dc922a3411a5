//! `GET /metrics`: Prometheus text exposition 0.0.4, behind the admin token like the rest.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::Value;

use super::{AdminState, authorize};
use crate::api::envelope::envelope;

/// Registers `/metrics`.
pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/metrics").route(web::get().to(metrics)));
}

async fn metrics(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    if let Err(refused) = authorize(&req, &state) {
        return refused.error_response();
    }
    match state.metrics.render() {
        Ok(body) => HttpResponse::Ok()
            .content_type(crate::metrics::CONTENT_TYPE)
            .body(body),
        // Writing to a String cannot fail; if the encoder ever refuses, say so plainly.
        Err(_) => envelope(
            StatusCode::INTERNAL_SERVER_ERROR,
            -1,
            "metrics could not be encoded",
            Value::Null,
        ),
    }
}
