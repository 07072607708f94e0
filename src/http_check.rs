//! procgate's own small HTTP/1 client of an instance's port: the health probe (a TCP handshake,
//! or for HTTP types a `GET` whose status must fall in the expected range: any answer below 500
//! by default, like a router that only needs an answer), and the `GET` and response reading of
//! `test-shutdown`'s clients. Every read is bounded in bytes, every probe by its timeout.

use crate::proxy_version::{local_header, ProxyVersion};
use std::io;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A request path this client can send: `/` first, then visible ASCII only (a space, CR or LF
/// would split or rewrite the request).
pub fn check_request_path(text: &str) -> Result<String, String> {
    match text.starts_with('/') && text.bytes().all(|b| b.is_ascii_graphic()) {
        true => Ok(text.to_string()),
        false => Err(format!(
            "{text:?} is not a request path: start it with / and leave out spaces and control characters (e.g. \"/up\")"
        )),
    }
}

/// The most bytes a probe reads looking for the status line.
const STATUS_LINE_LIMIT: usize = 1024;
/// The longest response head and body a client reads.
const MAX_RESPONSE: usize = 1024 * 1024;
/// The `User-Agent` of health probes.
const PROBE_AGENT: &str = "procgate-health";

/// What an HTTP probe asks and accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    pub path: String,
    pub statuses: RangeInclusive<u16>,
}

impl Default for HttpCheck {
    fn default() -> Self {
        HttpCheck { path: "/".to_string(), statuses: 100..=499 }
    }
}

/// What the instance is asked to do with the connection after its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    Close,
    KeepAlive,
}

/// True when the instance answered in time (and, for HTTP, with an expected status). An
/// instance that expects a PROXY header gets a `LOCAL` one, so it can tell checks from clients.
pub async fn probe(addr: SocketAddr, http: Option<&HttpCheck>, proxy: Option<ProxyVersion>, timeout: Duration) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        if let Some(version) = proxy {
            stream.write_all(&local_header(version)).await.ok()?;
        }
        match http {
            None => Some(true),
            Some(check) => http_status(stream, addr, &check.path).await.map(|status| check.statuses.contains(&status)),
        }
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
}

/// Sends `GET path` and reads the status of the response's first line.
async fn http_status(mut stream: TcpStream, addr: SocketAddr, path: &str) -> Option<u16> {
    stream.write_all(get_request(addr, path, PROBE_AGENT, Connection::Close).as_bytes()).await.ok()?;
    let mut head = Vec::with_capacity(128);
    read_to(&mut stream, &mut head, b"\n", STATUS_LINE_LIMIT, "the status line").await.ok()?;
    parse_status(&head)
}

/// The head of a `GET path` request to `addr` from `user_agent`.
pub fn get_request(addr: SocketAddr, path: &str, user_agent: &str, connection: Connection) -> String {
    let close = match connection {
        Connection::Close => "Connection: close\r\n",
        Connection::KeepAlive => "",
    };
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: {user_agent}\r\n{close}\r\n")
}

/// Reads one whole HTTP/1.1 response (a `Content-Length` or chunked body); returns its status.
pub async fn read_response(stream: &mut (impl AsyncRead + Unpin)) -> io::Result<u16> {
    let mut buffer = Vec::with_capacity(1024);
    let head_end = read_to(stream, &mut buffer, b"\r\n\r\n", MAX_RESPONSE, "the response's head").await?;
    let status = parse_status(&buffer).ok_or_else(|| invalid("no status"))?;
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let header = |name: &str| head.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()));
    let body_done = |buffer: &[u8]| match (header("content-length:"), header("transfer-encoding:")) {
        (Some(length), _) => length.parse::<usize>().map_or(true, |length| buffer.len() - head_end >= length),
        (None, Some(coding)) if coding.contains("chunked") => buffer[head_end..].ends_with(b"0\r\n\r\n"),
        _ => true,
    };
    while !body_done(&buffer) {
        read_more(stream, &mut buffer, MAX_RESPONSE, "the response's body").await?;
    }
    Ok(status)
}

/// Reads onto `buffer` until it holds `end`; returns the offset just past it.
async fn read_to(
    stream: &mut (impl AsyncRead + Unpin),
    buffer: &mut Vec<u8>,
    end: &[u8],
    limit: usize,
    what: &str,
) -> io::Result<usize> {
    loop {
        if let Some(at) = buffer.windows(end.len()).position(|w| w == end) {
            return Ok(at + end.len());
        }
        read_more(stream, buffer, limit, what).await?;
    }
}

/// Reads once onto `buffer`; an error when it already holds `limit` bytes or the connection
/// closed before `what` ended.
async fn read_more(
    stream: &mut (impl AsyncRead + Unpin),
    buffer: &mut Vec<u8>,
    limit: usize,
    what: &str,
) -> io::Result<()> {
    if buffer.len() >= limit {
        return Err(invalid(&format!("{what} is too long")));
    }
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await? {
        0 => Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("the connection closed before {what} ended"))),
        read => {
            buffer.extend_from_slice(&chunk[..read]);
            Ok(())
        }
    }
}

/// The status code of the status line `HTTP/1.1 200 OK` that `head` starts with.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&byte| byte == b'\n').next()?;
    let mut words = std::str::from_utf8(line).ok()?.split_whitespace();
    words.next().filter(|v| v.starts_with("HTTP/"))?;
    words.next()?.parse().ok()
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_status_of_a_status_line() {
        assert_eq!(parse_status(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status(b"HTTP/1.0 503 Busy\r\nx"), Some(503));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b""), None);
    }

    #[tokio::test]
    async fn an_http_probe_needs_an_expected_status_in_time() {
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            for status in ["200 OK", "500 Oops"] {
                let (mut stream, _) = server.accept().await.unwrap();
                let mut request = [0u8; 512];
                let _ = stream.read(&mut request).await;
                let _ = stream.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes()).await;
            }
        });
        let check = HttpCheck::default();
        let timeout = Duration::from_secs(5);
        assert!(probe(addr, Some(&check), None, timeout).await);
        assert!(!probe(addr, Some(&check), None, timeout).await, "a 500 is a failure");
        assert!(!probe(addr, Some(&check), None, Duration::from_millis(100)).await, "no answer in time");
    }

    async fn status_of(response: &[u8]) -> io::Result<u16> {
        read_response(&mut &response[..]).await
    }

    #[tokio::test]
    async fn responses_end_at_their_length_or_last_chunk() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc").await.unwrap(), 200);
        let chunked = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(status_of(chunked).await.unwrap(), 404);
        assert_eq!(status_of(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap(), 204);
    }

    #[tokio::test]
    async fn a_response_cut_short_is_an_error() {
        let cut = status_of(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").await.unwrap_err();
        assert!(cut.to_string().contains("before the response's body ended"), "{cut}");
        let headless = status_of(b"HTTP/1.1 200 OK\r\n").await.unwrap_err();
        assert!(headless.to_string().contains("head"), "{headless}");
    }
}
