//! Progress on long work: `restart` and `scale` redraw one line per instance in place on a
//! terminal (a pseudo-terminal here), and `ps --watch` refreshes until procgate stops.

mod common;
use common::{echo_app, App, BIN, DEADLINE};
use nix::sys::signal::Signal;
use std::process::Command;

/// Runs `procgate ARGS` in the app directory on a pseudo-terminal; returns its exit code and
/// everything it wrote there.
fn on_a_terminal(app: &App, args: &[&str]) -> (Option<i32>, String) {
    let script = "import os, pty, sys\n\
pid, fd = pty.fork()\n\
if pid == 0:\n    os.execv(sys.argv[1], sys.argv[1:])\n\
out = b''\n\
while True:\n    try:\n        data = os.read(fd, 4096)\n    except OSError:\n        break\n    if not data:\n        break\n    out += data\n\
status = os.waitpid(pid, 0)[1]\n\
sys.stdout.buffer.write(out)\n\
sys.exit(os.waitstatus_to_exitcode(status))\n";
    let output =
        Command::new("python3").arg("-c").arg(script).arg(BIN).args(args).current_dir(app.path()).output().unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn restart_and_scale_redraw_one_line_per_instance_on_a_terminal() {
    let app = echo_app("");
    let (mut running, _) = common::start_gateway(&app, "tcp=1", &[]);
    running.wait_for("201 app connected tcp.1");
    let (code, screen) = on_a_terminal(&app, &["restart", "tcp"]);
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains("\x1b[1A\x1b[J") || screen.contains("\x1b[2A\x1b[J"), "redrawn in place: {screen:?}");
    assert!(screen.contains("ok: restart of tcp done"), "{screen:?}");
    let (code, screen) = on_a_terminal(&app, &["scale", "tcp=2"]);
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains("tcp.2 up (pid "), "followed until up: {screen:?}");
    running.signal(Signal::SIGINT);
    running.finish(DEADLINE);
}

#[test]
fn ps_watch_refreshes_until_procgate_stops() {
    let app = echo_app("");
    let (mut running, _) = common::start_gateway(&app, "tcp=1", &[]);
    running.wait_for("201 app connected tcp.1");
    let mut watch = app.spawn(&["ps", "--watch", "--interval", "200ms"]);
    watch.wait_for_nth("NAME", 3, DEADLINE);
    running.signal(Signal::SIGINT);
    running.finish(DEADLINE);
    let watched = watch.finish(DEADLINE);
    assert_eq!(watched.code(), Some(0), "{}", watched.text());
    assert!(watched.has("procgate is not running (any more)"), "{}", watched.text());
    assert!(watched.has("tcp.1"), "{}", watched.text());
}
