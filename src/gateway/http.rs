//! The HTTP router for `web`, as Heroku's: HTTP/1.1 keep-alive to clients, a connection pool to
//! instances, balancing per request (least outstanding requests), the `X-Forwarded-*`,
//! `X-Request-Id` and `Via` headers, `Upgrade` (WebSocket) requests passed through and kept on
//! their instance, Heroku's error codes and its router log line.

use super::admit::admit;
use super::assign::{assign, Unassigned};
use super::budget::Place;
use super::client_stream::{ClientClock, ClientStream};
use super::header_values;
use super::pool;
use super::route::{Backend, OpenConnection, Route};
use super::socket::{ACCEPT_ERROR_PAUSE, MAX_BUFFER};
use super::stats::{Outcome, RouteStats, REFUSALS_LOG_EVERY};
use super::wake::Active;
use super::GatewaySettings;
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// Headers that concern one hop only and are not forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    KEEP_ALIVE,
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// The header that carries the router's error code on its error pages.
const CODE_HEADER: &str = "x-procgate-code";

type RouterBody = Either<Logged, Full<Bytes>>;

/// What every request of one client connection shares.
struct Client {
    peer: SocketAddr,
    route: Arc<Route>,
    settings: Arc<GatewaySettings>,
    /// The client's address (made once per connection) and the router's port (once per
    /// listener), as header values.
    address: HeaderValue,
    port: HeaderValue,
    clock: Arc<ClientClock>,
    /// Its place in the route's descriptor budget, and its count in the route's activity (a
    /// sleeping type wakes, an open one never sleeps), held as long as the connection (an
    /// upgraded one's tunnel included).
    _place: (Place, Active),
    /// It came through a trusted load balancer, whose `X-Forwarded-Proto` and `-Port` are kept.
    trusted_proxy: bool,
    /// Turns true when the gateway stops accepting (procgate stops, or hands over to an
    /// upgrade's successor): each response then closes its connection, so a keep-alive client
    /// sends its next request to the listener, never on a connection closed under it.
    stopping: watch::Receiver<bool>,
}

/// Accepts clients on `listener` until `shutdown` flips; each connection gets its own task.
pub async fn serve(
    listener: TcpListener,
    route: Arc<Route>,
    settings: Arc<GatewaySettings>,
    mut shutdown: watch::Receiver<bool>,
) {
    let port = HeaderValue::from(listener.local_addr().map_or(0, |a| a.port()));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Over the descriptor budget the client is closed at once (dropped): H11.
                    match route.budget.enter(&route.type_name) {
                        Some(place) => {
                            let place = (place, route.activity.enter());
                            let stopping = shutdown.clone();
                            tokio::spawn(connection(stream, peer, port.clone(), route.clone(), settings.clone(), place, stopping));
                        }
                        None => _ = route.stats.count(Outcome::H11),
                    }
                }
                Err(err) => {
                    tracing::warn!("accept on the {} router failed: {err}", route.type_name);
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    port: HeaderValue,
    route: Arc<Route>,
    settings: Arc<GatewaySettings>,
    place: (Place, Active),
    stopping: watch::Receiver<bool>,
) {
    let Some(mut admitted) = admit(|| Ok(&mut stream), peer, &route, &settings).await else { return };
    let clock = ClientClock::start(&route.policy.timeouts, admitted.client, Some(route.stats.clone()));
    let io = TokioIo::new(ClientStream::new(std::mem::take(&mut admitted.rest), stream, clock.clone()));
    let address = header_values::address(admitted.client.ip());
    // Behind a load balancer the port is the one its client connected to.
    let port = admitted.destination.map_or(port, |to| HeaderValue::from(to.port()));
    let trusted_proxy = admitted.trusted_proxy;
    let peer = admitted.client;
    let client =
        Client { peer, route, settings, address, port, clock: clock.clone(), _place: place, trusted_proxy, stopping };
    let client = Arc::new(client);
    // Boxed: hyper moves the service's future around, and `proxy`'s is a few kilobytes.
    let service = hyper::service::service_fn(move |request| Box::pin(proxy(request, client.clone())));
    // Boxed: hyper's connection state is large, and the task's future is moved as it is spawned.
    // Half-close: a client that ends its side after its request (`nc -N`, `curl --no-buffer` on
    // some systems) still gets its response, as through HAProxy and nginx.
    let serving = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .half_close(true)
        .max_buf_size(MAX_BUFFER)
        .serve_connection(io, service);
    if let Err(err) = Box::pin(serving.with_upgrades()).await {
        if err.is_parse() || err.is_parse_too_large() {
            bad_request_head(&clock, peer, &err);
        }
    }
    drop(admitted);
}

