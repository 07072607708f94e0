//! The README's chat demo, step by step, as the transcript shows it: two clients chat through the
//! gateway (one raw, as `nc`; one the reconnecting `chat_client.py`), `procgate restart tcp`
//! replaces the chat server, both clients get its goodbye, the reconnecting one comes back on
//! the new instance, and procgate logs the coded lines; the web app answers through the router.

mod common;
use common::line_client::Client;
use common::{free_base_port, repo, App, Running, DEADLINE};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

/// The address after `what://` for `kind` in procgate's `starting app in` line.
fn route(line: &str, what: &str, kind: &str) -> SocketAddr {
    let part = line.split("; ").find(|part| part.ends_with(&format!(" for {kind}"))).unwrap();
    part.strip_prefix(&format!("{what}://")).unwrap().split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn the_chat_demo_survives_a_restart_as_the_readme_shows() {
    let app = App::from_procfiles("chat");
    let base = free_base_port(2, 1).to_string();
    let mut procgate = app.spawn(&["start", "-p", &base]);
    let starting = procgate.wait_for("starting app in ");
    let (gateway, router) = (route(&starting, "gateway tcp", "tcp"), route(&starting, "router http", "web"));
    procgate.wait_for("201 app connected tcp.1 ");
    procgate.wait_for("201 app connected web.1 ");

    let mut alice = Client::connect(gateway).unwrap();
    assert!(alice.line().starts_with("welcome to chat on tcp.1, you are guest-"));
    let mut client = Command::new("python3")
        .arg(repo().join("sample-apps/python/chat_client.py"))
        .arg(gateway.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut bob_says = client.stdin.take().unwrap();
    let mut bob = Running::watch(client);
    let welcome = bob.wait_for("welcome to chat on tcp.1, you are guest-");
    let bob_name = welcome.rsplit(' ').next().unwrap().to_string();

    alice.send("hi bob");
    bob.wait_for(": hi bob");
    writeln!(bob_says, "hi alice, a restart is coming").unwrap();
    assert_eq!(alice.line(), format!("{bob_name}: hi alice, a restart is coming"));

    let old_pid = procgate.pid_of("tcp.1");
    let restart = app.run(&["restart", "tcp"]);
    assert_eq!(restart.code(), Some(0), "{}", restart.text());
    for step in ["routing switched: new connections go to the replacements", "ok: restart of tcp done"] {
        assert!(restart.has(step), "no `{step}` in:\n{}", restart.text());
    }
    assert!(restart.has(&format!("SIGTERM tcp.1 (pid {old_pid}, 2 open connections)")), "{}", restart.text());

    // Alice, like nc, sees the goodbye, then the server's end of file.
    assert_eq!(alice.line(), "server restarting, please reconnect");
    let mut rest = String::new();
    assert_eq!(alice.reader.read_to_string(&mut rest).unwrap(), 0, "then end of file: {rest}");
    drop(alice);
    // Bob's client reconnects by itself, to the new instance.
    bob.wait_for("server restarting, please reconnect");
    bob.wait_for("reconnecting in ");
    bob.wait_for_nth("welcome to chat on tcp.1, you are guest-", 2, DEADLINE);

    for line in [
        "tcp.1 replacement starting (pid ",
        "204 app disconnected tcp.1 (replaced; 2 connections open)",
        "tcp.1  | SIGTERM received: closing 2 clients",
        &format!("tcp.1 (pid {old_pid}) exited with code 0"),
    ] {
        procgate.wait_for(line);
    }

    let mut web = Client::connect(router).unwrap();
    web.reader.get_mut().write_all(b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    web.reader.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200") && response.contains("hello from web.1"), "{response}");

    drop(bob_says);
    let stop = app.run(&["stop"]);
    assert_eq!(stop.code(), Some(0), "{}", stop.text());
    let finished = procgate.finish(DEADLINE);
    assert_eq!(finished.code(), Some(0), "{}", finished.text());
}
