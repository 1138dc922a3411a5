//! Real-socket tests of the pool against a small HTTP/1.1 server on
//! 127.0.0.1:0. The server is hand-rolled on a `TcpListener` so the tests can
//! count TCP connections, see closes, and stall or misbehave on purpose.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use awc::http::header::HttpDate;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::*;
use crate::message::CallMethod;

/// What the test server does with a request.
#[derive(Debug, Clone)]
enum Reply {
    /// Answer after `delay`.
    Respond {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        delay: Duration,
    },
    /// Never answer; wait for the client to close the connection.
    Stall,
    /// Send a head promising 100 body bytes, send 10, then wait for the close.
    HeadThenStall,
}

fn ok_with_body(len: usize) -> Reply {
    Reply::Respond {
        status: 200,
        headers: vec![],
        body: vec![b'x'; len],
        delay: Duration::ZERO,
    }
}

fn status(status: u16, headers: Vec<(&'static str, String)>) -> Reply {
    Reply::Respond {
        status,
        headers,
        body: b"nope".to_vec(),
        delay: Duration::ZERO,
    }
}

/// A request as the server saw it; header names lower-cased, values raw.
#[derive(Debug)]
struct Recorded {
    method: String,
    target: String,
    /// The header lines as sent (names in their case).
    head: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
            .collect()
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

struct TestServer {
    addr: SocketAddr,
    /// TCP connections accepted.
    accepted: Arc<AtomicUsize>,
    /// Connections the client closed.
    closed: Arc<AtomicUsize>,
    requests: mpsc::UnboundedReceiver<Recorded>,
    /// The accept loop; it owns the connection tasks, so aborting it ends them.
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (tx, requests) = mpsc::unbounded_channel();
        let handler: Handler = Arc::new(handler);
        let (acc, clo) = (Arc::clone(&accepted), Arc::clone(&closed));
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                acc.fetch_add(1, Ordering::SeqCst);
                conns.spawn(serve(sock, Arc::clone(&handler), tx.clone(), Arc::clone(&clo)));
            }
        });
        Self {
            addr,
            accepted,
            closed,
            requests,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn next_request(&mut self) -> Recorded {
        self.requests.recv().await.unwrap()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads until `buf` holds `want` bytes; false on EOF or error.
async fn fill(sock: &mut TcpStream, buf: &mut Vec<u8>, want: usize) -> bool {
    let mut tmp = [0u8; 16 * 1024];
    while buf.len() < want {
        match sock.read(&mut tmp).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    true
}

async fn wait_for_close(sock: &mut TcpStream, closed: &AtomicUsize) {
    let mut tmp = [0u8; 1024];
    while matches!(sock.read(&mut tmp).await, Ok(n) if n > 0) {}
    closed.fetch_add(1, Ordering::SeqCst);
}

async fn serve(
    mut sock: TcpStream,
    handler: Handler,
    tx: mpsc::UnboundedSender<Recorded>,
    closed: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(pos) = find(&buf, b"\r\n\r\n") {
                break pos;
            }
            let want = buf.len() + 1;
            if !fill(&mut sock, &mut buf, want).await {
                closed.fetch_add(1, Ordering::SeqCst);
                return;
            }
        };
        let head = buf[..head_end].to_vec();
        let mut lines = head
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let request_line = String::from_utf8_lossy(lines.next().unwrap()).into_owned();
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap().to_owned();
        let target = parts.next().unwrap().to_owned();
        let headers: Vec<(String, Vec<u8>)> = lines
            .map(|l| {
                let colon = l.iter().position(|&b| b == b':').unwrap();
                let name = String::from_utf8_lossy(&l[..colon]).to_ascii_lowercase();
                (name, l[colon + 1..].trim_ascii().to_vec())
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| std::str::from_utf8(v).unwrap().parse().unwrap());
        let total = head_end + 4 + len;
        if !fill(&mut sock, &mut buf, total).await {
            closed.fetch_add(1, Ordering::SeqCst);
            return;
        }
        let body = buf[head_end + 4..total].to_vec();
        buf.drain(..total);
        let rec = Recorded {
            method,
            target,
            head,
            headers,
            body,
        };
        let reply = handler(&rec);
        // The test may have stopped listening; the server keeps serving.
        let _unread = tx.send(rec).is_err();
        match reply {
            Reply::Respond {
                status,
                headers,
                body,
                delay,
            } => {
                tokio::time::sleep(delay).await;
                let mut out =
                    format!("HTTP/1.1 {status} Test\r\ncontent-length: {}\r\n", body.len()).into_bytes();
                for (k, v) in headers {
                    out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
                }
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&body);
                if sock.write_all(&out).await.is_err() {
                    closed.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
            Reply::Stall => return wait_for_close(&mut sock, &closed).await,
            Reply::HeadThenStall => {
                let out = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789";
                if sock.write_all(out).await.is_ok() {
                    wait_for_close(&mut sock, &closed).await;
                }
                return;
            }
        }
    }
}

fn config(threads: usize) -> PoolConfig {
    PoolConfig {
        threads,
        connect_timeout: Duration::from_secs(2),
        keep_alive: Duration::from_secs(15),
        max_response_body: 64 * 1024,
        tls: None,
        // The test servers listen on loopback, refused by default.
        destinations: Arc::new(AddressPolicy::new(
            vec!["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()],
            vec![],
        )),
    }
}

fn start(config: PoolConfig) -> DeliveryPool {
    DeliveryPool::start(config, crate::logging::discard()).unwrap()
}

fn post(url: String, body: &'static [u8]) -> OutboundRequest {
    OutboundRequest {
        url,
        body: Bytes::from_static(body),
        headers: vec![],
        timeout: Duration::from_secs(5),
        method: CallMethod::Post,
    }
}

fn ok_200() -> AttemptOutcome {
    AttemptOutcome::Response {
        status: 200,
        retry_after: None,
    }
}

/// Fails the test instead of hanging it.
async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test step hung")
}

/// Polls a condition that another thread makes true.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < give_up, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_goes_with_its_own_method_and_a_get_without_a_body() {
    let mut server = TestServer::start(|_| ok_with_body(0)).await;
    let pool = start(config(2));
    for (method, name, body) in [
        (CallMethod::Delete, "DELETE", &b"gone"[..]),
        (CallMethod::Put, "PUT", &b"put"[..]),
        (CallMethod::Patch, "PATCH", &b"patch"[..]),
        (CallMethod::Get, "GET", &b""[..]),
    ] {
        let req = OutboundRequest {
            method,
            ..post(
                server.url("/m"),
                if method.has_body() { body } else { b"ignored" },
            )
        };
        assert_eq!(within(pool.send(req)).await, ok_200());
        let rec = server.next_request().await;
        assert_eq!((rec.method.as_str(), rec.body.as_slice()), (name, body));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_and_headers_arrive_intact() {
    let mut server = TestServer::start(|_| ok_with_body(10)).await;
    let pool = start(config(2));

    let unit = "héllo wörld ✓ 你好 🚀 ";
    let text = unit.repeat(100 * 1024 / unit.len() + 1);
    assert!(text.len() >= 100 * 1024);
    let stored: BTreeMap<String, Vec<String>> = [
        ("Accept", vec!["text/plain", "application/json"]),
        ("X-Unicode", vec!["naïve ✓ 值"]),
        ("Expect", vec!["100-continue"]),
        ("Connection", vec!["keep-alive"]),
        ("Content-Type", vec!["application/json"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    let req = OutboundRequest {
        url: server.url("/hook?x=1&y=%20"),
        body: Bytes::from(text.clone()),
        headers: outbound_headers(
            &stored,
            "0193abcd-call",
            3,
            &crate::delivery::forward::HeaderPolicy::default(),
        ),
        timeout: Duration::from_secs(5),
        method: CallMethod::Post,
    };
    assert_eq!(within(pool.send(req)).await, ok_200());

    let rec = server.next_request().await;
    assert_eq!(rec.method, "POST");
    assert_eq!(rec.target, "/hook?x=1&y=%20");
    assert_eq!(rec.body, text.as_bytes());
    assert_eq!(rec.header("content-length"), [text.len().to_string().as_bytes()]);
    assert_eq!(rec.header("host"), [server.addr.to_string().as_bytes()]);
    assert_eq!(
        rec.header("content-type"),
        [b"application/octet-stream".as_slice()]
    );
    assert_eq!(
        rec.header("accept"),
        [b"text/plain".as_slice(), b"application/json"]
    );
    assert_eq!(rec.header("x-unicode"), ["naïve ✓ 值".as_bytes()]);
    assert_eq!(rec.header("x-bigpipe-call-id"), [b"0193abcd-call".as_slice()]);
    assert_eq!(rec.header("x-bigpipe-attempt"), [b"3".as_slice()]);
    assert!(rec.header("expect").is_empty());
    assert!(rec.header("transfer-encoding").is_empty());
    // A deliberate difference from the Go version (README): awc writes header names in lower
    // case (HTTP says they are case-insensitive; Go wrote `Content-Type`) and adds `date`.
    let head = String::from_utf8_lossy(&rec.head);
    assert!(
        head.contains("\r\ncontent-type: ") && head.contains("\r\nx-bigpipe-call-id: "),
        "{head}"
    );
    assert!(!head.contains("Content-Type"), "{head}");
    assert_eq!(rec.header("date").len(), 1, "{head}");

    // An empty body is sent as such.
    assert_eq!(within(pool.send(post(server.url("/empty"), b""))).await, ok_200());
    let rec = server.next_request().await;
    assert!(rec.body.is_empty());
    within(pool.shutdown(Duration::from_secs(1))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_reuse_one_connection() {
    let server = TestServer::start(|_| ok_with_body(100)).await;
    let pool = start(config(1));
    for _ in 0..20 {
        assert_eq!(within(pool.send(post(server.url("/"), b"hi"))).await, ok_200());
    }
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    // Status-only answers (no body) keep the connection too.
    let server = TestServer::start(|_| Reply::Respond {
        status: 204,
        headers: vec![],
        body: vec![],
        delay: Duration::ZERO,
    })
    .await;
    for _ in 0..5 {
        let outcome = within(pool.send(post(server.url("/"), b"hi"))).await;
        assert_eq!(
            outcome,
            AttemptOutcome::Response {
                status: 204,
                retry_after: None
            }
        );
    }
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    within(pool.shutdown(Duration::from_secs(1))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_response_body_drops_the_connection() {
    let server = TestServer::start(|_| ok_with_body(10 * 1024)).await;
    let pool = start(PoolConfig {
        max_response_body: 1024,
        ..config(1)
    });
    for _ in 0..3 {
        assert_eq!(within(pool.send(post(server.url("/"), b"hi"))).await, ok_200());
    }
    assert_eq!(server.accepted.load(Ordering::SeqCst), 3);
    eventually("connections closed", || server.closed.load(Ordering::SeqCst) >= 2).await;
    within(pool.shutdown(Duration::from_secs(1))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalling_server_times_out_within_bound() {
    let server = TestServer::start(|_| Reply::Stall).await;
    let pool = start(config(1));
    let mut req = post(server.url("/"), b"hi");
    req.timeout = Duration::from_millis(300);
    let started = Instant::now();
    assert_eq!(within(pool.send(req)).await, AttemptOutcome::Timeout);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(1300), "{took:?}");
    // The abandoned connection is closed, not leaked.
    eventually("connection closed", || server.closed.load(Ordering::SeqCst) == 1).await;
    within(pool.shutdown(Duration::from_secs(1))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_body_keeps_the_status_within_the_timeout() {
    let server = TestServer::start(|_| Reply::HeadThenStall).await;
    let pool = start(config(1));
    let mut req = post(server.url("/"), b"hi");
    req.timeout = Duration::from_millis(300);
    let started = Instant::now();
    assert_eq!(within(pool.send(req)).await, ok_200());
    assert!(started.elapsed() < Duration::from_millis(1300));
    eventually("connection closed", || server.closed.load(Ordering::SeqCst) == 1).await;
    within(pool.shutdown(Duration::from_secs(1))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_port_is_a_connect_error() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let pool = start(config(1));
    let outcome = within(pool.send(post(format!("http://127.0.0.1:{port}/"), b"hi"))).await;
    assert!(matches!(outcome, AttemptOutcome::Connect(_)), "{outcome:?}");
    within(pool.shutdown(Duration::from_secs(1))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_destinations_are_never_connected_to() {
    let server = TestServer::start(|_| ok_with_body(0)).await;
    let port = server.addr.port();
    let pool = start(PoolConfig {
        destinations: Arc::new(AddressPolicy::strict()),
        ..config(1)
    });
    for url in [
        format!("http://127.0.0.1:{port}/admin"),
        format!("http://localhost:{port}/admin"),
        format!("http://2130706433:{port}/admin"),
        format!("http://127.1:{port}/admin"),
        format!("http://0x7f.0.0.1:{port}/admin"),
        format!("http://[::ffff:127.0.0.1]:{port}/admin"),
        format!("http://user:pw@127.0.0.1:{port}/admin"),
    ] {
        let outcome = within(pool.send(post(url.clone(), b"DROP TABLE"))).await;
        assert!(
            matches!(outcome, AttemptOutcome::Refused(_)),
            "{url}: {outcome:?}"
        );
    }
    assert_eq!(
        server.accepted.load(Ordering::SeqCst),
        0,
        "a refused target was connected to"
    );
    // The same target, allowed by address and port, is reached by name and by address.
    let pool2 = start(PoolConfig {
        destinations: Arc::new(AddressPolicy::new(
            vec![format!("127.0.0.1:{port}").parse().unwrap()],
            vec![],
        )),
        ..config(1)
    });
    let name = format!("http://localhost:{port}/ok");
    assert_eq!(within(pool2.send(post(name, b"hi"))).await, ok_200());
    let other_port = format!("http://127.0.0.1:{}/", port.wrapping_add(1).max(1));
    assert!(matches!(
        within(pool2.send(post(other_port, b"hi"))).await,
        AttemptOutcome::Refused(_)
    ));
    within(pool.shutdown(Duration::from_secs(1))).await;
    within(pool2.shutdown(Duration::from_secs(1))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_are_reported_without_sending() {
    let pool = start(config(1));
    for url in ["not a url", "ftp://127.0.0.1/", "/relative", "http://"] {
        let outcome = within(pool.send(post(url.to_owned(), b""))).await;
        assert!(
            matches!(outcome, AttemptOutcome::Invalid(_)),
            "{url}: {outcome:?}"
        );
    }
    for (name, value) in [("Bad Name", "x"), ("X-Ok", "a\r\nb")] {
        let mut req = post("http://127.0.0.1:9/".to_owned(), b"");
        req.headers = vec![(name.to_owned(), value.to_owned())];
        let outcome = within(pool.send(req)).await;
        assert!(
            matches!(outcome, AttemptOutcome::Invalid(_)),
            "{name}: {outcome:?}"
        );
    }
    within(pool.shutdown(Duration::from_secs(1))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_returned_not_followed() {
    let mut server = TestServer::start(|_| status(302, vec![("location", "/elsewhere".to_owned())])).await;
    let pool = start(config(1));
    let outcome = within(pool.send(post(server.url("/start"), b"payload"))).await;
    assert_eq!(
        outcome,
        AttemptOutcome::Response {
            status: 302,
            retry_after: None
        }
    );
    assert_eq!(server.next_request().await.target, "/start");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(server.requests.try_recv().is_err(), "the redirect was followed");
    within(pool.shutdown(Duration::from_secs(1))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_surfaced() {
    let date = HttpDate::from(SystemTime::now() + Duration::from_secs(60)).to_string();
    let server = TestServer::start(move |rec| match rec.target.as_str() {
        "/seconds" => status(503, vec![("retry-after", "7".to_owned())]),
        "/date" => status(429, vec![("retry-after", date.clone())]),
        "/garbage" => status(429, vec![("retry-after", "soon".to_owned())]),
        _ => status(500, vec![]),
    })
    .await;
    let pool = start(config(1));
    assert_eq!(
        within(pool.send(post(server.url("/seconds"), b""))).await,
        AttemptOutcome::Response {
            status: 503,
            retry_after: Some(Duration::from_secs(7))
        }
    );
    let AttemptOutcome::Response {
        status: 429,
        retry_after: Some(after),
    } = within(pool.send(post(server.url("/date"), b""))).await
    else {
        panic!("expected a 429 with Retry-After");
    };
    assert!(
        after > Duration::from_secs(50) && after <= Duration::from_secs(60),
        "{after:?}"
    );
    assert_eq!(
        within(pool.send(post(server.url("/garbage"), b""))).await,
        AttemptOutcome::Response {
            status: 429,
            retry_after: None
        }
    );
    within(pool.shutdown(Duration::from_secs(1))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_sends_complete() {
    let mut server = TestServer::start(|_| Reply::Respond {
        status: 200,
        headers: vec![],
        body: b"ok".to_vec(),
        delay: Duration::from_millis(50),
    })
    .await;
    let pool = Arc::new(start(config(2)));
    let mut tasks = JoinSet::new();
    for i in 0..200 {
        let mut req = post(server.url("/"), b"x");
        req.headers = vec![("X-N".to_owned(), i.to_string())];
        // The future does not borrow the pool, so it can be spawned as is.
        tasks.spawn(pool.send(req));
    }
    let outcomes = within(tasks.join_all()).await;
    assert_eq!(outcomes.len(), 200);
    assert!(outcomes.iter().all(|o| *o == ok_200()), "{outcomes:?}");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let rec = server.next_request().await;
        seen.insert(String::from_utf8(rec.header("x-n")[0].to_vec()).unwrap());
    }
    assert_eq!(seen.len(), 200);
    let pool = Arc::into_inner(pool).unwrap();
    within(pool.shutdown(Duration::from_secs(1))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_attempts_finish() {
    let mut server = TestServer::start(|_| Reply::Respond {
        status: 200,
        headers: vec![],
        body: vec![],
        delay: Duration::from_millis(300),
    })
    .await;
    let pool = start(config(2));
    let in_flight = tokio::spawn(pool.send(post(server.url("/slow"), b"x")));
    let not_started = pool.send(post(server.url("/late"), b"x"));
    within(server.next_request()).await;
    let started = Instant::now();
    within(pool.shutdown(Duration::from_secs(5))).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(within(in_flight).await.unwrap(), ok_200());
    // Created before the shutdown, first polled after it.
    assert_eq!(within(not_started).await, AttemptOutcome::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_abandons_attempts_after_the_grace_period() {
    let mut server = TestServer::start(|_| Reply::Stall).await;
    let pool = start(config(1));
    let mut req = post(server.url("/"), b"x");
    req.timeout = Duration::from_secs(60);
    let stuck = tokio::spawn(pool.send(req));
    within(server.next_request()).await;
    let started = Instant::now();
    within(pool.shutdown(Duration::from_millis(200))).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(within(stuck).await.unwrap(), AttemptOutcome::Unavailable);
    eventually("connection closed", || server.closed.load(Ordering::SeqCst) == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_pool_stops_at_once() {
    let mut server = TestServer::start(|_| Reply::Stall).await;
    let pool = start(config(1));
    let mut req = post(server.url("/"), b"x");
    req.timeout = Duration::from_secs(60);
    let stuck = tokio::spawn(pool.send(req));
    within(server.next_request()).await;
    drop(pool);
    assert_eq!(within(stuck).await.unwrap(), AttemptOutcome::Unavailable);
    eventually("connection closed", || server.closed.load(Ordering::SeqCst) == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_future_abandons_the_attempt() {
    let mut server = TestServer::start(|_| Reply::Stall).await;
    let pool = start(config(1));
    let mut req = post(server.url("/"), b"x");
    req.timeout = Duration::from_secs(60);
    let task = tokio::spawn(pool.send(req));
    within(server.next_request()).await;
    task.abort();
    eventually("connection closed", || server.closed.load(Ordering::SeqCst) == 1).await;
    within(pool.shutdown(Duration::from_secs(1))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_thread_is_detected_not_waited_on() {
    let server = TestServer::start(|_| ok_with_body(2)).await;

    // The only thread dies: callers get Unavailable at once.
    let pool = start(config(1));
    pool.kill_one().await;
    assert_eq!(
        within(pool.send(post(server.url("/"), b"x"))).await,
        AttemptOutcome::Unavailable
    );
    eventually("thread dead", || !pool.workers[0].is_alive()).await;
    assert_eq!(
        within(pool.send(post(server.url("/"), b"x"))).await,
        AttemptOutcome::Unavailable
    );
    within(pool.shutdown(Duration::from_secs(1))).await;

    // One of two dies: the other takes all the work.
    let pool = start(config(2));
    pool.kill_one().await;
    eventually("thread dead", || pool.workers.iter().any(|w| !w.is_alive())).await;
    for _ in 0..10 {
        assert_eq!(within(pool.send(post(server.url("/"), b"x"))).await, ok_200());
    }
    within(pool.shutdown(Duration::from_secs(1))).await;
}

#[test]
fn zero_threads_is_rejected() {
    let err = DeliveryPool::start(config(0), crate::logging::discard()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}
