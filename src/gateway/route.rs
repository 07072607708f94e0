//! What the data plane reads: a route's routable instances, published by the Balancer actor as
//! immutable snapshots (`ArcSwap`, lock-free loads), each instance with atomic counters.

use super::clients::{ClientLimits, Clients};
use super::stats::RouteStats;
use super::wake::{Activity, WakeCall};
use crate::cidr::Cidr;
use crate::proxy_version::ProxyVersion;
use arc_swap::ArcSwap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch, Notify};

thread_local! {
    /// Round-robin cursor among equally loaded backends, per thread.
    static CURSOR: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Identifies one incarnation of an instance: its slot and the generation of that slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InstanceId {
    pub slot: usize,
    pub generation: u64,
}

/// A routable instance and its live counters (shared with `ps` and metrics).
#[derive(Debug)]
pub struct Backend {
    pub id: InstanceId,
    /// `tcp.2`
    pub name: String,
    pub addr: SocketAddr,
    /// The PROXY header written to it before any client byte: its own release's setting, so a
    /// deploy that changes it changes it with the rollout (old instances keep theirs).
    pub proxy_protocol: Option<ProxyVersion>,
    /// Open proxied connections, counted from the pick until the connection closes.
    pub open: AtomicUsize,
    /// Connections ever assigned.
    pub total: AtomicU64,
    /// Set by the data plane when a connect fails (passive check), until the HealthChecker clears it.
    pub down: AtomicBool,
    /// Set when it retires: the last connection to close wakes [`Backend::wait_idle`].
    draining: AtomicBool,
    idle: Notify,
}

impl Backend {
    pub fn new(id: InstanceId, name: String, addr: SocketAddr, proxy_protocol: Option<ProxyVersion>) -> Backend {
        let (open, total, down) = (AtomicUsize::new(0), AtomicU64::new(0), AtomicBool::new(false));
        let (draining, idle) = (AtomicBool::new(false), Notify::new());
        Backend { id, name, addr, proxy_protocol, open, total, down, draining, idle }
    }

    /// Resolves once no connection is open on it (drain by connection count, not by a timer).
    pub async fn wait_idle(&self) {
        self.draining.store(true, Ordering::SeqCst);
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }
}

/// Counts a connection (or an HTTP request) open on a backend for as long as it lives; with
/// a cap, it counts on the route too and its end lets a queued client in.
pub struct OpenConnection(pub Arc<Backend>, Option<Arc<Capacity>>);

/// A capped route's shared count and waiting room.
#[derive(Debug, Default)]
pub struct Capacity {
    /// Connections open on every instance of the route.
    open: AtomicUsize,
    /// Signalled when a capped connection ends.
    freed: Notify,
}

impl OpenConnection {
    pub fn new(backend: Arc<Backend>) -> OpenConnection {
        backend.open.fetch_add(1, Ordering::Relaxed);
        backend.total.fetch_add(1, Ordering::Relaxed);
        OpenConnection(backend, None)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let was = self.0.open.fetch_sub(1, Ordering::SeqCst);
        if was == 1 && self.0.draining.load(Ordering::SeqCst) {
            self.0.idle.notify_waiters();
        }
        if let Some(capacity) = &self.1 {
            capacity.open.fetch_sub(1, Ordering::SeqCst);
            capacity.freed.notify_one();
        }
    }
}

/// A route's caps (procgate.toml); off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// The most connections (requests, for `web`) open on one instance at once.
    pub per_instance: Option<usize>,
    /// The most open on all the type's instances together.
    pub per_type: Option<usize>,
    /// How many clients may wait for a free place when the caps are reached (then H11).
    pub backlog: usize,
    /// How long one may wait there [default: `--wait`].
    pub queue_timeout: Option<std::time::Duration>,
}

impl Limits {
    /// Whether any cap is set (else the queue is never used).
    pub fn capped(&self) -> bool {
        self.per_instance.is_some() || self.per_type.is_some()
    }
}

/// How a route treats its clients, from procgate.toml.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    /// Served by the HTTP router, request by request (`web`).
    pub http: bool,
    pub limits: Limits,
    pub clients: ClientLimits,
    /// Clients (a load balancer) send a PROXY header first.
    pub accept_proxy: bool,
    /// The peers that may send it (`accept_proxy`); any other is closed at once (P403).
    pub trusted_proxies: Vec<Cidr>,
    pub timeouts: super::timeouts::Timeouts,
}

