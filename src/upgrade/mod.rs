//! Upgrading procgate itself without refusing a connection or restarting an app (issue 19).
//!
//! The running main process checks the new binary first ([`check`]): it must speak the keeper
//! protocol of the keepers it would adopt and this handover protocol; otherwise the upgrade is
//! refused with the reason and nothing changes. The handover itself (the anchor starting the new
//! main, the listeners and the instances crossing over [`crate::fdpass`]) builds on that.

pub mod check;

/// The version of the handover protocol between an old main process and its successor: the
/// state and the fds the old one sends, the `ready` the new one answers. A binary that speaks
/// another is refused.
pub const HANDOVER_VERSION: u32 = 1;
