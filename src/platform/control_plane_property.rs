//! A property test of the control plane's two state machines together: the Scheduler's
//! [`Lifecycle`] and the Rollout controller's [`Rollouts`], wired as the actors wire them
//! (intents answered at once, reports delivered later, in order), with fake processes and a
//! virtual clock. Random sequences of events (processes start, exit, pass or fail checks, drain;
//! timers fire; restart, deploy, scale, cycle, stop) must keep these true:
//! - never two instances with one name in routing, nor two current ones;
//! - what routing holds is what the Lifecycle says is in routing, and never a forgotten slot;
//! - at quiescence (every process cooperates) no rollout is stuck, no replacement is held, every
//!   instance is up and the routed ones are in routing;
//! - a stop always reaches zero processes and an exit status.

use super::intents::{Current, IntentRefused, Pair, Report, Selector, SlotId};
use super::lifecycle::{Effect, Event, Lifecycle, SlotInit, State, Timing};
use super::rollout::{ClientId, Request, Rollouts, Step};
use crate::process::protocol::ExitReason;
use nix::sys::signal::Signal;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

/// The Procfile's types: name and whether the gateway routes it.
const TYPES: [(&str, bool); 2] = [("tcp", true), ("worker", false)];

const TIMING: Timing = Timing {
    grace: Duration::from_secs(30),
    boot_timeout: Duration::from_secs(60),
    release_timeout: Duration::from_secs(600),
};

/// One thing that happens; indexes pick among what exists at that moment.
#[derive(Debug, Clone)]
enum Action {
    Start(usize),
    Healthy(usize),
    Unhealthy(usize),
    LeaderExit(usize),
    Exit(usize, i32),
    Drain(usize),
    Timer,
    Deliver,
    Restart(u8),
    /// A deploy; `true`: its plan has a release step.
    Deploy(bool),
    Scale(usize, usize),
    Cycle(usize),
    Stop,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0..8usize).prop_map(Action::Start),
        3 => (0..8usize).prop_map(Action::Healthy),
        1 => (0..8usize).prop_map(Action::Unhealthy),
        1 => (0..8usize).prop_map(Action::LeaderExit),
        2 => (0..8usize, 0..3i32).prop_map(|(k, code)| Action::Exit(k, code)),
        2 => (0..8usize).prop_map(Action::Drain),
        3 => Just(Action::Timer),
        5 => Just(Action::Deliver),
        1 => (0..4u8).prop_map(Action::Restart),
        1 => any::<bool>().prop_map(Action::Deploy),
        1 => (0..2usize, 0..4usize).prop_map(|(t, n)| Action::Scale(t, n)),
        1 => (0..8usize).prop_map(Action::Cycle),
        1 => Just(Action::Stop),
    ]
}

/// A fake process of a slot's incarnation.
#[derive(Debug, Clone, Copy)]
struct Process {
    generation: u64,
    started: bool,
    /// It got SIGTERM or SIGKILL: a cooperative app exits.
    told_to_go: bool,
}

struct World {
    now: Instant,
    lifecycle: Lifecycle,
    rollouts: Rollouts,
    /// The specs filed: type index and instance number of each slot.
    filed: BTreeMap<SlotId, (usize, usize)>,
    processes: BTreeMap<SlotId, Process>,
    timers: Vec<(Instant, Event)>,
    in_flight: VecDeque<Report>,
    /// The Balancer's view: joined and not left.
    routing: BTreeMap<SlotId, String>,
    drains: BTreeSet<(SlotId, u64)>,
    clocks: Vec<(SlotId, String)>,
    busy: bool,
    exit: Option<i32>,
    next_pid: u32,
    /// Whether the next deploy planned has a release step.
    step_next: bool,
    /// The first promise seen broken inside a batch of effects.
    broken: Option<String>,
}

fn init(type_index: usize, number: usize) -> SlotInit {
    let (name, routed) = TYPES[type_index];
    SlotInit { name: format!("{name}.{number}"), routed, port: None, restart_unhealthy_after: None, cycles: true }
}

impl World {
    fn new(with_release: bool) -> World {
        let plan = [(0, 1), (0, 2), (1, 1)];
        let release = with_release.then(|| SlotInit { name: "release.1".into(), ..init(1, 1) });
        let lifecycle = Lifecycle::new(plan.iter().map(|(t, n)| init(*t, *n)).collect(), release, TIMING);
        let mut world = World {
            now: Instant::now(),
            lifecycle,
            rollouts: Rollouts::default(),
            filed: plan.iter().copied().enumerate().map(|(i, spec)| (SlotId(i), spec)).collect(),
            processes: BTreeMap::new(),
            timers: Vec::new(),
            in_flight: VecDeque::new(),
            routing: BTreeMap::new(),
            drains: BTreeSet::new(),
            clocks: Vec::new(),
            busy: false,
            exit: None,
            next_pid: 100,
            step_next: false,
            broken: None,
        };
        let effects = world.lifecycle.start(world.now);
        world.apply(effects);
        world
    }

    fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Spawn { slot, generation } => {
                    self.processes.insert(slot, Process { generation, started: false, told_to_go: false });
                }
                Effect::Signal { slot, signal: Signal::SIGTERM } | Effect::Kill { slot } => {
                    if let Some(process) = self.processes.get_mut(&slot) {
                        process.told_to_go = true;
                    }
                }
                Effect::After { delay, event } => self.timers.push((self.now + delay, event)),
                Effect::Join { slot, .. } => {
                    let name = self.lifecycle.slot(slot).expect("a joining slot exists").name.clone();
                    self.routing.insert(slot, name);
                }
                Effect::Leave { slot, .. } => {
                    self.routing.remove(&slot);
                }
                Effect::WatchDrain { slot, generation } => {
                    self.drains.insert((slot, generation));
                }
                Effect::Forget { slot } => {
                    if self.routing.contains_key(&slot) {
                        self.broke(format!("slot {slot:?} forgotten while in routing"));
                    }
                    self.filed.remove(&slot);
                }
                Effect::Report(report) => self.in_flight.push_back(report),
                Effect::Exit(code) => {
                    if !self.processes.is_empty() {
                        self.broke(format!("exit {code} with processes left: {:?}", self.processes));
                    }
                    self.exit = Some(code);
                }
                _ => {}
            }
        }
    }

    fn send(&mut self, event: Event) {
        let effects = self.lifecycle.handle(event, self.now);
        self.apply(effects);
    }

    /// Carries out the controller's steps as the Rollout actor does: an intent is answered at
    /// once, and what the controller makes of the answer goes before the rest.
    fn carry(&mut self, steps: Vec<Step>) {
        let mut steps: VecDeque<Step> = steps.into();
        while let Some(step) = steps.pop_front() {
            let more = match step {
                Step::Busy(rollout) => {
                    self.busy = rollout.is_some();
                    Vec::new()
                }
                Step::PlanDeploy { .. } => self.rollouts.planned(Ok(self.step_next)),
                Step::RunStep => {
                    let started = self.run_step();
                    self.rollouts.step_started(started)
                }
                Step::Replace(selector) => {
                    let pairs = self.replace(&selector);
                    self.rollouts.replacing(pairs)
                }
                Step::Switch { news, olds } => {
                    let switched = self.lifecycle.switch(&news, &olds).map(|effects| self.apply(effects));
                    self.rollouts.switched(switched, self.now)
                }
                Step::Abandon { news } => {
                    let effects = self.lifecycle.abandon(&news);
                    self.apply(effects);
                    Vec::new()
                }
                Step::ArmCycle { slot, name, .. } => {
                    self.clocks.push((slot, name));
                    Vec::new()
                }
                Step::Commit | Step::Discard | Step::Tell { .. } | Step::Finish { .. } | Step::Tally { .. } => {
                    Vec::new()
                }
            };
            for step in more.into_iter().rev() {
                steps.push_front(step);
            }
        }
    }

    fn current(&self) -> Vec<(SlotId, usize, usize)> {
        let current = self.lifecycle.slots().filter(|(id, _)| self.lifecycle.is_current(*id));
        current.filter_map(|(id, _)| self.filed.get(&id).map(|(t, n)| (id, *t, *n))).collect()
    }

    fn replace(&mut self, selector: &Selector) -> Result<Vec<Pair>, IntentRefused> {
        let current = self.current();
        let names: Vec<String> = current.iter().map(|(_, t, n)| format!("{}.{n}", TYPES[*t].0)).collect();
        let seen: Vec<Current> = current
            .iter()
            .zip(&names)
            .map(|((slot, t, _), name)| Current { slot: *slot, type_name: TYPES[*t].0, name })
            .collect();
        let picked = match selector {
            Selector::Deploy => current.iter().map(|(slot, _, _)| *slot).collect(),
            _ => selector.pick(&seen)?,
        };
        let mut pairs = Vec::new();
        for (old, t, n) in current.into_iter().filter(|(slot, _, _)| picked.contains(slot)) {
            let id = self.lifecycle.new_id();
            self.filed.insert(id, (t, n));
            let effects = self.lifecycle.start_replacement(id, init(t, n), self.now)?;
            self.apply(effects);
            pairs.push((Some(old), Some(id)));
        }
        Ok(pairs)
    }

    fn run_step(&mut self) -> Result<SlotId, IntentRefused> {
        let id = self.lifecycle.new_id();
        let effects = self.lifecycle.run_step(id, SlotInit { name: "release.1".into(), ..init(1, 1) }, self.now)?;
        self.filed.insert(id, (1, 1));
        self.apply(effects);
        Ok(id)
    }

    /// `scale`, as the Scheduler does it: refused during a rollout; the highest numbers retire,
    /// the lowest free ones are added.
    fn scale(&mut self, type_index: usize, count: usize) {
        if self.busy {
            return;
        }
        let of_type: Vec<(SlotId, usize)> =
            self.current().into_iter().filter(|(_, t, _)| *t == type_index).map(|(id, _, n)| (id, n)).collect();
        for (id, _) in of_type.iter().skip(count).rev() {
            let effects = self.lifecycle.retire(*id, "scaled down");
            self.apply(effects);
        }
        let taken: Vec<usize> = of_type.iter().map(|(_, n)| *n).collect();
        for number in (1..).filter(|n| !taken.contains(n)).take(count.saturating_sub(of_type.len())) {
            let id = self.lifecycle.new_id();
            self.filed.insert(id, (type_index, number));
            if let Ok(effects) = self.lifecycle.add(id, init(type_index, number), self.now) {
                self.apply(effects);
            }
        }
    }

    /// The `k`-th live process matching `which`.
    fn pick(&self, k: usize, which: impl Fn(&Process) -> bool) -> Option<(SlotId, Process)> {
        let matching: Vec<(SlotId, Process)> =
            self.processes.iter().filter(|(_, p)| which(p)).map(|(id, p)| (*id, *p)).collect();
        (!matching.is_empty()).then(|| matching[k % matching.len()])
    }

    fn act(&mut self, action: &Action) {
        match *action {
            Action::Start(k) => {
                if let Some((slot, p)) = self.pick(k, |p| !p.started) {
                    self.processes.get_mut(&slot).expect("picked").started = true;
                    self.next_pid += 1;
                    self.send(Event::Started { slot, generation: p.generation, pid: self.next_pid });
                }
            }
            Action::Healthy(k) => self.health(k, true),
            Action::Unhealthy(k) => self.health(k, false),
            Action::LeaderExit(k) => {
                if let Some((slot, p)) = self.pick(k, |p| p.started) {
                    self.send(Event::LeaderExited { slot, generation: p.generation });
                }
            }
            Action::Exit(k, code) => {
                if let Some((slot, p)) = self.pick(k, |p| p.started) {
                    self.exit_process(slot, p, ExitReason::Code(code));
                }
            }
            Action::Drain(k) => {
                let drains: Vec<(SlotId, u64)> = self.drains.iter().copied().collect();
                if !drains.is_empty() {
                    let (slot, generation) = drains[k % drains.len()];
                    self.drains.remove(&(slot, generation));
                    self.send(Event::Drained { slot, generation });
                }
            }
            Action::Timer => {
                self.fire_timer();
            }
            Action::Deliver => {
                self.deliver();
            }
            Action::Restart(which) => {
                let target = [None, Some("tcp"), Some("worker"), Some("tcp.1")][which as usize].map(str::to_string);
                let steps = self.rollouts.request(Request::Restart { target, client: ClientId(1) });
                self.carry(steps);
            }
            Action::Deploy(with_step) => {
                self.step_next = with_step;
                let steps = self.rollouts.request(Request::Deploy { client: ClientId(2) });
                self.carry(steps);
            }
            Action::Scale(t, n) => self.scale(t, n),
            Action::Cycle(k) => {
                if !self.clocks.is_empty() {
                    let (slot, name) = self.clocks.remove(k % self.clocks.len());
                    let steps = self.rollouts.request(Request::Cycle { slot, name });
                    self.carry(steps);
                }
            }
            Action::Stop => self.send(Event::StopRequested),
        }
    }

    fn health(&mut self, k: usize, healthy: bool) {
        let routed = |id: &SlotId| self.lifecycle.slot(*id).is_some_and(|s| s.routed);
        let candidates: Vec<(SlotId, Process)> =
            self.processes.iter().filter(|(id, p)| p.started && routed(id)).map(|(id, p)| (*id, *p)).collect();
        if let Some((slot, p)) = (!candidates.is_empty()).then(|| candidates[k % candidates.len()]) {
            let generation = p.generation;
            let event = match healthy {
                true => Event::Healthy { slot, generation },
                false => Event::Unhealthy { slot, generation },
            };
            self.send(event);
        }
    }

    fn exit_process(&mut self, slot: SlotId, process: Process, reason: ExitReason) {
        self.processes.remove(&slot);
        self.drains.retain(|(id, _)| *id != slot);
        self.send(Event::Exited { slot, generation: process.generation, reason });
    }

    fn fire_timer(&mut self) -> bool {
        let Some(next) = (0..self.timers.len()).min_by_key(|&i| self.timers[i].0) else { return false };
        let (at, event) = self.timers.remove(next);
        self.now = self.now.max(at);
        self.send(event);
        true
    }

    fn deliver(&mut self) -> bool {
        let Some(report) = self.in_flight.pop_front() else { return false };
        let steps = self.rollouts.report(report, self.now);
        self.carry(steps);
        true
    }

    fn broke(&mut self, why: String) {
        self.broken.get_or_insert(why);
    }

    /// What must hold after every action.
    fn check(&self) -> Result<(), String> {
        if let Some(why) = &self.broken {
            return Err(why.clone());
        }
        let mut names = BTreeSet::new();
        for (slot, name) in &self.routing {
            if !names.insert(name) {
                return Err(format!("two {name} in routing: {:?}", self.routing));
            }
            if !self.lifecycle.slot(*slot).is_some_and(|s| s.in_routing) {
                return Err(format!("slot {slot:?} ({name}) routed but not in routing for the Lifecycle"));
            }
        }
        let mut current = BTreeSet::new();
        for (slot, _, _) in self.current() {
            let name = &self.lifecycle.slot(slot).expect("current").name;
            if !current.insert(name.clone()) {
                return Err(format!("two current {name}"));
            }
        }
        Ok(())
    }

    /// Every process cooperates until nothing more happens: it starts, passes its checks,
    /// drains and exits when told to; reports arrive; timers fire.
    fn settle(&mut self) -> Result<(), String> {
        for _ in 0..10_000 {
            if self.deliver() {
                continue;
            }
            if let Some((slot, p)) = self.pick(0, |p| !p.started) {
                self.processes.get_mut(&slot).expect("picked").started = true;
                self.send(Event::Started { slot, generation: p.generation, pid: 1 });
                continue;
            }
            if let Some((slot, p)) = self.pick(0, |p| p.told_to_go) {
                self.exit_process(slot, p, ExitReason::Signal(15));
                continue;
            }
            let unchecked = |id: &SlotId| {
                self.lifecycle.slot(*id).is_some_and(|s| {
                    s.routed && (s.state == State::Starting || (s.state == State::Up && !s.in_routing && !s.held))
                })
            };
            let waiting = self.processes.iter().find(|(id, p)| p.started && unchecked(id));
            if let Some((&slot, &Process { generation, .. })) = waiting {
                self.send(Event::Healthy { slot, generation });
                continue;
            }
            if let Some((slot, generation)) = self.drains.pop_first() {
                self.send(Event::Drained { slot, generation });
                continue;
            }
            if !self.fire_timer() {
                return self.check();
            }
            self.check()?;
        }
        Err("the control plane never settled".into())
    }

    /// At quiescence: no rollout stuck, nothing held, every instance up, routed ones routed.
    fn check_quiescent(&self) -> Result<(), String> {
        if self.exit.is_some() {
            return Ok(());
        }
        if self.rollouts.is_busy() || self.busy {
            return Err("a rollout is stuck".into());
        }
        for (id, slot) in self.lifecycle.slots() {
            if slot.held || slot.state != State::Up || slot.in_routing != slot.routed {
                return Err(format!("{} (slot {id:?}) at quiescence: {slot:?}", slot.name));
            }
        }
        Ok(())
    }
}

