//! The TCP relay's guarantees, each checked on both of its implementations (`--relay io_uring`
//! and `--relay epoll`): half-close, resets passed on as resets, the idle timeout, large
//! transfers both ways at once under back-pressure, many connections at once, and a client that
//! leaves in the middle of a large reply.

mod common;
use common::line_client::Client;
use common::needs::permitted;
use common::{free_base_port, App, Running, DEADLINE};
use nix::sys::signal::Signal;
use std::io::{BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Each check as a test per relay: `io_uring::CHECK` (skipped where the kernel refuses io_uring,
/// a failure under `PROCGATE_TEST_ALL=1`) and `epoll::CHECK`.
macro_rules! on_both_relays {
    ($($check:ident),* $(,)?) => {
        mod io_uring {
            $(#[test]
            fn $check() {
                if super::io_uring_allowed() {
                    super::$check("io_uring");
                }
            })*
        }
        mod epoll {
            $(#[test]
            fn $check() {
                super::$check("epoll");
            })*
        }
    };
}

on_both_relays!(
    half_close_still_delivers_the_rest_of_the_reply,
    a_reset_is_passed_on_as_a_reset_both_ways,
    idle_connections_are_closed_after_the_idle_timeout,
    large_transfers_both_ways_at_once_arrive_whole,
    three_hundred_connections_at_once_each_get_their_own_bytes,
    a_client_that_leaves_during_a_large_reply_frees_its_connection,
);

#[test]
fn where_the_kernel_refuses_io_uring_auto_relays_with_epoll_and_io_uring_is_refused() {
    let app = App::new("tcp: echo url=$TCP_URL; exec python3 app.py\n");
    app.write("app.py", APP);
    let base = free_base_port(2, 4).to_string();
    let start = ["start", "-m", "tcp=1", "-p", &base, "--tcp-listen", "127.0.0.1:0", "--grace", "2s"];
    let mut auto = refusing_io_uring(&app, &start);
    let starting = auto.wait_for("starting app in ");
    assert!(starting.contains("; relay epoll (io_uring unavailable: Operation not permitted"), "{starting}");
    let line = auto.wait_for("tcp.1 | url=tcp://");
    let addr = line.split("url=tcp://").nth(1).unwrap().parse().unwrap();
    auto.wait_for("201 app connected tcp.1 ");
    let mut client = client(addr, "echo");
    client.send("relayed");
    assert_eq!(client.line(), "relayed");
    stop(auto);

    let refused = refusing_io_uring(&app, &[&start[..], &["--relay", "io_uring"]].concat()).finish(DEADLINE);
    assert_eq!(refused.code(), Some(1), "{}", refused.text());
    assert!(refused.text().contains("--relay io_uring: this kernel does not allow io_uring"), "{}", refused.text());

    let bad = app.run(&["start", "--relay", "uringg"]);
    assert_eq!(bad.code(), Some(2), "{}", bad.text());
    assert!(bad.text().contains("`uringg` is not a relay; give `auto`, `io_uring` or `epoll`"), "{}", bad.text());
}

/// procgate started with a seccomp filter that refuses `io_uring_setup` (EPERM), as some
/// container runtimes' profiles do.
fn refusing_io_uring(app: &App, args: &[&str]) -> Running {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(common::BIN);
    command.args(args).current_dir(app.path()).env("NO_COLOR", "1").env_remove("PORT");
    command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    // SAFETY: only async-signal-safe calls (prctl) between fork and exec.
    unsafe { command.pre_exec(refuse_io_uring_setup) };
    Running::watch(command.spawn().unwrap())
}

/// Installs a seccomp filter: `io_uring_setup` fails with EPERM, every other call is allowed.
fn refuse_io_uring_setup() -> std::io::Result<()> {
    use nix::libc::{sock_filter, sock_fprog, BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, EPERM};
    const IO_URING_SETUP: u32 = 425;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    let statement = |code: u32, k: u32| sock_filter { code: code as u16, jt: 0, jf: 0, k };
    let jump = |k: u32, jt: u8, jf: u8| sock_filter { code: (BPF_JMP | BPF_JEQ | BPF_K) as u16, jt, jf, k };
    let filter = [
        statement(BPF_LD | BPF_W | BPF_ABS, 0), // seccomp_data.nr
        jump(IO_URING_SETUP, 0, 1),
        statement(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM as u32),
        statement(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    ];
    let program = sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut sock_filter };
    // SAFETY: plain prctl calls; the program outlives them (the kernel copies it).
    unsafe {
        if nix::libc::prctl(nix::libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || nix::libc::prctl(nix::libc::PR_SET_SECCOMP, nix::libc::SECCOMP_MODE_FILTER, &program) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn io_uring_allowed() -> bool {
    let allowed = procgate::gateway::uring::choose(procgate::gateway::Relay::IoUring).is_ok();
    permitted("io_uring (Linux 6.1 or later, and not refused by a seccomp profile)", allowed)
}

/// The instance: reads a command line, then `echo` echoes bytes until end of file and passes it
/// on; `send N` sends N bytes of the pattern and closes; `reset` sends `partial`, waits for a
/// line and resets; `hold` reads until end of file. A client's reset prints `client reset`.
const APP: &str = r#"
import os, socket, struct, threading
listener = socket.create_server(("127.0.0.1", int(os.environ["PORT"])), backlog=1024)
print("listening", flush=True)
PATTERN = bytes(range(251)) * 4096
def serve(conn):
    try:
        command = b""
        while not command.endswith(b"\n"):
            byte = conn.recv(1)
            if not byte:
                return
            command += byte
        word, _, arg = command.decode().strip().partition(" ")
        if word == "echo":
            while data := conn.recv(65536):
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        elif word == "send":
            left = int(arg)
            while left > 0:
                left -= conn.send(PATTERN[: min(left, len(PATTERN))])
        elif word == "reset":
            conn.sendall(b"partial\n")
            if conn.recv(100) == b"reset me\n":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif word == "hold":
            while conn.recv(100):
                pass
    except ConnectionResetError:
        print("client reset", flush=True)
    except BrokenPipeError:
        print("client gone", flush=True)
    finally:
        conn.close()
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"#;

/// The pattern `send N` sends, byte `i` of it.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// procgate relaying with `relay` in front of one instance of [`APP`], with `extra` flags;
/// returns it with the gateway's address once the instance is routed.
fn start(relay: &str, extra: &[&str]) -> (App, Running, SocketAddr) {
    let app = App::new("tcp: echo url=$TCP_URL; exec python3 app.py\n");
    app.write("app.py", APP);
    let (mut running, addr) = common::start_gateway(&app, "tcp=1", &[&["--relay", relay], extra].concat());
    let starting = running.seen.iter().find(|line| line.contains("starting app in ")).expect("the start line");
    assert!(starting.contains(&format!("; relay {relay}")), "{starting}");
    running.wait_for("201 app connected tcp.1 ");
    (app, running, addr)
}

fn connect(addr: SocketAddr, command: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_write_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(format!("{command}\n").as_bytes()).unwrap();
    stream
}

fn client(addr: SocketAddr, command: &str) -> Client {
    Client { reader: std::io::BufReader::new(connect(addr, command)) }
}

fn stop(running: Running) {
    running.signal(Signal::SIGINT);
    let finished = running.finish(DEADLINE);
    assert_eq!(finished.code(), Some(0), "{}", finished.text());
}

fn half_close_still_delivers_the_rest_of_the_reply(relay: &str) {
    let (_app, running, addr) = start(relay, &[]);
    let mut stream = connect(addr, "echo");
    stream.write_all(b"first\nsecond\n").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = String::new();
    stream.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "first\nsecond\n", "the reply after the client's end of file, then the instance's");
    stop(running);
}

fn a_reset_is_passed_on_as_a_reset_both_ways(relay: &str) {
    let (_app, mut running, addr) = start(relay, &[]);
    // The instance resets: the client gets a reset too, not an end of file after a cut reply.
    let mut client = client(addr, "reset");
    assert_eq!(client.line(), "partial");
    client.send("reset me");
    let mut rest = Vec::new();
    let read = client.reader.read_to_end(&mut rest);
    assert_eq!(read.map_err(|e| e.kind()), Err(std::io::ErrorKind::ConnectionReset), "{rest:?}");

    // The client resets: the instance sees a reset.
    let client = connect(addr, "hold");
    nix::sys::socket::setsockopt(
        &client,
        nix::sys::socket::sockopt::Linger,
        &nix::libc::linger { l_onoff: 1, l_linger: 0 },
    )
    .unwrap();
    drop(client);
    running.wait_for("tcp.1  | client reset");
    stop(running);
}

fn idle_connections_are_closed_after_the_idle_timeout(relay: &str) {
    let (_app, mut running, addr) = start(relay, &["--idle-timeout", "300ms"]);
    let mut busy = connect(addr, "echo");
    let mut idle = connect(addr, "hold");
    let started = Instant::now();
    // A connection with traffic is not idle: one line every 100 ms for 600 ms.
    let mut reader = std::io::BufReader::new(busy.try_clone().unwrap());
    for i in 0..6 {
        busy.write_all(format!("line {i}\n").as_bytes()).unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, format!("line {i}\n"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut rest = Vec::new();
    assert_eq!(idle.read_to_end(&mut rest).unwrap(), 0, "closed, nothing sent");
    assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
    running.wait_for("203 closed idle tcp.1 from 127.0.0.1:");
    busy.write_all(b"still here\n").unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "still here\n", "the busy connection was not closed");
    stop(running);
}

fn large_transfers_both_ways_at_once_arrive_whole(relay: &str) {
    const SIZE: usize = 8 << 20;
    let (_app, running, addr) = start(relay, &[]);
    let transfers: Vec<_> = (0..4)
        .map(|n| {
            std::thread::spawn(move || {
                let mut stream = connect(addr, "echo");
                let mut writer = stream.try_clone().unwrap();
                // Written while the echo is read: each side's buffers fill and drain (back-pressure).
                let sending = std::thread::spawn(move || {
                    let data: Vec<u8> = (0..SIZE).map(|i| pattern(i + n)).collect();
                    for piece in data.chunks(100_000) {
                        writer.write_all(piece).unwrap();
                    }
                    writer.shutdown(Shutdown::Write).unwrap();
                });
                let mut echoed = Vec::with_capacity(SIZE);
                stream.read_to_end(&mut echoed).unwrap();
                sending.join().unwrap();
                assert_eq!(echoed.len(), SIZE, "connection {n}: every byte back");
                let first_wrong = echoed.iter().enumerate().position(|(i, &b)| b != pattern(i + n));
                assert_eq!(first_wrong, None, "connection {n}: the bytes in order");
            })
        })
        .collect();
    for transfer in transfers {
        transfer.join().unwrap();
    }
    stop(running);
}

fn three_hundred_connections_at_once_each_get_their_own_bytes(relay: &str) {
    let (_app, running, addr) = start(relay, &[]);
    let mut clients: Vec<Client> = (0..300).map(|_| client(addr, "echo")).collect();
    for round in 0..3 {
        for (i, client) in clients.iter_mut().enumerate() {
            client.send(&format!("connection {i} round {round} {}", "x".repeat(i * 7 + 1)));
        }
        for (i, client) in clients.iter_mut().enumerate() {
            assert_eq!(client.line(), format!("connection {i} round {round} {}", "x".repeat(i * 7 + 1)));
        }
    }
    stop(running);
}

fn a_client_that_leaves_during_a_large_reply_frees_its_connection(relay: &str) {
    let (app, mut running, addr) = start(relay, &[]);
    let mut leaving = connect(addr, "send 200000000");
    let mut first = vec![0u8; 100_000];
    leaving.read_exact(&mut first).unwrap();
    assert!(first.iter().enumerate().all(|(i, &b)| b == pattern(i)));
    // Unread bytes make the close a reset: the relay's send fails, and the instance hears of it.
    drop(leaving);
    running.wait_for_within("tcp.1  | client", DEADLINE);
    let deadline = Instant::now() + DEADLINE;
    let open = || common::ps(&app).instances[0].connections;
    while open() != Some(0) {
        assert!(Instant::now() < deadline, "the connection is still counted open: {:?}", open());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut client = client(addr, "echo");
    client.send("after");
    assert_eq!(client.line(), "after", "the gateway goes on serving");
    stop(running);
}
