//! Per-client limits on a route: new connections per second per client (a token bucket with a
//! burst) and concurrent connections per client. Over a limit the connection is refused at once
//! (`T429`). A client is an IPv4 address, or an IPv6 /64 (one site's allocation: a host given a
//! /64 can take a new address per connection). The table of clients is bounded: past
//! [`MAX_TRACKED`] entries, the client seen least recently is forgotten first (its bucket has had
//! the longest to refill), never one whose open connections count against `max_open` (a
//! forgotten client starts again with a full bucket: under a flood of addresses the limit is
//! lenient, never the memory). Making room costs O(1), even when every client is held.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Clients tracked before the table sheds the ones it no longer needs.
pub const MAX_TRACKED: usize = 4096;

/// The leading bits of an IPv6 address that name one client (its /64).
const IPV6_CLIENT_PREFIX: u32 = 64;

/// A route's per-client limits (procgate.toml); all off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClientLimits {
    /// New connections per second per client.
    pub rate: Option<f64>,
    /// Connections a client may open at once above its rate [default: the rate].
    pub burst: Option<f64>,
    /// Connections open at once per client.
    pub max_open: Option<usize>,
}

/// Why a client was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Rate,
    Concurrency,
}

/// What the limits count a client by: its IPv4 address (an IPv4-mapped IPv6 address counts as
/// its IPv4), or the /64 of its IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    pub fn of(ip: IpAddr) -> ClientKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => ClientKey(IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << IPV6_CLIENT_PREFIX)))),
        }
    }
}

#[derive(Debug)]
struct Entry {
    tokens: f64,
    refilled_at: Instant,
    open: usize,
    /// When it was last seen (the table's clock): its place in [`Table::idle`].
    seen: u64,
}

/// The clients, and those that may be forgotten in the order they were last seen.
#[derive(Debug, Default)]
struct Table {
    entries: HashMap<ClientKey, Entry>,
    /// `(client, seen)` for each client that may be forgotten, oldest first. A client seen again
    /// gets a new item; its old one is stale (its `seen` differs) and is skipped when it comes up.
    idle: VecDeque<(ClientKey, u64)>,
    /// Counts the sightings, to stamp `seen`.
    clock: u64,
    /// Items of `idle` looked at to make room or to drop stale ones (tests bound it).
    scanned: u64,
}

/// The clients of one route.
#[derive(Debug)]
pub struct Clients {
    limits: ClientLimits,
    table: Mutex<Table>,
}

/// A client's connection counted against its limit while it lives.
pub struct ClientSlot(Option<(Arc<Clients>, ClientKey)>);

impl Clients {
    pub fn new(limits: ClientLimits) -> Clients {
        Clients { limits, table: Mutex::new(Table::default()) }
    }

    pub fn enabled(&self) -> bool {
        self.limits.rate.is_some() || self.limits.max_open.is_some()
    }

    fn burst(&self) -> f64 {
        self.limits.burst.or(self.limits.rate).unwrap_or(1.0).max(1.0)
    }

