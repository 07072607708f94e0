//! The gateway bench's backends: the bench binary as an echo server (procgate's `tcp` instances).
//!
//! Started with `GATEWAY_BENCH_ECHO=1`, it echoes every byte back on each connection; the
//! listening and accepting are in common/backend.rs.

use crate::common::backend::Backends;
use tokio::net::TcpStream;

/// The echo backends, procgate's `tcp` instances.
pub const BACKENDS: Backends =
    Backends { kind: "tcp", env: "GATEWAY_BENCH_ECHO", server: "echo backend", what: "echo backends", part: "gateway" };

/// Copies what the peer sends back to it until it closes its side.
pub async fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.split();
    let _ = tokio::io::copy(&mut reader, &mut writer).await;
}
