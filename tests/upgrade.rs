//! `procgate upgrade`: the new binary's check, and its refusals, after which nothing changed.

mod common;
use common::{free_base_port, ps, App, BIN, DEADLINE};
use nix::sys::signal::Signal;
use procgate::upgrade::check::OURS;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// An executable script in the app's directory; its absolute path.
fn script(app: &App, name: &str, body: &str) -> String {
    let path = app.write(name, &format!("#!/bin/sh\n{body}\n"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// `procgate upgrade ARGS`, which must take over with `count` instances handed over and up in
/// the new main process; its output.
fn upgraded(app: &App, args: &[&str], count: usize) -> String {
    let finished = app.run(&[&["upgrade"], args].concat());
    assert_eq!(finished.code(), Some(0), "{}", finished.text());
    let text = finished.text();
    assert!(text.starts_with("upgraded: "), "{text}");
    let handed = format!("{count} instance(s) handed over, {count} instance(s) up in the new one");
    assert!(text.contains(&handed), "{text}");
    text
}

fn pids(app: &App) -> Vec<Option<u32>> {
    ps(app).instances.iter().map(|i| i.pid).collect()
}

#[test]
fn the_binary_answers_the_check_with_its_protocols() {
    let output = std::process::Command::new(BIN).arg("__upgrade-check").output().unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), format!("{OURS}\n"));
    assert!(OURS.to_string().starts_with("procgate-upgrade keeper=1 handover="), "{OURS}");
}

#[test]
fn a_binary_that_cannot_take_over_is_refused_with_the_reason_and_nothing_changes() {
    let app = App::new("app: exec sleep 60\nother: exec sleep 61\n");
    let mut running = app.spawn(&["start", "-p", &free_base_port(2, 1).to_string()]);
    running.wait_for("app.1 started with pid");
    running.wait_for("other.1 started with pid");
    let before = pids(&app);
    let keeper = script(&app, "old-keeper", "echo procgate-upgrade keeper=99 handover=1");
    let handover = script(&app, "new-handover", "echo procgate-upgrade keeper=1 handover=99");
    let refusals = [
        ("/bin/true", "is not a procgate that can take over: `__upgrade-check` did not answer as procgate does"),
        ("/bin/false", "`__upgrade-check` failed (exit status: 1)"),
        (keeper.as_str(), "speaks keeper protocol 99, this procgate 1: it could not adopt the running keepers"),
        (handover.as_str(), "speaks handover protocol 99, this procgate 1"),
    ];
    for (binary, reason) in refusals {
        let finished = app.run(&["upgrade", "--binary", binary]);
        assert_eq!(finished.code(), Some(1), "{}", finished.text());
        let shown = std::fs::canonicalize(binary).unwrap();
        assert!(finished.text().contains(&format!("procgate: refused: {}", shown.display())), "{}", finished.text());
        assert!(finished.text().contains(reason), "{}", finished.text());
    }
    let missing = app.run(&["upgrade", "--binary", "no-such-procgate"]);
    assert_eq!(missing.code(), Some(1), "{}", missing.text());
    assert!(missing.has("no-such-procgate: No such file or directory"), "{}", missing.text());
    assert_eq!(pids(&app), before, "no instance was restarted");
    running.signal(Signal::SIGINT);
    assert_eq!(running.finish(DEADLINE).code(), Some(0));
}

#[test]
fn a_second_upgrade_during_one_is_refused() {
    let app = App::new("app: exec sleep 60\n");
    let mut running = app.spawn(&["start", "-p", &free_base_port(1, 1).to_string()]);
    running.wait_for("app.1 started with pid");
    let slow = script(&app, "slow", &format!("sleep 2; echo '{OURS}'"));
    let first = {
        let (root, slow) = (app.path().to_path_buf(), slow.clone());
        std::thread::spawn(move || {
            let args = ["upgrade", "-d", root.to_str().unwrap(), "--binary", slow.as_str()];
            std::process::Command::new(BIN).args(args).output().unwrap()
        })
    };
    running.wait_for("upgrade asked: checking");
    let second = app.run(&["upgrade", "--binary", &slow]);
    assert_eq!(second.code(), Some(1), "{}", second.text());
    assert!(second.has("procgate: refused: an upgrade is under way; one at a time"), "{}", second.text());
    let first = first.join().unwrap();
    let text = String::from_utf8_lossy(&first.stderr);
    // It passes the check, but as a main process it ends without a word.
    assert!(text.contains("rolled back: the new main process ended before it would answer"), "{text}");
    running.signal(Signal::SIGINT);
    assert_eq!(running.finish(DEADLINE).code(), Some(0));
}

/// What a load counted while procgate upgraded.
#[derive(Debug, Default)]
struct Counts {
    ok: usize,
    failed: Vec<String>,
    /// The longest wait of one attempt (connect to answer).
    longest: Duration,
}

/// A load running on a thread of its own.
struct Load {
    counts: JoinHandle<Counts>,
    /// Its attempts so far.
    done: Arc<AtomicUsize>,
}

/// Runs `attempt` until `stop`, counting.
fn load(stop: &Arc<AtomicBool>, mut attempt: impl FnMut() -> Result<(), String> + Send + 'static) -> Load {
    let (stop, done) = (stop.clone(), Arc::new(AtomicUsize::new(0)));
    let attempts = done.clone();
    let counts = std::thread::spawn(move || {
        let mut counts = Counts::default();
        while !stop.load(Ordering::Relaxed) {
            let began = Instant::now();
            match attempt() {
                Ok(()) => counts.ok += 1,
                Err(err) => counts.failed.push(err),
            }
            counts.longest = counts.longest.max(began.elapsed());
            attempts.fetch_add(1, Ordering::Relaxed);
        }
        counts
    });
    Load { counts, done }
}

/// A new connection through the gateway: its greeting, one echo, closed.
fn echo_once(addr: SocketAddr) -> Result<(), String> {
    let stream = TcpStream::connect(addr).map_err(|err| format!("connect: {err}"))?;
    stream.set_read_timeout(Some(DEADLINE)).map_err(|err| err.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|err| format!("greeting: {err}"))?;
    if !line.starts_with("hello tcp.") {
        return Err(format!("greeting {line:?}"));
    }
    reader.get_mut().write_all(b"ping\n").map_err(|err| format!("send: {err}"))?;
    line.clear();
    reader.read_line(&mut line).map_err(|err| format!("echo: {err}"))?;
    (line == "ping\n").then_some(()).ok_or_else(|| format!("echo {line:?}"))
}

/// A long-lived client of the gateway, greeted.
fn long_lived(addr: SocketAddr) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut reader = BufReader::new(stream);
    let mut greeting = String::new();
    reader.read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with("hello tcp."), "{greeting:?}");
    reader
}

