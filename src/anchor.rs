//! The anchor: the process `procgate start` stays as, with the pid its caller started (a shell,
//! systemd, a container runtime), in front of procgate's main process, its child.
//!
//! `procgate start` forks first thing, before any thread exists. The parent becomes the anchor,
//! a small single-threaded loop that:
//! - turns its stop signals (SIGINT, SIGTERM, SIGQUIT) into a `stop` line to the main process,
//!   SIGHUP into `reload` and SIGUSR2 into `upgrade`, over a socket pair;
//! - sends the main process's `sd_notify` messages on its behalf (`notify ...` lines), since a
//!   service manager only listens to the pid it started;
//! - is a child subreaper and reaps every child that ends, so it is also a container's PID 1
//!   that leaves no zombie;
//! - exits as the main process did (its code, or its signal raised again).
//!
//! The main process dies with it (`PR_SET_PDEATHSIG`: the anchor SIGKILLed takes procgate down
//! as a SIGKILLed procgate always did; the keepers then kill their apps). The anchor is what
//! lets procgate replace its main process without changing the pid that the world knows.
//!
//! For an upgrade the main process asks it to start a successor (a `spawn BINARY` line, with the
//! successor's end of their handover socket passed along, `SCM_RIGHTS`): the binary runs with
//! the anchor's own arguments (`start ...`) and finds that fd and a fresh link to the anchor
//! named in its environment ([`adopt`]). The anchor keeps one *current* main: orders and `sd_notify` go
//! to and come from it only, and its exit alone ends the anchor. `abandon` (the successor did
//! not take over) SIGKILLs it; `promote` (it took over) makes it the current main, and the old
//! one, left to drain its connections, is only reaped when it exits.

use crate::fdpass;
use crate::sd_notify::Notifier;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::MsgFlags;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The anchor's order to stop, followed by the signal's name (a second one skips the grace, as a
/// second signal does).
pub const STOP: &str = "stop";
/// The anchor's order to reload (a deploy of the same root).
pub const RELOAD: &str = "reload";
/// The anchor's order to upgrade to the binary procgate was started from (SIGUSR2).
pub const UPGRADE: &str = "upgrade";
/// The main process's request to send an `sd_notify` message, before the message.
const NOTIFY: &str = "notify ";
/// The main process's request to start a successor: before the binary's path; the successor's
/// end of its handover socket rides with it.
const SPAWN: &str = "spawn ";
/// The current main's word that its successor failed: the anchor kills it.
const ABANDON: &str = "abandon";
/// The current main's word that its successor took over: it is the current main now.
const PROMOTE: &str = "promote";
/// The successor's link to the anchor: `FD ANCHOR_PID MANAGER_PID`.
const LINK_ENV: &str = "PROCGATE_ANCHOR_LINK";
/// The fd of the successor's end of its handover socket.
pub const HANDOVER_ENV: &str = "PROCGATE_HANDOVER_FD";
/// The longest line the anchor reads from the main process; longer ones are dropped.
const MAX_LINE: usize = 4096;
/// The signals the anchor handles; blocked before the fork, so none is lost.
const HANDLED: [Signal; 6] =
    [Signal::SIGINT, Signal::SIGTERM, Signal::SIGQUIT, Signal::SIGHUP, Signal::SIGUSR2, Signal::SIGCHLD];

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
        if let Err(err) = self.send(&format!("{NOTIFY}{}", escape(state))) {
            tracing::debug!("sd_notify through the anchor {state:?}: {err}");
        }
    }

    /// Has the anchor start `binary` as this main's successor; returns this end of their
    /// handover socket (closed by the other end if the successor cannot start).
    pub fn spawn(&self, binary: &Path) -> std::io::Result<UnixStream> {
        let (ours, theirs) = UnixStream::pair()?;
        let line = format!("{SPAWN}{}\n", escape(&binary.to_string_lossy()));
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        fdpass::send_bytes(&writer, line.as_bytes(), &[theirs.as_fd()])?;
        Ok(ours)
    }

    /// Tells the anchor the successor failed: it kills it; this main stays the current one.
    pub fn abandon(&self) -> std::io::Result<()> {
        self.send(ABANDON)
    }

    /// Tells the anchor the successor took over: its orders and notifications are the
    /// successor's from now on, and the successor's exit is the one that ends the anchor.
    pub fn promote(&self) -> std::io::Result<()> {
        self.send(PROMOTE)
    }

    fn send(&self, line: &str) -> std::io::Result<()> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).write_all(format!("{line}\n").as_bytes())
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
            let status = run(child, anchor_end, &handled, before);
            exit_as(status, before)
        }
    }
}

/// In a successor the anchor started: its link to the anchor, named in the environment (then
/// removed from it, so no app inherits the name); `None` in a procgate started otherwise. Call
/// it before any thread is started.
pub fn adopt() -> Option<std::io::Result<Link>> {
    let value = std::env::var(LINK_ENV).ok()?;
    // The process has a single thread yet: changing the environment is safe.
    std::env::remove_var(LINK_ENV);
    Some(adopt_link(&value))
}

