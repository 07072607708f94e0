//! The optional `procgate.toml` in the app root: per-type settings a Procfile cannot say.
//!
//! ```toml
//! [types.tcp]
//! listen = "127.0.0.1:20003"   # the gateway address of this type (flags win: --tcp-listen)
//! health_interval = "2s"       # TCP handshake probe period once up
//! health_timeout = "1s"        # probe timeout
//! rise = 1                     # consecutive successes to join routing
//! fall = 2                     # consecutive failures to leave routing
//!
//! [types.web]
//! health_path = "/up"          # the HTTP check's path (web)
//! health_status = "200-399"    # the statuses it accepts [default: any below 500]
//! restart_unhealthy_after = "60s" # restart an instance failing its checks this long [never]
//! cycle = false                # never cycle its instances daily (--cycle) [true]
//! max_per_instance = 50        # cap of open requests (web) or connections per instance [none]
//! max_per_type = 500           # cap of open ones over all the type's instances [none]
//! backlog = 100                # clients that may wait for a place at the caps, then H11 [0]
//! queue_timeout = "10s"        # how long they may wait [--wait]
//! rate = 10                    # new connections per second per client (IPv4 address, IPv6 /64) [none]
//! burst = 20                   # above the rate, at once [the rate]
//! max_per_client = 100         # open connections per client [none]
//! proxy_protocol = "v2"        # PROXY header to instances: "v1", "v2", "off" (TCP types) [off]
//! accept_proxy = true          # clients send a PROXY header first [false]
//! connect_timeout = "1s"       # connect to an instance, then try another [--connect-timeout, 1s]
//! head_timeout = "30s"         # a client's request head, then 408 and H28 (web) [30s]
//! keepalive_timeout = "90s"    # a kept-alive client connection with no request (web) [90s]
//! request_timeout = "30s"      # an instance's response head, then H12 (web) [30s]
//! router_idle_timeout = "55s"  # an instance silent mid-response, then H15 (web) [55s]
//! idle_timeout = "1h"          # a proxied TCP connection silent both ways, or "off" [off]
//! tcp_keepalive = "60s"        # keepalive probes on idle client connections, or "off" [60s]
//! trusted_proxies = ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]  # who may send it [required]
//! sleep_after = "15m"          # stop every instance after this long with no connection; the
//!                              # next client wakes the type (routed types) [off]
//! min_instances = 1            # the fewest instances: scale below it is refused; never sleeps [0]
//!
//! [logs]
//! dir = "log"                  # log files here, relative to the app root [none]
//! keep = 14                    # files kept [14]
//! rotation = "daily"           # a new file each day, or "hourly" [daily]
//! max_size = "100MB"           # the most bytes of one file; past it, lines are dropped [100MB]
//! ```
//! Flags (`--head-timeout`, `--log-dir`...) win over the file, for every route.
//! Unknown keys and bad values are errors naming the file, the line and the key.
//!
//! `accept_proxy = true` requires `trusted_proxies`, the addresses (CIDR blocks, or single
//! addresses) of the load balancers in front: a PROXY header sets the client address that the
//! per-client limits count and that `X-Forwarded-For` and the instances' headers carry, so only
//! those peers may send one; any other peer is closed at once (`P403`). There is no default, as
//! with nginx's `set_real_ip_from`: a default of "any peer" would let anyone who reaches the port
//! pick their address, and one of "loopback" would refuse a load balancer on another host.
//! `["0.0.0.0/0", "::/0"]` trusts every peer, for a listener only the load balancer can reach.

use crate::cidr::Cidr;
use crate::procfile::{TCP_TYPE, WEB_TYPE};
use crate::proxy_version::ProxyVersion;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

/// The file's name in the app root.
pub const FILE_NAME: &str = "procgate.toml";

/// The error for `accept_proxy = true` without `trusted_proxies`, with the fix.
const NO_TRUSTED_PROXIES: &str =
    "accept_proxy = true needs trusted_proxies, the load balancers that may send the PROXY \
    header: add e.g. trusted_proxies = [\"10.0.0.0/8\"] ([\"0.0.0.0/0\", \"::/0\"] trusts any peer)";

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub types: BTreeMap<String, TypeSettings>,
    /// Where `start` keeps its lines (the command line's `--log-*` flags win).
    #[serde(default)]
    pub logs: LogSettings,
}

