//! The figures: each metric's samples per contender, the round-by-round lines, and the final
//! table of medians with the ratios of the first contender (procgate) to each of the others
//! (HAProxy, nginx).

use std::collections::BTreeMap;

/// Contenders compared: procgate, then HAProxy, then nginx.
pub const CONTENDERS: usize = 3;
/// Width of the metric name column.
const NAME_WIDTH: usize = 29;
/// Width of each value column.
const VALUE_WIDTH: usize = 11;
/// Width of each ratio column.
const RATIO_WIDTH: usize = 17;

/// Which way a metric improves.
#[derive(Debug, Clone, Copy)]
pub enum Better {
    Higher,
    Lower,
}

/// A figure of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    KeepAliveRate,
    KeepAliveP50,
    KeepAliveP99,
    NewConnectionRate,
    KeepAliveCpu,
    NewConnectionCpu,
    Rss,
}

impl Metric {
    /// Table order.
    const ALL: [Metric; 7] = [
        Metric::KeepAliveRate,
        Metric::KeepAliveP50,
        Metric::KeepAliveP99,
        Metric::NewConnectionRate,
        Metric::KeepAliveCpu,
        Metric::NewConnectionCpu,
        Metric::Rss,
    ];

    fn label(self) -> &'static str {
        match self {
            Metric::KeepAliveRate => "keep-alive req/s",
            Metric::KeepAliveP50 => "keep-alive p50 (us)",
            Metric::KeepAliveP99 => "keep-alive p99 (us)",
            Metric::NewConnectionRate => "new-connection req/s",
            Metric::KeepAliveCpu => "CPU per keep-alive req (us)",
            Metric::NewConnectionCpu => "CPU per new-conn req (us)",
            Metric::Rss => "RSS after the rounds (MB)",
        }
    }

    fn better(self) -> Better {
        match self {
            Metric::KeepAliveRate | Metric::NewConnectionRate => Better::Higher,
            Metric::KeepAliveP50
            | Metric::KeepAliveP99
            | Metric::KeepAliveCpu
            | Metric::NewConnectionCpu
            | Metric::Rss => Better::Lower,
        }
    }

    fn format(self, value: f64) -> String {
        match self {
            Metric::KeepAliveCpu | Metric::NewConnectionCpu | Metric::Rss => format!("{value:.1}"),
            Metric::KeepAliveRate | Metric::NewConnectionRate | Metric::KeepAliveP50 | Metric::KeepAliveP99 => {
                format!("{value:.0}")
            }
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
        let mut header = format!("{:<NAME_WIDTH$}", "metric (median)");
        for name in names {
            header.push_str(&format!("{name:>VALUE_WIDTH$}"));
        }
        for other in &names[1..] {
            header.push_str(&format!("{:>RATIO_WIDTH$}", format!("{}/{other}", names[0])));
        }
        println!("{header}  better  samples");
        for metric in Metric::ALL {
            let medians: [Option<f64>; CONTENDERS] = std::array::from_fn(|contender| self.median(metric, contender));
            let mut row = format!("{:<NAME_WIDTH$}", metric.label());
            for median in medians {
                row.push_str(&format!("{:>VALUE_WIDTH$}", median.map_or("n/a".to_string(), |m| metric.format(m))));
            }
            for ratio in ratios(medians) {
                row.push_str(&format!("{ratio:>RATIO_WIDTH$}"));
            }
            let better = match metric.better() {
                Better::Higher => "higher",
                Better::Lower => "lower ",
            };
            println!("{row}  {better}  {}", self.count(metric));
        }
    }
}

fn round_line(metric: Metric, names: [&str; CONTENDERS], values: [Option<f64>; CONTENDERS]) -> String {
    let mut line = format!("{:<NAME_WIDTH$}", metric.label());
    for (name, value) in names.iter().zip(values) {
        line.push_str(&format!("{name} {:>VALUE_WIDTH$}   ", value.map_or("n/a".to_string(), |v| metric.format(v))));
    }
    line.push_str("ratios");
    for ratio in ratios(values) {
        line.push_str(&format!(" {ratio:>6}"));
    }
    line
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

/// `procgate / other` for each other contender, with two decimals, or `n/a`.
fn ratios(values: [Option<f64>; CONTENDERS]) -> Vec<String> {
    values[1..]
        .iter()
        .map(|other| match (values[0], other) {
            (Some(first), Some(other)) if *other > 0.0 => format!("{:.2}", first / other),
            _ => "n/a".to_string(),
        })
        .collect()
}
