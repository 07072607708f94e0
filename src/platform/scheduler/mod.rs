//! The Scheduler actor: the one owner of instances. It spawns, restarts, scales, replaces and
//! stops the formation's instances, and puts idle types to sleep and wakes them (`sleep.rs`).
//!
//! A thin actix shell around [`Lifecycle`]: it feeds events in (process reports, health, timers,
//! signals, control requests, the Rollout controller's intents) and carries the effects out:
//! spawn through the keeper, signal, timers, logs, exit, the orders to the HealthChecker (watch,
//! unwatch) and the Balancer (join, leave), and the reports to the Rollout controller. It also
//! prepares what the pure state machine cannot: ports, specs, releases (`intents.rs`).

mod handover;
mod intents;
mod sleep;

pub use handover::{Adoptee, Freeze, Frozen, LetGo, Promoted, Thaw};
pub use intents::{Abandon, Busy, Commit, Discard, PlanDeploy, PlanReply, Replace, RunStep, Switch};
pub use sleep::WakeUp;

use super::balancer::{Balancer, Join, Leave};
use super::health::{HealthChanged, HealthChecker, Unwatch, Watch};
use super::intents::{Report, SlotId};
use super::lifecycle::{Effect, Event, Level, Lifecycle, SlotInit, State, Timing};
use super::sleep::Sleepers;
use super::spec::{SlotSpec, Templates, TypeTemplate};
use crate::app_state::{self, AppState};
use crate::config::{AppPaths, Release, RouteSpec};
use crate::gateway::budget::Descriptors;
use crate::gateway::route::{Backend, InstanceId, Route};
use crate::gateway::wake::WakeCall;
use crate::logs::Output;
use crate::process::output::Prefix;
use crate::process::{self, Controller, Launch, ProcessEvent};
use crate::sd_notify::{self, Notifier};
use actix::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::time::Instant;

/// A release in force: what it was built from, and its templates.
pub struct Running {
    pub release: Release,
    pub templates: Templates,
}

/// What the Scheduler needs to run the formation.
pub struct SchedulerConfig {
    pub running: Running,
    /// The routes' addresses as bound at start (a deploy keeps them).
    pub bound: Vec<RouteSpec>,
    /// The initial instances, in plan order.
    pub instances: Vec<SlotSpec>,
    pub timing: Timing,
    /// The procgate binary, re-executed as each instance's keeper.
    pub keeper_exe: PathBuf,
    pub output: Output,
    /// Stops the gateway from accepting when the platform stops.
    pub close_gateway: Box<dyn Fn()>,
    /// The descriptor account: each running instance costs procgate some.
    pub descriptors: Arc<Descriptors>,
    /// systemd's notification socket, under `Type=notify`.
    pub notifier: Option<Rc<Notifier>>,
    /// Where the formation and the release in force are recorded for the next start (`app_state`).
    pub state_root: PathBuf,
    /// The files `start` was given: a release from other files is recorded.
    pub started_paths: AppPaths,
    /// The gateway's routes: their activity says when a type may sleep, and counts its wakes.
    pub routes: Vec<Arc<Route>>,
    /// The wakes the data plane asks for; taken when the Scheduler starts.
    pub wakes: Option<tokio::sync::mpsc::UnboundedReceiver<WakeCall>>,
    /// Types that start asleep (as the last run left them), each with the count it wakes with.
    pub asleep: BTreeMap<String, usize>,
    /// The instances a previous main process handed over, to adopt instead of spawning them;
    /// `None`: a fresh start (the release step first, then every instance spawned).
    pub adopt: Option<Vec<Adoptee>>,
}

/// The actors the Scheduler talks to.
pub struct Peers {
    pub balancer: Addr<Balancer>,
    pub health: Addr<HealthChecker>,
    /// The Rollout controller, which hears the reports.
    pub rollouts: Recipient<Reported>,
}

/// A report for the Rollout controller.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reported(pub Report);

