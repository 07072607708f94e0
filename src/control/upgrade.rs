//! `POST /upgrade` `{"binary":"/usr/local/bin/procgate"}`: replace procgate's binary. Refused
//! while an upgrade or a rollout is under way, and when the new binary fails its check
//! ([`crate::upgrade::check`]); in every refusal nothing changes.

use super::body::Body;
use super::server::{error, read_json};
use super::{Platform, UpgradeRequest};
use crate::platform::rollout_actor::Underway;
use crate::upgrade::{check, handover};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::cell::Cell;
use std::path::PathBuf;

/// Answers an upgrade request; `underway` is true while one is being carried out.
pub(super) async fn answer(request: Request<Incoming>, platform: &Platform, underway: &Cell<bool>) -> Response<Body> {
    let UpgradeRequest { binary } = match read_json(request).await {
        Ok(body) => body,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    let binary = match binary.map_or_else(running_binary, Ok) {
        Ok(path) if path.is_absolute() => path,
        Ok(path) => {
            let why = format!("{}: the new binary's path must be absolute", path.display());
            return error(StatusCode::BAD_REQUEST, &why);
        }
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    if underway.get() {
        return error(StatusCode::CONFLICT, "refused: an upgrade is under way; one at a time");
    }
    if let Ok(Some(rollout)) = platform.rollouts.send(Underway).await {
        return error(StatusCode::CONFLICT, &format!("refused: a {rollout} is under way; upgrade once it is done"));
    }
    let _mark = Mark::set(underway);
    tracing::info!("upgrade asked: checking {}", binary.display());
    match check::check(&binary).await {
        Err(refusal) => {
            tracing::warn!("upgrade refused, nothing changed: {refusal}");
            error(StatusCode::UNPROCESSABLE_ENTITY, &format!("refused: {refusal}"))
        }
        Ok(protocols) => successor(platform, binary, protocols).await,
    }
}

/// Has the anchor start the checked binary and waits for its hello; as handing the state over is
/// not built yet, abandons it then (the anchor kills it) and keeps running.
async fn successor(platform: &Platform, binary: PathBuf, protocols: check::Protocols) -> Response<Body> {
    let Some(link) = platform.anchor.clone() else {
        return error(StatusCode::CONFLICT, "refused: this procgate runs without its anchor process");
    };
    let shown = binary.display().to_string();
    let started = tokio::task::spawn_blocking(move || handover::start_successor(&link, &binary).map(|ok| (ok, link)));
    match started.await {
        Ok(Ok(((_stream, hello), link))) => {
            handover::abandon(&link);
            let why = format!(
                "{shown} passed the check ({protocols}) and its main process (pid {}) answered, but handing over to it \
                 is not built yet (issue 19): it was stopped, nothing changed",
                hello.pid
            );
            tracing::info!("upgrade not carried out: {why}");
            error(StatusCode::NOT_IMPLEMENTED, &why)
        }
        Ok(Err(why)) => {
            tracing::warn!("upgrade rolled back, nothing changed: {why}");
            error(StatusCode::BAD_GATEWAY, &format!("rolled back: {why}; nothing changed"))
        }
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
    }
}

/// Marks an upgrade under way until dropped (also when the client goes away mid-check).
struct Mark<'a>(&'a Cell<bool>);

impl<'a> Mark<'a> {
    fn set(underway: &'a Cell<bool>) -> Mark<'a> {
        underway.set(true);
        Mark(underway)
    }
}

impl Drop for Mark<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// The path of the binary this procgate runs: where a package upgrade puts the new one (the
/// kernel names a replaced file `PATH (deleted)`).
fn running_binary() -> Result<PathBuf, String> {
    let path = std::env::current_exe().map_err(|err| format!("cannot tell which binary runs ({err}); name one"))?;
    let shown = path.to_string_lossy();
    Ok(shown.strip_suffix(" (deleted)").map_or(path.clone(), PathBuf::from))
}
