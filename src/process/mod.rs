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
use output::{Prefix, Pump};
use pidfd::PidFd;
use protocol::{ExitReason, Order, Report};
use std::future::Future;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe::Receiver;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

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

/// Sends orders to a running instance's keeper, and hands the instance over at an upgrade;
/// dropping it neither stops the instance nor lets it go.
#[derive(Clone)]
pub struct Controller {
    messages: mpsc::UnboundedSender<Message>,
}

/// What a [`Controller`] tells its instance's monitor.
enum Message {
    /// For the keeper.
    Order(Order),
    /// Pause, and answer copies of the fds (see [`Controller::freeze`]).
    Freeze(oneshot::Sender<Frozen>),
    /// Resume after a freeze; a running monitor ignores it.
    Thaw,
    /// End quietly after a freeze; a running monitor ignores it.
    LetGo,
}

/// What a monitor reads its [`Controller`]'s messages from.
type Inbox = mpsc::UnboundedReceiver<Message>;

/// Copies of a frozen instance's descriptors and the keeper's bytes read but not yet handled.
/// The copies share their open files with the monitor's (non-blocking, like them).
pub struct Frozen {
    pub control: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub unread: Vec<u8>,
}

/// How long [`Controller::freeze`] waits for the monitor to pause.
const FREEZE_ANSWER: Duration = Duration::from_secs(1);

impl Controller {
    /// Sends `signal` to the instance's whole process tree.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        self.send(Message::Order(Order::Signal(signal)));
    }

    /// SIGKILLs the instance's whole process tree.
    pub fn kill(&self) {
        self.send(Message::Order(Order::Kill));
    }

    /// Pauses the monitor at a safe point: it stops reading the keeper's socket and the output
    /// pipes (partial output lines are printed first, as at end of file) and answers copies of
    /// its three fds with the keeper's unhandled bytes. `None` if the monitor has ended or its
    /// keeper's socket is closed (the instance is ending), or it does not answer within
    /// [`FREEZE_ANSWER`]. While frozen, orders are queued, not sent, and no event is reported;
    /// the owner then either thaws it or lets it go. A frozen monitor answers a freeze again.
    pub async fn freeze(&self) -> Option<Frozen> {
        let (reply, answer) = oneshot::channel();
        self.messages.send(Message::Freeze(reply)).ok()?;
        let mut given_up = ThawOnDrop(Some(self));
        let frozen = tokio::time::timeout(FREEZE_ANSWER, answer).await.ok()?.ok()?;
        given_up.0 = None;
        Some(frozen)
    }

    /// Resumes a frozen monitor exactly where it stopped (queued orders are sent then).
    pub fn thaw(&self) {
        self.send(Message::Thaw);
    }

    /// Ends a frozen monitor quietly: no `Exited` event, its fds closed; the instance belongs to
    /// another process now (which holds the copies).
    pub fn let_go(&self) {
        self.send(Message::LetGo);
    }

    /// Passes `message` on; a monitor that ended takes nothing.
    fn send(&self, message: Message) {
        let _ = self.messages.send(message);
    }
}

/// Thaws the monitor unless disarmed: a freeze given up on (timed out, or its future dropped)
/// may have paused the monitor after all, its answer lost, with nobody to thaw it.
struct ThawOnDrop<'a>(Option<&'a Controller>);

impl Drop for ThawOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(controller) = self.0 {
            controller.thaw();
        }
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
    let pid = launch.prefix.pid.clone();
    let on_event = move |event: ProcessEvent| {
        if let ProcessEvent::Started { pid: started } = event {
            pid.store(started, std::sync::atomic::Ordering::Relaxed);
        }
        on_event(event)
    };
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    let mut command = tokio::process::Command::new(keeper_exe);
    command
        // `ps` shows `procgate __keeper -- ...`, not the descriptor path it runs from.
        .arg0("procgate")
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
    let stdout = output_pipe(child.stdout.take().map(tokio::process::ChildStdout::into_owned_fd))?;
    let stderr = output_pipe(child.stderr.take().map(tokio::process::ChildStderr::into_owned_fd))?;
    let exit_status = async move { child.wait().await.map(exit_reason_of).unwrap_or(ExitReason::Code(1)) };
    let keeper = Keeper { control, stdout, stderr, leader: None, unread: Vec::new() };
    Ok(monitor(keeper, launch.prefix, on_event, exit_status))
}