/// `[logs]`: log files (`--log-dir`, `--log-keep`, `--log-rotation`, `--log-max-size`).
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// The directory of the log files, relative to the app root [default: no files].
    pub dir: Option<std::path::PathBuf>,
    /// Files kept [default: 14].
    pub keep: Option<usize>,
    /// `"daily"` or `"hourly"` [default: daily].
    #[serde(default, deserialize_with = "period")]
    pub rotation: Option<crate::logs::files::Period>,
    /// The most bytes of one file, `"100MB"` [default: 100MB].
    #[serde(default, deserialize_with = "size")]
    pub max_size: Option<u64>,
}

/// What one process type may set.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeSettings {
    #[serde(default, deserialize_with = "listen_address")]
    pub listen: Option<SocketAddr>,
    #[serde(default, deserialize_with = "duration")]
    pub health_interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub health_timeout: Option<Duration>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    /// The path of the HTTP check (`web`).
    #[serde(default, deserialize_with = "request_path")]
    pub health_path: Option<String>,
    /// The statuses the HTTP check accepts, `"200-399"` [default: any below 500].
    #[serde(default, deserialize_with = "statuses")]
    pub health_status: Option<RangeInclusive<u16>>,
    /// Replace its instances daily with the others (`--cycle`) [default: true]; `false` for a
    /// type whose instances hold what a replacement would lose (a Redis without persistence).
    pub cycle: Option<bool>,
    /// Restart an instance that has failed its checks this long [default: never; failed checks
    /// only take it out of routing].
    #[serde(default, deserialize_with = "duration")]
    pub restart_unhealthy_after: Option<Duration>,
    /// The most connections (requests, for `web`) open on one instance at once [default: no cap].
    pub max_per_instance: Option<usize>,
    /// The most connections open on all the type's instances together [default: no cap].
    pub max_per_type: Option<usize>,
    /// How many clients may wait when the caps are reached, then H11 [default: 0].
    pub backlog: Option<usize>,
    /// How long a client may wait there [default: --wait].
    #[serde(default, deserialize_with = "duration")]
    pub queue_timeout: Option<Duration>,
    /// New connections per second per client (an IPv4 address or an IPv6 /64) [default: no limit].
    pub rate: Option<f64>,
    /// Connections a client may open at once above the rate [default: the rate].
    pub burst: Option<f64>,
    /// Connections open at once per client [default: no limit].
    pub max_per_client: Option<usize>,
    /// `"v1"`, `"v2"` or `"off"`: the PROXY header written to instances [default: off].
    pub proxy_protocol: Option<ProxyVersion>,
    /// Clients (a load balancer in front) send a PROXY header first [default: false] (with its
    /// place in the file, for the error when `trusted_proxies` is missing).
    pub accept_proxy: Option<toml::Spanned<bool>>,
    /// The peers that may send that header, `["10.0.0.0/8", "::1/128"]`; required with
    /// `accept_proxy = true`. Read from `trusted_proxies_written` at load.
    #[serde(skip)]
    pub trusted_proxies: Option<Vec<Cidr>>,
    /// `trusted_proxies` as written, each with its place in the file (for the line of a bad one).
    #[serde(rename = "trusted_proxies", default)]
    trusted_proxies_written: Option<Vec<toml::Spanned<String>>>,
    /// The timeouts of the type's route (gateway::timeouts), each `None` when not set here.
    #[serde(default, deserialize_with = "duration")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub head_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub keepalive_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub request_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub router_idle_timeout: Option<Duration>,
    /// A duration or `"off"`.
    #[serde(default, deserialize_with = "duration_or_off")]
    pub idle_timeout: Option<Option<Duration>>,
    #[serde(default, deserialize_with = "tcp_keepalive_or_off")]
    pub tcp_keepalive: Option<Option<Duration>>,
    /// Stop every instance of a routed type once it has had no open connection (and so no
    /// request) this long; its next client wakes it [default: off].
    #[serde(default, deserialize_with = "duration_or_off")]
    pub sleep_after: Option<Option<Duration>>,
    /// The fewest instances the type runs: `scale` and `start -m` below it are refused, and a
    /// type that keeps one never sleeps [default: 0].
    pub min_instances: Option<usize>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("{path}: cannot read: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path}:{line}: {message}")]
    Invalid { path: String, line: usize, message: String },
    #[error("{path}:{line}: [types.{name}] names no Procfile type; the types are: {known}")]
    UnknownType { path: String, line: usize, name: String, known: String },
}

