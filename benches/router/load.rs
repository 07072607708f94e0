//! The client loads, the same code for the three proxies: `GET /` over raw TCP connections to a
//! proxy's frontend on 127.0.0.1, each response read by a minimal HTTP/1.1 parser (status line,
//! headers, a Content-Length body; a chunked body is an error).
//!
//! As in benches/gateway, connections come from several loopback source addresses (127.0.0.2
//! and up): in the new-connection load the client closes first, so each connection leaves a
//! TIME_WAIT on its port, and Linux reuses a loopback TIME_WAIT port only after a second; from
//! one address that caps a connect-close loop near 14,000 connections/s whatever the proxy.
//!
//! Loads run until a deadline; a request in progress at the deadline finishes and counts, and
//! rates divide by the time actually elapsed. A loop still waiting `STUCK_GRACE` after the
//! deadline is abandoned and counted as an error.

use bytes::{Buf, BytesMut};
use nix::sys::socket::{setsockopt, sockopt};
use std::fmt::Display;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{timeout_at, Instant};

/// The request, the same on every connection (HTTP/1.1: the connection stays open after it).
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
/// Client connections of the keep-alive load, and client loops of the new-connection load.
pub const CONCURRENCY: usize = 64;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 4096;
/// Longest response head accepted (status line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// Longest response body accepted (the backends send 13 bytes).
const MAX_BODY: usize = 1024 * 1024;
/// How long after the deadline a loop may still wait for a response before it counts as stuck.
const STUCK_GRACE: Duration = Duration::from_secs(1);
/// Pause after a failed request, so a dead proxy does not turn a loop into a busy spin.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// Longest time to open the keep-alive load's connections.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Loopback source addresses the client spreads its connections over, from 127.0.0.2.
const SOURCES: u8 = 8;

/// What a load completed and what failed.
#[derive(Debug, Default)]
pub struct Tally {
    pub completed: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Responses after which the proxy closed a keep-alive connection (`Connection: close`).
    pub closed: u64,
}

