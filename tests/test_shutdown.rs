//! `procgate test-shutdown` through the binary, on real apps: graceful ones pass every check,
//! each bad one fails with its own reason, `--json` keeps stdout for the report, bad input exits 2.

mod common;
use common::needs::{needs, NGINX_STREAM};
use common::shutdown::{check, grade, sample, statuses, ALL_PASS_TCP};
use common::App;

#[test]
fn a_graceful_tcp_app_passes_every_check() {
    let app = App::new(&format!("tcp: exec python3 {}\n", sample("python/echo_server.py")));
    let (code, report, stderr) = grade(&app, &["tcp", "--send", "whoami"]);
    assert_eq!(statuses(&report), ALL_PASS_TCP, "{report:#}\n{stderr}");
    assert_eq!(code, 0);
    assert_eq!(report["passed"], true);
    assert_eq!(report["instance"], "tcp.1");
    assert!(check(&report, "closed_clients")["detail"].as_str().unwrap().contains("all 20 connections"));
    let refused_after = check(&report, "stopped_accepting")["seconds"].as_f64().expect("seconds");
    assert!(refused_after < 1.0, "{refused_after}");
    // The app's own lines went to stderr, prefixed as under `start`, so stdout held only the report.
    assert!(stderr.contains("tcp.1  | SIGTERM received: closing "), "{stderr}");
}

#[test]
fn the_text_report_lists_each_check_and_the_fix_under_each_failure() {
    let app = App::new(&format!("tcp: exec python3 {}\n", sample("python/ignore_term.py")));
    let finished = app.run(&["test-shutdown", "tcp", "--clients", "3", "--grace", "1s"]);
    assert_eq!(finished.code(), Some(1), "{}", finished.text());
    let text = finished.text();
    assert!(
        finished.has(
            "FAIL  exited in time         it was still running at the end of the grace (1.00 s) and was SIGKILLed"
        ),
        "{text}"
    );
    let failure = finished.position("FAIL  closed clients");
    assert!(finished.lines[failure + 1].contains("fix: your app did not close its 3 client connections"), "{text}");
    assert!(finished.has("FAILED: 5 of 8 checks failed, 2 skipped"), "{text}");
}

#[test]
fn an_app_that_ignores_sigterm_fails_on_its_clients_its_exit_and_its_silence() {
    let app = App::new(&format!("tcp: exec python3 {}\n", sample("python/ignore_term.py")));
    let (code, report, _) = grade(&app, &["tcp", "--clients", "5"]);
    assert_eq!(code, 1);
    assert_eq!(
        statuses(&report),
        "came_up=pass stopped_accepting=fail closed_clients=fail in_flight_request=skip exited_in_time=fail \
         exit_status=fail no_leftover_processes=skip logged_shutdown=fail"
    );
    assert!(check(&report, "closed_clients")["detail"].as_str().unwrap().contains("5 left open until SIGKILL"));
}

#[test]
fn children_left_running_after_the_app_exits_are_named_and_killed_in_its_group_or_not() {
    // bash runs the Procfile line: two children that ignore SIGTERM, one in the app's process
    // group and one that left it (setsid, as a daemon does), then the graceful server.
    let line = format!(
        "tcp: (trap '' TERM; touch in-group; exec sleep 1000) & \
         setsid sh -c \"trap '' TERM; touch escaped; exec sleep 1001\" & \
         while [ ! -e in-group ] || [ ! -e escaped ]; do sleep 0.01; done; exec python3 {}\n",
        sample("python/echo_server.py")
    );
    let app = App::new(&line);
    let (code, report, stderr) = grade(&app, &["tcp", "--clients", "2"]);
    assert_eq!(code, 1, "{report:#}\n{stderr}");
    let leftovers = check(&report, "no_leftover_processes");
    assert_eq!(leftovers["status"], "fail", "{report:#}");
    let detail = leftovers["detail"].as_str().unwrap();
    assert!(detail.contains("2 process(es) it started still ran"), "{detail}");
    assert_eq!(check(&report, "exit_status")["status"], "pass");
    let named = detail.split(": ").last().unwrap().split(", ");
    let pids: Vec<i32> = named.map(|p| p.split(' ').next().unwrap().parse().unwrap()).collect();
    assert_eq!(pids.len(), 2, "{detail}");
    common::wait_gone(&pids, common::DEADLINE);
}

