//! A bounded black-box HTTP fuzz run against a real bigpipe and broker: hostile bytes on raw
//! TCP connections must never make the front end answer a 5xx other than 503, and between
//! cases the process must stay healthy and keep accepting a normal call.
//!
//! Three generators, as in the security review's harness: random bytes; mutated valid raw
//! requests (byte flips, injected `Transfer-Encoding`, bad `Content-Length`, obs-fold, NUL in
//! names, duplicate `Host`, 120 extra headers, odd methods, versions and paths); structured
//! JSON bodies (random types per field, lone surrogates, invalid UTF-8, deep nesting, duplicate
//! keys, odd URLs). The caller's ACL topic has no consumer, so nothing accepted is delivered.
//!
//! Seeded: the seed is printed (`IT_FUZZ_SEED=N` replays a run's cases), and the run lasts
//! `IT_FUZZ_SECS` seconds (default 20). Statuses are asserted as properties only (no 5xx
//! but 503, healthy throughout), since exact answers to malformed input are the front end's
//! business and change with its hardening.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout};

use crate::helpers::{Bigpipe, WAIT, call_body, client_from, kafka, settings, simple_config, unique};

/// Cases sent concurrently between two health checks.
const BATCH: usize = 25;
/// A normal call is checked every this many batches.
const CALL_EVERY: usize = 4;
/// Limits on one case's connection, so a server that stops talking cannot hang the test.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
const READ_TIMEOUT: Duration = Duration::from_millis(800);
const CASE_TIMEOUT: Duration = Duration::from_secs(3);
/// Cases come from this many loopback addresses (127.0.1.0 + case number), so bigpipe's
/// per-source throttle of failed ACL checks (10 in 60 s) never blocks them and every case
/// reaches the parser; the throttle itself is tested in `callers`.
const SOURCES: usize = 64;
/// The normal-call checks come from an address no fuzz case uses, so a throttle answer
/// there would be a bug, not a retry.
const CHECK_SOURCE: [u8; 4] = [127, 0, 0, 2];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Generator {
    RandomBytes,
    MutatedRequest,
    JsonBody,
}

const GENERATORS: [Generator; 3] = [
    Generator::RandomBytes,
    Generator::MutatedRequest,
    Generator::JsonBody,
];

/// One case: bytes to write, and whether to half-close the connection after them (so a server
/// waiting for more bytes sees the end at once instead of after its timeout).
struct Case {
    bytes: Vec<u8>,
    half_close: bool,
}

/// What came back on a case's connection.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Answer {
    /// The final (non-1xx) status, or the last 1xx when nothing followed it.
    Status(u16),
    /// Closed without a byte.
    Closed,
    /// Reset or another I/O error.
    Reset,
    /// Nothing within the read timeout (the server waits for bytes we never send).
    Silent,
    /// Bytes that do not start with an HTTP status line.
    NotHttp,
}

impl Answer {
    fn label(&self) -> String {
        match self {
            Self::Status(s) => s.to_string(),
            Self::Closed => "closed".into(),
            Self::Reset => "reset".into(),
            Self::Silent => "no answer".into(),
            Self::NotHttp => "not http".into(),
        }
    }

    /// The properties under test: a 5xx is a failure unless it is 503 (not ready, or a full
    /// queue: a refusal the caller can retry).
    fn is_anomaly(&self) -> bool {
        matches!(self, Self::Status(s) if (500..600).contains(s) && *s != 503)
    }
}

