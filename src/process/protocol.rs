//! The line protocol between procgate and an instance's keeper, over the keeper's stdin socket.
//!
//! procgate → keeper: `signal N` (send signal N to the instance's process tree), `kill`
//! (SIGKILL everything). End of file means procgate is gone: the keeper kills everything.
//! keeper → procgate: `hello V` (the protocol version it speaks, first), `pid N` (the app's
//! leader, also its process group), `leader-exited`, then `exit code N` or `exit signal N` once
//! the whole tree is gone.

use nix::sys::signal::Signal;
use std::fmt;

/// The version of this protocol: procgate closes a keeper that says another (a keeper of
/// another procgate binary, e.g. after a package upgrade replaced it).
pub const VERSION: u32 = 1;

/// An order from procgate to a keeper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Signal(Signal),
    Kill,
}

/// A report from a keeper to procgate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Hello(u32),
    Pid(u32),
    LeaderExited,
    Exit(ExitReason),
}

/// How an instance's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    Code(i32),
    Signal(i32),
}

impl ExitReason {
    /// The status a shell would show: the code, or 128 + the signal number.
    pub fn shell_status(self) -> i32 {
        match self {
            ExitReason::Code(code) => code,
            ExitReason::Signal(signal) => 128 + signal,
        }
    }
}

impl fmt::Display for ExitReason {
    /// foreman's wording: `exited with code 1`, `terminated by SIGTERM`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitReason::Code(code) => write!(f, "exited with code {code}"),
            ExitReason::Signal(number) => match Signal::try_from(number) {
                Ok(signal) => write!(f, "terminated by {}", signal.as_str()),
                Err(_) => write!(f, "terminated by signal {number}"),
            },
        }
    }
}

impl Order {
    pub fn encode(self) -> String {
        match self {
            Order::Signal(signal) => format!("signal {}\n", signal as i32),
            Order::Kill => "kill\n".to_string(),
        }
    }

    pub fn decode(line: &str) -> Option<Order> {
        match line.trim().split_once(' ') {
            Some(("signal", n)) => Signal::try_from(n.parse::<i32>().ok()?).ok().map(Order::Signal),
            None if line.trim() == "kill" => Some(Order::Kill),
            _ => None,
        }
    }
}

impl Report {
    pub fn encode(self) -> String {
        match self {
            Report::Hello(version) => format!("hello {version}\n"),
            Report::Pid(pid) => format!("pid {pid}\n"),
            Report::LeaderExited => "leader-exited\n".to_string(),
            Report::Exit(ExitReason::Code(code)) => format!("exit code {code}\n"),
            Report::Exit(ExitReason::Signal(signal)) => format!("exit signal {signal}\n"),
        }
    }

    pub fn decode(line: &str) -> Option<Report> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["hello", v] => v.parse().ok().map(Report::Hello),
            ["pid", n] => n.parse().ok().map(Report::Pid),
            ["leader-exited"] => Some(Report::LeaderExited),
            ["exit", "code", n] => n.parse().ok().map(|c| Report::Exit(ExitReason::Code(c))),
            ["exit", "signal", n] => n.parse().ok().map(|s| Report::Exit(ExitReason::Signal(s))),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        for order in [Order::Signal(Signal::SIGTERM), Order::Signal(Signal::SIGUSR1), Order::Kill] {
            assert_eq!(Order::decode(&order.encode()), Some(order));
        }
        let reports = [
            Report::Hello(VERSION),
            Report::Pid(42),
            Report::LeaderExited,
            Report::Exit(ExitReason::Code(3)),
            Report::Exit(ExitReason::Signal(9)),
        ];
        for report in reports {
            assert_eq!(Report::decode(&report.encode()), Some(report));
        }
        assert_eq!(Order::decode("signal 999"), None);
        assert_eq!(Report::decode("garbage"), None);
    }

    #[test]
    fn exit_reasons_read_like_foreman() {
        assert_eq!(ExitReason::Code(1).to_string(), "exited with code 1");
        assert_eq!(ExitReason::Signal(15).to_string(), "terminated by SIGTERM");
        assert_eq!(ExitReason::Signal(15).shell_status(), 143);
    }
}
