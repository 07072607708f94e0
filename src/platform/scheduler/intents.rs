//! The Rollout controller's intents, carried out by the Scheduler: plan a deploy (the pure
//! planner against the running formation), run its release step, start replacements on free
//! ports of their types' blocks, switch routing, abandon replacements, commit or discard the
//! planned release. Each answers at once; the instances' fate comes later as reports.

use super::{Reported, Running, Scheduler};
use crate::config::{Release, ReleaseSource};
use crate::platform::deploy_plan::{self, DeployPlan, TypeChange};
use crate::platform::intents::{Current, IntentRefused, Pair, Report, Selector, SlotId};
use crate::platform::lifecycle::SlotInit;
use crate::platform::spec::{port_for, SlotSpec, Templates, TypeTemplate};
use actix::prelude::*;
use std::sync::Arc;
use tokio::time::Instant;

/// A deploy planned and not yet in force.
pub struct PlannedDeploy {
    running: Running,
    plan: DeployPlan,
}

/// A replacement to start: for the old instance (if any), instance `number` of `template`.
type Order = (Option<SlotId>, Arc<TypeTemplate>, usize);

/// Read the new release and plan its deploy; a dry run keeps nothing.
#[derive(Message)]
#[rtype(result = "Result<PlanReply, IntentRefused>")]
pub struct PlanDeploy {
    pub source: ReleaseSource,
    pub dry_run: bool,
}

/// The plan's lines, why it is refused (if it is), and whether a release step runs first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanReply {
    pub lines: Vec<String>,
    pub refused: Option<String>,
    pub has_step: bool,
}

/// Run the planned deploy's release step.
#[derive(Message)]
#[rtype(result = "Result<SlotId, IntentRefused>")]
pub struct RunStep;

/// Start replacements, held out of routing.
#[derive(Message)]
#[rtype(result = "Result<Vec<Pair>, IntentRefused>")]
pub struct Replace(pub Selector);

/// Route new connections to `news`, retire `olds`.
#[derive(Message)]
#[rtype(result = "Result<(), IntentRefused>")]
pub struct Switch {
    pub news: Vec<SlotId>,
    pub olds: Vec<SlotId>,
}

/// Stop these replacements.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Abandon(pub Vec<SlotId>);

/// The planned deploy's release is the running one now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Commit;

/// The planned deploy's release is dropped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Discard;

/// Which rollout is under way (`None`: none).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Busy(pub Option<String>);

fn failed(why: impl ToString) -> IntentRefused {
    IntentRefused::Failed(why.to_string())
}

impl Scheduler {
    /// The current (not retiring, not held) instances, sorted by type and number.
    pub(super) fn current(&self) -> Vec<(SlotId, &SlotSpec)> {
        let mut current: Vec<(SlotId, &SlotSpec)> = self
            .lifecycle
            .slots()
            .filter(|(id, _)| self.lifecycle.is_current(*id))
            .filter_map(|(id, _)| Some((id, self.specs.get(&id)?)))
            .collect();
        current.sort_by_key(|(id, spec)| (spec.template.type_index, spec.number, *id));
        current
    }

