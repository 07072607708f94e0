//! The ready-made apps of `procfiles/` through the binary and its gateway, each with its own
//! client: Mosquitto with mosquitto_sub and mosquitto_pub (MQTT), an HTTP/2 service with curl
//! and node (h2c, GOAWAY on stop), and an app written for Heroku's Ruppell's Sockets on the `socket` route. Each
//! then stops cleanly: its instance exits 0 within the grace and procgate exits 0. A missing tool
//! skips its test with the Debian package to install (`common::needs`; `.ci/run` installs them).

mod common;
use common::needs::needs;
use common::{free_base_port, App, Finished, Running, DEADLINE};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};

/// Starts the app on free ports and returns procgate with the address of `kind`'s route, once
/// `kind.1` has joined it.
fn start(app: &App, kind: &str) -> (Running, SocketAddr) {
    let base = free_base_port(1, 1).to_string();
    let mut running = app.spawn(&["start", "-p", &base, "--grace", "10s"]);
    let line = running.wait_for("starting app in ");
    let route = line.split("; ").find(|part| part.ends_with(&format!(" for {kind}")));
    let addr = route.and_then(|r| r.strip_prefix("gateway tcp://")?.split(' ').next()?.parse().ok());
    let addr = addr.unwrap_or_else(|| panic!("no gateway for {kind} in: {line}"));
    running.wait_for(&format!("201 app connected {kind}.1 "));
    (running, addr)
}

/// `procgate stop`, then procgate's own end: `kind.1` exited 0 within the grace, procgate 0.
fn stop(app: &App, running: Running, kind: &str) -> Finished {
    let stop = app.run(&["stop"]);
    assert_eq!(stop.code(), Some(0), "{}", stop.text());
    let finished = running.finish(DEADLINE);
    assert_eq!(finished.code(), Some(0), "{}", finished.text());
    assert!(finished.has(&format!("system | {kind}.1 exited with code 0")), "{}", finished.text());
    finished
}

/// A client program, its output read line by line with deadlines.
fn client(program: &str, args: &[&str]) -> Running {
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    Running::watch(command.spawn().unwrap_or_else(|e| panic!("cannot run {program}: {e}")))
}

#[test]
fn mosquitto_delivers_a_published_message_to_a_subscriber_through_the_gateway() {
    let mqtt =
        [("mosquitto", "mosquitto"), ("mosquitto_sub", "mosquitto-clients"), ("mosquitto_pub", "mosquitto-clients")];
    if !needs(&mqtt) {
        return;
    }
    let app = App::from_procfiles("mqtt");
    let (running, addr) = start(&app, "tcp");
    let port = addr.port().to_string();
    // With -d the subscriber prints its protocol steps (line-buffered by stdbuf, as on a
    // terminal): publish once the broker has acknowledged the subscription.
    let sub_args = ["-oL", "mosquitto_sub", "-d", "-h", "127.0.0.1", "-p", &port, "-t", "demo", "-C", "1", "-W", "20"];
    let mut sub = client("stdbuf", &sub_args);
    sub.wait_for("received SUBACK");
    let publish = client("mosquitto_pub", &["-h", "127.0.0.1", "-p", &port, "-t", "demo", "-m", "hello via procgate"]);
    let publish = publish.finish(DEADLINE);
    assert_eq!(publish.code(), Some(0), "{}", publish.text());
    let sub = sub.finish(DEADLINE);
    assert_eq!(sub.code(), Some(0), "{}", sub.text());
    assert!(sub.lines.iter().any(|l| l == "hello via procgate"), "{}", sub.text());
    let finished = stop(&app, running, "tcp");
    let terminating = |l: &String| l.contains("| mosquitto version") && l.ends_with(" terminating");
    assert!(finished.lines.iter().any(terminating), "mosquitto's own clean exit: {}", finished.text());
}

#[test]
fn an_http2_service_answers_curl_and_multiplexes_streams_through_the_gateway() {
    if !needs(&[("node", "nodejs"), ("curl", "curl")]) {
        return;
    }
    let app = App::from_procfiles("http2");
    let (running, addr) = start(&app, "tcp");
    let url = format!("http://{addr}/");
    let curl = client("curl", &["-sS", "--http2-prior-knowledge", "-w", "%{http_version}\n", &url]).finish(DEADLINE);
    assert_eq!(curl.code(), Some(0), "{}", curl.text());
    assert_eq!(curl.lines, ["hello over HTTP/2 from tcp.1", "stream 1 on this connection", "2"]);
    // Two requests at once on one connection, which then stays open: two HTTP/2 streams in one
    // proxied TCP connection, and the GOAWAY of the graceful stop.
    let two_streams = "const session = require('node:http2').connect(process.argv[1]);
        session.on('goaway', () => console.log('goaway received'));
        for (const _ of [1, 2]) {
          session.request({ ':path': '/' }).setEncoding('utf8').on('data', (text) => process.stdout.write(text));
        }";
    let mut node = client("node", &["-e", two_streams, &url]);
    node.wait_for("stream 1 on this connection");
    node.wait_for("stream 2 on this connection");
    let finished = stop(&app, running, "tcp");
    assert!(finished.has("tcp.1 | SIGTERM received: GOAWAY to "), "{}", finished.text());
    node.wait_for("goaway received");
    let node = node.finish(DEADLINE);
    assert_eq!(node.code(), Some(0), "the client saw its connection end cleanly: {}", node.text());
}

#[test]
fn a_ruppells_sockets_app_runs_unchanged_on_the_socket_route() {
    let app = App::from_procfiles("ruppells");
    // No flag sets the listen address of a type other than `tcp`: a free port in the copy's file.
    let toml = std::fs::read_to_string(app.path().join("procgate.toml")).unwrap();
    assert!(toml.contains("listen = \"127.0.0.1:20004\""), "{toml}");
    app.write("procgate.toml", &toml.replace("127.0.0.1:20004", "127.0.0.1:0"));
    let (running, addr) = start(&app, "socket");
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = || {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        line
    };
    assert_eq!(line(), format!("welcome to tcp://{addr} (socket.1)\n"), "RUPPELLS_SOCKETS_FRONTEND_URI");
    (&stream).write_all(b"hello from a heroku app\n").unwrap();
    assert_eq!(line(), "HELLO FROM A HEROKU APP\n");
    // Stopped with the client still connected: the app says bye and closes it, within the grace.
    let finished = stop(&app, running, "socket");
    assert!(finished.has("socket.1 | SIGTERM received: closing "), "{}", finished.text());
    assert_eq!(line(), "bye\n");
    assert_eq!(line(), "", "closed");
}
