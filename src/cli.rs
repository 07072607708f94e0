//! The command line: clap definitions of every subcommand and its flags.

use crate::config::{AppPaths, Choices, Listen, TimeoutOverrides};
use crate::gateway::Relay;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The signals procgate reacts to, for `--version` and `start --help` (src/signals.rs).
macro_rules! signals {
    () => {
        "Signals: SIGINT and SIGTERM stop gracefully (instances leave routing, get SIGTERM, and \
         SIGKILL after --grace); a second one SIGKILLs every instance at once. SIGHUP reloads: a \
         deploy of the same root. SIGUSR2 upgrades to the binary procgate was started from (see \
         `procgate upgrade`). SIGPIPE is ignored; other signals keep their default action."
    };
}
pub const SIGNALS: &str = signals!();

#[derive(Debug, Parser)]
#[command(
    name = "procgate",
    version,
    long_version = concat!(env!("CARGO_PKG_VERSION"), "\n", signals!()),
    about = "Run a Procfile like a mini-PaaS: supervised instances, a TCP gateway and an HTTP router"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the formation in the foreground until SIGINT or SIGTERM (a second one skips the grace); SIGHUP reloads.
    #[command(after_help = SIGNALS)]
    Start(Box<StartArgs>),
    /// Validate the Procfile, env files and formation; print types, ports and env names.
    Check(CheckArgs),
    /// Run a one-off command with the app's environment; its exit code is passed through.
    Run(RunArgs),
    /// List the instances of the procgate running in the app root.
    Ps(PsArgs),
    /// The lines the running procgate kept, oldest first; `-f` follows new ones.
    Logs(LogsArgs),
    /// Change the formation of the running procgate: `scale tcp=3 web=1`.
    Scale(ScaleArgs),
    /// Replace instances with zero downtime (all types, a type, or one instance); returns when done.
    Restart(RestartArgs),
    /// Roll out a new release (re-read Procfile, env files, procgate.toml) with zero downtime.
    Deploy(DeployArgs),
    /// Wake a sleeping type (`sleep_after`) now; returns once its first instance is in routing.
    Wake(WakeArgs),
    /// Stop the procgate running in the app root, as SIGINT would; returns when it is done.
    Stop(RootArgs),
    /// Replace the running procgate with a new binary without restarting an app or dropping a connection.
    Upgrade(UpgradeArgs),
    /// Print a systemd unit that runs `procgate start` with these flags (Type=notify, KillMode=mixed, ExecReload)
    #[command(name = "systemd-unit")]
    SystemdUnit(SystemdUnitArgs),
    /// Write the app as Kubernetes manifests or systemd units, from the files and flags `start` takes.
    Export(ExportArgs),
    /// Check that a type's app shuts down gracefully: one instance, held clients, SIGTERM, a graded checklist.
    #[command(name = "test-shutdown")]
    TestShutdown(TestShutdownArgs),
    /// Internal: the protocols this binary speaks, asked before an upgrade hands over to it.
    #[command(name = "__upgrade-check", hide = true)]
    UpgradeCheck,
    /// Internal: the per-instance keeper that owns a process group (see process::keeper).
    #[command(name = "__keeper", hide = true)]
    Keeper {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
}

/// Where the app is: Procfile, env files and root directory.
#[derive(Debug, Args, Clone, Default)]
pub struct SourceArgs {
    /// Procfile to run [default: ROOT/Procfile with -d, else ./Procfile]
    #[arg(short = 'f', long = "procfile")]
    pub procfile: Option<PathBuf>,
    /// Env files, comma separated, later ones win [default: ROOT/.env, may be absent]
    #[arg(short = 'e', long = "env")]
    pub env: Option<String>,
    /// App directory, where commands run [default: the Procfile's directory]
    #[arg(short = 'd', long = "root")]
    pub root: Option<PathBuf>,
}

