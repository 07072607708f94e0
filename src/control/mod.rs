//! The control socket: HTTP/1.1 + JSON on `ROOT/.procgate/control.sock` (mode 0600), served by a
//! running `procgate start` and used by `procgate ps`, `stop` and the other day-to-day commands.
//!
//! | request | answer |
//! |---|---|
//! | `GET /ps` | `{"instances":[{"name":"tcp.1","type":"tcp","state":"up",...,"connections":3}]}` |
//! | `POST /scale` `{"tcp":3}` | `{"changes":["tcp.2 starting on port 5101",...]}`, or 400 and why |
//! | `POST /restart` `{"target":"tcp"}` | progress lines; the last starts with `ok:` or `failed:` |
//! | `POST /deploy` `{"from":"/srv/app/v2","dry_run":false}` | the same, for a new release (its plan first; `dry_run`: the plan only) |
//! | `POST /wake` `{"type":"tcp"}` | progress lines; the last starts with `ok:` (`tcp woke after 412 ms`) or `failed:` |
//! | `POST /upgrade` `{"binary":"/usr/local/bin/procgate"}` | for now: 501 once the new main process answered and took the listeners (then stopped); 409 busy, 422 a binary that cannot take over, 502 rolled back |
//! | `POST /stop` | a stream of progress lines, ending with `stopped (exit status N)` |
//! | `GET /logs?since=MS&follow=1&json=1&only=web,tcp.1` | the kept lines, then (follow) each new one |
//! | `GET /metrics` | Prometheus metrics (OpenMetrics text) |

pub mod body;
pub mod client;
pub mod http_listener;
pub mod logs;
pub mod metrics;
pub mod server;
pub mod status_page;
pub mod upgrade;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::app_state::DIR;
/// The socket's file name.
pub const SOCKET: &str = "control.sock";

/// What the control socket and the metrics talk to: the actors, the routes' counters, the output.
#[derive(Clone)]
pub struct Platform {
    pub scheduler: actix::Addr<crate::platform::scheduler::Scheduler>,
    pub rollouts: actix::Addr<crate::platform::rollout_actor::RolloutActor>,
    pub routes: Vec<std::sync::Arc<crate::gateway::route::Route>>,
    pub output: crate::logs::Output,
    pub upgrades: actix::Addr<crate::upgrade::actor::UpgradeActor>,
}

/// Where the control socket of the app in `root` lives.
pub fn socket_path(root: &Path) -> PathBuf {
    root.join(DIR).join(SOCKET)
}

/// One instance as `ps` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    /// `starting`, `up`, `draining`, `crashed`, `failed`, `stopped`, or `sleeping` (an instance
    /// its sleeping type wakes with: no pid, no port).
    pub state: String,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    /// Seconds since it was spawned, while it runs.
    pub uptime: Option<f64>,
    pub restarts: u32,
    /// Seconds until the next restart, while `crashed` or `failed`.
    pub restart_in: Option<f64>,
    /// Open gateway connections (routed types; requests in flight for `web`).
    pub connections: Option<usize>,
    /// Connections (requests, for `web`) it has been given since it started (routed types).
    #[serde(default)]
    pub served: Option<u64>,
}

impl From<crate::platform::scheduler::InstanceView> for InstanceStatus {
    fn from(view: crate::platform::scheduler::InstanceView) -> InstanceStatus {
        InstanceStatus {
            name: view.name,
            type_name: view.type_name,
            state: view.state,
            pid: view.pid,
            port: view.port,
            uptime: view.uptime,
            restarts: view.restarts,
            restart_in: view.restart_in,
            connections: view.connections,
            served: view.served,
        }
    }
}

/// One gateway route as `ps` shows it: clients waiting and refused before reaching an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteStatus {
    #[serde(rename = "type")]
    pub type_name: String,
    /// `tcp` (gateway) or `http` (router).
    pub protocol: String,
    /// Clients waiting for a place under the caps now.
    pub queued: usize,
    /// Refused because the caps were reached and the queue was full (H11).
    pub refused_by_cap: u64,
    /// Refused by the per-client limits (T429).
    pub refused_by_rate: u64,
    /// Closed for a bad PROXY header (P400).
    pub bad_proxy_headers: u64,
    /// Closed because the peer is not in `trusted_proxies` (P403).
    #[serde(default)]
    pub untrusted_proxies: u64,
    /// Client addresses the per-client limits track now (bounded).
    pub clients_tracked: usize,
}

