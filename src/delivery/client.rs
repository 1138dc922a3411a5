//! One delivery thread: a current-thread runtime, a `LocalSet` and one awc
//! client, fed jobs over a bounded channel; plus the attempt itself.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use awc::error::{ConnectError, SendRequestError};
use awc::http::header::{CONTENT_LENGTH, HeaderName, HeaderValue, RETRY_AFTER};
use awc::http::{Method, Uri};
use awc::{Client, ClientResponse, Connector};
use bytes::Bytes;
use futures::StreamExt as _;
use slog::{Logger, debug, warn};
use tokio::sync::{mpsc, oneshot};
use tokio::task::LocalSet;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::task::TaskTracker;

use super::resolver::{self, NotAllowed, PolicyResolver};
use super::retry::parse_retry_after;
use super::{AttemptOutcome, OutboundRequest, PoolConfig};
use crate::message::CallMethod;
use crate::policy::AddressPolicy;

/// Jobs buffered per thread. The thread spawns each job as soon as it
/// arrives, so the buffer only absorbs bursts; the caller's concurrency cap
/// is the real limit.
const QUEUE_DEPTH: usize = 1024;

/// Work for a delivery thread.
#[derive(Debug)]
pub(super) enum Job {
    /// Perform one attempt and answer on `reply`.
    Attempt {
        req: OutboundRequest,
        /// Dropped unanswered if the thread stops first: the caller reads that
        /// as `Unavailable`. Its closing tells the thread the caller gave up.
        reply: oneshot::Sender<AttemptOutcome>,
    },
    /// Panic in the job loop itself (tests of dead-thread detection).
    #[cfg(test)]
    Panic,
}

/// What a thread needs to build its client and run attempts.
#[derive(Debug, Clone, Copy)]
struct Settings {
    connect_timeout: Duration,
    keep_alive: Duration,
    max_response_body: usize,
}

/// The pool's handle on one thread.
#[derive(Debug)]
pub(super) struct Worker {
    index: usize,
    /// Jobs for the thread, which owns the receiver. It closes when the thread
    /// stops or dies, so a send failing is how callers notice.
    jobs: mpsc::Sender<Job>,
    /// Sending a deadline asks the thread to stop taking jobs and to give
    /// in-flight attempts until then; dropping it unsent means "stop now".
    stop: oneshot::Sender<Instant>,
    /// Resolves (with an error) when the thread is done: its sender is the
    /// last thing the thread drops, on a normal exit and on a panic alike.
    done: oneshot::Receiver<()>,
    thread: JoinHandle<()>,
    /// Set once the pool has logged this thread's death.
    reported_dead: AtomicBool,
}

/// A worker asked to stop, to be joined.
#[derive(Debug)]
pub(super) struct Stopping {
    index: usize,
    done: oneshot::Receiver<()>,
    thread: JoinHandle<()>,
}

/// Why a thread could not be joined cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JoinError {
    /// It ended by panicking.
    Panicked,
    /// It did not end by the deadline; it is left running, detached.
    Stuck,
}

impl Worker {
    /// Builds the runtime here, so its failure is reported to the caller,
    /// then starts the thread. The awc client is created on the thread: it
    /// cannot be moved there.
    pub(super) fn spawn(index: usize, config: &PoolConfig, log: Logger) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (jobs_tx, jobs_rx) = mpsc::channel(QUEUE_DEPTH);
        let (stop_tx, stop_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let settings = Settings {
            connect_timeout: config.connect_timeout,
            keep_alive: config.keep_alive,
            max_response_body: config.max_response_body,
        };
        let tls = config.tls.clone();
        let policy = Arc::clone(&config.destinations);
        let thread = thread::Builder::new()
            .name(format!("bigpipe-delivery-{index}"))
            .spawn(move || {
                // Locals drop in reverse order, also while unwinding: the tasks
                // and the runtime go first, `done` last.
                let _done = done_tx;
                let runtime = runtime;
                let local = LocalSet::new();
                local.block_on(&runtime, run(jobs_rx, stop_rx, settings, tls, policy, log));
            })?;
        Ok(Self {
            index,
            jobs: jobs_tx,
            stop: stop_tx,
            done: done_rx,
            thread,
            reported_dead: AtomicBool::new(false),
        })
    }

