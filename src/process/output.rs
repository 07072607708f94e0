//! Reads an instance's stdout or stderr and prints it line by line, prefixed with its name.
//!
//! Partial lines wait for their newline (or end of file); a line longer than [`MAX_LINE`] is
//! printed in pieces so one runaway writer cannot hold unbounded memory.

use crate::logs::Output;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest piece of a line printed at once, in bytes.
pub const MAX_LINE: usize = 16 * 1024;

/// Where an instance's lines go: its name, its type's colour, and its main process once known.
#[derive(Clone)]
pub struct Prefix {
    pub output: Output,
    pub name: String,
    pub colour: usize,
    /// Set when the keeper reports the app started (0 before).
    pub pid: Arc<AtomicU32>,
}

impl Prefix {
    fn print(&self, bytes: &[u8]) {
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let pid = Some(self.pid.load(Ordering::Relaxed)).filter(|pid| *pid != 0);
        self.output.instance_line(&self.name, self.colour, pid, &String::from_utf8_lossy(bytes));
    }
}

/// An instance's stdout or stderr as it is read: complete lines are printed at once, a partial
/// line waits for its end (or end of file, or a [`Pump::flush`] before reading pauses).
pub struct Pump<S> {
    stream: S,
    prefix: Prefix,
    pending: Vec<u8>,
    /// End of file (or a read error) came: nothing more is read.
    ended: bool,
}

impl<S: AsyncRead + Unpin> Pump<S> {
    /// Reads `stream`, its lines printed with `prefix`.
    pub fn new(stream: S, prefix: Prefix) -> Pump<S> {
        Pump { stream, prefix, pending: Vec::with_capacity(1024), ended: false }
    }

    /// Whether end of file came.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Reads once and prints the complete lines; at end of file, the partial one too. Cancel
    /// safe: a call dropped before it finishes has read nothing.
    pub async fn step(&mut self) {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                self.ended = true;
                self.flush();
            }
            Ok(read) => {
                self.pending.extend_from_slice(&chunk[..read]);
                let consumed = print_complete_lines(&self.pending, &self.prefix);
                self.pending.drain(..consumed);
            }
        }
    }

    /// Reads and prints until end of file.
    pub async fn drain(&mut self) {
        while !self.ended {
            self.step().await;
        }
    }

    /// Prints the partial line, as at end of file: done before reading pauses, so that nothing
    /// read is held meanwhile (another process may read the rest).
    pub fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.prefix.print(&self.pending);
            self.pending.clear();
        }
    }
}

impl<S: AsFd> AsFd for Pump<S> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

/// Prints every full line (and every [`MAX_LINE`] piece) of `buffer`; returns the bytes used.
fn print_complete_lines(buffer: &[u8], prefix: &Prefix) -> usize {
    let mut start = 0;
    loop {
        let rest = &buffer[start..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(end) if end <= MAX_LINE => {
                prefix.print(&rest[..end]);
                start += end + 1;
            }
            _ if rest.len() >= MAX_LINE => {
                prefix.print(&rest[..MAX_LINE]);
                start += MAX_LINE;
            }
            _ => return start,
        }
    }
}
