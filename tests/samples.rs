//! The sample apps under `procgate test-shutdown`: the graceful chat servers and web apps in
//! Python, Node.js, Go and Rust pass every check; each bad one fails on its own mistake.

mod common;
use common::needs::needs;
use common::shutdown::{check, grade, sample, statuses, ALL_PASS_TCP};
use common::App;

/// Every check of a graceful web app, with a request in flight.
const ALL_PASS_WEB: &str = "came_up=pass stopped_accepting=pass closed_clients=pass in_flight_request=pass \
     exited_in_time=pass exit_status=pass no_leftover_processes=pass logged_shutdown=pass";

/// The Procfile command of a sample, by language and kind (`chat` or `web`).
fn command(language: &str, kind: &str) -> String {
    match language {
        "python" => format!("exec python3 {}", sample(&format!("python/{kind}_{}.py", server(kind)))),
        "node" => format!("exec node {}", sample(&format!("node/{kind}_{}.js", server(kind)))),
        "go" => format!("exec {}", go_binary(kind)),
        "rust" => format!("exec {}", common::example(kind)),
        _ => unreachable!(),
    }
}

fn server(kind: &str) -> &str {
    if kind == "chat" {
        "server"
    } else {
        "app"
    }
}

/// The program each language's samples run with, and its Debian package.
fn toolchain(language: &str) -> &'static [(&'static str, &'static str)] {
    match language {
        "node" => &[("node", "nodejs")],
        "go" => &[("go", "golang-go")],
        _ => &[],
    }
}

/// The Go sample `kind`, built before the test's clock starts (a cold build on two cores can
/// take longer than an instance's boot timeout): `go build` once per test process.
fn go_binary(kind: &str) -> String {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-samples");
        let build = std::process::Command::new("go")
            .args(["build", "-o", &format!("{}/", out.display()), "./chat", "./web"])
            .current_dir(sample("go"))
            .output()
            .unwrap();
        assert!(build.status.success(), "go build: {}", String::from_utf8_lossy(&build.stderr));
        out
    });
    dir.join(kind).display().to_string()
}

/// test-shutdown on a sample chat server: every check passes, each client said something.
fn chat_passes(language: &str) {
    if !needs(toolchain(language)) {
        return;
    }
    let app = App::new(&format!("tcp: {}\n", command(language, "chat")));
    let (code, report, stderr) = grade(&app, &["tcp", "--send", "hello from a test client"]);
    assert_eq!(statuses(&report), ALL_PASS_TCP, "{language}: {report:#}\n{stderr}");
    assert_eq!(code, 0);
}

/// test-shutdown on a sample web app with `GET /slow` in flight: every check passes.
fn web_passes(language: &str) {
    if !needs(toolchain(language)) {
        return;
    }
    let app = App::new(&format!("web: {}\n", command(language, "web")));
    let (code, report, stderr) = grade(&app, &["web", "--slow-path", "/slow"]);
    assert_eq!(statuses(&report), ALL_PASS_WEB, "{language}: {report:#}\n{stderr}");
    assert_eq!(code, 0);
    assert!(check(&report, "in_flight_request")["detail"].as_str().unwrap().ends_with("was answered 200"));
}

#[test]
fn python_chat_passes() {
    chat_passes("python");
}

#[test]
fn node_chat_passes() {
    chat_passes("node");
}

#[test]
fn go_chat_passes() {
    chat_passes("go");
}

#[test]
fn rust_chat_passes() {
    chat_passes("rust");
}

#[test]
fn python_web_passes() {
    web_passes("python");
}

#[test]
fn node_web_passes() {
    web_passes("node");
}

#[test]
fn go_web_passes() {
    web_passes("go");
}

#[test]
fn rust_web_passes() {
    web_passes("rust");
}

#[test]
fn a_server_that_keeps_its_clients_fails_on_them() {
    let app = App::new(&format!("tcp: exec python3 {}\n", sample("python/keeps_clients.py")));
    let (code, report, _) = grade(&app, &["tcp", "--clients", "5"]);
    assert_eq!(code, 1);
    assert_eq!(
        statuses(&report),
        "came_up=pass stopped_accepting=pass closed_clients=fail in_flight_request=skip exited_in_time=fail \
         exit_status=fail no_leftover_processes=skip logged_shutdown=pass"
    );
    let clients = check(&report, "closed_clients");
    assert!(clients["detail"].as_str().unwrap().contains("5 left open until SIGKILL"), "{clients}");
    assert!(clients["fix"].as_str().unwrap().contains("did not close its 5 client connections"), "{clients}");
}

#[test]
fn a_server_that_leaves_a_child_behind_fails_on_that_alone() {
    let app = App::new(&format!("tcp: exec python3 {}\n", sample("python/leaves_child.py")));
    let (code, report, _) = grade(&app, &["tcp", "--clients", "5"]);
    assert_eq!(code, 1);
    assert_eq!(
        statuses(&report),
        "came_up=pass stopped_accepting=pass closed_clients=pass in_flight_request=skip exited_in_time=pass \
         exit_status=pass no_leftover_processes=fail logged_shutdown=pass"
    );
    assert!(check(&report, "no_leftover_processes")["detail"].as_str().unwrap().contains("(sleep)"));
}
