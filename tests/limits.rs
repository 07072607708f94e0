//! Client addresses and limits through the binary: PROXY protocol to instances (a sample app and
//! nginx), PROXY headers from a load balancer, caps with a bounded queue (H11), per-client rate
//! limits (T429), and a bounded table of clients under a flood of addresses.

mod common;
use common::needs::{needs, NGINX_STREAM};
use common::{ps, start_gateway, App, Running, DEADLINE};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;

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

/// Connects from `source` (any 127.0.0.0/8 address) to `addr`.
fn connect_from(source: IpAddr, addr: SocketAddr) -> TcpStream {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    let IpAddr::V4(v4) = source else { panic!("IPv4 only") };
    bind(fd.as_raw_fd(), &SockaddrIn::from(std::net::SocketAddrV4::new(v4, 0))).unwrap();
    let SocketAddr::V4(target) = addr else { panic!("IPv4 only") };
    connect(fd.as_raw_fd(), &SockaddrIn::from(target)).unwrap();
    let stream = TcpStream::from(fd);
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
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
    let app = proxy_app("accept_proxy = true\nproxy_protocol = \"v2\"\n");
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
    let rss = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", running.pid())).unwrap();
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
