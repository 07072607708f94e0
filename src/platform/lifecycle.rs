//! The Scheduler's decisions as a pure state machine: [`Lifecycle::handle`] takes an event and
//! the time and returns effects for the actor to carry out. No processes, no sockets, no clock.
//!
//! Instance states and what moves them (decided in the `on_*` methods below):
//! ```text
//!   spawn ─► Starting ──alive 1 s (unrouted) / first good handshake (routed: Join)──► Up
//!               │ no good handshake within the boot timeout: SIGKILL (R10) ─► Draining
//!               │                     │ stop, scale down, replaced: Leave routing, SIGTERM, grace
//!               └─────────────────────┴──────────► Draining ──tree gone──► Stopped (or removed)
//!   leader exits on its own ─► Draining (rest of the tree got SIGTERM) ──tree gone──► Crashed
//!   Crashed ──backoff elapsed──► spawn          Draining ──grace over──► SIGKILL (R12)
//!   Up (routed) ──health checks fail──► Up, out of routing ──they pass again──► back in
//! ```
//! A `release` slot is one-shot: it runs before the others and its exit decides whether they start.
//! Replacements of a rollout (see [`super::rollout`]) are held out of routing until all are healthy.

use super::backoff::Backoff;
use super::rollout::{Rollout, RolloutKind};
use crate::process::protocol::ExitReason;
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// A non-routed instance counts as up once it has stayed alive this long.
pub const UP_AFTER: Duration = Duration::from_secs(1);

/// Identifies an instance slot: one name, one port, one command, across its crash restarts.
/// A replacement (rollout) or a scaled-up instance gets a new slot; ids are never reused.
pub type SlotId = usize;

/// Where an instance is in its life (shown by `ps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Starting,
    Up,
    Draining,
    Crashed,
    Stopped,
}

impl State {
    /// The name `ps` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Up => "up",
            State::Draining => "draining",
            State::Crashed => "crashed",
            State::Stopped => "stopped",
        }
    }
}

/// One instance slot and its current incarnation.
#[derive(Debug, Clone)]
pub struct Slot {
    pub name: String,
    pub state: State,
    /// Bumped at each spawn and stop, so late events and timers of an old incarnation are ignored.
    pub generation: u64,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub started_at: Option<Instant>,
    pub restart_at: Option<Instant>,
    pub port: Option<u16>,
    /// Its type is served by the gateway: health-checked, joins routing when healthy.
    pub routed: bool,
    /// New connections go to it now.
    pub in_routing: bool,
    /// A replacement waiting for the rest of its rollout before it joins routing.
    pub held: bool,
    /// Leaving for good (replaced or scaled down): removed once its tree is gone.
    pub retiring: bool,
    /// Restart it once it has failed its checks this long (opt-in; `None`: never).
    restart_unhealthy_after: Option<Duration>,
    /// Bumped each time it turns healthy or unhealthy, so a restart timer of an earlier spell of
    /// failed checks is ignored.
    health_spell: u64,
    watched: bool,
    one_shot: bool,
    stop_requested: bool,
    backoff: Backoff,
}

/// Something that happened to a slot, or a timer that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Started {
        slot: SlotId,
        generation: u64,
        pid: u32,
    },
    LeaderExited {
        slot: SlotId,
        generation: u64,
    },
    Exited {
        slot: SlotId,
        generation: u64,
        reason: ExitReason,
    },
    SpawnFailed {
        slot: SlotId,
        generation: u64,
        error: String,
    },
    UpDue {
        slot: SlotId,
        generation: u64,
    },
    RestartDue {
        slot: SlotId,
        generation: u64,
    },
    GraceOver {
        slot: SlotId,
        generation: u64,
    },
    BootDue {
        slot: SlotId,
        generation: u64,
    },
    /// The HealthChecker saw it accept connections (routed types).
    Healthy {
        slot: SlotId,
        generation: u64,
    },
    /// The HealthChecker saw `fall` failed probes in a row.
    Unhealthy {
        slot: SlotId,
        generation: u64,
    },
    /// A release step's time is up.
    ReleaseDue {
        slot: SlotId,
        generation: u64,
    },
    /// It has failed its checks since spell `spell` for `restart_unhealthy_after`.
    UnhealthyDue {
        slot: SlotId,
        generation: u64,
        spell: u64,
    },
    /// A retiring instance has no open gateway connection left.
    Drained {
        slot: SlotId,
        generation: u64,
    },
    /// Its daily cycle is due.
    CycleDue {
        slot: SlotId,
    },
    /// SIGINT/SIGTERM or `procgate stop`; a second one skips the grace.
    StopRequested,
    /// `procgate stop`: a graceful stop; asked again, it is not a second signal (no SIGKILL).
    StopAsked,
}

/// What the actor must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Spawn {
        slot: SlotId,
        generation: u64,
    },
    Signal {
        slot: SlotId,
        signal: Signal,
    },
    Kill {
        slot: SlotId,
    },
    After {
        delay: Duration,
        event: Event,
    },
    /// Start health-checking the instance.
    Watch {
        slot: SlotId,
        generation: u64,
    },
    /// Stop health-checking it.
    Unwatch {
        slot: SlotId,
        generation: u64,
    },
    /// Route new connections to it.
    Join {
        slot: SlotId,
        generation: u64,
    },
    /// Route no new connection to it; `reason` is logged.
    Leave {
        slot: SlotId,
        generation: u64,
        reason: &'static str,
    },
    /// It got SIGTERM as it retires: report its open connections, send `Drained` when none is left.
    WatchDrain {
        slot: SlotId,
        generation: u64,
    },
    /// Arm its daily cycle timer (the actor adds the random jitter).
    ScheduleCycle {
        slot: SlotId,
    },
    /// Its cycle is due: start a one-instance rollout for it (or queue it).
    RequestCycle {
        slot: SlotId,
    },
    /// The slot is gone for good: drop what the actor holds for it.
    Forget {
        slot: SlotId,
    },
    /// A rollout step, for the log and the client that asked for the rollout.
    Progress(String),
    /// The rollout ended: `ok` when every replacement serves and every old instance drained.
    RolloutFinished {
        ok: bool,
        text: String,
    },
    /// Stop accepting new clients at the gateway (the platform is stopping).
    CloseGateway,
    Log {
        level: Level,
        text: String,
    },
    /// Everything is stopped: exit the process with this status.
    Exit(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Release,
    Running,
    ShuttingDown { fast: bool },
    Done,
}

/// The time limits the state machine enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// SIGTERM to SIGKILL.
    pub grace: Duration,
    /// Spawn to first good handshake, for routed types (R10).
    pub boot_timeout: Duration,
    /// How long a `release` step may run before it is killed (R20).
    pub release_timeout: Duration,
}

/// A slot to create.
#[derive(Debug, Clone)]
pub struct SlotInit {
    pub name: String,
    /// The gateway routes its type.
    pub routed: bool,
    /// Its `PORT`, for the log lines that tell old and new instances apart.
    pub port: Option<u16>,
    /// Restart it once it has failed its health checks for this long (`restart_unhealthy_after`
    /// in procgate.toml); `None`: failed checks only take it out of routing.
    pub restart_unhealthy_after: Option<Duration>,
}

