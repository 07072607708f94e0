//! The PROXY protocol (HAProxy's, v1 text and v2 binary), with the `proxy-header` crate: written
//! to instances before any client byte so an app learns the real client address, and read from
//! clients when procgate itself sits behind a load balancer.

use proxy_header::{ParseConfig, ProxiedAddress, ProxyHeader};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The most bytes a client's header may take (v1 is at most 107; v2 with a few TLVs fits).
const MAX_HEADER: usize = 4096;

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

/// The header telling an instance that `client` connected to `gateway`.
pub fn header(version: ProxyVersion, client: SocketAddr, gateway: SocketAddr) -> Vec<u8> {
    let header = ProxyHeader::with_address(ProxiedAddress::stream(client, gateway));
    let mut bytes = Vec::with_capacity(64);
    let encoded = match version {
        ProxyVersion::V1 => header.encode_v1(&mut bytes),
        ProxyVersion::V2 | ProxyVersion::Off => header.encode_v2(&mut bytes),
    };
    // Both versions encode any TCP address pair; only TLVs or UDP could fail, and there are none.
    encoded.expect("a TCP PROXY header always encodes");
    bytes
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
            match ProxyHeader::parse(&buffer, ParseConfig { include_tlvs: false, ..ParseConfig::default() }) {
                Ok((header, used)) => {
                    let source = header.proxied_address().map(|a| a.source);
                    return Ok(Received { source, rest: buffer[used..].to_vec() });
                }
                Err(proxy_header::Error::BufferTooShort) if buffer.len() < MAX_HEADER => {}
                Err(err) => return Err(BadHeader::Invalid(err.to_string())),
            }
        }
    };
    tokio::time::timeout(timeout, attempt).await.unwrap_or(Err(BadHeader::Timeout(timeout)))
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
            let clock = std::sync::Arc::new(crate::gateway::client_stream::ClientClock::new());
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
