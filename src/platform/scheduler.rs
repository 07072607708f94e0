//! The Scheduler actor: spawns, restarts, scales, replaces and stops the formation's instances.
//!
//! A thin actix shell around [`Lifecycle`]: it feeds events in (process reports, health, timers,
//! signals, control requests) and carries the effects out: spawn through the keeper, signal,
//! timers, logs, exit, and the orders to the HealthChecker (watch, unwatch) and the Balancer
//! (join, leave). It also prepares what the pure state machine cannot: ports, specs, releases.

use super::balancer::{Balancer, Join, Leave};
use super::deploy_plan::{self, TypeChange};
use super::health::{HealthChecker, Unwatch, Watch};
use super::lifecycle::{Effect, Event, Level, Lifecycle, NewPair, SlotId, SlotInit, State, Timing};
use super::rollout::RolloutKind;
use super::spec::{port_for, SlotSpec, Templates, TypeTemplate};
use crate::config::{Release, ReleaseSource, RouteSpec};
use crate::control::InstanceStatus;
use crate::gateway::budget::Descriptors;
use crate::gateway::route::Backend;
use crate::logs::Output;
use crate::process::output::Prefix;
use crate::process::{self, Controller, Launch, ProcessEvent};
use actix::prelude::*;
use rand::Rng;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

/// Daily cycling: each instance is replaced after `period` plus a random delay up to `jitter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cycling {
    pub period: Duration,
    pub jitter: Duration,
}

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
    pub cycling: Option<Cycling>,
    /// The procgate binary, re-executed as each instance's keeper.
    pub keeper_exe: PathBuf,
    pub output: Output,
    /// Stops the gateway from accepting when the platform stops.
    pub close_gateway: Box<dyn Fn()>,
    /// The descriptor account: each running instance costs procgate some.
    pub descriptors: Arc<Descriptors>,
}

/// A rollout asked for while another runs.
enum Pending {
    Restart { target: Option<String>, client: Client },
    Deploy { source: ReleaseSource, client: Client },
    Cycle { slot: SlotId },
}

/// Where a rollout's progress lines go (the `restart`/`deploy` command's answer).
type Client = Option<UnboundedSender<String>>;

pub struct Scheduler {
    config: SchedulerConfig,
    /// Receives the exit status once everything has stopped.
    exit: Option<tokio::sync::oneshot::Sender<i32>>,
    lifecycle: Lifecycle,
    specs: HashMap<SlotId, SlotSpec>,
    controllers: HashMap<SlotId, Controller>,
    /// Each routed incarnation's gateway counters.
    counters: HashMap<SlotId, Arc<Backend>>,
    balancer: Addr<Balancer>,
    health: Addr<HealthChecker>,
    rollout_client: Client,
    queue: VecDeque<Pending>,
    /// A deploy's release while its rollout runs; in force only if it succeeds.
    pending_release: Option<Running>,
    /// The instance whose daily cycle is the rollout under way.
    cycling: Option<SlotId>,
}

/// An event for the Scheduler's state machine.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Notify(pub Event);

fn init(spec: &SlotSpec) -> SlotInit {
    let restart_unhealthy_after = spec.template.probe.as_ref().and_then(|p| p.restart_unhealthy_after);
    SlotInit { name: spec.name.clone(), routed: spec.routed(), port: spec.port, restart_unhealthy_after }
}

