//! The Rollout actor: a thin actix shell around the pure [`Rollouts`] controller. It takes
//! `restart` and `deploy` requests and the Scheduler's reports, arms the daily cycle clocks,
//! carries the controller's steps out as intents to the Scheduler (waiting for each answer before
//! it reads another message, so no report overtakes it), and streams progress lines to the
//! client that asked.

use super::intents::SlotId;
use super::rollout::{ClientId, Request, Rollouts, Step};
use super::scheduler::{
    Abandon, Busy, Commit, Discard, PlanDeploy, PlanReply, Replace, Reported, RunStep, Scheduler, Switch,
};
use crate::config::ReleaseSource;
use crate::sd_notify::Notifier;
use actix::prelude::*;
use rand::Rng;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

/// Daily cycling: each instance is replaced after `period` plus a random delay up to `jitter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cycling {
    pub period: Duration,
    pub jitter: Duration,
}

/// A client of a rollout: where its lines go, and for a deploy, where the release is.
struct Client {
    lines: UnboundedSender<String>,
    source: Option<ReleaseSource>,
    /// A reload (SIGHUP): the service manager hears `READY=1` when it ends.
    reload: bool,
}

pub struct RolloutActor {
    rollouts: Rollouts,
    scheduler: Addr<Scheduler>,
    cycling: Option<Cycling>,
    clients: HashMap<ClientId, Client>,
    next_client: ClientId,
    notifier: Option<Rc<Notifier>>,
    /// Rollouts ended, by kind and whether they succeeded.
    tallies: BTreeMap<(&'static str, bool), u64>,
}

impl RolloutActor {
    pub fn new(scheduler: Addr<Scheduler>, cycling: Option<Cycling>, notifier: Option<Rc<Notifier>>) -> RolloutActor {
        let (rollouts, clients, next_client) = (Rollouts::default(), HashMap::new(), ClientId(0));
        RolloutActor { rollouts, scheduler, cycling, clients, next_client, notifier, tallies: BTreeMap::new() }
    }

    /// Carries out `steps` in order; one that asks the Scheduler holds the rest (and every
    /// other message) until its answer is in.
    fn carry(&mut self, steps: Vec<Step>, ctx: &mut Context<Self>) {
        let mut steps: VecDeque<Step> = steps.into();
        while let Some(step) = steps.pop_front() {
            match step {
                Step::PlanDeploy { client } => return self.ask_plan(client, steps, ctx),
                Step::RunStep => {
                    return self.ask(RunStep, steps, ctx, |act, answer| act.rollouts.step_started(answer));
                }
                Step::Replace(selector) => {
                    return self.ask(Replace(selector), steps, ctx, |act, answer| act.rollouts.replacing(answer));
                }
                Step::Switch { news, olds } => {
                    let answer = |act: &mut Self, answer| act.rollouts.switched(answer, Instant::now());
                    return self.ask(Switch { news, olds }, steps, ctx, answer);
                }
                Step::Busy(rollout) => self.scheduler.do_send(Busy(rollout)),
                Step::Abandon { news } => self.scheduler.do_send(Abandon(news)),
                Step::Commit => self.scheduler.do_send(Commit),
                Step::Discard => self.scheduler.do_send(Discard),
                Step::Tell { client, text } => self.tell(client, text),
                Step::Finish { client, ok, text } => self.finish(client, ok, text),
                Step::ArmCycle { slot, name, age } => self.arm_cycle(slot, name, age, ctx),
                Step::Tally { kind, ok } => *self.tallies.entry((kind, ok)).or_insert(0) += 1,
            }
        }
    }

    /// Sends `intent`, then carries out what the controller makes of the answer, then `rest`.
    fn ask<M>(
        &mut self,
        intent: M,
        rest: VecDeque<Step>,
        ctx: &mut Context<Self>,
        answer: impl FnOnce(&mut Self, M::Result) -> Vec<Step> + 'static,
    ) where
        M: Message + Send + 'static,
        M::Result: Send,
        Scheduler: Handler<M>,
    {
        let sent = self.scheduler.send(intent).into_actor(self);
        ctx.wait(sent.map(move |reply, act, ctx| {
            let Ok(reply) = reply else { return };
            let mut steps = answer(act, reply);
            steps.extend(rest);
            act.carry(steps, ctx);
        }));
    }

    /// A deploy's plan: its lines go to the client, then the controller hears whether it may go on.
    fn ask_plan(&mut self, client: ClientId, rest: VecDeque<Step>, ctx: &mut Context<Self>) {
        let source = self.clients.get(&client).and_then(|c| c.source.clone()).unwrap_or_default();
        self.ask(PlanDeploy { source, dry_run: false }, rest, ctx, move |act, reply| {
            let plan = match reply {
                Ok(PlanReply { lines, refused, has_step }) => {
                    lines.into_iter().for_each(|line| act.tell(Some(client), line));
                    refused.map_or(Ok(has_step), Err)
                }
                Err(why) => Err(why.to_string()),
            };
            act.rollouts.planned(plan)
        });
    }

    fn tell(&self, client: Option<ClientId>, text: String) {
        tracing::info!("{text}");
        if let Some(client) = client.and_then(|c| self.clients.get(&c)) {
            let _ = client.lines.send(text);
        }
    }

