//! `procgate start`: validate, check the ports, bind the gateway and the control socket, then run
//! the formation on the control plane's actors (Scheduler, HealthChecker, Balancer) while the
//! data plane serves. A successor started by an upgrade does the same with what the old main
//! handed over (`Takeover`): its listeners instead of binding, its instances adopted instead of
//! spawned, its state instead of `state.json`; it answers ready, and serves the control socket
//! once promoted.

use crate::anchor::Link;
use crate::app_state::{self, AppState};
use crate::cli::{Cycle, LogArgs, StartArgs};
use crate::config::{ConfigError, Release, RouteSpec};
use crate::control::{self, logs::LogSource, server::ControlServer, status_page::StatusPage, Platform};
use crate::formation;
use crate::gateway::budget::{self, Descriptors};
use crate::gateway::route::{Policy, Route};
use crate::gateway::{self, Gateway, GatewaySettings};
use crate::logs::files::{FileSettings, LogFiles, Period};
use crate::logs::history::{History, HISTORY_LINES};
use crate::logs::{Keeping, Output};
use crate::platform::balancer::Balancer;
use crate::platform::health::HealthChecker;
use crate::platform::lifecycle::Timing;
use crate::platform::rollout_actor::{Cycling, RolloutActor};
use crate::platform::scheduler::{Peers, Running, Scheduler, SchedulerConfig};
use crate::platform::spec::Templates;
use crate::process;
use crate::procfile::RELEASE;
use crate::sd_notify::Notifier;
use crate::signals::StopSignals;
use crate::upgrade::actor::{Handing, UpgradeActor};
use crate::upgrade::handover::{self, Answer, Takeover};
use crate::upgrade::listeners::{Listeners, Sources};
use crate::upgrade::takeover;
use actix::{Actor, AsyncContext};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::rc::Rc;
use std::sync::Arc;

/// The default cycle jitter, as a share of the period (Heroku: 216 min of 24 h).
const JITTER_SHARE: f64 = 0.15;

/// Log files kept unless `--log-keep` says otherwise: two weeks of daily files.
const DEFAULT_LOG_FILES: usize = 14;

/// The most bytes of one log file unless `--log-max-size` says otherwise.
const DEFAULT_LOG_FILE_BYTES: u64 = 100 << 20;

