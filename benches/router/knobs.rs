//! The bench's knobs: environment variables with bounded values and sensible defaults.

use anyhow::{bail, Context};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Seconds of each measurement (one proxy, one load, one round) unless `BENCH_SECONDS` says.
const DEFAULT_SECONDS: f64 = 2.0;
/// Longest allowed `BENCH_SECONDS`, to keep the whole run bounded.
const MAX_SECONDS: f64 = 30.0;
/// Interleaved rounds unless `BENCH_ROUNDS` says.
const DEFAULT_ROUNDS: usize = 5;
/// Most rounds allowed by `BENCH_ROUNDS`.
const MAX_ROUNDS: usize = 20;
/// Where HAProxy is unless `BENCH_HAPROXY` says.
const DEFAULT_HAPROXY: &str = "/usr/sbin/haproxy";
/// Where nginx is unless `BENCH_NGINX` says.
const DEFAULT_NGINX: &str = "/usr/sbin/nginx";

/// What one run measures and for how long.
#[derive(Debug)]
pub struct Knobs {
    /// Length of each measurement.
    pub seconds: Duration,
    /// Interleaved rounds of the loads.
    pub rounds: usize,
    /// The HAProxy executable.
    pub haproxy: PathBuf,
    /// The nginx executable.
    pub nginx: PathBuf,
}

impl Knobs {
    /// Reads `BENCH_SECONDS`, `BENCH_ROUNDS`, `BENCH_HAPROXY` and `BENCH_NGINX`.
    pub fn from_env() -> anyhow::Result<Knobs> {
        let seconds: f64 = var("BENCH_SECONDS", DEFAULT_SECONDS)?;
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
            nginx: var("BENCH_NGINX", PathBuf::from(DEFAULT_NGINX))?,
        })
    }
}

fn var<T>(name: &str, default: T) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match std::env::var(name) {
        Ok(text) => text.trim().parse().with_context(|| format!("{name}={text:?} is not valid")),
        Err(_) => Ok(default),
    }
}