pub struct Scheduler {
    config: SchedulerConfig,
    /// Receives the exit status once everything has stopped.
    exit: Option<tokio::sync::oneshot::Sender<i32>>,
    lifecycle: Lifecycle,
    specs: HashMap<SlotId, SlotSpec>,
    controllers: HashMap<SlotId, Controller>,
    /// Each routed incarnation's gateway counters.
    counters: HashMap<SlotId, Arc<Backend>>,
    peers: Peers,
    /// The rollout under way, as the Rollout controller said (scale waits for it).
    busy: Option<String>,
    /// A planned deploy: in force only if its rollout succeeds (`Commit`).
    pending: Option<intents::PlannedDeploy>,
    /// What the service manager was last told: `READY=1` once, then `STATUS=` when it changes.
    told: Option<String>,
    /// The types asleep or waking (`sleep_after`).
    sleepers: Sleepers,
    /// `procgate wake` clients waiting for a type's first instance in routing.
    wake_waiters: HashMap<String, Vec<tokio::sync::mpsc::UnboundedSender<String>>>,
    /// Where it is in an upgrade of procgate.
    handing: handover::Handing,
}

/// An event for the Scheduler's state machine.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Notify(pub Event);

/// The gateway's name for a slot's incarnation.
fn incarnation(slot: SlotId, generation: u64) -> InstanceId {
    InstanceId { slot: slot.0, generation }
}

fn init(spec: &SlotSpec) -> SlotInit {
    let restart_unhealthy_after = spec.template.probe.as_ref().and_then(|p| p.restart_unhealthy_after);
    let (name, routed, port, cycles) = (spec.name.clone(), spec.routed(), spec.port, spec.template.cycles);
    SlotInit { name, routed, port, restart_unhealthy_after, cycles }
}

