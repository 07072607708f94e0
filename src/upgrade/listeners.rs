//! The listening sockets a main process hands to its successor: every route's, one per
//! data-plane thread (SO_REUSEPORT siblings, thread 0's first), the control socket's with the
//! file whose lock makes the app root this procgate's, and the metrics' and the status page's if
//! procgate serves them.
//!
//! All of them cross, none is closed: a SO_REUSEPORT member that closes drops the connections
//! queued on it (the clients get a reset), so the successor accepts from the very sockets the old
//! main did, and the kernel keeps queueing on them meanwhile. One message: a manifest saying which
//! fd is which, then the fds (at most [`fdpass::MAX_FDS`] in all).

use crate::fdpass;
use crate::gateway::Stopper;
use nix::sys::socket::{getsockname, getsockopt, sockopt, AddressFamily, SockaddrLike, SockaddrStorage};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Error, ErrorKind};
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};

/// The listening sockets of a main process.
#[derive(Debug)]
pub struct Listeners {
    /// Each route's type and its listeners, thread 0's first.
    pub routes: Vec<(String, Vec<TcpListener>)>,
    pub control: UnixListener,
    /// The control directory's locked file: the lock that makes the root this procgate's.
    pub lock: File,
    pub metrics: Option<TcpListener>,
    pub status: Option<TcpListener>,
}

impl Listeners {
    /// What they are: `control socket, status page, web ×2, tcp ×2`.
    pub fn summary(&self) -> String {
        let mut parts = vec!["control socket".to_string()];
        parts.extend(self.metrics.as_ref().map(|_| "metrics".to_string()));
        parts.extend(self.status.as_ref().map(|_| "status page".to_string()));
        parts.extend(self.routes.iter().map(|(name, l)| format!("{name} ×{}", l.len())));
        parts.join(", ")
    }
}

/// Where a running main process copies its listeners from at a handover: new descriptors of
/// the same sockets, so the originals keep serving until the successor is ready.
pub struct Sources {
    pub gateway: Stopper,
    pub control: UnixListener,
    pub lock: File,
    pub metrics: Option<TcpListener>,
    pub status: Option<TcpListener>,
}

impl Sources {
    pub fn listeners(&self) -> std::io::Result<Listeners> {
        Ok(Listeners {
            routes: self.gateway.listeners()?,
            control: self.control.try_clone()?,
            lock: self.lock.try_clone()?,
            metrics: self.metrics.as_ref().map(TcpListener::try_clone).transpose()?,
            status: self.status.as_ref().map(TcpListener::try_clone).transpose()?,
        })
    }
}

/// Which fd is which: the control socket's first, its lock second, then the metrics' and the status page's if
/// there, then each route's in order.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    routes: Vec<(String, usize)>,
    metrics: bool,
    status: bool,
}

/// Sends every listener over the handover socket; the caller's copies stay open.
pub fn send(stream: &UnixStream, listeners: &Listeners) -> std::io::Result<()> {
    let manifest = Manifest {
        routes: listeners.routes.iter().map(|(name, l)| (name.clone(), l.len())).collect(),
        metrics: listeners.metrics.is_some(),
        status: listeners.status.is_some(),
    };
    let mut fds: Vec<BorrowedFd> = vec![listeners.control.as_fd(), listeners.lock.as_fd()];
    fds.extend(listeners.metrics.iter().chain(&listeners.status).map(AsFd::as_fd));
    fds.extend(listeners.routes.iter().flat_map(|(_, l)| l.iter().map(AsFd::as_fd)));
    fdpass::send(stream, &serde_json::to_vec(&manifest)?, &fds)
}

/// Receives the listeners [`send`] sent; each fd checked to be a listening socket of its kind.
pub fn receive(stream: &UnixStream) -> std::io::Result<Listeners> {
    let (message, fds) = fdpass::receive(stream)?;
    let bad = |why: String| Error::new(ErrorKind::InvalidData, format!("the listeners handed over: {why}"));
    let manifest: Manifest = serde_json::from_slice(&message).map_err(|err| bad(err.to_string()))?;
    let expected =
        2 + manifest.metrics as usize + manifest.status as usize + manifest.routes.iter().map(|r| r.1).sum::<usize>();
    if fds.len() != expected {
        return Err(bad(format!("{} fds where {expected} were due", fds.len())));
    }
    let mut fds = fds.into_iter();
    let (control, lock) = (fds.next().expect("counted above"), fds.next().expect("counted above"));
    listening(&control, false).map_err(|why| bad(format!("the control socket: {why}")))?;
    let (control, lock) = (UnixListener::from(control), File::from(lock));
    let mut next = |tcp: bool, what: &str| {
        let fd = fds.next().expect("counted above");
        listening(&fd, tcp).map_err(|why| bad(format!("{what}: {why}")))?;
        Ok::<OwnedFd, Error>(fd)
    };
    let metrics = manifest.metrics.then(|| next(true, "the metrics")).transpose()?.map(TcpListener::from);
    let status = manifest.status.then(|| next(true, "the status page")).transpose()?.map(TcpListener::from);
    let mut routes = Vec::new();
    for (name, count) in manifest.routes {
        let listeners = (0..count).map(|_| next(true, &name).map(TcpListener::from)).collect::<Result<_, _>>()?;
        routes.push((name, listeners));
    }
    Ok(Listeners { routes, control, lock, metrics, status })
}

