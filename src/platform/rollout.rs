//! A rollout's bookkeeping: which replacement stands for which old instance, which replacements
//! are healthy, which old instances have drained. Pure; the Lifecycle acts on what it says.
//!
//! ```text
//!   Booting: replacements start, held out of routing
//!     ── every replacement healthy ──► Switched: replacements join routing, old ones leave
//!                                       and get SIGTERM ── every old one drained ──► done
//!     ── a replacement fails (R10, exits) ──► failed: replacements stopped, old ones keep serving
//! ```
//! A pair may lack an old instance (a type a deploy adds) or a replacement (a type it removes).

use super::lifecycle::SlotId;
use std::time::Duration;
use tokio::time::Instant;

/// Why a rollout runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutKind {
    /// `procgate restart [TARGET]`.
    Restart(String),
    /// `procgate deploy`.
    Deploy,
    /// Daily cycling of one instance.
    Cycle(String),
}

impl RolloutKind {
    pub fn describe(&self) -> String {
        match self {
            RolloutKind::Restart(target) => format!("restart of {target}"),
            RolloutKind::Deploy => "deploy".to_string(),
            RolloutKind::Cycle(name) => format!("cycling of {name}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub old: Option<SlotId>,
    pub new: Option<SlotId>,
    ready: bool,
    drained: bool,
}

#[derive(Debug, Clone)]
pub struct Rollout {
    pub kind: RolloutKind,
    pairs: Vec<Pair>,
    switched_at: Option<Instant>,
}

impl Rollout {
    pub fn new(kind: RolloutKind, pairs: Vec<(Option<SlotId>, Option<SlotId>)>) -> Rollout {
        let pairs = pairs
            .into_iter()
            .map(|(old, new)| Pair { old, new, ready: new.is_none(), drained: old.is_none() })
            .collect();
        Rollout { kind, pairs, switched_at: None }
    }

    pub fn pairs(&self) -> &[Pair] {
        &self.pairs
    }

    pub fn replacements(&self) -> impl Iterator<Item = SlotId> + '_ {
        self.pairs.iter().filter_map(|p| p.new)
    }

    pub fn olds(&self) -> impl Iterator<Item = SlotId> + '_ {
        self.pairs.iter().filter_map(|p| p.old)
    }

    pub fn is_replacement(&self, id: SlotId) -> bool {
        self.pairs.iter().any(|p| p.new == Some(id))
    }

    pub fn is_switched(&self) -> bool {
        self.switched_at.is_some()
    }

    /// Records a healthy replacement.
    pub fn ready(&mut self, new: SlotId) {
        for pair in self.pairs.iter_mut().filter(|p| p.new == Some(new)) {
            pair.ready = true;
        }
    }

    /// Every replacement is healthy and the switch has not happened yet.
    pub fn all_ready(&self) -> bool {
        !self.is_switched() && self.pairs.iter().all(|p| p.ready)
    }

    pub fn switch(&mut self, now: Instant) {
        self.switched_at = Some(now);
    }

    /// Records an old instance with no open connection left; returns how long it took since the
    /// switch, if it was not already counted.
    pub fn drained(&mut self, old: SlotId, now: Instant) -> Option<Duration> {
        let switched_at = self.switched_at?;
        let pair = self.pairs.iter_mut().find(|p| p.old == Some(old) && !p.drained)?;
        pair.drained = true;
        Some(now.saturating_duration_since(switched_at))
    }

    /// Every old instance is out of routing with no open connection: the rollout is done.
    pub fn is_done(&self) -> bool {
        self.is_switched() && self.pairs.iter().all(|p| p.drained)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_only_when_every_replacement_is_ready() {
        let mut rollout =
            Rollout::new(RolloutKind::Restart("tcp".into()), vec![(Some(0), Some(2)), (Some(1), Some(3))]);
        rollout.ready(2);
        rollout.ready(2);
        assert!(!rollout.all_ready(), "counting the same one twice does not switch");
        rollout.ready(3);
        assert!(rollout.all_ready());
        assert!(rollout.is_replacement(3) && !rollout.is_replacement(0));
    }

    #[tokio::test(start_paused = true)]
    async fn is_done_when_every_old_instance_drained_after_the_switch() {
        let mut rollout = Rollout::new(RolloutKind::Deploy, vec![(Some(0), Some(2)), (Some(1), None), (None, Some(3))]);
        assert_eq!(rollout.drained(0, Instant::now()), None, "nothing drains before the switch");
        rollout.ready(2);
        rollout.ready(3);
        assert!(rollout.all_ready(), "a removed type needs no replacement");
        rollout.switch(Instant::now());
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(rollout.drained(0, Instant::now()), Some(Duration::from_millis(1200)));
        assert_eq!(rollout.drained(0, Instant::now()), None, "counted once");
        assert!(!rollout.is_done());
        rollout.drained(1, Instant::now());
        assert!(rollout.is_done(), "an added type has nothing to drain");
    }
}
