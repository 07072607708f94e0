//! One slot's transitions: spawn, started, up, health, boot timeout, exit, crash restarts with
//! backoff, scale up and down.

use super::{log, Effect, Event, Level, Lifecycle, Phase, Report, Slot, SlotId, SlotInit, State, UP_AFTER};
use crate::platform::backoff::Backoff;
use crate::platform::intents::IntentRefused;
use crate::process::protocol::ExitReason;
use nix::sys::signal::Signal;
use std::time::Duration;
use tokio::time::Instant;

impl Slot {
    pub(super) fn new(init: SlotInit, one_shot: bool) -> Slot {
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
            cycles: init.cycles,
            stop_requested: false,
            backoff: Backoff::default(),
        }
    }

    pub(super) fn is_running(&self) -> bool {
        matches!(self.state, State::Starting | State::Up | State::Draining)
    }

    /// The state `ps` shows: `failed` for a crashed instance in a crash loop.
    pub fn shown_state(&self) -> &'static str {
        match self.state {
            State::Crashed if self.backoff.looping() => "failed",
            state => state.as_str(),
        }
    }

    /// `tcp.1 (pid 7)`: old and new instances share a name during a rollout.
    pub(super) fn who(&self) -> String {
        self.pid.map_or(self.name.clone(), |pid| format!("{} (pid {pid})", self.name))
    }
}

impl Lifecycle {
    pub(super) fn spawn(&mut self, id: SlotId, now: Instant) -> Vec<Effect> {
        let slot = self.slots.get_mut(&id).expect("spawning a known slot");
        let first = slot.generation == 0;
        slot.generation += 1;
        slot.state = State::Starting;
        slot.started_at = Some(now);
        slot.restart_at = None;
        slot.stop_requested = false;
        let mut effects = vec![Effect::Spawn { slot: id, generation: slot.generation }];
        if first && !slot.one_shot && slot.cycles {
            effects.push(Effect::Report(Report::Spawned { slot: id, name: slot.name.clone(), age: Duration::ZERO }));
        }
        if slot.one_shot {
            let event = Event::ReleaseDue { slot: id, generation: slot.generation };
            effects.push(Effect::After { delay: self.timing.release_timeout, event });
        }
        effects
    }

    /// Adds and starts an instance (scale up) under an id from [`Lifecycle::new_id`].
    pub fn add(&mut self, id: SlotId, init: SlotInit, now: Instant) -> Result<Vec<Effect>, IntentRefused> {
        if self.phase != Phase::Running {
            return Err(IntentRefused::Stopping);
        }
        self.slots.insert(id, Slot::new(init, false));
        Ok(self.spawn(id, now))
    }

    /// Takes an instance away for good (scale down, replaced): out of routing, SIGTERM, removed
    /// when gone.
    pub fn retire(&mut self, id: SlotId, reason: &'static str) -> Vec<Effect> {
        let Some(slot) = self.slots.get_mut(&id) else { return Vec::new() };
        slot.retiring = true;
        if !slot.is_running() {
            let who = slot.who();
            self.slots.remove(&id);
            return vec![Effect::Forget { slot: id }, Effect::Report(Report::Drained { slot: id, who })];
        }
        let mut effects = self.unroute(id, reason, true);
        effects.extend(self.terminate(id, false));
        effects
    }

