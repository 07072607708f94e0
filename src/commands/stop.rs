//! `procgate stop`: the graceful stop of SIGINT, asked over the control socket; prints progress
//! and returns once the running procgate has stopped everything, with its exit status (1 when
//! some instance had to be SIGKILLed). Asked again meanwhile, it waits too; it never SIGKILLs.

use crate::cli::RootArgs;
use crate::control::client;

pub fn run(args: RootArgs) -> anyhow::Result<i32> {
    client::block_on(async {
        let response = client::call(&args.root, hyper::Method::POST, "/stop", None).await?;
        let last = client::print_stream(response).await;
        Ok(if last.trim_end() == "stopped (exit status 0)" { 0 } else { 1 })
    })
}
