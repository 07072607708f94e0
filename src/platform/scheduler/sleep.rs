//! Sleep when idle, wake on connect: the Scheduler's part. It looks at each type with
//! `sleep_after` now and then and puts an idle one to sleep (none of its instances starting, no
//! connection since one last joined routing): its instances retire as in a scale to 0. A wake,
//! asked by the data plane's first waiting client or by `procgate wake`, is a scale-up back to
//! the count it slept with, in the release in force (no release step). The decisions are in
//! `platform/sleep.rs`, the data plane's half in `gateway/wake.rs`.

use super::Scheduler;
use crate::gateway::route::Route;
use crate::platform::lifecycle::State;
use crate::platform::spec::TypeTemplate;
use actix::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

/// How often idle types are looked at: an eighth of the shortest `sleep_after`, within these
/// bounds; every [`NO_SLEEPER_CHECK`] when no type sleeps (a deploy may add `sleep_after`).
const FASTEST_CHECK: Duration = Duration::from_millis(100);
const SLOWEST_CHECK: Duration = Duration::from_secs(1);
const NO_SLEEPER_CHECK: Duration = Duration::from_secs(5);

/// `procgate wake TYPE`: its lines go to `client`, the last starts with `ok:` or `failed:`
/// (once the type's first instance is in routing, for a type asleep). `Err`: no such type.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct WakeUp {
    pub type_name: String,
    pub client: UnboundedSender<String>,
}

/// `1 instance`, `3 instances`.
fn instances(count: usize) -> String {
    match count {
        1 => "1 instance".to_string(),
        n => format!("{n} instances"),
    }
}

/// What `scale` says of a type asleep.
pub(super) fn scaled_asleep(type_name: &str, count: usize) -> String {
    match count {
        0 => format!("{type_name} was asleep; at 0 it no longer wakes on connect"),
        n => format!(
            "{type_name} is asleep: it wakes with {} (on its next client, or `procgate wake {type_name}` now)",
            instances(n)
        ),
    }
}

impl Scheduler {
    fn route(&self, type_name: &str) -> Option<&Arc<Route>> {
        self.config.routes.iter().find(|r| r.type_name == type_name)
    }

    /// Forwards the data plane's wake requests to this actor.
    pub(super) fn listen_for_wakes(&mut self, ctx: &mut Context<Self>) {
        let Some(mut wakes) = self.config.wakes.take() else { return };
        let me = ctx.address();
        actix::spawn(async move {
            while let Some(call) = wakes.recv().await {
                me.do_send(Woken(call));
            }
        });
    }

    /// Looks at the idle types again after a while, for ever.
    pub(super) fn arm_sleep_check(&self, ctx: &mut Context<Self>) {
        let shortest = self.config.running.templates.types.iter().filter_map(|t| t.sleep_after).min();
        let period = shortest.map_or(NO_SLEEPER_CHECK, |after| (after / 8).clamp(FASTEST_CHECK, SLOWEST_CHECK));
        ctx.run_later(period, |act, ctx| {
            act.check_sleep(ctx);
            act.arm_sleep_check(ctx);
        });
    }

    /// Puts to sleep each type with `sleep_after` whose route has had no open connection that
    /// long; never during a rollout (it would race the rollout's own plan) or a stop.
    fn check_sleep(&mut self, ctx: &mut Context<Self>) {
        if self.busy.is_some() || !self.lifecycle.is_running() || self.upgrading().is_some() {
            return;
        }
        let counts = self.counts();
        // A wake's instances have their boot timeout to come up before the type may sleep again,
        // and no type sleeps while an instance of it is starting: idle is counted from when a
        // client could connect (`joined`), not from a boot slower than `sleep_after`.
        let boot_timeout = self.config.timing.boot_timeout;
        let starting: std::collections::BTreeSet<&str> = self
            .current()
            .into_iter()
            .filter(|(id, _)| self.lifecycle.slot(*id).is_some_and(|slot| slot.state == State::Starting))
            .map(|(_, spec)| spec.template.type_name.as_str())
            .collect();
        let booting = |name: &str| {
            starting.contains(name) || self.sleepers.waking(name).is_some_and(|since| since.elapsed() < boot_timeout)
        };
        let due: Vec<(Arc<TypeTemplate>, Arc<Route>, usize, Duration)> = self
            .config
            .running
            .templates
            .types
            .iter()
            .filter(|template| !booting(&template.type_name))
            .filter_map(|template| {
                let after = template.sleep_after?;
                let count = counts.get(&template.type_name).copied().filter(|n| *n > 0)?;
                let route = self.route(&template.type_name)?.clone();
                Some((template.clone(), route, count, after))
            })
            .collect();
        for (template, route, count, after) in due {
            if route.fall_asleep(self.lifecycle.next_id().0, after) {
                self.put_to_sleep(&template, count, after, ctx);
            }
        }
    }

