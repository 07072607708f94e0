//! Bad input: a clear message naming the file and line and the fix, exit status 2, nothing run.

mod common;
use common::App;

fn rejected(app: &App, args: &[&str]) -> String {
    let finished = app.run(args);
    assert_eq!(finished.code(), Some(2), "{}", finished.text());
    assert!(!finished.has("started with pid"), "nothing may start:\n{}", finished.text());
    assert!(!finished.text().contains("panicked"), "{}", finished.text());
    finished.text()
}

#[test]
fn duplicate_type_names_both_lines() {
    let app = App::new("web: a\nworker: b\nweb: c\n");
    let text = rejected(&app, &["start"]);
    assert!(text.contains("Procfile:3: process type `web` is already defined on line 1"), "{text}");
}

#[test]
fn a_type_without_command() {
    let app = App::new("web:   \n");
    let text = rejected(&app, &["check"]);
    assert!(text.contains("Procfile:1: process type `web` has no command; write `web: <command>`"), "{text}");
}

#[test]
fn git_conflict_markers() {
    let app = App::new("<<<<<<< HEAD\nweb: a\n=======\nweb: b\n>>>>>>> branch\n");
    let text = rejected(&app, &["start"]);
    assert!(text.contains("Procfile:1: `<<<<<<< HEAD` is not a `name: command` line"), "{text}");
}

#[test]
fn an_empty_procfile() {
    let app = App::new("# nothing here\n\n");
    let text = rejected(&app, &["start"]);
    assert!(text.contains("Procfile: the Procfile defines no process type"), "{text}");
}

#[test]
fn a_missing_procfile() {
    let app = App::new("web: a\n");
    let text = rejected(&app, &["start", "-f", "nope/Procfile"]);
    assert!(text.contains("nope/Procfile: cannot read the Procfile"), "{text}");
}

#[test]
fn a_missing_named_env_file_but_not_a_missing_default() {
    let app = App::new("web: a\n");
    let text = rejected(&app, &["check", "-e", "prod.env"]);
    assert!(text.contains("prod.env: cannot read the env file"), "{text}");
    assert_eq!(app.run(&["check"]).code(), Some(0), "no .env is fine");
}

#[test]
fn an_env_file_parse_error_names_the_line() {
    let app = App::new("web: a\n");
    app.write(".env", "A=1\n# comment\nTHIS IS NOT AN ASSIGNMENT\n");
    let text = rejected(&app, &["start"]);
    assert!(text.contains(".env:3: cannot parse `THIS IS NOT AN ASSIGNMENT`"), "{text}");
}

#[test]
fn an_unknown_type_in_the_formation() {
    let app = App::new("web: a\nworker: b\n");
    let text = rejected(&app, &["start", "-m", "web=1,tcp=2"]);
    assert!(text.contains("the Procfile has no type `tcp`; its types are: web, worker"), "{text}");
    let text = rejected(&app, &["start", "tcp"]);
    assert!(text.contains("no type `tcp`"), "{text}");
}

#[test]
fn a_bad_duration_or_address_is_a_usage_error() {
    let app = App::new("web: a\n");
    let text = rejected(&app, &["start", "--grace", "soon"]);
    assert!(text.contains("invalid duration `soon`"), "{text}");
    rejected(&app, &["start", "--tcp-listen", "nowhere"]);
}

#[test]
fn a_port_of_the_plan_in_use_names_port_and_instance() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let app = App::new("web: sleep 30\nworker: sleep 30\n");
    let text = rejected(&app, &["start", "-p", &port.to_string()]);
    assert!(text.contains(&format!("port {port} (for web.1) is already in use on 127.0.0.1")), "{text}");
}

#[test]
fn a_bad_port_in_the_env_file() {
    let app = App::new("web: a\n");
    app.write(".env", "PORT=http\n");
    let text = rejected(&app, &["check"]);
    assert!(text.contains("PORT=http (from the env files) is not a port number"), "{text}");
}

#[test]
fn a_bad_procgate_toml_names_the_line_and_key() {
    let app = App::new("tcp: a\nweb: b\n");
    app.write("procgate.toml", "[types.tcp]\nrate = 10\nproxy_protocl = \"v2\"\n");
    let text = rejected(&app, &["check"]);
    assert!(text.contains("procgate.toml:3: unknown field `proxy_protocl`"), "{text}");
    app.write("procgate.toml", "[types.tcp]\nproxy_protocol = \"v3\"\n");
    let text = rejected(&app, &["start"]);
    assert!(text.contains("procgate.toml:2: unknown variant `v3`, expected one of `v1`, `v2`, `off`"), "{text}");
    app.write("procgate.toml", "[types.web]\nproxy_protocol = \"v1\"\n");
    let text = rejected(&app, &["check"]);
    assert!(text.contains("procgate.toml:2: proxy_protocol applies to TCP types"), "{text}");
}

#[test]
fn a_health_path_that_would_split_the_check_request_and_a_bad_timeout_are_refused() {
    let app = App::new("web: a\n");
    app.write("procgate.toml", "[types.web]\nrise = 1\nhealth_path = \"/up\\r\\nX-Injected: 1\"\n");
    let text = rejected(&app, &["check"]);
    assert!(text.contains("procgate.toml:3: \"/up\\r\\nX-Injected: 1\" is not a request path"), "{text}");
    app.write("procgate.toml", "[types.web]\nhead_timeout = \"soon\"\n");
    let text = rejected(&app, &["check"]);
    assert!(text.contains("procgate.toml:2: invalid duration `soon`"), "{text}");
}

