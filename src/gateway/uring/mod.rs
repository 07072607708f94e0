//! The TCP relay on io_uring: each data-plane thread has one ring. A connection's two directions
//! each have one operation in flight, a receive or a send: a receive takes a buffer from the
//! thread's pools only when its bytes arrive (an idle connection holds none), and its bytes are
//! sent on from that buffer (or from a copy, when the pool runs low). The thread submits every
//! connection's next operations and collects their results together, a few system calls per
//! turn of the thread for all its connections, where the epoll relay (`pump`) makes a read and
//! a write per message. Used where the kernel offers it (`--relay`); `pump` otherwise.

use super::pump::{idle_for, Ending, Side, Traffic};
use super::Relay;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use nix::libc::{ECANCELED, ENOBUFS};
use nix::sys::eventfd::EfdFlags;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::task::{Poll, Waker};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

mod connect;
mod pool;
mod slots;

pub use connect::connect;
use connect::Connecting;
use pool::Pool;
use slots::Slots;

/// Submission queue size (the completion queue is twice as large).
const ENTRIES: u32 = 2048;
/// Each thread's two pools: small buffers for messages (at most 1,024 of 4 KiB), large ones
/// for a direction whose last receive filled a small one (at most 64 of 64 KiB).
const SMALL: usize = 0;
const LARGE: usize = 1;
const POOLS: Pools = [(4 * 1024, 1024), (64 * 1024, 64)];

/// Each pool's buffer size and most buffers.
type Pools = [(usize, u16); 2];

/// What an operation is, in the low bits of its user data: its kind, then its way (the link's
/// or the connect's slot above them).
const RECEIVE: u64 = 0;
const SEND: u64 = 2;
const CANCEL: u64 = 4;
const CONNECT: u64 = 6;
const KIND_BITS: u64 = 3;

/// `IORING_ENTER_GETEVENTS`.
const GETEVENTS: u32 = io_uring::EnterFlags::GETEVENTS.bits();
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
    match Engine::new(POOLS) {
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
    start_with(POOLS)
}

fn start_with(pools: Pools) -> io::Result<()> {
    let engine = Engine::new(pools)?;
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
        let mut ready = match signal.readable().await {
            Ok(ready) => ready,
            Err(err) => {
                tracing::error!(
                    "a gateway thread's io_uring can no longer be waited on ({err}): its connections stall"
                );
                return;
            }
        };
        // Cleared first: a signal during the turn wakes this task again.
        ready.clear_ready();
        with_engine(|engine| engine.turn());
    }
}

fn with_engine<T>(f: impl FnOnce(&mut Engine) -> T) -> T {
    ENGINE.with_borrow_mut(|engine| f(engine.as_mut().expect("the relay runs on a thread with a ring")))
}