fn listen_address<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(deserializer)?;
    crate::config::parse_listen(&text).map(Some).map_err(serde::de::Error::custom)
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    crate::duration::parse(&text).map(Some).map_err(serde::de::Error::custom)
}

/// A request path the health check can send.
fn request_path<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(deserializer)?;
    crate::http_check::check_request_path(&text).map(Some).map_err(serde::de::Error::custom)
}

fn duration_or_off<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<Duration>>, D::Error> {
    let text = String::deserialize(deserializer)?;
    crate::duration::parse_or_off(&text).map(Some).map_err(serde::de::Error::custom)
}

fn tcp_keepalive_or_off<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<Duration>>, D::Error> {
    match duration_or_off(deserializer)? {
        Some(Some(idle)) => crate::gateway::timeouts::check_tcp_keepalive(idle)
            .map(|idle| Some(Some(idle)))
            .map_err(serde::de::Error::custom),
        off_or_unset => Ok(off_or_unset),
    }
}

impl TypeSettings {
    /// The PROXY header version written to the type's instances; `"off"` is no header.
    pub fn proxy_version(&self) -> Option<ProxyVersion> {
        self.proxy_protocol.filter(|v| *v != ProxyVersion::Off)
    }

    /// Whether clients send a PROXY header first (`accept_proxy`).
    pub fn accepts_proxy(&self) -> bool {
        self.accept_proxy.as_ref().is_some_and(|spanned| *spanned.get_ref())
    }

    /// How long the type may be idle before it sleeps (`sleep_after`; `None`: never).
    pub fn sleeps_after(&self) -> Option<Duration> {
        self.sleep_after.flatten()
    }

    /// The fewest instances it runs (`min_instances`).
    pub fn min_instances(&self) -> usize {
        self.min_instances.unwrap_or(0)
    }

    /// The keys that travel with each new instance, each with its value as written (`unset`
    /// when it is not).
    pub fn instance_keys(&self) -> Vec<(&'static str, String)> {
        vec![
            ("health_path", shown(&self.health_path)),
            ("health_status", shown(&self.health_status)),
            ("health_interval", duration_shown(self.health_interval)),
            ("health_timeout", duration_shown(self.health_timeout)),
            ("rise", shown(&self.rise)),
            ("fall", shown(&self.fall)),
            ("restart_unhealthy_after", duration_shown(self.restart_unhealthy_after)),
            ("cycle", shown(&self.cycle)),
            ("proxy_protocol", shown(&self.proxy_version().map(ProxyVersion::as_str))),
            ("sleep_after", or_off_shown(self.sleep_after)),
            ("min_instances", shown(&self.min_instances)),
        ]
    }

    /// The keys a route's listener holds from procgate's start (caps, per-client limits,
    /// `accept_proxy`, timeouts), each with its value as written (`unset` when it is not).
    pub fn listener_keys(&self) -> Vec<(&'static str, String)> {
        vec![
            ("max_per_instance", shown(&self.max_per_instance)),
            ("max_per_type", shown(&self.max_per_type)),
            ("backlog", shown(&self.backlog)),
            ("queue_timeout", duration_shown(self.queue_timeout)),
            ("rate", shown(&self.rate)),
            ("burst", shown(&self.burst)),
            ("max_per_client", shown(&self.max_per_client)),
            ("accept_proxy", self.accepts_proxy().to_string()),
            ("trusted_proxies", shown(&self.trusted_proxies)),
            ("connect_timeout", duration_shown(self.connect_timeout)),
            ("head_timeout", duration_shown(self.head_timeout)),
            ("keepalive_timeout", duration_shown(self.keepalive_timeout)),
            ("request_timeout", duration_shown(self.request_timeout)),
            ("router_idle_timeout", duration_shown(self.router_idle_timeout)),
            ("idle_timeout", or_off_shown(self.idle_timeout)),
            ("tcp_keepalive", or_off_shown(self.tcp_keepalive)),
        ]
    }
}

