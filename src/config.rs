//! One place builds a release: the app's files (Procfile, env files, procgate.toml) and the
//! operator's choices (formation, base port, listen addresses, timeout flags) turned into one
//! validated [`Release`], before anything runs. `start`, `check`, `deploy`, `test-shutdown` and
//! `export` all build theirs here, from plain values (the commands map their flags into them).

use crate::env::{EnvError, EnvFile, EnvMap, EnvValues};
use crate::formation::{self, Formation, FormationError, InstanceSpec};
use crate::procfile::{ProcessType, Procfile, ProcfileError, RELEASE, TCP_TYPE, WEB_TYPE};
use crate::settings::{Settings, SettingsError, TypeSettings};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The base port when neither `-p` nor a `PORT` variable sets one (foreman's).
pub const DEFAULT_BASE_PORT: u16 = 5000;

/// Where the `tcp` type is served unless a flag or procgate.toml says otherwise (Scalingo's port).
pub const DEFAULT_TCP_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 20003);

/// Where the HTTP router listens unless a flag or procgate.toml says otherwise.
pub const DEFAULT_WEB_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

/// A listen address as the flags and `procgate.toml` take it: an IP and a port.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!(
            "`{text}` is not an IP:PORT address: write e.g. 127.0.0.1:20003 (every interface: 0.0.0.0:20003, \
             IPv6: [::1]:20003); host names such as localhost are not taken"
        )
    })
}

/// Everything wrong with the input; all of them exit with status 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Procfile(#[from] ProcfileError),
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Formation(#[from] FormationError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("the `{first}` and `{second}` types both listen on {addr}; give each routed type its own address")]
    SharedListen { first: String, second: String, addr: SocketAddr },
    #[error("cannot listen on {addr} for the `{type_name}` type: {reason}; pass another --tcp-listen or set [types.{type_name}] listen in procgate.toml")]
    Listen { type_name: String, addr: SocketAddr, reason: String },
    #[error("{instance} would get port {port}, where the `{type_name}` type's route listens ({addr}); choose another base port with -p/--port, or another address for the route")]
    RouteOnAnInstancePort { instance: String, port: u16, type_name: String, addr: SocketAddr },
    #[error(
        "PORT={value} (from {origin}) is not a port number from 1 to 65535; set it to e.g. 5000 or pass -p/--port"
    )]
    BadPort { value: String, origin: String },
    #[error("{path}: the app root is not a directory; pass an existing directory with -d/--root")]
    BadRoot { path: String },
    #[error("cannot listen on {addr} for the {what}: {reason}; pass another address")]
    ExtraListen { what: &'static str, addr: SocketAddr, reason: String },
    #[error(
        "{path}: cannot keep log files there: {reason}; pass another --log-dir or set [logs] dir in procgate.toml"
    )]
    LogDir { path: String, reason: String },
    #[error("the formation gives `{type_name}` {count} instance(s), fewer than its min_instances = {min} in procgate.toml; run it with -m {type_name}={min} or more, or lower min_instances")]
    BelowMinimum { type_name: String, count: usize, min: usize },
}

/// Where an app's files are (`-f`, `-e`, `-d`); `None`: the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppPaths {
    pub procfile: Option<PathBuf>,
    /// Env files, comma separated, later ones win.
    pub env: Option<String>,
    pub root: Option<PathBuf>,
}

/// The gateway's public addresses chosen on the command line (they win over procgate.toml).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Listen {
    pub tcp: Option<SocketAddr>,
    pub web: Option<SocketAddr>,
}

/// Route timeouts chosen on the command line, for every route (they win over procgate.toml).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeoutOverrides {
    pub connect: Option<Duration>,
    pub head: Option<Duration>,
    pub keepalive: Option<Duration>,
    pub response: Option<Duration>,
    pub response_idle: Option<Duration>,
    /// `Some(None)`: `off`.
    pub idle: Option<Option<Duration>>,
    pub tcp_keepalive: Option<Option<Duration>>,
}

impl TimeoutOverrides {
    /// `settings` with these overrides applied.
    fn over(&self, mut settings: TypeSettings) -> TypeSettings {
        settings.connect_timeout = self.connect.or(settings.connect_timeout);
        settings.head_timeout = self.head.or(settings.head_timeout);
        settings.keepalive_timeout = self.keepalive.or(settings.keepalive_timeout);
        settings.request_timeout = self.response.or(settings.request_timeout);
        settings.router_idle_timeout = self.response_idle.or(settings.router_idle_timeout);
        settings.idle_timeout = self.idle.or(settings.idle_timeout);
        settings.tcp_keepalive = self.tcp_keepalive.or(settings.tcp_keepalive);
        settings
    }
}