fn adopt_link(value: &str) -> std::io::Result<Link> {
    let bad =
        || std::io::Error::new(ErrorKind::InvalidInput, format!("{LINK_ENV}={value:?}: not a link the anchor made"));
    let numbers: Vec<i32> = value.split(' ').map(str::parse).collect::<Result<_, _>>().map_err(|_| bad())?;
    let [fd, anchor, manager] = numbers[..] else { return Err(bad()) };
    let stream = inherited_socket(fd).ok_or_else(bad)?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    let anchor = Pid::from_raw(anchor);
    if nix::unistd::getppid() != anchor {
        return Err(std::io::Error::other("the anchor that started this process is gone"));
    }
    take_over_watchdog(anchor);
    let reader = stream.try_clone()?;
    let manager = Pid::from_raw(manager);
    Ok(Link { writer: Arc::new(Mutex::new(stream)), reader: Arc::new(Mutex::new(Some(reader))), manager })
}

/// A socket this process inherited, its fd named in the environment: `None` unless it is an open
/// socket (not stdin, stdout or stderr); close-on-exec again, so no app inherits it.
pub fn inherited_socket(fd: RawFd) -> Option<UnixStream> {
    use nix::sys::stat::{fstat, SFlag};
    if fd <= 2 {
        return None;
    }
    let kind = SFlag::from_bits_truncate(fstat(fd).ok()?.st_mode) & SFlag::S_IFMT;
    if kind != SFlag::S_IFSOCK {
        return None;
    }
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)).ok()?;
    // SAFETY: the fd is open and a socket, handed to this process alone; nothing else owns it.
    Some(unsafe { UnixStream::from_raw_fd(fd) })
}

/// systemd names the pid its watchdog expects (`WATCHDOG_PID`): the anchor's; the main process
/// sends the pings (through the anchor), so it is named instead.
fn take_over_watchdog(anchor: Pid) {
    // The process has a single thread yet (see `split`): changing the environment is safe.
    if std::env::var("WATCHDOG_PID").is_ok_and(|pid| pid == anchor.to_string()) {
        std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
    }
}

/// The anchor's loop: until the current main process has ended; returns how it ended.
/// `mask` is the signal mask procgate was started with, which a successor gets back.
fn run(first: Pid, stream: UnixStream, handled: &SigSet, mask: SigSet) -> WaitStatus {
    if let Err(err) = nix::sys::prctl::set_child_subreaper(true) {
        eprintln!("procgate anchor: cannot become a subreaper ({err}); orphans go to init");
    }
    let signals = match SignalFd::with_flags(handled, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
        Ok(signals) => signals,
        Err(err) => {
            eprintln!("procgate anchor: cannot read its signals ({err}); passing none on");
            return wait_only(first);
        }
    };
    let notifier = Notifier::from_env();
    let mut mains = Mains { all: vec![Main::new(first, stream)], current: first, successor: None, mask };
    loop {
        let (signal_ready, ready) = {
            let open: Vec<&Main> = mains.all.iter().filter(|m| m.open).collect();
            let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
            fds.extend(open.iter().map(|m| PollFd::new(m.stream.as_fd(), PollFlags::POLLIN)));
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(err) => {
                    eprintln!("procgate anchor: poll failed ({err}); passing no more signals on");
                    return wait_only(mains.current);
                }
            }
            let is_ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            let ready: Vec<Pid> =
                open.iter().zip(&fds[1..]).filter(|(_, fd)| is_ready(fd)).map(|(m, _)| m.pid).collect();
            (is_ready(&fds[0]), ready)
        };
        for pid in ready {
            mains.read(pid, notifier.as_ref());
        }
        if signal_ready {
            while let Ok(Some(info)) = signals.read_signal() {
                let order = match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => match mains.reap() {
                        Some(status) => {
                            // Its last messages (`STOPPING=1`) still go out.
                            let current = mains.current;
                            while mains.read(current, notifier.as_ref()) == Received::Data {}
                            return status;
                        }
                        None => continue,
                    },
                    Ok(Signal::SIGHUP) => RELOAD.to_string(),
                    Ok(Signal::SIGUSR2) => UPGRADE.to_string(),
                    Ok(stop) => format!("{STOP} {}", stop.as_str()),
                    Err(_) => continue,
                };
                mains.order(&order);
            }
        }
    }
}

/// The main processes the anchor started: the current one, and a successor or old ones.
struct Mains {
    all: Vec<Main>,
    current: Pid,
    /// The successor being started, until promoted or gone.
    successor: Option<Pid>,
    /// The signal mask procgate was started with: a successor starts with it, not with the
    /// anchor's (which blocks the signals it reads), or its apps would inherit those blocked.
    mask: SigSet,
}

