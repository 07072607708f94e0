//! The orphans procgate adopts, reaped without touching the children it waits for itself.
//!
//! As a container's entrypoint procgate is PID 1 of its PID namespace, and every process
//! orphaned in the namespace becomes its child: the app of a keeper that died (the OOM killer),
//! a descendant that escaped that keeper's process group, what a `docker exec` left running in
//! the background. Orphans inside an instance go to its keeper, a subreaper that reaps them; these
//! ones have no one else, so each would stay a zombie, holding a pid, until the container stops.
//! The same goes for a procgate started as a child subreaper (the attribute survives `exec`).
//!
//! The reaper never reaps a child procgate waits for (a keeper, whose status tokio collects by
//! pid, and then every `waitpid(-1)` would be a race): keepers are spawned through
//! [`spawn_owned`], which notes the pid under the lock the reaper holds while it reaps, so even a
//! keeper that exits at once is noted before the reaper can see it. On each SIGCHLD (and once at
//! start, for what an earlier program of the same pid left) the reaper lists procgate's children
//! in `/proc` (the namespace's own `/proc`, as container runtimes mount it) and reaps, by pid, the
//! exited ones it does not own.

use super::procfs;
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The pids of the children procgate waits for itself (its keepers).
static OWNED: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Why orphans are given to this process, if they are: PID 1 of its namespace, or a child
/// subreaper.
pub fn adopts_orphans() -> Option<&'static str> {
    match std::process::id() == 1 {
        true => Some("PID 1 of its PID namespace (a container's entrypoint)"),
        false => nix::sys::prctl::get_child_subreaper().ok()?.then_some("a child subreaper"),
    }
}

/// When procgate adopts orphans, reaps them from now on, on a thread of its own; returns why it
/// adopts them (see [`adopts_orphans`]). Call it before anything is spawned.
pub fn start() -> std::io::Result<Option<&'static str>> {
    let Some(why) = adopts_orphans() else { return Ok(None) };
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGCHLD])?;
    std::thread::Builder::new().name("reaper".into()).spawn(move || {
        sweep();
        for _ in signals.forever() {
            sweep();
        }
    })?;
    Ok(Some(why))
}

/// A child procgate waits for itself: the reaper leaves it alone until this is dropped (once
/// its status has been collected, or nobody wants it any more).
#[derive(Debug)]
pub struct Owned(i32);

impl Drop for Owned {
    fn drop(&mut self) {
        owned().remove(&self.0);
    }
}

/// Spawns `command`, noting its pid as owned before the reaper can see the child exit.
pub fn spawn_owned(command: &mut tokio::process::Command) -> std::io::Result<(tokio::process::Child, Owned)> {
    let mut pids = owned();
    let child = command.spawn()?;
    let pid = child.id().map_or(0, |pid| pid as i32);
    pids.insert(pid);
    Ok((child, Owned(pid)))
}

fn owned() -> MutexGuard<'static, BTreeSet<i32>> {
    OWNED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reaps every exited child procgate does not own.
fn sweep() {
    let me = std::process::id() as i32;
    let owned = owned();
    // Only this thread reaps the children procgate does not own: a zombie seen here keeps its
    // pid until then.
    for orphan in procfs::processes().into_iter().filter(|p| p.ppid == me && p.zombie && !owned.contains(&p.pid)) {
        let _ = waitpid(Pid::from_raw(orphan.pid), Some(WaitPidFlag::WNOHANG));
    }
}
