//! The router bench's backends: the bench binary as an HTTP server (procgate's `web` instances).
//!
//! Started with `ROUTER_BENCH_BACKEND=1`, it answers every request `200` with a small fixed body,
//! or `GET /bulk` with `BULK_BYTES` (hyper adds the Content-Length), keeping connections alive;
//! the listening and accepting are in common/backend.rs.

use crate::common::backend::Backends;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio::net::TcpStream;

/// The HTTP backends, procgate's `web` instances.
pub const BACKENDS: Backends = Backends {
    kind: "web",
    env: "ROUTER_BENCH_BACKEND",
    server: "http backend",
    what: "HTTP backends",
    part: "router",
};
/// The body of every response but `/bulk`'s.
pub const BODY: &[u8] = b"hello, world\n";
/// Bytes of the `/bulk` body.
pub const BULK_BYTES: usize = 1 << 20;
/// The `/bulk` body.
static BULK: [u8; BULK_BYTES] = [b'.'; BULK_BYTES];

/// Serves the requests of one connection, HTTP/1.1 with keep-alive, until the peer closes.
pub async fn connection(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(hello);
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn hello(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = if request.uri().path() == "/bulk" { &BULK[..] } else { BODY };
    Ok(Response::new(Full::new(Bytes::from_static(body))))
}
