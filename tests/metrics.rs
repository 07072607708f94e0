//! Prometheus metrics: `--metrics-listen` scraped by a real Prometheus server started here, and
//! a counter queried back through its HTTP API after traffic through the gateway.

mod common;
use common::http_client::Http;
use common::needs::needs;
use common::{echo_app, DEADLINE};
use nix::sys::signal::Signal;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port.
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A Prometheus server scraping `target` every second, stopped when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn scraping(target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: procgate\n    static_configs:\n      - targets: ['{target}']\n"
        );
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let addr = free_addr();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Prometheus { child, addr, _dir: dir }
    }

    /// The value of `query` as Prometheus answers it now, if it has one.
    fn value(&self, query: &str) -> Option<f64> {
        let mut http = TcpStream::connect(self.addr).ok().map(|_| Http::connect(self.addr))?;
        let encoded: String = query
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        let answer = http.get(&format!("/api/v1/query?query={encoded}"), "");
        let json: serde_json::Value = serde_json::from_str(&answer.body).ok()?;
        json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `query` reaches `at_least`.
    fn wait_for(&self, query: &str, at_least: f64) -> f64 {
        let deadline = Instant::now() + DEADLINE * 2;
        while Instant::now() < deadline {
            if let Some(value) = self.value(query).filter(|v| *v >= at_least) {
                return value;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("{query} never reached {at_least}: {:?}", self.value(query));
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_the_metrics_and_counts_the_connections_served() {
    if !needs(&[("prometheus", "prometheus")]) {
        return;
    }
    let app = echo_app("");
    let metrics = free_addr();
    let (mut running, gateway) = common::start_gateway(&app, "tcp=1", &["--metrics-listen", &metrics.to_string()]);
    running.wait_for("201 app connected tcp.1");
    for _ in 0..5 {
        let stream = TcpStream::connect(gateway).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut greeting = String::new();
        BufReader::new(stream).read_line(&mut greeting).unwrap();
    }
    let prometheus = Prometheus::scraping(metrics);
    let served = prometheus.wait_for(r#"procgate_route_connections_total{route="tcp",outcome="served"}"#, 5.0);
    assert_eq!(served, 5.0);
    assert_eq!(prometheus.value(r#"procgate_instance_state{dyno="tcp.1",state="up"}"#), Some(1.0));
    assert!(prometheus.value("procgate_route_connect_seconds_count").is_some_and(|n| n >= 5.0));
    running.signal(Signal::SIGINT);
    running.finish(DEADLINE);
}

/// `GET /metrics` on the control socket of the app in `root`.
fn scrape_control_socket(root: &std::path::Path) -> String {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(root.join(".procgate/control.sock")).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: procgate\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn the_control_socket_serves_the_metrics_with_the_routers_error_codes() {
    let web_app = common::repo().join("sample-apps/python/web_app.py");
    let app = common::App::new(&format!("web: exec python3 {}\n", web_app.display()));
    let base = common::free_base_port(1, 1).to_string();
    let mut running = app.spawn(&["start", "-m", "web=0", "-p", &base, "--wait", "100ms"]);
    let line = running.wait_for("router http://");
    let router: SocketAddr = line.split("router http://").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    let answer = Http::connect(router).get("/", "");
    assert_eq!(answer.status, 503);
    let metrics = scrape_control_socket(app.path());
    assert!(metrics.contains("content-type: application/openmetrics-text"), "{metrics}");
    assert!(metrics.contains(r#"procgate_route_requests_total{route="web",outcome="H10"} 1"#), "{metrics}");
    assert!(metrics.contains("procgate_log_lines_dropped_total 0"), "{metrics}");
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");

    let scale = app.run(&["scale", "web=1"]);
    assert_eq!(scale.code(), Some(0), "{}", scale.text());
    running.wait_for("201 app connected web.1");
    let mut post = TcpStream::connect(router).unwrap();
    post.set_read_timeout(Some(DEADLINE)).unwrap();
    std::io::Write::write_all(
        &mut post,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut post, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("\r\n\r\nhello"), "the app answered: {answer}");
    let metrics = scrape_control_socket(app.path());
    assert!(metrics.contains(r#"procgate_route_bytes_total{route="web",direction="in"} 5"#), "{metrics}");
    assert!(metrics.contains(r#"procgate_route_requests_total{route="web",outcome="served"} 1"#), "{metrics}");
    running.signal(Signal::SIGINT);
    running.finish(DEADLINE);
}

#[test]
fn kept_alive_scrapers_filling_every_place_cannot_lock_a_new_one_out() {
    let app = echo_app("");
    let metrics = free_addr();
    let (running, _) = common::start_gateway(&app, "tcp=1", &["--metrics-listen", &metrics.to_string()]);
    // The metrics listener's 16 places, each held by a kept-alive connection after one scrape.
    let mut held: Vec<Http> = (0..16).map(|_| Http::connect(metrics)).collect();
    for scraper in &mut held {
        assert_eq!(scraper.get("/metrics", "").status, 200);
    }
    // A 17th scraper takes the place of the one idle longest once that one has been idle a
    // second; before, it waited until one of them had been idle 10 s (and for ever if they
    // scraped more often than that).
    let started = Instant::now();
    assert_eq!(Http::connect(metrics).get("/metrics", "").status, 200);
    assert!(started.elapsed() < Duration::from_secs(8), "waited {:?}", started.elapsed());
    running.signal(Signal::SIGINT);
    running.finish(DEADLINE);
}
