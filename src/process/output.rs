//! Reads an instance's stdout or stderr and prints it line by line, prefixed with its name.
//!
//! Partial lines wait for their newline (or end of file); a line longer than [`MAX_LINE`] is
//! printed in pieces so one runaway writer cannot hold unbounded memory.

use crate::logs::Output;
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

/// Copies `stream` to the output until end of file.
pub async fn pump(mut stream: impl AsyncRead + Unpin, prefix: Prefix) {
    let mut pending: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 8192];
    loop {
        let read = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..read]);
        let consumed = print_complete_lines(&pending, &prefix);
        pending.drain(..consumed);
    }
    if !pending.is_empty() {
        prefix.print(&pending);
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
