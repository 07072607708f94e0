//! Prometheus metrics: `GET /metrics` on the control socket and, with `--metrics-listen ADDR`,
//! on a TCP port a Prometheus server scrapes. OpenMetrics text encoded with `prometheus-client`
//! from a snapshot taken at each scrape (the instances from the Scheduler, the rollouts from the
//! Rollout actor, the routes' counters as the data plane keeps them): nothing is added to the
//! data path but the routes' atomic counters. Names are `procgate_*`, in base units; labels are
//! bounded (instances, types, outcomes: never a client address).

use super::body::Body;
use super::Platform;
use crate::gateway::route::Route;
use crate::gateway::stats::Outcome;
use crate::platform::rollout_actor::Tallies;
use crate::platform::scheduler::{InstanceView, Status};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt;
use std::sync::atomic::Ordering;

/// The OpenMetrics text format's content type.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Scrapers served at once on `--metrics-listen`; more wait in the kernel's backlog.
const MAX_SCRAPERS: usize = 16;

/// The metrics now, as OpenMetrics text.
pub async fn text(platform: &Platform) -> Result<String, String> {
    let instances = platform.scheduler.send(Status).await.map_err(|err| err.to_string())?;
    let rollouts = platform.rollouts.send(Tallies).await.map_err(|err| err.to_string())?;
    let routes = platform.routes.iter().map(|route| RouteReading::of(route)).collect();
    let snapshot = Snapshot { instances, routes, rollouts, dropped_lines: platform.output.dropped_lines() };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).map_err(|err| err.to_string())?;
    Ok(text)
}

/// The answer to `GET /metrics`.
pub async fn answer(platform: &Platform) -> Response<Body> {
    let (status, text) = match text(platform).await {
        Ok(text) => (StatusCode::OK, text),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("procgate is stopping: {why}\n")),
    };
    let mut response = Response::new(Full::new(Bytes::from(text)).boxed_unsync());
    *response.status_mut() = status;
    let value = hyper::header::HeaderValue::from_static(CONTENT_TYPE);
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    response
}

/// Serves `GET /metrics` on `listener` (on the actors' thread) until procgate exits.
pub async fn serve(listener: tokio::net::TcpListener, platform: Platform) {
    super::http_listener::serve(listener, MAX_SCRAPERS, move |request: Request<hyper::body::Incoming>| {
        let platform = platform.clone();
        async move {
            match (request.method(), request.uri().path()) {
                (&Method::GET, "/metrics") => answer(&platform).await,
                _ => not_found(),
            }
        }
    })
    .await
}

fn not_found() -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"only GET /metrics here\n")).boxed_unsync());
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

/// One route's counters, read at the scrape.
#[derive(Debug)]
struct RouteReading {
    name: String,
    http: bool,
    queued: usize,
    outcomes: Vec<(Outcome, u64)>,
    bytes_in: u64,
    bytes_out: u64,
    connect: (f64, u64, Vec<(f64, u64)>),
    duration: (f64, u64, Vec<(f64, u64)>),
    wakes: (f64, u64, Vec<(f64, u64)>),
}

impl RouteReading {
    fn of(route: &Route) -> RouteReading {
        let stats = &route.stats;
        RouteReading {
            name: route.type_name.clone(),
            http: route.policy.http,
            queued: route.queued(),
            outcomes: Outcome::ALL.iter().map(|o| (*o, stats.total(*o))).collect(),
            bytes_in: stats.bytes_in.load(Ordering::Relaxed),
            bytes_out: stats.bytes_out.load(Ordering::Relaxed),
            connect: stats.connect.read(),
            duration: stats.duration.read(),
            wakes: stats.wakes.read(),
        }
    }
}

/// Everything a scrape shows.
#[derive(Debug)]
struct Snapshot {
    instances: Vec<InstanceView>,
    routes: Vec<RouteReading>,
    rollouts: Vec<(&'static str, &'static str, u64)>,
    dropped_lines: u64,
}

/// A family of metrics: its name, help and type, then one sample per label set.
fn family<'a>(
    encoder: &'a mut DescriptorEncoder,
    name: &'a str,
    help: &str,
    kind: MetricType,
) -> Result<prometheus_client::encoding::MetricEncoder<'a>, fmt::Error> {
    encoder.encode_descriptor(name, help, None, kind)
}

fn counter(
    encoder: &mut prometheus_client::encoding::MetricEncoder,
    labels: &impl EncodeLabelSet,
    value: u64,
) -> fmt::Result {
    encoder.encode_family(labels)?.encode_counter::<NoLabelSet, _, u64>(&value, None)
}

fn gauge(
    encoder: &mut prometheus_client::encoding::MetricEncoder,
    labels: &impl EncodeLabelSet,
    value: f64,
) -> fmt::Result {
    encoder.encode_family(labels)?.encode_gauge(&value)
}

fn histogram(
    encoder: &mut prometheus_client::encoding::MetricEncoder,
    labels: &impl EncodeLabelSet,
    (sum, count, buckets): &(f64, u64, Vec<(f64, u64)>),
) -> fmt::Result {
    encoder.encode_family(labels)?.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)
}

