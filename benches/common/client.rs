//! The client side of both benches' loads: source-bound connections, loops to a deadline, tallies.
//!
//! What a loop exchanges on a connection (an echo, an HTTP request) is the bench's own.
//!
//! Connections come from several loopback source addresses (127.0.0.2 and up), all to the
//! proxy on 127.0.0.1: when the client closes first, each closed connection leaves a TIME_WAIT
//! on its port, and Linux reuses a loopback TIME_WAIT port only after a second; from one address
//! that caps a connect-close loop near 14,000 connections/s whatever the proxy.
//!
//! Loads run until a deadline; an exchange in progress at the deadline finishes and counts, and
//! rates divide by the time actually elapsed. A loop still waiting `STUCK_GRACE` after the
//! deadline is abandoned and counted as an error.

use nix::sys::socket::{setsockopt, sockopt};
use std::fmt::Display;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{timeout_at, Instant};

/// Concurrent client loops (or connections) of the loads that run many.
pub const CONCURRENCY: usize = 64;
/// How long after the deadline a loop may still wait for a reply before it counts as stuck.
pub const STUCK_GRACE: Duration = Duration::from_secs(1);
/// Pause after a failed exchange, so a dead proxy does not turn a loop into a busy spin.
pub const ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// Concurrent connects while opening many connections at once.
const OPEN_CONCURRENCY: usize = 64;
/// Loopback source addresses the client spreads its connections over, from 127.0.0.2.
const SOURCES: u8 = 8;

/// What a load completed and what failed.
#[derive(Debug, Default)]
pub struct Tally {
    pub completed: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Replies after which the proxy closed a kept-alive connection (`Connection: close`).
    pub closed: u64,
}

impl Tally {
    pub fn fail(&mut self, err: impl Display) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| err.to_string());
    }

    /// Counts a loop abandoned because it still waited for a `reply` `STUCK_GRACE` after the end.
    fn stuck_if(&mut self, stuck: bool, reply: &str) {
        if stuck {
            self.fail(format!("no {reply} within {STUCK_GRACE:?} after the end of the round"));
        }
    }

    fn merge(&mut self, other: Tally) {
        self.completed += other.completed;
        self.errors += other.errors;
        self.closed += other.closed;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// `3 errors, first: ...; 12 connections closed by the proxy`, or nothing.
    pub fn remark(&self) -> Option<String> {
        let mut said = Vec::new();
        if let Some(first) = &self.first_error {
            said.push(format!("{} errors, first: {first}", self.errors));
        }
        if self.closed > 0 {
            said.push(format!("{} connections closed by the proxy", self.closed));
        }
        (!said.is_empty()).then(|| said.join("; "))
    }
}

/// A load's tally over the time it took.
#[derive(Debug)]
pub struct Rate {
    pub tally: Tally,
    pub elapsed: Duration,
}

impl Rate {
    pub fn per_second(&self) -> f64 {
        self.tally.completed as f64 / self.elapsed.as_secs_f64()
    }

    /// `total` (a CPU time) per completed exchange; `None` when none completed.
    pub fn per_completed(&self, total: f64) -> Option<f64> {
        (self.tally.completed > 0).then(|| total / self.tally.completed as f64)
    }
}

/// A client loop running on its own task, with the tally and the state it fills in.
pub type LoopFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Runs `body` on each of `inputs` (a connection, a source address) as a client loop of its own
/// until `duration` is over, and sums their tallies into a rate; each loop also fills in a state
/// `X`, returned too. A loop still running `STUCK_GRACE` after the end is abandoned and counted
/// as an error (`no <reply> within ...`).
pub async fn run_loops<I, X, F>(
    inputs: impl IntoIterator<Item = I>,
    duration: Duration,
    reply: &'static str,
    body: F,
) -> (Rate, Vec<X>)
where
    I: Send + 'static,
    X: Default + Send + 'static,
    F: for<'a> Fn(I, Instant, &'a mut Tally, &'a mut X) -> LoopFuture<'a> + Copy + Send + 'static,
{
    let start = Instant::now();
    let deadline = start + duration;
    let mut loops = JoinSet::new();
    for input in inputs {
        loops.spawn(async move {
            let (mut tally, mut state) = (Tally::default(), X::default());
            let finished = timeout_at(deadline + STUCK_GRACE, body(input, deadline, &mut tally, &mut state)).await;
            tally.stuck_if(finished.is_err(), reply);
            (tally, state)
        });
    }
    let mut tally = Tally::default();
    let mut states = Vec::new();
    while let Some(joined) = loops.join_next().await {
        match joined {
            Ok((loop_tally, state)) => {
                tally.merge(loop_tally);
                states.push(state);
            }
            Err(err) => tally.fail(err),
        }
    }
    (Rate { tally, elapsed: start.elapsed() }, states)
}

