//! A graceful web app for procgate's `web` type (hyper 1 on tokio), built as the `web` example.
//!
//! HTTP/1.1 with keep-alive on $HOST:$PORT (HOST defaults to 127.0.0.1): `GET /` answers
//! `hello from $DYNO`, `GET /slow` the same after 1 s, anything else 404. SIGTERM (or SIGINT) is
//! caught before listening. On SIGTERM it prints `SIGTERM received: finishing N requests in
//! flight, closing idle connections`, closes its listener (new connections are refused at once)
//! and asks every connection to shut down gracefully (hyper's `graceful_shutdown`): an idle
//! keep-alive connection is closed at once with a FIN, a request in flight is finished and
//! answered (`Connection: close`) before its connection closes. Then it prints `bye` and exits 0,
//! within 4 s at most. Run it as `cargo build --release --examples` then
//! `exec target/release/examples/web`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};

/// Requests being answered right now.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Counts one request in `IN_FLIGHT` while it lives (also when its client goes away mid-way).
struct InFlight;

impl InFlight {
    fn start() -> InFlight {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("PORT").expect("PORT is not set");
    let dyno: Arc<str> = std::env::var("DYNO").unwrap_or_else(|_| "web".into()).into();

    // Catch SIGTERM before listening: a platform may stop the app as soon as it is up.
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let listener = TcpListener::bind(format!("{host}:{port}")).await?;
    println!("{dyno} serving HTTP on {host}:{port}"); // Rust's stdout is flushed at each newline

    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream, dyno.clone(), stopping.clone()));
                }
                Err(_) => sleep(Duration::from_millis(100)).await, // out of descriptors: let some close
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = term.recv() => break,
            _ = interrupt.recv() => break,
        }
    }

    let in_flight = IN_FLIGHT.load(Ordering::SeqCst);
    println!("SIGTERM received: finishing {in_flight} requests in flight, closing idle connections");
    drop(listener); // new connections are refused from now on
    let _ = stop.send(true);
    let all_closed = async { while connections.join_next().await.is_some() {} };
    if timeout(Duration::from_secs(4), all_closed).await.is_err() {
        println!("some connections did not close within 4s; dropping them");
    }
    println!("bye");
    Ok(())
}

/// Serves one connection until it closes, or until shutdown: then it is closed as soon as it
/// has no request in flight.
async fn serve(stream: TcpStream, dyno: Arc<str>, mut stopping: watch::Receiver<bool>) {
    let service = service_fn(move |request| answer(request, dyno.clone()));
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = stopping.wait_for(|stopping| *stopping) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

async fn answer(request: Request<Incoming>, dyno: Arc<str>) -> Result<Response<Full<Bytes>>, Infallible> {
    let _in_flight = InFlight::start();
    let (status, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => (StatusCode::OK, format!("hello from {dyno}\n")),
        (&Method::GET, "/slow") => {
            sleep(Duration::from_secs(1)).await;
            (StatusCode::OK, format!("hello from {dyno}\n"))
        }
        _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
    };
    let response = Response::builder().status(status).header("content-type", "text/plain").body(Full::from(body));
    Ok(response.expect("a valid response"))
}