/// Which instances run and on which ports.
#[derive(Debug, Args, Clone, Default)]
pub struct PlanArgs {
    /// Instances per type, e.g. `web=2,tcp=3`; unlisted types get 0 [default: all=1]
    #[arg(short = 'm', long = "formation")]
    pub formation: Option<String>,
    /// Base port: type k instance i gets PORT+100*k+(i-1) [default: PORT from the env files, else 5000]
    #[arg(short = 'p', long = "port", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
}

/// The gateway's public addresses.
#[derive(Debug, Args, Clone)]
pub struct ListenArgs {
    /// Address of the TCP gateway for the `tcp` type (port 0: any free port); instances get it as
    /// TCP_URL [default: [types.tcp] listen in procgate.toml, else 127.0.0.1:20003]
    #[arg(long = "tcp-listen", value_parser = crate::config::parse_listen)]
    pub tcp_listen: Option<SocketAddr>,
    /// Address of the HTTP router for the `web` type (port 0: any free port)
    /// [default: [types.web] listen in procgate.toml, else 127.0.0.1:8080]
    #[arg(long = "web-listen", value_parser = crate::config::parse_listen)]
    pub web_listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub plan: PlanArgs,
    #[command(flatten)]
    pub listen: ListenArgs,
    /// Time between SIGTERM and SIGKILL when stopping an instance
    #[arg(long, default_value = "30s", value_parser = crate::duration::parse)]
    pub grace: Duration,
    /// How long a routed instance may take to accept its first connection before R10
    #[arg(long = "boot-timeout", default_value = "60s", value_parser = positive)]
    pub boot_timeout: Duration,
    /// How long a `release` step may run before it is SIGKILLed (R20), failing the start or the deploy
    #[arg(long = "release-timeout", default_value = "10m", value_parser = positive)]
    pub release_timeout: Duration,
    /// How long a client waits for a healthy instance before H10
    #[arg(long, default_value = "30s", value_parser = crate::duration::parse)]
    pub wait: Duration,
    #[command(flatten)]
    pub timeouts: TimeoutArgs,
    #[command(flatten)]
    pub logs: LogArgs,
    /// Also serve Prometheus metrics at http://ADDR/metrics (they are always at GET /metrics on
    /// the control socket) [default: off]
    #[arg(long = "metrics-listen", value_name = "ADDR", value_parser = crate::config::parse_listen)]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve the live status page at http://ADDR/ (alone: 127.0.0.1:8090) [default: off]
    #[arg(long = "status-listen", value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8090",
          value_parser = crate::config::parse_listen)]
    pub status_listen: Option<SocketAddr>,
    /// The token the status page's restart and scale buttons need (better from the environment:
    /// a command line shows in `ps`) [default: the buttons are refused]
    #[arg(long = "status-token", value_name = "TOKEN", env = "PROCGATE_STATUS_TOKEN", hide_env_values = true)]
    pub status_token: Option<String>,
    /// Which routes log a line per connection (tcp: 202 and 203) or request (web: Heroku's router
    /// line): `tcp`, `web`, `tcp,web` (alone: `--access-log`) or `none`
    #[arg(long = "access-log", value_name = "ROUTES", num_args = 0..=1, default_value = "web",
          default_missing_value = "tcp,web", value_parser = parse_access_log)]
    pub access_log: AccessLog,
    /// No router line per HTTP request: the old spelling of leaving `web` out of --access-log
    #[arg(long = "no-access-log")]
    pub no_access_log: bool,
    /// How the TCP gateway relays bytes: `io_uring` (fewer system calls under load; refused where
    /// the kernel does not allow it), `epoll`, or `auto`: io_uring where it can, else epoll
    #[arg(long, value_name = "HOW", default_value = "auto", value_parser = parse_relay)]
    pub relay: Relay,
    /// Replace each instance after this long (daily cycling, as Heroku), or `off`
    #[arg(long, default_value = "24h", value_parser = parse_cycle)]
    pub cycle: Cycle,
    /// Most random delay added to each instance's cycle [default: 15% of --cycle]
    #[arg(long = "cycle-jitter", value_parser = crate::duration::parse)]
    pub cycle_jitter: Option<Duration>,
    /// Start from the flags alone, ignoring the formation and release the last run recorded in
    /// .procgate/state.json (by `scale` and `deploy`)
    #[arg(long)]
    pub fresh: bool,
    /// Run only these types (others get 0)
    pub types: Vec<String>,
}

