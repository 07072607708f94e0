//! What the Rollout controller and the Scheduler say to each other, as in Kubernetes' split of
//! the Deployment controller from the ReplicaSet controller: intents one way (start replacements,
//! run a release step, switch routing, abandon replacements), reports the other (a replacement is
//! ready or failed, an old instance drained, a release step exited, the platform is stopping).
//! The Scheduler stays the one owner of instances; the Rollout controller owns rollouts.

use crate::process::protocol::ExitReason;

/// Identifies an instance slot: one name, one port, one command, across its crash restarts.
/// A replacement (rollout) or a scaled-up instance gets a new slot; ids are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotId(pub usize);

/// An old instance and its replacement; either may be absent (a type a deploy adds or removes).
pub type Pair = (Option<SlotId>, Option<SlotId>);

/// Which instances a rollout replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `restart`: every current instance (`None`), a type's (`tcp`) or one (`tcp.2`).
    Restart(Option<String>),
    /// Daily cycling of one instance, if it is still a current one.
    Cycle(SlotId),
    /// Every current instance of a type, into the release in force (a type that woke from sleep
    /// during a deploy, with the previous release).
    Refresh(String),
    /// The deploy the Scheduler has planned (`PlanDeploy`).
    Deploy,
}

/// A current instance as a selector sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current<'a> {
    pub slot: SlotId,
    pub type_name: &'a str,
    /// `tcp.2`
    pub name: &'a str,
}

impl Selector {
    /// The current instances a restart or a cycle replaces (a deploy's come from its plan).
    pub fn pick(&self, current: &[Current]) -> Result<Vec<SlotId>, IntentRefused> {
        match self {
            Selector::Restart(target) => {
                let matches = |c: &&Current| target.as_deref().is_none_or(|t| t == c.type_name || t == c.name);
                let picked: Vec<SlotId> = current.iter().filter(matches).map(|c| c.slot).collect();
                match picked.is_empty() {
                    true => {
                        let target = target.as_deref().unwrap_or("all");
                        Err(IntentRefused::Failed(format!("no running instance matches `{target}`")))
                    }
                    false => Ok(picked),
                }
            }
            Selector::Refresh(type_name) => {
                Ok(current.iter().filter(|c| c.type_name == type_name).map(|c| c.slot).collect())
            }
            Selector::Cycle(slot) => match current.iter().any(|c| c.slot == *slot) {
                true => Ok(vec![*slot]),
                false => Err(IntentRefused::Gone),
            },
            Selector::Deploy => Ok(Vec::new()),
        }
    }
}

/// What the Scheduler reports about the instances a rollout cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// A regular instance ran for the first time: its daily cycle clock starts, `age` into its
    /// period (zero, or how long it had run when an upgrade's new main process adopted it).
    Spawned { slot: SlotId, name: String, age: std::time::Duration },
    /// A line of a replacement's progress (`tcp.1 replacement starting (pid 7, port 5001)`).
    Progress(String),
    /// A replacement held out of routing is healthy.
    Ready { slot: SlotId },
    /// A replacement failed before the switch (`why` names it, with its pid).
    Failed { slot: SlotId, why: String },
    /// A retiring instance has no open connection left, or is gone; `who` is `tcp.1 (pid 7)`.
    Drained { slot: SlotId, who: String },
    /// A deploy's release step exited.
    StepExited { slot: SlotId, reason: ExitReason },
    /// After a deploy's commit, instances of `type_name` still run the previous release: they
    /// woke from sleep while the deploy rolled out. A restart of the type moves them.
    Stale { type_name: String },
    /// The platform is stopping: no rollout may go on.
    Stopping,
}

/// Why the Scheduler did not carry out an intent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntentRefused {
    #[error("procgate is stopping")]
    Stopping,
    /// The instance to cycle was replaced or removed meanwhile.
    #[error("the instance was replaced meanwhile")]
    Gone,
    #[error("{0}")]
    Failed(String),
}
