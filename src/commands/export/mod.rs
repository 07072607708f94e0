//! `procgate export kubernetes|systemd`: the app as Kubernetes manifests or systemd units,
//! made from the same [`Release`] `start` builds (Procfile, env files, formation,
//! procgate.toml and `start`'s flags), never from a second reading of the files. Printed, or
//! written one file each into `-o DIR` (files.rs).

mod files;
mod kubernetes;
mod systemd;
mod systemd_env;
mod yaml;

use crate::cli::{ExportArgs, ExportCommon, ExportTarget, StartArgs};
use crate::config::Release;
use crate::platform::spec::{Templates, TypeTemplate};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Input an export cannot turn into objects or units; exit status 2, as bad input.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("`{name}` cannot name the app's objects: {why}; pass --name NAME (lowercase letters, digits and `-`, starting with a letter, at most {MAX_APP_NAME} characters)")]
    BadAppName { name: String, why: &'static str },
    #[error("{procfile}: the type `{type_name}` cannot be named `{object}` in Kubernetes or systemd: {why}; rename the type in the Procfile")]
    BadTypeName { procfile: String, type_name: String, object: String, why: String },
    #[error("{path} exists and was not written by `procgate export`; move it away or pass another -o DIR (nothing was written)")]
    NotOurs { path: String },
    #[error("{0}")]
    Unsupported(String),
}

/// The longest app name: object names add `-TYPE`, a CronJob's may have 52 characters.
const MAX_APP_NAME: usize = 40;

/// What both exports work from: the release as `start` builds it, its types' templates (what
/// each instance runs, with which checks and variables), the app's name and `start`'s flags.
pub struct Source<'a> {
    pub release: Release,
    pub templates: Templates,
    /// The app's name in object and unit names (`chat`).
    pub app: String,
    /// The app root, absolute.
    pub root: PathBuf,
    pub start: &'a StartArgs,
}

pub fn run(args: ExportArgs) -> anyhow::Result<i32> {
    match args.target {
        ExportTarget::Kubernetes(args) => {
            let source = Source::read(&args.common)?;
            let manifests = kubernetes::manifests(&source, &args)?;
            files::deliver(args.common.output.as_deref(), &manifests, files::Format::Yaml)
        }
        ExportTarget::Systemd(args) => {
            let source = Source::read(&args.common)?;
            let units = systemd::units(&source)?;
            files::deliver(args.common.output.as_deref(), &units, files::Format::Units)
        }
    }
}

impl Source<'_> {
    fn read(common: &ExportCommon) -> anyhow::Result<Source<'_>> {
        let start = &common.start;
        let release = Release::build(&start.source.paths(), &start.choices())?;
        // Every route as configured: nothing is bound, the objects or units say where it is.
        let templates = Templates::of(&release, &release.routes)?;
        let root = release.files.root.canonicalize()?;
        let app = match &common.name {
            Some(name) => checked_app_name(name)?,
            None => app_name_of(&root)?,
        };
        for template in &templates.types {
            object_name(&app, &release, template)?;
        }
        Ok(Source { release, templates, app, root, start })
    }

    /// `chat-web`: the name of a type's objects or units (checked in [`Source::read`]).
    pub fn name_of(&self, type_name: &str) -> String {
        format!("{}-{}", self.app, type_label(type_name))
    }

    /// The long-running types, in Procfile order, with their formation count.
    pub fn types(&self) -> impl Iterator<Item = (&Arc<TypeTemplate>, usize)> {
        self.templates.types.iter().map(|t| (t, self.release.formation.count(&t.type_name)))
    }
}

/// A Procfile type as a name part and label value: lowercase, `_` as `-` (`Worker_2` → `worker-2`).
pub fn type_label(type_name: &str) -> String {
    type_name.to_ascii_lowercase().replace('_', "-")
}

/// The app's name from its directory's (`procfiles/chat` → `chat`), lowercased, other
/// characters than letters, digits and `-` as `-`.
fn app_name_of(root: &Path) -> Result<String, ExportError> {
    let dir = root.file_name().map(|name| name.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let name: String = dir.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    checked_app_name(name.trim_matches('-'))
}

fn checked_app_name(name: &str) -> Result<String, ExportError> {
    let bad = |why| Err(ExportError::BadAppName { name: name.to_string(), why });
    if name.is_empty() || name.len() > MAX_APP_NAME {
        return bad("it must have 1 to 40 characters");
    }
    if !is_dns_label(name) {
        return bad("it must be lowercase letters, digits and `-`, start with a letter and end with a letter or digit");
    }
    Ok(name.to_string())
}

/// A DNS-1035 label without its length: what a Kubernetes Service name must be.
fn is_dns_label(name: &str) -> bool {
    let allowed = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    allowed && name.starts_with(|c: char| c.is_ascii_lowercase()) && !name.ends_with('-')
}

/// Checks that `template`'s objects can be named `APP-TYPE` and that no other type gets that name.
fn object_name(app: &str, release: &Release, template: &TypeTemplate) -> Result<(), ExportError> {
    let object = format!("{app}-{}", type_label(&template.type_name));
    let bad = |why: String| ExportError::BadTypeName {
        procfile: release.files.procfile.path.display().to_string(),
        type_name: template.type_name.clone(),
        object: object.clone(),
        why,
    };
    if !is_dns_label(&object) || object.len() > 63 {
        return Err(
            bad("a name is at most 63 lowercase letters, digits and `-`, ending with a letter or digit".into()),
        );
    }
    let same =
        release.files.procfile.types.iter().find(|other| {
            other.name != template.type_name && type_label(&other.name) == type_label(&template.type_name)
        });
    match same {
        Some(other) => Err(bad(format!("the type `{}` gets the same name", other.name))),
        None => Ok(()),
    }
}

/// Whole seconds, rounded up (Kubernetes and cron count in seconds).
pub fn seconds(duration: std::time::Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_name_comes_from_the_directory() {
        assert_eq!(app_name_of(Path::new("/srv/procfiles/chat")).unwrap(), "chat");
        assert_eq!(app_name_of(Path::new("/srv/My_App.v2")).unwrap(), "my-app-v2");
        assert!(app_name_of(Path::new("/srv/2048")).unwrap_err().to_string().contains("pass --name"));
        assert!(checked_app_name("Chat").is_err());
        assert!(checked_app_name(&"a".repeat(41)).is_err());
    }

    #[test]
    fn types_become_labels_and_seconds_round_up() {
        assert_eq!(type_label("Worker_2"), "worker-2");
        assert_eq!(seconds(std::time::Duration::from_millis(1500)), 2);
        assert_eq!(seconds(std::time::Duration::from_secs(30)), 30);
    }
}
