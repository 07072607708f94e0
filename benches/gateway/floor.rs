//! The gateway bench's floor: the least a TCP relay can do, as a fifth contender. The bench binary
//! started with `GATEWAY_BENCH_FLOOR` relays each of its routes with two threads, each with its
//! own `SO_REUSEPORT` listener and a level-triggered epoll; a new client gets a blocking connect
//! to the route's next backend (round robin); a readable socket gets one read and one write to
//! its peer (a full socket: the thread waits until it drains); an end of file is passed on with
//! a `shutdown`. No timeouts, limits, health checks, logs or counters. What a proxy cannot go
//! below on this machine, and so what the targets against HAProxy leave room for.

use anyhow::Context;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{
    accept4, bind, connect, listen, setsockopt, shutdown, socket, sockopt, AddressFamily, Backlog, Shutdown, SockFlag,
    SockType, SockaddrIn,
};
use std::net::SocketAddrV4;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::ExitCode;

/// Its name in the report.
pub const NAME: &str = "floor";
/// Its routes, `FRONTEND>BACKEND[,BACKEND...]` separated by `;`.
pub const ENV: &str = "GATEWAY_BENCH_FLOOR";
/// Relay threads, as HAProxy's `nbthread` and procgate's data-plane threads.
const THREADS: usize = 2;
/// Bytes of each read: the gateway's large buffer (src/gateway/uring), HAProxy's `bufsize` 16 KiB.
const BUFFER: usize = 64 * 1024;
/// Events taken per wait.
const EVENTS: usize = 256;
/// Longest wait for a full socket to drain before the connection is dropped.
const DRAIN_TIMEOUT_MS: u16 = 1000;

/// Whether the bench binary was started as the floor relay.
pub fn is_floor_mode() -> bool {
    std::env::var_os(ENV).is_some()
}

/// A route: where clients come, and the backends they are relayed to in turn.
struct Route {
    frontend: SocketAddrV4,
    backends: Vec<SocketAddrV4>,
}

/// `ENV`'s value for these routes.
pub fn spec(routes: &[(SocketAddrV4, &[SocketAddrV4])]) -> String {
    let route = |(frontend, backends): &(SocketAddrV4, &[SocketAddrV4])| {
        let backends: Vec<String> = backends.iter().map(ToString::to_string).collect();
        format!("{frontend}>{}", backends.join(","))
    };
    routes.iter().map(route).collect::<Vec<_>>().join(";")
}

fn parse(spec: &str) -> anyhow::Result<Vec<Route>> {
    spec.split(';')
        .map(|route| {
            let (frontend, backends) = route.split_once('>').with_context(|| format!("no `>` in {route:?}"))?;
            // `split` yields at least one piece, and an empty one does not parse.
            let backends = backends.split(',').map(str::parse).collect::<Result<Vec<_>, _>>()?;
            Ok(Route { frontend: frontend.parse()?, backends })
        })
        .collect()
}

