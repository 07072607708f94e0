//! One health probe of an instance: a TCP handshake, or for HTTP types a `GET` whose status must
//! fall in the expected range (any answer below 500 by default, like a router that only needs an
//! answer). Every probe is bounded by its timeout.

use crate::proxy_version::{local_header, ProxyVersion};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most bytes read looking for the status line.
const STATUS_LINE_LIMIT: usize = 1024;

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

async fn http_status(mut stream: TcpStream, addr: SocketAddr, path: &str) -> Option<u16> {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: procgate-health\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < STATUS_LINE_LIMIT {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..read]);
    }
    parse_status(&head)
}

/// The status code of `HTTP/1.1 200 OK`.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head).ok()?.lines().next()?;
    let mut words = line.split_whitespace();
    words.next().filter(|v| v.starts_with("HTTP/"))?;
    words.next()?.parse().ok()
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
}
