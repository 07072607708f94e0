//! The anchor: the process `procgate start` stays as, with the pid its caller started (a shell,
//! systemd, a container runtime), in front of procgate's main process, its child.
//!
//! `procgate start` forks first thing, before any thread exists. The parent becomes the anchor,
//! a small single-threaded loop that:
//! - turns its stop signals (SIGINT, SIGTERM, SIGQUIT) into a `stop` line to the main process
//!   and SIGHUP into `reload`, over a socket pair;
//! - sends the main process's `sd_notify` messages on its behalf (`notify ...` lines), since a
//!   service manager only listens to the pid it started;
//! - is a child subreaper and reaps every child that ends, so it is also a container's PID 1
//!   that leaves no zombie;
//! - exits as the main process did (its code, or its signal raised again).
//!
//! The main process dies with it (`PR_SET_PDEATHSIG`: the anchor SIGKILLed takes procgate down
//! as a SIGKILLed procgate always did; the keepers then kill their apps). The anchor is what
//! lets procgate replace its main process without changing the pid that the world knows.

use crate::sd_notify::Notifier;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

/// The anchor's order to stop, followed by the signal's name (a second one skips the grace, as a
/// second signal does).
pub const STOP: &str = "stop";
/// The anchor's order to reload (a deploy of the same root).
pub const RELOAD: &str = "reload";
/// The main process's request to send an `sd_notify` message, before the message.
const NOTIFY: &str = "notify ";
/// The longest line the anchor reads from the main process; longer ones are dropped.
const MAX_LINE: usize = 4096;
/// The signals the anchor handles; blocked before the fork, so none is lost.
const HANDLED: [Signal; 5] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGQUIT, Signal::SIGHUP, Signal::SIGCHLD];

/// The main process's end of the socket pair to its anchor.
#[derive(Clone)]
pub struct Link {
    writer: Arc<Mutex<UnixStream>>,
    reader: Arc<Mutex<Option<UnixStream>>>,
    /// The anchor's parent when it forked: the service manager, if procgate runs under one.
    pub manager: Pid,
}

impl Link {
    /// The orders the anchor sends ([`STOP`], [`RELOAD`]), each given to `on_order` on a thread
    /// of its own, until the anchor closes its end. Only the first call reads.
    pub fn read_orders(&self, on_order: impl Fn(&str) + Send + 'static) {
        let Some(stream) = self.reader.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                on_order(line.trim());
            }
        });
    }

    /// Has the anchor send `state` to the service manager (`READY=1`, `STATUS=...`).
    pub fn notify(&self, state: &str) {
        let line = format!("{NOTIFY}{}\n", escape(state));
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(err) = writer.write_all(line.as_bytes()) {
            tracing::debug!("sd_notify through the anchor {state:?}: {err}");
        }
    }
}

/// Forks: returns in the child, the main process, with its link; the parent becomes the anchor
/// and never returns. Call it before any thread is started.
pub fn split() -> std::io::Result<Link> {
    let handled: SigSet = HANDLED.into_iter().collect();
    let before = handled.thread_swap_mask(SigmaskHow::SIG_BLOCK)?;
    let (anchor_end, main_end) = UnixStream::pair()?;
    let manager = nix::unistd::getppid();
    let anchor = nix::unistd::getpid();
    // SAFETY: no other thread exists yet (the caller's contract), so the child may run any code.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(anchor_end);
            before.thread_set_mask()?;
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if nix::unistd::getppid() != anchor {
                std::process::exit(1);
            }
            take_over_watchdog(anchor);
            let reader = main_end.try_clone()?;
            Ok(Link { writer: Arc::new(Mutex::new(main_end)), reader: Arc::new(Mutex::new(Some(reader))), manager })
        }
        ForkResult::Parent { child } => {
            drop(main_end);
            let status = run(child, anchor_end, &handled);
            exit_as(status, before)
        }
    }
}

/// systemd names the pid its watchdog expects (`WATCHDOG_PID`): the anchor's; the main process
/// sends the pings (through the anchor), so it is named instead.
fn take_over_watchdog(anchor: Pid) {
    // The process has a single thread yet (see `split`): changing the environment is safe.
    if std::env::var("WATCHDOG_PID").is_ok_and(|pid| pid == anchor.to_string()) {
        std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
    }
}

