//! What a restart of procgate keeps: the formation `scale` and deploys left and the release a
//! deploy put in force (`.procgate/state.json`), unless `start --fresh`; and `cycle = false`.

mod common;
use common::{echo_app, ps, App, Running, DEADLINE};
use nix::sys::signal::Signal;

fn start(app: &App, extra: &[&str]) -> Running {
    let (mut running, _) = common::start_gateway(app, "tcp=1,worker=1", extra);
    running.wait_for("201 app connected tcp.1");
    running
}

fn stop(running: Running) {
    running.signal(Signal::SIGINT);
    running.finish(DEADLINE);
}

/// The running instances' names, sorted.
fn names(app: &App) -> Vec<String> {
    let mut names: Vec<String> = ps(app).instances.into_iter().map(|i| i.name).collect();
    names.sort();
    names
}

#[test]
fn a_restart_of_procgate_comes_back_with_the_last_formation_unless_fresh() {
    let app = echo_app("worker: echo worker from $PWD; exec sleep 60\n");
    let running = start(&app, &[]);
    let scale = app.run(&["scale", "tcp=2", "worker=0"]);
    assert_eq!(scale.code(), Some(0), "{}", scale.text());
    stop(running);

    let base = common::free_base_port(2, 4).to_string();
    let mut again = app.spawn(&["start", "-p", &base, "--grace", "2s"]);
    again.wait_for("resuming what the last run left in");
    again.wait_for("201 app connected tcp.2");
    assert_eq!(names(&app), ["tcp.1", "tcp.2"]);
    stop(again);

    let mut fresh = app.spawn(&["start", "-p", &base, "--grace", "2s", "--fresh"]);
    fresh.wait_for("worker.1 | worker from");
    assert!(!fresh.seen.iter().any(|l| l.contains("resuming")), "{:?}", fresh.seen);
    stop(fresh);
}

#[test]
fn a_restart_of_procgate_runs_the_release_the_last_deploy_put_in_force() {
    let app = echo_app("worker: echo worker from $PWD; exec sleep 60\n");
    let running = start(&app, &[]);
    let release = tempfile::tempdir().unwrap();
    std::fs::copy(app.path().join("Procfile"), release.path().join("Procfile")).unwrap();
    let deploy = app.run(&["deploy", "--from", release.path().to_str().unwrap()]);
    assert_eq!(deploy.code(), Some(0), "{}", deploy.text());
    stop(running);

    let mut again = start(&app, &[]);
    let from = release.path().canonicalize().unwrap();
    again.wait_for(&format!("worker.1 | worker from {}", from.display()));
    stop(again);
}

#[test]
fn a_state_file_that_cannot_be_read_is_a_clear_error() {
    let app = echo_app("");
    std::fs::create_dir(app.path().join(".procgate")).unwrap();
    app.write(".procgate/state.json", "{ not json");
    let finished = app.run(&["start"]);
    assert_eq!(finished.code(), Some(2), "{}", finished.text());
    assert!(finished.has(".procgate/state.json") && finished.has("--fresh"), "{}", finished.text());
}

#[test]
fn a_type_with_cycle_false_is_never_cycled() {
    let app = echo_app("worker: exec sleep 60\n");
    app.write("procgate.toml", "[types.worker]\ncycle = false\n");
    let mut running = start(&app, &["--cycle", "2s", "--cycle-jitter", "0s"]);
    running.wait_for_nth("cycling of tcp.1 done", 2, DEADLINE);
    assert!(!running.seen.iter().any(|l| l.contains("Cycling worker")), "{:?}", running.seen);
    stop(running);
}
