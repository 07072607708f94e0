//! Copies bytes both ways between a client and its instance, with correct half-close.
//!
//! Buffers are on demand: each read goes into the worker thread's one buffer and is written out
//! at once; only when the receiver is slow is the unsent rest copied to the heap, and freed when
//! sent. So an idle connection holds no buffer at all, and memory per held connection stays small.
//! End of file on one side shuts down writing on the other; the other direction goes on. A reset
//! from one side is passed on as a reset to the other (not as a plain close, which would make a
//! cut reply look whole to a client that reads until end of file).

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{ready, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Size of each worker thread's transfer buffer.
pub const BUFFER_SIZE: usize = 64 * 1024;

thread_local! {
    static BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0; BUFFER_SIZE].into_boxed_slice());
}

/// Bytes moved each way, and when anything last moved. Each counter has one writer (the
/// connection's task), so plain loads and stores suffice; atomics only make the task `Send`.
#[derive(Debug)]
pub struct Traffic {
    pub to_instance: AtomicU64,
    pub to_client: AtomicU64,
    started: Instant,
    /// Nanoseconds after `started` of the last transfer.
    last: AtomicU64,
}

impl Traffic {
    pub fn new() -> Traffic {
        let zero = || AtomicU64::new(0);
        Traffic { to_instance: zero(), to_client: zero(), started: Instant::now(), last: zero() }
    }

    fn touch(&self) {
        self.last.store(self.started.elapsed().as_nanos() as u64, Relaxed);
    }

    fn last_activity(&self) -> Instant {
        self.started + Duration::from_nanos(self.last.load(Relaxed))
    }
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic::new()
    }
}

/// How a relayed connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// Both sides closed their write side.
    Closed,
    /// No byte either way for the idle timeout.
    Idle,
    /// This side reset the connection; the other is to be reset in turn.
    Reset(Side),
}

/// One end of a relayed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Instance,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Instance => "instance",
        }
    }

    fn other(self) -> Side {
        match self {
            Side::Client => Side::Instance,
            Side::Instance => Side::Client,
        }
    }
}

/// An error of the relay, with the side whose socket it came from.
type SideError = (Side, io::Error);

/// Relays until both directions are closed, a reset, an error, or `idle` passes with no traffic.
pub async fn relay(
    client: &mut TcpStream,
    instance: &mut TcpStream,
    idle: Option<Duration>,
    traffic: &Traffic,
) -> io::Result<Ending> {
    let (client_read, client_write) = client.split();
    let (instance_read, instance_write) = instance.split();
    let watch_idle = idle.is_some();
    let to_instance = Direction { from: Side::Client, moved: &traffic.to_instance };
    let to_client = Direction { from: Side::Instance, moved: &traffic.to_client };
    let both = async {
        tokio::try_join!(
            one_way(client_read, instance_write, to_instance, watch_idle.then_some(traffic)),
            one_way(instance_read, client_write, to_client, watch_idle.then_some(traffic)),
        )
    };
    let ended = match idle {
        None => both.await.map(|_| Ending::Closed),
        Some(limit) => tokio::select! {
            result = both => result.map(|_| Ending::Closed),
            () = idle_for(limit, || traffic.last_activity()) => Ok(Ending::Idle),
        },
    };
    match ended {
        Ok(ending) => Ok(ending),
        Err((side, err)) if err.kind() == io::ErrorKind::ConnectionReset => Ok(Ending::Reset(side)),
        Err((_, err)) => Err(err),
    }
}

/// After a reset from one side, makes the other side's close a reset too.
pub fn pass_reset(ending: &io::Result<Ending>, client: &impl AsFd, instance: &impl AsFd) {
    match ending {
        Ok(Ending::Reset(Side::Instance)) => reset_on_close(client),
        Ok(Ending::Reset(Side::Client)) => reset_on_close(instance),
        _ => {}
    }
}

/// Resets `stream` when it is dropped (SO_LINGER 0: close sends a RST, not a FIN).
fn reset_on_close(stream: &impl AsFd) {
    let linger = nix::libc::linger { l_onoff: 1, l_linger: 0 };
    let _ = nix::sys::socket::setsockopt(stream, nix::sys::socket::sockopt::Linger, &linger);
}

/// Which way bytes go (from one side to the other), and their counter.
#[derive(Clone, Copy)]
struct Direction<'a> {
    from: Side,
    moved: &'a AtomicU64,
}

/// Resolves once `limit` has passed since the last traffic.
pub async fn idle_for(limit: Duration, last_activity: impl Fn() -> Instant) {
    loop {
        let deadline = last_activity() + limit;
        if deadline <= Instant::now() {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// Copies `source` to `sink` until end of file, then shuts down `sink`'s write side. Errors
/// carry the side whose socket failed.
async fn one_way(
    mut source: impl AsyncRead + Unpin,
    mut sink: impl AsyncWrite + Unpin,
    way: Direction<'_>,
    activity: Option<&Traffic>,
) -> Result<(), SideError> {
    let mut backlog: Vec<u8> = Vec::new();
    loop {
        let read = poll_fn(|cx| {
            BUFFER.with_borrow_mut(|buffer| {
                let mut read_buf = ReadBuf::new(buffer);
                ready!(Pin::new(&mut source).poll_read(cx, &mut read_buf)).map_err(|err| (way.from, err))?;
                let data = read_buf.filled();
                let sent = write_now(&mut sink, cx, data).map_err(|err| (way.from.other(), err))?;
                backlog.extend_from_slice(&data[sent..]);
                Poll::Ready(Ok::<usize, SideError>(data.len()))
            })
        })
        .await?;
        if read == 0 {
            sink.shutdown().await.map_err(|err| (way.from.other(), err))?;
            return Ok(());
        }
        way.moved.store(way.moved.load(Relaxed) + read as u64, Relaxed);
        if let Some(traffic) = activity {
            traffic.touch();
        }
        if !backlog.is_empty() {
            sink.write_all(&backlog).await.map_err(|err| (way.from.other(), err))?;
            backlog = Vec::new();
        }
    }
}

/// Writes what `sink` accepts without waiting; returns how many bytes went.
fn write_now(sink: &mut (impl AsyncWrite + Unpin), cx: &mut std::task::Context<'_>, data: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < data.len() {
        match Pin::new(&mut *sink).poll_write(cx, &data[sent..]) {
            Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => sent += n,
            Poll::Ready(Err(err)) => return Err(err),
            Poll::Pending => break,
        }
    }
    Ok(sent)
}
