//! A graceful TCP chat server for procgate's `tcp` type (tokio), built as the `chat` example.
//!
//! Listens on $HOST:$PORT (HOST defaults to 127.0.0.1) and greets each client with
//! `welcome to chat on $DYNO, you are guest-N`; every line a client sends goes to every other
//! client as `guest-N: text`, and the line `/quit` closes that client. SIGTERM (or SIGINT) is
//! caught before listening. On SIGTERM it prints `SIGTERM received: closing N clients`, closes
//! its listener (new connections are refused at once), sends each client `server restarting,
//! please reconnect` and shuts down its write side (a FIN, not a reset) while still reading until
//! the client hangs up (so nothing is left unread at close, which would turn the close into a
//! reset), then prints `bye` and exits 0, within 2 s however the clients behave. Same protocol
//! as python/chat_server.py, node/chat_server.js and go/chat. Run it as
//! `cargo build --release --examples` then `exec target/release/examples/chat`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout, Instant};

const GOODBYE: &str = "server restarting, please reconnect\n";
/// How long a client may take to hang up after our FIN, or to take a line we write.
const LINGER: Duration = Duration::from_secs(2);

/// The clients still chatting: guest number -> the queue of lines to write to it. A client
/// leaves the room when it quits or the server stops: its queue then ends, and its task sends
/// what is left, then a FIN.
type Room = Arc<Mutex<HashMap<u64, UnboundedSender<String>>>>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("PORT").expect("PORT is not set");
    let dyno = std::env::var("DYNO").unwrap_or_else(|_| "chat".into());

    // Catch SIGTERM before listening: a platform may stop the app as soon as it is up.
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let listener = TcpListener::bind(format!("{host}:{port}")).await?;
    println!("{dyno} listening on {host}:{port}"); // Rust's stdout is flushed at each newline

    let room = Room::default();
    let mut connections = JoinSet::new();
    let mut guests = 0;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    guests += 1;
                    let (outbox, inbox) = unbounded_channel();
                    let _ = outbox.send(format!("welcome to chat on {dyno}, you are guest-{guests}\n"));
                    room.lock().unwrap().insert(guests, outbox);
                    connections.spawn(serve(stream, guests, inbox, room.clone()));
                }
                Err(_) => sleep(Duration::from_millis(100)).await, // out of descriptors: let some close
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = term.recv() => break,
            _ = interrupt.recv() => break,
        }
    }

    let outboxes: Vec<_> = room.lock().unwrap().drain().map(|(_, outbox)| outbox).collect();
    println!("SIGTERM received: closing {} clients", outboxes.len());
    drop(listener); // new connections are refused from now on
    for outbox in outboxes {
        let _ = outbox.send(GOODBYE.into()); // then the outbox is dropped: the client's task sends a FIN
    }
    let all_closed = async { while connections.join_next().await.is_some() {} };
    let _ = timeout(LINGER + Duration::from_millis(500), all_closed).await; // (each lingers at most LINGER)
    println!("bye");
    Ok(())
}

/// Relays one client's lines to the room and the room's lines to it, until it hangs up.
async fn serve(stream: TcpStream, guest: u64, mut inbox: UnboundedReceiver<String>, room: Room) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = Vec::new();
    let mut fin_sent = false;
    let linger = sleep(Duration::from_secs(86400));
    tokio::pin!(linger);
    loop {
        tokio::select! {
            // (read_until keeps what it read in `line` if another branch wins: it is cancel safe)
            read = read.read_until(b'\n', &mut line) => match read {
                Ok(0) | Err(_) => break, // the client hung up (or reset)
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end_matches(['\r', '\n']);
                    if text == "/quit" {
                        room.lock().unwrap().remove(&guest); // the inbox ends: a FIN follows
                    } else {
                        broadcast(&room, guest, &format!("guest-{guest}: {text}\n"));
                    }
                    line.clear();
                }
            },
            message = inbox.recv(), if !fin_sent => match message {
                Some(text) => match timeout(LINGER, write.write_all(text.as_bytes())).await {
                    Ok(Ok(())) => {}
                    _ => break, // reset, or not reading at all
                },
                None => {
                    // Out of the room: FIN, then keep reading until the client's own FIN.
                    let _ = write.shutdown().await;
                    fin_sent = true;
                    linger.as_mut().reset(Instant::now() + LINGER);
                }
            },
            _ = &mut linger => break, // it never hung up: drop it
        }
    }
    room.lock().unwrap().remove(&guest);
}

/// Queues `line` for every client in the room but `from` (if `from` is still in it).
fn broadcast(room: &Room, from: u64, line: &str) {
    let room = room.lock().unwrap();
    if room.contains_key(&from) {
        for (guest, outbox) in room.iter() {
            if *guest != from {
                let _ = outbox.send(line.to_owned());
            }
        }
    }
}
