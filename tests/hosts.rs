//! Several hosts behind a real load balancer: two procgates on 127.0.0.2 and 127.0.0.3 (two
//! machines) behind HAProxy, which sends them PROXY v2 headers and checks them; procgate takes
//! the headers from HAProxy alone (`accept_proxy`, `trusted_proxies`) and passes the client's
//! address on to its instances. Clients from 127.0.0.4 and 127.0.0.5 reach both hosts, the apps
//! see their addresses, a `procgate restart` on one host loses no connection, and neither does
//! taking a host out (drained in HAProxy first, then `procgate stop`).

mod common;
use common::needs::{find, needs};
use common::{connect_from, ps, try_connect_from, App, Running, DEADLINE};
use nix::sys::signal::Signal;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The app of both hosts: reads the PROXY v2 header procgate writes, greets each client with
/// `hello HOST DYNO PID, you are ADDR` and echoes lines. On SIGTERM it stops accepting and
/// serves its open connections until their clients leave (long-lived clients stay served
/// through a restart), then exits.
const HOST_APP: &str = r#"
import asyncio, ipaddress, os, signal, struct

HOST, DYNO = os.environ["HOST_LABEL"], os.environ["DYNO"]

async def client_address(reader):
    head = await reader.readexactly(16)
    body = await reader.readexactly(struct.unpack("!H", head[14:16])[0])
    if head[12] != 0x21 or head[13] != 0x11:  # not a proxied TCP over IPv4: a LOCAL check
        return "local"
    return f"{ipaddress.IPv4Address(body[0:4])}:{struct.unpack('!H', body[8:10])[0]}"

async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    handlers = set()

    async def serve(reader, writer):
        handlers.add(asyncio.current_task())
        try:
            writer.write(f"hello {HOST} {DYNO} {os.getpid()}, you are {await client_address(reader)}\n".encode())
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            handlers.discard(asyncio.current_task())
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", int(os.environ["PORT"]))
    await stop.wait()
    print(f"SIGTERM received: serving {len(handlers)} open connections until their clients leave", flush=True)
    server.close()
    while handlers:
        await asyncio.wait(set(handlers))
    print("bye", flush=True)

asyncio.run(main())
"#;

/// Each host's procgate.toml: PROXY headers only from the load balancer, v2 to the instances.
const HOST_SETTINGS: &str = "[types.tcp]
accept_proxy = true
trusted_proxies = [\"127.0.0.1/32\"]
proxy_protocol = \"v2\"
";

/// HAProxy in front of both hosts (FRONTEND, PORT and DIR filled in): round robin, PROXY v2 to
/// the hosts, a check every 200 ms (it sends a PROXY v2 `LOCAL` header, as `send-proxy-v2`
/// implies), and the admin socket the test reads its counters from.
const HAPROXY_CONFIG: &str = "global
    maxconn 2000
    stats socket DIR/haproxy.sock level admin

defaults
    mode tcp
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch

frontend app
    bind 127.0.0.1:FRONTEND
    default_backend hosts

backend hosts
    balance roundrobin
    default-server send-proxy-v2 check inter 200ms fall 2 rise 2
    server h2 127.0.0.2:PORT
    server h3 127.0.0.3:PORT
";

/// The clients' addresses, standing for two machines of the internet.
const CLIENTS: [&str; 2] = ["127.0.0.4", "127.0.0.5"];

/// The address of the `n`th client: each in turn.
fn client(n: usize) -> IpAddr {
    CLIENTS[n % CLIENTS.len()].parse().unwrap()
}

/// One host: procgate with 2 `tcp` instances of [`HOST_APP`], its gateway on `listen`.
fn start_host(label: &str, listen: SocketAddr) -> (App, Running) {
    let app = App::new("tcp: exec python3 host_app.py\n");
    app.write("host_app.py", HOST_APP);
    app.write(".env", &format!("HOST_LABEL={label}\n"));
    app.write("procgate.toml", HOST_SETTINGS);
    let base = common::free_base_port(1, 4).to_string();
    let listen = listen.to_string();
    let mut running = app.spawn(&["start", "-m", "tcp=2", "-p", &base, "--tcp-listen", &listen, "--grace", "20s"]);
    running.wait_for("201 app connected tcp.1 ");
    running.wait_for("201 app connected tcp.2 ");
    (app, running)
}

/// Where a client landed, as the app said: `hello HOST DYNO PID, you are ADDR`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Visit {
    host: String,
    dyno: String,
    pid: u32,
    /// The client address the app read from procgate's header.
    seen_as: String,
}

