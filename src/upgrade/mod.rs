//! Upgrading procgate itself without refusing a connection or restarting an app (issue 19).
//!
//! The running main process checks the new binary first ([`check`]): it must speak the keeper
//! protocol of the keepers it would adopt and this handover protocol; otherwise the upgrade is
//! refused with the reason and nothing changes. Then the anchor starts the new main process and
//! the two talk over a handover socket ([`handover`]); the listeners and the instances are to
//! cross it ([`crate::fdpass`]).

pub mod actor;
pub mod check;
pub mod handover;
pub mod instances;
pub mod listeners;

/// The version of the handover protocol between an old main process and its successor: the
/// state and the fds the old one sends, the `ready` the new one answers. A binary that speaks
/// another is refused.
pub const HANDOVER_VERSION: u32 = 1;
