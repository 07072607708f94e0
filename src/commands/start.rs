//! `procgate start`: validate, check the ports, bind the gateway, then run the formation on the
//! control plane's actors (Scheduler, HealthChecker, Balancer) while the data plane serves.

use crate::cli::StartArgs;
use crate::config::{tcp_url, Config, ConfigError, RouteSpec, Sources};
use crate::control::{self, server::ControlServer};
use crate::env::PlatformVars;
use crate::formation::{self, InstanceSpec};
use crate::gateway::route::Route;
use crate::gateway::{self, Gateway, GatewaySettings};
use crate::logs::Output;
use crate::platform::balancer::Balancer;
use crate::platform::health::{HealthChecker, ProbeSettings};
use crate::platform::lifecycle::Timing;
use crate::platform::scheduler::{Scheduler, SchedulerConfig, SlotSpec};
use crate::procfile::RELEASE;
use crate::signals::StopSignals;
use actix::{Actor, AsyncContext};
use std::net::TcpListener;
use std::sync::Arc;

/// Descriptors procgate keeps for itself (logs, keepers' pipes...) when counting connections.
const RESERVED_FILES: u64 = 64;

/// Runs until the formation is stopped; returns the exit status (README: "Exit status").
pub fn run(args: StartArgs, output: Output) -> anyhow::Result<i32> {
    let sources = Sources::load(&args.source)?;
    let config = Config::build(sources, &args.plan, &args.listen, &args.types)?;
    formation::check_ports_free(&config.plan)?;
    let (control_listener, control_path) = control::server::bind(&config.sources.root)?;
    let (bound, listeners) = bind(&config.routes)?;
    let signals = StopSignals::register()?;
    let (failures, failure_reports) = tokio::sync::mpsc::unbounded_channel();
    let routes: Vec<Arc<Route>> =
        bound.iter().map(|r| Arc::new(Route::new(r.type_name.clone(), failures.clone()))).collect();
    let gateway = Gateway::start(routes.iter().cloned().zip(listeners).collect(), gateway_settings(&args))?;
    let stopper = gateway.stopper();
    let scheduler = SchedulerConfig {
        slots: slot_specs(&config, &bound),
        has_release: config.release.is_some(),
        env: config.sources.env.clone(),
        root: config.sources.root.clone(),
        timing: Timing { grace: args.grace, boot_timeout: args.boot_timeout },
        keeper_exe: std::env::current_exe()?,
        output,
        close_gateway: Box::new(move || stopper.stop_accepting()),
    };
    for slot in &scheduler.slots {
        scheduler.output.fit(&slot.name);
    }
    report_open_files_limit();
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
        let server = ControlServer::spawn(control_listener, control_path, scheduler)?;
        let code = exited.await.unwrap_or(1);
        server.finish(code).await;
        Ok::<i32, std::io::Error>(code)
    })?;
    drop(gateway);
    Ok(code)
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
        let listener = TcpListener::bind(route.addr).map_err(failed)?;
        let addr = listener.local_addr().map_err(failed)?;
        bound.push(RouteSpec { type_name: route.type_name.clone(), addr });
        listeners.push(listener);
    }
    Ok((bound, listeners))
}

fn report_open_files_limit() {
    match gateway::raise_open_files_limit() {
        Ok(limit) => {
            let connections = limit.saturating_sub(RESERVED_FILES) / 2;
            tracing::info!("open files limit {limit}: room for about {connections} proxied connections");
        }
        Err(err) => tracing::warn!("cannot raise the open files limit: {err}"),
    }
}

fn gateway_settings(args: &StartArgs) -> GatewaySettings {
    GatewaySettings {
        wait: args.wait,
        connect_timeout: args.connect_timeout,
        idle_timeout: args.idle_timeout,
        access_log: args.access_log,
    }
}

fn slot_specs(config: &Config, bound: &[RouteSpec]) -> Vec<SlotSpec> {
    let settings = &config.sources.settings;
    let instance = |spec: &InstanceSpec| {
        let routed = bound.iter().any(|r| r.type_name == spec.type_name);
        let tcp_url = tcp_url(&spec.type_name, bound, config.tcp_listen);
        SlotSpec {
            name: spec.name(),
            type_name: spec.type_name.clone(),
            command: spec.command.clone(),
            colour: spec.type_index,
            vars: PlatformVars { dyno: spec.name(), port: Some(spec.port), tcp_url },
            probe: routed.then(|| probe_settings(&settings.of(&spec.type_name))),
        }
    };
    let mut slots: Vec<SlotSpec> = config.plan.iter().map(instance).collect();
    if let Some(release) = &config.release {
        let name = format!("{RELEASE}.1");
        let vars = PlatformVars { dyno: name.clone(), port: None, tcp_url: tcp_url(RELEASE, bound, config.tcp_listen) };
        let colour = config.sources.procfile.types.len();
        let (type_name, command) = (RELEASE.to_string(), release.command.clone());
        slots.push(SlotSpec { name, type_name, command, colour, vars, probe: None });
    }
    slots
}

fn probe_settings(settings: &crate::settings::TypeSettings) -> ProbeSettings {
    let defaults = ProbeSettings::default();
    ProbeSettings {
        interval: settings.health_interval.unwrap_or(defaults.interval),
        timeout: settings.health_timeout.unwrap_or(defaults.timeout),
        rise: settings.rise.unwrap_or(defaults.rise),
        fall: settings.fall.unwrap_or(defaults.fall),
    }
}

/// `starting app in ./demo: release=1,tcp=2 on ports from 5000; gateway tcp://127.0.0.1:20003 for tcp`.
fn summary(config: &Config, bound: &[RouteSpec]) -> String {
    let root = config.sources.root.display();
    let mut text = format!("starting app in {root}: {} on ports from {}", config.formation, config.base_port);
    for route in bound {
        text.push_str(&format!("; gateway tcp://{} for {}", route.addr, route.type_name));
    }
    text
}
