//! procgate's own signals: SIGINT and SIGTERM start a graceful stop (a second one skips the
//! grace); SIGHUP reloads, a `deploy` of the same root as systemd's `ExecReload` expects.
//! Registered before anything is spawned so no signal is lost.

use crate::platform::lifecycle::Event;
use crate::platform::rollout_actor::{Reload, RolloutActor};
use crate::platform::scheduler::{Notify, Scheduler};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Catches the signals now; call [`StopSignals::forward_to`] once the actors run.
pub struct StopSignals(Signals);

impl StopSignals {
    pub fn register() -> std::io::Result<StopSignals> {
        Signals::new([SIGINT, SIGTERM, SIGHUP]).map(StopSignals)
    }

    /// Turns each stop signal into a stop request for the Scheduler, and SIGHUP into a reload
    /// for the Rollout actor, on a thread of its own.
    pub fn forward_to(self, scheduler: actix::Addr<Scheduler>, rollouts: actix::Addr<RolloutActor>) {
        let StopSignals(mut signals) = self;
        std::thread::spawn(move || {
            let mut stops = 0;
            for number in signals.forever() {
                if number == SIGHUP {
                    tracing::info!("SIGHUP received, reloading: a deploy of the same root");
                    rollouts.do_send(Reload);
                    continue;
                }
                let name = nix::sys::signal::Signal::try_from(number).map_or("signal", |s| s.as_str());
                match stops {
                    0 => tracing::info!("{name} received, starting shutdown"),
                    _ => tracing::warn!("{name} received again, skipping the grace"),
                }
                stops += 1;
                scheduler.do_send(Notify(Event::StopRequested));
            }
        });
    }
}
