//! The Scheduler's part of an upgrade (issue 19). In the old main: [`Freeze`] stops acting on
//! anything (events queue, requests are refused) and answers the app's state and every running
//! instance with copies of its fds; then [`Thaw`] (the successor failed: everything resumes, the
//! queued events first) or [`LetGo`] (the successor took over: the monitors end quietly, the
//! gateway's connections drain until they end or their instances are cycled, then the process exits). In
//! the successor: the handed-over instances are adopted instead of spawned ([`Adoptee`]), and
//! [`Promoted`] tells the service manager it is ready once the anchor listens to it.

use super::{incarnation, Scheduler};
use crate::app_state::AppState;
use crate::platform::handed::{Crossing, Instance};
use crate::platform::intents::SlotId;
use crate::platform::lifecycle::{Event, State};
use crate::process::{self, Controller, Handed};
use actix::prelude::*;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// Where the Scheduler is in an upgrade.
#[derive(Default)]
pub enum Handing {
    /// None under way.
    #[default]
    No,
    /// Frozen for a handover: the events that came meanwhile, in order.
    Frozen(Vec<Event>),
    /// The successor has the instances: this Scheduler acts no more.
    Gone,
}

/// Stop acting and answer what the successor needs; refused (why) unless every instance is up,
/// crashed or stopped, and no rollout, wake or stop is under way.
#[derive(Message)]
#[rtype(result = "Result<Frozen, String>")]
pub struct Freeze;

/// The app's state and its running instances, with copies of their fds.
pub struct Frozen {
    pub state: AppState,
    pub instances: Vec<Crossing<OwnedFd>>,
}

/// The handover failed: resume as if nothing happened.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Thaw;

/// The successor took over (the anchor promoted it): let the instances go, drain the gateway's
/// connections until they end (at most `drain`), then exit. A stop that came meanwhile is passed on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LetGo {
    /// The longest it relays its connections (until their instances are cycled).
    pub drain: Duration,
}

/// The successor's word that the anchor made it the current main.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Promoted;

/// A handed-over instance for the successor's Scheduler to adopt.
pub struct Adoptee {
    pub instance: Instance,
    pub handed: Handed,
}

/// How often a draining old main looks at its open connections.
const DRAIN_CHECK: Duration = Duration::from_millis(100);

impl Scheduler {
    /// Queues `event` while frozen, drops it once handed over; `None`: handle it.
    pub(super) fn held_back(&mut self, event: Event) -> Option<Event> {
        match &mut self.handing {
            Handing::No => Some(event),
            Handing::Frozen(queued) => {
                queued.push(event);
                None
            }
            Handing::Gone => None,
        }
    }

    /// Why requests that change the formation are refused now, if they are.
    pub(super) fn upgrading(&self) -> Option<String> {
        match self.handing {
            Handing::No => None,
            Handing::Frozen(_) => Some("an upgrade of procgate is under way; try again in a moment".to_string()),
            Handing::Gone => Some("this procgate has handed over to its successor".to_string()),
        }
    }

    /// Why the instances cannot be handed over now, if they cannot.
    fn unsettled(&self) -> Option<String> {
        if let Some(why) = self.upgrading() {
            return Some(why);
        }
        if let Some(rollout) = &self.busy {
            return Some(format!("a {rollout} is under way"));
        }
        if self.pending.is_some() {
            return Some("a deploy is under way".to_string());
        }
        if !self.lifecycle.is_running() {
            return Some("procgate is starting or stopping".to_string());
        }
        if let Some(name) = self.sleepers.any_waking() {
            return Some(format!("{name} is waking"));
        }
        let moving = self.lifecycle.slots().find(|(id, slot)| {
            matches!(slot.state, State::Starting | State::Draining)
                || slot.held
                || slot.retiring && slot.state != State::Stopped
                || (slot.state == State::Up && !self.controllers.contains_key(id))
        });
        moving.map(|(_, slot)| format!("{} is {}", slot.name, slot.shown_state()))
    }

    /// The record of running slot `id`, for the successor.
    fn record(&self, id: SlotId, now: Instant) -> Option<Instance> {
        let (slot, spec) = (self.lifecycle.slot(id)?, self.specs.get(&id)?);
        let counters = self.counters.get(&id).filter(|c| c.id == incarnation(id, slot.generation));
        Some(Instance {
            name: slot.name.clone(),
            type_name: spec.template.type_name.clone(),
            number: spec.number,
            port: spec.port,
            generation: slot.generation,
            pid: slot.pid?,
            restarts: slot.restarts,
            running_for_ms: slot.started_at.map_or(0, |t| (now - t).as_millis() as u64),
            in_routing: slot.in_routing,
            served: counters.map_or(0, |c| c.total.load(Ordering::Relaxed)),
            command: spec.template.command.clone(),
            env: spec.env(),
            unread: Vec::new(),
        })
    }

    /// Resumes after a failed handover: the queued events are handled in order.
    fn thaw(&mut self, ctx: &mut Context<Self>) {
        for controller in self.controllers.values() {
            controller.thaw();
        }
        if let Handing::Frozen(queued) = std::mem::take(&mut self.handing) {
            for event in queued {
                self.handle_event(event, ctx);
            }
        }
    }

