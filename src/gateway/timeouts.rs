//! How long the gateway and the router wait on a peer, per route: every side a peer can stall
//! has a bound (README: "Timeouts"). Flags set them for every route, `procgate.toml` per type.

use std::time::Duration;

/// Probes after the first keepalive probe, and the time between them: a vanished client is
/// noticed `tcp_keepalive` + 6 × 10 s after its last byte.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
pub const KEEPALIVE_PROBES: u32 = 6;

/// The longest idle time before keepalive probes that Linux takes (`TCP_KEEPIDLE`, 32767 s).
pub const LONGEST_TCP_KEEPALIVE: Duration = Duration::from_secs(32_767);

/// A `tcp_keepalive` Linux takes: from 1 s to [`LONGEST_TCP_KEEPALIVE`] (about 9 hours).
pub fn check_tcp_keepalive(idle: Duration) -> Result<Duration, String> {
    match idle {
        idle if idle < Duration::from_secs(1) => Err("it must be at least 1s (Linux counts it in seconds)".into()),
        idle if idle > LONGEST_TCP_KEEPALIVE => {
            Err("Linux takes at most 32767s (9h6m7s); give a shorter duration, or `off`".into())
        }
        idle => Ok(idle),
    }
}

/// One route's timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The connect to an instance; past it, another instance is tried.
    pub connect: Duration,
    /// A client's request head, from its first byte (from the connection's start for the first
    /// request); past it, `408` and `H28` (router).
    pub head: Duration,
    /// A kept-alive client connection with no request in flight; past it, closed (router).
    pub keepalive: Duration,
    /// An instance's response head; past it, `H12` (router).
    pub response: Duration,
    /// An instance sending nothing in the middle of a response; past it, `H15` (router).
    pub response_idle: Duration,
    /// No byte either way on a proxied TCP connection; past it, closed (gateway; off: long-lived
    /// protocols such as MQTT, IRC or a game keep quiet connections open for hours).
    pub idle: Option<Duration>,
    /// Keepalive probes on client connections after this long without a byte, so a client
    /// that vanished (power off, NAT expiry) is noticed and its connection freed (off: `None`).
    pub tcp_keepalive: Option<Duration>,
}

impl Default for Timeouts {
    /// A user's expectations: HAProxy's and nginx's connect and head timeouts, Heroku's router's
    /// H12 and H15 figures, a kept-alive idle longer than the load balancers that may sit in
    /// front (AWS ALB 60 s, nginx 75 s), so they close first and never race procgate's close.
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(1),
            head: Duration::from_secs(30),
            keepalive: Duration::from_secs(90),
            response: Duration::from_secs(30),
            response_idle: Duration::from_secs(55),
            idle: None,
            tcp_keepalive: Some(Duration::from_secs(60)),
        }
    }
}