    /// The current instances per type.
    pub(super) fn counts(&self) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for (_, spec) in self.current() {
            *counts.entry(spec.template.type_name.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// The types some current instance of which runs another release than the one in force:
    /// after a deploy's commit, those that woke from sleep during its rollout.
    fn stale_types(&self) -> std::collections::BTreeSet<String> {
        let templates = &self.config.running.templates;
        let stale =
            |spec: &SlotSpec| templates.get(&spec.template.type_name).is_some_and(|t| !Arc::ptr_eq(t, &spec.template));
        self.current()
            .into_iter()
            .filter(|(_, spec)| stale(spec))
            .map(|(_, spec)| spec.template.type_name.clone())
            .collect()
    }

    /// The plan of a deploy from `source`, against the running formation.
    fn deploy_plan(&self, source: &ReleaseSource) -> Result<(Release, DeployPlan), IntentRefused> {
        let new = self.config.running.release.next(source).map_err(failed)?;
        let plan = deploy_plan::plan(&self.config.running.release, &new, &self.counts());
        Ok((new, plan.with_asleep(|name| self.sleepers.asleep(name))))
    }

    fn plan_deploy(&mut self, source: &ReleaseSource, dry_run: bool) -> Result<PlanReply, IntentRefused> {
        let (release, plan) = self.deploy_plan(source)?;
        let lines = plan.to_string().lines().map(str::to_string).collect();
        let refused = plan.is_refused().then(|| deploy_plan::refusal_text(&plan));
        let mut reply = PlanReply { lines, refused, has_step: false };
        if dry_run || reply.refused.is_some() {
            return Ok(reply);
        }
        let templates = Templates::of(&release, &self.config.bound).map_err(failed)?;
        reply.has_step = templates.release_step.is_some();
        self.pending = Some(PlannedDeploy { running: Running { release, templates }, plan });
        Ok(reply)
    }

    fn run_step(&mut self, ctx: &mut Context<Self>) -> Result<SlotId, IntentRefused> {
        let step = self.pending.as_ref().and_then(|p| p.running.templates.release_step.clone());
        let step = step.ok_or_else(|| failed("no planned deploy has a release step"))?;
        let (id, init) = self.file(step.instance(1, None));
        let effects = self.lifecycle.run_step(id, init, Instant::now());
        self.started(id, effects, ctx)
    }

    /// Which instances `selector` replaces, each with the template of its replacement.
    fn orders(&self, selector: &Selector) -> Result<(Vec<Order>, Vec<SlotId>), IntentRefused> {
        let current = self.current();
        if *selector == Selector::Deploy {
            return self.deploy_orders(&current);
        }
        let seen: Vec<Current> = current
            .iter()
            .map(|(slot, spec)| Current { slot: *slot, type_name: &spec.template.type_name, name: &spec.name })
            .collect();
        let picked = selector.pick(&seen).map_err(|refused| match selector {
            Selector::Restart(Some(target)) if self.sleepers.asleep(target).is_some() => {
                failed(format!("{target} is asleep: nothing to restart (its next wake starts the release in force)"))
            }
            _ => refused,
        })?;
        // A restart or a cycle keeps each instance's own release; a refresh moves it to the one in force.
        let template = |spec: &SlotSpec| match selector {
            Selector::Refresh(_) => self.config.running.templates.get(&spec.template.type_name).cloned(),
            _ => None,
        };
        let own = |(id, spec): &(SlotId, &SlotSpec)| {
            (Some(*id), template(spec).unwrap_or_else(|| spec.template.clone()), spec.number)
        };
        Ok((current.iter().filter(|(id, _)| picked.contains(id)).map(own).collect(), Vec::new()))
    }

    /// The planned deploy's replacements (added types start with one instance) and removals.
    fn deploy_orders(&self, current: &[(SlotId, &SlotSpec)]) -> Result<(Vec<Order>, Vec<SlotId>), IntentRefused> {
        let planned = self.pending.as_ref().ok_or_else(|| failed("no deploy is planned"))?;
        let (mut orders, mut removed) = (Vec::new(), Vec::new());
        for line in &planned.plan.types {
            let of_type = current.iter().filter(|(_, s)| s.template.type_name == line.type_name);
            match (&line.change, planned.running.templates.get(&line.type_name)) {
                (TypeChange::Added, Some(template)) => orders.push((None, template.clone(), 1)),
                // A type asleep at the plan that woke since (with the running release) is replaced.
                (TypeChange::Replaced { .. } | TypeChange::Asleep { .. }, Some(template)) => {
                    orders.extend(of_type.map(|(id, spec)| (Some(*id), template.clone(), spec.number)))
                }
                (TypeChange::Removed { .. }, _) => removed.extend(of_type.map(|(id, _)| *id)),
                _ => {}
            }
        }
        Ok((orders, removed))
    }

    /// Starts the replacements `selector` asks for; on failure none is left.
    fn replace(&mut self, selector: &Selector, ctx: &mut Context<Self>) -> Result<Vec<Pair>, IntentRefused> {
        let (orders, removed) = self.orders(selector)?;
        let mut filed = Vec::new();
        for (old, template, number) in orders {
            match self.file_new(&template, number) {
                Ok((id, init)) => filed.push((old, id, init)),
                Err(why) => {
                    filed.iter().for_each(|(_, id, _)| self.forget(*id));
                    return Err(failed(why));
                }
            }
        }
        let mut pairs: Vec<Pair> = Vec::new();
        for (old, id, init) in filed {
            let effects = self.lifecycle.start_replacement(id, init, Instant::now());
            self.started(id, effects, ctx)?;
            pairs.push((old, Some(id)));
        }
        pairs.extend(removed.into_iter().map(|id| (Some(id), None)));
        Ok(pairs)
    }

    /// Carries out a new slot's first effects; a refused one is forgotten.
    fn started(
        &mut self,
        id: SlotId,
        effects: Result<Vec<crate::platform::lifecycle::Effect>, IntentRefused>,
        ctx: &mut Context<Self>,
    ) -> Result<SlotId, IntentRefused> {
        match effects {
            Ok(effects) => {
                self.apply(effects, ctx);
                Ok(id)
            }
            Err(why) => {
                self.forget(id);
                Err(why)
            }
        }
    }

    /// Files the spec of a new instance `number` of `template`, on a port of its block that no
    /// other instance (running or just filed) holds.
    pub(super) fn file_new(
        &mut self,
        template: &Arc<TypeTemplate>,
        number: usize,
    ) -> Result<(SlotId, SlotInit), String> {
        let block = template.block_start.ok_or("a release step has no port")?;
        let in_use = |port: u16| self.specs.values().any(|s| s.port == Some(port));
        let port = port_for(block, number, in_use)
            .ok_or_else(|| format!("no free port left in {}'s block", template.type_name))?;
        Ok(self.file(template.instance(number, Some(port))))
    }

    fn file(&mut self, spec: SlotSpec) -> (SlotId, SlotInit) {
        let id = self.lifecycle.new_id();
        let slot = super::init(&spec);
        self.specs.insert(id, spec);
        (id, slot)
    }
}

impl Handler<PlanDeploy> for Scheduler {
    type Result = Result<PlanReply, IntentRefused>;

    fn handle(&mut self, PlanDeploy { source, dry_run }: PlanDeploy, _ctx: &mut Context<Self>) -> Self::Result {
        self.upgrading().map_or(Ok(()), |why| Err(failed(why)))?;
        self.plan_deploy(&source, dry_run)
    }
}

impl Handler<RunStep> for Scheduler {
    type Result = Result<SlotId, IntentRefused>;

    fn handle(&mut self, _: RunStep, ctx: &mut Context<Self>) -> Self::Result {
        self.upgrading().map_or(Ok(()), |why| Err(failed(why)))?;
        self.run_step(ctx)
    }
}

impl Handler<Replace> for Scheduler {
    type Result = Result<Vec<Pair>, IntentRefused>;

    fn handle(&mut self, Replace(selector): Replace, ctx: &mut Context<Self>) -> Self::Result {
        self.upgrading().map_or(Ok(()), |why| Err(failed(why)))?;
        self.replace(&selector, ctx)
    }
}

impl Handler<Switch> for Scheduler {
    type Result = Result<(), IntentRefused>;

    fn handle(&mut self, Switch { news, olds }: Switch, ctx: &mut Context<Self>) -> Self::Result {
        let effects = self.lifecycle.switch(&news, &olds)?;
        self.apply(effects, ctx);
        Ok(())
    }
}

impl Handler<Abandon> for Scheduler {
    type Result = ();

    fn handle(&mut self, Abandon(news): Abandon, ctx: &mut Context<Self>) {
        let effects = self.lifecycle.abandon(&news);
        self.apply(effects, ctx);
    }
}

impl Handler<Commit> for Scheduler {
    type Result = ();

    fn handle(&mut self, _: Commit, _ctx: &mut Context<Self>) {
        if let Some(planned) = self.pending.take() {
            self.config.running = planned.running;
            let templates = &self.config.running.templates;
            self.sleepers.retain(|name| templates.get(name).is_some());
            for type_name in self.stale_types() {
                self.peers.rollouts.do_send(Reported(Report::Stale { type_name }));
            }
            self.record_state();
        }
    }
}

impl Handler<Discard> for Scheduler {
    type Result = ();

    fn handle(&mut self, _: Discard, _ctx: &mut Context<Self>) {
        self.pending = None;
    }
}

impl Handler<Busy> for Scheduler {
    type Result = ();

    fn handle(&mut self, Busy(rollout): Busy, _ctx: &mut Context<Self>) {
        self.busy = rollout;
    }
}