#[derive(Default)]
struct Tally {
    cases: usize,
    answers: BTreeMap<String, usize>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_http_input_never_breaks_the_front_end() {
    let _k = kafka().await;
    let seed = std::env::var("IT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            u64::try_from(nanos % u128::from(u64::MAX)).unwrap_or(7)
        });
    let secs = std::env::var("IT_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20u64);
    println!("fuzz: seed {seed} for {secs} s (replay with IT_FUZZ_SEED={seed})");

    // No consumer entry: accepted calls stay in their topic and are never delivered.
    let topic = unique("fuzz");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, ""))).await;
    let addr = bp.base.trim_start_matches("http://").to_owned();

    let mut rng = StdRng::seed_from_u64(seed);
    let mut tallies: BTreeMap<Generator, Tally> = BTreeMap::new();
    let mut anomalies: Vec<String> = Vec::new();
    let mut health_checks = 0;
    let mut call_checks = 0;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut case_no = 0usize;
    let mut batch_no = 0usize;

    while Instant::now() < deadline {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..BATCH {
            let generator = GENERATORS[case_no % GENERATORS.len()];
            let case = generate(generator, &mut rng);
            let addr = addr.clone();
            let n = case_no;
            tasks.spawn(async move {
                let answer = send(&addr, source_of(n), &case).await;
                (n, generator, answer, case.bytes)
            });
            case_no += 1;
        }
        while let Some(joined) = tasks.join_next().await {
            let (n, generator, answer, bytes) = joined.expect("case task");
            let tally = tallies.entry(generator).or_default();
            tally.cases += 1;
            *tally.answers.entry(answer.label()).or_default() += 1;
            if answer.is_anomaly() {
                anomalies.push(format!(
                    "case {n} ({generator:?}): {answer:?} for {}",
                    show(&bytes)
                ));
            }
        }
        let (status, _) = bp.get("/healthz").await;
        health_checks += 1;
        assert_eq!(
            status, 200,
            "/healthz after case {case_no} (seed {seed}): {status}; anomalies so far: {anomalies:#?}"
        );
        batch_no += 1;
        if batch_no.is_multiple_of(CALL_EVERY) {
            normal_call_is_accepted(&bp, seed, case_no).await;
            call_checks += 1;
        }
    }
    let elapsed = started.elapsed();

    // And at the end: healthy, and a normal call still goes through.
    let (status, _) = bp.get("/healthz").await;
    assert_eq!(status, 200, "/healthz at the end (seed {seed})");
    normal_call_is_accepted(&bp, seed, case_no).await;
    call_checks += 1;
    health_checks += 1;

    let mut report = format!(
        "fuzz: seed {seed}, {case_no} cases in {:.1} s, {health_checks} health checks, \
         {call_checks} normal calls, {} anomalies\n",
        elapsed.as_secs_f64(),
        anomalies.len()
    );
    for (generator, tally) in &tallies {
        let answers: Vec<String> = tally.answers.iter().map(|(a, n)| format!("{a}: {n}")).collect();
        report.push_str(&format!(
            "  {generator:?}: {} cases; {}\n",
            tally.cases,
            answers.join(", ")
        ));
    }
    println!("{report}");
    bp.stop().await;
    assert!(
        anomalies.is_empty(),
        "5xx answers other than 503 (replay with IT_FUZZ_SEED={seed}):\n{}\n{report}",
        anomalies.join("\n")
    );
}

/// The loopback address case `n` is sent from.
fn source_of(n: usize) -> std::net::IpAddr {
    // In range: n % SOURCES < 64.
    let last = u8::try_from(n % SOURCES).unwrap_or(0);
    std::net::IpAddr::from([127, 0, 1, last])
}

