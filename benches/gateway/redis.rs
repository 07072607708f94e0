//! The gateway bench's Redis loads: one redis-server, the `redis` instance of a procgate of its
//! own, behind that procgate's gateway and HAProxy (a second frontend of HAProxy's), loaded by
//! redis-benchmark with 50 clients, without pipelining and with 16 commands per pipeline. Its own
//! procgate, so plain procgate keeps one route (two would halve the room of each route's
//! descriptor budget, and the held connections would not fit). The figures: requests per second,
//! and the CPU time of the proxy's processes per request (procgate's: that procgate's).
//!
//! Only when redis-server and redis-benchmark are installed and the instance's port is free;
//! otherwise its rows show `n/a` and the notes say why.

use crate::common::process::Proxy;
use crate::common::proxies::{local, procgate_binary, Ports};
use anyhow::{bail, Context};
use nix::sys::signal::Signal;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// procgate's process type running the redis-server.
pub const KIND: &str = "redis";
/// Commands per pipeline (`-P`) of the loads.
pub const PIPELINES: [usize; 2] = [1, 16];
/// redis-benchmark's clients (`-c`).
const CLIENTS: &str = "50";
/// redis-benchmark's tests (`-t`); `ping` runs two (inline and bulk).
const TESTS: &str = "ping,set,get";
/// Tests redis-benchmark runs for [`TESTS`].
const TEST_COUNT: u64 = 4;
/// Requests per second expected through a proxy at each pipeline depth, to size `-n` so that a
/// measurement lasts about `BENCH_SECONDS`.
const EXPECTED_RATE: [f64; 2] = [100_000.0, 500_000.0];
/// A measurement taking this many times `BENCH_SECONDS` (plus a second) is stopped as stuck.
const STUCK_FACTOR: u32 = 10;
/// The redis-server's port: this far above the run's first port, outside its blocks.
const SERVER_OFFSET: u16 = 100;
/// The redis-server command of procgate's instance, without persistence.
const SERVER_COMMAND: &str = "exec redis-server --port $PORT --bind 127.0.0.1 --save '' --appendonly no";
/// The name of the Redis procgate's app root and in messages.
const PROCGATE_NAME: &str = "procgate-redis";

/// Where the Redis of a run listens: the server, and procgate's and HAProxy's frontends.
#[derive(Debug, Clone, Copy)]
pub struct Redis {
    pub server: SocketAddr,
    pub procgate: SocketAddr,
    pub haproxy: SocketAddr,
}

/// procgate's frontend places for the Redis route and HAProxy's, after the two echo frontends.
const PROCGATE_FRONTEND: usize = 2;
const HAPROXY_FRONTEND: usize = 3;

/// The Redis of a run with procgate's backends at `ports`, or why there is none.
pub fn plan(ports: Ports) -> anyhow::Result<Redis> {
    for program in ["redis-server", "redis-benchmark"] {
        std::process::Command::new(program)
            .arg("--version")
            .output()
            .with_context(|| format!("needs {program} on PATH"))?;
    }
    let server = local(ports.base + SERVER_OFFSET);
    if std::net::TcpListener::bind(server).is_err() {
        bail!("the Redis instance's port {server} is taken");
    }
    Ok(Redis {
        server,
        procgate: local(ports.frontend(PROCGATE_FRONTEND)),
        haproxy: local(ports.frontend(HAPROXY_FRONTEND)),
    })
}

impl Redis {
    /// The procgate running the redis-server as its one instance, once its route serves.
    pub fn start_procgate(&self, dir: &Path) -> anyhow::Result<Proxy> {
        let root = dir.join(PROCGATE_NAME);
        std::fs::create_dir(&root)?;
        let settings = format!("[types.{KIND}]\nlisten = \"{}\"\n", self.procgate);
        std::fs::write(root.join("procgate.toml"), settings)?;
        let procfile = root.join("Procfile");
        std::fs::write(&procfile, format!("{KIND}: {SERVER_COMMAND}\n"))?;
        let mut command = std::process::Command::new(procgate_binary());
        command.arg("start").arg("-f").arg(&procfile).args(["-m", &format!("{KIND}=1")]);
        command.args(["-p", &self.server.port().to_string(), "--grace", "1s"]);
        let mut proxy = Proxy::spawn(PROCGATE_NAME, self.procgate, command, Signal::SIGINT, true)?;
        proxy.wait_listening(self.server)?;
        proxy.wait_listening(self.procgate)?;
        Ok(proxy)
    }

    /// For the notes.
    pub fn summary(&self) -> String {
        format!(
            "one redis-server on {} (the `{KIND}` instance of a procgate of its own: {SERVER_COMMAND}), that \
             procgate's gateway on {} and HAProxy on {} in front of it; redis-benchmark -c {CLIENTS} -t {TESTS} -P {{1, 16}}, \
             req/s = tests / sum of 1/rps",
            self.server, self.procgate, self.haproxy
        )
    }

    /// HAProxy's frontend and backend for it, after the echo ones.
    pub fn haproxy_config(&self) -> String {
        format!(
            "\nfrontend redis\n    bind {}\n    maxconn 20000\n    default_backend redis\n\n\
             backend redis\n    server redis1 {} check inter 2s\n",
            self.haproxy, self.server
        )
    }
}

/// What a redis-benchmark run did.
pub struct Run {
    /// Over its tests: their total requests over their total time.
    pub per_second: f64,
    /// Its requests, all tests together.
    pub requests: f64,
}

/// redis-benchmark through `addr` with `PIPELINES[at]` commands per pipeline.
pub async fn benchmark(addr: SocketAddr, at: usize, seconds: Duration) -> anyhow::Result<Run> {
    let requests = (EXPECTED_RATE[at] * seconds.as_secs_f64() / TEST_COUNT as f64).max(1_000.0) as u64;
    let mut command = Command::new("redis-benchmark");
    command
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string(), "-c", CLIENTS])
        .args(["-P", &PIPELINES[at].to_string(), "-n", &requests.to_string(), "-t", TESTS, "--csv"])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let stuck = seconds * STUCK_FACTOR + Duration::from_secs(1);
    let out = tokio::time::timeout(stuck, command.output())
        .await
        .with_context(|| format!("redis-benchmark took more than {stuck:?}"))??;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("redis-benchmark {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    let per_second = overall_rate(&text).with_context(|| format!("unexpected redis-benchmark output: {text}"))?;
    Ok(Run { per_second, requests: (requests * TEST_COUNT) as f64 })
}

/// Tests over the sum of their seconds per request, from the `"TEST","rps",...` CSV lines.
fn overall_rate(csv: &str) -> Option<f64> {
    let rates: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|line| line.split(',').nth(1)?.trim_matches('"').parse().ok())
        .collect::<Option<_>>()?;
    let seconds_per_request: f64 = rates.iter().map(|rate| 1.0 / rate).sum();
    (rates.len() as u64 == TEST_COUNT && seconds_per_request > 0.0).then(|| rates.len() as f64 / seconds_per_request)
}