    pub(super) fn index(&self) -> usize {
        self.index
    }

    pub(super) fn is_alive(&self) -> bool {
        !self.jobs.is_closed()
    }

    pub(super) fn jobs(&self) -> mpsc::Sender<Job> {
        self.jobs.clone()
    }

    /// True the first time it is called on a dead worker.
    pub(super) fn first_seen_dead(&self) -> bool {
        !self.is_alive() && !self.reported_dead.swap(true, Ordering::Relaxed)
    }

    /// Asks the thread to stop, giving in-flight attempts until `deadline`.
    pub(super) fn stop(self, deadline: Instant) -> Stopping {
        // Fails only if the thread is already gone, which join reports.
        let _delivered = self.stop.send(deadline).is_ok();
        Stopping {
            index: self.index,
            done: self.done,
            thread: self.thread,
        }
    }
}

impl Stopping {
    pub(super) fn index(&self) -> usize {
        self.index
    }

    /// Waits (without blocking the runtime) for the thread to finish by
    /// `deadline`, then joins it.
    pub(super) async fn join(self, deadline: Instant) -> Result<(), JoinError> {
        if timeout_at(deadline, self.done).await.is_err() {
            return Err(JoinError::Stuck);
        }
        // The thread has dropped everything but is perhaps still returning:
        // `join` may block for a moment, so not on a runtime thread.
        let thread = self.thread;
        match tokio::task::spawn_blocking(move || thread.join()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_panic)) => Err(JoinError::Panicked),
            Err(_join) => Err(JoinError::Stuck),
        }
    }
}

/// The thread's job loop.
async fn run(
    mut jobs: mpsc::Receiver<Job>,
    mut stop: oneshot::Receiver<Instant>,
    settings: Settings,
    tls: Option<Arc<rustls::ClientConfig>>,
    policy: Arc<AddressPolicy>,
    log: Logger,
) {
    let client = build_client(settings, tls, Arc::clone(&policy));
    // Owns the attempts, so stopping can wait for them.
    let tracker = TaskTracker::new();
    let deadline = loop {
        tokio::select! {
            // Stop first: after a shutdown request no queued job may start.
            biased;
            deadline = &mut stop => break deadline.unwrap_or_else(|_dropped| Instant::now()),
            job = jobs.recv() => match job {
                Some(Job::Attempt { req, reply }) => {
                    tracker.spawn_local(attempt_task(client.clone(), req, reply, settings, Arc::clone(&policy), log.clone()));
                }
                #[cfg(test)]
                Some(Job::Panic) => panic!("injected delivery thread panic"),
                None => break Instant::now(),
            },
        }
    };
    // Closing the channel makes pending and later sends fail (`Unavailable`);
    // queued jobs drop their reply senders, which their callers read the same way.
    drop(jobs);
    tracker.close();
    if timeout_at(deadline, tracker.wait()).await.is_err() {
        warn!(log, "delivery attempts abandoned at the end of the grace period"; "attempts" => tracker.len());
    }
    // Returning drops the LocalSet with any abandoned attempts, and their
    // connections, on this thread.
}

/// One awc client per thread. awc's defaults that matter here: a 5 s
/// whole-request timeout (off: the attempt's own timeout governs), up to 10
/// redirects followed (off), 100 connections per client (off: unlimited, the
/// caller caps concurrency), connections reused while idle for 15 s
/// (`keep_alive`) and closed after 75 s of age (kept, so DNS changes are
/// picked up). Names are resolved by [`PolicyResolver`], which drops refused addresses.
fn build_client(s: Settings, tls: Option<Arc<rustls::ClientConfig>>, policy: Arc<AddressPolicy>) -> Client {
    let tcp =
        actix_tls::connect::Connector::new(actix_tls::connect::Resolver::custom(PolicyResolver { policy }));
    let mut connector = Connector::new()
        .connector(tcp.service())
        .limit(0)
        .timeout(s.connect_timeout)
        .conn_keep_alive(s.keep_alive);
    // Without it awc answers https with `SslIsNotSupported` (see `classify`). Not
    // followed by `max_http_version`, which would replace it with awc's default (none).
    if let Some(tls) = tls {
        connector = connector.rustls_0_23(tls);
    }
    Client::builder()
        .connector(connector)
        .disable_redirects()
        .disable_timeout()
        .finish()
}

