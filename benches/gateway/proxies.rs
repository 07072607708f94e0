//! The gateway bench's proxies: procgate's arguments and variants, HAProxy's `mode tcp`
//! configuration.
//!
//! Plain procgate also runs the echo backends as its two `tcp` instances; HAProxy stands in front
//! of the same two. Each variant of procgate (a procgate.toml of its own) is a procgate of its
//! own with two backends of its own. Starting and stopping them is common/proxies.rs's and
//! common/process.rs's.

use crate::common::knobs::Knobs;
use crate::common::process::Second;
use crate::common::proxies::{self, local, Ports, Procgate};
use crate::common::rounds::Contender;
use crate::echo::BACKENDS;
use crate::redis::Redis;
use std::path::Path;

/// Frontends per block of ports: procgate's and HAProxy's in front of the backends they share
/// (then their Redis frontends), then each variant's in front of its own.
pub const PORT_BLOCKS: [usize; 3] = [4, 1, 1];
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
