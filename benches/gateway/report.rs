//! The gateway bench's metrics: their table order, labels, better direction and format.
//!
//! The table itself is common/report.rs's; its ratio is procgate/HAProxy.

use crate::common::report::{self, Better, Widths};

/// Contenders compared: procgate, then HAProxy.
pub const CONTENDERS: usize = 2;

/// A figure of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    NewConnections,
    PingPong,
    RttP50,
    RttP99,
    Bulk,
    HeldRss,
    CpuPerConnection,
}

impl report::Metric for Metric {
    const ALL: &'static [Metric] = &[
        Metric::NewConnections,
        Metric::PingPong,
        Metric::RttP50,
        Metric::RttP99,
        Metric::Bulk,
        Metric::HeldRss,
        Metric::CpuPerConnection,
    ];
    const WIDTHS: Widths = Widths { name: 27, value: 12, ratio: 18 };

    fn label(self) -> &'static str {
        match self {
            Metric::NewConnections => "new connections/s",
            Metric::PingPong => "ping-pong msgs/s",
            Metric::RttP50 => "rtt p50 (us)",
            Metric::RttP99 => "rtt p99 (us)",
            Metric::Bulk => "bulk MB/s",
            Metric::HeldRss => "RSS per held conn (bytes)",
            Metric::CpuPerConnection => "CPU per new conn (us)",
        }
    }

    fn better(self) -> Better {
        match self {
            Metric::NewConnections | Metric::PingPong | Metric::Bulk => Better::Higher,
            Metric::RttP50 | Metric::RttP99 | Metric::HeldRss | Metric::CpuPerConnection => Better::Lower,
        }
    }

    fn format(self, value: f64) -> String {
        match self {
            Metric::RttP50 | Metric::RttP99 | Metric::Bulk | Metric::CpuPerConnection => format!("{value:.1}"),
            Metric::NewConnections | Metric::PingPong | Metric::HeldRss => format!("{value:.0}"),
        }
    }
}

/// Every sample of every metric, per contender.
pub type Samples = report::Samples<Metric, CONTENDERS>;
/// One contender's figures from one measurement.
pub type Figures = report::Figures<Metric>;
