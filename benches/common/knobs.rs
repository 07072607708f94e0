//! The knobs both benches read from the environment, bounded, with defaults.
//!
//! A bench reads its own ones with [`var`].

use anyhow::{bail, Context};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Longest allowed `BENCH_SECONDS`, to keep the whole run bounded.
const MAX_SECONDS: f64 = 30.0;
/// Interleaved rounds unless `BENCH_ROUNDS` says.
const DEFAULT_ROUNDS: usize = 5;
/// Most rounds allowed by `BENCH_ROUNDS`.
const MAX_ROUNDS: usize = 20;
/// Where HAProxy is unless `BENCH_HAPROXY` says.
const DEFAULT_HAPROXY: &str = "/usr/sbin/haproxy";

/// What one run measures and for how long, and the HAProxy it compares with.
#[derive(Debug)]
pub struct Knobs {
    /// Length of each measurement.
    pub seconds: Duration,
    /// Interleaved rounds of the loads.
    pub rounds: usize,
    /// The HAProxy executable.
    pub haproxy: PathBuf,
    /// Only the loads whose label contains this (`BENCH_ONLY`; empty: every load).
    pub only: String,
}

impl Knobs {
    /// Reads `BENCH_SECONDS` (the bench's `default_seconds` when not set), `BENCH_ROUNDS`,
    /// `BENCH_HAPROXY` and `BENCH_ONLY`.
    pub fn from_env(default_seconds: f64) -> anyhow::Result<Knobs> {
        let seconds: f64 = var("BENCH_SECONDS", default_seconds)?;
        if !(seconds > 0.0 && seconds <= MAX_SECONDS) {
            bail!("BENCH_SECONDS must be in (0, {MAX_SECONDS}], got {seconds}");
        }
        let rounds: usize = var("BENCH_ROUNDS", DEFAULT_ROUNDS)?;
        if !(1..=MAX_ROUNDS).contains(&rounds) {
            bail!("BENCH_ROUNDS must be in 1..={MAX_ROUNDS}, got {rounds}");
        }
        Ok(Knobs {
            seconds: Duration::from_secs_f64(seconds),
            rounds,
            haproxy: var("BENCH_HAPROXY", PathBuf::from(DEFAULT_HAPROXY))?,
            only: var("BENCH_ONLY", String::new())?,
        })
    }
}

/// The environment variable `name` parsed, or `default` when it is not set.
pub fn var<T>(name: &str, default: T) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match std::env::var(name) {
        Ok(text) => text.trim().parse().with_context(|| format!("{name}={text:?} is not valid")),
        Err(_) => Ok(default),
    }
}
