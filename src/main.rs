//! The `procgate` binary: parse the command line, dispatch, turn errors into exit statuses
//! (0 clean, 1 runtime failure, 2 bad usage or bad input).

use clap::Parser;
use procgate::cli::{Cli, Command};
use procgate::config::ConfigError;
use procgate::control::ControlError;
use procgate::formation::FormationError;
use procgate::logs::{self, Output};
use procgate::{anchor, commands, process, upgrade};

/// jemalloc rather than glibc's malloc: the data plane allocates tokio tasks and I/O
/// registrations aligned to 128 bytes and hyper's 8 KiB buffers for every connection, both slow
/// paths in glibc (about 10 % of the router's instructions per request; bench/README.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// How long the output's last lines may take to be written at exit.
const FINAL_FLUSH: std::time::Duration = std::time::Duration::from_secs(2);

fn main() {
    let cli = Cli::parse();
    // Before any thread: `start` forks its anchor, which keeps this pid (anchor.rs).
    let anchor = match &cli.command {
        // A successor the anchor started for an upgrade has its link already.
        Command::Start(_) => match anchor::adopt().unwrap_or_else(anchor::split) {
            Ok(link) => {
                process::set_service_manager(link.manager.as_raw());
                Some(link)
            }
            Err(err) => {
                eprintln!("procgate: cannot start its anchor process: {err}");
                std::process::exit(1);
            }
        },
        _ => None,
    };
    // A successor's handover socket, also named in its environment: taken while single-threaded.
    let handover = match &cli.command {
        Command::Start(_) => upgrade::handover::inherited(),
        _ => None,
    };
    let output = match &cli.command {
        Command::TestShutdown(args) if args.json => Output::to_stderr(),
        _ => Output::new(),
    };
    if !matches!(cli.command, Command::Keeper { .. } | Command::UpgradeCheck) {
        logs::init_tracing(output.clone());
    }
    let flush_output = output.clone();
    let result = match cli.command {
        Command::Keeper { command } => process::keeper::run(&command),
        Command::Start(args) => match handover {
            Some(handover) => succeed(handover, *args, output, anchor),
            None => commands::start::run(*args, output, anchor, None),
        },
        Command::Check(args) => commands::check::run(args),
        Command::Run(args) => commands::run::run(args),
        Command::Ps(args) => commands::ps::run(args),
        Command::Logs(args) => commands::logs::run(args),
        Command::Scale(args) => commands::scale::run(args),
        Command::Restart(args) => commands::roll::restart(args),
        Command::Deploy(args) => commands::roll::deploy(args),
        Command::Wake(args) => commands::wake::run(args),
        Command::Stop(args) => commands::stop::run(args),
        Command::Upgrade(args) => commands::upgrade::run(args),
        Command::UpgradeCheck => commands::upgrade::answer_check(),
        Command::SystemdUnit(args) => commands::systemd_unit::run(args),
        Command::Export(args) => commands::export::run(args),
        Command::TestShutdown(args) => commands::test_shutdown::run(args, output),
    };
    // The lines still queued for the writer thread go out first (stdout may be stalled: bounded).
    flush_output.flush(FINAL_FLUSH);
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("procgate: {err:#}");
            std::process::exit(if is_bad_input(&err) { 2 } else { 1 });
        }
    }
}

/// A successor's run: takes over from the old main process and runs as `start` does; if it
/// fails before it answered ready, the old main is told why (and resumes).
fn succeed(
    handover: std::io::Result<std::os::unix::net::UnixStream>,
    args: procgate::cli::StartArgs,
    output: Output,
    anchor: Option<anchor::Link>,
) -> anyhow::Result<i32> {
    let takeover = upgrade::handover::take_over(handover?)?;
    let stream = takeover.stream.try_clone()?;
    commands::start::run(args, output, anchor, Some(takeover)).inspect_err(|err| {
        let refused = upgrade::handover::Answer::Refused(format!("{err:#}"));
        let _ = upgrade::handover::answer(&stream, &refused);
    })
}

/// Input the user must fix (status 2), as opposed to a failure at run time (status 1).
fn is_bad_input(err: &anyhow::Error) -> bool {
    err.downcast_ref::<ConfigError>().is_some()
        || err.downcast_ref::<FormationError>().is_some()
        || err.downcast_ref::<commands::scale::BadScale>().is_some()
        || err.downcast_ref::<commands::test_shutdown::CannotTest>().is_some()
        || err.downcast_ref::<procgate::app_state::StateError>().is_some()
        || err.downcast_ref::<commands::export::ExportError>().is_some()
        || matches!(
            err.downcast_ref(),
            Some(ControlError::AlreadyRunning { .. } | ControlError::UnsafeDirectory { .. })
        )
        || matches!(err.downcast_ref(), Some(ControlError::Refused { status: 400, .. }))
}
