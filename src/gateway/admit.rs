//! Letting a client in, before any instance is picked: read the PROXY header when the route
//! expects one (a load balancer in front), then apply the per-client limits to the real address.

use super::clients::{ClientSlot, Refusal};
use super::proxy_protocol::read_header;
use super::route::Route;
use super::GatewaySettings;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How long a load balancer has to send its PROXY header.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// A client let in: its real address, client bytes read past its PROXY header, and its place
/// under the per-client limits (held for the connection's life).
pub struct Admitted {
    pub client: SocketAddr,
    pub rest: Vec<u8>,
    _slot: ClientSlot,
}

/// Admits the client on `stream` (from `peer`), or counts and logs why not; `None` closes it.
pub async fn admit(
    stream: &mut TcpStream,
    peer: SocketAddr,
    route: &Route,
    settings: &GatewaySettings,
) -> Option<Admitted> {
    let (client, rest) = match route.policy.accept_proxy {
        false => (peer, Vec::new()),
        true => match read_header(stream, PROXY_HEADER_TIMEOUT).await {
            Ok(received) => (received.source.unwrap_or(peer), received.rest),
            Err(err) => {
                route.refused.bad_proxy_header.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("P400 bad PROXY header from {peer} on the {} route: {err}; closed", route.type_name);
                return None;
            }
        },
    };
    match route.clients.admit(client.ip(), Instant::now()) {
        Ok(slot) => Some(Admitted { client, rest, _slot: slot }),
        Err(refusal) => {
            route.refused.by_rate.fetch_add(1, Ordering::Relaxed);
            if settings.access_log {
                let why = match refusal {
                    Refusal::Rate => "over its rate of new connections",
                    Refusal::Concurrency => "at its most open connections",
                };
                tracing::info!("T429 too many connections: {client} {why} on the {} route; closed", route.type_name);
            }
            None
        }
    }
}