/// Whether `fd` is a listening socket, TCP or Unix.
fn listening(fd: &OwnedFd, tcp: bool) -> Result<(), String> {
    let family = getsockname::<SockaddrStorage>(fd.as_raw_fd()).map_err(|err| err.to_string())?.family();
    let expected = match tcp {
        true => matches!(family, Some(AddressFamily::Inet | AddressFamily::Inet6)),
        false => family == Some(AddressFamily::Unix),
    };
    if !expected {
        return Err(format!("not a {} socket", if tcp { "TCP" } else { "Unix" }));
    }
    match getsockopt(fd, sockopt::AcceptConn) {
        Ok(true) => Ok(()),
        Ok(false) => Err("a socket that does not listen".to_string()),
        Err(err) => Err(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{listen, listen_shared};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    /// Accepts until `n` connections came in on any of `listeners`, within a second.
    fn accept_all(listeners: &[TcpListener], n: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut accepted = 0;
        while accepted < n && Instant::now() < deadline {
            for listener in listeners {
                listener.set_nonblocking(true).unwrap();
                while listener.accept().is_ok() {
                    accepted += 1;
                }
            }
        }
        accepted
    }

    #[test]
    fn every_listener_crosses_and_no_queued_connection_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let web = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = web.local_addr().unwrap();
        let sibling = listen_shared(addr).unwrap();
        let old = Listeners {
            routes: vec![
                ("web".to_string(), vec![web, sibling]),
                ("tcp".to_string(), vec![listen("127.0.0.1:0".parse().unwrap()).unwrap()]),
            ],
            control: UnixListener::bind(dir.path().join("control.sock")).unwrap(),
            lock: File::create(dir.path().join("lock")).unwrap(),
            metrics: None,
            status: Some(TcpListener::bind("127.0.0.1:0").unwrap()),
        };
        // Queued on both siblings before the crossing; the old main's copies close after it.
        let clients: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let (a, b) = UnixStream::pair().unwrap();
        send(&a, &old).unwrap();
        drop(old);
        let new = receive(&b).unwrap();
        assert_eq!(new.routes.iter().map(|(n, l)| (n.as_str(), l.len())).collect::<Vec<_>>(), [("web", 2), ("tcp", 1)]);
        assert!(new.metrics.is_none() && new.status.is_some());
        assert_eq!(accept_all(&new.routes[0].1, clients.len()), clients.len(), "every queued client accepted");
        // A successor with more threads adds a member to the group it inherited.
        let more = listen_shared(addr).unwrap();
        let late: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let mut all = new.routes[0].1.iter().map(|l| l.try_clone().unwrap()).collect::<Vec<_>>();
        all.push(more);
        assert_eq!(accept_all(&all, late.len()), late.len());
        let _client = std::os::unix::net::UnixStream::connect(dir.path().join("control.sock")).unwrap();
        new.control.accept().unwrap();
    }

    #[test]
    fn a_socket_of_the_wrong_kind_is_refused_not_adopted() {
        let (a, b) = UnixStream::pair().unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let manifest = serde_json::to_vec(&Manifest { routes: vec![], metrics: false, status: false }).unwrap();
        fdpass::send(&a, &manifest, &[tcp.as_fd()]).unwrap();
        let err = receive(&b).unwrap_err();
        assert!(err.to_string().contains("1 fds where 2 were due"), "{err}");
        let lock = tempfile::tempfile().unwrap();
        fdpass::send(&a, &manifest, &[tcp.as_fd(), lock.as_fd()]).unwrap();
        let err = receive(&b).unwrap_err();
        assert!(err.to_string().contains("the control socket: not a Unix socket"), "{err}");
        let connected = TcpStream::connect(tcp.local_addr().unwrap()).unwrap();
        let manifest =
            serde_json::to_vec(&Manifest { routes: vec![("web".into(), 1)], metrics: false, status: false }).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let control = UnixListener::bind(dir.path().join("c.sock")).unwrap();
        fdpass::send(&a, &manifest, &[control.as_fd(), lock.as_fd(), connected.as_fd()]).unwrap();
        let err = receive(&b).unwrap_err();
        assert!(err.to_string().contains("web: a socket that does not listen"), "{err}");
    }
}
