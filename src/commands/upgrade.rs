//! `procgate upgrade [--binary PATH]`: ask the running procgate to replace its binary; prints
//! the answer, or why it was refused (nothing changed then). And `__upgrade-check`, the new
//! binary's side of the check: the protocols it speaks.

use crate::cli::UpgradeArgs;
use crate::control::{client, UpgradeRequest};
use crate::upgrade::check::OURS;

pub fn run(args: UpgradeArgs) -> anyhow::Result<i32> {
    // Resolved here, in the directory `upgrade` runs in.
    let binary = args
        .binary
        .map(|path| path.canonicalize().map_err(|err| anyhow::anyhow!("{}: {err}", path.display())))
        .transpose()?;
    let body = serde_json::to_string(&UpgradeRequest { binary })?;
    client::block_on(async {
        let response = client::call(&args.root.root, hyper::Method::POST, "/upgrade", Some(body)).await?;
        let body = client::read_all(response).await?;
        let reply: serde_json::Value = serde_json::from_str(&body)?;
        match reply.get("upgraded").and_then(|done| done.as_str()) {
            Some(done) => crate::commands::out!("upgraded: {done}\n"),
            None => crate::commands::out!("{}\n", body.trim_end()),
        }
        Ok(0)
    })
}

/// Prints the protocols this binary speaks (`procgate-upgrade keeper=1 handover=1`).
pub fn answer_check() -> anyhow::Result<i32> {
    crate::commands::out!("{OURS}\n");
    Ok(0)
}
