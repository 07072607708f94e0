//! `procgate restart [TARGET]` and `procgate deploy [--root DIR]`: ask for a zero-downtime
//! rollout, print its progress, and exit 0 only if it ended with `ok:`.

use crate::cli::{DeployArgs, RestartArgs};
use crate::control::{client, DeployRequest, RestartRequest};
use std::path::Path;

pub fn restart(args: RestartArgs) -> anyhow::Result<i32> {
    let body = serde_json::to_string(&RestartRequest { target: args.target })?;
    roll(&args.root.root, "/restart", body)
}

pub fn deploy(args: DeployArgs) -> anyhow::Result<i32> {
    let root = args
        .root
        .map(|dir| dir.canonicalize().map_err(|err| anyhow::anyhow!("{}: {err}", dir.display())))
        .transpose()?;
    let body = serde_json::to_string(&DeployRequest { root })?;
    roll(&args.app, "/deploy", body)
}

fn roll(app: &Path, path: &str, body: String) -> anyhow::Result<i32> {
    client::block_on(async {
        let response = client::call(app, hyper::Method::POST, path, Some(body)).await?;
        let last = client::print_stream(response).await;
        Ok(if last.starts_with("ok:") { 0 } else { 1 })
    })
}
