//! Benchmark: procgate's HTTP router against HAProxy and nginx, side by side in one run.
//!
//! procgate runs two HTTP backends (this very binary, in backend mode) as its `web` instances;
//! HAProxy (`mode http`) and nginx (`proxy_pass` to a keep-alive upstream) are put in front of
//! the same two backends. The same client code then loads the three proxies on 127.0.0.1 in
//! interleaved rounds (procgate, HAProxy, nginx, then HAProxy, nginx, procgate...), and the
//! table gives the median of each metric and the ratios procgate/HAProxy and procgate/nginx. See
//! bench/README.md.
//!
//! `cargo bench --bench router`; knobs: `BENCH_SECONDS`, `BENCH_ROUNDS`, `BENCH_HAPROXY`,
//! `BENCH_NGINX`, `BENCH_SAME_HEADERS`. Run without `--bench` (as `cargo test --benches` does), it does nothing.
//! What it shares with the gateway bench is in benches/common/.

#[path = "router/backend.rs"]
mod backend;
#[path = "common/mod.rs"]
mod common;
#[path = "router/load.rs"]
mod load;
#[path = "router/proxies.rs"]
mod proxies;
#[path = "router/report.rs"]
mod report;
#[path = "router/rounds.rs"]
mod rounds;

use common::client::CONCURRENCY;
use common::knobs::{self, Knobs};
use common::proxies::Ports;
use common::rounds::Plan;
use report::{Samples, CONTENDERS};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Seconds of each measurement (one proxy, one load, one round) unless `BENCH_SECONDS` says.
const DEFAULT_SECONDS: f64 = 2.0;
/// Where nginx is unless `BENCH_NGINX` says.
const DEFAULT_NGINX: &str = "/usr/sbin/nginx";
/// Whether HAProxy and nginx add the headers procgate adds, unless `BENCH_SAME_HEADERS` says.
const DEFAULT_SAME_HEADERS: bool = true;

fn main() -> ExitCode {
    common::main("router", &backend::BACKENDS, backend::connection, run)
}

fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let knobs = Knobs::from_env(DEFAULT_SECONDS)?;
    let nginx: PathBuf = knobs::var("BENCH_NGINX", PathBuf::from(DEFAULT_NGINX))?;
    let same_headers: bool = knobs::var("BENCH_SAME_HEADERS", DEFAULT_SAME_HEADERS)?;
    let fd_limit = common::procfs::raise_open_files_limit()?;
    let connections = format!("{CONCURRENCY} client connections");
    common::print_header::<rounds::Load, CONTENDERS>("router", &knobs, &connections, fd_limit);
    let dir = tempfile::tempdir()?;
    let [ports] = Ports::find([CONTENDERS])?;
    let procgate = proxies::start_procgate(dir.path(), ports)?;
    let (haproxy, haproxy_version) = proxies::start_haproxy(&knobs, dir.path(), ports, same_headers);
    let (nginx, nginx_version) = proxies::start_nginx(&nginx, dir.path(), ports, fd_limit, same_headers);
    let mut contenders = [procgate, haproxy, nginx];
    let plan = Plan::new(&knobs)?;
    let mut samples = Samples::default();
    common::rounds::run_rounds::<rounds::Load, CONTENDERS>(&plan, &mut contenders, &mut samples);
    rounds::measure_rss(&mut contenders, &mut samples);
    let versions = [haproxy_version.as_str(), nginx_version.as_str()];
    common::rounds::finish(started, &samples, &mut contenders, || print_notes(versions, ports, fd_limit, same_headers));
    Ok(())
}

fn print_notes(versions: [&str; 2], ports: Ports, fd_limit: u64, same_headers: bool) {
    println!(
        "  loads on 127.0.0.1, same client for all: {CONCURRENCY} connections each sending `GET /` sequentially \
         (keep-alive, latency of every request); {CONCURRENCY} loops connect/GET/read/close (new connection); \
         {} connections each sending `GET /bulk` ({} B responses) sequentially (bulk; MB = 10^6 B)",
        load::BULK_CONNECTIONS,
        backend::BULK_BYTES
    );
    println!(
        "  backends: 2 hyper HTTP/1.1 servers on 127.0.0.1:{} and :{} (procgate's web instances, {} B body), \
         shared by the three proxies",
        ports.base,
        ports.base + 1,
        backend::BODY.len()
    );
    println!(
        "  procgate: start -m web=2 --web-listen 127.0.0.1:{} --grace 1s --access-log none; least outstanding \
         requests; adds X-Forwarded-For/-Proto/-Port, X-Request-Id, Via",
        ports.procgate()
    );
    println!("  haproxy: {}; {}", versions[0], proxies::HAPROXY_SUMMARY);
    println!("  nginx: {}; {}", versions[1], proxies::nginx_summary(fd_limit));
    match same_headers {
        true => println!(
            "  headers: haproxy and nginx add the same five as procgate (option forwardfor /              $proxy_add_x_forwarded_for, X-Forwarded-Proto, X-Forwarded-Port, X-Request-Id unless sent, Via);              BENCH_SAME_HEADERS=false for none"
        ),
        false => println!("  headers: BENCH_SAME_HEADERS=false: haproxy and nginx add none, procgate its five"),
    }
    println!(
        "  CPU per request: utime+stime of the proxy during a round / requests completed (procgate: its main \
         process; haproxy: its process; nginx: master + workers)"
    );
    println!("  PSS: Pss of smaps_rollup after the rounds, the proxy's processes summed (nginx: master and workers; procgate: anchor and main), a shared page counted once");
}