impl Scheduler {
    pub fn new(config: SchedulerConfig, peers: Peers, exit: tokio::sync::oneshot::Sender<i32>) -> Scheduler {
        // A successor adopts a running formation: its release step ran long ago.
        let release_step = match config.adopt {
            Some(_) => None,
            None => config.running.templates.release_step.as_ref().map(|t| t.instance(1, None)),
        };
        let instances: Vec<SlotInit> = config.instances.iter().map(init).collect();
        let lifecycle = Lifecycle::new(instances, release_step.as_ref().map(init), config.timing);
        let specs = config
            .instances
            .iter()
            .cloned()
            .chain(release_step)
            .enumerate()
            .map(|(i, spec)| (SlotId(i), spec))
            .collect();
        let sleepers = Sleepers::new(&config.asleep);
        Scheduler {
            config,
            exit: Some(exit),
            lifecycle,
            specs,
            controllers: HashMap::new(),
            counters: HashMap::new(),
            peers,
            busy: None,
            pending: None,
            told: None,
            sleepers,
            wake_waiters: HashMap::new(),
            handing: handover::Handing::No,
        }
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
                Effect::Unwatch { slot, generation } => {
                    self.peers.health.do_send(Unwatch(incarnation(slot, generation)))
                }
                Effect::Join { slot, generation } => self.join(slot, generation),
                Effect::Leave { slot, generation, reason } => {
                    self.peers.balancer.do_send(Leave { id: incarnation(slot, generation), reason })
                }
                Effect::WatchDrain { slot, generation } => self.watch_drain(slot, generation, ctx),
                Effect::Forget { slot } => self.forget(slot),
                Effect::Report(report) => self.peers.rollouts.do_send(Reported(report)),
                Effect::CloseGateway => {
                    self.notify("STOPPING=1");
                    (self.config.close_gateway)()
                }
                Effect::Log { level, text } => log(level, &text),
                Effect::Exit(code) => {
                    if let Some(exit) = self.exit.take() {
                        let _ = exit.send(code);
                    }
                }
            }
        }
    }

    fn handle_event(&mut self, event: Event, ctx: &mut Context<Self>) {
        let Some(event) = self.held_back(event) else { return };
        let effects = self.lifecycle.handle(event, Instant::now());
        self.apply(effects, ctx);
        self.tell_manager();
    }

    fn notify(&self, state: &str) {
        if let Some(notifier) = &self.config.notifier {
            notifier.notify(state);
        }
    }

    /// `READY=1` once the formation first serves (every instance up, routed ones in routing),
    /// with a `STATUS=` line of the counts, sent again whenever they change.
    fn tell_manager(&mut self) {
        if self.config.notifier.is_none() || (self.told.is_none() && !self.lifecycle.serving()) {
            return;
        }
        let status = self.status_line();
        if self.told.as_ref() == Some(&status) {
            return;
        }
        let ready = if self.told.is_none() { "READY=1\n" } else { "" };
        self.notify(&format!("{ready}STATUS={status}"));
        self.told = Some(status);
    }

    /// The formation, the release in force and the types asleep.
    fn app_state(&self) -> AppState {
        let running = &self.config.running.release;
        let release = (running.paths != self.config.started_paths).then(|| running.paths.clone());
        let mut counts = self.counts();
        counts.extend(self.sleepers.sleeping().map(|(name, count)| (name.to_string(), count)));
        let sleeping = self.sleepers.sleeping().map(|(name, _)| name.to_string()).collect();
        AppState { formation: running.formation_now(&counts), release, sleeping }
    }

    /// Records the formation and the release in force, for the next start in this root.
    fn record_state(&self) {
        if let Err(err) = self.app_state().store(&self.config.state_root) {
            tracing::warn!(
                "cannot record the formation in {}: {err}",
                app_state::path(&self.config.state_root).display()
            );
        }
    }

    /// `tcp: 2 up; worker: 1 up, 1 crashed`
    fn status_line(&self) -> String {
        let mut counts: std::collections::BTreeMap<(usize, String), std::collections::BTreeMap<&str, usize>> =
            Default::default();
        for (id, slot) in self.lifecycle.slots().filter(|(id, _)| self.lifecycle.is_current(*id)) {
            let Some(spec) = self.specs.get(&id) else { continue };
            let of_type = counts.entry((spec.template.type_index, spec.template.type_name.clone())).or_default();
            *of_type.entry(slot.shown_state()).or_insert(0) += 1;
        }
        for (name, count) in self.sleepers.sleeping() {
            let Some(template) = self.config.running.templates.get(name) else { continue };
            counts.entry((template.type_index, name.to_string())).or_default().insert("sleeping", count);
        }
        let types = counts.into_iter().map(|((_, name), states)| {
            let states: Vec<String> = states.into_iter().map(|(state, n)| format!("{n} {state}")).collect();
            format!("{name}: {}", states.join(", "))
        });
        let line = types.collect::<Vec<_>>().join("; ");
        if line.is_empty() {
            "no instance (every type at 0)".to_string()
        } else {
            line
        }
    }

    fn with_controller(&self, slot: SlotId, order: impl FnOnce(&Controller)) {
        if let Some(controller) = self.controllers.get(&slot) {
            order(controller);
        }
    }

    fn watch(&self, slot: SlotId, generation: u64) {
        let Some(spec) = self.specs.get(&slot) else { return };
        let mut settings = spec.template.probe.clone().unwrap_or_default();
        if self.sleepers.waking(&spec.template.type_name).is_some() {
            settings.boot_interval = super::health::WAKE_BOOT_INTERVAL;
        }
        let name = spec.name.clone();
        self.peers.health.do_send(Watch { id: incarnation(slot, generation), name, addr: spec.addr(), settings });
    }

    fn join(&mut self, slot: SlotId, generation: u64) {
        let Some(spec) = self.specs.get(&slot) else { return };
        let id = incarnation(slot, generation);
        // One set of counters per incarnation: a rejoin after failed checks keeps its count.
        let backend = match self.counters.get(&slot) {
            Some(backend) if backend.id == id => backend.clone(),
            _ => Arc::new(Backend::new(id, spec.name.clone(), spec.addr(), spec.template.proxy_protocol)),
        };
        self.counters.insert(slot, backend.clone());
        let (type_name, name) = (spec.template.type_name.clone(), spec.name.clone());
        self.peers.balancer.do_send(Join { type_name: type_name.clone(), backend });
        self.joined(&type_name, &name);
    }

    /// Reports a retiring instance's open connections; `Drained` follows when none is left.
    fn watch_drain(&mut self, slot: SlotId, generation: u64, ctx: &mut Context<Self>) {
        let counters = self.counters.get(&slot).filter(|c| c.id == incarnation(slot, generation)).cloned();
        let open = counters.as_ref().map_or(0, |c| c.open.load(Ordering::Relaxed));
        if let (Some(spec), Some(state)) = (self.specs.get(&slot), self.lifecycle.slot(slot)) {
            let pid = state.pid.map_or(String::new(), |p| format!("pid {p}, "));
            let text = format!("SIGTERM {} ({pid}{open} open connections)", spec.name);
            self.peers.rollouts.do_send(Reported(Report::Progress(text)));
        }
        let drained = Event::Drained { slot, generation };
        match counters {
            Some(backend) => {
                let me = ctx.address();
                actix::spawn(async move {
                    backend.wait_idle().await;
                    me.do_send(Notify(drained));
                });
            }
            None => ctx.notify(Notify(drained)),
        }
    }

    fn forget(&mut self, slot: SlotId) {
        self.specs.remove(&slot);
        self.controllers.remove(&slot);
        self.counters.remove(&slot);
    }

    /// `scale TYPE=N...`: adds instances with the lowest free numbers, retires the highest.
    fn scale(&mut self, changes: Vec<(String, usize)>, ctx: &mut Context<Self>) -> Result<Vec<String>, ScaleRefused> {
        if let Some(why) = self.upgrading() {
            return Err(ScaleRefused::Busy(why));
        }
        if let Some(running) = &self.busy {
            return Err(ScaleRefused::Busy(format!("a {running} is running; try again when it is done")));
        }
        let mut plan = Vec::new();
        for (type_name, count) in &changes {
            let template = self.config.running.templates.get(type_name).cloned();
            let template = template.ok_or_else(|| format!("the Procfile has no type `{type_name}`"))?;
            if *count > crate::formation::PORTS_PER_TYPE as usize {
                return Err(ScaleRefused::Bad(format!(
                    "{type_name}={count} is more than {} instances",
                    crate::formation::PORTS_PER_TYPE
                )));
            }
            if *count < template.min_instances {
                return Err(ScaleRefused::Bad(format!(
                    "{type_name}={count} is fewer than its min_instances = {} (procgate.toml); scale it to {} or more",
                    template.min_instances, template.min_instances
                )));
            }
            plan.push((template, *count));
        }
        let mut lines = Vec::new();
        for (template, count) in plan {
            match self.sleepers.scaled(&template.type_name, count) {
                true => lines.push(sleep::scaled_asleep(&template.type_name, count)),
                false => lines.extend(self.scale_type(&template, count, ctx)?),
            }
        }
        Ok(lines)
    }

    fn scale_type(
        &mut self,
        template: &Arc<TypeTemplate>,
        count: usize,
        ctx: &mut Context<Self>,
    ) -> Result<Vec<String>, ScaleRefused> {
        let current: Vec<(SlotId, usize)> = self
            .current()
            .into_iter()
            .filter(|(_, s)| s.template.type_name == template.type_name)
            .map(|(id, s)| (id, s.number))
            .collect();
        let mut lines = Vec::new();
        for (id, number) in current.iter().skip(count).rev() {
            lines.push(format!("{}.{number} retiring", template.type_name));
            let effects = self.lifecycle.retire(*id, "scaled down");
            self.apply(effects, ctx);
        }
        let taken: Vec<usize> = current.iter().map(|(_, n)| *n).collect();
        let free_numbers = (1..).filter(|n| !taken.contains(n));
        for number in free_numbers.take(count.saturating_sub(current.len())) {
            let (id, slot) = self.file_new(template, number)?;
            let port = self.specs[&id].port.unwrap_or_default();
            lines.push(format!("{} starting on port {port}", slot.name));
            let effects =
                self.lifecycle.add(id, slot, Instant::now()).map_err(|r| ScaleRefused::Busy(r.to_string()))?;
            self.apply(effects, ctx);
        }
        Ok(lines)
    }

    /// How an instance's lines are prefixed.
    fn prefix(&self, spec: &SlotSpec) -> Prefix {
        self.config.output.fit(&spec.name);
        Prefix {
            output: self.config.output.clone(),
            name: spec.name.clone(),
            colour: spec.template.type_index,
            pid: Default::default(),
        }
    }

    /// What an instance's monitor calls as it lives and ends: events for this actor.
    fn on_process_event(&self, slot: SlotId, generation: u64, ctx: &Context<Self>) -> impl Fn(ProcessEvent) {
        let addr = ctx.address();
        let descriptors = self.config.descriptors.clone();
        move |event| {
            if matches!(event, ProcessEvent::Exited(_)) {
                descriptors.instance_gone();
            }
            addr.do_send(Notify(slot_event(slot, generation, event)))
        }
    }

    fn spawn(&mut self, slot: SlotId, generation: u64, ctx: &mut Context<Self>) {
        let Some(spec) = self.specs.get(&slot) else { return };
        let launch = Launch {
            command: spec.template.command.clone(),
            env: spec.env(),
            root: spec.template.root.clone(),
            prefix: self.prefix(spec),
        };
        let on_event = self.on_process_event(slot, generation, ctx);
        match process::spawn(launch, &self.config.keeper_exe, on_event) {
            Ok((controller, monitor)) => {
                self.config.descriptors.instance_started();
                self.controllers.insert(slot, controller);
                actix::spawn(monitor);
            }
            Err(err) => ctx.notify(Notify(Event::SpawnFailed { slot, generation, error: err.to_string() })),
        }
    }

    fn status(&self) -> Vec<InstanceView> {
        let now = Instant::now();
        let mut list: Vec<(usize, usize, SlotId, InstanceView)> = Vec::new();
        for (id, slot) in self.lifecycle.slots() {
            let Some(spec) = self.specs.get(&id) else { continue };
            let running = matches!(slot.state, State::Starting | State::Up | State::Draining);
            let counters = self.counters.get(&id).filter(|c| c.id == incarnation(id, slot.generation));
            let status = InstanceView {
                name: slot.name.clone(),
                type_name: spec.template.type_name.clone(),
                state: slot.shown_state().to_string(),
                pid: slot.pid,
                port: spec.port,
                uptime: slot.started_at.filter(|_| running).map(|t| (now - t).as_secs_f64()),
                restarts: slot.restarts,
                restart_in: slot.restart_at.map(|t| t.saturating_duration_since(now).as_secs_f64()),
                connections: spec.routed().then(|| counters.map_or(0, |c| c.open.load(Ordering::Relaxed))),
                served: spec.routed().then(|| counters.map_or(0, |c| c.total.load(Ordering::Relaxed))),
            };
            list.push((spec.template.type_index, spec.number, id, status));
        }
        list.extend(self.sleeping_views().map(|(type_index, number, view)| (type_index, number, SlotId(0), view)));
        list.sort_by_key(|(type_index, number, id, _)| (*type_index, *number, *id));
        list.into_iter().map(|(_, _, _, status)| status).collect()
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
        match self.config.adopt.take() {
            Some(adoptees) => self.adopt_all(adoptees, ctx),
            None => {
                let effects = self.lifecycle.start(Instant::now());
                self.apply(effects, ctx);
            }
        }
        self.tell_manager();
        self.listen_for_wakes(ctx);
        self.arm_sleep_check(ctx);
        // The watchdog hears from the control thread as long as it turns.
        if let Some(period) = sd_notify::watchdog_period().filter(|_| self.config.notifier.is_some()) {
            ctx.run_interval(period, |act, _| act.notify("WATCHDOG=1"));
        }
    }
}

