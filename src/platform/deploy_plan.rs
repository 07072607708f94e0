//! A deploy as a plan: a pure function of the running release, the new one and the running
//! formation says which types are added, replaced, kept at 0 or removed, what changed in each,
//! and whether the deploy must be refused. `deploy --dry-run` prints it; a deploy carries it out.
//!
//! Rules (README, "Deploys"): every type with instances is replaced (the code on disk may have
//! changed even when the Procfile line did not); a type at 0 stays at 0, and one asleep stays
//! asleep (its next wake starts the new release); a type the running
//! release does not have starts with one instance; a type the new release drops drains. What a
//! new instance carries (command, env, health checks, `proxy_protocol`) changes with the rollout:
//! old instances and their connections keep theirs. What a route's listener holds (its address,
//! caps, rates, timeouts, `accept_proxy`) is set when procgate starts: a deploy that changes it
//! is refused with the keys, and changes nothing.

use crate::config::{Release, RouteSpec};
use crate::env::EnvMap;
use crate::formation::long_running;
use std::collections::BTreeMap;
use std::fmt;

/// What a deploy does to one type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeChange {
    /// Not in the running release: starts with one instance.
    Added,
    /// Its `count` instances are replaced; `changes` says what differs in their definition.
    Replaced { count: usize, changes: Vec<String> },
    /// At 0 in the running formation: stays at 0.
    StaysAtZero,
    /// Asleep (`sleep_after`): nothing starts now; its next wake starts `count` instances of
    /// the new release.
    Asleep { count: usize },
    /// Not in the new release: its `count` instances drain.
    Removed { count: usize },
}

/// One type's line of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypePlan {
    pub type_name: String,
    pub change: TypeChange,
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployPlan {
    pub types: Vec<TypePlan>,
    /// The new release's `release` command, run before the rollout.
    pub release_step: Option<String>,
    /// Why the deploy cannot be carried out; empty: it can.
    pub refusals: Vec<String>,
}

/// The plan of a deploy from `running` to `new`, with `counts` instances of each type running.
pub fn plan(running: &Release, new: &Release, counts: &BTreeMap<String, usize>) -> DeployPlan {
    let known = |name: &str| running.files.procfile.get(name).is_some();
    let mut types = Vec::new();
    for (_, process) in long_running(&new.files.procfile) {
        let count = counts.get(&process.name).copied().unwrap_or(0);
        let change = match (known(&process.name), count) {
            (false, _) => TypeChange::Added,
            (true, 0) => TypeChange::StaysAtZero,
            (true, count) => TypeChange::Replaced { count, changes: instance_changes(running, new, &process.name) },
        };
        types.push(TypePlan { type_name: process.name.clone(), change });
    }
    for (_, process) in long_running(&running.files.procfile) {
        if new.files.procfile.get(&process.name).is_none() {
            let count = counts.get(&process.name).copied().unwrap_or(0);
            types.push(TypePlan { type_name: process.name.clone(), change: TypeChange::Removed { count } });
        }
    }
    let release_step = new.release.as_ref().map(|step| step.command.clone());
    DeployPlan { types, release_step, refusals: route_refusals(running, new) }
}

impl DeployPlan {
    /// Whether the deploy may go ahead.
    pub fn is_refused(&self) -> bool {
        !self.refusals.is_empty()
    }

    /// The plan with the types asleep (`asleep` gives the count each wakes with) told apart
    /// from those at 0: a deploy does not wake them, their next wake starts the new release.
    pub fn with_asleep(mut self, asleep: impl Fn(&str) -> Option<usize>) -> DeployPlan {
        for line in &mut self.types {
            if let (TypeChange::StaysAtZero, Some(count)) = (&line.change, asleep(&line.type_name)) {
                line.change = TypeChange::Asleep { count };
            }
        }
        self
    }
}

/// What differs in the definition of `type_name`'s instances.
fn instance_changes(running: &Release, new: &Release, type_name: &str) -> Vec<String> {
    let mut changes = Vec::new();
    let command = |release: &Release| release.files.procfile.get(type_name).map(|t| t.command.clone());
    if command(running) != command(new) {
        changes.push("command changed".to_string());
    }
    if let Some(env) = env_changes(&running.files.env, &new.files.env) {
        changes.push(env);
    }
    if running.files.root != new.files.root {
        changes.push(format!("runs in {}", new.files.root.display()));
    }
    let (old, next) = (running.settings_of(type_name), new.settings_of(type_name));
    changes.extend(differing(&old.instance_keys(), &next.instance_keys()));
    changes
}

