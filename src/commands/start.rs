//! `procgate start`: validate, check the ports, bind the gateway and the control socket, then run
//! the formation on the control plane's actors (Scheduler, HealthChecker, Balancer) while the
//! data plane serves.

use crate::cli::{Cycle, ListenArgs, OrOff, PlanArgs, StartArgs, TimeoutArgs};
use crate::config::{tcp_url, Config, ConfigError, ReleaseSource, RouteSpec, Sources};
use crate::control::{self, server::ControlServer};
use crate::formation::{self, PORTS_PER_TYPE};
use crate::gateway::budget::{self, Descriptors};
use crate::gateway::clients::ClientLimits;
use crate::gateway::route::{Limits, Policy, Route};
use crate::gateway::timeouts::Timeouts;
use crate::gateway::{self, Gateway, GatewaySettings};
use crate::logs::Output;
use crate::platform::balancer::Balancer;
use crate::platform::health::{HealthChecker, ProbeSettings};
use crate::platform::lifecycle::Timing;
use crate::platform::scheduler::{Cycling, Release, ReleaseLoader, Scheduler, SchedulerConfig};
use crate::platform::spec::TypeTemplate;
use crate::process;
use crate::procfile::{RELEASE, WEB_TYPE};
use crate::settings::TypeSettings;
use crate::signals::StopSignals;
use actix::{Actor, AsyncContext};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

/// The default cycle jitter, as a share of the period (Heroku: 216 min of 24 h).
const JITTER_SHARE: f64 = 0.15;

/// Runs until the formation is stopped; returns the exit status (README: "Exit status").
pub fn run(args: StartArgs, output: Output) -> anyhow::Result<i32> {
    let sources = Sources::load(&args.source)?;
    let config = Config::build(sources, &args.plan, &args.listen, &args.types)?;
    formation::check_ports_free(&config.plan)?;
    let control_socket = control::server::bind(&config.sources.root)?;
    let (bound, listeners) = bind(&config.routes)?;
    let signals = StopSignals::register()?;
    let (failures, failure_reports) = tokio::sync::mpsc::unbounded_channel();
    let descriptors = descriptors();
    let route = |r: &RouteSpec| {
        let policy = policy(&config, r, &args.timeouts);
        Arc::new(Route::new(r.type_name.clone(), policy, descriptors.route(), failures.clone()))
    };
    let routes: Vec<Arc<Route>> = bound.iter().map(route).collect();
    fit_names(&config, &output);
    let settings = gateway_settings(&args);
    let gateway = Gateway::start(routes.iter().cloned().zip(listeners).collect(), settings)?;
    let control_routes = routes.clone();
    let stopper = gateway.stopper();
    let release = release_of(&config, &bound)?;
    let instances =
        config.plan.iter().map(|i| release.templates[i.type_index].instance(i.number, Some(i.port))).collect();
    let scheduler = SchedulerConfig {
        release,
        instances,
        timing: Timing { grace: args.grace, boot_timeout: args.boot_timeout, release_timeout: args.release_timeout },
        cycling: cycling(&args),
        keeper_exe: process::own_binary(),
        output,
        close_gateway: Box::new(move || stopper.stop_accepting()),
        descriptors: descriptors.clone(),
        load_release: release_loader(&args, config.sources.root.clone(), config.base_port, bound.clone()),
    };
    tracing::info!("{}", summary(&config, &bound));
    let system = actix_rt::System::new();
    let code = system.block_on(async move {
        let balancer = Balancer::new(routes).start();
        let (exit, exited) = tokio::sync::oneshot::channel();
        let scheduler = Scheduler::create(|ctx| {
            let health = HealthChecker::new(ctx.address().recipient(), balancer.clone(), failure_reports).start();
            Scheduler::new(scheduler, (balancer, health), exit)
        });
        signals.forward_to(scheduler.clone());
        let server = ControlServer::spawn(control_socket, scheduler, control_routes)?;
        let code = exited.await.unwrap_or(1);
        server.finish(code).await;
        Ok::<i32, std::io::Error>(code)
    })?;
    drop(gateway);
    Ok(code)
}

