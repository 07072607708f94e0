//! The router bench's metrics: their table order, labels, better direction and format.
//!
//! The table itself is common/report.rs's; its ratios are procgate/HAProxy and procgate/nginx.

use crate::common::report::{self, Better, Table, Widths, HAPROXY_INDEX, PROCGATE_INDEX};

/// Contenders compared: procgate, then HAProxy, then nginx.
pub const CONTENDERS: usize = 3;
/// nginx's place among the contenders, hence its frontend port.
pub const NGINX_INDEX: usize = 2;

/// A figure of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    KeepAliveRate,
    KeepAliveP50,
    KeepAliveP99,
    KeepAliveP999,
    /// Requests of the least served connection over those of the most served.
    KeepAliveEvenness,
    NewConnectionRate,
    BulkRate,
    KeepAliveCpu,
    NewConnectionCpu,
    BulkCpu,
    Rss,
}

impl report::Metric for Metric {
    const ALL: &'static [Metric] = &[
        Metric::KeepAliveRate,
        Metric::KeepAliveP50,
        Metric::KeepAliveP99,
        Metric::KeepAliveP999,
        Metric::KeepAliveEvenness,
        Metric::NewConnectionRate,
        Metric::BulkRate,
        Metric::KeepAliveCpu,
        Metric::NewConnectionCpu,
        Metric::BulkCpu,
        Metric::Rss,
    ];
    const WIDTHS: Widths = Widths { name: 29, value: 11, ratio: 24 };
    const TABLES: &'static [Table] = &[Table {
        heading: None,
        columns: &[PROCGATE_INDEX, HAPROXY_INDEX, NGINX_INDEX],
        ratios: &[(PROCGATE_INDEX, HAPROXY_INDEX), (PROCGATE_INDEX, NGINX_INDEX)],
    }];

    fn label(self) -> &'static str {
        match self {
            Metric::KeepAliveRate => "keep-alive req/s",
            Metric::KeepAliveP50 => "keep-alive p50 (us)",
            Metric::KeepAliveP99 => "keep-alive p99 (us)",
            Metric::KeepAliveP999 => "keep-alive p99.9 (us)",
            Metric::KeepAliveEvenness => "keep-alive fewest/most",
            Metric::NewConnectionRate => "new-connection req/s",
            Metric::KeepAliveCpu => "CPU per keep-alive req (us)",
            Metric::NewConnectionCpu => "CPU per new-conn req (us)",
            Metric::BulkRate => "bulk MB/s",
            Metric::BulkCpu => "CPU per bulk MB (us)",
            Metric::Rss => "PSS after the rounds (MB)",
        }
    }

    fn better(self) -> Better {
        match self {
            Metric::KeepAliveRate | Metric::NewConnectionRate | Metric::BulkRate => Better::Higher,
            Metric::KeepAliveEvenness => Better::Higher,
            Metric::KeepAliveP50
            | Metric::KeepAliveP99
            | Metric::KeepAliveP999
            | Metric::KeepAliveCpu
            | Metric::NewConnectionCpu
            | Metric::BulkCpu
            | Metric::Rss => Better::Lower,
        }
    }

    fn format(self, value: f64) -> String {
        match self {
            Metric::KeepAliveCpu | Metric::NewConnectionCpu | Metric::BulkRate | Metric::BulkCpu | Metric::Rss => {
                format!("{value:.1}")
            }
            Metric::KeepAliveRate | Metric::NewConnectionRate | Metric::KeepAliveP50 | Metric::KeepAliveP99 => {
                format!("{value:.0}")
            }
            Metric::KeepAliveP999 => format!("{value:.0}"),
            Metric::KeepAliveEvenness => format!("{value:.2}"),
        }
    }
}

/// Every sample of every metric, per contender.
pub type Samples = report::Samples<Metric, CONTENDERS>;
/// One contender's figures from one measurement.
pub type Figures = report::Figures<Metric>;
