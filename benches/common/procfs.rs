//! What Linux says about processes and the machine, for both benches.
//!
//! Memory (PSS) and CPU time from /proc/PID, the CPU model and kernel, and the open-files limit (raised
//! here so every child inherits it).

use anyhow::Context;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use std::process::Command;

/// Clock ticks per second if `getconf CLK_TCK` cannot tell (the Linux value on every common arch).
const DEFAULT_CLK_TCK: f64 = 100.0;
/// Position of `utime` among the fields after the `(comm)` of /proc/PID/stat (man 5 proc: field 14).
const STAT_UTIME: usize = 11;
/// Position of `stime`, right after `utime` (field 15).
const STAT_STIME: usize = 12;

/// Proportional set size of the processes `pids`, summed, in bytes: each page they share (a
/// master and its workers, procgate's anchor and main process) counts once in all.
pub fn pss_bytes(pids: &[u32]) -> anyhow::Result<u64> {
    pids.iter().map(|&pid| process_pss_bytes(pid)).sum()
}

/// User plus system CPU time of the processes `pids` (all their threads), summed, in clock ticks.
pub fn cpu_ticks(pids: &[u32]) -> anyhow::Result<u64> {
    pids.iter().map(|&pid| process_cpu_ticks(pid)).sum()
}

/// Proportional set size of one process, in bytes (`Pss` of /proc/PID/smaps_rollup).
fn process_pss_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let rollup = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let line = rollup.lines().find(|line| line.starts_with("Pss:")).context("no Pss line")?;
    let kib: u64 = line.split_whitespace().nth(1).context("empty Pss line")?.parse()?;
    Ok(kib * 1024)
}

/// User plus system CPU time of a process, all its threads, in clock ticks.
fn process_cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')').context("malformed stat")? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |index: usize| -> anyhow::Result<u64> { Ok(fields.get(index).context("short stat line")?.parse()?) };
    Ok(field(STAT_UTIME)? + field(STAT_STIME)?)
}

/// Clock ticks per second of the times in /proc/PID/stat.
pub fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(DEFAULT_CLK_TCK)
}

/// `2 cores, Intel(R) Xeon(R) Processor, Linux 6.1.0`.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map_or("unknown CPU", |(_, model)| model.trim());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!("{cores} cores, {model}, Linux {} (load average {})", kernel.trim(), load.join(" "))
}

/// Raises the soft open-files limit to the hard one; returns the new soft limit.
pub fn raise_open_files_limit() -> anyhow::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("raising RLIMIT_NOFILE")?;
    }
    Ok(hard)
}
