//! The measurement plan: interleaved rounds of the rate loads (each load measured on procgate,
//! then on HAProxy, back to back), then the held idle connections once per proxy. The same
//! client code runs against both; the proxies' CPU time and memory come from /proc.

use crate::load;
use crate::procfs;
use crate::proxies::Proxy;
use crate::report::{Figures, Metric, Samples, CONTENDERS};
use std::thread;
use std::time::Duration;
use tokio::runtime::Runtime;

/// Pause before each measurement, so the previous one's connections are closed.
const SETTLE: Duration = Duration::from_millis(200);
/// Pause after closing the held connections, which the proxy and the backends then tear down.
const HELD_SETTLE: Duration = Duration::from_secs(1);
/// Untimed new-connections load on each proxy before the first round (threads, allocator pools).
const WARM_UP: Duration = Duration::from_millis(500);
/// Bytes per megabyte in the bulk figure.
const MEGABYTE: f64 = 1e6;

/// A proxy in the comparison, measured while `out` is `None`.
pub struct Contender {
    pub name: &'static str,
    /// Kept until the end even when out: procgate's process also runs the backends.
    pub proxy: Option<Proxy>,
    /// Why this proxy is not measured (any more).
    pub out: Option<String>,
    /// The echo backends are this proxy's children (procgate's instances) and die with it.
    pub runs_backends: bool,
}

impl Contender {
    /// How the process running the backends ended, once it has: nothing more can be measured.
    fn backends_gone(&mut self) -> Option<String> {
        match self.runs_backends {
            true => self.proxy.as_mut()?.exited(),
            false => None,
        }
    }

    /// The proxy while it is measured; notices (and says) when it exited.
    fn live(&mut self) -> Option<&Proxy> {
        if self.out.is_none() {
            if let Some(exit) = self.proxy.as_mut().and_then(Proxy::exited) {
                println!("  {} exited during the run; it is not measured any more", self.name);
                self.out = Some(exit);
            }
        }
        match self.out {
            None => self.proxy.as_ref(),
            Some(_) => None,
        }
    }
}

/// Why nothing more can be measured, if so.
fn stop_reason(contenders: &mut [Contender; CONTENDERS]) -> Option<String> {
    for contender in contenders.iter_mut() {
        if let Some(exit) = contender.backends_gone() {
            contender.out.get_or_insert(exit);
            return Some(format!("{} exited and took the echo backends down with it", contender.name));
        }
    }
    contenders.iter().all(|c| c.out.is_some()).then(|| "no proxy left to measure".to_string())
}

/// The rate loads of each round, in order.
#[derive(Debug, Clone, Copy)]
enum Load {
    NewConnections,
    PingPong,
    RoundTrips,
    Bulk,
}

impl Load {
    fn label(self) -> &'static str {
        match self {
            Load::NewConnections => "new connections",
            Load::PingPong => "ping-pong",
            Load::RoundTrips => "round trips",
            Load::Bulk => "bulk",
        }
    }
}

/// Each round measures every load on every contender.
const LOADS: [Load; 4] = [Load::NewConnections, Load::PingPong, Load::RoundTrips, Load::Bulk];

/// What the rounds need besides the contenders.
pub struct Plan<'a> {
    pub runtime: &'a Runtime,
    pub seconds: Duration,
    pub rounds: usize,
    /// Clock ticks per second of /proc/PID/stat.
    pub ticks_per_second: f64,
}

/// Rough wall time of the rounds, to announce it.
pub fn rounds_duration(seconds: Duration, rounds: usize) -> Duration {
    (seconds + SETTLE) * (rounds * LOADS.len() * CONTENDERS) as u32
}

