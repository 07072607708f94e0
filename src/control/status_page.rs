//! The live status page (`--status-listen ADDR`): one HTML page served by the binary (no build
//! step, no CDN), updated every second over server-sent events with the instances, the routes'
//! totals for its chart, the rollout under way and the last events with their codes. Its restart
//! and scale buttons need the `--status-token` in an `Authorization: Bearer` header (typed into
//! the page, never in a URL); without a token they are refused.

use super::body::error;
use super::body::{Body, LineStream, LINES_BUFFER};
use super::server::{restart, scale};
use super::{InstanceStatus, Platform};
use crate::gateway::stats::Outcome;
use crate::logs::history::History;
use crate::logs::record::{Record, SYSTEM};
use crate::platform::rollout_actor::Underway;
use crate::platform::scheduler::Status;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

/// The page.
const PAGE: &str = include_str!("status.html");

/// How often the page hears the state.
const PERIOD: Duration = Duration::from_secs(1);

/// The last events the page shows.
const EVENTS: usize = 30;

/// Pages followed at once; more wait in the kernel's backlog.
const MAX_CLIENTS: usize = 32;

/// What the page needs.
#[derive(Clone)]
pub struct StatusPage {
    pub platform: Platform,
    pub history: Arc<History>,
    /// The app root, shown on the page.
    pub root: String,
    /// The buttons' token (`--status-token`); `None`: no button works.
    pub token: Option<Arc<str>>,
}

/// One update of the page.
#[derive(Serialize)]
struct Snapshot {
    root: String,
    /// Seconds since the epoch, for the chart's rates.
    at: f64,
    instances: Vec<InstanceStatus>,
    routes: Vec<RouteTotal>,
    rollout: Option<String>,
    events: Vec<Event>,
}

#[derive(Serialize)]
struct RouteTotal {
    name: String,
    /// Connections (requests, for web) served so far.
    served: u64,
}

#[derive(Serialize)]
struct Event {
    time: String,
    code: Option<String>,
    text: String,
}

/// Serves the page on `listener` (on the actors' thread) until procgate exits.
pub async fn serve(listener: tokio::net::TcpListener, page: StatusPage) {
    super::http_listener::serve(listener, MAX_CLIENTS, move |request| {
        let page = page.clone();
        async move { answer(request, &page).await }
    })
    .await
}

async fn answer(request: Request<Incoming>, page: &StatusPage) -> Response<Body> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => html(),
        (&Method::GET, "/events") => events(page.clone()),
        (&Method::POST, "/restart" | "/scale") if !authorized(&request, page) => error(
            StatusCode::FORBIDDEN,
            "the buttons need the token procgate was started with (--status-token); type it into the page",
        ),
        (&Method::POST, "/restart") => restart(request, &page.platform).await,
        (&Method::POST, "/scale") => scale(request, &page.platform).await,
        _ => error(StatusCode::NOT_FOUND, "the status page has /, /events, and POST /restart and /scale"),
    }
}

fn html() -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())).boxed_unsync());
    let value = hyper::header::HeaderValue::from_static("text/html; charset=utf-8");
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    response
}

/// Whether the request carries the token, compared in constant time.
fn authorized(request: &Request<Incoming>, page: &StatusPage) -> bool {
    let Some(token) = &page.token else { return false };
    let given = request.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let Some(given) = given.and_then(|v| v.strip_prefix("Bearer ")) else { return false };
    given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0, |diff, (a, b)| diff | (a ^ b)) == 0
}

/// `text/event-stream`: the state now, then every [`PERIOD`], until the page goes.
fn events(page: StatusPage) -> Response<Body> {
    let (lines, body) = mpsc::channel(LINES_BUFFER);
    tokio::task::spawn_local(async move {
        loop {
            let Some(snapshot) = snapshot(&page).await else { return };
            let data = format!("data: {}\n\n", serde_json::to_string(&snapshot).unwrap_or_default());
            if lines.send(Bytes::from(data)).await.is_err() {
                return;
            }
            tokio::time::sleep(PERIOD).await;
        }
    });
    let mut response = Response::new(LineStream(body).boxed_unsync());
    let value = hyper::header::HeaderValue::from_static("text/event-stream");
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    response
}

/// The state now; `None` once the actors are gone (procgate is stopping).
async fn snapshot(page: &StatusPage) -> Option<Snapshot> {
    let instances = page.platform.scheduler.send(Status).await.ok()?;
    let rollout = page.platform.rollouts.send(Underway).await.ok()?;
    let routes = page.platform.routes.iter();
    let routes = routes.map(|r| RouteTotal { name: r.type_name.clone(), served: r.stats.total(Outcome::Served) });
    // procgate's events, not its access log (a line per request or connection).
    let access = |r: &Record| r.text.starts_with("at=info") || matches!(r.code(), Some("202" | "203"));
    let system = page.history.last(EVENTS, |r| r.source == SYSTEM && !access(r));
    let events: Vec<Event> = system
        .iter()
        .map(|r| Event {
            time: r.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
            code: r.code().map(str::to_string),
            text: r.text.clone(),
        })
        .collect();
    let at = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    Some(Snapshot {
        root: page.root.clone(),
        at,
        instances: instances.into_iter().map(InstanceStatus::from).collect(),
        routes: routes.collect(),
        rollout,
        events,
    })
}