/// What the operator chose beyond the app's files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choices {
    /// `-m web=2,tcp=3` [default: all=1].
    pub formation: Option<String>,
    /// `-p`: the base port [default: PORT from the env files, else 5000].
    pub port: Option<u16>,
    /// `start web worker`: only these types run.
    pub only: Vec<String>,
    pub listen: Listen,
    pub timeouts: TimeoutOverrides,
}

/// The app's files, read: root directory, Procfile, env files' values and procgate.toml.
#[derive(Debug, Clone)]
pub struct AppFiles {
    pub root: PathBuf,
    pub procfile: Procfile,
    /// The env files' values, later files winning.
    pub env: EnvMap,
    /// Each env file read, in order, with its own values (`export` tells secret files apart).
    pub env_files: Vec<EnvValues>,
    pub settings: Settings,
}

impl AppFiles {
    /// Reads the Procfile and env files (paths relative to the current directory; the default
    /// `.env` is in the app root) and procgate.toml.
    pub fn read(args: &AppPaths) -> Result<AppFiles, ConfigError> {
        let procfile_path = match (&args.procfile, &args.root) {
            (Some(path), _) => path.clone(),
            (None, Some(root)) => root.join("Procfile"),
            (None, None) => PathBuf::from("Procfile"),
        };
        let root = match &args.root {
            Some(root) => root.clone(),
            None => parent_dir(&procfile_path),
        };
        let procfile = Procfile::load(&procfile_path)?;
        if !root.is_dir() {
            return Err(ConfigError::BadRoot { path: root.display().to_string() });
        }
        let env_files = crate::env::load_each(&env_files(args.env.as_deref(), &root))?;
        let env = crate::env::merged(&env_files);
        let types: Vec<&str> = procfile.types.iter().map(|t| t.name.as_str()).collect();
        let settings = Settings::load(&root, &types)?;
        Ok(AppFiles { root, procfile, env, env_files, settings })
    }

    /// Where the `tcp` type is served: the flag, else procgate.toml, else the default.
    pub fn tcp_listen(&self, listen: &Listen) -> SocketAddr {
        listen.tcp.or(self.settings.of(TCP_TYPE).listen).unwrap_or(DEFAULT_TCP_LISTEN)
    }

    /// Where the HTTP router serves `web`: the flag, else procgate.toml, else the default.
    fn web_listen(&self, listen: &Listen) -> SocketAddr {
        listen.web.or(self.settings.of(WEB_TYPE).listen).unwrap_or(DEFAULT_WEB_LISTEN)
    }

    /// The gateway's routes: `tcp` and `web` (when the Procfile has them; `web` over HTTP) and
    /// every other type with a `listen` in procgate.toml.
    fn routes(&self, listen: &Listen) -> Result<Vec<RouteSpec>, ConfigError> {
        let mut routes: Vec<RouteSpec> = Vec::new();
        for (_, process) in formation::long_running(&self.procfile) {
            let listen = match process.name.as_str() {
                TCP_TYPE => Some(self.tcp_listen(listen)),
                WEB_TYPE => Some(self.web_listen(listen)),
                name => self.settings.of(name).listen,
            };
            let Some(addr) = listen else { continue };
            if let Some(other) = routes.iter().find(|r| r.addr == addr && addr.port() != 0) {
                let (first, second) = (other.type_name.clone(), process.name.clone());
                return Err(ConfigError::SharedListen { first, second, addr });
            }
            let http = process.name == WEB_TYPE;
            routes.push(RouteSpec { type_name: process.name.clone(), addr, http });
        }
        Ok(routes)
    }
}

/// Where `deploy` reads a new release; what it leaves out comes from how the app was started.
/// Paths are absolute (the `deploy` command resolves them in its own directory).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReleaseSource {
    /// The new release's app directory [default: the running one's].
    pub from: Option<PathBuf>,
    pub procfile: Option<PathBuf>,
    /// Env files, comma separated, as `-e`.
    pub env: Option<String>,
}

