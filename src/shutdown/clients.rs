//! The clients `test-shutdown` holds on the instance. Each opens a connection straight to the
//! app's port (after the PROXY header its type is configured for), shows some traffic (an
//! optional line for TCP, a `GET /` for web), then only reads, and records how the connection
//! ended: the app's FIN, a reset, or still open when the test stopped watching. A slow request
//! in flight at SIGTERM records whether its response still came.

use crate::gateway::proxy_protocol;
use crate::proxy_version::ProxyVersion;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long the first TCP client waits for the app's first bytes (a greeting) before it counts
/// as held; the others wait as long only when the app greeted the first.
pub const GREETING_WAIT: Duration = Duration::from_millis(500);
/// The longest response head or body a client reads.
const MAX_RESPONSE: usize = 1024 * 1024;

/// What the clients speak.
#[derive(Debug, Clone)]
pub enum Protocol {
    /// Raw TCP, sending this line (if any) after connecting.
    Tcp { line: Option<String> },
    /// HTTP/1.1 with keep-alive.
    Http,
}

/// How to reach the instance.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub proxy: Option<ProxyVersion>,
    pub protocol: Protocol,
}

/// How a held connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The app closed it: end of file, at this instant.
    Fin(Instant),
    /// The app reset it, at this instant.
    Reset(Instant),
    /// Still open when the test stopped watching.
    Open,
}

/// How the request in flight at SIGTERM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InFlight {
    /// Its response came, with this status.
    Answered(u16),
    /// The connection closed or broke before a full response: why.
    Broken(String),
    /// No response yet when the test stopped watching.
    Waiting,
}

/// Opens one held connection and shows its traffic; `Err` when the app did not take it. A TCP
/// client waits up to `greeting_wait` for the app's first bytes; the flag says whether they came.
pub async fn open(target: &Target, greeting_wait: Duration) -> io::Result<(TcpStream, bool)> {
    let mut stream = connect(target).await?;
    let spoke = match &target.protocol {
        Protocol::Tcp { line } => {
            if let Some(line) = line {
                stream.write_all(format!("{line}\n").as_bytes()).await?;
            }
            let mut first = [0u8; 4096];
            match tokio::time::timeout(greeting_wait, stream.read(&mut first)).await {
                Ok(Ok(0)) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the app closed it at once")),
                Ok(read) => read.map(|_| true)?,
                Err(_) => false,
            }
        }
        Protocol::Http => {
            stream.write_all(get_request(target.addr, "/").as_bytes()).await?;
            read_response(&mut stream).await?;
            true
        }
    };
    Ok((stream, spoke))
}

/// Reads (and drops) what the app sends until it closes the connection or `stop` flips.
pub async fn watch_end(mut stream: TcpStream, mut stop: watch::Receiver<bool>) -> Ending {
    let mut sink = [0u8; 4096];
    loop {
        tokio::select! {
            read = stream.read(&mut sink) => match read {
                Ok(0) => return Ending::Fin(Instant::now()),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::ConnectionReset => return Ending::Reset(Instant::now()),
                Err(_) => return Ending::Fin(Instant::now()),
            },
            _ = stop.wait_for(|stopped| *stopped) => return Ending::Open,
        }
    }
}

/// Sends `GET path` on a new connection; the caller signals once it is sent, then waits for
/// the response (or `stop`).
pub async fn send_slow_request(target: &Target, path: &str) -> io::Result<TcpStream> {
    let mut stream = connect(target).await?;
    stream.write_all(get_request(target.addr, path).as_bytes()).await?;
    Ok(stream)
}

/// How the slow request's response went.
pub async fn await_response(mut stream: TcpStream, mut stop: watch::Receiver<bool>) -> InFlight {
    tokio::select! {
        response = read_response(&mut stream) => match response {
            Ok(status) => InFlight::Answered(status),
            Err(err) => InFlight::Broken(err.to_string()),
        },
        _ = stop.wait_for(|stopped| *stopped) => InFlight::Waiting,
    }
}

/// A connection to the instance, past the PROXY header its type expects (as the gateway's).
async fn connect(target: &Target) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect(target.addr).await?;
    if let Some(version) = target.proxy {
        stream.write_all(&proxy_protocol::header(version, stream.local_addr()?, target.addr)).await?;
    }
    Ok(stream)
}

fn get_request(addr: SocketAddr, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: procgate-test-shutdown\r\n\r\n")
}

/// Reads one whole HTTP/1.1 response (a `Content-Length` or chunked body); returns its status.
async fn read_response(stream: &mut (impl AsyncRead + Unpin)) -> io::Result<u16> {
    let mut buffer = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        read_more(stream, &mut buffer, "the response's head").await?;
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| invalid("no status"))?;
    let header = |name: &str| head.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()));
    let body_done = |buffer: &[u8]| match (header("content-length:"), header("transfer-encoding:")) {
        (Some(length), _) => length.parse::<usize>().map_or(true, |length| buffer.len() - head_end >= length),
        (None, Some(coding)) if coding.contains("chunked") => buffer[head_end..].ends_with(b"0\r\n\r\n"),
        _ => true,
    };
    while !body_done(&buffer) {
        read_more(stream, &mut buffer, "the response's body").await?;
    }
    Ok(status)
}

async fn read_more(stream: &mut (impl AsyncRead + Unpin), buffer: &mut Vec<u8>, what: &str) -> io::Result<()> {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await? {
        0 => Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("the connection closed before {what} ended"))),
        _ if buffer.len() > MAX_RESPONSE => Err(invalid("the response is too long")),
        read => {
            buffer.extend_from_slice(&chunk[..read]);
            Ok(())
        }
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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