/// A normal call must still be accepted. 503 is a refusal a caller retries (a full queue after
/// the flood of accepted fuzz calls), so it is retried, for at most [`WAIT`]; the checks come
/// from [`CHECK_SOURCE`], which the throttle has no reason to block.
async fn normal_call_is_accepted(bp: &Bigpipe, seed: u64, case_no: usize) {
    let body = call_body("http://svc.internal/hook", "a normal call", "k");
    let client = client_from(std::net::IpAddr::from(CHECK_SOURCE));
    let until = Instant::now() + WAIT;
    loop {
        let (status, _, envelope) = bp.call_from(&client, &body).await;
        if status == 200 {
            return;
        }
        assert!(
            status == 503 && Instant::now() < until,
            "a normal call after case {case_no} (seed {seed}) got {status}: {envelope}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A connection to `addr` from `source` (any 127/8 address is local on Linux).
async fn connect_from(source: std::net::IpAddr, addr: &str) -> std::io::Result<TcpStream> {
    let addr: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let socket = TcpSocket::new_v4()?;
    socket.bind((source, 0).into())?;
    socket.connect(addr).await
}

/// Writes the case on a fresh connection and reads the answer, every step under a timeout.
async fn send(addr: &str, source: std::net::IpAddr, case: &Case) -> Answer {
    let run = async {
        let Ok(Ok(mut stream)) = timeout(CONNECT_TIMEOUT, connect_from(source, addr)).await else {
            return Answer::Reset;
        };
        match timeout(WRITE_TIMEOUT, stream.write_all(&case.bytes)).await {
            Ok(Ok(())) => {}
            // The server may answer and close while we still write (a 400 on the head).
            Ok(Err(_)) | Err(_) => return read_answer(&mut stream).await,
        }
        if case.half_close {
            // A failed half-close leaves the connection open; the read below still ends.
            stream.shutdown().await.ok();
        }
        read_answer(&mut stream).await
    };
    timeout(CASE_TIMEOUT, run).await.unwrap_or(Answer::Silent)
}

/// Reads until a final status line is complete, the connection ends, or a read times out.
async fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(answer) = parse_status(&buf) {
            return answer;
        }
        match timeout(READ_TIMEOUT, stream.read(&mut chunk)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(_)) if buf.is_empty() => return Answer::Reset,
            Ok(Err(_)) => break,
            Err(_) if buf.is_empty() => return Answer::Silent,
            Err(_) => break,
        }
    }
    if buf.is_empty() {
        return Answer::Closed;
    }
    last_status(&buf).map_or(Answer::NotHttp, Answer::Status)
}

/// The final status once its line is complete: the first status line that is not 1xx.
fn parse_status(buf: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(buf);
    if !text.starts_with("HTTP/") {
        return (buf.len() >= 5).then_some(Answer::NotHttp);
    }
    text.split("\r\n")
        .filter(|line| line.starts_with("HTTP/"))
        .filter_map(status_of)
        .find(|s| *s >= 200)
        .map(Answer::Status)
}

/// The last status line's code (a 100 Continue with nothing after it).
fn last_status(buf: &[u8]) -> Option<u16> {
    String::from_utf8_lossy(buf)
        .split("\r\n")
        .filter(|line| line.starts_with("HTTP/"))
        .filter_map(status_of)
        .last()
}

fn status_of(line: &str) -> Option<u16> {
    line.split(' ').nth(1)?.parse().ok()
}

/// The first bytes of a case, escaped, for a failure message.
fn show(bytes: &[u8]) -> String {
    let head: String = bytes
        .iter()
        .take(300)
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    format!("{} bytes: \"{head}\"", bytes.len())
}

// -------------------------------------------------------------------------------------------
// generators

fn generate(generator: Generator, rng: &mut StdRng) -> Case {
    let bytes = match generator {
        Generator::RandomBytes => random_bytes(rng),
        Generator::MutatedRequest => mutated_request(rng),
        Generator::JsonBody => json_request(rng),
    };
    Case {
        bytes,
        half_close: rng.random_bool(0.5),
    }
}

/// 0-4 KiB of random bytes, sometimes after a plausible request line.
fn random_bytes(rng: &mut StdRng) -> Vec<u8> {
    let mut bytes = vec![0u8; rng.random_range(0..=4096)];
    rng.fill_bytes(&mut bytes);
    if rng.random_bool(0.3) {
        let prefix: &[u8] = [
            &b"POST /rpc/call HTTP/1.1\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\n",
            b"POST ",
        ]
        .choose(rng)
        .copied()
        .unwrap_or_default();
        bytes.splice(0..0, prefix.iter().copied());
    }
    bytes
}

