//! The router bench's measurements: its three loads per round, then each proxy's memory.
//!
//! common/rounds.rs runs the rounds, each load on procgate, then HAProxy, then nginx.

use crate::backend::BULK_BYTES;
use crate::common::process::Proxy;
use crate::common::procfs;
use crate::common::rounds::{self, Contender, Plan};
use crate::load;
use crate::report::{Figures, Metric, Samples, CONTENDERS};
use std::time::Duration;

/// Untimed run of each load on each proxy before the first round (threads, pools, allocator).
const WARM_UP: Duration = Duration::from_millis(500);
/// Bytes per megabyte in the memory figure.
const MEGABYTE: f64 = 1e6;

/// The loads of each round, in order.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    KeepAlive,
    NewConnections,
    Bulk,
}

impl Load {
    /// The metrics of its request rate and of the proxy's CPU time per request.
    fn metrics(self) -> (Metric, Metric) {
        match self {
            Load::KeepAlive => (Metric::KeepAliveRate, Metric::KeepAliveCpu),
            Load::NewConnections => (Metric::NewConnectionRate, Metric::NewConnectionCpu),
            Load::Bulk => (Metric::BulkRate, Metric::BulkCpu),
        }
    }
}

impl rounds::Load for Load {
    type Metric = Metric;
    const ALL: &'static [Load] = &[Load::KeepAlive, Load::NewConnections, Load::Bulk];

    fn label(self) -> &'static str {
        match self {
            Load::KeepAlive => "keep-alive",
            Load::NewConnections => "new connections",
            Load::Bulk => "bulk",
        }
    }

    fn warm_up(plan: &Plan, proxy: &Proxy) {
        if let Err(err) = plan.runtime.block_on(load::keep_alive(proxy.addr, WARM_UP)) {
            println!("  {} warm-up: {err}", proxy.name);
        }
        plan.runtime.block_on(load::new_connections(proxy.addr, WARM_UP));
        if let Err(err) = plan.runtime.block_on(load::bulk(proxy.addr, WARM_UP)) {
            println!("  {} bulk warm-up: {err}", proxy.name);
        }
    }

    fn measure(self, plan: &Plan, proxy: &Proxy) -> anyhow::Result<Figures> {
        let (runtime, seconds) = (&plan.runtime, plan.seconds);
        let ((rate, mut values), cpu_us) = plan.with_cpu(&proxy.pids(), || match self {
            Load::KeepAlive => {
                let (rate, fairness) = runtime.block_on(load::keep_alive(proxy.addr, seconds))?;
                let values = fairness.map_or(Vec::new(), |f| {
                    vec![
                        (Metric::KeepAliveP50, f.p50_us),
                        (Metric::KeepAliveP99, f.p99_us),
                        (Metric::KeepAliveP999, f.p999_us),
                        (Metric::KeepAliveEvenness, f.evenness),
                    ]
                });
                Ok((rate, values))
            }
            Load::NewConnections => Ok((runtime.block_on(load::new_connections(proxy.addr, seconds)), Vec::new())),
            Load::Bulk => Ok((runtime.block_on(load::bulk(proxy.addr, seconds))?, Vec::new())),
        })?;
        let (rate_metric, cpu_metric) = self.metrics();
        // Bulk figures count megabytes of response bodies, the others requests.
        let units_per_exchange = match self {
            Load::Bulk => BULK_BYTES as f64 / MEGABYTE,
            Load::KeepAlive | Load::NewConnections => 1.0,
        };
        values.push((rate_metric, rate.per_second() * units_per_exchange));
        values.extend(rate.per_completed(cpu_us).map(|cpu_us| (cpu_metric, cpu_us / units_per_exchange)));
        Ok(Figures { values, remark: rate.tally.remark() })
    }
}

/// Records each proxy's resident memory after the rounds (all its processes summed).
pub fn measure_rss(contenders: &mut [Contender; CONTENDERS], samples: &mut Samples) {
    rounds::measure_each(contenders, samples, "memory after the rounds", "PSS", |proxy| {
        let bytes = procfs::pss_bytes(&proxy.pids())?;
        Ok(Figures { values: vec![(Metric::Rss, bytes as f64 / MEGABYTE)], remark: None })
    });
}
