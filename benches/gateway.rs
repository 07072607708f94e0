//! Benchmark: procgate's TCP gateway against HAProxy, side by side in one run.
//!
//! procgate runs two echo backends (this very binary, in echo mode) as its `tcp` instances;
//! HAProxy is put in front of the same two backends. The same client code then loads both
//! proxies on 127.0.0.1 in interleaved rounds (procgate, HAProxy, procgate, HAProxy...), and the
//! table gives the median of each metric and the ratio procgate/HAProxy. See bench/README.md.
//!
//! `cargo bench --bench gateway`; knobs: `BENCH_SECONDS`, `BENCH_ROUNDS`, `BENCH_HELD`,
//! `BENCH_HAPROXY`. Run without `--bench` (as `cargo test --benches` does), it does nothing.

#[path = "gateway/echo.rs"]
mod echo;
#[path = "gateway/knobs.rs"]
mod knobs;
#[path = "gateway/load.rs"]
mod load;
#[path = "gateway/procfs.rs"]
mod procfs;
#[path = "gateway/proxies.rs"]
mod proxies;
#[path = "gateway/report.rs"]
mod report;
#[path = "gateway/rounds.rs"]
mod rounds;

use knobs::Knobs;
use proxies::{Ports, Proxy};
use report::{Samples, CONTENDERS};
use rounds::{Contender, Plan};
use std::process::ExitCode;
use std::time::Instant;

/// File descriptors kept aside for the proxy's listeners, logs and probes when sizing the held
/// connections (each held connection costs the proxy two: client side and backend side).
const FD_RESERVE: u64 = 500;

fn main() -> ExitCode {
    if echo::is_echo_mode() {
        return echo::serve();
    }
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("gateway: a benchmark; run it with `cargo bench --bench gateway`");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("gateway bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let knobs = Knobs::from_env()?;
    let fd_limit = procfs::raise_open_files_limit()?;
    let held = held_count(knobs.held, fd_limit);
    print_header(&knobs, held, fd_limit);
    let dir = tempfile::tempdir()?;
    let ports = Ports::find()?;
    let procgate = proxies::start_procgate(dir.path(), ports)?;
    let procgate =
        Contender { name: "procgate", proxy: Some(procgate.proxy), out: procgate.gateway.err(), runs_backends: true };
    let (haproxy, haproxy_version) = start_haproxy(&knobs, dir.path(), ports);
    let mut contenders = [procgate, haproxy];
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(cores).enable_all().build()?;
    let plan = Plan {
        runtime: &runtime,
        seconds: knobs.seconds,
        rounds: knobs.rounds,
        ticks_per_second: procfs::clock_ticks_per_second(),
    };
    let mut samples = Samples::default();
    rounds::run_rounds(&plan, &mut contenders, &mut samples);
    if held > 0 {
        rounds::measure_held(&plan, held, &mut contenders, &mut samples);
    }
    println!();
    samples.print_table(contenders.each_ref().map(|c| c.name));
    print_notes(&contenders, &haproxy_version, ports, held);
    stop_all(&mut contenders);
    println!("total time {:.0?}", started.elapsed());
    Ok(())
}

/// `BENCH_HELD`, lowered to what the open-files limit allows the proxy.
fn held_count(wanted: usize, fd_limit: u64) -> usize {
    let allowed = (fd_limit.saturating_sub(FD_RESERVE) / 2) as usize;
    if wanted > allowed {
        println!("BENCH_HELD={wanted} lowered to {allowed}: the open-files limit is {fd_limit}");
    }
    wanted.min(allowed)
}

fn print_header(knobs: &Knobs, held: usize, fd_limit: u64) {
    println!("machine: {}", procfs::machine());
    if cfg!(debug_assertions) {
        println!("WARNING: unoptimised build; run `cargo bench --bench gateway` for meaningful figures");
    }
    println!("procgate: {}", proxies::PROCGATE);
    let rounds = rounds::rounds_duration(knobs.seconds, knobs.rounds);
    println!(
        "{} interleaved rounds of {:?} per load and proxy (about {:.0?}), {held} held connections, \
         open-files limit {fd_limit}",
        knobs.rounds, knobs.seconds, rounds
    );
    println!();
}

/// HAProxy as the second contender, or why it is out; and its version line for the notes.
fn start_haproxy(knobs: &Knobs, dir: &std::path::Path, ports: Ports) -> (Contender, String) {
    let started = proxies::haproxy_version(&knobs.haproxy)
        .and_then(|version| Ok((proxies::start_haproxy(&knobs.haproxy, dir, ports)?, version)));
    match started {
        Ok((proxy, version)) => {
            (Contender { name: "haproxy", proxy: Some(proxy), out: None, runs_backends: false }, version)
        }
        Err(err) => {
            let why = format!("{err:#}");
            println!("haproxy is not measured: {why}");
            (
                Contender { name: "haproxy", proxy: None, out: Some(why), runs_backends: false },
                "not available".to_string(),
            )
        }
    }
}

fn print_notes(contenders: &[Contender; CONTENDERS], haproxy_version: &str, ports: Ports, held: usize) {
    println!();
    println!("notes:");
    println!(
        "  loads on 127.0.0.1, same client for both: {} loops connect/16 B echo/close; {} persistent \
         ping-pong connections; 1 connection sequential RTT; 1 connection 64 KiB writes echoed (MB = 10^6 B)",
        load::CONCURRENCY,
        load::CONCURRENCY
    );
    println!(
        "  backends: 2 echo servers on 127.0.0.1:{} and :{} (procgate's tcp instances), shared by both proxies",
        ports.base,
        ports.base + 1
    );
    println!("  procgate: start -m tcp=2 --tcp-listen 127.0.0.1:{} --grace 1s", ports.procgate);
    println!("  haproxy: {haproxy_version}; {}", proxies::HAPROXY_SUMMARY);
    println!(
        "  RSS per held conn: (VmRSS after {held} idle proxied connections - before) / {held}, proxy process only"
    );
    println!("  CPU per new conn: (utime+stime of the proxy process during a new-connections round) / connections");
    for contender in contenders {
        if let Some(why) = &contender.out {
            println!("  {} not measured (or not in every round): {why}", contender.name);
        }
    }
}

/// Stops HAProxy, then procgate (which takes its echo backends down with it).
fn stop_all(contenders: &mut [Contender; CONTENDERS]) {
    for contender in contenders.iter_mut().rev() {
        if let Some(proxy) = contender.proxy.as_mut() {
            match Proxy::stop(proxy) {
                Ok(status) => println!("{} stopped: {status}", contender.name),
                Err(err) => println!("{} stopped: {err:#}", contender.name),
            }
        }
    }
}