/// How long the gateway and the router wait on peers, for every route; each also has a
/// `procgate.toml` key per type (`connect_timeout`...), which these flags override.
#[derive(Debug, Args, Clone, Default)]
pub struct TimeoutArgs {
    /// How long the connect to an instance may take before another is tried [default: 1s]
    #[arg(long = "connect-timeout", value_parser = positive)]
    pub connect: Option<Duration>,
    /// How long a client may take to send a request head, from its first byte, before 408 and
    /// H28 (router) [default: 30s]
    #[arg(long = "head-timeout", value_parser = positive)]
    pub head: Option<Duration>,
    /// How long a kept-alive client connection may wait for its next request (router) [default: 90s]
    #[arg(long = "keepalive-timeout", value_parser = positive)]
    pub keepalive: Option<Duration>,
    /// How long the router waits for an instance's response head before H12 [default: 30s]
    #[arg(long = "request-timeout", value_parser = positive)]
    pub response: Option<Duration>,
    /// How long an instance may send nothing in the middle of a response before H15 [default: 55s]
    #[arg(long = "router-idle-timeout", value_parser = positive)]
    pub response_idle: Option<Duration>,
    /// Close proxied TCP connections idle (no byte either way) this long, or `off` [default: off]
    #[arg(long = "idle-timeout", value_parser = parse_off)]
    pub idle: Option<OrOff>,
    /// TCP keepalive probes on client connections after this long without a byte (a vanished
    /// client is noticed a minute later), or `off` [default: 60s]
    #[arg(long = "tcp-keepalive", value_parser = parse_tcp_keepalive)]
    pub tcp_keepalive: Option<OrOff>,
}

impl SourceArgs {
    pub fn paths(&self) -> AppPaths {
        AppPaths { procfile: self.procfile.clone(), env: self.env.clone(), root: self.root.clone() }
    }
}

impl ListenArgs {
    pub fn listen(&self) -> Listen {
        Listen { tcp: self.tcp_listen, web: self.web_listen }
    }
}

impl TimeoutArgs {
    pub fn overrides(&self) -> TimeoutOverrides {
        let off = |flag: Option<OrOff>| flag.map(|OrOff(value)| value);
        TimeoutOverrides {
            connect: self.connect,
            head: self.head,
            keepalive: self.keepalive,
            response: self.response,
            response_idle: self.response_idle,
            idle: off(self.idle),
            tcp_keepalive: off(self.tcp_keepalive),
        }
    }
}

impl StartArgs {
    /// The operator's choices, as the release builder takes them.
    pub fn choices(&self) -> Choices {
        Choices {
            formation: self.plan.formation.clone(),
            port: self.plan.port,
            only: self.types.clone(),
            listen: self.listen.listen(),
            timeouts: self.timeouts.overrides(),
        }
    }
}