/// The read end of one of a spawned keeper's output pipes, as the monitor reads it.
fn output_pipe(pipe: Option<std::io::Result<OwnedFd>>) -> std::io::Result<Receiver> {
    let pipe = pipe.ok_or_else(|| std::io::Error::other("a keeper's output is not piped"))?;
    Receiver::from_owned_fd(pipe?)
}

/// An instance another main process started and handed over at an upgrade: its keeper's
/// socket and the read ends of its output pipes. Its keeper said hello to that process already.
pub struct Handed {
    pub control: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// The app's leader, also its process group.
    pub pid: u32,
    /// The keeper's bytes the other process read but did not handle: handled first.
    pub unread: Vec<u8>,
}

/// Monitors a handed-over instance as [`spawn`] does one it started; no `Started` is reported
/// (the pid is known). Its keeper is not this process's child (the anchor reaps it), so a keeper
/// that dies without reporting the app's exit counts as an exit with code 1.
pub fn adopt(
    handed: Handed,
    prefix: Prefix,
    on_event: impl Fn(ProcessEvent) + 'static,
) -> std::io::Result<(Controller, impl Future<Output = ()>)> {
    let control = std::os::unix::net::UnixStream::from(handed.control);
    control.set_nonblocking(true)?;
    let control = UnixStream::from_std(control)?;
    let (stdout, stderr) = (Receiver::from_owned_fd(handed.stdout)?, Receiver::from_owned_fd(handed.stderr)?);
    prefix.pid.store(handed.pid, std::sync::atomic::Ordering::Relaxed);
    let keeper = Keeper { control, stdout, stderr, leader: Some(handed.pid), unread: handed.unread };
    Ok(monitor(keeper, prefix, on_event, async { ExitReason::Code(1) }))
}

/// What procgate holds of a running keeper.
struct Keeper {
    control: UnixStream,
    stdout: Receiver,
    stderr: Receiver,
    /// The app's leader when known already (handed over): no hello is awaited.
    leader: Option<u32>,
    /// Bytes the keeper sent that are still to be handled (handed over).
    unread: Vec<u8>,
}

/// The instance's controller and its monitor: the future prints the output (once the keeper
/// has reported the pid, or a moment later) and calls `on_event` as it lives and ends;
/// `exit_status` is how the keeper itself ended, should it die without reporting the app's exit.
fn monitor(
    keeper: Keeper,
    prefix: Prefix,
    on_event: impl Fn(ProcessEvent) + 'static,
    exit_status: impl Future<Output = ExitReason>,
) -> (Controller, impl Future<Output = ()>) {
    let (messages, inbox) = mpsc::unbounded_channel();
    let Keeper { control, stdout, stderr, leader, unread } = keeper;
    let monitor = async move {
        let mut pumps = Pumps { out: Pump::new(stdout, prefix.clone()), err: Pump::new(stderr, prefix) };
        let conversation = Conversation::new(control, unread, leader);
        let talk = match converse(conversation, inbox, &mut pumps, &on_event).await {
            End::Closed(talk) => talk,
            End::LetGo => return,
        };
        let exit = match talk.exit {
            Some(exit) => {
                pumps.drain().await;
                exit
            }
            None => {
                drain_orphaned(&mut pumps, talk.leader).await;
                exit_status.await
            }
        };
        on_event(ProcessEvent::Exited(exit));
    };
    (Controller { messages }, monitor)
}

/// The instance's stdout and stderr as they are read.
struct Pumps {
    out: Pump<Receiver>,
    err: Pump<Receiver>,
}

impl Pumps {
    /// Prints both partial lines, as at end of file: reading pauses.
    fn flush(&mut self) {
        self.out.flush();
        self.err.flush();
    }

    /// Reads and prints both to their end of file.
    async fn drain(&mut self) {
        tokio::join!(self.out.drain(), self.err.drain());
    }
}