/// Runs one attempt and answers, unless the caller stops waiting first.
async fn attempt_task(
    client: Client,
    req: OutboundRequest,
    mut reply: oneshot::Sender<AttemptOutcome>,
    settings: Settings,
    policy: Arc<AddressPolicy>,
    log: Logger,
) {
    let started = Instant::now();
    let OutboundRequest {
        url,
        body,
        headers,
        timeout: limit,
        method,
    } = req;
    // Only for logs, and only worked out when a line is written (not per attempt): the
    // caller's URL may carry credentials.
    let shown = slog::FnValue(|_: &slog::Record<'_>| super::redact::redact_url(&url));
    let outcome = tokio::select! {
        outcome = attempt(&client, (method, &url), body, headers, limit, settings.max_response_body, &policy, &log) => outcome,
        () = reply.closed() => {
            debug!(log, "delivery attempt abandoned by its caller";
                "url" => &shown, "elapsed_ms" => started.elapsed().as_millis());
            return;
        }
    };
    debug!(log, "delivery attempt finished";
        "url" => &shown, "outcome" => %outcome, "elapsed_ms" => started.elapsed().as_millis());
    if reply.send(outcome).is_err() {
        debug!(log, "delivery outcome not collected"; "url" => &shown);
    }
}

/// awc's method for a call's.
fn http_method(method: CallMethod) -> Method {
    match method {
        CallMethod::Post => Method::POST,
        CallMethod::Put => Method::PUT,
        CallMethod::Patch => Method::PATCH,
        CallMethod::Delete => Method::DELETE,
        CallMethod::Get => Method::GET,
    }
}

/// Sends the request and reads the response within `req.timeout`.
#[allow(clippy::too_many_arguments)] // the parts of one OutboundRequest, and where it goes
async fn attempt(
    client: &Client,
    (method, url): (CallMethod, &str),
    body: Bytes,
    headers: Vec<(String, String)>,
    limit: Duration,
    max_body: usize,
    policy: &AddressPolicy,
    log: &Logger,
) -> AttemptOutcome {
    let started = Instant::now();
    let uri = match parse_url(url) {
        Ok(uri) => uri,
        Err(why) => return AttemptOutcome::Invalid(why),
    };
    if let Err(NotAllowed(why)) = resolver::check_literal(policy, &uri) {
        return AttemptOutcome::Refused(why);
    }
    let mut request = client.request(http_method(method), uri);
    for (name, value) in &headers {
        // Checked here so a bad header is reported as such, rather than as
        // awc's deferred error at send time.
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) else {
            return AttemptOutcome::Invalid(format!("header {name:?} is not valid HTTP"));
        };
        request = request.append_header((name, value));
    }

    let sent = if method.has_body() {
        request.send_body(body)
    } else {
        request.send()
    };
    let response = match timeout(limit, sent).await {
        Err(_elapsed) => return AttemptOutcome::Timeout,
        Ok(Err(err)) => return classify(&err),
        Ok(Ok(response)) => response,
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));

    // Whatever happens to the body, the status stands (see AttemptOutcome).
    let left = limit.saturating_sub(started.elapsed());
    let drained = match timeout(left, drain(response, max_body)).await {
        Ok(result) => result,
        Err(_elapsed) => Err("the body did not arrive within the attempt's timeout".to_owned()),
    };
    if let Err(why) = drained {
        debug!(log, "response body not drained; connection dropped"; "url" => super::redact::redact_url(url),
            "status" => status, "why" => why);
    }
    AttemptOutcome::Response { status, retry_after }
}

/// Reads and discards the body so the connection returns to the pool; a body
/// over `max` is not read, and dropping the response closes the connection.
async fn drain(mut response: ClientResponse, max: usize) -> Result<usize, String> {
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared
        && u64::try_from(max).is_ok_and(|max| len > max)
    {
        return Err(format!("Content-Length {len} exceeds max_response_body {max}"));
    }
    let mut total = 0usize;
    while let Some(chunk) = response.next().await {
        let chunk = chunk.map_err(|e| format!("reading the body failed: {e}"))?;
        total = total.saturating_add(chunk.len());
        if total > max {
            return Err(format!("the body exceeds max_response_body {max}"));
        }
    }
    Ok(total)
}

