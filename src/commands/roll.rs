//! `procgate restart [TARGET]` and `procgate deploy [--from DIR]`: ask for a zero-downtime
//! rollout, print its progress, and exit 0 only if it ended with `ok:`.

use super::live::Live;
use crate::cli::{DeployArgs, RestartArgs};
use crate::config::ReleaseSource;
use crate::control::{client, ControlError, DeployRequest, RestartRequest};
use std::path::{Path, PathBuf};

pub fn restart(args: RestartArgs) -> anyhow::Result<i32> {
    let body = serde_json::to_string(&RestartRequest { target: args.target })?;
    roll(&args.root.root, "/restart", body)
}

/// The new release's paths are resolved here, in the directory `deploy` runs in.
pub fn deploy(args: DeployArgs) -> anyhow::Result<i32> {
    let env = match &args.env {
        Some(list) => Some(list.split(',').map(|p| absolute(Path::new(p.trim()))).collect::<Result<Vec<_>, _>>()?),
        None => None,
    };
    let source = ReleaseSource {
        from: args.from.as_deref().map(absolute).transpose()?,
        procfile: args.procfile.as_deref().map(absolute).transpose()?,
        env: env.map(|files| files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(",")),
    };
    let request = DeployRequest { source, dry_run: args.dry_run };
    let body = serde_json::to_string(&request)?;
    roll(&args.root, "/deploy", body).map_err(|err| match (err.downcast_ref(), &args.from) {
        (Some(ControlError::NotRunning { .. }), None) if args.root != Path::new(".") => err.context(format!(
            "`deploy --root DIR` names the running app, as in every command; to roll out the release in \
             {} to the app running in another directory, use `procgate deploy --from {} -d APP_DIR`",
            args.root.display(),
            args.root.display()
        )),
        _ => err,
    })
}

/// `path` from the current directory, or the reason it does not exist.
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    path.canonicalize().map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))
}

/// Sends `body` to `path` and prints the progress lines that come back (live rows on a
/// terminal); exit 0 only if the last one starts with `ok:`.
pub(super) fn roll(app: &Path, path: &str, body: String) -> anyhow::Result<i32> {
    client::block_on(async {
        let response = client::call(app, hyper::Method::POST, path, Some(body)).await?;
        let mut live = Live::new();
        let last = client::each_line(response, |line| match line.starts_with("ok:") || line.starts_with("failed:") {
            true => live.end(line),
            false => live.line(line),
        })
        .await;
        if !last.starts_with("ok:") && !last.starts_with("failed:") {
            // The stream ended without its result: procgate stopped (or its main process was
            // replaced) in the middle.
            eprintln!("procgate: procgate stopped before the rollout ended; `procgate ps` shows what runs now");
        }
        Ok(if last.starts_with("ok:") { 0 } else { 1 })
    })
}