/// The body of `GET /ps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PsReply {
    pub instances: Vec<InstanceStatus>,
    #[serde(default)]
    pub routes: Vec<RouteStatus>,
}

/// What `GET /logs?since=600&follow=1&json=1&only=web,tcp.1` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Lines no older than this [default: every line kept].
    pub since: Option<std::time::Duration>,
    /// Lines written at this time (RFC 3339) or later: where a follower that lost its
    /// connection (an upgrade's old main process handed over) takes up again.
    pub from: Option<String>,
    /// Then each new line as it comes.
    pub follow: bool,
    /// One JSON object per line.
    pub json: bool,
    /// Types, instances or `system`; none: every line.
    pub only: Vec<String>,
}

impl LogQuery {
    /// The query string of the request.
    pub fn to_query(&self) -> String {
        let mut words = Vec::new();
        if let Some(since) = self.since {
            words.push(format!("since={}", since.as_millis()));
        }
        if let Some(from) = &self.from {
            words.push(format!("from={}", from.replace('+', "%2B")));
        }
        words.extend(self.follow.then(|| "follow=1".to_string()));
        words.extend(self.json.then(|| "json=1".to_string()));
        if !self.only.is_empty() {
            words.push(format!("only={}", self.only.join(",")));
        }
        words.join("&")
    }

    /// Reads a query string (`since` in milliseconds); an unknown key or a bad value is an error.
    pub fn parse(query: Option<&str>) -> Result<LogQuery, String> {
        let mut parsed = LogQuery::default();
        for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "since" => {
                    let millis =
                        value.parse().map_err(|_| format!("since={value}: milliseconds, e.g. since=600000"))?;
                    parsed.since = Some(std::time::Duration::from_millis(millis));
                }
                "from" => {
                    let from = value.replace("%2B", "+");
                    chrono::DateTime::parse_from_rfc3339(&from)
                        .map_err(|err| format!("from={value}: an RFC 3339 time ({err})"))?;
                    parsed.from = Some(from);
                }
                "follow" => parsed.follow = value == "1",
                "json" => parsed.json = value == "1",
                "only" => parsed.only = value.split(',').filter(|n| !n.is_empty()).map(str::to_string).collect(),
                other => return Err(format!("`{other}` is not a logs query key; use since, from, follow, json, only")),
            }
        }
        Ok(parsed)
    }
}

/// The body of `POST /restart`: an instance (`tcp.1`), a type (`tcp`) or nothing (all).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RestartRequest {
    pub target: Option<String>,
}

/// The body of `POST /upgrade`: the new binary (absolute), else the one running.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeRequest {
    #[serde(default)]
    pub binary: Option<PathBuf>,
}

/// The body of `POST /wake`: the type to wake.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WakeRequest {
    #[serde(rename = "type")]
    pub type_name: String,
}

/// The body of `POST /deploy`: where the new release is (what it leaves out: as started), and
/// whether only its plan is wanted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRequest {
    #[serde(flatten)]
    pub source: crate::config::ReleaseSource,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("procgate is already running in {root} (its control socket {socket} answers); stop it with `procgate stop -d {root}` first")]
    AlreadyRunning { root: String, socket: String },
    #[error("no procgate is running in {root} ({socket}: {reason}); start one with `procgate start`, or pass its app directory with -d")]
    NotRunning { root: String, socket: String, reason: String },
    #[error("control socket {socket}: {reason}")]
    Io { socket: String, reason: String },
    #[error("{dir}: refused as procgate's control directory: {reason}; remove it (procgate makes its own)")]
    UnsafeDirectory { dir: String, reason: String },
    #[error("{body}")]
    Refused { status: u16, body: String },
}
