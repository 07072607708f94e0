//! `procgate stop`: the graceful stop of SIGINT, asked over the control socket; prints progress
//! and returns once the running procgate has stopped everything.

use crate::cli::RootArgs;
use crate::control::client;

pub fn run(args: RootArgs) -> anyhow::Result<i32> {
    client::block_on(async {
        let response = client::call(&args.root, hyper::Method::POST, "/stop", None).await?;
        client::print_stream(response).await;
        Ok(0)
    })
}
