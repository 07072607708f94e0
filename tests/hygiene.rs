//! Process hygiene: every process an instance starts is gone after a stop, and even after
//! procgate itself is SIGKILLed; escaped (setsid) descendants included.

mod common;
use common::{free_base_port, wait_gone, App, DEADLINE};
use nix::sys::signal::Signal;
use std::time::Duration;

// The daemon speaks only once it has left the group, so the stop cannot race its setsid.
const TREE: &str = "tree: sleep 300 & echo child $!; setsid sh -c 'echo daemon $$; exec sleep 301' & wait\n\
stubborn: trap '' TERM; sleep 302 & echo child $!; wait\n";

/// Pids of the leaders and of the children they report.
fn pids(running: &mut common::Running) -> Vec<i32> {
    let mut pids = vec![running.pid_of("tree.1"), running.pid_of("stubborn.1")];
    for needle in ["tree.1 | child ", "tree.1 | daemon ", "stubborn.1 | child "] {
        let line = running.wait_for(needle);
        pids.push(line.rsplit(' ').next().unwrap().parse().unwrap());
    }
    assert!(pids.iter().all(|&p| common::alive(p)));
    pids
}

#[test]
fn nothing_survives_a_sigkill_of_procgate() {
    let app = App::new(TREE);
    let mut running = app.spawn(&["start", "-p", &free_base_port(2, 1).to_string()]);
    let pids = pids(&mut running);
    running.signal(Signal::SIGKILL);
    wait_gone(&pids, Duration::from_secs(5));
}

#[test]
fn nothing_survives_a_graceful_stop() {
    let app = App::new(TREE);
    let mut running = app.spawn(&["start", "--grace", "1s", "-p", &free_base_port(2, 1).to_string()]);
    let pids = pids(&mut running);
    // Each instance's keeper (its leader's parent) reads as procgate in `ps`, not as the
    // descriptor path it runs from (`/proc/self/fd/22 __keeper ...`).
    let keeper = common::wait_until(DEADLINE, "tree.1's keeper", || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pids[0])).ok()?;
        stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse::<i32>().ok()
    });
    let cmdline = std::fs::read(format!("/proc/{keeper}/cmdline")).unwrap();
    assert!(cmdline.starts_with(b"procgate\0__keeper\0--\0"), "{:?}", String::from_utf8_lossy(&cmdline));
    running.signal(Signal::SIGINT);
    let finished = running.finish(DEADLINE);
    assert!(finished.has("tree.1 terminated by SIGTERM"), "{}", finished.text());
    assert!(!finished.has("R12 Exit timeout: tree.1"), "the setsid daemon got SIGTERM too:\n{}", finished.text());
    assert!(finished.has("R12 Exit timeout: stubborn.1"));
    wait_gone(&pids, Duration::from_secs(2));
}

#[test]
fn a_process_whose_group_lost_its_leader_gets_the_stop_signal_alone() {
    // The setsid shell has exited by `ready`: its sleep is in a group with no leader in the tree.
    let app = App::new("tree: setsid sh -c 'sleep 303 & echo orphan $!'; echo ready; exec sleep 300\n");
    let mut running = app.spawn(&["start", "--grace", "2s", "-p", &free_base_port(1, 1).to_string()]);
    let orphan = running.wait_for("tree.1 | orphan ").rsplit(' ').next().unwrap().parse().unwrap();
    running.wait_for("tree.1 | ready");
    running.signal(Signal::SIGINT);
    let finished = running.finish(DEADLINE);
    assert!(!finished.has("R12 Exit timeout: tree.1"), "the orphan got SIGTERM too:\n{}", finished.text());
    wait_gone(&[orphan], Duration::from_secs(1));
}

#[test]
fn leftovers_of_a_crashed_instance_are_stopped_before_it_restarts() {
    let app = App::new("crashy: sleep 300 & echo child $!; exit 7\n");
    let mut running = app.spawn(&["start", "-p", &free_base_port(1, 1).to_string()]);
    let line = running.wait_for("crashy.1 | child ");
    let child: i32 = line.rsplit(' ').next().unwrap().parse().unwrap();
    running.wait_for("crashy.1 exited with code 7");
    assert!(!common::alive(child), "the whole group is gone before the exit is reported");
    running.wait_for("crashy.1 crashed; restarting in 1s");
    running.signal(Signal::SIGINT);
    running.finish(DEADLINE);
}

#[test]
fn signals_sent_to_a_keeper_reach_the_app_once() {
    let app = App::new("app: trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.1; done\n");
    let mut running = app.spawn(&["start", "-p", &free_base_port(1, 1).to_string()]);
    running.wait_for("app.1 | ready");
    let keeper = keeper_pid(running.main_pid());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(keeper), Signal::SIGTERM).unwrap();
    running.wait_for("app.1 | got TERM");
    running.wait_for("app.1 exited with code 0");
    running.wait_for("app.1 crashed; restarting in 1s");
    running.signal(Signal::SIGINT);
    let finished = running.finish(DEADLINE);
    assert_eq!(finished.lines.iter().filter(|l| l.contains("got TERM")).count(), 1, "{}", finished.text());
    assert_eq!(finished.code(), Some(0), "a crashed instance is simply not restarted after the stop");
}

