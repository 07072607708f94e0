//! The Rollout controller's decisions as a pure state machine: restarts, deploys and daily
//! cycling, one at a time, the others queued. It owns each rollout's plan, steps, rollback and
//! log lines, and asks the Scheduler (the one owner of instances) for intents ([`Step`]); the
//! Scheduler's answers and reports come back in. No actors, no clock, no processes.
//!
//! ```text
//!   request ─► (deploy: PlanDeploy ─► release step? RunStep ─► StepExited 0)
//!     ─► Replace: replacements start, held out of routing (Booting)
//!     ── every replacement Ready ──► Switch: replacements join routing, old ones leave and
//!        get SIGTERM (Switched) ── every old one Drained ──► done (deploy: Commit)
//!     ── a replacement Failed, a step fails, the switch is refused ──► Abandon the replacements,
//!        the old ones keep serving (deploy: Discard; cycle: armed again for the next period)
//!     ── Stopping ──► interrupted; nothing more begins
//! ```

use super::intents::{IntentRefused, Pair, Report, Selector, SlotId};
use crate::process::protocol::ExitReason;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// Who asked for a rollout: the shell maps it to the client's answer stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientId(pub u64);

/// Why a rollout runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutKind {
    /// `procgate restart [TARGET]`.
    Restart(String),
    /// `procgate deploy`.
    Deploy,
    /// Daily cycling of one instance.
    Cycle(String),
}

impl RolloutKind {
    /// `restart`, `deploy` or `cycle`.
    pub fn name(&self) -> &'static str {
        match self {
            RolloutKind::Restart(_) => "restart",
            RolloutKind::Deploy => "deploy",
            RolloutKind::Cycle(_) => "cycle",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            RolloutKind::Restart(target) => format!("restart of {target}"),
            RolloutKind::Deploy => "deploy".to_string(),
            RolloutKind::Cycle(name) => format!("cycling of {name}"),
        }
    }
}

/// A rollout asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Restart {
        target: Option<String>,
        client: ClientId,
    },
    Deploy {
        client: ClientId,
    },
    Cycle {
        slot: SlotId,
        name: String,
    },
    /// A restart of a type that woke from sleep during a deploy with the previous release.
    Refresh {
        type_name: String,
    },
}

/// What the controller asks of the Scheduler, or says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A rollout is under way (`Some`: scale waits) or none is.
    Busy(Option<String>),
    /// Read and plan the deploy `client` asked for; answer with [`Rollouts::planned`].
    PlanDeploy { client: ClientId },
    /// Run the planned deploy's release step; answer with [`Rollouts::step_started`].
    RunStep,
    /// Start replacements; answer with [`Rollouts::replacing`].
    Replace(Selector),
    /// Route new connections to the replacements, retire the old ones; answer with
    /// [`Rollouts::switched`].
    Switch { news: Vec<SlotId>, olds: Vec<SlotId> },
    /// Stop the replacements: the old instances keep serving.
    Abandon { news: Vec<SlotId> },
    /// The planned deploy's release is now the running one.
    Commit,
    /// The planned deploy's release is dropped.
    Discard,
    /// A progress line, logged and sent to the client.
    Tell { client: Option<ClientId>, text: String },
    /// The rollout ended; the client's last line starts with `ok:` or `failed:`.
    Finish { client: Option<ClientId>, ok: bool, text: String },
    /// Start the daily cycle clock of an instance, `age` into its period.
    ArmCycle { slot: SlotId, name: String, age: Duration },
    /// A rollout of this kind (`restart`, `deploy`, `cycle`) ended, well or not (metrics).
    Tally { kind: &'static str, ok: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pairing {
    old: Option<SlotId>,
    new: Option<SlotId>,
    ready: bool,
    drained: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for the Scheduler's plan (deploy) or its replacements.
    Asking,
    /// A deploy's release step runs.
    Stepping(Option<SlotId>),
    /// Replacements start, held out of routing.
    Booting,
    /// The switch was asked for.
    Switching,
    /// New connections go to the replacements; the old instances drain.
    Switched(Instant),
}

