//! The bench binary as a backend: serves each connection on 127.0.0.1:$PORT with a bench's handler.
//!
//! procgate starts it as one of its instances; what it does with a connection (echo, HTTP) is the
//! bench's own. One single-threaded tokio runtime per instance keeps the backends cheap on a
//! 2-core machine. SIGTERM keeps its default action, so the instance exits at once when procgate
//! stops it.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// What a bench's backends are, as procgate's instances and in messages.
pub struct Backends {
    /// Their process type in the Procfile (`tcp`, `web`).
    pub kind: &'static str,
    /// Set to `1` in an instance's environment to make the bench binary a backend.
    pub env: &'static str,
    /// One of them, in its own messages (`echo backend`).
    pub server: &'static str,
    /// All of them, in the bench's messages (`echo backends`).
    pub what: &'static str,
    /// The part of procgate they stand behind, in messages (`gateway`).
    pub part: &'static str,
}

/// True when this process was started as one of `backends`.
pub fn is_backend_mode(backends: &Backends) -> bool {
    std::env::var(backends.env).is_ok_and(|value| value == "1")
}

/// Serves each connection with `handle` until killed; returns only on a startup error.
pub fn serve<H, F>(backends: &Backends, handle: H) -> ExitCode
where
    H: Fn(TcpStream) -> F + Copy + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    super::exit_code(backends.server, run(backends.server, handle))
}

fn run<H, F>(server: &'static str, handle: H) -> anyhow::Result<()>
where
    H: Fn(TcpStream) -> F + Copy + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let port: u16 = std::env::var("PORT")?.parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
        println!("{server} listening on 127.0.0.1:{port}");
        accept_forever(server, listener, handle).await
    })
}

async fn accept_forever<H, F>(server: &str, listener: TcpListener, handle: H) -> anyhow::Result<()>
where
    H: Fn(TcpStream) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle(stream));
            }
            Err(err) => {
                eprintln!("{server}: accept failed: {err}");
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}
