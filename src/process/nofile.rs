//! The open-files limit: procgate raises its own to the hard limit (it holds two descriptors
//! per proxied connection), and gives its apps back the one it was started with, through their
//! keepers: an app must not find a limit it was never given (a service unit's `LimitNOFILE`, a
//! shell's `ulimit -n`).

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use std::sync::OnceLock;

/// How procgate tells a keeper the soft limit to give back to its app.
pub const KEEPER_ENV: &str = "PROCGATE_APP_NOFILE";

/// The soft limit procgate was started with, once it raised its own.
static ORIGINAL_SOFT: OnceLock<u64> = OnceLock::new();

/// Raises the soft open-files limit to the hard limit; returns the new limit.
pub fn raise() -> std::io::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
        let _ = ORIGINAL_SOFT.set(soft);
    }
    Ok(hard)
}

/// The soft limit to give back to apps, when procgate raised its own.
pub fn original() -> Option<u64> {
    ORIGINAL_SOFT.get().copied()
}

/// In the keeper, before the app starts: lowers the keeper's soft limit (which the app
/// inherits) to the one procgate was started with, and keeps the variable out of the app's
/// environment.
pub fn give_back(app: &mut std::process::Command) {
    let Some(soft) = std::env::var(KEEPER_ENV).ok().and_then(|v| v.parse::<u64>().ok()) else { return };
    app.env_remove(KEEPER_ENV);
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, soft.min(hard), hard);
    }
}
