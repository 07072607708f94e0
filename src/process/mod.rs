//! Instances as processes: each runs under its own keeper (see [`keeper`]), in its own process
//! group, with its output prefixed and its end reported once the whole process tree is gone.

pub mod keeper;
pub mod nofile;
pub mod output;
pub mod pidfd;
pub mod procfs;
pub mod protocol;

use crate::env::EnvMap;
use nix::sys::signal::Signal;
use output::Prefix;
use pidfd::PidFd;
use protocol::{ExitReason, Order, Report};
use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// The shell that runs Procfile commands: bash, as on Heroku, else `/bin/sh`. bash `exec`s a
/// command line's last simple command, so the app itself is the instance's main process and
/// gets SIGTERM first hand (dash stays as its parent, dies at once and hides the app's status).
pub fn shell() -> &'static str {
    static SHELL: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    SHELL.get_or_init(|| if std::path::Path::new("/bin/bash").exists() { "/bin/bash" } else { "/bin/sh" })
}

/// The binary keepers run: the one this procgate runs, even after a package upgrade replaced
/// the file at its path. `/proc/self/exe` is opened once (call this at start) and keepers run
/// `/proc/self/fd/N`, the inode itself (executing `/proc/self/exe` directly would also do,
/// but not under valgrind, whose own binary that is then).
pub fn own_binary() -> PathBuf {
    use std::os::fd::AsRawFd;
    static OWN: std::sync::OnceLock<Option<std::fs::File>> = std::sync::OnceLock::new();
    match OWN.get_or_init(|| std::fs::File::open("/proc/self/exe").ok()) {
        Some(file) => PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())),
        None => PathBuf::from("/proc/self/exe"),
    }
}

/// The process that started procgate, possibly a service manager: set once by the main
/// process, whose own parent is its anchor; else procgate's parent.
static SERVICE_MANAGER_PID: std::sync::OnceLock<i32> = std::sync::OnceLock::new();

/// Names the process that started procgate (the anchor's parent).
pub fn set_service_manager(pid: i32) {
    let _ = SERVICE_MANAGER_PID.set(pid);
}

fn service_manager() -> i32 {
    *SERVICE_MANAGER_PID.get_or_init(|| nix::unistd::getppid().as_raw())
}

/// What to run for one instance.
pub struct Launch {
    pub command: String,
    pub env: EnvMap,
    pub root: PathBuf,
    pub prefix: Prefix,
}

/// What a running instance tells its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessEvent {
    /// The app's main process started; its pid is also its process group.
    Started { pid: u32 },
    /// The main process ended; the rest of the tree has been sent SIGTERM.
    LeaderExited,
    /// The whole process tree is gone and its output is drained.
    Exited(ExitReason),
}

/// Sends orders to a running instance's keeper; dropping it does not stop the instance.
#[derive(Clone)]
pub struct Controller {
    orders: mpsc::UnboundedSender<Order>,
}

impl Controller {
    /// Sends `signal` to the instance's whole process tree.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = self.orders.send(Order::Signal(signal));
    }

    /// SIGKILLs the instance's whole process tree.
    pub fn kill(&self) {
        let _ = self.orders.send(Order::Kill);
    }
}

/// Starts an instance. The returned future must be polled (spawned) on a tokio `LocalSet` or
/// runtime: it prints the output and calls `on_event` as the instance lives and ends.
pub fn spawn(
    launch: Launch,
    keeper_exe: &std::path::Path,
    on_event: impl Fn(ProcessEvent) + 'static,
) -> std::io::Result<(Controller, impl Future<Output = ()>)> {
    // The instance's lines carry its main process's pid: they are read once the keeper has
    // reported it (or a moment later at most, should it never come).
    let (pid, reported) = (launch.prefix.pid.clone(), std::rc::Rc::new(tokio::sync::Notify::new()));
    let pid_reported = reported.clone();
    let on_event = move |event: ProcessEvent| {
        if let ProcessEvent::Started { pid: started } = event {
            pid.store(started, std::sync::atomic::Ordering::Relaxed);
            pid_reported.notify_one();
        }
        on_event(event)
    };
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    let mut command = tokio::process::Command::new(keeper_exe);
    command
        .arg("__keeper")
        .arg("--")
        .args([shell(), "-c", &launch.command])
        .current_dir(&launch.root)
        .envs(&launch.env)
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(soft) = nofile::original() {
        command.env(nofile::KEEPER_ENV, soft.to_string());
    }
    for var in crate::sd_notify::MANAGER_VARS {
        command.env_remove(var);
    }
    // Under systemd (which sets INVOCATION_ID for a service's processes), procgate's parent is
    // the service manager; its stop signals reach every process of the cgroup by themselves.
    if std::env::var_os("INVOCATION_ID").is_some() {
        command.env(keeper::SERVICE_MANAGER, service_manager().to_string());
    }
    let mut child = command.spawn()?;
    // The keeper's end must close here, or its end of file would never come.
    drop(command);
    ours.set_nonblocking(true)?;
    let control = UnixStream::from_std(ours)?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let exit_status = async move { child.wait().await.map(exit_reason_of).unwrap_or(ExitReason::Code(1)) };
    let keeper = Keeper { control, stdout, stderr, leader: None };
    Ok(monitor(keeper, launch.prefix, reported, on_event, exit_status))
}

