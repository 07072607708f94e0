//! The handover socket between a main process and its successor, which the anchor starts
//! ([`crate::anchor::Link::spawn`]): messages framed with their fds ([`crate::fdpass`]).
//!
//! Built so far: the successor's `hello` (its pid and handover protocol) within [`DEADLINE`];
//! the old main's listeners ([`super::listeners`]), which the successor checks and acknowledges;
//! then the old main abandons it (the anchor kills it) and keeps running as if nothing happened.
//! Still to come: the instances ([`super::instances`]), the successor's `ready`, `promote`.

use super::listeners::{self, Listeners};
use super::HANDOVER_VERSION;
use crate::anchor::{self, Link};
use crate::fdpass;
use serde::{Deserialize, Serialize};
use std::io::ErrorKind;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long a successor has to answer.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The successor's first message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub pid: u32,
    pub handover: u32,
}

/// The old main's side: has the anchor start `binary` and waits for its hello. On failure the
/// successor is abandoned (the anchor kills it) and the reason returned.
pub fn start_successor(link: &Link, binary: &Path) -> Result<(UnixStream, Hello), String> {
    let stream = link.spawn(binary).map_err(|err| format!("cannot ask the anchor to start it: {err}"))?;
    let hello = stream
        .set_read_timeout(Some(DEADLINE))
        .and_then(|()| fdpass::receive(&stream))
        .map_err(|err| match err.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                format!("the new main process did not answer within {} s", DEADLINE.as_secs())
            }
            ErrorKind::UnexpectedEof => "the new main process ended before answering (its lines say why)".to_string(),
            _ => format!("the handover socket failed: {err}"),
        })
        .and_then(|(message, _)| {
            serde_json::from_slice::<Hello>(&message)
                .map_err(|err| format!("the new main process said no hello: {err}"))
        })
        .and_then(|hello| match hello.handover {
            HANDOVER_VERSION => Ok(hello),
            theirs => Err(format!("the new main process speaks handover protocol {theirs}, not {HANDOVER_VERSION}")),
        });
    match hello {
        Ok(hello) => Ok((stream, hello)),
        Err(why) => {
            abandon(link);
            Err(why)
        }
    }
}

/// What the successor says once it has the listeners: what it received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    pub listeners: String,
}

/// The old main's side: sends the listeners and waits for the successor to acknowledge them;
/// what it received, or why not.
pub fn hand_listeners(stream: &UnixStream, listeners: &Listeners) -> Result<String, String> {
    listeners::send(stream, listeners).map_err(|err| format!("cannot send the listeners: {err}"))?;
    let (message, _) = fdpass::receive(stream).map_err(|err| match err.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            format!("the new main process did not take the listeners within {} s", DEADLINE.as_secs())
        }
        _ => format!("the new main process did not take the listeners: {err}"),
    })?;
    let received: Received =
        serde_json::from_slice(&message).map_err(|err| format!("the new main process answered no receipt: {err}"))?;
    Ok(received.listeners)
}

/// Has the anchor kill the successor; this main stays the current one.
pub fn abandon(link: &Link) {
    if let Err(err) = link.abandon() {
        tracing::warn!("cannot tell the anchor to stop the new main process: {err}");
    }
}

/// The successor's side: the handover socket the anchor passed on, if this process is one.
pub fn inherited() -> Option<std::io::Result<UnixStream>> {
    let value = std::env::var(anchor::HANDOVER_ENV).ok()?;
    std::env::remove_var(anchor::HANDOVER_ENV);
    let bad = || {
        std::io::Error::new(ErrorKind::InvalidInput, format!("{}={value:?}: no handover socket", anchor::HANDOVER_ENV))
    };
    Some(value.parse().ok().and_then(anchor::inherited_socket).ok_or_else(bad))
}

/// The successor's run: says hello, takes the listeners and acknowledges them; as the rest is
/// not built yet, ends when the old main abandons it (killed) or closes the socket. Returns the
/// exit status.
pub fn succeed(stream: UnixStream) -> anyhow::Result<i32> {
    let hello = Hello { pid: std::process::id(), handover: HANDOVER_VERSION };
    fdpass::send(&stream, &serde_json::to_vec(&hello)?, &[])?;
    let listeners = listeners::receive(&stream)?;
    tracing::info!("the new main process took the listeners: {}", listeners.summary());
    let received = Received { listeners: listeners.summary() };
    fdpass::send(&stream, &serde_json::to_vec(&received)?, &[])?;
    match fdpass::receive(&stream) {
        Err(err) if err.kind() == ErrorKind::UnexpectedEof => {
            tracing::info!("the old main process kept running: this new one ends");
            Ok(0)
        }
        Err(err) => Err(anyhow::anyhow!("the handover socket failed: {err}")),
        Ok(_) => Err(anyhow::anyhow!("the old main process sent a state this procgate does not take yet")),
    }
}
