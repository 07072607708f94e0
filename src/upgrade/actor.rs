//! The Upgrade actor: carries out one upgrade at a time, asked over the control socket
//! (`POST /upgrade`) or by SIGUSR2 (through the anchor). Refuses while one is under way or a
//! rollout is; checks the new binary; has the anchor start it, waits for its hello and hands it
//! copies of the listeners. As handing the instances over is not built yet, it then abandons
//! the successor: nothing changes.

use super::listeners::{Listeners, Sources};
use super::{check, handover};
use crate::anchor::Link;
use crate::platform::rollout_actor::{RolloutActor, Underway};
use actix::prelude::*;
use std::path::PathBuf;

/// An upgrade to `binary` (absolute), else to the binary running.
#[derive(Message)]
#[rtype(result = "Result<String, Refused>")]
pub struct Upgrade {
    pub binary: Option<PathBuf>,
}

/// Why an upgrade did not happen; nothing changed in any case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The request itself is wrong.
    #[error("{0}")]
    Bad(String),
    /// An upgrade or a rollout is under way.
    #[error("refused: {0}")]
    Busy(String),
    /// The new binary cannot take over.
    #[error("refused: {0}")]
    Binary(check::Refusal),
    /// The successor failed to start or to answer: it was stopped.
    #[error("rolled back: {0}; nothing changed")]
    RolledBack(String),
    /// The successor answered, but the rest is not built yet: it was stopped.
    #[error("{0}")]
    NotBuilt(String),
}

pub struct UpgradeActor {
    anchor: Option<Link>,
    rollouts: Addr<RolloutActor>,
    sources: Sources,
    underway: bool,
}

impl UpgradeActor {
    pub fn new(anchor: Option<Link>, rollouts: Addr<RolloutActor>, sources: Sources) -> UpgradeActor {
        UpgradeActor { anchor, rollouts, sources, underway: false }
    }
}

impl Actor for UpgradeActor {
    type Context = Context<Self>;
}

impl Handler<Upgrade> for UpgradeActor {
    type Result = ResponseActFuture<Self, Result<String, Refused>>;

    fn handle(&mut self, upgrade: Upgrade, _ctx: &mut Context<Self>) -> Self::Result {
        if self.underway {
            let busy = Refused::Busy("an upgrade is under way; one at a time".to_string());
            return Box::pin(actix::fut::ready(Err(busy)));
        }
        let listeners = match self.sources.listeners() {
            Ok(listeners) => listeners,
            Err(err) => {
                return Box::pin(actix::fut::ready(Err(Refused::Busy(format!("procgate is stopping ({err})")))))
            }
        };
        self.underway = true;
        let work = carry_out(upgrade.binary, self.anchor.clone(), self.rollouts.clone(), listeners);
        Box::pin(work.into_actor(self).map(|result, actor, _| {
            actor.underway = false;
            match &result {
                Ok(done) => tracing::info!("upgrade: {done}"),
                Err(refused) => tracing::warn!("upgrade not carried out: {refused}"),
            }
            result
        }))
    }
}

async fn carry_out(
    binary: Option<PathBuf>,
    anchor: Option<Link>,
    rollouts: Addr<RolloutActor>,
    listeners: Listeners,
) -> Result<String, Refused> {
    let binary = match binary.map_or_else(running_binary, Ok).map_err(Refused::Bad)? {
        path if path.is_absolute() => path,
        path => return Err(Refused::Bad(format!("{}: the new binary's path must be absolute", path.display()))),
    };
    if let Ok(Some(rollout)) = rollouts.send(Underway).await {
        return Err(Refused::Busy(format!("a {rollout} is under way; upgrade once it is done")));
    }
    let link = anchor.ok_or_else(|| Refused::Busy("this procgate runs without its anchor process".to_string()))?;
    tracing::info!("upgrade asked: checking {}", binary.display());
    let protocols = check::check(&binary).await.map_err(Refused::Binary)?;
    let shown = binary.display().to_string();
    let started = tokio::task::spawn_blocking(move || {
        let (stream, hello) = handover::start_successor(&link, &binary)?;
        let received = handover::hand_listeners(&stream, &listeners).inspect_err(|_| handover::abandon(&link))?;
        handover::abandon(&link);
        Ok::<_, String>((hello, received))
    });
    let (hello, received) = match started.await {
        Ok(started) => started.map_err(Refused::RolledBack)?,
        Err(err) => return Err(Refused::RolledBack(err.to_string())),
    };
    Err(Refused::NotBuilt(format!(
        "{shown} passed the check ({protocols}) and its main process (pid {}) answered and took the listeners \
         ({received}), but handing the instances over is not built yet (issue 19): it was stopped, nothing changed",
        hello.pid
    )))
}

/// The path of the binary this procgate runs: where a package upgrade puts the new one (the
/// kernel names a replaced file `PATH (deleted)`).
fn running_binary() -> Result<PathBuf, String> {
    let path = std::env::current_exe().map_err(|err| format!("cannot tell which binary runs ({err}); name one"))?;
    let shown = path.to_string_lossy();
    Ok(shown.strip_suffix(" (deleted)").map_or(path.clone(), PathBuf::from))
}
