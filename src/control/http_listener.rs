//! A small HTTP/1.1 server on a TCP listener, for the metrics (`--metrics-listen`) and the
//! status page (`--status-listen`): on the actors' thread, a bounded number of clients at once,
//! each with a bound on the time its request head may take.
//!
//! Kept-alive scrapers and the status page's event streams hold their connections; so that they
//! cannot lock everyone else out once they fill every place, a new client over the bound takes
//! the place of the connection that has gone longest without a request, if that is at least
//! [`EVICT_AFTER`] ago (an idle keep-alive connection, or an event stream, which a browser opens
//! again by itself). A client that finds every place busy with fresh requests waits for one up
//! to [`HEAD_TIMEOUT`], then is closed.

use super::body::Body;
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection whose last request is at least this old may lose its place to a new client.
const EVICT_AFTER: Duration = Duration::from_secs(1);

/// One open connection: when its last request came, and its task.
struct Open {
    id: u64,
    last_request: Rc<Cell<Instant>>,
    task: AbortHandle,
}

/// The open connections of one listener (on one thread).
#[derive(Default)]
struct Connections {
    open: RefCell<Vec<Open>>,
    next_id: Cell<u64>,
}

impl Connections {
    /// Ends the connection that has gone longest without a request, if that is at least
    /// [`EVICT_AFTER`] ago (its task gives its place back as soon as it is dropped).
    fn evict_stalest(&self) {
        let mut open = self.open.borrow_mut();
        let stalest = open.iter().enumerate().min_by_key(|(_, o)| o.last_request.get()).map(|(i, _)| i);
        if let Some(i) = stalest.filter(|&i| open[i].last_request.get().elapsed() >= EVICT_AFTER) {
            open.swap_remove(i).task.abort();
        }
    }

    fn forget(&self, id: u64) {
        self.open.borrow_mut().retain(|o| o.id != id);
    }
}

/// A place for a client over the bound: the stalest connection's once it has gone
/// [`EVICT_AFTER`] without a request, or the first place freed, within [`HEAD_TIMEOUT`].
async fn place_for_a_newcomer(room: &Arc<Semaphore>, connections: &Connections) -> Option<OwnedSemaphorePermit> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    loop {
        connections.evict_stalest();
        let retry = (Instant::now() + EVICT_AFTER / 4).min(deadline);
        tokio::select! {
            permit = room.clone().acquire_owned() => return permit.ok(),
            () = tokio::time::sleep_until(retry) => {
                if retry >= deadline {
                    return None;
                }
            }
        }
    }
}

/// Answers every request on `listener` with `answer`, at most `clients` connections at once,
/// until procgate exits.
pub async fn serve<A, F>(listener: tokio::net::TcpListener, clients: usize, answer: A)
where
    A: Fn(Request<Incoming>) -> F + Clone + 'static,
    F: Future<Output = Response<Body>> + 'static,
{
    let room = Arc::new(Semaphore::new(clients));
    let connections = Rc::new(Connections::default());
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let permit = match room.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => match place_for_a_newcomer(&room, &connections).await {
                Some(permit) => permit,
                None => continue,
            },
        };
        let last_request = Rc::new(Cell::new(Instant::now()));
        let id = connections.next_id.replace(connections.next_id.get() + 1);
        let (answer, seen, owner) = (answer.clone(), last_request.clone(), connections.clone());
        let task = tokio::task::spawn_local(async move {
            let service = hyper::service::service_fn(move |request| {
                seen.set(Instant::now());
                let answered = answer(request);
                async move { Ok::<_, std::convert::Infallible>(answered.await) }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEAD_TIMEOUT);
            let _ = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
            owner.forget(id);
            drop(permit);
        });
        connections.open.borrow_mut().push(Open { id, last_request, task: task.abort_handle() });
    }
}
