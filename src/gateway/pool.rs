//! The router's idle connections to instances, per data-plane thread and instance address:
//! a request takes a ready one or opens a new one, and gives it back when its response is done.
//!
//! An app closes its idle connections after a time of its own (gunicorn 2 s, Node 5 s); a
//! request sent on one just as the app closes it fails. So a connection is reused only within
//! its idle limit: what the app said in `Keep-Alive: timeout=N` (less a second), else
//! `DEFAULT_IDLE_LIMIT`, below the common apps' own. Once a second each thread sweeps its pool:
//! connections the instance closed or past their limit are dropped. (The request that still
//! loses the race is retried by the router when that is safe: `http::send`.)

use super::budget;
use super::client_stream::ClientClock;
use super::stats::RouteStats;
use bytes::Bytes;
use http_body_util::{Either, Empty};
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::time::Instant;

/// How long a connection may stay idle in the pool when its app did not say.
pub const DEFAULT_IDLE_LIMIT: Duration = Duration::from_secs(1);
/// The longest idle limit an app's `Keep-Alive: timeout=` may set.
pub const MAX_IDLE_LIMIT: Duration = Duration::from_secs(90);
/// What is taken off an app's `Keep-Alive: timeout=`, so the router stops reusing a
/// connection before the app closes it.
const MARGIN: Duration = Duration::from_secs(1);
/// A request's body on its way to an instance: the client's, or none (a request sent again).
pub type RequestBody = Either<CountedBody, Empty<Bytes>>;

/// A client's request body on its way to an instance, its bytes counted into its route's
/// `bytes_in` as they pass, and its breaking off (malformed, cut short) told to the client's
/// clock, so the router blames the client and not the app (a body that is empty from the start
/// costs nothing).
pub struct CountedBody {
    body: Incoming,
    watched: Option<(Arc<RouteStats>, Arc<ClientClock>)>,
}

impl CountedBody {
    pub fn new(body: Incoming, stats: &Arc<RouteStats>, clock: &Arc<ClientClock>) -> CountedBody {
        let watched = (!body.is_end_stream()).then(|| (stats.clone(), clock.clone()));
        CountedBody { body, watched }
    }
}

impl hyper::body::Body for CountedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        match (&polled, &self.watched) {
            (Poll::Ready(Some(Ok(frame))), Some((stats, _))) => {
                let bytes = frame.data_ref().map_or(0, |data| data.len() as u64);
                stats.bytes_in.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
            }
            (Poll::Ready(Some(Err(_))), Some((_, clock))) => clock.request_body_broke(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A connection to an instance that carries one request at a time.
pub type Sender = SendRequest<RequestBody>;

/// A connection for a request: taken from the pool (with how long it sat idle) or new.
pub struct Pooled {
    pub sender: Sender,
    pub idle_for: Option<Duration>,
}

struct Idle {
    sender: Sender,
    since: Instant,
    limit: Duration,
}

impl Idle {
    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.since) >= self.limit
    }
}

/// The idle limit of a connection whose last response carried `keep_alive` (the value of
/// its `Keep-Alive` header, `timeout=5, max=100`): the app's timeout less a second.
pub fn idle_limit(keep_alive: Option<&[u8]>) -> Duration {
    let timeout = keep_alive.and_then(|value| {
        let text = std::str::from_utf8(value).ok()?;
        let seconds = text.split(',').find_map(|part| part.trim().strip_prefix("timeout="))?;
        seconds.trim().parse::<u64>().ok()
    });
    match timeout {
        Some(seconds) => Duration::from_secs(seconds).saturating_sub(MARGIN).min(MAX_IDLE_LIMIT),
        None => DEFAULT_IDLE_LIMIT,
    }
}

/// Idle connections per instance address. A list, not a hash map: a type has few instances,
/// and comparing a few addresses is cheaper than hashing one.
type Pool = Vec<(SocketAddr, Vec<Idle>)>;

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Vec::new()) };
}

/// Drops the entry at `index` of `idle`, counting it out.
fn remove(idle: &mut Vec<Idle>, index: usize) -> Idle {
    budget::unpooled(1);
    idle.swap_remove(index)
}

/// The idle connections to `addr` in `pool`, if any.
fn idle_to(pool: &mut Pool, addr: SocketAddr) -> Option<&mut Vec<Idle>> {
    pool.iter_mut().find(|(to, _)| *to == addr).map(|(_, idle)| idle)
}

