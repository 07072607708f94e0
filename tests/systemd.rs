//! procgate under systemd, without systemd running: the readiness protocol (`sd_notify`) against
//! a `NOTIFY_SOCKET` the test listens on, SIGHUP as a reload, an upgrade of procgate itself, and
//! the unit `systemd-unit` prints checked by `systemd-analyze verify`.

mod common;
use common::needs::needs;
use common::{echo_app, App, BIN, DEADLINE};
use nix::sys::signal::Signal;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// The service manager's socket, as systemd would hold it.
struct Manager {
    socket: UnixDatagram,
    _dir: tempfile::TempDir,
    path: String,
}

impl Manager {
    fn listen() -> Manager {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        Manager { socket, path: path.display().to_string(), _dir: dir }
    }

    /// The messages received until one starts with `prefix` (that one last), or the deadline.
    fn until(&self, prefix: &str) -> Vec<String> {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        while Instant::now() < deadline {
            let Ok(read) = self.socket.recv(&mut buffer) else { continue };
            let message = String::from_utf8_lossy(&buffer[..read]).to_string();
            let done = message.starts_with(prefix);
            seen.push(message);
            if done {
                return seen;
            }
        }
        panic!("no {prefix:?} within {DEADLINE:?}; got {seen:?}");
    }
}

#[test]
fn procgate_tells_systemd_when_it_is_ready_reloading_and_stopping_and_feeds_the_watchdog() {
    let app = echo_app("worker: echo notify=${NOTIFY_SOCKET:-none} greeting=$GREETING; exec sleep 60\n");
    app.write(".env", "GREETING=v1\n");
    let manager = Manager::listen();
    let base = common::free_base_port(2, 2).to_string();
    let args = ["start", "-m", "tcp=1,worker=1", "-p", &base, "--tcp-listen", "127.0.0.1:0", "--grace", "2s"];
    let envs = [("NOTIFY_SOCKET", manager.path.as_str()), ("WATCHDOG_USEC", "400000")];
    let mut running = app.spawn_program(std::path::Path::new(BIN), &args, &envs);
    let before = manager.until("READY=1");
    assert_eq!(before.last().unwrap(), "READY=1\nSTATUS=tcp: 1 up; worker: 1 up", "{before:?}");
    assert!(
        before[..before.len() - 1].iter().all(|m| m == "WATCHDOG=1"),
        "nothing but the watchdog before: {before:?}"
    );
    running.wait_for("worker.1 | notify=none greeting=v1");
    manager.until("WATCHDOG=1");
    manager.until("WATCHDOG=1");

    app.write(".env", "GREETING=v2\n");
    running.signal(Signal::SIGHUP);
    let reloading = manager.until("RELOADING=1");
    assert!(reloading.last().unwrap().starts_with("RELOADING=1\nMONOTONIC_USEC="), "{reloading:?}");
    manager.until("READY=1");
    running.wait_for("worker.1 | notify=none greeting=v2");
    running.wait_for("deploy done");

    // An upgrade of procgate itself as `ExecReload` may run it: reloading, then ready from the
    // new main process, through the anchor (the pid systemd knows), which feeds the watchdog on.
    common::wait_until(DEADLINE, "every instance up after the deploy", || {
        let instances = common::ps(&app).instances;
        (instances.len() == 2 && instances.iter().all(|i| i.state == "up")).then_some(())
    });
    let upgraded = app.run(&["upgrade"]);
    assert_eq!(upgraded.code(), Some(0), "{}", upgraded.text());
    let reloading = manager.until("RELOADING=1");
    assert!(reloading.last().unwrap().starts_with("RELOADING=1\nMONOTONIC_USEC="), "{reloading:?}");
    let ready = manager.until("READY=1");
    assert_eq!(ready.last().unwrap(), "READY=1\nSTATUS=tcp: 1 up; worker: 1 up", "{ready:?}");
    running.wait_for("this new main process is procgate's now");
    manager.until("WATCHDOG=1");
    manager.until("WATCHDOG=1");

    running.signal(Signal::SIGTERM);
    manager.until("STOPPING=1");
    let finished = running.finish(DEADLINE);
    assert_eq!(finished.code(), Some(0), "{}", finished.text());
}

#[test]
fn the_unit_systemd_unit_prints_passes_systemd_analyze_verify() {
    if !needs(&[("systemd-analyze", "systemd")]) {
        return;
    }
    let app = App::new("web: exec sleep 60\n");
    let unit = app.run(&["systemd-unit", "-d", ".", "-m", "web=2", "--grace", "20s"]);
    assert_eq!(unit.code(), Some(0), "{}", unit.text());
    let text = unit.lines.join("\n") + "\n";
    for line in ["Type=notify", "KillMode=mixed", "TimeoutStopSec=30s", "ExecReload=/bin/kill -HUP $MAINPID"] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    assert!(text.contains(" start -d . -m web=2 --grace 20s\n"), "{text}");
    let path = app.write("app.service", &text);
    let verify = std::process::Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    let said = String::from_utf8_lossy(&verify.stderr).to_string() + &String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");

    let bad = app.run(&["systemd-unit", "--grace", "soon"]);
    assert_eq!(bad.code(), Some(2), "{}", bad.text());
}
