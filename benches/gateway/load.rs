//! The client loads, the same code for both proxies: TCP connections to a proxy's frontend on
//! 127.0.0.1, whose echo backends send every byte back.
//!
//! Connections come from several loopback source addresses (127.0.0.2 and up), all to the
//! proxy on 127.0.0.1: the client closes first, so each closed connection leaves a TIME_WAIT on
//! its port, and Linux reuses a loopback TIME_WAIT port only after a second; from one address
//! that caps a connect-close loop near 14,000 connections/s whatever the proxy.
//!
//! Rate loads run until a deadline; an exchange in progress at the deadline finishes and counts,
//! and rates divide by the time actually elapsed. A loop still waiting `STUCK_GRACE` after the
//! deadline is abandoned and counted as an error.

use nix::libc;
use std::fmt::Display;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{timeout_at, Instant};

/// Bytes of each small message (new connections, ping-pong, RTT, held connections).
const MESSAGE: [u8; 16] = *b"procgate-bench-0";
/// Concurrent client loops of the new-connections and ping-pong loads.
pub const CONCURRENCY: usize = 64;
/// Bytes of each write of the bulk stream.
const BULK_CHUNK: usize = 64 * 1024;
/// How long after the deadline a loop may still wait for an echo before it counts as stuck.
const STUCK_GRACE: Duration = Duration::from_secs(1);
/// Pause after a failed exchange, so a dead proxy does not turn a loop into a busy spin.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// Concurrent connects while opening many connections at once.
const OPEN_CONCURRENCY: usize = 64;
/// Longest time to open the held connections (or the ping-pong ones).
const OPEN_TIMEOUT: Duration = Duration::from_secs(60);
/// Loopback source addresses the client spreads its connections over, from 127.0.0.2.
const SOURCES: u8 = 8;

/// What a rate load completed and what failed.
#[derive(Debug, Default)]
pub struct Tally {
    pub completed: u64,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Tally {
    fn fail(&mut self, err: impl Display) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| err.to_string());
    }

    /// Counts a loop abandoned because it still waited for an echo `STUCK_GRACE` after the end.
    fn stuck_if(&mut self, stuck: bool) {
        if stuck {
            self.fail(format!("no echo within {STUCK_GRACE:?} after the end of the round"));
        }
    }

    fn merge(&mut self, other: Tally) {
        self.completed += other.completed;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// A rate load's tally over the time it took.
#[derive(Debug)]
pub struct Rate {
    pub tally: Tally,
    pub elapsed: Duration,
}

impl Rate {
    pub fn per_second(&self) -> f64 {
        self.tally.completed as f64 / self.elapsed.as_secs_f64()
    }
}

/// Round-trip time percentiles of one connection, in microseconds.
#[derive(Debug)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
}

/// `CONCURRENCY` loops of: connect, send a message, read its echo, close.
pub async fn new_connections(addr: SocketAddr, duration: Duration) -> Rate {
    let start = Instant::now();
    let deadline = start + duration;
    let mut loops = JoinSet::new();
    for index in 0..CONCURRENCY {
        loops.spawn(async move {
            let mut tally = Tally::default();
            let source = source(index);
            let finished = timeout_at(deadline + STUCK_GRACE, connect_loop(source, addr, deadline, &mut tally)).await;
            tally.stuck_if(finished.is_err());
            tally
        });
    }
    let tally = join_tallies(loops).await;
    Rate { tally, elapsed: start.elapsed() }
}