#[test]
fn an_app_that_never_listens_fails_to_come_up_and_the_rest_is_skipped() {
    let app = App::new("tcp: echo 'listening on the wrong port'; exec sleep 1000\n");
    let (code, report, _) = grade(&app, &["tcp", "--boot-timeout", "1s"]);
    assert_eq!(code, 1);
    let came_up = check(&report, "came_up");
    assert_eq!(came_up["status"], "fail");
    assert!(came_up["detail"].as_str().unwrap().contains("never accepted a connection"), "{came_up}");
    assert_eq!(statuses(&report).matches("=skip").count(), 7);
}

#[test]
fn an_app_that_exits_before_listening_says_how() {
    let app = App::new("tcp: echo 'missing config'; exit 3\n");
    let (code, report, _) = grade(&app, &["tcp"]);
    assert_eq!(code, 1);
    assert_eq!(
        check(&report, "came_up")["detail"].as_str().unwrap().split(" before").next(),
        Some("it exited with code 3")
    );
}

#[test]
fn an_unknown_type_or_release_is_bad_input() {
    let app = App::new("release: echo migrate\ntcp: exec sleep 100\n");
    let unknown = app.run(&["test-shutdown", "chat"]);
    assert_eq!(unknown.code(), Some(2), "{}", unknown.text());
    assert!(unknown.has("the Procfile has no type `chat`; test-shutdown takes one of: tcp"), "{}", unknown.text());
    let release = app.run(&["test-shutdown", "release"]);
    assert_eq!(release.code(), Some(2), "{}", release.text());
    assert!(release.has("`release` is a one-off step"), "{}", release.text());
}

#[test]
fn clients_and_probes_send_the_proxy_header_the_type_is_configured_for() {
    let app = App::new(&format!("tcp: exec python3 {}\n", sample("python/proxy_echo.py")));
    app.write("procgate.toml", "[types.tcp]\nproxy_protocol = \"v2\"\n");
    let (code, report, stderr) = grade(&app, &["tcp", "--clients", "5"]);
    assert_eq!(statuses(&report), ALL_PASS_TCP, "{report:#}\n{stderr}");
    assert_eq!(code, 0);
    // The app read a header on every connection: no error, and one line after SIGTERM.
    assert!(!stderr.contains("Traceback"), "{stderr}");
    assert_eq!(check(&report, "logged_shutdown")["detail"], "1 line(s) of output after SIGTERM");
}

#[test]
fn connections_the_app_closes_at_once_are_not_counted_as_closed_at_sigterm() {
    // nginx's stream `return` answers each connection with one line and closes it.
    if !needs(NGINX_STREAM) {
        return;
    }
    let app = App::from_procfiles("nginx-proxy");
    let (code, report, stderr) = grade(&app, &["tcp", "--clients", "5"]);
    let clients = check(&report, "closed_clients");
    assert_eq!(clients["status"], "skip", "{report:#}\n{stderr}");
    assert_eq!(clients["detail"], "no connection was open at SIGTERM (5 closed by the app before SIGTERM)");
    assert_eq!(code, 0, "{report:#}");
}

#[test]
fn a_thousand_clients_are_opened_without_overflowing_the_apps_backlog_and_all_seen_closed() {
    // asyncio's listen backlog is 100: opened all at once, most would never be accepted.
    let app = App::new(&format!("tcp: exec python3 {}\n", sample("python/chat_server.py")));
    let (code, report, stderr) = grade(&app, &["tcp", "--clients", "1000"]);
    assert_eq!(statuses(&report), ALL_PASS_TCP, "{report:#}\n{stderr}");
    assert_eq!(code, 0);
    assert_eq!(check(&report, "closed_clients")["detail"], "all 1000 connections held were closed by the app (FIN)");
}
