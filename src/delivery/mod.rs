//! Delivery: one HTTP attempt per call, done well, plus the pure retry policy.
//!
//! ```text
//!  consumer tasks (tokio multi-thread runtime, Send futures)
//!     │ pool.send(OutboundRequest)
//!     ├──bounded mpsc──► thread 0: current-thread runtime + LocalSet + one awc::Client
//!     ├──bounded mpsc──► thread 1:   each job is spawn_local'ed, so one thread runs
//!     │       …                      many attempts at once over its keep-alive pool
//!     ◄──── oneshot ──── AttemptOutcome (Response | Timeout | Connect | Invalid | Refused | Unavailable)
//!     │
//!     └─ retry::RetryPolicy::decide(attempt, &outcome, rng) → Success | Retry { after } | GiveUp
//! ```
//!
//! The retry loop, rate limit and concurrency cap live in the consumer; this
//! module performs single attempts and says what to do next.
//!
//! # Why dedicated threads with a LocalSet
//! awc's `Client` holds `Rc`s and spawns its connection work with
//! `spawn_local`, so it is `!Send` and must live on one thread inside a
//! `LocalSet` (actix/actix-web#2679, closed as won't-fix). The consumer runs
//! on tokio's multi-thread runtime, where a task may move between threads, so
//! it cannot hold a `Client`. Each pool thread therefore owns one
//! current-thread runtime, one `LocalSet` and one `Client` (and with it one
//! connection pool); the consumer talks to it over channels, which are
//! `Send`. A few threads are plenty: an attempt is mostly waiting on sockets,
//! and each thread runs any number of them concurrently.
//!
//! # What differs from the Go version (seed §5.6, §6)
//! - Redirects are not followed (Go followed them and turned a POST into a
//!   body-less GET on 301/302/303); a 3xx is returned as the attempt's status.
//! - The response body is read and discarded, up to `max_response_body`, so
//!   the connection is reused (Go closed it unread, so it never reused one).
//! - One timeout bounds the whole attempt, connect included.
//! - Hop-by-hop headers and `Expect` are not forwarded ([`headers`]), and caller
//!   headers travel only when an allow-list lets them ([`forward`]).
//! - Calls may be signed for their targets (Standard Webhooks, [`signing`]).
//! - Destinations pass the address policy ([`crate::policy`]): IP-literal hosts before
//!   sending, names on every address they resolve to (`resolver`).

pub mod breaker;
mod client;
pub mod forward;
pub mod headers;
pub mod redact;
mod resolver;
pub mod retry;
pub mod signing;
#[cfg(test)]
mod tests;
pub mod tls;

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use slog::{Logger, error, info, o, warn};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

pub use headers::outbound_headers;
pub use retry::{GiveUpReason, RetryPolicy, SuccessCodes, Verdict, parse_retry_after};

use crate::policy::AddressPolicy;
use client::{Job, Worker};

/// How long `shutdown` waits, past the grace period, for a thread to wind
/// down (drop its abandoned attempts and its runtime) before leaving it.
const JOIN_MARGIN: Duration = Duration::from_secs(2);

/// Settings of a [`DeliveryPool`].
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// OS threads, each with its own awc client; at least 1.
    pub threads: usize,
    /// Bound on DNS resolution plus TCP connect. The attempt's own timeout
    /// still applies on top.
    pub connect_timeout: Duration,
    /// How long an idle connection is kept for reuse.
    pub keep_alive: Duration,
    /// Response bytes read (and discarded) so the connection can be reused.
    /// A longer body is not read: the connection is dropped instead.
    pub max_response_body: usize,
    /// TLS for `https://` targets (see [`tls::client_config`]); `None`: https calls fail
    /// as not retryable.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The outbound address policy, applied to IP-literal hosts before sending and to every
    /// address a target name resolves to.
    pub destinations: Arc<AddressPolicy>,
}

/// One HTTP attempt: `POST url` with exactly `body` and `headers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    /// Absolute `http://` or `https://` URL.
    pub url: String,
    /// Sent verbatim; `Content-Length` is set from it.
    pub body: Bytes,
    /// Sent in order, repeated names as repeated lines; see
    /// [`outbound_headers`].
    pub headers: Vec<(String, String)>,
    /// Bound on the whole attempt: connect, send, response head and draining
    /// the body.
    pub timeout: Duration,
    /// The method; a GET goes without the body.
    pub method: crate::message::CallMethod,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The target answered. Any status, including 3xx (redirects are not
    /// followed). The status stands even if reading the body afterwards
    /// failed or ran out of time: the target has given its verdict, and
    /// retrying a processed call would duplicate it.
    Response {
        /// The HTTP status.
        status: u16,
        /// The parsed `Retry-After` header, if present and valid.
        retry_after: Option<Duration>,
    },
    /// No response head within the attempt's timeout (connect included).
    Timeout,
    /// The connection could not be made or broke: refused, reset, DNS failure,
    /// connect timeout, malformed response.
    Connect(String),
    /// The request can never succeed as built (bad URL, bad header, https
    /// without TLS support); do not retry.
    Invalid(String),
    /// The destination policy refused every address of the target (loopback, metadata,
    /// `delivery.deny`...): nothing was sent. Final: dead-lettered as "destination not
    /// allowed", never retried, and not a failure of the target (the circuit breaker
    /// ignores it).
    Refused(String),
    /// The pool is shut down or its threads died; retry later.
    Unavailable,
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Response { status, .. } => write!(f, "HTTP {status}"),
            Self::Timeout => f.write_str("timed out"),
            Self::Connect(why) => write!(f, "connection failed: {why}"),
            Self::Invalid(why) => write!(f, "invalid request: {why}"),
            Self::Refused(why) => write!(f, "destination not allowed: {why}"),
            Self::Unavailable => f.write_str("delivery pool unavailable"),
        }
    }
}

