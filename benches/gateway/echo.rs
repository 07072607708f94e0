//! The echo backend: the bench binary itself, started by procgate as a `tcp` instance with
//! `GATEWAY_BENCH_ECHO=1`. It binds 127.0.0.1:$PORT and echoes every byte back on each connection.
//!
//! One single-threaded tokio runtime per instance keeps the backends cheap on a 2-core machine.
//! SIGTERM keeps its default action, so the instance exits at once when procgate stops it.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Set to `1` in an instance's environment to make the bench binary an echo backend.
pub const ECHO_ENV: &str = "GATEWAY_BENCH_ECHO";

/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// True when this process was started as an echo backend.
pub fn is_echo_mode() -> bool {
    std::env::var(ECHO_ENV).is_ok_and(|value| value == "1")
}

/// Serves until killed; returns only on a startup error.
pub fn serve() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("echo backend: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let port: u16 = std::env::var("PORT")?.parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
        println!("echo backend listening on 127.0.0.1:{port}");
        accept_forever(listener).await
    })
}

async fn accept_forever(listener: TcpListener) -> anyhow::Result<()> {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(echo(stream));
            }
            Err(err) => {
                eprintln!("echo backend: accept failed: {err}");
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

/// Copies what the peer sends back to it until it closes its side.
async fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.split();
    let _ = tokio::io::copy(&mut reader, &mut writer).await;
}
