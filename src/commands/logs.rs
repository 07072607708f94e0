//! `procgate logs [-f] [--since 10m] [--json] [TYPE|INSTANCE...]`: the lines the running
//! procgate kept (in memory, and in its log files with `--log-dir`), oldest first, with their
//! full time; `-f` then follows new ones as `heroku logs -t` does, until Ctrl-C or procgate stops.
//! A follower whose stream ends while procgate still answers (an upgrade: the old main process
//! handed over) takes up again with the new one, a while back, without a line twice.

use crate::cli::LogsArgs;
use crate::control::{client, LogQuery};
use chrono::{DateTime, FixedOffset};
use std::collections::{HashMap, VecDeque};

pub fn run(args: LogsArgs) -> anyhow::Result<i32> {
    let mut query =
        LogQuery { since: args.since, from: None, follow: args.follow, json: args.json, only: args.targets };
    let root = args.root.root;
    client::block_on(async {
        let mut printed = Printed::default();
        let response = client::call(&root, hyper::Method::GET, &format!("/logs?{}", query.to_query()), None).await?;
        client::each_line(response, |line| printed.print(line, query.json)).await;
        while query.follow {
            let Some(from) = printed.take_up() else { break };
            (query.since, query.from) = (None, Some(from));
            let path = format!("/logs?{}", query.to_query());
            // A procgate that stopped no longer answers: the follow ends with it.
            let Ok(response) = client::call(&root, hyper::Method::GET, &path, None).await else { break };
            let before = printed.count;
            client::each_line(response, |line| printed.print(line, query.json)).await;
            if printed.count == before {
                break;
            }
        }
        Ok(0)
    })
}

/// How far back a stream taken up again starts: the new main process's lines since it started
/// (an upgrade takes seconds) come then, the ones printed already are skipped.
const TAKE_UP_WINDOW: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// The most lines remembered to skip when a stream is taken up again.
const REMEMBERED: usize = 20_000;

/// What was printed lately (the lines of the last [`TAKE_UP_WINDOW`], at most [`REMEMBERED`]),
/// and how many lines in all; once a stream is taken up again, those lines are skipped once each.
#[derive(Default)]
struct Printed {
    recent: VecDeque<(DateTime<FixedOffset>, String)>,
    count: usize,
    skip: HashMap<String, usize>,
}

impl Printed {
    /// Where a new stream takes up (the window before the last line), the lines to skip.
    fn take_up(&mut self) -> Option<String> {
        self.skip.clear();
        for (_, line) in &self.recent {
            *self.skip.entry(line.clone()).or_insert(0) += 1;
        }
        let (newest, _) = self.recent.back()?;
        Some((*newest - TAKE_UP_WINDOW).to_rfc3339_opts(chrono::SecondsFormat::Millis, false))
    }

    fn print(&mut self, line: &str, json: bool) {
        if let Some(left) = self.skip.get_mut(line).filter(|left| **left > 0) {
            *left -= 1;
            return;
        }
        crate::commands::out!("{line}\n");
        self.count += 1;
        let Some(time) = time_of(line, json) else { return };
        self.recent.push_back((time, line.to_string()));
        while self.recent.front().is_some_and(|(t, _)| *t < time - TAKE_UP_WINDOW) || self.recent.len() > REMEMBERED {
            self.recent.pop_front();
        }
    }
}

/// The time a line was written: a text line's first word, a JSON line's `time`.
fn time_of(line: &str, json: bool) -> Option<DateTime<FixedOffset>> {
    let time = match json {
        true => serde_json::from_str::<serde_json::Value>(line).ok()?.get("time")?.as_str()?.to_string(),
        false => line.split_once(' ')?.0.to_string(),
    };
    DateTime::parse_from_rfc3339(&time).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_taken_up_again_starts_a_while_back_and_skips_what_was_printed_once_each() {
        let mut printed = Printed::default();
        let a = "2026-12-03T10:00:00.001+00:00 system | a";
        let b = "2026-12-03T10:00:00.002+00:00 web.1 | b";
        let (new, later) = ("2026-12-03T10:00:00.001+00:00 system | new", "2026-12-03T10:00:05.000+00:00 web.1 | b");
        for line in [a, b, b] {
            printed.print(line, false);
        }
        assert_eq!(printed.count, 3, "a line repeated in one stream is printed each time");
        assert_eq!(printed.take_up().as_deref(), Some("2026-12-03T09:59:00.002+00:00"));
        // The new stream repeats a and both b: skipped; `new` (as old as a) and `later` are not.
        for line in [a, new, b, b, later] {
            printed.print(line, false);
        }
        assert_eq!(printed.count, 5);
        let json = r#"{"time":"2026-12-03T10:00:00.003+00:00","source":"system","text":"d"}"#;
        assert_eq!(time_of(json, true).map(|t| t.timestamp_subsec_millis()), Some(3));
        assert_eq!(time_of("logs: this follower fell behind", false), None);
    }
}
