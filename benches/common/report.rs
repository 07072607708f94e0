//! The figures of both benches: samples per metric and contender, round lines, a table of medians.
//!
//! The table gives the ratios of the first contender (procgate) to each of the others. A bench
//! names its metrics with [`Metric`].

use std::collections::BTreeMap;

/// Which way a metric improves.
#[derive(Debug, Clone, Copy)]
pub enum Better {
    Higher,
    Lower,
}

/// Widths of the table's columns.
pub struct Widths {
    /// The metric name column.
    pub name: usize,
    /// Each value column.
    pub value: usize,
    /// Each ratio column.
    pub ratio: usize,
}

/// A figure of a bench's comparison.
pub trait Metric: Copy + Ord + 'static {
    /// Table order.
    const ALL: &'static [Self];
    /// The table's column widths.
    const WIDTHS: Widths;
    fn label(self) -> &'static str;
    fn better(self) -> Better;
    fn format(self, value: f64) -> String;
}

/// One contender's figures from one measurement, and what went wrong if anything.
#[derive(Debug)]
pub struct Figures<M> {
    pub values: Vec<(M, f64)>,
    pub remark: Option<String>,
}

impl<M: Metric> Figures<M> {
    pub fn failed(why: String) -> Figures<M> {
        Figures { values: Vec::new(), remark: Some(why) }
    }

    fn value(&self, metric: M) -> Option<f64> {
        self.values.iter().find(|(m, _)| *m == metric).map(|(_, value)| *value)
    }
}

/// Every sample of every metric, per contender (`N` of them).
#[derive(Debug)]
pub struct Samples<M, const N: usize> {
    values: BTreeMap<M, [Vec<f64>; N]>,
}

impl<M: Metric, const N: usize> Default for Samples<M, N> {
    fn default() -> Self {
        Samples { values: BTreeMap::new() }
    }
}

impl<M: Metric, const N: usize> Samples<M, N> {
    /// Records the contenders' figures of one measurement (of the load `load`) and prints them
    /// as round lines.
    pub fn record(&mut self, load: &str, names: [&str; N], figures: [Option<Figures<M>>; N]) {
        let mut metrics: Vec<M> = figures.iter().flatten().flat_map(|f| f.values.iter().map(|(m, _)| *m)).collect();
        metrics.sort();
        metrics.dedup();
        for (i, metric) in metrics.iter().enumerate() {
            let values = figures.each_ref().map(|f| f.as_ref().and_then(|f| f.value(*metric)));
            for (contender, value) in values.iter().enumerate() {
                self.values.entry(*metric).or_insert_with(|| std::array::from_fn(|_| Vec::new()))[contender]
                    .extend(value);
            }
            let remarks = if i == 0 { remarks(names, &figures) } else { String::new() };
            println!("  {}{remarks}", round_line(*metric, names, values));
        }
        let remarks = remarks(names, &figures);
        if metrics.is_empty() && !remarks.is_empty() {
            let width = M::WIDTHS.name;
            println!("  {load:<width$}{}", remarks.trim_start());
        }
    }

    fn median(&self, metric: M, contender: usize) -> Option<f64> {
        let mut values = self.values.get(&metric)?[contender].clone();
        values.sort_by(f64::total_cmp);
        let middle = values.len() / 2;
        match values.len() {
            0 => None,
            n if n % 2 == 1 => Some(values[middle]),
            _ => Some((values[middle - 1] + values[middle]) / 2.0),
        }
    }

    fn count(&self, metric: M) -> usize {
        self.values.get(&metric).map_or(0, |per| per.iter().map(Vec::len).max().unwrap_or(0))
    }

    /// The table of medians, one row per metric.
    pub fn print_table(&self, names: [&str; N]) {
        let Widths { name: name_width, value: value_width, ratio: ratio_width } = M::WIDTHS;
        let mut header = format!("{:<name_width$}", "metric (median)");
        for name in names {
            header.push_str(&format!("{name:>value_width$}"));
        }
        for other in &names[1..] {
            header.push_str(&format!("{:>ratio_width$}", format!("{}/{other}", names[0])));
        }
        println!("{header}  better  samples");
        for &metric in M::ALL {
            let medians: [Option<f64>; N] = std::array::from_fn(|contender| self.median(metric, contender));
            let mut row = format!("{:<name_width$}", metric.label());
            for median in medians {
                row.push_str(&format!("{:>value_width$}", median.map_or("n/a".to_string(), |m| metric.format(m))));
            }
            for ratio in ratios(medians) {
                row.push_str(&format!("{ratio:>ratio_width$}"));
            }
            let better = match metric.better() {
                Better::Higher => "higher",
                Better::Lower => "lower ",
            };
            println!("{row}  {better}  {}", self.count(metric));
        }
    }
}

/// `metric  procgate  v   haproxy  v   ratio  r`, with `ratios` and one ratio per other contender
/// when there are several.
fn round_line<M: Metric, const N: usize>(metric: M, names: [&str; N], values: [Option<f64>; N]) -> String {
    let Widths { name: name_width, value: value_width, .. } = M::WIDTHS;
    let mut line = format!("{:<name_width$}", metric.label());
    for (name, value) in names.iter().zip(values) {
        line.push_str(&format!("{name} {:>value_width$}   ", value.map_or("n/a".to_string(), |v| metric.format(v))));
    }
    line.push_str(if N == 2 { "ratio" } else { "ratios" });
    for ratio in ratios(values) {
        line.push_str(&format!(" {ratio:>6}"));
    }
    line
}

fn remarks<M: Metric, const N: usize>(names: [&str; N], figures: &[Option<Figures<M>>; N]) -> String {
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
fn ratios<const N: usize>(values: [Option<f64>; N]) -> Vec<String> {
    values[1..]
        .iter()
        .map(|other| match (values[0], other) {
            (Some(first), Some(other)) if *other > 0.0 => format!("{:.2}", first / other),
            _ => "n/a".to_string(),
        })
        .collect()
}
