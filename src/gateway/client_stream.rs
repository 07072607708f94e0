//! A router client's connection as hyper sees it, and the clock that bounds it between
//! requests: the head of each request must arrive within the route's `head` timeout (else the
//! client gets `408` and the log `H28`), and a kept-alive connection may wait `keepalive` for its
//! next request (then it is closed, as any server closes idle connections). While a request is
//! served the instance's timeouts apply instead (`H12`, `H15`), and the client must take some of
//! its response within the same idle window as the instance (`response_idle`): a client that
//! stops reading is cut (`H28`), so it cannot hold its instance's connection and a place in its
//! caps for ever. An upgraded connection has no client timeout.
//!
//! No timer per connection: each data-plane thread keeps its clocks in a list that its
//! housekeeping sweeps once a second ([`sweep`]); a clock past its limit wakes its stream, which
//! answers `408` or ends at hyper's next read. The limits hold to within that second.

use super::stats::{Outcome, RouteStats};
use super::timeouts::Timeouts;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use tokio::net::TcpStream;
use tokio::time::{Duration, Instant};

/// The answer to a client whose request head did not arrive in time.
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// Where a client connection is between its requests.
const FRESH: u8 = 0;
const IDLE: u8 = 1;
const HEAD: u8 = 2;
const BUSY: u8 = 3;
/// Past its head timeout: the stream answers `408` and ends.
const EXPIRED: u8 = 4;
/// Idle past its limit: the stream ends.
const CLOSING: u8 = 5;
/// Upgraded (a tunnel now): no client timeout.
const DETACHED: u8 = 6;
/// Took none of its response for the idle window: its writes fail, the connection ends.
const STALLED: u8 = 7;

/// `write_stalled` when the client is not holding up a write.
const NOT_STALLED: u64 = u64::MAX;

/// What is due for a clock at a given time.
#[derive(Debug, PartialEq, Eq)]
pub enum Due {
    /// Nothing yet.
    Nothing,
    /// Idle past its limit (or never sent a byte): close it.
    Idle,
    /// A request head started and did not finish in time: answer `408`.
    Head,
    /// A response waited on the client for the idle window: cut it.
    Stalled,
}

/// The phase of one client connection, shared by its stream, its requests and the sweep.
pub struct ClientClock {
    epoch: Instant,
    phase: AtomicU8,
    /// When the phase began, in milliseconds from `epoch`.
    since: AtomicU64,
    head: Duration,
    keepalive: Duration,
    /// How long a response may wait on the client to take any of it.
    response_idle: Duration,
    /// Since when a write waits on the client, in milliseconds from `epoch` ([`NOT_STALLED`]).
    write_stalled: AtomicU64,
    /// The body of the request in flight broke off or was malformed.
    body_broke: AtomicBool,
    peer: SocketAddr,
    /// The stream's task while it waits for the client, to wake when a limit passes.
    waiting: Mutex<Option<Waker>>,
    /// Its route's counters (H28).
    stats: Option<Arc<RouteStats>>,
}

thread_local! {
    /// The clocks of this thread's client connections, for the sweep.
    static CLOCKS: RefCell<Vec<Weak<ClientClock>>> = const { RefCell::new(Vec::new()) };
}

impl ClientClock {
    /// A clock for a new connection from `peer`, watched by this thread's sweep.
    pub fn start(timeouts: &Timeouts, peer: SocketAddr, stats: Option<Arc<RouteStats>>) -> Arc<ClientClock> {
        let clock = Arc::new(ClientClock {
            epoch: Instant::now(),
            phase: AtomicU8::new(FRESH),
            since: AtomicU64::new(0),
            head: timeouts.head,
            keepalive: timeouts.keepalive,
            response_idle: timeouts.response_idle,
            write_stalled: AtomicU64::new(NOT_STALLED),
            body_broke: AtomicBool::new(false),
            peer,
            waiting: Mutex::new(None),
            stats,
        });
        CLOCKS.with_borrow_mut(|clocks| clocks.push(Arc::downgrade(&clock)));
        clock
    }

