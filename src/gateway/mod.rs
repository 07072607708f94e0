//! The data plane: one thread per core, separate from the actix control thread, each with its
//! own current-thread tokio runtime and its own listening socket on every route (SO_REUSEPORT:
//! the kernel spreads new connections over the threads). A connection lives on the thread that
//! accepted it, so its wakeups never cross threads (HAProxy's `nbthread` model). Accept loops
//! read the Balancer's snapshots lock-free and never wait on an actor per connection.

pub mod admit;
pub mod assign;
pub mod budget;
pub mod client_stream;
pub mod clients;
pub mod header_values;
pub mod http;
pub mod outside;
pub mod pool;
pub mod proxy_protocol;
pub mod pump;
pub mod route;
pub mod socket;
pub mod spread;
pub mod stats;
pub mod tcp;
pub mod timeouts;
pub mod uring;
pub mod wake;

use route::Route;
use spread::Spread;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How the gateway treats each connection.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// How long an accepted client waits for a healthy instance before H10.
    pub wait: Duration,
    /// Log `202`/`203` per TCP connection.
    pub access_log: bool,
    /// Log Heroku's router line per HTTP request.
    pub router_log: bool,
    /// How TCP connections' bytes are relayed.
    pub relay: Relay,
}

/// How the TCP gateway relays bytes (`--relay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    /// io_uring where the kernel allows it, else epoll.
    Auto,
    /// io_uring, or refuse to start.
    IoUring,
    /// epoll (`pump`).
    Epoll,
}

/// The running data plane; dropping it stops accepting (the threads end with the process).
pub struct Gateway {
    shutdown: Arc<watch::Sender<bool>>,
    held: Held,
    /// How TCP connections are relayed, in words for the start line.
    pub relaying: String,
}

/// Copies of every route's listeners (its type, then one per thread), for an upgrade's
/// handover, until the gateway stops accepting (then they close with the threads' own).
type Held = Arc<std::sync::Mutex<Option<Vec<(String, Vec<std::net::TcpListener>)>>>>;

/// Stops the gateway's accept loops; established connections go on.
#[derive(Clone)]
pub struct Stopper(Arc<watch::Sender<bool>>, Held);

