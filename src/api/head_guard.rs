//! A deadline on every request head of a connection, not just the first.
//!
//! actix-http times only a connection's *first* request head (`client_request_timeout`).
//! After a response, its keep-alive timer closes an idle connection, but it stops as soon as
//! one byte of the next request arrives: a client that sends `G` and then nothing keeps the
//! connection (and its file descriptor) forever. [`HeadGuard`] wraps the socket and watches
//! the bytes going by:
//!
//! - a head is complete at its blank line (`\r\n\r\n`); heads seen are counted;
//! - a response is counted when a write starts with a status line (`HTTP/1.x`, not an
//!   interim `100 Continue`) while some head is unanswered;
//! - while every head seen has its response (the connection waits for the next request), a
//!   deadline runs: `keep_alive + read_timeout` from the last response, and no later than
//!   `read_timeout` after the first byte of the new head. When it passes, the next read
//!   fails with `TimedOut` and actix drops the connection.
//!
//! A request in progress (its head seen, its response not yet started) is never timed here:
//! its body has the handlers' own deadline, and its processing may take as long as it needs.
//!
//! When a handler gives up on a late body (408), it raises the connection's [`CloseSignal`]:
//! once that answer is written, the guard reports end-of-stream, so actix closes the
//! connection at once instead of lingering up to `http.server.write.timeout` to drain a body
//! that a slow client may never finish.
//! Counting is deliberately loose in one direction only: a `\r\n\r\n` inside a body counts as
//! a head, so the guard may stop timing a connection (as before), never time one wrongly.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The wrapped connection.
#[derive(Debug)]
pub struct HeadGuard<T> {
    io: T,
    read_timeout: Duration,
    keep_alive: Duration,
    heads: u64,
    responses: u64,
    /// How much of `\r\n\r\n` the last bytes read matched (0-3).
    matched: u8,
    /// The head deadline's timer, kept once made: it is reset for each request rather than
    /// allocated again.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Whether `deadline` runs (it does not while a request is being answered).
    armed: bool,
    /// Raised by a handler: close after the next response.
    close_requested: Arc<AtomicBool>,
    /// That response has been written: every read now reports end-of-stream.
    closing: bool,
}

/// Asks a connection's [`HeadGuard`] to end the connection after its next response. Handlers
/// find it in the connection data (`HttpRequest::conn_data`).
#[derive(Debug, Clone)]
pub struct CloseSignal(Arc<AtomicBool>);

impl CloseSignal {
    /// Close the connection once the response now being prepared is written.
    pub fn close_after_response(&self) {
        self.0.store(true, Ordering::Release);
    }
}

impl<T> HeadGuard<T> {
    /// Guards `io`: each request head must arrive within `read_timeout` of its first byte,
    /// and within `keep_alive + read_timeout` of the previous response.
    pub fn new(io: T, read_timeout: Duration, keep_alive: Duration) -> Self {
        Self {
            io,
            read_timeout,
            keep_alive,
            heads: 0,
            responses: 0,
            matched: 0,
            deadline: None,
            armed: false,
            close_requested: Arc::new(AtomicBool::new(false)),
            closing: false,
        }
    }

    /// The signal that ends this connection after its next response.
    pub fn close_signal(&self) -> CloseSignal {
        CloseSignal(Arc::clone(&self.close_requested))
    }

    fn waiting_for_head(&self) -> bool {
        self.heads == self.responses
    }

