//! The HTTP router for `web` through the binary: HTTP health checks, balancing per request,
//! forwarded headers, the request head limit, upgrades kept on their instance, H10/H12, the router log line, restarts
//! of web without a lost request, and for an app that stops answering: out of routing, and R16 only when asked.

mod common;
use common::http_client::{Answer, Http};
use common::{free_base_port, App, Running, DEADLINE};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn web_app(extra: &str) -> App {
    let web = common::repo().join("sample-apps/python/web_app.py");
    App::new(&format!("web: echo url=$PORT; exec python3 {}\n{extra}", web.display()))
}

/// Starts procgate with `formation`; returns it and the router's address.
fn start(app: &App, formation: &str, extra: &[&str]) -> (Running, SocketAddr) {
    let base = free_base_port(2, 4).to_string();
    let mut args = vec!["start", "-m", formation, "-p", &base, "--web-listen", "127.0.0.1:0", "--grace", "3s"];
    args.extend_from_slice(extra);
    let mut running = app.spawn(&args);
    let line = running.wait_for("router http://");
    let addr = line.split("router http://").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    (running, addr)
}

fn get(addr: SocketAddr, path: &str) -> Answer {
    Http::connect(addr).get(path, "")
}

#[test]
fn requests_spread_over_three_instances_with_forwarded_headers_and_a_log_line() {
    let app = web_app("");
    let (mut running, addr) = start(&app, "web=3", &[]);
    for i in 1..=3 {
        running.wait_for(&format!("201 app connected web.{i}"));
    }
    let mut http = Http::connect(addr);
    let mut served: HashMap<String, usize> = HashMap::new();
    for _ in 0..30 {
        let answer = http.get("/", "");
        assert_eq!(answer.status, 200);
        *served.entry(answer.body.split_whitespace().nth(2).unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(
        served.values().copied().collect::<Vec<_>>(),
        [10, 10, 10],
        "per request, over one kept-alive connection: {served:?}"
    );
    let given =
        "X-Request-Id: given-id-1\r\nX-Forwarded-For: 10.0.0.9\r\nX-Forwarded-For: 10.0.0.10\r\nVia: 1.0 corp\r\n\
                 X-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\n";
    let headers = http.get("/headers", given).body;
    assert!(headers.contains("x-forwarded-for: 10.0.0.9, 10.0.0.10, 127.0.0.1"), "{headers}");
    assert!(headers.contains("via: 1.0 corp, 1.1 procgate"), "{headers}");
    assert!(headers.contains("x-request-id: given-id-1"), "{headers}");
    let lines: Vec<&str> = headers.lines().collect();
    let port = format!("x-forwarded-port: {}", addr.port());
    assert!(
        lines.contains(&"x-forwarded-proto: http") && lines.contains(&port.as_str()),
        "a client's own are replaced: {headers}"
    );
    let large = format!("X-Large: {}\r\n", "a".repeat(60_000));
    assert_eq!(Http::connect(addr).get("/", &large).status, 200, "a 60 KB head goes through");
    // Four lines the app would take (each under its 64 KiB line limit), 200 KB in all.
    let too_large: String = (0..4).map(|i| format!("X-Large-{i}: {}\r\n", "a".repeat(50_000))).collect();
    assert_eq!(Http::connect(addr).get("/", &too_large).status, 431, "over the router's 128 KiB buffer");
    let made = http.get("/headers", "").body;
    assert!(made.contains("via: 1.1 procgate\n") && made.contains("x-forwarded-for: 127.0.0.1\n"), "{made}");
    let id = made.lines().find_map(|l| l.strip_prefix("x-request-id: ")).unwrap();
    assert!(id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()), "a request id is made: {id}");
    let line = running.wait_for("request_id=given-id-1");
    let expected =
        "at=info method=GET path=\"/headers\" host=procgate.test request_id=given-id-1 fwd=\"127.0.0.1\" dyno=web.";
    assert!(
        line.contains(expected) && line.contains(" status=200 bytes=") && line.ends_with(" protocol=http"),
        "{line}"
    );
}

#[test]
fn an_app_that_never_answers_http_is_never_routed_gets_r10_and_clients_get_h10() {
    let app = App::new("web: echo url=$PORT; exec python3 -c \"import os,socket,time; s=socket.create_server(('127.0.0.1', int(os.environ['PORT']))); time.sleep(60)\"\n");
    app.write("procgate.toml", "[types.web]\nhealth_timeout = \"200ms\"\n");
    let (mut running, addr) = start(&app, "web=1", &["--boot-timeout", "1500ms", "--wait", "300ms"]);
    let started = Instant::now();
    let answer = get(addr, "/");
    assert_eq!(answer.status, 503);
    assert_eq!(answer.headers.get("x-procgate-code").map(String::as_str), Some("H10"));
    assert!(answer.body.contains("Application Error") && started.elapsed() >= Duration::from_millis(250));
    running.wait_for("at=error code=H10 desc=\"App not available\" method=GET path=\"/\"");
    running.wait_for("R10 Boot timeout: web.1 did not pass its health check within 1500ms");
    assert!(!running.seen.iter().any(|l| l.contains("201 app connected")));
}

#[test]
fn a_slow_app_gets_h12_and_an_upgrade_stays_on_its_instance() {
    let app = web_app("");
    let (mut running, addr) = start(&app, "web=2", &["--request-timeout", "500ms"]);
    running.wait_for("201 app connected web.2");
    let answer = get(addr, "/slow?ms=3000");
    assert_eq!(answer.status, 503);
    assert_eq!(answer.headers.get("x-procgate-code").map(String::as_str), Some("H12"));
    running.wait_for("at=error code=H12 desc=\"Request timeout\" method=GET path=\"/slow?ms=3000\"");

    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 101"), "{line}");
    while line != "\r\n" {
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    let mut whoami = || {
        stream.write_all(b"whoami\n").unwrap();
        let mut answer = String::new();
        reader.read_line(&mut answer).unwrap();
        answer
    };
    let first = whoami();
    assert!(first.starts_with("web."), "{first}");
    for _ in 0..5 {
        assert_eq!(whoami(), first, "the upgraded connection stays on its instance");
    }
}

#[test]
fn restart_of_web_under_steady_requests_loses_none() {
    let app = web_app("");
    let (mut running, addr) = start(&app, "web=2", &[]);
    running.wait_for("201 app connected web.2");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let load = std::thread::spawn(move || {
        let (mut ok, mut failed) = (0, Vec::new());
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            match std::panic::catch_unwind(|| get(addr, "/")) {
                Ok(answer) if answer.status == 200 => ok += 1,
                Ok(answer) => failed.push(answer.status),
                Err(_) => failed.push(0),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (ok, failed)
    });
    std::thread::sleep(Duration::from_millis(500));
    let restart = app.run(&["restart", "web"]);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failed) = load.join().unwrap();
    assert_eq!(restart.code(), Some(0), "{}", restart.text());
    assert!(failed.is_empty(), "{ok} served, failed: {failed:?}");
    eprintln!("restart of web under load: {ok} requests served, {} failed", failed.len());
}

#[test]
fn a_web_instance_that_stops_answering_leaves_routing_and_by_default_is_not_restarted() {
    let app = web_app("");
    app.write("procgate.toml", "[types.web]\nhealth_interval = \"200ms\"\n");
    let (mut running, addr) = start(&app, "web=1", &["--wait", "1s"]);
    running.wait_for("201 app connected web.1");
    let pid = running.pid_of("web.1");
    assert_eq!(get(addr, "/break").status, 200);
    running.wait_for("web.1 failed 2 HTTP checks (GET /) in a row");
    running.wait_for("204 app disconnected web.1 (health check failed");
    let answer = get(addr, "/");
    assert_eq!((answer.status, answer.headers.get("x-procgate-code").map(String::as_str)), (503, Some("H10")));
    assert!(!running.seen.iter().any(|l| l.contains("R16")), "{}", running.seen.join("\n"));
    assert!(common::alive(pid), "readiness only: the busy or broken app keeps running");
}

#[test]
fn with_restart_unhealthy_after_an_instance_failing_its_checks_that_long_is_restarted() {
    let app = web_app("");
    app.write("procgate.toml", "[types.web]\nhealth_interval = \"200ms\"\nrestart_unhealthy_after = \"1s\"\n");
    let (mut running, addr) = start(&app, "web=1", &[]);
    running.wait_for("201 app connected web.1");
    let pid = running.pid_of("web.1");
    assert_eq!(get(addr, "/break").status, 200);
    running.wait_for("204 app disconnected web.1 (health check failed");
    running.wait_for("R16 Unresponsive: web.1 failed its health checks for 1s; restarting it");
    running.wait_for("web.1 crashed; restarting in 1s");
    running.wait_for_nth("201 app connected web.1", 2, DEADLINE);
    let answer = get(addr, "/");
    assert_eq!(answer.status, 200);
    assert!(!answer.body.contains(&pid.to_string()), "a new process serves: {}", answer.body);
}

#[test]
fn a_backlog_flood_gets_503_h11_past_the_cap_and_the_queue() {
    let app = web_app("");
    app.write("procgate.toml", "[types.web]\nmax_per_instance = 2\nbacklog = 1\n");
    let (mut running, addr) = start(&app, "web=1", &[]);
    running.wait_for("201 app connected web.1");
    let clients: Vec<_> = (0..6)
        .map(|i| {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(if i < 2 { 0 } else { 300 }));
                let answer = get(addr, "/slow?ms=1500");
                (answer.status, answer.headers.get("x-procgate-code").cloned())
            })
        })
        .collect();
    let answers: Vec<(u16, Option<String>)> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let served = answers.iter().filter(|(status, _)| *status == 200).count();
    let refused = answers.iter().filter(|(status, code)| *status == 503 && code.as_deref() == Some("H11")).count();
    assert_eq!((served, refused), (3, 3), "2 at the cap, 1 queued then served, the rest H11: {answers:?}");
    running.wait_for("at=error code=H11 desc=\"Backlog too deep\" method=GET path=\"/slow?ms=1500\"");
}

