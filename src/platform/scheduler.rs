//! The Scheduler actor: spawns, restarts and stops the formation's instances.
//!
//! A thin actix shell around [`Lifecycle`]: it feeds events in (process reports, health, timers,
//! signals) and carries the effects out: spawn through the keeper, signal, timers, logs, exit,
//! and the orders to the HealthChecker (watch, unwatch) and the Balancer (join, leave).

use super::balancer::{Balancer, Join, Leave};
use super::health::{HealthChecker, ProbeSettings, Unwatch, Watch};
use super::lifecycle::{Effect, Event, Level, Lifecycle, SlotId, SlotInit, State, Timing};
use crate::control::InstanceStatus;
use crate::env::{instance_env, PlatformVars};
use crate::gateway::route::Backend;
use crate::logs::Output;
use crate::process::output::Prefix;
use crate::process::{self, Controller, Launch, ProcessEvent};
use actix::prelude::*;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::time::Instant;

/// What one slot runs (an instance of the plan, or the release command).
#[derive(Debug, Clone)]
pub struct SlotSpec {
    pub name: String,
    pub type_name: String,
    pub command: String,
    pub colour: usize,
    pub vars: PlatformVars,
    /// How the HealthChecker probes it, when the gateway routes its type.
    pub probe: Option<ProbeSettings>,
}

impl SlotSpec {
    /// Where the instance listens: 127.0.0.1:PORT.
    fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.vars.port.unwrap_or(0)))
    }
}

/// What the Scheduler needs to run the formation.
pub struct SchedulerConfig {
    /// Instances first, then the release command if there is one.
    pub slots: Vec<SlotSpec>,
    pub has_release: bool,
    pub env: crate::env::EnvMap,
    pub root: PathBuf,
    pub timing: Timing,
    /// The procgate binary, re-executed as each instance's keeper.
    pub keeper_exe: PathBuf,
    pub output: Output,
    /// Stops the gateway from accepting when the platform stops.
    pub close_gateway: Box<dyn Fn()>,
}

pub struct Scheduler {
    config: SchedulerConfig,
    /// Receives the exit status once everything has stopped.
    exit: Option<tokio::sync::oneshot::Sender<i32>>,
    lifecycle: Lifecycle,
    controllers: HashMap<SlotId, Controller>,
    /// The current incarnation's gateway counters, for routed slots.
    counters: HashMap<SlotId, Arc<Backend>>,
    balancer: Addr<Balancer>,
    health: Addr<HealthChecker>,
}

/// An event for the Scheduler's state machine.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Notify(pub Event);

impl Scheduler {
    /// `exit` receives the exit status once everything has stopped.
    pub fn new(
        config: SchedulerConfig,
        actors: (Addr<Balancer>, Addr<HealthChecker>),
        exit: tokio::sync::oneshot::Sender<i32>,
    ) -> Scheduler {
        let (balancer, health) = actors;
        let exit = Some(exit);
        let count = config.slots.len() - usize::from(config.has_release);
        let instances = config.slots[..count]
            .iter()
            .map(|s| SlotInit { name: s.name.clone(), routed: s.probe.is_some() })
            .collect();
        let release = config.has_release.then(|| config.slots[count].name.clone());
        let lifecycle = Lifecycle::new(instances, release, config.timing);
        let (controllers, counters) = (HashMap::new(), HashMap::new());
        Scheduler { config, exit, lifecycle, controllers, counters, balancer, health }
    }

    fn apply(&mut self, effects: Vec<Effect>, ctx: &mut Context<Self>) {
        for effect in effects {
            match effect {
                Effect::Spawn { slot, generation } => self.spawn(slot, generation, ctx),
                Effect::Signal { slot, signal } => self.with_controller(slot, |c| c.signal(signal)),
                Effect::Kill { slot } => self.with_controller(slot, Controller::kill),
                Effect::After { delay, event } => {
                    ctx.run_later(delay, move |act, ctx| act.handle_event(event, ctx));
                }
                Effect::Watch { slot, generation } => self.watch(slot, generation),
                Effect::Unwatch { slot, generation } => self.health.do_send(Unwatch((slot, generation))),
                Effect::Join { slot, generation } => self.join(slot, generation),
                Effect::Leave { slot, generation, reason } => {
                    self.balancer.do_send(Leave { id: (slot, generation), reason })
                }
                Effect::CloseGateway => (self.config.close_gateway)(),
                Effect::Log { level, text } => match level {
                    Level::Info => tracing::info!("{text}"),
                    Level::Warn => tracing::warn!("{text}"),
                    Level::Error => tracing::error!("{text}"),
                },
                Effect::Exit(code) => {
                    if let Some(exit) = self.exit.take() {
                        let _ = exit.send(code);
                    }
                }
            }
        }
    }

