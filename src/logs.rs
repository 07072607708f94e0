//! The output multiplexer: instance lines and procgate's own events, foreman-style.
//!
//! `HH:MM:SS web.1  | text` for instance output, `HH:MM:SS system | text` for procgate's events
//! (emitted through `tracing`), names padded to one width, one colour per type on a TTY only
//! (`NO_COLOR` respected).
//!
//! Writing never blocks the caller (a data-plane thread, an output reader): lines go through a
//! bounded queue to a writer thread of their own. When stdout stalls (a paused terminal,
//! `procgate start | less`, a slow log collector) and the queue is full, lines are dropped and
//! counted, and `log output stalled: N lines dropped` is written once the writer catches up.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// The smallest name column, as foreman's (`system` fits).
const MIN_NAME_WIDTH: usize = 6;

/// ANSI colours cycled per process type: cyan, yellow, green, magenta, red, blue, then bright.
const COLOURS: [u8; 12] = [36, 33, 32, 35, 31, 34, 96, 93, 92, 95, 91, 94];

/// Lines that may wait for the writer; past it (or past `QUEUE_BYTES`) new lines are dropped.
const QUEUE_LINES: usize = 4096;

/// The most bytes of lines that may wait for the writer (lines are up to 16 KiB each).
const QUEUE_BYTES: usize = 4 << 20;

/// The most bytes the writer gathers into one `write`.
const BATCH_BYTES: usize = 64 << 10;

/// Writes prefixed lines to stdout (or stderr) through the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Output {
    inner: Arc<Inner>,
}

struct Inner {
    width: Arc<AtomicUsize>,
    colour: bool,
    /// Instance lines written so far.
    instance_lines: AtomicUsize,
    queue: SyncSender<Message>,
    /// Bytes of the lines waiting in the queue.
    queued_bytes: Arc<AtomicUsize>,
    /// Lines dropped since the writer last said so.
    dropped: Arc<AtomicU64>,
}

/// What the writer thread is sent.
enum Message {
    Line(String),
    /// Answered once every line queued before it is written.
    Flush(SyncSender<()>),
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
        let (queue, lines) = std::sync::mpsc::sync_channel(QUEUE_LINES);
        let writer = Writer {
            lines,
            to_stderr,
            queued_bytes: Arc::new(AtomicUsize::new(0)),
            dropped: Arc::new(AtomicU64::new(0)),
            width: Arc::new(AtomicUsize::new(MIN_NAME_WIDTH)),
        };
        let (queued_bytes, dropped, width) =
            (writer.queued_bytes.clone(), writer.dropped.clone(), writer.width.clone());
        // Without its thread every line would be dropped and counted; procgate still runs.
        let _ = std::thread::Builder::new().name("output".into()).spawn(move || writer.run());
        let inner = Inner { width, colour, instance_lines: AtomicUsize::new(0), queue, queued_bytes, dropped };
        Output { inner: Arc::new(inner) }
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
        self.write(self.format(name, colour, text));
    }

    /// One of procgate's own lines.
    pub fn system(&self, text: &str) {
        self.write(self.format("system", None, text));
    }

    /// Queues the line for the writer, or drops and counts it when the queue is full.
    fn write(&self, line: String) {
        let inner = &self.inner;
        let bytes = line.len();
        let queued = inner.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        let sent = queued + bytes <= QUEUE_BYTES && inner.queue.try_send(Message::Line(line)).is_ok();
        if !sent {
            inner.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            inner.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until every line queued so far is written, for at most `limit` (stdout may be
    /// stalled): call before exiting or before printing past the queue.
    pub fn flush(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let (done, written) = std::sync::mpsc::sync_channel(1);
        let mut message = Message::Flush(done);
        loop {
            match self.inner.queue.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => message = back,
                Err(_) => return,
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = written.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }

    fn format(&self, name: &str, colour: Option<u8>, text: &str) -> String {
        line(self.inner.width.load(Ordering::Relaxed), name, colour, text)
    }
}

/// `HH:MM:SS name | text\n`, the name padded to `width`, its prefix coloured when asked.
fn line(width: usize, name: &str, colour: Option<u8>, text: &str) -> String {
    let time = chrono::Local::now().format("%H:%M:%S");
    match colour {
        Some(code) => format!("\x1b[{code}m{time} {name:<width$} |\x1b[0m {text}\n"),
        None => format!("{time} {name:<width$} | {text}\n"),
    }
}

/// The writer thread: takes lines off the queue and writes them, several per `write` when
/// they pile up; says how many were dropped once it has caught up.
struct Writer {
    lines: Receiver<Message>,
    to_stderr: bool,
    queued_bytes: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
    width: Arc<AtomicUsize>,
}

impl Writer {
    fn run(self) {
        let mut batch = Vec::with_capacity(BATCH_BYTES);
        let mut flushes = Vec::new();
        while let Ok(first) = self.lines.recv() {
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    Message::Line(line) => {
                        self.queued_bytes.fetch_sub(line.len(), Ordering::Relaxed);
                        batch.extend_from_slice(line.as_bytes());
                    }
                    Message::Flush(done) => flushes.push(done),
                }
                next = match self.lines.try_recv() {
                    Ok(message) if batch.len() < BATCH_BYTES => Some(message),
                    Ok(message) => {
                        self.write(&mut batch);
                        Some(message)
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => None,
                };
            }
            self.say_dropped(&mut batch);
            self.write(&mut batch);
            for done in flushes.drain(..) {
                let _ = done.try_send(());
            }
        }
    }

    /// Adds the `log output stalled` line when lines were dropped since the last one.
    fn say_dropped(&self, batch: &mut Vec<u8>) {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let text = format!("log output stalled: {dropped} lines dropped");
            let width = self.width.load(Ordering::Relaxed);
            batch.extend_from_slice(line(width, "system", None, &text).as_bytes());
        }
    }

    /// One `write`; a closed stdout (e.g. `procgate start | head`) must not stop the platform.
    fn write(&self, batch: &mut Vec<u8>) {
        if batch.is_empty() {
            return;
        }
        let _ = match self.to_stderr {
            true => std::io::stderr().lock().write_all(batch),
            false => std::io::stdout().lock().write_all(batch),
        };
        batch.clear();
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
