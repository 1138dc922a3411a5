//! The HTTP listeners, built from actix's parts rather than `actix_web::HttpServer`.
//!
//! `HttpServer` fixes two things bigpipe needs to choose: the `Expect: 100-continue` answer
//! (it always sends `100 Continue`, so a client with an oversized body starts sending it
//! before anyone looks at `Content-Length`) and what happens at accept time (its
//! `max_connection_rate` only limits concurrent TLS handshakes). So this module assembles the
//! same pieces `HttpServer::listen` does (an `actix_server` accept loop, an `actix_http`
//! HTTP/1 service, the `actix_web` app) and adds:
//!
//! - an expect service that answers 413 at once when the declared length is over the limit;
//! - a connection gate: a token bucket of new connections per second, shared by the workers;
//!   a connection over the rate is closed before a byte is read;
//! - the per-worker connection cap, from a total (see [`per_worker`]);
//! - a deadline on every request head of a connection, not just the first
//!   ([`HeadGuard`](super::head_guard::HeadGuard)).
//!
//! Limits that come from actix itself and are not configurable: a request head may have at
//! most 96 header lines (97 or more: 431) and 128 KiB (131072 bytes; more: 431).

use std::fmt;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_http::body::{BoxBody, MessageBody};
use actix_http::error::DispatchError;
use actix_http::{HttpService, KeepAlive, Protocol, Request, Response};
use actix_server::Server;
use actix_service::{IntoServiceFactory, ServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_web::ResponseError;
use actix_web::dev::AppConfig;
use tokio::net::TcpStream;

use super::envelope::CallError;
use super::handlers::declared_length;
use super::head_guard::HeadGuard;

/// How one listener runs.
#[derive(Debug, Clone)]
pub struct ListenerOptions {
    /// Name in actix's logs.
    pub name: &'static str,
    /// Worker threads, at least 1.
    pub workers: usize,
    /// Time allowed for a connection's first request head (actix `client_request_timeout`).
    pub read_timeout: Duration,
    /// Time allowed for a client to disconnect after the response (actix `client_disconnect_timeout`).
    pub write_timeout: Duration,
    /// Idle keep-alive time; zero turns keep-alive off.
    pub keep_alive: Duration,
    /// Most open connections, all workers together.
    pub max_connections: usize,
    /// New connections per second; 0: no limit.
    pub max_connection_rate: u32,
    /// How long stopping waits for requests in progress.
    pub shutdown_timeout: Duration,
}

/// The body limit an `Expect: 100-continue` request is checked against, read per request so
/// that a reloaded `http.server.body.limit` applies.
pub type BodyLimit = Arc<dyn Fn() -> usize + Send + Sync>;

/// Worker count actix would pick for `workers = 0`: one per core.
pub fn worker_count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// actix caps connections per worker; a total is split evenly, rounded up, so the listener
/// as a whole holds at least `total` and at most `total + workers - 1` connections.
pub fn per_worker(total: usize, workers: usize) -> usize {
    total.div_ceil(workers.max(1)).max(1)
}

/// Serves the app built by `factory` on `listener`.
///
/// # Errors
/// When the listener cannot be used.
pub fn serve<F, I, S, B>(
    listener: TcpListener,
    options: &ListenerOptions,
    body_limit: BodyLimit,
    factory: F,
) -> std::io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as actix_service::Service<Request>>::Future: 'static,
    B: MessageBody + 'static,
{
    let workers = options.workers.max(1);
    let builder = Server::build()
        .disable_signals()
        .workers(workers)
        .max_concurrent_connections(per_worker(options.max_connections, workers))
        .shutdown_timeout(options.shutdown_timeout.as_secs().max(1));
    // Tells idle keep-alive connections to close when the server stops, as HttpServer does.
    let shutdown = builder.graceful_shutdown_signal();
    let gate = Arc::new(ConnectionGate::new(options.max_connection_rate, Instant::now()));
    let options = options.clone();
    let builder = builder.listen(options.name, listener, move || {
        let keep_alive = if options.keep_alive.is_zero() {
            KeepAlive::Disabled
        } else {
            KeepAlive::Timeout(options.keep_alive)
        };
        let shutdown = shutdown.clone();
        let limit = Arc::clone(&body_limit);
        let app = factory().into_factory().map_err(|e| e.into().error_response());
        let http = HttpService::build()
            .on_connect_ext(|io: &HeadGuard<TcpStream>, data: &mut actix_http::Extensions| {
                data.insert(io.close_signal());
            })
            .keep_alive(keep_alive)
            .client_request_timeout(options.read_timeout)
            .client_disconnect_timeout(options.write_timeout)
            .graceful_shutdown_signal(move || {
                let shutdown = shutdown.clone();
                async move { shutdown.notified().await }
            })
            .expect(fn_service(move |req: Request| {
                let limit = limit();
                async move { expect_continue(req, limit) }
            }))
            // `AppConfig` only feeds URL generation and a missing `Host`; bigpipe uses neither.
            .finish(map_config(app, |_| AppConfig::default()));
        let gate = Arc::clone(&gate);
        let (read_timeout, idle) = (options.read_timeout, options.keep_alive);
        // What `HttpService::tcp` does (HTTP/1 only), plus the gate and the head guard.
        fn_service(move |io: TcpStream| {
            let admitted = gate.admit(Instant::now());
            async move {
                if !admitted {
                    // Dropping the stream closes it; nothing was read or written.
                    return Err(DispatchError::Io(std::io::Error::other(
                        "connection rate exceeded",
                    )));
                }
                let peer = io.peer_addr().ok();
                Ok((HeadGuard::new(io, read_timeout, idle), Protocol::Http1, peer))
            }
        })
        .and_then(http)
    })?;
    Ok(builder.run())
}

/// The expect service: a request whose declared body is over `limit` is answered 413 before
/// `100 Continue`, so the client never sends the body; any other request continues.
fn expect_continue(req: Request, limit: usize) -> Result<Request, Response<BoxBody>> {
    if declared_length(req.head()).is_some_and(|n| n > limit as u64) {
        let mut response = CallError::TooLarge.error_response();
        response
            .head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
        return Err(response.into());
    }
    Ok(req)
}

/// A token bucket of new connections: `rate` per second, holding at most one second's worth.
#[derive(Debug)]
pub struct ConnectionGate {
    rate: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl ConnectionGate {
    /// A full bucket at `now`; `rate` 0 admits everything.
    pub fn new(rate: u32, now: Instant) -> Self {
        Self {
            rate: f64::from(rate),
            state: Mutex::new(Bucket {
                tokens: f64::from(rate),
                at: now,
            }),
        }
    }

    /// Takes a token at `now`; false when the bucket is empty.
    pub fn admit(&self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        // A poisoned lock only means another accept panicked mid-update; the numbers are fine.
        let mut bucket = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.rate);
        bucket.at = now.max(bucket.at);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_admits_a_second_of_burst_then_the_rate() {
        let t0 = Instant::now();
        let gate = ConnectionGate::new(10, t0);
        let admitted = (0..15).filter(|_| gate.admit(t0)).count();
        assert_eq!(admitted, 10);
        // 100 ms refills one token.
        assert!(gate.admit(t0 + Duration::from_millis(100)));
        assert!(!gate.admit(t0 + Duration::from_millis(100)));
        // A long pause refills no more than one second's worth.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| gate.admit(later)).count(), 10);
    }

    #[test]
    fn a_zero_rate_admits_everything() {
        let t0 = Instant::now();
        let gate = ConnectionGate::new(0, t0);
        assert!((0..10_000).all(|_| gate.admit(t0)));
    }

    #[test]
    fn the_total_is_split_over_workers_rounding_up() {
        assert_eq!(per_worker(4096, 4), 1024);
        assert_eq!(per_worker(10, 4), 3);
        assert_eq!(per_worker(1, 8), 1);
        assert_eq!(per_worker(5, 0), 5);
    }

    #[test]
    fn expect_refuses_a_declared_length_over_the_limit() {
        let mut req = Request::new();
        req.head_mut().headers.insert(
            actix_web::http::header::CONTENT_LENGTH,
            actix_web::http::header::HeaderValue::from_static("1048577"),
        );
        let refused = expect_continue(req, 1_048_576);
        assert_eq!(refused.err().map(|r| r.status().as_u16()), Some(413));
        let mut req = Request::new();
        req.head_mut().headers.insert(
            actix_web::http::header::CONTENT_LENGTH,
            actix_web::http::header::HeaderValue::from_static("10"),
        );
        assert!(expect_continue(req, 1_048_576).is_ok());
    }
}