impl Stopper {
    pub fn stop_accepting(&self) {
        let _ = self.0.send(true);
        self.1.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// New descriptors of every route's listening sockets (the same sockets: their queues are
    /// shared), for a successor; an error once the gateway stopped accepting.
    pub fn listeners(&self) -> std::io::Result<Vec<(String, Vec<std::net::TcpListener>)>> {
        let held = self.1.lock().unwrap_or_else(|e| e.into_inner());
        let held = held.as_ref().ok_or_else(|| std::io::Error::other("the gateway has stopped accepting"))?;
        let copy = |listeners: &Vec<std::net::TcpListener>| {
            listeners.iter().map(|l| l.try_clone()).collect::<std::io::Result<Vec<_>>>()
        };
        held.iter().map(|(name, listeners)| Ok((name.clone(), copy(listeners)?))).collect()
    }
}

impl Gateway {
    /// Starts one data-plane thread per core, each with a listener of its own per route: the
    /// ones given (bound by [`listen`], or a previous main process's SO_REUSEPORT siblings handed
    /// over at an upgrade: as many threads as those if they are more than the cores), then new
    /// siblings on the same addresses.
    pub fn start(
        routes: Vec<(Arc<Route>, Vec<std::net::TcpListener>)>,
        settings: GatewaySettings,
    ) -> std::io::Result<Gateway> {
        let (uring, relaying) = uring::choose(settings.relay)?;
        let given = routes.iter().map(|(_, l)| l.len()).max().unwrap_or(0);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).max(given);
        let addrs = routes
            .iter()
            .map(|(route, l)| {
                let first =
                    l.first().ok_or_else(|| std::io::Error::other(format!("no listener for {}", route.type_name)))?;
                Ok((route.clone(), first.local_addr()?))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let mut given: Vec<std::vec::IntoIter<std::net::TcpListener>> =
            routes.into_iter().map(|(_, l)| l.into_iter()).collect();
        let mut per_thread = Vec::with_capacity(threads);
        for _ in 0..threads {
            let listeners = addrs.iter().zip(given.iter_mut()).map(|((route, addr), given)| {
                let listener = given.next().map_or_else(|| listen_shared(*addr), Ok)?;
                Ok((route.clone(), listener))
            });
            per_thread.push(listeners.collect::<std::io::Result<Vec<_>>>()?);
        }
        // Each TCP route's connections evened out over the threads (spread.rs).
        let mut spreads: Vec<(Arc<Spread>, Vec<Option<Inbox>>)> = addrs
            .iter()
            .map(|_| {
                let (spread, inboxes) = Spread::new(threads);
                (spread, inboxes.into_iter().map(Some).collect())
            })
            .collect();
        let mut held: Vec<(String, Vec<std::net::TcpListener>)> =
            addrs.iter().map(|(route, _)| (route.type_name.clone(), Vec::new())).collect();
        for listeners in &per_thread {
            for ((_, listener), (_, copies)) in listeners.iter().zip(held.iter_mut()) {
                copies.push(listener.try_clone()?);
            }
        }
        let (shutdown, _) = watch::channel(false);
        let settings = Arc::new(settings);
        for (index, listeners) in per_thread.into_iter().enumerate() {
            for (route, listener) in &listeners {
                listener.set_nonblocking(true)?;
                keep_clients_alive(listener, route.policy.timeouts.tcp_keepalive)?;
            }
            let listeners: Vec<Accepting> = listeners
                .into_iter()
                .zip(spreads.iter_mut())
                .map(|((route, listener), (spread, inboxes))| {
                    let inbox = inboxes[index].take().expect("one inbox per thread");
                    (route, listener, Share { spread: spread.clone(), thread: index, inbox })
                })
                .collect();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (settings, stop) = (settings.clone(), shutdown.subscribe());
            let serve = move || runtime.block_on(serve_all(listeners, settings, stop, uring));
            std::thread::Builder::new().name(format!("gateway-{index}")).spawn(serve)?;
        }
        let held = Arc::new(std::sync::Mutex::new(Some(held)));
        Ok(Gateway { shutdown: Arc::new(shutdown), held, relaying })
    }

    pub fn stopper(&self) -> Stopper {
        Stopper(self.shutdown.clone(), self.held.clone())
    }
}

/// A thread's inbox of connections handed over by the others.
type Inbox = tokio::sync::mpsc::UnboundedReceiver<spread::Handover>;

/// A thread's share of a route: the route's spread, the thread's place in it, its inbox.
pub struct Share {
    pub spread: Arc<Spread>,
    pub thread: usize,
    pub inbox: Inbox,
}

/// What a thread accepts on: the route, its listener there, and its share.
type Accepting = (Arc<Route>, std::net::TcpListener, Share);

/// One thread's accept loops, relaying with io_uring if `uring`; its connections go on after
/// `stop` until the process ends.
async fn serve_all(
    listeners: Vec<Accepting>,
    settings: Arc<GatewaySettings>,
    stop: watch::Receiver<bool>,
    uring: bool,
) {
    if uring {
        if let Err(err) = uring::start() {
            tracing::warn!("this gateway thread relays with epoll: its io_uring could not be set up ({err})");
        }
    }
    for (route, listener, share) in listeners {
        let served = match route.policy.http {
            true => tokio::net::TcpListener::from_std(listener)
                .map(|listener| tokio::spawn(http::serve(listener, route.clone(), settings.clone(), stop.clone()))),
            false => outside::watch(listener).map(|listener| {
                tokio::spawn(tcp::serve(listener, route.clone(), settings.clone(), stop.clone(), share))
            }),
        };
        if let Err(err) = served {
            tracing::error!("the {} route cannot accept on this thread: {err}", route.type_name);
        }
    }
    housekeeping().await
}

/// How often each data-plane thread does its housekeeping.
const HOUSEKEEPING_PERIOD: Duration = Duration::from_secs(1);

/// Once a second, for ever, on each data-plane thread: closes the pool's idle connections past
/// their limit and enforces the router clients' head and keep-alive limits. Also keeps a timer
/// due within a second on the thread: tokio wakes its driver (a system call) when a new timer is
/// due before every pending one, which without it every request's 30 s timeout would be.
async fn housekeeping() {
    loop {
        tokio::time::sleep(HOUSEKEEPING_PERIOD).await;
        let now = tokio::time::Instant::now();
        pool::sweep(now);
        client_stream::sweep(now);
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stopper().stop_accepting();
    }
}

/// Binds a route's listening socket, refusing an address another process already listens on
/// (SO_REUSEPORT alone would silently share it).
pub fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let probe = std::net::TcpListener::bind(addr)?;
    let addr = probe.local_addr()?;
    drop(probe);
    listen_shared(addr)
}

/// A listening socket with SO_REUSEPORT, so each data-plane thread can have its own, and
/// TCP_NODELAY, which the sockets it accepts inherit (Linux): no system call per client for it.
/// A new member may join a group whose other members another process of this user holds (an
/// upgrade's successor with more threads).
pub fn listen_shared(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use nix::sys::socket::{bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType};
    use nix::sys::socket::{SockaddrIn, SockaddrIn6};
    let family = if addr.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    setsockopt(&fd, sockopt::TcpNoDelay, &true)?;
    match addr {
        SocketAddr::V4(v4) => bind(fd.as_raw_fd(), &SockaddrIn::from(v4))?,
        SocketAddr::V6(v6) => bind(fd.as_raw_fd(), &SockaddrIn6::from(v6))?,
    }
    listen(&fd, Backlog::MAXCONN)?;
    Ok(std::net::TcpListener::from(fd))
}

/// Sets TCP keepalive probes on a listening socket, which the clients it accepts inherit
/// (Linux): no system call per client. Instances need none: they are local processes, whose
/// sockets the kernel closes when they die and answers probes for while they live.
fn keep_clients_alive(listener: &std::net::TcpListener, idle: Option<Duration>) -> std::io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    let Some(idle) = idle else { return Ok(()) };
    // Within Linux's range, as the settings were checked (`timeouts::check_tcp_keepalive`).
    let seconds = |d: Duration| u32::try_from(d.as_secs().max(1)).unwrap_or(u32::MAX);
    setsockopt(listener, sockopt::KeepAlive, &true)?;
    setsockopt(listener, sockopt::TcpKeepIdle, &seconds(idle))?;
    setsockopt(listener, sockopt::TcpKeepInterval, &seconds(timeouts::KEEPALIVE_INTERVAL))?;
    setsockopt(listener, sockopt::TcpKeepCount, &timeouts::KEEPALIVE_PROBES)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_clients_have_nodelay_from_the_listener() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(accepted.nodelay().unwrap(), "the gateway and the router no longer set it per client");
    }

    #[test]
    fn accepted_clients_have_keepalive_probes_from_the_listener() {
        use nix::sys::socket::{getsockopt, sockopt};
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        keep_clients_alive(&listener, Some(Duration::from_secs(60))).unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(getsockopt(&accepted, sockopt::KeepAlive).unwrap());
        assert_eq!(getsockopt(&accepted, sockopt::TcpKeepIdle).unwrap(), 60);
        assert_eq!(getsockopt(&accepted, sockopt::TcpKeepInterval).unwrap(), 10);
        assert_eq!(getsockopt(&accepted, sockopt::TcpKeepCount).unwrap(), 6);
    }

    #[test]
    fn every_handed_over_sibling_is_served_even_more_than_the_cores() {
        use crate::gateway::budget::Descriptors;
        use crate::gateway::route::Policy;
        use crate::gateway::stats::Outcome;
        let first = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut siblings = vec![first];
        siblings.extend((0..cores + 1).map(|_| listen_shared(addr).unwrap()));
        // Queued on the siblings before the gateway starts, as across an upgrade.
        let clients: Vec<std::net::TcpStream> = (0..40).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
        let (failures, _) = tokio::sync::mpsc::unbounded_channel();
        let (wakes, _) = tokio::sync::mpsc::unbounded_channel();
        let policy = Policy::of(&crate::settings::TypeSettings::default(), false);
        let route = Arc::new(Route::new("tcp".into(), policy, Descriptors::new(10_000).route(), failures, wakes));
        let settings = GatewaySettings {
            wait: Duration::from_millis(20),
            access_log: false,
            router_log: false,
            relay: Relay::Auto,
        };
        let gateway = Gateway::start(vec![(route.clone(), siblings)], settings).unwrap();
        assert_eq!(gateway.stopper().listeners().unwrap()[0].1.len(), cores + 2, "one thread per sibling");
        // No instance: each client accepted gets H10 once the wait is over.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while route.stats.total(Outcome::H10) < clients.len() as u64 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(route.stats.total(Outcome::H10), clients.len() as u64, "every queued client was accepted");
    }
}