impl Handler<HealthChanged> for Scheduler {
    type Result = ();

    fn handle(&mut self, HealthChanged { id, healthy }: HealthChanged, ctx: &mut Context<Self>) {
        let (slot, generation) = (SlotId(id.slot), id.generation);
        let event = match healthy {
            true => Event::Healthy { slot, generation },
            false => Event::Unhealthy { slot, generation },
        };
        self.handle_event(event, ctx);
    }
}

impl Handler<Notify> for Scheduler {
    type Result = ();

    fn handle(&mut self, Notify(event): Notify, ctx: &mut Context<Self>) {
        self.handle_event(event, ctx);
    }
}

/// One instance as the Scheduler sees it (`ps`; the control socket maps it to its wire type).
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceView {
    pub name: String,
    pub type_name: String,
    /// `starting`, `up`, `draining`, `crashed`, `failed`, `stopped`, or `sleeping` (an instance
    /// its sleeping type wakes with).
    pub state: String,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    /// Seconds since it was spawned, while it runs.
    pub uptime: Option<f64>,
    pub restarts: u32,
    /// Seconds until the next restart, while `crashed`.
    pub restart_in: Option<f64>,
    /// Open gateway connections (routed types).
    pub connections: Option<usize>,
    /// Connections it has been given since it started (routed types).
    pub served: Option<u64>,
}