fn still_echoes(client: &mut BufReader<TcpStream>, text: &str) {
    client.get_mut().write_all(format!("{text}\n").as_bytes()).unwrap();
    let mut line = String::new();
    client.read_line(&mut line).unwrap();
    assert_eq!(line, format!("{text}\n"));
}

/// Requests through the router on kept-alive connections: a new one only when an answer says
/// `Connection: close` (the old main process hands its clients over that way).
fn keep_alive_requests(addr: SocketAddr) -> impl FnMut() -> Result<(), String> + Send + 'static {
    let mut connection: Option<BufReader<TcpStream>> = None;
    move || {
        let reader = match &mut connection {
            Some(reader) => reader,
            None => {
                let stream = TcpStream::connect(addr).map_err(|err| format!("connect: {err}"))?;
                stream.set_read_timeout(Some(DEADLINE)).map_err(|err| err.to_string())?;
                connection.insert(BufReader::new(stream))
            }
        };
        let answer = http_get(reader);
        if !matches!(&answer, Ok(closing) if !closing) {
            connection = None;
        }
        answer.map(|_| ())
    }
}

/// `GET /` on a kept-alive connection: whether the answer closes it.
fn http_get(reader: &mut BufReader<TcpStream>) -> Result<bool, String> {
    reader
        .get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: procgate.test\r\n\r\n")
        .map_err(|err| format!("send: {err}"))?;
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|err| format!("status line: {err}"))?;
    if !line.starts_with("HTTP/1.1 200") {
        return Err(format!("status line {line:?}"));
    }
    let (mut length, mut closing) = (0, false);
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(|err| format!("header: {err}"))?;
        let Some((name, value)) = line.trim_end().split_once(": ") else { break };
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().map_err(|_| format!("length {value:?}"))?,
            "connection" => closing = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).map_err(|err| format!("body: {err}"))?;
    Ok(closing)
}

