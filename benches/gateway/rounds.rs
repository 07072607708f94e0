//! The gateway bench's measurements: its rate loads per round, then the held idle connections.
//!
//! common/rounds.rs runs the rounds, each load on procgate, then on HAProxy.

use crate::common::process::Proxy;
use crate::common::procfs;
use crate::common::rounds::{self, Contender, Plan};
use crate::load;
use crate::redis;
use crate::report::{Figures, Metric, Samples, CONTENDERS};
use std::thread;
use std::time::Duration;

/// Pause after closing the held connections, which the proxy and the backends then tear down.
const HELD_SETTLE: Duration = Duration::from_secs(1);
/// Untimed new-connections load on each proxy before the first round (threads, allocator pools).
const WARM_UP: Duration = Duration::from_millis(500);
/// Bytes per megabyte in the bulk figure.
const MEGABYTE: f64 = 1e6;

/// The rate loads of each round, in order.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    NewConnections,
    PingPong,
    RoundTrips,
    Upload,
    Download,
    /// redis-benchmark at `PIPELINES[i]` commands per pipeline.
    Redis(usize),
    /// Many busy persistent connections: per-message round trips and evenness.
    Busy(usize),
}

/// The busy-connection loads' connection counts.
pub const BUSY: [usize; 3] = [16, 64, 256];

impl rounds::Load for Load {
    type Metric = Metric;
    const ALL: &'static [Load] = &[
        Load::NewConnections,
        Load::PingPong,
        Load::RoundTrips,
        Load::Upload,
        Load::Download,
        Load::Redis(0),
        Load::Redis(1),
        Load::Busy(BUSY[0]),
        Load::Busy(BUSY[1]),
        Load::Busy(BUSY[2]),
    ];

    fn label(self) -> &'static str {
        match self {
            Load::NewConnections => "new connections",
            Load::PingPong => "ping-pong",
            Load::RoundTrips => "round trips",
            Load::Upload => "upload",
            Load::Download => "download",
            Load::Redis(0) => "redis-benchmark -P 1",
            Load::Redis(_) => "redis-benchmark -P 16",
            Load::Busy(16) => "16 busy connections",
            Load::Busy(64) => "64 busy connections",
            Load::Busy(_) => "256 busy connections",
        }
    }

    fn warm_up(plan: &Plan, proxy: &Proxy) {
        plan.runtime.block_on(load::new_connections(proxy.addr, WARM_UP));
    }

    fn measure(self, plan: &Plan, proxy: &Proxy) -> anyhow::Result<Figures> {
        let (runtime, seconds) = (&plan.runtime, plan.seconds);
        let figures = match self {
            Load::NewConnections => {
                let (rate, cpu_us) =
                    plan.with_cpu(&proxy.pids(), || Ok(runtime.block_on(load::new_connections(proxy.addr, seconds))))?;
                let mut values = vec![(Metric::NewConnections, rate.per_second())];
                values.extend(rate.per_completed(cpu_us).map(|cpu_us| (Metric::CpuPerConnection, cpu_us)));
                Figures { values, remark: rate.tally.remark() }
            }
            Load::PingPong => {
                let (rate, cpu_us) =
                    plan.with_cpu(&proxy.pids(), || Ok(runtime.block_on(load::ping_pong(proxy.addr, seconds))?))?;
                let mut values = vec![(Metric::PingPong, rate.per_second())];
                values.extend(rate.per_completed(cpu_us).map(|cpu_us| (Metric::CpuPerMessage, cpu_us)));
                Figures { values, remark: rate.tally.remark() }
            }
            Load::RoundTrips => {
                let latency = runtime.block_on(load::round_trips(proxy.addr, seconds))?;
                let values = vec![(Metric::RttP50, latency.p50_us), (Metric::RttP99, latency.p99_us)];
                Figures { values, remark: None }
            }
            Load::Upload => {
                let bytes_per_second = runtime.block_on(load::upload(proxy.addr, seconds))?;
                Figures { values: vec![(Metric::Upload, bytes_per_second / MEGABYTE)], remark: None }
            }
            Load::Download => {
                let bytes_per_second = runtime.block_on(load::download(proxy.addr, seconds))?;
                Figures { values: vec![(Metric::Download, bytes_per_second / MEGABYTE)], remark: None }
            }
            Load::Redis(at) => match &proxy.second {
                Some(second) => {
                    let (rate, cpu_us) = plan.with_cpu(&proxy.second_pids(), || {
                        runtime.block_on(redis::benchmark(second.addr, at, seconds))
                    })?;
                    let values =
                        vec![(Metric::Redis(at), rate.per_second), (Metric::RedisCpu(at), cpu_us / rate.requests)];
                    Figures { values, remark: None }
                }
                None => Figures { values: Vec::new(), remark: None },
            },
            Load::Busy(count) => {
                let (rate, busy) = runtime.block_on(load::busy(proxy.addr, count, seconds))?;
                let at = BUSY.iter().position(|n| *n == count).unwrap_or(0);
                let values = busy.map_or(Vec::new(), |busy| {
                    vec![
                        (Metric::BusyP50(at), busy.p50_us),
                        (Metric::BusyP99(at), busy.p99_us),
                        (Metric::BusyP999(at), busy.p999_us),
                        (Metric::BusyEvenness(at), busy.evenness),
                    ]
                });
                Figures { values, remark: rate.tally.remark() }
            }
        };
        Ok(figures)
    }
}

/// Holds `count` idle connections through each proxy in turn; records memory growth per connection.
pub fn measure_held(plan: &Plan, count: usize, contenders: &mut [Contender; CONTENDERS], samples: &mut Samples) {
    let heading = format!(
        "held idle connections: {count} through each proxy, memory (PSS) of the proxy's processes before and after"
    );
    rounds::measure_each(contenders, samples, &heading, "held connections", |proxy| {
        let figures = plan.runtime.block_on(held_rss(proxy, count));
        thread::sleep(HELD_SETTLE);
        figures
    });
}

async fn held_rss(proxy: &Proxy, count: usize) -> anyhow::Result<Figures> {
    let before = procfs::pss_bytes(&proxy.pids())?;
    let connections = load::open(proxy.addr, count).await?;
    let after = procfs::pss_bytes(&proxy.pids())?;
    drop(connections);
    let per_connection = (after as f64 - before as f64) / count as f64;
    let remark = format!("PSS {:.1} MB -> {:.1} MB", before as f64 / MEGABYTE, after as f64 / MEGABYTE);
    Ok(Figures { values: vec![(Metric::HeldRss, per_connection)], remark: Some(remark) })
}