impl Policy {
    /// A route's policy from its type's settings (procgate.toml with the flags over it).
    pub fn of(settings: &crate::settings::TypeSettings, http: bool) -> Policy {
        let limits = Limits {
            per_instance: settings.max_per_instance,
            per_type: settings.max_per_type,
            backlog: settings.backlog.unwrap_or(0),
            queue_timeout: settings.queue_timeout,
        };
        let clients = ClientLimits { rate: settings.rate, burst: settings.burst, max_open: settings.max_per_client };
        let default = super::timeouts::Timeouts::default();
        let timeouts = super::timeouts::Timeouts {
            connect: settings.connect_timeout.unwrap_or(default.connect),
            head: settings.head_timeout.unwrap_or(default.head),
            keepalive: settings.keepalive_timeout.unwrap_or(default.keepalive),
            response: settings.request_timeout.unwrap_or(default.response),
            response_idle: settings.router_idle_timeout.unwrap_or(default.response_idle),
            idle: settings.idle_timeout.unwrap_or(default.idle),
            tcp_keepalive: settings.tcp_keepalive.unwrap_or(default.tcp_keepalive),
        };
        Policy {
            http,
            limits,
            clients,
            accept_proxy: settings.accepts_proxy(),
            trusted_proxies: settings.trusted_proxies.clone().unwrap_or_default(),
            timeouts,
        }
    }

    /// Whether `peer` may send a PROXY header.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|block| block.contains(peer))
    }
}

/// One routed process type: its snapshot of backends and how to wait for a new one.
pub struct Route {
    /// The process type, `tcp`.
    pub type_name: String,
    pub policy: Policy,
    pub clients: Arc<Clients>,
    /// Its connections or requests by outcome, bytes, connect times and durations.
    pub stats: Arc<RouteStats>,
    /// Its clients against the descriptors it may use.
    pub budget: Arc<super::budget::Budget>,
    /// Its open clients, its sleep floor and its wake request (wake.rs).
    pub activity: Arc<Activity>,
    backends: ArcSwap<Vec<Arc<Backend>>>,
    /// Bumped at each publication, for clients waiting for an instance.
    version: watch::Sender<u64>,
    /// Connect failures, for the HealthChecker to confirm.
    failures: mpsc::UnboundedSender<InstanceId>,
    /// Clients waiting for a place under the caps.
    queued: AtomicUsize,
    capacity: Arc<Capacity>,
}

impl Route {
    pub fn new(
        type_name: String,
        policy: Policy,
        budget: Arc<super::budget::Budget>,
        failures: mpsc::UnboundedSender<InstanceId>,
        wakes: mpsc::UnboundedSender<WakeCall>,
    ) -> Route {
        Route {
            activity: Arc::new(Activity::new(type_name.clone(), wakes)),
            type_name,
            budget,
            clients: Arc::new(Clients::new(policy.clients)),
            policy,
            stats: Arc::default(),
            queued: AtomicUsize::new(0),
            capacity: Arc::new(Capacity::default()),
            backends: ArcSwap::from_pointee(Vec::new()),
            version: watch::channel(0).0,
            failures,
        }
    }

    /// The current backends (lock-free).
    pub fn backends(&self) -> arc_swap::Guard<Arc<Vec<Arc<Backend>>>> {
        self.backends.load()
    }

    /// Replaces the backends and wakes the clients waiting for one (Balancer only).
    pub fn publish(&self, backends: Vec<Arc<Backend>>) {
        self.backends.store(Arc::new(backends));
        self.version.send_modify(|v| *v += 1);
    }

