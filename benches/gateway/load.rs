//! The gateway bench's client loads over the echo backends: new connections, ping-pong, RTT, busy
//! connections, one-way streams.
//!
//! The same code for both proxies, on TCP connections to a proxy's frontend on 127.0.0.1; the
//! connections, loops and tallies are common/client.rs's.

use crate::common::client::{self, Fairness, Rate, Tally, CONCURRENCY, STUCK_GRACE};
use crate::echo::{DOWNLOAD, FIRST_MESSAGE, STREAM_CHUNK, UPLOAD};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// Bytes of each small message (new connections, ping-pong, RTT, held connections).
const MESSAGE: [u8; FIRST_MESSAGE] = *b"procgate-bench-0";
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

/// `count` persistent connections doing ping-pong with a small message, each exchange timed:
/// the round trips over every connection, and how unevenly the connections were served.
pub async fn busy(addr: SocketAddr, count: usize, duration: Duration) -> io::Result<(Rate, Option<Fairness>)> {
    let connections = open(addr, count).await?;
    let (rate, timings) =
        client::run_loops(connections, duration, REPLY, |stream, deadline, tally, timings: &mut Vec<Duration>| {
            Box::pin(timed_ping_loop(stream, deadline, tally, timings))
        })
        .await;
    Ok((rate, Fairness::of(timings)))
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

/// One connection streaming to the backend for `duration`: the bytes the backend counted, over
/// the time until its count came back (so bytes still in buffers at the end are not counted).
pub async fn upload(addr: SocketAddr, duration: Duration) -> io::Result<f64> {
    let mut stream = client::connect(client::source(0), addr).await?;
    let start = Instant::now();
    let deadline = start + duration;
    stream.write_all(&UPLOAD).await?;
    let chunk = vec![0xA5_u8; STREAM_CHUNK];
    let streamed = async {
        while Instant::now() < deadline {
            stream.write_all(&chunk).await?;
        }
        stream.shutdown().await?;
        let mut count = [0_u8; 8];
        stream.read_exact(&mut count).await?;
        io::Result::Ok(u64::from_be_bytes(count))
    };
    let received = timeout_at(deadline + STUCK_GRACE, streamed).await??;
    Ok(received as f64 / start.elapsed().as_secs_f64())
}

/// One connection the backend streams to for `duration`: bytes read per second.
pub async fn download(addr: SocketAddr, duration: Duration) -> io::Result<f64> {
    let mut stream = client::connect(client::source(0), addr).await?;
    stream.write_all(&DOWNLOAD).await?;
    let start = Instant::now();
    let deadline = start + duration;
    let mut buffer = vec![0_u8; STREAM_CHUNK];
    let mut received = 0_u64;
    while let Ok(read) = timeout_at(deadline, stream.read(&mut buffer)).await {
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
