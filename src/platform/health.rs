//! The HealthChecker actor: probes each routed instance with a TCP handshake on its port and
//! tells the Scheduler when it becomes healthy or unhealthy (consecutive rise/fall thresholds).
//!
//! A booting instance is probed every [`BOOT_INTERVAL`] so it joins routing as soon as it
//! accepts; once up, every `interval`. A connect failure seen by the gateway (passive check)
//! counts as one failed probe and triggers an immediate probe to confirm it.

use super::balancer::{Balancer, Restore};
use crate::gateway::route::InstanceId;
use crate::http_check::{probe, HttpCheck};
use crate::proxy_version::ProxyVersion;
use actix::prelude::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;

/// Probe period while an instance has never been healthy (HAProxy's `fastinter` idea).
pub const BOOT_INTERVAL: Duration = Duration::from_millis(100);

/// The same while it boots for a wake from sleep: clients are held until it joins routing, and
/// a refused handshake on loopback costs a few microseconds.
pub const WAKE_BOOT_INTERVAL: Duration = Duration::from_millis(10);

/// How a type is probed (defaults as HAProxy's: every 2 s, 1 s timeout; rise 1, fall 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSettings {
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// An HTTP check (web types) instead of a TCP handshake.
    pub http: Option<HttpCheck>,
    /// The type's instances expect a PROXY header: the handshake sends a `LOCAL` one.
    pub proxy: Option<ProxyVersion>,
    /// Restart an instance failing its checks this long (opt-in liveness; `None`: never).
    pub restart_unhealthy_after: Option<Duration>,
    /// The probe period until it is first healthy ([`BOOT_INTERVAL`]; [`WAKE_BOOT_INTERVAL`]
    /// for an instance a wake started).
    pub boot_interval: Duration,
}

impl ProbeSettings {
    /// A type's probe from its `procgate.toml` settings: an HTTP check when `http` (web), else a
    /// TCP handshake, with a `LOCAL` PROXY header when its instances expect one.
    pub fn for_type(settings: &crate::settings::TypeSettings, http: bool) -> ProbeSettings {
        let defaults = ProbeSettings::default();
        let check = HttpCheck::default();
        ProbeSettings {
            interval: settings.health_interval.unwrap_or(defaults.interval),
            timeout: settings.health_timeout.unwrap_or(defaults.timeout),
            rise: settings.rise.unwrap_or(defaults.rise),
            fall: settings.fall.unwrap_or(defaults.fall),
            http: http.then(|| HttpCheck {
                path: settings.health_path.clone().unwrap_or(check.path),
                statuses: settings.health_status.clone().unwrap_or(check.statuses),
            }),
            proxy: settings.proxy_version(),
            restart_unhealthy_after: settings.restart_unhealthy_after,
            boot_interval: defaults.boot_interval,
        }
    }
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 1,
            fall: 2,
            http: None,
            proxy: None,
            restart_unhealthy_after: None,
            boot_interval: BOOT_INTERVAL,
        }
    }
}

/// A change of health worth telling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Up,
    Down,
}

/// Consecutive-result hysteresis for one instance.
#[derive(Debug, Clone, Default)]
pub struct Hysteresis {
    healthy: bool,
    ever_healthy: bool,
    successes: u32,
    failures: u32,
}

impl Hysteresis {
    /// Records a probe result; returns the change it causes, if any.
    pub fn record(&mut self, ok: bool, settings: &ProbeSettings) -> Option<Change> {
        if ok {
            self.failures = 0;
            self.successes += 1;
            if !self.healthy && self.successes >= settings.rise.max(1) {
                self.healthy = true;
                self.ever_healthy = true;
                return Some(Change::Up);
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.healthy && self.failures >= settings.fall.max(1) {
                self.healthy = false;
                return Some(Change::Down);
            }
        }
        None
    }

    /// How long until the next probe.
    pub fn next_probe(&self, settings: &ProbeSettings) -> Duration {
        if self.ever_healthy {
            settings.interval
        } else {
            settings.boot_interval
        }
    }
}

struct Target {
    name: String,
    addr: SocketAddr,
    settings: ProbeSettings,
    health: Hysteresis,
    in_flight: bool,
    /// The gateway saw a connect fail and marked it down; a good probe restores it.
    passive_down: bool,
}

pub struct HealthChecker {
    targets: HashMap<InstanceId, Target>,
    scheduler: Recipient<HealthChanged>,
    balancer: Addr<Balancer>,
    /// Connect failures reported by the data plane; taken when the actor starts.
    failures: Option<mpsc::UnboundedReceiver<InstanceId>>,
}

impl HealthChecker {
    pub fn new(
        scheduler: Recipient<HealthChanged>,
        balancer: Addr<Balancer>,
        failures: mpsc::UnboundedReceiver<InstanceId>,
    ) -> HealthChecker {
        HealthChecker { targets: HashMap::new(), scheduler, balancer, failures: Some(failures) }
    }