/// A client connection through the load balancer, greeted by an app.
struct Client {
    reader: BufReader<TcpStream>,
    visit: Visit,
}

impl Client {
    /// Connects from `source` to `frontend` and reads the greeting; the app must have seen the
    /// client's own address and port. `Err` says what went wrong.
    fn connect(source: IpAddr, frontend: SocketAddr) -> Result<Client, String> {
        let stream = try_connect_from(source, frontend).map_err(|err| format!("connect: {err}"))?;
        let me = stream.local_addr().map_err(|err| err.to_string())?;
        let mut reader = BufReader::new(stream);
        let greeting = read_line(&mut reader)?;
        let parse = |text: &str| {
            let (who, seen_as) = text.strip_prefix("hello ")?.split_once(", you are ")?;
            let mut words = who.split(' ');
            let (host, dyno, pid) = (words.next()?, words.next()?, words.next()?.parse().ok()?);
            Some(Visit { host: host.into(), dyno: dyno.into(), pid, seen_as: seen_as.into() })
        };
        let visit = parse(&greeting).ok_or_else(|| format!("greeting {greeting:?}"))?;
        match visit.seen_as == me.to_string() {
            true => Ok(Client { reader, visit }),
            false => Err(format!("the app saw {} for the client {me}", visit.seen_as)),
        }
    }

    /// Sends a line and reads it back.
    fn ping(&mut self, text: &str) -> Result<(), String> {
        self.reader.get_mut().write_all(format!("{text}\n").as_bytes()).map_err(|err| format!("send: {err}"))?;
        match read_line(&mut self.reader)? {
            echo if echo == text => Ok(()),
            other => Err(format!("sent {text:?}, got {other:?}")),
        }
    }
}

fn read_line(reader: &mut BufReader<TcpStream>) -> Result<String, String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => Err("closed".into()),
        Ok(_) => Ok(line.trim_end().to_string()),
        Err(err) => Err(format!("read: {err}")),
    }
}

/// A short visit: connect, greeting, one echo, close.
fn visit(source: IpAddr, frontend: SocketAddr) -> Result<Visit, String> {
    let mut client = Client::connect(source, frontend)?;
    client.ping("ping")?;
    Ok(client.visit)
}

/// HAProxy's counters of one server (`show stat`): status, chkdown...
fn server_stats(socket: &Path, server: &str) -> BTreeMap<String, String> {
    let text = haproxy_command(socket, "show stat");
    let mut lines = text.lines();
    let names: Vec<&str> = lines.next().unwrap().trim_start_matches("# ").split(',').collect();
    let row = lines.map(|line| line.split(',').collect::<Vec<_>>()).find(|row| row.get(1) == Some(&server));
    let row = row.unwrap_or_else(|| panic!("no server {server} in:\n{text}"));
    names.iter().zip(row).map(|(name, value)| (name.to_string(), value.to_string())).collect()
}