    fn mark(&self, phase: u8) {
        self.since.store(self.now_ms(), Ordering::Relaxed);
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
        if self.phase.load(Ordering::Relaxed) == BUSY {
            self.mark(IDLE);
        }
    }

    /// The connection is a tunnel now (`101`): no client timeout applies.
    pub fn detach(&self) {
        self.phase.store(DETACHED, Ordering::Relaxed);
    }

    /// Counts one request of this connection that ended so in its route's counters; returns the
    /// count before it (0 without counters).
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.stats.as_ref().map_or(0, |stats| stats.count(outcome))
    }

    /// The body of the request in flight broke off or was malformed (the router's H27).
    pub fn request_body_broke(&self) {
        self.body_broke.store(true, Ordering::Relaxed);
    }

    /// Whether the body of the request in flight broke off; asking clears it.
    pub fn take_request_body_broke(&self) -> bool {
        self.body_broke.swap(false, Ordering::Relaxed)
    }

    /// The client took none of a response for the idle window, and the connection was cut.
    pub fn stalled(&self) -> bool {
        self.phase.load(Ordering::Relaxed) == STALLED
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// What is due at `now`.
    pub fn due(&self, now: Instant) -> Due {
        let since = self.epoch + Duration::from_millis(self.since.load(Ordering::Relaxed));
        let (limit, past) = match self.phase.load(Ordering::Relaxed) {
            FRESH => (self.head, Due::Idle),
            HEAD => (self.head, Due::Head),
            IDLE => (self.keepalive, Due::Idle),
            BUSY => match self.write_stalled.load(Ordering::Relaxed) {
                NOT_STALLED => return Due::Nothing,
                stalled => {
                    let since = self.epoch + Duration::from_millis(stalled);
                    return if since + self.response_idle <= now { Due::Stalled } else { Due::Nothing };
                }
            },
            _ => return Due::Nothing,
        };
        match since + limit <= now {
            true => past,
            false => Due::Nothing,
        }
    }

    /// Acts on what is due at `now`: the stream is told (and woken) to answer `408` or to end.
    fn enforce(&self, now: Instant) {
        let phase = match self.due(now) {
            Due::Nothing => return,
            Due::Idle => CLOSING,
            Due::Head => {
                self.count(Outcome::H28);
                let waited = self.head.as_millis();
                tracing::warn!(
                    "at=error code=H28 desc=\"Client Connection Idle\" method=- path=\"-\" host=- request_id=- fwd=\"{}\" dyno=- connect=0ms service={waited}ms status=408 bytes=0 protocol=http",
                    self.peer.ip()
                );
                EXPIRED
            }
            // The response's log line and count (H28) are its body's, which ends with the cut.
            Due::Stalled => STALLED,
        };
        self.phase.store(phase, Ordering::Relaxed);
        if let Some(waker) = self.waiting.lock().ok().and_then(|mut waiting| waiting.take()) {
            waker.wake();
        }
    }

    /// Keeps the task of a stream waiting for its client, to wake it when a limit passes.
    fn wait(&self, cx: &Context<'_>) {
        if let Ok(mut waiting) = self.waiting.lock() {
            match waiting.as_ref() {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => *waiting = Some(cx.waker().clone()),
            }
        }
    }
}

/// Enforces the limits of this thread's client connections at `now` and forgets the ended ones
/// (the data plane's housekeeping calls it once a second).
pub fn sweep(now: Instant) {
    CLOCKS.with_borrow_mut(|clocks| {
        clocks.retain(|clock| match clock.upgrade() {
            Some(clock) => {
                clock.enforce(now);
                true
            }
            None => false,
        })
    });
}

