//! Assigning a client to an instance: pick the least loaded healthy one, connect, and on a failed
//! connect mark it down (passive check) and try the next, up to all of them; when none is left,
//! wait for the routing to change, up to the `--wait` (then `None`: H10).

use super::route::{pick, Backend, InstanceId, OpenConnection, Route};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Picks and connects an instance with `connect` (which gives `None` when it cannot).
pub async fn assign<T, F, Fut>(route: &Route, wait: Duration, mut connect: F) -> Option<(OpenConnection, T)>
where
    F: FnMut(Arc<Backend>) -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + wait;
    let mut changes: Option<watch::Receiver<u64>> = None;
    let mut tried: Vec<InstanceId> = Vec::new();
    loop {
        if let Some(changes) = changes.as_mut() {
            changes.borrow_and_update();
        }
        if let Some(connected) = try_each(route, &mut tried, &mut connect).await {
            return Some(connected);
        }
        // Subscribe, then look once more, so a publication in between is not missed.
        if changes.is_none() {
            changes = Some(route.subscribe());
            continue;
        }
        let changed = changes.as_mut().map(|c| c.changed());
        match tokio::time::timeout_at(deadline, changed?).await {
            Ok(Ok(())) => tried.clear(),
            _ => return None,
        }
    }
}

async fn try_each<T, F, Fut>(route: &Route, tried: &mut Vec<InstanceId>, connect: &mut F) -> Option<(OpenConnection, T)>
where
    F: FnMut(Arc<Backend>) -> Fut,
    Fut: Future<Output = Option<T>>,
{
    loop {
        let backend: Arc<Backend> = {
            let backends = route.backends();
            pick(&backends, route.next_cursor(), |b| !b.is_down() && !tried.contains(&b.id))?.clone()
        };
        let open = OpenConnection::new(backend);
        match connect(open.0.clone()).await {
            Some(connection) => return Some((open, connection)),
            None => {
                route.report_failure(&open.0);
                tried.push(open.0.id);
            }
        }
    }
}
