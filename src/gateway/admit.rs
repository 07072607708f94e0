//! Letting a client in, before any instance is picked: when the route expects a PROXY header (a
//! load balancer in front), refuse peers that are not trusted to send one and read it from those
//! that are, then apply the per-client limits to the real address.

use super::clients::{ClientSlot, Refusal};
use super::proxy_protocol::{read_header, BadHeader};
use super::route::Route;
use super::stats::{Outcome, REFUSALS_LOG_EVERY};
use super::GatewaySettings;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncRead;

/// How long a load balancer has to send its PROXY header.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// A client let in: its real address, client bytes read past its PROXY header, and its place
/// under the per-client limits (held for the connection's life).
pub struct Admitted {
    /// The client: the PROXY header's source when a load balancer sent one, else the peer.
    pub client: SocketAddr,
    /// The address the client connected to, from the load balancer's PROXY header (its own
    /// address and port); `None` without one (the listener's address is the destination then).
    pub destination: Option<SocketAddr>,
    /// The connection came from a peer in `trusted_proxies` that sent a PROXY header: what that
    /// load balancer says of the client (e.g. `X-Forwarded-Proto`, `X-Forwarded-Port`) is
    /// believed, not replaced.
    pub trusted_proxy: bool,
    pub rest: Vec<u8>,
    _slot: ClientSlot,
}

impl Admitted {
    /// The client and the address it connected to, when a load balancer's header said it.
    pub fn addrs(&self) -> (SocketAddr, Option<SocketAddr>) {
        (self.client, self.destination)
    }
}

/// What a route's PROXY handling made of a connection, before the per-client limits.
struct Introduced {
    client: SocketAddr,
    destination: Option<SocketAddr>,
    rest: Vec<u8>,
}

/// Admits the client from `peer`, or counts and logs why not; `None` closes it. `reader` gives
/// what its PROXY header is read from, when the route expects one.
pub async fn admit<R: AsyncRead + Unpin>(
    reader: impl FnOnce() -> std::io::Result<R>,
    peer: SocketAddr,
    route: &Route,
    settings: &GatewaySettings,
) -> Option<Admitted> {
    let introduced = match route.policy.accept_proxy {
        false => Introduced { client: peer, destination: None, rest: Vec::new() },
        true => through_proxy(reader, peer, route).await?,
    };
    let Introduced { client, destination, rest } = introduced;
    match route.clients.admit(client.ip(), Instant::now()) {
        Ok(slot) => Some(Admitted { client, destination, trusted_proxy: route.policy.accept_proxy, rest, _slot: slot }),
        Err(refusal) => {
            route.stats.count(Outcome::T429);
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

/// Reads the PROXY header of a trusted load balancer; refuses (P403) a peer not in
/// `trusted_proxies` before reading anything, and (P400) a trusted one without a valid header.
async fn through_proxy<R: AsyncRead + Unpin>(
    reader: impl FnOnce() -> std::io::Result<R>,
    peer: SocketAddr,
    route: &Route,
) -> Option<Introduced> {
    if !route.policy.trusts(peer.ip()) {
        let refused = route.stats.count(Outcome::P403);
        if refused.is_multiple_of(REFUSALS_LOG_EVERY) {
            tracing::warn!(
                "P403 untrusted peer {peer} on the {} route: not in trusted_proxies; closed ({} so far)",
                route.type_name,
                refused + 1
            );
        }
        return None;
    }
    let header = match reader() {
        Ok(mut reader) => read_header(&mut reader, PROXY_HEADER_TIMEOUT).await,
        Err(err) => Err(BadHeader::Invalid(err.to_string())),
    };
    match header {
        Ok(received) => Some(Introduced {
            client: received.source.unwrap_or(peer),
            destination: received.destination,
            rest: received.rest,
        }),
        Err(err) => {
            route.stats.count(Outcome::P400);
            tracing::warn!("P400 bad PROXY header from {peer} on the {} route: {err}; closed", route.type_name);
            None
        }
    }
}
