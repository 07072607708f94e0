//! A router client's connection as hyper sees it, and the clock that bounds it between
//! requests: the head of each request must arrive within the route's `head` timeout (else the
//! client gets `408` and the log `H28`), and a kept-alive connection may wait `keepalive` for its
//! next request (then it is closed, as any server closes idle connections). While a request is
//! served the instance's timeouts apply instead (`H12`, `H15`).

use super::timeouts::Timeouts;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::task::{Context, Poll};
use tokio::net::TcpStream;
use tokio::time::{Duration, Instant};

/// The answer to a client whose request head did not arrive in time.
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// Where a client connection is between its requests.
const FRESH: u8 = 0;
const IDLE: u8 = 1;
const HEAD: u8 = 2;
const BUSY: u8 = 3;
const EXPIRED: u8 = 4;

/// What the connection's watch finds when its timer fires.
#[derive(Debug, PartialEq, Eq)]
pub enum Due {
    /// Nothing yet: look again then.
    At(Instant),
    /// Idle past its limit (or never sent a byte): close it.
    Idle,
    /// A request head started and did not finish in time: answer `408`.
    Head,
}

/// The phase of one client connection, shared by its stream, its requests and its watch.
pub struct ClientClock {
    epoch: Instant,
    phase: AtomicU8,
    /// When the phase began, in milliseconds from `epoch`.
    since: AtomicU64,
}

impl ClientClock {
    pub fn new() -> ClientClock {
        ClientClock { epoch: Instant::now(), phase: AtomicU8::new(FRESH), since: AtomicU64::new(0) }
    }

    fn mark(&self, phase: u8) {
        self.since.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.phase.store(phase, Ordering::Relaxed);
    }

    /// Bytes arrived from the client: between requests, a head has started.
    fn bytes_arrived(&self) {
        if matches!(self.phase.load(Ordering::Relaxed), FRESH | IDLE) {
            self.mark(HEAD);
        }
    }

    /// A request's head is in: it is served (the instance's timeouts apply).
    pub fn request_started(&self) {
        self.phase.store(BUSY, Ordering::Relaxed);
    }

    /// A request's response is done: the connection waits for the next one.
    pub fn request_done(&self) {
        self.mark(IDLE);
    }

    /// The head timed out: the stream answers `408` at its next read and ends.
    pub fn expire(&self) {
        self.phase.store(EXPIRED, Ordering::Relaxed);
    }

    fn expired(&self) -> bool {
        self.phase.load(Ordering::Relaxed) == EXPIRED
    }

    /// What is due at `now` under `timeouts`.
    pub fn due(&self, now: Instant, timeouts: &Timeouts) -> Due {
        let since = self.epoch + Duration::from_millis(self.since.load(Ordering::Relaxed));
        let (limit, past) = match self.phase.load(Ordering::Relaxed) {
            BUSY => return Due::At(now + timeouts.head),
            FRESH => (timeouts.head, Due::Idle),
            HEAD => (timeouts.head, Due::Head),
            IDLE => (timeouts.keepalive, Due::Idle),
            _ => return Due::Idle,
        };
        match since + limit {
            deadline if deadline <= now => past,
            deadline => Due::At(deadline),
        }
    }
}

impl Default for ClientClock {
    fn default() -> Self {
        ClientClock::new()
    }
}

/// A router client's stream: yields `prefix` (the data read with a PROXY header) before the
/// stream's own bytes, tells the clock when bytes arrive, answers `408` once the clock expired,
/// and skips the `shutdown` call once the client has closed its side: closing the socket then
/// sends the same FIN (nothing unread can turn it into a reset), one system call less per
/// connection.
pub struct ClientStream {
    prefix: Vec<u8>,
    read: usize,
    client_closed: bool,
    clock: std::sync::Arc<ClientClock>,
    pub stream: TcpStream,
}

impl ClientStream {
    pub fn new(prefix: Vec<u8>, stream: TcpStream, clock: std::sync::Arc<ClientClock>) -> ClientStream {
        ClientStream { prefix, read: 0, client_closed: false, clock, stream }
    }
}

impl tokio::io::AsyncRead for ClientStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.clock.expired() {
            // A partial write or none at all only loses the courtesy: the connection ends anyway.
            let _ = self.stream.try_write(REQUEST_TIMEOUT);
            return Poll::Ready(Ok(()));
        }
        if self.read < self.prefix.len() {
            let take = (self.prefix.len() - self.read).min(buf.remaining());
            let start = self.read;
            buf.put_slice(&self.prefix[start..start + take]);
            self.read += take;
            self.clock.bytes_arrived();
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) {
            match buf.filled().len() == before {
                true => self.client_closed |= buf.remaining() > 0,
                false => self.clock.bytes_arrived(),
            }
        }
        read
    }
}

impl tokio::io::AsyncWrite for ClientStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.client_closed {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_head_must_finish_in_time_and_an_idle_connection_waits_its_keepalive() {
        let timeouts = Timeouts::default();
        let clock = ClientClock::new();
        let start = Instant::now();
        assert_eq!(
            clock.due(start, &timeouts),
            Due::At(start + timeouts.head),
            "a fresh connection gets the head's time"
        );
        assert_eq!(clock.due(start + timeouts.head, &timeouts), Due::Idle, "and is closed without a byte");
        tokio::time::advance(Duration::from_secs(1)).await;
        clock.bytes_arrived();
        let head = Instant::now();
        assert_eq!(clock.due(head + Duration::from_secs(29), &timeouts), Due::At(head + timeouts.head));
        assert_eq!(clock.due(head + timeouts.head, &timeouts), Due::Head);
        clock.request_started();
        assert!(
            matches!(clock.due(head + Duration::from_secs(600), &timeouts), Due::At(_)),
            "served: no client timeout"
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        clock.request_done();
        let idle = Instant::now();
        assert_eq!(clock.due(idle + Duration::from_secs(89), &timeouts), Due::At(idle + timeouts.keepalive));
        assert_eq!(clock.due(idle + timeouts.keepalive, &timeouts), Due::Idle);
    }
}