/// Relays between `client` and `instance`, `first` to the instance before any client byte, until
/// both directions closed, a reset, an error, or `idle` passes with no byte either way; the
/// sockets must not be registered with tokio.
pub async fn relay(
    client: &TcpStream,
    instance: &TcpStream,
    first: Vec<u8>,
    idle: Option<Duration>,
    traffic: &Traffic,
) -> io::Result<Ending> {
    let fds = [client.as_raw_fd(), instance.as_raw_fd()];
    let slot = with_engine(|engine| engine.open(fds, first, idle.is_some()));
    let mut opened = Opened(Some(slot));
    let done = std::future::poll_fn(|cx| with_engine(|engine| engine.poll_end(slot, cx.waker())));
    tokio::pin!(done);
    let ending = match idle {
        None => done.await,
        Some(limit) => {
            let last_activity = || with_engine(|engine| engine.link(slot).last.unwrap_or_else(Instant::now));
            tokio::select! {
                ending = &mut done => ending,
                () = idle_for(limit, last_activity) => {
                    with_engine(|engine| engine.end(slot, Ok(Ending::Idle)));
                    done.await
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

/// Where the bytes of a send are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// In a pool's buffer.
    Lent { pool: usize, buffer: u16 },
    /// In the link's copy for this direction (the pool was running low).
    Copied,
}

/// One direction of a link: from `fds[way]` to `fds[1 - way]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// A receive into a buffer of this pool is in flight.
    Receiving(usize),
    /// The send of bytes `sent..len` of what a receive got is in flight; `full`: the receive
    /// filled its buffer.
    Sending { from: Source, sent: u32, len: u32, full: bool },
    /// Waits for a buffer to come back.
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
    /// Each direction's bytes being sent, when copied out of the pool.
    copies: [Option<Box<[u8]>>; 2],
    /// When bytes last came either way, kept only when the relay watches for an idle timeout.
    last: Option<Instant>,
    /// Its relay is gone: the slot is freed once no operation is in flight.
    abandoned: bool,
}

struct Engine {
    /// Declared before the pools, so the ring (and its use of their memory) ends first.
    ring: IoUring,
    pools: [Pool; 2],
    links: Slots<Link>,
    connects: Slots<Connecting>,
    /// Directions waiting for a buffer, in order.
    starved: VecDeque<(usize, usize)>,
}

impl Engine {
    fn new(sizes: Pools) -> io::Result<Engine> {
        let ring = IoUring::builder()
            .setup_cqsize(ENTRIES * 2)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .build(ENTRIES)?;
        let pool = |group: usize| Pool::new(&ring, group as u16, sizes[group].0, sizes[group].1);
        let pools = [pool(SMALL)?, pool(LARGE)?];
        Ok(Engine { ring, pools, links: Slots::new(), connects: Slots::new(), starved: VecDeque::new() })
    }

    fn link(&mut self, slot: usize) -> &mut Link {
        self.links.get_mut(slot).expect("an open link")
    }

    fn open(&mut self, fds: [RawFd; 2], first: Vec<u8>, watch_idle: bool) -> usize {
        let link = Link {
            fds,
            ways: [Way::Receiving(SMALL); 2],
            ops: 0,
            ending: None,
            waker: None,
            moved: [0; 2],
            copies: [None, None],
            last: watch_idle.then(Instant::now),
            abandoned: false,
        };
        let slot = self.links.insert(link);
        if first.is_empty() {
            self.receive(slot, 0, SMALL, false);
        } else {
            let len = first.len() as u32;
            self.link(slot).copies[0] = Some(first.into_boxed_slice());
            self.send(slot, 0, Way::Sending { from: Source::Copied, sent: 0, len, full: false });
        }
        self.receive(slot, 1, SMALL, false);
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
        let link = self.links.remove(slot).expect("an open link");
        link.moved
    }

    fn abandon(&mut self, slot: usize) {
        let Some(link) = self.links.get_mut(slot) else { return };
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

    /// Receives into a buffer of `pool`; `wait_first`: waits for data rather than trying at once
    /// (`IORING_RECVSEND_POLL_FIRST`), when the last receive emptied the socket.
    fn receive(&mut self, slot: usize, way: usize, pool: usize, wait_first: bool) {
        let buffers = &self.pools[pool];
        let link = self.links.get_mut(slot).expect("an open link");
        let entry = opcode::Recv::new(types::Fd(link.fds[way]), std::ptr::null_mut(), buffers.size as u32)
            .buf_group(buffers.group)
            .ioprio(if wait_first { RECVSEND_POLL_FIRST } else { 0 })
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(user_data(slot, RECEIVE, way));
        link.ways[way] = Way::Receiving(pool);
        link.ops += 1;
        self.push(entry);
    }

    /// Sends a direction's bytes `sent..len` on (MSG_WAITALL: the ring sends them all unless
    /// the socket fails, but may still complete a part, whose rest is sent again).
    fn send(&mut self, slot: usize, way: usize, sending: Way) {
        let Way::Sending { from, sent, len, .. } = sending else { unreachable!("a send") };
        let link = self.links.get_mut(slot).expect("an open link");
        let start = match from {
            Source::Lent { pool, buffer } => self.pools[pool].address(buffer),
            Source::Copied => link.copies[way].as_ref().expect("a copy").as_ptr(),
        };
        link.ways[way] = sending;
        link.ops += 1;
        let send = opcode::Send::new(types::Fd(link.fds[1 - way]), start.wrapping_add(sent as usize), len - sent)
            .flags(nix::libc::MSG_NOSIGNAL | nix::libc::MSG_WAITALL)
            .build()
            .user_data(user_data(slot, SEND, way));
        self.push(send);
    }

    /// Sends what a receive got: from its buffer, or from a copy when the pool runs low.
    fn send_received(&mut self, slot: usize, way: usize, pool: usize, buffer: u16, len: u32) {
        let full = len as usize == self.pools[pool].size;
        let from = if self.pools[pool].running_low() {
            let copy = Box::from(self.pools[pool].bytes(buffer, len as usize));
            self.link(slot).copies[way] = Some(copy);
            self.give_back(pool, buffer);
            Source::Copied
        } else {
            Source::Lent { pool, buffer }
        };
        self.send(slot, way, Way::Sending { from, sent: 0, len, full });
    }

    fn push(&mut self, entry: squeue::Entry) {
        // SAFETY: the buffers and descriptors an entry names outlive its operation: buffers are
        // the pools', dropped after the ring; descriptors are the relay's, which waits for its
        // operations to end, or when dropped early has them cancelled before the slot is reused.
        while unsafe { self.ring.submission().push(&entry) }.is_err() {
            self.submit();
        }
    }

    /// Submits what is queued and runs the ring's pending work, in one enter. It always asks for
    /// completions (as liburing's `io_uring_submit_and_get_events`): with DEFER_TASKRUN only such
    /// an enter runs the work, including the work its own submissions made (a loopback connect's
    /// handshake completes within it).
    fn submit(&mut self) {
        let queued = self.ring.submission().len() as u32;
        // SAFETY: no argument is passed; what is queued is valid (see `push`).
        let entered = unsafe { self.ring.submitter().enter::<nix::libc::sigset_t>(queued, 0, GETEVENTS, None) };
        if let Err(err) = entered {
            if err.raw_os_error() != Some(nix::libc::EBUSY) {
                tracing::warn!("io_uring submit failed: {err}");
            }
        }
    }

    /// Submits what is queued and runs the ring's pending work (DEFER_TASKRUN: only an enter
    /// asking for completions runs it, a few items at a time), handles every completion, and
    /// again while the ring has anything to do. The ring does not signal its eventfd meanwhile;
    /// work that came just before it signals again is run after.
    fn turn(&mut self) {
        self.ring.completion().disable_eventfd();
        self.until_quiet();
        self.ring.completion().enable_eventfd();
        // The kernel sets the flag before it looks whether the eventfd is off.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.ring.submission().taskrun() {
            self.until_quiet();
        }
    }

    /// Enters the ring and handles its completions while anything is queued or work is
    /// pending. IORING_SQ_TASKRUN says work may be pending, but neither it nor an enter's
    /// completions are sure: the flag can be stale (set by work an enter already ran, and no
    /// enter clears it until new work runs), and an enter can bring no completion while work
    /// is still pending (the next one brings some). After an enter that brought none, the
    /// ring's own readiness (`poll`) says whether work is really pending.
    fn until_quiet(&mut self) {
        let mut fruitless = false;
        loop {
            let mut completions = 0;
            // One at a time: handling a completion may submit, and so post more of them.
            loop {
                let Some(done) = self.ring.completion().next() else { break };
                self.completed(done.user_data(), done.result(), done.flags());
                completions += 1;
            }
            fruitless = fruitless && completions == 0;
            let queue = self.ring.submission();
            let (queued, flagged) = (!queue.is_empty(), queue.taskrun());
            drop(queue);
            if !queued && (!flagged || (fruitless && !self.work_pending())) {
                return;
            }
            self.submit();
            fruitless = true;
        }
    }

    /// Whether the ring has work to run (or completions): its descriptor polls readable then.
    fn work_pending(&self) -> bool {
        let mut fds = [nix::poll::PollFd::new(self.ring.as_fd(), nix::poll::PollFlags::POLLIN)];
        loop {
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO) {
                Ok(ready) => return ready > 0,
                Err(nix::errno::Errno::EINTR) => continue,
                // Not known (never seen): the next signal of the eventfd runs the work.
                Err(_) => return false,
            }
        }
    }

    fn completed(&mut self, data: u64, result: i32, flags: u32) {
        let kind = data & 0b110;
        let (slot, way) = ((data >> KIND_BITS) as usize, (data & 1) as usize);
        match kind {
            CANCEL => return,
            CONNECT => return self.connected(slot, result),
            _ => {}
        }
        let Some(link) = self.links.get_mut(slot) else { return };
        link.ops -= 1;
        let ended = link.ending.is_some();
        let errno = -result;
        if kind == SEND {
            let Way::Sending { from, sent, len, full } = link.ways[way] else { unreachable!("a send in flight") };
            let sent = sent + result.max(0) as u32;
            if result >= 0 && sent < len && !ended {
                self.send(slot, way, Way::Sending { from, sent, len, full });
            } else {
                match from {
                    Source::Lent { pool, buffer } => self.give_back(pool, buffer),
                    Source::Copied => link.copies[way] = None,
                }
                if ended || errno == ECANCELED {
                } else if result < 0 {
                    self.finish(slot, failed(Side::of(1 - way), errno));
                } else {
                    // A receive that came full is followed by one into a large buffer, at once;
                    // one that emptied the socket by one into a small buffer, once data comes.
                    self.receive(slot, way, if full { LARGE } else { SMALL }, !full);
                }
            }
        } else {
            let Way::Receiving(pool) = link.ways[way] else { unreachable!("a receive in flight") };
            let buffer = cqueue::buffer_select(flags);
            if buffer.is_some() {
                self.pools[pool].taken();
            }
            if let (Some(buffer), true) = (buffer, result > 0 && !ended) {
                link.moved[way] += result as u64;
                if let Some(last) = &mut link.last {
                    *last = Instant::now();
                }
                self.send_received(slot, way, pool, buffer, result as u32);
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
    /// directions have, and the last end of file goes on with the sockets' close.
    fn end_of_file(&mut self, slot: usize, way: usize) {
        let link = self.link(slot);
        link.ways[way] = Way::Done;
        if link.ways[1 - way] == Way::Done {
            self.finish(slot, Ok(Ending::Closed));
        } else {
            let _ = nix::sys::socket::shutdown(link.fds[1 - way], nix::sys::socket::Shutdown::Write);
        }
    }

    /// A receive found its pool empty: a large one falls back to a small buffer; the small pool
    /// grows, and at its largest the direction waits for the next buffer to come back.
    fn out_of_buffers(&mut self, slot: usize, way: usize, pool: usize) {
        if pool == LARGE || self.pools[SMALL].grow() {
            self.receive(slot, way, SMALL, false);
        } else {
            self.link(slot).ways[way] = Way::Starved;
            self.starved.push_back((slot, way));
        }
    }

    /// Lends a buffer to the kernel again, and receives with it for the first direction waiting
    /// for one.
    fn give_back(&mut self, pool: usize, buffer: u16) {
        self.pools[pool].give_back(buffer);
        while let Some((slot, way)) = self.starved.pop_front() {
            let waiting = self.links.get(slot).is_some_and(|l| l.ending.is_none() && l.ways[way] == Way::Starved);
            if waiting {
                self.receive(slot, way, pool, false);
                break;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener};

    /// Byte `i` of what client `n` sends.
    fn byte(n: usize, i: usize) -> u8 {
        ((i + n) % 251) as u8
    }

    /// Two connected sockets: the outside end, and procgate's end (non-blocking, as the
    /// gateway's are).
    fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let outside = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (inside, _) = listener.accept().unwrap();
        inside.set_nonblocking(true).unwrap();
        outside.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        (outside, inside)
    }

    /// True (and says the test is skipped) where the kernel does not allow io_uring.
    fn no_io_uring() -> bool {
        let unavailable = Engine::new(POOLS).is_err();
        if unavailable {
            eprintln!("skipped: needs io_uring");
        }
        unavailable
    }

    /// Relays each pair of procgate's ends (client, instance) on a thread of its own, with
    /// buffer `pools`; gives back each link's ending and the bytes it moved to the instance.
    fn relay_on_a_thread(
        relayed: Vec<(TcpStream, TcpStream)>,
        pools: Pools,
    ) -> std::thread::JoinHandle<Vec<(io::Result<Ending>, u64)>> {
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                start_with(pools).unwrap();
                let links: Vec<_> = relayed
                    .into_iter()
                    .map(|(client, instance)| {
                        tokio::spawn(async move {
                            let traffic = Traffic::new();
                            let ending = relay(&client, &instance, Vec::new(), None, &traffic).await;
                            (ending, traffic.to_instance.load(Ordering::Relaxed))
                        })
                    })
                    .collect();
                let mut endings = Vec::new();
                for link in links {
                    endings.push(link.await.unwrap());
                }
                endings
            })
        })
    }

    /// Bytes waiting to be read on `socket`.
    fn queued(socket: &TcpStream) -> i32 {
        let mut bytes: nix::libc::c_int = 0;
        // SAFETY: FIONREAD writes one int.
        unsafe { nix::libc::ioctl(socket.as_raw_fd(), nix::libc::FIONREAD, &mut bytes) };
        bytes
    }

    #[test]
    fn a_send_cut_short_by_a_reset_ends_its_link_with_the_reset() {
        if no_io_uring() {
            return;
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (mut client, client_side) = pair(&listener);
        let (instance, instance_side) = pair(&listener);
        // Small buffers toward the instance, which never reads: the relay's 64 KiB send (after
        // a first receive that filled a 4 KiB buffer) stops part way, then fails on the reset:
        // the ring reports the part sent (a short send), whose rest is sent again, and fails.
        nix::sys::socket::setsockopt(&instance_side, nix::sys::socket::sockopt::SndBuf, &4096).unwrap();
        nix::sys::socket::setsockopt(&instance, nix::sys::socket::sockopt::RcvBuf, &4096).unwrap();
        let relaying = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                start_with(POOLS).unwrap();
                relay(&client_side, &instance_side, Vec::new(), None, &Traffic::new()).await
            })
        });
        let writer = std::thread::spawn(move || {
            let _ = client.write_all(&[7u8; 1 << 20]);
            client
        });
        // More than the first 4 KiB arrived: the 64 KiB send is under way, and stalled.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while queued(&instance) <= 4096 {
            assert!(std::time::Instant::now() < deadline, "the relay's second send never started");
            std::thread::sleep(Duration::from_millis(1));
        }
        nix::sys::socket::setsockopt(
            &instance,
            nix::sys::socket::sockopt::Linger,
            &nix::libc::linger { l_onoff: 1, l_linger: 0 },
        )
        .unwrap();
        drop(instance);
        let ending = relaying.join().expect("the relay's thread does not panic");
        assert!(
            matches!(&ending, Ok(Ending::Reset(Side::Instance))) || ending.is_err(),
            "the reset ends the link: {ending:?}"
        );
        drop(writer.join().unwrap());
    }

    #[test]
    fn every_message_of_many_busy_links_is_relayed_up_to_the_last() {
        if no_io_uring() {
            return;
        }
        // Busy links end together, in waves: the ring's work comes in bursts, some of it made by
        // the work an enter ran; none of it may be left waiting for a signal that never comes.
        const LINKS: usize = 128;
        const WAVES: usize = 6;
        const BUSY: Duration = Duration::from_millis(200);
        const REPLY: Duration = Duration::from_secs(2);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        for wave in 0..WAVES {
            let (mut clients, mut instances, mut relayed) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..LINKS {
                let (client, client_side) = pair(&listener);
                let (instance, instance_side) = pair(&listener);
                for socket in [&client, &instance] {
                    socket.set_nonblocking(true).unwrap();
                }
                clients.push(client);
                instances.push(instance);
                relayed.push((client_side, instance_side));
            }
            let relaying = relay_on_a_thread(relayed, POOLS);
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut tasks = tokio::task::JoinSet::new();
                for instance in instances {
                    let mut instance = tokio::net::TcpStream::from_std(instance).unwrap();
                    tasks.spawn(async move {
                        let (mut reader, mut writer) = instance.split();
                        tokio::io::copy(&mut reader, &mut writer).await.unwrap();
                    });
                }
                let end = tokio::time::Instant::now() + BUSY;
                // Each client keeps its connection until every last echo came: no traffic after
                // the last burst brings the ring more work.
                let done = std::sync::Arc::new(tokio::sync::Barrier::new(LINKS));
                for (n, client) in clients.into_iter().enumerate() {
                    let mut client = tokio::net::TcpStream::from_std(client).unwrap();
                    let done = done.clone();
                    tasks.spawn(async move {
                        let mut echo = [0u8; 16];
                        let mut exchanges = 0;
                        while exchanges == 0 || tokio::time::Instant::now() < end {
                            client.write_all(&[n as u8; 16]).await.unwrap();
                            let reply = tokio::time::timeout(REPLY, client.read_exact(&mut echo)).await;
                            assert!(
                                reply.is_ok(),
                                "wave {wave}, link {n}: no echo of message {exchanges} within {REPLY:?}"
                            );
                            exchanges += 1;
                        }
                        done.wait().await;
                    });
                }
                let all = async {
                    while let Some(task) = tasks.join_next().await {
                        task.unwrap();
                    }
                };
                let ended = tokio::time::timeout(Duration::from_secs(10), all).await;
                assert!(ended.is_ok(), "wave {wave}: the links did not all end within 10 s");
            });
            let endings = relaying.join().unwrap();
            assert!(endings.iter().all(|(ending, _)| matches!(ending, Ok(Ending::Closed))), "wave {wave}");
        }
    }

    #[test]
    fn sends_stalled_by_slow_readers_never_take_every_buffer_and_all_bytes_arrive() {
        if no_io_uring() {
            return;
        }
        // 64 buffers in each pool, which cannot grow; every link's send to an instance that does
        // not read yet blocks (once the sockets' buffers are full) and holds its buffer, so 160
        // links would leave some without one for good.
        const LINKS: usize = 160;
        const SIZE: usize = 1 << 20;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut clients = Vec::new();
        let mut instances = Vec::new();
        let mut relayed = Vec::new();
        for _ in 0..LINKS {
            let (client, client_side) = pair(&listener);
            let (instance, instance_side) = pair(&listener);
            // Small buffers, but above loopback's 64 KiB segments (below them, TCP's window updates
            // would wait for its persist timer).
            nix::sys::socket::setsockopt(&instance_side, nix::sys::socket::sockopt::SndBuf, &(64 << 10)).unwrap();
            nix::sys::socket::setsockopt(&instance, nix::sys::socket::sockopt::RcvBuf, &(128 << 10)).unwrap();
            clients.push(client);
            instances.push(instance);
            relayed.push((client_side, instance_side));
        }
        let relaying = relay_on_a_thread(relayed, [(4096, 64), (64 * 1024, 64)]);
        let writers: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(n, mut client)| {
                std::thread::spawn(move || {
                    for start in (0..SIZE).step_by(64 << 10) {
                        let piece: Vec<u8> = (start..start + (64 << 10)).map(|i| byte(n, i)).collect();
                        client.write_all(&piece).unwrap();
                    }
                    client.shutdown(Shutdown::Write).unwrap();
                    client
                })
            })
            .collect();
        for (n, mut instance) in instances.into_iter().enumerate() {
            let mut received = Vec::new();
            instance.read_to_end(&mut received).unwrap();
            assert_eq!(received.len(), SIZE, "link {n}");
            assert!(received.iter().enumerate().all(|(i, &b)| b == byte(n, i)), "link {n}: in order");
        }
        for writer in writers {
            let mut client = writer.join().unwrap();
            let mut rest = Vec::new();
            assert_eq!(client.read_to_end(&mut rest).unwrap(), 0, "the instance's end of file passed on");
        }
        let endings = relaying.join().unwrap();
        assert!(endings.iter().all(|(ending, moved)| matches!(ending, Ok(Ending::Closed)) && *moved == SIZE as u64));
    }
}