/// Relays the routes of `ENV` until killed.
pub fn serve() -> ExitCode {
    let routes = match std::env::var(ENV).map_err(anyhow::Error::from).and_then(|spec| parse(&spec)) {
        Ok(routes) => std::sync::Arc::new(routes),
        Err(err) => {
            eprintln!("floor relay: {ENV}: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let routes = routes.clone();
            std::thread::spawn(move || Relay::new(&routes).and_then(|relay| relay.run()))
        })
        .collect();
    for thread in threads {
        if let Ok(Err(err)) = thread.join() {
            eprintln!("floor relay: {err:#}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// What a descriptor of a thread is.
enum Entry {
    /// The listener of route `route`.
    Listener { route: usize, _socket: OwnedFd },
    /// One side of a relayed connection.
    Side(Side),
}

struct Side {
    socket: OwnedFd,
    peer: RawFd,
    /// Its end of file not seen yet.
    reading: bool,
}

/// One thread's relay.
struct Relay<'a> {
    routes: &'a [Route],
    epoll: Epoll,
    /// By descriptor number.
    entries: Vec<Option<Entry>>,
    /// Each route's next backend.
    next: Vec<usize>,
    buffer: Vec<u8>,
}

impl<'a> Relay<'a> {
    fn new(routes: &'a [Route]) -> anyhow::Result<Relay<'a>> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let mut relay =
            Relay { routes, epoll, entries: Vec::new(), next: vec![0; routes.len()], buffer: vec![0; BUFFER] };
        for (at, route) in routes.iter().enumerate() {
            let listener = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_NONBLOCK, None)?;
            setsockopt(&listener, sockopt::ReusePort, &true)?;
            setsockopt(&listener, sockopt::ReuseAddr, &true)?;
            bind(listener.as_raw_fd(), &SockaddrIn::from(route.frontend))
                .with_context(|| format!("bind {}", route.frontend))?;
            listen(&listener, Backlog::MAXCONN)?;
            relay.watch(&listener)?;
            relay.put(listener.as_raw_fd(), Entry::Listener { route: at, _socket: listener });
        }
        Ok(relay)
    }

    fn watch(&self, socket: &OwnedFd) -> nix::Result<()> {
        self.epoll.add(socket, EpollEvent::new(EpollFlags::EPOLLIN, socket.as_raw_fd() as u64))
    }

    fn put(&mut self, fd: RawFd, entry: Entry) {
        let at = fd as usize;
        if self.entries.len() <= at {
            self.entries.resize_with(at + 1, || None);
        }
        self.entries[at] = Some(entry);
    }

    fn run(mut self) -> anyhow::Result<()> {
        let mut events = vec![EpollEvent::empty(); EVENTS];
        loop {
            let ready = match self.epoll.wait(&mut events, EpollTimeout::NONE) {
                Err(Errno::EINTR) => continue,
                ready => ready?,
            };
            for event in &events[..ready] {
                let fd = event.data() as RawFd;
                match self.entries.get(fd as usize) {
                    Some(Some(Entry::Listener { route, .. })) => self.accept(fd, *route),
                    Some(Some(Entry::Side(_))) => self.relay(fd),
                    _ => {}
                }
            }
        }
    }

    fn accept(&mut self, listener: RawFd, route: usize) {
        let Ok(client) = accept4(listener, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC) else { return };
        // SAFETY: accept4 returned a new descriptor that nothing else owns.
        let client = unsafe { OwnedFd::from_raw_fd(client) };
        let backends = &self.routes[route].backends;
        let backend = backends[self.next[route] % backends.len()];
        self.next[route] += 1;
        let Ok(instance) = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None) else { return };
        if connect(instance.as_raw_fd(), &SockaddrIn::from(backend)).is_err() {
            return;
        }
        let nonblocking = nix::fcntl::OFlag::O_NONBLOCK;
        let _ = nix::fcntl::fcntl(instance.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(nonblocking));
        for socket in [&client, &instance] {
            let _ = setsockopt(socket, sockopt::TcpNoDelay, &true);
            if self.watch(socket).is_err() {
                return;
            }
        }
        let (client_fd, instance_fd) = (client.as_raw_fd(), instance.as_raw_fd());
        self.put(client_fd, Entry::Side(Side { socket: client, peer: instance_fd, reading: true }));
        self.put(instance_fd, Entry::Side(Side { socket: instance, peer: client_fd, reading: true }));
    }

    /// One read from `fd`, written whole to its peer.
    fn relay(&mut self, fd: RawFd) {
        let Some(Some(Entry::Side(side))) = self.entries.get(fd as usize) else { return };
        let peer = side.peer;
        let read = match nix::unistd::read(fd, &mut self.buffer) {
            Err(Errno::EAGAIN | Errno::EINTR) => return,
            Err(_) => return self.drop_pair(fd, peer),
            Ok(0) => return self.end_of_file(fd, peer),
            Ok(read) => read,
        };
        let Some(Some(Entry::Side(to))) = self.entries.get(peer as usize) else { return self.drop_pair(fd, peer) };
        if write_all(to.socket.as_fd(), &self.buffer[..read]).is_err() {
            self.drop_pair(fd, peer);
        }
    }

    /// Passes `fd`'s end of file on; closes both once both ended.
    fn end_of_file(&mut self, fd: RawFd, peer: RawFd) {
        let peer_reading = matches!(self.entries.get(peer as usize), Some(Some(Entry::Side(s))) if s.reading);
        if !peer_reading {
            return self.drop_pair(fd, peer);
        }
        if let Some(Some(Entry::Side(side))) = self.entries.get_mut(fd as usize) {
            side.reading = false;
            let _ = self.epoll.delete(&side.socket);
        }
        let _ = shutdown(peer, Shutdown::Write);
    }

    /// Closes both sides.
    fn drop_pair(&mut self, fd: RawFd, peer: RawFd) {
        for side in [fd, peer] {
            if let Some(entry) = self.entries.get_mut(side as usize) {
                *entry = None;
            }
        }
    }
}

/// Writes all of `bytes`, waiting while the socket is full.
fn write_all(socket: std::os::fd::BorrowedFd<'_>, mut bytes: &[u8]) -> nix::Result<()> {
    while !bytes.is_empty() {
        match nix::unistd::write(socket, bytes) {
            Ok(written) => bytes = &bytes[written..],
            Err(Errno::EAGAIN) => {
                let mut fds = [PollFd::new(socket, PollFlags::POLLOUT)];
                if poll(&mut fds, PollTimeout::from(DRAIN_TIMEOUT_MS))? == 0 {
                    return Err(Errno::ETIMEDOUT);
                }
            }
            Err(Errno::EINTR) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}
