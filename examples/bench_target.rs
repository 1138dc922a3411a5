//! Benchmark helper for `scripts/bench.sh`: a minimal delivery target and a
//! rate-limited `/rpc/call` sender, in one binary so the bench builds one example.
//!
//! ```text
//! bench_target serve --port P [--host 127.0.0.1] [--workers 1] [--exit-after SECS]
//! bench_target send  --url http://127.0.0.1:P/rpc/call --target http://127.0.0.1:T/x
//!                    --rate R --seconds S [--connections C] [--data-bytes N]
//!                    [--acl-name bench] [--acl-secret bench-secret] [--ack queue|kafka]
//! ```
//!
//! `serve` answers every request with 200 and an empty body and counts the
//! POSTs; when a body starts with `t=<unix micros>;` it records arrival − send.
//!
//! ```text
//! GET  /metrics          counters and latency percentiles since start (or the last reset)
//! GET  /metrics/window   the same for the time since the previous /metrics/window call
//!                        (the bench's once-a-second sampler is its only caller)
//! POST /metrics/reset    zero every counter
//! GET  /healthz          200
//! *    /mock             reads the body, answers 200 with an empty body, counts nothing:
//!                        the bench's "trivial actix-web endpoint" baseline
//! ```
//!
//! On SIGTERM/SIGINT (or after `--exit-after` seconds) it prints the `/metrics`
//! JSON on stdout and exits.
//!
//! `send` opens C keep-alive HTTP/1.1 connections and sends R calls per
//! second in total for S seconds (an open-loop schedule: a late call is sent
//! at once, never skipped), each with `data` = `t=<unix micros>;` padded to N
//! bytes, then prints a JSON summary (sent, ok, non-2xx, errors, achieved
//! rate, response latency percentiles).
//!
//! Loopback only: both modes refuse non-loopback addresses.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ----------------------------------------------------------------- histogram --

/// Sub-buckets per power of two: values are kept to within 1/64 (~1.6 %).
const SUB: usize = 64;
/// Enough buckets for any u64.
const BUCKETS: usize = (64 - 6) * SUB + 2 * SUB;

/// A lock-free log-linear histogram of microsecond values.
#[derive(Debug)]
struct Histogram {
    buckets: Vec<AtomicU64>,
    sum: AtomicU64,
    max: AtomicU64,
}

fn bucket_of(v: u64) -> usize {
    if v < 2 * SUB as u64 {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros() as usize; // >= 7
    let shift = exp - 6;
    shift * SUB + (v >> shift) as usize
}

/// Middle of the bucket's value range.
fn value_of(idx: usize) -> u64 {
    if idx < 2 * SUB {
        return idx as u64;
    }
    let shift = idx / SUB - 1;
    let mant = (idx % SUB + SUB) as u64;
    (mant << shift) + ((1u64 << shift) >> 1)
}

impl Histogram {
    fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    fn record(&self, v: u64) {
        self.buckets[bucket_of(v).min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
        self.max.fetch_max(v, Ordering::Relaxed);
    }

    /// Copies the counts and, with `reset`, zeroes them (each bucket atomically).
    fn snapshot(&self, reset: bool) -> (Vec<u64>, u64, u64) {
        let take = |a: &AtomicU64| {
            if reset {
                a.swap(0, Ordering::Relaxed)
            } else {
                a.load(Ordering::Relaxed)
            }
        };
        let counts: Vec<u64> = self.buckets.iter().map(take).collect();
        (counts, take(&self.sum), take(&self.max))
    }

    fn summary(&self, reset: bool) -> Value {
        let (counts, sum, max) = self.snapshot(reset);
        let n: u64 = counts.iter().sum();
        let pct = |q: f64| -> Value {
            if n == 0 {
                return Value::Null;
            }
            let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return json!(value_of(i).min(max));
                }
            }
            json!(max)
        };
        json!({
            "n": n,
            "mean_us": if n == 0 { Value::Null } else { json!(sum as f64 / n as f64) },
            "p50_us": pct(0.50),
            "p90_us": pct(0.90),
            "p99_us": pct(0.99),
            "p999_us": pct(0.999),
            "max_us": if n == 0 { Value::Null } else { json!(max) },
        })
    }
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

// -------------------------------------------------------------------- args --

#[derive(Debug)]
struct Args(Vec<String>);

impl Args {
    fn get(&self, name: &str) -> Option<&str> {
        let flag = format!("--{name}");
        self.0
            .iter()
            .position(|a| *a == flag)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }

    fn text(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.get(name) {
            None => default,
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| die(&format!("--{name}: not a number: {v}"))),
        }
    }
}

