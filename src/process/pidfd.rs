//! Pidfds: a signal reaches the process the pidfd was opened for or none, never a reuser of its pid.
//!
//! A pid names a process only until its parent reaps it; the number is then free for the next
//! process. A pidfd keeps naming the process it was opened for: once that one is reaped, sending
//! through it fails with `ESRCH`. Opening one for a pid is itself a race (the pid may already
//! belong to another process), so [`PidFd::open_verified`] checks `/proc` after opening.

use super::procfs::{self, ProcessInfo};
use nix::libc;
use nix::sys::signal::Signal;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A process held by a pidfd (Linux 5.3 or later).
#[derive(Debug)]
pub struct PidFd(OwnedFd);

impl PidFd {
    /// Opens a pidfd for the process that has `pid` now.
    pub fn open(pid: i32) -> io::Result<PidFd> {
        // SAFETY: pidfd_open takes a pid and flags (none) and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the descriptor was just created and nothing else owns it.
        Ok(PidFd(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Opens a pidfd for `pid` only if `/proc` shows the process it holds passing `is_wanted`:
    /// the process is still unreaped after the read, so the read was about it and not about an
    /// earlier or later owner of the pid.
    pub fn open_verified(pid: i32, is_wanted: impl FnOnce(&ProcessInfo) -> bool) -> Option<PidFd> {
        let process = PidFd::open(pid).ok()?;
        let wanted = procfs::process(pid).is_some_and(|info| is_wanted(&info));
        (wanted && process.is_unreaped()).then_some(process)
    }

    /// Sends `signal` to the process; fails with `ESRCH` once it has been reaped.
    pub fn send(&self, signal: Signal) -> io::Result<()> {
        self.send_raw(signal as libc::c_int)
    }

    /// Whether the process still holds its pid: running, or exited but not reaped yet.
    pub fn is_unreaped(&self) -> bool {
        match self.send_raw(0) {
            Ok(()) => true,
            // EPERM: there, but not ours to signal.
            Err(error) => error.raw_os_error() != Some(libc::ESRCH),
        }
    }

    fn send_raw(&self, signal: libc::c_int) -> io::Result<()> {
        let no_info = std::ptr::null::<libc::siginfo_t>();
        // SAFETY: a pidfd we own, a signal number, no siginfo, no flags.
        let sent = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, self.0.as_raw_fd(), signal, no_info, 0) };
        match sent {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }
}

/// Sends `signal` to `process`, seen in a snapshot of this subreaper's tree, through a pidfd, if
/// the process now holding its pid is still that one: in the same group, with the same parent or
/// this process (a parent that died left its children to it).
pub fn signal_if_still_ours(process: &ProcessInfo, signal: Signal) {
    let me = std::process::id() as i32;
    let still_ours = |now: &ProcessInfo| now.pgid == process.pgid && (now.ppid == process.ppid || now.ppid == me);
    if let Some(pidfd) = PidFd::open_verified(process.pid, still_ours) {
        let _ = pidfd.send(signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Child, Command};

    fn sleeper() -> (Child, PidFd) {
        let child = Command::new("sleep").arg("300").spawn().expect("spawning sleep");
        let process = PidFd::open(child.id() as i32).expect("a pidfd for our own child");
        (child, process)
    }

    #[test]
    fn a_signal_sent_through_a_pidfd_kills_the_process() {
        let (mut child, process) = sleeper();
        assert!(process.is_unreaped());
        process.send(Signal::SIGKILL).unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(Signal::SIGKILL as i32));
    }

    #[test]
    fn a_zombie_is_unreaped_and_a_reaped_process_takes_no_signal() {
        let (mut child, process) = sleeper();
        process.send(Signal::SIGKILL).unwrap();
        let zombie = || procfs::process(child.id() as i32).is_some_and(|p| p.zombie);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !zombie() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(zombie(), "SIGKILLed and not reaped, sleep is a zombie");
        assert!(process.is_unreaped(), "a zombie still holds its pid");
        child.wait().unwrap();
        assert!(!process.is_unreaped());
        let error = process.send(Signal::SIGTERM).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ESRCH));
    }

    #[test]
    fn opening_a_pid_that_is_not_there_fails() {
        let (mut child, process) = sleeper();
        process.send(Signal::SIGKILL).unwrap();
        child.wait().unwrap();
        let error = PidFd::open(child.id() as i32).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ESRCH));
    }

    #[test]
    fn open_verified_opens_only_a_process_that_passes_the_check() {
        let (mut child, process) = sleeper();
        let pid = child.id() as i32;
        let me = std::process::id() as i32;
        assert!(PidFd::open_verified(pid, |p| p.ppid == me).is_some());
        assert!(PidFd::open_verified(pid, |p| p.ppid != me).is_none());
        process.send(Signal::SIGKILL).unwrap();
        child.wait().unwrap();
        assert!(PidFd::open_verified(pid, |_| true).is_none());
    }
}
