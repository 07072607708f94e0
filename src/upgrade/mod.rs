//! Upgrading procgate itself without refusing a connection or restarting an app (issue 19).
//!
//! The [`actor`] carries out one upgrade at a time (`POST /upgrade`, SIGUSR2 through the
//! anchor): refused while a rollout runs; the new binary [`check`]ed first (it must speak the
//! keeper protocol of the keepers it would adopt and this handover protocol, else refused with
//! the reason and nothing changes); then the anchor starts it as a successor main process
//! ([`crate::anchor::Link::spawn`]) and the two talk over a handover socket ([`handover`]):
//! its hello, then the [`listeners`] (the same sockets, never closed), then the app's state, the
//! [`instances`] (the old main's Scheduler frozen meanwhile) and the log lines kept. The
//! successor checks them against its own release ([`takeover`]), adopts them
//! ([`crate::process::adopt`], [`crate::platform::lifecycle::Lifecycle::adopt`]), serves, and
//! answers ready; the old main then has the anchor promote it, stops accepting and drains. On
//! anything else the successor is abandoned (killed by the anchor) and the old main resumes.

pub mod actor;
pub mod check;
pub mod handover;
pub mod instances;
pub mod listeners;
pub mod takeover;

/// The version of the handover protocol between an old main process and its successor: the
/// state and the fds the old one sends, the `ready` the new one answers. A binary that speaks
/// another is refused.
pub const HANDOVER_VERSION: u32 = 1;
