//! The TCP gateway through the binary: routing at the handshake, stickiness, health checks,
//! passive failover, R10, H10, and a real server (Redis) behind it (the relay itself: relay.rs).

mod common;
use common::line_client::Client;
use common::{free_base_port, App, Running, DEADLINE};
use nix::sys::signal::Signal;
use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn echo_app() -> App {
    common::echo_app("")
}

/// Starts `instances` echo instances behind the gateway; returns procgate and the gateway address.
fn start(app: &App, instances: u16, extra: &[&str]) -> (Running, SocketAddr) {
    common::start_gateway(app, &format!("tcp={instances}"), extra)
}

fn wait_routed(running: &mut Running, instances: u16) {
    for i in 1..=instances {
        running.wait_for(&format!("201 app connected tcp.{i} "));
    }
}

#[test]
fn three_instances_share_150_held_connections_and_each_stays_on_its_instance() {
    let app = echo_app();
    let (mut running, addr) = start(&app, 3, &[]);
    wait_routed(&mut running, 3);
    let mut clients = Vec::new();
    let mut per_instance: HashMap<String, usize> = HashMap::new();
    for _ in 0..150 {
        let mut client = Client::connect(addr).unwrap();
        let who = client.greeting().expect("a greeting");
        *per_instance.entry(who.split(' ').next().unwrap().to_string()).or_default() += 1;
        clients.push((client, who));
    }
    assert_eq!(per_instance.len(), 3, "{per_instance:?}");
    assert!(per_instance.values().all(|&n| (40..=60).contains(&n)), "±20% of 50 each: {per_instance:?}");
    for (client, who) in &mut clients {
        client.send("whoami");
        assert_eq!(&client.line(), who, "the connection stayed on its instance");
        client.send("ping");
        assert_eq!(client.line(), "ping");
    }
    running.signal(Signal::SIGINT);
    let finished = running.finish(DEADLINE);
    assert_eq!(finished.code(), Some(0), "{}", finished.text());
}

#[test]
fn tcp_url_is_the_address_actually_bound() {
    let app = echo_app();
    let (mut running, addr) = start(&app, 1, &[]);
    assert_ne!(addr.port(), 0);
    wait_routed(&mut running, 1);
    let mut client = Client::connect(addr).unwrap();
    assert!(client.greeting().unwrap().starts_with("tcp.1 "));
    assert!(running.seen.iter().any(|l| l.contains(&format!("gateway tcp://{addr} for tcp"))));
}

#[test]
fn sigkill_of_an_instance_fails_no_client_and_it_comes_back() {
    let app = echo_app();
    let (mut running, addr) = start(&app, 3, &[]);
    wait_routed(&mut running, 3);
    let victim = running.pid_of("tcp.2");
    let mut served: HashMap<String, usize> = HashMap::new();
    let connect = |served: &mut HashMap<String, usize>| {
        let mut client = Client::connect(addr).expect("the gateway accepts");
        let who = client.greeting().expect("every client is served by a live instance");
        *served.entry(who.split(' ').next().unwrap().to_string()).or_default() += 1;
    };
    for _ in 0..30 {
        connect(&mut served);
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    common::wait_gone(&[victim], Duration::from_secs(5));
    served.clear();
    for _ in 0..60 {
        connect(&mut served);
    }
    assert_eq!(served.values().sum::<usize>(), 60);
    assert!(!served.contains_key("tcp.2") || served["tcp.2"] == 0, "{served:?}");
    running.wait_for("tcp.2 crashed; restarting in 1s");
    running.wait_for_nth("201 app connected tcp.2", 2, DEADLINE);
    served.clear();
    for _ in 0..30 {
        connect(&mut served);
    }
    assert!(served.get("tcp.2").is_some_and(|n| *n > 0), "the restarted instance takes clients again: {served:?}");
}

#[test]
fn an_instance_that_never_accepts_gets_r10_and_is_restarted() {
    let app = App::new("tcp: echo url=$TCP_URL; exec sleep 30\n");
    let (mut running, _) = start(&app, 1, &["--boot-timeout", "500ms"]);
    running.wait_for("R10 Boot timeout: tcp.1 did not pass its health check within 500ms; sending SIGKILL");
    running.wait_for("tcp.1 terminated by SIGKILL");
    running.wait_for("tcp.1 crashed; restarting in 1s (restart 1)");
    assert!(!running.seen.iter().any(|l| l.contains("201 app connected")));
}

#[test]
fn a_client_waits_for_a_healthy_instance_then_gets_h10() {
    let app = App::new("tcp: echo url=$TCP_URL; exec sleep 30\n");
    let (mut running, addr) = start(&app, 1, &["--wait", "500ms"]);
    let started = Instant::now();
    let mut client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(450), "held for the wait: {:?}", started.elapsed());
    running.wait_for("H10 no healthy instance: no tcp instance up within 500ms; closed client 127.0.0.1:");
}

