//! Assigning a client to an instance: pick the least loaded healthy one with room under its cap,
//! connect, and on a failed connect mark it down (passive check) and try the next, up to all of
//! them. When none is healthy, wait for the routing to change, up to the `--wait` (then H10);
//! when all are at their cap, wait in the route's bounded backlog (then H11). A sleeping type's
//! first waiting client asks for its wake (wake.rs); instances being put to sleep take no client.

use super::route::{pick, Backend, InstanceId, OpenConnection, Route};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Why a client got no instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unassigned {
    /// No healthy instance within the wait: H10.
    NoInstance,
    /// Every instance at its cap and the backlog full (or the wait over): H11.
    BacklogFull,
    /// The client left while it waited.
    Abandoned,
}

/// Picks and connects an instance with `connect` (which gives `None` when it cannot). While it
/// has to wait, `abandoned` resolving (the client left) ends the wait; it is not polled otherwise.
pub async fn assign<T, F, Fut>(
    route: &Route,
    wait: Duration,
    mut connect: F,
    abandoned: impl Future<Output = ()>,
) -> Result<(OpenConnection, T), Unassigned>
where
    F: FnMut(Arc<Backend>) -> Fut,
    Fut: Future<Output = Option<T>>,
{
    tokio::pin!(abandoned);
    let deadline = Instant::now() + wait;
    let mut changes: Option<watch::Receiver<u64>> = None;
    let mut tried: Vec<InstanceId> = Vec::new();
    loop {
        if let Some(changes) = changes.as_mut() {
            changes.borrow_and_update();
        }
        if let Some(connected) = try_each(route, &mut tried, &mut connect).await {
            return Ok(connected);
        }
        let floor = route.activity.floor();
        let healthy = route.backends().iter().any(|b| !b.is_down() && !tried.contains(&b.id) && b.id.slot >= floor);
        if healthy && route.policy.limits.capped() {
            // Every healthy instance is at its cap.
            tokio::select! {
                room = route.wait_for_room(deadline) => if !room { return Err(Unassigned::BacklogFull) },
                () = &mut abandoned => return Err(Unassigned::Abandoned),
            }
            continue;
        }
        if healthy {
            // One came back up (a passive failure not confirmed) since the pick: pick again.
            continue;
        }
        // None up: a sleeping type is woken (once per sleep, whoever asks first).
        route.activity.want_wake();
        // Subscribe, then look once more, so a publication in between is not missed.
        if changes.is_none() {
            changes = Some(route.subscribe());
            continue;
        }
        let changed = changes.as_mut().map(|c| c.changed()).ok_or(Unassigned::NoInstance)?;
        tokio::select! {
            changed = tokio::time::timeout_at(deadline, changed) => match changed {
                Ok(Ok(())) => tried.clear(),
                _ => return Err(Unassigned::NoInstance),
            },
            () = &mut abandoned => return Err(Unassigned::Abandoned),
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
            let floor = route.activity.floor();
            let eligible =
                |b: &Backend| !b.is_down() && !tried.contains(&b.id) && b.id.slot >= floor && route.has_room(b);
            pick(&backends, route.next_cursor(), eligible)?.clone()
        };
        // Another thread took its last place since the pick: pick again.
        let Some(open) = route.try_open(backend) else { continue };
        match connect(open.0.clone()).await {
            Some(connection) => return Some((open, connection)),
            None => {
                route.report_failure(&open.0);
                tried.push(open.0.id);
            }
        }
    }
}