/// Counts a request head that did not parse (hyper answered it 400, 414 or 431), and logs one
/// in [`REFUSALS_LOG_EVERY`].
fn bad_request_head(clock: &ClientClock, peer: SocketAddr, err: &hyper::Error) {
    let before = clock.count(Outcome::B400);
    if before.is_multiple_of(REFUSALS_LOG_EVERY) {
        tracing::warn!(
            "at=error code=B400 desc=\"Bad request head\" fwd=\"{}\" reason=\"{err}\" ({} so far)",
            peer.ip(),
            before + 1
        );
    }
}

/// What the router log line tells of a request (cheap clones of the request's parts: the
/// text is only made when a line is written).
struct Line {
    method: hyper::Method,
    path: Option<hyper::http::uri::PathAndQuery>,
    host: Option<HeaderValue>,
    request_id: HeaderValue,
    fwd: std::net::IpAddr,
    dyno: Option<Arc<Backend>>,
    connect: Duration,
    started: Instant,
}

impl Line {
    fn format(&self, status: u16, bytes: u64) -> String {
        let host = self.host.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-");
        format!(
            "method={} path=\"{}\" host={host} request_id={} fwd=\"{}\" dyno={} connect={}ms service={}ms status={status} bytes={bytes} protocol=http",
            self.method,
            self.path.as_ref().map_or("/", |p| p.as_str()),
            self.request_id.to_str().unwrap_or("-"),
            self.fwd,
            self.dyno.as_ref().map_or("-", |b| b.name.as_str()),
            self.connect.as_millis(),
            self.started.elapsed().as_millis(),
        )
    }
}

