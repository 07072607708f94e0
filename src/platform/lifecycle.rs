//! The Scheduler's decisions as a pure state machine: [`Lifecycle::handle`] takes an event and
//! the time and returns effects for the actor to carry out. No processes, no sockets, no clock.
//!
//! Instance states and what moves them (decided in the `on_*` methods below):
//! ```text
//!   spawn ─► Starting ──alive 1 s (unrouted) / first good handshake (routed: Join)──► Up
//!               │ no good handshake within the boot timeout: SIGKILL (R10) ─► Draining
//!               │                     │ stop asked: Leave routing, SIGTERM, grace timer
//!               └─────────────────────┴──────────► Draining ──tree gone──► Stopped
//!   leader exits on its own ─► Draining (rest of the tree got SIGTERM) ──tree gone──► Crashed
//!   Crashed ──backoff elapsed──► spawn          Draining ──grace over──► SIGKILL (R12)
//!   Up (routed) ──health checks fail──► Up, out of routing ──they pass again──► back in
//! ```
//! A `release` slot is one-shot: it runs before the others and its exit decides whether they start.

use super::backoff::Backoff;
use crate::process::protocol::ExitReason;
use nix::sys::signal::Signal;
use std::time::Duration;
use tokio::time::Instant;

/// A non-routed instance counts as up once it has stayed alive this long.
pub const UP_AFTER: Duration = Duration::from_secs(1);

/// Index of an instance slot (`web.1`); stable for the slot's life, across restarts.
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
    /// Its type is served by the gateway: health-checked, joins routing when healthy.
    pub routed: bool,
    /// New connections go to it now.
    pub in_routing: bool,
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
    /// SIGINT/SIGTERM or `procgate stop`; a second one skips the grace.
    StopRequested,
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

/// The whole formation's state.
#[derive(Debug)]
pub struct Lifecycle {
    slots: Vec<Slot>,
    phase: Phase,
    timing: Timing,
    /// Set when an instance had to be SIGKILLed: the stop was not clean.
    killed_any: bool,
}

/// The time limits the state machine enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// SIGTERM to SIGKILL.
    pub grace: Duration,
    /// Spawn to first good handshake, for routed types (R10).
    pub boot_timeout: Duration,
}

/// A slot to create: its name and whether the gateway routes its type.
#[derive(Debug, Clone)]
pub struct SlotInit {
    pub name: String,
    pub routed: bool,
}

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
            routed: init.routed,
            in_routing: false,
            watched: false,
            one_shot,
            stop_requested: false,
            backoff: Backoff::default(),
        }
    }

    fn is_running(&self) -> bool {
        matches!(self.state, State::Starting | State::Up | State::Draining)
    }
}

fn log(level: Level, text: impl Into<String>) -> Effect {
    Effect::Log { level, text: text.into() }
}

impl Lifecycle {
    /// Slots `0..instances.len()` are the instances; a release command, if any, is the last slot.
    pub fn new(instances: Vec<SlotInit>, release: Option<String>, timing: Timing) -> Lifecycle {
        let mut slots: Vec<Slot> = instances.into_iter().map(|init| Slot::new(init, false)).collect();
        slots.extend(release.map(|name| Slot::new(SlotInit { name, routed: false }, true)));
        Lifecycle { slots, phase: Phase::Running, timing, killed_any: false }
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// Starts the release slot, or every instance when there is none.
    pub fn start(&mut self, now: Instant) -> Vec<Effect> {
        match self.slots.iter().position(|s| s.one_shot) {
            Some(release) => {
                self.phase = Phase::Release;
                vec![self.spawn(release, now)]
            }
            None => self.spawn_instances(now),
        }
    }

    fn spawn_instances(&mut self, now: Instant) -> Vec<Effect> {
        self.phase = Phase::Running;
        let ids: Vec<SlotId> = (0..self.slots.len()).filter(|&i| !self.slots[i].one_shot).collect();
        if ids.is_empty() {
            return vec![log(Level::Warn, "the formation has no instance to run (every type is at 0)")];
        }
        ids.into_iter().map(|id| self.spawn(id, now)).collect()
    }

    fn spawn(&mut self, id: SlotId, now: Instant) -> Effect {
        let slot = &mut self.slots[id];
        slot.generation += 1;
        slot.state = State::Starting;
        slot.started_at = Some(now);
        slot.restart_at = None;
        slot.stop_requested = false;
        Effect::Spawn { slot: id, generation: slot.generation }
    }

    /// Applies one event; events of an old incarnation are ignored.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Effect> {
        if let Some((id, generation)) = event_slot(&event) {
            if self.slots.get(id).is_none_or(|s| s.generation != generation) {
                return Vec::new();
            }
        }
        match event {
            Event::Started { slot, pid, .. } => self.on_started(slot, pid),
            Event::UpDue { slot, .. } => self.on_up_due(slot),
            Event::LeaderExited { slot, .. } => self.on_leader_exited(slot),
            Event::GraceOver { slot, .. } => self.on_grace_over(slot),
            Event::Exited { slot, reason, .. } => self.on_exited(slot, reason, now),
            Event::SpawnFailed { slot, error, .. } => {
                let text = format!("{} could not start: {error}", self.slots[slot].name);
                let mut effects = vec![log(Level::Error, text)];
                effects.extend(self.on_exited(slot, ExitReason::Code(127), now));
                effects
            }
            Event::RestartDue { slot, .. } => self.on_restart_due(slot, now),
            Event::BootDue { slot, .. } => self.on_boot_due(slot),
            Event::Healthy { slot, .. } => self.on_healthy(slot),
            Event::Unhealthy { slot, .. } => self.unroute(slot, "health check failed", false),
            Event::StopRequested => self.on_stop_requested(),
        }
    }

