//! `procgate upgrade`: the new binary's check, and its refusals, after which nothing changed.

mod common;
use common::{free_base_port, ps, App, BIN, DEADLINE};
use nix::sys::signal::Signal;
use procgate::upgrade::check::OURS;
use std::os::unix::fs::PermissionsExt;

/// An executable script in the app's directory; its absolute path.
fn script(app: &App, name: &str, body: &str) -> String {
    let path = app.write(name, &format!("#!/bin/sh\n{body}\n"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

fn pids(app: &App) -> Vec<Option<u32>> {
    ps(app).instances.iter().map(|i| i.pid).collect()
}

#[test]
fn the_binary_answers_the_check_with_its_protocols() {
    let output = std::process::Command::new(BIN).arg("__upgrade-check").output().unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), format!("{OURS}\n"));
    assert!(OURS.to_string().starts_with("procgate-upgrade keeper=1 handover="), "{OURS}");
}

#[test]
fn a_binary_that_cannot_take_over_is_refused_with_the_reason_and_nothing_changes() {
    let app = App::new("app: exec sleep 60\nother: exec sleep 61\n");
    let mut running = app.spawn(&["start", "-p", &free_base_port(2, 1).to_string()]);
    running.wait_for("app.1 started with pid");
    running.wait_for("other.1 started with pid");
    let before = pids(&app);
    let keeper = script(&app, "old-keeper", "echo procgate-upgrade keeper=99 handover=1");
    let handover = script(&app, "new-handover", "echo procgate-upgrade keeper=1 handover=99");
    let refusals = [
        ("/bin/true", "is not a procgate that can take over: `__upgrade-check` did not answer as procgate does"),
        ("/bin/false", "`__upgrade-check` failed (exit status: 1)"),
        (keeper.as_str(), "speaks keeper protocol 99, this procgate 1: it could not adopt the running keepers"),
        (handover.as_str(), "speaks handover protocol 99, this procgate 1"),
    ];
    for (binary, reason) in refusals {
        let finished = app.run(&["upgrade", "--binary", binary]);
        assert_eq!(finished.code(), Some(1), "{}", finished.text());
        let shown = std::fs::canonicalize(binary).unwrap();
        assert!(finished.text().contains(&format!("procgate: refused: {}", shown.display())), "{}", finished.text());
        assert!(finished.text().contains(reason), "{}", finished.text());
    }
    let missing = app.run(&["upgrade", "--binary", "no-such-procgate"]);
    assert_eq!(missing.code(), Some(1), "{}", missing.text());
    assert!(missing.has("no-such-procgate: No such file or directory"), "{}", missing.text());
    assert_eq!(pids(&app), before, "no instance was restarted");
    running.signal(Signal::SIGINT);
    assert_eq!(running.finish(DEADLINE).code(), Some(0));
}

#[test]
fn a_second_upgrade_during_one_is_refused() {
    let app = App::new("app: exec sleep 60\n");
    let mut running = app.spawn(&["start", "-p", &free_base_port(1, 1).to_string()]);
    running.wait_for("app.1 started with pid");
    let slow = script(&app, "slow", &format!("sleep 2; echo '{OURS}'"));
    let first = {
        let (root, slow) = (app.path().to_path_buf(), slow.clone());
        std::thread::spawn(move || {
            let args = ["upgrade", "-d", root.to_str().unwrap(), "--binary", slow.as_str()];
            std::process::Command::new(BIN).args(args).output().unwrap()
        })
    };
    running.wait_for("upgrade asked: checking");
    let second = app.run(&["upgrade", "--binary", &slow]);
    assert_eq!(second.code(), Some(1), "{}", second.text());
    assert!(second.has("procgate: refused: an upgrade is under way; one at a time"), "{}", second.text());
    let first = first.join().unwrap();
    let text = String::from_utf8_lossy(&first.stderr);
    // It passes the check, but as a main process it ends without a word.
    assert!(text.contains("rolled back: the new main process ended before answering"), "{text}");
    running.signal(Signal::SIGINT);
    assert_eq!(running.finish(DEADLINE).code(), Some(0));
}

#[test]
fn a_copy_of_procgate_is_started_takes_the_listeners_and_is_stopped_as_the_rest_is_not_built_yet() {
    let app = common::echo_app("");
    let (mut running, addr) = common::start_gateway(&app, "tcp=1", &[]);
    running.wait_for("201 app connected tcp.1");
    let before = pids(&app);
    let copy = app.path().join("procgate-copy");
    std::fs::copy(BIN, &copy).unwrap();
    for _ in 0..2 {
        let finished = app.run(&["upgrade", "--binary", copy.to_str().unwrap()]);
        assert_eq!(finished.code(), Some(1), "{}", finished.text());
        let text = finished.text();
        assert!(text.contains("its main process (pid "), "{text}");
        assert!(text.contains("took the listeners (control socket, tcp ×"), "{text}");
        assert!(text.contains("it was stopped, nothing changed"), "{text}");
        let successor: i32 = text.split("(pid ").nth(1).unwrap().split(')').next().unwrap().parse().unwrap();
        common::wait_gone(&[successor], std::time::Duration::from_secs(5));
        assert_eq!(pids(&app), before, "no instance was restarted");
        // The listeners that crossed are the same sockets: the old main still accepts on them.
        let client = std::net::TcpStream::connect(addr).unwrap();
        let mut greeting = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(client), &mut greeting).unwrap();
        assert!(!greeting.is_empty());
    }
    running.wait_for("the new main process took the listeners: control socket, tcp ×");
    // The anchor still follows the old main process: its stop is procgate's.
    running.signal(Signal::SIGINT);
    let finished = running.finish(DEADLINE);
    assert_eq!(finished.code(), Some(0), "{}", finished.text());
}

#[test]
fn sigusr2_to_procgate_asks_for_an_upgrade_to_the_binary_it_was_started_from() {
    let app = App::new("app: exec sleep 60\n");
    let mut running = app.spawn(&["start", "-p", &free_base_port(1, 1).to_string()]);
    running.wait_for("app.1 started with pid");
    let before = pids(&app);
    running.signal(Signal::SIGUSR2);
    running.wait_for("SIGUSR2 received, upgrading to the binary procgate was started from");
    let line = running.wait_for("upgrade not carried out:");
    assert!(line.contains("took the listeners (control socket)") && line.contains("nothing changed"), "{line}");
    assert_eq!(pids(&app), before, "no instance was restarted");
    running.signal(Signal::SIGINT);
    assert_eq!(running.finish(DEADLINE).code(), Some(0));
}