/// One request: the clock counts it as served until its response is done (the `Logged` body's
/// end, or at once for the router's own short answers).
async fn proxy(request: Request<Incoming>, client: Arc<Client>) -> Result<Response<RouterBody>, Infallible> {
    client.clock.request_started();
    let mut response = forward(request, &client).await;
    if *client.stopping.borrow() && response.status() != StatusCode::SWITCHING_PROTOCOLS {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if matches!(response.body(), Either::Right(_)) {
        client.clock.request_done();
    }
    Ok(response)
}

async fn forward(mut request: Request<Incoming>, client: &Arc<Client>) -> Response<RouterBody> {
    let started = Instant::now();
    if request.uri().authority().is_some() {
        host_from_target(&mut request);
    }
    let mut line = Line {
        method: request.method().clone(),
        path: request.uri().path_and_query().cloned(),
        host: request.headers().get(header::HOST).cloned(),
        request_id: request_id(request.headers()),
        fwd: client.peer.ip(),
        dyno: None,
        connect: Duration::ZERO,
        started,
    };
    if !valid_host(request.headers(), request.version()) {
        line.host = None;
        return error_page(&client.route.stats, &line, StatusCode::BAD_REQUEST, "H25", "Bad Host header");
    }
    let upgrade = is_upgrade(&request);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    forward_headers(&mut request, client, &line.request_id, upgrade);
    let (settings, timeouts) = (&client.settings, &client.route.policy.timeouts);
    let get_sender = |backend: Arc<Backend>| pool::sender(backend.addr, timeouts.connect, upgrade);
    let (open, mut sender) = match assign(&client.route, settings.wait, get_sender, std::future::pending()).await {
        Ok(assigned) => assigned,
        Err(Unassigned::NoInstance | Unassigned::Abandoned) => {
            return error_page(&client.route.stats, &line, StatusCode::SERVICE_UNAVAILABLE, "H10", "App not available")
        }
        Err(Unassigned::BacklogFull) => {
            return error_page(&client.route.stats, &line, StatusCode::SERVICE_UNAVAILABLE, "H11", "Backlog too deep");
        }
    };
    line.dyno = Some(open.0.clone());
    line.connect = started.elapsed();
    let request = request.map(|body| pool::CountedBody::new(body, &client.route.stats, &client.clock));
    let sending = send(&mut sender, request, open.0.addr, timeouts.connect);
    let sent = tokio::time::timeout(timeouts.response, sending).await;
    let mut response = match sent {
        Err(_) => {
            return error_page(&client.route.stats, &line, StatusCode::SERVICE_UNAVAILABLE, "H12", "Request timeout")
        }
        // The client's body broke off or was malformed (a bad chunk size, fewer bytes than its
        // length), and the app's connection with it: the client's doing, not the app's.
        Ok(Err(_)) if client.clock.take_request_body_broke() => {
            return error_page(&client.route.stats, &line, StatusCode::BAD_REQUEST, "H27", "Client Request Interrupted")
        }
        Ok(Err(_)) => {
            return error_page(
                &client.route.stats,
                &line,
                StatusCode::SERVICE_UNAVAILABLE,
                "H13",
                "Connection closed without response",
            )
        }
        Ok(Ok(response)) => response,
    };
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let idle_limit = pool::idle_limit(response.headers().get(KEEP_ALIVE).map(HeaderValue::as_bytes));
    strip_hop_by_hop(response.headers_mut(), upgrade && switching);
    match client_upgrade.filter(|_| switching) {
        Some(client_side) => {
            client.clock.detach();
            tunnel(client_side, hyper::upgrade::on(&mut response), open, client.clone())
        }
        None => {
            let (parts, body) = response.into_parts();
            let (status, log, window) = (parts.status.as_u16(), settings.router_log, timeouts.response_idle);
            let pooled = Some((open.0.addr, sender.sender, idle_limit));
            let (clock, stats) = (client.clock.clone(), client.route.stats.clone());
            let logged = Logged {
                body,
                line,
                status,
                bytes: 0,
                open: Some(open),
                log,
                window,
                idle: None,
                pooled,
                clock,
                stats,
                broke_off: false,
            };
            return Response::from_parts(parts, Either::Left(logged));
        }
    }
    client.route.stats.served(started.elapsed(), 0, 0);
    if settings.router_log {
        tracing::info!("at=info {}", line.format(101, 0));
    }
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, Either::Right(Full::new(Bytes::new())))
}

/// The bytes a request id may hold, and those a host and port may (a table: one load a byte).
const ID_BYTES: [bool; 256] = byte_set(b"+/=._:-");
const HOST_BYTES: [bool; 256] = byte_set(b"-._~%!$&'()*+,;=:[]");

/// ASCII letters and digits, and `extra`.
const fn byte_set(extra: &[u8]) -> [bool; 256] {
    let mut set = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        set[byte] = (byte as u8).is_ascii_alphanumeric();
        byte += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        set[extra[i] as usize] = true;
        i += 1;
    }
    set
}

/// The longest `X-Request-Id` kept from a client.
const MAX_REQUEST_ID: usize = 200;

/// The client's `X-Request-Id` among `headers` when it is 1 to 200 characters of
/// `[A-Za-z0-9+/=._:-]` (it goes into the log line and the error page as is), or a new one (32
/// random hex digits).
fn request_id(headers: &hyper::HeaderMap) -> HeaderValue {
    let id_byte = |b: &u8| ID_BYTES[usize::from(*b)];
    let given = headers.get(X_REQUEST_ID);
    let given = given.filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID && v.as_bytes().iter().all(id_byte));
    given.cloned().unwrap_or_else(header_values::new_request_id)
}