/// `CONCURRENCY` loops of: connect and `exchange` once (whose result is the connection), close.
pub async fn new_connections<F, Fut, T>(addr: SocketAddr, duration: Duration, reply: &'static str, exchange: F) -> Rate
where
    F: Fn(Ipv4Addr, SocketAddr) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = io::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let sources = (0..CONCURRENCY).map(source);
    let (rate, _) = run_loops(sources, duration, reply, move |source, deadline, tally, _: &mut ()| {
        Box::pin(connect_loop(source, addr, deadline, tally, exchange))
    })
    .await;
    rate
}

async fn connect_loop<F, Fut, T>(source: Ipv4Addr, addr: SocketAddr, deadline: Instant, tally: &mut Tally, exchange: F)
where
    F: Fn(Ipv4Addr, SocketAddr) -> Fut,
    Fut: Future<Output = io::Result<T>>,
{
    while Instant::now() < deadline {
        match exchange(source, addr).await {
            Ok(_closed_on_drop) => tally.completed += 1,
            Err(err) => {
                tally.fail(err);
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
}

/// Opens `count` connections with `opener` (connect and prove it proxied), `OPEN_CONCURRENCY`
/// at a time, within `timeout`.
pub async fn open<F, Fut, T>(addr: SocketAddr, count: usize, timeout: Duration, opener: F) -> io::Result<Vec<T>>
where
    F: Fn(Ipv4Addr, SocketAddr) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = io::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let deadline = Instant::now() + timeout;
    let mut openers = JoinSet::new();
    for worker in 0..OPEN_CONCURRENCY {
        let share = count / OPEN_CONCURRENCY + usize::from(worker < count % OPEN_CONCURRENCY);
        openers.spawn(timeout_at(deadline, open_sequentially(source(worker), addr, share, opener)));
    }
    let mut all = Vec::with_capacity(count);
    while let Some(joined) = openers.join_next().await {
        let opened = joined.map_err(io::Error::other)?.map_err(|_| {
            io::Error::new(io::ErrorKind::TimedOut, format!("{count} connections not open within {timeout:?}"))
        })??;
        all.extend(opened);
    }
    Ok(all)
}

async fn open_sequentially<F, Fut, T>(source: Ipv4Addr, addr: SocketAddr, count: usize, opener: F) -> io::Result<Vec<T>>
where
    F: Fn(Ipv4Addr, SocketAddr) -> Fut,
    Fut: Future<Output = io::Result<T>>,
{
    let mut opened = Vec::with_capacity(count);
    for _ in 0..count {
        opened.push(opener(source, addr).await?);
    }
    Ok(opened)
}

/// The source address of the client loop, connection or worker `index`.
pub fn source(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (index % usize::from(SOURCES)) as u8)
}

/// Connects from `source` to `addr`, with `TCP_NODELAY`. `IP_BIND_ADDRESS_NO_PORT`: the socket
/// bound to an address gets its port at connect, per destination and with TIME_WAIT reuse,
/// rather than a port of its own at bind.
pub async fn connect(source: Ipv4Addr, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    setsockopt(&socket, sockopt::IpBindAddressNoPort, &true)?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The exchanges' latencies over many connections, and how evenly the connections were served.
#[derive(Debug)]
pub struct Fairness {
    /// Percentiles of every exchange of every connection, in microseconds.
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// Exchanges of the least served connection over those of the most served (1: even).
    pub evenness: f64,
}

impl Fairness {
    /// From each connection's exchange times; `None` when none completed.
    pub fn of(per_connection: Vec<Vec<Duration>>) -> Option<Fairness> {
        let fewest = per_connection.iter().map(Vec::len).min()?;
        let most = per_connection.iter().map(Vec::len).max()?;
        let mut all: Vec<Duration> = per_connection.into_iter().flatten().collect();
        all.sort_unstable();
        let last = all.len().checked_sub(1)?;
        let at = |per_mille: usize| all[last * per_mille / 1000].as_secs_f64() * 1e6;
        Some(Fairness { p50_us: at(500), p99_us: at(990), p999_us: at(999), evenness: fewest as f64 / most as f64 })
    }
}
