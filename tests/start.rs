//! `procgate start` through the binary: environment, output, restarts, stops, release.

mod common;
use common::{free_base_port, App, DEADLINE};
use nix::sys::signal::Signal;
use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

#[test]
fn instances_get_the_env_files_then_the_platform_variables() {
    let app = App::new("web: echo \"PORT=$PORT PS=$PS DYNO=$DYNO TCP=$TCP_URL RL=$RUPPELLS_SOCKETS_LOCAL_PORT RF=$RUPPELLS_SOCKETS_FRONTEND_URI G=$GREETING\"; exec sleep 30\n");
    app.write(".env", "GREETING='hi there'\nPORT=1\n");
    let base = free_base_port(1, 2);
    let mut running = app.spawn(&["start", "-m", "web=2", "-p", &base.to_string(), "--tcp-listen", "127.0.0.1:20999"]);
    let line = running.wait_for("web.2 | PORT=");
    let port = base + 1;
    let expected = format!(
        "PORT={port} PS=web.2 DYNO=web.2 TCP=tcp://127.0.0.1:20999 RL={port} RF=tcp://127.0.0.1:20999 G=hi there"
    );
    assert!(line.contains(&expected), "{line}");
    running.signal(Signal::SIGINT);
    assert_eq!(running.finish(DEADLINE).code(), Some(0));
}

#[test]
fn port_in_the_env_file_sets_the_base_port() {
    let base = free_base_port(2, 1);
    let app = App::new("web: echo web on $PORT; exec sleep 30\nworker: echo worker on $PORT; exec sleep 30\n");
    app.write(".env", &format!("PORT={base}\n"));
    let mut running = app.spawn(&["start"]);
    running.wait_for(&format!("web on {base}"));
    running.wait_for(&format!("worker on {}", base + 100));
    running.signal(Signal::SIGTERM);
    assert_eq!(running.finish(DEADLINE).code(), Some(0));
}

#[test]
fn output_is_prefixed_line_by_line_with_partial_and_long_lines() {
    let long = "x".repeat(40_000);
    let script = format!("printf 'one\\ntwo\\r\\n'; echo to-stderr >&2; printf '{long}\\n'; echo after-long; printf partial; echo partial-written >&2; exec sleep 30");
    let app = App::new(&format!("web: {script}\nlonger-name: exec sleep 30\n"));
    let mut running = app.spawn(&["start", "-p", &free_base_port(2, 1).to_string()]);
    for needle in ["web.1 | one", "web.1 | two", "web.1 | to-stderr", "web.1 | after-long", "web.1 | partial-written"] {
        running.wait_for(needle);
    }
    assert!(
        running.seen.iter().any(|l| l.ends_with("web.1         | two")),
        "padded to the longest name, \\r stripped"
    );
    let pieces: Vec<usize> =
        running.seen.iter().filter(|l| l.contains("| xxx")).map(|l| l.split("| ").nth(1).unwrap().len()).collect();
    assert_eq!(pieces, [16_384, 16_384, 40_000 - 2 * 16_384]);
    let time = &running.seen[0][..8];
    assert!(time.chars().filter(|c| *c == ':').count() == 2 && time.len() == 8, "HH:MM:SS prefix: {time}");
    running.signal(Signal::SIGINT);
    let finished = running.finish(DEADLINE);
    assert!(
        finished.position("web.1 | partial") < finished.position("web.1 terminated by SIGTERM"),
        "a partial line is printed at the end"
    );
}

