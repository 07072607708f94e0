//! The control socket and its commands through the binary: `ps`, `stop`, one procgate per root.

mod common;
use common::{free_base_port, ps, App, Running, DEADLINE};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;

fn start(app: &App) -> (Running, SocketAddr) {
    let (mut running, addr) = common::start_gateway(app, "tcp=2,clock=1", &[]);
    running.wait_for("201 app connected tcp.1");
    running.wait_for("201 app connected tcp.2");
    (running, addr)
}

fn echo_app() -> App {
    common::echo_app("clock: exec sleep 60\n")
}

#[test]
fn ps_lists_every_instance_with_its_open_connections() {
    let app = echo_app();
    let (mut running, addr) = start(&app);
    running.wait_for("clock.1 started with pid");
    let held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let stream = TcpStream::connect(addr).unwrap();
            let mut greeting = String::new();
            BufReader::new(stream.try_clone().unwrap()).read_line(&mut greeting).unwrap();
            stream
        })
        .collect();
    let reply = ps(&app);
    let names: Vec<&str> = reply.instances.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["tcp.1", "tcp.2", "clock.1"]);
    let tcp: Vec<_> = reply.instances.iter().filter(|i| i.type_name == "tcp").collect();
    assert!(tcp.iter().all(|i| i.state == "up" && i.pid.is_some() && i.uptime.is_some()), "{reply:?}");
    assert_eq!(tcp.iter().map(|i| i.connections.unwrap()).sum::<usize>(), 4, "{reply:?}");
    assert_eq!(tcp.iter().map(|i| i.connections.unwrap()).collect::<Vec<_>>(), [2, 2], "least connections");
    assert_eq!(reply.instances[2].connections, None, "clock is not routed");
    let table = app.run(&["ps"]);
    assert!(
        common::matches(&table.lines[0], "NAME TYPE STATE PID PORT UPTIME RESTARTS CONNECTIONS"),
        "{}",
        table.text()
    );
    assert!(common::matches(&table.lines[1], "tcp.1 tcp up"), "{}", table.text());
    drop(held);
}

#[test]
fn stop_over_the_socket_returns_when_everything_has_stopped() {
    let app = echo_app();
    let (mut running, _) = start(&app);
    let socket = app.path().join(".procgate/control.sock");
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(app.path().join(".procgate")).unwrap().permissions().mode() & 0o777, 0o700);
    let stop = app.run(&["stop"]);
    assert_eq!(stop.code(), Some(0), "{}", stop.text());
    assert!(stop.has("stopped (exit status 0)"), "{}", stop.text());
    running.wait_for("stop requested over the control socket, starting shutdown");
    let finished = running.finish(DEADLINE);
    assert_eq!(finished.code(), Some(0));
    assert!(finished.has("tcp.1 exited with code 0") && finished.has("clock.1 terminated by SIGTERM"));
    assert!(!socket.exists(), "the socket is removed on exit");
}

#[test]
fn one_procgate_per_root_and_clients_say_when_none_runs() {
    let app = echo_app();
    let none = app.run(&["ps"]);
    assert_eq!(none.code(), Some(1));
    assert!(none.has("no procgate is running in ."), "{}", none.text());
    let (running, _) = start(&app);
    let second = app.run(&["start", "-p", &free_base_port(2, 2).to_string(), "--tcp-listen", "127.0.0.1:0"]);
    assert_eq!(second.code(), Some(2), "{}", second.text());
    assert!(second.has("procgate is already running in ."), "{}", second.text());
    assert!(!second.has("started with pid"));
    assert_eq!(ps(&app).instances.len(), 3, "the first one is untouched");
    running.signal(nix::sys::signal::Signal::SIGKILL);
    running.finish(DEADLINE);
    let (mut again, _) = start(&app);
    again.wait_for("clock.1 started with pid");
    assert_eq!(ps(&app).instances.len(), 3, "a stale socket left by a killed procgate is replaced");
}

