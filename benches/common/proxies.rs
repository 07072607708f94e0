//! Starting procgate, HAProxy and other proxies as contenders, on free loopback ports.
//!
//! procgate also runs the backends as its two instances; HAProxy and the others stand in front
//! of the same two. Also: the ports of a run, config templates filled in, version lines.

use super::backend::Backends;
use super::process::{Proxy, CONNECTED, POLL_INTERVAL};
use super::report::{HAPROXY_INDEX, PROCGATE_INDEX};
use super::rounds::Contender;
use anyhow::{bail, Context};
use nix::sys::signal::Signal;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// The procgate binary cargo built for this bench (the bench profile is an optimised build).
const BUILT: &str = env!("CARGO_BIN_EXE_procgate");

/// The procgate binary the bench runs: `BENCH_PROCGATE` (another build, to compare two
/// versions against the same HAProxy), else the one cargo built.
pub fn procgate_binary() -> String {
    std::env::var("BENCH_PROCGATE").unwrap_or_else(|_| BUILT.to_string())
}
/// procgate's instances, hence backends.
const BACKENDS: u16 = 2;
/// procgate's optional settings file in its app root.
const SETTINGS_FILE: &str = "procgate.toml";
/// Where to look for free ports: below Linux's default ephemeral range (32768-60999), so the
/// clients' outgoing connections never take them.
const PORT_SEARCH: std::ops::Range<u16> = 20_000..32_000;
/// The `global` section of both benches' HAProxy configurations, before the bench's own part.
/// `no strict-limits`: HAProxy would want 2 x maxconn descriptors and refuse to start when it
/// cannot raise its limit that far; like procgate, it runs within the inherited limit instead.
const HAPROXY_GLOBAL: &str = "\
global
    maxconn 20000
    nbthread 2
    no strict-limits

";
/// Longest wait for procgate's instances to join its routing (its first checks included).
const PROCGATE_READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A block of loopback ports of one run: two backends', then the frontends of the contenders in
/// front of them.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// The first backend's port; the second is the next one.
    pub base: u16,
}

impl Ports {
    /// Finds free ports on 127.0.0.1 (procgate refuses a taken one) for `B` blocks, block `i`
    /// made of two backends then `frontends[i]` contenders' frontends; the blocks follow one
    /// another, all ports of all blocks free.
    pub fn find<const B: usize>(frontends: [usize; B]) -> anyhow::Result<[Ports; B]> {
        let sizes = frontends.map(|count| BACKENDS + count as u16);
        let needed: u16 = sizes.iter().sum();
        let offset = std::process::id() as u16 % (PORT_SEARCH.len() as u16);
        let candidates =
            (0..PORT_SEARCH.len() as u16).map(|i| PORT_SEARCH.start + (offset + i) % PORT_SEARCH.len() as u16);
        let fits = |first: u16| first + needed <= PORT_SEARCH.end;
        let mut base = candidates
            .filter(|&first| fits(first))
            .find(|&first| (first..first + needed).all(is_free))
            .context("no free ports on 127.0.0.1")?;
        Ok(sizes.map(|size| {
            let block = Ports { base };
            base += size;
            block
        }))
    }

    pub fn backends(&self) -> Vec<SocketAddr> {
        (0..BACKENDS).map(|k| local(self.base + k)).collect()
    }

    /// The frontend port of contender `index` in this block (procgate 0, HAProxy 1, then the
    /// bench's others).
    pub fn frontend(&self, index: usize) -> u16 {
        self.base + BACKENDS + index as u16
    }

    pub fn procgate(&self) -> u16 {
        self.frontend(PROCGATE_INDEX)
    }

    pub fn haproxy(&self) -> u16 {
        self.frontend(HAPROXY_INDEX)
    }
}

fn is_free(port: u16) -> bool {
    TcpListener::bind(local(port)).is_ok()
}

pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// What sets a procgate contender apart from the run's others.
pub struct Procgate {
    /// Its name in the report; its app root is the run's directory joined with it.
    pub name: &'static str,
    /// Its backends, and its frontend ([`Ports::procgate`]).
    pub ports: Ports,
    /// The text of the procgate.toml in its app root, if it has one.
    pub settings: Option<String>,
    /// Process types of the Procfile after the backends', one instance each: name and command.
    pub more_types: Vec<(&'static str, String)>,
    /// Other contenders stand in front of its backends too, so that nothing more can be measured
    /// once it exits.
    pub shared: bool,
}

/// Starts `procgate start` in an app root of its own under `dir` (its Procfile and procgate.toml)
/// with the bench binary as its two instances (`backends`) and `args` after the common ones,
/// and waits until both joined its routing. Fails only when the backends do not come up;
/// procgate is out (but kept, as it runs the backends) when its part under test is not ready.
pub fn start_procgate(
    dir: &Path,
    procgate: &Procgate,
    backends: &Backends,
    args: &[&str],
) -> anyhow::Result<Contender> {
    let Procgate { name, ports, shared, .. } = *procgate;
    let root = dir.join(name);
    std::fs::create_dir(&root)?;
    if let Some(settings) = &procgate.settings {
        std::fs::write(root.join(SETTINGS_FILE), settings)?;
    }
    let bench = std::env::current_exe()?;
    let procfile = root.join("Procfile");
    let mut lines = format!("{}: exec {}\n", backends.kind, shell_quote(&bench));
    let mut formation = format!("{}={BACKENDS}", backends.kind);
    for (kind, command) in &procgate.more_types {
        lines.push_str(&format!("{kind}: {command}\n"));
        formation.push_str(&format!(",{kind}=1"));
    }
    std::fs::write(&procfile, lines)?;
    let mut command = Command::new(procgate_binary());
    command
        .arg("start")
        .arg("-f")
        .arg(&procfile)
        .args(["-m", &formation, "-p", &ports.base.to_string()])
        .args(args)
        .env(backends.env, "1");
    // Its main process, the anchor's child, does the proxying (src/anchor.rs).
    let mut proxy = Proxy::spawn(name, local(ports.procgate()), command, Signal::SIGINT, true)?;
    let ready = wait_connected(&mut proxy, backends.part)?;
    for backend in ports.backends() {
        proxy.wait_listening(backend).with_context(|| format!("the {} did not come up", backends.what))?;
    }
    let ready = match ready {
        Ok(()) => proxy.wait_listening(proxy.addr).map_err(|err| format!("{err:#}")),
        Err(why) => Err(why),
    };
    Ok(Contender { name, proxy: Some(proxy), out: ready.err(), backends: shared.then_some(backends.what) })
}

/// Waits for `201 app connected` of every instance; `Err` (as a value) if it does not come.
fn wait_connected(proxy: &mut Proxy, part: &str) -> anyhow::Result<Result<(), String>> {
    let deadline = Instant::now() + PROCGATE_READY_TIMEOUT;
    loop {
        if proxy.connected() >= usize::from(BACKENDS) {
            return Ok(Ok(()));
        }
        if let Some(exit) = proxy.exited() {
            bail!("{exit}");
        }
        if Instant::now() >= deadline {
            return Ok(Err(format!(
                "{} printed `{CONNECTED}` for {} of {BACKENDS} instances within \
                 {PROCGATE_READY_TIMEOUT:?}: {part} not ready; its last lines:\n{}",
                proxy.name,
                proxy.connected(),
                proxy.tail().trim_end()
            )));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// A proxy other than procgate as a contender, or why it is out; and its version line for the
/// notes (`not available` when out).
pub fn start_contender(
    name: &'static str,
    version: anyhow::Result<String>,
    start: impl FnOnce() -> anyhow::Result<Proxy>,
) -> (Contender, String) {
    match version.and_then(|version| Ok((start()?, version))) {
        Ok((proxy, version)) => (Contender { name, proxy: Some(proxy), out: None, backends: None }, version),
        Err(err) => (Contender::absent(name, err), "not available".to_string()),
    }
}

/// HAProxy as the second contender, started in the foreground with [`HAPROXY_GLOBAL`] and the
/// bench's `config` (a template for [`fill`]) in front of the backends, once it listens; or why
/// it is out. And its version line (`HAProxy version 2.6.12-1 ...`).
pub fn start_haproxy(executable: &Path, dir: &Path, ports: Ports, config: &str) -> (Contender, String) {
    start_contender("haproxy", version(executable, "BENCH_HAPROXY"), || {
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, HAPROXY_GLOBAL.to_string() + &fill(config, ports.haproxy(), ports))?;
        let mut command = Command::new(executable);
        command.arg("-db").arg("-f").arg(&path);
        let mut proxy = Proxy::spawn("haproxy", local(ports.haproxy()), command, Signal::SIGTERM, false)?;
        proxy.wait_listening(proxy.addr)?;
        Ok(proxy)
    })
}

/// A proxy's config with its frontend (`{FRONTEND}`) and the two backends (`{BACKEND1}`,
/// `{BACKEND2}`) filled in.
pub fn fill(template: &str, frontend: u16, ports: Ports) -> String {
    let backends = ports.backends();
    template
        .replace("{FRONTEND}", &local(frontend).to_string())
        .replace("{BACKEND1}", &backends[0].to_string())
        .replace("{BACKEND2}", &backends[1].to_string())
}

/// The first line `executable -v` prints, on stdout (HAProxy) or stderr (nginx), which also
/// proves it runs; `knob` is the variable that sets the executable's path.
pub fn version(executable: &Path, knob: &str) -> anyhow::Result<String> {
    let out = Command::new(executable)
        .arg("-v")
        .output()
        .with_context(|| format!("cannot run {} (set {knob} to its path)", executable.display()))?;
    let text = [out.stdout, out.stderr].concat();
    let text = String::from_utf8_lossy(&text);
    Ok(text.lines().next().unwrap_or("unknown version").to_string())
}

/// Single-quotes a path for `/bin/sh`.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}