/// A duration that may be `off`, as the plan prints it.
fn or_off_shown(value: Option<Option<Duration>>) -> String {
    value.map_or("unset".to_string(), |value| value.map_or("off".to_string(), crate::duration::format))
}

fn duration_shown(value: Option<Duration>) -> String {
    value.map_or("unset".to_string(), crate::duration::format)
}

/// A setting's value as the deploy plan and the export show it, or `unset`.
fn shown<T: std::fmt::Debug>(value: &Option<T>) -> String {
    value.as_ref().map_or("unset".to_string(), |v| format!("{v:?}"))
}

fn statuses<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<RangeInclusive<u16>>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_statuses(&text).map(Some).map_err(serde::de::Error::custom)
}

/// Parses `200-399` or `200` (`health_status`).
fn parse_statuses(text: &str) -> Result<RangeInclusive<u16>, String> {
    let bad = || format!("invalid status range `{text}`: write e.g. \"200-399\" or \"200\"");
    let (low, high) = text.split_once('-').unwrap_or((text, text));
    let (low, high): (u16, u16) = (low.trim().parse().map_err(|_| bad())?, high.trim().parse().map_err(|_| bad())?);
    if !(100..=599).contains(&low) || high < low || high > 599 {
        return Err(bad());
    }
    Ok(low..=high)
}

fn period<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<crate::logs::files::Period>, D::Error> {
    let text = String::deserialize(deserializer)?;
    crate::logs::files::Period::parse(&text).map(Some).map_err(serde::de::Error::custom)
}

fn size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let text = String::deserialize(deserializer)?;
    crate::logs::files::parse_size(&text).map(Some).map_err(serde::de::Error::custom)
}

impl Settings {
    /// Reads `ROOT/procgate.toml` if it exists; `types` are the Procfile's type names.
    pub fn load(root: &Path, types: &[&str]) -> Result<Settings, SettingsError> {
        let path = root.join(FILE_NAME);
        match crate::text_file::read(&path) {
            Ok(text) => Settings::parse(&path, &text, types),
            Err(err) if err.is_not_found() => Ok(Settings::default()),
            Err(err) => Err(SettingsError::Unreadable { path: path.display().to_string(), reason: err.to_string() }),
        }
    }

    pub fn parse(path: &Path, text: &str, types: &[&str]) -> Result<Settings, SettingsError> {
        let shown = path.display().to_string();
        let mut settings: Settings = toml::from_str(text).map_err(|err| SettingsError::Invalid {
            path: shown.clone(),
            line: err.span().map_or(1, |span| line_at(text, span.start)),
            message: match err.message().trim() {
                "" => "not valid TOML; write `key = value` lines under `[types.NAME]` headers".to_string(),
                message => message.to_string(),
            },
        })?;
        if settings.of(WEB_TYPE).proxy_version().is_some() {
            let line = line_of(text, WEB_TYPE, Some("proxy_protocol"));
            let message =
                "proxy_protocol applies to TCP types; web instances get the client address in X-Forwarded-For".into();
            return Err(SettingsError::Invalid { path: shown, line, message });
        }
        if let Some(name) = settings.types.keys().find(|name| !types.contains(&name.as_str())) {
            let line = line_of(text, name, None);
            let known = types.join(", ");
            return Err(SettingsError::UnknownType { path: shown, line, name: name.clone(), known });
        }
        for type_settings in settings.types.values_mut() {
            type_settings.trusted_proxies = match &type_settings.trusted_proxies_written {
                None => None,
                Some(written) => Some(cidrs(written).map_err(|(offset, err)| SettingsError::Invalid {
                    path: shown.clone(),
                    line: line_at(text, offset),
                    message: err.to_string(),
                })?),
            };
        }
        for (name, type_settings) in &settings.types {
            if let Some(key) = not_positive(type_settings) {
                let line = line_of(text, name, Some(key));
                let message = format!("`{key}` must be more than 0; leave it out for the default");
                return Err(SettingsError::Invalid { path: shown, line, message });
            }
        }
        if settings.logs.keep == Some(0) {
            let (line, message) =
                (line_in(text, "logs", Some("keep")), "`keep` must be more than 0; leave it out for 14".into());
            return Err(SettingsError::Invalid { path: shown, line, message });
        }
        for (name, type_settings) in &settings.types {
            if let Some(message) = cannot_sleep(name, type_settings) {
                let line = line_of(text, name, Some("sleep_after"));
                return Err(SettingsError::Invalid { path: shown, line, message });
            }
        }
        if let Some(accept_proxy) = settings.types.values().find_map(untrusting) {
            let message = NO_TRUSTED_PROXIES.to_string();
            return Err(SettingsError::Invalid { path: shown, line: line_at(text, accept_proxy), message });
        }
        Ok(settings)
    }