#[derive(Debug, Clone)]
struct Active {
    kind: RolloutKind,
    client: Option<ClientId>,
    /// The instance a cycle replaces.
    cycled: Option<(SlotId, String)>,
    stage: Stage,
    pairs: Vec<Pairing>,
}

/// Every rollout: the one under way and those waiting.
#[derive(Debug, Default)]
pub struct Rollouts {
    queue: VecDeque<Request>,
    active: Option<Active>,
    stopping: bool,
}

impl Rollouts {
    /// A rollout asked for: begun now, or queued behind the one under way.
    pub fn request(&mut self, request: Request) -> Vec<Step> {
        if self.stopping {
            return match client_of(&request) {
                Some(client) => vec![finish(Some(client), false, "procgate is stopping".into())],
                None => Vec::new(),
            };
        }
        if let Some(active) = &self.active {
            let (client, text) = match &request {
                Request::Cycle { name, .. } => {
                    (None, format!("cycling of {name} queued behind the {} under way", active.kind.describe()))
                }
                _ => (client_of(&request), "queued behind the rollout under way".to_string()),
            };
            self.queue.push_back(request);
            return vec![Step::Tell { client, text }];
        }
        self.begin(request)
    }

    /// The rollout under way, as its log lines name it (`restart of tcp`).
    pub fn underway(&self) -> Option<String> {
        self.active.as_ref().map(|active| active.kind.describe())
    }

    /// Whether a rollout is under way.
    pub fn is_busy(&self) -> bool {
        self.active.is_some()
    }

    fn begin(&mut self, request: Request) -> Vec<Step> {
        let (kind, client, cycled, first) = match request {
            Request::Restart { target, client } => {
                let kind = RolloutKind::Restart(target.clone().unwrap_or_else(|| "all types".into()));
                (kind, Some(client), None, Step::Replace(Selector::Restart(target)))
            }
            Request::Deploy { client } => (RolloutKind::Deploy, Some(client), None, Step::PlanDeploy { client }),
            Request::Cycle { slot, name } => {
                let kind = RolloutKind::Cycle(name.clone());
                (kind, None, Some((slot, name)), Step::Replace(Selector::Cycle(slot)))
            }
            Request::Refresh { type_name } => {
                let kind = RolloutKind::Restart(type_name.clone());
                (kind, None, None, Step::Replace(Selector::Refresh(type_name)))
            }
        };
        let mut steps = vec![Step::Busy(Some(kind.describe()))];
        if let RolloutKind::Restart(_) = &kind {
            steps.push(Step::Tell { client, text: format!("{} started", kind.describe()) });
        }
        steps.push(first);
        self.active = Some(Active { kind, client, cycled, stage: Stage::Asking, pairs: Vec::new() });
        steps
    }

    /// The Scheduler planned the deploy: `Ok(true)` when it has a release step to run first.
    pub fn planned(&mut self, plan: Result<bool, String>) -> Vec<Step> {
        match plan {
            Ok(true) => self.at(Stage::Stepping(None), vec![Step::RunStep]),
            Ok(false) => self.launch_deploy(),
            Err(why) => self.end(false, why),
        }
    }

    /// The deploy's release step started as `slot`.
    pub fn step_started(&mut self, started: Result<SlotId, IntentRefused>) -> Vec<Step> {
        match started {
            Ok(slot) => self.at(Stage::Stepping(Some(slot)), Vec::new()),
            Err(why) => self.end(false, format!("deploy failed: {why}; nothing was changed")),
        }
    }

    fn launch_deploy(&mut self) -> Vec<Step> {
        let client = self.active.as_ref().and_then(|a| a.client);
        let steps = vec![Step::Tell { client, text: "deploy started".into() }, Step::Replace(Selector::Deploy)];
        self.at(Stage::Asking, steps)
    }

    fn at(&mut self, stage: Stage, steps: Vec<Step>) -> Vec<Step> {
        if let Some(active) = self.active.as_mut() {
            active.stage = stage;
        }
        steps
    }

