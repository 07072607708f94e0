//! The TCP relay on io_uring: each data-plane thread has one ring. A connection's two directions
//! each have one operation in flight, a receive or a send: receives take a buffer from the
//! thread's pool only when their bytes arrive (an idle connection holds none), sends go out from
//! that buffer, and every connection's next operations are submitted together, one system call
//! per turn of the thread, where the epoll relay (`pump`) makes one per read and one per write.
//! Used where the kernel offers it; `pump` otherwise.

use super::pump::{Ending, Side, Traffic};
use super::Relay;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use nix::libc::{ECANCELED, ENOBUFS};
use nix::sys::eventfd::EfdFlags;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::task::{Poll, Waker};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

mod pool;

use pool::Pool;

/// Submission queue size (the completion queue is twice as large).
const ENTRIES: u32 = 2048;
/// Each thread's two pools: small buffers for messages (at most 1,024 of 4 KiB), large ones
/// for a direction whose last receive filled a small one (at most 64 of 64 KiB).
const SMALL: usize = 0;
const LARGE: usize = 1;
const POOLS: [(usize, u16); 2] = [(4 * 1024, 1024), (64 * 1024, 64)];

/// What an operation is, in the low bits of its user data: its kind, then its way (the link's
/// slot above them).
const RECEIVE: u64 = 0;
const SEND: u64 = 2;
const CANCEL: u64 = 4;
const KIND_BITS: u64 = 3;

/// `IORING_RECVSEND_POLL_FIRST`: wait for data before trying to receive.
const RECVSEND_POLL_FIRST: u16 = 1;

thread_local! {
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
}

/// Whether the data-plane threads relay with io_uring, as `relay` asks and the kernel allows,
/// and how, in words: `io_uring`, or `epoll (io_uring unavailable: ...)`. Refuses `--relay
/// io_uring` where the kernel does not allow it (old kernels, seccomp profiles that refuse it).
pub fn choose(relay: Relay) -> io::Result<(bool, String)> {
    if relay == Relay::Epoll {
        return Ok((false, "epoll".to_string()));
    }
    match Engine::new() {
        Ok(_) => Ok((true, "io_uring".to_string())),
        Err(err) if relay == Relay::Auto => Ok((false, format!("epoll (io_uring unavailable: {err})"))),
        Err(err) => Err(io::Error::other(format!(
            "--relay io_uring: this kernel does not allow io_uring ({err}); use --relay epoll or auto"
        ))),
    }
}

/// Sets up this data-plane thread's ring and its completion task (else the thread relays with
/// `pump`).
pub fn start() -> io::Result<()> {
    let engine = Engine::new()?;
    // The ring signals this eventfd when it has work for the thread (DEFER_TASKRUN: the thread
    // runs it at its next turn, in one system call with its submissions).
    let signal = nix::sys::eventfd::EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
    engine.ring.submitter().register_eventfd(signal.as_raw_fd())?;
    // SAFETY: the eventfd is owned by the AsyncFd, so it is open as long as it is registered.
    let signal = unsafe { AsyncFd::register(signal) }.map_err(io::Error::from)?;
    ENGINE.with_borrow_mut(|slot| *slot = Some(engine));
    tokio::spawn(complete_for_ever(signal));
    Ok(())
}

/// Whether this thread relays with io_uring.
pub fn available() -> bool {
    ENGINE.with_borrow(|engine| engine.is_some())
}

/// Handles completions as they come, and submits what they lead to.
async fn complete_for_ever(signal: AsyncFd<nix::sys::eventfd::EventFd>) {
    loop {
        let Ok(mut ready) = signal.readable().await else { return };
        // Cleared first: a signal during the turn wakes this task again.
        ready.clear_ready();
        with_engine(|engine| engine.turn());
    }
}

fn with_engine<T>(f: impl FnOnce(&mut Engine) -> T) -> T {
    ENGINE.with_borrow_mut(|engine| f(engine.as_mut().expect("the relay runs on a thread with a ring")))
}

