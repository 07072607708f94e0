//! The interleaved rounds of both benches, the measurements after them, and the end of a run.
//!
//! Each round measures every load of the bench (its [`Load`]) on each contender in turn,
//! starting one contender further on each round; the end prints the table and the notes and
//! stops the proxies. The proxies' CPU time comes from /proc.

use super::knobs::Knobs;
use super::process::Proxy;
use super::procfs;
use super::report::{Figures, Metric, Samples};
use std::thread;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// Pause before each measurement, so the previous one's connections are closed.
const SETTLE: Duration = Duration::from_millis(200);

/// A proxy in the comparison, measured while `out` is `None`.
pub struct Contender {
    pub name: &'static str,
    /// Kept until the end even when out: procgate's process also runs the backends.
    pub proxy: Option<Proxy>,
    /// Why this proxy is not measured (any more).
    pub out: Option<String>,
    /// The backends, when they are this proxy's children (procgate's instances), die with it, and
    /// other contenders stand in front of them too: what they are, for messages.
    pub backends: Option<&'static str>,
}

impl Contender {
    /// A contender that did not start, said at once; `n/a` in the table.
    pub fn absent(name: &'static str, err: anyhow::Error) -> Contender {
        let why = format!("{err:#}");
        println!("{name} is not measured: {why}");
        Contender { name, proxy: None, out: Some(why), backends: None }
    }

    /// How the process running the backends ended, once it has: nothing more can be measured.
    fn backends_gone(&mut self) -> Option<String> {
        match self.backends {
            Some(_) => self.proxy.as_mut()?.exited(),
            None => None,
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
fn stop_reason(contenders: &mut [Contender]) -> Option<String> {
    for contender in contenders.iter_mut() {
        if let Some(exit) = contender.backends_gone() {
            contender.out.get_or_insert(exit);
            let backends = contender.backends.unwrap_or_default();
            return Some(format!("{} exited and took the {backends} down with it", contender.name));
        }
    }
    contenders.iter().all(|c| c.out.is_some()).then(|| "no proxy left to measure".to_string())
}

/// A load of a bench's rounds.
pub trait Load: Copy + 'static {
    type Metric: Metric;
    /// Each round measures every load on every contender, the loads in this order.
    const ALL: &'static [Self];
    fn label(self) -> &'static str;
    /// The untimed run on each proxy before the first round (threads, pools, allocator).
    fn warm_up(plan: &Plan, proxy: &Proxy);
    /// One measurement of this load on `proxy`.
    fn measure(self, plan: &Plan, proxy: &Proxy) -> anyhow::Result<Figures<Self::Metric>>;
}

/// What the rounds need besides the contenders.
pub struct Plan {
    pub runtime: Runtime,
    pub seconds: Duration,
    pub rounds: usize,
    /// Only the loads whose label contains this.
    pub only: String,
    /// Clock ticks per second of /proc/PID/stat.
    pub ticks_per_second: f64,
}

impl Plan {
    /// The knobs' rounds, on a multi-threaded runtime for the client with a worker per core.
    pub fn new(knobs: &Knobs) -> anyhow::Result<Plan> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(cores).enable_all().build()?;
        Ok(Plan {
            runtime,
            seconds: knobs.seconds,
            rounds: knobs.rounds,
            only: knobs.only.clone(),
            ticks_per_second: procfs::clock_ticks_per_second(),
        })
    }

    /// Runs `load` and measures the CPU time the processes `pids` (a proxy's, [`Proxy::pids`])
    /// spent meanwhile: the load's result and that time in microseconds.
    pub fn with_cpu<T>(&self, pids: &[u32], load: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(T, f64)> {
        let ticks_before = procfs::cpu_ticks(pids)?;
        let result = load()?;
        let ticks = procfs::cpu_ticks(pids)?.saturating_sub(ticks_before);
        Ok((result, ticks as f64 / self.ticks_per_second * 1e6))
    }
}

/// Rough wall time of the rounds of `L`'s loads on `N` contenders, to announce it.
pub fn rounds_duration<L: Load, const N: usize>(knobs: &Knobs) -> Duration {
    let loads = L::ALL.iter().filter(|load| load.label().contains(knobs.only.as_str())).count();
    (knobs.seconds + SETTLE) * (knobs.rounds * loads * N) as u32
}

/// Warms each proxy up, then runs the interleaved rounds, recording into `samples`.
pub fn run_rounds<L: Load, const N: usize>(
    plan: &Plan,
    contenders: &mut [Contender; N],
    samples: &mut Samples<L::Metric, N>,
) {
    for contender in contenders.iter_mut() {
        if let Some(proxy) = contender.live() {
            L::warm_up(plan, proxy);
        }
    }
    let names = contenders.each_ref().map(|c| c.name);
    for round in 1..=plan.rounds {
        println!("round {round}/{}", plan.rounds);
        for &load in L::ALL.iter().filter(|load| load.label().contains(plan.only.as_str())) {
            if let Some(why) = stop_reason(contenders) {
                return println!("no more measurements: {why}");
            }
            let mut figures = [const { None }; N];
            for index in turns(round, N) {
                if let Some(proxy) = contenders[index].live() {
                    thread::sleep(SETTLE);
                    let measured = load.measure(plan, proxy);
                    figures[index] = Some(measured.unwrap_or_else(|err| Figures::failed(format!("{err:#}"))));
                }
            }
            samples.record(load.label(), names, figures);
        }
    }
}

/// The order in which round `round` (from 1) measures `n` contenders: each round starts with
/// the next one, so that none is always measured first (on the machine the previous load left)
/// or last.
fn turns(round: usize, n: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |turn| (turn + round - 1) % n)
}

/// After the rounds, one measurement `measure` of each proxy in turn, as the load `load` under
/// the line `heading`; nothing when nothing can be measured any more.
pub fn measure_each<M: Metric, const N: usize>(
    contenders: &mut [Contender; N],
    samples: &mut Samples<M, N>,
    heading: &str,
    load: &str,
    mut measure: impl FnMut(&Proxy) -> anyhow::Result<Figures<M>>,
) {
    if stop_reason(contenders).is_some() {
        return;
    }
    println!("{heading}");
    let names = contenders.each_ref().map(|c| c.name);
    let figures = contenders.each_mut().map(|contender| {
        let proxy = contender.live()?;
        Some(measure(proxy).unwrap_or_else(|err| Figures::failed(format!("{err:#}"))))
    });
    samples.record(load, names, figures);
}

/// The end of a run: the table, the bench's `notes` and why a contender was out, then the
/// proxies stopped and the run's total time.
pub fn finish<M: Metric, const N: usize>(
    started: Instant,
    samples: &Samples<M, N>,
    contenders: &mut [Contender; N],
    notes: impl FnOnce(),
) {
    println!();
    samples.print_tables(contenders.each_ref().map(|c| c.name));
    println!();
    println!("notes:");
    notes();
    for contender in contenders.iter() {
        if let Some(why) = &contender.out {
            println!("  {} not measured (or not in every round): {why}", contender.name);
        }
    }
    stop_all(contenders);
    println!("total time {:.0?}", started.elapsed());
}

/// Stops the proxies in reverse order, the first (procgate) last: its backends, which it takes
/// down with it, are HAProxy's too.
fn stop_all(contenders: &mut [Contender]) {
    for contender in contenders.iter_mut().rev() {
        if let Some(proxy) = contender.proxy.as_mut() {
            match Proxy::stop(proxy) {
                Ok(status) => println!("{} stopped: {status}", contender.name),
                Err(err) => println!("{} stopped: {err:#}", contender.name),
            }
        }
    }
}
