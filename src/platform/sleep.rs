//! Sleep when idle, wake on connect: which types sleep, the count each wakes with, and the wake
//! under way, as a pure state machine the Scheduler drives (the data plane's half, activity and
//! the single wake request per sleep, is `gateway/wake.rs`).
//!
//! ```text
//!   awake, N instances ──no connection for sleep_after, no rollout under way──► Asleep { N }
//!        (205 Sleeping: its instances drain and stop as in a scale to 0)
//!   Asleep { N } ──a client finds no instance, or `procgate wake`──► Waking { N, since }
//!        (206 Waking: N instances start, a scale-up of the release in force; no release step)
//!   Waking ──its first instance joins routing──► awake (207 woke after 412 ms)
//!   Asleep { N } ──scale TYPE=M──► Asleep { M }, or awake at 0 when M = 0
//!   Waking ──falls asleep again (its instances never came up and the clients gave up)──► Asleep
//! ```
//! A wake is single-flight: once `Waking`, more clients (or `procgate wake`) start nothing more.

use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// Where a sleeping type is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nap {
    /// No instance runs; it wakes with `count`.
    Asleep { count: usize },
    /// Its `count` instances were started at `since`'s wake; none is in routing yet.
    Waking { count: usize, since: Instant },
}

/// The types that sleep or wake; a type not here is awake.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sleepers {
    types: BTreeMap<String, Nap>,
}

impl Sleepers {
    /// Types asleep from the start (as the last run left them), with the count each wakes with.
    pub fn new(asleep: &BTreeMap<String, usize>) -> Sleepers {
        let types = asleep.iter().filter(|(_, n)| **n > 0).map(|(t, n)| (t.clone(), Nap::Asleep { count: *n }));
        Sleepers { types: types.collect() }
    }

    /// The count `type_name` wakes with, if it is asleep.
    pub fn asleep(&self, type_name: &str) -> Option<usize> {
        match self.types.get(type_name) {
            Some(Nap::Asleep { count }) => Some(*count),
            _ => None,
        }
    }

    /// When `type_name`'s wake began, if it is waking.
    pub fn waking(&self, type_name: &str) -> Option<Instant> {
        match self.types.get(type_name) {
            Some(Nap::Waking { since, .. }) => Some(*since),
            _ => None,
        }
    }

    /// A type waking, if any.
    pub fn any_waking(&self) -> Option<&str> {
        self.types.iter().find(|(_, nap)| matches!(nap, Nap::Waking { .. })).map(|(name, _)| name.as_str())
    }

    /// Every type asleep, with the count it wakes with.
    pub fn sleeping(&self) -> impl Iterator<Item = (&str, usize)> {
        self.types.iter().filter_map(|(name, nap)| match nap {
            Nap::Asleep { count } => Some((name.as_str(), *count)),
            Nap::Waking { .. } => None,
        })
    }

    /// `type_name` was put to sleep with `count` instances (or a wake of it never came up).
    pub fn fell_asleep(&mut self, type_name: &str, count: usize) {
        self.types.insert(type_name.to_string(), Nap::Asleep { count });
    }

    /// Begins the wake of `type_name` at `since` and gives the count to start, if it is asleep;
    /// `None` (start nothing) when it is awake or already waking.
    pub fn wake(&mut self, type_name: &str, since: Instant) -> Option<usize> {
        let count = self.asleep(type_name)?;
        self.types.insert(type_name.to_string(), Nap::Waking { count, since });
        Some(count)
    }

    /// An instance of `type_name` joined routing: how long its wake took, if it was waking.
    pub fn joined(&mut self, type_name: &str, now: Instant) -> Option<Duration> {
        let since = self.waking(type_name)?;
        self.types.remove(type_name);
        Some(now.saturating_duration_since(since))
    }

    /// `scale TYPE=count`: an asleep type wakes with `count` (at 0 it no longer sleeps); a
    /// waking one is awake, scaled as any other. Answers whether the type was asleep (then
    /// nothing starts now).
    pub fn scaled(&mut self, type_name: &str, count: usize) -> bool {
        match self.types.get(type_name) {
            Some(Nap::Asleep { .. }) if count > 0 => {
                self.fell_asleep(type_name, count);
                true
            }
            Some(Nap::Asleep { .. }) => {
                self.types.remove(type_name);
                true
            }
            Some(Nap::Waking { .. }) => {
                self.types.remove(type_name);
                false
            }
            None => false,
        }
    }

    /// Keeps only the types `keep` accepts (a deploy removed the others).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.types.retain(|name, _| keep(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_starts_the_count_once_and_ends_when_an_instance_joins() {
        let mut sleepers = Sleepers::new(&[("tcp".to_string(), 2), ("web".to_string(), 0)].into());
        assert_eq!(sleepers.asleep("tcp"), Some(2));
        assert_eq!(sleepers.asleep("web"), None, "a type at 0 is not asleep");
        let since = Instant::now();
        assert_eq!(sleepers.wake("tcp", since), Some(2));
        for _ in 0..20 {
            assert_eq!(sleepers.wake("tcp", Instant::now()), None, "single-flight");
        }
        assert_eq!(sleepers.waking("tcp"), Some(since));
        assert_eq!(sleepers.sleeping().count(), 0);
        let took = sleepers.joined("tcp", since + Duration::from_millis(412));
        assert_eq!(took, Some(Duration::from_millis(412)));
        assert_eq!(sleepers.joined("tcp", Instant::now()), None, "the second instance ends nothing");
        assert_eq!(sleepers.wake("tcp", Instant::now()), None, "an awake type starts nothing");
    }

    #[test]
    fn scale_while_asleep_changes_the_count_it_wakes_with_and_zero_ends_the_sleep() {
        let mut sleepers = Sleepers::default();
        sleepers.fell_asleep("tcp", 1);
        assert!(sleepers.scaled("tcp", 3));
        assert_eq!(sleepers.sleeping().collect::<Vec<_>>(), [("tcp", 3)]);
        assert!(sleepers.scaled("tcp", 0));
        assert_eq!(sleepers.asleep("tcp"), None);
        assert!(!sleepers.scaled("tcp", 2), "awake: scaled as usual");
        sleepers.fell_asleep("web", 1);
        sleepers.wake("web", Instant::now());
        assert!(!sleepers.scaled("web", 2), "a waking type is scaled as usual");
        assert_eq!(sleepers.waking("web"), None);
    }

    #[test]
    fn a_wake_that_never_came_up_can_fall_asleep_again_and_a_removed_type_is_forgotten() {
        let mut sleepers = Sleepers::default();
        sleepers.fell_asleep("tcp", 2);
        sleepers.wake("tcp", Instant::now());
        sleepers.fell_asleep("tcp", 2);
        assert_eq!(sleepers.asleep("tcp"), Some(2));
        sleepers.retain(|name| name != "tcp");
        assert_eq!(sleepers, Sleepers::default());
    }
}
