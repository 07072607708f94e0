//! The gateway bench's metrics: their table order, labels, better direction and format.
//!
//! The tables themselves are common/report.rs's: procgate/HAProxy in the first, the ratios of
//! procgate's two variants to plain procgate in the second, the floor relay's ratios in the third.

use crate::common::report::{self, Better, Table, Widths, HAPROXY_INDEX, PROCGATE_INDEX};

/// Contenders compared: procgate, HAProxy, then procgate+proxy-v2 and procgate+limits, then the
/// floor relay.
pub const CONTENDERS: usize = 5;
/// procgate+proxy-v2's place among the contenders.
pub const PROXY_V2_INDEX: usize = 2;
/// procgate+limits's place among the contenders.
pub const LIMITS_INDEX: usize = 3;
/// The floor relay's place among the contenders.
pub const FLOOR_INDEX: usize = 4;
/// Above the floor's table: what it shows.
const FLOOR_HEADING: &str = "the floor, the least a relay can do (see the notes): its ratio to HAProxy is the most \
any proxy's can be on this machine; procgate's ratio to it";
/// Above the variants' table: what it shows and the target.
const VARIANTS_HEADING: &str =
    "procgate's variants and their ratios to plain procgate (target: >= 0.95 where higher is better, <= 1.05 where lower)";

/// A figure of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    NewConnections,
    PingPong,
    RttP50,
    RttP99,
    Upload,
    Download,
    HeldRss,
    CpuPerConnection,
    CpuPerMessage,
    /// redis-benchmark's requests per second at `PIPELINES[i]` commands per pipeline.
    Redis(usize),
    /// The proxy's CPU time per redis-benchmark request, at `PIPELINES[i]`.
    RedisCpu(usize),
    /// Per-message round trips over the `BUSY[i]` busy connections, and their evenness.
    BusyP50(usize),
    BusyP99(usize),
    BusyP999(usize),
    BusyEvenness(usize),
}

impl report::Metric for Metric {
    const ALL: &'static [Metric] = &[
        Metric::NewConnections,
        Metric::CpuPerConnection,
        Metric::PingPong,
        Metric::CpuPerMessage,
        Metric::RttP50,
        Metric::RttP99,
        Metric::Upload,
        Metric::Download,
        Metric::Redis(0),
        Metric::RedisCpu(0),
        Metric::Redis(1),
        Metric::RedisCpu(1),
        Metric::HeldRss,
        Metric::BusyP50(0),
        Metric::BusyP99(0),
        Metric::BusyP999(0),
        Metric::BusyEvenness(0),
        Metric::BusyP50(1),
        Metric::BusyP99(1),
        Metric::BusyP999(1),
        Metric::BusyEvenness(1),
        Metric::BusyP50(2),
        Metric::BusyP99(2),
        Metric::BusyP999(2),
        Metric::BusyEvenness(2),
    ];
    const WIDTHS: Widths = Widths { name: 28, value: 12, ratio: 24 };
    const TABLES: &'static [Table] = &[
        Table { heading: None, columns: &[PROCGATE_INDEX, HAPROXY_INDEX], ratios: &[(PROCGATE_INDEX, HAPROXY_INDEX)] },
        Table {
            heading: Some(VARIANTS_HEADING),
            columns: &[PROXY_V2_INDEX, LIMITS_INDEX],
            ratios: &[(PROXY_V2_INDEX, PROCGATE_INDEX), (LIMITS_INDEX, PROCGATE_INDEX)],
        },
        Table {
            heading: Some(FLOOR_HEADING),
            columns: &[FLOOR_INDEX],
            ratios: &[(FLOOR_INDEX, HAPROXY_INDEX), (PROCGATE_INDEX, FLOOR_INDEX)],
        },
    ];

    fn label(self) -> &'static str {
        match self {
            Metric::NewConnections => "new connections/s",
            Metric::PingPong => "ping-pong msgs/s",
            Metric::RttP50 => "rtt p50 (us)",
            Metric::RttP99 => "rtt p99 (us)",
            Metric::Upload => "upload MB/s",
            Metric::Download => "download MB/s",
            Metric::HeldRss => "PSS per held conn (bytes)",
            Metric::CpuPerConnection => "CPU per new conn (us)",
            Metric::CpuPerMessage => "CPU per ping-pong msg (us)",
            Metric::Redis(at) => ["redis -c 50 -P 1 req/s", "redis -c 50 -P 16 req/s"][at],
            Metric::RedisCpu(at) => ["CPU per redis req -P 1 (us)", "CPU per redis req -P 16 (us)"][at],
            Metric::BusyP50(at) => ["16 busy: rtt p50 (us)", "64 busy: rtt p50 (us)", "256 busy: rtt p50 (us)"][at],
            Metric::BusyP99(at) => ["16 busy: rtt p99 (us)", "64 busy: rtt p99 (us)", "256 busy: rtt p99 (us)"][at],
            Metric::BusyP999(at) => {
                ["16 busy: rtt p99.9 (us)", "64 busy: rtt p99.9 (us)", "256 busy: rtt p99.9 (us)"][at]
            }
            Metric::BusyEvenness(at) => ["16 busy: fewest/most", "64 busy: fewest/most", "256 busy: fewest/most"][at],
        }
    }

    fn better(self) -> Better {
        match self {
            Metric::NewConnections | Metric::PingPong | Metric::Upload | Metric::Download => Better::Higher,
            Metric::Redis(_) | Metric::BusyEvenness(_) => Better::Higher,
            Metric::RttP50 | Metric::RttP99 | Metric::HeldRss => Better::Lower,
            Metric::CpuPerConnection | Metric::CpuPerMessage | Metric::RedisCpu(_) => Better::Lower,
            Metric::BusyP50(_) | Metric::BusyP99(_) | Metric::BusyP999(_) => Better::Lower,
        }
    }

    fn format(self, value: f64) -> String {
        match self {
            Metric::RttP50 | Metric::RttP99 | Metric::Upload | Metric::Download => format!("{value:.1}"),
            Metric::CpuPerConnection => format!("{value:.1}"),
            Metric::CpuPerMessage | Metric::RedisCpu(_) => format!("{value:.2}"),
            Metric::BusyP50(_) | Metric::BusyP99(_) | Metric::BusyP999(_) => format!("{value:.0}"),
            Metric::BusyEvenness(_) => format!("{value:.2}"),
            Metric::NewConnections | Metric::PingPong | Metric::HeldRss | Metric::Redis(_) => format!("{value:.0}"),
        }
    }
}

/// Every sample of every metric, per contender.
pub type Samples = report::Samples<Metric, CONTENDERS>;
/// One contender's figures from one measurement.
pub type Figures = report::Figures<Metric>;
