//! Sockets kept outside tokio's epoll: the TCP gateway accepts clients without registering them
//! (the io_uring relay takes them as they are; the epoll relay registers them when it starts),
//! and registers one only while it must wait on it itself: for a load balancer's PROXY header,
//! or for a client that may leave while it waits for an instance.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, Interest, ReadBuf};

/// The next client on `listener` (non-blocking, not registered with tokio), and its address.
pub async fn accept(listener: &AsyncFd<TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    listener.async_io(Interest::READABLE, accept_now).await
}

fn accept_now(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    use nix::libc::{accept4, sockaddr_storage, socklen_t, SOCK_CLOEXEC, SOCK_NONBLOCK};
    use nix::sys::socket::{SockaddrLike, SockaddrStorage};
    // SAFETY: zeroed bytes are a valid sockaddr_storage.
    let mut address: sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<sockaddr_storage>() as socklen_t;
    // SAFETY: `address` and `len` are valid for writes of `len` bytes.
    let fd =
        unsafe { accept4(listener.as_raw_fd(), (&raw mut address).cast(), &mut len, SOCK_NONBLOCK | SOCK_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new socket that nothing else owns.
    let client = unsafe { TcpStream::from_raw_fd(fd) };
    // SAFETY: the kernel wrote `len` bytes of an address there.
    let address = unsafe { SockaddrStorage::from_raw((&raw const address).cast(), Some(len)) };
    let peer = match address.as_ref().map(|a| (a.as_sockaddr_in(), a.as_sockaddr_in6())) {
        Some((Some(v4), _)) => SocketAddr::V4((*v4).into()),
        Some((_, Some(v6))) => SocketAddr::V6((*v6).into()),
        _ => client.peer_addr()?,
    };
    Ok((client, peer))
}

/// Reads from a socket outside tokio's epoll, registered while the reader lives.
pub struct Reader<'a>(AsyncFd<BorrowedFd<'a>>);

impl<'a> Reader<'a> {
    pub fn new(socket: &'a TcpStream) -> io::Result<Reader<'a>> {
        watch(socket.as_fd()).map(Reader)
    }
}

/// `socket` registered with tokio, to wait until it is readable, for as long as the result lives.
pub fn watch<T: AsFd + AsRawFd>(socket: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: an `AsFd` type keeps its descriptor open and the same for as long as it lives, and
    // the AsyncFd owns it.
    unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }.map_err(io::Error::from)
}

impl AsyncRead for Reader<'_> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut ready = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match ready.try_io(|fd| nix::unistd::read(fd.as_raw_fd(), unfilled).map_err(io::Error::from)) {
                Ok(read) => {
                    buf.advance(read?);
                    return Poll::Ready(Ok(()));
                }
                Err(_would_block) => continue,
            }
        }
    }
}

/// Resolves if the client closes (then it is not held to the end of `--wait`); a client that
/// sends data first is waited for as long as it takes. Registers the socket only once polled.
pub async fn left(client: &TcpStream) {
    let Ok(socket) = watch(client.as_fd()) else {
        return std::future::pending().await;
    };
    let mut byte = [0u8; 1];
    loop {
        let Ok(mut ready) = socket.readable().await else { return std::future::pending().await };
        match ready.try_io(|_| client.peek(&mut byte)) {
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(_)) => return std::future::pending().await,
            Err(_would_block) => continue,
        }
    }
}
