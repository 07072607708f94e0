//! The recent lines kept in memory for `procgate logs`, and the live feed `logs -f` follows.
//! Bounded both ways: the oldest line goes when a new one comes past [`HISTORY_LINES`], and a
//! follower too slow for [`FOLLOW_BUFFER`] lines loses the lines it missed (and is told so).

use super::record::Record;
use chrono::{DateTime, Local};
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::broadcast;

/// The lines kept in memory.
pub const HISTORY_LINES: usize = 10_000;

/// The lines a follower may lag behind before it loses some.
pub const FOLLOW_BUFFER: usize = 4096;

pub struct History {
    /// The recent lines, and the feed: one lock, so a new follower gets neither a gap nor a
    /// line twice between what it reads and what it follows.
    inner: Mutex<(VecDeque<Record>, broadcast::Sender<Record>)>,
    capacity: usize,
}

impl History {
    pub fn new(capacity: usize) -> History {
        let (live, _) = broadcast::channel(FOLLOW_BUFFER);
        History { inner: Mutex::new((VecDeque::with_capacity(capacity.min(1024)), live)), capacity }
    }

    /// Keeps `record` and passes it to the followers (the output's writer thread).
    pub fn push(&self, record: Record) {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (recent, live) = &mut *inner;
        if live.receiver_count() > 0 {
            let _ = live.send(record.clone());
        }
        if recent.len() == self.capacity {
            recent.pop_front();
        }
        recent.push_back(record);
    }

    /// Keeps `earlier` lines (a previous main process's, handed over at an upgrade) before the
    /// kept ones, as many as fit.
    pub fn prepend(&self, earlier: Vec<Record>) {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let recent = &mut inner.0;
        let room = self.capacity.saturating_sub(recent.len());
        for record in earlier.into_iter().rev().take(room) {
            recent.push_front(record);
        }
    }

    /// The kept lines since `since` (all without it), and, when `follow`, the feed of the next.
    pub fn read(
        &self,
        since: Option<DateTime<Local>>,
        follow: bool,
    ) -> (Vec<Record>, Option<broadcast::Receiver<Record>>) {
        let inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (recent, live) = &*inner;
        let kept = recent.iter().filter(|r| since.is_none_or(|since| r.time >= since)).cloned().collect();
        (kept, follow.then(|| live.subscribe()))
    }

    /// The last `count` kept lines that `wanted` takes, oldest first (read from the newest end:
    /// a page refreshed every second does not copy the whole history).
    pub fn last(&self, count: usize, wanted: impl Fn(&Record) -> bool) -> Vec<Record> {
        let inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut last: Vec<Record> = inner.0.iter().rev().filter(|r| wanted(r)).take(count).cloned().collect();
        last.reverse();
        last
    }

    /// When the oldest kept line was written: older ones are only in the log files.
    pub fn oldest(&self) -> Option<DateTime<Local>> {
        let inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.0.front().map(|r| r.time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_and_a_follower_gets_what_comes_next_once() {
        let history = History::new(3);
        for n in 0..5 {
            history.push(Record::system(format!("line {n}")));
        }
        let (kept, live) = history.read(None, true);
        let texts: Vec<&str> = kept.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(texts, ["line 2", "line 3", "line 4"]);
        history.push(Record::system("line 5"));
        assert_eq!(live.unwrap().try_recv().unwrap().text, "line 5");
        let since = history.read(None, false).0[1].time;
        assert!(history.read(Some(since), false).0.iter().all(|r| r.time >= since));
    }

    #[test]
    fn lines_handed_over_go_before_the_kept_ones_as_many_as_fit() {
        let history = History::new(3);
        history.push(Record::system("new 1"));
        history.prepend(["old 1", "old 2", "old 3"].map(Record::system).to_vec());
        let texts: Vec<String> = history.read(None, false).0.into_iter().map(|r| r.text).collect();
        assert_eq!(texts, ["old 2", "old 3", "new 1"]);
    }
}