/// One `Host` (none only before HTTP/1.1), made of what a host and port may hold (RFC 3986
/// §3.2.2): no space, quote or control byte reaches the instance or the log line (RFC 9112 §3.2:
/// else `400`).
fn valid_host(headers: &hyper::HeaderMap, version: hyper::Version) -> bool {
    let host_byte = |b: &u8| HOST_BYTES[usize::from(*b)];
    let mut hosts = headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(host), None) => host.as_bytes().iter().all(host_byte),
        (None, _) => version < hyper::Version::HTTP_11,
        (Some(_), Some(_)) => false,
    }
}

/// A request in absolute form (`GET http://example.com/a`): its target's host is the host (RFC
/// 9112 §3.2.2: a `Host` beside it is ignored), and the instance gets the origin form (`/a`), as
/// an app expects from a router.
fn host_from_target(request: &mut Request<Incoming>) {
    let uri = request.uri();
    let host = uri.authority().and_then(|authority| HeaderValue::from_str(authority.as_str()).ok());
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let origin = hyper::Uri::try_from(path).unwrap_or_else(|_| hyper::Uri::from_static("/"));
    *request.uri_mut() = origin;
    let headers = request.headers_mut();
    headers.remove(header::HOST);
    if let Some(host) = host {
        headers.insert(header::HOST, host);
    }
}

/// A pooled connection idle at least this long may have been closed by its app as the request
/// went (an app's idle timer is a second or more): an idempotent request on it keeps a copy to
/// send again. Below it (a busy pool) no copy is made.
const REPLAY_AFTER: Duration = Duration::from_millis(100);

/// Sends the request. When a pooled connection fails it, the request goes once more on a new
/// connection if that is safe: it never left, or it is idempotent, has no body and got no
/// answer (the app closed the idle connection as it went; RFC 9110 §9.2.2).
async fn send(
    pooled: &mut pool::Pooled,
    request: Request<pool::CountedBody>,
    addr: SocketAddr,
    timeout: Duration,
) -> hyper::Result<Response<Incoming>> {
    let replay = pooled.idle_for.filter(|idle| *idle >= REPLAY_AFTER).and_then(|_| replayable(&request));
    let mut failed = match pooled.sender.try_send_request(request.map(Either::Left)).await {
        Ok(response) => return Ok(response),
        Err(failed) => failed,
    };
    let Some(request) = failed.take_message().or(replay) else { return Err(failed.into_error()) };
    let Some(mut fresh) = pool::connect(addr, timeout).await else { return Err(failed.into_error()) };
    let response = fresh.send_request(request).await;
    *pooled = pool::Pooled { sender: fresh, idle_for: None };
    response
}

/// A copy of an idempotent request without a body, to send again.
fn replayable(request: &Request<pool::CountedBody>) -> Option<Request<pool::RequestBody>> {
    use hyper::Method;
    let idempotent = matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
        || matches!(*request.method(), Method::PUT | Method::DELETE);
    if !idempotent || !request.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(Either::Right(http_body_util::Empty::new()));
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}

fn is_upgrade(request: &Request<Incoming>) -> bool {
    let headers = request.headers();
    // Most requests have no `Upgrade`: one lookup for them.
    headers.contains_key(header::UPGRADE) && {
        let connection = headers.get(header::CONNECTION).and_then(|v| v.to_str().ok()).unwrap_or("");
        connection.to_ascii_lowercase().contains("upgrade")
    }
}