    pub(super) fn on_started(&mut self, id: SlotId, pid: u32) -> Vec<Effect> {
        let boot_timeout = self.timing.boot_timeout;
        let slot = self.slots.get_mut(&id).expect("checked by handle");
        slot.pid = Some(pid);
        let generation = slot.generation;
        let port = slot.port.map_or(String::new(), |p| format!(", port {p}"));
        let mut effects = match slot.held {
            true => {
                vec![Effect::Report(Report::Progress(format!("{} replacement starting (pid {pid}{port})", slot.name)))]
            }
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

    /// Healthy (routed) or alive long enough (unrouted): up, and in routing unless held (a held
    /// replacement is reported ready instead).
    pub(super) fn on_up(&mut self, id: SlotId) -> Vec<Effect> {
        let slot = self.slots.get_mut(&id).expect("checked by handle");
        if !matches!(slot.state, State::Starting | State::Up) || slot.in_routing {
            return Vec::new();
        }
        let was_starting = slot.state == State::Starting;
        slot.state = State::Up;
        slot.health_spell += 1;
        if slot.held {
            if !was_starting {
                return Vec::new();
            }
            let text = format!("{} healthy", slot.who());
            return vec![Effect::Report(Report::Progress(text)), Effect::Report(Report::Ready { slot: id })];
        }
        if !slot.routed {
            return Vec::new();
        }
        slot.in_routing = true;
        vec![Effect::Join { slot: id, generation: slot.generation }]
    }

    /// Takes the slot out of routing (and, when `unwatch`, out of health checks).
    pub(super) fn unroute(&mut self, id: SlotId, reason: &'static str, unwatch: bool) -> Vec<Effect> {
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
    pub(super) fn on_unhealthy(&mut self, id: SlotId) -> Vec<Effect> {
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
    pub(super) fn on_unhealthy_due(&mut self, id: SlotId, spell: u64) -> Vec<Effect> {
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
    pub(super) fn terminate(&mut self, id: SlotId, restart: bool) -> Vec<Effect> {
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
    /// for a replacement, a failure its rollout hears of).
    pub(super) fn on_boot_due(&mut self, id: SlotId) -> Vec<Effect> {
        if self.slots[&id].state != State::Starting {
            return Vec::new();
        }
        let mut effects = self.unroute(id, "boot timeout", true);
        let limit = crate::duration::format(self.timing.boot_timeout);
        let slot = self.slots.get_mut(&id).expect("checked by handle");
        slot.state = State::Draining;
        let text =
            format!("R10 Boot timeout: {} did not pass its health check within {limit}; sending SIGKILL", slot.name);
        effects.extend([log(Level::Warn, text), Effect::Kill { slot: id }]);
        if slot.held {
            let why = format!("{} did not pass its health check within {limit}", slot.who());
            effects.push(Effect::Report(Report::Failed { slot: id, why }));
        }
        effects
    }

    /// The main process ended by itself; the keeper sent SIGTERM to what is left of the tree.
    pub(super) fn on_leader_exited(&mut self, id: SlotId) -> Vec<Effect> {
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

    pub(super) fn on_grace_over(&mut self, id: SlotId) -> Vec<Effect> {
        let slot = &self.slots[&id];
        if slot.state != State::Draining {
            return Vec::new();
        }
        self.killed_any = true;
        let grace = crate::duration::format(self.timing.grace);
        let text = format!("R12 Exit timeout: {} did not exit within {grace} of SIGTERM; sending SIGKILL", slot.name);
        vec![log(Level::Warn, text), Effect::Kill { slot: id }]
    }

    pub(super) fn on_exited(&mut self, id: SlotId, reason: ExitReason, now: Instant) -> Vec<Effect> {
        let mut effects = self.unroute(id, "exited", true);
        let phase = self.phase;
        let slot = self.slots.get_mut(&id).expect("checked by handle");
        let who = match slot.retiring || slot.held {
            true => slot.who(),
            false => slot.name.clone(),
        };
        effects.push(log(Level::Info, format!("{who} {reason}")));
        slot.state = State::Stopped;
        if slot.one_shot {
            self.slots.remove(&id);
            effects.push(Effect::Forget { slot: id });
            effects.extend(self.on_release_exited(id, reason, now));
        } else if slot.retiring {
            // An exited instance has no connection left: drained, if it was not already.
            self.slots.remove(&id);
            effects.extend([Effect::Forget { slot: id }, Effect::Report(Report::Drained { slot: id, who })]);
        } else if slot.held {
            let why = format!("{who} {reason} before it was healthy");
            self.slots.remove(&id);
            effects.extend([Effect::Forget { slot: id }, Effect::Report(Report::Failed { slot: id, why })]);
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

    pub(super) fn on_restart_due(&mut self, id: SlotId, now: Instant) -> Vec<Effect> {
        if self.slots[&id].state != State::Crashed || self.phase != Phase::Running {
            return Vec::new();
        }
        self.spawn(id, now)
    }
}
