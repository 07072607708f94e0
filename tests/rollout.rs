//! Zero-downtime operations through the binary, with real clients: restart under load, held
//! connections closed by the app during a restart, R12 of a stubborn app, scale, daily cycling,
//! deploy with rollback.

mod common;
use common::{echo_app, ps, App, Finished, Running, DEADLINE};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Time between two new client connections of the load (~15/s).
const LOAD_PERIOD: Duration = Duration::from_millis(66);

fn start(app: &App, formation: &str, extra: &[&str]) -> (Running, SocketAddr) {
    let (mut running, addr) = common::start_gateway(app, formation, extra);
    running.wait_for("201 app connected tcp.1");
    (running, addr)
}

/// The greeting `hello tcp.N PID` of a new connection.
fn greet(addr: SocketAddr) -> Result<(String, u32), String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(|e| format!("read: {e}"))?;
    let mut words = line.split_whitespace().skip(1);
    match (words.next(), words.next().and_then(|p| p.parse().ok())) {
        (Some(name), Some(pid)) => Ok((name.to_string(), pid)),
        _ => Err(format!("no greeting: {line:?}")),
    }
}

/// Clients connecting at ~15/s until stopped: (served pids, failures).
struct Load {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(Vec<u32>, Vec<String>)>,
}

impl Load {
    fn start(addr: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut served, mut failed) = (Vec::new(), Vec::new());
            while !flag.load(Ordering::SeqCst) {
                match greet(addr) {
                    Ok((_, pid)) => served.push(pid),
                    Err(why) => failed.push(why),
                }
                std::thread::sleep(LOAD_PERIOD);
            }
            (served, failed)
        });
        Load { stop, thread }
    }

    fn finish(self) -> (Vec<u32>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

fn pids_of(app: &App, type_name: &str) -> HashSet<u32> {
    ps(app).instances.iter().filter(|i| i.type_name == type_name && i.state == "up").filter_map(|i| i.pid).collect()
}

fn stop(running: Running) -> Finished {
    running.signal(nix::sys::signal::Signal::SIGINT);
    running.finish(DEADLINE)
}

#[test]
fn restart_under_load_fails_no_connection_and_new_instances_serve() {
    let app = echo_app("");
    let (mut running, addr) = start(&app, "tcp=2", &[]);
    running.wait_for("201 app connected tcp.2");
    let old = pids_of(&app, "tcp");
    let load = Load::start(addr);
    std::thread::sleep(LOAD_PERIOD * 15);
    let restart = app.run(&["restart", "tcp"]);
    std::thread::sleep(LOAD_PERIOD * 15);
    let (served, failed) = load.finish();
    assert_eq!(restart.code(), Some(0), "{}", restart.text());
    assert!(restart.has("routing switched") && restart.has("ok: restart of tcp done"), "{}", restart.text());
    assert!(failed.is_empty(), "{} served, failed: {failed:?}", served.len());
    let new = pids_of(&app, "tcp");
    assert!(new.is_disjoint(&old), "{old:?} -> {new:?}");
    assert!(served.iter().any(|p| new.contains(p)), "the replacements serve");
    let drains: Vec<&String> = restart.lines.iter().filter(|l| l.contains("drained in")).collect();
    eprintln!("restart under load: {} connections served, {} failed; {drains:?}", served.len(), failed.len());
    assert_eq!(stop(running).code(), Some(0));
}

#[test]
fn restart_of_one_instance_replaces_only_it() {
    let app = echo_app("");
    let (mut running, _) = start(&app, "tcp=2", &[]);
    running.wait_for("201 app connected tcp.2");
    let before = ps(&app).instances;
    let restart = app.run(&["restart", "tcp.2"]);
    assert_eq!(restart.code(), Some(0), "{}", restart.text());
    assert!(restart.has("tcp.2 replacement starting") && !restart.has("tcp.1 replacement"), "{}", restart.text());
    let after = ps(&app).instances;
    let pid = |list: &[procgate::control::InstanceStatus], name: &str| {
        list.iter().find(|i| i.name == name && i.state == "up").and_then(|i| i.pid)
    };
    assert_eq!(pid(&before, "tcp.1"), pid(&after, "tcp.1"));
    assert_ne!(pid(&before, "tcp.2"), pid(&after, "tcp.2"));
    let unknown = app.run(&["restart", "tcp.9"]);
    assert_eq!(unknown.code(), Some(1));
    assert!(unknown.has("failed: no running instance matches `tcp.9`"), "{}", unknown.text());
    // A target the Procfile does not have is bad input, refused before anything starts.
    for (target, said) in [("nope", "the Procfile has no type `nope`"), ("nope.1", "`nope.1` names no instance")] {
        let bad = app.run(&["restart", target]);
        assert_eq!(bad.code(), Some(2), "{}", bad.text());
        assert!(bad.has(said) && bad.has("restart takes a type (tcp) or an instance (e.g. `tcp.1`)"), "{}", bad.text());
        assert!(!bad.has("started"), "{}", bad.text());
    }
    stop(running);
}

#[test]
fn held_connections_end_with_the_apps_goodbye_then_eof_during_a_restart() {
    let app = echo_app("");
    let (running, addr) = start(&app, "tcp=1", &[]);
    let mut held: Vec<BufReader<TcpStream>> = (0..20)
        .map(|_| {
            let stream = TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(DEADLINE)).unwrap();
            let mut reader = BufReader::new(stream);
            let mut greeting = String::new();
            reader.read_line(&mut greeting).unwrap();
            reader
        })
        .collect();
    let restart = app.run(&["restart"]);
    assert_eq!(restart.code(), Some(0), "{}", restart.text());
    assert!(restart.has("SIGTERM tcp.1 (pid") && restart.has("20 open connections"), "{}", restart.text());
    assert!(restart.has("drained in"), "{}", restart.text());
    for reader in &mut held {
        let mut rest = String::new();
        reader.read_to_string(&mut rest).expect("a clean end of file, never a reset");
        assert_eq!(rest, "bye\n");
    }
    let drains: Vec<&String> = restart.lines.iter().filter(|l| l.contains("drained in")).collect();
    eprintln!("20 held connections during a restart: all got bye then EOF; {drains:?}");
    stop(running);
}

