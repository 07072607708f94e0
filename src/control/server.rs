//! The control socket's server: binds before anything starts (refusing to steal a live socket),
//! answers on the actors' thread, and removes the socket when procgate stops.

use super::body::{error, json, read_json, Body, LineStream, LINES_BUFFER};
use super::logs::LogSource;
use super::{
    socket_path, ControlError, DeployRequest, InstanceStatus, LogQuery, Platform, PsReply, RestartRequest, RouteStatus,
    WakeRequest,
};
use crate::app_state::DIR;
use crate::gateway::route::Route;
use crate::gateway::stats::Outcome;
use crate::platform::lifecycle::Event;
use crate::platform::rollout_actor::Roll;
use crate::platform::scheduler::{CheckTarget, Notify, Scale, ScaleRefused, Status, WakeUp};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How long `finish` waits for clients to read their last answer.
const FINISH_TIMEOUT: Duration = Duration::from_secs(2);

/// The control socket bound, and the lock that makes this procgate the root's owner.
pub struct Bound {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
    _lock: std::fs::File,
}

/// Binds `ROOT/.procgate/control.sock` (socket 0600) in a directory that must be a real one,
/// owned by this user (0700; a symlink or another owner's directory is refused, never followed
/// or chmod-ed). The lock `ROOT/.procgate/lock` decides which `start` owns the root: held, it
/// means another procgate runs there (an error); a socket left over from a crash is replaced.
pub fn bind(root: &Path) -> Result<Bound, ControlError> {
    let path = socket_path(root);
    let io = |err: std::io::Error| ControlError::Io { socket: path.display().to_string(), reason: err.to_string() };
    let dir = root.join(DIR);
    own_directory(&dir)?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .mode(0o600)
        .open(dir.join(LOCK))
        .map_err(io)?;
    lock.try_lock().map_err(|_| {
        let (root, socket) = (root.display().to_string(), path.display().to_string());
        ControlError::AlreadyRunning { root, socket }
    })?;
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).map_err(io)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    listener.set_nonblocking(true).map_err(io)?;
    Ok(Bound { listener, path, _lock: lock })
}

impl Bound {
    /// New descriptors of the listening socket and of the locked file (the same socket, the same
    /// lock), for an upgrade's successor.
    pub fn try_clone(&self) -> std::io::Result<(std::os::unix::net::UnixListener, std::fs::File)> {
        Ok((self.listener.try_clone()?, self._lock.try_clone()?))
    }

    /// The control socket of `root` as a previous main process handed it over: its listener and
    /// its locked file. A flock belongs to the open file, which it shares with the previous main:
    /// the lock is this process's too, and lasts until the last descriptor of that open file
    /// closes, in whichever process (it is never undone by hand: a successor that fails, or an
    /// old main that hands over, closes its own and leaves the lock to the other).
    pub fn adopt(
        root: &Path,
        listener: std::os::unix::net::UnixListener,
        lock: std::fs::File,
    ) -> Result<Bound, ControlError> {
        let path = socket_path(root);
        let shown = path.display().to_string();
        lock.try_lock().map_err(|err| ControlError::Io {
            socket: shown.clone(),
            reason: format!("the lock handed over is not ours: {err}"),
        })?;
        listener.set_nonblocking(true).map_err(|err| ControlError::Io { socket: shown, reason: err.to_string() })?;
        Ok(Bound { listener, path, _lock: lock })
    }
}

/// The lock file's name in the control directory.
const LOCK: &str = "lock";

/// Makes `dir` a directory of this user's, mode 0700, without following a symlink there.
fn own_directory(dir: &Path) -> Result<(), ControlError> {
    let refused = |reason: String| ControlError::UnsafeDirectory { dir: dir.display().to_string(), reason };
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(refused(err.to_string())),
    }
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
        .open(dir)
        .map_err(|err| refused(format!("it is not a directory of its own, a symlink maybe ({err})")))?;
    let owner = opened.metadata().map_err(|err| refused(err.to_string()))?.uid();
    if owner != nix::unistd::geteuid().as_raw() {
        return Err(refused(format!("it belongs to uid {owner}, not to you")));
    }
    opened.set_permissions(std::fs::Permissions::from_mode(0o700)).map_err(|err| refused(err.to_string()))
}

/// What the request handlers share.
struct Shared {
    platform: Platform,
    /// Clients of `POST /stop`, told the exit status when everything has stopped.
    stop_waiters: RefCell<Vec<mpsc::Sender<Bytes>>>,
    /// Where `GET /logs` reads.
    logs: LogSource,
    /// Turns true when procgate stops: `logs -f` streams end.
    stopping: watch::Sender<bool>,
    connections: RefCell<Vec<JoinHandle<()>>>,
}

/// The running server (on the actix thread).
pub struct ControlServer {
    path: PathBuf,
    shared: Rc<Shared>,
    accept: JoinHandle<()>,
    /// Held until procgate exits: the root is this procgate's.
    _lock: std::fs::File,
}

