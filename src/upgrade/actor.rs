//! The Upgrade actor: carries out one upgrade at a time, asked over the control socket
//! (`POST /upgrade`) or by SIGUSR2 (through the anchor). Refuses while one is under way or a
//! rollout is; checks the new binary; has the anchor start it and hands it copies of the
//! listeners, then the state and the instances (the Scheduler frozen meanwhile). Once the
//! successor answers ready, the anchor promotes it, and this main process stops accepting, lets
//! the instances go and drains its connections; on anything else the successor is abandoned
//! and everything resumes as it was.

use super::listeners::{Listeners, Sources};
use super::{check, handover};
use crate::anchor::Link;
use crate::logs::history::History;
use crate::platform::handed::Crossing;
use crate::platform::rollout_actor::{RolloutActor, Underway};
use crate::platform::scheduler::{Freeze, Frozen, LetGo, Scheduler, Thaw};
use crate::sd_notify::Notifier;
use actix::prelude::*;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

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
    /// The successor failed to start, to answer or to take over: it was stopped.
    #[error("rolled back: {0}; nothing changed")]
    RolledBack(String),
}

/// What the Upgrade actor needs to hand over: the Scheduler, the word that the main process
/// handed over (its servers stop accepting), how long it may drain, and the service manager.
#[derive(Clone)]
pub struct Handing {
    pub scheduler: Addr<Scheduler>,
    pub handoff: tokio::sync::watch::Sender<bool>,
    /// The longest an old main process relays its connections once it handed over.
    pub drain: std::time::Duration,
    pub notifier: Option<Rc<Notifier>>,
    /// The log lines kept, for the successor's `procgate logs`.
    pub history: Arc<History>,
}

pub struct UpgradeActor {
    anchor: Option<Link>,
    rollouts: Addr<RolloutActor>,
    sources: Sources,
    handing: Handing,
    underway: bool,
}

impl UpgradeActor {
    pub fn new(anchor: Option<Link>, rollouts: Addr<RolloutActor>, sources: Sources, handing: Handing) -> UpgradeActor {
        UpgradeActor { anchor, rollouts, sources, handing, underway: false }
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
        let asked = Asked { anchor: self.anchor.clone(), rollouts: self.rollouts.clone(), listeners };
        let work = carry_out(upgrade.binary, asked, self.handing.clone(), self.sources.gateway.clone());
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

/// What an upgrade starts from.
struct Asked {
    anchor: Option<Link>,
    rollouts: Addr<RolloutActor>,
    listeners: Listeners,
}

async fn carry_out(
    binary: Option<PathBuf>,
    asked: Asked,
    handing: Handing,
    gateway: crate::gateway::Stopper,
) -> Result<String, Refused> {
    let binary = match binary.map_or_else(running_binary, Ok).map_err(Refused::Bad)? {
        path if path.is_absolute() => path,
        path => return Err(Refused::Bad(format!("{}: the new binary's path must be absolute", path.display()))),
    };
    if let Ok(Some(rollout)) = asked.rollouts.send(Underway).await {
        return Err(Refused::Busy(format!("a {rollout} is under way; upgrade once it is done")));
    }
    let link =
        asked.anchor.ok_or_else(|| Refused::Busy("this procgate runs without its anchor process".to_string()))?;
    tracing::info!("upgrade asked: checking {}", binary.display());
    let protocols = check::check(&binary).await.map_err(Refused::Binary)?;
    let manager = handing.notifier.clone();
    manager.iter().for_each(|notifier| notifier.reloading());
    let rolled_back = |why: String| {
        handover::abandon(&link);
        manager.iter().for_each(|notifier| notifier.notify("READY=1"));
        Refused::RolledBack(why)
    };
    let shown = binary.display().to_string();
    let (listeners, starting) = (asked.listeners, link.clone());
    let started = tokio::task::spawn_blocking(move || {
        let (stream, hello) = handover::start_successor(&starting, &binary)?;
        let received = handover::hand_listeners(&stream, &listeners)?;
        Ok::<_, String>((stream, hello, received))
    })
    .await
    .unwrap_or_else(|err| Err(err.to_string()));
    let (stream, hello, received) = started.map_err(rolled_back)?;
    tracing::info!("upgrade: {shown} ({protocols}) runs as pid {} and took the listeners ({received})", hello.pid);
    let Frozen { state, instances } = match handing.scheduler.send(Freeze).await {
        Ok(Ok(frozen)) => frozen,
        Ok(Err(why)) => return Err(rolled_back(format!("the instances cannot be handed over now: {why}"))),
        Err(err) => return Err(rolled_back(err.to_string())),
    };
    let count = instances.len();
    let history = handing.history.read(None, false).0;
    let answered = tokio::task::spawn_blocking(move || {
        let borrowed: Vec<Crossing<BorrowedFd>> = instances
            .iter()
            .map(|c| Crossing {
                instance: c.instance.clone(),
                control: c.control.as_fd(),
                stdout: c.stdout.as_fd(),
                stderr: c.stderr.as_fd(),
            })
            .collect();
        handover::hand_instances(&stream, &state, &borrowed, &history).map(|took| (stream, took))
    })
    .await
    .unwrap_or_else(|err| Err(err.to_string()));
    let (stream, took) = match answered {
        Ok(answered) => answered,
        Err(why) => {
            handing.scheduler.do_send(Thaw);
            return Err(rolled_back(why));
        }
    };
    if let Err(err) = link.promote() {
        handing.scheduler.do_send(Thaw);
        return Err(rolled_back(format!("cannot tell the anchor to promote it: {err}")));
    }
    // From here on the successor is procgate: this main process stops accepting and drains.
    if let Err(err) = handover::promoted(&stream) {
        tracing::warn!("cannot tell the new main process it was promoted: {err}");
    }
    gateway.stop_accepting();
    handing.handoff.send_replace(true);
    handing.scheduler.do_send(LetGo { drain: handing.drain });
    Ok(format!(
        "{shown} ({protocols}) took over as main process pid {}: {count} instance(s) handed over, {took} in the new one; \
         this old main process relays its connections until they end (at most {}, until their instances are cycled)",
        hello.pid,
        crate::duration::format(handing.drain)
    ))
}

/// The path of the binary this procgate runs: where a package upgrade puts the new one (the
/// kernel names a replaced file `PATH (deleted)`).
fn running_binary() -> Result<PathBuf, String> {
    let path = std::env::current_exe().map_err(|err| format!("cannot tell which binary runs ({err}); name one"))?;
    let shown = path.to_string_lossy();
    Ok(shown.strip_suffix(" (deleted)").map_or(path.clone(), PathBuf::from))
}
