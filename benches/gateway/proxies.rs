//! The two proxies under test, as child processes: procgate, which also runs the echo backends
//! as its two `tcp` instances, and HAProxy in front of the same two backends.
//!
//! Each proxy's stdout and stderr are read on threads of their own so the pipes never fill; the
//! last lines are kept to explain a failure. Dropping a [`Proxy`] stops it.

use crate::echo::ECHO_ENV;
use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::{BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The procgate binary cargo built for this bench (the bench profile is an optimised build).
pub const PROCGATE: &str = env!("CARGO_BIN_EXE_procgate");
/// procgate's line when an instance joins the routing: `... system | 201 app connected tcp.1 ...`.
const CONNECTED: &str = "201 app connected";
/// Instances of the `tcp` type, hence echo backends.
const BACKENDS: u16 = 2;
/// Where to look for free ports: below Linux's default ephemeral range (32768-60999), so the
/// clients' outgoing connections never take them.
const PORT_SEARCH: std::ops::Range<u16> = 20_000..32_000;
/// Consecutive free ports needed: the backends, procgate's gateway, HAProxy's frontend.
const PORTS_NEEDED: u16 = BACKENDS + 2;
/// Longest wait for procgate's instances to join its routing.
const PROCGATE_READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait for a port to accept connections.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two readiness checks.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Longest wait for a proxy to exit after its stop signal, before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Output lines kept per proxy to explain a failure.
const TAIL_LINES: usize = 20;
/// The HAProxy configuration: a plain TCP load balancer over the same two backends, with TCP
/// health checks every 2 s as procgate probes its instances.
/// `no strict-limits`: HAProxy would want 2 x maxconn descriptors and refuse to start when it
/// cannot raise its limit that far; like procgate, it runs within the inherited limit instead.
const HAPROXY_CONFIG: &str = "\
global
    maxconn 20000
    nbthread 2
    no strict-limits

defaults
    mode tcp
    timeout connect 1s
    timeout client 1h
    timeout server 1h

frontend bench
    bind {FRONTEND}
    maxconn 20000
    default_backend echo

backend echo
    balance leastconn
    server tcp1 {BACKEND1} check inter 2s
    server tcp2 {BACKEND2} check inter 2s
";
/// One line for the report's notes.
pub const HAPROXY_SUMMARY: &str = "mode tcp, balance leastconn, nbthread 2, maxconn 20000 (global and frontend), \
timeout connect 1s, client/server 1h, TCP checks every 2s, no strict-limits, one process (-db)";

/// The loopback ports of one run.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// The first backend's port; the second is the next one.
    pub base: u16,
    pub procgate: u16,
    pub haproxy: u16,
}

impl Ports {
    /// Finds `PORTS_NEEDED` consecutive free ports on 127.0.0.1 (procgate refuses a taken one).
    pub fn find() -> anyhow::Result<Ports> {
        let offset = std::process::id() as u16 % (PORT_SEARCH.len() as u16);
        let candidates =
            (0..PORT_SEARCH.len() as u16).map(|i| PORT_SEARCH.start + (offset + i) % PORT_SEARCH.len() as u16);
        let fits = |first: u16| first + PORTS_NEEDED <= PORT_SEARCH.end;
        let base = candidates
            .filter(|&first| fits(first))
            .find(|&first| (first..first + PORTS_NEEDED).all(is_free))
            .context("no free ports on 127.0.0.1")?;
        Ok(Ports { base, procgate: base + BACKENDS, haproxy: base + BACKENDS + 1 })
    }

    pub fn backends(&self) -> Vec<SocketAddr> {
        (0..BACKENDS).map(|k| local(self.base + k)).collect()
    }
}

fn is_free(port: u16) -> bool {
    TcpListener::bind(local(port)).is_ok()
}

pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A running proxy process.
pub struct Proxy {
    pub name: &'static str,
    /// Where clients connect.
    pub addr: SocketAddr,
    child: Child,
    output: Arc<Output>,
    stop_signal: Signal,
}

/// What a proxy printed: the last lines, and the instances procgate said joined its routing.
#[derive(Default)]
struct Output {
    tail: Mutex<VecDeque<String>>,
    connected: Mutex<BTreeSet<String>>,
}

