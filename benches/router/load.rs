//! The router bench's client loads: `GET /` on kept-alive connections and on new connections,
//! and `GET /bulk` (1 MiB responses) on a few kept-alive connections.
//!
//! The same code for the three proxies, over raw TCP connections to a proxy's frontend on
//! 127.0.0.1, each response read by a minimal HTTP/1.1 parser (status line, headers, a
//! Content-Length body; a chunked body is an error). The connections, loops and tallies are
//! common/client.rs's.

use crate::common::client::{self, Fairness, Rate, Tally, CONCURRENCY, ERROR_BACKOFF};
use bytes::{Buf, BytesMut};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The request of the keep-alive and new-connection loads (HTTP/1.1: the connection stays open
/// after it).
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
/// The request of the bulk load.
const BULK_REQUEST: &[u8] = b"GET /bulk HTTP/1.1\r\nHost: bench\r\n\r\n";
/// Kept-alive connections of the bulk load, each fetching `/bulk` again and again.
pub const BULK_CONNECTIONS: usize = 4;
/// Bytes read from the socket at a time for a response head or a small body.
const READ_CHUNK: usize = 4096;
/// At most this many at a time for a large body.
const BODY_CHUNK: usize = 64 * 1024;
/// Longest response head accepted (status line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// Longest response body accepted (the backends send 13 bytes, or 1 MiB for `/bulk`).
const MAX_BODY: usize = 1024 * 1024;
/// Longest time to open the keep-alive load's connections.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// What a loop waits for, in the error of a stuck one.
const REPLY: &str = "response";

/// `CONCURRENCY` kept-alive connections, each sending `GET /` and reading the response, again
/// and again; a connection the proxy closes is opened again. The rate, and the latencies over
/// every request and how evenly the connections were served (`None` when none completed).
pub async fn keep_alive(addr: SocketAddr, duration: Duration) -> io::Result<(Rate, Option<Fairness>)> {
    let (rate, latencies) = kept_alive(addr, CONCURRENCY, REQUEST, duration).await?;
    Ok((rate, Fairness::of(latencies)))
}

/// `BULK_CONNECTIONS` kept-alive connections, each sending `GET /bulk` and reading its 1 MiB
/// response, again and again.
pub async fn bulk(addr: SocketAddr, duration: Duration) -> io::Result<Rate> {
    Ok(kept_alive(addr, BULK_CONNECTIONS, BULK_REQUEST, duration).await?.0)
}

/// `count` kept-alive connections, each running `request_loop` with `request`: the rate and
/// each connection's latencies.
async fn kept_alive(
    addr: SocketAddr,
    count: usize,
    request: &'static [u8],
    duration: Duration,
) -> io::Result<(Rate, Vec<Vec<Duration>>)> {
    let connections = client::open(addr, count, OPEN_TIMEOUT, open_and_get).await?;
    let loops = connections.into_iter().enumerate();
    let looped = client::run_loops(loops, duration, REPLY, move |(index, connection), deadline, tally, latencies| {
        Box::pin(request_loop(request, client::source(index), addr, connection, deadline, tally, latencies))
    });
    Ok(looped.await)
}

/// Sends `request` on one kept-alive connection and reads the response, again and again until
/// `deadline`, recording each latency; opens the connection again when the proxy closes it.
async fn request_loop(
    request: &'static [u8],
    source: Ipv4Addr,
    addr: SocketAddr,
    first: Connection,
    deadline: Instant,
    tally: &mut Tally,
    latencies: &mut Vec<Duration>,
) {
    let mut kept = Some(first);
    while Instant::now() < deadline {
        let mut connection = match kept.take() {
            Some(connection) => connection,
            None => match Connection::open(source, addr).await {
                Ok(connection) => connection,
                Err(err) => {
                    tally.fail(err);
                    tokio::time::sleep(ERROR_BACKOFF).await;
                    continue;
                }
            },
        };
        let sent = Instant::now();
        match connection.get(request).await {
            Ok(keep_alive) => {
                latencies.push(sent.elapsed());
                tally.completed += 1;
                match keep_alive {
                    true => kept = Some(connection),
                    false => tally.closed += 1,
                }
            }
            Err(err) => {
                tally.fail(err);
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
}

/// `CONCURRENCY` loops of: connect, send `GET /`, read the response, close.
pub async fn new_connections(addr: SocketAddr, duration: Duration) -> Rate {
    client::new_connections(addr, duration, REPLY, open_and_get).await
}

async fn open_and_get(source: Ipv4Addr, addr: SocketAddr) -> io::Result<Connection> {
    let mut connection = Connection::open(source, addr).await?;
    connection.get(REQUEST).await?;
    Ok(connection)
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
    /// Connects from `source` to `addr`.
    async fn open(source: Ipv4Addr, addr: SocketAddr) -> io::Result<Connection> {
        let stream = client::connect(source, addr).await?;
        Ok(Connection { stream, received: BytesMut::with_capacity(READ_CHUNK) })
    }

    /// Sends `request` and reads the whole `200` response, its body dropped as it comes; false
    /// when the proxy closes the connection after it.
    async fn get(&mut self, request: &[u8]) -> io::Result<bool> {
        self.stream.write_all(request).await?;
        let head_length = loop {
            if let Some(end) = self.received.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if self.received.len() > MAX_HEAD {
                return Err(invalid(format!("response head longer than {MAX_HEAD} bytes")));
            }
            self.receive(READ_CHUNK).await?;
        };
        let head = parse_head(&self.received[..head_length])?;
        self.received.advance(head_length);
        let mut body_left = head.content_length;
        loop {
            let here = body_left.min(self.received.len());
            self.received.advance(here);
            body_left -= here;
            if body_left == 0 {
                return Ok(head.keep_alive);
            }
            self.receive(body_left.clamp(READ_CHUNK, BODY_CHUNK)).await?;
        }
    }

    /// Reads what the socket has into `received`, with room for `room` bytes at least; an end
    /// of stream here cuts a response.
    async fn receive(&mut self, room: usize) -> io::Result<()> {
        self.received.reserve(room);
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