/// A router client's stream: yields `prefix` (the data read with a PROXY header) before the
/// stream's own bytes, tells the clock when bytes arrive, answers `408` or ends once the clock
/// says so, and skips the `shutdown` call once the client has closed its side: closing the
/// socket then sends the same FIN (nothing unread can turn it into a reset), one system call
/// less per connection.
pub struct ClientStream {
    prefix: Vec<u8>,
    read: usize,
    client_closed: bool,
    clock: Arc<ClientClock>,
    pub stream: TcpStream,
}

impl ClientStream {
    pub fn new(prefix: Vec<u8>, stream: TcpStream, clock: Arc<ClientClock>) -> ClientStream {
        ClientStream { prefix, read: 0, client_closed: false, clock, stream }
    }
}

impl tokio::io::AsyncRead for ClientStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.clock.phase.load(Ordering::Relaxed) {
            EXPIRED => {
                // A partial write or none only loses the courtesy: the connection ends anyway.
                let _ = self.stream.try_write(REQUEST_TIMEOUT);
                return Poll::Ready(Ok(()));
            }
            CLOSING => return Poll::Ready(Ok(())),
            _ => {}
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
        match read {
            Poll::Ready(Ok(())) if buf.filled().len() == before => self.client_closed |= buf.remaining() > 0,
            Poll::Ready(Ok(())) => self.clock.bytes_arrived(),
            Poll::Pending if self.clock.phase.load(Ordering::Relaxed) != BUSY => self.clock.wait(cx),
            _ => {}
        }
        read
    }
}

impl tokio::io::AsyncWrite for ClientStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if self.clock.stalled() {
            return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
        }
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        let clock = &self.clock;
        match written {
            Poll::Pending => {
                if clock.write_stalled.load(Ordering::Relaxed) == NOT_STALLED {
                    clock.write_stalled.store(clock.now_ms(), Ordering::Relaxed);
                }
                clock.wait(cx);
            }
            _ if clock.write_stalled.load(Ordering::Relaxed) != NOT_STALLED => {
                clock.write_stalled.store(NOT_STALLED, Ordering::Relaxed)
            }
            _ => {}
        }
        written
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
        let clock = ClientClock::start(&timeouts, "127.0.0.1:1".parse().unwrap(), None);
        let start = Instant::now();
        assert_eq!(clock.due(start + Duration::from_secs(29)), Due::Nothing, "a fresh connection gets the head's time");
        assert_eq!(clock.due(start + timeouts.head), Due::Idle, "and is closed without a byte");
        tokio::time::advance(Duration::from_secs(1)).await;
        clock.bytes_arrived();
        let head = Instant::now();
        assert_eq!(clock.due(head + Duration::from_secs(29)), Due::Nothing);
        assert_eq!(clock.due(head + timeouts.head), Due::Head);
        clock.request_started();
        assert_eq!(clock.due(head + Duration::from_secs(600)), Due::Nothing, "served: no client timeout");
        tokio::time::advance(Duration::from_secs(5)).await;
        clock.request_done();
        let idle = Instant::now();
        assert_eq!(clock.due(idle + Duration::from_secs(89)), Due::Nothing);
        assert_eq!(clock.due(idle + timeouts.keepalive), Due::Idle);
        clock.detach();
        assert_eq!(clock.due(idle + Duration::from_secs(600)), Due::Nothing, "a tunnel has none");
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweep_enforces_limits_and_forgets_ended_connections() {
        let timeouts = Timeouts { head: Duration::from_secs(1), ..Timeouts::default() };
        let clock = ClientClock::start(&timeouts, "127.0.0.1:1".parse().unwrap(), None);
        clock.bytes_arrived();
        let ended = ClientClock::start(&timeouts, "127.0.0.1:2".parse().unwrap(), None);
        drop(ended);
        sweep(Instant::now() + Duration::from_secs(2));
        assert_eq!(clock.phase.load(Ordering::Relaxed), EXPIRED);
        assert_eq!(CLOCKS.with_borrow(Vec::len), 1);
    }
}
