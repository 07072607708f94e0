//! Crash restart delays: exponential from 1 s, doubling, capped at 5 min, and forgotten after an
//! instance has stayed up 10 min (Heroku and Scalingo back off the same way).

use std::time::Duration;

/// Delay before the first restart.
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
/// The longest delay between restarts.
pub const MAX_DELAY: Duration = Duration::from_secs(5 * 60);
/// An instance up this long is healthy again: its next crash restarts after [`FIRST_DELAY`].
pub const RESET_AFTER: Duration = Duration::from_secs(10 * 60);

/// Crashes in a row (each within [`RESET_AFTER`] of its start) that make a crash loop: `ps`
/// shows the instance `failed`. It is still restarted, at the capped delay.
pub const CRASH_LOOP: u32 = 5;

/// Consecutive crashes of one instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    streak: u32,
}

impl Backoff {
    /// Whether the instance is in a crash loop.
    pub fn looping(&self) -> bool {
        self.streak >= CRASH_LOOP
    }

    /// Records a crash after `uptime` and returns how long to wait before restarting.
    pub fn crashed(&mut self, uptime: Duration) -> Duration {
        self.streak = if uptime >= RESET_AFTER { 1 } else { self.streak.saturating_add(1) };
        let doublings = (self.streak - 1).min(16);
        (FIRST_DELAY * 2u32.pow(doublings)).min(MAX_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_up_to_five_minutes() {
        let mut backoff = Backoff::default();
        let delays: Vec<u64> = (0..12).map(|_| backoff.crashed(Duration::ZERO).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }

    #[test]
    fn five_crashes_in_a_row_are_a_crash_loop() {
        let mut backoff = Backoff::default();
        for _ in 0..CRASH_LOOP - 1 {
            backoff.crashed(Duration::ZERO);
        }
        assert!(!backoff.looping());
        backoff.crashed(Duration::ZERO);
        assert!(backoff.looping());
        backoff.crashed(RESET_AFTER);
        assert!(!backoff.looping());
    }

    #[test]
    fn ten_minutes_up_resets_the_streak() {
        let mut backoff = Backoff::default();
        for _ in 0..5 {
            backoff.crashed(Duration::from_secs(1));
        }
        assert_eq!(backoff.crashed(RESET_AFTER), FIRST_DELAY);
        assert_eq!(backoff.crashed(RESET_AFTER - Duration::from_secs(1)), Duration::from_secs(2));
    }
}