/// Removes the headers that concern one hop only (RFC 9110 §7.6.1), in either direction: the
/// fixed ones and every header `Connection` names; an upgrade keeps `Connection` and `Upgrade`.
/// (An instance's `Connection: close` closes its own connection, not the client's.)
fn strip_hop_by_hop(headers: &mut hyper::HeaderMap, upgrade: bool) {
    // One pass over the few headers a message has notes which of the fixed ones are there, so
    // only those are looked up again to be removed (usually one, `Connection`, or none).
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(index) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present |= 1 << index;
        }
    }
    if present == 0 {
        return;
    }
    let kept = |name: &HeaderName| upgrade && (name == header::CONNECTION || name == header::UPGRADE);
    if present & 1 != 0 {
        // `Connection: close` and `keep-alive` name no header to remove; others do (rare).
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|value| value.to_str().unwrap_or("").split(','))
            .map(str::trim)
            .filter(|token| !token.eq_ignore_ascii_case("close") && !token.eq_ignore_ascii_case("keep-alive"))
            .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
            .collect();
        for name in named.iter().filter(|name| !kept(name)) {
            headers.remove(name);
        }
    }
    for (index, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << index) != 0 && !kept(name) {
            headers.remove(name);
        }
    }
    // A message framed by `Transfer-Encoding` goes on framed anew: a `Content-Length` beside it
    // would promise the next hop another length (RFC 9112 §6.3: a sender must remove it).
    if present & (1 << TRANSFER_ENCODING_INDEX) != 0 {
        headers.remove(header::CONTENT_LENGTH);
    }
}

/// Where `Transfer-Encoding` is in [`HOP_BY_HOP`].
const TRANSFER_ENCODING_INDEX: usize = 5;

