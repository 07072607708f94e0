//! Client addresses and limits through the binary: PROXY protocol to instances (a sample app and
//! nginx), PROXY headers from a load balancer, caps with a bounded queue (H11), per-client rate
//! limits (T429), and a bounded table of clients under a flood of addresses.

mod common;
use common::needs::{needs, NGINX_STREAM};
use common::{connect_from, ps, start_gateway, App, Running, DEADLINE};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};

fn proxy_app(settings: &str) -> App {
    let app_path = common::repo().join("sample-apps/python/proxy_echo.py");
    let app = App::new(&format!("tcp: echo url=$TCP_URL; exec python3 {}\n", app_path.display()));
    app.write("procgate.toml", &format!("[types.tcp]\n{settings}"));
    app
}

fn start(app: &App) -> (Running, SocketAddr) {
    let (mut running, addr) = start_gateway(app, "tcp=1", &[]);
    running.wait_for("201 app connected tcp.1");
    (running, addr)
}

fn first_line(stream: &TcpStream) -> String {
    let mut line = String::new();
    let _ = BufReader::new(stream).read_line(&mut line);
    line.trim_end().to_string()
}

#[test]
fn an_app_sees_the_real_client_address_with_v1_and_v2() {
    for version in ["v1", "v2"] {
        let app = proxy_app(&format!("proxy_protocol = \"{version}\"\n"));
        let (mut running, addr) = start(&app);
        running.wait_for(&format!("reading PROXY {version} headers"));
        let mut client = connect_from("127.0.0.7".parse().unwrap(), addr);
        client.write_all(b"early bytes go after the header\n").unwrap();
        let mut reader = BufReader::new(client.try_clone().unwrap());
        let (mut greeting, mut echo) = (String::new(), String::new());
        reader.read_line(&mut greeting).unwrap();
        reader.read_line(&mut echo).unwrap();
        assert_eq!(greeting.trim_end(), format!("hello tcp.1, you are {}", client.local_addr().unwrap()), "{version}");
        assert_eq!(echo, "early bytes go after the header\n");
    }
}

#[test]
fn nginx_reads_the_client_address_from_procgates_header() {
    if !needs(NGINX_STREAM) {
        return;
    }
    for version in ["v2", "v1"] {
        let app = App::from_procfiles("nginx-proxy");
        app.write("procgate.toml", &format!("[types.tcp]\nproxy_protocol = \"{version}\"\n"));
        let base = common::free_base_port(1, 1).to_string();
        let mut running = app.spawn(&["start", "-p", &base]);
        let line = running.wait_for("gateway tcp://");
        let addr: SocketAddr = line.split("gateway tcp://").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        running.wait_for("201 app connected tcp.1");
        let client = connect_from("127.0.0.9".parse().unwrap(), addr);
        assert_eq!(first_line(&client), format!("nginx read {}", client.local_addr().unwrap()), "{version}");
    }
}

#[test]
fn behind_a_load_balancer_the_address_survives_two_hops_and_bad_headers_are_closed() {
    let app = proxy_app("accept_proxy = true\ntrusted_proxies = [\"127.0.0.0/8\"]\nproxy_protocol = \"v2\"\n");
    let (_running, addr) = start(&app);
    let mut balanced = TcpStream::connect(addr).unwrap();
    balanced.set_read_timeout(Some(DEADLINE)).unwrap();
    balanced.write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 4444 20003\r\nping\n").unwrap();
    let mut reader = BufReader::new(balanced);
    let mut lines = [String::new(), String::new()];
    for line in &mut lines {
        reader.read_line(line).unwrap();
    }
    assert_eq!(lines, ["hello tcp.1, you are 203.0.113.9:4444\n", "ping\n"], "the bytes after the header are kept");
    let mut bad = TcpStream::connect(addr).unwrap();
    bad.set_read_timeout(Some(DEADLINE)).unwrap();
    bad.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = bad.read_to_end(&mut rest);
    assert!(rest.is_empty(), "closed, never forwarded");
    assert_eq!(ps(&app).routes[0].bad_proxy_headers, 1);
}

