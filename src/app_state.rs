//! procgate's own directory in the app root (`.procgate`: the control socket, the lock) and the
//! state it keeps there so the next `start` in that root comes back as the last one left off:
//! the formation after each `scale` and deploy, the files of the release a deploy put in
//! force, and the types asleep. `state.json` is replaced whole (written aside, then renamed), so a crash mid-write
//! leaves the previous one.

use crate::config::AppPaths;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The directory, under the app root, that holds the control socket and the state.
pub const DIR: &str = ".procgate";

/// The state file's name in [`DIR`].
const FILE: &str = "state.json";

/// What the last run left.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppState {
    /// Instances per type.
    pub formation: BTreeMap<String, usize>,
    /// The files of the release in force, when a deploy changed them.
    #[serde(default)]
    pub release: Option<AppPaths>,
    /// The types asleep (`sleep_after`); `formation` has the count each wakes with.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub sleeping: std::collections::BTreeSet<String>,
}

/// Why the state file cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}; remove it, or start with --fresh to ignore it")]
pub struct StateError {
    path: String,
    reason: String,
}

/// Where the state of the app in `root` is kept.
pub fn path(root: &Path) -> PathBuf {
    root.join(DIR).join(FILE)
}

impl AppState {
    /// The state the last run in `root` left, if any.
    pub fn load(root: &Path) -> Result<Option<AppState>, StateError> {
        let path = path(root);
        let failed = |reason: String| StateError { path: path.display().to_string(), reason };
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|err| failed(err.to_string())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(failed(err.to_string())),
        }
    }

    /// Records the state in `root` (whose `.procgate` exists: the control socket is there).
    pub fn store(&self, root: &Path) -> std::io::Result<()> {
        let path = path(root);
        let aside = path.with_extension("json.new");
        let _ = std::fs::remove_file(&aside);
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&aside)?;
        std::io::Write::write_all(&mut file, serde_json::to_string_pretty(self)?.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&aside, &path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_is_stored_and_read_back_and_a_bad_file_names_the_fix() {
        let root = tempfile::tempdir().unwrap();
        assert!(AppState::load(root.path()).unwrap().is_none());
        std::fs::create_dir(root.path().join(DIR)).unwrap();
        let sleeping = ["web".to_string()].into();
        let state = AppState { formation: [("web".to_string(), 3)].into(), release: None, sleeping };
        state.store(root.path()).unwrap();
        assert_eq!(AppState::load(root.path()).unwrap(), Some(state.clone()));
        std::fs::write(path(root.path()), "{").unwrap();
        let err = AppState::load(root.path()).unwrap_err().to_string();
        assert!(err.contains("state.json") && err.contains("--fresh"), "{err}");
    }
}