impl ControlServer {
    /// Serves the bound socket; call from inside the actix system.
    pub fn spawn(bound: Bound, platform: Platform, logs: LogSource) -> std::io::Result<ControlServer> {
        let Bound { listener, path, _lock } = bound;
        let listener = tokio::net::UnixListener::from_std(listener)?;
        let (stop_waiters, connections) = (RefCell::default(), RefCell::default());
        let stopping = watch::channel(false).0;
        let shared = Rc::new(Shared { platform, stop_waiters, connections, logs, stopping });
        let accept = tokio::task::spawn_local(accept_loop(listener, shared.clone()));
        Ok(ControlServer { path, shared, accept, _lock })
    }

    /// What stops the server serving once the main process has handed the socket over: it
    /// accepts no more (the successor does) and its `logs -f` streams end (their clients take
    /// up again with the successor).
    pub fn handing_off(&self) -> impl FnOnce() {
        let (accept, shared) = (self.accept.abort_handle(), self.shared.clone());
        move || {
            accept.abort();
            shared.stopping.send_replace(true);
        }
    }

    /// Once [`ControlServer::handing_off`] ran: lets the clients read their last answers, then
    /// lets go of the socket and the lock for the successor that serves them now (the socket
    /// file stays; the lock stays the successor's).
    pub async fn hand_over(self) {
        self.wait_for_clients().await;
    }

    async fn wait_for_clients(&self) {
        let connections = self.shared.connections.take();
        let _ = tokio::time::timeout(FINISH_TIMEOUT, async {
            for connection in connections {
                let _ = connection.await;
            }
        })
        .await;
    }

