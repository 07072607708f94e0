//! procgate's own signals: SIGINT, SIGTERM and SIGHUP start a graceful stop; a second one skips
//! the grace. Registered before anything is spawned so no signal is lost.

use crate::platform::lifecycle::Event;
use crate::platform::scheduler::{Notify, Scheduler};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Catches the stop signals now; call [`StopSignals::forward_to`] once the Scheduler runs.
pub struct StopSignals(Signals);

impl StopSignals {
    pub fn register() -> std::io::Result<StopSignals> {
        Signals::new([SIGINT, SIGTERM, SIGHUP]).map(StopSignals)
    }

    /// Turns each signal into a stop request for the Scheduler, on a thread of its own.
    pub fn forward_to(self, scheduler: actix::Addr<Scheduler>) {
        let StopSignals(mut signals) = self;
        std::thread::spawn(move || {
            for (count, number) in signals.forever().enumerate() {
                let name = nix::sys::signal::Signal::try_from(number).map_or("signal", |s| s.as_str());
                match count {
                    0 => tracing::info!("{name} received, starting shutdown"),
                    _ => tracing::warn!("{name} received again, skipping the grace"),
                }
                scheduler.do_send(Notify(Event::StopRequested));
            }
        });
    }
}