/// Why a rollout cannot begin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("a {0} is running; try again when it is done")]
    Busy(String),
    #[error("procgate is stopping")]
    Stopping,
}

/// The whole formation's state.
#[derive(Debug)]
pub struct Lifecycle {
    slots: BTreeMap<SlotId, Slot>,
    next_id: SlotId,
    phase: Phase,
    timing: Timing,
    /// Set when an instance had to be SIGKILLed: the stop was not clean.
    killed_any: bool,
    rollout: Option<Rollout>,
    /// A deploy's rollout waiting for its release step.
    after_release: Option<(RolloutKind, Vec<NewPair>)>,
}

/// A rollout pair as asked for: the old slot, and the id and init of its replacement.
pub type NewPair = (Option<SlotId>, Option<(SlotId, SlotInit)>);

impl Slot {
    fn new(init: SlotInit, one_shot: bool) -> Slot {
        Slot {
            name: init.name,
            state: State::Stopped,
            generation: 0,
            pid: None,
            restarts: 0,
            started_at: None,
            restart_at: None,
            port: init.port,
            restart_unhealthy_after: init.restart_unhealthy_after,
            health_spell: 0,
            routed: init.routed,
            in_routing: false,
            held: false,
            retiring: false,
            watched: false,
            one_shot,
            stop_requested: false,
            backoff: Backoff::default(),
        }
    }

    fn is_running(&self) -> bool {
        matches!(self.state, State::Starting | State::Up | State::Draining)
    }

    /// The state `ps` shows: `failed` for a crashed instance in a crash loop.
    pub fn shown_state(&self) -> &'static str {
        match self.state {
            State::Crashed if self.backoff.looping() => "failed",
            state => state.as_str(),
        }
    }
}

fn log(level: Level, text: impl Into<String>) -> Effect {
    Effect::Log { level, text: text.into() }
}

impl Lifecycle {
    /// Slots `0..instances.len()` are the instances; a release command, if any, is the next slot.
    pub fn new(instances: Vec<SlotInit>, release: Option<SlotInit>, timing: Timing) -> Lifecycle {
        let mut lifecycle = Lifecycle {
            slots: BTreeMap::new(),
            next_id: 0,
            phase: Phase::Running,
            timing,
            killed_any: false,
            rollout: None,
            after_release: None,
        };
        for init in instances {
            let id = lifecycle.new_id();
            lifecycle.slots.insert(id, Slot::new(init, false));
        }
        if let Some(init) = release {
            let id = lifecycle.new_id();
            lifecycle.slots.insert(id, Slot::new(init, true));
        }
        lifecycle
    }

    /// Reserves the id of a slot to come (the actor files its spec under it first).
    pub fn new_id(&mut self) -> SlotId {
        self.next_id += 1;
        self.next_id - 1
    }

    /// Every slot, in creation order.
    pub fn slots(&self) -> impl Iterator<Item = (SlotId, &Slot)> {
        self.slots.iter().map(|(id, slot)| (*id, slot))
    }

    pub fn slot(&self, id: SlotId) -> Option<&Slot> {
        self.slots.get(&id)
    }

    /// Starts the release slot, or every instance when there is none.
    pub fn start(&mut self, now: Instant) -> Vec<Effect> {
        match self.slots.iter().find(|(_, s)| s.one_shot).map(|(id, _)| *id) {
            Some(release) => {
                self.phase = Phase::Release;
                self.spawn(release, now)
            }
            None => self.spawn_instances(now),
        }
    }

    fn spawn_instances(&mut self, now: Instant) -> Vec<Effect> {
        self.phase = Phase::Running;
        let ids: Vec<SlotId> = self.slots.iter().filter(|(_, s)| !s.one_shot).map(|(id, _)| *id).collect();
        if ids.is_empty() {
            return vec![log(Level::Warn, "the formation has no instance to run (every type is at 0)")];
        }
        ids.into_iter().flat_map(|id| self.spawn(id, now)).collect()
    }

    fn spawn(&mut self, id: SlotId, now: Instant) -> Vec<Effect> {
        let slot = self.slots.get_mut(&id).expect("spawning a known slot");
        let first = slot.generation == 0;
        slot.generation += 1;
        slot.state = State::Starting;
        slot.started_at = Some(now);
        slot.restart_at = None;
        slot.stop_requested = false;
        let mut effects = vec![Effect::Spawn { slot: id, generation: slot.generation }];
        if first && !slot.one_shot {
            effects.push(Effect::ScheduleCycle { slot: id });
        }
        if slot.one_shot {
            let event = Event::ReleaseDue { slot: id, generation: slot.generation };
            effects.push(Effect::After { delay: self.timing.release_timeout, event });
        }
        effects
    }

    /// A release step still running at its timeout: R20, SIGKILL (its exit then fails the start
    /// or the deploy).
    fn on_release_due(&mut self, id: SlotId) -> Vec<Effect> {
        let slot = &self.slots[&id];
        if !matches!(slot.state, State::Starting | State::Up) {
            return Vec::new();
        }
        let limit = crate::duration::format(self.timing.release_timeout);
        let text = format!("R20 Release timeout: {} did not finish within {limit}; sending SIGKILL", slot.name);
        vec![log(Level::Error, text), Effect::Kill { slot: id }]
    }

    /// Adds and starts an instance (scale up) under an id from [`Lifecycle::new_id`].
    pub fn add(&mut self, id: SlotId, init: SlotInit, now: Instant) -> Result<Vec<Effect>, Refusal> {
        if self.phase != Phase::Running {
            return Err(Refusal::Stopping);
        }
        if let Some(running) = self.rollout_running() {
            return Err(Refusal::Busy(running));
        }
        self.slots.insert(id, Slot::new(init, false));
        Ok(self.spawn(id, now))
    }

    /// Takes an instance away for good (scale down): out of routing, SIGTERM, removed when gone.
    pub fn retire(&mut self, id: SlotId, reason: &'static str) -> Vec<Effect> {
        let Some(slot) = self.slots.get_mut(&id) else { return Vec::new() };
        slot.retiring = true;
        if !slot.is_running() {
            self.slots.remove(&id);
            return vec![Effect::Forget { slot: id }];
        }
        let mut effects = self.unroute(id, reason, true);
        effects.extend(self.terminate(id, false));
        effects
    }

    /// Whether a rollout (or a deploy's release step) is under way.
    pub fn rollout_running(&self) -> Option<String> {
        let kind = self.rollout.as_ref().map(|r| &r.kind).or(self.after_release.as_ref().map(|(k, _)| k));
        kind.map(RolloutKind::describe)
    }

    /// Begins a rollout: `pairs` are (old slot, its replacement), either may be absent. With a
    /// `release`, that runs first and the rollout only begins if it succeeds.
    pub fn begin_rollout(
        &mut self,
        kind: RolloutKind,
        pairs: Vec<NewPair>,
        release: Option<(SlotId, SlotInit)>,
        now: Instant,
    ) -> Result<Vec<Effect>, Refusal> {
        if self.phase != Phase::Running {
            return Err(Refusal::Stopping);
        }
        if let Some(running) = self.rollout_running() {
            return Err(Refusal::Busy(running));
        }
        if let Some((id, release)) = release {
            self.after_release = Some((kind, pairs));
            self.slots.insert(id, Slot::new(release, true));
            return Ok(self.spawn(id, now));
        }
        Ok(self.launch_rollout(kind, pairs, now))
    }

