//! The TCP frontend: accept a client, pick a healthy instance at the handshake, connect (retrying
//! others when one refuses), then relay bytes for the connection's whole life (sticky).

use super::admit::admit;
use super::assign::{assign, Unassigned};
use super::budget::Place;
use super::outside;
use super::proxy_protocol;
use super::pump::{self, Ending, Traffic};
use super::route::{Backend, Route};
use super::socket::{connect, ACCEPT_ERROR_PAUSE};
use super::spread::Serving;
use super::stats::Outcome;
use super::uring;
use super::wake::Active;
use super::{GatewaySettings, Share};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::unix::AsyncFd;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

/// Accepts clients on `listener` until `shutdown` flips; each client gets its own task, on this
/// thread or, when this one holds more of the route's connections, on the least loaded one.
pub async fn serve(
    listener: AsyncFd<std::net::TcpListener>,
    route: Arc<Route>,
    settings: Arc<GatewaySettings>,
    mut shutdown: watch::Receiver<bool>,
    mut share: Share,
) {
    let start = |client: std::net::TcpStream, peer: SocketAddr, share: &Share| {
        // Over the descriptor budget the client is closed at once (dropped): H11.
        match route.budget.enter(&route.type_name) {
            Some(place) => {
                let serving = share.spread.serving(share.thread);
                let counted = (place, serving, route.activity.enter());
                tokio::spawn(handle(client, peer, route.clone(), settings.clone(), counted));
            }
            None => _ = route.stats.count(Outcome::H11),
        }
    };
    loop {
        tokio::select! {
            accepted = outside::accept(&listener) => match accepted {
                Ok((client, peer)) => match share.spread.target(share.thread) {
                    here if here == share.thread => start(client, peer, &share),
                    there => {
                        if let Err((client, peer)) = share.spread.hand_over(there, (client, peer)) {
                            start(client, peer, &share);
                        }
                    }
                },
                Err(err) => {
                    tracing::warn!("accept on the {} route failed: {err}", route.type_name);
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            Some((client, peer)) = share.inbox.recv() => start(client, peer, &share),
            _ = shutdown.changed() => return,
        }
    }
}

async fn handle(
    client: std::net::TcpStream,
    peer: SocketAddr,
    route: Arc<Route>,
    settings: Arc<GatewaySettings>,
    _counted: (Place, Serving, Active),
) {
    // Admission and assignment run boxed: their state is freed before the relay, so a held
    // connection's task is only as large as the relay needs (memory per held connection).
    let Some(admitted) = Box::pin(admit(|| outside::Reader::new(&client), peer, &route, &settings)).await else {
        return;
    };
    let peer = admitted.client;
    let timeouts = &route.policy.timeouts;
    let stats = &route.stats;
    let on_ring = uring::available();
    let connect = |backend: Arc<Backend>| async move {
        let asked = Instant::now();
        let connected = match on_ring {
            true => tokio::time::timeout(timeouts.connect, uring::connect(backend.addr))
                .await
                .ok()
                .and_then(Result::ok)
                .map(Instance::Ring),
            false => connect(backend.addr, timeouts.connect).await.map(Instance::Epoll),
        };
        stats.connect.observe(asked.elapsed());
        connected
    };
    let (open, instance) = match Box::pin(assign(&route, settings.wait, connect, outside::left(&client))).await {
        Ok(assigned) => assigned,
        Err(Unassigned::NoInstance) => {
            route.stats.count(Outcome::H10);
            let wait = crate::duration::format(settings.wait);
            tracing::warn!(
                "H10 no healthy instance: no {} instance up within {wait}; closed client {peer}",
                route.type_name
            );
            return;
        }
        Err(Unassigned::Abandoned) => return,
        Err(Unassigned::BacklogFull) => {
            route.stats.count(Outcome::H11);
            let queued = route.queued();
            tracing::warn!(
                "H11 backlog too deep: every {} instance at its cap, {queued} waiting; closed client {peer}",
                route.type_name
            );
            return;
        }
    };
    let backend = &open.0;
    let introduced = introduction(backend.proxy_protocol, admitted.addrs(), &client, admitted.rest);
    let Ok((first, early)) = introduced else { return };
    if settings.access_log {
        tracing::info!("202 connection assigned {} from {peer}", backend.name);
    }
    let started = Instant::now();
    let traffic = Traffic::new();
    traffic.to_instance.store(early as u64, Ordering::Relaxed);
    let ending = relay(client, instance, first, timeouts.idle, &traffic).await;
    let (bytes_in, bytes_out) =
        (traffic.to_instance.load(Ordering::Relaxed), traffic.to_client.load(Ordering::Relaxed));
    route.stats.served(started.elapsed(), bytes_in, bytes_out);
    if settings.access_log || ending.as_ref().is_ok_and(|e| *e == Ending::Idle) {
        let how = match ending {
            Ok(Ending::Closed) => "closed".to_string(),
            Ok(Ending::Idle) => "closed idle".to_string(),
            Ok(Ending::Reset(side)) => format!("reset by the {} (passed on)", side.name()),
            Err(err) => format!("closed on error ({err})"),
        };
        let duration = started.elapsed().as_millis();
        tracing::info!(
            "203 {how} {} from {peer} bytes_in={bytes_in} bytes_out={bytes_out} duration={duration}ms",
            backend.name
        );
    }
}

/// A connection to an instance, made for the thread's relay.
enum Instance {
    /// Outside tokio's epoll, for the io_uring relay.
    Ring(std::net::TcpStream),
    /// Registered with tokio, for the epoll relay.
    Epoll(TcpStream),
}

/// Relays on the thread's io_uring where it has one, with epoll otherwise, `first` to the
/// instance before any client byte; a reset from one side is passed on to the other.
async fn relay(
    client: std::net::TcpStream,
    instance: Instance,
    first: Vec<u8>,
    idle: Option<std::time::Duration>,
    traffic: &Traffic,
) -> std::io::Result<Ending> {
    match instance {
        Instance::Ring(instance) => {
            let ending = uring::relay(&client, &instance, first, idle, traffic).await;
            pump::pass_reset(&ending, &client, &instance);
            ending
        }
        Instance::Epoll(mut instance) => {
            let mut client = TcpStream::from_std(client)?;
            instance.write_all(&first).await?;
            let ending = pump::relay(&mut client, &mut instance, idle, traffic).await;
            pump::pass_reset(&ending, &client, &instance);
            ending
        }
    }
}

/// The most client bytes sent along with the PROXY header in its write.
const FIRST_WRITE: usize = 4096;

/// What the instance must read before the client's bytes, to go in one write (one system call,
/// one packet): the PROXY header (real client address) when the instance expects one, with the
/// client bytes already read past a load balancer's header or already waiting in the socket.
/// Returns them and how many are the client's.
fn introduction(
    proxy_protocol: Option<proxy_protocol::ProxyVersion>,
    (client, destination): (SocketAddr, Option<SocketAddr>),
    from: &std::net::TcpStream,
    rest: Vec<u8>,
) -> std::io::Result<(Vec<u8>, usize)> {
    let Some(version) = proxy_protocol else {
        let early = rest.len();
        return Ok((rest, early));
    };
    let mut first = proxy_protocol::header(version, client, destination.map_or_else(|| from.local_addr(), Ok)?);
    let header = first.len();
    first.extend_from_slice(&rest);
    if rest.is_empty() {
        let mut waiting = [0u8; FIRST_WRITE];
        // Nothing waiting (or the client already closed) leaves it to the relay.
        if let Ok(read @ 1..) = (&mut &*from).read(&mut waiting) {
            first.extend_from_slice(&waiting[..read]);
        }
    }
    let early = first.len() - header;
    Ok((first, early))
}
