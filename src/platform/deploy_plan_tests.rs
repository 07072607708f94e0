//! The planner over real releases read from temporary app directories.

use super::*;
use crate::config::{AppPaths, Choices, Listen};
use std::path::Path;

/// A release of an app directory holding these files, with both routes on port 0.
fn release(dir: &Path, files: &[(&str, &str)]) -> Release {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let paths = AppPaths { root: Some(dir.to_path_buf()), ..AppPaths::default() };
    let any = Some("127.0.0.1:0".parse().unwrap());
    Release::build(&paths, &Choices { listen: Listen { tcp: any, web: any }, ..Choices::default() }).unwrap()
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(name, count)| (name.to_string(), *count)).collect()
}

fn change_of<'a>(plan: &'a DeployPlan, name: &str) -> &'a TypeChange {
    &plan.types.iter().find(|t| t.type_name == name).unwrap().change
}

#[test]
fn a_type_at_zero_stays_at_zero_and_a_new_type_starts_at_one() {
    let (v1, v2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let running = release(v1.path(), &[("Procfile", "tcp: ./serve\nworker: ./work\nold: ./old\n")]);
    let new = release(v2.path(), &[("Procfile", "tcp: ./serve\nworker: ./work\nclock: ./tick\n")]);
    let plan = plan(&running, &new, &counts(&[("tcp", 2), ("worker", 0), ("old", 1)]));
    assert_eq!(*change_of(&plan, "worker"), TypeChange::StaysAtZero);
    assert_eq!(*change_of(&plan, "clock"), TypeChange::Added);
    assert_eq!(*change_of(&plan, "old"), TypeChange::Removed { count: 1 });
    let TypeChange::Replaced { count: 2, changes } = change_of(&plan, "tcp") else { panic!("{plan:?}") };
    assert_eq!(changes, &[format!("runs in {}", v2.path().display())]);
    assert!(!plan.is_refused(), "{plan}");
}

#[test]
fn a_type_asleep_stays_asleep_and_wakes_with_the_new_release() {
    let dir = tempfile::tempdir().unwrap();
    let running = release(dir.path(), &[("Procfile", "tcp: ./serve\nworker: ./work\n")]);
    let new = release(dir.path(), &[("Procfile", "tcp: ./serve --v2\nworker: ./work\n")]);
    let asleep = |name: &str| (name == "tcp").then_some(2);
    let plan = plan(&running, &new, &counts(&[("tcp", 0), ("worker", 0)])).with_asleep(asleep);
    assert_eq!(*change_of(&plan, "tcp"), TypeChange::Asleep { count: 2 });
    assert_eq!(*change_of(&plan, "worker"), TypeChange::StaysAtZero);
    assert!(plan.to_string().contains("tcp: asleep; its next wake starts 2 instances of this release"), "{plan}");
}

#[test]
fn what_changed_in_a_type_is_named_and_env_values_are_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let running = release(dir.path(), &[("Procfile", "tcp: ./serve\n"), (".env", "TOKEN=old\nDEBUG=1\n")]);
    let new = release(
        dir.path(),
        &[
            ("Procfile", "tcp: ./serve --fast\n"),
            (".env", "TOKEN=secret\nREGION=eu\n"),
            ("procgate.toml", "[types.tcp]\nproxy_protocol = \"v2\"\nhealth_interval = \"5s\"\n"),
        ],
    );
    let plan = plan(&running, &new, &counts(&[("tcp", 1)]));
    let TypeChange::Replaced { changes, .. } = change_of(&plan, "tcp") else { panic!("{plan:?}") };
    assert_eq!(
        changes,
        &[
            "command changed",
            "env: REGION added, TOKEN changed, DEBUG removed",
            "health_interval: unset → 5s",
            "proxy_protocol: unset → \"v2\"",
        ]
    );
    assert!(!plan.to_string().contains("secret"));
    assert!(!plan.is_refused(), "proxy_protocol travels with the new instances: {plan}");
}

#[test]
fn a_change_to_what_a_listener_holds_is_refused_with_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let running =
        release(dir.path(), &[("Procfile", "tcp: ./serve\n"), ("procgate.toml", "[types.tcp]\nrate = 10.0\n")]);
    let toml = "[types.tcp]\nrate = 20.0\nidle_timeout = \"1h\"\n";
    let new = release(dir.path(), &[("Procfile", "tcp: ./serve\n"), ("procgate.toml", toml)]);
    let plan = plan(&running, &new, &counts(&[("tcp", 1)]));
    assert_eq!(plan.refusals, ["[types.tcp] rate: 10.0 → 20.0", "[types.tcp] idle_timeout: unset → 1h"]);
    assert!(refusal_text(&plan).contains("stop and start procgate"), "{}", refusal_text(&plan));
}

#[test]
fn a_type_that_would_need_a_new_listener_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let running = release(dir.path(), &[("Procfile", "worker: ./work\n")]);
    let new = release(dir.path(), &[("Procfile", "worker: ./work\nweb: ./site\n")]);
    let plan = plan(&running, &new, &counts(&[("worker", 1)]));
    assert_eq!(plan.refusals, ["`web` would be served on 127.0.0.1:0: a new listener"]);
}

#[test]
fn the_plan_prints_one_line_per_type_and_the_release_step_first() {
    let dir = tempfile::tempdir().unwrap();
    let running = release(dir.path(), &[("Procfile", "tcp: ./serve\nworker: ./work\n")]);
    let new = release(dir.path(), &[("Procfile", "release: ./migrate\ntcp: ./serve\nworker: ./work\n")]);
    let text = plan(&running, &new, &counts(&[("tcp", 2)])).to_string();
    assert_eq!(
        text,
        "deploy plan:\n  release: `./migrate` runs first; the rollout begins only if it exits 0\n  \
         tcp: 2 instances replaced (same definition, new code)\n  worker: stays at 0 instances\n"
    );
}