#[test]
fn an_instance_silent_mid_response_is_cut_with_h15() {
    let app = web_app("");
    let (mut running, addr) = start(&app, "web=1", &["--router-idle-timeout", "300ms"]);
    running.wait_for("201 app connected web.1");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(b"GET /stall HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let started = Instant::now();
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200") && text.ends_with("partial..."), "{text}");
    assert!(started.elapsed() < Duration::from_secs(4), "cut by the router, not by the app's end");
    running.wait_for("at=error code=H15 desc=\"Idle connection\" method=GET path=\"/stall\"");
}

#[test]
fn a_client_that_stops_reading_its_response_is_cut_with_h28() {
    let app = web_app("");
    let (mut running, addr) = start(&app, "web=1", &["--router-idle-timeout", "1s"]);
    running.wait_for("201 app connected web.1");
    let mut stuck = TcpStream::connect(addr).unwrap();
    stuck.write_all(b"GET /big?mb=200 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // It held the instance's connection (and its place under any cap) for as long as it stayed.
    running.wait_for("at=error code=H28 desc=\"Client Connection Idle\" method=GET path=\"/big?mb=200\"");
    stuck.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut received = Vec::new();
    let ended = stuck.read_to_end(&mut received);
    assert!(!matches!(&ended, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock), "closed by the router: {ended:?}");
    assert!(received.len() < 200_000_000, "cut before the end: {} bytes", received.len());
    assert_eq!(get(addr, "/").status, 200, "the router goes on");
}

#[test]
fn a_client_that_half_closes_after_its_request_gets_its_response() {
    let app = web_app("");
    let (mut running, addr) = start(&app, "web=1", &[]);
    running.wait_for("201 app connected web.1");
    for path in ["/", "/slow?ms=300"] {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut received = String::new();
        let _ = stream.read_to_string(&mut received);
        assert!(received.starts_with("HTTP/1.1 200") && received.contains("hello from web.1"), "{path}: {received:?}");
    }
}

#[test]
fn a_malformed_request_body_is_the_clients_h27_not_the_apps_h13_and_a_bad_head_is_b400() {
    let app = web_app("");
    let (mut running, addr) = start(&app, "web=1", &[]);
    running.wait_for("201 app connected web.1");
    // The app reads the body: it gets none, and its connection ends without an answer.
    let chunked = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(chunked.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400 ") && answer.contains("x-procgate-code: H27"), "{answer}");
    running.wait_for("at=error code=H27 desc=\"Client Request Interrupted\" method=POST path=\"/echo\"");
    assert!(!running.seen.iter().any(|l| l.contains("code=H13")), "the app is not blamed");
    let answer = Http::connect(addr).post("/echo", "well formed");
    assert_eq!((answer.status, answer.body.as_str()), (200, "well formed"), "the router goes on");
    // A head that does not parse never reaches an app, and is counted and logged (B400).
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(b"GARBAGE\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    running.wait_for("at=error code=B400 desc=\"Bad request head\" fwd=\"127.0.0.1\"");
}

#[test]
fn an_instance_that_closes_without_an_answer_gives_h13_and_mid_answer_h18() {
    let app = web_app("");
    let (mut running, addr) = start(&app, "web=1", &[]);
    running.wait_for("201 app connected web.1");
    let answer = get(addr, "/drop");
    assert_eq!(answer.status, 503);
    assert_eq!(answer.headers.get("x-procgate-code").map(String::as_str), Some("H13"));
    running.wait_for("at=error code=H13 desc=\"Connection closed without response\" method=GET path=\"/drop\"");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(b"GET /cut HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    assert!(String::from_utf8_lossy(&received).ends_with("partial..."), "the cut answer is passed on, then closed");
    running.wait_for("at=error code=H18 desc=\"Server Request Interrupted\" method=GET path=\"/cut\"");
    assert_eq!(get(addr, "/").status, 200, "the router goes on");
}

#[test]
fn a_slow_head_gets_408_and_h28_idle_connections_close_and_a_slow_response_is_not_cut() {
    let app = web_app("");
    let timeouts = ["--head-timeout", "1s", "--keepalive-timeout", "2s"];
    let (mut running, addr) = start(&app, "web=1", &timeouts);
    running.wait_for("201 app connected web.1");
    let read_all = |stream: &mut TcpStream| {
        let mut rest = String::new();
        let started = Instant::now();
        stream.read_to_string(&mut rest).unwrap();
        (rest, started.elapsed())
    };
    // Slowloris: a head that never ends.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(DEADLINE)).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let (answer, took) = read_all(&mut slow);
    assert!(answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{answer:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    running.wait_for("at=error code=H28 desc=\"Client Connection Idle\"");
    // A connection that never sends a byte is closed after the head's time, without an answer.
    let mut silent = TcpStream::connect(addr).unwrap();
    silent.set_read_timeout(Some(DEADLINE)).unwrap();
    let (answer, took) = read_all(&mut silent);
    assert_eq!((answer.as_str(), took < Duration::from_secs(3)), ("", true), "{took:?}");
    // A slow response (longer than both client timeouts) is served whole; then the kept-alive
    // connection waits for its next request for the keep-alive time, and is closed.
    let mut http = Http::connect(addr);
    let answer = http.get("/slow?ms=2500", "");
    assert_eq!(answer.status, 200);
    let idle = Instant::now();
    let mut rest = String::new();
    http.reader.read_to_string(&mut rest).unwrap();
    let idle = idle.elapsed();
    assert!(rest.is_empty() && idle >= Duration::from_millis(1500) && idle < Duration::from_secs(4), "{idle:?}");
}

/// An app that answers every request with the headers it got, one per line, and hop-by-hop
/// headers of its own: `Connection: close, X-Internal`, `X-Internal`, `Keep-Alive`,
/// `Proxy-Connection`; it closes each connection after its answer.
const HOP_BY_HOP_APP: &str = r#"
import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args): pass
    def do_GET(self):
        body = "".join(f"{k.lower()}: {v}\n" for k, v in self.headers.items()).encode()
        self.send_response(200)
        for name, value in [("Content-Length", str(len(body))), ("Connection", "close, X-Internal"),
                            ("X-Internal", "secret"), ("Keep-Alive", "timeout=5"), ("Proxy-Connection", "close")]:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

#[test]
fn hop_by_hop_headers_stop_at_the_router_both_ways_and_an_apps_close_is_its_own() {
    let app = App::new("web: exec python3 hop.py\n");
    app.write("hop.py", HOP_BY_HOP_APP);
    let (mut running, addr) = start(&app, "web=1", &[]);
    running.wait_for("201 app connected web.1");
    let mut http = Http::connect(addr);
    let hop = "Connection: X-Client-Secret\r\nX-Client-Secret: 1\r\nKeep-Alive: 300\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n";
    for _ in 0..2 {
        let answer = http.get("/", hop);
        assert_eq!(answer.status, 200, "the client's kept-alive connection survives the app's close");
        for name in ["connection", "x-client-secret", "keep-alive", "proxy-connection", "te"] {
            assert!(!answer.body.contains(&format!("\n{name}:")), "{name} reached the app:\n{}", answer.body);
        }
        for name in ["connection", "x-internal", "keep-alive", "proxy-connection"] {
            assert!(!answer.headers.contains_key(name), "{name} reached the client: {:?}", answer.headers);
        }
    }
}

#[test]
fn a_bad_host_gets_400_and_stays_out_of_the_log_and_a_bad_request_id_is_replaced() {
    let app = web_app("");
    let (mut running, addr) = start(&app, "web=1", &[]);
    running.wait_for("201 app connected web.1");
    for head in ["Host: evil host", "Host: evil\"host", "Host: a.test\r\nHost: b.test"] {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.write_all(format!("GET / HTTP/1.1\r\n{head}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 400 "), "{head:?}: {answer}");
        let line = running.wait_for("at=error code=H25 desc=\"Bad Host header\"");
        assert!(line.contains(" host=- ") && !line.contains("evil"), "{line}");
        running.seen.clear();
    }
    // HTTP/1.1 requires a Host (RFC 9112 §3.2); HTTP/1.0 does not.
    for (head, status) in [("GET / HTTP/1.1", "HTTP/1.1 400 "), ("GET / HTTP/1.0", "HTTP/1.0 200 ")] {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with(status), "{head}: {answer}");
    }
    // An absolute-form target names the host; the app gets the origin form (RFC 9112 §3.2.2).
    let answer = Http::connect(addr).get("http://app.test:8080/headers?a=1", "");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.lines().any(|l| l == "host: app.test:8080"), "{}", answer.body);
    running.wait_for("method=GET path=\"/headers?a=1\" host=app.test:8080");
    let answer = Http::connect(addr).get("/headers", "X-Request-Id: id\" status=200 x=\r\n");
    let id = answer.body.lines().find_map(|l| l.strip_prefix("x-request-id: ")).unwrap().to_string();
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
}

/// An app that closes a connection idle for 1 s (and says nothing of it in `Keep-Alive`), 50 ms
/// after it stopped reading from it, as a busy app does: a request sent meanwhile is lost.
const IDLE_CLOSING_APP: &str = r#"
import http.server, os, time
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 1
    def log_message(self, *args): pass
    def handle(self):
        super().handle()
        time.sleep(0.05)
    def do_GET(self):
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024
Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

#[test]
fn the_pool_never_races_an_apps_idle_close_over_ten_thousand_requests_at_random_gaps() {
    use rand::Rng;
    const CLIENTS: usize = 500;
    const REQUESTS_EACH: usize = 20;
    let app = App::new("web: exec python3 idle.py\n");
    app.write("idle.py", IDLE_CLOSING_APP);
    let (mut running, addr) = start(&app, "web=1", &[]);
    running.wait_for("201 app connected web.1");
    // Gaps about the app's 1 s: pooled connections are reused at the age it closes them.
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut http = Http::connect(addr);
                let mut failed = Vec::new();
                for _ in 0..REQUESTS_EACH {
                    std::thread::sleep(Duration::from_millis(rand::thread_rng().gen_range(900..1100)));
                    let answer = http.get("/", "");
                    if answer.status != 200 {
                        failed.push(format!("{} {:?}", answer.status, answer.headers.get("x-procgate-code")));
                    }
                }
                failed
            })
        })
        .collect();
    let failed: Vec<String> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        CLIENTS * REQUESTS_EACH,
        &failed[..failed.len().min(10)]
    );
    assert!(!running.seen.iter().any(|l| l.contains("code=H13")), "{}", running.seen.join("\n"));
}

#[test]
fn behind_a_trusted_load_balancer_its_forwarded_proto_and_port_are_kept() {
    let app = web_app("");
    app.write("procgate.toml", "[types.web]\naccept_proxy = true\ntrusted_proxies = [\"127.0.0.1/32\"]\n");
    let (mut running, addr) = start(&app, "web=1", &[]);
    running.wait_for("201 app connected web.1");
    let mut http = Http::connect(addr);
    http.reader.get_mut().write_all(b"PROXY TCP4 203.0.113.7 198.51.100.1 5555 443\r\n").unwrap();
    let headers = http.get("/headers", "X-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\n").body;
    let lines: Vec<&str> = headers.lines().collect();
    for kept in ["x-forwarded-proto: https", "x-forwarded-port: 443", "x-forwarded-for: 203.0.113.7"] {
        assert!(lines.contains(&kept), "{kept}: {headers}");
    }
}
