//! The figures: each metric's samples per contender, the round-by-round lines, and the final
//! table of medians with the ratio of the first contender (procgate) to the second (HAProxy).

use std::collections::BTreeMap;

/// Contenders compared: procgate, then HAProxy.
pub const CONTENDERS: usize = 2;
/// Width of the metric name column.
const NAME_WIDTH: usize = 27;
/// Width of each value column.
const VALUE_WIDTH: usize = 12;
/// Width of the ratio column.
const RATIO_WIDTH: usize = 18;

/// Which way a metric improves.
#[derive(Debug, Clone, Copy)]
pub enum Better {
    Higher,
    Lower,
}

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

impl Metric {
    /// Table order.
    const ALL: [Metric; 7] = [
        Metric::NewConnections,
        Metric::PingPong,
        Metric::RttP50,
        Metric::RttP99,
        Metric::Bulk,
        Metric::HeldRss,
        Metric::CpuPerConnection,
    ];

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

/// One contender's figures from one measurement, and what went wrong if anything.
#[derive(Debug, Default)]
pub struct Figures {
    pub values: Vec<(Metric, f64)>,
    pub remark: Option<String>,
}

impl Figures {
    pub fn failed(why: String) -> Figures {
        Figures { values: Vec::new(), remark: Some(why) }
    }

    fn value(&self, metric: Metric) -> Option<f64> {
        self.values.iter().find(|(m, _)| *m == metric).map(|(_, value)| *value)
    }
}

/// Every sample of every metric, per contender.
#[derive(Debug, Default)]
pub struct Samples {
    values: BTreeMap<Metric, [Vec<f64>; CONTENDERS]>,
}

impl Samples {
    /// Records the contenders' figures of one measurement (of the load `load`) and prints them
    /// as round lines.
    pub fn record(&mut self, load: &str, names: [&str; CONTENDERS], figures: [Option<Figures>; CONTENDERS]) {
        let mut metrics: Vec<Metric> =
            figures.iter().flatten().flat_map(|f| f.values.iter().map(|(m, _)| *m)).collect();
        metrics.sort();
        metrics.dedup();
        for (i, metric) in metrics.iter().enumerate() {
            let values = figures.each_ref().map(|f| f.as_ref().and_then(|f| f.value(*metric)));
            for (contender, value) in values.iter().enumerate() {
                self.values.entry(*metric).or_default()[contender].extend(value);
            }
            let remarks = if i == 0 { remarks(names, &figures) } else { String::new() };
            println!("  {}{remarks}", round_line(*metric, names, values));
        }
        let remarks = remarks(names, &figures);
        if metrics.is_empty() && !remarks.is_empty() {
            println!("  {load:<NAME_WIDTH$}{}", remarks.trim_start());
        }
    }

    fn median(&self, metric: Metric, contender: usize) -> Option<f64> {
        let mut values = self.values.get(&metric)?[contender].clone();
        values.sort_by(f64::total_cmp);
        let middle = values.len() / 2;
        match values.len() {
            0 => None,
            n if n % 2 == 1 => Some(values[middle]),
            _ => Some((values[middle - 1] + values[middle]) / 2.0),
        }
    }

    fn count(&self, metric: Metric) -> usize {
        self.values.get(&metric).map_or(0, |per| per.iter().map(Vec::len).max().unwrap_or(0))
    }

    /// The table of medians, one row per metric.
    pub fn print_table(&self, names: [&str; CONTENDERS]) {
        let ratio_name = format!("{}/{}", names[0], names[1]);
        println!(
            "{:<NAME_WIDTH$}{:>VALUE_WIDTH$}{:>VALUE_WIDTH$}{ratio_name:>RATIO_WIDTH$}  better  samples",
            "metric (median)", names[0], names[1]
        );
        for metric in Metric::ALL {
            let medians: [Option<f64>; CONTENDERS] = std::array::from_fn(|contender| self.median(metric, contender));
            let shown = medians.map(|median| median.map_or("n/a".to_string(), |m| metric.format(m)));
            let better = match metric.better() {
                Better::Higher => "higher",
                Better::Lower => "lower ",
            };
            println!(
                "{:<NAME_WIDTH$}{:>VALUE_WIDTH$}{:>VALUE_WIDTH$}{:>RATIO_WIDTH$}  {better}  {}",
                metric.label(),
                shown[0],
                shown[1],
                ratio(medians),
                self.count(metric)
            );
        }
    }
}

fn round_line(metric: Metric, names: [&str; CONTENDERS], values: [Option<f64>; CONTENDERS]) -> String {
    let shown = values.map(|value| value.map_or("n/a".to_string(), |v| metric.format(v)));
    format!(
        "{:<NAME_WIDTH$}{} {:>VALUE_WIDTH$}   {} {:>VALUE_WIDTH$}   ratio {:>6}",
        metric.label(),
        names[0],
        shown[0],
        names[1],
        shown[1],
        ratio(values)
    )
}

fn remarks(names: [&str; CONTENDERS], figures: &[Option<Figures>; CONTENDERS]) -> String {
    let noted: Vec<String> = names
        .iter()
        .zip(figures)
        .filter_map(|(name, f)| Some(format!("{name}: {}", f.as_ref()?.remark.as_ref()?)))
        .collect();
    match noted.is_empty() {
        true => String::new(),
        false => format!("   ({})", noted.join("; ")),
    }
}

/// `procgate / haproxy` with two decimals, or `n/a`.
fn ratio(values: [Option<f64>; CONTENDERS]) -> String {
    match values {
        [Some(first), Some(second)] if second > 0.0 => format!("{:.2}", first / second),
        _ => "n/a".to_string(),
    }
}
