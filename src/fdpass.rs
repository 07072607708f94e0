//! Open files passed between processes: one message and its file descriptors over a Unix
//! stream socket (`SCM_RIGHTS`), as procgate's upgrade hands its listeners and its instances'
//! sockets and pipes to the new main process.
//!
//! A message is framed (its length and how many fds it carries, then its bytes) so the receiver
//! knows where it ends and whether every fd arrived. The fds ride with its first bytes; the
//! receiver gets new descriptors of the same open files (a listening socket keeps its accept
//! queue: nothing is closed on the way), opened close-on-exec like every fd Rust opens. The
//! sender's copies stay open until it drops them.

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use std::io::{Error, ErrorKind, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// The most fds one message carries (the kernel's `SCM_MAX_FD`).
pub const MAX_FDS: usize = 253;
/// The longest message: a handover's state, with room to spare.
pub const MAX_MESSAGE: usize = 64 << 20;
/// The frame before each message: its length and its number of fds, both u32 little-endian.
const HEADER: usize = 8;

/// Sends `message` with `fds` (blocking; the stream's write timeout applies).
pub fn send(stream: &UnixStream, message: &[u8], fds: &[BorrowedFd]) -> std::io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} fds in one message; at most {MAX_FDS}", fds.len()),
        ));
    }
    let length = u32::try_from(message.len()).ok().filter(|&n| n as usize <= MAX_MESSAGE).ok_or_else(|| {
        Error::new(ErrorKind::InvalidInput, format!("a message of {} bytes; at most {MAX_MESSAGE}", message.len()))
    })?;
    let mut header = [0_u8; HEADER];
    header[..4].copy_from_slice(&length.to_le_bytes());
    header[4..].copy_from_slice(&(fds.len() as u32).to_le_bytes());
    let framed: Vec<u8> = header.iter().chain(message).copied().collect();
    send_bytes(stream, &framed, fds)
}

/// Sends `bytes` unframed with `fds` (at most [`MAX_FDS`]), which ride with the first byte: for
/// a peer that reads lines (the anchor).
pub fn send_bytes(stream: &UnixStream, bytes: &[u8], fds: &[BorrowedFd]) -> std::io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &rights };
    let sent = loop {
        match sendmsg::<()>(stream.as_raw_fd(), &[IoSlice::new(bytes)], cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Err(Errno::EINTR) => continue,
            result => break result?,
        }
    };
    // The fds went with the first bytes; the rest is plain data.
    (&*stream).write_all(&bytes[sent..])
}

/// Receives one message and its fds (blocking; the stream's read timeout applies). The peer
/// closing before a message starts is `UnexpectedEof`, as is one that closes halfway.
pub fn receive(stream: &UnixStream) -> std::io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut header = [0_u8; HEADER];
    let mut fds = Vec::new();
    let mut read = 0;
    while read < HEADER {
        let n = receive_bytes(stream, &mut header[read..], &mut fds, MsgFlags::empty())?;
        if n == 0 {
            return Err(Error::new(ErrorKind::UnexpectedEof, "the peer closed the socket before a whole message"));
        }
        read += n;
    }
    let length = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let expected = u32::from_le_bytes(header[4..].try_into().expect("4 bytes")) as usize;
    if length > MAX_MESSAGE || expected > MAX_FDS {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("a message of {length} bytes and {expected} fds: not ours"),
        ));
    }
    let mut message = vec![0_u8; length];
    (&*stream).read_exact(&mut message)?;
    if fds.len() != expected {
        let got = fds.len();
        return Err(Error::new(ErrorKind::InvalidData, format!("{expected} fds sent with the message, {got} arrived")));
    }
    Ok((message, fds))
}