    /// Whether a client with `open` connections must be kept (its count is a limit).
    fn pinned(&self, open: usize) -> bool {
        self.limits.max_open.is_some() && open > 0
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admits a new connection from `ip` at `now`, or says which limit it is over.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<ClientSlot, Refusal> {
        if !self.enabled() {
            return Ok(ClientSlot(None));
        }
        let key = ClientKey::of(ip);
        let burst = self.burst();
        let mut table = self.lock();
        if table.entries.len() >= MAX_TRACKED && !table.entries.contains_key(&key) {
            table.forget_one();
        }
        let seen = table.tick();
        let entry = table.entries.entry(key).or_insert(Entry { tokens: burst, refilled_at: now, open: 0, seen });
        entry.seen = seen;
        let admitted = self.charge(entry, now, burst);
        let pinned = self.pinned(entry.open);
        if !pinned {
            table.remember_idle(key, seen);
        }
        admitted.map(|()| ClientSlot(Some((self.clone(), key))))
    }

    /// Refills `entry`'s bucket to `now`, then takes a token and counts the connection, or says
    /// which limit it is over.
    fn charge(&self, entry: &mut Entry, now: Instant, burst: f64) -> Result<(), Refusal> {
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
        Ok(())
    }

    /// Clients in the table now.
    pub fn tracked(&self) -> usize {
        self.lock().entries.len()
    }

    fn release(&self, key: ClientKey) {
        let mut table = self.lock();
        let Some(entry) = table.entries.get_mut(&key) else { return };
        let was_pinned = self.pinned(entry.open);
        entry.open = entry.open.saturating_sub(1);
        if !was_pinned || self.pinned(entry.open) {
            return;
        }
        // It may be forgotten now. Past the bound (only clients held open are over it), at once.
        if table.entries.len() > MAX_TRACKED {
            table.entries.remove(&key);
        } else {
            let seen = table.tick();
            if let Some(entry) = table.entries.get_mut(&key) {
                entry.seen = seen;
            }
            table.remember_idle(key, seen);
        }
    }

    #[cfg(test)]
    fn scanned(&self) -> u64 {
        self.lock().scanned
    }
}

impl Table {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Forgets the client seen least recently that may be forgotten; with none (every client
    /// is held open), the table grows by the newcomer, as far as connections are open.
    /// Amortised O(1): each item of `idle` is looked at once.
    fn forget_one(&mut self) {
        while let Some((key, seen)) = self.idle.pop_front() {
            self.scanned += 1;
            if self.entries.get(&key).is_some_and(|e| e.seen == seen) {
                self.entries.remove(&key);
                return;
            }
        }
    }

    /// Queues `key`, seen at `seen`, as one that may be forgotten; drops the stale items once
    /// they outnumber the live ones (amortised O(1): after such a pass, as many pushes again
    /// come before the next).
    fn remember_idle(&mut self, key: ClientKey, seen: u64) {
        self.idle.push_back((key, seen));
        if self.idle.len() > 2 * self.entries.len().max(MAX_TRACKED) {
            self.scanned += self.idle.len() as u64;
            let entries = &self.entries;
            self.idle.retain(|(key, seen)| entries.get(key).is_some_and(|e| e.seen == *seen));
        }
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Some((clients, key)) = self.0.take() {
            clients.release(key);
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

    #[test]
    fn ipv6_clients_count_by_their_64_and_mapped_ones_as_ipv4() {
        let clients = Arc::new(Clients::new(ClientLimits { rate: None, burst: None, max_open: Some(1) }));
        let now = Instant::now();
        let v6 = |text: &str| text.parse::<IpAddr>().unwrap();
        let _held = clients.admit(v6("2001:db8:1:2::1"), now).unwrap();
        assert_eq!(clients.admit(v6("2001:db8:1:2:ffff:ffff:ffff:ffff"), now).err(), Some(Refusal::Concurrency));
        assert!(clients.admit(v6("2001:db8:1:3::1"), now).is_ok(), "the next /64 is another client");
        let _v4 = clients.admit(ip(2), now).unwrap();
        assert_eq!(clients.admit(v6("::ffff:127.0.0.2"), now).err(), Some(Refusal::Concurrency));
        assert!(clients.admit(ip(3), now).is_ok(), "IPv4 clients are whole addresses");
        assert_eq!(ClientKey::of(v6("2001:db8:1:2:3:4:5:6")), ClientKey::of(v6("2001:db8:1:2::")));
        assert_eq!(ClientKey::of(v6("::ffff:10.0.0.1")), ClientKey::of(v6("10.0.0.1")));
    }

    /// Items of the queue looked at per newcomer, while `initially_held` clients stay open and
    /// the table stays about full: a quarter of the newcomers stay open (past the bound when
    /// every entry is held), for each of them one held client closes, and the other newcomers
    /// close at once (then they may be forgotten).
    fn looked_at_per_newcomer(initially_held: usize) -> f64 {
        let clients = Arc::new(Clients::new(ClientLimits { rate: Some(10.0), burst: None, max_open: Some(1) }));
        let now = Instant::now();
        let address = |n: usize| IpAddr::from((0x0a00_0000 + n as u32).to_be_bytes());
        let mut held: Vec<ClientSlot> = (0..initially_held).map(|n| clients.admit(address(n), now).unwrap()).collect();
        let newcomers = 20_000;
        let scanned = clients.scanned();
        for n in 0..newcomers {
            let slot = clients.admit(address(initially_held + n), now).unwrap();
            match n % 4 {
                0 => held.push(slot),
                1 => drop(held.swap_remove(n % held.len())),
                _ => drop(slot),
            }
            assert!(clients.tracked() <= MAX_TRACKED.max(held.len() + 1), "{} tracked", clients.tracked());
        }
        drop(held);
        assert!(clients.tracked() <= MAX_TRACKED, "back within the bound: {}", clients.tracked());
        (clients.scanned() - scanned) as f64 / newcomers as f64
    }

    #[test]
    fn a_table_full_of_held_clients_admits_newcomers_in_constant_time() {
        for initially_held in [MAX_TRACKED, MAX_TRACKED - 2] {
            let per_newcomer = looked_at_per_newcomer(initially_held);
            eprintln!("{initially_held} of {MAX_TRACKED} clients held: {per_newcomer:.2} items looked at per newcomer");
            assert!(per_newcomer <= 3.0, "{per_newcomer} per newcomer (a scan of the table would be {MAX_TRACKED})");
        }
    }
}
