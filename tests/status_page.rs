//! The live status page in a real headless Chromium (driven through chromedriver's WebDriver
//! HTTP API): it loads, shows `web.1 up`, and after `procgate restart` shows the new instance
//! without a reload; its buttons refuse a request without the token. The screenshot is saved
//! next to the test's build (`status-page.png`).

mod common;
use common::needs::needs;
use common::{App, DEADLINE};
use nix::sys::signal::Signal;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// One HTTP/1.1 request with a JSON body; the answer's status and body.
fn request(addr: SocketAddr, method: &str, path: &str, body: &str, headers: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(DEADLINE)).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body.as_bytes()).ok()?;
    // chromedriver keeps the connection open: the body is read by its length.
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let status = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let Some((name, value)) = line.trim_end().split_once(':') else { break };
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((status, String::from_utf8(body).ok()?))
}

/// chromedriver with one headless Chromium session, both ended when dropped.
struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let addr = free_addr();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={}", addr.port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // From here on, the driver is stopped however the test ends.
        let mut browser = Browser { driver, addr, session: String::new(), _profile: tempfile::tempdir().unwrap() };
        let deadline = Instant::now() + DEADLINE;
        while request(addr, "GET", "/status", "", "").is_none() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let args = serde_json::json!([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1000,800",
            format!("--user-data-dir={}", browser._profile.path().display())
        ]);
        let capabilities = serde_json::json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args } } } });
        let (_, body) = request(addr, "POST", "/session", &capabilities.to_string(), "").unwrap();
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        browser.session = answer["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("{answer}")).to_string();
        browser
    }

    fn call(&self, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
        let path = format!("/session/{}{path}", self.session);
        let (_, answer) = request(self.addr, method, &path, &body.to_string(), "").unwrap();
        serde_json::from_str::<serde_json::Value>(&answer).unwrap()["value"].clone()
    }

    /// The text of the element with `id`, or "" if there is none yet.
    fn text_of(&self, id: &str) -> String {
        let script = format!("const e = document.getElementById('{id}'); return e ? e.innerText : '';");
        self.call("POST", "/execute/sync", serde_json::json!({ "script": script, "args": [] }))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits until the text of `id` satisfies `wanted`; returns it.
    fn wait_for(&self, id: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let text = self.text_of(id);
            if wanted(&text) {
                return text;
            }
            assert!(Instant::now() < deadline, "#{id} never became what was wanted: {text:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = request(self.addr, "DELETE", &format!("/session/{}", self.session), "", "");
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn the_status_page_shows_the_instances_live_in_a_real_browser() {
    if !needs(&[("chromium", "chromium"), ("chromedriver", "chromium-driver")]) {
        return;
    }
    let web_app = common::repo().join("sample-apps/python/web_app.py");
    let app = App::new(&format!("web: exec python3 {}\n", web_app.display()));
    let (status, base) = (free_addr(), common::free_base_port(1, 2).to_string());
    let args = ["start", "-p", &base, "--status-listen", &status.to_string(), "--status-token", "s3cret"];
    let mut running = app.spawn(&args);
    let line = running.wait_for("router http://");
    let router: SocketAddr = line.split("router http://").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    running.wait_for("201 app connected web.1");
    assert!(!running.seen.iter().any(|l| l.contains("s3cret")), "the token is never logged");

    let browser = Browser::start();
    browser.call("POST", "/url", serde_json::json!({ "url": format!("http://{status}/") }));
    let before = browser.wait_for("instance-web.1", |row| row.contains("\tup\t"));
    let restart = app.run(&["restart", "web"]);
    assert_eq!(restart.code(), Some(0), "{}", restart.text());
    // A new pid, without a reload (a row the page drew from a moment before the switch may come
    // first: it differs by its uptime only).
    let pid = |row: &str| row.split('\t').nth(2).map(str::to_string);
    browser.wait_for("instance-web.1", |row| row.contains("\tup\t") && pid(row) != pid(&before));
    browser.wait_for("events", |events| events.contains("restart of web done"));
    for _ in 0..40 {
        let answer = common::http_client::Http::connect(router).get("/", "");
        assert_eq!(answer.status, 200);
        std::thread::sleep(Duration::from_millis(50));
    }
    browser.wait_for("summary", |summary| summary.contains("1 of 1 instances up"));
    let png = browser.call("GET", "/screenshot", serde_json::json!({}));
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let decode = "import base64, sys; open(sys.argv[1], 'wb').write(base64.b64decode(sys.stdin.read()))";
    let mut python = Command::new("python3").args(["-c", decode]).arg(&shot).stdin(Stdio::piped()).spawn().unwrap();
    python.stdin.take().unwrap().write_all(png.as_str().unwrap().as_bytes()).unwrap();
    assert!(python.wait().unwrap().success() && std::fs::metadata(&shot).unwrap().len() > 1000);

    let refused = request(status, "POST", "/restart", "{}", "").unwrap();
    assert_eq!(refused.0, 403, "{refused:?}");
    let wrong = request(status, "POST", "/scale", r#"{"web":2}"#, "Authorization: Bearer guess\r\n").unwrap();
    assert_eq!(wrong.0, 403, "{wrong:?}");
    let scaled = request(status, "POST", "/scale", r#"{"web":2}"#, "Authorization: Bearer s3cret\r\n").unwrap();
    assert_eq!(scaled.0, 200, "{scaled:?}");
    browser.wait_for("instance-web.2", |row| row.contains("\tup\t"));
    running.signal(Signal::SIGINT);
    running.finish(DEADLINE);
}