/// A valid `/rpc/call` request as its parts, so mutations can work on lines.
struct RawRequest {
    method: String,
    path: String,
    version: String,
    headers: Vec<Vec<u8>>,
    body: Vec<u8>,
    /// Line ending (CRLF, sometimes a bare LF).
    eol: &'static str,
}

impl RawRequest {
    fn valid(body: Vec<u8>) -> Self {
        Self {
            method: "POST".into(),
            path: "/rpc/call".into(),
            version: "HTTP/1.1".into(),
            headers: vec![
                b"Host: 127.0.0.1".to_vec(),
                b"Content-Type: application/json".to_vec(),
                format!("Content-Length: {}", body.len()).into_bytes(),
            ],
            body,
            eol: "\r\n",
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} {}{}", self.method, self.path, self.version, self.eol).into_bytes();
        for h in &self.headers {
            out.extend_from_slice(h);
            out.extend_from_slice(self.eol.as_bytes());
        }
        out.extend_from_slice(self.eol.as_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    fn set_content_length(&mut self, value: &str) {
        self.headers
            .retain(|h| !h.to_ascii_lowercase().starts_with(b"content-length"));
        self.headers.push(format!("Content-Length: {value}").into_bytes());
    }
}

fn valid_body(rng: &mut StdRng) -> Vec<u8> {
    let key = rng.random_range(0..1000);
    call_body("http://svc.internal/hook", "fuzz", &format!("k{key}"))
        .to_string()
        .into_bytes()
}

/// A valid request with one to three of the review's mutations.
fn mutated_request(rng: &mut StdRng) -> Vec<u8> {
    let mut req = RawRequest::valid(valid_body(rng));
    let mut byte_level = Vec::new();
    for _ in 0..rng.random_range(1..=3) {
        match rng.random_range(0..14) {
            0 => {
                let te = [
                    "Transfer-Encoding: chunked",
                    "Transfer-Encoding: chunked, identity",
                    "Transfer-Encoding : chunked",
                    "Transfer-Encoding: xchunked",
                    "Transfer-Encoding: gzip, chunked",
                    "transfer-encoding: CHUNKED",
                ]
                .choose(rng)
                .copied()
                .unwrap_or_default();
                req.headers.push(te.as_bytes().to_vec());
                if rng.random_bool(0.5) {
                    // A chunked body, valid or cut short.
                    let body = std::mem::take(&mut req.body);
                    let mut chunked = format!("{:x}\r\n", body.len()).into_bytes();
                    chunked.extend(body);
                    chunked.extend_from_slice(if rng.random_bool(0.5) {
                        b"\r\n0\r\n\r\n"
                    } else {
                        b"\r\n"
                    });
                    req.body = chunked;
                }
            }
            1 => {
                let cl = [
                    "-1",
                    "-100",
                    "99999999999999999999999",
                    "18446744073709551616",
                    "1048577",
                    "4294967296",
                    "abc",
                    "1, 2",
                    "+5",
                    " 5",
                    "0x10",
                    "",
                    "1e3",
                ]
                .choose(rng)
                .copied()
                .unwrap_or_default();
                req.set_content_length(cl);
            }
            2 => {
                // Two Content-Length headers that disagree.
                let n = req.body.len() + rng.random_range(1..50);
                req.headers.push(format!("Content-Length: {n}").into_bytes());
            }
            3 => {
                // obs-fold: a continuation line after a header.
                let at = rng.random_range(0..req.headers.len());
                req.headers.insert(at + 1, b" folded-continuation".to_vec());
            }
            4 => {
                let mut name = b"X-Nul".to_vec();
                name.insert(rng.random_range(0..name.len()), 0);
                name.extend_from_slice(b": v");
                req.headers.push(name);
            }
            5 => req.headers.push(b"Host: evil.example".to_vec()),
            6 => {
                for i in 0..120 {
                    req.headers
                        .push(format!("X-Extra-{i}: {}", "v".repeat(rng.random_range(0..40))).into_bytes());
                }
            }
            7 => {
                req.method = [
                    "GET", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "HEAD", "FOO", "post",
                    "", "P\0ST",
                ]
                .choose(rng)
                .map(|s| (*s).to_owned())
                .unwrap_or_default();
                if rng.random_bool(0.1) {
                    req.method = "X".repeat(rng.random_range(100..5000));
                }
            }
            8 => {
                req.version = [
                    "HTTP/1.0",
                    "HTTP/2.0",
                    "HTTP/0.9",
                    "HTTP/1.1x",
                    "",
                    "HTTP/1.1.1",
                    "HTTP/9",
                    "http/1.1",
                ]
                .choose(rng)
                .map(|s| (*s).to_owned())
                .unwrap_or_default();
            }
            9 => {
                req.path = [
                    "*",
                    "",
                    "/rpc/call?x=1",
                    "//rpc/call",
                    "/rpc/call/../call",
                    "/rpc/%00call",
                    "http://127.0.0.1/rpc/call",
                    "/rpc/call#frag",
                    "/RPC/CALL",
                    "/rpc/server/mock",
                    "/healthz",
                    "/stats",
                    "/readyz",
                    "/rpc/call\u{e9}",
                ]
                .choose(rng)
                .map(|s| (*s).to_owned())
                .unwrap_or_default();
                if rng.random_bool(0.1) {
                    req.path = format!("/{}", "a".repeat(rng.random_range(1000..20_000)));
                }
            }
            10 => req.headers.push(b"Expect: 100-continue".to_vec()),
            11 => req.eol = "\n",
            12 => req.headers.push(b"Header-Without-Colon".to_vec()),
            _ => req
                .headers
                .push(format!("X-Long: {}", "v".repeat(rng.random_range(8_000..70_000))).into_bytes()),
        }
        if rng.random_bool(0.3) {
            byte_level.push(rng.random_range(0..3));
        }
    }
    let mut bytes = req.to_bytes();
    for kind in byte_level {
        if bytes.is_empty() {
            break;
        }
        let at = rng.random_range(0..bytes.len());
        match kind {
            0 => bytes[at] ^= 1 << rng.random_range(0..8),
            1 => {
                let mut junk = vec![0u8; rng.random_range(1..16)];
                rng.fill_bytes(&mut junk);
                bytes.splice(at..at, junk);
            }
            _ => {
                let end = (at + rng.random_range(1..32)).min(bytes.len());
                bytes.drain(at..end);
            }
        }
    }
    bytes
}

/// A well-formed request whose JSON body is hostile.
fn json_request(rng: &mut StdRng) -> Vec<u8> {
    let body = match rng.random_range(0..6) {
        0 => deep_nesting(rng),
        1 => duplicate_keys(rng),
        2 => lone_surrogate_or_bad_utf8(rng),
        _ => serde_json::to_vec(&random_fields(rng)).unwrap_or_default(),
    };
    RawRequest::valid(body).to_bytes()
}

fn odd_url(rng: &mut StdRng) -> String {
    let urls = [
        "http://svc.internal/hook",
        "https://[fd00::1]/",
        "http://[::1]:80/x",
        "http://2130706433/",
        "http://0x7f.0.0.1/",
        "http://0177.0.0.1/",
        "http://user:pw@127.0.0.1/admin",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:0/",
        "http://localhost:99999/",
        "gopher://h/",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://h/\u{2028}<script>",
        "http:/h",
        "http://",
        "",
    ];
    if rng.random_bool(0.05) {
        return format!("http://svc.internal/?q={}", "a".repeat(70_000));
    }
    urls.choose(rng).map(|s| (*s).to_owned()).unwrap_or_default()
}

fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth > 2 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.random_bool(0.5)),
        2 => json!(rng.random::<i64>()),
        3 => json!(rng.random::<f64>() * 1e300),
        4 => json!(""),
        5 => json!("x".repeat(rng.random_range(0..200))),
        6 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.random_range(0..4) {
                m.insert(
                    ["name", "secret", "x", ""]
                        .choose(rng)
                        .copied()
                        .unwrap_or("x")
                        .into(),
                    random_value(rng, depth + 1),
                );
            }
            Value::Object(m)
        }
    }
}