/// Warms each proxy up, then runs the interleaved rounds, recording into `samples`.
pub fn run_rounds(plan: &Plan, contenders: &mut [Contender; CONTENDERS], samples: &mut Samples) {
    for contender in contenders.iter_mut() {
        if let Some(proxy) = contender.live() {
            plan.runtime.block_on(load::new_connections(proxy.addr, WARM_UP));
        }
    }
    let names = contenders.each_ref().map(|c| c.name);
    for round in 1..=plan.rounds {
        println!("round {round}/{}", plan.rounds);
        for load in LOADS {
            if let Some(why) = stop_reason(contenders) {
                return println!("no more measurements: {why}");
            }
            let figures = contenders.each_mut().map(|contender| {
                let proxy = contender.live()?;
                thread::sleep(SETTLE);
                Some(measure(plan, load, proxy).unwrap_or_else(|err| Figures::failed(format!("{err:#}"))))
            });
            samples.record(load.label(), names, figures);
        }
    }
}

fn measure(plan: &Plan, load: Load, proxy: &Proxy) -> anyhow::Result<Figures> {
    let (runtime, seconds) = (plan.runtime, plan.seconds);
    let figures = match load {
        Load::NewConnections => {
            let ticks_before = procfs::cpu_ticks(proxy.pid())?;
            let rate = runtime.block_on(load::new_connections(proxy.addr, seconds));
            let ticks = procfs::cpu_ticks(proxy.pid())? - ticks_before;
            let mut values = vec![(Metric::NewConnections, rate.per_second())];
            if rate.tally.completed > 0 {
                let cpu_us = ticks as f64 / plan.ticks_per_second * 1e6 / rate.tally.completed as f64;
                values.push((Metric::CpuPerConnection, cpu_us));
            }
            Figures { values, remark: errors(&rate.tally) }
        }
        Load::PingPong => {
            let rate = runtime.block_on(load::ping_pong(proxy.addr, seconds))?;
            Figures { values: vec![(Metric::PingPong, rate.per_second())], remark: errors(&rate.tally) }
        }
        Load::RoundTrips => {
            let latency = runtime.block_on(load::round_trips(proxy.addr, seconds))?;
            let values = vec![(Metric::RttP50, latency.p50_us), (Metric::RttP99, latency.p99_us)];
            Figures { values, remark: None }
        }
        Load::Bulk => {
            let bytes_per_second = runtime.block_on(load::bulk(proxy.addr, seconds))?;
            Figures { values: vec![(Metric::Bulk, bytes_per_second / MEGABYTE)], remark: None }
        }
    };
    Ok(figures)
}

/// `3 errors, first: Connection refused`, or nothing.
fn errors(tally: &load::Tally) -> Option<String> {
    let first = tally.first_error.as_deref()?;
    Some(format!("{} errors, first: {first}", tally.errors))
}

/// Holds `count` idle connections through each proxy in turn; records RSS growth per connection.
pub fn measure_held(plan: &Plan, count: usize, contenders: &mut [Contender; CONTENDERS], samples: &mut Samples) {
    if stop_reason(contenders).is_some() {
        return;
    }
    println!("held idle connections: {count} through each proxy, RSS of the proxy process before and after");
    let names = contenders.each_ref().map(|c| c.name);
    let figures = contenders.each_mut().map(|contender| {
        let proxy = contender.live()?;
        let figures = plan.runtime.block_on(held_rss(proxy, count));
        thread::sleep(HELD_SETTLE);
        Some(figures.unwrap_or_else(|err| Figures::failed(format!("{err:#}"))))
    });
    samples.record("held connections", names, figures);
}

async fn held_rss(proxy: &Proxy, count: usize) -> anyhow::Result<Figures> {
    let before = procfs::rss_bytes(proxy.pid())?;
    let connections = load::open(proxy.addr, count).await?;
    let after = procfs::rss_bytes(proxy.pid())?;
    drop(connections);
    let per_connection = (after as f64 - before as f64) / count as f64;
    let remark = format!("RSS {:.1} MB -> {:.1} MB", before as f64 / MEGABYTE, after as f64 / MEGABYTE);
    Ok(Figures { values: vec![(Metric::HeldRss, per_connection)], remark: Some(remark) })
}
