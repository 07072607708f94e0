//! The keeper: one small process per instance that owns the app's process tree.
//!
//! procgate runs itself as `procgate __keeper -- bash -c COMMAND` with a Unix socket as stdin.
//! The keeper is a child subreaper, starts the app as the leader of a new process group, and:
//! - forwards procgate's orders (`signal N`, `kill`) to the whole group and to any descendant that
//!   escaped it (orphans are re-parented to the keeper, so it sees them);
//! - kills everything when the socket reaches end of file: procgate died, even by SIGKILL;
//! - when the leader exits on its own, sends SIGTERM to what is left of the tree;
//! - exits only when it has no descendant left, so "the keeper exited" means "the whole instance
//!   is gone", and reports the leader's status first.
//!
//! It also gives the app a fresh `TMPDIR`, removed when the instance is gone.
//!
//! A stop signal (SIGTERM, SIGINT) reaches each process of the tree once: procgate's orders send
//! it only if the tree has not had it yet. Under a service manager that signals the whole cgroup
//! (systemd's `KillMode=control-group`), the app already got the manager's own: the keeper notes
//! a stop signal from the manager (the process that started procgate, named in
//! `PROCGATE_SERVICE_MANAGER`) as delivered instead of forwarding it.
//!
//! No signal reaches a process that merely took over a pid of the tree after its owner was reaped
//! (the keeper reaps while it signals): groups are signalled only while they provably have a
//! member (`split`), processes outside them through pidfds (`pidfd::signal_if_still_ours`).

use super::procfs::{self, ProcessInfo};
use super::protocol::{ExitReason, Order, Report};
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::SignalsInfo;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Names the service manager's pid to keepers (see the module's documentation).
pub const SERVICE_MANAGER: &str = "PROCGATE_SERVICE_MANAGER";

/// Signals sent to the keeper itself that it passes on to the app (and `procgate run` to its
/// command).
pub const FORWARDED: [i32; 6] = [
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGHUP,
    signal_hook::consts::SIGQUIT,
    signal_hook::consts::SIGUSR1,
    signal_hook::consts::SIGUSR2,
];

/// Runs `command` as an instance and exits with its status (128 + N when killed by signal N).
pub fn run(command: &[String]) -> ! {
    let control = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => UnixStream::from(fd),
        Err(err) => fail(&format!("procgate keeper: stdin is not procgate's socket: {err}")),
    };
    if let Err(err) = nix::sys::prctl::set_child_subreaper(true) {
        eprintln!("procgate keeper: cannot become a subreaper ({err}); orphans may escape");
    }
    // Registered before the app starts so no signal is lost; exec resets them in the app.
    let signals = signal_hook::iterator::SignalsInfo::<WithOrigin>::new(FORWARDED).ok();
    let manager = std::env::var(SERVICE_MANAGER).ok().and_then(|pid| pid.parse::<i32>().ok());
    report(&control, Report::Hello(super::protocol::VERSION));
    let tmpdir = instance_tmpdir();
    let mut app = Command::new(&command[0]);
    app.args(&command[1..]).stdin(Stdio::null()).process_group(0);
    super::nofile::give_back(&mut app);
    app.env_remove(SERVICE_MANAGER);
    // The app dies with its keeper (and procgate then kills its group): never an orphan.
    // SAFETY: prctl is async-signal-safe, and the closure touches nothing else.
    unsafe {
        app.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from));
    }
    if let Some(dir) = &tmpdir {
        app.env("TMPDIR", dir.path());
    }
    let leader = match app.spawn() {
        Ok(child) => Pid::from_raw(child.id() as i32),
        Err(err) => fail(&format!("procgate keeper: cannot run {}: {err}", command[0])),
    };
    let tree = Arc::new(Tree {
        leader,
        leader_unreaped: Mutex::new(true),
        stopping: AtomicBool::new(false),
        stopped_by_signal: AtomicBool::new(false),
        killing: AtomicBool::new(false),
    });
    report(&control, Report::Pid(leader.as_raw() as u32));
    listen_for_orders(&control, tree.clone(), manager.is_some());
    if let Some(signals) = signals {
        forward_signals(signals, manager, tree.clone());
    }
    let reason = reap_until_empty(&tree, &control);
    report(&control, Report::Exit(reason));
    drop(tmpdir);
    std::process::exit(reason.shell_status())
}

