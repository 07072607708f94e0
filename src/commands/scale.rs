//! `procgate scale TYPE=N...`: change the formation of the running procgate. On a terminal it
//! then shows one live line per instance it started or retired until each is up or gone.

use super::live::Live;
use crate::cli::ScaleArgs;
use crate::control::{client, PsReply};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// How often the live lines look at the instances again.
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// How long the live lines follow the instances at most (their boot may fail for longer).
const WATCH_FOR: Duration = Duration::from_secs(120);

/// Why a scale request was refused before it was sent.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not TYPE=COUNT; write e.g. `procgate scale tcp=3 web=1`")]
pub struct BadScale(String);

pub fn run(args: ScaleArgs) -> anyhow::Result<i32> {
    let mut changes = BTreeMap::new();
    for item in &args.changes {
        let (name, count) = item.split_once('=').ok_or_else(|| BadScale(item.clone()))?;
        let count: usize = count.trim().parse().map_err(|_| BadScale(item.clone()))?;
        changes.insert(name.trim().to_string(), count);
    }
    let body = serde_json::to_string(&changes)?;
    let answer = client::block_on(async {
        let response = client::call(&args.root.root, hyper::Method::POST, "/scale", Some(body)).await?;
        Ok(client::read_all(response).await?)
    })?;
    let answer: serde_json::Value = serde_json::from_str(&answer)?;
    let mut live = Live::new();
    let changes: Vec<&str> = answer["changes"].as_array().into_iter().flatten().filter_map(|c| c.as_str()).collect();
    for change in &changes {
        live.line(change);
    }
    if live.is_terminal() {
        follow(&args.root.root, &changes, &mut live);
    }
    Ok(0)
}

/// Updates each changed instance's line from `ps` until every started one is up (or crashed)
/// and every retired one is gone, or [`WATCH_FOR`] has passed.
fn follow(root: &Path, changes: &[&str], live: &mut Live) {
    let names: Vec<(&str, bool)> = changes
        .iter()
        .filter_map(|c| c.split_once(' ').map(|(name, rest)| (name, rest.starts_with("starting"))))
        .collect();
    let deadline = Instant::now() + WATCH_FOR;
    while Instant::now() < deadline {
        std::thread::sleep(WATCH_EVERY);
        let Ok(reply) = ps(root) else { return };
        let mut settled = true;
        for (name, started) in &names {
            let now = reply.instances.iter().filter(|i| i.name == *name).find(|i| !*started || i.state != "draining");
            let text = match now {
                Some(i) => format!("{name} {}{}", i.state, i.pid.map_or(String::new(), |p| format!(" (pid {p})"))),
                None => format!("{name} gone"),
            };
            settled &= match (started, now) {
                (true, Some(i)) => matches!(i.state.as_str(), "up" | "crashed" | "failed"),
                (true, None) => true,
                (false, found) => found.is_none(),
            };
            live.row(name.to_string(), &text);
        }
        if settled {
            return;
        }
    }
}

fn ps(root: &Path) -> anyhow::Result<PsReply> {
    client::block_on(async {
        let response = client::call(root, hyper::Method::GET, "/ps", None).await?;
        Ok(serde_json::from_str(&client::read_all(response).await?)?)
    })
}