fn die(msg: &str) -> ! {
    eprintln!("bench_target: {msg}");
    std::process::exit(2)
}

fn main() {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    let mode = if argv.is_empty() {
        "serve".to_owned()
    } else {
        argv.remove(0)
    };
    let args = Args(argv);
    match mode.as_str() {
        "serve" => serve(&args),
        "send" => send(&args),
        _ => die("usage: bench_target serve|send [--flag value ...] (see the source's header)"),
    }
}

// ------------------------------------------------------------------- serve --

#[derive(Debug)]
struct Target {
    started: Instant,
    count: AtomicU64,
    bytes: AtomicU64,
    first_us: AtomicU64,
    last_us: AtomicU64,
    latency: Histogram,
    window_count: AtomicU64,
    window_latency: Histogram,
}

impl Target {
    fn metrics(&self, window: bool) -> Value {
        let (count, latency) = if window {
            (
                self.window_count.swap(0, Ordering::Relaxed),
                self.window_latency.summary(true),
            )
        } else {
            (self.count.load(Ordering::Relaxed), self.latency.summary(false))
        };
        let first = self.first_us.load(Ordering::Relaxed);
        json!({
            "count": count,
            "bytes": self.bytes.load(Ordering::Relaxed),
            "first_us": if first == u64::MAX { Value::Null } else { json!(first) },
            "last_us": self.last_us.load(Ordering::Relaxed),
            "now_us": unix_micros(),
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "latency": latency,
        })
    }

    fn reset(&self) {
        self.count.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        self.first_us.store(u64::MAX, Ordering::Relaxed);
        self.last_us.store(0, Ordering::Relaxed);
        self.latency.summary(true);
    }
}

async fn hit(state: web::Data<Target>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if req.method() == actix_web::http::Method::POST {
        let now = unix_micros();
        state.count.fetch_add(1, Ordering::Relaxed);
        state.window_count.fetch_add(1, Ordering::Relaxed);
        state.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        state.first_us.fetch_min(now, Ordering::Relaxed);
        state.last_us.fetch_max(now, Ordering::Relaxed);
        if let Some(sent) = sent_micros(&body) {
            let lat = now.saturating_sub(sent);
            state.latency.record(lat);
            state.window_latency.record(lat);
        }
    }
    HttpResponse::Ok().finish()
}