    /// The Scheduler started the replacements: (old, new) pairs.
    pub fn replacing(&mut self, pairs: Result<Vec<Pair>, IntentRefused>) -> Vec<Step> {
        let Some(active) = self.active.as_mut() else { return Vec::new() };
        match pairs {
            Ok(pairs) => {
                active.pairs = pairs
                    .into_iter()
                    .map(|(old, new)| Pairing { old, new, ready: new.is_none(), drained: old.is_none() })
                    .collect();
                active.stage = Stage::Booting;
                // The daily `Cycling` line, once there is a replacement to say it of.
                let cycling = active
                    .cycled
                    .as_ref()
                    .map(|(_, name)| Step::Tell { client: None, text: format!("Cycling {name}") });
                let mut steps: Vec<Step> = cycling.into_iter().collect();
                steps.extend(self.switch_if_ready());
                steps
            }
            // A cycle of an instance replaced meanwhile: its replacement has a clock of its own.
            Err(IntentRefused::Gone) => {
                self.active.as_mut().expect("checked above").cycled = None;
                self.end_quietly()
            }
            Err(why) => self.end(false, why.to_string()),
        }
    }

    fn switch_if_ready(&mut self) -> Vec<Step> {
        let Some(active) = self.active.as_mut() else { return Vec::new() };
        if active.stage != Stage::Booting || !active.pairs.iter().all(|p| p.ready) {
            return Vec::new();
        }
        active.stage = Stage::Switching;
        let news = active.pairs.iter().filter_map(|p| p.new).collect();
        let olds = active.pairs.iter().filter_map(|p| p.old).collect();
        vec![Step::Switch { news, olds }]
    }

    /// The Scheduler's answer to the switch.
    pub fn switched(&mut self, result: Result<(), IntentRefused>, now: Instant) -> Vec<Step> {
        let Some(active) = self.active.as_mut() else { return Vec::new() };
        match result {
            Ok(()) => {
                active.stage = Stage::Switched(now);
                let text = "routing switched: new connections go to the replacements".to_string();
                let mut steps = vec![Step::Tell { client: active.client, text }];
                steps.extend(self.finish_if_done());
                steps
            }
            Err(why) => self.fail(why.to_string()),
        }
    }

    /// A report from the Scheduler.
    pub fn report(&mut self, report: Report, now: Instant) -> Vec<Step> {
        match report {
            Report::Spawned { slot, name, age } => vec![Step::ArmCycle { slot, name, age }],
            Report::Progress(text) => match &self.active {
                Some(active) => vec![Step::Tell { client: active.client, text }],
                None => vec![Step::Tell { client: None, text }],
            },
            Report::Ready { slot } => self.on_ready(slot),
            Report::Failed { slot, why } => match self.is_booting(slot) {
                true => self.fail(why),
                false => Vec::new(),
            },
            Report::Drained { slot, who } => self.on_drained(slot, &who, now),
            Report::StepExited { slot, reason } => self.on_step_exited(slot, reason),
            Report::Stale { type_name } => {
                let text = format!("{type_name} woke during the deploy with the previous release: restarting it");
                let mut steps = vec![Step::Tell { client: None, text }];
                steps.extend(self.request(Request::Refresh { type_name }));
                steps
            }
            Report::Stopping => self.on_stopping(),
        }
    }

    fn is_booting(&self, slot: SlotId) -> bool {
        self.active.as_ref().is_some_and(|a| {
            matches!(a.stage, Stage::Booting | Stage::Switching) && a.pairs.iter().any(|p| p.new == Some(slot))
        })
    }

    fn on_ready(&mut self, slot: SlotId) -> Vec<Step> {
        let Some(active) = self.active.as_mut() else { return Vec::new() };
        for pair in active.pairs.iter_mut().filter(|p| p.new == Some(slot)) {
            pair.ready = true;
        }
        self.switch_if_ready()
    }

