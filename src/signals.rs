//! procgate's own signals: SIGINT and SIGTERM start a graceful stop (a second one skips the
//! grace); SIGHUP reloads, a `deploy` of the same root as systemd's `ExecReload` expects; SIGUSR2
//! upgrades to the binary procgate was started from (`procgate upgrade`).
//! Registered before anything is spawned so no signal is lost.
//!
//! They come to the main process from its anchor (`anchor.rs`: the signals sent to the pid the
//! world knows), and also straight when sent to the main process itself. One signal often takes
//! both ways (a terminal's Ctrl-C reaches the whole foreground group, systemd may signal the
//! whole cgroup), so the same order from the other way within [`SAME_ORDER`] counts once.

use crate::anchor::{self, Link};
use crate::platform::lifecycle::Event;
use crate::platform::rollout_actor::{Reload, RolloutActor};
use crate::platform::scheduler::{Notify, Scheduler};
use crate::upgrade::actor::{Upgrade, UpgradeActor};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR2};
use signal_hook::iterator::Signals;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// An order that came one way is the same order when it comes the other way this soon after.
const SAME_ORDER: Duration = Duration::from_secs(1);

/// Which way an order came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Signal,
    Anchor,
}

/// What procgate is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Order {
    /// Stop, after the named signal.
    Stop(String),
    Reload,
    Upgrade,
}

/// Catches the signals now; call [`StopSignals::forward_to`] once the actors run.
pub struct StopSignals {
    signals: Signals,
    anchor: Option<Link>,
}

impl StopSignals {
    pub fn register(anchor: Option<Link>) -> std::io::Result<StopSignals> {
        Ok(StopSignals { signals: Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR2])?, anchor })
    }

    /// Turns each stop order into a stop request for the Scheduler, each reload into a reload
    /// for the Rollout actor and each upgrade into one for the Upgrade actor, on threads of their own.
    pub fn forward_to(
        self,
        scheduler: actix::Addr<Scheduler>,
        rollouts: actix::Addr<RolloutActor>,
        upgrades: actix::Addr<UpgradeActor>,
    ) {
        let StopSignals { mut signals, anchor } = self;
        let (orders, received) = mpsc::channel();
        if let Some(link) = anchor {
            let orders = orders.clone();
            link.read_orders(move |line| {
                let order = match line.split_once(' ') {
                    Some((anchor::STOP, name)) => Order::Stop(name.to_string()),
                    _ if line == anchor::RELOAD => Order::Reload,
                    _ if line == anchor::UPGRADE => Order::Upgrade,
                    _ => return,
                };
                let _ = orders.send((Way::Anchor, order));
            });
        }
        std::thread::spawn(move || {
            for number in signals.forever() {
                let order = match number {
                    SIGHUP => Order::Reload,
                    SIGUSR2 => Order::Upgrade,
                    number => Order::Stop(
                        nix::sys::signal::Signal::try_from(number).map_or("signal", |s| s.as_str()).to_string(),
                    ),
                };
                if orders.send((Way::Signal, order)).is_err() {
                    return;
                }
            }
        });
        std::thread::spawn(move || {
            let mut stops = 0;
            // The last order carried out, and whether its copy from the other way came already.
            let mut last: Option<(Way, Order, Instant, bool)> = None;
            for (way, order) in received {
                let now = Instant::now();
                if let Some((w, o, at, paired)) = last.as_mut() {
                    let kind = std::mem::discriminant(&order);
                    if !*paired && *w != way && std::mem::discriminant(o) == kind && now - *at < SAME_ORDER {
                        *paired = true;
                        continue;
                    }
                }
                last = Some((way, order.clone(), now, false));
                match order {
                    Order::Reload => {
                        tracing::info!("SIGHUP received, reloading: a deploy of the same root");
                        rollouts.do_send(Reload);
                    }
                    Order::Upgrade => {
                        tracing::info!("SIGUSR2 received, upgrading to the binary procgate was started from");
                        upgrades.do_send(Upgrade { binary: None });
                    }
                    Order::Stop(name) => {
                        match stops {
                            0 => tracing::info!("{name} received, starting shutdown"),
                            _ => tracing::warn!("{name} received again, skipping the grace"),
                        }
                        stops += 1;
                        scheduler.do_send(Notify(Event::StopRequested));
                    }
                }
            }
        });
    }
}