    fn on_started(&mut self, id: SlotId, pid: u32) -> Vec<Effect> {
        let boot_timeout = self.timing.boot_timeout;
        let slot = &mut self.slots[id];
        slot.pid = Some(pid);
        let generation = slot.generation;
        let mut effects = vec![log(Level::Info, format!("{} started with pid {pid}", slot.name))];
        if slot.routed && slot.state == State::Starting {
            slot.watched = true;
            effects.push(Effect::Watch { slot: id, generation });
            effects.push(Effect::After { delay: boot_timeout, event: Event::BootDue { slot: id, generation } });
        } else if !slot.one_shot {
            effects.push(Effect::After { delay: UP_AFTER, event: Event::UpDue { slot: id, generation } });
        }
        effects
    }

    fn on_healthy(&mut self, id: SlotId) -> Vec<Effect> {
        let slot = &mut self.slots[id];
        if !matches!(slot.state, State::Starting | State::Up) || slot.in_routing {
            return Vec::new();
        }
        slot.state = State::Up;
        slot.in_routing = true;
        vec![Effect::Join { slot: id, generation: slot.generation }]
    }

    /// Takes the slot out of routing (and, when `unwatch`, out of health checks).
    fn unroute(&mut self, id: SlotId, reason: &'static str, unwatch: bool) -> Vec<Effect> {
        let slot = &mut self.slots[id];
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

    /// A routed instance never accepted a connection: Heroku's R10, then a crash restart.
    fn on_boot_due(&mut self, id: SlotId) -> Vec<Effect> {
        if self.slots[id].state != State::Starting {
            return Vec::new();
        }
        let mut effects = self.unroute(id, "boot timeout", true);
        let slot = &mut self.slots[id];
        slot.state = State::Draining;
        let limit = crate::duration::format(self.timing.boot_timeout);
        let text =
            format!("R10 Boot timeout: {} did not accept connections within {limit}; sending SIGKILL", slot.name);
        effects.extend([log(Level::Warn, text), Effect::Kill { slot: id }]);
        effects
    }

    fn on_up_due(&mut self, id: SlotId) -> Vec<Effect> {
        let slot = &mut self.slots[id];
        if slot.state == State::Starting {
            slot.state = State::Up;
        }
        Vec::new()
    }

    /// The main process ended by itself; the keeper sent SIGTERM to what is left of the tree.
    fn on_leader_exited(&mut self, id: SlotId) -> Vec<Effect> {
        let mut effects = self.unroute(id, "exited", true);
        let slot = &mut self.slots[id];
        if slot.state != State::Draining {
            slot.state = State::Draining;
            let event = Event::GraceOver { slot: id, generation: slot.generation };
            effects.push(Effect::After { delay: self.timing.grace, event });
        }
        effects
    }

    fn on_grace_over(&mut self, id: SlotId) -> Vec<Effect> {
        let slot = &self.slots[id];
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
        let slot = &mut self.slots[id];
        slot.pid = None;
        effects.push(log(Level::Info, format!("{} {reason}", slot.name)));
        if slot.one_shot {
            slot.state = State::Stopped;
            effects.extend(self.on_release_exited(reason, now));
        } else if slot.stop_requested || matches!(self.phase, Phase::ShuttingDown { .. } | Phase::Done) {
            slot.state = State::Stopped;
        } else {
            let uptime = slot.started_at.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
            let delay = slot.backoff.crashed(uptime);
            slot.restarts += 1;
            slot.state = State::Crashed;
            slot.restart_at = Some(now + delay);
            let text = format!(
                "{} crashed; restarting in {} (restart {})",
                slot.name,
                crate::duration::format(delay),
                slot.restarts
            );
            effects.push(log(Level::Warn, text));
            let event = Event::RestartDue { slot: id, generation: slot.generation };
            effects.push(Effect::After { delay, event });
        }
        effects.extend(self.exit_if_done());
        effects
    }

    fn on_release_exited(&mut self, reason: ExitReason, now: Instant) -> Vec<Effect> {
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
        if self.slots[id].state != State::Crashed || self.phase != Phase::Running {
            return Vec::new();
        }
        vec![self.spawn(id, now)]
    }

    fn on_stop_requested(&mut self) -> Vec<Effect> {
        match self.phase {
            Phase::Done => Vec::new(),
            Phase::ShuttingDown { fast: true } => Vec::new(),
            Phase::ShuttingDown { fast: false } => self.kill_everything(),
            Phase::Release | Phase::Running => self.terminate_everything(),
        }
    }

    fn terminate_everything(&mut self) -> Vec<Effect> {
        self.phase = Phase::ShuttingDown { fast: false };
        let mut effects = vec![Effect::CloseGateway];
        for id in 0..self.slots.len() {
            effects.extend(self.unroute(id, "stopping", true));
        }
        effects.push(log(Level::Info, "sending SIGTERM to all processes"));
        for (id, slot) in self.slots.iter_mut().enumerate() {
            slot.stop_requested = true;
            match slot.state {
                State::Starting | State::Up => {
                    slot.state = State::Draining;
                    effects.push(Effect::Signal { slot: id, signal: Signal::SIGTERM });
                    let event = Event::GraceOver { slot: id, generation: slot.generation };
                    effects.push(Effect::After { delay: self.timing.grace, event });
                }
                State::Crashed => {
                    slot.state = State::Stopped;
                    slot.generation += 1;
                }
                State::Draining | State::Stopped => {}
            }
        }
        effects.extend(self.exit_if_done());
        effects
    }

    fn kill_everything(&mut self) -> Vec<Effect> {
        self.phase = Phase::ShuttingDown { fast: true };
        let mut effects = vec![log(Level::Warn, "sending SIGKILL to all processes")];
        for (id, slot) in self.slots.iter().enumerate().filter(|(_, s)| s.is_running()) {
            self.killed_any = true;
            effects
                .push(log(Level::Warn, format!("R12 Exit timeout: {} killed before the end of its grace", slot.name)));
            effects.push(Effect::Kill { slot: id });
        }
        effects
    }

    fn exit_if_done(&mut self) -> Vec<Effect> {
        let shutting_down = matches!(self.phase, Phase::ShuttingDown { .. });
        if !shutting_down || self.slots.iter().any(Slot::is_running) {
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
        | Event::Unhealthy { slot, generation } => Some((slot, generation)),
        Event::StopRequested => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(30);
    const TIMING: Timing = Timing { grace: GRACE, boot_timeout: Duration::from_secs(60) };

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
            let slots = names.iter().map(|n| SlotInit { name: n.to_string(), routed }).collect();
            let lifecycle = Lifecycle::new(slots, release.map(str::to_string), TIMING);
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
            self.lifecycle.slots()[slot].generation
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
            assert_eq!(driver.lifecycle.slots()[0].state, State::Crashed);
            let crashed_at = Instant::now();
            let event = driver.fire_next_timer().await;
            assert!(matches!(event, Event::RestartDue { .. }), "{event:?}");
            delays.push((driver.spawns.last().unwrap().2 - crashed_at).as_secs());
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(driver.lifecycle.slots()[0].restarts, 11);
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
        let restart_at = driver.lifecycle.slots()[0].restart_at.unwrap();
        assert_eq!(restart_at - Instant::now(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_instance_is_up_after_a_second_alive() {
        let mut driver = Driver::new(&["worker.1"], None);
        driver.send(Event::Started { slot: 0, generation: 1, pid: 7 });
        assert_eq!(driver.lifecycle.slots()[0].state, State::Starting);
        driver.fire_next_timer().await;
        assert_eq!(driver.lifecycle.slots()[0].state, State::Up);
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
        assert_eq!(driver.lifecycle.slots()[1].state, State::Stopped);
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
        assert_eq!(driver.lifecycle.slots()[0].state, State::Draining);
        assert!(driver.timers.iter().any(|(_, e)| matches!(e, Event::GraceOver { .. })));
        driver.exit(0, ExitReason::Code(2));
        assert_eq!(driver.lifecycle.slots()[0].state, State::Crashed);
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

    #[test]
    fn events_of_an_old_incarnation_are_ignored() {
        let mut driver = Driver::new(&["web.1"], None);
        driver.send(Event::Exited { slot: 0, generation: 99, reason: ExitReason::Code(1) });
        assert_eq!(driver.lifecycle.slots()[0].state, State::Starting);
    }

    #[tokio::test(start_paused = true)]
    async fn a_routed_instance_joins_when_healthy_and_leaves_before_sigterm() {
        let mut driver = Driver::with(&["tcp.1"], None, true);
        driver.send(Event::Started { slot: 0, generation: 1, pid: 7 });
        assert!(driver.took(|e| *e == Effect::Watch { slot: 0, generation: 1 }));
        driver.send(Event::Healthy { slot: 0, generation: 1 });
        assert_eq!(driver.lifecycle.slots()[0].state, State::Up);
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
        assert_eq!(driver.lifecycle.slots()[0].state, State::Crashed);
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
}
