//! The three proxies under test: procgate, which also runs the HTTP backends as its two `web`
//! instances, and HAProxy and nginx in front of the same two backends; their ports, configs
//! and versions.

use crate::backend::BACKEND_ENV;
use crate::process::{Proxy, CONNECTED, POLL_INTERVAL};
use anyhow::{bail, Context};
use nix::sys::signal::Signal;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// The procgate binary cargo built for this bench (the bench profile is an optimised build).
pub const PROCGATE: &str = env!("CARGO_BIN_EXE_procgate");
/// Instances of the `web` type, hence HTTP backends.
const BACKENDS: u16 = 2;
/// Where to look for free ports: below Linux's default ephemeral range (32768-60999), so the
/// clients' outgoing connections never take them.
const PORT_SEARCH: std::ops::Range<u16> = 20_000..32_000;
/// Consecutive free ports needed: the backends, procgate's router, HAProxy's and nginx's frontends.
const PORTS_NEEDED: u16 = BACKENDS + 3;
/// Longest wait for procgate's instances to join its routing (its first HTTP checks included).
const PROCGATE_READY_TIMEOUT: Duration = Duration::from_secs(15);
/// nginx's connections per worker process, clients and upstreams together.
const NGINX_WORKER_CONNECTIONS: u64 = 10_000;
/// The HAProxy configuration: an HTTP load balancer over the same two backends, with HTTP
/// checks (`GET /`) every 2 s as procgate checks its web instances.
/// `http-reuse always`: any request may go on an idle server connection, as procgate's pool
/// does (`safe`, the default, would open a server connection for each client's first request).
/// `no strict-limits`: HAProxy would want 2 x maxconn descriptors and refuse to start when it
/// cannot raise its limit that far; like procgate, it runs within the inherited limit instead.
const HAPROXY_CONFIG: &str = "\
global
    maxconn 20000
    nbthread 2
    no strict-limits

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 1s
    timeout client 30s
    timeout server 30s

frontend bench
    bind {FRONTEND}
    maxconn 20000
    default_backend web

backend web
    balance leastconn
    option httpchk GET /
    server web1 {BACKEND1} check inter 2s
    server web2 {BACKEND2} check inter 2s
";
/// One line for the report's notes.
pub const HAPROXY_SUMMARY: &str = "mode http, balance leastconn, nbthread 2, option http-keep-alive, http-reuse \
always, maxconn 20000, timeout connect 1s, client/server 30s, HTTP checks GET / every 2s, no strict-limits, one \
process (-db)";
/// The nginx configuration: a reverse proxy over the same two backends with a pool of
/// kept-alive upstream connections, and no limit to the requests of one connection (the
/// default 1000 would close clients' and upstream connections that the other proxies keep).
/// Logs go to stderr, everything else to the run's temporary directory.
const NGINX_CONFIG: &str = "\
worker_processes 2;
worker_rlimit_nofile {NOFILE};
pid {DIR}/nginx.pid;
error_log stderr warn;

events {
    worker_connections {WORKER_CONNECTIONS};
}

http {
    access_log off;
    client_body_temp_path {DIR}/client_body;
    proxy_temp_path {DIR}/proxy;
    fastcgi_temp_path {DIR}/fastcgi;
    uwsgi_temp_path {DIR}/uwsgi;
    scgi_temp_path {DIR}/scgi;
    keepalive_requests 1000000000;
    keepalive_timeout 30s;

    upstream web {
        least_conn;
        server {BACKEND1};
        server {BACKEND2};
        keepalive 64;
        keepalive_requests 1000000000;
        keepalive_timeout 30s;
    }

    server {
        listen {FRONTEND};
        location / {
            proxy_pass http://web;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_connect_timeout 1s;
        }
    }
}
";

/// One line for the report's notes.
pub fn nginx_summary(fd_limit: u64) -> String {
    format!(
        "worker_processes 2, worker_rlimit_nofile {fd_limit}, worker_connections {NGINX_WORKER_CONNECTIONS}, \
         upstream least_conn with keepalive 64, proxy_http_version 1.1, Connection \"\", keepalive_requests 10^9 \
         (clients and upstream), keepalive_timeout 30s, access_log off, no active checks, -g 'daemon off;'"
    )
}

/// The loopback ports of one run.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// The first backend's port; the second is the next one.
    pub base: u16,
    pub procgate: u16,
    pub haproxy: u16,
    pub nginx: u16,
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
        Ok(Ports { base, procgate: base + BACKENDS, haproxy: base + BACKENDS + 1, nginx: base + BACKENDS + 2 })
    }

    pub fn backends(&self) -> Vec<SocketAddr> {
        (0..BACKENDS).map(|k| local(self.base + k)).collect()
    }
}

