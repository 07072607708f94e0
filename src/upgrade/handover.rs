//! The handover socket between a main process and its successor, which the anchor starts
//! ([`crate::anchor::Link::spawn`]): messages framed with their fds ([`crate::fdpass`]), in this
//! order:
//!
//! 1. successor: [`Hello`] (its pid and handover protocol), within [`DEADLINE`];
//! 2. old main: the [`listeners`]; successor: [`Received`];
//! 3. old main: the app's state ([`AppState`]: formation, release in force, types asleep), the
//!    [`instances`] with their fds (its monitors frozen meanwhile), and the log lines it kept
//!    (for `procgate logs`);
//! 4. successor: [`Answer`], ready (it adopted them and serves) or refused (why), within
//!    [`DEADLINE`]; the old main rolls back on anything but ready;
//! 5. old main, once the anchor made the successor its current main: [`Promoted`].

use super::instances;
use super::listeners::{self, Listeners};
use super::HANDOVER_VERSION;
use crate::anchor::{self, Link};
use crate::app_state::AppState;
use crate::fdpass;
use crate::logs::record::Record;
use crate::platform::handed::Crossing;
use serde::{Deserialize, Serialize};
use std::io::ErrorKind;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long a successor has to answer each step.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The successor's first message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub pid: u32,
    pub handover: u32,
}

/// What the successor says once it has the listeners: what it received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    pub listeners: String,
}

/// The successor's answer once it has everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// It adopted the instances and serves: what it took.
    Ready(String),
    /// It cannot take over: why (it ends, nothing changed).
    Refused(String),
}

/// The old main's last word: the anchor made the successor its current main.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promoted;

/// A receive error as the old main tells it: `what` the successor failed to do.
fn failed(err: std::io::Error, what: &str) -> String {
    match err.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            format!("the new main process did not {what} within {} s", DEADLINE.as_secs())
        }
        ErrorKind::UnexpectedEof => format!("the new main process ended before it would {what} (its lines say why)"),
        _ => format!("the handover socket failed: {err}"),
    }
}

/// Receives one message of type `T` (its fds dropped).
fn receive<T: for<'de> Deserialize<'de>>(stream: &UnixStream, what: &str) -> Result<T, String> {
    let (message, _) = fdpass::receive(stream).map_err(|err| failed(err, what))?;
    serde_json::from_slice(&message).map_err(|err| format!("the new main process did not {what}: {err}"))
}

fn send(stream: &UnixStream, message: &impl Serialize) -> std::io::Result<()> {
    fdpass::send(stream, &serde_json::to_vec(message)?, &[])
}

/// The old main's side: has the anchor start `binary` and waits for its hello. On failure the
/// successor is abandoned (the anchor kills it) and the reason returned.
pub fn start_successor(link: &Link, binary: &Path) -> Result<(UnixStream, Hello), String> {
    let stream = link.spawn(binary).map_err(|err| format!("cannot ask the anchor to start it: {err}"))?;
    let hello = stream
        .set_read_timeout(Some(DEADLINE))
        .map_err(|err| err.to_string())
        .and_then(|()| receive::<Hello>(&stream, "answer"))
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

/// The old main's side: sends the listeners and waits for the successor to acknowledge them;
/// what it received, or why not.
pub fn hand_listeners(stream: &UnixStream, listeners: &Listeners) -> Result<String, String> {
    listeners::send(stream, listeners).map_err(|err| format!("cannot send the listeners: {err}"))?;
    receive::<Received>(stream, "take the listeners").map(|received| received.listeners)
}

/// The old main's side: sends the state and the instances, and waits for the successor's
/// answer: what it took, or why it refused or failed.
pub fn hand_instances(
    stream: &UnixStream,
    state: &AppState,
    instances: &[Crossing<BorrowedFd>],
    history: &[Record],
) -> Result<String, String> {
    send(stream, state)
        .and_then(|()| instances::send(stream, instances))
        .and_then(|()| send(stream, &history))
        .map_err(|err| format!("cannot send the instances: {err}"))?;
    match receive::<Answer>(stream, "take the instances and serve")? {
        Answer::Ready(took) => Ok(took),
        Answer::Refused(why) => Err(format!("the new main process refused to take over: {why}")),
    }
}

/// The old main's side: tells the successor it is the current main now.
pub fn promoted(stream: &UnixStream) -> std::io::Result<()> {
    send(stream, &Promoted)
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

/// What a successor took from the old main: the socket to answer on, the listeners, the app's
/// state, the running instances and the log lines kept.
pub struct Takeover {
    pub stream: UnixStream,
    pub listeners: Listeners,
    pub state: AppState,
    pub instances: Vec<Crossing<OwnedFd>>,
    pub history: Vec<Record>,
}

/// The successor's side of steps 1 to 3: says hello, takes the listeners and acknowledges them,
/// then takes the state, the instances and the log lines.
pub fn take_over(stream: UnixStream) -> anyhow::Result<Takeover> {
    send(&stream, &Hello { pid: std::process::id(), handover: HANDOVER_VERSION })?;
    let listeners = listeners::receive(&stream)?;
    tracing::info!("the new main process took the listeners: {}", listeners.summary());
    send(&stream, &Received { listeners: listeners.summary() })?;
    let (message, _) = fdpass::receive(&stream)?;
    let state: AppState = serde_json::from_slice(&message)?;
    let instances = instances::receive(&stream)?;
    let (message, _) = fdpass::receive(&stream)?;
    let history: Vec<Record> = serde_json::from_slice(&message)?;
    Ok(Takeover { stream, listeners, state, instances, history })
}

/// The successor's side of step 4.
pub fn answer(stream: &UnixStream, answer: &Answer) -> std::io::Result<()> {
    send(stream, answer)
}

/// The successor's side of step 5: whether it was promoted (else the old main rolled back, or
/// is gone: the anchor kills this process anyway).
pub fn await_promotion(stream: &UnixStream) -> bool {
    let _ = stream.set_read_timeout(None);
    fdpass::receive(stream).ok().and_then(|(message, _)| serde_json::from_slice::<Promoted>(&message).ok()).is_some()
}
