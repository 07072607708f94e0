//! Sleep when idle, wake on connect (`sleep_after`): a type with no connection sleeps (its
//! instances stop), and its next clients, TCP or HTTP, many at once, are held and served by one
//! woken instance: none refused, none reset. Also what goes with it: a long-lived connection
//! keeps a type awake, the sleep survives a restart of procgate, `scale` and `procgate wake`
//! while asleep, a deploy while asleep, the release step and daily cycling, `min_instances`,
//! the metrics, a boot slower than `sleep_after`, and the wake latency of a Python app.

mod common;
use common::http_client::Http;
use common::line_client::Client;
use common::{echo_app, App, Running, DEADLINE};
use nix::sys::signal::Signal;
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Clients connecting at once to a sleeping type.
const AT_ONCE: usize = 20;

/// An echo app (`tcp`) whose type sleeps after `after`, plus the `extra` Procfile lines.
fn sleepy_echo(after: &str, extra: &str) -> App {
    let app = echo_app(extra);
    app.write("procgate.toml", &format!("[types.tcp]\nsleep_after = \"{after}\"\n"));
    app
}

/// Starts it with `formation` and waits until it has fallen asleep once.
fn start_asleep(app: &App, formation: &str, extra: &[&str]) -> (Running, SocketAddr) {
    let (mut running, addr) = common::start_gateway(app, formation, extra);
    running.wait_for("201 app connected tcp.1");
    running.wait_for("205 Sleeping tcp: no connection for");
    (running, addr)
}

/// `procgate ARGS` in the app directory, which must exit 0; its output.
fn ok(app: &App, args: &[&str]) -> String {
    let finished = app.run(args);
    assert_eq!(finished.code(), Some(0), "{}", finished.text());
    finished.text()
}

/// `procgate ARGS` in the app directory, which must exit with `code` and say each of `said`.
fn fails(app: &App, args: &[&str], code: i32, said: &[&str]) {
    let finished = app.run(args);
    assert_eq!(finished.code(), Some(code), "{}", finished.text());
    assert!(said.iter().all(|s| finished.has(s)), "{said:?} in:\n{}", finished.text());
}

/// A sleepy echo app with the `extra` Procfile lines started with `formation` and asleep, and a
/// second release of it in a directory of its own (its `tcp` line says `v2`).
fn asleep_with_a_v2(extra: &str, formation: &str) -> (App, Running, SocketAddr, tempfile::TempDir) {
    let app = sleepy_echo("2s", extra);
    let (running, addr) = start_asleep(&app, formation, &[]);
    let v2 = tempfile::tempdir().unwrap();
    let procfile = std::fs::read_to_string(app.path().join("Procfile")).unwrap().replace("url=", "v2 url=");
    std::fs::write(v2.path().join("Procfile"), procfile).unwrap();
    std::fs::copy(app.path().join("procgate.toml"), v2.path().join("procgate.toml")).unwrap();
    (app, running, addr, v2)
}

/// The lines after the `nth` containing `after`.
fn lines_after<'a>(running: &'a Running, after: &str, nth: usize) -> Vec<&'a String> {
    let mut seen = 0;
    let start = running.seen.iter().position(|l| {
        seen += usize::from(common::matches(l, after));
        seen == nth
    });
    running.seen[start.expect("the line is there") + 1..].iter().collect()
}

fn count(lines: &[&String], needle: &str) -> usize {
    lines.iter().filter(|l| common::matches(l, needle)).count()
}

/// `GET /metrics` on the control socket.
fn metrics(app: &App) -> String {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(app.path().join(".procgate/control.sock")).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: procgate\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// Runs `client` on `AT_ONCE` threads released together; every result, or the first failure.
fn at_once<T: Send + 'static>(client: impl Fn() -> std::io::Result<T> + Send + Sync + 'static) -> Vec<T> {
    let (client, barrier) = (Arc::new(client), Arc::new(Barrier::new(AT_ONCE)));
    let threads: Vec<_> = (0..AT_ONCE)
        .map(|_| {
            let (client, barrier) = (client.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                client()
            })
        })
        .collect();
    let results: Vec<std::io::Result<T>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    results.into_iter().map(|r| r.expect("no client refused or reset")).collect()
}

/// One TCP client of the echo app: its greeting (`tcp.1 PID`) and a line echoed back.
fn echo_client(addr: SocketAddr) -> std::io::Result<String> {
    use std::io::{BufRead, Write};
    let mut client = Client::connect(addr)?;
    let mut greeting = String::new();
    client.reader.read_line(&mut greeting)?;
    client.reader.get_mut().write_all(b"ping\n")?;
    let mut echo = String::new();
    client.reader.read_line(&mut echo)?;
    let who = greeting.trim_end().strip_prefix("hello ").map(str::to_string);
    match (who, echo.trim_end()) {
        (Some(who), "ping") => Ok(who),
        _ => Err(std::io::Error::other(format!("greeting {greeting:?}, echo {echo:?}"))),
    }
}