    /// Wakes waiting clients without changing the set (a backend came back up).
    pub fn touch(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// Puts the route to sleep below slot `floor` if it has been idle for `after` (wake.rs); a
    /// client that came meanwhile keeps it awake, and the clients waiting pick again.
    pub fn fall_asleep(&self, floor: usize, after: std::time::Duration) -> bool {
        match self.activity.fall_asleep(floor, after) {
            Some(true) => true,
            Some(false) => {
                self.touch();
                false
            }
            None => false,
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Where the next tie-break starts: a cursor per data-plane thread (a shared one would be
    /// a cache line every request of every thread writes).
    pub fn next_cursor(&self) -> usize {
        CURSOR.with(|cursor| {
            let next = cursor.get().wrapping_add(1);
            cursor.set(next);
            next
        })
    }

    /// Counts a new connection on `backend` if it is under the caps (checked and counted at
    /// once, so threads racing for the last place cannot both take it).
    pub fn try_open(&self, backend: Arc<Backend>) -> Option<OpenConnection> {
        let limits = self.policy.limits;
        if !limits.capped() {
            return Some(OpenConnection::new(backend));
        }
        let instance_full = limits.per_instance.is_some_and(|cap| backend.open.fetch_add(1, Ordering::SeqCst) >= cap);
        let type_full = limits.per_type.is_some_and(|cap| self.capacity.open.fetch_add(1, Ordering::SeqCst) >= cap);
        if instance_full || type_full {
            if limits.per_instance.is_some() {
                backend.open.fetch_sub(1, Ordering::SeqCst);
            }
            if limits.per_type.is_some() {
                self.capacity.open.fetch_sub(1, Ordering::SeqCst);
            }
            return None;
        }
        if limits.per_instance.is_none() {
            backend.open.fetch_add(1, Ordering::SeqCst);
        }
        if limits.per_type.is_none() {
            self.capacity.open.fetch_add(1, Ordering::SeqCst);
        }
        backend.total.fetch_add(1, Ordering::Relaxed);
        Some(OpenConnection(backend, Some(self.capacity.clone())))
    }

    /// Whether `backend` may take one more connection under the caps.
    pub fn has_room(&self, backend: &Backend) -> bool {
        let limits = self.policy.limits;
        limits.per_instance.is_none_or(|cap| backend.open.load(Ordering::Relaxed) < cap)
            && limits.per_type.is_none_or(|cap| self.capacity.open.load(Ordering::Relaxed) < cap)
    }

    /// Waits for a place under the caps, up to the queue timeout (or `deadline`); false when the
    /// backlog is full or the wait ends (H11).
    pub async fn wait_for_room(&self, deadline: tokio::time::Instant) -> bool {
        let limits = self.policy.limits;
        let deadline = limits.queue_timeout.map_or(deadline, |t| deadline.min(tokio::time::Instant::now() + t));
        if self.queued.fetch_add(1, Ordering::SeqCst) >= limits.backlog {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        let freed = tokio::time::timeout_at(deadline, self.capacity.freed.notified()).await.is_ok();
        self.queued.fetch_sub(1, Ordering::SeqCst);
        freed
    }

    /// Clients waiting for a place now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// A connect to `backend` failed: mark it down now and have the HealthChecker confirm.
    pub fn report_failure(&self, backend: &Backend) {
        backend.down.store(true, Ordering::Relaxed);
        let _ = self.failures.send(backend.id);
    }
}

/// The balancing policy: least open connections, round-robin among ties (from `cursor`),
/// among the backends `eligible` accepts.
pub fn pick(backends: &[Arc<Backend>], cursor: usize, eligible: impl Fn(&Backend) -> bool) -> Option<&Arc<Backend>> {
    let count = backends.len();
    let mut best: Option<(&Arc<Backend>, usize)> = None;
    for offset in 0..count {
        let backend = &backends[(cursor + offset) % count];
        if !eligible(backend) {
            continue;
        }
        let open = backend.open.load(Ordering::Relaxed);
        if best.is_none_or(|(_, least)| open < least) {
            best = Some((backend, open));
        }
    }
    best.map(|(backend, _)| backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(open: &[usize]) -> Vec<Arc<Backend>> {
        let make = |(i, n): (usize, &usize)| {
            let backend = Backend::new(
                InstanceId { slot: i, generation: 1 },
                format!("tcp.{}", i + 1),
                "127.0.0.1:1".parse().unwrap(),
                None,
            );
            backend.open.store(*n, Ordering::Relaxed);
            Arc::new(backend)
        };
        open.iter().enumerate().map(make).collect()
    }

    fn picked(backends: &[Arc<Backend>], cursor: usize) -> Option<String> {
        pick(backends, cursor, |b| !b.is_down()).map(|b| b.name.clone())
    }

    #[test]
    fn picks_the_least_loaded() {
        let set = backends(&[3, 1, 2]);
        for cursor in 0..6 {
            assert_eq!(picked(&set, cursor).as_deref(), Some("tcp.2"));
        }
    }

    #[test]
    fn rotates_among_ties() {
        let set = backends(&[0, 0, 0]);
        let names: Vec<String> = (0..6).filter_map(|c| picked(&set, c)).collect();
        assert_eq!(names, ["tcp.1", "tcp.2", "tcp.3", "tcp.1", "tcp.2", "tcp.3"]);
        let set = backends(&[1, 0, 0]);
        let names: Vec<String> = (0..4).filter_map(|c| picked(&set, c)).collect();
        assert_eq!(names, ["tcp.2", "tcp.2", "tcp.3", "tcp.2"]);
    }

    #[test]
    fn skips_ineligible_and_down_backends() {
        let set = backends(&[5, 0, 9]);
        set[1].down.store(true, Ordering::Relaxed);
        assert_eq!(picked(&set, 0).as_deref(), Some("tcp.1"));
        assert_eq!(pick(&set, 0, |b| b.name == "tcp.3").map(|b| b.name.as_str()), Some("tcp.3"));
        assert!(pick(&set, 0, |_| false).is_none());
        assert!(picked(&[], 0).is_none());
    }

    #[tokio::test]
    async fn wait_idle_resolves_when_the_last_connection_closes() {
        let set = backends(&[0]);
        set[0].wait_idle().await;
        let held = [OpenConnection::new(set[0].clone()), OpenConnection::new(set[0].clone())];
        let backend = set[0].clone();
        let waiter = tokio::spawn(async move { backend.wait_idle().await });
        let [first, second] = held;
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(second);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap();
    }

    #[test]
    fn open_connections_are_counted_while_held() {
        let set = backends(&[0]);
        let held = OpenConnection::new(set[0].clone());
        assert_eq!(set[0].open.load(Ordering::Relaxed), 1);
        drop(held);
        assert_eq!(set[0].open.load(Ordering::Relaxed), 0);
        assert_eq!(set[0].total.load(Ordering::Relaxed), 1);
    }
}