    fn handle_event(&mut self, event: Event, ctx: &mut Context<Self>) {
        let effects = self.lifecycle.handle(event, Instant::now());
        self.apply(effects, ctx);
    }

    fn with_controller(&self, slot: SlotId, order: impl FnOnce(&Controller)) {
        if let Some(controller) = self.controllers.get(&slot) {
            order(controller);
        }
    }

    fn watch(&self, slot: SlotId, generation: u64) {
        let spec = &self.config.slots[slot];
        let settings = spec.probe.unwrap_or_default();
        self.health.do_send(Watch { id: (slot, generation), name: spec.name.clone(), addr: spec.addr(), settings });
    }

    fn join(&mut self, slot: SlotId, generation: u64) {
        let spec = &self.config.slots[slot];
        let id = (slot, generation);
        // One set of counters per incarnation: a rejoin after failed checks keeps its count.
        let backend = match self.counters.get(&slot) {
            Some(backend) if backend.id == id => backend.clone(),
            _ => Arc::new(Backend::new(id, spec.name.clone(), spec.addr())),
        };
        self.counters.insert(slot, backend.clone());
        self.balancer.do_send(Join { type_name: spec.type_name.clone(), backend });
    }

    fn spawn(&mut self, slot: SlotId, generation: u64, ctx: &mut Context<Self>) {
        let spec = &self.config.slots[slot];
        self.config.output.fit(&spec.name);
        let launch = Launch {
            command: spec.command.clone(),
            env: instance_env(&self.config.env, &spec.vars),
            root: self.config.root.clone(),
            prefix: Prefix { output: self.config.output.clone(), name: spec.name.clone(), colour: spec.colour },
        };
        let addr = ctx.address();
        let on_event = move |event| addr.do_send(Notify(slot_event(slot, generation, event)));
        match process::spawn(launch, &self.config.keeper_exe, on_event) {
            Ok((controller, monitor)) => {
                self.controllers.insert(slot, controller);
                actix::spawn(monitor);
            }
            Err(err) => ctx.notify(Notify(Event::SpawnFailed { slot, generation, error: err.to_string() })),
        }
    }
}

/// Asks for every instance's status (`ps`).
#[derive(Message)]
#[rtype(result = "Vec<InstanceStatus>")]
pub struct Status;

impl Handler<Status> for Scheduler {
    type Result = Vec<InstanceStatus>;

    fn handle(&mut self, _: Status, _ctx: &mut Context<Self>) -> Vec<InstanceStatus> {
        let now = Instant::now();
        let status = |(id, slot): (usize, &super::lifecycle::Slot)| {
            let spec = &self.config.slots[id];
            let running = matches!(slot.state, State::Starting | State::Up | State::Draining);
            let counters = self.counters.get(&id).filter(|c| c.id == (id, slot.generation));
            InstanceStatus {
                name: slot.name.clone(),
                type_name: spec.type_name.clone(),
                state: slot.state.as_str().to_string(),
                pid: slot.pid,
                port: spec.vars.port,
                uptime: slot.started_at.filter(|_| running).map(|t| (now - t).as_secs_f64()),
                restarts: slot.restarts,
                restart_in: slot.restart_at.map(|t| t.saturating_duration_since(now).as_secs_f64()),
                connections: spec.probe.map(|_| counters.map_or(0, |c| c.open.load(Ordering::Relaxed))),
            }
        };
        self.lifecycle.slots().iter().enumerate().map(status).collect()
    }
}

fn slot_event(slot: SlotId, generation: u64, event: ProcessEvent) -> Event {
    match event {
        ProcessEvent::Started { pid } => Event::Started { slot, generation, pid },
        ProcessEvent::LeaderExited => Event::LeaderExited { slot, generation },
        ProcessEvent::Exited(reason) => Event::Exited { slot, generation, reason },
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let effects = self.lifecycle.start(Instant::now());
        self.apply(effects, ctx);
    }
}

impl Handler<Notify> for Scheduler {
    type Result = ();

    fn handle(&mut self, Notify(event): Notify, ctx: &mut Context<Self>) {
        self.handle_event(event, ctx);
    }
}
