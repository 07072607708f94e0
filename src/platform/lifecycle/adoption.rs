//! An instance adopted at an upgrade: the previous main process ran it and handed it over (its
//! keeper, process group and port unchanged), so the new main takes its slot as it was, `Up`,
//! instead of spawning it. From there on it is a slot like any other.

use super::{log, Effect, Level, Lifecycle, Phase, Report, SlotId, State};
use std::time::Duration;
use tokio::time::Instant;

/// An instance as the previous main process handed it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adopted {
    /// Its incarnation there: kept, so the handed-over monitors and timers agree.
    pub generation: u64,
    pub pid: u32,
    pub restarts: u32,
    /// How long it has run: its uptime carries over.
    pub running_for: Duration,
    /// It was in routing (healthy); a routed one out of routing joins once its checks pass.
    pub in_routing: bool,
}

impl Lifecycle {
    /// Takes slot `id`, made by [`Lifecycle::new`] and never started, as a running instance
    /// (instead of [`Lifecycle::start`]): health-checked if its type is routed, in routing if it
    /// was. A slot that is not such is left as it is, with a warning.
    pub fn adopt(&mut self, id: SlotId, adopted: Adopted, now: Instant) -> Vec<Effect> {
        let Some(slot) = self.slots.get_mut(&id).filter(|s| s.generation == 0 && s.state == State::Stopped) else {
            return vec![log(Level::Warn, format!("cannot adopt slot {id:?}: it is not a slot waiting to start"))];
        };
        if slot.one_shot || adopted.generation == 0 {
            return vec![log(Level::Warn, format!("cannot adopt {}: not a running instance", slot.name))];
        }
        self.phase = Phase::Running;
        slot.generation = adopted.generation;
        slot.state = State::Up;
        slot.pid = Some(adopted.pid);
        slot.restarts = adopted.restarts;
        slot.started_at = Some(now.checked_sub(adopted.running_for).unwrap_or(now));
        slot.health_spell += 1;
        let generation = slot.generation;
        let mut effects = vec![log(Level::Info, format!("{} adopted (pid {})", slot.name, adopted.pid))];
        if slot.cycles {
            // Its cycle clock goes on from how long it has run, not from the upgrade.
            let age = adopted.running_for;
            effects.push(Effect::Report(Report::Spawned { slot: id, name: slot.name.clone(), age }));
        }
        if slot.routed {
            slot.watched = true;
            effects.push(Effect::Watch { slot: id, generation });
            if adopted.in_routing {
                slot.in_routing = true;
                effects.push(Effect::Join { slot: id, generation });
            }
        }
        effects
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Event, SlotInit, Timing};
    use super::*;
    use crate::process::protocol::ExitReason;
    use nix::sys::signal::Signal;

    const TIMING: Timing = Timing {
        grace: Duration::from_secs(30),
        boot_timeout: Duration::from_secs(60),
        release_timeout: Duration::from_secs(600),
    };

    fn lifecycle(routed: bool) -> Lifecycle {
        cycled(routed, false)
    }

    fn cycled(routed: bool, cycles: bool) -> Lifecycle {
        let init = |name: &str| SlotInit {
            name: name.to_string(),
            routed,
            port: Some(5000),
            restart_unhealthy_after: None,
            cycles,
        };
        Lifecycle::new(vec![init("web.1"), init("web.2")], None, TIMING)
    }

    fn adopted(generation: u64, in_routing: bool) -> Adopted {
        Adopted { generation, pid: 4242, restarts: 3, running_for: Duration::from_secs(90), in_routing }
    }

    #[tokio::test(start_paused = true)]
    async fn a_healthy_routed_instance_is_up_checked_and_in_routing_without_a_spawn() {
        let mut lifecycle = lifecycle(true);
        let now = Instant::now() + Duration::from_secs(3600);
        let effects = lifecycle.adopt(SlotId(0), adopted(7, true), now);
        assert!(!effects.iter().any(|e| matches!(e, Effect::Spawn { .. })), "{effects:?}");
        assert!(effects.contains(&Effect::Watch { slot: SlotId(0), generation: 7 }));
        assert!(effects.contains(&Effect::Join { slot: SlotId(0), generation: 7 }));
        let slot = lifecycle.slot(SlotId(0)).unwrap();
        assert_eq!((slot.state, slot.pid, slot.restarts, slot.in_routing), (State::Up, Some(4242), 3, true));
        assert_eq!(now - slot.started_at.unwrap(), Duration::from_secs(90));
        assert!(lifecycle.is_running());
    }

    #[tokio::test(start_paused = true)]
    async fn one_out_of_routing_joins_when_its_checks_pass_and_a_crash_restarts_it_as_usual() {
        let mut lifecycle = lifecycle(true);
        let now = Instant::now();
        let effects = lifecycle.adopt(SlotId(1), adopted(2, false), now);
        assert!(!effects.iter().any(|e| matches!(e, Effect::Join { .. })), "{effects:?}");
        let healthy = lifecycle.handle(Event::Healthy { slot: SlotId(1), generation: 2 }, now);
        assert!(healthy.contains(&Effect::Join { slot: SlotId(1), generation: 2 }), "{healthy:?}");
        let exited = Event::Exited { slot: SlotId(1), generation: 2, reason: ExitReason::Code(1) };
        let effects = lifecycle.handle(exited, now);
        let restart = effects.iter().any(|e| matches!(e, Effect::After { event: Event::RestartDue { .. }, .. }));
        assert!(restart, "{effects:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_sends_sigterm_to_adopted_instances_and_only_fresh_slots_are_adopted() {
        let mut lifecycle = lifecycle(false);
        let now = Instant::now();
        let effects = lifecycle.adopt(SlotId(0), adopted(1, false), now);
        assert!(!effects.iter().any(|e| matches!(e, Effect::Watch { .. } | Effect::Join { .. })), "{effects:?}");
        let again = lifecycle.adopt(SlotId(0), adopted(1, false), now);
        assert!(matches!(&again[..], [Effect::Log { level: Level::Warn, .. }]), "{again:?}");
        let unknown = lifecycle.adopt(SlotId(9), adopted(1, false), now);
        assert!(matches!(&unknown[..], [Effect::Log { level: Level::Warn, .. }]), "{unknown:?}");
        let stop = lifecycle.handle(Event::StopRequested, now);
        assert!(stop.contains(&Effect::Signal { slot: SlotId(0), signal: Signal::SIGTERM }), "{stop:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cycled_instance_keeps_its_age_for_its_cycle_clock() {
        let effects = cycled(false, true).adopt(SlotId(0), adopted(1, false), Instant::now());
        let age = Duration::from_secs(90);
        assert!(effects.contains(&Effect::Report(Report::Spawned { slot: SlotId(0), name: "web.1".into(), age })));
        let fresh = lifecycle(false).adopt(SlotId(0), adopted(1, false), Instant::now());
        assert!(!fresh.iter().any(|e| matches!(e, Effect::Report(_))), "not cycled: no clock: {fresh:?}");
    }
}
