//! systemd's readiness protocol (`sd_notify`) without a C library: datagrams of `KEY=VALUE`
//! lines to the socket named by `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace),
//! and the watchdog period from `WATCHDOG_USEC`. Without them (not under systemd) nothing is sent.
//! procgate's main process sends through its anchor (`anchor.rs`), the pid the manager knows.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// What the service manager sets for procgate that the apps must not inherit: an app that
/// wrote `READY=1` or `WATCHDOG=1` to procgate's socket would speak for procgate.
pub const MANAGER_VARS: [&str; 6] =
    ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"];

/// The service manager's notification socket, or a relay to it.
pub enum Notifier {
    Socket {
        socket: UnixDatagram,
        to: SocketAddr,
    },
    /// Another process sends each message: the manager listens to it only.
    Relay(Box<dyn Fn(&str)>),
}

impl Notifier {
    /// The socket `NOTIFY_SOCKET` names, if it is set and usable.
    pub fn from_env() -> Option<Notifier> {
        let name = std::env::var("NOTIFY_SOCKET").ok()?;
        let to = match name.strip_prefix('@') {
            Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes()).ok()?,
            None => SocketAddr::from_pathname(&name).ok()?,
        };
        Some(Notifier::Socket { socket: UnixDatagram::unbound().ok()?, to })
    }

    /// `relay` sends the messages, if `NOTIFY_SOCKET` is set (its process has the same one).
    pub fn relayed(relay: impl Fn(&str) + 'static) -> Option<Notifier> {
        std::env::var_os("NOTIFY_SOCKET").map(|_| Notifier::Relay(Box::new(relay)))
    }

    /// Sends `state` (`READY=1`, `STATUS=...`); a manager that went away is not an error.
    pub fn notify(&self, state: &str) {
        match self {
            Notifier::Socket { socket, to } => {
                if let Err(err) = socket.send_to_addr(state.as_bytes(), to) {
                    tracing::debug!("sd_notify {state:?}: {err}");
                }
            }
            Notifier::Relay(relay) => relay(state),
        }
    }

    /// `RELOADING=1`, with the monotonic time systemd asks to come with it.
    pub fn reloading(&self) {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map(Duration::from).unwrap_or_default();
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", now.as_micros()));
    }
}

/// How often to send `WATCHDOG=1`: half the period the manager set, if it set one for procgate.
pub fn watchdog_period() -> Option<Duration> {
    let for_us = std::env::var("WATCHDOG_PID").ok().is_none_or(|pid| pid == std::process::id().to_string());
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (for_us && usec > 0).then(|| Duration::from_micros(usec / 2))
}
