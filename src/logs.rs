//! The output multiplexer: instance lines and procgate's own events, foreman-style.
//!
//! `HH:MM:SS web.1  | text` for instance output, `HH:MM:SS system | text` for procgate's events
//! (emitted through `tracing`), names padded to one width, one colour per type on a TTY only
//! (`NO_COLOR` respected). Each line is one `write` to stdout, so lines never interleave.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// The smallest name column, as foreman's (`system` fits).
const MIN_NAME_WIDTH: usize = 6;

/// ANSI colours cycled per process type: cyan, yellow, green, magenta, red, blue, then bright.
const COLOURS: [u8; 12] = [36, 33, 32, 35, 31, 34, 96, 93, 92, 95, 91, 94];

/// Writes prefixed lines to stdout; cheap to clone.
#[derive(Clone)]
pub struct Output {
    inner: Arc<Inner>,
}

struct Inner {
    width: AtomicUsize,
    colour: bool,
    /// Lines go to stderr instead of stdout (when stdout carries a report).
    to_stderr: bool,
    /// Instance lines written so far.
    instance_lines: AtomicUsize,
}

impl Output {
    /// Colours only when stdout is a terminal and `NO_COLOR` is unset or empty.
    pub fn new() -> Output {
        let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Output::with_colour(std::io::stdout().is_terminal() && !no_colour)
    }

    /// The same lines on stderr, never coloured: stdout is kept for a report (`--json`).
    pub fn to_stderr() -> Output {
        Output::build(false, true)
    }

    fn with_colour(colour: bool) -> Output {
        Output::build(colour, false)
    }

    fn build(colour: bool, to_stderr: bool) -> Output {
        let width = AtomicUsize::new(MIN_NAME_WIDTH);
        Output { inner: Arc::new(Inner { width, colour, to_stderr, instance_lines: AtomicUsize::new(0) }) }
    }

    /// How many instance lines were written so far.
    pub fn instance_lines(&self) -> usize {
        self.inner.instance_lines.load(Ordering::Relaxed)
    }

    /// Widens the name column so `name` fits.
    pub fn fit(&self, name: &str) {
        self.inner.width.fetch_max(name.len(), Ordering::Relaxed);
    }

    /// One line of an instance's output; `colour_index` is its type's position.
    pub fn instance_line(&self, name: &str, colour_index: usize, text: &str) {
        let colour = self.inner.colour.then(|| COLOURS[colour_index % COLOURS.len()]);
        self.inner.instance_lines.fetch_add(1, Ordering::Relaxed);
        self.write(&self.format(name, colour, text));
    }

    /// One of procgate's own lines.
    pub fn system(&self, text: &str) {
        self.write(&self.format("system", None, text));
    }

    /// One `write` per line; a closed stdout (e.g. `procgate start | head`) must not stop the platform.
    fn write(&self, line: &str) {
        let _ = match self.inner.to_stderr {
            true => std::io::stderr().lock().write_all(line.as_bytes()),
            false => std::io::stdout().lock().write_all(line.as_bytes()),
        };
    }

    fn format(&self, name: &str, colour: Option<u8>, text: &str) -> String {
        let width = self.inner.width.load(Ordering::Relaxed);
        let time = chrono::Local::now().format("%H:%M:%S");
        match colour {
            Some(code) => format!("\x1b[{code}m{time} {name:<width$} |\x1b[0m {text}\n"),
            None => format!("{time} {name:<width$} | {text}\n"),
        }
    }
}

impl Default for Output {
    fn default() -> Self {
        Output::new()
    }
}

/// Sends `tracing` events at INFO and above to `output` as `system` lines.
pub fn init_tracing(output: Output) {
    let layer = SystemLines { output }.with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    // Only fails when a subscriber is already set (tests); keeping the first is right.
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

use tracing_subscriber::Layer;

struct SystemLines {
    output: Output,
}

impl<S: tracing::Subscriber> Layer<S> for SystemLines {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut text = String::new();
        event.record(&mut Fields(&mut text));
        self.output.system(&text);
    }
}

/// Renders the message, then any other fields as ` key=value`.
struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.0.insert_str(0, value),
            name => {
                let _ = write!(self.0, " {name}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_padded_to_the_widest_and_at_least_six() {
        let output = Output::with_colour(false);
        assert!(output.format("web.1", None, "hi").ends_with(" web.1  | hi\n"));
        output.fit("longer-name.10");
        assert!(output.format("system", None, "x").ends_with(" system         | x\n"));
    }

    #[test]
    fn colour_wraps_the_prefix_per_type_only_when_enabled() {
        let output = Output::with_colour(true);
        let line = output.format("tcp.1", Some(COLOURS[1]), "hi");
        assert!(line.starts_with("\x1b[33m") && line.ends_with(" tcp.1  |\x1b[0m hi\n"), "{line:?}");
        let plain = Output::with_colour(false);
        plain.instance_line("tcp.1", 1, "no colour, no panic");
        assert!(!plain.format("tcp.1", None, "hi").contains('\x1b'));
    }

    #[test]
    fn the_time_prefix_is_hh_mm_ss() {
        let line = Output::with_colour(false).format("web.1", None, "hi");
        let time = &line[..8];
        assert!(
            time.chars().enumerate().all(|(i, c)| if i == 2 || i == 5 { c == ':' } else { c.is_ascii_digit() }),
            "{line}"
        );
    }
}
