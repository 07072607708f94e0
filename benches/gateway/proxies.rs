//! The gateway bench's proxies: procgate's arguments and HAProxy's `mode tcp` configuration.
//!
//! procgate also runs the echo backends as its two `tcp` instances; HAProxy stands in front of
//! the same two. Starting and stopping them is common/proxies.rs's and common/process.rs's.

use crate::common::knobs::Knobs;
use crate::common::proxies::{self, local, Ports};
use crate::common::rounds::Contender;
use crate::echo::BACKENDS;
use std::path::Path;

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

/// procgate with the bench binary as its two `tcp` instances, its gateway in front of them.
pub fn start_procgate(dir: &Path, ports: Ports) -> anyhow::Result<Contender> {
    let listen = local(ports.procgate()).to_string();
    proxies::start_procgate(dir, ports, &BACKENDS, &["--tcp-listen", &listen, "--grace", "1s"])
}

/// HAProxy in TCP mode, or why it is out; and its version line.
pub fn start_haproxy(knobs: &Knobs, dir: &Path, ports: Ports) -> (Contender, String) {
    proxies::start_haproxy(&knobs.haproxy, dir, ports, HAPROXY_CONFIG)
}