    fn launch_rollout(&mut self, kind: RolloutKind, pairs: Vec<NewPair>, now: Instant) -> Vec<Effect> {
        let mut effects = vec![Effect::Progress(format!("{} started", kind.describe()))];
        let mut ids = Vec::new();
        for (old, new) in pairs {
            if let Some((id, init)) = &new {
                let mut slot = Slot::new(init.clone(), false);
                slot.held = true;
                self.slots.insert(*id, slot);
                effects.extend(self.spawn(*id, now));
            }
            ids.push((old, new.map(|(id, _)| id)));
        }
        self.rollout = Some(Rollout::new(kind, ids));
        effects.extend(self.switch_if_ready(None, now));
        effects
    }

    /// Applies one event; events of an old incarnation are ignored.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Effect> {
        if let Some((id, generation)) = event_slot(&event) {
            if self.slots.get(&id).is_none_or(|s| s.generation != generation) {
                return Vec::new();
            }
        }
        match event {
            Event::Started { slot, pid, .. } => self.on_started(slot, pid),
            Event::UpDue { slot, .. } => self.on_up(slot, now),
            Event::LeaderExited { slot, .. } => self.on_leader_exited(slot),
            Event::GraceOver { slot, .. } => self.on_grace_over(slot),
            Event::Exited { slot, reason, .. } => self.on_exited(slot, reason, now),
            Event::SpawnFailed { slot, error, .. } => {
                let text = format!("{} could not start: {error}", self.slots[&slot].name);
                let mut effects = vec![log(Level::Error, text)];
                effects.extend(self.on_exited(slot, ExitReason::Code(127), now));
                effects
            }
            Event::RestartDue { slot, .. } => self.on_restart_due(slot, now),
            Event::BootDue { slot, .. } => self.on_boot_due(slot, now),
            Event::Healthy { slot, .. } => self.on_up(slot, now),
            Event::Unhealthy { slot, .. } => self.on_unhealthy(slot),
            Event::UnhealthyDue { slot, spell, .. } => self.on_unhealthy_due(slot, spell),
            Event::ReleaseDue { slot, .. } => self.on_release_due(slot),
            Event::Drained { slot, .. } => self.on_drained(slot, now),
            Event::CycleDue { slot } => self.on_cycle_due(slot),
            Event::StopRequested => self.on_stop_requested(),
            Event::StopAsked => match self.phase {
                Phase::Release | Phase::Running => self.terminate_everything(),
                Phase::ShuttingDown { .. } | Phase::Done => Vec::new(),
            },
        }
    }

    fn on_started(&mut self, id: SlotId, pid: u32) -> Vec<Effect> {
        let boot_timeout = self.timing.boot_timeout;
        let slot = self.slots.get_mut(&id).expect("checked by handle");
        slot.pid = Some(pid);
        let generation = slot.generation;
        let port = slot.port.map_or(String::new(), |p| format!(", port {p}"));
        let mut effects = match slot.held {
            true => vec![Effect::Progress(format!("{} replacement starting (pid {pid}{port})", slot.name))],
            false => vec![log(Level::Info, format!("{} started with pid {pid}", slot.name))],
        };
        if slot.routed && slot.state == State::Starting {
            slot.watched = true;
            effects.push(Effect::Watch { slot: id, generation });
            effects.push(Effect::After { delay: boot_timeout, event: Event::BootDue { slot: id, generation } });
        } else if !slot.one_shot {
            effects.push(Effect::After { delay: UP_AFTER, event: Event::UpDue { slot: id, generation } });
        }
        effects
    }

    /// Healthy (routed) or alive long enough (unrouted): up, and in routing unless held.
    fn on_up(&mut self, id: SlotId, now: Instant) -> Vec<Effect> {
        let slot = self.slots.get_mut(&id).expect("checked by handle");
        if !matches!(slot.state, State::Starting | State::Up) || slot.in_routing {
            return Vec::new();
        }
        let was_starting = slot.state == State::Starting;
        slot.state = State::Up;
        slot.health_spell += 1;
        if slot.held {
            let text = format!("{} (pid {}) healthy", slot.name, slot.pid.unwrap_or_default());
            let mut effects = if was_starting { vec![Effect::Progress(text)] } else { Vec::new() };
            effects.extend(self.switch_if_ready(Some(id), now));
            return effects;
        }
        if !slot.routed {
            return Vec::new();
        }
        slot.in_routing = true;
        vec![Effect::Join { slot: id, generation: slot.generation }]
    }

    /// When every replacement is healthy: they join routing, the old instances leave and retire.
    fn switch_if_ready(&mut self, ready: Option<SlotId>, now: Instant) -> Vec<Effect> {
        let Some(rollout) = self.rollout.as_mut() else { return Vec::new() };
        if let Some(id) = ready {
            rollout.ready(id);
        }
        if !rollout.all_ready() {
            return Vec::new();
        }
        rollout.switch(now);
        let (news, olds): (Vec<SlotId>, Vec<SlotId>) = (rollout.replacements().collect(), rollout.olds().collect());
        let mut effects = Vec::new();
        for id in news {
            let slot = self.slots.get_mut(&id).expect("replacements live until the rollout ends");
            slot.held = false;
            if slot.routed {
                slot.in_routing = true;
                effects.push(Effect::Join { slot: id, generation: slot.generation });
            }
        }
        effects.push(Effect::Progress("routing switched: new connections go to the replacements".into()));
        for id in olds {
            effects.extend(self.retire(id, "replaced"));
            if !self.slots.contains_key(&id) {
                effects.extend(self.on_drained(id, now));
            }
        }
        effects.extend(self.finish_rollout_if_done());
        effects
    }

    fn on_drained(&mut self, id: SlotId, now: Instant) -> Vec<Effect> {
        let Some(rollout) = self.rollout.as_mut() else { return Vec::new() };
        let Some(took) = rollout.drained(id, now) else { return Vec::new() };
        let mut effects = Vec::new();
        if let Some(slot) = self.slots.get(&id) {
            let pid = slot.pid.map_or(String::new(), |p| format!(" (pid {p})"));
            effects.push(Effect::Progress(format!("{}{pid} drained in {:.1}s", slot.name, took.as_secs_f64())));
        }
        effects.extend(self.finish_rollout_if_done());
        effects
    }

    fn finish_rollout_if_done(&mut self) -> Vec<Effect> {
        if !self.rollout.as_ref().is_some_and(Rollout::is_done) {
            return Vec::new();
        }
        let rollout = self.rollout.take().expect("checked above");
        let replaced = rollout.pairs().iter().filter(|p| p.new.is_some()).count();
        let text = format!("{} done: {replaced} instances serving, the old ones drained", rollout.kind.describe());
        vec![Effect::RolloutFinished { ok: true, text }]
    }

    /// A replacement failed before the switch: stop the replacements, keep the old instances.
    fn fail_rollout(&mut self, why: String) -> Vec<Effect> {
        let Some(rollout) = self.rollout.take() else { return Vec::new() };
        let mut effects = Vec::new();
        for id in rollout.replacements().collect::<Vec<_>>() {
            effects.extend(self.retire(id, "rollout failed"));
        }
        let text = format!("{} failed: {why}; the old instances keep serving", rollout.kind.describe());
        effects.push(Effect::RolloutFinished { ok: false, text });
        effects
    }

    /// Takes the slot out of routing (and, when `unwatch`, out of health checks).
    fn unroute(&mut self, id: SlotId, reason: &'static str, unwatch: bool) -> Vec<Effect> {
        let slot = self.slots.get_mut(&id).expect("unrouting a known slot");
        let generation = slot.generation;
        let mut effects = Vec::new();
        if slot.in_routing {
            slot.in_routing = false;
            effects.push(Effect::Leave { slot: id, generation, reason });
        }
        if unwatch && slot.watched {
            slot.watched = false;
            effects.push(Effect::Unwatch { slot: id, generation });
        }
        effects
    }

    /// Readiness: out of routing, back when its checks pass again. Liveness is opt-in: with
    /// `restart_unhealthy_after`, an instance still failing its checks that long later is
    /// restarted (R16); by default it is not (a single-threaded app busy for a few seconds, or
    /// every instance under a load spike, would be killed mid-request).
    fn on_unhealthy(&mut self, id: SlotId) -> Vec<Effect> {
        let mut effects = self.unroute(id, "health check failed", false);
        let slot = self.slots.get_mut(&id).expect("checked by handle");
        slot.health_spell += 1;
        if let Some(after) = slot.restart_unhealthy_after.filter(|_| slot.state == State::Up) {
            let event = Event::UnhealthyDue { slot: id, generation: slot.generation, spell: slot.health_spell };
            effects.push(Effect::After { delay: after, event });
        }
        effects
    }

    /// Still failing its checks since `spell`: R16, a restart.
    fn on_unhealthy_due(&mut self, id: SlotId, spell: u64) -> Vec<Effect> {
        let slot = &self.slots[&id];
        if slot.health_spell != spell || slot.state != State::Up || slot.in_routing || slot.retiring || slot.held {
            return Vec::new();
        }
        let after = crate::duration::format(slot.restart_unhealthy_after.unwrap_or_default());
        let text = format!("R16 Unresponsive: {} failed its health checks for {after}; restarting it", slot.name);
        let mut effects = vec![log(Level::Warn, text)];
        effects.extend(self.terminate(id, true));
        effects
    }

    /// SIGTERM now, SIGKILL after the grace; the exit is a stop, or a restart when `restart`.
    fn terminate(&mut self, id: SlotId, restart: bool) -> Vec<Effect> {
        let grace = self.timing.grace;
        let slot = self.slots.get_mut(&id).expect("terminating a known slot");
        slot.stop_requested = !restart;
        if !matches!(slot.state, State::Starting | State::Up) {
            return Vec::new();
        }
        slot.state = State::Draining;
        let generation = slot.generation;
        let mut effects = vec![Effect::Signal { slot: id, signal: Signal::SIGTERM }];
        if slot.retiring {
            effects.push(Effect::WatchDrain { slot: id, generation });
        }
        effects.push(Effect::After { delay: grace, event: Event::GraceOver { slot: id, generation } });
        effects
    }

    /// A routed instance never accepted a connection: Heroku's R10, then a crash restart (or,
    /// for a replacement, the end of its rollout).
    fn on_boot_due(&mut self, id: SlotId, _now: Instant) -> Vec<Effect> {
        if self.slots[&id].state != State::Starting {
            return Vec::new();
        }
        let mut effects = self.unroute(id, "boot timeout", true);
        let limit = crate::duration::format(self.timing.boot_timeout);
        let slot = self.slots.get_mut(&id).expect("checked by handle");
        slot.state = State::Draining;
        let text =
            format!("R10 Boot timeout: {} did not accept connections within {limit}; sending SIGKILL", slot.name);
        let held = slot.held;
        effects.extend([log(Level::Warn, text), Effect::Kill { slot: id }]);
        if held {
            let why = format!(
                "{} (pid {}) did not accept connections within {limit}",
                slot.name,
                slot.pid.unwrap_or_default()
            );
            effects.extend(self.fail_rollout(why));
        }
        effects
    }

    /// The main process ended by itself; the keeper sent SIGTERM to what is left of the tree.
    fn on_leader_exited(&mut self, id: SlotId) -> Vec<Effect> {
        let mut effects = self.unroute(id, "exited", true);
        let grace = self.timing.grace;
        let slot = self.slots.get_mut(&id).expect("checked by handle");
        if slot.state != State::Draining {
            slot.state = State::Draining;
            let event = Event::GraceOver { slot: id, generation: slot.generation };
            effects.push(Effect::After { delay: grace, event });
        }
        effects
    }

    fn on_grace_over(&mut self, id: SlotId) -> Vec<Effect> {
        let slot = &self.slots[&id];
        if slot.state != State::Draining {
            return Vec::new();
        }
        self.killed_any = true;
        let grace = crate::duration::format(self.timing.grace);
        let text = format!("R12 Exit timeout: {} did not exit within {grace} of SIGTERM; sending SIGKILL", slot.name);
        vec![log(Level::Warn, text), Effect::Kill { slot: id }]
    }

    fn on_exited(&mut self, id: SlotId, reason: ExitReason, now: Instant) -> Vec<Effect> {
        let mut effects = self.unroute(id, "exited", true);
        let phase = self.phase;
        let slot = self.slots.get_mut(&id).expect("checked by handle");
        // Old and new instances share a name during a rollout: the pid tells them apart.
        let pid = slot.pid.filter(|_| slot.retiring || slot.held).map_or(String::new(), |p| format!(" (pid {p})"));
        effects.push(log(Level::Info, format!("{}{pid} {reason}", slot.name)));
        slot.state = State::Stopped;
        if slot.one_shot {
            self.slots.remove(&id);
            effects.push(Effect::Forget { slot: id });
            effects.extend(self.on_release_exited(reason, now));
        } else if slot.retiring {
            // An exited instance has no connection left: drained, if it was not already.
            effects.extend(self.on_drained(id, now));
            self.slots.remove(&id);
            effects.push(Effect::Forget { slot: id });
        } else if slot.held {
            let why = format!("{}{pid} {reason} before it was healthy", slot.name);
            slot.retiring = true;
            self.slots.remove(&id);
            effects.push(Effect::Forget { slot: id });
            effects.extend(self.fail_rollout(why));
        } else if !slot.stop_requested && !matches!(phase, Phase::ShuttingDown { .. } | Phase::Done) {
            effects.extend(self.schedule_restart(id, now));
        }
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.pid = None;
        }
        effects.extend(self.exit_if_done());
        effects
    }

    fn schedule_restart(&mut self, id: SlotId, now: Instant) -> Vec<Effect> {
        let slot = self.slots.get_mut(&id).expect("restarting a known slot");
        let uptime = slot.started_at.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        let delay = slot.backoff.crashed(uptime);
        slot.restarts += 1;
        slot.state = State::Crashed;
        slot.restart_at = Some(now + delay);
        let wait = crate::duration::format(delay);
        let text = format!("{} crashed; restarting in {wait} (restart {})", slot.name, slot.restarts);
        let event = Event::RestartDue { slot: id, generation: slot.generation };
        vec![log(Level::Warn, text), Effect::After { delay, event }]
    }

    fn on_release_exited(&mut self, reason: ExitReason, now: Instant) -> Vec<Effect> {
        if matches!(self.phase, Phase::ShuttingDown { .. } | Phase::Done) {
            return Vec::new();
        }
        if let Some((kind, pairs)) = self.after_release.take() {
            if reason == ExitReason::Code(0) {
                return self.launch_rollout(kind, pairs, now);
            }
            let text = format!("{} failed: its release {reason}; nothing was changed", kind.describe());
            return vec![Effect::RolloutFinished { ok: false, text }];
        }
        if self.phase != Phase::Release {
            return Vec::new();
        }
        if reason == ExitReason::Code(0) {
            return self.spawn_instances(now);
        }
        self.phase = Phase::Done;
        let text =
            format!("release failed ({reason}); not starting the formation. Fix the release command and start again");
        vec![log(Level::Error, text), Effect::Exit(1)]
    }

    fn on_restart_due(&mut self, id: SlotId, now: Instant) -> Vec<Effect> {
        if self.slots[&id].state != State::Crashed || self.phase != Phase::Running {
            return Vec::new();
        }
        self.spawn(id, now)
    }

    fn on_cycle_due(&mut self, id: SlotId) -> Vec<Effect> {
        match self.slots.get(&id) {
            Some(slot) if !slot.retiring && !slot.held && self.phase == Phase::Running => {
                vec![Effect::RequestCycle { slot: id }]
            }
            _ => Vec::new(),
        }
    }

    fn on_stop_requested(&mut self) -> Vec<Effect> {
        match self.phase {
            Phase::Done | Phase::ShuttingDown { fast: true } => Vec::new(),
            Phase::ShuttingDown { fast: false } => self.kill_everything(),
            Phase::Release | Phase::Running => self.terminate_everything(),
        }
    }

    fn terminate_everything(&mut self) -> Vec<Effect> {
        self.phase = Phase::ShuttingDown { fast: false };
        let mut effects = vec![Effect::CloseGateway];
        // A rollout, or a deploy still in its release step (which gets SIGTERM with the rest).
        let kind = self.rollout.take().map(|r| r.kind).or(self.after_release.take().map(|(kind, _)| kind));
        if let Some(kind) = kind {
            let text = format!("{} interrupted: procgate is stopping", kind.describe());
            effects.push(Effect::RolloutFinished { ok: false, text });
        }
        let ids: Vec<SlotId> = self.slots.keys().copied().collect();
        for id in &ids {
            effects.extend(self.unroute(*id, "stopping", true));
        }
        effects.push(log(Level::Info, "sending SIGTERM to all processes"));
        for id in ids {
            effects.extend(self.terminate(id, false));
            let slot = self.slots.get_mut(&id).expect("listed above");
            if slot.state == State::Crashed {
                slot.state = State::Stopped;
                slot.generation += 1;
            }
        }
        effects.extend(self.exit_if_done());
        effects
    }

    fn kill_everything(&mut self) -> Vec<Effect> {
        self.phase = Phase::ShuttingDown { fast: true };
        let mut effects = vec![log(Level::Warn, "sending SIGKILL to all processes")];
        for (id, slot) in self.slots.iter().filter(|(_, s)| s.is_running()) {
            self.killed_any = true;
            let text = format!("R12 Exit timeout: {} killed before the end of its grace", slot.name);
            effects.extend([log(Level::Warn, text), Effect::Kill { slot: *id }]);
        }
        effects
    }

    fn exit_if_done(&mut self) -> Vec<Effect> {
        let shutting_down = matches!(self.phase, Phase::ShuttingDown { .. });
        if !shutting_down || self.slots.values().any(Slot::is_running) {
            return Vec::new();
        }
        self.phase = Phase::Done;
        vec![Effect::Exit(i32::from(self.killed_any))]
    }
}

