//! The HTTP backend: the bench binary itself, started by procgate as a `web` instance with
//! `ROUTER_BENCH_BACKEND=1`. It binds 127.0.0.1:$PORT and answers every request `200` with a
//! small fixed body (hyper adds its Content-Length), keeping connections alive.
//!
//! One single-threaded tokio runtime per instance keeps the backends cheap on a 2-core machine.
//! SIGTERM keeps its default action, so the instance exits at once when procgate stops it.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Set to `1` in an instance's environment to make the bench binary an HTTP backend.
pub const BACKEND_ENV: &str = "ROUTER_BENCH_BACKEND";
/// The body of every response.
pub const BODY: &[u8] = b"hello, world\n";
/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// True when this process was started as an HTTP backend.
pub fn is_backend_mode() -> bool {
    std::env::var(BACKEND_ENV).is_ok_and(|value| value == "1")
}

/// Serves until killed; returns only on a startup error.
pub fn serve() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("http backend: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let port: u16 = std::env::var("PORT")?.parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
        println!("http backend listening on 127.0.0.1:{port}");
        accept_forever(listener).await
    })
}

async fn accept_forever(listener: TcpListener) -> anyhow::Result<()> {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream));
            }
            Err(err) => {
                eprintln!("http backend: accept failed: {err}");
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

/// Serves the requests of one connection, HTTP/1.1 with keep-alive, until the peer closes.
async fn connection(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(hello);
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn hello(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(BODY))))
}