impl ReleaseSource {
    /// The sources of the new release: given paths win; the started ones are kept, moved into
    /// the new directory when they were inside the old one (`-e config/prod.env` stays
    /// `config/prod.env` of the new release, `-e /etc/app.env` stays as it is).
    pub fn over(&self, started: &AppPaths, started_root: &Path) -> AppPaths {
        let moved = |path: &Path| match (&self.from, relative_to(path, started_root)) {
            (Some(from), Some(inside)) => from.join(inside),
            _ => path.to_path_buf(),
        };
        let env = started.env.as_deref().map(|list| {
            let files = list.split(',').map(str::trim).filter(|p| !p.is_empty());
            files.map(|p| moved(Path::new(p)).display().to_string()).collect::<Vec<_>>().join(",")
        });
        AppPaths {
            procfile: self.procfile.clone().or_else(|| started.procfile.as_deref().map(moved)),
            env: self.env.clone().or(env),
            root: self.from.clone().or_else(|| started.root.clone()),
        }
    }
}

/// `path` relative to `root` when it is inside it (both resolved on disk).
fn relative_to(path: &Path, root: &Path) -> Option<PathBuf> {
    let (path, root) = (path.canonicalize().ok()?, root.canonicalize().ok()?);
    path.strip_prefix(root).ok().map(Path::to_path_buf)
}

/// A process type the gateway serves, and the address its clients connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub type_name: String,
    pub addr: SocketAddr,
    /// Served by the HTTP router (request by request) rather than the TCP gateway.
    pub http: bool,
}

/// `TCP_URL` for an instance of `type_name`: its own route's address when its type is routed,
/// else the `tcp` route's (`routes` holds the addresses actually bound).
pub fn tcp_url(type_name: &str, routes: &[RouteSpec], tcp_listen: SocketAddr) -> String {
    let own = routes.iter().find(|r| r.type_name == type_name && !r.http);
    let tcp = routes.iter().find(|r| r.type_name == TCP_TYPE);
    format!("tcp://{}", own.or(tcp).map_or(tcp_listen, |r| r.addr))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn env_files(flag: Option<&str>, root: &Path) -> Vec<EnvFile> {
    match flag {
        None => vec![EnvFile { path: root.join(".env"), required: false }],
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| EnvFile { path: PathBuf::from(p), required: true })
            .collect(),
    }
}

/// A validated release: what `start`, `check` and `deploy` act on.
#[derive(Debug, Clone)]
pub struct Release {
    pub files: AppFiles,
    pub formation: Formation,
    pub base_port: u16,
    pub plan: Vec<InstanceSpec>,
    /// The `release` command, when the Procfile has one and the formation keeps it.
    pub release: Option<ProcessType>,
    pub routes: Vec<RouteSpec>,
    pub tcp_listen: SocketAddr,
    /// Where its files were read from, and the operator's choices: a deploy starts from them.
    pub paths: AppPaths,
    pub choices: Choices,
}

impl Release {
    /// Reads the app's files and builds the release from them.
    pub fn build(paths: &AppPaths, choices: &Choices) -> Result<Release, ConfigError> {
        Release::of(AppFiles::read(paths)?, paths, choices)
    }

    /// The release a deploy rolls out: `source`'s paths over the running ones, on the running
    /// base port and listen addresses, with the same timeout flags; every type at 1 (the deploy
    /// plan keeps the running formation).
    pub fn next(&self, source: &ReleaseSource) -> Result<Release, ConfigError> {
        let paths = source.over(&self.paths, &self.files.root);
        let choices = Choices { formation: None, port: Some(self.base_port), only: Vec::new(), ..self.choices.clone() };
        Release::build(&paths, &choices)
    }

    /// The release a last run left (`app_state`): the files a deploy put in force (`paths`, if
    /// one did), with the recorded `formation` unless the command line chose one; a type the
    /// record does not know (added to the Procfile since) starts with one instance, as a
    /// deploy would start it.
    pub fn resumed(
        self,
        paths: Option<&AppPaths>,
        formation: &BTreeMap<String, usize>,
    ) -> Result<Release, ConfigError> {
        let resumed = match paths {
            Some(paths) => Release::build(paths, &self.choices)?,
            None => self,
        };
        if resumed.choices.formation.is_some() || !resumed.choices.only.is_empty() {
            return Ok(resumed);
        }
        let types = formation::long_running(&resumed.files.procfile).map(|(_, t)| t.name.as_str());
        let spec: Vec<String> =
            types.map(|name| format!("{name}={}", formation.get(name).copied().unwrap_or(1))).collect();
        let choices = Choices { formation: Some(spec.join(",")), ..resumed.choices.clone() };
        Release::of(resumed.files, &resumed.paths, &choices)
    }

