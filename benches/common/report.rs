//! The figures of both benches: samples per metric and contender, round lines, tables of medians.
//!
//! A bench names its metrics with [`Metric`], and says there which contenders each of its tables
//! shows and the ratios between them (procgate to each of the others, a variant to procgate).
//! A table's ratio is that of the medians, followed by the spread of the rounds' own ratios
//! (the lowest and the highest, over the rounds that measured both contenders).

use std::collections::BTreeMap;

/// procgate's place among a run's contenders: the first.
pub const PROCGATE_INDEX: usize = 0;
/// HAProxy's place, after procgate.
pub const HAPROXY_INDEX: usize = 1;

/// Spaces at least between two columns of a table.
const COLUMN_GAP: usize = 2;

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

/// A table of medians at the end of a run, and the round lines of the same contenders.
pub struct Table {
    /// The line above the table, if any.
    pub heading: Option<&'static str>,
    /// The contenders it shows, by their place among the run's contenders.
    pub columns: &'static [usize],
    /// Its ratios, each `(a, b)`: contender `a`'s figure over contender `b`'s, by their places.
    pub ratios: &'static [(usize, usize)],
}

/// A figure of a bench's comparison.
pub trait Metric: Copy + Ord + 'static {
    /// Table order.
    const ALL: &'static [Self];
    /// The tables' narrowest columns (wider where a heading needs it).
    const WIDTHS: Widths;
    /// The tables, one after the other; each measurement prints a round line per metric and table.
    const TABLES: &'static [Table];
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

/// Every sample of every metric: per measurement, each contender's (`N` of them), if any.
#[derive(Debug)]
pub struct Samples<M, const N: usize> {
    values: BTreeMap<M, Vec<[Option<f64>; N]>>,
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
            self.values.entry(*metric).or_default().push(values);
            for (j, table) in M::TABLES.iter().enumerate() {
                let remarks = if i == 0 && j == 0 { remarks(names, &figures) } else { String::new() };
                println!("  {}{remarks}", round_line(*metric, table, names, values));
            }
        }
        let remarks = remarks(names, &figures);
        if metrics.is_empty() && !remarks.is_empty() {
            let width = M::WIDTHS.name;
            println!("  {load:<width$}{}", remarks.trim_start());
        }
    }

    /// The values of `contender` for `metric`, one per measurement that has one.
    fn of(&self, metric: M, contender: usize) -> Vec<f64> {
        self.values.get(&metric).map_or(Vec::new(), |rows| rows.iter().filter_map(|row| row[contender]).collect())
    }

    fn median(&self, metric: M, contender: usize) -> Option<f64> {
        let mut values = self.of(metric, contender);
        values.sort_by(f64::total_cmp);
        let middle = values.len() / 2;
        match values.len() {
            0 => None,
            n if n % 2 == 1 => Some(values[middle]),
            _ => Some((values[middle - 1] + values[middle]) / 2.0),
        }
    }

    /// The most samples any of `contenders` has of `metric`.
    fn count(&self, metric: M, contenders: &[usize]) -> usize {
        contenders.iter().map(|&c| self.of(metric, c).len()).max().unwrap_or(0)
    }

    /// The lowest and highest of the measurements' own ratios `a`/`b` of `metric`, if any.
    fn ratio_spread(&self, metric: M, (a, b): (usize, usize)) -> Option<(f64, f64)> {
        let ratios = self.values.get(&metric)?.iter().filter_map(|row| match (row[a], row[b]) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        });
        ratios.fold(None, |spread, r| Some(spread.map_or((r, r), |(low, high): (f64, f64)| (low.min(r), high.max(r)))))
    }

    /// The tables of medians, one row per metric, a blank line between two.
    pub fn print_tables(&self, names: [&str; N]) {
        for (i, table) in M::TABLES.iter().enumerate() {
            if i > 0 {
                println!();
            }
            self.print_table(table, names);
        }
    }

    fn print_table(&self, table: &Table, names: [&str; N]) {
        let Widths { name: name_width, value: value_width, ratio: ratio_width } = M::WIDTHS;
        let ratio_names: Vec<String> =
            table.ratios.iter().map(|&(a, b)| format!("{}/{}", names[a], names[b])).collect();
        let value_widths: Vec<usize> =
            table.columns.iter().map(|&c| value_width.max(names[c].len() + COLUMN_GAP)).collect();
        let ratio_widths: Vec<usize> =
            ratio_names.iter().map(|name| ratio_width.max(name.len() + COLUMN_GAP)).collect();
        if let Some(heading) = table.heading {
            println!("{heading}");
        }
        let mut header = format!("{:<name_width$}", "metric (median)");
        for (&c, width) in table.columns.iter().zip(&value_widths) {
            header.push_str(&format!("{:>width$}", names[c]));
        }
        for (name, width) in ratio_names.iter().zip(&ratio_widths) {
            header.push_str(&format!("{name:>width$}"));
        }
        println!("{header}  better  samples");
        for &metric in M::ALL {
            let medians: [Option<f64>; N] = std::array::from_fn(|contender| self.median(metric, contender));
            let mut row = format!("{:<name_width$}", metric.label());
            for (&c, width) in table.columns.iter().zip(&value_widths) {
                row.push_str(&format!("{:>width$}", medians[c].map_or("n/a".to_string(), |m| metric.format(m))));
            }
            for (&pair, width) in table.ratios.iter().zip(&ratio_widths) {
                let spread = match self.ratio_spread(metric, pair) {
                    Some((low, high)) => format!(" ({low:.2}-{high:.2})"),
                    None => String::new(),
                };
                row.push_str(&format!("{:>width$}", ratio(medians, pair) + &spread));
            }
            let better = match metric.better() {
                Better::Higher => "higher",
                Better::Lower => "lower ",
            };
            println!("{row}  {better}  {}", self.count(metric, table.columns));
        }
    }
}

/// `metric  procgate  v   haproxy  v   ratio  r`: the `table`'s contenders, their names padded
/// to the longest of all so that the lines of several tables align, and its ratios.
fn round_line<M: Metric, const N: usize>(
    metric: M,
    table: &Table,
    names: [&str; N],
    values: [Option<f64>; N],
) -> String {
    let Widths { name: name_width, value: value_width, .. } = M::WIDTHS;
    let longest = names.iter().map(|name| name.len()).max().unwrap_or(0);
    let mut line = format!("{:<name_width$}", metric.label());
    for &c in table.columns {
        let value = values[c].map_or("n/a".to_string(), |v| metric.format(v));
        line.push_str(&format!("{:<longest$} {value:>value_width$}   ", names[c]));
    }
    line.push_str(if table.ratios.len() == 1 { "ratio " } else { "ratios" });
    for &pair in table.ratios {
        line.push_str(&format!(" {:>6}", ratio(values, pair)));
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

/// Contender `a`'s value over contender `b`'s, with two decimals, or `n/a`.
fn ratio<const N: usize>(values: [Option<f64>; N], (a, b): (usize, usize)) -> String {
    match (values[a], values[b]) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "n/a".to_string(),
    }
}
