//! The PROXY protocol (HAProxy's, v1 text and v2 binary), with the `proxy-header` crate: written
//! to instances before any client byte so an app learns the real client address, and read from
//! clients when procgate itself sits behind a load balancer.

use proxy_header::{ParseConfig, ProxiedAddress, ProxyHeader};
use serde::Deserialize;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The most bytes a client's header may take (v1 is at most 107; v2 with a few TLVs fits).
const MAX_HEADER: usize = 4096;

/// The most bytes a v1 header may take, its CRLF included (the spec's limit).
const MAX_V1: usize = 107;

/// The version written to a type's instances (`proxy_protocol` in procgate.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyVersion {
    V1,
    V2,
    Off,
}

impl ProxyVersion {
    /// `v1`/`v2`, as instances get it in `PROXY_PROTOCOL`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyVersion::V1 => "v1",
            ProxyVersion::V2 => "v2",
            ProxyVersion::Off => "off",
        }
    }
}

/// The header telling an instance that `client` connected to `gateway`. A header's two
/// addresses share a family: when they differ (an IPv6 client on an IPv4 listener), v2 gives the
/// IPv4 one in its IPv4-mapped IPv6 form, and v1, whose line cannot mix them, says `UNKNOWN`.
pub fn header(version: ProxyVersion, client: SocketAddr, gateway: SocketAddr) -> Vec<u8> {
    let (client, gateway) = match (client, gateway) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) | (SocketAddr::V6(_), SocketAddr::V6(_)) => (client, gateway),
        _ if version == ProxyVersion::V1 => return local_header(version),
        _ => (mapped(client), mapped(gateway)),
    };
    let header = ProxyHeader::with_address(ProxiedAddress::stream(client, gateway));
    let mut bytes = Vec::with_capacity(64);
    let encoded = match version {
        ProxyVersion::V1 => header.encode_v1(&mut bytes),
        ProxyVersion::V2 | ProxyVersion::Off => header.encode_v2(&mut bytes),
    };
    // Both versions encode a TCP pair of one family; only TLVs or UDP could fail, and there are none.
    match encoded {
        Ok(()) => bytes,
        Err(_) => local_header(version),
    }
}

/// `addr` as IPv6: an IPv4 address in its IPv4-mapped form (`::ffff:a.b.c.d`).
fn mapped(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        SocketAddr::V6(_) => addr,
    }
}

/// The `LOCAL` header of health checks: "this connection is procgate's own, not a client's".
pub fn local_header(version: ProxyVersion) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(16);
    let encoded = match version {
        ProxyVersion::V1 => ProxyHeader::with_local().encode_v1(&mut bytes),
        ProxyVersion::V2 | ProxyVersion::Off => ProxyHeader::with_local().encode_v2(&mut bytes),
    };
    encoded.expect("a LOCAL header always encodes");
    bytes
}

/// Why a client's PROXY header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadHeader {
    #[error("no PROXY header within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Invalid(String),
}

/// What a load balancer's PROXY header said, and the client bytes read past it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The client address it names (`None` for a `LOCAL` header, e.g. the balancer's own check).
    pub source: Option<SocketAddr>,
    /// Client data that arrived with the header: to be passed on before anything else.
    pub rest: Vec<u8>,
}

/// Reads the PROXY header a load balancer sends first, within `timeout`.
pub async fn read_header(stream: &mut TcpStream, timeout: Duration) -> Result<Received, BadHeader> {
    let attempt = async {
        let mut buffer = Vec::with_capacity(256);
        loop {
            let read = stream.read_buf(&mut buffer).await.map_err(|e| BadHeader::Invalid(e.to_string()))?;
            if read == 0 {
                return Err(BadHeader::Invalid("closed before a complete PROXY header".into()));
            }
            if let Some(received) = parse_header(&buffer)? {
                return Ok(received);
            }
        }
    };
    tokio::time::timeout(timeout, attempt).await.unwrap_or(Err(BadHeader::Timeout(timeout)))
}

/// What the bytes a client sent so far make of its PROXY header: `None` while it is incomplete.
pub fn parse_header(buffer: &[u8]) -> Result<Option<Received>, BadHeader> {
    // `proxy-header` takes a v1 `UNKNOWN` line longer than the limit when it comes in one read,
    // and refuses it when it comes in several: it only ever sees the limit's worth.
    let v1 = buffer.first() == Some(&b'P');
    let seen = if v1 { &buffer[..buffer.len().min(MAX_V1)] } else { buffer };
    match ProxyHeader::parse(seen, ParseConfig { include_tlvs: false, ..ParseConfig::default() }) {
        Ok((header, used)) => {
            let source = header.proxied_address().map(|a| a.source);
            Ok(Some(Received { source, rest: buffer[used..].to_vec() }))
        }
        Err(proxy_header::Error::BufferTooShort) if buffer.len() < MAX_HEADER => Ok(None),
        Err(proxy_header::Error::BufferTooShort) => {
            Err(BadHeader::Invalid(format!("no complete PROXY header in the first {MAX_HEADER} bytes")))
        }
        Err(err) => Err(BadHeader::Invalid(err.to_string())),
    }
}

