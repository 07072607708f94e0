//! `procgate logs [-f] [--since 10m] [--json] [TYPE|INSTANCE...]`: the lines the running
//! procgate kept (in memory, and in its log files with `--log-dir`), oldest first, with their
//! full time; `-f` then follows new ones as `heroku logs -t` does, until Ctrl-C or procgate stops.

use crate::cli::LogsArgs;
use crate::control::{client, LogQuery};

pub fn run(args: LogsArgs) -> anyhow::Result<i32> {
    let query = LogQuery { since: args.since, follow: args.follow, json: args.json, only: args.targets };
    client::block_on(async {
        let path = format!("/logs?{}", query.to_query());
        let response = client::call(&args.root.root, hyper::Method::GET, &path, None).await?;
        client::print_stream(response).await;
        Ok(0)
    })
}
