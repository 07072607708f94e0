//! The clients `test-shutdown` holds on the instance. Each opens a connection straight to the
//! app's port (after the PROXY header its type is configured for), shows some traffic (an
//! optional line for TCP, a `GET /` for web), then only reads, and records how the connection
//! ended: the app's FIN, a reset, or still open when the test stopped watching. A slow request
//! in flight at SIGTERM records whether its response still came.

use crate::gateway::proxy_protocol;
use crate::http_check::{get_request, read_response, Connection};
use crate::proxy_version::ProxyVersion;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long the first TCP client waits for the app's first bytes (a greeting) before it counts
/// as held; the others wait as long only when the app greeted the first.
pub const GREETING_WAIT: Duration = Duration::from_millis(500);
/// The `User-Agent` of the clients' requests.
const USER_AGENT: &str = "procgate-test-shutdown";

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
            stream.write_all(get_request(target.addr, "/", USER_AGENT, Connection::KeepAlive).as_bytes()).await?;
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
    stream.write_all(get_request(target.addr, path, USER_AGENT, Connection::KeepAlive).as_bytes()).await?;
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