/// A router client's stream: yields `prefix` (the data read with a header) before the stream's
/// own bytes, and skips the `shutdown` call once the client has closed its side: closing the
/// socket then sends the same FIN (nothing unread can turn it into a reset), one system call
/// less per connection.
pub struct Prefixed {
    prefix: Vec<u8>,
    read: usize,
    client_closed: bool,
    pub stream: TcpStream,
}

impl Prefixed {
    pub fn new(prefix: Vec<u8>, stream: TcpStream) -> Prefixed {
        Prefixed { prefix, read: 0, client_closed: false, stream }
    }
}

impl tokio::io::AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.read < self.prefix.len() {
            let take = (self.prefix.len() - self.read).min(buf.remaining());
            let start = self.read;
            buf.put_slice(&self.prefix[start..start + take]);
            self.read += take;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() == before && buf.remaining() > 0 {
            self.client_closed = true;
        }
        read
    }
}

impl tokio::io::AsyncWrite for Prefixed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.client_closed {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_is_the_text_line_haproxy_writes() {
        let client: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        let gateway: SocketAddr = "127.0.0.1:20003".parse().unwrap();
        assert_eq!(header(ProxyVersion::V1, client, gateway), b"PROXY TCP4 10.1.2.3 127.0.0.1 5555 20003\r\n");
        let v2 = header(ProxyVersion::V2, client, gateway);
        assert!(v2.starts_with(b"\r\n\r\n\0\r\nQUIT\n\x21\x11"), "{v2:?}");
        assert_eq!(local_header(ProxyVersion::V1), b"PROXY UNKNOWN\r\n");
    }

    #[test]
    fn mixed_families_give_a_valid_header() {
        let (v4, v6): (SocketAddr, SocketAddr) =
            ("10.1.2.3:5555".parse().unwrap(), "[2001:db8::1]:443".parse().unwrap());
        assert_eq!(header(ProxyVersion::V1, v6, v4), b"PROXY UNKNOWN\r\n");
        assert_eq!(header(ProxyVersion::V1, v4, v6), b"PROXY UNKNOWN\r\n");
        let received = parse_header(&header(ProxyVersion::V2, v4, v6)).unwrap().unwrap();
        assert_eq!(received.source, Some("[::ffff:10.1.2.3]:5555".parse().unwrap()));
        let received = parse_header(&header(ProxyVersion::V2, v6, v4)).unwrap().unwrap();
        assert_eq!(received.source, Some(v6));
    }

    #[test]
    fn a_header_longer_than_the_cap_is_refused_by_name() {
        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff".to_vec();
        v2.resize(MAX_HEADER, 0);
        let err = parse_header(&v2).unwrap_err();
        assert_eq!(err.to_string(), "no complete PROXY header in the first 4096 bytes");
        assert_eq!(parse_header(&v2[..100]), Ok(None), "incomplete below the cap");
    }

    #[test]
    fn a_v1_line_over_107_bytes_is_refused_however_it_arrives() {
        // Was accepted in one read and refused in two.
        let long = [&b"PROXY UNKNOWN "[..], &[b'x'; 100], b"\r\nGET /"].concat();
        assert_eq!(parse_header(&long), Err(BadHeader::Invalid("invalid PROXY header".into())));
        assert_eq!(parse_header(&long[..MAX_V1]), Err(BadHeader::Invalid("invalid PROXY header".into())));
        let short = b"PROXY UNKNOWN whatever\r\nGET /";
        assert_eq!(parse_header(short), Ok(Some(Received { source: None, rest: b"GET /".to_vec() })));
    }

    #[tokio::test]
    async fn reads_the_header_and_keeps_the_data_after_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client: SocketAddr = "192.0.2.7:4242".parse().unwrap();
        for version in [ProxyVersion::V1, ProxyVersion::V2] {
            let mut sent = header(version, client, addr);
            sent.extend_from_slice(b"hello");
            let writer = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut stream = TcpStream::connect(addr).await.unwrap();
                for chunk in sent.chunks(7) {
                    stream.write_all(chunk).await.unwrap();
                    tokio::task::yield_now().await;
                }
                stream
            });
            let (mut accepted, _) = listener.accept().await.unwrap();
            let received = read_header(&mut accepted, Duration::from_secs(5)).await.unwrap();
            assert_eq!(received.source, Some(client));
            let mut prefixed = Prefixed::new(received.rest, accepted);
            let mut rest = [0u8; 5];
            prefixed.read_exact(&mut rest).await.unwrap();
            assert_eq!(&rest, b"hello", "{version:?}");
            drop(writer.await.unwrap());
        }
    }

    #[tokio::test]
    async fn garbage_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
            stream
        });
        let (mut accepted, _) = listener.accept().await.unwrap();
        assert!(matches!(read_header(&mut accepted, Duration::from_secs(5)).await, Err(BadHeader::Invalid(_))));
        drop(writer.await.unwrap());
    }
}
