//! `procgate run -- CMD...`: a one-off command with the app's environment, like `heroku run`.
//!
//! procgate replaces itself with the command (exec), so the terminal, signals and exit status
//! belong to the command alone.

use crate::cli::RunArgs;
use crate::config::AppFiles;
use crate::env::{instance_env, PlatformVars};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The name one-off processes get as `DYNO`/`PS`, as on Heroku.
pub const ONE_OFF_NAME: &str = "run.1";

/// Only returns when the command could not be started (status 127).
pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    let sources = AppFiles::read(&args.source.paths())?;
    let tcp_url = format!("tcp://{}", sources.tcp_listen(&args.listen.listen()));
    let vars = PlatformVars { dyno: ONE_OFF_NAME.into(), port: None, tcp_url, proxy_protocol: None };
    let mut command = match args.command.as_slice() {
        [line] => {
            let mut shell = Command::new(crate::process::shell());
            shell.arg("-c").arg(line);
            shell
        }
        [program, rest @ ..] => {
            let mut direct = Command::new(program);
            direct.args(rest);
            direct
        }
        [] => unreachable!("clap requires a command"),
    };
    let error = command.current_dir(&sources.root).envs(instance_env(&sources.env, &vars)).exec();
    eprintln!("procgate run: cannot run {}: {error}", args.command[0]);
    Ok(127)
}