    /// The settings of `type_name` (defaults when the file does not mention it).
    pub fn of(&self, type_name: &str) -> TypeSettings {
        self.types.get(type_name).cloned().unwrap_or_default()
    }
}

/// The CIDR blocks written, or the first bad one's offset in the file and why.
fn cidrs(written: &[toml::Spanned<String>]) -> Result<Vec<Cidr>, (usize, crate::cidr::CidrError)> {
    written.iter().map(|block| block.get_ref().parse().map_err(|err| (block.span().start, err))).collect()
}

/// The first key set to zero (or, for a rate, not a positive number) where that means nothing:
/// an interval, a timeout, a threshold, a rate, a cap.
fn not_positive(settings: &TypeSettings) -> Option<&'static str> {
    let durations = [
        ("health_interval", settings.health_interval),
        ("health_timeout", settings.health_timeout),
        ("queue_timeout", settings.queue_timeout),
        ("restart_unhealthy_after", settings.restart_unhealthy_after),
        ("connect_timeout", settings.connect_timeout),
        ("head_timeout", settings.head_timeout),
        ("keepalive_timeout", settings.keepalive_timeout),
        ("request_timeout", settings.request_timeout),
        ("router_idle_timeout", settings.router_idle_timeout),
        ("idle_timeout", settings.idle_timeout.flatten()),
        ("tcp_keepalive", settings.tcp_keepalive.flatten()),
        ("sleep_after", settings.sleep_after.flatten()),
    ];
    let counts = [
        ("rise", settings.rise.map(|n| n as usize)),
        ("fall", settings.fall.map(|n| n as usize)),
        ("max_per_instance", settings.max_per_instance),
        ("max_per_type", settings.max_per_type),
        ("max_per_client", settings.max_per_client),
    ];
    let rates = [("rate", settings.rate), ("burst", settings.burst)];
    let zero_duration = durations.into_iter().find(|(_, d)| d.is_some_and(|d| d.is_zero()));
    let zero_count = counts.into_iter().find(|(_, n)| *n == Some(0));
    let bad_rate = rates.into_iter().find(|(_, r)| r.is_some_and(|r| !(r.is_finite() && r > 0.0)));
    zero_duration.map(|(key, _)| key).or(zero_count.map(|(key, _)| key)).or(bad_rate.map(|(key, _)| key))
}

/// Why a type's `sleep_after` cannot be: a type without a route has no client to wake it, and
/// one that keeps instances up (`min_instances`) never sleeps.
fn cannot_sleep(name: &str, settings: &TypeSettings) -> Option<String> {
    let after = crate::duration::format(settings.sleeps_after()?);
    let routed = name == WEB_TYPE || name == TCP_TYPE || settings.listen.is_some();
    if !routed {
        return Some(format!(
            "sleep_after = \"{after}\" on `{name}`, which the gateway does not serve: only a routed type sleeps, \
             since its next client wakes it; give it a `listen` address or remove sleep_after"
        ));
    }
    match settings.min_instances() {
        0 => None,
        min => Some(format!(
            "sleep_after = \"{after}\" with min_instances = {min} on `{name}`: a type that keeps {min} \
             instance(s) up never sleeps; remove one of the two (min_instances = 0 lets it sleep)"
        )),
    }
}

