//! `procgate run -- CMD...`: a one-off command with the app's environment, like `heroku run`.
//!
//! The command runs as a child of procgate in procgate's own process group, so it keeps the
//! terminal (an interactive `procgate run bash` reads it as the foreground job) and its exit
//! status is procgate's. As a one-off dyno is destroyed when its command ends, nothing the
//! command started outlives it: procgate is a child subreaper, so what the command left running
//! (a `cmd &`, a daemon, a `setsid` child) stays in its tree, gets SIGTERM when the command ends,
//! and SIGKILL [`LEFTOVER_GRACE`] later if it is still there.
//!
//! Signals: those a terminal sends (Ctrl-C, Ctrl-\, a hangup) reach the command directly, being
//! in the foreground group; those sent to procgate's pid (`kill PID`) are passed on to it.

use crate::cli::RunArgs;
use crate::config::AppFiles;
use crate::env::{instance_env, PlatformVars};
use crate::process::keeper::FORWARDED;
use crate::process::protocol::ExitReason;
use crate::process::{pidfd, procfs};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::SignalsInfo;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

/// The name one-off processes get as `DYNO`/`PS`, as on Heroku.
pub const ONE_OFF_NAME: &str = "run.1";

/// How long what the command left running has between SIGTERM and SIGKILL.
pub const LEFTOVER_GRACE: Duration = Duration::from_secs(5);

/// How often the leftovers are looked at while they have their grace.
const LEFTOVER_POLL: Duration = Duration::from_millis(20);

/// Runs the command to its end and returns its status (128 + N when killed by signal N; 127
/// when it could not be started).
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
    command.current_dir(&sources.root).envs(instance_env(&sources.env, &vars));
    crate::process::nofile::give_back(&mut command);
    // The command dies with procgate, as it did when procgate exec'd it.
    // SAFETY: prctl is async-signal-safe, and the closure touches nothing else.
    unsafe {
        command.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from));
    }
    if let Err(err) = nix::sys::prctl::set_child_subreaper(true) {
        eprintln!("procgate run: cannot become a subreaper ({err}); what the command leaves running may outlive it");
    }
    // Registered before the command starts, so no signal sent meanwhile is lost.
    let signals = SignalsInfo::<WithOrigin>::new(FORWARDED)?;
    let leader = match command.spawn() {
        Ok(child) => Pid::from_raw(child.id() as i32),
        Err(err) => {
            eprintln!("procgate run: cannot run {}: {err}", args.command[0]);
            return Ok(127);
        }
    };
    pass_signals_on(signals, leader);
    let status = wait_for(leader);
    end_leftovers();
    Ok(status.shell_status())
}

/// Passes the signals sent to procgate's pid on to the command; a signal the kernel sent (a
/// terminal's Ctrl-C or hangup) reached the command's group, procgate's, already.
fn pass_signals_on(mut signals: SignalsInfo<WithOrigin>, leader: Pid) {
    std::thread::spawn(move || {
        for origin in signals.forever() {
            let sent_by_a_process = origin.process.is_some();
            if let (true, Ok(signal)) = (sent_by_a_process, Signal::try_from(origin.signal)) {
                let _ = nix::sys::signal::kill(leader, signal);
            }
        }
    });
}

/// Reaps children (the command, and orphans given to procgate meanwhile) until the command ends.
fn wait_for(leader: Pid) -> ExitReason {
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == leader => return ExitReason::Code(code),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == leader => return ExitReason::Signal(signal as i32),
            Ok(_) | Err(Errno::EINTR) => {}
            // No child left: the command was reaped elsewhere, which nothing here does.
            Err(_) => return ExitReason::Code(1),
        }
    }
}

/// SIGTERM to what the command left running, SIGKILL to what is left of it after
/// [`LEFTOVER_GRACE`]; returns once all of it is gone and reaped.
fn end_leftovers() {
    let me = std::process::id() as i32;
    let living = || procfs::descendants_of(me).into_iter().filter(|p| !p.zombie).collect::<Vec<_>>();
    let leftovers = living();
    if !leftovers.is_empty() {
        let names: Vec<String> = leftovers.iter().map(|p| format!("{} ({})", p.pid, p.name)).collect();
        eprintln!(
            "procgate run: the command left {} process(es) running, sending SIGTERM: {}",
            names.len(),
            names.join(", ")
        );
        leftovers.iter().for_each(|p| pidfd::signal_if_still_ours(p, Signal::SIGTERM));
    }
    let deadline = Instant::now() + LEFTOVER_GRACE;
    let mut killed = false;
    loop {
        reap_all();
        let left = living();
        if left.is_empty() {
            return;
        }
        if !killed && Instant::now() >= deadline {
            eprintln!(
                "procgate run: {} process(es) still running {LEFTOVER_GRACE:?} after SIGTERM, sending SIGKILL",
                left.len()
            );
            killed = true;
        }
        if killed {
            left.iter().for_each(|p| pidfd::signal_if_still_ours(p, Signal::SIGKILL));
        }
        std::thread::sleep(LEFTOVER_POLL);
    }
}

/// Reaps every child that has ended, without waiting.
fn reap_all() {
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            return;
        }
    }
}