    /// Tells `stop` clients the exit status, lets them read it, and removes the socket.
    pub async fn finish(self, code: i32) {
        self.accept.abort();
        self.shared.stopping.send_replace(true);
        let last = Bytes::from(format!("stopped (exit status {code})\n"));
        for waiter in self.shared.stop_waiters.take() {
            let _ = waiter.try_send(last.clone());
        }
        self.wait_for_clients().await;
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Serves each client of this user's (`SO_PEERCRED`); another user's is closed at once (the
/// socket's mode already keeps them out, but for root).
async fn accept_loop(listener: tokio::net::UnixListener, shared: Rc<Shared>) {
    let us = nix::unistd::geteuid().as_raw();
    while let Ok((stream, _)) = listener.accept().await {
        match stream.peer_cred().map(|cred| cred.uid()) {
            Ok(uid) if uid == us => {}
            Ok(uid) => {
                tracing::warn!("control socket: refused a client of uid {uid}; only uid {us} may run this app");
                continue;
            }
            Err(_) => continue,
        }
        let shared_for_requests = shared.clone();
        let service = hyper::service::service_fn(move |request| answer(request, shared_for_requests.clone()));
        let connection =
            hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let handle = tokio::task::spawn_local(async move {
            let _ = connection.await;
        });
        let mut connections = shared.connections.borrow_mut();
        connections.retain(|c| !c.is_finished());
        connections.push(handle);
    }
}

async fn answer(request: Request<Incoming>, shared: Rc<Shared>) -> Result<Response<Body>, Infallible> {
    let response = match (request.method(), request.uri().path()) {
        (&Method::GET, "/ps") => match shared.platform.scheduler.send(Status).await {
            Ok(instances) => {
                let instances = instances.into_iter().map(InstanceStatus::from).collect();
                let routes = shared.platform.routes.iter().map(|r| route_status(r)).collect();
                json(StatusCode::OK, &PsReply { instances, routes })
            }
            Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
        },
        (&Method::POST, "/scale") => scale(request, &shared.platform).await,
        (&Method::POST, "/restart") => restart(request, &shared.platform).await,
        (&Method::POST, "/deploy") => match read_json::<DeployRequest>(request).await {
            Ok(DeployRequest { source, dry_run }) => {
                stream(|client| Roll::Deploy { source, dry_run, client }, &shared.platform)
            }
            Err(why) => error(StatusCode::BAD_REQUEST, &why),
        },
        (&Method::POST, "/upgrade") => super::upgrade::answer(request, &shared.platform).await,
        (&Method::POST, "/wake") => wake(request, &shared.platform).await,
        (&Method::GET, "/metrics") => super::metrics::answer(&shared.platform).await,
        (&Method::GET, "/logs") => match LogQuery::parse(request.uri().query()) {
            Ok(query) => super::logs::answer(query, &shared.logs, shared.stopping.subscribe()).await,
            Err(why) => error(StatusCode::BAD_REQUEST, &why),
        },
        (&Method::POST, "/stop") => {
            let (lines, body) = mpsc::channel(LINES_BUFFER);
            let _ =
                lines.try_send(Bytes::from_static(b"stopping: SIGTERM to every instance, SIGKILL after the grace\n"));
            shared.stop_waiters.borrow_mut().push(lines);
            tracing::info!("stop requested over the control socket, starting shutdown");
            shared.platform.scheduler.do_send(Notify(Event::StopAsked));
            Response::new(LineStream(body).boxed_unsync())
        }
        _ => error(StatusCode::NOT_FOUND, "unknown request; see `procgate --help`"),
    };
    Ok(response)
}

fn route_status(route: &Route) -> RouteStatus {
    RouteStatus {
        type_name: route.type_name.clone(),
        protocol: if route.policy.http { "http" } else { "tcp" }.to_string(),
        queued: route.queued(),
        refused_by_cap: route.stats.total(Outcome::H11),
        refused_by_rate: route.stats.total(Outcome::T429),
        bad_proxy_headers: route.stats.total(Outcome::P400),
        untrusted_proxies: route.stats.total(Outcome::P403),
        clients_tracked: route.clients.tracked(),
    }
}

/// `POST /scale` `{"tcp":3}` (also the status page's button).
pub(super) async fn scale(request: Request<Incoming>, platform: &Platform) -> Response<Body> {
    match read_json::<BTreeMap<String, usize>>(request).await {
        Ok(changes) => match platform.scheduler.send(Scale(changes.into_iter().collect())).await {
            Ok(Ok(lines)) => json(StatusCode::OK, &serde_json::json!({ "changes": lines })),
            Ok(Err(ScaleRefused::Bad(why))) => error(StatusCode::BAD_REQUEST, &why),
            Ok(Err(ScaleRefused::Busy(why))) => error(StatusCode::CONFLICT, &why),
            Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
        },
        Err(why) => error(StatusCode::BAD_REQUEST, &why),
    }
}

/// `POST /restart` `{"target":"tcp"}` (also the status page's button): its progress lines.
pub(super) async fn restart(request: Request<Incoming>, platform: &Platform) -> Response<Body> {
    match read_json::<RestartRequest>(request).await {
        Ok(body) => {
            if let Some(target) = &body.target {
                match platform.scheduler.send(CheckTarget(target.clone())).await {
                    Ok(Ok(())) => {}
                    Ok(Err(why)) => return error(StatusCode::BAD_REQUEST, &why),
                    Err(err) => return error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
                }
            }
            stream(|client| Roll::Restart { target: body.target, client }, platform)
        }
        Err(why) => error(StatusCode::BAD_REQUEST, &why),
    }
}

/// `POST /wake` `{"type":"tcp"}`: its lines, once the Scheduler took it (else 400 and why).
async fn wake(request: Request<Incoming>, platform: &Platform) -> Response<Body> {
    let WakeRequest { type_name } = match read_json(request).await {
        Ok(body) => body,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    let (client, lines) = mpsc::unbounded_channel::<String>();
    match platform.scheduler.send(WakeUp { type_name, client }).await {
        Ok(Ok(())) => lines_body(lines),
        Ok(Err(why)) => error(StatusCode::BAD_REQUEST, &why),
        Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
    }
}

/// Sends a rollout request; its progress lines become the response body.
fn stream(roll: impl FnOnce(mpsc::UnboundedSender<String>) -> Roll, platform: &Platform) -> Response<Body> {
    let (client, lines) = mpsc::unbounded_channel::<String>();
    platform.rollouts.do_send(roll(client));
    lines_body(lines)
}

/// A response body of the lines sent on `lines`, each as it comes, until its sender is gone.
fn lines_body(lines: mpsc::UnboundedReceiver<String>) -> Response<Body> {
    let (bytes, body) = mpsc::channel(LINES_BUFFER);
    tokio::task::spawn_local(forward_lines(lines, bytes));
    Response::new(LineStream(body).boxed_unsync())
}

async fn forward_lines(mut lines: mpsc::UnboundedReceiver<String>, bytes: mpsc::Sender<Bytes>) {
    while let Some(line) = lines.recv().await {
        if bytes.send(Bytes::from(line + "\n")).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handed_over_control_socket_keeps_the_root_locked_after_the_old_one_closes() {
        let root = tempfile::tempdir().unwrap();
        let old = bind(root.path()).unwrap();
        let (listener, lock) = old.try_clone().unwrap();
        let new = Bound::adopt(root.path(), listener, lock).unwrap();
        // A successor that fails drops its copies: the running one still owns the root.
        let (listener, lock) = new.try_clone().unwrap();
        drop(Bound::adopt(root.path(), listener, lock).unwrap());
        assert!(matches!(bind(root.path()), Err(ControlError::AlreadyRunning { .. })), "the root is still owned");
        drop(old);
        assert!(matches!(bind(root.path()), Err(ControlError::AlreadyRunning { .. })), "the root is still owned");
        let _client = std::os::unix::net::UnixStream::connect(socket_path(root.path())).unwrap();
        new.listener.set_nonblocking(false).unwrap();
        new.listener.accept().unwrap();
        drop(new);
        assert!(bind(root.path()).is_ok(), "free once both are gone");
    }
}