/// A main process and the anchor's end of its link.
struct Main {
    pid: Pid,
    stream: UnixStream,
    lines: Lines,
    open: bool,
}

impl Main {
    fn new(pid: Pid, stream: UnixStream) -> Main {
        Main { pid, stream, lines: Lines::default(), open: true }
    }
}

impl Mains {
    /// Reads what main `pid` sent and carries it out.
    fn read(&mut self, pid: Pid, notifier: Option<&Notifier>) -> Received {
        let Some(main) = self.all.iter_mut().find(|m| m.pid == pid && m.open) else { return Received::Closed };
        let received = main.lines.read(&main.stream);
        main.open = received != Received::Closed;
        let (lines, mut fds): (Vec<String>, Vec<OwnedFd>) =
            (main.lines.lines.drain(..).collect(), main.lines.fds.drain(..).collect());
        let current = pid == self.current;
        for line in lines {
            match line.as_str() {
                _ if !current => {} // An old main, or a successor not promoted yet, is not listened to.
                ABANDON => self.abandon(),
                PROMOTE => self.promote(),
                _ => match line.strip_prefix(SPAWN) {
                    Some(binary) if !fds.is_empty() => self.spawn(&unescape(binary), fds.remove(0)),
                    Some(_) => eprintln!("procgate anchor: a spawn request came without its handover socket"),
                    None => relay(&line, notifier),
                },
            }
        }
        received
    }

    /// Sends an order to the current main.
    fn order(&mut self, order: &str) {
        if let Some(main) = self.all.iter_mut().find(|m| m.pid == self.current) {
            let _ = (&main.stream).write_all(format!("{order}\n").as_bytes());
        }
    }

    /// Starts `binary` with the anchor's own arguments, its handover fd and a new link named in
    /// its environment.
    fn spawn(&mut self, binary: &str, handover: OwnedFd) {
        if let Some(running) = self.successor {
            eprintln!("procgate anchor: a successor (pid {running}) is being started already; not starting {binary}");
            return;
        }
        let started = UnixStream::pair().and_then(|(ours, theirs)| {
            let (link, handover_fd) = (theirs.as_raw_fd(), handover.as_raw_fd());
            let mut command = std::process::Command::new(binary);
            command.args(std::env::args_os().skip(1));
            command.env(LINK_ENV, format!("{link} {} {}", nix::unistd::getpid(), nix::unistd::getppid()));
            command.env(HANDOVER_ENV, handover_fd.to_string());
            let mask = self.mask;
            // SAFETY: between fork and exec only fcntl and sigprocmask run, both async-signal-safe.
            unsafe {
                command.pre_exec(move || {
                    for fd in [link, handover_fd] {
                        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()))?;
                    }
                    mask.thread_set_mask()?;
                    Ok(())
                })
            };
            let child = command.spawn()?;
            Ok((Pid::from_raw(child.id() as i32), ours))
        });
        match started {
            Ok((pid, link)) => {
                self.all.push(Main::new(pid, link));
                self.successor = Some(pid);
            }
            // The handover socket closes as `handover` is dropped: the main sees it failed.
            Err(err) => eprintln!("procgate anchor: cannot start {binary}: {err}"),
        }
    }

    fn abandon(&mut self) {
        if let Some(successor) = self.successor.take() {
            let _ = signal::kill(successor, Signal::SIGKILL);
        }
    }

    fn promote(&mut self) {
        match self.successor.take() {
            Some(successor) => self.current = successor,
            None => eprintln!("procgate anchor: no successor to promote"),
        }
    }

    /// Reaps every child that ended; how the current main ended, if it did.
    fn reap(&mut self) -> Option<WaitStatus> {
        let mut current_status = None;
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return current_status,
                Ok(status) if status.pid() == Some(self.current) => current_status = Some(status),
                Ok(status) => {
                    let pid = status.pid();
                    if self.successor.is_some() && self.successor == pid {
                        self.successor = None;
                    }
                    self.all.retain(|m| Some(m.pid) != pid);
                }
            }
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

/// The lines a main process sends and the fds that came with them, read as they come without
/// blocking the loop.
#[derive(Default)]
struct Lines {
    pending: Vec<u8>,
    lines: Vec<String>,
    fds: Vec<OwnedFd>,
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
    /// Reads what is there; whole lines go to `lines`.
    fn read(&mut self, stream: &UnixStream) -> Received {
        let mut chunk = [0_u8; 1024];
        let read = match fdpass::receive_bytes(stream, &mut chunk, &mut self.fds, MsgFlags::MSG_DONTWAIT) {
            Ok(0) => return Received::Closed,
            Ok(n) => n,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                return Received::Nothing
            }
            Err(_) => return Received::Closed,
        };
        self.pending.extend_from_slice(&chunk[..read]);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.lines.push(String::from_utf8_lossy(&line[..end]).into_owned());
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