impl Proxy {
    fn spawn(name: &'static str, addr: SocketAddr, mut command: Command, stop_signal: Signal) -> anyhow::Result<Proxy> {
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
        Ok(Proxy { name, addr, child, output, stop_signal })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `None` while running, else how it ended and its last output lines.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => Some(format!("{} {status}; its last lines:\n{}", self.name, self.tail().trim_end())),
            Err(err) => Some(format!("{}: cannot check its status: {err}", self.name)),
        }
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
    fn wait_listening(&mut self, addr: SocketAddr) -> anyhow::Result<()> {
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
    }
}

/// procgate after its start: running with its echo backends up; `Err` says why its gateway is
/// not measured (the backends are up all the same, for HAProxy).
pub struct Procgate {
    pub proxy: Proxy,
    pub gateway: Result<(), String>,
}

/// Starts `procgate start` with the bench binary as its two `tcp` instances and waits until
/// both joined its routing. Fails only when the backends do not come up.
pub fn start_procgate(dir: &Path, ports: Ports) -> anyhow::Result<Procgate> {
    let bench = std::env::current_exe()?;
    let procfile = dir.join("Procfile");
    std::fs::write(&procfile, format!("tcp: exec {}\n", shell_quote(&bench)))?;
    let mut command = Command::new(PROCGATE);
    command
        .arg("start")
        .arg("-f")
        .arg(&procfile)
        .args(["-m", &format!("tcp={BACKENDS}"), "-p", &ports.base.to_string()])
        .args(["--tcp-listen", &local(ports.procgate).to_string(), "--grace", "1s"])
        .env(ECHO_ENV, "1");
    let mut proxy = Proxy::spawn("procgate", local(ports.procgate), command, Signal::SIGINT)?;
    let gateway = wait_connected(&mut proxy)?;
    for backend in ports.backends() {
        proxy.wait_listening(backend).context("the echo backends did not come up")?;
    }
    let gateway = match gateway {
        Ok(()) => proxy.wait_listening(proxy.addr).map_err(|err| format!("{err:#}")),
        Err(why) => Err(why),
    };
    Ok(Procgate { proxy, gateway })
}

/// Waits for `201 app connected` of every instance; `Err` (as a value) if it does not come.
fn wait_connected(proxy: &mut Proxy) -> anyhow::Result<Result<(), String>> {
    let deadline = Instant::now() + PROCGATE_READY_TIMEOUT;
    loop {
        if proxy.output.connected.lock().unwrap().len() >= usize::from(BACKENDS) {
            return Ok(Ok(()));
        }
        if let Some(exit) = proxy.exited() {
            bail!("{exit}");
        }
        if Instant::now() >= deadline {
            let seen = proxy.output.connected.lock().unwrap().len();
            return Ok(Err(format!(
                "procgate printed `{CONNECTED}` for {seen} of {BACKENDS} instances within \
                 {PROCGATE_READY_TIMEOUT:?}: gateway not ready; its last lines:\n{}",
                proxy.tail().trim_end()
            )));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Starts HAProxy in the foreground in front of the backends and waits until it listens.
pub fn start_haproxy(executable: &Path, dir: &Path, ports: Ports) -> anyhow::Result<Proxy> {
    let backends = ports.backends();
    let config = HAPROXY_CONFIG
        .replace("{FRONTEND}", &local(ports.haproxy).to_string())
        .replace("{BACKEND1}", &backends[0].to_string())
        .replace("{BACKEND2}", &backends[1].to_string());
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config)?;
    let mut command = Command::new(executable);
    command.arg("-db").arg("-f").arg(&path);
    let mut proxy = Proxy::spawn("haproxy", local(ports.haproxy), command, Signal::SIGTERM)?;
    proxy.wait_listening(proxy.addr)?;
    Ok(proxy)
}

/// HAProxy's version line (`HAProxy version 2.6.12-1 ...`), which also proves it runs.
pub fn haproxy_version(executable: &Path) -> anyhow::Result<String> {
    let out = Command::new(executable)
        .arg("-v")
        .output()
        .with_context(|| format!("cannot run {} (set BENCH_HAPROXY to its path)", executable.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or("unknown version").to_string())
}

/// Single-quotes a path for `/bin/sh`.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}