/// An idle connection to `addr`, or a new one (always a new one for an upgrade, which keeps it).
pub async fn sender(addr: SocketAddr, timeout: Duration, upgrade: bool) -> Option<Pooled> {
    if !upgrade {
        if let Some(pooled) = take(addr).await {
            return Some(pooled);
        }
    }
    let sender = connect(addr, timeout).await?;
    Some(Pooled { sender, idle_for: None })
}

/// A new connection to `addr`, driven by a task of its own.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Option<Sender> {
    let stream = super::socket::connect(addr, timeout).await?;
    let mut builder = hyper::client::conn::http1::Builder::new();
    builder.max_buf_size(super::socket::MAX_BUFFER);
    let (sender, connection) = builder.handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    Some(sender)
}

/// A pooled connection to `addr` that is ready for a request, within its idle limit; closed
/// and expired ones are dropped, busy ones (their last response still finishing) stay.
async fn take(addr: SocketAddr) -> Option<Pooled> {
    let now = Instant::now();
    std::future::poll_fn(|cx| {
        Poll::Ready(POOL.with_borrow_mut(|pool| {
            let idle = idle_to(pool, addr)?;
            let mut index = idle.len();
            while index > 0 {
                index -= 1;
                if idle[index].expired(now) {
                    drop(remove(idle, index));
                    continue;
                }
                match idle[index].sender.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        let Idle { sender, since, .. } = remove(idle, index);
                        return Some(Pooled { sender, idle_for: Some(now.saturating_duration_since(since)) });
                    }
                    Poll::Ready(Err(_)) => drop(remove(idle, index)),
                    Poll::Pending => {}
                }
            }
            None
        }))
    })
    .await
}

/// Puts a connection back in the pool (its response is done) for at most `limit` idle.
pub fn give_back(addr: SocketAddr, sender: Sender, limit: Duration) {
    let conn = Idle { sender, since: Instant::now(), limit };
    budget::pooled(1);
    POOL.with_borrow_mut(|pool| match idle_to(pool, addr) {
        Some(idle) => idle.push(conn),
        None => pool.push((addr, vec![conn])),
    });
}

/// Drops this thread's pooled connections that are closed or past their idle limit at `now`.
pub fn sweep(now: Instant) {
    POOL.with_borrow_mut(|pool| {
        for (_, idle) in pool.iter_mut() {
            let before = idle.len();
            idle.retain(|conn| !conn.sender.is_closed() && !conn.expired(now));
            budget::unpooled(before - idle.len());
        }
        pool.retain(|(_, idle)| !idle.is_empty());
    });
}

/// Connections in this thread's pool to `addr`.
#[cfg(test)]
fn pooled(addr: SocketAddr) -> usize {
    POOL.with_borrow_mut(|pool| idle_to(pool, addr).map_or(0, |idle| idle.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn the_idle_limit_is_the_apps_keep_alive_less_a_second_or_the_default() {
        assert_eq!(idle_limit(Some(b"timeout=5")), Duration::from_secs(4));
        assert_eq!(idle_limit(Some(b"max=100, timeout=2")), Duration::from_secs(1));
        assert_eq!(idle_limit(Some(b"timeout=1")), Duration::ZERO, "never reused");
        assert_eq!(idle_limit(Some(b"timeout=99999999999")), MAX_IDLE_LIMIT);
        assert_eq!(idle_limit(Some(b"timeout=soon")), DEFAULT_IDLE_LIMIT);
        assert_eq!(idle_limit(None), DEFAULT_IDLE_LIMIT);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn idle_connections_are_closed_after_the_limit_and_closed_ones_at_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let first = connect(addr, Duration::from_secs(1)).await.unwrap();
        let (mut instance_side, _) = listener.accept().await.unwrap();
        give_back(addr, first, MAX_IDLE_LIMIT);
        sweep(Instant::now() + MAX_IDLE_LIMIT - Duration::from_secs(1));
        assert_eq!(pooled(addr), 1, "kept while under the limit");
        sweep(Instant::now() + MAX_IDLE_LIMIT);
        assert_eq!(pooled(addr), 0, "dropped at the limit");
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), instance_side.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0))), "the instance sees the connection closed: {read:?}");

        let second = connect(addr, Duration::from_secs(1)).await.unwrap();
        let (instance_side, _) = listener.accept().await.unwrap();
        give_back(addr, second, DEFAULT_IDLE_LIMIT);
        drop(instance_side);
        let closed = async {
            while POOL.with_borrow_mut(|pool| {
                idle_to(pool, addr).is_some_and(|idle| idle.iter().any(|c| !c.sender.is_closed()))
            }) {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), closed).await.expect("hyper notices the close");
        sweep(Instant::now());
        assert_eq!(pooled(addr), 0, "a connection the instance closed is dropped at the next sweep");
    }
}