/// Runs until the formation is stopped, or handed over to a successor; returns the exit status
/// (README: "Exit status").
pub fn run(
    args: StartArgs,
    output: Output,
    anchor: Option<Link>,
    mut takeover: Option<Takeover>,
) -> anyhow::Result<i32> {
    let (release, asleep) = match &takeover {
        None => resume(Release::build(&args.source.paths(), &args.choices())?, args.fresh)?,
        Some(takeover) => carried_over(&args, &takeover.state)?,
    };
    let control_root = release.files.root.clone();
    check_min_instances(&release)?;
    let history = Arc::new(History::new(HISTORY_LINES));
    if let Some(takeover) = &mut takeover {
        history.prepend(std::mem::take(&mut takeover.history));
    }
    let files = log_files(&args.logs, &release);
    let log_dir = files.as_ref().map(|f| f.dir.clone());
    let open = |settings: FileSettings| {
        let path = settings.dir.display().to_string();
        LogFiles::open(settings).map_err(|err| ConfigError::LogDir { path, reason: err.to_string() })
    };
    let files = files.map(open).transpose()?;
    let full_timestamps = args.logs.timestamps == "full";
    output.keep(Keeping { full_timestamps, history: Some(history.clone()), files });
    let (sockets, crossings, answer_to) = match takeover {
        None => (bind_all(&args, &release)?, None, None),
        Some(Takeover { stream, listeners, instances, .. }) => {
            (taken_over(listeners, &release)?, Some(instances), Some(stream))
        }
    };
    let Sockets {
        control: control_socket,
        bound,
        routes: listeners,
        metrics: metrics_listener,
        status: status_listener,
    } = sockets;
    let status_token: Option<Arc<str>> = args.status_token.as_deref().map(Arc::from);
    let shown_root = control_root.canonicalize().unwrap_or_else(|_| control_root.clone()).display().to_string();
    let signals = StopSignals::register(anchor.clone())?;
    let (failures, failure_reports) = tokio::sync::mpsc::unbounded_channel();
    let (wakes, wake_calls) = tokio::sync::mpsc::unbounded_channel();
    let descriptors = descriptors();
    let route = |r: &RouteSpec| {
        let policy = Policy::of(&release.settings_of(&r.type_name), r.http);
        Arc::new(Route::new(r.type_name.clone(), policy, descriptors.route(), failures.clone(), wakes.clone()))
    };
    // A successor checks what it is handed before it serves anything.
    let templates = Templates::of(&release, &bound)?;
    let (instances, adopt) = match crossings {
        None => {
            let awake = release.plan.iter().filter(|i| !asleep.contains_key(&i.type_name));
            (awake.map(|i| templates.types[i.type_index].instance(i.number, Some(i.port))).collect(), None)
        }
        Some(crossings) => {
            let (slots, adoptees) = takeover::slots(&release.plan, &templates, &asleep, crossings)
                .map_err(|why| anyhow::anyhow!("{why}"))?;
            (slots, Some(adoptees))
        }
    };
    let routes: Vec<Arc<Route>> = bound.iter().map(route).collect();
    fit_names(&release, &output);
    let settings = gateway_settings(&args);
    let gateway = Gateway::start(routes.iter().cloned().zip(listeners).collect(), settings)?;
    let control_routes = routes.clone();
    let stopper = gateway.stopper();
    let copy = |l: &Option<TcpListener>| l.as_ref().map(TcpListener::try_clone).transpose();
    let (control, lock) = control_socket.try_clone()?;
    let sources = Sources {
        gateway: gateway.stopper(),
        control,
        lock,
        metrics: copy(&metrics_listener)?,
        status: copy(&status_listener)?,
    };
    tracing::info!("{}", summary(&release, &bound, adopt.is_some(), &gateway.relaying));
    let anchor_link = anchor.clone();
    let notifier = match anchor {
        Some(link) => Notifier::relayed(move |state| link.notify(state)),
        None => Notifier::from_env(),
    };
    let (cycling, notifier) = (cycling(&args), notifier.map(Rc::new));
    let scheduler = SchedulerConfig {
        running: Running { release, templates },
        bound,
        instances,
        timing: Timing { grace: args.grace, boot_timeout: args.boot_timeout, release_timeout: args.release_timeout },
        keeper_exe: process::own_binary(),
        output: output.clone(),
        close_gateway: Box::new(move || stopper.stop_accepting()),
        descriptors: descriptors.clone(),
        notifier: notifier.clone(),
        state_root: control_root,
        started_paths: args.source.paths(),
        routes: control_routes.clone(),
        wakes: Some(wake_calls),
        asleep,
        adopt,
    };
    let drain = upgrade_drain(cycling.as_ref(), args.grace);
    let (handoff, handed_off) = tokio::sync::watch::channel(false);
    let system = actix_rt::System::new();
    let code = system.block_on(async move {
        let balancer = Balancer::new(routes).start();
        let (exit, exited) = tokio::sync::oneshot::channel();
        let mut rollouts = None;
        let scheduler = Scheduler::create(|ctx| {
            let health = HealthChecker::new(ctx.address().recipient(), balancer.clone(), failure_reports).start();
            let rollout = RolloutActor::new(ctx.address(), cycling, notifier.clone()).start();
            rollouts = Some(rollout.clone());
            Scheduler::new(scheduler, Peers { balancer, health, rollouts: rollout.recipient() }, exit)
        });
        let rollouts = rollouts.expect("set as the Scheduler was created");
        let handing = Handing {
            scheduler: scheduler.clone(),
            handoff,
            drain,
            notifier: notifier.clone(),
            history: history.clone(),
        };
        let upgrades = UpgradeActor::new(anchor_link, rollouts.clone(), sources, handing).start();
        signals.forward_to(scheduler.clone(), rollouts.clone(), upgrades.clone());
        let logs = LogSource { history: history.clone(), dir: log_dir };
        let platform = Platform { scheduler: scheduler.clone(), rollouts, routes: control_routes, output, upgrades };
        if let Some(stream) = answer_to {
            // The Scheduler has adopted the instances once it answers.
            let instances = scheduler.send(crate::platform::scheduler::Status).await.unwrap_or_default();
            let up = instances.iter().filter(|i| i.state == "up").count();
            handover::answer(&stream, &Answer::Ready(format!("{up} instance(s) up")))?;
            if !tokio::task::spawn_blocking(move || handover::await_promotion(&stream)).await.unwrap_or(false) {
                tracing::info!("the old main process kept running: this new one ends");
                return Ok(0);
            }
            tracing::info!("this new main process is procgate's now");
            scheduler.do_send(crate::platform::scheduler::Promoted);
        }
        let until_handed_off = |serve| {
            let mut handed_off = handed_off.clone();
            tokio::task::spawn_local(async move {
                tokio::select! {
                    () = serve => {}
                    _ = handed_off.wait_for(|handed| *handed) => {}
                }
            })
        };
        if let Some(listener) = metrics_listener {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            until_handed_off(Box::pin(control::metrics::serve(listener, platform.clone())) as ServeFuture);
        }
        if let Some(listener) = status_listener {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let page = StatusPage { platform: platform.clone(), history, root: shown_root, token: status_token };
            until_handed_off(Box::pin(control::status_page::serve(listener, page)));
        }
        let server = ControlServer::spawn(control_socket, platform, logs)?;
        let hand_off = server.handing_off();
        let mut handing_off = handed_off.clone();
        tokio::task::spawn_local(async move {
            if handing_off.wait_for(|handed| *handed).await.is_ok() {
                hand_off();
            }
        });
        let code = exited.await.unwrap_or(1);
        match *handed_off.borrow() {
            true => server.hand_over().await,
            false => server.finish(code).await,
        }
        Ok::<i32, std::io::Error>(code)
    })?;
    drop(gateway);
    Ok(code)
}