#[test]
fn a_sleeping_tcp_type_wakes_on_connect_and_serves_20_clients_at_once_with_one_instance() {
    let app = sleepy_echo("2s", "");
    let (mut running, addr) = start_asleep(&app, "tcp=1", &[]);
    running.wait_for("tcp.1 (pid");
    running.wait_for("exited with code 0");
    let rows = common::ps(&app).instances;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].name.as_str(), rows[0].state.as_str(), rows[0].pid), ("tcp.1", "sleeping", None));
    let asleep = metrics(&app);
    assert!(asleep.contains(r#"procgate_instance_state{dyno="tcp.1",type="tcp",state="sleeping"} 1"#), "{asleep}");

    let served = at_once(move || echo_client(addr));
    assert_eq!(served.len(), AT_ONCE);
    assert!(served.iter().all(|who| *who == served[0] && who.starts_with("tcp.1 ")), "one instance: {served:?}");
    let woke = running.wait_for("207 tcp woke after");
    let after = lines_after(&running, "205 Sleeping tcp", 1);
    assert_eq!(
        count(&after, "206 Waking tcp: a client is waiting; starting 1 instance"),
        1,
        "single-flight: {after:?}"
    );
    assert_eq!(count(&after, "started with pid"), 1, "one instance started: {after:?}");
    assert_eq!(count(&after, "H10"), 0, "{after:?}");
    eprintln!("{woke}");

    // Idle again (the health probes every 2 s do not count): it falls asleep again, once every
    // connection has ended (and been counted).
    running.wait_for_nth("205 Sleeping tcp", 2, DEADLINE);
    let scraped = metrics(&app);
    assert!(scraped.contains(r#"procgate_wakes_total{type="tcp"} 1"#), "{scraped}");
    assert!(scraped.contains(r#"procgate_wake_duration_seconds_count{type="tcp"} 1"#), "{scraped}");
    assert!(scraped.contains(r#"procgate_route_connections_total{route="tcp",outcome="served"} 20"#), "{scraped}");
    running.signal(Signal::SIGINT);
    let finished = running.finish(DEADLINE);
    assert_eq!(finished.code(), Some(0), "{}", finished.text());
}

/// A web app (`web_app.py`) whose type sleeps after 2 s, started; procgate and the router.
fn start_sleepy_web() -> (App, Running, SocketAddr) {
    let web_app = common::repo().join("sample-apps/python/web_app.py");
    let app = App::new(&format!("web: exec python3 {}\n", web_app.display()));
    app.write("procgate.toml", "[types.web]\nsleep_after = \"2s\"\nhealth_interval = \"200ms\"\n");
    let base = common::free_base_port(1, 1).to_string();
    let mut running = app.spawn(&["start", "-p", &base, "--grace", "2s"]);
    let line = running.wait_for("router http://");
    let router: SocketAddr = line.split("router http://").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    running.wait_for("201 app connected web.1");
    running.wait_for("205 Sleeping web: no connection for 2s");
    (app, running, router)
}

#[test]
fn a_sleeping_web_type_wakes_on_a_request_and_answers_20_requests_at_once_with_one_instance() {
    let (_app, mut running, router) = start_sleepy_web();
    let answers = at_once(move || {
        let answer = std::panic::catch_unwind(|| Http::connect(router).get("/", "Connection: close\r\n"));
        answer.map_err(|_| std::io::Error::other("the request failed"))
    });
    assert!(answers.iter().all(|a| a.status == 200), "{:?}", answers.iter().map(|a| a.status).collect::<Vec<_>>());
    let bodies: Vec<&str> = answers.iter().map(|a| a.body.as_str()).collect();
    assert!(bodies.iter().all(|b| *b == bodies[0] && b.starts_with("hello from web.1 ")), "{bodies:?}");
    running.wait_for("207 web woke after");
    running.wait_for_nth("at=info method=GET", AT_ONCE, DEADLINE);
    let after = lines_after(&running, "205 Sleeping web", 1);
    assert_eq!(count(&after, "206 Waking web"), 1, "{after:?}");
    assert_eq!(count(&after, "web.1 started with pid"), 1, "{after:?}");
    assert_eq!(count(&after, "at=info method=GET"), AT_ONCE, "{after:?}");
    assert_eq!(count(&after, "at=error"), 0, "{after:?}");
    // The health checks every 200 ms are procgate's own: they keep nothing awake.
    running.wait_for_nth("205 Sleeping web", 2, DEADLINE);
    running.signal(Signal::SIGINT);
    running.finish(DEADLINE);
}

#[test]
fn an_open_connection_keeps_its_type_awake_until_it_closes() {
    let app = sleepy_echo("1s", "");
    let (mut running, addr) = common::start_gateway(&app, "tcp=1", &[]);
    running.wait_for("201 app connected tcp.1");
    let mut held = Client::connect(addr).unwrap();
    assert!(held.greeting().is_some());
    // Three times `sleep_after` with a quiet connection open: no sleep (nothing to wait for).
    std::thread::sleep(Duration::from_secs(3));
    held.send("still here");
    assert_eq!(held.line(), "still here");
    let rows = common::ps(&app).instances;
    assert_eq!(rows.iter().map(|r| r.state.as_str()).collect::<Vec<_>>(), ["up"], "{rows:?}");
    let closed = Instant::now();
    drop(held);
    running.wait_for("205 Sleeping tcp: no connection for 1s");
    assert!(closed.elapsed() >= Duration::from_secs(1), "slept {:?} after the close", closed.elapsed());
    running.signal(Signal::SIGINT);
    running.finish(DEADLINE);
}

#[test]
fn a_type_slower_to_boot_than_sleep_after_comes_up_and_sleeps_only_sleep_after_later() {
    // 1.5 s of boot before it listens, longer than the 1 s of `sleep_after`.
    let echo = common::repo().join("sample-apps/python/echo_server.py");
    let app = App::new(&format!("tcp: echo url=$TCP_URL; sleep 1.5; exec python3 {}\n", echo.display()));
    app.write("procgate.toml", "[types.tcp]\nsleep_after = \"1s\"\n");
    let (mut running, _) = common::start_gateway(&app, "tcp=1", &[]);
    running.wait_for("201 app connected tcp.1");
    let up = Instant::now();
    running.wait_for("205 Sleeping tcp: no connection for 1s");
    assert!(
        up.elapsed() >= Duration::from_millis(800),
        "slept {:?} after it came up; output:\n{}",
        up.elapsed(),
        running.seen.join("\n")
    );
    running.signal(Signal::SIGINT);
    running.finish(DEADLINE);
}

#[test]
fn a_restart_of_procgate_comes_back_asleep_and_scale_and_wake_work_while_asleep() {
    let app = sleepy_echo("2s", "");
    let (running, _) = start_asleep(&app, "tcp=1", &[]);
    running.signal(Signal::SIGINT);
    running.finish(DEADLINE);

    let base = common::free_base_port(2, 4).to_string();
    let mut again = app.spawn(&["start", "-p", &base, "--grace", "2s"]);
    again.wait_for("tcp is asleep, as the last run left it");
    let summary = again.wait_for("starting app in");
    assert!(summary.contains("tcp=1"), "{summary}");
    let rows = common::ps(&app).instances;
    assert_eq!(rows.iter().map(|r| r.state.as_str()).collect::<Vec<_>>(), ["sleeping"], "nothing started: {rows:?}");

    fails(&app, &["restart", "tcp"], 1, &["tcp is asleep: nothing to restart"]);
    let scaled = ok(&app, &["scale", "tcp=2"]);
    assert!(scaled.contains("tcp is asleep: it wakes with 2 instances"), "{scaled}");
    assert_eq!(common::ps(&app).instances.len(), 2);
    let woke = ok(&app, &["wake", "tcp"]);
    assert!(woke.contains("ok: tcp woke after"), "{woke}");
    again.wait_for("206 Waking tcp: asked by procgate wake; starting 2 instances");
    again.wait_for("201 app connected tcp.2");
    let awake = ok(&app, &["wake", "tcp"]);
    assert!(awake.contains("ok: tcp is awake: 2 instances"), "{awake}");
    assert!(!again.seen.iter().any(|l| l.contains("H10")));
    fails(&app, &["wake", "nope"], 2, &["the Procfile has no type `nope`"]);
    again.signal(Signal::SIGINT);
    again.finish(DEADLINE);
}

#[test]
fn a_deploy_while_asleep_starts_nothing_and_the_wake_runs_the_new_release_without_its_release_step() {
    let (app, mut running, addr, v2) = asleep_with_a_v2("release: echo release step of $PWD\n", "tcp=1,release=1");
    let deploy = ok(&app, &["deploy", "--from", v2.path().to_str().unwrap()]);
    assert!(deploy.contains("tcp: asleep; its next wake starts 1 instance of this release"), "{deploy}");
    assert!(deploy.contains("ok:"), "{deploy}");
    running.wait_for("deploy done");
    let after = lines_after(&running, "205 Sleeping tcp", 1);
    assert_eq!(count(&after, "tcp.1 started with pid"), 0, "the deploy woke nothing: {after:?}");
    assert_eq!(count(&after, "release.1 started with pid"), 1, "the deploy's own release step: {after:?}");

    assert!(echo_client(addr).unwrap().starts_with("tcp.1 "));
    running.wait_for("tcp.1 | v2 url=tcp://");
    running.wait_for("207 tcp woke after");
    let after = lines_after(&running, "206 Waking tcp", 1);
    assert_eq!(count(&after, "release.1"), 0, "no release step on a wake: {after:?}");
    running.signal(Signal::SIGINT);
    running.finish(DEADLINE);
}

#[test]
fn a_type_that_wakes_during_a_deploys_rollout_is_restarted_into_the_new_release_after_it() {
    let (app, mut running, addr, v2) = asleep_with_a_v2("worker: exec sleep 60\n", "tcp=1,worker=1");
    let deploy = app.spawn(&["deploy", "--from", v2.path().to_str().unwrap()]);
    // worker.1's replacement takes a second to count as up: the wake comes meanwhile.
    running.wait_for("deploy started");
    assert!(echo_client(addr).unwrap().starts_with("tcp.1 "));
    let finished = deploy.finish(DEADLINE);
    assert_eq!(finished.code(), Some(0), "{}", finished.text());
    running.wait_for("tcp woke during the deploy with the previous release: restarting it");
    running.wait_for("tcp.1 | v2 url=tcp://");
    running.wait_for("restart of tcp done");
    running.signal(Signal::SIGINT);
    running.finish(DEADLINE);
}

#[test]
fn daily_cycling_skips_a_sleeping_type() {
    let app = sleepy_echo("1s", "worker: exec sleep 60\n");
    let extra = ["--cycle", "3s", "--cycle-jitter", "0s"];
    let (mut running, _) = start_asleep(&app, "tcp=1,worker=1", &extra);
    // tcp.1's cycle came due with worker.1's, while tcp slept; and again with the next.
    running.wait_for_nth("cycling of worker.1 done", 2, DEADLINE);
    assert!(!running.seen.iter().any(|l| l.contains("Cycling tcp")), "{:?}", running.seen);
    running.signal(Signal::SIGINT);
    running.finish(DEADLINE);
}

#[test]
fn min_instances_is_a_floor_for_scale_and_start_and_cannot_go_with_sleep_after() {
    let app = echo_app("");
    app.write("procgate.toml", "[types.tcp]\nmin_instances = 1\n");
    let (mut running, _) = common::start_gateway(&app, "tcp=1", &[]);
    running.wait_for("201 app connected tcp.1");
    fails(&app, &["scale", "tcp=0"], 2, &["tcp=0 is fewer than its min_instances = 1"]);
    running.signal(Signal::SIGINT);
    running.finish(DEADLINE);

    fails(&app, &["start", "-m", "tcp=0", "--fresh"], 2, &["fewer than its min_instances = 1 in procgate.toml"]);
    app.write("procgate.toml", "[types.tcp]\nmin_instances = 1\nsleep_after = \"15m\"\n");
    fails(&app, &["check"], 2, &["procgate.toml:3:", "never sleeps"]);
}

/// Wakes of the echo app (Python) measured from the client: connect to greeting, over
/// `WAKES` wakes. `cargo test --release --test sleep -- --nocapture wake_latency` prints them.
#[test]
fn wake_latency_of_a_python_app() {
    const WAKES: usize = 10;
    let app = sleepy_echo("500ms", "");
    let (mut running, addr) = start_asleep(&app, "tcp=1", &[]);
    let (mut client_ms, mut logged_ms) = (Vec::new(), Vec::new());
    for wake in 1..=WAKES {
        // The instance put to sleep is gone: the next client meets a cold start.
        running.wait_for_nth("exited with code", wake, DEADLINE);
        let asked = Instant::now();
        assert!(echo_client(addr).unwrap().starts_with("tcp.1 "));
        client_ms.push(asked.elapsed().as_secs_f64() * 1000.0);
        let line = running.wait_for_nth("207 tcp woke after", wake, DEADLINE);
        logged_ms.push(line.split("woke after ").nth(1).unwrap().split(' ').next().unwrap().parse::<f64>().unwrap());
        running.wait_for_nth("205 Sleeping tcp", wake + 1, DEADLINE);
    }
    let summary = |name: &str, values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        let (p50, max) = (values[values.len() / 2], values[values.len() - 1]);
        eprintln!("wake latency, {name}, {WAKES} wakes of a Python app: p50 {p50:.0} ms, max {max:.0} ms");
        max
    };
    let max = summary("client connect to greeting", &mut client_ms);
    summary("logged (207)", &mut logged_ms);
    assert!(max < 10_000.0, "a wake took {max} ms");
    running.signal(Signal::SIGINT);
    running.finish(DEADLINE);
}