impl Scheduler {
    pub fn new(
        config: SchedulerConfig,
        actors: (Addr<Balancer>, Addr<HealthChecker>),
        exit: tokio::sync::oneshot::Sender<i32>,
    ) -> Scheduler {
        let (balancer, health) = actors;
        let release_step = config.running.templates.release_step.as_ref().map(|t| t.instance(1, None));
        let instances: Vec<SlotInit> = config.instances.iter().map(init).collect();
        let lifecycle = Lifecycle::new(instances, release_step.as_ref().map(init), config.timing);
        let specs = config.instances.iter().cloned().chain(release_step).enumerate().collect();
        Scheduler {
            config,
            exit: Some(exit),
            lifecycle,
            specs,
            controllers: HashMap::new(),
            counters: HashMap::new(),
            balancer,
            health,
            rollout_client: None,
            queue: VecDeque::new(),
            pending_release: None,
            cycling: None,
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
                Effect::Unwatch { slot, generation } => self.health.do_send(Unwatch((slot, generation))),
                Effect::Join { slot, generation } => self.join(slot, generation),
                Effect::Leave { slot, generation, reason } => {
                    self.balancer.do_send(Leave { id: (slot, generation), reason })
                }
                Effect::WatchDrain { slot, generation } => self.watch_drain(slot, generation, ctx),
                Effect::ScheduleCycle { slot } => self.schedule_cycle(slot, ctx),
                Effect::RequestCycle { slot } => self.request(Pending::Cycle { slot }, ctx),
                Effect::Forget { slot } => self.forget(slot),
                Effect::Progress(text) => self.progress(text),
                Effect::RolloutFinished { ok, text } => self.rollout_finished(ok, text, ctx),
                Effect::CloseGateway => (self.config.close_gateway)(),
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
        let effects = self.lifecycle.handle(event, Instant::now());
        self.apply(effects, ctx);
    }

    fn with_controller(&self, slot: SlotId, order: impl FnOnce(&Controller)) {
        if let Some(controller) = self.controllers.get(&slot) {
            order(controller);
        }
    }

    fn watch(&self, slot: SlotId, generation: u64) {
        let Some(spec) = self.specs.get(&slot) else { return };
        let settings = spec.template.probe.clone().unwrap_or_default();
        self.health.do_send(Watch { id: (slot, generation), name: spec.name.clone(), addr: spec.addr(), settings });
    }

    fn join(&mut self, slot: SlotId, generation: u64) {
        let Some(spec) = self.specs.get(&slot) else { return };
        let id = (slot, generation);
        // One set of counters per incarnation: a rejoin after failed checks keeps its count.
        let backend = match self.counters.get(&slot) {
            Some(backend) if backend.id == id => backend.clone(),
            _ => Arc::new(Backend::new(id, spec.name.clone(), spec.addr(), spec.template.proxy_protocol)),
        };
        self.counters.insert(slot, backend.clone());
        self.balancer.do_send(Join { type_name: spec.template.type_name.clone(), backend });
    }

    /// Reports a retiring instance's open connections; `Drained` follows when none is left.
    fn watch_drain(&mut self, slot: SlotId, generation: u64, ctx: &mut Context<Self>) {
        let counters = self.counters.get(&slot).filter(|c| c.id == (slot, generation)).cloned();
        let open = counters.as_ref().map_or(0, |c| c.open.load(Ordering::Relaxed));
        if let (Some(spec), Some(state)) = (self.specs.get(&slot), self.lifecycle.slot(slot)) {
            let pid = state.pid.map_or(String::new(), |p| format!("pid {p}, "));
            self.progress(format!("SIGTERM {} ({pid}{open} open connections)", spec.name));
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

    fn schedule_cycle(&self, slot: SlotId, ctx: &mut Context<Self>) {
        let Some(cycling) = self.config.cycling else { return };
        let jitter = rand::thread_rng().gen_range(Duration::ZERO..=cycling.jitter);
        ctx.run_later(cycling.period + jitter, move |act, ctx| act.handle_event(Event::CycleDue { slot }, ctx));
    }

    fn forget(&mut self, slot: SlotId) {
        self.specs.remove(&slot);
        self.controllers.remove(&slot);
        self.counters.remove(&slot);
    }

    fn progress(&self, text: String) {
        tracing::info!("{text}");
        if let Some(client) = &self.rollout_client {
            let _ = client.send(text);
        }
    }

    fn rollout_finished(&mut self, ok: bool, text: String, ctx: &mut Context<Self>) {
        log(if ok { Level::Info } else { Level::Warn }, &text);
        // A deploy's release is in force once its rollout succeeded, never before.
        if let Some(release) = self.pending_release.take().filter(|_| ok) {
            self.config.running = release;
        }
        // A cycle that failed is tried again a period later; the old instance kept serving.
        if let Some(slot) = self.cycling.take().filter(|_| !ok) {
            self.schedule_cycle(slot, ctx);
        }
        if let Some(client) = self.rollout_client.take() {
            let _ = client.send(format!("{}: {text}", if ok { "ok" } else { "failed" }));
        }
        if let Some(next) = self.queue.pop_front() {
            self.request(next, ctx);
        }
    }

    /// Starts a rollout now, or queues it behind the one running.
    fn request(&mut self, pending: Pending, ctx: &mut Context<Self>) {
        if self.lifecycle.rollout_running().is_some() {
            self.queue.push_back(pending);
            return;
        }
        let result = match pending {
            Pending::Restart { target, client } => {
                self.rollout_client = client;
                self.begin_restart(target)
            }
            Pending::Deploy { source, client } => {
                self.rollout_client = client;
                self.begin_deploy(source)
            }
            Pending::Cycle { slot } => self.begin_cycle(slot, ctx),
        };
        match result {
            Ok(effects) => self.apply(effects, ctx),
            Err(why) => {
                if let Some(client) = self.rollout_client.take() {
                    let _ = client.send(format!("failed: {why}"));
                }
                if let Some(next) = self.queue.pop_front() {
                    self.request(next, ctx);
                }
            }
        }
    }

    /// The current (not retiring, not held) instances, sorted by type and number.
    fn current(&self) -> Vec<(SlotId, &SlotSpec)> {
        let mut current: Vec<(SlotId, &SlotSpec)> = self
            .lifecycle
            .slots()
            .filter(|(_, slot)| !slot.retiring && !slot.held)
            .filter_map(|(id, _)| Some((id, self.specs.get(&id)?)))
            .filter(|(_, spec)| spec.port.is_some())
            .collect();
        current.sort_by_key(|(id, spec)| (spec.template.type_index, spec.number, *id));
        current
    }

    /// Files the spec of a new instance `number` of `template`, on a port of its block that no
    /// other instance (running or just filed) holds.
    fn file_new(&mut self, template: &Arc<TypeTemplate>, number: usize) -> Result<(SlotId, SlotInit), String> {
        let block = template.block_start.ok_or("a release step has no port")?;
        let in_use = |port: u16| self.specs.values().any(|s| s.port == Some(port));
        let port = port_for(block, number, in_use)
            .ok_or_else(|| format!("no free port left in {}'s block", template.type_name))?;
        Ok(self.file(template.instance(number, Some(port))))
    }

    fn file(&mut self, spec: SlotSpec) -> (SlotId, SlotInit) {
        let id = self.lifecycle.new_id();
        let slot = init(&spec);
        self.specs.insert(id, spec);
        (id, slot)
    }

    /// Begins the rollout of filed specs; if it cannot begin, the filed specs are dropped.
    fn begin(
        &mut self,
        kind: RolloutKind,
        pairs: Vec<NewPair>,
        release: Option<(SlotId, SlotInit)>,
    ) -> Result<Vec<Effect>, String> {
        let filed: Vec<SlotId> = pairs
            .iter()
            .filter_map(|(_, new)| new.as_ref().map(|(id, _)| *id))
            .chain(release.as_ref().map(|(id, _)| *id))
            .collect();
        let result = self.lifecycle.begin_rollout(kind, pairs, release, Instant::now());
        if result.is_err() {
            self.forget_all(&filed);
        }
        result.map_err(|refusal| refusal.to_string())
    }

    fn forget_all(&mut self, ids: &[SlotId]) {
        for id in ids {
            self.forget(*id);
        }
    }

    /// Files a replacement for each of `olds`; on failure nothing stays filed.
    fn file_replacements(
        &mut self,
        olds: Vec<(Option<SlotId>, Arc<TypeTemplate>, usize)>,
    ) -> Result<Vec<NewPair>, String> {
        let mut pairs = Vec::new();
        for (old, template, number) in olds {
            match self.file_new(&template, number) {
                Ok(new) => pairs.push((old, Some(new))),
                Err(why) => {
                    let filed: Vec<SlotId> =
                        pairs.iter().filter_map(|(_, new): &NewPair| new.as_ref().map(|(id, _)| *id)).collect();
                    self.forget_all(&filed);
                    return Err(why);
                }
            }
        }
        Ok(pairs)
    }
}

fn log(level: Level, text: &str) {
    match level {
        Level::Info => tracing::info!("{text}"),
        Level::Warn => tracing::warn!("{text}"),
        Level::Error => tracing::error!("{text}"),
    }
}

impl Scheduler {
    /// `restart [TYPE|INSTANCE]`: every matching current instance, replaced with the same spec
    /// on a fresh port.
    fn begin_restart(&mut self, target: Option<String>) -> Result<Vec<Effect>, String> {
        let matches =
            |spec: &SlotSpec| target.as_deref().is_none_or(|t| t == spec.template.type_name || t == spec.name);
        let olds: Vec<_> = self
            .current()
            .into_iter()
            .filter(|(_, s)| matches(s))
            .map(|(id, s)| (Some(id), s.template.clone(), s.number))
            .collect();
        if olds.is_empty() {
            return Err(format!("no running instance matches `{}`", target.as_deref().unwrap_or("all")));
        }
        let pairs = self.file_replacements(olds)?;
        let kind = RolloutKind::Restart(target.unwrap_or_else(|| "all types".into()));
        self.begin(kind, pairs, None)
    }

    /// Daily cycling of one instance, if it is still a current one: a rollout that ran while
    /// its cycle waited may have replaced it already (the replacement has its own clock).
    fn begin_cycle(&mut self, slot: SlotId, ctx: &mut Context<Self>) -> Result<Vec<Effect>, String> {
        let Some(spec) = self.current().into_iter().find(|(id, _)| *id == slot).map(|(_, spec)| spec.clone()) else {
            return Ok(Vec::new());
        };
        tracing::info!("Cycling {}", spec.name);
        let pairs = self.file_replacements(vec![(Some(slot), spec.template.clone(), spec.number)]);
        let begun = pairs.and_then(|pairs| self.begin(RolloutKind::Cycle(spec.name.clone()), pairs, None));
        match begun {
            Ok(effects) => {
                self.cycling = Some(slot);
                Ok(effects)
            }
            Err(why) => {
                tracing::warn!("cycling of {} failed: {why}; trying again in one period", spec.name);
                self.schedule_cycle(slot, ctx);
                Ok(Vec::new())
            }
        }
    }

    /// The plan of a deploy from `source` (deploy_plan), against the running formation.
    fn deploy_plan(&self, source: &ReleaseSource) -> Result<(Release, deploy_plan::DeployPlan), String> {
        let new = self.config.running.release.next(source).map_err(|err| err.to_string())?;
        let mut counts = std::collections::BTreeMap::new();
        for (_, spec) in self.current() {
            *counts.entry(spec.template.type_name.clone()).or_insert(0) += 1;
        }
        let plan = deploy_plan::plan(&self.config.running.release, &new, &counts);
        Ok((new, plan))
    }

    /// `deploy --dry-run`: the plan, and whether it would be carried out.
    fn answer_plan(&self, source: &ReleaseSource, client: &UnboundedSender<String>) {
        let last = match self.deploy_plan(source) {
            Ok((_, plan)) => {
                for line in plan.to_string().lines() {
                    let _ = client.send(line.to_string());
                }
                match plan.is_refused() {
                    true => format!("failed: {}", deploy_plan::refusal_text(&plan)),
                    false => "ok: dry run: nothing was changed".to_string(),
                }
            }
            Err(why) => format!("failed: {why}"),
        };
        let _ = client.send(last);
    }

    /// `deploy`: carries out the plan (deploy_plan); the release step, if any, runs first. The
    /// new release is in force only once the rollout succeeded.
    fn begin_deploy(&mut self, source: ReleaseSource) -> Result<Vec<Effect>, String> {
        let (release, plan) = self.deploy_plan(&source)?;
        if plan.is_refused() {
            return Err(deploy_plan::refusal_text(&plan));
        }
        let templates = Templates::of(&release, &self.config.bound).map_err(|err| err.to_string())?;
        let current = self.current();
        let mut olds = Vec::new();
        let mut removed = Vec::new();
        for line in &plan.types {
            let of_type = current.iter().filter(|(_, s)| s.template.type_name == line.type_name);
            match (&line.change, templates.get(&line.type_name)) {
                (TypeChange::Added, Some(template)) => olds.push((None, template.clone(), 1)),
                (TypeChange::Replaced { .. }, Some(template)) => {
                    olds.extend(of_type.map(|(id, spec)| (Some(*id), template.clone(), spec.number)))
                }
                (TypeChange::Removed { .. }, _) => removed.extend(of_type.map(|(id, _)| *id)),
                _ => {}
            }
        }
        for line in plan.to_string().lines() {
            self.progress(line.to_string());
        }
        let mut pairs = self.file_replacements(olds)?;
        pairs.extend(removed.into_iter().map(|id| (Some(id), None)));
        let step = templates.release_step.as_ref().map(|t| self.file(t.instance(1, None)));
        let effects = self.begin(RolloutKind::Deploy, pairs, step)?;
        self.pending_release = Some(Running { release, templates });
        Ok(effects)
    }

    /// `scale TYPE=N...`: adds instances with the lowest free numbers, retires the highest.
    fn scale(&mut self, changes: Vec<(String, usize)>, ctx: &mut Context<Self>) -> Result<Vec<String>, ScaleRefused> {
        if let Some(running) = self.lifecycle.rollout_running() {
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
            plan.push((template, *count));
        }
        let mut lines = Vec::new();
        for (template, count) in plan {
            lines.extend(self.scale_type(&template, count, ctx)?);
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

    fn spawn(&mut self, slot: SlotId, generation: u64, ctx: &mut Context<Self>) {
        let Some(spec) = self.specs.get(&slot) else { return };
        self.config.output.fit(&spec.name);
        let launch = Launch {
            command: spec.template.command.clone(),
            env: spec.env(),
            root: spec.template.root.clone(),
            prefix: Prefix {
                output: self.config.output.clone(),
                name: spec.name.clone(),
                colour: spec.template.type_index,
            },
        };
        let addr = ctx.address();
        let descriptors = self.config.descriptors.clone();
        let on_event = move |event| {
            if matches!(event, ProcessEvent::Exited(_)) {
                descriptors.instance_gone();
            }
            addr.do_send(Notify(slot_event(slot, generation, event)))
        };
        match process::spawn(launch, &self.config.keeper_exe, on_event) {
            Ok((controller, monitor)) => {
                self.config.descriptors.instance_started();
                self.controllers.insert(slot, controller);
                actix::spawn(monitor);
            }
            Err(err) => ctx.notify(Notify(Event::SpawnFailed { slot, generation, error: err.to_string() })),
        }
    }

    fn status(&self) -> Vec<InstanceStatus> {
        let now = Instant::now();
        let mut list: Vec<(usize, usize, SlotId, InstanceStatus)> = Vec::new();
        for (id, slot) in self.lifecycle.slots() {
            let Some(spec) = self.specs.get(&id) else { continue };
            let running = matches!(slot.state, State::Starting | State::Up | State::Draining);
            let counters = self.counters.get(&id).filter(|c| c.id == (id, slot.generation));
            let status = InstanceStatus {
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

/// Asks for every instance's status (`ps`).
#[derive(Message)]
#[rtype(result = "Vec<InstanceStatus>")]
pub struct Status;

impl Handler<Status> for Scheduler {
    type Result = Vec<InstanceStatus>;

    fn handle(&mut self, _: Status, _ctx: &mut Context<Self>) -> Vec<InstanceStatus> {
        self.status()
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
        self.scale(changes, ctx)
    }
}

/// `restart [TARGET]` or `deploy [--from DIR]`: progress lines go to `client`, the last one starts
/// with `ok:` or `failed:`. A dry run of a deploy answers its plan and changes nothing.
#[derive(Message)]
#[rtype(result = "()")]
pub enum Roll {
    Restart { target: Option<String>, client: UnboundedSender<String> },
    Deploy { source: ReleaseSource, dry_run: bool, client: UnboundedSender<String> },
}

impl Handler<Roll> for Scheduler {
    type Result = ();

    fn handle(&mut self, roll: Roll, ctx: &mut Context<Self>) {
        let pending = match roll {
            Roll::Restart { target, client } => Pending::Restart { target, client: Some(client) },
            Roll::Deploy { source, dry_run: true, client } => return self.answer_plan(&source, &client),
            Roll::Deploy { source, dry_run: false, client } => Pending::Deploy { source, client: Some(client) },
        };
        if self.lifecycle.rollout_running().is_some() {
            if let Pending::Restart { client: Some(client), .. } | Pending::Deploy { client: Some(client), .. } =
                &pending
            {
                let _ = client.send("queued behind the rollout under way".to_string());
            }
        }
        self.request(pending, ctx);
    }
}