/// `env: API_KEY changed, DEBUG added` (names only: values may be secrets).
fn env_changes(old: &EnvMap, new: &EnvMap) -> Option<String> {
    let mut words = Vec::new();
    for (key, value) in new {
        match old.get(key) {
            None => words.push(format!("{key} added")),
            Some(was) if was != value => words.push(format!("{key} changed")),
            Some(_) => {}
        }
    }
    words.extend(old.keys().filter(|key| !new.contains_key(*key)).map(|key| format!("{key} removed")));
    (!words.is_empty()).then(|| format!("env: {}", words.join(", ")))
}

/// Why a route cannot follow the deploy: its listener is set up when procgate starts.
fn route_refusals(running: &Release, new: &Release) -> Vec<String> {
    let mut refusals = Vec::new();
    let route_of = |release: &Release, name: &str| release.routes.iter().find(|r| r.type_name == name).cloned();
    for (_, process) in long_running(&new.files.procfile) {
        let name = process.name.as_str();
        match (route_of(running, name), route_of(new, name)) {
            (None, Some(route)) => refusals.push(format!("`{name}` would be served on {}: a new listener", route.addr)),
            (Some(old), None) => refusals.push(format!("`{name}` would no longer be served on {}", old.addr)),
            (Some(old), Some(next)) => refusals.extend(listener_changes(running, new, &old, &next)),
            (None, None) => {}
        }
    }
    refusals
}

fn listener_changes(running: &Release, new: &Release, old: &RouteSpec, next: &RouteSpec) -> Vec<String> {
    let name = &old.type_name;
    let mut changes = Vec::new();
    if old.addr != next.addr {
        changes.push(format!("[types.{name}] listen: {} → {}", old.addr, next.addr));
    }
    let (was, will) = (running.settings_of(name).listener_keys(), new.settings_of(name).listener_keys());
    changes.extend(differing(&was, &will).into_iter().map(|change| format!("[types.{name}] {change}")));
    changes
}

/// `key: old → new` for each key whose value differs.
fn differing(old: &[(&'static str, String)], new: &[(&'static str, String)]) -> Vec<String> {
    let pairs = old.iter().zip(new);
    pairs.filter(|((_, a), (_, b))| a != b).map(|((key, a), (_, b))| format!("{key}: {a} → {b}")).collect()
}

impl fmt::Display for DeployPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "deploy plan:")?;
        if let Some(command) = &self.release_step {
            writeln!(f, "  release: `{command}` runs first; the rollout begins only if it exits 0")?;
        }
        for line in &self.types {
            let name = &line.type_name;
            match &line.change {
                TypeChange::Added => writeln!(f, "  {name}: added, starts with 1 instance")?,
                TypeChange::StaysAtZero => writeln!(f, "  {name}: stays at 0 instances")?,
                TypeChange::Asleep { count } => {
                    writeln!(f, "  {name}: asleep; its next wake starts {} of this release", instances(*count))?
                }
                TypeChange::Removed { count } => writeln!(f, "  {name}: removed, {} drain", instances(*count))?,
                TypeChange::Replaced { count, changes } if changes.is_empty() => {
                    writeln!(f, "  {name}: {} replaced (same definition, new code)", instances(*count))?
                }
                TypeChange::Replaced { count, changes } => {
                    writeln!(f, "  {name}: {} replaced ({})", instances(*count), changes.join("; "))?
                }
            }
        }
        for refusal in &self.refusals {
            writeln!(f, "  refused: {refusal}")?;
        }
        Ok(())
    }
}

fn instances(count: usize) -> String {
    match count {
        1 => "1 instance".to_string(),
        n => format!("{n} instances"),
    }
}

/// The reason given when a plan is refused, with the fix.
pub fn refusal_text(plan: &DeployPlan) -> String {
    format!(
        "the deploy changes what a listener holds, which procgate sets when it starts: {}; \
         stop and start procgate to apply it, or deploy without that change; nothing was changed",
        plan.refusals.join(", ")
    )
}

#[cfg(test)]
#[path = "deploy_plan_tests.rs"]
mod tests;