    /// Sets the deadline to `at`, or keeps the current one when it is earlier.
    fn deadline_at(&mut self, at: Instant) {
        match &mut self.deadline {
            Some(d) if self.armed && d.deadline() <= at => {}
            Some(d) => d.as_mut().reset(at),
            None => self.deadline = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        self.armed = true;
    }

    /// Notes `bytes` read from the client.
    fn saw_read(&mut self, bytes: &[u8], now: Instant) {
        if bytes.is_empty() {
            return;
        }
        if self.waiting_for_head() {
            self.deadline_at(now + self.read_timeout);
        }
        let (heads, matched) = count_heads(bytes, self.matched);
        self.matched = matched;
        self.heads += heads;
        if !self.waiting_for_head() {
            self.armed = false;
        }
    }

    /// Notes `bytes` written to the client.
    fn saw_write(&mut self, bytes: &[u8], now: Instant) {
        let status_line = bytes.starts_with(b"HTTP/1.") && bytes.get(8..13) != Some(b" 100 ");
        if status_line && self.close_requested.load(Ordering::Acquire) {
            self.closing = true;
        }
        if status_line && !self.waiting_for_head() {
            self.responses += 1;
            if self.waiting_for_head() {
                self.deadline_at(now + self.keep_alive + self.read_timeout);
            }
        }
    }
}

/// Counts the `\r\n\r\n` sequences in `bytes`, given that the bytes before them matched
/// `matched` (0-3) characters of it; returns the count and how much the end matches.
pub fn count_heads(bytes: &[u8], mut matched: u8) -> (u64, u8) {
    let mut found = 0;
    let mut i = 0;
    while i < bytes.len() {
        if matched == 0 {
            // Nothing matched yet: only a `\r` can start a match, so skip to the next one
            // (this runs over every byte of every request, bodies included).
            match memchr::memchr(b'\r', &bytes[i..]) {
                Some(at) => i += at,
                None => break,
            }
        }
        matched = step(matched, bytes[i]);
        if matched == 4 {
            found += 1;
            matched = 0;
        }
        i += 1;
    }
    (found, matched)
}

/// How much of `\r\n\r\n` is matched after byte `b`, given `matched` (0-3) before it; 4 is a
/// whole blank line.
fn step(matched: u8, b: u8) -> u8 {
    match (matched, b) {
        (0 | 2, b'\r') => matched + 1,
        (1 | 3, b'\n') => matched + 1,
        (_, b'\r') => 1,
        _ => 0,
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.as_mut().get_mut();
        if this.closing {
            // End-of-stream: actix stops reading and closes once its writes are flushed.
            return Poll::Ready(Ok(()));
        }
        if this.armed
            && let Some(deadline) = &mut this.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head not received in time",
            )));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let now = Instant::now();
            this.saw_read(&buf.filled()[before..], now);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadGuard<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.as_mut().get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = polled
            && n > 0
        {
            this.saw_write(data, Instant::now());
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte through the state machine, without the skip: what `count_heads` must agree
    /// with.
    fn count_heads_reference(bytes: &[u8], mut matched: u8) -> (u64, u8) {
        let mut found = 0;
        for &b in bytes {
            matched = step(matched, b);
            if matched == 4 {
                found += 1;
                matched = 0;
            }
        }
        (found, matched)
    }

    proptest::proptest! {
        #![proptest_config(crate::proptests::config(512))]

        #[test]
        fn counting_heads_agrees_with_the_byte_by_byte_machine(
            bytes in proptest::collection::vec(proptest::sample::select(b"\r\nab".to_vec()), 0..64),
            matched in 0u8..4,
        ) {
            proptest::prop_assert_eq!(count_heads(&bytes, matched), count_heads_reference(&bytes, matched));
        }
    }

    const RT: Duration = Duration::from_secs(5);
    const KA: Duration = Duration::from_secs(3);

    fn guard() -> HeadGuard<()> {
        HeadGuard::new((), RT, KA)
    }

    fn deadline(g: &HeadGuard<()>) -> Option<Instant> {
        g.deadline.as_ref().filter(|_| g.armed).map(|d| d.deadline())
    }

    #[test]
    fn heads_are_found_across_reads() {
        assert_eq!(count_heads(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0), (1, 0));
        let (n, m) = count_heads(b"GET / HTTP/1.1\r\nHost: x\r\n\r", 0);
        assert_eq!((n, m), (0, 3));
        assert_eq!(count_heads(b"\n", m), (1, 0));
        assert_eq!(count_heads(b"a\r\n\r\nb\r\n\r\n", 0), (2, 0));
        assert_eq!(count_heads(b"\r\r\n\r\n", 0), (1, 0));
        assert_eq!(count_heads(b"\r\n\n\r\n", 0), (0, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_second_head_is_timed() {
        let mut g = guard();
        let t0 = Instant::now();
        // First request: timed from its first byte, untimed once its head is complete.
        g.saw_read(b"POST /rpc/call HTTP/1.1\r\n", t0);
        assert_eq!(deadline(&g), Some(t0 + RT));
        g.saw_read(b"Content-Length: 2\r\n\r\n{}", t0);
        assert_eq!(deadline(&g), None);
        // Its response: the next head is due within keep-alive + read timeout.
        let t1 = t0 + Duration::from_secs(1);
        g.saw_write(b"HTTP/1.1 200 OK\r\n\r\n", t1);
        assert_eq!(deadline(&g), Some(t1 + KA + RT));
        // A byte of the next head brings it forward to read timeout from that byte.
        let t2 = t1 + Duration::from_secs(1);
        g.saw_read(b"G", t2);
        assert_eq!(deadline(&g), Some(t2 + RT));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_progress_is_never_timed() {
        let mut g = guard();
        let t0 = Instant::now();
        g.saw_read(b"POST /x HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", t0);
        // The interim answer is not the response.
        g.saw_write(b"HTTP/1.1 100 Continue\r\n\r\n", t0);
        g.saw_read(b"{\"body\": 1}", t0);
        assert_eq!(deadline(&g), None);
        // Pipelined: two heads, one response so far: still in progress.
        let mut g = guard();
        g.saw_read(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n", t0);
        g.saw_write(b"HTTP/1.1 200 OK\r\n\r\n", t0);
        assert_eq!(deadline(&g), None);
        g.saw_write(b"HTTP/1.1 200 OK\r\n\r\n", t0);
        assert!(deadline(&g).is_some());
        // A later chunk of the same response is not a second response.
        let mut g = guard();
        g.saw_read(b"GET /a HTTP/1.1\r\n\r\n", t0);
        g.saw_write(b"HTTP/1.1 200 OK\r\n\r\n", t0);
        g.saw_write(b"HTTP/1.1 200 OK\r\n\r\n", t0);
        assert_eq!((g.heads, g.responses), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_close_signal_takes_effect_after_the_response() {
        let mut g = guard();
        let t0 = Instant::now();
        g.saw_read(b"POST /x HTTP/1.1\r\nContent-Length: 9\r\n\r\n", t0);
        g.close_signal().close_after_response();
        assert!(!g.closing);
        g.saw_write(b"HTTP/1.1 408 Request Timeout\r\n\r\n", t0);
        assert!(g.closing);
    }
}