/// A server of the metrics or the status page, until the main process hands over.
type ServeFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

/// The release a successor runs: the app's files read as `start` was told, with the formation,
/// the release in force and the types asleep the old main handed over (its `-m` and TYPEs were
/// for the formation it started with, since scaled maybe).
fn carried_over(args: &StartArgs, state: &AppState) -> anyhow::Result<(Release, BTreeMap<String, usize>)> {
    let choices = crate::config::Choices { formation: None, only: Vec::new(), ..args.choices() };
    let release = Release::build(&args.source.paths(), &choices)?.resumed(state.release.as_ref(), &state.formation)?;
    let asleep = asleep_types(&release, state);
    Ok((release, asleep))
}

/// What procgate serves on: bound at start, or handed over by an upgrade's old main process.
struct Sockets {
    control: control::server::Bound,
    /// The routes' addresses as bound, and each route's listeners (one per data-plane thread
    /// when handed over, else one: the gateway adds the others).
    bound: Vec<RouteSpec>,
    routes: Vec<Vec<TcpListener>>,
    metrics: Option<TcpListener>,
    status: Option<TcpListener>,
}

/// Binds everything `start` serves on, once the instances' ports are known free.
fn bind_all(args: &StartArgs, release: &Release) -> anyhow::Result<Sockets> {
    formation::check_ports_free(&release.plan)?;
    let control = control::server::bind(&release.files.root)?;
    let (bound, listeners) = bind(&release.routes)?;
    let routes = listeners.into_iter().map(|l| vec![l]).collect();
    let metrics = args.metrics_listen.map(|addr| bind_extra(addr, "metrics", "/metrics")).transpose()?;
    let status = args.status_listen.map(|addr| bind_extra(addr, "status page", "/")).transpose()?;
    Ok(Sockets { control, bound, routes, metrics, status })
}

/// A successor's sockets: the old main's, as it handed them over.
fn taken_over(handed: Listeners, release: &Release) -> anyhow::Result<Sockets> {
    let control = control::server::Bound::adopt(&release.files.root, handed.control, handed.lock)?;
    let (bound, routes) = handed_routes(&release.routes, handed.routes)?;
    Ok(Sockets { control, bound, routes, metrics: handed.metrics, status: handed.status })
}