/// `t=<digits>;...` → the digits.
fn sent_micros(body: &[u8]) -> Option<u64> {
    let rest = body.strip_prefix(b"t=")?;
    let end = rest.iter().position(|b| *b == b';')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

fn loopback(host: &str) -> IpAddr {
    let ip: IpAddr = host
        .parse()
        .unwrap_or_else(|_| die(&format!("not an IP address: {host}")));
    if !ip.is_loopback() {
        die(&format!(
            "{ip} is not a loopback address; the bench runs on loopback only"
        ));
    }
    ip
}

fn serve(args: &Args) {
    let ip = loopback(&args.text("host", "127.0.0.1"));
    let port: u16 = args.num("port", 0);
    let workers: usize = args.num("workers", 1);
    let exit_after: u64 = args.num("exit-after", 0);
    let state = web::Data::new(Target {
        started: Instant::now(),
        count: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        first_us: AtomicU64::new(u64::MAX),
        last_us: AtomicU64::new(0),
        latency: Histogram::new(),
        window_count: AtomicU64::new(0),
        window_latency: Histogram::new(),
    });
    let shared = state.clone();
    let result = actix_web::rt::System::new().block_on(async move {
        let app_state = shared.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                .route(
                    "/metrics",
                    web::get()
                        .to(|s: web::Data<Target>| async move { HttpResponse::Ok().json(s.metrics(false)) }),
                )
                .route(
                    "/metrics/window",
                    web::get()
                        .to(|s: web::Data<Target>| async move { HttpResponse::Ok().json(s.metrics(true)) }),
                )
                .route(
                    "/metrics/reset",
                    web::post().to(|s: web::Data<Target>| async move {
                        s.reset();
                        HttpResponse::Ok().finish()
                    }),
                )
                .route("/healthz", web::get().to(HttpResponse::Ok))
                .route(
                    "/mock",
                    web::to(|_body: web::Bytes| async { HttpResponse::Ok().finish() }),
                )
                .default_service(web::to(hit))
        })
        .workers(workers.max(1))
        .backlog(4096)
        .max_connection_rate(4096)
        .bind(SocketAddr::new(ip, port))?;
        for addr in server.addrs() {
            eprintln!("bench_target: listening on http://{addr} ({workers} workers)");
        }
        let server = server.run();
        if exit_after > 0 {
            let handle = server.handle();
            actix_web::rt::spawn(async move {
                actix_web::rt::time::sleep(Duration::from_secs(exit_after)).await;
                handle.stop(true).await;
            });
        }
        server.await
    });
    println!("{}", state.metrics(false));
    if let Err(e) = result {
        die(&format!("server: {e}"));
    }
}

// -------------------------------------------------------------------- send --

#[derive(Debug)]
struct SendStats {
    sent: AtomicU64,
    ok: AtomicU64,
    non2xx: AtomicU64,
    errors: AtomicU64,
    late: AtomicU64,
    latency: Histogram,
}

#[derive(Debug)]
struct SendPlan {
    addr: SocketAddr,
    host_header: String,
    path: String,
    target: String,
    acl_name: String,
    acl_secret: String,
    ack: String,
    data_bytes: usize,
    rate: f64,
    connections: usize,
    seconds: f64,
}

/// `http://IP:PORT/path` → (addr, path). Only numeric loopback hosts.
fn parse_url(url: &str) -> (SocketAddr, String) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| die(&format!("only http:// URLs: {url}")));
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let addr: SocketAddr = authority
        .parse()
        .unwrap_or_else(|_| die(&format!("need IP:PORT in {url}")));
    loopback(&addr.ip().to_string());
    (addr, path)
}

