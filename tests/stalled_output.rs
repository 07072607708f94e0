//! procgate's stdout on a pipe nobody reads (a paused terminal, `procgate start | less`, a slow
//! log collector): requests and TCP connections are still served, and the lines that did not
//! fit are counted and said once the output flows again.

mod common;
use common::http_client::Http;
use common::line_client::Client;
use common::{example, free_base_port, repo, App, BIN, DEADLINE};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

/// Kept-alive HTTP clients, and requests each: thousands of router lines, far more than a pipe
/// (64 KiB) and procgate's queue of lines (4,096) hold.
const HTTP_CLIENTS: usize = 4;
const REQUESTS_EACH: usize = 1_500;
/// New TCP connections through the gateway while the output is stalled.
const TCP_CLIENTS: usize = 200;

#[test]
fn with_stdout_unread_requests_and_connections_are_served_and_dropped_lines_counted() {
    // The Rust sample web app: Python's http.server answers in two writes, which delayed ACKs
    // slow to ~25 requests/s per connection.
    let echo = repo().join("sample-apps/python/echo_server.py");
    let app = App::new(&format!("web: exec {}\ntcp: exec python3 {}\n", example("web"), echo.display()));
    let base = free_base_port(2, 1).to_string();
    let mut child = Command::new(BIN)
        .args(["start", "-p", &base, "--web-listen", "127.0.0.1:0", "--tcp-listen", "127.0.0.1:0", "--grace", "3s"])
        .current_dir(app.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // The output is read until both types are routed, then left unread until `resume`.
    let (lines, seen) = mpsc::channel();
    let (resume, resumed) = mpsc::channel::<()>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut routed = 0;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            routed += usize::from(line.contains("201 app connected"));
            let _ = lines.send(line);
            if routed == 2 {
                routed += 1;
                let _ = resumed.recv();
            }
        }
    });
    let (mut router, mut gateway) = (None, None);
    let deadline = Instant::now() + DEADLINE;
    let mut routed = 0;
    while routed < 2 {
        let line = seen.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("procgate's start");
        let address = |prefix: &str| line.split(prefix).nth(1)?.split(' ').next()?.parse::<SocketAddr>().ok();
        router = router.or_else(|| address("router http://"));
        gateway = gateway.or_else(|| address("gateway tcp://"));
        routed += usize::from(line.contains("201 app connected"));
    }
    let (router, gateway) = (router.unwrap(), gateway.unwrap());

    let started = Instant::now();
    let http: Vec<_> = (0..HTTP_CLIENTS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut http = Http::connect(router);
                (0..REQUESTS_EACH).filter(|_| http.get("/", "").status == 200).count()
            })
        })
        .collect();
    let mut tcp_served = 0;
    for _ in 0..TCP_CLIENTS {
        let mut client = Client::connect(gateway).unwrap();
        client.greeting().unwrap();
        client.send("ping");
        tcp_served += usize::from(client.line() == "ping");
    }
    let http_served: usize = http.into_iter().map(|t| t.join().unwrap()).sum();
    let took = started.elapsed();
    assert_eq!(http_served, HTTP_CLIENTS * REQUESTS_EACH);
    assert_eq!(tcp_served, TCP_CLIENTS);

    resume.send(()).unwrap();
    let dropped = loop {
        let line = seen.recv_timeout(DEADLINE).expect("the dropped lines are said once the output flows");
        if let Some(count) = line.split("log output stalled: ").nth(1) {
            break count.split(' ').next().unwrap().parse::<u64>().unwrap();
        }
    };
    assert!(dropped > 0);
    eprintln!(
        "stdout unread: {http_served} requests and {tcp_served} TCP connections served in {took:?}; {dropped} lines dropped"
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    while !seen.recv_timeout(DEADLINE).expect("procgate stops").contains("tcp.1 exited with code") {}
    assert!(child.wait().unwrap().success());
}
