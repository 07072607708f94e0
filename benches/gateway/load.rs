//! The gateway bench's client loads over the echo backends: new connections, ping-pong, RTT, bulk.
//!
//! The same code for both proxies, on TCP connections to a proxy's frontend on 127.0.0.1; the
//! connections, loops and tallies are common/client.rs's.

use crate::common::client::{self, Rate, Tally, CONCURRENCY, STUCK_GRACE};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{timeout_at, Instant};

/// Bytes of each small message (new connections, ping-pong, RTT, held connections).
const MESSAGE: [u8; 16] = *b"procgate-bench-0";
/// Bytes of each write of the bulk stream.
const BULK_CHUNK: usize = 64 * 1024;
/// Longest time to open the held connections (or the ping-pong ones).
const OPEN_TIMEOUT: Duration = Duration::from_secs(60);
/// What a loop waits for, in the error of a stuck one.
const REPLY: &str = "echo";

/// Round-trip time percentiles of one connection, in microseconds.
#[derive(Debug)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
}

/// `CONCURRENCY` loops of: connect, send a message, read its echo, close.
pub async fn new_connections(addr: SocketAddr, duration: Duration) -> Rate {
    client::new_connections(addr, duration, REPLY, connect_and_echo).await
}

/// `CONCURRENCY` persistent connections, each sending a message and waiting for its echo.
pub async fn ping_pong(addr: SocketAddr, duration: Duration) -> io::Result<Rate> {
    let connections = open(addr, CONCURRENCY).await?;
    let (rate, _) = client::run_loops(connections, duration, REPLY, |stream, deadline, tally, _: &mut ()| {
        Box::pin(ping_loop(stream, deadline, tally))
    })
    .await;
    Ok(rate)
}

async fn ping_loop(mut stream: TcpStream, deadline: Instant, tally: &mut Tally) {
    while Instant::now() < deadline {
        match echo_once(&mut stream).await {
            Ok(()) => tally.completed += 1,
            Err(err) => return tally.fail(err),
        }
    }
}

/// Fairness under many busy connections: each message's round trip over every connection, and
/// how unevenly the connections were served.
#[derive(Debug)]
pub struct Busy {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// Messages of the least served connection over those of the most served (1: even).
    pub evenness: f64,
}

/// `count` persistent connections doing ping-pong with a small message, each exchange timed.
pub async fn busy(addr: SocketAddr, count: usize, duration: Duration) -> io::Result<(Rate, Busy)> {
    let connections = open(addr, count).await?;
    let (rate, timings) =
        client::run_loops(connections, duration, REPLY, |stream, deadline, tally, timings: &mut Vec<Duration>| {
            Box::pin(timed_ping_loop(stream, deadline, tally, timings))
        })
        .await;
    let fewest = timings.iter().map(Vec::len).min().unwrap_or(0);
    let most = timings.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut all: Vec<Duration> = timings.into_iter().flatten().collect();
    all.sort_unstable();
    let at = |per_mille: usize| {
        all.get(all.len().saturating_sub(1) * per_mille / 1000).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    let busy = Busy { p50_us: at(500), p99_us: at(990), p999_us: at(999), evenness: fewest as f64 / most as f64 };
    Ok((rate, busy))
}

async fn timed_ping_loop(mut stream: TcpStream, deadline: Instant, tally: &mut Tally, timings: &mut Vec<Duration>) {
    while Instant::now() < deadline {
        let sent = Instant::now();
        match echo_once(&mut stream).await {
            Ok(()) => {
                tally.completed += 1;
                timings.push(sent.elapsed());
            }
            Err(err) => return tally.fail(err),
        }
    }
}

/// One connection, sequential exchanges, each timed.
pub async fn round_trips(addr: SocketAddr, duration: Duration) -> io::Result<Latency> {
    let mut stream = client::connect(client::source(0), addr).await?;
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
    let (mut reader, mut writer) = client::connect(client::source(0), addr).await?.into_split();
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

/// Opens `count` connections, each proven proxied by one echo.
pub async fn open(addr: SocketAddr, count: usize) -> io::Result<Vec<TcpStream>> {
    client::open(addr, count, OPEN_TIMEOUT, connect_and_echo).await
}

async fn connect_and_echo(source: Ipv4Addr, addr: SocketAddr) -> io::Result<TcpStream> {
    let mut stream = client::connect(source, addr).await?;
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
