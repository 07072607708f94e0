//! The Lifecycle driven like the Scheduler drives it, with timers on tokio's paused clock.

use super::*;
use crate::platform::intents::IntentRefused;

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
            .map(|n| SlotInit { name: n.to_string(), routed, port: None, restart_unhealthy_after: None, cycles: true })
            .collect();
        let release = release.map(|name| SlotInit {
            name: name.to_string(),
            routed: false,
            port: None,
            restart_unhealthy_after: None,
            cycles: false,
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
        driver.exit(SlotId(0), ExitReason::Code(1));
        assert_eq!(driver.lifecycle.slot(SlotId(0)).unwrap().state, State::Crashed);
        let crashed_at = Instant::now();
        let event = driver.fire_next_timer().await;
        assert!(matches!(event, Event::RestartDue { .. }), "{event:?}");
        delays.push((driver.spawns.last().unwrap().2 - crashed_at).as_secs());
    }
    assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    assert_eq!(driver.lifecycle.slot(SlotId(0)).unwrap().restarts, 11);
}

#[tokio::test(start_paused = true)]
async fn ten_minutes_up_resets_the_backoff() {
    let mut driver = Driver::new(&["web.1"], None);
    for _ in 0..3 {
        driver.exit(SlotId(0), ExitReason::Code(1));
        driver.fire_next_timer().await;
    }
    tokio::time::sleep(Duration::from_secs(600)).await;
    driver.timers.clear();
    driver.exit(SlotId(0), ExitReason::Code(1));
    let restart_at = driver.lifecycle.slot(SlotId(0)).unwrap().restart_at.unwrap();
    assert_eq!(restart_at - Instant::now(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn an_instance_is_up_after_a_second_alive() {
    let mut driver = Driver::new(&["worker.1"], None);
    driver.send(Event::Started { slot: SlotId(0), generation: 1, pid: 7 });
    assert_eq!(driver.lifecycle.slot(SlotId(0)).unwrap().state, State::Starting);
    driver.fire_next_timer().await;
    assert_eq!(driver.lifecycle.slot(SlotId(0)).unwrap().state, State::Up);
}

#[tokio::test(start_paused = true)]
async fn stop_sends_sigterm_then_sigkill_with_r12_after_the_grace() {
    let mut driver = Driver::new(&["web.1", "web.2"], None);
    driver.send(Event::StopRequested);
    assert!(driver.took(|e| *e == Effect::Signal { slot: SlotId(1), signal: Signal::SIGTERM }));
    driver.exit(SlotId(0), ExitReason::Code(0));
    let fired = driver.fire_next_timer().await;
    assert!(matches!(fired, Event::GraceOver { slot: SlotId(0), .. }), "a stopped slot's timer is stale");
    assert!(!driver.took(|e| matches!(e, Effect::Kill { .. })));
    let start = Instant::now();
    driver.fire_next_timer().await;
    assert_eq!(Instant::now() - start, Duration::ZERO, "both grace timers end together");
    assert!(driver
        .effects
        .iter()
        .any(|e| matches!(e, Effect::Log { text, .. } if text.starts_with("R12 Exit timeout: web.2"))));
    assert!(driver.took(|e| *e == Effect::Kill { slot: SlotId(1) }));
    driver.exit(SlotId(1), ExitReason::Signal(9));
    assert!(driver.took(|e| *e == Effect::Exit(1)), "a SIGKILL makes the exit status 1");
}

#[test]
fn a_clean_stop_exits_zero_and_cancels_pending_restarts() {
    let mut driver = Driver::new(&["web.1", "worker.1"], None);
    driver.exit(SlotId(1), ExitReason::Code(3));
    driver.send(Event::StopRequested);
    assert_eq!(driver.lifecycle.slot(SlotId(1)).unwrap().state, State::Stopped);
    driver.exit(SlotId(0), ExitReason::Signal(15));
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
    assert!(driver.took(|e| *e == Effect::Kill { slot: SlotId(0) }));
    driver.exit(SlotId(0), ExitReason::Signal(9));
    assert!(driver.took(|e| *e == Effect::Exit(1)));
}

#[test]
fn leftovers_of_a_crashed_leader_get_the_grace_then_restart() {
    let mut driver = Driver::new(&["web.1"], None);
    driver.send(Event::LeaderExited { slot: SlotId(0), generation: 1 });
    assert_eq!(driver.lifecycle.slot(SlotId(0)).unwrap().state, State::Draining);
    assert!(driver.timers.iter().any(|(_, e)| matches!(e, Event::GraceOver { .. })));
    driver.exit(SlotId(0), ExitReason::Code(2));
    assert_eq!(driver.lifecycle.slot(SlotId(0)).unwrap().state, State::Crashed);
}

#[test]
fn release_runs_first_and_gates_the_formation() {
    let mut driver = Driver::new(&["web.1"], Some("release.1"));
    assert_eq!(driver.spawns.iter().map(|s| s.0).collect::<Vec<_>>(), [SlotId(1)]);
    driver.exit(SlotId(1), ExitReason::Code(0));
    assert_eq!(driver.spawns.iter().map(|s| s.0).collect::<Vec<_>>(), [SlotId(1), SlotId(0)]);

    let mut failing = Driver::new(&["web.1"], Some("release.1"));
    failing.exit(SlotId(1), ExitReason::Code(5));
    assert!(failing.took(|e| *e == Effect::Exit(1)));
    assert_eq!(failing.spawns.len(), 1, "nothing else starts");
}

#[tokio::test(start_paused = true)]
async fn a_release_step_past_its_timeout_is_killed_with_r20() {
    let mut driver = Driver::new(&["web.1"], Some("release.1"));
    assert!(matches!(driver.fire_next_timer().await, Event::ReleaseDue { slot: SlotId(1), .. }));
    assert!(driver.effects.iter().any(
        |e| matches!(e, Effect::Log { text, .. } if text == "R20 Release timeout: release.1 did not finish within 10m; sending SIGKILL")
    ));
    assert!(driver.took(|e| *e == Effect::Kill { slot: SlotId(1) }));
    driver.exit(SlotId(1), ExitReason::Signal(9));
    assert!(driver.took(|e| *e == Effect::Exit(1)), "the start fails");
}

#[test]
fn events_of_an_old_incarnation_are_ignored() {
    let mut driver = Driver::new(&["web.1"], None);
    driver.send(Event::Exited { slot: SlotId(0), generation: 99, reason: ExitReason::Code(1) });
    assert_eq!(driver.lifecycle.slot(SlotId(0)).unwrap().state, State::Starting);
}

#[tokio::test(start_paused = true)]
async fn a_routed_instance_joins_when_healthy_and_leaves_before_sigterm() {
    let mut driver = Driver::with(&["tcp.1"], None, true);
    driver.send(Event::Started { slot: SlotId(0), generation: 1, pid: 7 });
    assert!(driver.took(|e| *e == Effect::Watch { slot: SlotId(0), generation: 1 }));
    driver.send(Event::Healthy { slot: SlotId(0), generation: 1 });
    assert_eq!(driver.lifecycle.slot(SlotId(0)).unwrap().state, State::Up);
    assert!(driver.took(|e| *e == Effect::Join { slot: SlotId(0), generation: 1 }));
    driver.send(Event::Unhealthy { slot: SlotId(0), generation: 1 });
    assert!(driver.took(|e| matches!(e, Effect::Leave { reason: "health check failed", .. })));
    driver.send(Event::Healthy { slot: SlotId(0), generation: 1 });
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
    driver.send(Event::Started { slot: SlotId(0), generation: 1, pid: 7 });
    let event = driver.fire_next_timer().await;
    assert!(matches!(event, Event::BootDue { .. }), "{event:?}");
    assert!(driver
        .effects
        .iter()
        .any(|e| matches!(e, Effect::Log { text, .. } if text.starts_with("R10 Boot timeout: tcp.1"))));
    assert!(driver.took(|e| *e == Effect::Kill { slot: SlotId(0) }));
    driver.exit(SlotId(0), ExitReason::Signal(9));
    assert_eq!(driver.lifecycle.slot(SlotId(0)).unwrap().state, State::Crashed);
    assert!(driver.effects.iter().any(|e| matches!(e, Effect::Log { text, .. } if text.contains("restarting in 1s"))));
}

#[tokio::test(start_paused = true)]
async fn an_exit_takes_the_instance_out_of_routing() {
    let mut driver = Driver::with(&["tcp.1"], None, true);
    driver.send(Event::Started { slot: SlotId(0), generation: 1, pid: 7 });
    driver.send(Event::Healthy { slot: SlotId(0), generation: 1 });
    driver.effects.clear();
    driver.exit(SlotId(0), ExitReason::Signal(9));
    assert!(driver.effects.contains(&Effect::Leave { slot: SlotId(0), generation: 1, reason: "exited" }));
    assert!(driver.took(|e| *e == Effect::Unwatch { slot: SlotId(0), generation: 1 }));
}

/// Two routed instances up and in routing, ready for a rollout.
fn serving(names: &[&str]) -> Driver {
    let mut driver = Driver::with(names, None, true);
    for slot in 0..names.len() {
        driver.send(Event::Started { slot: SlotId(slot), generation: 1, pid: 100 + slot as u32 });
        driver.send(Event::Healthy { slot: SlotId(slot), generation: 1 });
    }
    driver.effects.clear();
    driver.timers.clear();
    driver
}

/// Starts a replacement for every slot in `olds`; returns their ids.
fn replace(driver: &mut Driver, olds: &[SlotId]) -> Vec<SlotId> {
    let mut news = Vec::new();
    for old in olds {
        let id = driver.lifecycle.new_id();
        let name = driver.lifecycle.slot(*old).unwrap().name.clone();
        let init = SlotInit { name, routed: true, port: None, restart_unhealthy_after: None, cycles: true };
        let effects = driver.lifecycle.start_replacement(id, init, Instant::now()).unwrap();
        driver.apply(effects);
        news.push(id);
    }
    news
}

fn reports(driver: &Driver) -> Vec<Report> {
    driver.effects.iter().filter_map(|e| if let Effect::Report(r) = e { Some(r.clone()) } else { None }).collect()
}

#[test]
fn a_replacement_is_held_out_of_routing_and_reported_ready_when_healthy() {
    let mut driver = serving(&["tcp.1"]);
    let news = replace(&mut driver, &[SlotId(0)]);
    assert!(driver.effects.contains(&Effect::Spawn { slot: news[0], generation: 1 }));
    driver.send(Event::Started { slot: news[0], generation: 1, pid: 200 });
    driver.send(Event::Healthy { slot: news[0], generation: 1 });
    assert!(!driver.effects.iter().any(|e| matches!(e, Effect::Join { .. } | Effect::Leave { .. })), "held");
    assert_eq!(
        reports(&driver)[2..],
        [Report::Progress("tcp.1 (pid 200) healthy".into()), Report::Ready { slot: news[0] }]
    );
    assert!(!driver.lifecycle.is_current(news[0]) && driver.lifecycle.is_current(SlotId(0)));
}

#[test]
fn the_switch_routes_the_replacements_before_the_old_ones_leave_and_retire() {
    let mut driver = serving(&["tcp.1", "tcp.2"]);
    let news = replace(&mut driver, &[SlotId(0), SlotId(1)]);
    driver.send(Event::Started { slot: news[0], generation: 1, pid: 200 });
    driver.send(Event::Healthy { slot: news[0], generation: 1 });
    assert_eq!(
        driver.lifecycle.switch(&news, &[SlotId(0), SlotId(1)]),
        Err(IntentRefused::Failed("tcp.2 is no longer ready".into())),
        "refused while one is not up, changing nothing"
    );
    driver.send(Event::Started { slot: news[1], generation: 1, pid: 201 });
    driver.send(Event::Healthy { slot: news[1], generation: 1 });
    driver.effects.clear();
    let effects = driver.lifecycle.switch(&news, &[SlotId(0), SlotId(1)]).unwrap();
    driver.apply(effects);
    for id in &news {
        assert!(driver.effects.contains(&Effect::Join { slot: *id, generation: 1 }));
    }
    for old in [SlotId(0), SlotId(1)] {
        assert!(driver.effects.contains(&Effect::Leave { slot: old, generation: 1, reason: "replaced" }));
        assert!(driver.effects.contains(&Effect::Signal { slot: old, signal: Signal::SIGTERM }));
        assert!(driver.effects.contains(&Effect::WatchDrain { slot: old, generation: 1 }));
    }
    let join = driver.effects.iter().position(|e| matches!(e, Effect::Join { .. })).unwrap();
    let leave = driver.effects.iter().position(|e| matches!(e, Effect::Leave { .. })).unwrap();
    assert!(join < leave, "the new ones are routed before the old ones leave: never no instance");
    driver.effects.clear();
    driver.send(Event::Drained { slot: SlotId(0), generation: 1 });
    driver.exit(SlotId(1), ExitReason::Code(0));
    assert_eq!(
        reports(&driver),
        [
            Report::Drained { slot: SlotId(0), who: "tcp.1 (pid 100)".into() },
            Report::Drained { slot: SlotId(1), who: "tcp.2 (pid 101)".into() }
        ],
        "an exit drains too"
    );
    assert!(driver.effects.contains(&Effect::Forget { slot: SlotId(1) }));
    assert_eq!(driver.lifecycle.slot(SlotId(0)).unwrap().state, State::Draining, "the old one keeps its grace");
}

#[tokio::test(start_paused = true)]
async fn a_replacement_that_never_accepts_is_reported_failed_and_abandoned() {
    let mut driver = serving(&["tcp.1"]);
    let news = replace(&mut driver, &[SlotId(0)]);
    driver.send(Event::Started { slot: news[0], generation: 1, pid: 200 });
    let event = driver.fire_next_timer().await;
    assert!(matches!(event, Event::BootDue { .. }), "{event:?}");
    assert!(driver.effects.contains(&Effect::Kill { slot: news[0] }));
    let why = "tcp.1 (pid 200) did not pass its health check within 1m".to_string();
    assert!(reports(&driver).contains(&Report::Failed { slot: news[0], why }));
    let effects = driver.lifecycle.abandon(&news);
    driver.apply(effects);
    assert!(driver.lifecycle.slot(SlotId(0)).unwrap().in_routing, "the old one keeps serving");
    driver.exit(news[0], ExitReason::Signal(9));
    assert!(driver.lifecycle.slot(news[0]).is_none(), "the failed replacement is gone, not restarted");
}

#[test]
fn a_replacement_that_exits_before_it_is_healthy_is_reported_failed() {
    let mut driver = serving(&["tcp.1"]);
    let news = replace(&mut driver, &[SlotId(0)]);
    driver.send(Event::Started { slot: news[0], generation: 1, pid: 200 });
    driver.exit(news[0], ExitReason::Code(1));
    let why = "tcp.1 (pid 200) exited with code 1 before it was healthy".to_string();
    assert!(reports(&driver).contains(&Report::Failed { slot: news[0], why }));
    assert!(driver.lifecycle.slot(news[0]).is_none());
}

#[test]
fn replacements_and_release_steps_are_refused_once_stopping_and_stopping_is_reported() {
    let mut driver = serving(&["tcp.1"]);
    driver.send(Event::StopRequested);
    assert!(reports(&driver).contains(&Report::Stopping));
    let init = SlotInit { name: "tcp.1".into(), routed: true, port: None, restart_unhealthy_after: None, cycles: true };
    let id = driver.lifecycle.new_id();
    assert_eq!(driver.lifecycle.start_replacement(id, init.clone(), Instant::now()), Err(IntentRefused::Stopping));
    assert_eq!(driver.lifecycle.run_step(id, init, Instant::now()), Err(IntentRefused::Stopping));
}

#[test]
fn a_deploys_release_step_reports_its_exit() {
    let mut driver = serving(&["tcp.1"]);
    let id = driver.lifecycle.new_id();
    let init =
        SlotInit { name: "release.1".into(), routed: false, port: None, restart_unhealthy_after: None, cycles: true };
    let effects = driver.lifecycle.run_step(id, init, Instant::now()).unwrap();
    driver.apply(effects);
    driver.exit(id, ExitReason::Code(3));
    assert!(reports(&driver).contains(&Report::StepExited { slot: id, reason: ExitReason::Code(3) }));
}

#[test]
fn a_first_spawn_is_reported_for_the_cycle_clock_and_a_crash_restart_is_not() {
    let mut driver = serving(&["tcp.1"]);
    driver.exit(SlotId(0), ExitReason::Code(1));
    driver.send(Event::RestartDue { slot: SlotId(0), generation: 1 });
    assert!(!reports(&driver).iter().any(|r| matches!(r, Report::Spawned { .. })), "a crash restart keeps its clock");
    let news = replace(&mut driver, &[SlotId(0)]);
    let spawned = Report::Spawned { slot: news[0], name: "tcp.1".into(), age: Duration::ZERO };
    assert!(reports(&driver).contains(&spawned));
}

#[test]
fn scaling_adds_and_retires_instances() {
    let mut driver = serving(&["tcp.1"]);
    let id = driver.lifecycle.new_id();
    let effects = driver
        .lifecycle
        .add(
            id,
            SlotInit { name: "tcp.2".into(), routed: true, port: None, restart_unhealthy_after: None, cycles: true },
            Instant::now(),
        )
        .unwrap();
    assert!(effects.contains(&Effect::Spawn { slot: id, generation: 1 }));
    let effects = driver.lifecycle.retire(SlotId(0), "scaled down");
    assert!(effects.contains(&Effect::Leave { slot: SlotId(0), generation: 1, reason: "scaled down" }));
    assert!(effects.contains(&Effect::Signal { slot: SlotId(0), signal: Signal::SIGTERM }));
    driver.exit(SlotId(0), ExitReason::Code(0));
    assert!(driver.took(|e| *e == Effect::Forget { slot: SlotId(0) }));
    assert!(driver.lifecycle.slot(SlotId(0)).is_none());
}

#[tokio::test(start_paused = true)]
async fn an_instance_failing_its_checks_for_restart_unhealthy_after_is_restarted_with_r16() {
    let after = Some(Duration::from_secs(60));
    let init =
        SlotInit { name: "web.1".into(), routed: true, port: Some(5000), restart_unhealthy_after: after, cycles: true };
    let mut driver = Driver {
        lifecycle: Lifecycle::new(vec![init], None, TIMING),
        timers: Vec::new(),
        spawns: Vec::new(),
        effects: Vec::new(),
    };
    let effects = driver.lifecycle.start(Instant::now());
    driver.apply(effects);
    driver.send(Event::Started { slot: SlotId(0), generation: 1, pid: 7 });
    driver.send(Event::Healthy { slot: SlotId(0), generation: 1 });
    driver.effects.clear();
    driver.send(Event::Unhealthy { slot: SlotId(0), generation: 1 });
    assert!(driver.effects.contains(&Effect::Leave { slot: SlotId(0), generation: 1, reason: "health check failed" }));
    // Healthy again in between: that spell's timer does nothing; the next spell's restarts it.
    driver.send(Event::Healthy { slot: SlotId(0), generation: 1 });
    driver.send(Event::Unhealthy { slot: SlotId(0), generation: 1 });
    driver.effects.clear();
    driver.timers.retain(|(_, event)| matches!(event, Event::UnhealthyDue { .. }));
    assert!(matches!(driver.fire_next_timer().await, Event::UnhealthyDue { spell: 2, .. }));
    assert!(driver.effects.is_empty(), "{:?}", driver.effects);
    assert!(matches!(driver.fire_next_timer().await, Event::UnhealthyDue { spell: 4, .. }));
    assert!(driver.effects.iter().any(
        |e| matches!(e, Effect::Log { text, .. } if text == "R16 Unresponsive: web.1 failed its health checks for 1m; restarting it")
    ));
    assert!(driver.took(|e| *e == Effect::Signal { slot: SlotId(0), signal: Signal::SIGTERM }));
    driver.exit(SlotId(0), ExitReason::Code(0));
    assert_eq!(driver.lifecycle.slot(SlotId(0)).unwrap().state, State::Crashed, "then restarted with backoff");
}

#[test]
fn by_default_failed_checks_only_take_an_instance_out_of_routing() {
    let mut driver = serving(&["tcp.1"]);
    driver.send(Event::Unhealthy { slot: SlotId(0), generation: 1 });
    assert!(!driver.effects.iter().any(|e| matches!(e, Effect::Signal { .. })));
    assert!(!driver.timers.iter().any(|(_, e)| matches!(e, Event::UnhealthyDue { .. })));
    assert_eq!(driver.lifecycle.slot(SlotId(0)).unwrap().state, State::Up);
}