#[test]
fn a_control_directory_that_is_a_symlink_or_a_file_is_refused_and_never_followed() {
    let app = echo_app();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::set_permissions(elsewhere.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), app.path().join(".procgate")).unwrap();
    let base = free_base_port(2, 2).to_string();
    let refused = app.run(&["start", "-p", &base, "--tcp-listen", "127.0.0.1:0"]);
    assert_eq!(refused.code(), Some(2), "{}", refused.text());
    assert!(
        refused.has(".procgate: refused as procgate's control directory: it is not a directory of its own"),
        "{}",
        refused.text()
    );
    assert!(!refused.has("started with pid"));
    let mode = std::fs::metadata(elsewhere.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755, "the symlink's target was not chmod-ed");
    assert!(std::fs::read_dir(elsewhere.path()).unwrap().next().is_none(), "nothing was made there");
    std::fs::remove_file(app.path().join(".procgate")).unwrap();
    std::fs::write(app.path().join(".procgate"), "a file").unwrap();
    let refused = app.run(&["start", "-p", &base, "--tcp-listen", "127.0.0.1:0"]);
    assert_eq!(refused.code(), Some(2), "{}", refused.text());
}

#[test]
fn stop_says_when_it_had_to_sigkill_and_asking_twice_never_sigkills() {
    // `slow` takes a second to finish after SIGTERM; `stubborn` ignores it.
    let app = App::new("slow: trap 'sleep 1; echo done; exit 0' TERM; echo ready; while true; do sleep 0.1; done\n");
    let base = free_base_port(2, 1).to_string();
    let mut running = app.spawn(&["start", "-p", &base, "--grace", "5s"]);
    running.wait_for("slow.1 | ready");
    let (first, second) = (app.spawn(&["stop"]), app.spawn(&["stop"]));
    let (first, second) = (first.finish(DEADLINE), second.finish(DEADLINE));
    assert_eq!((first.code(), second.code()), (Some(0), Some(0)), "{}\n{}", first.text(), second.text());
    let finished = running.finish(DEADLINE);
    assert!(finished.has("slow.1 | done") && !finished.has("SIGKILL"), "{}", finished.text());

    let app = App::new("stubborn: trap '' TERM; echo ready; while true; do sleep 0.1; done\n");
    let mut running = app.spawn(&["start", "-p", &base, "--grace", "1s"]);
    running.wait_for("stubborn.1 | ready");
    let stop = app.run(&["stop"]);
    assert_eq!(stop.code(), Some(1), "{}", stop.text());
    assert!(stop.has("stopped (exit status 1)"), "{}", stop.text());
    assert_eq!(running.finish(DEADLINE).code(), Some(1));
}

#[test]
fn scale_while_a_rollout_runs_is_a_runtime_refusal_and_test_shutdown_all_a_clear_error() {
    let echo = common::repo().join("sample-apps/python/echo_server.py");
    let app = App::new(&format!("tcp: echo url=$TCP_URL; sleep 2; exec python3 {}\n", echo.display()));
    let (mut running, _) = common::start_gateway(&app, "tcp=1", &[]);
    running.wait_for("201 app connected tcp.1");
    let restart = app.spawn(&["restart", "tcp"]);
    running.wait_for("restart of tcp started");
    let scale = app.run(&["scale", "tcp=2"]);
    assert_eq!(scale.code(), Some(1), "busy, not bad input: {}", scale.text());
    assert!(scale.has("a restart of tcp is running; try again when it is done"), "{}", scale.text());
    assert_eq!(restart.finish(DEADLINE).code(), Some(0));
    let all = app.run(&["test-shutdown", "all"]);
    assert_eq!(all.code(), Some(2), "{}", all.text());
    assert!(all.has("the Procfile has no type `all`; test-shutdown takes one of: tcp"), "{}", all.text());
    assert!(!all.text().contains("panicked"));
}