#[test]
fn a_cap_of_5_with_a_queue_of_2_serves_5_queues_2_and_refuses_the_rest() {
    let app = common::echo_app("");
    app.write("procgate.toml", "[types.tcp]\nmax_per_instance = 5\nbacklog = 2\n");
    let (mut running, addr) = start(&app);
    let mut served: Vec<TcpStream> = (0..5)
        .map(|_| {
            let stream = TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(DEADLINE)).unwrap();
            assert!(first_line(&stream).starts_with("hello tcp.1"));
            stream
        })
        .collect();
    let queued: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let deadline = std::time::Instant::now() + DEADLINE;
    while ps(&app).routes[0].queued < 2 {
        assert!(std::time::Instant::now() < deadline, "two clients queued");
    }
    for _ in 0..3 {
        let refused = TcpStream::connect(addr).unwrap();
        refused.set_read_timeout(Some(DEADLINE)).unwrap();
        assert_eq!(first_line(&refused), "", "closed at once: H11");
    }
    running.wait_for_nth("H11 backlog too deep: every tcp instance at its cap, 2 waiting", 3, DEADLINE);
    served.truncate(3);
    for stream in &queued {
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        assert!(first_line(stream).starts_with("hello tcp.1"), "served once capacity frees");
    }
    let reply = ps(&app);
    assert_eq!((reply.routes[0].refused_by_cap, reply.instances[0].connections), (3, Some(5)));
}

#[test]
fn a_rate_limit_admits_the_burst_from_one_address_and_not_from_another() {
    let app = common::echo_app("");
    app.write("procgate.toml", "[types.tcp]\nrate = 10\nburst = 10\n");
    let (_running, addr) = start(&app);
    let greeted =
        (0..100).filter(|_| first_line(&connect_from("127.0.0.2".parse().unwrap(), addr)).starts_with("hello")).count();
    assert!((10..=12).contains(&greeted), "about the burst of 10 in 100: {greeted}");
    assert!(
        first_line(&connect_from("127.0.0.3".parse().unwrap(), addr)).starts_with("hello"),
        "another address is unaffected"
    );
    let refused = ps(&app).routes[0].refused_by_rate;
    assert_eq!(refused as usize, 100 - greeted);
    eprintln!("rate 10/s burst 10: {greeted} of 100 admitted from one address, {refused} refused");
}