    /// The type's route takes no new client on these instances any more: they retire.
    fn put_to_sleep(&mut self, template: &TypeTemplate, count: usize, after: Duration, ctx: &mut Context<Self>) {
        let type_name = &template.type_name;
        self.sleepers.fell_asleep(type_name, count);
        // A `procgate wake` whose instances never came up: the type sleeps again.
        for waiter in self.wake_waiters.remove(type_name).unwrap_or_default() {
            let _ = waiter.send(format!("failed: {type_name} fell asleep again before an instance was up"));
        }
        let idle = crate::duration::format(after);
        tracing::info!(
            "205 Sleeping {type_name}: no connection for {idle}; stopping {} (its next client wakes it)",
            instances(count)
        );
        let retiring: Vec<_> =
            self.current().into_iter().filter(|(_, s)| s.template.type_name == *type_name).map(|(id, _)| id).collect();
        for id in retiring.into_iter().rev() {
            let effects = self.lifecycle.retire(id, "sleeping");
            self.apply(effects, ctx);
        }
        self.record_state();
    }

    /// Wakes `type_name` if it is asleep, `since` the moment its wake was first wanted: starts
    /// the count it slept with (a scale-up of the release in force). Answers the scale's lines,
    /// or `None` when it started nothing (not asleep, or procgate is stopping).
    fn wake(&mut self, type_name: &str, since: Instant, why: &str, ctx: &mut Context<Self>) -> Option<Vec<String>> {
        if let Some(busy) = self.upgrading() {
            tracing::warn!("not waking {type_name}: {busy}");
            return None;
        }
        let count = self.sleepers.wake(type_name, since)?;
        let Some(template) = self.config.running.templates.get(type_name).cloned() else {
            self.sleepers.retain(|name| name != type_name);
            return None;
        };
        if let Some(route) = self.route(type_name) {
            route.activity.restart_idle_clock();
        }
        tracing::info!("206 Waking {type_name}: {why}; starting {}", instances(count));
        match self.scale_type(&template, count, ctx) {
            Ok(lines) => {
                self.record_state();
                Some(lines)
            }
            Err(err) => {
                tracing::warn!("{type_name} cannot wake: {err}");
                self.sleepers.fell_asleep(type_name, count);
                None
            }
        }
    }

    /// An instance of `type_name` (`name`) joined routing: its type's idle time counts from now
    /// (a client could not connect before), and its wake ends, if waking.
    pub(super) fn joined(&mut self, type_name: &str, name: &str) {
        if let Some(route) = self.route(type_name) {
            route.activity.restart_idle_clock();
        }
        let Some(took) = self.sleepers.joined(type_name, Instant::now()) else { return };
        let ms = took.as_millis();
        tracing::info!("207 {type_name} woke after {ms} ms: {name} up");
        if let Some(route) = self.route(type_name) {
            route.stats.wakes.observe(took);
        }
        for waiter in self.wake_waiters.remove(type_name).unwrap_or_default() {
            let _ = waiter.send(format!("ok: {type_name} woke after {ms} ms ({name} up)"));
        }
    }

    /// `procgate wake TYPE`.
    fn wake_up(
        &mut self,
        type_name: &str,
        client: UnboundedSender<String>,
        ctx: &mut Context<Self>,
    ) -> Result<(), String> {
        if self.config.running.templates.get(type_name).is_none() {
            return Err(format!("the Procfile has no type `{type_name}`"));
        }
        if self.sleepers.asleep(type_name).is_some() {
            match self.wake(type_name, Instant::now(), "asked by procgate wake", ctx) {
                Some(lines) => lines.into_iter().for_each(|line| drop(client.send(line))),
                None => {
                    let _ = client.send(format!("failed: {type_name} cannot wake now (procgate is stopping)"));
                    return Ok(());
                }
            }
        } else if let Some(since) = self.sleepers.waking(type_name) {
            let _ = client.send(format!("{type_name} is waking since {} ms", since.elapsed().as_millis()));
        } else {
            let count = self.counts().get(type_name).copied().unwrap_or(0);
            let text = match count {
                0 => format!("ok: {type_name} is not asleep but at 0 (`procgate scale {type_name}=1` starts one)"),
                n => format!("ok: {type_name} is awake: {}", instances(n)),
            };
            let _ = client.send(text);
            return Ok(());
        }
        self.wake_waiters.entry(type_name.to_string()).or_default().push(client);
        Ok(())
    }

    /// A row per instance each sleeping type wakes with (`ps`): its type's index, its number.
    pub(super) fn sleeping_views(&self) -> impl Iterator<Item = (usize, usize, super::InstanceView)> + '_ {
        self.sleepers.sleeping().flat_map(move |(type_name, count)| {
            let template = self.config.running.templates.get(type_name);
            let type_index = template.map_or(usize::MAX, |t| t.type_index);
            (1..=count).map(move |number| {
                let view = super::InstanceView {
                    name: format!("{type_name}.{number}"),
                    type_name: type_name.to_string(),
                    state: "sleeping".to_string(),
                    pid: None,
                    port: None,
                    uptime: None,
                    restarts: 0,
                    restart_in: None,
                    connections: Some(0),
                    served: None,
                };
                (type_index, number, view)
            })
        })
    }
}

/// A wake the data plane asked for.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Woken(pub crate::gateway::wake::WakeCall);

impl Handler<Woken> for Scheduler {
    type Result = ();

    fn handle(&mut self, Woken(call): Woken, ctx: &mut Context<Self>) {
        let since = Instant::from_std(call.at);
        let _ = self.wake(&call.type_name, since, "a client is waiting", ctx);
    }
}

impl Handler<WakeUp> for Scheduler {
    type Result = Result<(), String>;

    fn handle(&mut self, WakeUp { type_name, client }: WakeUp, ctx: &mut Context<Self>) -> Self::Result {
        self.wake_up(&type_name, client, ctx)
    }
}
