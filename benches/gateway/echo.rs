//! The gateway bench's backends: the bench binary as an echo server (procgate's `tcp` instances).
//!
//! Started with `GATEWAY_BENCH_ECHO=1`, it echoes every byte back on each connection, unless the
//! connection's first message asks for a one-way stream: [`UPLOAD`] (read and count until the
//! client's end, then answer the count) or [`DOWNLOAD`] (write until the client closes). The
//! listening and accepting are in common/backend.rs. With `PROXY_PROTOCOL=v2` in its environment
//! (procgate's `proxy_protocol = "v2"`), it first reads and discards the PROXY v2 header that
//! starts each connection (a `LOCAL` one on procgate's health checks).

use crate::common::backend::Backends;
use std::io;
use std::sync::LazyLock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The echo backends, procgate's `tcp` instances.
pub const BACKENDS: Backends =
    Backends { kind: "tcp", env: "GATEWAY_BENCH_ECHO", server: "echo backend", what: "echo backends", part: "gateway" };
/// Bytes of a client's first message: a small echo message, or one of the stream requests.
pub const FIRST_MESSAGE: usize = 16;
/// First message of an upload: the backend reads until the client's end of the stream, then
/// answers the bytes it read (8, big-endian) and closes.
pub const UPLOAD: [u8; FIRST_MESSAGE] = *b"procgate-upload!";
/// First message of a download: the backend writes [`STREAM_CHUNK`]s until the client closes.
pub const DOWNLOAD: [u8; FIRST_MESSAGE] = *b"procgate-dnload!";
/// Bytes of each read or write of the one-way streams.
pub const STREAM_CHUNK: usize = 64 * 1024;
/// The first bytes of every PROXY v2 header.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Bytes of a v2 header before its addresses: signature, version and command, family and
/// protocol, and the big-endian length of the rest.
const V2_FIXED_PART: usize = 16;
/// The version, in the high 4 bits of the byte after the signature.
const V2_VERSION: u8 = 2;
/// Bytes of the rest of a header discarded per read (IPv4 addresses take 12, IPv6 36).
const DISCARD_CHUNK: usize = 64;

/// Whether procgate writes a PROXY v2 header first on each connection (`PROXY_PROTOCOL=v2`).
static PROXY_V2: LazyLock<bool> = LazyLock::new(|| std::env::var("PROXY_PROTOCOL").is_ok_and(|v| v == "v2"));

/// After the PROXY v2 header if one is expected (a connection without a valid one, or closed
/// during it, is just closed), serves what the first message asks: an upload, a download, or
/// else the echo of everything, that message first, until the peer closes its side.
pub async fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    if *PROXY_V2 && skip_proxy_v2(&mut stream).await.is_err() {
        return;
    }
    let mut first = [0_u8; FIRST_MESSAGE];
    if stream.read_exact(&mut first).await.is_err() {
        return;
    }
    let _ = match first {
        UPLOAD => count_upload(&mut stream).await,
        DOWNLOAD => stream_download(&mut stream).await,
        _ => echo_all(&mut stream, &first).await,
    };
}

async fn echo_all(stream: &mut TcpStream, first: &[u8]) -> io::Result<()> {
    stream.write_all(first).await?;
    let (mut reader, mut writer) = stream.split();
    tokio::io::copy(&mut reader, &mut writer).await.map(drop)
}

async fn count_upload(stream: &mut TcpStream) -> io::Result<()> {
    let mut buffer = vec![0_u8; STREAM_CHUNK];
    let mut received = 0_u64;
    loop {
        match stream.read(&mut buffer).await? {
            0 => return stream.write_all(&received.to_be_bytes()).await,
            n => received += n as u64,
        }
    }
}

async fn stream_download(stream: &mut TcpStream) -> io::Result<()> {
    let chunk = vec![0x5A_u8; STREAM_CHUNK];
    loop {
        stream.write_all(&chunk).await?;
    }
}

/// Reads a PROXY v2 header, exactly, and nothing of what follows.
async fn skip_proxy_v2(stream: &mut TcpStream) -> io::Result<()> {
    let mut fixed = [0_u8; V2_FIXED_PART];
    stream.read_exact(&mut fixed).await?;
    let [signature @ .., version_command, _family_protocol, length_high, length_low] = fixed;
    if signature != V2_SIGNATURE || version_command >> 4 != V2_VERSION {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a PROXY v2 header"));
    }
    let mut left = usize::from(u16::from_be_bytes([length_high, length_low]));
    let mut discarded = [0_u8; DISCARD_CHUNK];
    while left > 0 {
        let chunk = left.min(DISCARD_CHUNK);
        stream.read_exact(&mut discarded[..chunk]).await?;
        left -= chunk;
    }
    Ok(())
}