/// The listeners a successor took, per route of its release (the first thread's first);
/// the routes' addresses as bound.
fn handed_routes(
    routes: &[RouteSpec],
    mut handed: Vec<(String, Vec<TcpListener>)>,
) -> anyhow::Result<(Vec<RouteSpec>, Vec<Vec<TcpListener>>)> {
    let mut bound = Vec::new();
    let mut listeners = Vec::new();
    for route in routes {
        let at = handed.iter().position(|(name, l)| *name == route.type_name && !l.is_empty()).ok_or_else(|| {
            anyhow::anyhow!(
                "the release routes {} on {}, which the running procgate does not",
                route.type_name,
                route.addr
            )
        })?;
        let (_, siblings) = handed.remove(at);
        let addr = siblings[0].local_addr()?;
        bound.push(RouteSpec { addr, ..route.clone() });
        listeners.push(siblings);
    }
    match handed.first() {
        Some((name, _)) => Err(anyhow::anyhow!("the running procgate routes {name}, which the release does not")),
        None => Ok((bound, listeners)),
    }
}

/// Widens the name column for every instance of the plan before the first line is printed.
fn fit_names(config: &Release, output: &Output) {
    for spec in &config.plan {
        output.fit(&spec.name());
    }
    if config.release.is_some() {
        output.fit(&format!("{RELEASE}.1"));
    }
}

/// The listener of the metrics (`--metrics-listen`) or the status page (`--status-listen`),
/// bound before anything starts.
fn bind_extra(addr: std::net::SocketAddr, what: &'static str, path: &str) -> Result<TcpListener, ConfigError> {
    let failed = |err: std::io::Error| ConfigError::ExtraListen { what, addr, reason: err.to_string() };
    let listener = TcpListener::bind(addr).map_err(failed)?;
    listener.set_nonblocking(true).map_err(failed)?;
    tracing::info!("{what} on http://{}{path}", listener.local_addr().map_err(failed)?);
    Ok(listener)
}

/// Binds every route's address before anything starts; returns the addresses actually bound.
fn bind(routes: &[RouteSpec]) -> Result<(Vec<RouteSpec>, Vec<TcpListener>), ConfigError> {
    let mut bound = Vec::new();
    let mut listeners = Vec::new();
    for route in routes {
        let failed = |err: std::io::Error| ConfigError::Listen {
            type_name: route.type_name.clone(),
            addr: route.addr,
            reason: err.to_string(),
        };
        let listener = gateway::listen(route.addr).map_err(failed)?;
        let addr = listener.local_addr().map_err(failed)?;
        bound.push(RouteSpec { addr, ..route.clone() });
        listeners.push(listener);
    }
    Ok((bound, listeners))
}

/// The release to run: what the last run in this root left (`app_state`: the formation after
/// its last `scale` or deploy, the files its last deploy put in force), unless `--fresh`; and
/// the types that start asleep, as it left them, with the count each wakes with (unless `-m`
/// or TYPEs chose the formation: then everything chosen runs).
fn resume(started: Release, fresh: bool) -> anyhow::Result<(Release, BTreeMap<String, usize>)> {
    let root = started.files.root.clone();
    let Some(state) = AppState::load(&root)?.filter(|_| !fresh) else { return Ok((started, BTreeMap::new())) };
    let chosen = started.choices.formation.is_some() || !started.choices.only.is_empty();
    let release = started.resumed(state.release.as_ref(), &state.formation)?;
    let asleep = match chosen {
        true => BTreeMap::new(),
        false => asleep_types(&release, &state),
    };
    let files = state
        .release
        .as_ref()
        .map_or(String::new(), |_| format!(" and the release in {}", release.files.root.display()));
    tracing::info!(
        "resuming what the last run left in {}: {}{files} (start --fresh ignores it)",
        app_state::path(&root).display(),
        release.formation
    );
    for (name, count) in &asleep {
        tracing::info!("{name} is asleep, as the last run left it: its next client wakes it ({count} instance(s))");
    }
    Ok((release, asleep))
}