/// Asks for every instance's status (`ps`).
#[derive(Message)]
#[rtype(result = "Vec<InstanceView>")]
pub struct Status;

impl Handler<Status> for Scheduler {
    type Result = Vec<InstanceView>;

    fn handle(&mut self, _: Status, _ctx: &mut Context<Self>) -> Vec<InstanceView> {
        self.status()
    }
}

/// Whether a `restart` target names something of the Procfile: a type (`tcp`) or an instance
/// of one (`tcp.2`); else why not. Whether it runs now is the restart's to find.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct CheckTarget(pub String);

impl Handler<CheckTarget> for Scheduler {
    type Result = Result<(), String>;

    fn handle(&mut self, CheckTarget(target): CheckTarget, _ctx: &mut Context<Self>) -> Result<(), String> {
        let templates = &self.config.running.templates;
        let (type_name, number) = match target.rsplit_once('.') {
            Some((type_name, number)) if number.parse::<usize>().is_ok_and(|n| n >= 1) => (type_name, true),
            _ => (target.as_str(), false),
        };
        if templates.get(type_name).is_some() {
            return Ok(());
        }
        let types: Vec<&str> = templates.types.iter().map(|t| t.type_name.as_str()).collect();
        let what = if number {
            format!("`{target}` names no instance of a Procfile type")
        } else {
            format!("the Procfile has no type `{target}`")
        };
        Err(format!(
            "{what}; restart takes a type ({}) or an instance (e.g. `{}.1`)",
            types.join(", "),
            types.first().unwrap_or(&"web")
        ))
    }
}

/// `scale TYPE=N...`; answers what changed, or why nothing did.
#[derive(Message)]
#[rtype(result = "Result<Vec<String>, ScaleRefused>")]
pub struct Scale(pub Vec<(String, usize)>);

/// Why a `scale` changed nothing: the request is wrong, or procgate is busy (try again).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScaleRefused {
    #[error("{0}")]
    Bad(String),
    #[error("{0}")]
    Busy(String),
}

impl From<String> for ScaleRefused {
    fn from(why: String) -> ScaleRefused {
        ScaleRefused::Bad(why)
    }
}

impl Handler<Scale> for Scheduler {
    type Result = Result<Vec<String>, ScaleRefused>;

    fn handle(&mut self, Scale(changes): Scale, ctx: &mut Context<Self>) -> Self::Result {
        let lines = self.scale(changes, ctx)?;
        self.record_state();
        Ok(lines)
    }
}

fn log(level: Level, text: &str) {
    match level {
        Level::Info => tracing::info!("{text}"),
        Level::Warn => tracing::warn!("{text}"),
        Level::Error => tracing::error!("{text}"),
    }
}