#[test]
fn three_upgrades_in_a_row_refuse_no_connection_fail_no_request_and_restart_no_app() {
    let web = common::repo().join("sample-apps/python/web_app.py");
    let app = common::echo_app(&format!("web: exec python3 {}\n", web.display()));
    let grace = ["--web-listen", "127.0.0.1:0", "--grace", "60s"];
    let (mut running, gateway) = common::start_gateway(&app, "tcp=2,web=1", &grace);
    let line = running.wait_for("router http://");
    let router: SocketAddr = line.split("router http://").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    for instance in ["tcp.1", "tcp.2", "web.1"] {
        running.wait_for(&format!("201 app connected {instance}"));
    }
    let before = pids(&app);
    let first_main = running.main_pid();
    let mut long: Vec<BufReader<TcpStream>> = (0..20).map(|_| long_lived(gateway)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let connects = load(&stop, move || echo_once(gateway));
    let requests = load(&stop, keep_alive_requests(router));
    let ps_root = app.path().to_path_buf();
    let ps_load = load(&stop, move || {
        let out = std::process::Command::new(BIN).args(["ps", "-d", ps_root.to_str().unwrap()]).output();
        match out {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(String::from_utf8_lossy(&out.stderr).to_string()),
            Err(err) => Err(err.to_string()),
        }
    });
    let mut mains = vec![first_main];
    for round in 1..=3 {
        let copy = app.path().join(format!("procgate-copy-{round}"));
        std::fs::copy(BIN, &copy).unwrap();
        let text = upgraded(&app, &["--binary", copy.to_str().unwrap()], 3);
        let main: i32 = text.split("main process pid ").nth(1).unwrap().split(':').next().unwrap().parse().unwrap();
        assert!(!mains.contains(&main), "a new main process each time: {main} after {mains:?}");
        mains.push(main);
        for (i, client) in long.iter_mut().enumerate() {
            still_echoes(client, &format!("round {round} client {i}"));
        }
        assert_eq!(pids(&app), before, "no app restarted");
    }
    // Each load runs a while on the last main process alone too.
    // Each load goes on a while with the last main process alone.
    running.wait_for_nth("this new main process is procgate's now", 3, DEADLINE);
    let after: Vec<usize> = [&connects, &requests, &ps_load].iter().map(|l| l.done.load(Ordering::Relaxed)).collect();
    common::wait_until(DEADLINE, "5 more attempts of each load", || {
        let loads = [&connects, &requests, &ps_load];
        loads.iter().zip(&after).all(|(l, n)| l.done.load(Ordering::Relaxed) >= n + 5).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let [connects, requests, ps_load] = [connects, requests, ps_load].map(|l| l.counts.join().unwrap());
    println!(
        "across 3 upgrades: {} connections ({} failed, longest {:?}), {} requests ({} failed), {} ps ({} failed), 20 long-lived still echoing",
        connects.ok + connects.failed.len(),
        connects.failed.len(),
        connects.longest,
        requests.ok + requests.failed.len(),
        requests.failed.len(),
        ps_load.ok + ps_load.failed.len(),
        ps_load.failed.len()
    );
    assert!(connects.failed.is_empty(), "{:?}", connects.failed);
    assert!(requests.failed.is_empty(), "{:?}", requests.failed);
    assert!(ps_load.failed.is_empty(), "{:?}", ps_load.failed);
    assert!(connects.ok > 0 && requests.ok > 0 && ps_load.ok > 0);
    assert_eq!(pids(&app), before, "no app restarted");
    assert!(common::alive(running.pid()), "the anchor keeps procgate's pid");
    running.signal(Signal::SIGINT);
    let finished = running.finish(DEADLINE);
    assert_eq!(finished.code(), Some(0), "{}", finished.text());
}

#[test]
fn a_connection_longer_than_the_grace_outlives_the_upgrade_and_ends_with_its_app() {
    let app = common::echo_app("");
    let (mut running, gateway) = common::start_gateway(&app, "tcp=1", &["--grace", "1s"]);
    running.wait_for("201 app connected tcp.1");
    let mut chat = long_lived(gateway);
    let text = upgraded(&app, &[], 1);
    assert!(
        text.contains("relays its connections until they end (at most 99361s, until their instances are cycled)"),
        "{text}"
    );
    running.wait_for("handed over: relaying 1 open connection(s) until they end");
    // Twice the grace, which used to be the most an old main process relayed for: a chat, MQTT
    // or game client was cut then.
    std::thread::sleep(Duration::from_millis(2500));
    still_echoes(&mut chat, "after the grace");
    // A stop ends it as it ends any connection: the app says goodbye and closes it on SIGTERM,
    // and the old main process passes both on.
    running.signal(Signal::SIGINT);
    let mut rest = String::new();
    chat.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "bye\n");
    let finished = running.finish(DEADLINE);
    assert_eq!(finished.code(), Some(0), "{}", finished.text());
}

#[test]
fn sigusr2_to_procgate_upgrades_it_to_the_binary_it_was_started_from_and_logs_go_on() {
    let app = App::new("app: exec sleep 60\n");
    let mut running = app.spawn(&["start", "-p", &free_base_port(1, 1).to_string()]);
    running.wait_for("app.1 started with pid");
    // An instance still starting is not handed over (the upgrade would be refused): up first.
    common::wait_until(DEADLINE, "app.1 up", || ps(&app).instances.iter().all(|i| i.state == "up").then_some(()));
    let before = pids(&app);
    running.signal(Signal::SIGUSR2);
    running.wait_for("SIGUSR2 received, upgrading to the binary procgate was started from");
    let line = running.wait_for("took over as main process pid");
    assert!(line.contains("1 instance(s) handed over, 1 instance(s) up in the new one"), "{line}");
    assert_eq!(pids(&app), before, "no instance was restarted");
    // `procgate logs` goes on with the lines the old main process kept.
    running.wait_for("this new main process is procgate's now");
    let logs = app.run(&["logs", "system"]);
    let text = logs.text();
    let (started, took_over) = (text.find("app.1 started with pid"), text.find("this new main process is procgate's"));
    assert!(started.is_some() && started < took_over, "{text}");
    running.signal(Signal::SIGINT);
    assert_eq!(running.finish(DEADLINE).code(), Some(0));
}

#[test]
fn a_successor_that_refuses_the_instances_is_stopped_and_everything_resumes() {
    let app = common::echo_app("");
    let (mut running, gateway) = common::start_gateway(&app, "tcp=2", &[]);
    // Both up: an instance still starting is not handed over (another refusal).
    running.wait_for("201 app connected tcp.1");
    running.wait_for("201 app connected tcp.2");
    let before = pids(&app);
    let mut client = long_lived(gateway);
    // The app's files changed since the release in force started: the successor would describe
    // the instances wrongly, so it refuses, and the old main resumes.
    let procfile = std::fs::read_to_string(app.path().join("Procfile")).unwrap();
    app.write("Procfile", &procfile.replace("echo url=", "echo address="));
    let copy = app.path().join("procgate-copy");
    std::fs::copy(BIN, &copy).unwrap();
    let finished = app.run(&["upgrade", "--binary", copy.to_str().unwrap()]);
    assert_eq!(finished.code(), Some(1), "{}", finished.text());
    let text = finished.text();
    assert!(
        text.contains("rolled back: the new main process refused to take over: tcp.1 runs another release"),
        "{text}"
    );
    assert!(text.contains("deploy them first (`procgate deploy`) or put them back, then upgrade"), "{text}");
    assert_eq!(pids(&app), before, "no instance was restarted");
    still_echoes(&mut client, "after the refusal");
    // The old main acts again: a scale is carried out, and so is an upgrade once the files are back.
    let scaled = app.run(&["scale", "tcp=3"]);
    assert_eq!(scaled.code(), Some(0), "{}", scaled.text());
    running.wait_for("201 app connected tcp.3");
    app.write("Procfile", &procfile);
    upgraded(&app, &["--binary", copy.to_str().unwrap()], 3);
    still_echoes(&mut client, "after the upgrade");
    running.signal(Signal::SIGINT);
    assert_eq!(running.finish(DEADLINE).code(), Some(0));
}

#[test]
fn a_successor_that_does_not_answer_is_stopped_at_the_deadline_and_nothing_changes() {
    let app = App::new("app: exec sleep 60\n");
    let mut running = app.spawn(&["start", "-p", &free_base_port(1, 1).to_string()]);
    running.wait_for("app.1 started with pid");
    let before = pids(&app);
    let body = format!("[ \"$1\" = __upgrade-check ] && echo '{OURS}' && exit\necho mute pid $$\nexec sleep 60");
    let mute = script(&app, "mute", &body);
    let finished = app.run(&["upgrade", "--binary", &mute]);
    assert_eq!(finished.code(), Some(1), "{}", finished.text());
    let text = finished.text();
    assert!(text.contains("rolled back: the new main process did not answer within 10 s"), "{text}");
    let line = running.wait_for("mute pid ");
    let successor: i32 = line.rsplit(' ').next().unwrap().parse().unwrap_or_else(|_| panic!("{line:?}"));
    common::wait_gone(&[successor], DEADLINE);
    assert_eq!(pids(&app), before, "no instance was restarted");
    let scaled = app.run(&["scale", "app=2"]);
    assert_eq!(scaled.code(), Some(0), "the old main acts again: {}", scaled.text());
    running.signal(Signal::SIGINT);
    assert_eq!(running.finish(DEADLINE).code(), Some(0));
}

#[test]
fn a_type_asleep_stays_asleep_across_an_upgrade_and_the_metrics_are_served_on() {
    let app = common::echo_app("worker: exec sleep 60\n");
    app.write("procgate.toml", "[types.tcp]\nsleep_after = \"1s\"\n");
    let (mut running, gateway) = common::start_gateway(&app, "tcp=1,worker=1", &["--metrics-listen", "127.0.0.1:0"]);
    let line = running.wait_for("metrics on http://");
    let metrics: SocketAddr = line.split("http://").nth(1).unwrap().trim_end_matches("/metrics").parse().unwrap();
    running.wait_for("205 Sleeping tcp: no connection for 1s");
    let states = || -> Vec<(String, String)> { ps(&app).instances.into_iter().map(|i| (i.name, i.state)).collect() };
    let expected = [("tcp.1", "sleeping"), ("worker.1", "up")].map(|(n, s)| (n.to_string(), s.to_string()));
    common::wait_until(DEADLINE, "tcp.1 stopped, worker.1 up", || (states() == expected).then_some(()));
    let worker = pids(&app);
    upgraded(&app, &[], 1);
    running.wait_for("this new main process is procgate's now");
    assert_eq!(states(), expected);
    assert_eq!(pids(&app).last(), worker.last(), "the worker was not restarted");
    // The new main process wakes it for its next client, and serves the metrics.
    let mut client = long_lived(gateway);
    still_echoes(&mut client, "awake");
    running.wait_for("206 Waking tcp");
    let mut scrape = TcpStream::connect(metrics).unwrap();
    scrape.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    scrape.read_to_string(&mut answer).unwrap();
    assert!(answer.contains(" 200 OK"), "{answer}");
    assert!(answer.contains("procgate_wakes_total{type=\"tcp\"} 1"), "{answer}");
    running.signal(Signal::SIGINT);
    let finished = running.finish(DEADLINE);
    assert_eq!(finished.code(), Some(0), "{}", finished.text());
}

#[test]
fn the_release_a_deploy_put_in_force_is_the_one_the_new_main_process_takes_over() {
    let app = App::new("worker: echo greeting=$GREETING; exec sleep 60\n");
    app.write(".env", "GREETING=v1\n");
    let mut running = app.spawn(&["start", "-p", &free_base_port(1, 1).to_string(), "--grace", "2s"]);
    running.wait_for("worker.1 | greeting=v1");
    let release = tempfile::tempdir().unwrap();
    std::fs::write(release.path().join("Procfile"), "worker: echo greeting=$GREETING; exec sleep 60\n").unwrap();
    std::fs::write(release.path().join(".env"), "GREETING=v2\n").unwrap();
    let deployed = app.run(&["deploy", "--from", release.path().to_str().unwrap()]);
    assert_eq!(deployed.code(), Some(0), "{}", deployed.text());
    running.wait_for("worker.1 | greeting=v2");
    common::wait_until(DEADLINE, "the new worker.1 alone, up", || {
        let instances = ps(&app).instances;
        (instances.len() == 1 && instances[0].state == "up").then_some(())
    });
    let before = pids(&app);
    // The app directory's own files still say v1: the release in force is the deployed one.
    upgraded(&app, &[], 1);
    assert_eq!(pids(&app), before, "no instance was restarted");
    running.signal(Signal::SIGINT);
    let finished = running.finish(DEADLINE);
    assert_eq!(finished.code(), Some(0), "{}", finished.text());
}

/// Opens the FIFO `path` for writing once a reader has it open (bounded).
fn fifo_reader_waiting(path: &std::path::Path) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    common::wait_until(DEADLINE, "a reader of the env file", || {
        std::fs::OpenOptions::new().write(true).custom_flags(nix::libc::O_NONBLOCK).open(path).ok()
    })
}

#[test]
fn a_stop_that_comes_during_a_handover_is_carried_out_by_the_new_main_process() {
    let app = App::new("worker: echo greeting=$GREETING; exec sleep 60\n");
    // The env file is a FIFO: whoever reads it waits for the test, so the test knows when.
    let fifo = app.path().join("slow.env");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let args = ["start", "-e", "slow.env", "-p", &free_base_port(1, 1).to_string(), "--grace", "2s"];
    let mut running = app.spawn(&args);
    fifo_reader_waiting(&fifo).write_all(b"GREETING=v1\n").unwrap();
    running.wait_for("worker.1 | greeting=v1");
    common::wait_until(DEADLINE, "worker.1 up", || ps(&app).instances.iter().all(|i| i.state == "up").then_some(()));
    let root = app.path().to_path_buf();
    let upgrade = std::thread::spawn(move || {
        std::process::Command::new(BIN).args(["upgrade", "-d", root.to_str().unwrap()]).output().unwrap()
    });
    // The new main process reads the env file once it has the instances: the old one is frozen.
    let mut env_file = fifo_reader_waiting(&fifo);
    running.signal(Signal::SIGTERM);
    running.wait_for("SIGTERM received, starting shutdown");
    env_file.write_all(b"GREETING=v1\n").unwrap();
    drop(env_file);
    let upgraded = upgrade.join().unwrap();
    assert!(upgraded.status.success(), "{}", String::from_utf8_lossy(&upgraded.stderr));
    running.wait_for("a stop came during the handover: passing it on to the new main process");
    let finished = running.finish(DEADLINE);
    assert_eq!(finished.code(), Some(0), "{}", finished.text());
    assert!(finished.has("worker.1 terminated by SIGTERM"), "{}", finished.text());
}

#[test]
fn a_logs_follower_goes_on_across_an_upgrade_without_a_line_twice_and_ends_with_procgate() {
    let app = App::new("worker: exec sleep 60\n");
    let mut running = app.spawn(&["start", "-p", &free_base_port(1, 2).to_string(), "--grace", "2s"]);
    running.wait_for("worker.1 started with pid");
    common::wait_until(DEADLINE, "worker.1 up", || ps(&app).instances.iter().all(|i| i.state == "up").then_some(()));
    let mut follower = app.spawn(&["logs", "-f", "system"]);
    follower.wait_for("worker.1 started with pid");
    upgraded(&app, &[], 1);
    follower.wait_for("this new main process is procgate's now");
    let scaled = app.run(&["scale", "worker=2"]);
    assert_eq!(scaled.code(), Some(0), "{}", scaled.text());
    follower.wait_for("worker.2 started with pid");
    running.signal(Signal::SIGINT);
    assert_eq!(running.finish(DEADLINE).code(), Some(0));
    let followed = follower.finish(DEADLINE);
    assert_eq!(followed.code(), Some(0), "the follower ends with procgate: {}", followed.text());
    let mut seen = std::collections::HashSet::new();
    for line in &followed.lines {
        assert!(seen.insert(line), "printed twice: {line}\n{}", followed.text());
    }
}