#[test]
fn a_crashed_instance_restarts_with_backoff_while_the_others_keep_running() {
    let app = App::new("crash: echo boom; exit 3\nsteady: exec sleep 60\n");
    let mut running = app.spawn(&["start", "-p", &free_base_port(2, 1).to_string()]);
    let steady = running.pid_of("steady.1");
    running.wait_for("crash.1 exited with code 3");
    running.wait_for("crash.1 crashed; restarting in 1s (restart 1)");
    let first = Instant::now();
    running.wait_for("crash.1 crashed; restarting in 2s (restart 2)");
    let second = Instant::now();
    running.wait_for("crash.1 crashed; restarting in 4s (restart 3)");
    assert!(second - first >= Duration::from_millis(900), "waited the first backoff");
    assert!(Instant::now() - second >= Duration::from_millis(1900), "waited the second backoff");
    assert!(common::alive(steady), "the other instance is untouched");
    assert_eq!(running.seen.iter().filter(|l| l.contains("steady.1 started")).count(), 1);
    running.signal(Signal::SIGINT);
    let finished = running.finish(DEADLINE);
    assert_eq!(finished.code(), Some(0), "{}", finished.text());
}

#[test]
fn sigint_stops_everything_gracefully_and_exits_zero() {
    let echo = common::repo().join("sample-apps/python/echo_server.py");
    let app = App::new(&format!("tcp: exec python3 {}\nclock: while true; do sleep 1; done\n", echo.display()));
    let base = free_base_port(2, 1);
    let mut running = app.spawn(&["start", "-p", &base.to_string(), "--tcp-listen", "127.0.0.1:0"]);
    running.wait_for("tcp.1 listening");
    let mut client = std::net::TcpStream::connect(("127.0.0.1", base)).unwrap();
    client.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("hello tcp.1 "), "{line}");
    client.write_all(b"ping\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "ping\n");
    running.signal(Signal::SIGINT);
    let finished = running.finish(DEADLINE);
    let mut rest = String::new();
    reader.read_line(&mut rest).unwrap();
    assert_eq!(rest, "bye\n", "the app closed its client on SIGTERM");
    assert_eq!(finished.code(), Some(0), "{}", finished.text());
    assert!(
        finished.position("SIGINT received, starting shutdown") < finished.position("sending SIGTERM to all processes")
    );
    assert!(finished.has("tcp.1 exited with code 0"), "{}", finished.text());
    assert!(finished.has("clock.1 terminated by SIGTERM"));
}

#[test]
fn an_instance_that_ignores_sigterm_is_killed_after_the_grace_with_r12() {
    let app = App::new("stubborn: trap '' TERM; echo ready; while true; do sleep 1; done\n");
    let mut running = app.spawn(&["start", "--grace", "1s", "-p", &free_base_port(1, 1).to_string()]);
    running.wait_for("stubborn.1 | ready");
    running.signal(Signal::SIGTERM);
    let stopped_at = Instant::now();
    let finished = running.finish(DEADLINE);
    assert!(stopped_at.elapsed() >= Duration::from_millis(900), "the grace was given");
    assert!(
        finished.has("R12 Exit timeout: stubborn.1 did not exit within 1s of SIGTERM; sending SIGKILL"),
        "{}",
        finished.text()
    );
    assert!(finished.has("stubborn.1 terminated by SIGKILL"));
    assert_eq!(finished.code(), Some(1), "a stop that needed SIGKILL is not clean");
}

#[test]
fn a_second_sigint_skips_the_grace() {
    let app = App::new("stubborn: trap '' TERM; echo ready; while true; do sleep 1; done\n");
    let mut running = app.spawn(&["start", "--grace", "60s", "-p", &free_base_port(1, 1).to_string()]);
    running.wait_for("stubborn.1 | ready");
    running.signal(Signal::SIGINT);
    running.wait_for("sending SIGTERM to all processes");
    running.signal(Signal::SIGINT);
    let finished = running.finish(Duration::from_secs(10));
    assert!(finished.has("sending SIGKILL to all processes"), "{}", finished.text());
    assert!(finished.has("stubborn.1 terminated by SIGKILL"));
    assert_eq!(finished.code(), Some(1));
}