/// A fixed set of delivery threads, each with one awc client.
///
/// Dropping the pool without [`shutdown`](Self::shutdown) stops the threads
/// at once: in-flight attempts are abandoned (their callers get
/// [`AttemptOutcome::Unavailable`]) and the threads are not joined.
#[derive(Debug)]
pub struct DeliveryPool {
    /// One per thread. A worker whose job channel is closed has died.
    workers: Vec<Worker>,
    /// Round-robin cursor for [`send`](Self::send).
    next: AtomicUsize,
    log: Logger,
}

impl DeliveryPool {
    /// Starts `config.threads` OS threads, each a current-thread tokio
    /// runtime with a `LocalSet` and one awc client (keep-alive connections
    /// reused, no awc connection limit since the caller caps concurrency,
    /// redirects not followed, awc's default 5 s timeout off).
    ///
    /// # Errors
    /// `InvalidInput` if `threads` is 0; an OS error if a runtime or thread
    /// cannot be created (threads already started then stop on their own).
    pub fn start(config: PoolConfig, log: Logger) -> io::Result<Self> {
        if config.threads == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the delivery pool needs at least one thread",
            ));
        }
        let workers = (0..config.threads)
            .map(|index| Worker::spawn(index, &config, log.new(o!("delivery_thread" => index))))
            .collect::<io::Result<Vec<_>>>()?;
        info!(log, "delivery pool started";
            "threads" => config.threads,
            "connect_timeout_ms" => config.connect_timeout.as_millis(),
            "keep_alive_ms" => config.keep_alive.as_millis(),
            "max_response_body" => config.max_response_body);
        Ok(Self {
            workers,
            next: AtomicUsize::new(0),
            log,
        })
    }

    /// Performs one attempt on one of the threads.
    ///
    /// Threads are picked round robin, skipping dead ones. Round robin rather
    /// than least-loaded because the threads are not the bottleneck: each runs
    /// any number of attempts concurrently and mostly waits on sockets, so
    /// even spreading is all that matters, and it costs one atomic add. Each
    /// thread has its own connection pool, so the keep-alive connections to
    /// one target are spread over the threads rather than shared.
    ///
    /// The returned future is `Send + 'static` and does not borrow the pool,
    /// so it can be spawned, and the pool can be shut down while attempts run.
    ///
    /// # Cancellation
    /// Dropping the future abandons the attempt: the thread notices that
    /// nobody waits for the answer and drops the request and its connection.
    pub fn send(&self, req: OutboundRequest) -> impl Future<Output = AttemptOutcome> + Send + use<> {
        let jobs = self.pick();
        async move {
            let Some(jobs) = jobs else {
                return AttemptOutcome::Unavailable;
            };
            let (reply, outcome) = oneshot::channel();
            // Fails when the thread has stopped or died; a reply sender dropped
            // unanswered means the same (or a panicking attempt).
            if jobs.send(Job::Attempt { req, reply }).await.is_err() {
                return AttemptOutcome::Unavailable;
            }
            outcome.await.unwrap_or(AttemptOutcome::Unavailable)
        }
    }

    /// The job channel of the next live thread, round robin.
    fn pick(&self) -> Option<mpsc::Sender<Job>> {
        let n = self.workers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            let worker = &self.workers[start.wrapping_add(k) % n];
            if worker.is_alive() {
                return Some(worker.jobs());
            }
            if worker.first_seen_dead() {
                error!(self.log, "delivery thread died; the other threads take its share";
                    "thread" => worker.index());
            }
        }
        None
    }

    /// Stops accepting work (later and queued attempts end `Unavailable`),
    /// lets in-flight attempts finish until `grace` has passed, abandons the
    /// rest, and joins the threads. Waits on channels, never polls.
    pub async fn shutdown(self, grace: Duration) {
        let deadline = deadline_after(grace);
        let Self { workers, log, .. } = self;
        let stopping: Vec<_> = workers.into_iter().map(|w| w.stop(deadline)).collect();
        for stopping in stopping {
            let index = stopping.index();
            match stopping.join(deadline + JOIN_MARGIN).await {
                Ok(()) => {}
                Err(client::JoinError::Panicked) => {
                    error!(log, "delivery thread had panicked"; "thread" => index);
                }
                Err(client::JoinError::Stuck) => {
                    warn!(log, "delivery thread did not stop in time; leaving it"; "thread" => index);
                }
            }
        }
        info!(log, "delivery pool stopped");
    }

    /// Test hook: makes the next thread in turn panic outside any attempt,
    /// as a bug in the worker loop would.
    #[cfg(test)]
    async fn kill_one(&self) {
        if let Some(jobs) = self.pick() {
            let _sent = jobs.send(Job::Panic).await.is_ok();
        }
    }
}

/// `now + d`, or a far-away instant if that overflows.
fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(60 * 60 * 24 * 365))
}
