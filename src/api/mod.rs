//! The HTTP front end (actix-web). The public listener: `/rpc/call`, `/rpc/calls` (a
//! batch, [`batch`]), the mock target, the
//! health probes (`/readyz` without detail) and its view of the OpenAPI document
//! ([`openapi`]). The admin listener ([`admin`]): `/stats`, `/readyz` with its detail,
//! `/healthz`, the whole OpenAPI document.

pub mod acl;
pub mod admin;
pub mod batch;
pub mod envelope;
pub mod guard;
pub mod handlers;
pub mod head_guard;
pub mod log_limit;
pub mod not_allowed;
pub mod openapi;
pub mod quota;
pub mod request;
pub mod server;
pub mod throttle;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, web};
use arc_swap::ArcSwap;
use slog::Logger;

use crate::config::AckMode;
use crate::delivery::forward::IngestHeaders;
use crate::kafka::topics::Readiness;
use crate::policy::AddressPolicy;
use crate::producer::ProducerHandle;
use crate::stats::Stats;
use acl::AclTable;

/// The part of the handlers' settings that a hot reload replaces.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Callers and their topics.
    pub acl: AclTable,
    /// Acknowledgement mode when a call does not say.
    pub default_ack: AckMode,
    /// How long an `"ack": "kafka"` call waits.
    pub ack_timeout: Duration,
    /// Largest accepted body.
    pub body_limit: usize,
    /// How far ahead a call may be scheduled.
    pub schedule_max: Duration,
    /// Most calls in one `POST /rpc/calls`.
    pub batch_max_calls: usize,
    /// Which caller headers a call's record keeps, per ACL topic: only those some
    /// consumer entry of the topic would forward.
    pub headers: IngestHeaders,
    /// The outbound address policy, applied at ingest to IP-literal hosts (the delivery
    /// threads apply the same one to every resolved address).
    pub destinations: Arc<AddressPolicy>,
}

/// What the handlers share.
#[derive(Debug)]
pub struct ApiState {
    /// Queue into Kafka.
    pub producer: ProducerHandle,
    /// Reloadable settings; each request reads one consistent snapshot.
    pub config: Arc<ArcSwap<ApiConfig>>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Kafka readiness, for `/readyz`.
    pub readiness: Arc<Readiness>,
    /// The control topic (`None`: off), whose reader `/readyz` waits for.
    pub control: Option<Arc<crate::control::Control>>,
    /// The idempotency claims (`None`: `http.server.idempotency.topic` is `""`).
    pub idempotency: Option<Arc<crate::idempotency::Idempotency>>,
    /// Time a request body has to arrive, from the end of its head (`http.server.read.timeout`).
    pub read_timeout: Duration,
    /// Per-source throttle and logging of failed ACL checks; kept across reloads.
    pub guard: guard::CallerGuard,
    /// Logger.
    pub log: Logger,
}

/// Registers the public routes. `/stats` is not one of them: it is on the admin listener.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use handlers::*;
    cfg.service(
        web::resource("/rpc/call")
            .route(web::post().to(call))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/rpc/calls")
            .route(web::post().to(batch::calls))
            .default_service(web::to(method_not_allowed)),
    )
    .service(web::resource("/rpc/server/mock").to(mock))
    .service(web::resource("/healthz").route(web::get().to(healthz)))
    .service(web::resource("/readyz").route(web::get().to(readyz)))
    .configure(openapi::routes)
    .default_service(web::to(not_found));
}

/// Builds the public HTTP server on an already bound listener. Signals are left to
/// bigpipe's own shutdown module; stop the server through its handle.
///
/// # Errors
/// When the listener cannot be used.
pub fn serve(
    state: ApiState,
    listener: TcpListener,
    options: &server::ListenerOptions,
) -> std::io::Result<Server> {
    let config = Arc::clone(&state.config);
    let data = web::Data::new(state);
    // Cut from the embedded document once, here, so a broken one stops the start.
    let doc = web::Data::new(openapi::OpenApiDoc::public().map_err(std::io::Error::other)?);
    server::serve(
        listener,
        options,
        Arc::new(move || config.load().body_limit),
        move || {
            App::new()
                .app_data(data.clone())
                .app_data(doc.clone())
                .wrap(not_allowed::layer(not_allowed::none))
                .configure(routes)
        },
    )
}

/// Builds the admin HTTP server on an already bound listener.
///
/// # Errors
/// When the listener cannot be used.
pub fn serve_admin(
    state: admin::AdminState,
    listener: TcpListener,
    options: &server::ListenerOptions,
) -> std::io::Result<Server> {
    let data = web::Data::new(state);
    let doc = web::Data::new(openapi::OpenApiDoc::admin().map_err(std::io::Error::other)?);
    // Admin POSTs carry small JSON bodies (replay, retransmit); anything larger is refused
    // early, also after `Expect: 100-continue`.
    server::serve(listener, options, Arc::new(|| admin::BODY_LIMIT), move || {
        App::new()
            .app_data(data.clone())
            .app_data(doc.clone())
            .wrap(not_allowed::layer(admin::refuse_unauthorized))
            .configure(admin::routes)
    })
}
