//! A route's counters for the metrics and `ps`: connections (TCP) or requests (web) by outcome,
//! bytes each way, and histograms of the connect time to instances and of the connection or
//! request duration, and of the type's wakes from sleep. Plain relaxed atomics, a few per
//! connection or request; read at a scrape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How a connection or a request ended (Heroku's codes and procgate's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Passed to an instance and ended.
    Served,
    /// No instance up within `--wait`.
    H10,
    /// Every instance at its cap and the backlog full, or the route's descriptors spent.
    H11,
    /// The instance did not answer within the request timeout.
    H12,
    /// The instance closed the connection without an answer.
    H13,
    /// The instance sent nothing mid-response for the idle window.
    H15,
    /// The instance's response broke off.
    H18,
    /// A bad `Host`.
    H25,
    /// The client's request body broke off or was malformed.
    H27,
    /// A request head that does not parse (answered 400, 414 or 431 before any instance).
    B400,
    /// The client did not send its request head in time.
    H28,
    /// Over a per-client limit.
    T429,
    /// A bad PROXY header.
    P400,
    /// A PROXY header from a peer not in `trusted_proxies`.
    P403,
}

impl Outcome {
    pub const ALL: [Outcome; 14] = [
        Outcome::Served,
        Outcome::H10,
        Outcome::H11,
        Outcome::H12,
        Outcome::H13,
        Outcome::H15,
        Outcome::H18,
        Outcome::H25,
        Outcome::H27,
        Outcome::B400,
        Outcome::H28,
        Outcome::T429,
        Outcome::P400,
        Outcome::P403,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Served => "served",
            Outcome::H10 => "H10",
            Outcome::H11 => "H11",
            Outcome::H12 => "H12",
            Outcome::H13 => "H13",
            Outcome::H15 => "H15",
            Outcome::H18 => "H18",
            Outcome::H25 => "H25",
            Outcome::H27 => "H27",
            Outcome::B400 => "B400",
            Outcome::H28 => "H28",
            Outcome::T429 => "T429",
            Outcome::P400 => "P400",
            Outcome::P403 => "P403",
        }
    }

    /// The outcome of a router error code (`"H12"`).
    pub fn of_code(code: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == code)
    }
}

/// Refusals of one kind between two log lines about them: a client can cause them at will, so
/// a line each could flood the log (the counter has them all).
pub const REFUSALS_LOG_EVERY: u64 = 1000;

/// The histograms' upper bounds, in seconds: a connect to a local instance takes well under a
/// millisecond, a chat connection hours.
pub const BOUNDS: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 600.0, 3600.0];

/// Durations counted into [`BOUNDS`] buckets, each counting its own range.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = BOUNDS.iter().position(|bound| seconds <= *bound).unwrap_or(BOUNDS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The sum in seconds, the count, and each bucket's own count with its upper bound (the
    /// encoder makes them cumulative).
    pub fn read(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let bound = |index: usize| BOUNDS.get(index).copied().unwrap_or(f64::INFINITY);
        let buckets: Vec<(f64, u64)> =
            self.buckets.iter().enumerate().map(|(i, count)| (bound(i), count.load(Ordering::Relaxed))).collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        (self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9, count, buckets)
    }
}

/// One route's counters.
#[derive(Debug, Default)]
pub struct RouteStats {
    outcomes: [AtomicU64; Outcome::ALL.len()],
    /// Client to instance.
    pub bytes_in: AtomicU64,
    /// Instance to client.
    pub bytes_out: AtomicU64,
    /// Connecting to an instance.
    pub connect: Histogram,
    /// A proxied TCP connection, or a request from its head to the end of its response.
    pub duration: Histogram,
    /// The type's wakes: from its first waiting client (or `procgate wake`) to its first
    /// instance in routing.
    pub wakes: Histogram,
}

impl RouteStats {
    /// Counts one connection or request that ended so; returns the count before it.
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed)
    }

    pub fn total(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome as usize].load(Ordering::Relaxed)
    }

    /// A connection or request served: its duration and its bytes each way.
    pub fn served(&self, took: Duration, bytes_in: u64, bytes_out: u64) {
        self.count(Outcome::Served);
        self.duration.observe(took);
        self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_duration_once_in_its_bucket() {
        let histogram = Histogram::default();
        for took in [Duration::from_micros(300), Duration::from_millis(3), Duration::from_secs(7200)] {
            histogram.observe(took);
        }
        let (sum, count, buckets) = histogram.read();
        assert_eq!(count, 3);
        assert!((sum - 7200.0033).abs() < 1e-6, "{sum}");
        assert_eq!(buckets[0], (0.0005, 1));
        assert_eq!(buckets[3], (0.005, 1));
        assert_eq!(*buckets.last().unwrap(), (f64::INFINITY, 1));
        assert_eq!(buckets.iter().map(|(_, n)| n).sum::<u64>(), 3);
    }

    #[test]
    fn outcomes_are_counted_apart_and_found_by_code() {
        let stats = RouteStats::default();
        stats.count(Outcome::H12);
        stats.served(Duration::from_millis(5), 10, 20);
        assert_eq!((stats.total(Outcome::H12), stats.total(Outcome::Served), stats.total(Outcome::H10)), (1, 1, 0));
        assert_eq!(Outcome::of_code("H28"), Some(Outcome::H28));
        assert_eq!(Outcome::of_code("X1"), None);
    }
}