    fn finish(&mut self, client: Option<ClientId>, ok: bool, text: String) {
        match ok {
            true => tracing::info!("{text}"),
            false => tracing::warn!("{text}"),
        }
        if let Some(client) = client.and_then(|c| self.clients.remove(&c)) {
            let _ = client.lines.send(format!("{}: {text}", if ok { "ok" } else { "failed" }));
            if let Some(notifier) = self.notifier.as_ref().filter(|_| client.reload) {
                notifier.notify("READY=1");
            }
        }
    }

    /// Cycles the instance once its period and a random jitter have passed since it started,
    /// `age` ago.
    fn arm_cycle(&self, slot: SlotId, name: String, age: Duration, ctx: &mut Context<Self>) {
        let Some(cycling) = self.cycling else { return };
        let jitter = rand::thread_rng().gen_range(Duration::ZERO..=cycling.jitter);
        ctx.run_later((cycling.period + jitter).saturating_sub(age), move |act, ctx| {
            let steps = act.rollouts.request(Request::Cycle { slot, name });
            act.carry(steps, ctx);
        });
    }

    fn client(&mut self, lines: UnboundedSender<String>, source: Option<ReleaseSource>, reload: bool) -> ClientId {
        self.next_client = ClientId(self.next_client.0 + 1);
        self.clients.insert(self.next_client, Client { lines, source, reload });
        self.next_client
    }

    /// `deploy --dry-run`: the plan and whether it would go ahead; nothing changes.
    fn dry_run(&self, source: ReleaseSource, lines: UnboundedSender<String>) {
        let asked = self.scheduler.send(PlanDeploy { source, dry_run: true });
        actix::spawn(async move {
            let last = match asked.await {
                Ok(Ok(PlanReply { lines: plan, refused, .. })) => {
                    plan.into_iter().for_each(|line| drop(lines.send(line)));
                    refused.map_or("ok: dry run: nothing was changed".to_string(), |why| format!("failed: {why}"))
                }
                Ok(Err(why)) => format!("failed: {why}"),
                Err(_) => "failed: procgate is stopping".to_string(),
            };
            let _ = lines.send(last);
        });
    }
}

impl Actor for RolloutActor {
    type Context = Context<Self>;
}

impl Handler<Reported> for RolloutActor {
    type Result = ();

    fn handle(&mut self, Reported(report): Reported, ctx: &mut Context<Self>) {
        let steps = self.rollouts.report(report, Instant::now());
        self.carry(steps, ctx);
    }
}

/// `restart [TARGET]` or `deploy [--from DIR]`: progress lines go to `client`, the last one starts
/// with `ok:` or `failed:`. A dry run of a deploy answers its plan and changes nothing.
#[derive(Message)]
#[rtype(result = "()")]
pub enum Roll {
    Restart { target: Option<String>, client: UnboundedSender<String> },
    Deploy { source: ReleaseSource, dry_run: bool, client: UnboundedSender<String> },
}

impl Handler<Roll> for RolloutActor {
    type Result = ();

    fn handle(&mut self, roll: Roll, ctx: &mut Context<Self>) {
        let request = match roll {
            Roll::Restart { target, client } => Request::Restart { target, client: self.client(client, None, false) },
            Roll::Deploy { source, dry_run: true, client } => return self.dry_run(source, client),
            Roll::Deploy { source, dry_run: false, client } => {
                Request::Deploy { client: self.client(client, Some(source), false) }
            }
        };
        let steps = self.rollouts.request(request);
        self.carry(steps, ctx);
    }
}

/// SIGHUP: a deploy of the same root, as systemd's `ExecReload` expects (`RELOADING=1`, then
/// `READY=1` when it has ended, whatever the outcome: the running release serves either way).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reload;

impl Handler<Reload> for RolloutActor {
    type Result = ();

    fn handle(&mut self, _: Reload, ctx: &mut Context<Self>) {
        if let Some(notifier) = &self.notifier {
            notifier.reloading();
        }
        // Its lines are logged; no one reads them otherwise.
        let (lines, _) = tokio::sync::mpsc::unbounded_channel();
        let request = Request::Deploy { client: self.client(lines, Some(ReleaseSource::default()), true) };
        let steps = self.rollouts.request(request);
        self.carry(steps, ctx);
    }
}

/// How many rollouts ended, by kind (`restart`, `deploy`, `cycle`) and result (`ok`, `failed`).
#[derive(Message)]
#[rtype(result = "Vec<(&'static str, &'static str, u64)>")]
pub struct Tallies;

impl Handler<Tallies> for RolloutActor {
    type Result = Vec<(&'static str, &'static str, u64)>;

    fn handle(&mut self, _: Tallies, _ctx: &mut Context<Self>) -> Self::Result {
        let result = |ok: bool| if ok { "ok" } else { "failed" };
        self.tallies.iter().map(|((kind, ok), count)| (*kind, result(*ok), *count)).collect()
    }
}

/// The rollout under way (`restart of tcp`), if any.
#[derive(Message)]
#[rtype(result = "Option<String>")]
pub struct Underway;

impl Handler<Underway> for RolloutActor {
    type Result = Option<String>;

    fn handle(&mut self, _: Underway, _ctx: &mut Context<Self>) -> Option<String> {
        self.rollouts.underway()
    }
}