#[test]
fn an_app_that_ignores_sigterm_is_killed_after_the_grace_during_a_restart() {
    let stubborn = common::repo().join("sample-apps/python/ignore_term.py");
    let app = App::new(&format!("tcp: echo url=$TCP_URL; exec python3 {}\n", stubborn.display()));
    let (mut running, _) = start(&app, "tcp=1", &["--grace", "1s"]);
    let restart = app.run(&["restart", "tcp"]);
    assert_eq!(restart.code(), Some(0), "{}", restart.text());
    running.wait_for("R12 Exit timeout: tcp.1 did not exit within 1s of SIGTERM; sending SIGKILL");
    running.wait_for(") terminated by SIGKILL");
    assert_eq!(ps(&app).instances.len(), 1, "only the replacement is left");
    stop(running);
}

#[test]
fn scale_adds_instances_that_take_connections_and_removes_the_highest() {
    let app = echo_app("");
    let (mut running, addr) = start(&app, "tcp=1", &[]);
    let scaled = app.run(&["scale", "tcp=3"]);
    assert_eq!(scaled.code(), Some(0), "{}", scaled.text());
    assert!(scaled.has("tcp.2 starting on port") && scaled.has("tcp.3 starting on port"), "{}", scaled.text());
    running.wait_for("201 app connected tcp.2");
    running.wait_for("201 app connected tcp.3");
    let held: Vec<TcpStream> = (0..6).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let reply = ps(&app);
    let tcp: Vec<_> = reply.instances.iter().filter(|i| i.type_name == "tcp").collect();
    assert_eq!(tcp.len(), 3);
    assert!(tcp.iter().all(|i| i.state == "up"), "{reply:?}");
    let deadline = Instant::now() + DEADLINE;
    while ps(&app).instances.iter().filter_map(|i| i.connections).sum::<usize>() < 6 {
        assert!(Instant::now() < deadline, "6 connections counted");
    }
    drop(held);
    let down = app.run(&["scale", "tcp=1"]);
    assert!(down.has("tcp.3 retiring") && down.has("tcp.2 retiring"), "{}", down.text());
    running.wait_for("204 app disconnected tcp.3 (scaled down");
    running.wait_for("204 app disconnected tcp.2 (scaled down");
    for _ in 0..5 {
        assert_eq!(greet(addr).unwrap().0, "tcp.1");
    }
    let bad = app.run(&["scale", "nope=2"]);
    assert_eq!(bad.code(), Some(2));
    assert!(bad.has("the Procfile has no type `nope`"), "{}", bad.text());
    assert_eq!(app.run(&["scale", "tcp"]).code(), Some(2));
    stop(running);
}