/// Where a type says `accept_proxy = true` without any `trusted_proxies` (the offset in the file).
fn untrusting(settings: &TypeSettings) -> Option<usize> {
    let listed = settings.trusted_proxies.as_ref().is_some_and(|list| !list.is_empty());
    match &settings.accept_proxy {
        Some(spanned) if *spanned.get_ref() && !listed => Some(spanned.span().start),
        _ => None,
    }
}

fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The 1-based line of the header `[types.NAME]` (`key` `None`), or of `key = …` in that table,
/// as they are usually written; 1 when written another way (dotted keys, inline tables).
fn line_of(text: &str, name: &str, key: Option<&str>) -> usize {
    line_in(text, &format!("types.{name}"), key)
}

/// The 1-based line of `key` in the table `table` (or of the table's header without a key).
fn line_in(text: &str, table: &str, key: Option<&str>) -> usize {
    let mut in_table = false;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            let header = header.split(']').next().unwrap_or_default();
            in_table = header.chars().filter(|c| !c.is_whitespace() && !matches!(c, '"' | '\'')).eq(table.chars());
            if in_table && key.is_none() {
                return index + 1;
            }
        } else if let Some(key) = key.filter(|_| in_table) {
            if line.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('=')) {
                return index + 1;
            }
        }
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, SettingsError> {
        Settings::parse(Path::new("procgate.toml"), text, &["tcp", "socket"])
    }

    /// `err` is a bad value on `line` whose message says `needle`.
    fn invalid_at(err: &SettingsError, line: usize, needle: &str) {
        assert!(
            matches!(err, SettingsError::Invalid { line: at, message, .. } if *at == line && message.contains(needle)),
            "{err}"
        );
    }

    #[test]
    fn reads_routes_and_probe_timings() {
        let text = "[types.socket]\nlisten = \"127.0.0.1:20004\"\nhealth_interval = \"500ms\"\nfall = 3\n";
        let socket = parse(text).unwrap().of("socket");
        assert_eq!(socket.listen, Some("127.0.0.1:20004".parse().unwrap()));
        assert_eq!(socket.health_interval, Some(Duration::from_millis(500)));
        assert_eq!(socket.fall, Some(3));
        assert!(parse(text).unwrap().of("tcp").listen.is_none());
    }

    #[test]
    fn status_ranges_are_checked() {
        assert_eq!(parse_statuses("200-399"), Ok(200..=399));
        assert_eq!(parse_statuses("204"), Ok(204..=204));
        assert!(parse_statuses("399-200").is_err());
        assert!(parse_statuses("ok").is_err());
        assert!(parse_statuses("99").is_err());
    }

    #[test]
    fn unknown_keys_bad_values_and_types_name_the_line() {
        let err = parse("[types.tcp]\nlisten = \"127.0.0.1:1\"\nlisten_on = 3\n").unwrap_err();
        invalid_at(&err, 3, "unknown field `listen_on`");
        let err = parse("[types.tcp]\nhealth_timeout = \"soon\"\n").unwrap_err();
        invalid_at(&err, 2, "invalid duration");
        let err = parse("\n[types.web]\nfall = 1\n").unwrap_err();
        assert_eq!(err.to_string(), "procgate.toml:2: [types.web] names no Procfile type; the types are: tcp, socket");
    }

    #[test]
    fn zero_intervals_timeouts_thresholds_rates_and_caps_name_their_key() {
        for (key, value) in [
            ("health_interval", "\"0s\""),
            ("head_timeout", "\"0ms\""),
            ("idle_timeout", "\"0s\""),
            ("fall", "0"),
            ("rate", "-1"),
            ("rate", "nan"),
            ("max_per_instance", "0"),
        ] {
            let err = parse(&format!("[types.tcp]\nrise = 1\n{key} = {value}\n")).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("procgate.toml:3: `{key}` must be more than 0; leave it out for the default"),
                "{key} = {value}"
            );
        }
        assert!(parse("[types.tcp]\nidle_timeout = \"off\"\nrate = 0.5\n").is_ok());
    }

    #[test]
    fn a_tcp_keepalive_linux_does_not_take_names_its_line_and_the_limit() {
        let err = parse("[types.tcp]\nrise = 1\ntcp_keepalive = \"10h\"\n").unwrap_err();
        assert!(matches!(&err, SettingsError::Invalid { line: 3, .. }), "{err}");
        assert!(err.to_string().contains("Linux takes at most 32767s"), "{err}");
        assert!(parse("[types.tcp]\ntcp_keepalive = \"9h\"\n").is_ok());
    }

    #[test]
    fn unknown_types_and_web_proxy_protocol_name_their_own_line() {
        // Both used to name the first line that merely contained the text: `[types.socket]` for
        // `[types.sock]`, and the tcp table's `proxy_protocol` for web's.
        let err = parse("[types.socket]\nrise = 1\n[types.sock]\n").unwrap_err();
        assert!(matches!(&err, SettingsError::UnknownType { line: 3, .. }), "{err}");
        let text = "[types.tcp]\nproxy_protocol = \"v2\"\n[ types.\"web\" ]\nproxy_protocol = \"v1\"\n";
        let err = Settings::parse(Path::new("procgate.toml"), text, &["tcp", "web"]).unwrap_err();
        assert!(matches!(&err, SettingsError::Invalid { line: 4, .. }), "{err}");
    }

    #[test]
    fn sleep_after_needs_a_route_and_no_instances_kept_up() {
        let parse = |text: &str| Settings::parse(Path::new("procgate.toml"), text, &["tcp", "web", "worker"]);
        let tcp = parse("[types.tcp]\nsleep_after = \"15m\"\n").unwrap().of("tcp");
        assert_eq!(tcp.sleeps_after(), Some(Duration::from_secs(900)));
        assert_eq!(parse("[types.web]\nsleep_after = \"off\"\n").unwrap().of("web").sleeps_after(), None);
        let listening = "[types.worker]\nlisten = \"127.0.0.1:0\"\nsleep_after = \"2s\"\n";
        assert!(parse(listening).is_ok(), "a type with its own route may sleep");
        let err = parse("[types.worker]\nrise = 1\nsleep_after = \"2s\"\n").unwrap_err();
        invalid_at(&err, 3, "only a routed type sleeps");
        let err = parse("[types.tcp]\nmin_instances = 2\nsleep_after = \"2s\"\n").unwrap_err();
        invalid_at(&err, 3, "min_instances = 2");
        assert!(parse("[types.tcp]\nmin_instances = 0\nsleep_after = \"2s\"\n").is_ok());
        let err = parse("[types.tcp]\nsleep_after = \"0s\"\n").unwrap_err();
        assert!(err.to_string().contains("`sleep_after` must be more than 0"), "{err}");
    }

    #[test]
    fn every_toml_error_says_something() {
        // A lone carriage return gave `procgate.toml:1: ` and nothing more.
        let err = parse("\r").unwrap_err();
        assert!(err.to_string().len() > "procgate.toml:1: ".len() + 10, "{err}");
    }

    #[test]
    fn trusted_proxies_are_read_checked_and_required_with_accept_proxy() {
        let tcp =
            parse("[types.tcp]\naccept_proxy = true\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n").unwrap().of("tcp");
        assert!(tcp.accepts_proxy());
        let blocks: Vec<String> = tcp.trusted_proxies.unwrap().iter().map(ToString::to_string).collect();
        assert_eq!(blocks, ["10.0.0.0/8", "::1/128"]);
        let err = parse("[types.tcp]\ntrusted_proxies = [\"10.0.0.0/8\",\n  \"fe80::/129\"]\n").unwrap_err();
        invalid_at(&err, 3, "at most 128");
        let err = parse("[types.socket]\n\naccept_proxy = true\n").unwrap_err();
        invalid_at(&err, 3, "needs trusted_proxies");
        let err = parse("[types.tcp]\naccept_proxy = true\ntrusted_proxies = []\n").unwrap_err();
        assert!(matches!(&err, SettingsError::Invalid { line: 2, .. }), "an empty list trusts no one: {err}");
        assert!(!parse("[types.tcp]\naccept_proxy = false\n").unwrap().of("tcp").accepts_proxy());
    }
}