/// Drops hop-by-hop headers (but an upgrade's) and adds the router's own.
fn forward_headers(request: &mut Request<Incoming>, client: &Client, request_id: &HeaderValue, upgrade: bool) {
    let headers = request.headers_mut();
    strip_hop_by_hop(headers, upgrade);
    let forwarded_for = appended(headers, X_FORWARDED_FOR, &client.address);
    let via = appended(headers, header::VIA, &HeaderValue::from_static(VIA));
    headers.reserve(5);
    headers.insert(X_FORWARDED_FOR, forwarded_for);
    // A trusted load balancer knows how its client connected (TLS ended there, say); anyone
    // else's word is replaced.
    if !(client.trusted_proxy && headers.contains_key(X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if !(client.trusted_proxy && headers.contains_key(X_FORWARDED_PORT)) {
        headers.insert(X_FORWARDED_PORT, client.port.clone());
    }
    headers.insert(X_REQUEST_ID, request_id.clone());
    headers.insert(header::VIA, via);
}

/// The router's entry in `Via`.
const VIA: &str = "1.1 procgate";

/// The request's `name` list with `value` at its end, as a proxy extends `X-Forwarded-For` and
/// `Via` (RFC 9110 §7.6.3): the earlier values, all lines of them, then `value`.
fn appended(headers: &hyper::HeaderMap, name: HeaderName, value: &HeaderValue) -> HeaderValue {
    let mut earlier = headers.get_all(name).iter().peekable();
    if earlier.peek().is_none() {
        return value.clone();
    }
    let mut list = Vec::new();
    for entry in earlier {
        list.extend_from_slice(entry.as_bytes());
        list.extend_from_slice(b", ");
    }
    list.extend_from_slice(value.as_bytes());
    // Header values joined with ", " are a header value.
    HeaderValue::from_maybe_shared(Bytes::from(list)).unwrap_or_else(|_| value.clone())
}

/// After a `101`, relays bytes between the client and the instance until both close (the
/// client connection's budget place and instance count held meanwhile).
fn tunnel(
    client_side: hyper::upgrade::OnUpgrade,
    instance: hyper::upgrade::OnUpgrade,
    open: OpenConnection,
    client: Arc<Client>,
) {
    tokio::spawn(async move {
        let (Ok(client_side), Ok(instance)) = tokio::join!(client_side, instance) else { return };
        let (mut client_side, mut instance) = (TokioIo::new(client_side), TokioIo::new(instance));
        let _ = tokio::io::copy_bidirectional(&mut client_side, &mut instance).await;
        drop((open, client));
    });
}

/// A small HTML error page with the code in a header, as Heroku's router answers (503, or 400
/// for a request the router refuses to pass on).
fn error_page(
    stats: &RouteStats,
    line: &Line,
    status: StatusCode,
    code: &'static str,
    desc: &str,
) -> Response<RouterBody> {
    if let Some(outcome) = Outcome::of_code(code) {
        stats.count(outcome);
    }
    let html = format!(
        "<!DOCTYPE html>\n<html><head><title>Application Error</title></head><body><h1>Application Error</h1><p>{code} {desc}</p><p>Request ID: {}</p></body></html>\n",
        html_escape(line.request_id.to_str().unwrap_or("-"))
    );
    let bytes = html.len() as u64;
    tracing::warn!("at=error code={code} desc=\"{desc}\" {}", line.format(status.as_u16(), bytes));
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(html))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(HeaderName::from_static(CODE_HEADER), HeaderValue::from_static(code));
    response
}

/// `text` safe inside HTML (the request id comes from the client).
fn html_escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// An instance's response body: counts its bytes, keeps the request counted as outstanding on
/// its instance, cuts it when the instance sends nothing for the idle window (H15), and writes
/// the router log line when it ends (H28 when the client took none of it for that window).
struct Logged {
    body: Incoming,
    line: Line,
    status: u16,
    bytes: u64,
    open: Option<OpenConnection>,
    log: bool,
    window: Duration,
    /// Armed the first time the instance makes the body wait.
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The connection it came on, back to the pool when the body is done.
    pooled: Option<(SocketAddr, pool::Sender, Duration)>,
    /// The client connection's clock: the request is done when the body is.
    clock: Arc<ClientClock>,
    /// Its route's counters: the request is served when the body ends well.
    stats: Arc<RouteStats>,
    /// The response broke off: the instance's doing (H15, H18) or the client's (H28).
    broke_off: bool,
}

type BodyError = Box<dyn std::error::Error + Send + Sync>;

impl Body for Logged {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
                let window = self.window;
                if let Some(idle) = self.idle.as_mut() {
                    idle.as_mut().reset(Instant::now() + window);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                self.fail("H18", "Server Request Interrupted");
                Poll::Ready(Some(Err(err.into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let window = self.window;
                let idle = self.idle.get_or_insert_with(|| Box::pin(tokio::time::sleep(window)));
                if idle.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.fail("H15", "Idle connection");
                Poll::Ready(Some(Err("the instance sent nothing for the idle window".into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

impl Logged {
    fn fail(&mut self, code: &str, desc: &str) {
        tracing::warn!("at=error code={code} desc=\"{desc}\" {}", self.line.format(self.status, self.bytes));
        if let Some(outcome) = Outcome::of_code(code) {
            self.stats.count(outcome);
        }
        (self.log, self.broke_off) = (false, true);
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if !self.broke_off && self.clock.stalled() {
            self.fail("H28", "Client Connection Idle");
        }
        self.clock.request_done();
        self.open.take();
        if !self.broke_off {
            self.stats.served(self.line.started.elapsed(), 0, self.bytes);
        }
        if let Some((addr, sender, limit)) = self.pooled.take().filter(|_| self.body.is_end_stream()) {
            pool::give_back(addr, sender, limit);
        }
        if self.log {
            tracing::info!("at=info {}", self.line.format(self.status, self.bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_content_length_beside_a_transfer_encoding_is_not_passed_on() {
        assert_eq!(HOP_BY_HOP[TRANSFER_ENCODING_INDEX], header::TRANSFER_ENCODING);
        let mut headers = hyper::HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        strip_hop_by_hop(&mut headers, false);
        assert!(headers.is_empty(), "{headers:?}");
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        strip_hop_by_hop(&mut headers, false);
        assert_eq!(headers.len(), 1, "a length alone stays");
    }

    #[test]
    fn a_client_request_id_cannot_inject_html() {
        assert_eq!(
            html_escape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(html_escape("abc-123"), "abc-123");
    }
}

/// Property tests of the router's own handling of client-controlled head values (ignored by
/// default: `cargo test --release --lib -- --ignored fuzz`, 100,000 cases or `PROPTEST_CASES`).
#[cfg(test)]
mod fuzz;