#[test]
fn ten_thousand_client_addresses_leave_the_client_table_bounded() {
    let app = common::echo_app("");
    app.write("procgate.toml", "[types.tcp]\nrate = 1000\nburst = 1\n");
    let (running, addr) = start(&app);
    let main = running.main_pid();
    let rss = || {
        let status = std::fs::read_to_string(format!("/proc/{main}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    // One client after another (each reads its greeting), so the one Python instance keeps up.
    let flood = |first: u32| {
        for n in first..first + 10_000 {
            let client = connect_from(IpAddr::from((0x7f01_0000 + n).to_be_bytes()), addr);
            assert!(first_line(&client).starts_with("hello"));
        }
    };
    let start_rss = rss();
    flood(0);
    let warm = rss();
    flood(10_000);
    let after = rss();
    let tracked = ps(&app).routes[0].clients_tracked;
    assert!(tracked <= procgate::gateway::clients::MAX_TRACKED, "{tracked} tracked");
    assert!(after.saturating_sub(warm) < 4 * 1024, "10,000 more addresses grew RSS from {warm} kB to {after} kB");
    eprintln!("20,000 addresses: {tracked} clients tracked; RSS {start_rss} kB, {warm} kB after 10,000, {after} kB after 20,000");
}

/// A test instance: reads the PROXY header procgate writes ($PROXY_PROTOCOL) and answers one line
/// saying what it read (v2 decoded field by field, v1 as its text), then echoes one line.
const HEADER_DUMP: &str = r#"
import ipaddress, os, socketserver, struct

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"

def exact(stream, n):
    data = stream.read(n)
    if len(data) != n:
        raise EOFError
    return data

def v2(stream):
    head = exact(stream, 16)
    if head[:12] != SIGNATURE:
        return "not a v2 header"
    command, family, length = head[12], head[13], struct.unpack("!H", head[14:16])[0]
    body = exact(stream, length)
    if command == 0x20:
        return "v2 LOCAL"
    if command != 0x21:
        return f"v2 bad command {command:#x}"
    if family == 0x11 and length == 12:
        (src, dst), ports = map(ipaddress.IPv4Address, (body[0:4], body[4:8])), struct.unpack("!HH", body[8:12])
        return f"v2 TCP4 {src} {dst} {ports[0]} {ports[1]}"
    if family == 0x21 and length == 36:
        (src, dst), ports = map(ipaddress.IPv6Address, (body[0:16], body[16:32])), struct.unpack("!HH", body[32:36])
        return f"v2 TCP6 {src} {dst} {ports[0]} {ports[1]}"
    return f"v2 family {family:#x} length {length}"

class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        try:
            if os.environ.get("PROXY_PROTOCOL") == "v2":
                said = v2(self.rfile)
            else:
                said = self.rfile.readline(108).decode(errors="replace").rstrip("\r\n")
            self.wfile.write(f"{said}\n".encode())
            self.wfile.write(self.rfile.readline())
        except (EOFError, ConnectionError):
            pass

socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
with socketserver.ThreadingTCPServer(("127.0.0.1", int(os.environ["PORT"])), Handler) as server:
    server.serve_forever()
"#;

/// What the instance read from procgate's PROXY header, and the line echoed after it.
fn header_seen_by_the_instance(settings: &str, sent: &[u8]) -> (Vec<String>, String) {
    let app = App::new("tcp: echo url=$TCP_URL; exec python3 header_dump.py\n");
    app.write("header_dump.py", HEADER_DUMP);
    app.write("procgate.toml", &format!("[types.tcp]\n{settings}"));
    let (running, addr) = start(&app);
    let mut balanced = TcpStream::connect(addr).unwrap();
    balanced.set_read_timeout(Some(DEADLINE)).unwrap();
    balanced.write_all(sent).unwrap();
    let mut reader = BufReader::new(balanced);
    let mut lines = vec![String::new(), String::new()];
    for line in &mut lines {
        let _ = reader.read_line(line);
        *line = line.trim_end().to_string();
    }
    running.signal(nix::sys::signal::Signal::SIGTERM);
    (lines, running.finish(DEADLINE).text())
}

#[test]
fn a_v6_client_on_a_v4_listener_reaches_the_instance_with_the_headers_addresses() {
    let sent = b"PROXY TCP6 2001:db8::1 ::1 1234 7881\r\nping\n";
    for (version, expected) in
        [("v2", "v2 TCP6 2001:db8::1 ::1 1234 7881"), ("v1", "PROXY TCP6 2001:db8::1 ::1 1234 7881")]
    {
        let settings =
            format!("accept_proxy = true\ntrusted_proxies = [\"127.0.0.1/32\"]\nproxy_protocol = \"{version}\"\n");
        let (lines, output) = header_seen_by_the_instance(&settings, sent);
        assert_eq!(lines, [expected, "ping"], "{version}: the client and destination of the header; output:\n{output}");
        assert!(!output.contains("panicked"), "{output}");
    }
}

#[test]
fn only_trusted_proxies_may_send_a_proxy_header() {
    let app = proxy_app("accept_proxy = true\ntrusted_proxies = [\"127.0.0.1/32\"]\nproxy_protocol = \"v1\"\n");
    let (mut running, addr) = start(&app);
    let header = b"PROXY TCP4 203.0.113.9 127.0.0.1 4444 20003\r\n";
    let mut trusted = connect_from("127.0.0.1".parse().unwrap(), addr);
    trusted.write_all(header).unwrap();
    assert_eq!(first_line(&trusted), "hello tcp.1, you are 203.0.113.9:4444", "from a trusted peer");
    let mut untrusted = connect_from("127.0.0.9".parse().unwrap(), addr);
    let _ = untrusted.write_all(header);
    let mut rest = Vec::new();
    let _ = untrusted.read_to_end(&mut rest);
    assert!(rest.is_empty(), "closed, never forwarded: {:?}", String::from_utf8_lossy(&rest));
    let port = untrusted.local_addr().unwrap().port();
    running.wait_for(&format!("P403 untrusted peer 127.0.0.9:{port} on the tcp route: not in trusted_proxies; closed"));
    let route = ps(&app).routes.remove(0);
    assert_eq!((route.untrusted_proxies, route.bad_proxy_headers), (1, 0));
    let mut again = connect_from("127.0.0.1".parse().unwrap(), addr);
    again.write_all(header).unwrap();
    assert!(first_line(&again).starts_with("hello tcp.1"), "the trusted peer is still served");
}