    /// The formation running now, to record: `counts` per type, 0 for the types it lacks.
    pub fn formation_now(&self, counts: &BTreeMap<String, usize>) -> BTreeMap<String, usize> {
        let types = formation::long_running(&self.files.procfile).map(|(_, t)| t.name.clone());
        types.map(|name| (name.clone(), counts.get(&name).copied().unwrap_or(0))).collect()
    }

    fn of(files: AppFiles, paths: &AppPaths, choices: &Choices) -> Result<Release, ConfigError> {
        let spec = match (&choices.formation, choices.only.is_empty()) {
            (Some(spec), true) => spec.clone(),
            (None, true) => "all=1".to_string(),
            (spec, false) => restrict(spec.as_deref(), &choices.only),
        };
        let formation = Formation::parse(&spec, &files.procfile)?;
        let base_port = base_port(choices.port, &files.env)?;
        let plan = formation::plan(&files.procfile, &formation, base_port)?;
        let release = files.procfile.get(RELEASE).filter(|_| formation.count(RELEASE) == 1).cloned();
        let routes = files.routes(&choices.listen)?;
        routes_apart_from(&plan, &routes)?;
        let tcp_listen = files.tcp_listen(&choices.listen);
        let (paths, choices) = (paths.clone(), choices.clone());
        Ok(Release { files, formation, base_port, plan, release, routes, tcp_listen, paths, choices })
    }

    /// What a type runs with: its procgate.toml section with the command line's overrides.
    pub fn settings_of(&self, type_name: &str) -> TypeSettings {
        self.choices.timeouts.over(self.files.settings.of(type_name))
    }

    /// Whether the gateway routes `type_name`.
    pub fn routes_type(&self, type_name: &str) -> bool {
        self.routes.iter().any(|r| r.type_name == type_name)
    }
}

/// Fails when a route listens on the port an instance gets: the route would take it first and
/// the instance could never bind it (port 0, any free port, is never one of the plan's).
fn routes_apart_from(plan: &[formation::InstanceSpec], routes: &[RouteSpec]) -> Result<(), ConfigError> {
    for route in routes {
        if let Some(instance) = plan.iter().find(|i| i.port == route.addr.port()) {
            return Err(ConfigError::RouteOnAnInstancePort {
                instance: instance.name(),
                port: instance.port,
                type_name: route.type_name.clone(),
                addr: route.addr,
            });
        }
    }
    Ok(())
}

/// `start web worker`: the given types at their formation count (1 by default), others at 0.
fn restrict(formation: Option<&str>, only: &[String]) -> String {
    let mut spec: Vec<String> = only.iter().map(|t| format!("{t}=1")).collect();
    if let Some(formation) = formation {
        let listed = formation.split(',').filter(|item| only.iter().any(|t| item.trim().starts_with(&format!("{t}="))));
        spec.extend(listed.map(str::to_string));
    }
    spec.join(",")
}

/// `-p`, then `PORT` in the env files, then `PORT` in procgate's environment, then 5000.
fn base_port(flag: Option<u16>, files: &EnvMap) -> Result<u16, ConfigError> {
    if let Some(port) = flag {
        return Ok(port);
    }
    let (value, origin) = match (files.get("PORT"), std::env::var("PORT")) {
        (Some(value), _) => (value.clone(), "the env files"),
        (None, Ok(value)) => (value, "the environment"),
        (None, Err(_)) => return Ok(DEFAULT_BASE_PORT),
    };
    match value.trim().parse() {
        Ok(0) | Err(_) => Err(ConfigError::BadPort { value, origin: origin.to_string() }),
        Ok(port) => Ok(port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restrict_keeps_counts_of_the_named_types_only() {
        let only = ["web".to_string()];
        assert_eq!(restrict(None, &only), "web=1");
        assert_eq!(restrict(Some("web=3,worker=2"), &only), "web=1,web=3");
    }

    #[test]
    fn port_flag_beats_the_env_file() {
        let files: EnvMap = [("PORT".to_string(), "9000".to_string())].into();
        assert_eq!(base_port(Some(4000), &files).unwrap(), 4000);
        assert_eq!(base_port(None, &files).unwrap(), 9000);
        let bad: EnvMap = [("PORT".to_string(), "abc".to_string())].into();
        assert!(base_port(None, &bad).unwrap_err().to_string().contains("PORT=abc"));
    }

    #[test]
    fn the_root_defaults_to_the_procfiles_directory() {
        assert_eq!(parent_dir(Path::new("Procfile")), PathBuf::from("."));
        assert_eq!(parent_dir(Path::new("app/Procfile")), PathBuf::from("app"));
    }
}
