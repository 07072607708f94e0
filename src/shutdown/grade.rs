//! The checklist of `test-shutdown`: each finding graded pass, fail or skip, with what was seen
//! and, for a failure, how to fix it; printed as text or as JSON.

use super::clients::InFlight;
use super::{Closes, Exit, Findings, NotUp};
use crate::process::protocol::ExitReason;
use serde::Serialize;
use std::time::Duration;

/// New connections must be refused this soon after SIGTERM.
pub const STOP_ACCEPTING_LIMIT: Duration = Duration::from_secs(1);

/// The checks after `came_up`, in order: skipped when the app never came up.
const AFTER_COMING_UP: [&str; 7] = [
    "stopped_accepting",
    "closed_clients",
    "in_flight_request",
    "exited_in_time",
    "exit_status",
    "no_leftover_processes",
    "logged_shutdown",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

/// One line of the checklist.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `stopped_accepting`; the text report shows it with spaces.
    pub check: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The time the check measured (to come up, to refuse, to exit), for scripts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

impl Check {
    fn timed(mut self, measured: Duration) -> Check {
        self.seconds = Some((measured.as_secs_f64() * 1000.0).round() / 1000.0);
        self
    }
}

/// What was tested, and the checklist.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub instance: String,
    pub command: String,
    pub address: String,
    pub clients: usize,
    pub grace_seconds: f64,
    pub passed: bool,
    pub checks: Vec<Check>,
}

/// How the test was run, as the report tells it.
pub struct Setup<'a> {
    pub instance: &'a str,
    pub command: &'a str,
    pub address: std::net::SocketAddr,
    pub clients: usize,
    pub grace: Duration,
    pub web: bool,
    pub slow_path: Option<&'a str>,
}

impl Report {
    pub fn new(setup: &Setup, findings: &Findings) -> Report {
        let checks = match &findings.up {
            Ok(after) => vec![
                pass("came_up", format!("it answered on {} {} after start", setup.address, secs(*after))).timed(*after),
                stopped_accepting(findings.stopped_accepting),
                closed_clients(&findings.closes, findings.exit.as_ref().is_some_and(|exit| exit.killed)),
                in_flight(setup, findings.in_flight.as_ref()),
                exited_in_time(findings.exit.as_ref(), setup.grace),
                exit_status(findings.exit.as_ref()),
                leftovers(findings.exit.as_ref(), &findings.leftovers),
                logged(findings.lines_after_term),
            ],
            Err(why) => {
                let mut checks = vec![not_up(setup, why)];
                checks.extend(AFTER_COMING_UP.iter().map(|id| skip(id, "the app never came up".into())));
                checks
            }
        };
        Report {
            instance: setup.instance.to_string(),
            command: setup.command.to_string(),
            address: setup.address.to_string(),
            clients: setup.clients,
            grace_seconds: setup.grace.as_secs_f64(),
            passed: checks.iter().all(|c| c.status != Status::Fail),
            checks,
        }
    }

    /// The checklist for people: one line per check, the fix under each failure.
    pub fn text(&self) -> String {
        let mut text = format!(
            "test-shutdown {} (`{}`) on {}: {} clients, SIGTERM, grace {}\n",
            self.instance,
            self.command,
            self.address,
            self.clients,
            secs(Duration::from_secs_f64(self.grace_seconds))
        );
        for check in &self.checks {
            let status = match check.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::Skip => "SKIP",
            };
            text.push_str(&format!("  {status}  {:<22} {}\n", check.check.replace('_', " "), check.detail));
            if let Some(fix) = &check.fix {
                text.push_str(&format!("        {:<22} fix: {fix}\n", ""));
            }
        }
        let count = |status| self.checks.iter().filter(|c| c.status == status).count();
        let (failed, skipped) = (count(Status::Fail), count(Status::Skip));
        text.push_str(&match failed {
            0 => format!("passed: {} checks passed, {skipped} skipped\n", count(Status::Pass)),
            _ => format!("FAILED: {failed} of {} checks failed, {skipped} skipped\n", self.checks.len()),
        });
        text
    }
}