fn event_slot(event: &Event) -> Option<(SlotId, u64)> {
    match *event {
        Event::Started { slot, generation, .. }
        | Event::LeaderExited { slot, generation }
        | Event::Exited { slot, generation, .. }
        | Event::SpawnFailed { slot, generation, .. }
        | Event::UpDue { slot, generation }
        | Event::RestartDue { slot, generation }
        | Event::GraceOver { slot, generation }
        | Event::BootDue { slot, generation }
        | Event::Healthy { slot, generation }
        | Event::Unhealthy { slot, generation }
        | Event::UnhealthyDue { slot, generation, .. }
        | Event::ReleaseDue { slot, generation }
        | Event::Drained { slot, generation } => Some((slot, generation)),
        Event::CycleDue { .. } | Event::StopRequested | Event::StopAsked => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::rollout::RolloutKind;

    const GRACE: Duration = Duration::from_secs(30);
    const TIMING: Timing =
        Timing { grace: GRACE, boot_timeout: Duration::from_secs(60), release_timeout: Duration::from_secs(600) };

    /// Drives a [`Lifecycle`] like the actor does, with timers on tokio's (paused) clock.
    struct Driver {
        lifecycle: Lifecycle,
        timers: Vec<(Instant, Event)>,
        spawns: Vec<(SlotId, u64, Instant)>,
        effects: Vec<Effect>,
    }

    impl Driver {
        fn new(names: &[&str], release: Option<&str>) -> Driver {
            Driver::with(names, release, false)
        }

        fn with(names: &[&str], release: Option<&str>, routed: bool) -> Driver {
            let slots = names
                .iter()
                .map(|n| SlotInit { name: n.to_string(), routed, port: None, restart_unhealthy_after: None })
                .collect();
            let release = release.map(|name| SlotInit {
                name: name.to_string(),
                routed: false,
                port: None,
                restart_unhealthy_after: None,
            });
            let lifecycle = Lifecycle::new(slots, release, TIMING);
            let mut driver = Driver { lifecycle, timers: Vec::new(), spawns: Vec::new(), effects: Vec::new() };
            let effects = driver.lifecycle.start(Instant::now());
            driver.apply(effects);
            driver
        }

        fn apply(&mut self, effects: Vec<Effect>) {
            for effect in effects {
                match &effect {
                    Effect::After { delay, event } => self.timers.push((Instant::now() + *delay, event.clone())),
                    Effect::Spawn { slot, generation } => self.spawns.push((*slot, *generation, Instant::now())),
                    _ => {}
                }
                self.effects.push(effect);
            }
        }

        fn send(&mut self, event: Event) {
            let effects = self.lifecycle.handle(event, Instant::now());
            self.apply(effects);
        }

        /// Sleeps (paused clock) until the earliest timer and fires it.
        async fn fire_next_timer(&mut self) -> Event {
            let next = (0..self.timers.len()).min_by_key(|&i| self.timers[i].0).expect("a timer is pending");
            let (deadline, event) = self.timers.remove(next);
            tokio::time::sleep_until(deadline).await;
            self.send(event.clone());
            event
        }

        fn generation(&self, slot: SlotId) -> u64 {
            self.lifecycle.slot(slot).unwrap().generation
        }

        fn exit(&mut self, slot: SlotId, reason: ExitReason) {
            let generation = self.generation(slot);
            self.send(Event::Exited { slot, generation, reason });
        }

        fn took(&mut self, wanted: impl Fn(&Effect) -> bool) -> bool {
            let found = self.effects.iter().any(wanted);
            self.effects.clear();
            found
        }
    }

    #[tokio::test(start_paused = true)]
    async fn crash_restarts_back_off_exponentially_under_paused_time() {
        let mut driver = Driver::new(&["web.1"], None);
        let mut delays = Vec::new();
        for _ in 0..11 {
            driver.exit(0, ExitReason::Code(1));
            assert_eq!(driver.lifecycle.slot(0).unwrap().state, State::Crashed);
            let crashed_at = Instant::now();
            let event = driver.fire_next_timer().await;
            assert!(matches!(event, Event::RestartDue { .. }), "{event:?}");
            delays.push((driver.spawns.last().unwrap().2 - crashed_at).as_secs());
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(driver.lifecycle.slot(0).unwrap().restarts, 11);
    }

    #[tokio::test(start_paused = true)]
    async fn ten_minutes_up_resets_the_backoff() {
        let mut driver = Driver::new(&["web.1"], None);
        for _ in 0..3 {
            driver.exit(0, ExitReason::Code(1));
            driver.fire_next_timer().await;
        }
        tokio::time::sleep(Duration::from_secs(600)).await;
        driver.timers.clear();
        driver.exit(0, ExitReason::Code(1));
        let restart_at = driver.lifecycle.slot(0).unwrap().restart_at.unwrap();
        assert_eq!(restart_at - Instant::now(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_instance_is_up_after_a_second_alive() {
        let mut driver = Driver::new(&["worker.1"], None);
        driver.send(Event::Started { slot: 0, generation: 1, pid: 7 });
        assert_eq!(driver.lifecycle.slot(0).unwrap().state, State::Starting);
        driver.fire_next_timer().await;
        assert_eq!(driver.lifecycle.slot(0).unwrap().state, State::Up);
    }

    #[tokio::test(start_paused = true)]
    async fn stop_sends_sigterm_then_sigkill_with_r12_after_the_grace() {
        let mut driver = Driver::new(&["web.1", "web.2"], None);
        driver.send(Event::StopRequested);
        assert!(driver.took(|e| *e == Effect::Signal { slot: 1, signal: Signal::SIGTERM }));
        driver.exit(0, ExitReason::Code(0));
        let fired = driver.fire_next_timer().await;
        assert!(matches!(fired, Event::GraceOver { slot: 0, .. }), "a stopped slot's timer is stale");
        assert!(!driver.took(|e| matches!(e, Effect::Kill { .. })));
        let start = Instant::now();
        driver.fire_next_timer().await;
        assert_eq!(Instant::now() - start, Duration::ZERO, "both grace timers end together");
        assert!(driver
            .effects
            .iter()
            .any(|e| matches!(e, Effect::Log { text, .. } if text.starts_with("R12 Exit timeout: web.2"))));
        assert!(driver.took(|e| *e == Effect::Kill { slot: 1 }));
        driver.exit(1, ExitReason::Signal(9));
        assert!(driver.took(|e| *e == Effect::Exit(1)), "a SIGKILL makes the exit status 1");
    }

    #[test]
    fn a_clean_stop_exits_zero_and_cancels_pending_restarts() {
        let mut driver = Driver::new(&["web.1", "worker.1"], None);
        driver.exit(1, ExitReason::Code(3));
        driver.send(Event::StopRequested);
        assert_eq!(driver.lifecycle.slot(1).unwrap().state, State::Stopped);
        driver.exit(0, ExitReason::Signal(15));
        assert!(driver.took(|e| *e == Effect::Exit(0)));
        let (_, stale) = driver.timers.iter().find(|(_, e)| matches!(e, Event::RestartDue { .. })).cloned().unwrap();
        driver.send(stale);
        assert_eq!(driver.spawns.len(), 2, "no restart after the stop");
    }

    #[test]
    fn a_second_stop_request_kills_at_once() {
        let mut driver = Driver::new(&["web.1"], None);
        driver.send(Event::StopRequested);
        driver.effects.clear();
        driver.send(Event::StopRequested);
        assert!(driver.took(|e| *e == Effect::Kill { slot: 0 }));
        driver.exit(0, ExitReason::Signal(9));
        assert!(driver.took(|e| *e == Effect::Exit(1)));
    }

    #[test]
    fn leftovers_of_a_crashed_leader_get_the_grace_then_restart() {
        let mut driver = Driver::new(&["web.1"], None);
        driver.send(Event::LeaderExited { slot: 0, generation: 1 });
        assert_eq!(driver.lifecycle.slot(0).unwrap().state, State::Draining);
        assert!(driver.timers.iter().any(|(_, e)| matches!(e, Event::GraceOver { .. })));
        driver.exit(0, ExitReason::Code(2));
        assert_eq!(driver.lifecycle.slot(0).unwrap().state, State::Crashed);
    }

    #[test]
    fn release_runs_first_and_gates_the_formation() {
        let mut driver = Driver::new(&["web.1"], Some("release.1"));
        assert_eq!(driver.spawns.iter().map(|s| s.0).collect::<Vec<_>>(), [1]);
        driver.exit(1, ExitReason::Code(0));
        assert_eq!(driver.spawns.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 0]);

        let mut failing = Driver::new(&["web.1"], Some("release.1"));
        failing.exit(1, ExitReason::Code(5));
        assert!(failing.took(|e| *e == Effect::Exit(1)));
        assert_eq!(failing.spawns.len(), 1, "nothing else starts");
    }

    #[tokio::test(start_paused = true)]
    async fn a_release_step_past_its_timeout_is_killed_with_r20() {
        let mut driver = Driver::new(&["web.1"], Some("release.1"));
        assert!(matches!(driver.fire_next_timer().await, Event::ReleaseDue { slot: 1, .. }));
        assert!(driver.effects.iter().any(
            |e| matches!(e, Effect::Log { text, .. } if text == "R20 Release timeout: release.1 did not finish within 10m; sending SIGKILL")
        ));
        assert!(driver.took(|e| *e == Effect::Kill { slot: 1 }));
        driver.exit(1, ExitReason::Signal(9));
        assert!(driver.took(|e| *e == Effect::Exit(1)), "the start fails");
    }

    #[test]
    fn a_stop_during_a_deploys_release_step_never_starts_its_rollout() {
        let mut driver = Driver::new(&["worker.1"], None);
        driver.send(Event::Started { slot: 0, generation: 1, pid: 7 });
        let (release, replacement) = (driver.lifecycle.new_id(), driver.lifecycle.new_id() + 1);
        let init =
            |name: &str| SlotInit { name: name.into(), routed: false, port: None, restart_unhealthy_after: None };
        let pairs = vec![(Some(0), Some((replacement, init("worker.1"))))];
        let effects = driver
            .lifecycle
            .begin_rollout(RolloutKind::Deploy, pairs, Some((release, init("release.1"))), Instant::now())
            .unwrap();
        driver.apply(effects);
        driver.send(Event::Started { slot: release, generation: 1, pid: 8 });
        driver.effects.clear();
        driver.send(Event::StopRequested);
        assert!(driver.effects.iter().any(
            |e| matches!(e, Effect::RolloutFinished { ok: false, text } if text == "deploy interrupted: procgate is stopping")
        ));
        driver.exit(release, ExitReason::Code(0));
        assert!(!driver.effects.iter().any(|e| matches!(e, Effect::Spawn { .. })), "{:?}", driver.effects);
    }

    #[test]
    fn events_of_an_old_incarnation_are_ignored() {
        let mut driver = Driver::new(&["web.1"], None);
        driver.send(Event::Exited { slot: 0, generation: 99, reason: ExitReason::Code(1) });
        assert_eq!(driver.lifecycle.slot(0).unwrap().state, State::Starting);
    }

    #[tokio::test(start_paused = true)]
    async fn a_routed_instance_joins_when_healthy_and_leaves_before_sigterm() {
        let mut driver = Driver::with(&["tcp.1"], None, true);
        driver.send(Event::Started { slot: 0, generation: 1, pid: 7 });
        assert!(driver.took(|e| *e == Effect::Watch { slot: 0, generation: 1 }));
        driver.send(Event::Healthy { slot: 0, generation: 1 });
        assert_eq!(driver.lifecycle.slot(0).unwrap().state, State::Up);
        assert!(driver.took(|e| *e == Effect::Join { slot: 0, generation: 1 }));
        driver.send(Event::Unhealthy { slot: 0, generation: 1 });
        assert!(driver.took(|e| matches!(e, Effect::Leave { reason: "health check failed", .. })));
        driver.send(Event::Healthy { slot: 0, generation: 1 });
        assert!(driver.took(|e| matches!(e, Effect::Join { .. })), "back in routing");
        driver.send(Event::StopRequested);
        let order: Vec<&Effect> = driver
            .effects
            .iter()
            .filter(|e| matches!(e, Effect::Leave { .. } | Effect::Signal { .. } | Effect::CloseGateway))
            .collect();
        assert!(matches!(order[..], [Effect::CloseGateway, Effect::Leave { .. }, Effect::Signal { .. }]), "{order:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_routed_instance_that_never_accepts_gets_r10_and_restarts() {
        let mut driver = Driver::with(&["tcp.1"], None, true);
        driver.send(Event::Started { slot: 0, generation: 1, pid: 7 });
        let event = driver.fire_next_timer().await;
        assert!(matches!(event, Event::BootDue { .. }), "{event:?}");
        assert!(driver
            .effects
            .iter()
            .any(|e| matches!(e, Effect::Log { text, .. } if text.starts_with("R10 Boot timeout: tcp.1"))));
        assert!(driver.took(|e| *e == Effect::Kill { slot: 0 }));
        driver.exit(0, ExitReason::Signal(9));
        assert_eq!(driver.lifecycle.slot(0).unwrap().state, State::Crashed);
        assert!(driver
            .effects
            .iter()
            .any(|e| matches!(e, Effect::Log { text, .. } if text.contains("restarting in 1s"))));
    }

    #[tokio::test(start_paused = true)]
    async fn an_exit_takes_the_instance_out_of_routing() {
        let mut driver = Driver::with(&["tcp.1"], None, true);
        driver.send(Event::Started { slot: 0, generation: 1, pid: 7 });
        driver.send(Event::Healthy { slot: 0, generation: 1 });
        driver.effects.clear();
        driver.exit(0, ExitReason::Signal(9));
        assert!(driver.effects.contains(&Effect::Leave { slot: 0, generation: 1, reason: "exited" }));
        assert!(driver.took(|e| *e == Effect::Unwatch { slot: 0, generation: 1 }));
    }

    /// Two routed instances up and in routing, ready for a rollout.
    fn serving(names: &[&str]) -> Driver {
        let mut driver = Driver::with(names, None, true);
        for slot in 0..names.len() {
            driver.send(Event::Started { slot, generation: 1, pid: 100 + slot as u32 });
            driver.send(Event::Healthy { slot, generation: 1 });
        }
        driver.effects.clear();
        driver.timers.clear();
        driver
    }

    /// Begins a restart replacing every slot in `olds`; returns the replacements' ids.
    fn restart(driver: &mut Driver, olds: &[SlotId]) -> Vec<SlotId> {
        let mut pairs = Vec::new();
        let mut news = Vec::new();
        for old in olds {
            let id = driver.lifecycle.new_id();
            let name = driver.lifecycle.slot(*old).unwrap().name.clone();
            pairs.push((
                Some(*old),
                Some((id, SlotInit { name, routed: true, port: None, restart_unhealthy_after: None })),
            ));
            news.push(id);
        }
        let effects =
            driver.lifecycle.begin_rollout(RolloutKind::Restart("tcp".into()), pairs, None, Instant::now()).unwrap();
        driver.apply(effects);
        news
    }

    fn progress(driver: &Driver) -> Vec<String> {
        driver.effects.iter().filter_map(|e| if let Effect::Progress(t) = e { Some(t.clone()) } else { None }).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_rollout_switches_when_every_replacement_is_healthy_then_drains_by_connection_count() {
        let mut driver = serving(&["tcp.1", "tcp.2"]);
        let news = restart(&mut driver, &[0, 1]);
        assert!(driver.effects.iter().any(|e| *e == Effect::Spawn { slot: news[0], generation: 1 }));
        driver.send(Event::Started { slot: news[0], generation: 1, pid: 200 });
        driver.send(Event::Healthy { slot: news[0], generation: 1 });
        assert!(
            !driver.effects.iter().any(|e| matches!(e, Effect::Join { .. } | Effect::Leave { .. })),
            "held until all are healthy"
        );
        assert_eq!(driver.lifecycle.slot(news[0]).unwrap().state, State::Up);
        driver.effects.clear();
        driver.send(Event::Started { slot: news[1], generation: 1, pid: 201 });
        driver.send(Event::Healthy { slot: news[1], generation: 1 });
        for id in &news {
            assert!(driver.effects.contains(&Effect::Join { slot: *id, generation: 1 }));
        }
        for old in [0, 1] {
            assert!(driver.effects.contains(&Effect::Leave { slot: old, generation: 1, reason: "replaced" }));
            assert!(driver.effects.contains(&Effect::Signal { slot: old, signal: Signal::SIGTERM }));
            assert!(driver.effects.contains(&Effect::WatchDrain { slot: old, generation: 1 }));
        }
        let join = driver.effects.iter().position(|e| matches!(e, Effect::Join { .. })).unwrap();
        let leave = driver.effects.iter().position(|e| matches!(e, Effect::Leave { .. })).unwrap();
        assert!(join < leave, "the new ones are routed before the old ones leave: never no instance");
        driver.effects.clear();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        driver.send(Event::Drained { slot: 0, generation: 1 });
        assert_eq!(progress(&driver), ["tcp.1 (pid 100) drained in 1.2s"]);
        assert!(!driver.effects.iter().any(|e| matches!(e, Effect::RolloutFinished { .. })));
        driver.exit(1, ExitReason::Code(0));
        assert!(
            driver.effects.iter().any(|e| matches!(e, Effect::RolloutFinished { ok: true, .. })),
            "an exit drains too"
        );
        assert!(driver.effects.contains(&Effect::Forget { slot: 1 }));
        assert!(driver.lifecycle.rollout_running().is_none());
        assert_eq!(driver.lifecycle.slot(0).unwrap().state, State::Draining, "the old one keeps its grace");
    }

    #[tokio::test(start_paused = true)]
    async fn a_replacement_that_never_accepts_rolls_back_and_the_old_ones_keep_serving() {
        let mut driver = serving(&["tcp.1"]);
        let news = restart(&mut driver, &[0]);
        driver.send(Event::Started { slot: news[0], generation: 1, pid: 200 });
        let event = driver.fire_next_timer().await;
        assert!(matches!(event, Event::BootDue { .. }), "{event:?}");
        assert!(driver.effects.contains(&Effect::Kill { slot: news[0] }));
        assert!(driver.effects.iter().any(|e| matches!(e, Effect::RolloutFinished { ok: false, text } if text.contains("did not accept connections within 1m"))));
        assert!(!driver
            .effects
            .iter()
            .any(|e| matches!(e, Effect::Leave { slot: 0, .. } | Effect::Signal { slot: 0, .. })));
        assert!(driver.lifecycle.slot(0).unwrap().in_routing);
        driver.exit(news[0], ExitReason::Signal(9));
        assert!(driver.lifecycle.slot(news[0]).is_none(), "the failed replacement is gone, not restarted");
    }

    #[test]
    fn a_replacement_that_exits_before_it_is_healthy_rolls_back() {
        let mut driver = serving(&["tcp.1", "tcp.2"]);
        let news = restart(&mut driver, &[0, 1]);
        driver.send(Event::Started { slot: news[0], generation: 1, pid: 200 });
        driver.effects.clear();
        driver.exit(news[1], ExitReason::Code(1));
        assert!(driver.effects.iter().any(|e| matches!(e, Effect::RolloutFinished { ok: false, text } if text.contains("exited with code 1 before it was healthy"))));
        assert!(
            driver.effects.contains(&Effect::Signal { slot: news[0], signal: Signal::SIGTERM }),
            "the other replacement stops"
        );
        assert!(driver.lifecycle.slot(0).unwrap().in_routing && driver.lifecycle.slot(1).unwrap().in_routing);
    }

    #[test]
    fn one_rollout_at_a_time_and_none_while_stopping() {
        let mut driver = serving(&["tcp.1"]);
        restart(&mut driver, &[0]);
        let again =
            driver.lifecycle.begin_rollout(RolloutKind::Cycle("tcp.1".into()), Vec::new(), None, Instant::now());
        assert_eq!(again, Err(Refusal::Busy("restart of tcp".into())));
        driver.send(Event::StopRequested);
        assert!(driver
            .effects
            .iter()
            .any(|e| matches!(e, Effect::RolloutFinished { ok: false, text } if text.contains("interrupted"))));
        let late = driver.lifecycle.begin_rollout(RolloutKind::Deploy, Vec::new(), None, Instant::now());
        assert_eq!(late, Err(Refusal::Stopping));
    }

    #[test]
    fn cycling_is_armed_once_per_instance_and_asks_for_a_replacement_when_due() {
        let mut driver = serving(&["tcp.1"]);
        driver.exit(0, ExitReason::Code(1));
        driver.send(Event::RestartDue { slot: 0, generation: 1 });
        assert!(
            !driver.effects.iter().any(|e| matches!(e, Effect::ScheduleCycle { .. })),
            "a crash restart keeps its clock"
        );
        driver.send(Event::CycleDue { slot: 0 });
        assert!(driver.took(|e| *e == Effect::RequestCycle { slot: 0 }));
        let news = restart(&mut driver, &[0]);
        assert!(driver.effects.contains(&Effect::ScheduleCycle { slot: news[0] }), "a replacement starts a new clock");
    }

    #[test]
    fn scaling_adds_and_retires_instances() {
        let mut driver = serving(&["tcp.1"]);
        let id = driver.lifecycle.new_id();
        let effects = driver
            .lifecycle
            .add(
                id,
                SlotInit { name: "tcp.2".into(), routed: true, port: None, restart_unhealthy_after: None },
                Instant::now(),
            )
            .unwrap();
        assert!(effects.contains(&Effect::Spawn { slot: id, generation: 1 }));
        let effects = driver.lifecycle.retire(0, "scaled down");
        assert!(effects.contains(&Effect::Leave { slot: 0, generation: 1, reason: "scaled down" }));
        assert!(effects.contains(&Effect::Signal { slot: 0, signal: Signal::SIGTERM }));
        driver.exit(0, ExitReason::Code(0));
        assert!(driver.took(|e| *e == Effect::Forget { slot: 0 }));
        assert!(driver.lifecycle.slot(0).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn an_instance_failing_its_checks_for_restart_unhealthy_after_is_restarted_with_r16() {
        let after = Some(Duration::from_secs(60));
        let init = SlotInit { name: "web.1".into(), routed: true, port: Some(5000), restart_unhealthy_after: after };
        let mut driver = Driver {
            lifecycle: Lifecycle::new(vec![init], None, TIMING),
            timers: Vec::new(),
            spawns: Vec::new(),
            effects: Vec::new(),
        };
        let effects = driver.lifecycle.start(Instant::now());
        driver.apply(effects);
        driver.send(Event::Started { slot: 0, generation: 1, pid: 7 });
        driver.send(Event::Healthy { slot: 0, generation: 1 });
        driver.effects.clear();
        driver.send(Event::Unhealthy { slot: 0, generation: 1 });
        assert!(driver.effects.contains(&Effect::Leave { slot: 0, generation: 1, reason: "health check failed" }));
        // Healthy again in between: that spell's timer does nothing; the next spell's restarts it.
        driver.send(Event::Healthy { slot: 0, generation: 1 });
        driver.send(Event::Unhealthy { slot: 0, generation: 1 });
        driver.effects.clear();
        driver.timers.retain(|(_, event)| matches!(event, Event::UnhealthyDue { .. }));
        assert!(matches!(driver.fire_next_timer().await, Event::UnhealthyDue { spell: 2, .. }));
        assert!(driver.effects.is_empty(), "{:?}", driver.effects);
        assert!(matches!(driver.fire_next_timer().await, Event::UnhealthyDue { spell: 4, .. }));
        assert!(driver.effects.iter().any(
            |e| matches!(e, Effect::Log { text, .. } if text == "R16 Unresponsive: web.1 failed its health checks for 1m; restarting it")
        ));
        assert!(driver.took(|e| *e == Effect::Signal { slot: 0, signal: Signal::SIGTERM }));
        driver.exit(0, ExitReason::Code(0));
        assert_eq!(driver.lifecycle.slot(0).unwrap().state, State::Crashed, "then restarted with backoff");
    }

    #[test]
    fn by_default_failed_checks_only_take_an_instance_out_of_routing() {
        let mut driver = serving(&["tcp.1"]);
        driver.send(Event::Unhealthy { slot: 0, generation: 1 });
        assert!(!driver.effects.iter().any(|e| matches!(e, Effect::Signal { .. })));
        assert!(!driver.timers.iter().any(|(_, e)| matches!(e, Event::UnhealthyDue { .. })));
        assert_eq!(driver.lifecycle.slot(0).unwrap().state, State::Up);
    }
}