#[test]
fn daily_cycling_replaces_instances_repeatedly_without_a_failed_connection() {
    let app = echo_app("");
    let (mut running, addr) = start(&app, "tcp=1", &["--cycle", "3s", "--cycle-jitter", "0s"]);
    let load = Load::start(addr);
    running.wait_for_nth("cycling of tcp.1 done", 2, DEADLINE);
    let (served, failed) = load.finish();
    assert!(failed.is_empty(), "{} served, failed: {failed:?}", served.len());
    assert!(running.seen.iter().filter(|l| l.contains("Cycling tcp.1")).count() >= 2);
    let distinct: HashSet<u32> = served.iter().copied().collect();
    assert!(distinct.len() >= 2, "served by successive instances: {distinct:?}");
    eprintln!("cycling under load: {} connections served, {} failed", served.len(), failed.len());
    stop(running);
}

#[test]
fn a_deploy_that_never_binds_is_rolled_back_and_a_good_one_goes_live() {
    let app = echo_app("clock: exec sleep 60\n");
    // Long enough for a Python app to bind on a loaded machine, short for the broken one.
    let (mut running, addr) = start(&app, "tcp=1,clock=1", &["--boot-timeout", "3s"]);
    running.wait_for("clock.1 started with pid");
    let old = pids_of(&app, "tcp");
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(broken.path().join("Procfile"), "tcp: exec sleep 60\n").unwrap();
    let deploy = app.run(&["deploy", "--from", broken.path().to_str().unwrap()]);
    assert_eq!(deploy.code(), Some(1), "{}", deploy.text());
    assert!(deploy.has("deploy plan:") && deploy.has("clock: removed, 1 instance drain"), "{}", deploy.text());
    assert!(
        deploy.has("failed: deploy failed: tcp.1 (pid") && deploy.has("the old instances keep serving"),
        "{}",
        deploy.text()
    );
    assert!(old.contains(&greet(addr).unwrap().1), "the old instance still serves");

    let invalid = tempfile::tempdir().unwrap();
    std::fs::write(invalid.path().join("Procfile"), "tcp exec sleep\n").unwrap();
    let refused = app.run(&["deploy", "--from", invalid.path().to_str().unwrap()]);
    assert_ne!(refused.code(), Some(0));
    assert!(refused.has("Procfile:1: `tcp exec sleep` is not a `name: command` line"), "{}", refused.text());

    let echo = common::repo().join("sample-apps/python/echo_server.py");
    let good = tempfile::tempdir().unwrap();
    let procfile = format!("release: echo migrating v2\ntcp: exec python3 {}\nworker: exec sleep 60\n", echo.display());
    std::fs::write(good.path().join("Procfile"), procfile).unwrap();
    let deploy = app.run(&["deploy", "--from", good.path().to_str().unwrap()]);
    assert_eq!(deploy.code(), Some(0), "{}", deploy.text());
    running.wait_for("release.1 | migrating v2");
    running.wait_for("worker.1 replacement starting");
    assert!(old.is_disjoint(&pids_of(&app, "tcp")));
    let types: HashSet<String> =
        ps(&app).instances.iter().filter(|i| i.state != "draining").map(|i| i.type_name.clone()).collect();
    assert_eq!(types, HashSet::from(["tcp".to_string(), "worker".to_string()]), "clock was removed, worker added");
    stop(running);
}

