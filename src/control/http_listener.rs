//! A small HTTP/1.1 server on a TCP listener, for the metrics (`--metrics-listen`) and the
//! status page (`--status-listen`): on the actors' thread, a bounded number of clients at once,
//! each with a bound on the time its request head may take.

use super::body::Body;
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers every request on `listener` with `answer`, at most `clients` connections at once
/// (more wait in the kernel's backlog), until procgate exits.
pub async fn serve<A, F>(listener: tokio::net::TcpListener, clients: usize, answer: A)
where
    A: Fn(Request<Incoming>) -> F + Clone + 'static,
    F: Future<Output = Response<Body>> + 'static,
{
    let room = Arc::new(tokio::sync::Semaphore::new(clients));
    loop {
        let Ok(permit) = room.clone().acquire_owned().await else { return };
        let Ok((stream, _)) = listener.accept().await else { continue };
        let answer = answer.clone();
        tokio::task::spawn_local(async move {
            let service = hyper::service::service_fn(move |request| {
                let answered = answer(request);
                async move { Ok::<_, std::convert::Infallible>(answered.await) }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEAD_TIMEOUT);
            let _ = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
            drop(permit);
        });
    }
}