#[test]
fn an_instance_has_exited_only_when_its_whole_group_is_gone() {
    // The shell dies at once on SIGTERM; its child keeps closing for a while and still speaks.
    let app = App::new("web: (trap 'sleep 0.5; echo closed-cleanly; exit 0' TERM; echo ready; while true; do sleep 0.1; done) & wait\n");
    let mut running = app.spawn(&["start", "-p", &free_base_port(1, 1).to_string()]);
    running.wait_for("web.1 | ready");
    running.signal(Signal::SIGINT);
    let finished = running.finish(DEADLINE);
    assert!(
        finished.position("web.1 | closed-cleanly") < finished.position("web.1 terminated by SIGTERM"),
        "{}",
        finished.text()
    );
    assert_eq!(finished.code(), Some(0));
}

#[test]
fn release_runs_once_before_the_other_types() {
    let app = App::new("release: echo migrating $DYNO port=${PORT:-none}\nweb: echo serving; exec sleep 30\n");
    let mut running = app.spawn(&["start", "-p", &free_base_port(1, 1).to_string()]);
    running.wait_for("web.1 | serving");
    running.signal(Signal::SIGINT);
    let finished = running.finish(DEADLINE);
    assert!(finished.has("release.1 | migrating release.1 port=none"), "{}", finished.text());
    assert!(finished.position("release.1 exited with code 0") < finished.position("web.1 started with pid"));
    assert_eq!(finished.code(), Some(0));
}

#[test]
fn a_failing_release_stops_start_with_a_clear_error() {
    let app = App::new("release: echo cannot migrate; exit 4\nweb: echo serving; exec sleep 30\n");
    let finished = app.spawn(&["start", "-p", &free_base_port(1, 1).to_string()]).finish(DEADLINE);
    assert_eq!(finished.code(), Some(1), "{}", finished.text());
    assert!(finished.has("release failed (exited with code 4); not starting the formation"));
    assert!(!finished.has("web.1 started"));
}

#[test]
fn start_with_type_names_runs_only_those() {
    let app = App::new("web: echo web; exec sleep 30\nworker: echo worker; exec sleep 30\n");
    let mut running = app.spawn(&["start", "worker", "-p", &free_base_port(2, 1).to_string()]);
    running.wait_for("worker.1 | worker");
    running.signal(Signal::SIGINT);
    let finished = running.finish(DEADLINE);
    assert!(!finished.has("web.1"), "{}", finished.text());
}

#[test]
fn each_instance_gets_a_fresh_tmpdir_removed_when_it_exits() {
    let app = App::new("web: echo tmp=$TMPDIR; touch $TMPDIR/scratch; exec sleep 30\n");
    let mut running = app.spawn(&["start", "-p", &free_base_port(1, 1).to_string()]);
    let line = running.wait_for("web.1 | tmp=");
    let tmpdir = std::path::PathBuf::from(line.split("tmp=").nth(1).unwrap());
    assert!(tmpdir.file_name().unwrap().to_str().unwrap().starts_with("procgate-web.1-"), "{line}");
    assert!(tmpdir.is_dir());
    running.signal(Signal::SIGINT);
    running.finish(DEADLINE);
    assert!(!tmpdir.exists(), "removed with the instance");
}

#[test]
fn the_sigterm_procfile_shows_a_graceful_and_a_stubborn_app() {
    let app = App::from_procfiles("sigterm");
    let base = free_base_port(2, 1);
    // Long enough for the graceful Python app to exit on a loaded machine.
    let mut running = app.spawn(&["start", "--grace", "3s", "-p", &base.to_string()]);
    running.wait_for("graceful.1 | graceful.1 listening");
    running.wait_for("stubborn.1 | stubborn.1 ignoring SIGTERM");
    running.signal(Signal::SIGTERM);
    let finished = running.finish(DEADLINE);
    assert!(finished.has("graceful.1 exited with code 0"), "{}", finished.text());
    assert!(finished.has("R12 Exit timeout: stubborn.1 did not exit within 3s of SIGTERM; sending SIGKILL"));
    assert!(!finished.has("R12 Exit timeout: graceful.1"));
    assert_eq!(finished.code(), Some(1));
}
