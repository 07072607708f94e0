//! The Scheduler's decisions as a pure state machine: [`Lifecycle::handle`] takes an event and
//! the time and returns effects for the actor to carry out. No processes, no sockets, no clock.
//!
//! Instance states and what moves them (decided in `slot.rs`, `replacements.rs`, `shutdown.rs`):
//! ```text
//!   spawn ─► Starting ──alive 1 s (unrouted) / first good handshake (routed: Join)──► Up
//!               │ no good handshake within the boot timeout: SIGKILL (R10) ─► Draining
//!               │                     │ stop, scale down, replaced: Leave routing, SIGTERM, grace
//!               └─────────────────────┴──────────► Draining ──tree gone──► Stopped (or removed)
//!   leader exits on its own ─► Draining (rest of the tree got SIGTERM) ──tree gone──► Crashed
//!   Crashed ──backoff elapsed──► spawn          Draining ──grace over──► SIGKILL (R12)
//!   Up (routed) ──health checks fail──► Up, out of routing ──they pass again──► back in
//!   adopted at an upgrade (`adoption.rs`) ─► Up, as the previous main process left it
//! ```
//! A `release` slot is one-shot: at start it runs before the others and its exit decides whether
//! they start; a deploy's release step reports its exit to the Rollout controller. Replacements
//! (`replacements.rs`) are held out of routing until the controller asks for the switch; what
//! the controller needs to know comes out as [`Effect::Report`] ([`Report`]).

mod adoption;
mod replacements;
mod shutdown;
mod slot;
#[cfg(test)]
mod tests;

use super::backoff::Backoff;
use super::intents::{Report, SlotId};
use crate::process::protocol::ExitReason;
pub use adoption::Adopted;
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// A non-routed instance counts as up once it has stayed alive this long.
pub const UP_AFTER: Duration = Duration::from_secs(1);

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
    /// A replacement waiting for the switch before it joins routing.
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
    cycles: bool,
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
    /// The slot is gone for good: drop what the actor holds for it.
    Forget {
        slot: SlotId,
    },
    /// Tell the Rollout controller.
    Report(Report),
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
    /// Its type is cycled daily (`cycle = false` in procgate.toml turns it off).
    pub cycles: bool,
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
}

fn log(level: Level, text: impl Into<String>) -> Effect {
    Effect::Log { level, text: text.into() }
}

impl Lifecycle {
    /// Slots `0..instances.len()` are the instances; a release command, if any, is the next slot.
    pub fn new(instances: Vec<SlotInit>, release: Option<SlotInit>, timing: Timing) -> Lifecycle {
        let mut lifecycle =
            Lifecycle { slots: BTreeMap::new(), next_id: SlotId(0), phase: Phase::Running, timing, killed_any: false };
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
        let id = self.next_id;
        self.next_id = SlotId(id.0 + 1);
        id
    }

    /// The id the next slot will get (every slot made later has a higher one).
    pub fn next_id(&self) -> SlotId {
        self.next_id
    }

    /// Whether the formation runs (not in its release step, not stopping).
    pub fn is_running(&self) -> bool {
        self.phase == Phase::Running
    }

    /// Every slot, in creation order.
    pub fn slots(&self) -> impl Iterator<Item = (SlotId, &Slot)> {
        self.slots.iter().map(|(id, slot)| (*id, slot))
    }

    pub fn slot(&self, id: SlotId) -> Option<&Slot> {
        self.slots.get(&id)
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
            Event::UpDue { slot, .. } | Event::Healthy { slot, .. } => self.on_up(slot),
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
            Event::BootDue { slot, .. } => self.on_boot_due(slot),
            Event::Unhealthy { slot, .. } => self.on_unhealthy(slot),
            Event::UnhealthyDue { slot, spell, .. } => self.on_unhealthy_due(slot, spell),
            Event::ReleaseDue { slot, .. } => self.on_release_due(slot),
            Event::Drained { slot, .. } => self.on_drained(slot),
            Event::StopRequested => self.on_stop_requested(),
            Event::StopAsked => self.on_stop_asked(),
        }
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
        Event::StopRequested | Event::StopAsked => None,
    }
}
