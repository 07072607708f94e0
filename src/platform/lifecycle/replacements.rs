//! The release step at start, and what the Rollout controller asks of instances: start
//! replacements held out of routing, run a deploy's release step, switch routing to the
//! replacements (the old instances retire), or abandon the replacements.

use super::{log, Effect, Level, Lifecycle, Phase, Report, Slot, SlotId, SlotInit, State};
use crate::platform::intents::IntentRefused;
use crate::process::protocol::ExitReason;
use tokio::time::Instant;

impl Lifecycle {
    /// Starts the release slot, or every instance when there is none.
    pub fn start(&mut self, now: Instant) -> Vec<Effect> {
        match self.slots.iter().find(|(_, s)| s.one_shot).map(|(id, _)| *id) {
            Some(release) => {
                self.phase = super::Phase::Release;
                self.spawn(release, now)
            }
            None => self.spawn_instances(now),
        }
    }

    /// A successor's start, once it adopted the instances handed over: the others (crashed or
    /// stopped there) start now; no release step.
    pub fn start_unstarted(&mut self, now: Instant) -> Vec<Effect> {
        self.phase = Phase::Running;
        let ids: Vec<SlotId> =
            self.slots.iter().filter(|(_, s)| !s.one_shot && s.generation == 0).map(|(id, _)| *id).collect();
        ids.into_iter().flat_map(|id| self.spawn(id, now)).collect()
    }

    /// At start (none has run yet): every instance, or a warning when the formation has none.
    fn spawn_instances(&mut self, now: Instant) -> Vec<Effect> {
        if self.slots.values().all(|s| s.one_shot) {
            self.phase = Phase::Running;
            return vec![log(Level::Warn, "the formation has no instance to run now (every type is at 0 or asleep)")];
        }
        self.start_unstarted(now)
    }

    /// A release step still running at its timeout: R20, SIGKILL (its exit then fails the start
    /// or the deploy).
    pub(super) fn on_release_due(&mut self, id: SlotId) -> Vec<Effect> {
        let slot = &self.slots[&id];
        if !matches!(slot.state, State::Starting | State::Up) {
            return Vec::new();
        }
        let limit = crate::duration::format(self.timing.release_timeout);
        let text = format!("R20 Release timeout: {} did not finish within {limit}; sending SIGKILL", slot.name);
        vec![log(Level::Error, text), Effect::Kill { slot: id }]
    }

    /// The release step ended: at start, it gates the formation; during a deploy, the Rollout
    /// controller decides.
    pub(super) fn on_release_exited(&mut self, id: SlotId, reason: ExitReason, now: Instant) -> Vec<Effect> {
        match self.phase {
            Phase::Running => vec![Effect::Report(Report::StepExited { slot: id, reason })],
            Phase::Release if reason == ExitReason::Code(0) => self.spawn_instances(now),
            Phase::Release => {
                self.phase = Phase::Done;
                let text = format!(
                    "release failed ({reason}); not starting the formation. Fix the release command and start again"
                );
                vec![log(Level::Error, text), Effect::Exit(1)]
            }
            Phase::ShuttingDown { .. } | Phase::Done => Vec::new(),
        }
    }

    fn running(&self) -> Result<(), IntentRefused> {
        match self.phase {
            Phase::Running => Ok(()),
            _ => Err(IntentRefused::Stopping),
        }
    }

    /// Starts a replacement under an id from [`Lifecycle::new_id`], held out of routing until
    /// the switch; it is reported `Ready` once healthy, or `Failed`.
    pub fn start_replacement(
        &mut self,
        id: SlotId,
        init: SlotInit,
        now: Instant,
    ) -> Result<Vec<Effect>, IntentRefused> {
        self.running()?;
        let mut slot = Slot::new(init, false);
        slot.held = true;
        self.slots.insert(id, slot);
        Ok(self.spawn(id, now))
    }

    /// Runs a deploy's release step; its exit is reported (`StepExited`).
    pub fn run_step(&mut self, id: SlotId, init: SlotInit, now: Instant) -> Result<Vec<Effect>, IntentRefused> {
        self.running()?;
        self.slots.insert(id, Slot::new(init, true));
        Ok(self.spawn(id, now))
    }

    /// Whether the formation serves: running, every current instance up, routed ones in routing.
    pub fn serving(&self) -> bool {
        self.phase == Phase::Running
            && self
                .slots
                .values()
                .filter(|s| !s.held && !s.retiring && !s.one_shot)
                .all(|s| s.state == State::Up && s.in_routing == s.routed)
    }

    /// Whether `id` is a current instance: not a replacement waiting for its switch, not
    /// retiring, not a release step.
    pub fn is_current(&self, id: SlotId) -> bool {
        self.slots.get(&id).is_some_and(|s| !s.held && !s.retiring && !s.one_shot)
    }

    /// The replacements join routing, then the old instances leave and retire (so there is
    /// never no instance). Refused, changing nothing, unless every replacement is still held
    /// and up.
    pub fn switch(&mut self, news: &[SlotId], olds: &[SlotId]) -> Result<Vec<Effect>, IntentRefused> {
        self.running()?;
        let not_ready = news.iter().find(|id| !self.slots.get(id).is_some_and(|s| s.held && s.state == State::Up));
        if let Some(id) = not_ready {
            let name = self.slots.get(id).map_or("a replacement".to_string(), Slot::who);
            return Err(IntentRefused::Failed(format!("{name} is no longer ready")));
        }
        let mut effects = Vec::new();
        for id in news {
            let slot = self.slots.get_mut(id).expect("checked above");
            slot.held = false;
            if slot.routed {
                slot.in_routing = true;
                effects.push(Effect::Join { slot: *id, generation: slot.generation });
            }
        }
        for id in olds {
            match self.slots.contains_key(id) {
                true => effects.extend(self.retire(*id, "replaced")),
                false => effects.push(Effect::Report(Report::Drained { slot: *id, who: String::new() })),
            }
        }
        Ok(effects)
    }

    /// A rollout failed: its replacements stop; the old instances keep serving.
    pub fn abandon(&mut self, news: &[SlotId]) -> Vec<Effect> {
        news.iter().flat_map(|id| self.retire(*id, "rollout failed")).collect()
    }

    /// A retiring instance has no open connection left.
    pub(super) fn on_drained(&mut self, id: SlotId) -> Vec<Effect> {
        let slot = &self.slots[&id];
        match slot.retiring {
            true => vec![Effect::Report(Report::Drained { slot: id, who: slot.who() })],
            false => Vec::new(),
        }
    }
}
