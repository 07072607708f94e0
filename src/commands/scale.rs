//! `procgate scale TYPE=N...`: change the formation of the running procgate.

use crate::cli::ScaleArgs;
use crate::control::client;
use std::collections::BTreeMap;

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
    for change in answer["changes"].as_array().into_iter().flatten() {
        println!("{}", change.as_str().unwrap_or_default());
    }
    Ok(0)
}