fn pass(check: &'static str, detail: String) -> Check {
    Check { check, status: Status::Pass, detail, fix: None, seconds: None }
}

fn fail(check: &'static str, detail: String, fix: &str) -> Check {
    Check { check, status: Status::Fail, detail, fix: Some(fix.to_string()), seconds: None }
}

fn skip(check: &'static str, detail: String) -> Check {
    Check { check, status: Status::Skip, detail, fix: None, seconds: None }
}

fn secs(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

fn not_up(setup: &Setup, why: &NotUp) -> Check {
    let listen = "listen on $PORT (it was given PORT and DYNO as on the platform)";
    match why {
        NotUp::Exited(reason) => fail("came_up", format!("it {reason} before answering on {}", setup.address), listen),
        NotUp::Timeout(limit) => {
            let what = if setup.web { "answered an HTTP request" } else { "accepted a connection" };
            let detail = format!("it never {what} on {} within {}", setup.address, secs(*limit));
            let fix = "listen on $PORT; for web, answer the health check path with a status below 500; pass a longer --boot-timeout if it is only slow to boot";
            fail("came_up", detail, fix)
        }
    }
}

fn stopped_accepting(refused: Option<Duration>) -> Check {
    let fix = "close your listening socket first thing in your SIGTERM handler: a stopping instance gets no new clients from the platform, and one it accepts now is one it drops";
    match refused {
        Some(after) if after <= STOP_ACCEPTING_LIMIT => {
            pass("stopped_accepting", format!("new connections were refused {} after SIGTERM", secs(after)))
                .timed(after)
        }
        Some(after) => {
            let detail = format!("it still accepted new connections {} after SIGTERM", secs(after));
            fail("stopped_accepting", detail, fix).timed(after)
        }
        None => fail("stopped_accepting", "it still accepted new connections when the test ended".into(), fix),
    }
}

/// `killed`: the app was SIGKILLed at the end of the grace (else it exited by itself).
fn closed_clients(closes: &Closes, killed: bool) -> Check {
    let held = closes.fin + closes.reset + closes.left_open;
    let mut aside = Vec::new();
    if !closes.not_held.is_empty() {
        aside.push(format!("{} not taken: {}", closes.not_held.len(), closes.not_held[0]));
    }
    if closes.closed_before > 0 {
        aside.push(format!("{} closed by the app before SIGTERM", closes.closed_before));
    }
    let aside = if aside.is_empty() { String::new() } else { format!(" ({})", aside.join("; ")) };
    if held == 0 {
        return skip("closed_clients", format!("no connection was open at SIGTERM{aside}"));
    }
    if closes.reset == 0 && closes.left_open == 0 {
        return pass("closed_clients", format!("all {held} connections held were closed by the app (FIN){aside}"));
    }
    let open = match killed {
        true => "left open until SIGKILL",
        false => "still open after it exited (never accepted by it, or held by another process)",
    };
    let detail = format!(
        "of {held} connections held, {} closed (FIN), {} reset, {} {open}{aside}",
        closes.fin, closes.reset, closes.left_open
    );
    let fix = match (closes.left_open, killed) {
        (0, _) => "read what clients sent before closing (unread data turns a close into a reset, and the client loses your goodbye), or shut down the write side first".to_string(),
        (open, true) => format!("your app did not close its {open} client connections; close them in your SIGTERM handler (write a goodbye, shut down the write side, close): the platform drops them at SIGKILL and clients wait for a timeout"),
        (open, false) => format!("{open} connections were never closed by your app: accept every connection (a listen backlog as large as your bursts of clients) and close each in your SIGTERM handler"),
    };
    fail("closed_clients", detail, &fix)
}

fn in_flight(setup: &Setup, in_flight: Option<&InFlight>) -> Check {
    let Some(path) = setup.slow_path.filter(|_| setup.web) else {
        let why = if setup.web { "no --slow-path given" } else { "a tcp type has no requests" };
        return skip("in_flight_request", why.to_string());
    };
    let fix = "finish the requests in flight before exiting: stop accepting, then wait for them (Node: server.close(); Go: Server.Shutdown; Python: server.shutdown())";
    match in_flight {
        Some(InFlight::Answered(status)) => {
            pass("in_flight_request", format!("GET {path}, in flight at SIGTERM, was answered {status}"))
        }
        Some(InFlight::Broken(why)) => {
            fail("in_flight_request", format!("GET {path}, in flight at SIGTERM, got no answer: {why}"), fix)
        }
        Some(InFlight::Waiting) | None => {
            fail("in_flight_request", format!("GET {path}, in flight at SIGTERM, was still unanswered at the end"), fix)
        }
    }
}

fn exited_in_time(exit: Option<&Exit>, grace: Duration) -> Check {
    match exit {
        None => fail(
            "exited_in_time",
            "its main process was not running at SIGTERM".into(),
            "keep running until SIGTERM: see its output",
        ),
        Some(exit) if exit.killed => fail(
            "exited_in_time",
            format!("it was still running at the end of the grace ({}) and was SIGKILLed", secs(grace)),
            "handle SIGTERM: stop accepting, close clients, exit; the platform SIGKILLs after the grace (30 s on Heroku and Scalingo)",
        )
        .timed(exit.after),
        Some(exit) => {
            let detail = format!("it exited {} after SIGTERM (grace {})", secs(exit.after), secs(grace));
            pass("exited_in_time", detail).timed(exit.after)
        }
    }
}

fn exit_status(exit: Option<&Exit>) -> Check {
    let Some(exit) = exit else {
        return skip("exit_status", "it was not running at SIGTERM".into());
    };
    match exit.reason {
        _ if exit.killed => {
            fail("exit_status", "killed by SIGKILL at the end of the grace".into(), "exit on SIGTERM, with status 0")
        }
        ExitReason::Code(0) => pass("exit_status", "exited with code 0".into()),
        ExitReason::Signal(15) => pass("exit_status", "terminated by SIGTERM (status 143), as with no handler".into()),
        reason => fail(
            "exit_status",
            format!("{reason} (status {})", reason.shell_status()),
            "exit 0 after a clean shutdown: any other status reads as a crash",
        ),
    }
}

fn leftovers(exit: Option<&Exit>, leftovers: &[String]) -> Check {
    match (exit, leftovers) {
        (None, _) => skip("no_leftover_processes", "it was not running at SIGTERM".into()),
        (Some(exit), _) if exit.killed => skip("no_leftover_processes", "its main process was SIGKILLed".into()),
        (Some(_), []) => pass("no_leftover_processes", "nothing it started outlived it".into()),
        (Some(_), left) => fail(
            "no_leftover_processes",
            format!(
                "{} process(es) it started still ran 1 s after it exited, then were SIGKILLed: {}",
                left.len(),
                left.join(", ")
            ),
            "stop your child processes in your SIGTERM handler and wait for them (or exec your server so it is the main process): the platform kills what is left",
        ),
    }
}

fn logged(lines: usize) -> Check {
    match lines {
        0 => fail(
            "logged_shutdown",
            "it printed nothing after SIGTERM".into(),
            "log a line when SIGTERM arrives and when the shutdown is done: it is how a restart reads in the logs",
        ),
        lines => pass("logged_shutdown", format!("{lines} line(s) of output after SIGTERM")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> Setup<'static> {
        Setup {
            instance: "tcp.1",
            command: "exec app",
            address: "127.0.0.1:5000".parse().unwrap(),
            clients: 20,
            grace: Duration::from_secs(5),
            web: false,
            slow_path: None,
        }
    }

    fn graceful() -> Findings {
        Findings {
            up: Ok(Duration::from_millis(300)),
            closes: Closes { fin: 20, ..Closes::default() },
            stopped_accepting: Some(Duration::from_millis(10)),
            in_flight: None,
            exit: Some(Exit { after: Duration::from_millis(50), reason: ExitReason::Code(0), killed: false }),
            leftovers: Vec::new(),
            lines_after_term: 2,
        }
    }

    fn status_of(report: &Report, check: &str) -> Status {
        report.checks.iter().find(|c| c.check == check).unwrap().status
    }

    #[test]
    fn a_graceful_app_passes_every_check_but_the_skipped_request() {
        let report = Report::new(&setup(), &graceful());
        assert!(report.passed, "{}", report.text());
        assert_eq!(status_of(&report, "in_flight_request"), Status::Skip);
        assert!(report.text().ends_with("passed: 7 checks passed, 1 skipped\n"), "{}", report.text());
    }

    #[test]
    fn clients_still_open_after_the_app_exited_by_itself_are_not_blamed_on_sigkill() {
        let findings = Findings { closes: Closes { fin: 5, left_open: 15, ..Closes::default() }, ..graceful() };
        let report = Report::new(&setup(), &findings);
        let check = report.checks.iter().find(|c| c.check == "closed_clients").unwrap();
        assert!(check.detail.contains("15 still open after it exited"), "{}", check.detail);
        assert!(check.fix.as_ref().unwrap().contains("accept every connection"));
    }

    #[test]
    fn clients_left_open_fail_with_their_count_and_a_fix() {
        let killed = Exit { after: Duration::from_secs(5), reason: ExitReason::Signal(9), killed: true };
        let closes = Closes { fin: 5, left_open: 15, ..Closes::default() };
        let findings = Findings { closes, exit: Some(killed), ..graceful() };
        let report = Report::new(&setup(), &findings);
        assert!(!report.passed);
        let check = report.checks.iter().find(|c| c.check == "closed_clients").unwrap();
        assert!(check.detail.contains("15 left open until SIGKILL"), "{}", check.detail);
        assert!(check.fix.as_ref().unwrap().contains("did not close its 15 client connections"));
    }

    #[test]
    fn an_app_killed_at_the_grace_fails_exit_and_status_and_skips_leftovers() {
        let killed = Exit { after: Duration::from_secs(5), reason: ExitReason::Signal(9), killed: true };
        let report = Report::new(&setup(), &Findings { exit: Some(killed), ..graceful() });
        assert_eq!(status_of(&report, "exited_in_time"), Status::Fail);
        assert_eq!(status_of(&report, "exit_status"), Status::Fail);
        assert_eq!(status_of(&report, "no_leftover_processes"), Status::Skip);
    }

    #[test]
    fn death_by_sigterm_is_a_fine_status_but_code_1_is_not() {
        let exit = |reason| Some(Exit { after: Duration::ZERO, reason, killed: false });
        let by_term = Report::new(&setup(), &Findings { exit: exit(ExitReason::Signal(15)), ..graceful() });
        assert_eq!(status_of(&by_term, "exit_status"), Status::Pass);
        let failed = Report::new(&setup(), &Findings { exit: exit(ExitReason::Code(1)), ..graceful() });
        assert_eq!(status_of(&failed, "exit_status"), Status::Fail);
    }

    #[test]
    fn an_app_that_never_came_up_skips_the_rest() {
        let report = Report::new(&setup(), &Findings { up: Err(NotUp::Timeout(Duration::from_secs(2))), ..graceful() });
        assert!(!report.passed);
        assert_eq!(report.checks.iter().filter(|c| c.status == Status::Skip).count(), 7);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["checks"][0]["check"], "came_up");
        assert_eq!(json["checks"][0]["status"], "fail");
        assert_eq!(json["passed"], false);
        assert!(json["checks"][0].get("seconds").is_none(), "no time when it never came up");
    }

    #[test]
    fn timed_checks_carry_their_seconds_for_scripts() {
        let json = serde_json::to_value(Report::new(&setup(), &graceful())).unwrap();
        let seconds = |index: usize| json["checks"][index]["seconds"].as_f64();
        assert_eq!((seconds(0), seconds(1), seconds(4)), (Some(0.3), Some(0.01), Some(0.05)));
        assert_eq!(seconds(2), None);
    }
}