/// The call's fields, each either valid or a random type; the ACL valid most of the time so
/// that some calls are accepted (into a topic nobody consumes).
fn random_fields(rng: &mut StdRng) -> Value {
    let secret = if rng.random_bool(0.8) { "s3cret" } else { "wrong" };
    let good = [
        ("url", json!(odd_url(rng))),
        ("data", json!("d".repeat(rng.random_range(0..100)))),
        ("partition_key", json!(format!("k{}", rng.random_range(0..100)))),
        ("acl", json!({"name": "caller", "secret": secret})),
        (
            "ack",
            json!(["queue", "kafka", "disk"].choose(rng).copied().unwrap_or("queue")),
        ),
    ];
    let mut m = serde_json::Map::new();
    for (key, value) in good {
        match rng.random_range(0..10) {
            0 => {}
            1 | 2 => {
                m.insert(key.into(), random_value(rng, 0));
            }
            _ => {
                m.insert(key.into(), value);
            }
        }
    }
    Value::Object(m)
}

/// 100 to 20,000 levels of `[` (or `{"a":`), closed or not.
fn deep_nesting(rng: &mut StdRng) -> Vec<u8> {
    let depth = rng.random_range(100..20_000);
    let (open, close) = if rng.random_bool(0.5) {
        ("[", "]")
    } else {
        ("{\"a\":", "}")
    };
    let mut text = open.repeat(depth);
    if rng.random_bool(0.5) {
        text.push('1');
        text.push_str(&close.repeat(depth));
    }
    text.into_bytes()
}