#[test]
fn a_client_arriving_during_boot_is_held_until_an_instance_is_up() {
    let echo = common::repo().join("sample-apps/python/echo_server.py");
    let app = App::new(&format!("tcp: echo url=$TCP_URL; sleep 1; exec python3 {}\n", echo.display()));
    let (mut running, addr) = start(&app, 1, &[]);
    let mut client = Client::connect(addr).unwrap();
    assert!(client.greeting().unwrap().starts_with("tcp.1 "));
    running.wait_for("201 app connected tcp.1");
}

#[test]
fn redis_works_through_the_gateway_with_its_own_clients() {
    let redis = [("redis-server", "redis-server"), ("redis-cli", "redis-tools"), ("redis-benchmark", "redis-tools")];
    if !common::needs::needs(&redis) {
        return;
    }
    let app = App::from_procfiles("redis");
    let base = free_base_port(1, 1).to_string();
    let args = ["start", "-p", &base, "--tcp-listen", "127.0.0.1:0"];
    let mut running = app.spawn(&args);
    let line = running.wait_for("gateway tcp://");
    let addr: SocketAddr = line.split("gateway tcp://").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    running.wait_for("201 app connected tcp.1");
    let port = addr.port().to_string();
    let ping = std::process::Command::new("redis-cli").args(["-p", &port, "ping"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&ping.stdout).trim(), "PONG");
    let bench = std::process::Command::new("redis-benchmark")
        .args(["-p", &port, "-n", "2000", "-c", "20", "-q", "-t", "set,get"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&bench.stdout).to_string() + &String::from_utf8_lossy(&bench.stderr);
    assert!(bench.status.success(), "{out}");
    assert!(out.contains("SET:") && out.contains("GET:"), "{out}");
    assert!(!out.to_lowercase().contains("error"), "{out}");
    running.signal(Signal::SIGINT);
    assert_eq!(running.finish(DEADLINE).code(), Some(0));
}

#[test]
fn a_dead_listener_is_skipped_at_once_and_the_health_check_confirms_it() {
    // The app dies but its instance lives on (the shell sleeps): only the gateway can notice.
    let echo = common::repo().join("sample-apps/python/echo_server.py");
    let app = App::new(&format!("tcp: echo url=$TCP_URL; python3 {}; echo app gone; sleep 60\n", echo.display()));
    let (mut running, addr) = start(&app, 3, &[]);
    wait_routed(&mut running, 3);
    let victim = loop {
        let mut client = Client::connect(addr).unwrap();
        let who = client.greeting().unwrap();
        if let Some(pid) = who.strip_prefix("tcp.2 ") {
            break pid.parse::<i32>().unwrap();
        }
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    running.wait_for("tcp.2 | app gone");
    for _ in 0..30 {
        let mut client = Client::connect(addr).unwrap();
        let who = client.greeting().expect("served by a live instance");
        assert!(!who.starts_with("tcp.2 "), "{who}");
    }
    running.wait_for("tcp.2 failed 2 health checks in a row");
    running.wait_for("204 app disconnected tcp.2 (health check failed;");
}

#[test]
fn procgate_toml_routes_another_type_on_its_own_address() {
    // An app written for Heroku's Ruppell's Sockets: a `socket` type on its own frontend.
    let echo = common::repo().join("sample-apps/python/echo_server.py");
    let procfile = format!(
        "socket: echo url=$RUPPELLS_SOCKETS_FRONTEND_URI local=$RUPPELLS_SOCKETS_LOCAL_PORT; exec python3 {}\n",
        echo.display()
    );
    let app = App::new(&procfile);
    app.write("procgate.toml", "[types.socket]\nlisten = \"127.0.0.1:0\"\nhealth_interval = \"500ms\"\n");
    let base = free_base_port(1, 1);
    let mut running = app.spawn(&["start", "-p", &base.to_string()]);
    let line = running.wait_for("socket.1 | url=tcp://");
    assert!(line.ends_with(&format!("local={base}")), "{line}");
    let addr: SocketAddr = line.split("url=tcp://").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(running.seen.iter().any(|l| l.contains(&format!("gateway tcp://{addr} for socket"))));
    running.wait_for("201 app connected socket.1");
    let mut client = Client::connect(addr).unwrap();
    assert!(client.greeting().unwrap().starts_with("socket.1 "));
}

#[test]
fn a_client_that_leaves_while_waiting_for_an_instance_is_let_go_at_once() {
    let app = App::new("tcp: echo url=$TCP_URL; exec sleep 30\n");
    let (running, addr) = start(&app, 1, &["--wait", "60s"]);
    let main = running.main_pid();
    let fds = || std::fs::read_dir(format!("/proc/{main}/fd")).unwrap().count();
    // The fewest of a few counts: a health check's socket may be open for a moment in one.
    let baseline = (0..5)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(10));
            fds()
        })
        .min()
        .unwrap();
    let clients: Vec<TcpStream> = (0..50).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while fds() < baseline + 50 {
        assert!(Instant::now() < deadline, "the clients are accepted and held");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(clients);
    while fds() > baseline {
        assert!(Instant::now() < deadline, "still holding {} descriptors (baseline {baseline})", fds());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_flood_on_one_route_leaves_the_other_its_share_and_apps_get_the_limit_procgate_was_given() {
    let (echo, web) = (common::repo().join("sample-apps/python/echo_server.py"), common::example("web"));
    let app = App::new(&format!(
        "tcp: echo nofile=$(ulimit -n); echo url=$TCP_URL; exec python3 {}\nweb: exec {web}\n",
        echo.display()
    ));
    let base = free_base_port(2, 1);
    // procgate raises its soft limit of 100 to the hard 300: (300 - 64) / 2 = 118 proxied
    // connections, 4 fewer for each of the two instances; tcp may take all but web's quarter.
    let script = format!(
        "ulimit -Sn 100 && ulimit -Hn 300 && exec {} start -p {base} --tcp-listen 127.0.0.1:0 --web-listen 127.0.0.1:0",
        common::BIN
    );
    let mut running = app.spawn_program(std::path::Path::new("sh"), &["-c", &script], &[]);
    running.wait_for("open files limit 300: room for about 118 proxied connections, 4 fewer per running instance");
    running.wait_for("tcp.1 | nofile=100");
    let line = running.wait_for("router http://");
    let router: SocketAddr = line.split("router http://").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    let line = running.wait_for("tcp.1 | url=tcp://");
    let gateway: SocketAddr = line.split("url=tcp://").nth(1).unwrap().parse().unwrap();
    running.wait_for("201 app connected tcp.1");
    running.wait_for("201 app connected web.1");
    let flood: Vec<Option<Client>> = (0..150)
        .map(|_| {
            let mut client = Client::connect(gateway).unwrap();
            client.greeting().map(|_| client)
        })
        .collect();
    let served = flood.iter().filter(|c| c.is_some()).count();
    let line = running.wait_for("H11 too many connections: the tcp route holds ");
    let cap: usize = line.split("holds ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert_eq!((served, cap), (83, 83), "110 of room after the two instances, 27 kept for web: {line}");
    let mut http = common::http_client::Http::connect(router);
    for _ in 0..20 {
        assert_eq!(http.get("/", "").status, 200, "web keeps its share");
    }
    let tcp = common::ps(&app).instances.into_iter().find(|i| i.type_name == "tcp").unwrap();
    assert_eq!(tcp.connections, Some(83), "the control socket still answers");
}