/// Widens the name column for every instance of the plan before the first line is printed.
fn fit_names(config: &Config, output: &Output) {
    for spec in &config.plan {
        output.fit(&spec.name());
    }
    if config.release.is_some() {
        output.fit(&format!("{RELEASE}.1"));
    }
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

/// The templates of a validated config's types, against the routes actually bound.
fn release_of(config: &Config, bound: &[RouteSpec]) -> Result<Release, ConfigError> {
    let sources = &config.sources;
    let env = Arc::new(sources.env.clone());
    let mut templates = Vec::new();
    for (type_index, process) in formation::long_running(&sources.procfile) {
        let routed = config.routes.iter().any(|r| r.type_name == process.name);
        if routed && !bound.iter().any(|r| r.type_name == process.name) {
            let addr = config.routes.iter().find(|r| r.type_name == process.name).map_or(config.tcp_listen, |r| r.addr);
            let reason = "this procgate has no listener for it; restart procgate to serve a new route".to_string();
            return Err(ConfigError::Listen { type_name: process.name.clone(), addr, reason });
        }
        let block = u32::from(config.base_port) + u32::from(PORTS_PER_TYPE) * type_index as u32;
        templates.push(Arc::new(TypeTemplate {
            type_name: process.name.clone(),
            type_index,
            command: process.command.clone(),
            env: env.clone(),
            tcp_url: tcp_url(&process.name, bound, config.tcp_listen),
            probe: routed
                .then(|| ProbeSettings::for_type(&sources.settings.of(&process.name), process.name == WEB_TYPE)),
            block_start: u16::try_from(block).ok(),
            proxy_protocol: sources.settings.of(&process.name).proxy_version().filter(|_| routed),
            root: sources.root.clone(),
        }));
    }
    let release_step = config.release.as_ref().map(|release| {
        Arc::new(TypeTemplate {
            type_name: RELEASE.to_string(),
            type_index: sources.procfile.types.len(),
            command: release.command.clone(),
            env: env.clone(),
            tcp_url: tcp_url(RELEASE, bound, config.tcp_listen),
            probe: None,
            block_start: None,
            proxy_protocol: None,
            root: sources.root.clone(),
        })
    });
    Ok(Release { templates, release_step })
}

/// How `deploy` reads a new release: the flags it was given over those of `start` (README:
/// `deploy`), the running base port.
fn release_loader(args: &StartArgs, root: PathBuf, base_port: u16, bound: Vec<RouteSpec>) -> ReleaseLoader {
    let (started, listen) = (args.source.clone(), args.listen.clone());
    Box::new(move |deploy: ReleaseSource| {
        let source = deploy.over(&started, &root);
        let plan = PlanArgs { formation: None, port: Some(base_port) };
        let load = || -> Result<Release, ConfigError> {
            let config = Config::build(Sources::load(&source)?, &plan, &listen_for(&listen, &bound), &[])?;
            release_of(&config, &bound)
        };
        load().map_err(|err| err.to_string())
    })
}

/// The flags as they were, but the `tcp` and `web` routes where they were actually bound.
fn listen_for(listen: &ListenArgs, bound: &[RouteSpec]) -> ListenArgs {
    let bound_at = |type_name: &str| bound.iter().find(|r| r.type_name == type_name).map(|r| r.addr);
    ListenArgs {
        tcp_listen: bound_at(crate::procfile::TCP_TYPE).or(listen.tcp_listen),
        web_listen: bound_at(crate::procfile::WEB_TYPE).or(listen.web_listen),
    }
}

/// How a route treats its clients, from procgate.toml and the flags.
fn policy(config: &Config, route: &RouteSpec, flags: &TimeoutArgs) -> Policy {
    let settings = config.sources.settings.of(&route.type_name);
    let limits = Limits {
        per_instance: settings.max_per_instance,
        per_type: settings.max_per_type,
        backlog: settings.backlog.unwrap_or(0),
        queue_timeout: settings.queue_timeout,
    };
    let clients = ClientLimits { rate: settings.rate, burst: settings.burst, max_open: settings.max_per_client };
    let proxy_protocol = settings.proxy_version();
    let (accept_proxy, trusted_proxies) =
        (settings.accepts_proxy(), settings.trusted_proxies.clone().unwrap_or_default());
    let timeouts = timeouts(&settings, flags);
    Policy { http: route.http, limits, clients, proxy_protocol, accept_proxy, trusted_proxies, timeouts }
}

/// A route's timeouts: the flag, else the type's key in procgate.toml, else the default.
fn timeouts(settings: &TypeSettings, flags: &TimeoutArgs) -> Timeouts {
    let default = Timeouts::default();
    let off = |flag: Option<OrOff>| flag.map(|OrOff(value)| value);
    Timeouts {
        connect: flags.connect.or(settings.connect_timeout).unwrap_or(default.connect),
        head: flags.head.or(settings.head_timeout).unwrap_or(default.head),
        keepalive: flags.keepalive.or(settings.keepalive_timeout).unwrap_or(default.keepalive),
        response: flags.response.or(settings.request_timeout).unwrap_or(default.response),
        response_idle: flags.response_idle.or(settings.router_idle_timeout).unwrap_or(default.response_idle),
        idle: off(flags.idle).or(settings.idle_timeout).unwrap_or(default.idle),
        tcp_keepalive: off(flags.tcp_keepalive).or(settings.tcp_keepalive).unwrap_or(default.tcp_keepalive),
    }
}

fn cycling(args: &StartArgs) -> Option<Cycling> {
    match args.cycle {
        Cycle::Off => None,
        Cycle::Every(period) => {
            Some(Cycling { period, jitter: args.cycle_jitter.unwrap_or(period.mul_f64(JITTER_SHARE)) })
        }
    }
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
    }
}

/// A type's probe from procgate.toml: an HTTP check for `web`, a TCP handshake for the others.
/// `starting app in ./demo: release=1,tcp=2 on ports from 5000; gateway tcp://127.0.0.1:20003 for tcp`.
fn summary(config: &Config, bound: &[RouteSpec]) -> String {
    let root = config.sources.root.display();
    let mut text = format!("starting app in {root}: {} on ports from {}", config.formation, config.base_port);
    for route in bound {
        let what = if route.http { "router http" } else { "gateway tcp" };
        text.push_str(&format!("; {what}://{} for {}", route.addr, route.type_name));
    }
    text
}