/// An instance another main process started and handed over at an upgrade: its keeper's
/// socket and the read ends of its output pipes. Its keeper said hello to that process already.
pub struct Handed {
    pub control: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// The app's leader, also its process group.
    pub pid: u32,
}

/// Monitors a handed-over instance as [`spawn`] does one it started; no `Started` is reported
/// (the pid is known). Its keeper is not this process's child (the anchor reaps it), so a keeper
/// that dies without reporting the app's exit counts as an exit with code 1.
pub fn adopt(
    handed: Handed,
    prefix: Prefix,
    on_event: impl Fn(ProcessEvent) + 'static,
) -> std::io::Result<(Controller, impl Future<Output = ()>)> {
    use tokio::net::unix::pipe::Receiver;
    let control = std::os::unix::net::UnixStream::from(handed.control);
    control.set_nonblocking(true)?;
    let control = UnixStream::from_std(control)?;
    let (stdout, stderr) = (Receiver::from_owned_fd(handed.stdout)?, Receiver::from_owned_fd(handed.stderr)?);
    prefix.pid.store(handed.pid, std::sync::atomic::Ordering::Relaxed);
    let reported = std::rc::Rc::new(tokio::sync::Notify::new());
    reported.notify_one();
    let keeper = Keeper { control, stdout: Some(stdout), stderr: Some(stderr), leader: Some(handed.pid) };
    Ok(monitor(keeper, prefix, reported, on_event, async { ExitReason::Code(1) }))
}

/// What procgate holds of a running keeper.
struct Keeper<O, E> {
    control: UnixStream,
    stdout: Option<O>,
    stderr: Option<E>,
    /// The app's leader when known already (handed over): no hello is awaited.
    leader: Option<u32>,
}

/// The instance's orders and its monitor: the future prints the output (once `reported` says
/// the pid is known, or a moment later) and calls `on_event` as it lives and ends;
/// `exit_status` is how the keeper itself ended, should it die without reporting the app's exit.
fn monitor<O, E>(
    keeper: Keeper<O, E>,
    prefix: Prefix,
    reported: std::rc::Rc<tokio::sync::Notify>,
    on_event: impl Fn(ProcessEvent) + 'static,
    exit_status: impl Future<Output = ExitReason>,
) -> (Controller, impl Future<Output = ()>)
where
    O: tokio::io::AsyncRead + Unpin,
    E: tokio::io::AsyncRead + Unpin,
{
    let (orders_tx, orders) = mpsc::unbounded_channel();
    let Keeper { control, stdout, stderr, leader } = keeper;
    let monitor = async move {
        let pumps = async {
            let _ = tokio::time::timeout(PID_WAIT, reported.notified()).await;
            let out = stdout.map(|s| output::pump(s, prefix.clone()));
            let err = stderr.map(|s| output::pump(s, prefix.clone()));
            tokio::join!(
                async {
                    if let Some(f) = out {
                        f.await
                    }
                },
                async {
                    if let Some(f) = err {
                        f.await
                    }
                }
            );
        };
        // A keeper that died (the OOM killer, a stray SIGKILL) leaves its app behind: its group
        // is killed (`kill_orphaned_group`), and output still held open by escaped descendants
        // is read a moment only.
        let keeper_gone = tokio::sync::Notify::new();
        let talk = async {
            let talk = converse(control, orders, &on_event, leader).await;
            if talk.exit.is_none() {
                if let Some(group) = talk.leader {
                    kill_orphaned_group(group as i32).await;
                }
                keeper_gone.notify_one();
            }
            talk
        };
        let drained = async {
            tokio::select! {
                () = pumps => {}
                () = async { keeper_gone.notified().await; tokio::time::sleep(KEEPER_GONE_DRAIN).await } => {}
            }
        };
        let (talk, ()) = tokio::join!(talk, drained);
        let exit = match talk.exit {
            Some(exit) => exit,
            None => exit_status.await,
        };
        on_event(ProcessEvent::Exited(exit));
    };
    (Controller { orders: orders_tx }, monitor)
}