async fn connect_loop(source: Ipv4Addr, addr: SocketAddr, deadline: Instant, tally: &mut Tally) {
    while Instant::now() < deadline {
        match connect_and_echo(source, addr).await {
            Ok(_closed_on_drop) => tally.completed += 1,
            Err(err) => {
                tally.fail(err);
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
}

/// `CONCURRENCY` persistent connections, each sending a message and waiting for its echo.
pub async fn ping_pong(addr: SocketAddr, duration: Duration) -> io::Result<Rate> {
    let connections = open(addr, CONCURRENCY).await?;
    let start = Instant::now();
    let deadline = start + duration;
    let mut loops = JoinSet::new();
    for stream in connections {
        loops.spawn(async move {
            let mut tally = Tally::default();
            let finished = timeout_at(deadline + STUCK_GRACE, ping_loop(stream, deadline, &mut tally)).await;
            tally.stuck_if(finished.is_err());
            tally
        });
    }
    let tally = join_tallies(loops).await;
    Ok(Rate { tally, elapsed: start.elapsed() })
}

async fn ping_loop(mut stream: TcpStream, deadline: Instant, tally: &mut Tally) {
    while Instant::now() < deadline {
        match echo_once(&mut stream).await {
            Ok(()) => tally.completed += 1,
            Err(err) => return tally.fail(err),
        }
    }
}

/// One connection, sequential exchanges, each timed.
pub async fn round_trips(addr: SocketAddr, duration: Duration) -> io::Result<Latency> {
    let mut stream = connect(source(0), addr).await?;
    let deadline = Instant::now() + duration;
    let mut samples = Vec::new();
    let timed = async {
        while Instant::now() < deadline {
            let sent = Instant::now();
            echo_once(&mut stream).await?;
            samples.push(sent.elapsed());
        }
        io::Result::Ok(())
    };
    timeout_at(deadline + STUCK_GRACE, timed).await??;
    samples.sort_unstable();
    let percentile = |p: usize| samples[(samples.len() - 1) * p / 100].as_secs_f64() * 1e6;
    Ok(Latency { p50_us: percentile(50), p99_us: percentile(99) })
}

/// One connection: a writer task streams chunks while this task reads the echo; bytes echoed
/// back per second.
pub async fn bulk(addr: SocketAddr, duration: Duration) -> io::Result<f64> {
    let (mut reader, mut writer) = connect(source(0), addr).await?.into_split();
    let start = Instant::now();
    let deadline = start + duration;
    // Dropping the set aborts the writer, which is usually blocked on a full socket by then.
    let mut writer_task = JoinSet::new();
    writer_task.spawn(async move {
        let chunk = vec![0xA5_u8; BULK_CHUNK];
        while writer.write_all(&chunk).await.is_ok() {}
    });
    let mut buffer = vec![0_u8; BULK_CHUNK];
    let mut received = 0_u64;
    while let Ok(read) = timeout_at(deadline, reader.read(&mut buffer)).await {
        match read? {
            0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the proxy closed the stream")),
            n => received += n as u64,
        }
    }
    Ok(received as f64 / start.elapsed().as_secs_f64())
}

/// Opens `count` connections, `OPEN_CONCURRENCY` at a time, each proven proxied by one echo.
pub async fn open(addr: SocketAddr, count: usize) -> io::Result<Vec<TcpStream>> {
    let deadline = Instant::now() + OPEN_TIMEOUT;
    let mut openers = JoinSet::new();
    for worker in 0..OPEN_CONCURRENCY {
        let share = count / OPEN_CONCURRENCY + usize::from(worker < count % OPEN_CONCURRENCY);
        openers.spawn(timeout_at(deadline, open_sequentially(source(worker), addr, share)));
    }
    let mut all = Vec::with_capacity(count);
    while let Some(joined) = openers.join_next().await {
        let opened = joined.map_err(io::Error::other)?.map_err(|_| {
            io::Error::new(io::ErrorKind::TimedOut, format!("{count} connections not open within {OPEN_TIMEOUT:?}"))
        })??;
        all.extend(opened);
    }
    Ok(all)
}

async fn open_sequentially(source: Ipv4Addr, addr: SocketAddr, count: usize) -> io::Result<Vec<TcpStream>> {
    let mut opened = Vec::with_capacity(count);
    for _ in 0..count {
        opened.push(connect_and_echo(source, addr).await?);
    }
    Ok(opened)
}

/// The source address of the client loop or worker `index`.
fn source(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (index % usize::from(SOURCES)) as u8)
}

/// Connects from `source` (its port picked by the kernel at connect time) to `addr`.
async fn connect(source: Ipv4Addr, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    choose_port_at_connect(&socket)?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sets `IP_BIND_ADDRESS_NO_PORT`: a socket bound to an address then gets its port at connect,
/// per destination and with TIME_WAIT reuse, rather than a port of its own at bind.
fn choose_port_at_connect(socket: &TcpSocket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the descriptor is the open socket `socket` owns; the option value points to a
    // c_int of the length passed, alive for the whole call.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    match result {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

async fn connect_and_echo(source: Ipv4Addr, addr: SocketAddr) -> io::Result<TcpStream> {
    let mut stream = connect(source, addr).await?;
    echo_once(&mut stream).await?;
    Ok(stream)
}

/// Sends one message and reads back exactly its echo.
async fn echo_once(stream: &mut TcpStream) -> io::Result<()> {
    stream.write_all(&MESSAGE).await?;
    let mut echoed = [0_u8; MESSAGE.len()];
    stream.read_exact(&mut echoed).await?;
    match echoed == MESSAGE {
        true => Ok(()),
        false => Err(io::Error::new(io::ErrorKind::InvalidData, "the echo differs from the message")),
    }
}

async fn join_tallies(mut loops: JoinSet<Tally>) -> Tally {
    let mut total = Tally::default();
    while let Some(joined) = loops.join_next().await {
        match joined {
            Ok(tally) => total.merge(tally),
            Err(err) => total.fail(err),
        }
    }
    total
}