/// One `recvmsg` (with `flags`, e.g. `MSG_DONTWAIT`): the number of bytes read into `buffer`
/// (0: the peer closed), the fds that came with them added to `fds`, close-on-exec.
pub fn receive_bytes(
    stream: &UnixStream,
    buffer: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    flags: MsgFlags,
) -> std::io::Result<usize> {
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(buffer)];
    let message = loop {
        match recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), flags | MsgFlags::MSG_CMSG_CLOEXEC) {
            Err(Errno::EINTR) => continue,
            result => break result?,
        }
    };
    for cmsg in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            // SAFETY: the kernel just installed these descriptors for this process; nothing else owns them.
            fds.extend(received.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    Ok(message.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;

    #[test]
    fn a_listening_socket_still_accepts_after_crossing_and_its_queue_is_kept() {
        let (a, b) = UnixStream::pair().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Queued before the crossing, accepted after it.
        let mut early = TcpStream::connect(addr).unwrap();
        send(&a, b"{\"route\":\"web\"}", &[listener.as_fd()]).unwrap();
        drop(listener);
        let (message, mut fds) = receive(&b).unwrap();
        assert_eq!(message, b"{\"route\":\"web\"}");
        assert_eq!(fds.len(), 1);
        let listener = TcpListener::from(fds.pop().unwrap());
        assert_eq!(listener.local_addr().unwrap(), addr);
        let (mut accepted, _) = listener.accept().unwrap();
        early.write_all(b"ping").unwrap();
        let mut got = [0_u8; 4];
        accepted.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        let _late = TcpStream::connect(addr).unwrap();
        listener.accept().unwrap();
    }

    #[test]
    fn several_fds_arrive_in_order_close_on_exec() {
        let (a, b) = UnixStream::pair().unwrap();
        let (first_read, first_write) = nix::unistd::pipe().unwrap();
        let (second_read, second_write) = nix::unistd::pipe().unwrap();
        send(&a, b"", &[first_write.as_fd(), second_write.as_fd()]).unwrap();
        drop((first_write, second_write));
        let (message, fds) = receive(&b).unwrap();
        assert!(message.is_empty());
        for (fd, (read, text)) in fds.iter().zip([(&first_read, b"one"), (&second_read, b"two")]) {
            let flags = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
            assert_ne!(flags & nix::libc::FD_CLOEXEC, 0);
            nix::unistd::write(fd, text).unwrap();
            let mut got = [0_u8; 3];
            assert_eq!(nix::unistd::read(read.as_raw_fd(), &mut got).unwrap(), 3);
            assert_eq!(&got, text);
        }
    }

    #[test]
    fn messages_keep_their_bounds_and_their_own_fds() {
        let (a, b) = UnixStream::pair().unwrap();
        let (read, write) = nix::unistd::pipe().unwrap();
        let big = vec![7_u8; 300_000];
        let sender = std::thread::spawn(move || {
            send(&a, b"first", &[]).unwrap();
            send(&a, &big, &[read.as_fd(), write.as_fd()]).unwrap();
            send(&a, b"third", &[]).unwrap();
        });
        assert_eq!(receive(&b).unwrap().0, b"first");
        let (message, fds) = receive(&b).unwrap();
        assert_eq!((message.len(), fds.len()), (300_000, 2));
        let (message, fds) = receive(&b).unwrap();
        assert_eq!((message.as_slice(), fds.len()), (&b"third"[..], 0));
        sender.join().unwrap();
    }

    #[test]
    fn a_closed_peer_or_a_stranger_is_an_error_not_a_panic() {
        let (a, b) = UnixStream::pair().unwrap();
        (&a).write_all(b"GET / HTTP/1.1\r\n").unwrap();
        assert_eq!(receive(&b).unwrap_err().kind(), ErrorKind::InvalidData);
        drop(a);
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        assert_eq!(receive(&b).unwrap_err().kind(), ErrorKind::UnexpectedEof);
        let (a, _b) = UnixStream::pair().unwrap();
        let many: Vec<BorrowedFd> = (0..MAX_FDS + 1).map(|_| a.as_fd()).collect();
        assert_eq!(send(&a, b"", &many).unwrap_err().kind(), ErrorKind::InvalidInput);
    }
}
