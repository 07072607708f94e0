//! `procgate test-shutdown --json` run from the tests: its status, its report, the app's output.

use super::{repo, App, BIN, DEADLINE};
use serde_json::Value;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Every check of a graceful TCP app.
pub const ALL_PASS_TCP: &str = "came_up=pass stopped_accepting=pass closed_clients=pass in_flight_request=skip \
     exited_in_time=pass exit_status=pass no_leftover_processes=pass logged_shutdown=pass";

/// A sample app's path in the repository.
pub fn sample(path: &str) -> String {
    repo().join("sample-apps").join(path).display().to_string()
}

/// `procgate test-shutdown ARGS --json` in `app`: its status, its report, and its stderr.
pub fn grade(app: &App, args: &[&str]) -> (i32, Value, String) {
    let mut child = Command::new(BIN)
        .arg("test-shutdown")
        .args(args)
        .arg("--json")
        .args(["--grace", "3s", "--boot-timeout", "20s"].chunks(2).filter(|flag| !args.contains(&flag[0])).flatten())
        .current_dir(app.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).unwrap();
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().unwrap()));
    let stderr = read_all(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            child.kill().unwrap();
            panic!("test-shutdown {args:?} still running after {DEADLINE:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let report = serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("not JSON ({err}):\n{stdout}\n{stderr}"));
    (status.code().expect("an exit status"), report, stderr)
}

/// The status of each check, in order: `came_up=pass stopped_accepting=pass ...`.
pub fn statuses(report: &Value) -> String {
    let checks = report["checks"].as_array().expect("checks");
    checks
        .iter()
        .map(|c| format!("{}={}", c["check"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"].as_array().unwrap().iter().find(|c| c["check"] == name).unwrap()
}
