//! A proxy under test as a child process: its output read and kept, its processes, its stop.
//!
//! Its stdout and stderr are read on threads of their own so the pipes never fill, the last
//! lines are kept to explain a failure, procgate's `201 app connected` lines are counted, and
//! dropping a [`Proxy`] stops it.

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::{BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// procgate's line when an instance joins the routing: `... system | 201 app connected web.1 ...`.
pub const CONNECTED: &str = "201 app connected";
/// Longest wait for a port to accept connections.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two readiness checks.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Longest wait for a proxy to exit after its stop signal, before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait, once a proxy exited, for the reading of its last output lines.
const OUTPUT_DRAIN: Duration = Duration::from_millis(500);
/// Output streams read per proxy: stdout and stderr.
const OUTPUT_STREAMS: usize = 2;
/// Output lines kept per proxy to explain a failure.
const TAIL_LINES: usize = 20;

/// A running proxy process.
pub struct Proxy {
    pub name: &'static str,
    /// Where clients connect.
    pub addr: SocketAddr,
    /// A second frontend, in front of another backend (the gateway bench's Redis; the router
    /// bench has none).
    #[allow(dead_code)]
    pub second: Option<Second>,
    child: Child,
    output: Arc<Output>,
    stop_signal: Signal,
    /// Its child processes do the proxying too (nginx's workers, procgate's main process under
    /// its anchor), and count in its CPU and memory.
    workers: bool,
}

/// A proxy's second frontend (the router bench has none).
#[allow(dead_code)]
pub struct Second {
    pub addr: SocketAddr,
    /// The process serving it when that is a proxy of its own (procgate's Redis route, stopped
    /// with this one); `None` when this proxy serves it (HAProxy's second frontend).
    pub own: Option<Box<Proxy>>,
}

/// What a proxy printed: the last lines, and the instances procgate said joined its routing.
#[derive(Default)]
struct Output {
    tail: Mutex<VecDeque<String>>,
    connected: Mutex<BTreeSet<String>>,
    /// Its output streams read to their end (stdout, stderr).
    ended: AtomicUsize,
}

impl Proxy {
    /// Starts `command` with piped output; `workers` as in [`Proxy::pids`].
    pub fn spawn(
        name: &'static str,
        addr: SocketAddr,
        mut command: Command,
        stop_signal: Signal,
        workers: bool,
    ) -> anyhow::Result<Proxy> {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().with_context(|| format!("cannot start {name} ({command:?})"))?;
        let output = Arc::new(Output::default());
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as _),
        ]
        .into_iter()
        .flatten()
        {
            let output = output.clone();
            thread::spawn(move || output.read_lines(stream));
        }
        Ok(Proxy { name, addr, second: None, child, output, stop_signal, workers })
    }

    /// The processes that do the proxying: the proxy itself, and its children if they are
    /// workers (read from /proc at each call, so a respawned worker counts).
    pub fn pids(&self) -> Vec<u32> {
        let pid = self.child.id();
        let mut pids = vec![pid];
        if self.workers {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
            pids.extend(children.split_whitespace().filter_map(|child| child.parse::<u32>().ok()));
        }
        pids
    }

    /// The processes that serve its second frontend (see [`Second::own`]).
    #[allow(dead_code)]
    pub fn second_pids(&self) -> Vec<u32> {
        match self.second.as_ref().and_then(|second| second.own.as_ref()) {
            Some(own) => own.pids(),
            None => self.pids(),
        }
    }

    /// How many distinct instances procgate said joined its routing.
    pub fn connected(&self) -> usize {
        self.output.connected.lock().unwrap().len()
    }

    /// `None` while running, else how it ended and its last output lines (its last words read
    /// first, for up to `OUTPUT_DRAIN`).
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => match self.last_output() {
                tail if tail.is_empty() => Some(format!("{} {status}, with no output", self.name)),
                tail => Some(format!("{} {status}; its last lines:\n{}", self.name, tail.trim_end())),
            },
            Err(err) => Some(format!("{}: cannot check its status: {err}", self.name)),
        }
    }

    /// [`Proxy::tail`] once its output is read to the end (both streams), or after `OUTPUT_DRAIN`
    /// (its children may keep the pipes open).
    fn last_output(&self) -> String {
        let deadline = Instant::now() + OUTPUT_DRAIN;
        while self.output.ended.load(Ordering::SeqCst) < OUTPUT_STREAMS && Instant::now() < deadline {
            thread::sleep(POLL_INTERVAL);
        }
        self.tail()
    }

    /// The last lines the proxy printed, indented.
    pub fn tail(&self) -> String {
        let tail = self.output.tail.lock().unwrap();
        tail.iter().map(|line| format!("    {line}\n")).collect()
    }

    /// Sends the stop signal, waits, SIGKILLs after `STOP_TIMEOUT`; returns the exit status.
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        kill(Pid::from_raw(self.child.id() as i32), self.stop_signal)?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            thread::sleep(POLL_INTERVAL);
        }
        self.child.kill()?;
        bail!("{} did not exit within {STOP_TIMEOUT:?} of {}; killed", self.name, self.stop_signal)
    }

    /// Waits until `addr` accepts connections, or fails if the proxy exits first.
    pub fn wait_listening(&mut self, addr: SocketAddr) -> anyhow::Result<()> {
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        while TcpStream::connect(addr).is_err() {
            if let Some(exit) = self.exited() {
                bail!("{exit}");
            }
            if Instant::now() >= deadline {
                bail!("nothing listens on {addr} {LISTEN_TIMEOUT:?} after starting {}", self.name);
            }
            thread::sleep(POLL_INTERVAL);
        }
        Ok(())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            eprintln!("stopping {}: {err:#}", self.name);
        }
    }
}

impl Output {
    fn read_lines(&self, stream: impl Read) {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Some((_, rest)) = line.split_once(CONNECTED) {
                let instance = rest.split_whitespace().next().unwrap_or_default();
                self.connected.lock().unwrap().insert(instance.to_string());
            }
            let mut tail = self.tail.lock().unwrap();
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        self.ended.fetch_add(1, Ordering::SeqCst);
    }
}