fn fail(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(127)
}

fn instance_tmpdir() -> Option<tempfile::TempDir> {
    let dyno = std::env::var("DYNO").unwrap_or_else(|_| "instance".into());
    tempfile::Builder::new().prefix(&format!("procgate-{dyno}-")).tempdir().ok()
}

fn report(mut control: &UnixStream, message: Report) {
    // procgate may be gone; the orders thread then kills the tree.
    let _ = control.write_all(message.encode().as_bytes());
}

/// The app's process tree: its group, plus descendants that left the group.
struct Tree {
    leader: Pid,
    /// The leader still holds its pid, the app's group id. Locked by the reaper while it reaps a
    /// child and by `signal` while it signals groups, so no child of the keeper is reaped then.
    leader_unreaped: Mutex<bool>,
    stopping: AtomicBool,
    /// The tree has had its stop signal (SIGTERM or SIGINT), from the keeper or the manager.
    stopped_by_signal: AtomicBool,
    killing: AtomicBool,
}

impl Tree {
    /// Sends `signal` exactly once to every process of the tree, including descendants that
    /// left the group; a stop signal only if the tree has had none yet (a second SIGTERM or
    /// SIGINT means "hurry" to many apps; procgate's way to hurry is SIGKILL).
    fn signal(&self, signal: Signal) {
        self.stopping.store(true, Ordering::SeqCst);
        if is_stop(signal) && self.stopped_by_signal.swap(true, Ordering::SeqCst) {
            return;
        }
        let leader_unreaped = self.lock_leader_unreaped();
        let tree = procfs::descendants_of(std::process::id() as i32);
        let (groups, singles) = split(&tree, self.leader.as_raw(), *leader_unreaped);
        for group in groups {
            let _ = killpg(Pid::from_raw(group), signal);
        }
        drop(leader_unreaped);
        for process in singles {
            super::pidfd::signal_if_still_ours(process, signal);
        }
    }

    fn kill_all(&self) {
        self.killing.store(true, Ordering::SeqCst);
        self.signal(Signal::SIGKILL);
    }

    /// Waits for a child of the keeper to end, then reaps it (never while `signal` signals
    /// groups), noting when the leader is reaped.
    fn reap_next(&self) -> nix::Result<WaitStatus> {
        let ended = waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)?;
        let Some(pid) = ended.pid() else { return Ok(ended) };
        let mut leader_unreaped = self.lock_leader_unreaped();
        let reaped = waitpid(pid, None)?;
        if pid == self.leader {
            *leader_unreaped = false;
        }
        Ok(reaped)
    }

    fn lock_leader_unreaped(&self) -> MutexGuard<'_, bool> {
        self.leader_unreaped.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Splits `tree` into the process groups to signal whole and the processes to signal alone.
///
/// A group gets `killpg`: one atomic step that also reaches members forked meanwhile, which a
/// walk of /proc would miss. It is safe while the group has a member: its id stays reserved
/// (no new process can get that pid, so none can lead a new group with that id) while any
/// member lives, even as a zombie. The app's group is signalled while its leader is unreaped
/// (exact, under the reaper's lock) or a member of it is in `tree`; another group while its
/// leader is in `tree`, since only a group whose leader is ours is all ours. A `tree` is a
/// snapshot: the group would have to empty and its id come round again as a new pid (pids are
/// handed out cyclically) between the snapshot and the `killpg`.
fn split(tree: &[ProcessInfo], leader: i32, leader_unreaped: bool) -> (Vec<i32>, Vec<&ProcessInfo>) {
    let is_ours = |pid: i32| tree.iter().any(|p| p.pid == pid);
    let app_group_lives = leader_unreaped || tree.iter().any(|p| p.pgid == leader);
    let mut groups = if app_group_lives { vec![leader] } else { Vec::new() };
    let mut singles = Vec::new();
    for process in tree {
        if groups.contains(&process.pgid) {
            continue;
        }
        match is_ours(process.pgid) {
            true => groups.push(process.pgid),
            false => singles.push(process),
        }
    }
    (groups, singles)
}