    fn on_drained(&mut self, slot: SlotId, who: &str, now: Instant) -> Vec<Step> {
        let Some(active) = self.active.as_mut() else { return Vec::new() };
        let Stage::Switched(at) = active.stage else { return Vec::new() };
        let Some(pair) = active.pairs.iter_mut().find(|p| p.old == Some(slot) && !p.drained) else {
            return Vec::new();
        };
        pair.drained = true;
        let took = now.saturating_duration_since(at).as_secs_f64();
        let mut steps = Vec::new();
        if !who.is_empty() {
            steps.push(Step::Tell { client: active.client, text: format!("{who} drained in {took:.1}s") });
        }
        steps.extend(self.finish_if_done());
        steps
    }

    fn on_step_exited(&mut self, slot: SlotId, reason: ExitReason) -> Vec<Step> {
        let stepping = self.active.as_ref().is_some_and(|a| a.stage == Stage::Stepping(Some(slot)));
        match (stepping, reason) {
            (false, _) => Vec::new(),
            (true, ExitReason::Code(0)) => self.launch_deploy(),
            (true, reason) => self.end(false, format!("deploy failed: its release {reason}; nothing was changed")),
        }
    }

    fn on_stopping(&mut self) -> Vec<Step> {
        self.stopping = true;
        let mut steps = Vec::new();
        for request in std::mem::take(&mut self.queue) {
            if let Some(client) = client_of(&request) {
                steps.push(finish(Some(client), false, "procgate is stopping".into()));
            }
        }
        if let Some(active) = self.active.as_mut() {
            active.cycled = None;
            let text = format!("{} interrupted: procgate is stopping", active.kind.describe());
            steps.extend(self.end(false, text));
        }
        steps
    }

    fn finish_if_done(&mut self) -> Vec<Step> {
        let Some(active) = &self.active else { return Vec::new() };
        if !matches!(active.stage, Stage::Switched(_)) || !active.pairs.iter().all(|p| p.drained) {
            return Vec::new();
        }
        let replaced = active.pairs.iter().filter(|p| p.new.is_some()).count();
        let text = format!("{} done: {replaced} instances serving, the old ones drained", active.kind.describe());
        self.end(true, text)
    }

    /// A replacement failed, or the switch was refused: the replacements stop.
    fn fail(&mut self, why: String) -> Vec<Step> {
        let Some(active) = &self.active else { return Vec::new() };
        let news = active.pairs.iter().filter_map(|p| p.new).collect();
        let text = format!("{} failed: {why}; the old instances keep serving", active.kind.describe());
        let mut steps = vec![Step::Abandon { news }];
        steps.extend(self.end(false, text));
        steps
    }

    /// The rollout ends: its client's last line, what happens to a deploy's release and a
    /// cycle's clock, then the next one waiting.
    fn end(&mut self, ok: bool, text: String) -> Vec<Step> {
        let Some(active) = self.active.take() else { return Vec::new() };
        let mut steps = vec![finish(active.client, ok, text), Step::Tally { kind: active.kind.name(), ok }];
        if active.kind == RolloutKind::Deploy {
            steps.push(if ok { Step::Commit } else { Step::Discard });
        }
        if let Some((slot, name)) = active.cycled.filter(|_| !ok) {
            steps.push(Step::ArmCycle { slot, name, age: Duration::ZERO });
        }
        steps.extend(self.next());
        steps
    }

    fn end_quietly(&mut self) -> Vec<Step> {
        self.active = None;
        self.next()
    }

    fn next(&mut self) -> Vec<Step> {
        match self.queue.pop_front() {
            Some(request) if !self.stopping => self.begin(request),
            _ => vec![Step::Busy(None)],
        }
    }
}

fn client_of(request: &Request) -> Option<ClientId> {
    match request {
        Request::Restart { client, .. } | Request::Deploy { client } => Some(*client),
        Request::Cycle { .. } | Request::Refresh { .. } => None,
    }
}

fn finish(client: Option<ClientId>, ok: bool, text: String) -> Step {
    Step::Finish { client, ok, text }
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
