//! Helpers for the black-box tests: an app directory, the procgate binary running on it, its
//! output read line by line, free ports, process checks. Every wait has a deadline.
#![allow(dead_code)]

pub mod http_client;
pub mod line_client;
pub mod needs;
pub mod shutdown;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The procgate binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_procgate");

/// How long any single expected event may take.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A temporary app directory with a Procfile and optional other files.
pub struct App {
    pub dir: tempfile::TempDir,
}

impl App {
    pub fn new(procfile: &str) -> App {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Procfile"), procfile).unwrap();
        App { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// `procgate ARGS` in the app directory, waited for with a deadline.
    pub fn run(&self, args: &[&str]) -> Finished {
        let child = self.command(args).spawn().unwrap();
        Running::watch(child).finish(DEADLINE)
    }

    /// `program ARGS` (another procgate binary, a shell that sets limits first...) started in the
    /// app directory as [`App::spawn`] starts procgate, with `envs` added; output captured.
    pub fn spawn_program(&self, program: &Path, args: &[&str], envs: &[(&str, &str)]) -> Running {
        let mut command = Command::new(program);
        command.args(args).envs(envs.iter().copied()).current_dir(self.path()).env("NO_COLOR", "1");
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        Running::watch(command.spawn().unwrap())
    }

    /// `procgate ARGS` started in the app directory, output captured.
    pub fn spawn(&self, args: &[&str]) -> Running {
        Running::watch(self.command(args).spawn().unwrap())
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command.args(args);
        // Tests never bind the default gateway and router ports: parallel tests would collide.
        for flag in ["--tcp-listen", "--web-listen"] {
            if args.first() == Some(&"start") && !args.contains(&flag) {
                command.args([flag, "127.0.0.1:0"]);
            }
        }
        command
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .env_remove("PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }
}

/// A procgate process whose stdout and stderr lines arrive on a channel.
pub struct Running {
    pub child: Child,
    lines: Receiver<String>,
    pub seen: Vec<String>,
}

/// A procgate process that has exited.
pub struct Finished {
    pub status: ExitStatus,
    pub lines: Vec<String>,
}

impl Finished {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn has(&self, needle: &str) -> bool {
        self.lines.iter().any(|l| matches(l, needle))
    }

    /// Index of the first line containing `needle`.
    pub fn position(&self, needle: &str) -> usize {
        self.lines
            .iter()
            .position(|l| matches(l, needle))
            .unwrap_or_else(|| panic!("no `{needle}` in:\n{}", self.text()))
    }
}

impl Running {
    pub fn watch(mut child: Child) -> Running {
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Running { child, lines, seen: Vec::new() }
    }

    /// The pid procgate was started with: its anchor (src/anchor.rs), for `start`.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// procgate's main process under its anchor: the anchor's one child.
    pub fn main_pid(&self) -> i32 {
        let anchor = self.pid();
        let children = std::fs::read_to_string(format!("/proc/{anchor}/task/{anchor}/children")).unwrap();
        children.split_whitespace().next().expect("the anchor has its main process").parse().unwrap()
    }

    /// Waits for a line containing `needle` (name padding ignored) and returns it.
    pub fn wait_for(&mut self, needle: &str) -> String {
        self.wait_for_within(needle, DEADLINE)
    }

    pub fn wait_for_within(&mut self, needle: &str, limit: Duration) -> String {
        self.wait_for_nth(needle, 1, limit)
    }

    /// Waits for the `nth` (1-based) line containing `needle`, counting lines already seen.
    pub fn wait_for_nth(&mut self, needle: &str, nth: usize, limit: Duration) -> String {
        if let Some(line) = self.seen.iter().filter(|l| matches(l, needle)).nth(nth - 1) {
            return line.clone();
        }
        let mut count = self.seen.iter().filter(|l| matches(l, needle)).count();
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    count += usize::from(matches(&line, needle));
                    if count == nth {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no `{needle}` within {limit:?}; output:\n{}", self.seen.join("\n"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("procgate exited before `{needle}`; output:\n{}", self.seen.join("\n"))
                }
            }
        }
    }

    /// The pid in a `NAME started with pid N` line.
    pub fn pid_of(&mut self, instance: &str) -> i32 {
        let line = self.wait_for(&format!("{instance} started with pid "));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// Reads the rest of the output until procgate exits, within `limit`.
    pub fn finish(mut self, limit: Duration) -> Finished {
        let deadline = Instant::now() + limit;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!("procgate still running after {limit:?}; output:\n{}", self.seen.join("\n"));
                }
            }
        }
        let status = self.child.wait().unwrap();
        Finished { status, lines: std::mem::take(&mut self.seen) }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// True when `line` contains `needle`, ignoring the padding of the name column.
pub fn matches(line: &str, needle: &str) -> bool {
    squash(line).contains(&squash(needle))
}

fn squash(text: &str) -> String {
    text.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Port blocks for instances: below the ephemeral range (32768+), so client sockets never take them.
const BLOCKS: std::ops::Range<u16> = 200..320;

/// Blocks this test process holds: the file locks keep other test processes (a second suite,
/// nextest's processes) off them until this one exits.
static HELD: std::sync::Mutex<Vec<nix::fcntl::Flock<std::fs::File>>> = std::sync::Mutex::new(Vec::new());

/// A base port whose blocks `base + 100*k .. + count` for `types` types are free, and that no
/// other test (of this process or another) gets.
pub fn free_base_port(types: u16, count: u16) -> u16 {
    let dir = std::env::temp_dir().join("procgate-test-ports");
    std::fs::create_dir_all(&dir).unwrap();
    let start = (RandomState::new().build_hasher().finish() % u64::from(BLOCKS.len() as u16)) as u16;
    for offset in 0..BLOCKS.len() as u16 {
        let block = BLOCKS.start + (start + offset) % (BLOCKS.len() as u16 - types);
        let Some(locks) = lock_blocks(&dir, block, types) else { continue };
        let base = block * 100;
        let ports = (0..types).flat_map(|k| (0..count).map(move |i| base + 100 * k + i));
        if ports.into_iter().all(|p| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok()) {
            HELD.lock().unwrap().extend(locks);
            return base;
        }
    }
    panic!("no free port block found");
}

/// Locks blocks `block..block+types`, or none if another test holds one of them.
fn lock_blocks(dir: &Path, block: u16, types: u16) -> Option<Vec<nix::fcntl::Flock<std::fs::File>>> {
    use nix::fcntl::{Flock, FlockArg};
    let mut locks = Vec::new();
    for k in 0..types {
        let file = std::fs::File::create(dir.join(format!("{}.lock", block + k))).unwrap();
        locks.push(Flock::lock(file, FlockArg::LockExclusiveNonblock).ok()?);
    }
    Some(locks)
}

/// Connects from `source` (any 127.0.0.0/8 address, standing for another machine) to `addr`;
/// reads are bounded by the deadline.
pub fn try_connect_from(source: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::AsRawFd;
    let (IpAddr::V4(v4), SocketAddr::V4(target)) = (source, addr) else { panic!("IPv4 only") };
    let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    bind(fd.as_raw_fd(), &SockaddrIn::from(std::net::SocketAddrV4::new(v4, 0)))?;
    connect(fd.as_raw_fd(), &SockaddrIn::from(target))?;
    let stream = TcpStream::from(fd);
    stream.set_read_timeout(Some(DEADLINE))?;
    Ok(stream)
}

/// [`try_connect_from`], which must succeed.
pub fn connect_from(source: IpAddr, addr: SocketAddr) -> TcpStream {
    try_connect_from(source, addr).unwrap_or_else(|err| panic!("connect from {source} to {addr}: {err}"))
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat[stat.rfind(')').unwrap() + 1..].trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

/// Waits until `found` gives a value, looking every 10 ms; panics with `what` after `limit`.
pub fn wait_until<T>(limit: Duration, what: &str, mut found: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(value) = found() {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until every pid is gone; panics with the survivors after `limit`.
pub fn wait_gone(pids: &[i32], limit: Duration) {
    let deadline = Instant::now() + limit;
    while pids.iter().any(|&p| alive(p)) {
        assert!(
            Instant::now() < deadline,
            "still alive after {limit:?}: {:?}",
            pids.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An app whose `tcp` type is the graceful sample echo server (printing its `TCP_URL` first),
/// plus the `extra` Procfile lines.
pub fn echo_app(extra: &str) -> App {
    let echo = repo().join("sample-apps/python/echo_server.py");
    App::new(&format!("tcp: echo url=$TCP_URL; exec python3 {}\n{extra}", echo.display()))
}

/// Starts procgate with `formation` on free ports (`--grace 2s` unless `extra` sets it); returns
/// it with the gateway's address, once `tcp.1` has printed it.
pub fn start_gateway(app: &App, formation: &str, extra: &[&str]) -> (Running, std::net::SocketAddr) {
    let base = free_base_port(2, 4).to_string();
    let mut args = vec!["start", "-m", formation, "-p", &base, "--tcp-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    if !extra.contains(&"--grace") {
        args.extend(["--grace", "2s"]);
    }
    let mut running = app.spawn(&args);
    let line = running.wait_for("tcp.1 | url=tcp://");
    let addr = line.split("url=tcp://").nth(1).unwrap().parse().unwrap();
    (running, addr)
}

/// `procgate ps --json` in the app's directory.
pub fn ps(app: &App) -> procgate::control::PsReply {
    let finished = app.run(&["ps", "--json"]);
    assert_eq!(finished.code(), Some(0), "{}", finished.text());
    serde_json::from_str(&finished.lines[0]).unwrap()
}

/// Where `cargo test` put the examples (the Rust samples): next to this test's `deps` directory.
pub fn example(name: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("examples").join(name);
    assert!(
        path.is_file(),
        "{} is missing: `cargo test` builds the examples (or `cargo build --examples`)",
        path.display()
    );
    path.display().to_string()
}

/// The repository root, for sample apps and procfiles.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl App {
    /// A private copy of `procfiles/NAME` (its control socket must not be shared between tests),
    /// with the Procfile's paths to the repository made absolute.
    pub fn from_procfiles(name: &str) -> App {
        let source = repo().join("procfiles").join(name);
        let text = std::fs::read_to_string(source.join("Procfile")).unwrap();
        let app = App::new(&text.replace("../../", &format!("{}/", repo().display())));
        for entry in std::fs::read_dir(&source).unwrap().map(Result::unwrap) {
            let name = entry.file_name();
            if name != "Procfile" && entry.path().is_file() {
                std::fs::copy(entry.path(), app.path().join(name)).unwrap();
            }
        }
        app
    }
}