/// Accepts absolute http(s) URLs with a host; awc would also take ws/wss. The
/// reasons quote the URL redacted: they end up in logs and dead-letter headers.
fn parse_url(url: &str) -> Result<Uri, String> {
    let shown = || super::redact::redact_url(url);
    let uri = Uri::try_from(url).map_err(|e| format!("URL {:?} is not valid: {e}", shown()))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!("URL {:?} is not http:// or https://", shown()));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("URL {:?} has no host", shown()));
    }
    Ok(uri)
}

/// Maps awc's error to an outcome: what can never work is `Invalid`, the
/// rest is a (retryable) connection failure.
fn classify(err: &SendRequestError) -> AttemptOutcome {
    match err {
        SendRequestError::Url(e) => AttemptOutcome::Invalid(format!("invalid URL: {e}")),
        SendRequestError::Http(e) => AttemptOutcome::Invalid(format!("invalid request: {e}")),
        SendRequestError::TunnelNotSupported => AttemptOutcome::Invalid(err.to_string()),
        SendRequestError::Connect(ConnectError::SslIsNotSupported) => AttemptOutcome::Invalid(
            "https is not supported: this CPU lacks the features of the TLS crypto provider".to_owned(),
        ),
        SendRequestError::Connect(ConnectError::Resolver(e)) if e.downcast_ref::<NotAllowed>().is_some() => {
            AttemptOutcome::Refused(e.to_string())
        }
        // awc's own timeout is disabled; kept for completeness.
        SendRequestError::Timeout => AttemptOutcome::Timeout,
        other => AttemptOutcome::Connect(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_validation() {
        assert!(parse_url("http://example.com/a?b=c").is_ok());
        assert!(parse_url("https://127.0.0.1:8443/").is_ok());
        for bad in [
            "",
            "example.com/path",
            "/relative",
            "ftp://example.com/",
            "ws://example.com/",
            "http://",
            "http://exa mple.com/",
            "http:///path",
        ] {
            assert!(parse_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refusal_reasons_quote_the_url_redacted() {
        let why = parse_url("ftp://user:pw@h/x?token=s3cret").unwrap_err();
        assert!(!why.contains("pw") && !why.contains("s3cret"), "{why}");
        assert!(why.contains("ftp://***@h/x?token=***"), "{why}");
        let why = parse_url("http://u:pw@exa mple.com/?k=s3cret").unwrap_err();
        assert!(!why.contains("pw") && !why.contains("s3cret"), "{why}");
    }

    #[test]
    fn error_classification() {
        assert!(matches!(
            classify(&SendRequestError::Connect(ConnectError::SslIsNotSupported)),
            AttemptOutcome::Invalid(why) if why.contains("https is not supported")
        ));
        assert_eq!(classify(&SendRequestError::Timeout), AttemptOutcome::Timeout);
        assert!(matches!(
            classify(&SendRequestError::Connect(ConnectError::Timeout)),
            AttemptOutcome::Connect(_)
        ));
        assert!(matches!(
            classify(&SendRequestError::Connect(ConnectError::Io(
                io::ErrorKind::ConnectionRefused.into()
            ))),
            AttemptOutcome::Connect(_)
        ));
        assert!(matches!(
            classify(&SendRequestError::Send(io::ErrorKind::ConnectionReset.into())),
            AttemptOutcome::Connect(_)
        ));
        assert!(matches!(
            classify(&SendRequestError::Connect(ConnectError::Resolver(Box::new(NotAllowed("x".into()))))),
            AttemptOutcome::Refused(why) if why == "x"
        ));
        assert!(matches!(
            classify(&SendRequestError::Connect(ConnectError::Resolver(Box::new(
                io::Error::other("dns")
            )))),
            AttemptOutcome::Connect(_)
        ));
        assert!(matches!(
            classify(&SendRequestError::TunnelNotSupported),
            AttemptOutcome::Invalid(_)
        ));
    }
}
