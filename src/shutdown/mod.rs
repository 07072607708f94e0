//! `procgate test-shutdown TYPE`: what a platform's restart does to one instance, observed.
//!
//! One instance of the type runs as under `start` (its keeper, its own process group, the same
//! environment). Once it answers, clients are held on it (and, for web, a slow request is put in
//! flight); then it gets SIGTERM, and the test watches: when new connections were refused, how
//! each held connection ended, whether the request got its answer, when and how the app exited,
//! what of its process tree (its group, and what left the group) outlived it, and what it printed. [`grade`] turns that into the
//! checklist. The instance is SIGKILLed at the end of the grace, as on the platform.

pub mod clients;
pub mod grade;

use crate::env::EnvMap;
use crate::http_check::{probe, HttpCheck};
use crate::logs::Output;
use crate::process::output::Prefix;
use crate::process::protocol::ExitReason;
use crate::process::{self, procfs, Controller, Launch, ProcessEvent};
use clients::{Ending, InFlight, Protocol, Target};
use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How often the instance is probed while it boots.
const BOOT_PROBE_PERIOD: Duration = Duration::from_millis(100);
/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How many held connections are being opened at once.
const OPEN_CONCURRENCY: usize = 64;
/// How long opening one held connection may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the held connections are watched before SIGTERM, so those the app closes at once
/// (a greeting and goodbye protocol) count as closed before the signal, not after.
const HOLD_SETTLE: Duration = Duration::from_millis(100);
/// How long the slow request is in flight before SIGTERM.
const IN_FLIGHT_LEAD: Duration = Duration::from_millis(200);
/// How often new connections are tried after SIGTERM.
const ACCEPT_PROBE_PERIOD: Duration = Duration::from_millis(10);
/// How long what is left of the group may take to go once the main process exited.
const LEFTOVER_SETTLE: Duration = Duration::from_secs(1);
/// How long the clients may take to see the closes once the instance is gone.
const CLOSE_SETTLE: Duration = Duration::from_secs(1);
/// The longest wait for a SIGKILLed tree to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// What to test.
pub struct Scenario {
    /// `tcp.1`.
    pub name: String,
    pub command: String,
    pub root: PathBuf,
    /// The instance's whole environment.
    pub env: EnvMap,
    pub target: Target,
    /// The readiness check of web types.
    pub http_check: Option<HttpCheck>,
    pub clients: usize,
    /// The path of a slow request put in flight before SIGTERM (web).
    pub slow_path: Option<String>,
    pub grace: Duration,
    pub boot_timeout: Duration,
    pub keeper_exe: PathBuf,
    pub output: Output,
}

/// Why the instance never answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotUp {
    Exited(ExitReason),
    Timeout(Duration),
}

/// How the main process ended, counted from SIGTERM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub after: Duration,
    pub reason: ExitReason,
    /// It was still running at the end of the grace and was SIGKILLed.
    pub killed: bool,
}

/// How the held connections ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Closes {
    /// Connections the app did not take (refused, closed at once); their errors.
    pub not_held: Vec<String>,
    /// Held, but closed by the app before SIGTERM.
    pub closed_before: usize,
    pub fin: usize,
    pub reset: usize,
    /// Still open at the end of the grace (closed only by SIGKILL, or never).
    pub left_open: usize,
}

/// Everything observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Findings {
    pub up: Result<Duration, NotUp>,
    pub closes: Closes,
    /// When new connections were first refused, after SIGTERM.
    pub stopped_accepting: Option<Duration>,
    pub in_flight: Option<InFlight>,
    /// `None` when the main process exited before SIGTERM.
    pub exit: Option<Exit>,
    /// Processes it started (in its group or not) still running `LEFTOVER_SETTLE` after it exited:
    /// `pid (name)`.
    pub leftovers: Vec<String>,
    pub lines_after_term: usize,
}

/// Runs the scenario to the end; the instance is gone when it returns.
pub async fn run(scenario: &Scenario) -> std::io::Result<Findings> {
    let (events_tx, events) = mpsc::unbounded_channel();
    let launch = Launch {
        command: scenario.command.clone(),
        env: scenario.env.clone(),
        root: scenario.root.clone(),
        prefix: Prefix {
            output: scenario.output.clone(),
            name: scenario.name.clone(),
            colour: 0,
            pid: Default::default(),
        },
    };
    let on_event = move |event| {
        let _ = events_tx.send((event, Instant::now()));
    };
    let (controller, monitor) = process::spawn(launch, &scenario.keeper_exe, on_event)?;
    let (findings, ()) = tokio::join!(observe(scenario, controller, events), monitor);
    Ok(findings)
}

/// The instance's events, as they come.
type Events = mpsc::UnboundedReceiver<(ProcessEvent, Instant)>;

