//! The HTTP front end (actix-web): `/rpc/call`, `/stats`, the mock target and
//! the health probes.

pub mod acl;
pub mod envelope;
pub mod handlers;
pub mod request;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
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
    /// Logger.
    pub log: Logger,
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Time allowed to receive a request's head.
    pub read_timeout: Duration,
    /// Time allowed for a client to disconnect after the response.
    pub write_timeout: Duration,
    /// How long stopping waits for requests in progress.
    pub shutdown_timeout: Duration,
}

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use handlers::*;
    cfg.service(
        web::resource("/rpc/call")
            .route(web::post().to(call))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/stats")
            .route(web::get().to(stats))
            .default_service(web::to(method_not_allowed)),
    )
    .service(web::resource("/rpc/server/mock").to(mock))
    .service(web::resource("/healthz").route(web::get().to(healthz)))
    .service(web::resource("/readyz").route(web::get().to(readyz)))
    .default_service(web::to(not_found));
}

/// Builds the HTTP server on an already bound listener. Signals are left to
/// bigpipe's own shutdown module; stop the server through its handle.
///
/// # Errors
/// When the listener cannot be used.
pub fn serve(state: ApiState, listener: TcpListener, options: &ServerOptions) -> std::io::Result<Server> {
    let data = web::Data::new(state);
    let mut server = HttpServer::new(move || App::new().app_data(data.clone()).configure(routes))
        .disable_signals()
        .client_request_timeout(options.read_timeout)
        .client_disconnect_timeout(options.write_timeout)
        .shutdown_timeout(options.shutdown_timeout.as_secs().max(1));
    if options.workers > 0 {
        server = server.workers(options.workers);
    }
    Ok(server.listen(listener)?.run())
}