impl Snapshot {
    fn instances(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        // `dyno`, as the instances' DYNO: Prometheus keeps `instance` for the scraped target.
        let labels = |i: &InstanceView| [("dyno", i.name.clone()), ("type", i.type_name.clone())];
        let mut states = family(encoder, "procgate_instance_state", "1 for the instance's state", MetricType::Gauge)?;
        for i in &self.instances {
            let [instance, kind] = labels(i);
            gauge(&mut states, &[instance, kind, ("state", i.state.clone())], 1.0)?;
        }
        let mut restarts = family(encoder, "procgate_instance_restarts", "Crash restarts", MetricType::Counter)?;
        for i in &self.instances {
            counter(&mut restarts, &labels(i), u64::from(i.restarts))?;
        }
        let mut uptime =
            family(encoder, "procgate_instance_uptime_seconds", "Time since it started", MetricType::Gauge)?;
        for i in self.instances.iter().filter(|i| i.uptime.is_some()) {
            gauge(&mut uptime, &labels(i), i.uptime.unwrap_or_default())?;
        }
        let help = "Open proxied connections (requests in flight for web)";
        let mut open = family(encoder, "procgate_instance_open_connections", help, MetricType::Gauge)?;
        for i in self.instances.iter().filter(|i| i.connections.is_some()) {
            gauge(&mut open, &labels(i), i.connections.unwrap_or_default() as f64)?;
        }
        let help = "Connections (requests for web) given to the instance";
        let mut assigned = family(encoder, "procgate_instance_assigned", help, MetricType::Counter)?;
        for i in self.instances.iter().filter(|i| i.served.is_some()) {
            counter(&mut assigned, &labels(i), i.served.unwrap_or_default())?;
        }
        Ok(())
    }

    fn routes(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        for (http, what) in [(false, "connections"), (true, "requests")] {
            let name = format!("procgate_route_{what}");
            let help = format!("{what} by outcome: served, or the code that ended them (H10, H11, T429...)");
            let mut outcomes = family(encoder, &name, &help, MetricType::Counter)?;
            for route in self.routes.iter().filter(|r| r.http == http) {
                for (outcome, count) in &route.outcomes {
                    counter(&mut outcomes, &[("route", route.name.as_str()), ("outcome", outcome.as_str())], *count)?;
                }
            }
        }
        let help = "Bytes proxied: in, client to instance; out, instance to client (bodies, for web)";
        let mut bytes = family(encoder, "procgate_route_bytes", help, MetricType::Counter)?;
        for route in &self.routes {
            counter(&mut bytes, &[("route", route.name.as_str()), ("direction", "in")], route.bytes_in)?;
            counter(&mut bytes, &[("route", route.name.as_str()), ("direction", "out")], route.bytes_out)?;
        }
        let help = "Time to connect to an instance";
        let mut connect = family(encoder, "procgate_route_connect_seconds", help, MetricType::Histogram)?;
        for route in &self.routes {
            histogram(&mut connect, &[("route", route.name.as_str())], &route.connect)?;
        }
        let help = "Duration of a proxied connection (tcp) or of a request to the end of its response (web)";
        let mut duration = family(encoder, "procgate_route_duration_seconds", help, MetricType::Histogram)?;
        for route in &self.routes {
            histogram(&mut duration, &[("route", route.name.as_str())], &route.duration)?;
        }
        let help = "Wakes of the type from sleep (sleep_after)";
        let mut wakes = family(encoder, "procgate_wakes", help, MetricType::Counter)?;
        for route in &self.routes {
            counter(&mut wakes, &[("type", route.name.as_str())], route.wakes.1)?;
        }
        let help =
            "Time from a sleeping type's first waiting client (or procgate wake) to its first instance in routing";
        let mut woke = family(encoder, "procgate_wake_duration_seconds", help, MetricType::Histogram)?;
        for route in &self.routes {
            histogram(&mut woke, &[("type", route.name.as_str())], &route.wakes)?;
        }
        let help = "Clients waiting for a place under the caps";
        let mut queued = family(encoder, "procgate_route_queued", help, MetricType::Gauge)?;
        for route in &self.routes {
            gauge(&mut queued, &[("route", route.name.as_str())], route.queued as f64)?;
        }
        Ok(())
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        self.instances(&mut encoder)?;
        self.routes(&mut encoder)?;
        let help = "Restarts, deploys and daily cycles ended, by kind and result";
        let mut rollouts = family(&mut encoder, "procgate_rollouts", help, MetricType::Counter)?;
        for (kind, result, count) in &self.rollouts {
            counter(&mut rollouts, &[("kind", *kind), ("result", *result)], *count)?;
        }
        let help = "Output lines dropped because stdout or the log files did not keep up";
        let mut dropped = family(&mut encoder, "procgate_log_lines_dropped", help, MetricType::Counter)?;
        dropped.encode_counter::<NoLabelSet, _, u64>(&self.dropped_lines, None)
    }
}