/// Relays between `client` and `instance` until both directions closed, a reset, an error, or
/// `idle` passes with no byte either way; the sockets must not be registered with tokio.
pub async fn relay(
    client: &TcpStream,
    instance: &TcpStream,
    idle: Option<Duration>,
    traffic: &Traffic,
) -> io::Result<Ending> {
    let slot = with_engine(|engine| engine.open([client.as_raw_fd(), instance.as_raw_fd()]));
    let mut opened = Opened(Some(slot));
    let done = std::future::poll_fn(|cx| with_engine(|engine| engine.poll_end(slot, cx.waker())));
    tokio::pin!(done);
    let ending = loop {
        let Some(limit) = idle else { break done.await };
        let deadline = with_engine(|engine| engine.link(slot).last) + limit;
        tokio::select! {
            ending = &mut done => break ending,
            () = tokio::time::sleep_until(deadline) => {
                if with_engine(|engine| engine.link(slot).last) + limit <= Instant::now() {
                    with_engine(|engine| engine.end(slot, Ok(Ending::Idle)));
                    break done.await;
                }
            }
        }
    };
    opened.0 = None;
    let moved = with_engine(|engine| engine.close(slot));
    traffic.to_instance.fetch_add(moved[0], Ordering::Relaxed);
    traffic.to_client.fetch_add(moved[1], Ordering::Relaxed);
    ending
}

/// A link's slot while its relay runs; dropped early (the task dropped), it leaves the engine to
/// free the slot once the link's operations are cancelled.
struct Opened(Option<usize>);

impl Drop for Opened {
    fn drop(&mut self) {
        if let Some(slot) = self.0 {
            let _ = ENGINE.try_with(|engine| {
                if let Ok(mut engine) = engine.try_borrow_mut() {
                    if let Some(engine) = engine.as_mut() {
                        engine.abandon(slot);
                    }
                }
            });
        }
    }
}

/// One direction of a link: from `fds[way]` to `fds[1 - way]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// A receive into a buffer of this pool is in flight.
    Receiving(usize),
    /// The send of this buffer's first `len` bytes is in flight, and the receive into a buffer
    /// of pool `then` linked after it.
    Sending { pool: usize, buffer: u16, len: u32, then: usize },
    /// Waits for a small buffer to come back.
    Starved,
    /// End of file passed on.
    Done,
}

struct Link {
    fds: [RawFd; 2],
    ways: [Way; 2],
    /// Operations in flight (cancellations not counted).
    ops: u32,
    ending: Option<io::Result<Ending>>,
    waker: Option<Waker>,
    moved: [u64; 2],
    last: Instant,
    /// Its relay is gone: the slot is freed once no operation is in flight.
    abandoned: bool,
}

struct Engine {
    /// Declared before the pools, so the ring (and its use of their memory) ends first.
    ring: IoUring,
    pools: [Pool; 2],
    links: Vec<Option<Link>>,
    free: Vec<usize>,
    /// Directions waiting for a small buffer, in order.
    starved: VecDeque<(usize, usize)>,
}

impl Engine {
    fn new() -> io::Result<Engine> {
        let ring = IoUring::builder()
            .setup_cqsize(ENTRIES * 2)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .build(ENTRIES)?;
        let pool = |group: usize| Pool::new(&ring, group as u16, POOLS[group].0, POOLS[group].1);
        let pools = [pool(SMALL)?, pool(LARGE)?];
        Ok(Engine { ring, pools, links: Vec::new(), free: Vec::new(), starved: VecDeque::new() })
    }

    fn link(&mut self, slot: usize) -> &mut Link {
        self.links[slot].as_mut().expect("an open link")
    }

