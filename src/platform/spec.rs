//! What instances run: each type's template for a release (command, env, route, probe), the
//! spec of each instance made from it, and port allocation in a type's block.

use super::health::ProbeSettings;
use crate::config::{tcp_url, ConfigError, Release, RouteSpec};
use crate::env::{instance_env, EnvMap, PlatformVars};
use crate::formation::{self, PORTS_PER_TYPE};
use crate::procfile::{RELEASE, WEB_TYPE};
use crate::proxy_version::ProxyVersion;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// One process type of a release.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeTemplate {
    pub type_name: String,
    /// Position among the Procfile's long-running types: port block and colour.
    pub type_index: usize,
    pub command: String,
    /// The env files' values of its release.
    pub env: Arc<EnvMap>,
    /// `TCP_URL` for its instances.
    pub tcp_url: String,
    /// How the HealthChecker probes it, when the gateway routes it.
    pub probe: Option<ProbeSettings>,
    /// First port of its block; `None` for `release`, which has no port.
    pub block_start: Option<u16>,
    /// The PROXY header version the gateway writes to its instances.
    pub proxy_protocol: Option<ProxyVersion>,
    /// Its release's app directory, where its instances run (old ones stay in theirs).
    pub root: std::path::PathBuf,
    /// Its instances are cycled daily (`cycle = false` in procgate.toml: never).
    pub cycles: bool,
    /// It sleeps after this long without a connection (`sleep_after`, routed types only).
    pub sleep_after: Option<std::time::Duration>,
    /// The fewest instances it runs (`min_instances`).
    pub min_instances: usize,
}

/// One instance: `tcp.2` on port 5101, from a template.
#[derive(Debug, Clone)]
pub struct SlotSpec {
    pub name: String,
    pub number: usize,
    pub port: Option<u16>,
    pub template: Arc<TypeTemplate>,
}

/// A release's templates: its long-running types (Procfile order) and its `release` step.
#[derive(Debug, Clone)]
pub struct Templates {
    pub types: Vec<Arc<TypeTemplate>>,
    pub release_step: Option<Arc<TypeTemplate>>,
}

impl Templates {
    /// The templates of `release`'s types, against the routes actually bound (`bound`); a
    /// routed type without a listener is an error (procgate binds its routes at start).
    pub fn of(release: &Release, bound: &[RouteSpec]) -> Result<Templates, ConfigError> {
        let files = &release.files;
        let env = Arc::new(files.env.clone());
        let template = |name: &str, type_index: usize, command: &str, block_start: Option<u16>| {
            let routed = release.routes_type(name) && name != RELEASE;
            let settings = release.settings_of(name);
            Arc::new(TypeTemplate {
                type_name: name.to_string(),
                type_index,
                command: command.to_string(),
                env: env.clone(),
                tcp_url: tcp_url(name, bound, release.tcp_listen),
                probe: routed.then(|| ProbeSettings::for_type(&settings, name == WEB_TYPE)),
                block_start,
                proxy_protocol: settings.proxy_version().filter(|_| routed),
                root: files.root.clone(),
                cycles: settings.cycle.unwrap_or(true),
                sleep_after: settings.sleeps_after().filter(|_| routed),
                min_instances: settings.min_instances(),
            })
        };
        let mut types = Vec::new();
        for (type_index, process) in formation::long_running(&files.procfile) {
            if let Some(route) = release.routes.iter().find(|r| r.type_name == process.name) {
                if !bound.iter().any(|r| r.type_name == process.name) {
                    let reason = "this procgate has no listener for it; restart procgate to serve a new route";
                    let (type_name, addr) = (process.name.clone(), route.addr);
                    return Err(ConfigError::Listen { type_name, addr, reason: reason.to_string() });
                }
            }
            let block = u32::from(release.base_port) + u32::from(PORTS_PER_TYPE) * type_index as u32;
            types.push(template(&process.name, type_index, &process.command, u16::try_from(block).ok()));
        }
        let steps = files.procfile.types.len();
        let release_step = release.release.as_ref().map(|step| template(RELEASE, steps, &step.command, None));
        Ok(Templates { types, release_step })
    }

    /// The template of `type_name`.
    pub fn get(&self, type_name: &str) -> Option<&Arc<TypeTemplate>> {
        self.types.iter().find(|t| t.type_name == type_name)
    }
}

impl TypeTemplate {
    pub fn instance(self: &Arc<Self>, number: usize, port: Option<u16>) -> SlotSpec {
        SlotSpec { name: format!("{}.{number}", self.type_name), number, port, template: self.clone() }
    }
}

impl SlotSpec {
    /// Where the instance listens: 127.0.0.1:PORT.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port.unwrap_or(0)))
    }

    pub fn routed(&self) -> bool {
        self.template.probe.is_some()
    }

    /// Its full environment: the release's env files, then the platform's variables.
    pub fn env(&self) -> EnvMap {
        let vars = PlatformVars {
            dyno: self.name.clone(),
            port: self.port,
            tcp_url: self.template.tcp_url.clone(),
            proxy_protocol: self.template.proxy_protocol.map(ProxyVersion::as_str),
        };
        instance_env(&self.template.env, &vars)
    }
}

/// The port for a new instance `number` of a type: its plan port if nothing uses it, else the
/// lowest free one of the block (`in_use` says which ports live instances hold), else, when the
/// block is full (a rollout of more than 50 instances has old and new at once), any free port.
pub fn port_for(block_start: u16, number: usize, in_use: impl Fn(u16) -> bool) -> Option<u16> {
    let usable = |port: u16| !in_use(port) && crate::formation::port_is_free(port);
    let planned = block_start.checked_add(u16::try_from(number.checked_sub(1)?).ok()?);
    if let Some(port) = planned.filter(|p| *p < block_start.saturating_add(PORTS_PER_TYPE) && usable(*p)) {
        return Some(port);
    }
    let in_block = (block_start..block_start.saturating_add(PORTS_PER_TYPE)).find(|p| usable(*p));
    in_block.or_else(|| (0..ANY_PORT_TRIES).find_map(|_| any_free_port().filter(|p| !in_use(*p))))
}

/// Tries at a port the system picks, past the type's block.
const ANY_PORT_TRIES: usize = 8;

/// A port free on 127.0.0.1 now, as the system picks one.
fn any_free_port() -> Option<u16> {
    let listener = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).ok()?;
    listener.local_addr().ok().map(|addr| addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A held port followed by two free ones.
    fn held_then_two_free() -> (std::net::TcpListener, u16) {
        loop {
            let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let base = held.local_addr().unwrap().port();
            if base < u16::MAX - 2
                && crate::formation::port_is_free(base + 1)
                && crate::formation::port_is_free(base + 2)
            {
                return (held, base);
            }
        }
    }

    #[test]
    fn a_new_instance_takes_its_plan_port_else_the_lowest_free_one() {
        let (_held, base) = held_then_two_free();
        assert_eq!(port_for(base, 2, |_| false), Some(base + 1));
        assert_eq!(port_for(base, 2, |p| p == base + 1), Some(base + 2), "the plan port is used, the held base too");
        assert_eq!(port_for(base, 1, |_| false), Some(base + 1), "the plan port is held by another process");
    }

    #[test]
    fn a_full_block_gives_a_free_port_past_it() {
        let (_held, base) = held_then_two_free();
        let in_block = |p: u16| (base..base.saturating_add(PORTS_PER_TYPE)).contains(&p);
        let port = port_for(base, 1, in_block).expect("a free port");
        assert!(!in_block(port) && crate::formation::port_is_free(port), "{port}");
    }
}