/// Where `start` keeps its lines; each flag wins over its `[logs]` key in procgate.toml.
#[derive(Debug, Args, Clone, Default)]
pub struct LogArgs {
    /// Also write every line, with its full time, to files in DIR (relative to the current
    /// directory) [default: [logs] dir in procgate.toml, else no files]
    #[arg(long = "log-dir", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Log files kept, the current one included [default: 14]
    #[arg(long = "log-keep", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub keep: Option<u64>,
    /// A new log file each `daily` or `hourly` (UTC) [default: daily]
    #[arg(long = "log-rotation", value_name = "PERIOD", value_parser = crate::logs::files::Period::parse)]
    pub rotation: Option<crate::logs::files::Period>,
    /// The most bytes of one log file (`100MB`, `1GB`); past it, lines are dropped and counted
    /// until the next file [default: 100MB]
    #[arg(long = "log-max-size", value_name = "SIZE", value_parser = crate::logs::files::parse_size)]
    pub max_size: Option<u64>,
    /// The time of each line on the terminal: `short` (HH:MM:SS) or `full` (date, time, zone)
    #[arg(long = "timestamps", value_name = "FORM", default_value = "short", value_parser = ["short", "full"])]
    pub timestamps: String,
}

/// A duration, or `off` (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrOff(pub Option<Duration>);

fn parse_off(text: &str) -> Result<OrOff, String> {
    match crate::duration::parse_or_off(text)? {
        Some(zero) if zero.is_zero() => Err("0 would mean at once; give a duration, or `off`".to_string()),
        duration => Ok(OrOff(duration)),
    }
}

/// `--tcp-keepalive`: `off`, or a duration Linux takes as `TCP_KEEPIDLE`.
fn parse_tcp_keepalive(text: &str) -> Result<OrOff, String> {
    match parse_off(text)? {
        OrOff(Some(idle)) => crate::gateway::timeouts::check_tcp_keepalive(idle).map(|idle| OrOff(Some(idle))),
        off => Ok(off),
    }
}

/// A duration of more than 0 (an interval or a timeout of 0 means nothing).
fn positive(text: &str) -> Result<Duration, String> {
    match crate::duration::parse(text)? {
        zero if zero.is_zero() => Err("it must be more than 0".to_string()),
        duration => Ok(duration),
    }
}

/// `--access-log`: which kinds of route log each connection or request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessLog {
    /// A `202` and a `203` line per proxied TCP connection.
    pub tcp: bool,
    /// Heroku's router line per HTTP request.
    pub web: bool,
}

fn parse_access_log(text: &str) -> Result<AccessLog, String> {
    let mut log = AccessLog { tcp: false, web: false };
    for word in text.split(',').map(str::trim) {
        match word {
            "tcp" => log.tcp = true,
            "web" | "http" => log.web = true,
            "none" | "off" => {}
            other => return Err(format!("`{other}` is not a route kind; give `tcp`, `web`, `tcp,web` or `none`")),
        }
    }
    Ok(log)
}

fn parse_relay(text: &str) -> Result<Relay, String> {
    match text {
        "auto" => Ok(Relay::Auto),
        "io_uring" | "io-uring" | "uring" => Ok(Relay::IoUring),
        "epoll" => Ok(Relay::Epoll),
        other => Err(format!("`{other}` is not a relay; give `auto`, `io_uring` or `epoll`")),
    }
}

/// `--cycle`: a period, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cycle {
    Off,
    Every(Duration),
}

