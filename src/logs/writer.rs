//! The writer thread: takes lines off the queue and writes them to the terminal, several per
//! `write` when they pile up, keeps them (history, log files) as `start` asked, and says how many
//! were dropped once it has caught up.

use super::record::Record;
use super::Keeping;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::Arc;

/// The most bytes the writer gathers into one `write`.
const BATCH_BYTES: usize = 64 << 10;

/// What the writer thread is sent.
pub enum Message {
    Line(Record),
    /// Answered once every line queued before it is written.
    Flush(SyncSender<()>),
    /// Keep the lines from now on.
    Keep(Box<Keeping>),
}

pub struct Writer {
    lines: Receiver<Message>,
    to_stderr: bool,
    colour: bool,
    queued_bytes: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
    width: Arc<AtomicUsize>,
    keeping: Keeping,
}

impl Writer {
    pub fn new(lines: Receiver<Message>, to_stderr: bool, colour: bool, width: usize) -> Writer {
        Writer {
            lines,
            to_stderr,
            colour,
            queued_bytes: Arc::new(AtomicUsize::new(0)),
            dropped: Arc::new(AtomicU64::new(0)),
            width: Arc::new(AtomicUsize::new(width)),
            keeping: Keeping { full_timestamps: false, history: None, files: None },
        }
    }

    /// The counters the senders share: bytes queued, lines dropped, the name column's width.
    pub fn counters(&self) -> (Arc<AtomicUsize>, Arc<AtomicU64>, Arc<AtomicUsize>) {
        (self.queued_bytes.clone(), self.dropped.clone(), self.width.clone())
    }

    pub fn run(mut self) {
        let mut batch = Vec::with_capacity(BATCH_BYTES);
        let mut flushes = Vec::new();
        while let Ok(first) = self.lines.recv() {
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    Message::Line(record) => {
                        self.queued_bytes.fetch_sub(record.text.len(), Ordering::Relaxed);
                        self.take(record, &mut batch);
                    }
                    Message::Flush(done) => flushes.push(done),
                    Message::Keep(keeping) => self.keeping = *keeping,
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

    /// Adds a line to the terminal's batch, the log file and the history.
    fn take(&mut self, record: Record, batch: &mut Vec<u8>) {
        let width = self.width.load(Ordering::Relaxed);
        batch.extend_from_slice(record.terminal(width, self.colour, self.keeping.full_timestamps).as_bytes());
        if let Some(files) = &mut self.keeping.files {
            files.write(&record);
        }
        if let Some(history) = &self.keeping.history {
            history.push(record);
        }
    }

    /// Adds the `log output stalled` line when lines were dropped since the last one.
    fn say_dropped(&mut self, batch: &mut Vec<u8>) {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            self.take(Record::system(format!("log output stalled: {dropped} lines dropped")), batch);
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
