//! `procgate systemd-unit START_FLAGS...`: a systemd unit that runs `procgate start` with those
//! flags: `Type=notify` (procgate says `READY=1` once the formation serves), `KillMode=mixed`
//! (systemd signals procgate alone, which stops the instances), `TimeoutStopSec` from `--grace`,
//! and `ExecReload` as SIGHUP (a deploy of the same root), or as `procgate upgrade` (commented).

use crate::cli::{Cli, Command, SystemdUnitArgs};
use clap::Parser;
use std::time::Duration;

/// Past the grace, the time procgate may take to SIGKILL what is left and exit.
const STOP_MARGIN: Duration = Duration::from_secs(10);

pub fn run(args: SystemdUnitArgs) -> anyhow::Result<i32> {
    let flags = ["procgate", "start"].into_iter().map(String::from).chain(args.start.iter().cloned());
    // The flags are those of `start`: checked the same way (a bad one is the same clap error).
    let Command::Start(start) = Cli::try_parse_from(flags).unwrap_or_else(|err| err.exit()).command else {
        unreachable!("parsed as `start`");
    };
    let here = std::env::current_dir()?;
    let root = start.source.root.as_deref().map_or(here.clone(), |root| here.join(root));
    let exe = std::env::current_exe()?;
    let exec: Vec<String> = [exe.display().to_string(), "start".into()].into_iter().chain(args.start).collect();
    let stop = (start.grace + STOP_MARGIN).as_secs();
    crate::commands::out!(
        "\
# procgate for the app in {root}; install with
#   procgate systemd-unit FLAGS > /etc/systemd/system/APP.service && systemctl daemon-reload
[Unit]
Description=procgate: the Procfile app in {root}
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
WorkingDirectory={here}
ExecStart={exec}
ExecReload=/bin/kill -HUP $MAINPID
# Or, to have `systemctl reload` upgrade procgate itself to the binary above (a new version
# installed there) without restarting an app or dropping a connection:
#ExecReload={exe} upgrade -d {root_arg}
KillMode=mixed
TimeoutStopSec={stop}s
Restart=on-failure
RestartSec=1s
# Restarts procgate, and so its apps, if its control thread stops answering for this long:
#WatchdogSec=30s

[Install]
WantedBy=multi-user.target
",
        root = root.display(),
        exe = quote(&exe.display().to_string()),
        root_arg = quote(&root.display().to_string()),
        here = quote(&here.display().to_string()),
        exec = exec.iter().map(|arg| quote(arg)).collect::<Vec<_>>().join(" "),
    );
    Ok(0)
}

/// One word of a systemd command line: `%` and `$` doubled (no specifier, no variable), quoted
/// with backslash escapes when it holds anything but plain characters.
pub fn quote(word: &str) -> String {
    let escaped = word.replace('%', "%%").replace('$', "$$");
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-:=,@+%$".contains(c);
    if !escaped.is_empty() && escaped.chars().all(plain) {
        return escaped;
    }
    format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn words_are_quoted_only_when_they_need_it() {
        assert_eq!(quote("/usr/bin/procgate"), "/usr/bin/procgate");
        assert_eq!(quote("web=2,tcp=3"), "web=2,tcp=3");
        assert_eq!(quote("my app"), "\"my app\"");
        assert_eq!(quote("100%"), "100%%");
        assert_eq!(quote("$HOME"), "$$HOME");
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quote(""), "\"\"");
    }
}