async fn observe(scenario: &Scenario, controller: Controller, mut events: Events) -> Findings {
    let mut keeper = None;
    let up = wait_up(scenario, &mut events, &mut keeper).await;
    let mut findings = Findings {
        up,
        closes: Closes::default(),
        stopped_accepting: None,
        in_flight: None,
        exit: None,
        leftovers: Vec::new(),
        lines_after_term: 0,
    };
    if findings.up.is_err() {
        controller.kill();
        wait_gone(&mut events, KILL_WAIT).await;
        return findings;
    }
    let (stop, stopped) = watch::channel(false);
    let (held, not_held) = hold_clients(scenario, &stopped).await;
    tokio::time::sleep(HOLD_SETTLE).await;
    let slow = match (&scenario.slow_path, &scenario.target.protocol) {
        (Some(path), Protocol::Http) => Some(put_in_flight(&scenario.target, path, &stopped).await),
        _ => None,
    };
    let lines_before = scenario.output.instance_lines();
    controller.signal(Signal::SIGTERM);
    let term = Instant::now();
    let accepting = tokio::spawn(refused_after(scenario.target.clone(), term));
    let Stopped { exit, killed_at, leftovers } = await_exit(scenario, &controller, &mut events, term, keeper).await;
    (findings.exit, findings.leftovers) = (exit, leftovers);
    // The instance is gone, its sockets closed: the clients get a moment to read the last of them.
    let held_count = held.len();
    let mut endings = Vec::new();
    let _ = tokio::time::timeout(CLOSE_SETTLE, async {
        for handle in held {
            endings.push(handle.await.unwrap_or(Ending::Open));
        }
    })
    .await;
    let _ = stop.send(true);
    findings.closes = tally(not_held, &endings, held_count, term, killed_at);
    // Gone, it refuses at once (unless another process took its port at that moment).
    findings.stopped_accepting = tokio::time::timeout(PROBE_TIMEOUT * 2, accepting).await.ok().and_then(Result::ok);
    if let Some(slow) = slow {
        findings.in_flight = Some(match slow {
            Ok(handle) => handle.await.unwrap_or(InFlight::Waiting),
            Err(err) => InFlight::Broken(format!("it could not be sent: {err}")),
        });
    }
    findings.lines_after_term = scenario.output.instance_lines() - lines_before;
    findings
}

/// Waits until the instance answers a probe, exits, or the boot timeout passes.
/// Waits until the instance answers; notes its keeper's pid (the parent of its main process,
/// and the subreaper of all it starts) in `keeper`.
async fn wait_up(scenario: &Scenario, events: &mut Events, keeper: &mut Option<i32>) -> Result<Duration, NotUp> {
    let started = Instant::now();
    let deadline = started + scenario.boot_timeout;
    let target = &scenario.target;
    loop {
        while let Ok((event, _)) = events.try_recv() {
            match event {
                ProcessEvent::Started { pid } => *keeper = procfs::process(pid as i32).map(|p| p.ppid),
                ProcessEvent::LeaderExited => {}
                ProcessEvent::Exited(reason) => return Err(NotUp::Exited(reason)),
            }
        }
        if probe(target.addr, scenario.http_check.as_ref(), target.proxy, PROBE_TIMEOUT).await {
            return Ok(started.elapsed());
        }
        if Instant::now() >= deadline {
            return Err(NotUp::Timeout(scenario.boot_timeout));
        }
        tokio::time::sleep(BOOT_PROBE_PERIOD).await;
    }
}

/// Opens the held connections, the first alone (does the app speak first?), then at most
/// `OPEN_CONCURRENCY` at a time, as clients trickle in rather than overflow the app's listen
/// backlog; returns their watchers and the errors of those not taken.
async fn hold_clients(
    scenario: &Scenario,
    stopped: &watch::Receiver<bool>,
) -> (Vec<tokio::task::JoinHandle<Ending>>, Vec<String>) {
    let (mut held, mut not_held) = (Vec::new(), Vec::new());
    let mut keep = |opened: Result<std::io::Result<(tokio::net::TcpStream, bool)>, _>| match opened {
        Ok(Ok((stream, spoke))) => {
            held.push(tokio::spawn(clients::watch_end(stream, stopped.clone())));
            spoke
        }
        Ok(Err(err)) => {
            not_held.push(err.to_string());
            false
        }
        Err(_) => {
            not_held.push(format!("not answered within {OPEN_TIMEOUT:?}"));
            false
        }
    };
    if scenario.clients == 0 {
        return (held, not_held);
    }
    let target = &scenario.target;
    let spoke = keep(tokio::time::timeout(OPEN_TIMEOUT, clients::open(target, clients::GREETING_WAIT)).await);
    let greeting_wait = if spoke { clients::GREETING_WAIT } else { Duration::ZERO };
    let slots = Arc::new(Semaphore::new(OPEN_CONCURRENCY));
    let mut opening = JoinSet::new();
    for _ in 1..scenario.clients {
        let (target, slots) = (target.clone(), slots.clone());
        opening.spawn(async move {
            let _slot = slots.acquire_owned().await;
            tokio::time::timeout(OPEN_TIMEOUT, clients::open(&target, greeting_wait)).await
        });
    }
    while let Some(opened) = opening.join_next().await {
        keep(opened.unwrap_or_else(|panicked| Ok(Err(std::io::Error::other(panicked.to_string())))));
    }
    (held, not_held)
}