    fn open(&mut self, fds: [RawFd; 2]) -> usize {
        let link = Link {
            fds,
            ways: [Way::Receiving(SMALL); 2],
            ops: 0,
            ending: None,
            waker: None,
            moved: [0; 2],
            last: Instant::now(),
            abandoned: false,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.links[slot] = Some(link);
                slot
            }
            None => {
                self.links.push(Some(link));
                self.links.len() - 1
            }
        };
        self.receive(slot, 0, SMALL);
        self.receive(slot, 1, SMALL);
        self.turn();
        slot
    }

    fn poll_end(&mut self, slot: usize, waker: &Waker) -> Poll<io::Result<Ending>> {
        let link = self.link(slot);
        if link.ops == 0 {
            if let Some(ending) = link.ending.take() {
                return Poll::Ready(ending);
            }
        }
        if !link.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            link.waker = Some(waker.clone());
        }
        Poll::Pending
    }

    /// Frees a link whose relay ended; returns the bytes it moved each way.
    fn close(&mut self, slot: usize) -> [u64; 2] {
        let link = self.links[slot].take().expect("an open link");
        self.free.push(slot);
        link.moved
    }

    fn abandon(&mut self, slot: usize) {
        let Some(link) = self.links[slot].as_mut() else { return };
        link.abandoned = true;
        self.end(slot, Ok(Ending::Closed));
    }

    /// Ends a link from outside a turn: its cancellations are submitted at once.
    fn end(&mut self, slot: usize, ending: io::Result<Ending>) {
        self.finish(slot, ending);
        self.wake(slot);
        self.turn();
    }

    /// Ends a link with `ending` (the first one stands), cancelling what is in flight.
    fn finish(&mut self, slot: usize, ending: io::Result<Ending>) {
        let link = self.link(slot);
        if link.ending.is_some() {
            return;
        }
        link.ending = Some(ending);
        if link.ops > 0 {
            for fd in link.fds {
                let cancel = types::CancelBuilder::fd(types::Fd(fd)).all();
                self.push(opcode::AsyncCancel2::new(cancel).build().user_data(CANCEL));
            }
        }
    }

    /// Once a link has ended and nothing is in flight: wakes its relay, or frees it if the
    /// relay is gone.
    fn wake(&mut self, slot: usize) {
        let link = self.link(slot);
        if link.ops == 0 && link.ending.is_some() {
            if link.abandoned {
                self.close(slot);
            } else if let Some(waker) = link.waker.take() {
                waker.wake();
            }
        }
    }

    /// A receive into a buffer of `pool`; `wait_first`: it waits for data rather than trying at
    /// once (`IORING_RECVSEND_POLL_FIRST`), right after a send that emptied the socket.
    fn receive_entry(&self, slot: usize, way: usize, pool: usize, wait_first: bool) -> squeue::Entry {
        let link = self.links[slot].as_ref().expect("an open link");
        let buffers = &self.pools[pool];
        opcode::Recv::new(types::Fd(link.fds[way]), std::ptr::null_mut(), buffers.size as u32)
            .buf_group(buffers.group)
            .ioprio(if wait_first { RECVSEND_POLL_FIRST } else { 0 })
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(user_data(slot, RECEIVE, way))
    }

    fn receive(&mut self, slot: usize, way: usize, pool: usize) {
        let entry = self.receive_entry(slot, way, pool, false);
        let link = self.link(slot);
        link.ways[way] = Way::Receiving(pool);
        link.ops += 1;
        self.push(entry);
    }

    /// Sends a received buffer on, with the direction's next receive linked after it (it starts
    /// once the send is whole), into a large buffer if this one came full.
    fn send(&mut self, slot: usize, way: usize, pool: usize, buffer: u16, len: u32) {
        let then = if len as usize == self.pools[pool].size { LARGE } else { SMALL };
        let receive = self.receive_entry(slot, way, then, true);
        let link = self.link(slot);
        link.ways[way] = Way::Sending { pool, buffer, len, then };
        link.ops += 2;
        let fd = link.fds[1 - way];
        let send = opcode::Send::new(types::Fd(fd), self.pools[pool].address(buffer), len)
            .flags(nix::libc::MSG_NOSIGNAL | nix::libc::MSG_WAITALL)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(user_data(slot, SEND, way));
        self.push(send);
        self.push(receive);
    }

    fn push(&mut self, entry: squeue::Entry) {
        // SAFETY: the buffers and descriptors an entry names outlive its operation: buffers are
        // the pools', dropped after the ring; descriptors are the relay's, which waits for its
        // operations to end, or when dropped early has them cancelled before the slot is reused.
        while unsafe { self.ring.submission().push(&entry) }.is_err() {
            self.submit();
        }
    }

    fn submit(&mut self) {
        if let Err(err) = self.ring.submit() {
            if err.raw_os_error() != Some(nix::libc::EBUSY) {
                tracing::warn!("io_uring submit failed: {err}");
            }
        }
    }

    /// Submits, runs the ring's pending work, handles every completion, and again, until
    /// nothing more completes. The ring does not signal its eventfd meanwhile.
    fn turn(&mut self) {
        loop {
            self.ring.completion().disable_eventfd();
            loop {
                let pending = {
                    let queue = self.ring.submission();
                    !queue.is_empty() || queue.taskrun()
                };
                if pending {
                    self.submit();
                }
                let batch: Vec<(u64, i32, u32)> =
                    self.ring.completion().map(|c| (c.user_data(), c.result(), c.flags())).take(256).collect();
                if batch.is_empty() {
                    break;
                }
                for (data, result, flags) in batch {
                    self.completed(data, result, flags);
                }
            }
            self.ring.completion().enable_eventfd();
            // Work that came while the eventfd was off is run now; later work signals it.
            if !self.ring.submission().taskrun() {
                return;
            }
        }
    }

    fn completed(&mut self, data: u64, result: i32, flags: u32) {
        let kind = data & 0b110;
        if kind == CANCEL {
            return;
        }
        let (slot, way) = ((data >> KIND_BITS) as usize, (data & 1) as usize);
        let Some(link) = self.links[slot].as_mut() else { return };
        link.ops -= 1;
        let ended = link.ending.is_some();
        let errno = -result;
        if kind == SEND {
            let Way::Sending { pool, buffer, len, then } = link.ways[way] else { return };
            if result >= 0 && result as u32 == len {
                link.ways[way] = Way::Receiving(then);
            }
            self.give_back(pool, buffer);
            if ended || errno == ECANCELED {
            } else if result < 0 {
                self.finish(slot, failed(Side::of(1 - way), errno));
            } else if (result as u32) < len {
                // A short whole-message send means its socket failed (its linked receive is cancelled).
                self.finish(slot, Err(io::ErrorKind::WriteZero.into()));
            }
        } else {
            let Way::Receiving(pool) = link.ways[way] else {
                // The receive linked after a send that failed.
                self.wake(slot);
                return;
            };
            let buffer = cqueue::buffer_select(flags);
            if result > 0 && !ended {
                link.moved[way] += result as u64;
                link.last = Instant::now();
                let buffer = buffer.expect("a receive's buffer");
                self.send(slot, way, pool, buffer, result as u32);
            } else {
                if let Some(buffer) = buffer {
                    self.give_back(pool, buffer);
                }
                if ended || errno == ECANCELED {
                } else if result == 0 {
                    self.end_of_file(slot, way);
                } else if errno == ENOBUFS {
                    self.out_of_buffers(slot, way, pool);
                } else {
                    self.finish(slot, failed(Side::of(way), errno));
                }
            }
        }
        self.wake(slot);
    }

    /// Passes one side's end of file on (the other direction goes on); the link ends once both
    /// directions have.
    fn end_of_file(&mut self, slot: usize, way: usize) {
        let link = self.link(slot);
        link.ways[way] = Way::Done;
        let _ = nix::sys::socket::shutdown(link.fds[1 - way], nix::sys::socket::Shutdown::Write);
        if link.ways[1 - way] == Way::Done {
            self.finish(slot, Ok(Ending::Closed));
        }
    }

    /// A receive found its pool empty: a large one falls back to a small buffer; the small pool
    /// grows, and at its largest the direction waits for a buffer to come back.
    fn out_of_buffers(&mut self, slot: usize, way: usize, pool: usize) {
        if pool == LARGE || self.pools[SMALL].grow() {
            self.receive(slot, way, SMALL);
        } else {
            self.link(slot).ways[way] = Way::Starved;
            self.starved.push_back((slot, way));
        }
    }

    /// Lends a buffer to the kernel again; a small one goes first to a direction waiting for one.
    fn give_back(&mut self, pool: usize, buffer: u16) {
        self.pools[pool].give_back(buffer);
        if pool == SMALL {
            while let Some((slot, way)) = self.starved.pop_front() {
                let waiting =
                    self.links[slot].as_ref().is_some_and(|l| l.ending.is_none() && l.ways[way] == Way::Starved);
                if waiting {
                    self.receive(slot, way, SMALL);
                    break;
                }
            }
        }
    }
}

impl Side {
    fn of(way: usize) -> Side {
        if way == 0 {
            Side::Client
        } else {
            Side::Instance
        }
    }
}

/// How an error of `side`'s socket ends a link.
fn failed(side: Side, errno: i32) -> io::Result<Ending> {
    if errno == nix::libc::ECONNRESET {
        Ok(Ending::Reset(side))
    } else {
        Err(io::Error::from_raw_os_error(errno))
    }
}

fn user_data(slot: usize, kind: u64, way: usize) -> u64 {
    ((slot as u64) << KIND_BITS) | kind | way as u64
}
