//! `procgate check` and `procgate run` through the binary.

mod common;
use common::App;

#[test]
fn check_prints_the_port_plan_in_procfile_order() {
    let app = App::new("web: a\nworker: b\nrelease: c\nclock: d\n");
    let finished = app.run(&["check", "-m", "web=3,worker=2", "-p", "4000"]);
    assert_eq!(finished.code(), Some(0), "{}", finished.text());
    let plan: Vec<&str> = finished.lines.iter().filter(|l| l.contains(" port ")).map(String::as_str).collect();
    let expected =
        ["web.1 port 4000 a", "web.2 port 4001 a", "web.3 port 4002 a", "worker.1 port 4100 b", "worker.2 port 4101 b"];
    assert_eq!(plan.len(), expected.len(), "{}", finished.text());
    for (line, want) in plan.iter().zip(expected) {
        assert!(common::matches(line, want), "{line} vs {want}");
    }
    assert!(finished.has("formation: web=3,worker=2,release=1,clock=0"));
    assert!(finished.has("release (runs once before the others): c"));
}

#[test]
fn check_lists_env_names_but_never_values() {
    let app = App::new("web: a\n");
    app.write(".env", "SECRET_TOKEN=hunter2\nexport REGION=eu\n");
    let finished = app.run(&["check"]);
    assert_eq!(finished.code(), Some(0));
    let env_line = finished.lines.iter().find(|l| l.contains("env:")).unwrap();
    for name in [
        "SECRET_TOKEN",
        "REGION",
        "PORT",
        "DYNO",
        "PS",
        "TCP_URL",
        "RUPPELLS_SOCKETS_LOCAL_PORT",
        "RUPPELLS_SOCKETS_FRONTEND_URI",
    ] {
        assert!(env_line.split_whitespace().any(|w| w == name), "{name} missing: {env_line}");
    }
    assert!(!finished.text().contains("hunter2"));
}

#[test]
fn run_passes_the_exit_code_through() {
    let app = App::new("web: a\n");
    assert_eq!(app.run(&["run", "--", "sh", "-c", "exit 42"]).code(), Some(42));
    assert_eq!(app.run(&["run", "exit 3"]).code(), Some(3));
}

#[test]
fn run_gets_the_apps_environment_in_the_app_root() {
    let app = App::new("web: a\n");
    app.write(".env", "GREETING=\"hello world\"\n");
    let finished = app.run(&["run", "echo \"$GREETING $DYNO $PS $TCP_URL\"; pwd"]);
    assert_eq!(finished.code(), Some(0), "{}", finished.text());
    assert_eq!(finished.lines[0], "hello world run.1 run.1 tcp://127.0.0.1:20003");
    let root = app.path().canonicalize().unwrap();
    assert_eq!(std::path::Path::new(&finished.lines[1]).canonicalize().unwrap(), root);
}

#[test]
fn run_of_a_missing_program_exits_127() {
    let app = App::new("web: a\n");
    let finished = app.run(&["run", "--", "no-such-program-here", "x"]);
    assert_eq!(finished.code(), Some(127));
    assert!(finished.has("procgate run: cannot run no-such-program-here"));
}

#[test]
fn a_command_whose_reader_is_gone_ends_quietly_as_cat_does() {
    let app = App::new("web: a\nworker: b\n");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader); // `procgate check | head -0`: every write meets a closed pipe.
    let finished = std::process::Command::new(common::BIN)
        .arg("check")
        .current_dir(app.path())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&finished.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(finished.status.code(), Some(141), "128 + SIGPIPE, as a shell says of `cat`: {stderr}");
}

// `heroku run` destroys the one-off dyno when its command ends: nothing it started outlives it.
const LEAVES_TWO: &str = "sleep 300 & echo child $!; \
    setsid sh -c 'trap \"\" TERM; echo $$ > stubborn; exec sleep 301' & \
    while [ ! -s stubborn ]; do sleep 0.01; done; echo stubborn $(cat stubborn); exit 7";

#[test]
fn run_ends_what_the_command_left_running_and_sigkills_what_ignores_sigterm() {
    let app = App::new("web: a\n");
    let finished = app.run(&["run", LEAVES_TWO]);
    assert_eq!(finished.code(), Some(7), "{}", finished.text());
    let pid_after = |word: &str| -> i32 {
        let line = finished.lines.iter().find(|l| l.starts_with(word)).unwrap_or_else(|| panic!("{}", finished.text()));
        line[word.len()..].trim().parse().unwrap()
    };
    for pid in [pid_after("child "), pid_after("stubborn ")] {
        assert!(!common::alive(pid), "{pid} outlived `procgate run`:\n{}", finished.text());
    }
    assert!(
        finished.has("procgate run: the command left 2 process(es) running, sending SIGTERM"),
        "{}",
        finished.text()
    );
    assert!(
        finished.has("procgate run: 1 process(es) still running 5s after SIGTERM, sending SIGKILL"),
        "{}",
        finished.text()
    );
}