impl Tally {
    fn fail(&mut self, err: impl Display) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| err.to_string());
    }

    /// Counts a loop abandoned because it still waited for a response `STUCK_GRACE` after the end.
    fn stuck_if(&mut self, stuck: bool) {
        if stuck {
            self.fail(format!("no response within {STUCK_GRACE:?} after the end of the round"));
        }
    }

    fn merge(&mut self, other: Tally) {
        self.completed += other.completed;
        self.errors += other.errors;
        self.closed += other.closed;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// A load's tally over the time it took.
#[derive(Debug)]
pub struct Rate {
    pub tally: Tally,
    pub elapsed: Duration,
}

impl Rate {
    pub fn per_second(&self) -> f64 {
        self.tally.completed as f64 / self.elapsed.as_secs_f64()
    }
}

/// The keep-alive load's rate, and its latency percentiles over every request (microseconds;
/// `None` when no request completed).
#[derive(Debug)]
pub struct KeepAlive {
    pub rate: Rate,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
}

/// One client loop's tally and request latencies.
#[derive(Debug, Default)]
struct Run {
    tally: Tally,
    latencies: Vec<Duration>,
}

/// `CONCURRENCY` kept-alive connections, each sending `GET /` and reading the response, again
/// and again; a connection the proxy closes is opened again.
pub async fn keep_alive(addr: SocketAddr, duration: Duration) -> io::Result<KeepAlive> {
    let connections = open(addr).await?;
    let start = Instant::now();
    let deadline = start + duration;
    let mut loops = JoinSet::new();
    for (index, connection) in connections.into_iter().enumerate() {
        loops.spawn(async move {
            let mut run = Run::default();
            let looped = request_loop(source(index), addr, connection, deadline, &mut run);
            let finished = timeout_at(deadline + STUCK_GRACE, looped).await;
            run.tally.stuck_if(finished.is_err());
            run
        });
    }
    let mut tally = Tally::default();
    let mut latencies = Vec::new();
    while let Some(joined) = loops.join_next().await {
        match joined {
            Ok(run) => {
                tally.merge(run.tally);
                latencies.extend(run.latencies);
            }
            Err(err) => tally.fail(err),
        }
    }
    let rate = Rate { tally, elapsed: start.elapsed() };
    latencies.sort_unstable();
    let percentile = |p: usize| {
        let index = latencies.len().checked_sub(1)? * p / 100;
        Some(latencies[index].as_secs_f64() * 1e6)
    };
    Ok(KeepAlive { p50_us: percentile(50), p99_us: percentile(99), rate })
}

async fn request_loop(source: Ipv4Addr, addr: SocketAddr, first: Connection, deadline: Instant, run: &mut Run) {
    let mut kept = Some(first);
    while Instant::now() < deadline {
        let mut connection = match kept.take() {
            Some(connection) => connection,
            None => match Connection::open(source, addr).await {
                Ok(connection) => connection,
                Err(err) => {
                    run.tally.fail(err);
                    tokio::time::sleep(ERROR_BACKOFF).await;
                    continue;
                }
            },
        };
        let sent = Instant::now();
        match connection.get().await {
            Ok(keep_alive) => {
                run.latencies.push(sent.elapsed());
                run.tally.completed += 1;
                match keep_alive {
                    true => kept = Some(connection),
                    false => run.tally.closed += 1,
                }
            }
            Err(err) => {
                run.tally.fail(err);
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
}

/// `CONCURRENCY` loops of: connect, send `GET /`, read the response, close.
pub async fn new_connections(addr: SocketAddr, duration: Duration) -> Rate {
    let start = Instant::now();
    let deadline = start + duration;
    let mut loops = JoinSet::new();
    for index in 0..CONCURRENCY {
        loops.spawn(async move {
            let mut tally = Tally::default();
            let looped = connect_loop(source(index), addr, deadline, &mut tally);
            let finished = timeout_at(deadline + STUCK_GRACE, looped).await;
            tally.stuck_if(finished.is_err());
            tally
        });
    }
    let mut tally = Tally::default();
    while let Some(joined) = loops.join_next().await {
        match joined {
            Ok(loop_tally) => tally.merge(loop_tally),
            Err(err) => tally.fail(err),
        }
    }
    Rate { tally, elapsed: start.elapsed() }
}

async fn connect_loop(source: Ipv4Addr, addr: SocketAddr, deadline: Instant, tally: &mut Tally) {
    while Instant::now() < deadline {
        match open_and_get(source, addr).await {
            Ok(_closed_on_drop) => tally.completed += 1,
            Err(err) => {
                tally.fail(err);
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
}

/// Opens the keep-alive load's `CONCURRENCY` connections at once, each proven proxied by one
/// request.
async fn open(addr: SocketAddr) -> io::Result<Vec<Connection>> {
    let deadline = Instant::now() + OPEN_TIMEOUT;
    let mut openers = JoinSet::new();
    for index in 0..CONCURRENCY {
        openers.spawn(timeout_at(deadline, open_and_get(source(index), addr)));
    }
    let mut all = Vec::with_capacity(CONCURRENCY);
    while let Some(joined) = openers.join_next().await {
        let opened = joined.map_err(io::Error::other)?.map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{CONCURRENCY} connections not open within {OPEN_TIMEOUT:?}"),
            )
        })??;
        all.push(opened);
    }
    Ok(all)
}

async fn open_and_get(source: Ipv4Addr, addr: SocketAddr) -> io::Result<Connection> {
    let mut connection = Connection::open(source, addr).await?;
    connection.get().await?;
    Ok(connection)
}

/// The source address of the client loop or connection `index`.
fn source(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (index % usize::from(SOURCES)) as u8)
}

/// A client connection and the bytes received on it but not consumed yet.
struct Connection {
    stream: TcpStream,
    received: BytesMut,
}

/// What the client needs of a response head.
struct Head {
    content_length: usize,
    keep_alive: bool,
}

impl Connection {
    /// Connects from `source` to `addr`. `IP_BIND_ADDRESS_NO_PORT`: the socket bound to an
    /// address gets its port at connect, per destination and with TIME_WAIT reuse, rather than
    /// a port of its own at bind.
    async fn open(source: Ipv4Addr, addr: SocketAddr) -> io::Result<Connection> {
        let socket = TcpSocket::new_v4()?;
        setsockopt(&socket, sockopt::IpBindAddressNoPort, &true)?;
        socket.bind(SocketAddr::from((source, 0)))?;
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection { stream, received: BytesMut::with_capacity(READ_CHUNK) })
    }

    /// Sends `GET /` and reads the whole `200` response; false when the proxy closes the
    /// connection after it.
    async fn get(&mut self) -> io::Result<bool> {
        self.stream.write_all(REQUEST).await?;
        let head_length = loop {
            if let Some(end) = self.received.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if self.received.len() > MAX_HEAD {
                return Err(invalid(format!("response head longer than {MAX_HEAD} bytes")));
            }
            self.receive().await?;
        };
        let head = parse_head(&self.received[..head_length])?;
        let length = head_length + head.content_length;
        while self.received.len() < length {
            self.receive().await?;
        }
        self.received.advance(length);
        Ok(head.keep_alive)
    }

    /// Reads what the socket has into `received`; an end of stream here cuts a response.
    async fn receive(&mut self) -> io::Result<()> {
        self.received.reserve(READ_CHUNK);
        match self.stream.read_buf(&mut self.received).await? {
            0 => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the proxy closed the connection mid-response")),
            _ => Ok(()),
        }
    }
}

/// Checks the status (`200` only) and reads the body length and whether the connection stays.
fn parse_head(head: &[u8]) -> io::Result<Head> {
    let head = std::str::from_utf8(head).map_err(|_| invalid("response head not in UTF-8".to_string()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.split(' ');
    let version = words.next().unwrap_or_default();
    if words.next() != Some("200") {
        return Err(invalid(format!("response {status_line:?}")));
    }
    let mut keep_alive = version == "HTTP/1.1";
    let mut content_length = None;
    for (name, value) in lines.filter_map(|line| line.split_once(':')) {
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let length = value.parse().map_err(|_| invalid(format!("Content-Length {value:?}")))?;
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("connection") {
            let has = |token: &str| value.split(',').any(|t| t.trim().eq_ignore_ascii_case(token));
            keep_alive = (keep_alive || has("keep-alive")) && !has("close");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(invalid(format!("Transfer-Encoding {value:?}: the bench client reads Content-Length only")));
        }
    }
    match content_length {
        Some(length) if length <= MAX_BODY => Ok(Head { content_length: length, keep_alive }),
        Some(length) => Err(invalid(format!("Content-Length {length} over {MAX_BODY}"))),
        None => Err(invalid("response without Content-Length".to_string())),
    }
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}
