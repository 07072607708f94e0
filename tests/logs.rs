//! `--log-dir`, `--timestamps full` and `procgate logs` through the binary: lines kept in files
//! with their full time and read back across a restart of procgate, filtered by type or
//! instance, as JSON, and followed live until procgate stops.

mod common;
use common::{App, DEADLINE};
use nix::sys::signal::Signal;

fn start(app: &App, extra: &[&str]) -> common::Running {
    let base = common::free_base_port(2, 2).to_string();
    let mut args = vec!["start", "-p", &base, "--grace", "2s"];
    args.extend_from_slice(extra);
    let mut running = app.spawn(&args);
    running.wait_for("worker.1 | worker says hi");
    running
}

const PROCFILE: &str = "worker: echo worker says hi; exec sleep 60\nclock: echo tick; exec sleep 60\n";

#[test]
fn lines_are_kept_in_files_with_their_full_time_and_read_back_after_a_restart() {
    let app = App::new(PROCFILE);
    let running = start(&app, &["--log-dir", "log", "--timestamps", "full"]);
    assert!(
        running.seen.iter().any(|l| l.len() > 24 && l.as_bytes()[4] == b'-' && l.contains("T")),
        "{:?}",
        running.seen
    );
    running.signal(Signal::SIGINT);
    running.finish(DEADLINE);
    let files: Vec<_> = std::fs::read_dir(app.path().join("log")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(app.path().join("log").join(&files[0])).unwrap();
    let line = text.lines().find(|l| l.ends_with("worker.1 | worker says hi")).expect("the worker's line");
    assert!(chrono::DateTime::parse_from_rfc3339(line.split(' ').next().unwrap()).is_ok(), "{line}");

    let again = start(&app, &["--log-dir", "log"]);
    let logs = app.run(&["logs", "--since", "1h", "worker"]);
    assert_eq!(logs.code(), Some(0), "{}", logs.text());
    let hi = logs.lines.iter().filter(|l| l.ends_with("worker.1 | worker says hi")).count();
    assert_eq!(hi, 2, "one from the first run's file, one from this run: {}", logs.text());
    assert!(logs.lines.iter().all(|l| l.contains(" worker.1 | ")), "only the worker: {}", logs.text());
    again.signal(Signal::SIGINT);
    again.finish(DEADLINE);
}

#[test]
fn logs_filters_by_instance_gives_json_and_follows_until_procgate_stops() {
    let app = App::new(PROCFILE);
    let mut running = start(&app, &[]);
    running.wait_for("clock.1 | tick");
    let json = app.run(&["logs", "--json", "system", "clock.1"]);
    let objects: Vec<serde_json::Value> = json.lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        objects.iter().any(|o| o["instance"] == "clock.1" && o["text"] == "tick" && o["pid"].is_u64()),
        "{objects:?}"
    );
    assert!(objects.iter().any(|o| o["source"] == "system"), "{objects:?}");
    assert!(objects.iter().all(|o| o["instance"] != "worker.1"), "{objects:?}");

    let mut follower = app.spawn(&["logs", "-f", "worker"]);
    follower.wait_for("worker.1 | worker says hi");
    let restart = app.run(&["restart", "worker"]);
    assert_eq!(restart.code(), Some(0), "{}", restart.text());
    follower.wait_for_nth("worker.1 | worker says hi", 2, DEADLINE);
    running.signal(Signal::SIGINT);
    let followed = follower.finish(DEADLINE);
    assert_eq!(followed.code(), Some(0), "the follower ends when procgate stops: {}", followed.text());
    assert!(!followed.has("clock.1"), "{}", followed.text());
}

#[test]
fn a_log_dir_that_cannot_be_made_is_a_clear_error() {
    let app = App::new(PROCFILE);
    app.write("taken", "a file, not a directory");
    let finished = app.run(&["start", "--log-dir", "taken/log"]);
    assert_eq!(finished.code(), Some(2), "{}", finished.text());
    assert!(finished.has("taken/log: cannot keep log files there"), "{}", finished.text());
    let toml = app.run(&["check"]);
    assert_eq!(toml.code(), Some(0));
    app.write("procgate.toml", "[logs]\nkeep = 0\n");
    let bad = app.run(&["check"]);
    assert!(bad.has("procgate.toml:2: `keep` must be more than 0"), "{}", bad.text());
}
