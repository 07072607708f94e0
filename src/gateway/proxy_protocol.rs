//! The PROXY protocol (HAProxy's, v1 text and v2 binary), with the `proxy-header` crate: written
//! to instances before any client byte so an app learns the real client address, and read from
//! clients when procgate itself sits behind a load balancer.

use crate::proxy_version::V1_UNKNOWN;
use proxy_header::{ParseConfig, ProxiedAddress, ProxyHeader};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The version (read from procgate.toml, so the settings' type) and the `LOCAL` header of health
/// checks, part of this module's interface: the headers it writes take a version.
pub use crate::proxy_version::{local_header, ProxyVersion};

/// The most bytes a client's header may take (v1 is at most 107; v2 with a few TLVs fits).
const MAX_HEADER: usize = 4096;

/// The most bytes a v1 header may take, its CRLF included (the spec's limit).
const MAX_V1: usize = 107;

/// The header telling an instance that `client` connected to `destination` (the load balancer's
/// address from its own header, else the gateway's). Addresses of two families (an IPv6 client
/// through a load balancer's IPv4 address, or the reverse) are written as one family: an
/// IPv4-mapped IPv6 address as its IPv4, else, in v2, the IPv4 one as IPv4-mapped IPv6; v1 has no
/// such form and says `PROXY UNKNOWN` (as HAProxy does). Never fails.
pub fn header(version: ProxyVersion, client: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let pair = one_family(client, destination, version != ProxyVersion::V1);
    let mut bytes = Vec::with_capacity(64);
    let encoded = match pair {
        Some((client, destination)) => {
            let header = ProxyHeader::with_address(ProxiedAddress::stream(client, destination));
            match version {
                ProxyVersion::V1 => header.encode_v1(&mut bytes),
                ProxyVersion::V2 | ProxyVersion::Off => header.encode_v2(&mut bytes),
            }
        }
        None => Err(proxy_header::Error::AddressFamilyMismatch),
    };
    if encoded.is_err() {
        bytes.clear();
        bytes.extend_from_slice(unknown(version));
    }
    bytes
}

/// `client` and `destination` in one address family, or `None` when that takes an IPv4-mapped
/// IPv6 address and `map` is false.
fn one_family(client: SocketAddr, destination: SocketAddr, map: bool) -> Option<(SocketAddr, SocketAddr)> {
    if client.is_ipv4() == destination.is_ipv4() {
        return Some((client, destination));
    }
    let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (client_v4, destination_v4) = (canonical(client), canonical(destination));
    if client_v4.is_ipv4() == destination_v4.is_ipv4() {
        return Some((client_v4, destination_v4));
    }
    let mapped = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    map.then(|| (mapped(client), mapped(destination)))
}

/// v2's `PROXY` header with `AF_UNSPEC` (command 0x21, family 0): "use the connection's addresses".
const V2_UNSPEC: &[u8] = b"\r\n\r\n\0\r\nQUIT\n\x21\x00\x00\x00";

/// A header that names no address, for a pair no header can carry.
fn unknown(version: ProxyVersion) -> &'static [u8] {
    match version {
        ProxyVersion::V1 => V1_UNKNOWN,
        ProxyVersion::V2 | ProxyVersion::Off => V2_UNSPEC,
    }
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
    /// The address the client connected to (the load balancer's), `None` with `source`.
    pub destination: Option<SocketAddr>,
    /// Client data that arrived with the header: to be passed on before anything else.
    pub rest: Vec<u8>,
}

/// Reads the PROXY header a load balancer sends first, within `timeout`.
pub async fn read_header(stream: &mut (impl AsyncRead + Unpin), timeout: Duration) -> Result<Received, BadHeader> {
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
            let (source, destination) = match header.proxied_address() {
                Some(address) => (Some(address.source), Some(address.destination)),
                None => (None, None),
            };
            let rest = buffer.get(used..).unwrap_or_default().to_vec();
            Ok(Some(Received { source, destination, rest }))
        }
        Err(proxy_header::Error::BufferTooShort) if buffer.len() < MAX_HEADER => Ok(None),
        Err(proxy_header::Error::BufferTooShort) => {
            Err(BadHeader::Invalid(format!("no complete PROXY header in the first {MAX_HEADER} bytes")))
        }
        Err(err) => Err(BadHeader::Invalid(err.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpStream;

    #[test]
    fn v1_is_the_text_line_haproxy_writes() {
        let client: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        let gateway: SocketAddr = "127.0.0.1:20003".parse().unwrap();
        assert_eq!(header(ProxyVersion::V1, client, gateway), b"PROXY TCP4 10.1.2.3 127.0.0.1 5555 20003\r\n");
        let v2 = header(ProxyVersion::V2, client, gateway);
        assert!(v2.starts_with(b"\r\n\r\n\0\r\nQUIT\n\x21\x11"), "{v2:?}");
        assert_eq!(local_header(ProxyVersion::V1), b"PROXY UNKNOWN\r\n");
    }

    fn parsed(bytes: &[u8]) -> Option<ProxiedAddress> {
        let (header, used) = ProxyHeader::parse(bytes, ParseConfig::default()).unwrap();
        assert_eq!(used, bytes.len());
        header.proxied_address().cloned()
    }

    #[test]
    fn two_address_families_make_one_valid_header() {
        let (v6, v4): (SocketAddr, SocketAddr) =
            ("[2001:db8::1]:1234".parse().unwrap(), "127.0.0.1:20003".parse().unwrap());
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:20003".parse().unwrap();
        assert_eq!(parsed(&header(ProxyVersion::V2, v6, v4)), Some(ProxiedAddress::stream(v6, mapped)));
        assert_eq!(parsed(&header(ProxyVersion::V2, v4, v6)), Some(ProxiedAddress::stream(mapped, v6)), "the reverse");
        assert_eq!(header(ProxyVersion::V1, v6, v4), b"PROXY UNKNOWN\r\n", "v1 cannot carry the pair");
        let client: SocketAddr = "[::ffff:10.1.2.3]:5555".parse().unwrap();
        assert_eq!(header(ProxyVersion::V1, client, v4), b"PROXY TCP4 10.1.2.3 127.0.0.1 5555 20003\r\n");
        let same: SocketAddr = "[::1]:7881".parse().unwrap();
        assert_eq!(header(ProxyVersion::V1, v6, same), b"PROXY TCP6 2001:db8::1 ::1 1234 7881\r\n");
    }

    #[test]
    fn the_headers_without_addresses_are_what_the_crate_reads() {
        let mut local = Vec::new();
        ProxyHeader::with_local().encode_v2(&mut local).unwrap();
        assert_eq!(local_header(ProxyVersion::V2), local);
        assert_eq!(parsed(V2_UNSPEC), None);
        assert_eq!(parsed(V1_UNKNOWN), None);
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
        assert_eq!(
            parse_header(short),
            Ok(Some(Received { source: None, destination: None, rest: b"GET /".to_vec() }))
        );
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
            assert_eq!((received.source, received.destination), (Some(client), Some(addr)));
            let clock = crate::gateway::client_stream::ClientClock::start(&Default::default(), client, None);
            let mut prefixed = crate::gateway::client_stream::ClientStream::new(received.rest, accepted, clock);
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
