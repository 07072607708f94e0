//! Connecting to an instance through the thread's ring: the socket never enters tokio's epoll
//! (no registration to add, then remove before the relay), and the connect's result comes with
//! the thread's other completions. The engine owns the socket and its address while the connect
//! is in flight, so a task dropped meanwhile (its connect timed out) cancels it safely: the
//! socket closes once the kernel is done with it.

use super::{user_data, with_engine, Engine, CANCEL, CONNECT};
use io_uring::{opcode, types};
use nix::sys::socket::{setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrLike, SockaddrStorage};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::task::{Poll, Waker};

/// A connect in flight: what it uses, kept until it completes even if its task is gone.
pub(super) struct Connecting {
    socket: Option<OwnedFd>,
    /// The kernel copies the address when it takes the operation; kept to the end regardless.
    _address: Box<SockaddrStorage>,
    result: Option<i32>,
    waker: Option<Waker>,
    abandoned: bool,
}

/// A connection to `addr`, with `TCP_NODELAY`, outside tokio's epoll, for the ring's relay.
pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let family = if addr.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let socket = socket(family, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&socket, sockopt::TcpNoDelay, &true)?;
    let slot = with_engine(|engine| engine.connect(socket, addr));
    let mut waiting = Waiting(Some(slot));
    let (result, socket) = std::future::poll_fn(|cx| with_engine(|engine| engine.poll_connect(slot, cx.waker()))).await;
    waiting.0 = None;
    match socket {
        Some(socket) if result == 0 => Ok(TcpStream::from(socket)),
        _ => Err(io::Error::from_raw_os_error(-result)),
    }
}

/// A connect's slot while its task waits; dropped early, it has the connect cancelled.
struct Waiting(Option<usize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(slot) = self.0 {
            let _ = super::ENGINE.try_with(|engine| {
                if let Ok(mut engine) = engine.try_borrow_mut() {
                    if let Some(engine) = engine.as_mut() {
                        engine.abandon_connect(slot);
                    }
                }
            });
        }
    }
}

impl Engine {
    fn connect(&mut self, socket: OwnedFd, addr: SocketAddr) -> usize {
        let address = Box::new(SockaddrStorage::from(addr));
        let entry = opcode::Connect::new(types::Fd(socket.as_raw_fd()), address.as_ptr(), address.len());
        let connecting =
            Connecting { socket: Some(socket), _address: address, result: None, waker: None, abandoned: false };
        let slot = self.connects.insert(connecting);
        self.push(entry.build().user_data(user_data(slot, CONNECT, 0)));
        self.turn();
        slot
    }

    /// The connect's result and socket once it completed.
    fn poll_connect(&mut self, slot: usize, waker: &Waker) -> Poll<(i32, Option<OwnedFd>)> {
        let connecting = self.connects.get_mut(slot).expect("a connect in flight");
        if let Some(result) = connecting.result {
            let socket = connecting.socket.take();
            self.connects.remove(slot);
            return Poll::Ready((result, socket));
        }
        if !connecting.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            connecting.waker = Some(waker.clone());
        }
        Poll::Pending
    }

    fn abandon_connect(&mut self, slot: usize) {
        let Some(connecting) = self.connects.get_mut(slot) else { return };
        if connecting.result.is_some() {
            self.connects.remove(slot);
            return;
        }
        connecting.abandoned = true;
        self.push(opcode::AsyncCancel::new(user_data(slot, CONNECT, 0)).build().user_data(CANCEL));
        self.turn();
    }

    /// A connect completed: its task is woken, or, gone, its slot (and socket) freed.
    pub(super) fn connected(&mut self, slot: usize, result: i32) {
        let Some(connecting) = self.connects.get_mut(slot) else { return };
        connecting.result = Some(result);
        if connecting.abandoned {
            self.connects.remove(slot);
        } else if let Some(waker) = connecting.waker.take() {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{start_with, POOLS};
    use super::*;
    use std::time::{Duration, Instant};

    /// A listener whose accept queue is full: the kernel drops further SYNs, so a connect to it
    /// stays in flight (the queued client keeps it full).
    fn full_listener() -> (SocketAddr, OwnedFd, std::net::TcpStream) {
        use nix::sys::socket::{bind, listen, Backlog, SockaddrIn};
        let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
        bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).unwrap();
        listen(&fd, Backlog::new(0).unwrap()).unwrap();
        let addr: SockaddrIn = nix::sys::socket::getsockname(fd.as_raw_fd()).unwrap();
        let addr = SocketAddr::V4(addr.into());
        let queued = TcpStream::connect(addr).unwrap();
        (addr, fd, queued)
    }

    fn connects_in_flight() -> usize {
        with_engine(|engine| engine.connects.len())
    }

    #[test]
    fn connects_are_made_refused_and_cancelled_without_leaking_a_slot_or_a_socket() {
        if Engine::new(POOLS).is_err() {
            eprintln!("skipped: needs io_uring");
            return;
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            start_with(POOLS).unwrap();
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let connected = connect(listener.local_addr().unwrap()).await.unwrap();
            let (accepted, _) = listener.accept().unwrap();
            assert_eq!(accepted.peer_addr().unwrap(), connected.local_addr().unwrap());
            assert!(connected.nodelay().unwrap());

            let closed = listener.local_addr().unwrap();
            drop(listener);
            let refused = connect(closed).await.unwrap_err();
            assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused, "{refused}");

            let (full, _listening, _queued) = full_listener();
            let late = tokio::time::timeout(Duration::from_millis(200), connect(full)).await;
            assert!(late.is_err(), "a SYN to a full accept queue is dropped: {late:?}");
            // The cancelled connect's slot (and socket) go once the kernel gave it back.
            let deadline = Instant::now() + Duration::from_secs(5);
            while connects_in_flight() > 0 {
                assert!(Instant::now() < deadline, "the cancelled connect is never freed");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let again = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            assert!(connect(again.local_addr().unwrap()).await.is_ok(), "the engine goes on");
            assert_eq!(connects_in_flight(), 0);
        });
    }
}