/// A keeper that died (the OOM killer, a stray SIGKILL) leaves its app behind: its group is
/// killed (`kill_orphaned_group`), and output still held open by escaped descendants is read
/// a moment only.
async fn drain_orphaned(pumps: &mut Pumps, leader: Option<u32>) {
    let gone = async {
        if let Some(group) = leader {
            kill_orphaned_group(group as i32).await;
        }
        tokio::time::sleep(KEEPER_GONE_DRAIN).await
    };
    tokio::select! {
        () = pumps.drain() => {}
        () = gone => {}
    }
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

/// How a monitor's conversation with its keeper ended.
enum End {
    /// The keeper closed its socket (exited), or was closed.
    Closed(Talk),
    /// The instance belongs to another process now.
    LetGo,
}

/// Passes orders to the keeper, reports its messages and prints the output (once the pid is
/// known, or [`PID_WAIT`] later) until the keeper closes the socket (exits), or until the
/// instance is let go after a freeze.
async fn converse(
    mut conversation: Conversation,
    mut inbox: Inbox,
    pumps: &mut Pumps,
    on_event: &impl Fn(ProcessEvent),
) -> End {
    let pid_wait = tokio::time::sleep(PID_WAIT);
    tokio::pin!(pid_wait);
    let mut waited = false;
    conversation.handle_lines(on_event);
    while !conversation.closed {
        let reading = waited || conversation.talk.leader.is_some();
        tokio::select! {
            () = conversation.receive() => {}
            Some(message) = inbox.recv() => match message {
                Message::Order(order) => conversation.send(order).await,
                Message::Freeze(reply) => {
                    if !freeze(&mut conversation, pumps, &mut inbox, reply, on_event).await {
                        return End::LetGo;
                    }
                }
                Message::Thaw | Message::LetGo => {}
            },
            () = pumps.out.step(), if reading && !pumps.out.ended() => {}
            () = pumps.err.step(), if reading && !pumps.err.ended() => {}
            () = &mut pid_wait, if !reading => waited = true,
        }
        conversation.handle_lines(on_event);
    }
    End::Closed(conversation.talk)
}

/// Pauses at a safe point (no read under way) and answers `reply` with copies of the fds and the
/// keeper's unhandled bytes, once what the keeper sent already is handled and the partial output
/// lines are printed; a keeper whose socket closed is not frozen (`reply` is dropped). Nothing
/// is then read, sent or reported until a thaw (true) or a let-go (false); orders wait. A freeze
/// whose answer was given up on, or whose copies fail, resumes at once.
async fn freeze(
    conversation: &mut Conversation,
    pumps: &mut Pumps,
    inbox: &mut Inbox,
    reply: oneshot::Sender<Frozen>,
    on_event: &impl Fn(ProcessEvent),
) -> bool {
    conversation.receive_ready();
    conversation.handle_lines(on_event);
    if conversation.closed {
        return true;
    }
    let frozen = match copies(conversation, pumps) {
        Ok(frozen) => frozen,
        Err(error) => {
            tracing::warn!("an instance could not be frozen: {error}");
            return true;
        }
    };
    pumps.flush();
    if reply.send(frozen).is_err() {
        return true;
    }
    let mut queued = Vec::new();
    // Until a thaw or a let-go; with no controller left to give either, it thaws.
    while let Some(message) = inbox.recv().await {
        match message {
            Message::Order(order) => queued.push(order),
            Message::Freeze(again) => {
                if let Ok(frozen) = copies(conversation, pumps) {
                    let _ = again.send(frozen);
                }
            }
            Message::Thaw => break,
            Message::LetGo => return false,
        }
    }
    for order in queued {
        conversation.send(order).await;
    }
    true
}

/// Copies of the instance's fds, and the keeper's bytes not handled yet, for another process.
fn copies(conversation: &Conversation, pumps: &Pumps) -> std::io::Result<Frozen> {
    Ok(Frozen {
        control: conversation.control.as_fd().try_clone_to_owned()?,
        stdout: pumps.out.as_fd().try_clone_to_owned()?,
        stderr: pumps.err.as_fd().try_clone_to_owned()?,
        unread: conversation.unread.clone(),
    })
}

/// The keeper's socket and what it said: its bytes are handled line by line, a partial line
/// waits in `unread` for its end.
struct Conversation {
    control: UnixStream,
    unread: Vec<u8>,
    talk: Talk,
    /// The keeper's first line, its hello, is still to come (a keeper this process started).
    awaiting_hello: bool,
    /// The socket reached end of file (the keeper exited), or the keeper was refused.
    closed: bool,
}

/// How much of the keeper's socket is read at once.
const CONTROL_CHUNK: usize = 1024;

impl Conversation {
    /// A conversation with a keeper whose `leader` is known already (handed over) or not (its hello
    /// is awaited), `unread` being what it said that was not handled yet.
    fn new(control: UnixStream, unread: Vec<u8>, leader: Option<u32>) -> Conversation {
        let talk = Talk { leader, exit: None };
        Conversation { control, unread, talk, awaiting_hello: leader.is_none(), closed: false }
    }

    /// Reads what the keeper sends next. Cancel safe: a call dropped before it finishes has
    /// read nothing.
    async fn receive(&mut self) {
        let mut chunk = [0u8; CONTROL_CHUNK];
        match self.control.read(&mut chunk).await {
            Ok(0) | Err(_) => self.closed = true,
            Ok(read) => self.unread.extend_from_slice(&chunk[..read]),
        }
    }

    /// Takes what the keeper sent already, its end of file included, without waiting: the
    /// socket itself is asked, as the runtime may not have noticed yet.
    fn receive_ready(&mut self) {
        use nix::sys::socket::{recv, MsgFlags};
        let mut chunk = [0u8; CONTROL_CHUNK];
        loop {
            match recv(self.control.as_raw_fd(), &mut chunk, MsgFlags::MSG_DONTWAIT) {
                Err(nix::errno::Errno::EAGAIN) => return,
                Ok(0) | Err(_) => {
                    self.closed = true;
                    return;
                }
                Ok(read) => self.unread.extend_from_slice(&chunk[..read]),
            }
        }
    }

    /// Handles every complete line received; a keeper that closed without its hello is refused.
    fn handle_lines(&mut self, on_event: &impl Fn(ProcessEvent)) {
        while let Some(end) = self.unread.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = self.unread.drain(..=end).collect();
            self.handle(&String::from_utf8_lossy(&line), on_event);
        }
        if self.closed && self.awaiting_hello {
            self.refuse(None);
        }
    }

    /// Reports what one line says; the first of a keeper this process started is its hello.
    fn handle(&mut self, line: &str, on_event: &impl Fn(ProcessEvent)) {
        let report = Report::decode(line);
        if self.awaiting_hello {
            self.awaiting_hello = false;
            if report != Some(Report::Hello(protocol::VERSION)) {
                self.refuse(Some(line.trim()));
            }
            return;
        }
        match report {
            Some(Report::Hello(_)) | None => {}
            Some(Report::Pid(pid)) => {
                self.talk.leader = Some(pid);
                on_event(ProcessEvent::Started { pid });
            }
            Some(Report::LeaderExited) => on_event(ProcessEvent::LeaderExited),
            Some(Report::Exit(reason)) => self.talk.exit = Some(reason),
        }
    }

    /// Closes a keeper that does not speak this procgate's protocol version (another binary):
    /// `said` is its first line, if any.
    fn refuse(&mut self, said: Option<&str>) {
        tracing::error!(
            "a keeper said {said:?} instead of `hello {}`: it is another procgate binary",
            protocol::VERSION
        );
        self.awaiting_hello = false;
        self.unread.clear();
        self.closed = true;
    }

    /// Writes `order` to the keeper.
    async fn send(&mut self, order: Order) {
        let _ = self.control.write_all(order.encode().as_bytes()).await;
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
        let (fake, controller, monitor) = adopt_fake(b"");
        let Fake { keeper, stdout, stderr, output, events } = fake;
        // The keeper: one line of output, an order read, the app's exit reported, then gone.
        let keeper = std::thread::spawn(move || {
            nix::unistd::write(&stdout, b"still serving\npartial").unwrap();
            let mut order = String::new();
            std::io::BufReader::new(&keeper).read_line(&mut order).unwrap();
            (&keeper).write_all(Report::Exit(ExitReason::Code(0)).encode().as_bytes()).unwrap();
            drop((stdout, stderr));
            order
        });
        controller.signal(Signal::SIGTERM);
        let local = tokio::task::LocalSet::new();
        local.run_until(tokio::time::timeout(PATIENCE, monitor)).await.unwrap();
        assert_eq!(keeper.join().unwrap(), Order::Signal(Signal::SIGTERM).encode());
        assert_eq!(*events.borrow(), [ProcessEvent::Exited(ExitReason::Code(0))]);
        assert_eq!(output.instance_lines(), 2, "the line and the partial one at the end");
    }

    /// A pid no process can have (Linux pids stay below 2^22): a group never swept for real.
    const NO_PROCESS: u32 = i32::MAX as u32;

    /// How long a test waits for what should come at once.
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

    /// An adopted instance whose keeper and app are the test: their ends of its socket and pipes.
    struct Fake {
        keeper: std::os::unix::net::UnixStream,
        stdout: OwnedFd,
        stderr: OwnedFd,
        output: crate::logs::Output,
        events: Rc<RefCell<Vec<ProcessEvent>>>,
    }

    /// Adopts a fake instance, `unread` being what its keeper said that was not handled yet.
    fn adopt_fake(unread: &[u8]) -> (Fake, Controller, impl Future<Output = ()>) {
        let (procgate_end, keeper) = std::os::unix::net::UnixStream::pair().unwrap();
        let (stdout, stdout_write) = nix::unistd::pipe().unwrap();
        let (stderr, stderr_write) = nix::unistd::pipe().unwrap();
        let output = crate::logs::Output::to_stderr();
        let prefix = Prefix { output: output.clone(), name: "web.1".into(), colour: 0, pid: Default::default() };
        let events = Rc::new(RefCell::new(Vec::new()));
        let seen = events.clone();
        let handed = Handed { control: procgate_end.into(), stdout, stderr, pid: NO_PROCESS, unread: unread.to_vec() };
        let (controller, monitor) = adopt(handed, prefix, move |event| seen.borrow_mut().push(event)).unwrap();
        let fake = Fake { keeper, stdout: stdout_write, stderr: stderr_write, output, events };
        (fake, controller, monitor)
    }

    /// Waits until `done` holds, letting the monitor run meanwhile.
    async fn until(mut done: impl FnMut() -> bool) {
        let polled = async {
            while !done() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(PATIENCE, polled).await.expect("in time");
    }

    /// The bytes waiting on a socket now; `None` at end of file.
    fn waiting(socket: &impl AsRawFd) -> Option<Vec<u8>> {
        use nix::sys::socket::{recv, MsgFlags};
        let (mut bytes, mut chunk) = (Vec::new(), [0u8; 256]);
        loop {
            match recv(socket.as_raw_fd(), &mut chunk, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => return None,
                Ok(read) => bytes.extend_from_slice(&chunk[..read]),
                Err(nix::errno::Errno::EAGAIN) => return Some(bytes),
                Err(error) => panic!("{error}"),
            }
        }
    }

    #[tokio::test]
    async fn a_frozen_monitor_reads_sends_and_reports_nothing_until_thawed() {
        let (fake, controller, monitor) = adopt_fake(b"");
        let Fake { keeper, stdout, stderr, output, events } = fake;
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let monitor = tokio::task::spawn_local(monitor);
                nix::unistd::write(&stdout, b"before\nhalf").unwrap();
                until(|| output.instance_lines() == 1).await;
                drop(controller.freeze().await.expect("a running monitor freezes"));
                assert_eq!(output.instance_lines(), 2, "the partial line is printed at the freeze");
                nix::unistd::write(&stdout, b"during\n").unwrap();
                nix::unistd::write(&stderr, b"error during\n").unwrap();
                (&keeper).write_all(Report::Exit(ExitReason::Code(0)).encode().as_bytes()).unwrap();
                controller.signal(Signal::SIGTERM);
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                assert_eq!(output.instance_lines(), 2, "nothing is read while frozen");
                assert_eq!(waiting(&keeper), Some(Vec::new()), "orders wait");
                assert!(events.borrow().is_empty(), "nothing is reported while frozen");

                controller.thaw();
                let mut order = Vec::new();
                until(|| {
                    order.extend(waiting(&keeper).unwrap());
                    order.ends_with(b"\n")
                })
                .await;
                assert_eq!(order, Order::Signal(Signal::SIGTERM).encode().as_bytes());
                nix::unistd::write(&stdout, b"after\n").unwrap();
                drop((keeper, stdout, stderr));
                tokio::time::timeout(PATIENCE, monitor).await.unwrap().unwrap();
            })
            .await;
        assert_eq!(*events.borrow(), [ProcessEvent::Exited(ExitReason::Code(0))]);
        assert_eq!(output.instance_lines(), 5, "before, half, during, error during, after: once each");
    }

    #[tokio::test]
    async fn a_monitor_let_go_ends_quietly_and_its_copies_still_work() {
        let (fake, controller, monitor) = adopt_fake(b"");
        let local = tokio::task::LocalSet::new();
        let frozen = local
            .run_until(async {
                let monitor = tokio::task::spawn_local(monitor);
                (&fake.keeper).write_all(b"exit co").unwrap();
                let frozen = controller.freeze().await.expect("a running monitor freezes");
                controller.let_go();
                tokio::time::timeout(PATIENCE, monitor).await.unwrap().unwrap();
                frozen
            })
            .await;
        assert!(fake.events.borrow().is_empty(), "no Exited");
        assert_eq!(frozen.unread, b"exit co", "the half line read before the freeze");
        assert_eq!(waiting(&fake.keeper), Some(Vec::new()), "the copy holds the keeper's socket open");
        (&fake.keeper).write_all(b"de 0\n").unwrap();
        assert_eq!(waiting(&frozen.control), Some(b"de 0\n".to_vec()));
        nix::unistd::write(&fake.stdout, b"for the successor\n").unwrap();
        let mut read = [0u8; 64];
        let length = nix::unistd::read(frozen.stdout.as_raw_fd(), &mut read).unwrap();
        assert_eq!(&read[..length], b"for the successor\n");
        assert_eq!(fake.output.instance_lines(), 0, "nothing was printed");
    }

    #[tokio::test]
    async fn an_adopted_monitor_handles_the_unread_bytes_first() {
        for (unread, rest, code) in [(&b"exit code 0\n"[..], &b""[..], 0), (b"exit co", b"de 3\n", 3)] {
            let (fake, _controller, monitor) = adopt_fake(unread);
            (&fake.keeper).write_all(rest).unwrap();
            drop((fake.keeper, fake.stdout, fake.stderr));
            tokio::time::timeout(PATIENCE, monitor).await.unwrap();
            assert_eq!(*fake.events.borrow(), [ProcessEvent::Exited(ExitReason::Code(code))], "{unread:?}");
        }
    }

    #[tokio::test]
    async fn a_monitor_whose_keeper_closed_its_socket_does_not_freeze() {
        let (fake, controller, monitor) = adopt_fake(b"");
        (&fake.keeper).write_all(Report::Exit(ExitReason::Code(0)).encode().as_bytes()).unwrap();
        drop(fake.keeper);
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let monitor = tokio::task::spawn_local(monitor);
                assert!(controller.freeze().await.is_none(), "the instance is ending");
                drop((fake.stdout, fake.stderr));
                tokio::time::timeout(PATIENCE, monitor).await.unwrap().unwrap();
                assert!(controller.freeze().await.is_none(), "the monitor ended");
            })
            .await;
        assert_eq!(*fake.events.borrow(), [ProcessEvent::Exited(ExitReason::Code(0))]);
    }

    #[tokio::test]
    async fn a_freeze_given_up_on_leaves_the_monitor_running() {
        let (fake, controller, monitor) = adopt_fake(b"");
        let asked = std::time::Instant::now();
        assert!(controller.freeze().await.is_none(), "a monitor not running does not answer");
        assert!(asked.elapsed() < 2 * FREEZE_ANSWER);
        nix::unistd::write(&fake.stdout, b"still read\n").unwrap();
        (&fake.keeper).write_all(Report::Exit(ExitReason::Code(0)).encode().as_bytes()).unwrap();
        drop((fake.keeper, fake.stdout, fake.stderr));
        tokio::time::timeout(PATIENCE, monitor).await.unwrap();
        assert_eq!(*fake.events.borrow(), [ProcessEvent::Exited(ExitReason::Code(0))]);
        assert_eq!(fake.output.instance_lines(), 1);
    }
}