    fn probe(&mut self, id: InstanceId, ctx: &mut Context<Self>) {
        let Some(target) = self.targets.get_mut(&id) else { return };
        if target.in_flight {
            return;
        }
        target.in_flight = true;
        let settings = &target.settings;
        let (addr, timeout, http, proxy) = (target.addr, settings.timeout, settings.http.clone(), settings.proxy);
        let check = async move { probe(addr, http.as_ref(), proxy, timeout).await };
        ctx.spawn(check.into_actor(self).map(move |ok, act, ctx| act.probed(id, ok, ctx)));
    }

    fn probed(&mut self, id: InstanceId, ok: bool, ctx: &mut Context<Self>) {
        let Some(target) = self.targets.get_mut(&id) else { return };
        target.in_flight = false;
        let change = target.health.record(ok, &target.settings);
        if ok && target.passive_down {
            target.passive_down = false;
            self.balancer.do_send(Restore(id));
        }
        match change {
            Some(Change::Up) => self.scheduler.do_send(HealthChanged { id, healthy: true }),
            Some(Change::Down) => {
                let what = target
                    .settings
                    .http
                    .as_ref()
                    .map_or("health checks".into(), |h| format!("HTTP checks (GET {})", h.path));
                tracing::warn!("{} failed {} {what} in a row on {}", target.name, target.settings.fall, target.addr);
                self.scheduler.do_send(HealthChanged { id, healthy: false });
            }
            None => {}
        }
        let next = target.health.next_probe(&target.settings);
        ctx.run_later(next, move |act, ctx| act.probe(id, ctx));
    }
}

impl Actor for HealthChecker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(mut failures) = self.failures.take() else { return };
        let me = ctx.address();
        actix::spawn(async move {
            while let Some(id) = failures.recv().await {
                me.do_send(PassiveFailure(id));
            }
        });
    }
}

/// Start probing an instance.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Watch {
    pub id: InstanceId,
    pub name: String,
    pub addr: SocketAddr,
    pub settings: ProbeSettings,
}

/// Stop probing an instance (it is stopping or gone).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unwatch(pub InstanceId);

/// What the HealthChecker tells the Scheduler: an instance turned healthy or unhealthy.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HealthChanged {
    pub id: InstanceId,
    pub healthy: bool,
}

/// The gateway could not connect to an instance.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PassiveFailure(pub InstanceId);

impl Handler<Watch> for HealthChecker {
    type Result = ();

    fn handle(&mut self, watch: Watch, ctx: &mut Context<Self>) {
        let target = Target {
            name: watch.name,
            addr: watch.addr,
            settings: watch.settings,
            health: Hysteresis::default(),
            in_flight: false,
            passive_down: false,
        };
        self.targets.insert(watch.id, target);
        self.probe(watch.id, ctx);
    }
}

impl Handler<Unwatch> for HealthChecker {
    type Result = ();

    fn handle(&mut self, Unwatch(id): Unwatch, _ctx: &mut Context<Self>) {
        self.targets.remove(&id);
    }
}

impl Handler<PassiveFailure> for HealthChecker {
    type Result = ();

    fn handle(&mut self, PassiveFailure(id): PassiveFailure, ctx: &mut Context<Self>) {
        let Some(target) = self.targets.get_mut(&id) else { return };
        target.passive_down = true;
        if target.health.record(false, &target.settings) == Some(Change::Down) {
            self.scheduler.do_send(HealthChanged { id, healthy: false });
        }
        self.probe(id, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_success_at_boot_joins_and_two_failures_leave() {
        let settings = ProbeSettings::default();
        let mut health = Hysteresis::default();
        assert_eq!(health.record(false, &settings), None);
        assert_eq!(health.next_probe(&settings), BOOT_INTERVAL);
        assert_eq!(health.record(true, &settings), Some(Change::Up));
        assert_eq!(health.next_probe(&settings), settings.interval);
        assert_eq!(health.record(false, &settings), None);
        assert_eq!(health.record(true, &settings), None, "one failure then a success stays up");
        assert_eq!(health.record(false, &settings), None);
        assert_eq!(health.record(false, &settings), Some(Change::Down));
        assert_eq!(health.record(false, &settings), None);
        assert_eq!(health.record(true, &settings), Some(Change::Up));
    }

    #[test]
    fn rise_counts_consecutive_successes() {
        let settings = ProbeSettings { rise: 3, ..ProbeSettings::default() };
        let mut health = Hysteresis::default();
        assert_eq!(health.record(true, &settings), None);
        assert_eq!(health.record(true, &settings), None);
        assert_eq!(health.record(false, &settings), None);
        assert_eq!(health.record(true, &settings), None);
        assert_eq!(health.record(true, &settings), None);
        assert_eq!(health.record(true, &settings), Some(Change::Up));
    }
}