#[test]
fn a_bad_trusted_proxy_or_none_with_accept_proxy_names_the_line_and_the_fix() {
    let app = App::new("tcp: a\nweb: b\n");
    app.write(
        "procgate.toml",
        "[types.tcp]\naccept_proxy = true\ntrusted_proxies = [\n  \"10.0.0.0/8\",\n  \"10.0.0.0/33\",\n]\n",
    );
    let text = rejected(&app, &["check"]);
    assert!(text.contains("procgate.toml:5: `10.0.0.0/33`: an IPv4 block has a prefix length of at most 32"), "{text}");
    app.write("procgate.toml", "[types.tcp]\naccept_proxy = true\ntrusted_proxies = [\"10.0.0.1/8\"]\n");
    let text = rejected(&app, &["start"]);
    assert!(text.contains("procgate.toml:3: `10.0.0.1/8` has bits set past its /8; write \"10.0.0.0/8\""), "{text}");
    app.write("procgate.toml", "[types.web]\nrate = 5\naccept_proxy = true\n");
    let text = rejected(&app, &["check"]);
    assert!(text.contains("procgate.toml:3: accept_proxy = true needs trusted_proxies"), "{text}");
    assert!(text.contains("trusted_proxies = [\"10.0.0.0/8\"]"), "the fix: {text}");
}

#[test]
fn durations_past_a_year_and_a_tcp_keepalive_linux_refuses_name_their_flag() {
    let app = App::new("tcp: a\n");
    // Accepted once, they overflowed a clock: each client connection panicked its thread.
    for (flag, value) in [("--wait", "18446744073709551615"), ("--cycle", "366d"), ("--grace", "400d")] {
        let text = rejected(&app, &["start", flag, value]);
        assert!(text.contains(&format!("invalid value '{value}' for '{flag}")), "{text}");
        assert!(text.contains("is too long: the most is 365d"), "{text}");
    }
    let text = rejected(&app, &["start", "--tcp-keepalive", "10h"]);
    assert!(text.contains("Linux takes at most 32767s"), "{text}");
}

#[test]
fn a_route_on_an_instance_port_and_a_base_port_of_0_are_refused_before_anything_runs() {
    let app = App::new("tcp: a\nweb: b\n");
    let text = rejected(&app, &["check", "-p", "13000", "--tcp-listen", "127.0.0.1:13000"]);
    assert!(
        text.contains("tcp.1 would get port 13000, where the `tcp` type's route listens (127.0.0.1:13000)"),
        "{text}"
    );
    let text = rejected(&app, &["start", "-p", "13000", "--web-listen", "127.0.0.1:13100"]);
    assert!(text.contains("web.1 would get port 13100, where the `web` type's route listens"), "{text}");
    let text = rejected(&app, &["check", "-p", "0"]);
    assert!(text.contains("invalid value '0' for '--port <PORT>'"), "{text}");
    app.write(".env", "PORT=0\n");
    let text = rejected(&app, &["check"]);
    assert!(text.contains("PORT=0 (from the env files) is not a port number from 1 to 65535"), "{text}");
}

#[test]
fn test_shutdown_names_an_unknown_type_and_refuses_a_slow_path_it_cannot_send() {
    let app = App::new("tcp: a\nweb: b\nrelease: c\n");
    let text = rejected(&app, &["test-shutdown", "nosuch"]);
    assert!(text.contains("the Procfile has no type `nosuch`; test-shutdown takes one of: tcp, web"), "{text}");
    let text = rejected(&app, &["test-shutdown", "web", "--slow-path", "/a\r\nX-Injected: 1"]);
    assert!(text.contains("is not a request path: start it with /"), "{text}");
    let text = rejected(&app, &["test-shutdown", "tcp", "--slow-path", "/slow"]);
    assert!(text.contains("`tcp` is not served over HTTP (only `web` is)"), "{text}");
}

#[test]
fn cr_only_line_endings_an_overlong_command_or_env_entry_an_unwritten_pipe_and_a_device_are_named() {
    let app = App::new("web: echo hi\rworker: echo w\r");
    let text = rejected(&app, &["check"]);
    assert!(text.contains("Procfile:1: a carriage return (CR) inside the line"), "{text}");
    app.write("Procfile", &format!("web: a\nworker: echo {}\n", "x".repeat(200_000)));
    let text = rejected(&app, &["check"]);
    assert!(text.contains("Procfile:2: the command of `worker` has 200005 bytes, more than the 131071"), "{text}");
    app.write("Procfile", "web: a\n");
    app.write(".env", &format!("A=1\nBIG={}\n", "x".repeat(200_000)));
    let text = rejected(&app, &["check"]);
    assert!(text.contains(".env:2: `BIG` and its value have 200004 bytes"), "{text}");
    std::fs::remove_file(app.path().join(".env")).unwrap();
    let fifo = app.path().join("Procfile.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    // A pipe nobody writes blocked `check` for ever (and `/dev/zero` filled the memory).
    let text = rejected(&app, &["check", "-f", "Procfile.fifo"]);
    assert!(text.contains("cannot read the Procfile: it is a pipe, and its writer did not write all of it"), "{text}");
    let text = rejected(&app, &["check", "-f", "/dev/zero"]);
    assert!(text.contains("it is a device, not a regular file"), "{text}");
}

#[test]
fn a_listen_address_that_is_not_ip_and_port_says_what_to_write() {
    let app = App::new("tcp: a\n");
    let text = rejected(&app, &["start", "--tcp-listen", "localhost:20003"]);
    assert!(text.contains("`localhost:20003` is not an IP:PORT address: write e.g. 127.0.0.1:20003"), "{text}");
    app.write("procgate.toml", "[types.tcp]\nlisten = \"127.0.0.1\"\n");
    let text = rejected(&app, &["check"]);
    assert!(text.contains("procgate.toml:2: `127.0.0.1` is not an IP:PORT address"), "{text}");
}
