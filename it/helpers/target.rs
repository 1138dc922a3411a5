//! A real HTTP target for delivery tests: records what it receives and
//! behaves as the URL path says.
//!
//! - `/ok`: 200.
//! - `/fail/N/STATUS`: STATUS for the first N attempts of a call (by call id), then 200.
//! - `/always/STATUS`: always STATUS.
//! - `/flaky/PCT`: 503 for a random PCT % of the requests, else 200.
//! - `/retry-after/SECS`: the first attempt of a call gets 429 with `Retry-After: SECS`, then 200.
//! - `/slow/MS`: waits MS milliseconds, then 200.
//! - anything while `set_down(true)`: 503.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use tokio::time::Instant;

/// One request the target received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) method: String,
    pub(crate) headers: HashMap<String, Vec<String>>,
    pub(crate) body: Vec<u8>,
    pub(crate) at: Instant,
    pub(crate) status: u16,
}

impl Received {
    /// The first value of header `name` (lower case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.first()).map(String::as_str)
    }

    /// The call id bigpipe sent.
    pub(crate) fn call_id(&self) -> String {
        self.header("x-bigpipe-call-id").unwrap_or_default().to_owned()
    }
}

#[derive(Debug, Default)]
struct State {
    received: Mutex<Vec<Received>>,
    attempts: Mutex<HashMap<String, u32>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    down: AtomicBool,
}

/// The running target.
pub(crate) struct Target {
    pub(crate) base: String,
    state: Arc<State>,
    handle: ServerHandle,
}

impl Target {
    /// Starts on 127.0.0.1 with an ephemeral port.
    pub(crate) fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts an https target on 127.0.0.1 with the test certificate of
    /// `it/fixtures/tls` (signed by its `ca.pem`, valid for 127.0.0.1 and localhost).
    pub(crate) fn start_tls() -> Self {
        Self::start_with(Some(tls_server_config()))
    }

    fn start_with(tls: Option<rustls::ServerConfig>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind target");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(State::default());
        let data = web::Data::from(Arc::clone(&state));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(8 << 20))
                .default_service(web::to(handle))
        })
        .workers(2)
        .disable_signals();
        let server = match tls {
            Some(config) => server.listen_rustls_0_23(listener, config),
            None => server.listen(listener),
        }
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self { base, state, handle }
    }

    /// A URL on this target.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Everything received so far.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// How many requests were received.
    pub(crate) fn count(&self) -> usize {
        self.state.received.lock().unwrap().len()
    }

    /// The most requests that were ever in progress at once.
    pub(crate) fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// While down, every request gets 503.
    pub(crate) fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Stops the server.
    pub(crate) async fn stop(self) {
        self.handle.stop(false).await;
    }
}

async fn handle(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let mut headers: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in req.headers() {
        headers
            .entry(k.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let call_id = headers
        .get("x-bigpipe-call-id")
        .and_then(|v| v.first())
        .cloned()
        .unwrap_or_default();
    let attempt = {
        let mut attempts = state.attempts.lock().unwrap();
        let n = attempts.entry(format!("{}|{call_id}", req.path())).or_default();
        *n += 1;
        *n
    };
    let parts: Vec<&str> = req.path().trim_start_matches('/').split('/').collect();
    let num = |i: usize| parts.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let (status, retry_after) = if state.down.load(Ordering::SeqCst) {
        (503, None)
    } else {
        match parts.first().copied() {
            Some("fail") if u64::from(attempt) <= num(1) => (num(2) as u16, None),
            Some("always") => (num(1) as u16, None),
            Some("flaky") if rand::random::<u64>() % 100 < num(1) => (503, None),
            Some("retry-after") if attempt == 1 => (429, Some(num(1))),
            Some("slow") => {
                tokio::time::sleep(Duration::from_millis(num(1))).await;
                (200, None)
            }
            _ => (200, None),
        }
    };
    state.received.lock().unwrap().push(Received {
        method: req.method().to_string(),
        headers,
        body: body.to_vec(),
        at: Instant::now(),
        status,
    });
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut resp = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
    if let Some(secs) = retry_after {
        resp.insert_header(("Retry-After", secs.to_string()));
    }
    resp.body("ok")
}

/// The test certificate and key, with the same crypto provider bigpipe uses.
fn tls_server_config() -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("it/fixtures/tls");
    let certs = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .expect("server.pem")
        .collect::<Result<Vec<_>, _>>()
        .expect("server.pem parses");
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).expect("server.key");
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls_graviola::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("certificate and key match")
}