/// The types `state` left asleep that still sleep in `release`, with the count each wakes with.
fn asleep_types(release: &Release, state: &AppState) -> BTreeMap<String, usize> {
    let sleeps = |name: &String| release.routes_type(name) && release.settings_of(name).sleeps_after().is_some();
    state
        .sleeping
        .iter()
        .filter(|name| sleeps(name))
        .map(|name| (name.clone(), release.formation.count(name)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Refuses a formation below a type's `min_instances` (procgate.toml).
fn check_min_instances(release: &Release) -> Result<(), ConfigError> {
    for (_, process) in formation::long_running(&release.files.procfile) {
        let (name, count) = (&process.name, release.formation.count(&process.name));
        let min = release.settings_of(name).min_instances();
        if count < min {
            return Err(ConfigError::BelowMinimum { type_name: name.clone(), count, min });
        }
    }
    Ok(())
}

/// Where the log files go: the flags, else `[logs]` in procgate.toml (its `dir` relative to the
/// app root), else nowhere.
fn log_files(flags: &LogArgs, release: &Release) -> Option<FileSettings> {
    let file = &release.files.settings.logs;
    let dir = flags.dir.clone().or_else(|| file.dir.as_ref().map(|dir| release.files.root.join(dir)))?;
    Some(FileSettings {
        dir,
        period: flags.rotation.or(file.rotation).unwrap_or(Period::Daily),
        keep: flags.keep.map(|n| n as usize).or(file.keep).unwrap_or(DEFAULT_LOG_FILES),
        max_bytes: flags.max_size.or(file.max_size).unwrap_or(DEFAULT_LOG_FILE_BYTES),
    })
}

/// Daily cycling as `--cycle` and `--cycle-jitter` ask (the jitter: 15 % of the period unless given).
pub fn cycling(args: &StartArgs) -> Option<Cycling> {
    match args.cycle {
        Cycle::Off => None,
        Cycle::Every(period) => {
            Some(Cycling { period, jitter: args.cycle_jitter.unwrap_or(period.mul_f64(JITTER_SHARE)) })
        }
    }
}

/// With cycling off, how long an old main process may go on relaying after an upgrade: a day,
/// the default cycle.
const DRAIN_WITHOUT_CYCLING: std::time::Duration = std::time::Duration::from_secs(86_400);

/// How long an old main process relays its connections after an upgrade: as long as their
/// instances may live on, so an upgrade cuts no connection that the daily cycle would have let
/// live. An instance is cycled at the latest a period plus its jitter after it started (its clock
/// goes on across upgrades); then its app closes its connections on SIGTERM, or is SIGKILLed
/// after the grace, and they end with it.
fn upgrade_drain(cycling: Option<&Cycling>, grace: std::time::Duration) -> std::time::Duration {
    cycling.map_or(DRAIN_WITHOUT_CYCLING, |c| c.period + c.jitter) + grace
}

/// Raises the open-files limit; returns the account of descriptors the routes share.
fn descriptors() -> Arc<Descriptors> {
    match process::nofile::raise() {
        Ok(limit) => {
            let descriptors = Descriptors::new(usize::try_from(limit).unwrap_or(usize::MAX));
            let (room, less) = (descriptors.room(), budget::PER_INSTANCE / 2);
            tracing::info!(
                "open files limit {limit}: room for about {room} proxied connections, {less} fewer per running instance"
            );
            descriptors
        }
        Err(err) => {
            tracing::warn!("cannot raise the open files limit: {err}");
            Descriptors::new(usize::MAX)
        }
    }
}

fn gateway_settings(args: &StartArgs) -> GatewaySettings {
    GatewaySettings {
        wait: args.wait,
        access_log: args.access_log.tcp,
        router_log: args.access_log.web && !args.no_access_log,
        relay: args.relay,
    }
}

/// `starting app in ./demo: release=1,tcp=2 on ports from 5000; gateway tcp://127.0.0.1:20003 for tcp;
/// relay io_uring`
/// (`taking over app in ...` for an upgrade's successor).
fn summary(config: &Release, bound: &[RouteSpec], taking_over: bool, relaying: &str) -> String {
    let root = config.files.root.display();
    let verb = if taking_over { "taking over" } else { "starting" };
    let mut text = format!("{verb} app in {root}: {} on ports from {}", config.formation, config.base_port);
    for route in bound {
        let what = if route.http { "router http" } else { "gateway tcp" };
        text.push_str(&format!("; {what}://{} for {}", route.addr, route.type_name));
    }
    if bound.iter().any(|route| !route.http) {
        text.push_str(&format!("; relay {relaying}"));
    }
    text
}
