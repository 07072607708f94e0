//! The measurement plan: interleaved rounds of the two loads (each load measured on procgate,
//! then HAProxy, then nginx, back to back), then each proxy's memory once. The same client code
//! runs against all three; the proxies' CPU time and memory come from /proc.

use crate::load;
use crate::process::Proxy;
use crate::procfs;
use crate::report::{Figures, Metric, Samples, CONTENDERS};
use std::thread;
use std::time::Duration;
use tokio::runtime::Runtime;

/// Pause before each measurement, so the previous one's connections are closed.
const SETTLE: Duration = Duration::from_millis(200);
/// Untimed run of each load on each proxy before the first round (threads, pools, allocator).
const WARM_UP: Duration = Duration::from_millis(500);
/// Bytes per megabyte in the memory figure.
const MEGABYTE: f64 = 1e6;

/// A proxy in the comparison, measured while `out` is `None`.
pub struct Contender {
    pub name: &'static str,
    /// Kept until the end even when out: procgate's process also runs the backends.
    pub proxy: Option<Proxy>,
    /// Why this proxy is not measured (any more).
    pub out: Option<String>,
    /// The HTTP backends are this proxy's children (procgate's instances) and die with it.
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
            return Some(format!("{} exited and took the HTTP backends down with it", contender.name));
        }
    }
    contenders.iter().all(|c| c.out.is_some()).then(|| "no proxy left to measure".to_string())
}

/// The loads of each round, in order.
#[derive(Debug, Clone, Copy)]
enum Load {
    KeepAlive,
    NewConnections,
}

impl Load {
    fn label(self) -> &'static str {
        match self {
            Load::KeepAlive => "keep-alive",
            Load::NewConnections => "new connections",
        }
    }

    /// The metrics of its request rate and of the proxy's CPU time per request.
    fn metrics(self) -> (Metric, Metric) {
        match self {
            Load::KeepAlive => (Metric::KeepAliveRate, Metric::KeepAliveCpu),
            Load::NewConnections => (Metric::NewConnectionRate, Metric::NewConnectionCpu),
        }
    }
}

/// Each round measures every load on every contender.
const LOADS: [Load; 2] = [Load::KeepAlive, Load::NewConnections];

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
        let name = contender.name;
        if let Some(proxy) = contender.live() {
            if let Err(err) = plan.runtime.block_on(load::keep_alive(proxy.addr, WARM_UP)) {
                println!("  {name} warm-up: {err}");
            }
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
    let pids = proxy.pids();
    let ticks_before = cpu_ticks(&pids)?;
    let (rate, mut values) = match load {
        Load::KeepAlive => {
            let measured = runtime.block_on(load::keep_alive(proxy.addr, seconds))?;
            let latencies = [(Metric::KeepAliveP50, measured.p50_us), (Metric::KeepAliveP99, measured.p99_us)];
            let values = latencies.into_iter().filter_map(|(metric, value)| Some((metric, value?))).collect();
            (measured.rate, values)
        }
        Load::NewConnections => (runtime.block_on(load::new_connections(proxy.addr, seconds)), Vec::new()),
    };
    let ticks = cpu_ticks(&pids)?.saturating_sub(ticks_before);
    let (rate_metric, cpu_metric) = load.metrics();
    values.push((rate_metric, rate.per_second()));
    if rate.tally.completed > 0 {
        values.push((cpu_metric, ticks as f64 / plan.ticks_per_second * 1e6 / rate.tally.completed as f64));
    }
    Ok(Figures { values, remark: remark(&rate.tally) })
}

/// CPU time of all the processes, in clock ticks.
fn cpu_ticks(pids: &[u32]) -> anyhow::Result<u64> {
    pids.iter().map(|&pid| procfs::cpu_ticks(pid)).sum()
}

/// `3 errors, first: ...; 12 connections closed by the proxy`, or nothing.
fn remark(tally: &load::Tally) -> Option<String> {
    let mut said = Vec::new();
    if let Some(first) = &tally.first_error {
        said.push(format!("{} errors, first: {first}", tally.errors));
    }
    if tally.closed > 0 {
        said.push(format!("{} connections closed by the proxy", tally.closed));
    }
    (!said.is_empty()).then(|| said.join("; "))
}

/// Records each proxy's resident memory after the rounds (all its processes summed).
pub fn measure_rss(contenders: &mut [Contender; CONTENDERS], samples: &mut Samples) {
    if stop_reason(contenders).is_some() {
        return;
    }
    println!("memory after the rounds");
    let names = contenders.each_ref().map(|c| c.name);
    let figures = contenders.each_mut().map(|contender| {
        let pids = contender.live()?.pids();
        let rss: anyhow::Result<u64> = pids.iter().map(|&pid| procfs::rss_bytes(pid)).sum();
        Some(match rss {
            Ok(bytes) => Figures { values: vec![(Metric::Rss, bytes as f64 / MEGABYTE)], remark: None },
            Err(err) => Figures::failed(format!("{err:#}")),
        })
    });
    samples.record("RSS", names, figures);
}
