//! Per-client limits on a route: new connections per second per client IP (a token bucket with
//! a burst) and concurrent connections per client IP. Over a limit the connection is refused at
//! once (`T429`). The table of clients is bounded: past [`MAX_TRACKED`] entries, clients with a
//! full bucket (no different from a new client) are forgotten first, then others (a forgotten
//! client starts again with a full bucket: under a flood of addresses the limit is lenient, never
//! the memory).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Clients tracked before the table sheds the ones it no longer needs.
pub const MAX_TRACKED: usize = 4096;

/// A route's per-client limits (procgate.toml); all off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClientLimits {
    /// New connections per second per client IP.
    pub rate: Option<f64>,
    /// Connections a client may open at once above its rate [default: the rate].
    pub burst: Option<f64>,
    /// Connections open at once per client IP.
    pub max_open: Option<usize>,
}

/// Why a client was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Rate,
    Concurrency,
}

#[derive(Debug)]
struct Entry {
    tokens: f64,
    refilled_at: Instant,
    open: usize,
}

/// The clients of one route.
#[derive(Debug)]
pub struct Clients {
    limits: ClientLimits,
    table: Mutex<HashMap<IpAddr, Entry>>,
}

/// A client's connection counted against its limit while it lives.
pub struct ClientSlot(Option<(Arc<Clients>, IpAddr)>);

impl Clients {
    pub fn new(limits: ClientLimits) -> Clients {
        Clients { limits, table: Mutex::new(HashMap::new()) }
    }

    pub fn enabled(&self) -> bool {
        self.limits.rate.is_some() || self.limits.max_open.is_some()
    }

    fn burst(&self) -> f64 {
        self.limits.burst.or(self.limits.rate).unwrap_or(1.0).max(1.0)
    }

    /// Admits a new connection from `ip` at `now`, or says which limit it is over.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<ClientSlot, Refusal> {
        if !self.enabled() {
            return Ok(ClientSlot(None));
        }
        let burst = self.burst();
        let mut table = self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if table.len() >= MAX_TRACKED && !table.contains_key(&ip) {
            self.shed(&mut table, now);
        }
        let entry = table.entry(ip).or_insert(Entry { tokens: burst, refilled_at: now, open: 0 });
        if let Some(rate) = self.limits.rate {
            entry.tokens =
                (entry.tokens + rate * now.saturating_duration_since(entry.refilled_at).as_secs_f64()).min(burst);
            entry.refilled_at = now;
            if entry.tokens < 1.0 {
                return Err(Refusal::Rate);
            }
        }
        if self.limits.max_open.is_some_and(|max| entry.open >= max) {
            return Err(Refusal::Concurrency);
        }
        if self.limits.rate.is_some() {
            entry.tokens -= 1.0;
        }
        entry.open += 1;
        Ok(ClientSlot(Some((self.clone(), ip))))
    }

    /// Makes room: forgets clients whose bucket has refilled (no different from new ones), then,
    /// if the table is still full, any others; clients with open connections stay when their
    /// count matters (`max_open`), so the table holds at most [`MAX_TRACKED`] plus those.
    fn shed(&self, table: &mut HashMap<IpAddr, Entry>, now: Instant) {
        let (burst, rate) = (self.burst(), self.limits.rate.unwrap_or(f64::INFINITY));
        let counted = self.limits.max_open.is_some();
        let pinned = |e: &Entry| counted && e.open > 0;
        table.retain(|_, e| {
            pinned(e) || e.tokens + rate * now.saturating_duration_since(e.refilled_at).as_secs_f64() < burst
        });
        let excess = (table.len() + 1).saturating_sub(MAX_TRACKED);
        let victims: Vec<IpAddr> = table.iter().filter(|(_, e)| !pinned(e)).map(|(ip, _)| *ip).take(excess).collect();
        for ip in victims {
            table.remove(&ip);
        }
    }

    /// Clients in the table now.
    pub fn tracked(&self) -> usize {
        self.table.lock().map_or(0, |t| t.len())
    }

    fn release(&self, ip: IpAddr) {
        let mut table = self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(entry) = table.get_mut(&ip) {
            entry.open = entry.open.saturating_sub(1);
        }
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Some((clients, ip)) = self.0.take() {
            clients.release(ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn a_burst_then_the_rate() {
        let clients = Arc::new(Clients::new(ClientLimits { rate: Some(10.0), burst: Some(10.0), max_open: None }));
        let now = Instant::now();
        let admitted: Vec<ClientSlot> = (0..100).filter_map(|_| clients.admit(ip(2), now).ok()).collect();
        assert_eq!(admitted.len(), 10, "the burst");
        assert!(clients.admit(ip(3), now).is_ok(), "another address is unaffected");
        assert_eq!(clients.admit(ip(2), now + Duration::from_millis(100)).err(), None, "one token back after 100 ms");
        assert_eq!(clients.admit(ip(2), now + Duration::from_millis(100)).err(), Some(Refusal::Rate));
    }

    #[test]
    fn concurrent_connections_per_client() {
        let clients = Arc::new(Clients::new(ClientLimits { rate: None, burst: None, max_open: Some(2) }));
        let now = Instant::now();
        let first = clients.admit(ip(2), now).unwrap();
        let _second = clients.admit(ip(2), now).unwrap();
        assert_eq!(clients.admit(ip(2), now).err(), Some(Refusal::Concurrency));
        drop(first);
        assert!(clients.admit(ip(2), now).is_ok(), "a closed connection frees its place");
    }

    #[test]
    fn the_table_stays_bounded_even_when_every_client_is_fresh() {
        let clients = Arc::new(Clients::new(ClientLimits { rate: Some(1.0), burst: Some(1.0), max_open: None }));
        let now = Instant::now();
        let held: Vec<ClientSlot> = (0..10_000u32)
            .map(|n| clients.admit(IpAddr::from((0x7f00_0000 + n).to_be_bytes()), now).unwrap())
            .collect();
        assert!(clients.tracked() <= MAX_TRACKED, "{} tracked", clients.tracked());
        drop(held);
    }

    #[test]
    fn the_table_stays_bounded_under_many_addresses() {
        let clients = Arc::new(Clients::new(ClientLimits { rate: Some(100.0), burst: Some(5.0), max_open: None }));
        let start = Instant::now();
        for n in 0..10_000u32 {
            let now = start + Duration::from_millis(u64::from(n));
            drop(clients.admit(IpAddr::from((0x7f00_0000 + n).to_be_bytes()), now).unwrap());
        }
        assert!(clients.tracked() <= MAX_TRACKED, "{} tracked", clients.tracked());
    }
}