/// Sends the slow request and gives it a moment to reach the app.
async fn put_in_flight(
    target: &Target,
    path: &str,
    stopped: &watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<InFlight>> {
    let stream = clients::send_slow_request(target, path).await?;
    let handle = tokio::spawn(clients::await_response(stream, stopped.clone()));
    tokio::time::sleep(IN_FLIGHT_LEAD).await;
    Ok(handle)
}

/// How long after `term` a new connection was first not accepted (refused, or no handshake
/// within `PROBE_TIMEOUT`). The tries are the health check's: with a `LOCAL` PROXY header when the
/// type expects one, so the app sees procgate's own connections, not clients without a header.
async fn refused_after(target: Target, term: Instant) -> Duration {
    while probe(target.addr, None, target.proxy, PROBE_TIMEOUT).await {
        tokio::time::sleep(ACCEPT_PROBE_PERIOD).await;
    }
    term.elapsed()
}

/// How the instance went after SIGTERM.
struct Stopped {
    /// `None` when its main process exited before SIGTERM.
    exit: Option<Exit>,
    /// When a SIGKILL went, if one did.
    killed_at: Option<Instant>,
    /// What of its tree outlived its main process: `pid (name)`.
    leftovers: Vec<String>,
}

/// Waits for the main process to exit, SIGKILLing it at the end of the grace, and what is left of
/// its group `LEFTOVER_SETTLE` after it exited.
async fn await_exit(
    scenario: &Scenario,
    controller: &Controller,
    events: &mut Events,
    term: Instant,
    keeper: Option<i32>,
) -> Stopped {
    let mut leader_exited = None;
    let mut killed_at = None;
    let mut leftovers = Vec::new();
    loop {
        let wake = match (leader_exited, killed_at) {
            (_, Some(kill)) => kill + KILL_WAIT,
            (Some(exited), None) => exited + LEFTOVER_SETTLE,
            (None, None) => term + scenario.grace,
        };
        tokio::select! {
            event = events.recv() => match event {
                Some((ProcessEvent::LeaderExited, at)) => leader_exited = Some(at),
                Some((ProcessEvent::Exited(reason), at)) => {
                    let exited_at = leader_exited.unwrap_or(at);
                    let killed = killed_at.is_some_and(|kill| exited_at >= kill);
                    let exit = (exited_at >= term).then(|| Exit { after: exited_at - term, reason, killed });
                    return Stopped { exit, killed_at, leftovers };
                }
                Some((ProcessEvent::Started { .. }, _)) => {}
                None => return Stopped { exit: None, killed_at, leftovers },
            },
            () = tokio::time::sleep_until(wake) => {
                if killed_at.is_some() {
                    return Stopped { exit: None, killed_at, leftovers };
                }
                if leader_exited.is_some() {
                    let tree = keeper.map(procfs::descendants_of).unwrap_or_default();
                    let living = tree.iter().filter(|p| !p.zombie);
                    leftovers = living.map(|p| format!("{} ({})", p.pid, p.name)).collect();
                }
                killed_at = Some(Instant::now());
                controller.kill();
            }
        }
    }
}

/// Waits up to `limit` for the instance to be gone.
async fn wait_gone(events: &mut Events, limit: Duration) {
    let _ = tokio::time::timeout(limit, async {
        while let Some((event, _)) = events.recv().await {
            if matches!(event, ProcessEvent::Exited(_)) {
                return;
            }
        }
    })
    .await;
}

/// Sorts the endings: before SIGTERM, FIN or reset from the app, or left open until SIGKILL.
fn tally(not_held: Vec<String>, endings: &[Ending], held: usize, term: Instant, killed_at: Option<Instant>) -> Closes {
    let mut closes = Closes { not_held, ..Closes::default() };
    let by_kill = |at: Instant| killed_at.is_some_and(|kill| at >= kill);
    for ending in endings {
        match *ending {
            Ending::Fin(at) | Ending::Reset(at) if at < term => closes.closed_before += 1,
            Ending::Fin(at) | Ending::Reset(at) if by_kill(at) => closes.left_open += 1,
            Ending::Fin(_) => closes.fin += 1,
            Ending::Reset(_) => closes.reset += 1,
            Ending::Open => closes.left_open += 1,
        }
    }
    // Watchers that did not report within the settle time are still open.
    closes.left_open += held - endings.len();
    closes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_are_sorted_by_when_they_came_against_sigterm_and_sigkill() {
        let start = Instant::now();
        let (term, kill) = (start + Duration::from_secs(1), start + Duration::from_secs(6));
        let at = |secs: f64| start + Duration::from_secs_f64(secs);
        let endings = [
            Ending::Fin(at(0.5)),
            Ending::Fin(at(1.1)),
            Ending::Reset(at(1.2)),
            Ending::Fin(at(6.0)),
            Ending::Reset(at(6.1)),
            Ending::Open,
        ];
        let closes = tally(vec!["refused".into()], &endings, endings.len() + 1, term, Some(kill));
        let expected = Closes { not_held: vec!["refused".into()], closed_before: 1, fin: 1, reset: 1, left_open: 4 };
        assert_eq!(closes, expected, "two closed by SIGKILL, one still open, one not reported in time");
    }
}
