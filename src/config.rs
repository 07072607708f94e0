//! Flags, Procfile and env files turned into one validated [`Config`], before anything runs.

use crate::cli::{ListenArgs, PlanArgs, SourceArgs};
use crate::env::{EnvError, EnvFile, EnvMap};
use crate::formation::{self, Formation, FormationError, InstanceSpec};
use crate::procfile::{ProcessType, Procfile, ProcfileError, RELEASE, TCP_TYPE, WEB_TYPE};
use crate::settings::{Settings, SettingsError};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// The base port when neither `-p` nor a `PORT` variable sets one (foreman's).
pub const DEFAULT_BASE_PORT: u16 = 5000;

/// Where the `tcp` type is served unless a flag or procgate.toml says otherwise (Scalingo's port).
pub const DEFAULT_TCP_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 20003);

/// Where the HTTP router listens unless a flag or procgate.toml says otherwise.
pub const DEFAULT_WEB_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

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
    #[error("PORT={value} (from {origin}) is not a port number; set it to e.g. 5000 or pass -p/--port")]
    BadPort { value: String, origin: String },
    #[error("{path}: the app root is not a directory; pass an existing directory with -d/--root")]
    BadRoot { path: String },
}

/// The app's sources: root directory, Procfile, env files' values and procgate.toml.
#[derive(Debug, Clone)]
pub struct Sources {
    pub root: PathBuf,
    pub procfile: Procfile,
    pub env: EnvMap,
    pub settings: Settings,
}

impl Sources {
    /// Reads the Procfile and env files named by the flags (paths relative to the current
    /// directory; the default `.env` is in the app root).
    pub fn load(args: &SourceArgs) -> Result<Sources, ConfigError> {
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
        let env = crate::env::load(&env_files(args.env.as_deref(), &root))?;
        let types: Vec<&str> = procfile.types.iter().map(|t| t.name.as_str()).collect();
        let settings = Settings::load(&root, &types)?;
        Ok(Sources { root, procfile, env, settings })
    }

    /// Where the `tcp` type is served: the flag, else procgate.toml, else the default.
    pub fn tcp_listen(&self, listen: &ListenArgs) -> SocketAddr {
        listen.tcp_listen.or(self.settings.of(TCP_TYPE).listen).unwrap_or(DEFAULT_TCP_LISTEN)
    }

    /// Where the HTTP router serves `web`: the flag, else procgate.toml, else the default.
    pub fn web_listen(&self, listen: &ListenArgs) -> SocketAddr {
        listen.web_listen.or(self.settings.of(WEB_TYPE).listen).unwrap_or(DEFAULT_WEB_LISTEN)
    }

    /// The gateway's routes: `tcp` and `web` (when the Procfile has them; `web` over HTTP) and
    /// every other type with a `listen` in procgate.toml.
    pub fn routes(&self, listen: &ListenArgs) -> Result<Vec<RouteSpec>, ConfigError> {
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
    pub fn over(&self, started: &SourceArgs, started_root: &Path) -> SourceArgs {
        let moved = |path: &Path| match (&self.from, relative_to(path, started_root)) {
            (Some(from), Some(inside)) => from.join(inside),
            _ => path.to_path_buf(),
        };
        let env = started.env.as_deref().map(|list| {
            let files = list.split(',').map(str::trim).filter(|p| !p.is_empty());
            files.map(|p| moved(Path::new(p)).display().to_string()).collect::<Vec<_>>().join(",")
        });
        SourceArgs {
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

/// A validated plan: what `start` and `check` act on.
#[derive(Debug, Clone)]
pub struct Config {
    pub sources: Sources,
    pub formation: Formation,
    pub base_port: u16,
    pub plan: Vec<InstanceSpec>,
    /// The `release` command, when the Procfile has one and the formation keeps it.
    pub release: Option<ProcessType>,
    pub routes: Vec<RouteSpec>,
    pub tcp_listen: SocketAddr,
}

impl Config {
    /// Builds the plan; `only` restricts it to these types (as `procgate start web`).
    pub fn build(
        sources: Sources,
        plan: &PlanArgs,
        listen: &ListenArgs,
        only: &[String],
    ) -> Result<Config, ConfigError> {
        let spec = match (&plan.formation, only.is_empty()) {
            (Some(spec), true) => spec.clone(),
            (None, true) => "all=1".to_string(),
            (spec, false) => restrict(spec.as_deref(), only),
        };
        let formation = Formation::parse(&spec, &sources.procfile)?;
        let base_port = base_port(plan.port, &sources.env)?;
        let instances = formation::plan(&sources.procfile, &formation, base_port)?;
        let release = sources.procfile.get(RELEASE).filter(|_| formation.count(RELEASE) == 1).cloned();
        let routes = sources.routes(listen)?;
        let tcp_listen = sources.tcp_listen(listen);
        Ok(Config { sources, formation, base_port, plan: instances, release, routes, tcp_listen })
    }
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
    value.trim().parse().map_err(|_| ConfigError::BadPort { value, origin: origin.to_string() })
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
