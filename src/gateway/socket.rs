//! What the TCP gateway, the HTTP router and the router's pool share about sockets: connecting to
//! an instance, how far a connection's read buffer grows, the pause after a failed accept.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// Pause after a failed accept (e.g. out of file descriptors), so the loop does not spin.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// The most a connection's read buffer grows to, client or instance side. hyper's default
/// (about 400 KiB) kept that much for each pooled connection that once carried a large body:
/// the router bench's RSS after its bulk load went from 15 to 25-28 MB. 128 KiB keeps it at
/// 15.5 MB and bulk throughput above HAProxy's (bench/README.md).
pub const MAX_BUFFER: usize = 128 * 1024;

/// A connection to an instance, with `TCP_NODELAY`, within `timeout`.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Option<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr)).await.ok()?.ok()?;
    let _ = stream.set_nodelay(true);
    Some(stream)
}
