//! `procgate logs [-f] [--since 10m] [--json] [TYPE|INSTANCE...]`: the lines the running
//! procgate kept (in memory, and in its log files with `--log-dir`), oldest first, with their
//! full time; `-f` then follows new ones as `heroku logs -t` does, until Ctrl-C or procgate stops.
//! A follower whose stream ends while procgate still answers (an upgrade: the old main process
//! handed over) takes up again from the time of its last line, without a line twice.

use crate::cli::LogsArgs;
use crate::control::{client, LogQuery};
use std::collections::HashMap;

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

/// What was printed: the time of the last line and the lines of that time, and how many lines
/// in all; once a stream is taken up again from that time, those lines are skipped once each.
#[derive(Default)]
struct Printed {
    time: Option<String>,
    at_that_time: Vec<String>,
    count: usize,
    skip: HashMap<String, usize>,
}

impl Printed {
    /// Where a new stream takes up (the last line's time), its lines of that time to skip.
    fn take_up(&mut self) -> Option<String> {
        self.skip.clear();
        for line in &self.at_that_time {
            *self.skip.entry(line.clone()).or_insert(0) += 1;
        }
        self.time.clone()
    }

    fn print(&mut self, line: &str, json: bool) {
        if let Some(left) = self.skip.get_mut(line).filter(|left| **left > 0) {
            *left -= 1;
            return;
        }
        println!("{line}");
        self.count += 1;
        let Some(time) = time_of(line, json) else { return };
        if self.time.as_ref() != Some(&time) {
            self.skip.clear();
            self.at_that_time.clear();
            self.time = Some(time);
        }
        self.at_that_time.push(line.to_string());
    }
}

/// The time a line was written: a text line's first word, a JSON line's `time`.
fn time_of(line: &str, json: bool) -> Option<String> {
    match json {
        true => serde_json::from_str::<serde_json::Value>(line).ok()?.get("time")?.as_str().map(str::to_string),
        false => line.split_once(' ').map(|(time, _)| time.to_string()),
    }
    .filter(|time| chrono::DateTime::parse_from_rfc3339(time).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_taken_up_again_skips_the_lines_of_the_last_time_already_printed_once_each() {
        let mut printed = Printed::default();
        let a = "2026-12-03T10:00:00.001+00:00 system | a";
        let (b, c) = ("2026-12-03T10:00:00.002+00:00 web.1 | b", "2026-12-03T10:00:00.002+00:00 web.1 | c");
        let d = "2026-12-03T10:00:00.003+00:00 web.1 | b";
        for line in [a, b, b] {
            printed.print(line, false);
        }
        assert_eq!(printed.count, 3, "a line repeated in one stream is printed each time");
        assert_eq!(printed.take_up().as_deref(), Some("2026-12-03T10:00:00.002+00:00"));
        // Taken up from .002: both b are skipped, c (same time, never printed) and d are not.
        for line in [b, b, c, d] {
            printed.print(line, false);
        }
        assert_eq!(printed.count, 5);
        let json = r#"{"time":"2026-12-03T10:00:00.003+00:00","source":"system","text":"d"}"#;
        assert_eq!(time_of(json, true).as_deref(), Some("2026-12-03T10:00:00.003+00:00"));
        assert_eq!(time_of("logs: this follower fell behind", false), None);
    }
}