#[test]
fn a_deploy_from_a_new_directory_keeps_the_procfile_and_env_files_procgate_was_started_with() {
    let echo = common::repo().join("sample-apps/python/echo_server.py");
    let procfile = format!("tcp: echo greeting=$GREETING; echo url=$TCP_URL; exec python3 {}\n", echo.display());
    let write_release = |dir: &std::path::Path, greeting: &str| {
        std::fs::write(dir.join("Procfile"), "tcp: echo the default Procfile; exec sleep 60\n").unwrap();
        std::fs::write(dir.join("Procfile.alt"), &procfile).unwrap();
        std::fs::create_dir_all(dir.join("config")).unwrap();
        std::fs::write(dir.join("config/prod.env"), format!("GREETING={greeting}\n")).unwrap();
    };
    let app = App::new("");
    write_release(app.path(), "v1");
    let (mut running, _) = start(&app, "tcp=1", &["-f", "Procfile.alt", "-e", "config/prod.env"]);
    running.wait_for("tcp.1 | greeting=v1");
    let release = tempfile::tempdir().unwrap();
    write_release(release.path(), "v2");
    let deploy = app.run(&["deploy", "--from", release.path().to_str().unwrap()]);
    assert_eq!(deploy.code(), Some(0), "{}", deploy.text());
    running.wait_for("tcp.1 | greeting=v2");
    assert!(!running.seen.iter().any(|l| l.contains("the default Procfile")), "{}", running.seen.join("\n"));
    stop(running);
}

#[test]
fn a_restart_of_more_than_fifty_instances_takes_ports_past_the_types_block() {
    let app = App::new("worker: exec sleep 300\n");
    let base = common::free_base_port(1, 100).to_string();
    let mut running = app.spawn(&["start", "-m", "worker=60", "-p", &base, "--grace", "2s"]);
    running.wait_for("worker.60 started with pid");
    let restart = app.run(&["restart", "worker"]);
    assert_eq!(restart.code(), Some(0), "{}", restart.text());
    let ps = ps(&app);
    assert_eq!(ps.instances.iter().filter(|i| i.state == "up").count(), 60, "{ps:?}");
    stop(running);
}

#[test]
fn a_deploy_keeps_types_at_zero_and_a_rolled_back_release_stays_out_of_scale() {
    let app = echo_app("worker: exec sleep 60\n");
    let (mut running, _) = start(&app, "tcp=1,worker=0", &["--boot-timeout", "1s"]);
    let same = app.run(&["deploy"]);
    assert_eq!(same.code(), Some(0), "{}", same.text());
    let types: HashSet<String> = ps(&app).instances.iter().map(|i| i.type_name.clone()).collect();
    assert_eq!(types, HashSet::from(["tcp".to_string()]), "worker stays at 0");

    let broken = tempfile::tempdir().unwrap();
    std::fs::write(broken.path().join("Procfile"), "tcp: echo broken release; exec sleep 60\nworker: exec sleep 60\n")
        .unwrap();
    let deploy = app.run(&["deploy", "--from", broken.path().to_str().unwrap()]);
    assert_eq!(deploy.code(), Some(1), "{}", deploy.text());
    let scale = app.run(&["scale", "tcp=2"]);
    assert_eq!(scale.code(), Some(0), "{}", scale.text());
    running.wait_for("tcp.2 | url=tcp://");
    running.wait_for("201 app connected tcp.2");
    assert_eq!(running.seen.iter().filter(|l| l.contains("broken release")).count(), 1, "only the rolled-back try");
    stop(running);
}

/// A release directory holding `files`.
fn release_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