fn keeper_pid(main: i32) -> i32 {
    let children = std::fs::read_to_string(format!("/proc/{main}/task/{main}/children")).unwrap();
    children.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn a_keeper_killed_takes_its_app_with_it_and_a_stop_still_finishes() {
    // The leader dies with its keeper (its parent-death signal); procgate kills its child.
    let app = App::new("worker: sleep 300 & echo child $!; wait\n");
    let mut running = app.spawn(&["start", "--grace", "2s", "-p", &free_base_port(1, 1).to_string()]);
    let worker = running.pid_of("worker.1");
    let child = running.wait_for("worker.1 | child ").rsplit(' ').next().unwrap().parse().unwrap();
    let keeper = keeper_pid(running.main_pid());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(keeper), Signal::SIGKILL).unwrap();
    wait_gone(&[worker, child], Duration::from_secs(1));
    // The leader, orphaned, went to procgate's anchor (a subreaper), which reaps it: no zombie.
    let reaped = || (!std::path::Path::new(&format!("/proc/{worker}")).exists()).then_some(());
    common::wait_until(Duration::from_secs(2), &format!("the orphaned leader {worker} reaped"), reaped);
    running.wait_for("worker.1 crashed; restarting in 1s");
    let stop = app.run(&["stop"]);
    assert_eq!(stop.code(), Some(0), "{}", stop.text());
    assert_eq!(running.finish(DEADLINE).code(), Some(0));
}

#[test]
fn keepers_run_the_binary_procgate_runs_even_after_its_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let installed = dir.path().join("procgate");
    std::fs::copy(common::BIN, &installed).unwrap();
    let app = App::new("worker: echo running; exec sleep 300\n");
    let base = free_base_port(1, 1).to_string();
    let args = ["start", "--grace", "2s", "-p", &base, "--tcp-listen", "127.0.0.1:0", "--web-listen", "127.0.0.1:0"];
    let mut running = app.spawn_program(&installed, &args, &[]);
    running.wait_for("worker.1 | running");
    // A package upgrade: another file renamed over the binary's path.
    let upgrade = dir.path().join("procgate.new");
    std::fs::write(&upgrade, "#!/bin/sh\necho not procgate; exit 3\n").unwrap();
    std::fs::set_permissions(&upgrade, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&upgrade, &installed).unwrap();
    let restart = app.run(&["restart", "worker"]);
    assert_eq!(restart.code(), Some(0), "{}", restart.text());
    running.wait_for_nth("worker.1 | running", 2, DEADLINE);
    running.signal(Signal::SIGINT);
    assert_eq!(running.finish(DEADLINE).code(), Some(0));
}

/// Counts the SIGTERMs it gets in the 2 s after the first, then says how many.
const TERM_COUNTER: &str = r#"
import signal, time
count = 0
def on_term(*_):
    global count
    count += 1
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
while count == 0:
    time.sleep(0.01)
time.sleep(2)
print(f"SIGTERMs: {count}", flush=True)
"#;

/// Who sends procgate's stop signal.
#[derive(Debug, Clone, Copy)]
enum Stopper {
    /// `kill PID`: the pid procgate was started with, its anchor.
    Kill,
    /// A terminal's Ctrl-C: SIGINT to the foreground group, the anchor and the main process.
    Terminal,
    /// systemd's `KillMode=control-group`: SIGTERM to every process of the cgroup at once.
    Manager,
}

#[test]
fn an_app_gets_one_sigterm_and_the_stop_its_grace_however_the_signal_reaches_procgate() {
    for stopper in [Stopper::Kill, Stopper::Terminal, Stopper::Manager] {
        let app = App::new("app: exec python3 counter.py\n");
        app.write("counter.py", TERM_COUNTER);
        let base = free_base_port(1, 1).to_string();
        let args =
            ["start", "-p", &base, "--grace", "5s", "--tcp-listen", "127.0.0.1:0", "--web-listen", "127.0.0.1:0"];
        // This test is procgate's parent: as systemd, it sets INVOCATION_ID.
        let manager = matches!(stopper, Stopper::Manager);
        let envs: &[(&str, &str)] = if manager { &[("INVOCATION_ID", "procgate-test")] } else { &[] };
        let mut running = app.spawn_program(std::path::Path::new(common::BIN), &args, envs);
        let app_pid = running.pid_of("app.1");
        running.wait_for("app.1 | ready");
        let (anchor, main, keeper) = (running.pid(), running.main_pid(), keeper_pid(running.main_pid()));
        let send = |signal: Signal, pids: &[i32]| {
            for pid in pids {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), signal).unwrap();
            }
        };
        match stopper {
            Stopper::Kill => send(Signal::SIGTERM, &[anchor]),
            Stopper::Terminal => send(Signal::SIGINT, &[anchor, main]),
            Stopper::Manager => send(Signal::SIGTERM, &[app_pid, keeper, main, anchor]),
        }
        running.wait_for("app.1 | SIGTERMs: 1");
        let finished = running.finish(DEADLINE);
        assert_eq!(finished.code(), Some(0), "{stopper:?}: {}", finished.text());
        assert!(!finished.text().contains("received again"), "{stopper:?}: one stop: {}", finished.text());
    }
}

#[test]
fn procgate_ends_as_its_main_process_did_and_its_apps_with_it() {
    let app = App::new("worker: exec sleep 300\n");
    let mut running = app.spawn(&["start", "--grace", "2s", "-p", &free_base_port(1, 1).to_string()]);
    let worker = running.pid_of("worker.1");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(running.main_pid()), Signal::SIGKILL).unwrap();
    let finished = running.finish(DEADLINE);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&finished.status),
        Some(9),
        "the anchor dies of its main process's SIGKILL: {}",
        finished.text()
    );
    wait_gone(&[worker], Duration::from_secs(2));
}