fn parse_cycle(text: &str) -> Result<Cycle, String> {
    match text {
        "off" => Ok(Cycle::Off),
        _ => positive(text).map(Cycle::Every),
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub plan: PlanArgs,
    #[command(flatten)]
    pub listen: ListenArgs,
}

/// Which running procgate to talk to.
#[derive(Debug, Args, Clone)]
pub struct RootArgs {
    /// The app directory of the running procgate (its socket is ROOT/.procgate/control.sock)
    #[arg(short = 'd', long = "root", default_value = ".")]
    pub root: PathBuf,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// Print `{"instances":[...]}` instead of a table
    #[arg(long)]
    pub json: bool,
    /// Refresh every --interval until procgate stops (in place on a terminal)
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Time between two refreshes of --watch
    #[arg(long, default_value = "2s", value_parser = positive)]
    pub interval: Duration,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// Then print each new line as it comes, until Ctrl-C or procgate stops
    #[arg(short = 'f', long = "follow")]
    pub follow: bool,
    /// Only lines no older than this (`10m`, `2h`) [default: every line kept]
    #[arg(long, value_parser = crate::duration::parse)]
    pub since: Option<Duration>,
    /// One JSON object per line: time, source, instance, type, pid, code, text
    #[arg(long)]
    pub json: bool,
    /// Only these types (`web`), instances (`web.1`) or `system` [default: every line]
    #[arg(value_name = "TYPE|INSTANCE")]
    pub targets: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// TYPE=COUNT pairs
    #[arg(required = true)]
    pub changes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// The new binary (default: the path the running procgate was started from, where a package upgrade puts the new one)
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WakeArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// The type to wake (`tcp`)
    #[arg(value_name = "TYPE")]
    pub type_name: String,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// A type (`tcp`) or an instance (`tcp.2`) [default: every instance]
    pub target: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The app directory of the running procgate, as in every command (`-a/--app`, the old
    /// spelling, still works; the new release's directory is `--from`)
    #[arg(short = 'd', long = "root", short_alias = 'a', alias = "app", default_value = ".")]
    pub root: PathBuf,
    /// The new release's app directory [default: the running one's]
    #[arg(long = "from", value_name = "DIR")]
    pub from: Option<PathBuf>,
    /// The new release's Procfile [default: the one procgate was started with, in --from DIR if
    /// it was inside the app directory]
    #[arg(short = 'f', long = "procfile")]
    pub procfile: Option<PathBuf>,
    /// The new release's env files, comma separated [default: those procgate was started with,
    /// in --from DIR if they were inside the app directory]
    #[arg(short = 'e', long = "env")]
    pub env: Option<String>,
    /// Print the deploy's plan (types added, replaced, kept at 0, removed; what changed) and change nothing
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct SystemdUnitArgs {
    /// The flags `start` gets (`-d /srv/app -m web=2 --grace 20s`); relative paths are from here
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub start: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub target: ExportTarget,
}

#[derive(Debug, Subcommand)]
pub enum ExportTarget {
    /// Kubernetes manifests: a Deployment per type, Services, an Ingress, the env as a ConfigMap
    /// and a Secret, the release step as a Job, daily cycling as a CronJob
    Kubernetes(Box<KubernetesArgs>),
    /// systemd units: a target and a templated service per type (instances TYPE@N), and the
    /// release step as a oneshot service
    Systemd(Box<SystemdExportArgs>),
}

/// What every export takes: where it writes, the app's name, and `start`'s flags.
#[derive(Debug, Args)]
pub struct ExportCommon {
    /// Write one file per object (Kubernetes) or unit (systemd) into DIR, created if missing,
    /// instead of printing them; a file there not written by an export is never overwritten
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// The app's name in the objects' or units' names and labels [default: the app directory's name]
    #[arg(long = "name")]
    pub name: Option<String>,
    /// The flags of `start` (-d, -f, -e, -m, -p, --grace, --cycle...): a start command line
    /// exports as it is; those with no equivalent (log files, metrics, status page) are ignored
    #[command(flatten)]
    pub start: StartArgs,
}

#[derive(Debug, Args)]
pub struct KubernetesArgs {
    /// The container image that holds the app and its tools
    #[arg(long)]
    pub image: String,
    /// The app directory inside the image, where its commands run [default: the app root's
    /// absolute path, as procgate runs them]
    #[arg(long = "workdir", value_name = "PATH")]
    pub workdir: Option<String>,
    /// Write the values of the secret env files (named *.secret.env, .env.secret, secrets.env...)
    /// into a Secret (file mode 0600 with -o); without it, the Deployments refer to a Secret you create
    #[arg(long = "include-secrets")]
    pub include_secrets: bool,
    /// The image the daily-cycling CronJob runs `kubectl rollout restart` in (it needs kubectl and bash)
    #[arg(long = "kubectl-image", value_name = "IMAGE", default_value = "bitnami/kubectl:latest")]
    pub kubectl_image: String,
    #[command(flatten)]
    pub common: ExportCommon,
}

#[derive(Debug, Args)]
pub struct SystemdExportArgs {
    #[command(flatten)]
    pub common: ExportCommon,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub listen: ListenArgs,
    /// The command; one argument runs through `bash -c` (`sh` without bash), several are executed as given
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TestShutdownArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub listen: ListenArgs,
    /// The type to test (`tcp`, `web`, `socket`...)
    #[arg(value_name = "TYPE")]
    pub type_name: String,
    /// Client connections held on the instance at SIGTERM
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(0..=10_000))]
    pub clients: u16,
    /// A line each TCP client sends once connected (a command of your protocol) [default: none]
    #[arg(long)]
    pub send: Option<String>,
    /// For web: a request your app answers slowly, sent just before SIGTERM; it must still be answered
    #[arg(long = "slow-path", value_parser = crate::http_check::check_request_path)]
    pub slow_path: Option<String>,
    /// Time between SIGTERM and SIGKILL
    #[arg(long, default_value = "30s", value_parser = crate::duration::parse)]
    pub grace: Duration,
    /// How long the instance may take to answer before the test gives up
    #[arg(long = "boot-timeout", default_value = "60s", value_parser = positive)]
    pub boot_timeout: Duration,
    /// The instance's PORT [default: a free port]
    #[arg(short = 'p', long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Print the checklist as JSON on stdout (the app's output and procgate's lines go to stderr)
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access_log(args: &[&str]) -> (AccessLog, bool) {
        let cli = Cli::try_parse_from([&["procgate", "start"], args].concat()).unwrap();
        let Command::Start(start) = cli.command else { unreachable!() };
        (start.access_log, start.no_access_log)
    }

    #[test]
    fn access_log_is_web_by_default_and_both_alone_as_the_old_flag_was() {
        assert_eq!(access_log(&[]).0, AccessLog { tcp: false, web: true });
        assert_eq!(access_log(&["--access-log"]).0, AccessLog { tcp: true, web: true });
        assert_eq!(access_log(&["--access-log", "tcp"]).0, AccessLog { tcp: true, web: false });
        assert_eq!(access_log(&["--access-log=none"]).0, AccessLog { tcp: false, web: false });
        assert_eq!(access_log(&["--no-access-log"]), (AccessLog { tcp: false, web: true }, true));
        let bad = Cli::try_parse_from(["procgate", "start", "--access-log", "udp"]).unwrap_err().to_string();
        assert!(bad.contains("`udp` is not a route kind"), "{bad}");
    }

    #[test]
    fn zero_timeouts_and_cycles_are_refused_and_off_is_off() {
        for args in
            [&["--boot-timeout", "0s"][..], &["--head-timeout", "0"], &["--cycle", "0s"], &["--idle-timeout", "0ms"]]
        {
            let err = Cli::try_parse_from([&["procgate", "start"], args].concat()).unwrap_err().to_string();
            assert!(err.contains("more than 0") || err.contains("at once"), "{args:?}: {err}");
        }
        let cli = Cli::try_parse_from(["procgate", "start", "--tcp-keepalive", "off", "--grace", "0s"]).unwrap();
        let Command::Start(start) = cli.command else { unreachable!() };
        assert_eq!(start.timeouts.tcp_keepalive, Some(OrOff(None)));
    }

    #[test]
    fn deploy_takes_root_for_the_running_app_and_from_for_the_release() {
        let cli = Cli::try_parse_from(["procgate", "deploy", "-a", "app", "--from", "v2", "-e", "a.env"]).unwrap();
        let Command::Deploy(deploy) = cli.command else { unreachable!() };
        assert_eq!((deploy.root, deploy.from), (PathBuf::from("app"), Some(PathBuf::from("v2"))));
        assert_eq!(deploy.env.as_deref(), Some("a.env"));
    }
}
