//! The output multiplexer: instance lines and procgate's own events, foreman-style, kept.
//!
//! `HH:MM:SS web.1  | text` for instance output, `HH:MM:SS system | text` for procgate's events
//! (emitted through `tracing`), names padded to one width, one colour per type on a TTY only
//! (`NO_COLOR` respected); the date too with `--timestamps full`. With `start`, every line is
//! also kept in memory for `procgate logs` ([`history`]) and, with `--log-dir`, in log files
//! ([`files`]).
//!
//! Writing never blocks the caller (a data-plane thread, an output reader): lines go through a
//! bounded queue to a writer thread of their own. When stdout stalls (a paused terminal,
//! `procgate start | less`, a slow log collector) or a disk does, and the queue is full, lines are
//! dropped and counted, and `log output stalled: N lines dropped` is written once the writer
//! catches up.

pub mod files;
pub mod history;
pub mod record;
mod writer;

use history::History;
use record::Record;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use writer::{Message, Writer};

/// The smallest name column, as foreman's (`system` fits).
const MIN_NAME_WIDTH: usize = 6;

/// Lines that may wait for the writer; past it (or past `QUEUE_BYTES`) new lines are dropped.
const QUEUE_LINES: usize = 4096;

/// The most bytes of lines that may wait for the writer (lines are up to 16 KiB each).
const QUEUE_BYTES: usize = 4 << 20;

/// Writes prefixed lines to stdout (or stderr) through the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Output {
    inner: Arc<Inner>,
}

struct Inner {
    width: Arc<AtomicUsize>,
    /// Instance lines written so far.
    instance_lines: AtomicUsize,
    queue: SyncSender<Message>,
    /// Bytes of the lines waiting in the queue.
    queued_bytes: Arc<AtomicUsize>,
    /// Lines dropped since the writer last said so.
    dropped: Arc<AtomicU64>,
    /// Lines dropped since procgate started (metrics).
    dropped_total: AtomicU64,
}

/// Where `start` keeps its lines beyond the terminal.
pub struct Keeping {
    /// The date and time on the terminal too (`--timestamps full`).
    pub full_timestamps: bool,
    pub history: Option<Arc<History>>,
    pub files: Option<files::LogFiles>,
}

impl Output {
    /// Colours only when stdout is a terminal and `NO_COLOR` is unset or empty.
    pub fn new() -> Output {
        let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Output::build(std::io::stdout().is_terminal() && !no_colour, false)
    }

    /// The same lines on stderr, never coloured: stdout is kept for a report (`--json`).
    pub fn to_stderr() -> Output {
        Output::build(false, true)
    }

    fn build(colour: bool, to_stderr: bool) -> Output {
        let (queue, lines) = std::sync::mpsc::sync_channel(QUEUE_LINES);
        let writer = Writer::new(lines, to_stderr, colour, MIN_NAME_WIDTH);
        let (queued_bytes, dropped, width) = writer.counters();
        // Without its thread every line would be dropped and counted; procgate still runs.
        let _ = std::thread::Builder::new().name("output".into()).spawn(move || writer.run());
        let (instance_lines, dropped_total) = (AtomicUsize::new(0), AtomicU64::new(0));
        let inner = Inner { width, instance_lines, queue, queued_bytes, dropped, dropped_total };
        Output { inner: Arc::new(inner) }
    }

    /// From now on, lines are also kept as `keeping` says.
    pub fn keep(&self, keeping: Keeping) {
        self.send(Message::Keep(Box::new(keeping)), Duration::from_secs(1));
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
    pub fn instance_line(&self, name: &str, colour_index: usize, pid: Option<u32>, text: &str) {
        self.inner.instance_lines.fetch_add(1, Ordering::Relaxed);
        self.write(Record::instance(name, colour_index, pid, text));
    }

    /// One of procgate's own lines.
    pub fn system(&self, text: &str) {
        self.write(Record::system(text));
    }

    /// Queues the line for the writer, or drops and counts it when the queue is full.
    fn write(&self, record: Record) {
        let inner = &self.inner;
        let bytes = record.text.len();
        let queued = inner.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        let sent = queued + bytes <= QUEUE_BYTES && inner.queue.try_send(Message::Line(record)).is_ok();
        if !sent {
            inner.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            inner.dropped.fetch_add(1, Ordering::Relaxed);
            inner.dropped_total.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lines dropped since procgate started because the output did not keep up.
    pub fn dropped_lines(&self) -> u64 {
        self.inner.dropped_total.load(Ordering::Relaxed)
    }

    /// Waits until every line queued so far is written, for at most `limit` (stdout may be
    /// stalled): call before exiting or before printing past the queue.
    pub fn flush(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let (done, written) = std::sync::mpsc::sync_channel(1);
        if self.send(Message::Flush(done), limit) {
            let _ = written.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        }
    }

    /// Sends a message that must not be dropped, waiting up to `limit` for room in the queue.
    fn send(&self, mut message: Message, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            match self.inner.queue.try_send(message) {
                Ok(()) => return true,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => message = back,
                Err(_) => return false,
            }
            std::thread::sleep(Duration::from_millis(1));
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