#[test]
fn deploy_dry_run_prints_the_plan_and_changes_nothing() {
    let app = echo_app("worker: exec sleep 60\nold: exec sleep 60\n");
    let (running, _) = start(&app, "tcp=1,worker=0,old=1", &[]);
    let instances = || ps(&app).instances.into_iter().map(|i| (i.name, i.pid)).collect::<Vec<_>>();
    let before = instances();
    let echo = common::repo().join("sample-apps/python/echo_server.py");
    let procfile = format!("tcp: exec python3 {}\nworker: exec sleep 60\nclock: exec sleep 60\n", echo.display());
    let release = release_dir(&[("Procfile", &procfile), (".env", "REGION=eu\n")]);
    let dry = app.run(&["deploy", "--dry-run", "--from", release.path().to_str().unwrap()]);
    assert_eq!(dry.code(), Some(0), "{}", dry.text());
    for line in [
        "deploy plan:",
        "tcp: 1 instance replaced (command changed; env: REGION added; runs in",
        "worker: stays at 0 instances",
        "clock: added, starts with 1 instance",
        "old: removed, 1 instance drain",
        "ok: dry run: nothing was changed",
    ] {
        assert!(dry.has(line), "{line:?} in {}", dry.text());
    }
    assert_eq!(instances(), before, "nothing started or stopped");
    stop(running);
}

#[test]
fn a_deploy_changing_a_routes_listener_settings_is_refused_with_the_keys_and_changes_nothing() {
    let app = echo_app("");
    let (running, addr) = start(&app, "tcp=1", &[]);
    let old = pids_of(&app, "tcp");
    let procfile = std::fs::read_to_string(app.path().join("Procfile")).unwrap();
    let release = release_dir(&[("Procfile", &procfile), ("procgate.toml", "[types.tcp]\nrate = 50.0\n")]);
    let deploy = app.run(&["deploy", "--from", release.path().to_str().unwrap()]);
    assert_eq!(deploy.code(), Some(1), "{}", deploy.text());
    assert!(deploy.has("failed: the deploy changes what a listener holds"), "{}", deploy.text());
    assert!(deploy.has("[types.tcp] rate: unset → 50.0") && deploy.has("stop and start procgate"), "{}", deploy.text());
    assert_eq!(pids_of(&app, "tcp"), old);
    assert!(old.contains(&greet(addr).unwrap().1));
    stop(running);
}

#[test]
fn a_deploy_changing_proxy_protocol_changes_it_with_the_rollout() {
    let proxy_echo = common::repo().join("sample-apps/python/proxy_echo.py");
    let procfile = format!("tcp: echo url=$TCP_URL; exec python3 {}\n", proxy_echo.display());
    let app = App::new(&procfile);
    app.write("procgate.toml", "[types.tcp]\nproxy_protocol = \"v1\"\n");
    let (mut running, addr) = start(&app, "tcp=1", &[]);
    let held = TcpStream::connect(addr).unwrap();
    held.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut held = BufReader::new(held);
    let mut greeting = String::new();
    held.read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with("hello tcp.1, you are 127.0.0.1:"), "{greeting:?}");
    let release = release_dir(&[("Procfile", &procfile), ("procgate.toml", "[types.tcp]\nproxy_protocol = \"v2\"\n")]);
    let deploy = app.run(&["deploy", "--from", release.path().to_str().unwrap()]);
    assert_eq!(deploy.code(), Some(0), "{}", deploy.text());
    assert!(deploy.has("proxy_protocol: \"v1\" → \"v2\""), "{}", deploy.text());
    running.wait_for("tcp.1 reading PROXY v2 headers");
    let mut fresh = BufReader::new(TcpStream::connect(addr).unwrap());
    fresh.get_ref().set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut line = String::new();
    fresh.read_line(&mut line).unwrap();
    assert!(line.starts_with("hello tcp.1, you are 127.0.0.1:"), "the new instance reads the v2 header: {line:?}");
    stop(running);
}