    /// The successor's part: adopts the handed-over instances into their slots (filed by type
    /// and number), then starts the formation's other instances.
    pub(super) fn adopt_all(&mut self, adoptees: Vec<Adoptee>, ctx: &mut Context<Self>) {
        let now = Instant::now();
        for Adoptee { instance, handed } in adoptees {
            let found = self.specs.iter().find(|(_, s)| {
                s.template.type_name == instance.type_name && s.number == instance.number && s.port == instance.port
            });
            let Some((&id, spec)) = found else {
                tracing::error!("{} was handed over but has no slot here; its keeper is let go", instance.name);
                continue;
            };
            let prefix = self.prefix(spec);
            let on_event = self.on_process_event(id, instance.generation, ctx);
            match process::adopt(handed, prefix, on_event) {
                Ok((controller, monitor)) => {
                    self.config.descriptors.instance_started();
                    self.controllers.insert(id, controller);
                    actix::spawn(monitor);
                }
                Err(err) => {
                    tracing::error!("cannot monitor {} handed over: {err}", instance.name);
                    continue;
                }
            }
            let effects = self.lifecycle.adopt(id, instance.adopted(), now);
            self.apply(effects, ctx);
            if let Some(counters) = self.counters.get(&id) {
                counters.total.store(instance.served, Ordering::Relaxed);
            }
        }
        let effects = self.lifecycle.start_unstarted(now);
        self.apply(effects, ctx);
    }
}

impl Handler<Freeze> for Scheduler {
    type Result = ResponseActFuture<Self, Result<Frozen, String>>;

    fn handle(&mut self, _: Freeze, _ctx: &mut Context<Self>) -> Self::Result {
        if let Some(why) = self.unsettled() {
            return Box::pin(actix::fut::ready(Err(why)));
        }
        self.handing = Handing::Frozen(Vec::new());
        let now = Instant::now();
        let running: Vec<(Instance, Controller)> = self
            .lifecycle
            .slots()
            .filter(|(id, slot)| slot.state == State::Up && self.lifecycle.is_current(*id))
            .filter_map(|(id, _)| Some((self.record(id, now)?, self.controllers.get(&id)?.clone())))
            .collect();
        let state = self.app_state();
        let freezing = async move {
            let mut frozen = Vec::with_capacity(running.len());
            for (instance, controller) in running {
                let copies = controller.freeze().await;
                frozen.push((instance, copies));
            }
            frozen
        };
        Box::pin(freezing.into_actor(self).map(move |frozen, act, ctx| {
            let mut instances = Vec::with_capacity(frozen.len());
            for (mut instance, copies) in frozen {
                let Some(process::Frozen { control, stdout, stderr, unread }) = copies else {
                    act.thaw(ctx);
                    return Err(format!("{} is ending", instance.name));
                };
                instance.unread = unread;
                instances.push(Crossing { instance, control, stdout, stderr });
            }
            Ok(Frozen { state, instances })
        }))
    }
}

impl Handler<Thaw> for Scheduler {
    type Result = ();

    fn handle(&mut self, _: Thaw, ctx: &mut Context<Self>) {
        if matches!(self.handing, Handing::Frozen(_)) {
            self.thaw(ctx);
        }
    }
}

impl Handler<LetGo> for Scheduler {
    type Result = ();

    fn handle(&mut self, LetGo { drain }: LetGo, _ctx: &mut Context<Self>) {
        if let Handing::Frozen(queued) = std::mem::replace(&mut self.handing, Handing::Gone) {
            pass_stop_on(&queued);
        }
        for (_, controller) in self.controllers.drain() {
            controller.let_go();
        }
        let routes = self.config.routes.clone();
        let exit = self.exit.take();
        actix::spawn(async move {
            let open = || routes.iter().map(|r| r.activity.open()).sum::<usize>();
            let deadline = Instant::now() + drain;
            let started = open();
            tracing::info!(
                "handed over: relaying {started} open connection(s) until they end (at most {})",
                crate::duration::format(drain)
            );
            while open() > 0 && Instant::now() < deadline {
                tokio::time::sleep(DRAIN_CHECK).await;
            }
            match open() {
                0 => tracing::info!("handed over: every connection ended; this old main process exits"),
                left => {
                    tracing::info!(
                        "handed over: {} over, closing {left} connection(s); this old main process exits",
                        crate::duration::format(drain)
                    )
                }
            }
            if let Some(exit) = exit {
                let _ = exit.send(0);
            }
        });
    }
}

/// A stop that reached this main process during the handover is the successor's to carry out:
/// it is sent again to the anchor, which passes it on to its current main process (the
/// successor was promoted before this one let go).
fn pass_stop_on(queued: &[Event]) {
    if queued.iter().any(|e| matches!(e, Event::StopRequested | Event::StopAsked)) {
        tracing::info!("a stop came during the handover: passing it on to the new main process");
        if let Err(err) = nix::sys::signal::kill(nix::unistd::getppid(), nix::sys::signal::Signal::SIGTERM) {
            tracing::error!("cannot pass the stop on to the anchor: {err}; stop procgate again");
        }
    }
}

impl Handler<Promoted> for Scheduler {
    type Result = ();

    fn handle(&mut self, _: Promoted, _ctx: &mut Context<Self>) {
        // What it told before went nowhere: the anchor listens to the current main only.
        self.told = None;
        self.tell_manager();
    }
}
