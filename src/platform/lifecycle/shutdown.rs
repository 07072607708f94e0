//! Stopping everything: SIGTERM to every instance, SIGKILL after the grace or at a second
//! signal, the exit status once every tree is gone.

use super::{log, Effect, Level, Lifecycle, Phase, Report, SlotId, State};

impl Lifecycle {
    pub(super) fn on_stop_requested(&mut self) -> Vec<Effect> {
        match self.phase {
            Phase::Done | Phase::ShuttingDown { fast: true } => Vec::new(),
            Phase::ShuttingDown { fast: false } => self.kill_everything(),
            Phase::Release | Phase::Running => self.terminate_everything(),
        }
    }

    /// `procgate stop`: asked again, it is not a second signal.
    pub(super) fn on_stop_asked(&mut self) -> Vec<Effect> {
        match self.phase {
            Phase::Release | Phase::Running => self.terminate_everything(),
            Phase::ShuttingDown { .. } | Phase::Done => Vec::new(),
        }
    }

    fn terminate_everything(&mut self) -> Vec<Effect> {
        self.phase = Phase::ShuttingDown { fast: false };
        // A rollout, or a deploy still in its release step (which gets SIGTERM with the rest), ends.
        let mut effects = vec![Effect::CloseGateway, Effect::Report(Report::Stopping)];
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

    pub(super) fn exit_if_done(&mut self) -> Vec<Effect> {
        let shutting_down = matches!(self.phase, Phase::ShuttingDown { .. });
        if !shutting_down || self.slots.values().any(|s| s.is_running()) {
            return Vec::new();
        }
        self.phase = Phase::Done;
        vec![Effect::Exit(i32::from(self.killed_any))]
    }
}
