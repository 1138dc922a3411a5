//! `GET /openapi.json` on the admin listener: the whole document (`crate::api::openapi`),
//! behind the admin token like every admin path but the dashboard shell.

use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use super::{AdminState, authorize};
use crate::api::openapi::OpenApiDoc;

/// Registers the route.
pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/openapi.json").route(web::get().to(document)));
}

async fn document(
    req: HttpRequest,
    state: web::Data<AdminState>,
    doc: web::Data<OpenApiDoc>,
) -> HttpResponse {
    if let Err(refused) = authorize(&req, &state) {
        return refused.error_response();
    }
    doc.response()
}