#[test]
fn a_cycle_that_came_due_during_a_restart_never_makes_a_second_instance() {
    let keeps = common::repo().join("sample-apps/python/keeps_clients.py");
    let app = App::new(&format!("tcp: echo url=$TCP_URL; exec python3 {}\n", keeps.display()));
    let (mut running, addr) = start(&app, "tcp=1", &["--cycle", "4s", "--cycle-jitter", "0s", "--grace", "20s"]);
    // A client the old instance keeps after SIGTERM holds the restart until tcp.1's cycle is due.
    let mut held = BufReader::new(TcpStream::connect(addr).unwrap());
    held.get_ref().set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut welcome = String::new();
    held.read_line(&mut welcome).unwrap();
    let restart = std::thread::scope(|scope| {
        let restart = scope.spawn(|| app.run(&["restart", "tcp"]));
        running.wait_for("cycling of tcp.1 queued behind the restart of tcp under way");
        drop(held);
        restart.join().unwrap()
    });
    assert_eq!(restart.code(), Some(0), "{}", restart.text());
    running.wait_for("cycling of tcp.1 done");
    let up: Vec<_> = ps(&app).instances.into_iter().filter(|i| i.name == "tcp.1" && i.state == "up").collect();
    assert_eq!(up.len(), 1, "{up:?}");
    stop(running);
}

#[test]
fn a_failed_cycle_is_tried_again_a_period_later_and_the_old_instance_keeps_serving() {
    let echo = common::repo().join("sample-apps/python/echo_server.py");
    let procfile = format!(
        "tcp: echo url=$TCP_URL; if [ -e started ]; then exec sleep 60; fi; touch started; exec python3 {}\n",
        echo.display()
    );
    let app = App::new(&procfile);
    let (mut running, addr) = start(&app, "tcp=1", &["--cycle", "2s", "--cycle-jitter", "0s", "--boot-timeout", "1s"]);
    let (_, pid) = greet(addr).unwrap();
    running.wait_for_nth("cycling of tcp.1 failed", 2, DEADLINE);
    assert_eq!(greet(addr).unwrap().1, pid, "the old instance keeps serving");
    stop(running);
}

#[test]
fn a_deploys_release_step_that_hangs_gets_r20_and_changes_nothing() {
    let app = echo_app("");
    let (mut running, addr) = start(&app, "tcp=1", &["--release-timeout", "1s"]);
    let old = pids_of(&app, "tcp");
    let procfile = std::fs::read_to_string(app.path().join("Procfile")).unwrap();
    let release = release_dir(&[("Procfile", &format!("release: exec sleep 60\n{procfile}"))]);
    let deploy = app.run(&["deploy", "--from", release.path().to_str().unwrap()]);
    assert_eq!(deploy.code(), Some(1), "{}", deploy.text());
    assert!(
        deploy.has("failed: deploy failed: its release terminated by SIGKILL; nothing was changed"),
        "{}",
        deploy.text()
    );
    running.wait_for("R20 Release timeout: release.1 did not finish within 1s");
    assert_eq!(pids_of(&app, "tcp"), old);
    assert!(old.contains(&greet(addr).unwrap().1));
    stop(running);
}

#[test]
fn a_stop_during_a_deploys_release_step_ends_within_the_grace_and_starts_nothing() {
    let app = echo_app("");
    let (mut running, _) = start(&app, "tcp=1", &[]);
    let procfile = std::fs::read_to_string(app.path().join("Procfile")).unwrap();
    let release = release_dir(&[("Procfile", &format!("release: echo migrating; exec sleep 60\n{procfile}"))]);
    let from = release.path().to_str().unwrap();
    let (deploy, stopped) = std::thread::scope(|scope| {
        let deploy = scope.spawn(|| app.run(&["deploy", "--from", from]));
        running.wait_for("release.1 | migrating");
        let stopped = app.run(&["stop"]);
        (deploy.join().unwrap(), stopped)
    });
    assert_eq!(stopped.code(), Some(0), "{}", stopped.text());
    assert!(deploy.has("failed: deploy interrupted: procgate is stopping"), "{}", deploy.text());
    let finished = running.finish(DEADLINE);
    assert!(!finished.has("replacement starting"), "{}", finished.text());
}
