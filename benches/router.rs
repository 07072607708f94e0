//! Benchmark: procgate's HTTP router against HAProxy and nginx, side by side in one run.
//!
//! procgate runs two HTTP backends (this very binary, in backend mode) as its `web` instances;
//! HAProxy (`mode http`) and nginx (`proxy_pass` to a keep-alive upstream) are put in front of
//! the same two backends. The same client code then loads the three proxies on 127.0.0.1 in
//! interleaved rounds (procgate, HAProxy, nginx, procgate...), and the table gives the median of
//! each metric and the ratios procgate/HAProxy and procgate/nginx. See bench/README.md.
//!
//! `cargo bench --bench router`; knobs: `BENCH_SECONDS`, `BENCH_ROUNDS`, `BENCH_HAPROXY`,
//! `BENCH_NGINX`. Run without `--bench` (as `cargo test --benches` does), it does nothing.

#[path = "router/backend.rs"]
mod backend;
#[path = "router/knobs.rs"]
mod knobs;
#[path = "router/load.rs"]
mod load;
#[path = "router/process.rs"]
mod process;
#[path = "gateway/procfs.rs"]
mod procfs;
#[path = "router/proxies.rs"]
mod proxies;
#[path = "router/report.rs"]
mod report;
#[path = "router/rounds.rs"]
mod rounds;

use knobs::Knobs;
use process::Proxy;
use proxies::Ports;
use report::{Samples, CONTENDERS};
use rounds::{Contender, Plan};
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    if backend::is_backend_mode() {
        return backend::serve();
    }
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("router: a benchmark; run it with `cargo bench --bench router`");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("router bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let knobs = Knobs::from_env()?;
    let fd_limit = procfs::raise_open_files_limit()?;
    print_header(&knobs, fd_limit);
    let dir = tempfile::tempdir()?;
    let ports = Ports::find()?;
    let procgate = proxies::start_procgate(dir.path(), ports)?;
    let procgate =
        Contender { name: "procgate", proxy: Some(procgate.proxy), out: procgate.router.err(), runs_backends: true };
    let (haproxy, haproxy_version) = start_other("haproxy", proxies::haproxy_version(&knobs.haproxy), || {
        proxies::start_haproxy(&knobs.haproxy, dir.path(), ports)
    });
    let (nginx, nginx_version) = start_other("nginx", proxies::nginx_version(&knobs.nginx), || {
        proxies::start_nginx(&knobs.nginx, dir.path(), ports, fd_limit)
    });
    let mut contenders = [procgate, haproxy, nginx];
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
    rounds::measure_rss(&mut contenders, &mut samples);
    println!();
    samples.print_table(contenders.each_ref().map(|c| c.name));
    print_notes(&contenders, [&haproxy_version, &nginx_version], ports, fd_limit);
    stop_all(&mut contenders);
    println!("total time {:.0?}", started.elapsed());
    Ok(())
}

fn print_header(knobs: &Knobs, fd_limit: u64) {
    println!("machine: {}", procfs::machine());
    if cfg!(debug_assertions) {
        println!("WARNING: unoptimised build; run `cargo bench --bench router` for meaningful figures");
    }
    println!("procgate: {}", proxies::PROCGATE);
    let rounds = rounds::rounds_duration(knobs.seconds, knobs.rounds);
    println!(
        "{} interleaved rounds of {:?} per load and proxy (about {:.0?}), {} client connections, \
         open-files limit {fd_limit}",
        knobs.rounds,
        knobs.seconds,
        rounds,
        load::CONCURRENCY
    );
    println!();
}

/// HAProxy or nginx as a contender, or why it is out; and its version line for the notes.
fn start_other(
    name: &'static str,
    version: anyhow::Result<String>,
    start: impl FnOnce() -> anyhow::Result<Proxy>,
) -> (Contender, String) {
    match version.and_then(|version| Ok((start()?, version))) {
        Ok((proxy, version)) => (Contender { name, proxy: Some(proxy), out: None, runs_backends: false }, version),
        Err(err) => {
            let why = format!("{err:#}");
            println!("{name} is not measured: {why}");
            (Contender { name, proxy: None, out: Some(why), runs_backends: false }, "not available".to_string())
        }
    }
}

fn print_notes(contenders: &[Contender; CONTENDERS], versions: [&str; 2], ports: Ports, fd_limit: u64) {
    println!();
    println!("notes:");
    println!(
        "  loads on 127.0.0.1, same client for all: {} connections each sending `GET /` sequentially \
         (keep-alive, latency of every request); {} loops connect/GET/read/close (new connection)",
        load::CONCURRENCY,
        load::CONCURRENCY
    );
    println!(
        "  backends: 2 hyper HTTP/1.1 servers on 127.0.0.1:{} and :{} (procgate's web instances, {} B body), \
         shared by the three proxies",
        ports.base,
        ports.base + 1,
        backend::BODY.len()
    );
    println!(
        "  procgate: start -m web=2 --web-listen 127.0.0.1:{} --grace 1s --no-access-log; least outstanding \
         requests; adds X-Forwarded-For/-Proto/-Port, X-Request-Id, Via",
        ports.procgate
    );
    println!("  haproxy: {}; {}", versions[0], proxies::HAPROXY_SUMMARY);
    println!("  nginx: {}; {}", versions[1], proxies::nginx_summary(fd_limit));
    println!(
        "  CPU per request: utime+stime of the proxy during a round / requests completed (procgate: its main \
         process; haproxy: its process; nginx: master + workers)"
    );
    println!("  RSS: VmRSS after the rounds (nginx: master + workers summed, shared pages counted in each)");
    for contender in contenders {
        if let Some(why) = &contender.out {
            println!("  {} not measured (or not in every round): {why}", contender.name);
        }
    }
}

/// Stops nginx and HAProxy, then procgate (which takes its backends down with it).
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
