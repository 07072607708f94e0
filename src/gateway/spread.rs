//! Evens out a TCP route's connections over the data-plane threads. SO_REUSEPORT spreads new
//! connections by a hash of their addresses, so 64 connections may land 36 and 28: the busier
//! thread then serves each of its connections less often (a tail, and uneven service). A thread
//! that accepts a connection while it holds more than [`SLACK`] more than the least loaded thread
//! hands it over to that one (one cross-thread wakeup, for that connection only).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// How many more connections than the least loaded thread a thread keeps before handing over.
pub const SLACK: usize = 2;

/// A connection handed over to another thread, with its peer.
pub type Handover = (std::net::TcpStream, std::net::SocketAddr);

/// One route's connections per thread, and each thread's inbox of handed-over connections.
pub struct Spread {
    open: Vec<AtomicUsize>,
    inboxes: Vec<mpsc::UnboundedSender<Handover>>,
}

impl Spread {
    /// For `threads` threads; returns each thread's inbox to read.
    pub fn new(threads: usize) -> (Arc<Spread>, Vec<mpsc::UnboundedReceiver<Handover>>) {
        let (inboxes, receivers): (Vec<_>, Vec<_>) = (0..threads).map(|_| mpsc::unbounded_channel()).unzip();
        let open = (0..threads).map(|_| AtomicUsize::new(0)).collect();
        (Arc::new(Spread { open, inboxes }), receivers)
    }

    /// The thread that should serve a connection accepted on `thread`: itself, or the least
    /// loaded one when `thread` holds more than [`SLACK`] more.
    pub fn target(&self, thread: usize) -> usize {
        let load = |t: usize| self.open[t].load(Ordering::Relaxed);
        let least = (0..self.open.len()).min_by_key(|t| load(*t)).unwrap_or(thread);
        match load(thread) > load(least) + SLACK {
            true => least,
            false => thread,
        }
    }

    /// Hands `handover` to `thread`; gives it back if that thread is gone.
    pub fn hand_over(&self, thread: usize, handover: Handover) -> Result<(), Handover> {
        self.inboxes[thread].send(handover).map_err(|mpsc::error::SendError(back)| back)
    }

    /// Counts a connection on `thread` for as long as the guard lives.
    pub fn serving(self: &Arc<Spread>, thread: usize) -> Serving {
        self.open[thread].fetch_add(1, Ordering::Relaxed);
        Serving { spread: self.clone(), thread }
    }
}

/// A connection counted on its thread.
pub struct Serving {
    spread: Arc<Spread>,
    thread: usize,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.spread.open[self.thread].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_hands_over_only_past_the_slack() {
        let (spread, _inboxes) = Spread::new(2);
        let held: Vec<Serving> = (0..SLACK + 1).map(|_| spread.serving(0)).collect();
        assert_eq!(spread.target(0), 1, "{} against 0", held.len());
        assert_eq!(spread.target(1), 1);
        drop(held);
        assert_eq!(spread.target(0), 0);
    }
}