fn is_free(port: u16) -> bool {
    TcpListener::bind(local(port)).is_ok()
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// procgate after its start: running with its backends up; `Err` says why its router is not
/// measured (the backends are up all the same, for the other proxies).
pub struct Procgate {
    pub proxy: Proxy,
    pub router: Result<(), String>,
}

/// Starts `procgate start` with the bench binary as its two `web` instances and waits until
/// both joined its routing. Fails only when the backends do not come up.
pub fn start_procgate(dir: &Path, ports: Ports) -> anyhow::Result<Procgate> {
    let bench = std::env::current_exe()?;
    let procfile = dir.join("Procfile");
    std::fs::write(&procfile, format!("web: exec {}\n", shell_quote(&bench)))?;
    let mut command = Command::new(PROCGATE);
    command
        .arg("start")
        .arg("-f")
        .arg(&procfile)
        .args(["-m", &format!("web={BACKENDS}"), "-p", &ports.base.to_string()])
        .args(["--web-listen", &local(ports.procgate).to_string(), "--tcp-listen", "127.0.0.1:0"])
        .args(["--grace", "1s", "--no-access-log"])
        .env(BACKEND_ENV, "1");
    let mut proxy = Proxy::spawn("procgate", local(ports.procgate), command, Signal::SIGINT, false)?;
    let router = wait_connected(&mut proxy)?;
    for backend in ports.backends() {
        proxy.wait_listening(backend).context("the HTTP backends did not come up")?;
    }
    let router = match router {
        Ok(()) => proxy.wait_listening(proxy.addr).map_err(|err| format!("{err:#}")),
        Err(why) => Err(why),
    };
    Ok(Procgate { proxy, router })
}

/// Waits for `201 app connected` of every instance; `Err` (as a value) if it does not come.
fn wait_connected(proxy: &mut Proxy) -> anyhow::Result<Result<(), String>> {
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
                "procgate printed `{CONNECTED}` for {} of {BACKENDS} instances within \
                 {PROCGATE_READY_TIMEOUT:?}: router not ready; its last lines:\n{}",
                proxy.connected(),
                proxy.tail().trim_end()
            )));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Starts HAProxy in the foreground in front of the backends and waits until it listens.
pub fn start_haproxy(executable: &Path, dir: &Path, ports: Ports) -> anyhow::Result<Proxy> {
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, fill(HAPROXY_CONFIG, ports.haproxy, ports))?;
    let mut command = Command::new(executable);
    command.arg("-db").arg("-f").arg(&path);
    let mut proxy = Proxy::spawn("haproxy", local(ports.haproxy), command, Signal::SIGTERM, false)?;
    proxy.wait_listening(proxy.addr)?;
    Ok(proxy)
}

/// Starts nginx in the foreground (master and workers) in front of the backends, with its
/// prefix, pid file and temporary files in `dir`, and waits until it listens.
pub fn start_nginx(executable: &Path, dir: &Path, ports: Ports, fd_limit: u64) -> anyhow::Result<Proxy> {
    let config = fill(NGINX_CONFIG, ports.nginx, ports)
        .replace("{NOFILE}", &fd_limit.to_string())
        .replace("{WORKER_CONNECTIONS}", &NGINX_WORKER_CONNECTIONS.to_string())
        .replace("{DIR}", &dir.display().to_string());
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config)?;
    let mut command = Command::new(executable);
    command.arg("-p").arg(dir).arg("-c").arg(&path).args(["-e", "stderr", "-g", "daemon off;"]);
    let mut proxy = Proxy::spawn("nginx", local(ports.nginx), command, Signal::SIGTERM, true)?;
    proxy.wait_listening(proxy.addr)?;
    Ok(proxy)
}

/// A proxy's config with its frontend and the two backends filled in.
fn fill(template: &str, frontend: u16, ports: Ports) -> String {
    let backends = ports.backends();
    template
        .replace("{FRONTEND}", &local(frontend).to_string())
        .replace("{BACKEND1}", &backends[0].to_string())
        .replace("{BACKEND2}", &backends[1].to_string())
}

/// HAProxy's version line (`HAProxy version 2.6.12-1 ...`), which also proves it runs.
pub fn haproxy_version(executable: &Path) -> anyhow::Result<String> {
    version(executable, "BENCH_HAPROXY")
}

/// nginx's version line (`nginx version: nginx/1.22.1`), which also proves it runs.
pub fn nginx_version(executable: &Path) -> anyhow::Result<String> {
    version(executable, "BENCH_NGINX")
}

/// The first line `executable -v` prints, on stdout (HAProxy) or stderr (nginx).
fn version(executable: &Path, knob: &str) -> anyhow::Result<String> {
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