fn duplicate_keys(rng: &mut StdRng) -> Vec<u8> {
    let url = odd_url(rng);
    let first = if rng.random_bool(0.5) {
        "\"http://svc.internal/a\""
    } else {
        "5"
    };
    format!(
        r#"{{"url":{first},"url":{},"data":"d","data":"e","partition_key":"","acl":{{"name":"caller","secret":"x","secret":"s3cret"}},"acl":{{"name":"caller","secret":"s3cret"}}}}"#,
        Value::String(url)
    )
    .into_bytes()
}

/// Lone surrogates as JSON escapes, and invalid UTF-8 bytes inside strings.
fn lone_surrogate_or_bad_utf8(rng: &mut StdRng) -> Vec<u8> {
    let mut body = br#"{"url":"http://svc.internal/","data":"DATA","partition_key":"","acl":{"name":"caller","secret":"s3cret"}}"#.to_vec();
    let at = body.windows(4).position(|w| w == b"DATA").unwrap_or(0);
    let evil: &[u8] = [
        &b"\\ud800"[..],
        b"\\udfff\\ud800",
        b"\\ud83d",
        b"\xff\xfe",
        b"\xc0\xaf",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\x00",
        b"\\u0000",
    ]
    .choose(rng)
    .copied()
    .unwrap_or_default();
    body.splice(at..at + 4, evil.iter().copied());
    body
}

/// The checker itself: what counts as an answer, and which answers fail the run.
#[test]
fn answers_are_read_and_judged_as_the_checks_mean() {
    let final_after_continue = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 Internal Server Error\r\n";
    assert_eq!(parse_status(final_after_continue), Some(Answer::Status(500)));
    assert_eq!(parse_status(b"HTTP/1.1 100 Continue\r\n\r\n"), None);
    assert_eq!(last_status(b"HTTP/1.1 100 Continue\r\n\r\n"), Some(100));
    assert_eq!(parse_status(b"HTTP/1.1 4"), None);
    assert_eq!(parse_status(b"\x00\x01junk"), Some(Answer::NotHttp));
    assert!(Answer::Status(500).is_anomaly());
    assert!(Answer::Status(502).is_anomaly());
    assert!(!Answer::Status(503).is_anomaly());
    assert!(!Answer::Status(400).is_anomaly());
    assert!(!Answer::Closed.is_anomaly());
}
