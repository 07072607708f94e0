//! Sleep when idle, wake on connect: the data plane's half. A route counts its open client
//! connections (TCP connections, router client connections, their upgraded tunnels) and stamps
//! when the last one closed, so the Scheduler can tell an idle type; health probes go straight
//! to the instances and never count. When the Scheduler puts the type to sleep it raises the
//! route's *floor*: instances of lower slots (every one running then) get no new client, so no
//! client is handed to an instance about to get SIGTERM. A client that finds no instance asks
//! the Scheduler to wake the type, once per sleep (single-flight), and waits for the routing
//! to change as any client does during a boot (up to `--wait`, then H10).
//!
//! Why no client is lost at the moment the type falls asleep: a client counts itself open
//! before it reads the floor, and the Scheduler raises the floor before it checks once more
//! that nothing is open (all `SeqCst`). Either the Scheduler sees the client (and the type
//! stays awake), or the client sees the raised floor (and waits for the wake).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A wake the data plane asks for: the type, and when its first client found no instance.
#[derive(Debug)]
pub struct WakeCall {
    pub type_name: String,
    pub at: Instant,
}

/// One route's activity, its sleep floor and its wake request.
#[derive(Debug)]
pub struct Activity {
    type_name: String,
    /// Client connections open now.
    open: AtomicUsize,
    /// When the last one closed (or the type woke), in milliseconds since [`epoch`].
    last: AtomicU64,
    /// Instances of a slot below it take no new client (the type sleeps or is falling asleep).
    floor: AtomicUsize,
    /// A wake was asked for since the type last fell asleep.
    asked: AtomicBool,
    wakes: mpsc::UnboundedSender<WakeCall>,
}

/// The process's own clock origin for the stamps.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn millis_now() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A client connection counted open on its route until it is dropped.
#[derive(Debug)]
pub struct Active(Arc<Activity>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.last.store(millis_now(), Ordering::SeqCst);
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Activity {
    pub fn new(type_name: String, wakes: mpsc::UnboundedSender<WakeCall>) -> Activity {
        Activity {
            type_name,
            open: AtomicUsize::new(0),
            last: AtomicU64::new(millis_now()),
            floor: AtomicUsize::new(0),
            asked: AtomicBool::new(false),
            wakes,
        }
    }

    /// Counts a client connection open (before it is assigned: see the module's note).
    pub fn enter(self: &Arc<Self>) -> Active {
        self.open.fetch_add(1, Ordering::SeqCst);
        Active(self.clone())
    }

    /// Client connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Whether no client connection is open and none closed within `after`.
    pub fn idle_for(&self, after: Duration) -> bool {
        let since = millis_now().saturating_sub(self.last.load(Ordering::SeqCst));
        self.open() == 0 && u128::from(since) >= after.as_millis()
    }

    /// Instances of a lower slot may take no new client.
    pub fn floor(&self) -> usize {
        self.floor.load(Ordering::SeqCst)
    }

    /// A client found no instance: the first one since the type fell asleep asks for a wake.
    pub fn want_wake(&self) {
        if !self.asked.load(Ordering::Relaxed) && !self.asked.swap(true, Ordering::SeqCst) {
            let _ = self.wakes.send(WakeCall { type_name: self.type_name.clone(), at: Instant::now() });
        }
    }

    /// Closes the instances below slot `floor` to new clients if the route has been idle for
    /// `after`: `Some(true)` when it did, `None` when it was not idle (nothing changed), and
    /// `Some(false)` when a client came as the floor rose: the floor went back, and the clients
    /// waiting must pick again ([`super::route::Route::fall_asleep`] wakes them).
    pub fn fall_asleep(&self, floor: usize, after: Duration) -> Option<bool> {
        if !self.idle_for(after) {
            return None;
        }
        self.asked.store(false, Ordering::SeqCst);
        let before = self.floor.swap(floor, Ordering::SeqCst);
        if self.idle_for(after) {
            return Some(true);
        }
        self.floor.store(before, Ordering::SeqCst);
        Some(false)
    }

    /// Its idle time counts from now: the type woke, or one of its instances joined routing.
    pub fn restart_idle_clock(&self) {
        self.last.store(millis_now(), Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity() -> (Arc<Activity>, mpsc::UnboundedReceiver<WakeCall>) {
        let (wakes, calls) = mpsc::unbounded_channel();
        (Arc::new(Activity::new("tcp".into(), wakes)), calls)
    }

    #[test]
    fn an_open_connection_keeps_the_route_active_and_its_close_restarts_the_idle_time() {
        let (activity, _) = activity();
        assert!(activity.idle_for(Duration::ZERO));
        let held = activity.enter();
        assert!(!activity.idle_for(Duration::ZERO), "an open connection is activity");
        assert_eq!(activity.fall_asleep(5, Duration::ZERO), None);
        assert_eq!(activity.floor(), 0);
        drop(held);
        assert!(activity.idle_for(Duration::ZERO));
        assert!(!activity.idle_for(Duration::from_secs(60)), "it just closed");
    }

    #[test]
    fn falling_asleep_closes_the_instances_below_the_floor_and_one_wake_is_asked_per_sleep() {
        let (activity, mut calls) = activity();
        assert_eq!(activity.fall_asleep(3, Duration::ZERO), Some(true));
        assert_eq!(activity.floor(), 3);
        for _ in 0..20 {
            activity.want_wake();
        }
        assert_eq!(calls.try_recv().unwrap().type_name, "tcp");
        assert!(calls.try_recv().is_err(), "single-flight: one wake for 20 clients");
        assert_eq!(activity.fall_asleep(7, Duration::ZERO), Some(true));
        activity.want_wake();
        assert!(calls.try_recv().is_ok(), "a new sleep, a new wake");
    }
}