/// Waits until HAProxy's first check of `server` passed.
fn wait_checked(socket: &Path, server: &str) {
    let deadline = Instant::now() + DEADLINE;
    while !socket.exists() || server_stats(socket, server)["check_status"] != "L4OK" {
        assert!(Instant::now() < deadline, "HAProxy never checked {server}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Short visits from every client address, over and over, while `action` runs; the visits
/// must all be served.
fn visits_during<T>(frontend: SocketAddr, what: &str, action: impl FnOnce() -> T) -> (Vec<Visit>, T) {
    let done = AtomicBool::new(false);
    let (visits, result): (Vec<Result<Visit, String>>, T) = std::thread::scope(|scope| {
        let done = &done;
        let loops: Vec<_> = (0..CLIENTS.len())
            .map(|n| {
                scope.spawn(move || {
                    let mut visits = Vec::new();
                    while !done.load(Ordering::SeqCst) {
                        visits.push(visit(client(n), frontend));
                    }
                    visits
                })
            })
            .collect();
        // The visits end also when `action` fails: the scope waits for them.
        let stop = StopOnDrop(done);
        let result = action();
        drop(stop);
        (loops.into_iter().flat_map(|visits| visits.join().unwrap()).collect(), result)
    });
    let failed: Vec<&String> = visits.iter().filter_map(|visit| visit.as_ref().err()).collect();
    assert!(failed.is_empty(), "{} of {} visits failed {what}: {failed:?}", failed.len(), visits.len());
    (visits.into_iter().map(Result::unwrap).collect(), result)
}

/// `n` short visits one after the other, which must all be served.
fn visits(frontend: SocketAddr, n: usize) -> Vec<Visit> {
    (0..n).map(|n| visit(client(n), frontend).unwrap_or_else(|err| panic!("{err}"))).collect()
}

/// Sets true when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A command to HAProxy's admin socket; its answer.
fn haproxy_command(socket: &Path, command: &str) -> String {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream.write_all(format!("{command}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

fn count_by<'a>(
    visits: impl IntoIterator<Item = &'a Visit>,
    key: impl Fn(&'a Visit) -> &'a str,
) -> BTreeMap<&'a str, usize> {
    let mut counts = BTreeMap::new();
    for visit in visits {
        *counts.entry(key(visit)).or_default() += 1;
    }
    counts
}

#[test]
fn two_hosts_behind_haproxy_serve_each_client_with_its_address_and_a_restart_or_a_drained_stop_loses_no_connection() {
    let Some(haproxy) = needs(&[("haproxy", "haproxy")]).then(|| find("haproxy").unwrap()) else { return };
    // One block of reserved ports: the hosts' gateway port (on both addresses), HAProxy's frontend.
    let ports = common::free_base_port(1, 2);
    let (h2, mut h2_running) = start_host("h2", SocketAddr::from(([127, 0, 0, 2], ports)));
    let (h3, h3_running) = start_host("h3", SocketAddr::from(([127, 0, 0, 3], ports)));
    let frontend = SocketAddr::from(([127, 0, 0, 1], ports + 1));
    let dir = tempfile::tempdir().unwrap();
    let config = HAPROXY_CONFIG
        .replace("FRONTEND", &frontend.port().to_string())
        .replace("PORT", &ports.to_string())
        .replace("DIR", &dir.path().display().to_string());
    let config_path = dir.path().join("haproxy.cfg");
    std::fs::write(&config_path, config).unwrap();
    let _haproxy = h2.spawn_program(&haproxy, &["-db", "-f", config_path.to_str().unwrap()], &[]);
    let socket = dir.path().join("haproxy.sock");
    wait_checked(&socket, "h2");
    wait_checked(&socket, "h3");

    // Only the load balancer may send a header: a client straight to a host is closed unread.
    let mut direct = connect_from(client(0), SocketAddr::from(([127, 0, 0, 2], ports)));
    let mut rest = Vec::new();
    let _ = direct.read_to_end(&mut rest);
    assert!(rest.is_empty(), "closed, never forwarded");
    h2_running.wait_for(&format!("P403 untrusted peer {}", direct.local_addr().unwrap()));

    // Before: short visits from both addresses reach both hosts, each app sees the client.
    let before = visits(frontend, 20);
    let hosts_before = count_by(&before, |v| &v.host);
    assert_eq!(hosts_before.len(), 2, "both hosts serve: {hosts_before:?}");

    // Long-lived clients, on both hosts, stay connected through the restart.
    let mut held: Vec<Client> = (0..8).map(|n| Client::connect(client(n), frontend).unwrap()).collect();
    let held_on_h2 = held.iter().filter(|c| c.visit.host == "h2").count();
    assert!(held_on_h2 >= 2, "round robin gives h2 its share: {held_on_h2} of 8");

    // The restart of h2 under a stream of short visits.
    let old_pids: BTreeSet<u32> = ps(&h2).instances.iter().filter_map(|i| i.pid).collect();
    let (during, ()) = visits_during(frontend, "during the restart", || {
        let restart = h2.spawn(&["restart", "tcp"]);
        // The old instances got SIGTERM once the replacements took over; their long-lived
        // clients are still served (procgate's drain waits for them to leave).
        for dyno in ["tcp.1", "tcp.2"] {
            h2_running.wait_for(&format!("{dyno} | SIGTERM received: serving"));
        }
        for (n, client) in held.iter_mut().enumerate() {
            client.ping(&format!("still there {n}")).unwrap_or_else(|err| panic!("held client {n}: {err}"));
        }
        drop(held);
        let restart = restart.finish(DEADLINE);
        assert_eq!(restart.code(), Some(0), "{}", restart.text());
        assert!(restart.has("restart of tcp done"), "{}", restart.text());
    });
    let hosts_during = count_by(&during, |v| &v.host);
    assert_eq!(hosts_during.len(), 2, "both hosts serve during the restart: {hosts_during:?}");
    let replaced = during.iter().filter(|v| v.host == "h2" && !old_pids.contains(&v.pid)).count();

    // After: h2's replacements serve.
    let after = visits(frontend, 20);
    let on_h2: Vec<&Visit> = after.iter().filter(|v| v.host == "h2").collect();
    assert!(!on_h2.is_empty() && on_h2.iter().all(|v| !old_pids.contains(&v.pid)), "{after:?}");

    // HAProxy's checks followed h2 through the restart: never down, every connect accepted.
    let stats = server_stats(&socket, "h2");
    let counters = ["status", "chkdown", "econ", "wretr", "wredis"].map(|name| stats[name].clone());
    assert_eq!(counters, ["UP", "0", "0", "0", "0"], "h2's status, checks down, connect errors, retries, redispatches");
    for (host, untrusted) in [(&h2, 1), (&h3, 0)] {
        let route = ps(host).routes.remove(0);
        let refused = (route.bad_proxy_headers, route.untrusted_proxies);
        assert_eq!(refused, (0, untrusted), "HAProxy's checks send valid headers");
    }

    // Taking h3 out: HAProxy drains it first (no new connection), then its procgate stops.
    assert_eq!(haproxy_command(&socket, "set server hosts/h3 state drain").trim(), "");
    let (leaving, stop) = visits_during(frontend, "while h3 leaves", || h3.run(&["stop"]));
    assert_eq!(stop.code(), Some(0), "{}", stop.text());
    assert!(leaving.iter().all(|v| v.host == "h2"), "{:?}", count_by(&leaving, |v| &v.host));
    let gone = visits(frontend, 10);
    assert!(gone.iter().all(|v| v.host == "h2"), "{:?}", count_by(&gone, |v| &v.host));
    assert_eq!(h3_running.finish(DEADLINE).code(), Some(0));

    let all = || before.iter().chain(&during).chain(&after).chain(&leaving).chain(&gone);
    let addresses = count_by(all(), |v| v.seen_as.split(':').next().unwrap());
    assert_eq!(addresses.keys().copied().collect::<Vec<_>>(), CLIENTS, "{addresses:?}");
    h2_running.signal(Signal::SIGTERM);
    let finished = h2_running.finish(DEADLINE);
    assert_eq!(finished.code(), Some(0), "{}", finished.text());
    eprintln!(
        "through HAProxy: {} visits before the restart {hosts_before:?}; {} during it {hosts_during:?}, \
         {replaced} of them by h2's replacements, 0 failed; 8 long-lived connections ({held_on_h2} on h2) \
         served through it, 0 lost; {} after it ({} on h2, all by the replacements); HAProxy: h2 {counters:?}; \
         h3 drained in HAProxy then stopped: {} visits during its stop and {} after, all via h2, 0 failed; \
         client addresses the apps saw: {addresses:?}",
        before.len(),
        during.len(),
        after.len(),
        on_h2.len(),
        leaving.len(),
        gone.len()
    );
}
