//! The descriptor budget: how many clients the gateway and router hold at once, from the
//! open-files limit (two descriptors per proxied connection, some kept for procgate itself), so
//! a flood is refused at the door instead of exhausting descriptors (then nothing could be
//! accepted, not even on the control socket, and no instance could be spawned).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Refusals between two log lines about them.
const LOG_EVERY: u64 = 1000;

/// Open client connections against their most.
#[derive(Debug)]
pub struct Budget {
    open: AtomicUsize,
    max: usize,
    refused: AtomicU64,
}

/// A client's place in the budget, given back when it is dropped.
pub struct Place(Arc<Budget>);

impl Budget {
    pub fn new(max: usize) -> Arc<Budget> {
        Arc::new(Budget { open: AtomicUsize::new(0), max, refused: AtomicU64::new(0) })
    }

    /// A place for a new client, or `None` (logged now and then) when the budget is spent.
    pub fn enter(self: &Arc<Self>) -> Option<Place> {
        if self.open.fetch_add(1, Ordering::SeqCst) >= self.max {
            self.open.fetch_sub(1, Ordering::SeqCst);
            let refused = self.refused.fetch_add(1, Ordering::Relaxed);
            if refused % LOG_EVERY == 0 {
                let max = self.max;
                tracing::warn!("H11 too many connections: {max} open, all the open-files limit allows; closing new clients ({} so far)", refused + 1);
            }
            return None;
        }
        Some(Place(self.clone()))
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_given_back() {
        let budget = Budget::new(2);
        let (first, _second) = (budget.enter().unwrap(), budget.enter().unwrap());
        assert!(budget.enter().is_none());
        drop(first);
        assert!(budget.enter().is_some());
    }
}