/// The anchor's loop: until the main process has ended; returns how it ended.
fn run(main: Pid, mut stream: UnixStream, handled: &SigSet) -> WaitStatus {
    if let Err(err) = nix::sys::prctl::set_child_subreaper(true) {
        eprintln!("procgate anchor: cannot become a subreaper ({err}); orphans go to init");
    }
    let signals = match SignalFd::with_flags(handled, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
        Ok(signals) => signals,
        Err(err) => {
            eprintln!("procgate anchor: cannot read its signals ({err}); passing none on");
            return wait_only(main);
        }
    };
    let notifier = Notifier::from_env();
    let mut from_main = Lines::default();
    let mut main_open = true;
    loop {
        let (signal_ready, main_ready) = {
            let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
            if main_open {
                fds.push(PollFd::new(stream.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(err) => {
                    eprintln!("procgate anchor: poll failed ({err}); passing no more signals on");
                    return wait_only(main);
                }
            }
            let ready = |fd: Option<&PollFd>| fd.and_then(|fd| fd.revents()).is_some_and(|r| !r.is_empty());
            (ready(fds.first()), ready(fds.get(1)))
        };
        if main_ready {
            main_open = from_main.read(&mut stream, |line| relay(line, notifier.as_ref())) != Received::Closed;
        }
        if signal_ready {
            while let Ok(Some(info)) = signals.read_signal() {
                let order = match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => match reap(main) {
                        Some(status) => {
                            // Its last messages (`STOPPING=1`) still go out.
                            while main_open
                                && from_main.read(&mut stream, |line| relay(line, notifier.as_ref())) == Received::Data
                            {
                            }
                            return status;
                        }
                        None => continue,
                    },
                    Ok(Signal::SIGHUP) => RELOAD.to_string(),
                    Ok(stop) => format!("{STOP} {}", stop.as_str()),
                    Err(_) => continue,
                };
                let _ = stream.write_all(format!("{order}\n").as_bytes());
            }
        }
    }
}

/// Reaps every child that ended; how the main process ended, if it did.
fn reap(main: Pid) -> Option<WaitStatus> {
    let mut main_status = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return main_status,
            Ok(status) if status.pid() == Some(main) => main_status = Some(status),
            Ok(_) => {}
        }
    }
}

/// Without its signals: waits for the main process, reaping the others.
fn wait_only(main: Pid) -> WaitStatus {
    loop {
        match waitpid(None, None) {
            Ok(status) if status.pid() == Some(main) => return status,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return WaitStatus::Exited(main, 1),
        }
    }
}

/// Exits with the main process's code, or dies of its signal.
fn exit_as(status: WaitStatus, mask: SigSet) -> ! {
    if let WaitStatus::Signaled(_, signal, _) = status {
        // SAFETY: restoring the default action of a signal is always sound.
        let _ = unsafe { signal::signal(signal, signal::SigHandler::SigDfl) };
        let _ = mask.thread_set_mask();
        let _ = SigSet::from(signal).thread_unblock();
        let _ = signal::raise(signal);
    }
    std::process::exit(match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, signal, _) => 128 + signal as i32,
        _ => 1,
    })
}

/// Sends a `notify` line's message to the service manager, if procgate runs under one.
fn relay(line: &str, notifier: Option<&Notifier>) {
    if let (Some(message), Some(notifier)) = (line.strip_prefix(NOTIFY), notifier) {
        notifier.notify(&unescape(message));
    }
}

/// The lines the main process sends, read as they come without blocking the loop.
#[derive(Default)]
struct Lines {
    pending: Vec<u8>,
}

/// What one read of the main process's end found.
#[derive(Debug, PartialEq, Eq)]
enum Received {
    Data,
    Nothing,
    /// It closed its end (or the socket failed).
    Closed,
}

impl Lines {
    /// Reads what is there and hands each whole line over.
    fn read(&mut self, stream: &mut UnixStream, mut on_line: impl FnMut(&str)) -> Received {
        let mut chunk = [0_u8; 1024];
        let read = match nix::sys::socket::recv(
            std::os::fd::AsRawFd::as_raw_fd(stream),
            &mut chunk,
            nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(0) => return Received::Closed,
            Ok(n) => n,
            Err(Errno::EAGAIN | Errno::EINTR) => return Received::Nothing,
            Err(_) => return Received::Closed,
        };
        self.pending.extend_from_slice(&chunk[..read]);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            on_line(String::from_utf8_lossy(&line[..end]).as_ref());
        }
        if self.pending.len() > MAX_LINE {
            self.pending.clear();
        }
        Received::Data
    }
}

/// A message on one line: `\` and newlines escaped.
fn escape(message: &str) -> String {
    message.replace('\\', "\\\\").replace('\n', "\\n")
}

fn unescape(line: &str) -> String {
    let mut message = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => message.push('\n'),
                Some(other) => message.push(other),
                None => {}
            },
            c => message.push(c),
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_crosses_on_one_line_and_comes_back_whole() {
        let message = "RELOADING=1\nMONOTONIC_USEC=12\nSTATUS=a \\ b";
        let line = escape(message);
        assert!(!line.contains('\n'));
        assert_eq!(unescape(&line), message);
    }
}
