//! Benchmark: procgate's TCP gateway against HAProxy, against itself with PROXY v2 on and with
//! limits configured but not hit, and against the least a relay can do, side by side in one run.
//!
//! procgate runs two echo backends (this very binary, in echo mode) as its `tcp` instances;
//! HAProxy is put in front of the same two backends, and so is the floor (this binary again, as
//! a bare relay). Two more procgates, each with its own procgate.toml (`proxy_protocol = "v2"`;
//! caps and per-client limits far above the load) and its own two echo backends, are the
//! variants. The same client code then loads the five proxies on 127.0.0.1 in interleaved rounds
//! (procgate, HAProxy, procgate+proxy-v2, procgate+limits, floor; the next round from HAProxy
//! on...), and the tables give the median of each metric, the ratio procgate/HAProxy, the ratio
//! of each variant to plain procgate, and the floor's ratios to HAProxy and of procgate to it.
//! See bench/README.md.
//!
//! `cargo bench --bench gateway`; knobs: `BENCH_SECONDS`, `BENCH_ROUNDS`, `BENCH_HELD`,
//! `BENCH_HAPROXY`. Run without `--bench` (as `cargo test --benches` does), it does nothing.
//! What it shares with the router bench is in benches/common/.

#[path = "common/mod.rs"]
mod common;
#[path = "gateway/echo.rs"]
mod echo;
#[path = "gateway/floor.rs"]
mod floor;
#[path = "gateway/load.rs"]
mod load;
#[path = "gateway/proxies.rs"]
mod proxies;
#[path = "gateway/redis.rs"]
mod redis;
#[path = "gateway/report.rs"]
mod report;
#[path = "gateway/rounds.rs"]
mod rounds;

use common::client::CONCURRENCY;
use common::knobs::{self, Knobs};
use common::process::Second;
use common::proxies::Ports;
use common::rounds::Plan;
use report::{Samples, CONTENDERS};
use std::process::ExitCode;
use std::time::Instant;

/// Seconds of each measurement (one proxy, one load, one round) unless `BENCH_SECONDS` says:
/// shorter than the router bench's 2 s, as each round measures four proxies.
const DEFAULT_SECONDS: f64 = 1.5;
/// Idle connections held through each proxy for the memory figure unless `BENCH_HELD` says.
const DEFAULT_HELD: usize = 9_000;
/// File descriptors kept aside for the proxy's listeners, logs and probes when sizing the held
/// connections (each held connection costs the proxy two: client side and backend side).
const FD_RESERVE: u64 = 500;

fn main() -> ExitCode {
    if floor::is_floor_mode() {
        return floor::serve();
    }
    common::main("gateway", &echo::BACKENDS, echo::echo, run)
}

fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let knobs = Knobs::from_env(DEFAULT_SECONDS)?;
    let held = knobs::var("BENCH_HELD", DEFAULT_HELD)?;
    let fd_limit = common::procfs::raise_open_files_limit()?;
    let held = held_count(held, fd_limit);
    common::print_header::<rounds::Load, CONTENDERS>("gateway", &knobs, &format!("{held} held connections"), fd_limit);
    let dir = tempfile::tempdir()?;
    let blocks = Ports::find(proxies::PORT_BLOCKS)?;
    let [ports, proxy_v2_ports, limits_ports] = blocks;
    let redis_plan = redis::plan(ports);
    let redis_note = match &redis_plan {
        Ok(redis) => redis.summary(),
        Err(err) => format!("not measured: {err:#}"),
    };
    println!("redis: {redis_note}");
    let redis = redis_plan.ok();
    let mut procgate = proxies::start_procgate(dir.path(), ports)?;
    // procgate's Redis route is a procgate of its own, stopped with plain procgate (redis.rs).
    if let (Some(redis), Some(plain)) = (redis.as_ref(), procgate.proxy.as_mut()) {
        match redis.start_procgate(dir.path()) {
            Ok(own) => plain.second = Some(Second { addr: redis.procgate, own: Some(Box::new(own)) }),
            Err(err) => println!("procgate's Redis route is not measured: {err:#}"),
        }
    }
    let (haproxy, haproxy_version) = proxies::start_haproxy(&knobs, dir.path(), ports, redis.as_ref());
    let proxy_v2 = proxies::start_variant(dir.path(), &proxies::PROXY_V2, proxy_v2_ports);
    let limits = proxies::start_variant(dir.path(), &proxies::LIMITS, limits_ports);
    let floor = proxies::start_floor(ports, redis.as_ref());
    // In the order of the report's places: PROCGATE_INDEX, HAPROXY_INDEX, PROXY_V2_INDEX,
    // LIMITS_INDEX, FLOOR_INDEX.
    let mut contenders = [procgate, haproxy, proxy_v2, limits, floor];
    let plan = Plan::new(&knobs)?;
    let mut samples = Samples::default();
    common::rounds::run_rounds::<rounds::Load, CONTENDERS>(&plan, &mut contenders, &mut samples);
    if held > 0 {
        rounds::measure_held(&plan, held, &mut contenders, &mut samples);
    }
    common::rounds::finish(started, &samples, &mut contenders, || {
        print_notes(&haproxy_version, blocks, held, &redis_note)
    });
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

fn print_notes(haproxy_version: &str, [ports, proxy_v2_ports, limits_ports]: [Ports; 3], held: usize, redis: &str) {
    println!(
        "  loads on 127.0.0.1, same client for all: {CONCURRENCY} loops connect/16 B echo/close; {CONCURRENCY} \
         persistent ping-pong connections; 1 connection sequential RTT; 1 connection of 64 KiB writes to a backend \
         that counts them (upload) or from one (download) (MB = 10^6 B); {busy:?} busy ping-pong connections",
        busy = rounds::BUSY
    );
    println!("  redis: {redis}");
    println!(
        "  backends: 2 echo servers on 127.0.0.1:{} and :{} (procgate's tcp instances), shared by procgate, haproxy and floor",
        ports.base,
        ports.base + 1
    );
    println!("  procgate: {}", proxies::procgate_command(ports));
    println!("  haproxy: {haproxy_version}; {}", proxies::HAPROXY_SUMMARY);
    for (variant, ports) in [(&proxies::PROXY_V2, proxy_v2_ports), (&proxies::LIMITS, limits_ports)] {
        println!(
            "  {}: {}, its own 2 echo servers on :{} and :{}; procgate.toml {}",
            variant.name,
            proxies::procgate_command(ports),
            ports.base,
            ports.base + 1,
            variant.summary()
        );
    }
    println!("  floor: {}", proxies::FLOOR_SUMMARY);
    println!(
        "  PSS per held conn: (Pss after {held} idle proxied connections - before) / {held}, the proxy's processes (procgate: anchor and main)"
    );
    println!("  CPU per new conn: (utime+stime of the proxy process during a new-connections round) / connections");
    println!("  CPU per ping-pong msg: (utime+stime of the proxy process during a ping-pong round) / messages");
    println!("  ratios: of the medians, then (lowest-highest) of the rounds' own ratios");
}
