//! The gateway bench's proxies: procgate's arguments and variants, HAProxy's `mode tcp`
//! configuration.
//!
//! Plain procgate also runs the echo backends as its two `tcp` instances; HAProxy stands in front
//! of the same two. Each variant of procgate (a procgate.toml of its own) is a procgate of its
//! own with two backends of its own. Starting and stopping them is common/proxies.rs's and
//! common/process.rs's.

use crate::common::knobs::Knobs;
use crate::common::process::{Proxy, Second};
use crate::common::proxies::{self, local, Ports, Procgate};
use crate::common::rounds::Contender;
use crate::echo::BACKENDS;
use crate::floor;
use crate::redis::Redis;
use crate::report::FLOOR_INDEX;
use nix::sys::signal::Signal;
use std::net::SocketAddr;
use std::path::Path;

/// Frontends per block of ports: procgate's and HAProxy's in front of the backends they share
/// (then their Redis frontends, then the floor's two), then each variant's in front of its own.
pub const PORT_BLOCKS: [usize; 3] = [6, 1, 1];
/// The floor's Redis frontend in the first block, after its echo frontend (`FLOOR_INDEX`).
const FLOOR_REDIS_FRONTEND: usize = 5;
/// One line for the report's notes.
pub const FLOOR_SUMMARY: &str = "the least a relay can do (benches/gateway/floor.rs): the bench binary, 2 threads, \
each an SO_REUSEPORT listener and a level-triggered epoll, blocking connect to the backends in turn, one read \
(64 KiB) and one write per readable socket; no timeouts, limits, checks or logs";
/// procgate's arguments after `--tcp-listen ADDR`.
const PROCGATE_ARGS: [&str; 2] = ["--grace", "1s"];
/// The HAProxy configuration after its `global` section: a plain TCP load balancer over the
/// same two backends, with TCP health checks every 2 s as procgate probes its instances.
const HAPROXY_CONFIG: &str = "\
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

/// A procgate with a procgate.toml, compared with plain procgate.
pub struct Variant {
    pub name: &'static str,
    /// Its procgate.toml.
    pub settings: &'static str,
}

/// procgate writing a PROXY v2 header to its instances before any client byte (and a `LOCAL`
/// one before its health checks); the echo backends read and discard it.
pub const PROXY_V2: Variant = Variant {
    name: "procgate+proxy-v2",
    settings: "\
[types.tcp]
proxy_protocol = \"v2\"
",
};

/// procgate with every cap and per-client limit of the `tcp` type configured, far above what the
/// loads reach (64 concurrent loops, up to 9,000 held connections, about 25,000 new
/// connections/s from 8 client addresses), so that none is hit: the cost of the bookkeeping.
pub const LIMITS: Variant = Variant {
    name: "procgate+limits",
    settings: "\
[types.tcp]
max_per_instance = 1000000
max_per_type = 1000000
backlog = 1000
rate = 1000000
burst = 1000000
max_per_client = 1000000
",
};

impl Variant {
    /// Its procgate.toml on one line: `[types.tcp] proxy_protocol = "v2"`.
    pub fn summary(&self) -> String {
        let mut lines = self.settings.lines();
        let section = lines.next().unwrap_or_default();
        format!("{section} {}", lines.collect::<Vec<_>>().join(", "))
    }
}

/// Plain procgate with the bench binary as its two `tcp` instances, its gateway in front of them
/// (and HAProxy's).
pub fn start_procgate(dir: &Path, ports: Ports) -> anyhow::Result<Contender> {
    start(dir, &Procgate { name: "procgate", ports, settings: None, shared: true })
}

/// A variant of procgate with two backends of its own, or why it is out (the run goes on
/// without it).
pub fn start_variant(dir: &Path, variant: &Variant, ports: Ports) -> Contender {
    let procgate = Procgate { name: variant.name, ports, settings: Some(variant.settings), shared: false };
    start(dir, &procgate).unwrap_or_else(|err| Contender::absent(variant.name, err))
}

fn start(dir: &Path, procgate: &Procgate) -> anyhow::Result<Contender> {
    let listen = local(procgate.ports.procgate()).to_string();
    let args: Vec<&str> = ["--tcp-listen", &listen].into_iter().chain(PROCGATE_ARGS).collect();
    proxies::start_procgate(dir, procgate, &BACKENDS, &args)
}

/// `start -m tcp=2 --tcp-listen 127.0.0.1:P --grace 1s`, for the notes.
pub fn procgate_command(ports: Ports) -> String {
    format!("start -m tcp=2 --tcp-listen {} {}", local(ports.procgate()), PROCGATE_ARGS.join(" "))
}

/// HAProxy in TCP mode, or why it is out; and its version line. With a Redis, a second
/// frontend in front of the redis-server.
pub fn start_haproxy(knobs: &Knobs, dir: &Path, ports: Ports, redis: Option<&Redis>) -> (Contender, String) {
    let config = HAPROXY_CONFIG.to_string() + &redis.map(Redis::haproxy_config).unwrap_or_default();
    let (mut contender, version) = proxies::start_haproxy(&knobs.haproxy, dir, ports, &config);
    if let (Some(redis), Some(proxy)) = (redis, contender.proxy.as_mut()) {
        match proxy.wait_listening(redis.haproxy) {
            Ok(()) => proxy.second = Some(Second { addr: redis.haproxy, own: None }),
            Err(err) => println!("HAProxy's Redis frontend is not measured: {err:#}"),
        }
    }
    (contender, version)
}

/// The floor relay in front of the same two backends as procgate and HAProxy (and of the Redis,
/// if any), or why it is out.
pub fn start_floor(ports: Ports, redis: Option<&Redis>) -> Contender {
    let v4 = |addr: SocketAddr| match addr {
        SocketAddr::V4(v4) => v4,
        SocketAddr::V6(_) => unreachable!("the bench's addresses are on 127.0.0.1"),
    };
    let frontend = local(ports.frontend(FLOOR_INDEX));
    let backends: Vec<_> = ports.backends().into_iter().map(v4).collect();
    let redis = redis.map(|redis| (local(ports.frontend(FLOOR_REDIS_FRONTEND)), [v4(redis.server)]));
    let mut routes = vec![(v4(frontend), &backends[..])];
    routes.extend(redis.iter().map(|(frontend, server)| (v4(*frontend), &server[..])));
    let start = || -> anyhow::Result<Proxy> {
        let mut command = std::process::Command::new(std::env::current_exe()?);
        command.env(floor::ENV, floor::spec(&routes));
        let mut proxy = Proxy::spawn(floor::NAME, frontend, command, Signal::SIGTERM, false)?;
        proxy.wait_listening(frontend)?;
        if let Some((addr, _)) = redis {
            proxy.wait_listening(addr)?;
            proxy.second = Some(Second { addr, own: None });
        }
        Ok(proxy)
    };
    match start() {
        Ok(proxy) => Contender { name: floor::NAME, proxy: Some(proxy), out: None, backends: None },
        Err(err) => Contender::absent(floor::NAME, err),
    }
}