/// How long an instance's first lines wait for its pid before they are printed without it.
const PID_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// How long the output of an instance whose keeper died is still read.
const KEEPER_GONE_DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// How many times the group of a keeper that died is swept: its members may fork meanwhile.
const ORPHANED_GROUP_SWEEPS: usize = 5;
/// The pause after a sweep, for the members it killed to die and leave the group.
const ORPHANED_GROUP_SWEEP_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// SIGKILLs what is left of the app of a keeper that died: every live member of its group,
/// each through a pidfd opened before its group is read again, so a process that took over a
/// member's pid is never hit. Sweeps repeat until one finds no member, a bounded number of times.
async fn kill_orphaned_group(group: i32) {
    for _ in 0..ORPHANED_GROUP_SWEEPS {
        let members = procfs::group_members(group);
        if members.is_empty() {
            return;
        }
        for member in members {
            if let Some(process) = PidFd::open_verified(member.pid, |now| now.pgid == group) {
                let _ = process.send(Signal::SIGKILL);
            }
        }
        tokio::time::sleep(ORPHANED_GROUP_SWEEP_PAUSE).await;
    }
}

/// What a keeper said before its socket closed.
struct Talk {
    /// The app's leader, also its process group.
    leader: Option<u32>,
    /// How the leader ended, once the whole tree was gone; `None`: the keeper died first.
    exit: Option<ExitReason>,
}

/// Passes orders to the keeper and reports its messages until it closes the socket (exits).
/// A keeper that does not speak this procgate's protocol version (another binary) is closed.
/// A handed-over one (its `leader` known) said hello to the previous main process.
async fn converse(
    control: UnixStream,
    mut orders: mpsc::UnboundedReceiver<Order>,
    on_event: &impl Fn(ProcessEvent),
    leader: Option<u32>,
) -> Talk {
    let (read, mut write) = control.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut talk = Talk { leader, exit: None };
    if leader.is_none() {
        match lines.next_line().await.ok().flatten().as_deref().map(Report::decode) {
            Some(Some(Report::Hello(version))) if version == protocol::VERSION => {}
            other => {
                tracing::error!(
                    "a keeper spoke {other:?} instead of `hello {}`: it is another procgate binary",
                    protocol::VERSION
                );
                return talk;
            }
        }
    }
    loop {
        tokio::select! {
            line = lines.next_line() => match line.ok().flatten().as_deref().map(Report::decode) {
                Some(Some(Report::Hello(_))) => {}
                Some(Some(Report::Pid(pid))) => {
                    talk.leader = Some(pid);
                    on_event(ProcessEvent::Started { pid });
                }
                Some(Some(Report::LeaderExited)) => on_event(ProcessEvent::LeaderExited),
                Some(Some(Report::Exit(reason))) => talk.exit = Some(reason),
                Some(None) => {}
                None => return talk,
            },
            Some(order) = orders.recv() => {
                let _ = write.write_all(order.encode().as_bytes()).await;
            }
        }
    }
}

fn exit_reason_of(status: std::process::ExitStatus) -> ExitReason {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitReason::Code(code),
        (None, Some(signal)) => ExitReason::Signal(signal),
        (None, None) => ExitReason::Code(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::io::{BufRead, Write};
    use std::rc::Rc;

    #[tokio::test]
    async fn a_handed_over_keeper_is_monitored_without_a_hello_and_takes_orders() {
        let (procgate_end, keeper_end) = std::os::unix::net::UnixStream::pair().unwrap();
        let (stdout, stdout_write) = nix::unistd::pipe().unwrap();
        let (stderr, stderr_write) = nix::unistd::pipe().unwrap();
        let output = crate::logs::Output::to_stderr();
        let prefix = Prefix { output: output.clone(), name: "web.1".into(), colour: 0, pid: Default::default() };
        let events = Rc::new(RefCell::new(Vec::new()));
        let seen = events.clone();
        let handed = Handed { control: procgate_end.into(), stdout, stderr, pid: 4242 };
        let (controller, monitor) = adopt(handed, prefix, move |event| seen.borrow_mut().push(event)).unwrap();
        // The keeper: one line of output, an order read, the app's exit reported, then gone.
        let keeper = std::thread::spawn(move || {
            nix::unistd::write(&stdout_write, b"still serving\npartial").unwrap();
            let mut order = String::new();
            std::io::BufReader::new(&keeper_end).read_line(&mut order).unwrap();
            (&keeper_end).write_all(Report::Exit(ExitReason::Code(0)).encode().as_bytes()).unwrap();
            drop((stdout_write, stderr_write));
            order
        });
        controller.signal(Signal::SIGTERM);
        let local = tokio::task::LocalSet::new();
        local.run_until(tokio::time::timeout(std::time::Duration::from_secs(5), monitor)).await.unwrap();
        assert_eq!(keeper.join().unwrap(), Order::Signal(Signal::SIGTERM).encode());
        assert_eq!(*events.borrow(), [ProcessEvent::Exited(ExitReason::Code(0))]);
        assert_eq!(output.instance_lines(), 2, "the line and the partial one at the end");
    }
}