fn send(args: &Args) {
    let (addr, path) = parse_url(&args.text("url", "http://127.0.0.1:10086/rpc/call"));
    let plan = Arc::new(SendPlan {
        addr,
        host_header: addr.to_string(),
        path,
        target: args
            .get("target")
            .map(str::to_owned)
            .unwrap_or_else(|| die("--target URL is required")),
        acl_name: args.text("acl-name", "bench"),
        acl_secret: args.text("acl-secret", "bench-secret"),
        ack: args.text("ack", ""),
        data_bytes: args.num("data-bytes", 100),
        rate: args.num("rate", 100.0),
        connections: args.num("connections", 16usize).max(1),
        seconds: args.num("seconds", 10.0),
    });
    if !(plan.rate > 0.0 && plan.seconds > 0.0 && plan.seconds <= 3600.0) {
        die("--rate must be > 0 and --seconds in (0, 3600]");
    }
    let stats = Arc::new(SendStats {
        sent: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        non2xx: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        late: AtomicU64::new(0),
        latency: Histogram::new(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| die(&format!("runtime: {e}")));
    let started = Instant::now();
    rt.block_on(async {
        let t0 = tokio::time::Instant::now() + Duration::from_millis(50);
        let tasks: Vec<_> = (0..plan.connections)
            .map(|i| tokio::spawn(connection(i, t0, Arc::clone(&plan), Arc::clone(&stats))))
            .collect();
        for t in tasks {
            if t.await.is_err() {
                eprintln!("bench_target: a sender connection task panicked");
            }
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let ok = stats.ok.load(Ordering::Relaxed);
    let out = json!({
        "target_rate": plan.rate,
        "seconds": plan.seconds,
        "elapsed_s": elapsed,
        "connections": plan.connections,
        "data_bytes": plan.data_bytes,
        "sent": stats.sent.load(Ordering::Relaxed),
        "ok": ok,
        "non2xx": stats.non2xx.load(Ordering::Relaxed),
        "errors": stats.errors.load(Ordering::Relaxed),
        "late_sends": stats.late.load(Ordering::Relaxed),
        "ok_rate": ok as f64 / plan.seconds,
        "response_latency": stats.latency.summary(false),
    });
    println!("{out}");
}

fn call_body(plan: &SendPlan) -> Vec<u8> {
    let stamp = format!("t={};", unix_micros());
    let mut data = stamp;
    while data.len() < plan.data_bytes {
        data.push('x');
    }
    let mut body = json!({
        "acl": {"name": plan.acl_name, "secret": plan.acl_secret},
        "url": plan.target,
        "data": data,
        "partition_key": "",
    });
    if !plan.ack.is_empty() {
        body["ack"] = json!(plan.ack);
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

/// One keep-alive connection: sends its share of the schedule (every C-th slot).
async fn connection(i: usize, t0: tokio::time::Instant, plan: Arc<SendPlan>, stats: Arc<SendStats>) {
    let interval = Duration::from_secs_f64(plan.connections as f64 / plan.rate);
    let offset = Duration::from_secs_f64(i as f64 / plan.rate);
    let end = t0 + Duration::from_secs_f64(plan.seconds);
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(4096);
    let mut k: u32 = 0;
    loop {
        let at = t0 + offset + interval * k;
        if at >= end {
            break;
        }
        k += 1;
        let now = tokio::time::Instant::now();
        if at > now {
            tokio::time::sleep_until(at).await;
        } else if now - at > Duration::from_millis(10) {
            stats.late.fetch_add(1, Ordering::Relaxed);
        }
        let body = call_body(&plan);
        let mut req = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            plan.path,
            plan.host_header,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        stats.sent.fetch_add(1, Ordering::Relaxed);
        let begin = Instant::now();
        if conn.is_none() {
            match TcpStream::connect(plan.addr).await {
                Ok(s) => {
                    s.set_nodelay(true).ok();
                    conn = Some(s);
                }
                Err(_) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        }
        let Some(stream) = conn.as_mut() else { continue };
        let result = tokio::time::timeout(Duration::from_secs(30), exchange(stream, &req, &mut buf)).await;
        match result {
            Ok(Ok((status, keep))) => {
                stats.latency.record(begin.elapsed().as_micros() as u64);
                if (200..300).contains(&status) {
                    stats.ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    stats.non2xx.fetch_add(1, Ordering::Relaxed);
                }
                if !keep {
                    conn = None;
                }
            }
            _ => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
        }
    }
}

/// Writes one request and reads one response; returns (status, keep-alive).
async fn exchange(stream: &mut TcpStream, req: &[u8], buf: &mut Vec<u8>) -> std::io::Result<(u16, bool)> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    stream.write_all(req).await?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(bad("closed before the response head"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 64 * 1024 {
            return Err(bad("response head too large"));
        }
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| bad("head not UTF-8"))?
        .to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        })
    };
    let keep = header("connection").is_none_or(|v| v != "close");
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        // Small bodies only: read until the terminating zero-length chunk.
        while !buf[head_end..].windows(5).any(|w| w == b"0\r\n\r\n") {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(bad("closed inside a chunked body"));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        return Ok((status, keep));
    }
    let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(bad("closed inside the body"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((status, keep))
}