/// Runs one sequence of actions, then settles, then stops; says which promise broke.
fn run(with_release: bool, actions: &[Action]) -> Result<(), String> {
    let mut world = World::new(with_release);
    for action in actions {
        world.act(action);
        world.check()?;
    }
    world.settle()?;
    world.check_quiescent()?;
    world.send(Event::StopRequested);
    world.settle()?;
    match (world.exit, world.processes.is_empty()) {
        (Some(_), true) => Ok(()),
        _ => Err(format!("the stop never finished: {:?}", world.processes)),
    }
}

fn sequences() -> impl Strategy<Value = (bool, Vec<Action>)> {
    (any::<bool>(), proptest::collection::vec(action(), 0..80))
}

fn property((with_release, actions): (bool, Vec<Action>)) -> Result<(), TestCaseError> {
    run(with_release, &actions).map_err(TestCaseError::fail)
}

#[test]
fn the_control_plane_keeps_its_promises_over_random_sequences() {
    let config = proptest::test_runner::Config { cases: 500, failure_persistence: None, ..Default::default() };
    proptest::test_runner::TestRunner::new(config).run(&sequences(), property).unwrap();
}

/// The same over 100,000 sequences (`cargo test --release --lib -- --ignored fuzz`).
#[test]
#[ignore]
fn fuzz_control_plane_sequences() {
    crate::proptest_check::check("control plane", sequences(), property);
}