fn listen_for_orders(control: &UnixStream, tree: Arc<Tree>, under_manager: bool) {
    let reader = control.try_clone().expect("cloning the keeper socket");
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            match line.ok().as_deref().and_then(Order::decode) {
                Some(Order::Signal(signal)) if is_stop(signal) && under_manager => {
                    wait_for_the_managers_signal(&tree);
                    tree.signal(signal)
                }
                Some(Order::Signal(signal)) => tree.signal(signal),
                Some(Order::Kill) => tree.kill_all(),
                None => break,
            }
        }
        // End of file or a broken socket: procgate is gone, nothing may outlive it.
        tree.kill_all();
    });
}

/// How long a keeper under a service manager waits, on procgate's stop order, for the stop
/// signal the manager may have sent every process of the unit at once (`KillMode=control-group`):
/// it is already pending, but under load the keeper's signal thread may see it after the order.
const MANAGER_SIGNAL_WAIT: std::time::Duration = std::time::Duration::from_millis(300);

/// Waits up to [`MANAGER_SIGNAL_WAIT`] for the manager's stop signal (none comes under
/// `KillMode=mixed`: then procgate's order is the app's one SIGTERM, that much later).
fn wait_for_the_managers_signal(tree: &Tree) {
    let deadline = std::time::Instant::now() + MANAGER_SIGNAL_WAIT;
    while !tree.stopped_by_signal.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Passes the signals the keeper gets on to the tree, but a stop signal from the service
/// manager, which sent the app its own.
fn forward_signals(mut signals: SignalsInfo<WithOrigin>, manager: Option<i32>, tree: Arc<Tree>) {
    std::thread::spawn(move || {
        for origin in signals.forever() {
            let Ok(signal) = Signal::try_from(origin.signal) else { continue };
            let from_manager = manager.is_some() && origin.process.map(|p| p.pid) == manager;
            match from_manager && is_stop(signal) {
                true => {
                    tree.stopping.store(true, Ordering::SeqCst);
                    tree.stopped_by_signal.store(true, Ordering::SeqCst);
                }
                false => tree.signal(signal),
            }
        }
    });
}

fn is_stop(signal: Signal) -> bool {
    matches!(signal, Signal::SIGTERM | Signal::SIGINT)
}

/// Reaps every descendant until none is left; returns how the leader ended.
fn reap_until_empty(tree: &Tree, control: &UnixStream) -> ExitReason {
    let mut leader_reason = ExitReason::Code(0);
    loop {
        match tree.reap_next() {
            Ok(WaitStatus::Exited(pid, code)) if pid == tree.leader => {
                leader_reason = ExitReason::Code(code);
                on_leader_exit(tree, control);
            }
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == tree.leader => {
                leader_reason = ExitReason::Signal(signal as i32);
                on_leader_exit(tree, control);
            }
            Ok(_) if tree.killing.load(Ordering::SeqCst) => tree.kill_all(),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return leader_reason,
        }
    }
}

fn on_leader_exit(tree: &Tree, control: &UnixStream) {
    report(control, Report::LeaderExited);
    if !tree.stopping.load(Ordering::SeqCst) {
        tree.signal(Signal::SIGTERM);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: i32, pgid: i32) -> ProcessInfo {
        ProcessInfo { pid, ppid: 1, pgid, name: "sh".into(), zombie: false }
    }

    #[test]
    fn groups_whose_leader_is_in_the_tree_are_signalled_whole_and_other_processes_alone() {
        let tree = [process(10, 10), process(11, 10), process(20, 20), process(21, 20), process(30, 99)];
        let (groups, singles) = split(&tree, 10, true);
        assert_eq!(groups, [10, 20]);
        assert_eq!(singles.iter().map(|p| p.pid).collect::<Vec<_>>(), [30]);
    }

    #[test]
    fn the_app_group_is_signalled_while_its_leader_is_unreaped_or_a_member_lives() {
        assert_eq!(split(&[], 10, true).0, [10]);
        assert_eq!(split(&[process(11, 10)], 10, false).0, [10]);
        let escaped = [process(30, 99)];
        let (groups, singles) = split(&escaped, 10, false);
        assert!(groups.is_empty(), "an empty group's id may be taken again");
        assert_eq!(singles.len(), 1);
    }
}
