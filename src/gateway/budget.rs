//! The descriptor budget: how many clients the gateway and router hold at once, from the
//! open-files limit, so a flood is refused at the door instead of exhausting descriptors (then
//! nothing could be accepted, not even on the control socket, and no instance could be spawned).
//!
//! What procgate itself needs is kept aside first: a fixed reserve (logs, listeners, the control
//! socket, probes), each running instance's pipes and keeper socket, and the router's idle
//! connections to instances (which the pool counts here, [`pooled`]). What is left, two
//! descriptors per proxied connection, is shared by the routes, and no route may take the share
//! the others are guaranteed: with `n` routes each keeps at least `1/(2n)` of the room, so a
//! flood on one route cannot starve another.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Descriptors kept for procgate itself whatever runs: stdio, the log writer, listeners of
/// every data-plane thread, the control socket and its clients, health probes.
pub const BASE_RESERVE: usize = 64;

/// Descriptors each running instance costs procgate: its output pipes, its keeper's socket,
/// a probe, with room to spare.
pub const PER_INSTANCE: usize = 8;

/// Descriptors of a proxied connection: the client's and the instance's.
const PER_CONNECTION: usize = 2;

/// Idle connections in every thread's router pool: descriptors set aside, counted by the pool.
static POOLED: AtomicUsize = AtomicUsize::new(0);

/// The router's pool keeps `count` more idle connections to instances.
#[inline]
pub fn pooled(count: usize) {
    POOLED.fetch_add(count, Ordering::Relaxed);
}

/// The router's pool let `count` of its idle connections go.
#[inline]
pub fn unpooled(count: usize) {
    POOLED.fetch_sub(count, Ordering::Relaxed);
}

/// The whole open-files limit and what is in use against it.
#[derive(Debug)]
pub struct Descriptors {
    limit: usize,
    instances: AtomicUsize,
    connections: AtomicUsize,
    routes: AtomicUsize,
}

impl Descriptors {
    pub fn new(limit: usize) -> Arc<Descriptors> {
        let zero = || AtomicUsize::new(0);
        Arc::new(Descriptors { limit, instances: zero(), connections: zero(), routes: zero() })
    }

    /// Proxied connections that fit once procgate's own needs are set aside.
    pub fn room(&self) -> usize {
        let instances = self.instances.load(Ordering::Relaxed) * PER_INSTANCE;
        let reserved = BASE_RESERVE + instances + POOLED.load(Ordering::Relaxed);
        self.limit.saturating_sub(reserved) / PER_CONNECTION
    }

    /// An instance started (`+1`) or its process tree is gone (`-1`).
    pub fn instance_started(&self) {
        self.instances.fetch_add(1, Ordering::Relaxed);
    }

    pub fn instance_gone(&self) {
        let _ = self.instances.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// A budget for one more route.
    pub fn route(self: &Arc<Self>) -> Arc<Budget> {
        self.routes.fetch_add(1, Ordering::Relaxed);
        Arc::new(Budget { all: self.clone(), open: AtomicUsize::new(0), refused: AtomicU64::new(0) })
    }

    /// The most one route may hold: the room less what every other route is guaranteed.
    fn route_cap(&self, room: usize) -> usize {
        let routes = self.routes.load(Ordering::Relaxed).max(1);
        room - (routes - 1) * (room / (2 * routes))
    }
}

/// One route's clients against its cap and the whole room.
#[derive(Debug)]
pub struct Budget {
    all: Arc<Descriptors>,
    open: AtomicUsize,
    refused: AtomicU64,
}

/// A client's place in the budget, given back when it is dropped.
pub struct Place(Arc<Budget>);

impl Budget {
    /// A place for a new client, or `None` (logged now and then) when its route's cap or the
    /// whole room is spent.
    pub fn enter(self: &Arc<Self>, route: &str) -> Option<Place> {
        let all = &self.all;
        let room = all.room();
        let cap = all.route_cap(room);
        let route_full = self.open.fetch_add(1, Ordering::SeqCst) >= cap;
        let all_full = all.connections.fetch_add(1, Ordering::SeqCst) >= room;
        if route_full || all_full {
            self.open.fetch_sub(1, Ordering::SeqCst);
            all.connections.fetch_sub(1, Ordering::SeqCst);
            let refused = self.refused.fetch_add(1, Ordering::Relaxed);
            if refused.is_multiple_of(super::stats::REFUSALS_LOG_EVERY) {
                let open = all.connections.load(Ordering::Relaxed);
                tracing::warn!(
                    "H11 too many connections: the {route} route holds {cap} of {room} the open-files limit allows \
                     ({open} open on all routes); closing new clients ({} so far)",
                    refused + 1
                );
            }
            return None;
        }
        Some(Place(self.clone()))
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        self.0.all.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_given_back() {
        let all = Descriptors::new(BASE_RESERVE + 4);
        let budget = all.route();
        let (first, _second) = (budget.enter("tcp").unwrap(), budget.enter("tcp").unwrap());
        assert!(budget.enter("tcp").is_none());
        drop(first);
        assert!(budget.enter("tcp").is_some());
    }

    #[test]
    fn a_flooded_route_leaves_the_others_their_share() {
        let all = Descriptors::new(BASE_RESERVE + 2 * 100);
        let (tcp, web) = (all.route(), all.route());
        let flood: Vec<Place> = std::iter::from_fn(|| tcp.enter("tcp")).take(1000).collect();
        assert_eq!(flood.len(), 75, "100 places, 25 kept for web");
        let web_places: Vec<Place> = std::iter::from_fn(|| web.enter("web")).take(1000).collect();
        assert_eq!(web_places.len(), 25);
    }

    #[test]
    fn running_instances_come_off_the_room() {
        let all = Descriptors::new(BASE_RESERVE + 2 * 100);
        assert_eq!(all.room(), 100);
        all.instance_started();
        assert_eq!(all.room(), 100 - PER_INSTANCE / 2);
        all.instance_gone();
        all.instance_gone();
        assert_eq!(all.room(), 100, "never below none");
    }
}
