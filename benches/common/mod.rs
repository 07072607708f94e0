//! The code both benches share: the bench binary's entry point and header, and the modules below.
//!
//! Included by each bench with `#[path = "common/mod.rs"] mod common;`; every item here is used
//! by both. A bench's own loads, metrics, proxy configurations and notes stay in its folder
//! (benches/gateway/, benches/router/).

pub mod backend;
pub mod client;
pub mod knobs;
pub mod process;
pub mod procfs;
pub mod proxies;
pub mod report;
pub mod rounds;

use backend::Backends;
use knobs::Knobs;
use rounds::Load;
use std::future::Future;
use std::process::ExitCode;
use tokio::net::TcpStream;

/// The bench binary's `main`: a backend serving with `handle` when procgate started it as one of
/// `backends`, else the bench `run` (only with `--bench`, which `cargo bench` passes; run without
/// it, as `cargo test --benches` does, it does nothing).
pub fn main<H, F>(bench: &str, backends: &Backends, handle: H, run: impl FnOnce() -> anyhow::Result<()>) -> ExitCode
where
    H: Fn(TcpStream) -> F + Copy + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    if backend::is_backend_mode(backends) {
        return backend::serve(backends, handle);
    }
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("{bench}: a benchmark; run it with `cargo bench --bench {bench}`");
        return ExitCode::SUCCESS;
    }
    exit_code(&format!("{bench} bench"), run())
}

/// Success, or failure with the error said on stderr after `who`.
fn exit_code(who: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{who}: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The lines before the rounds: the machine, the build, the rounds (`L`'s loads on `N`
/// contenders) and their length, the client connections (`connections`), the open-files limit.
pub fn print_header<L: Load, const N: usize>(bench: &str, knobs: &Knobs, connections: &str, fd_limit: u64) {
    println!("machine: {}", procfs::machine());
    if cfg!(debug_assertions) {
        println!("WARNING: unoptimised build; run `cargo bench --bench {bench}` for meaningful figures");
    }
    println!("procgate: {}", proxies::procgate_binary());
    let rounds = rounds::rounds_duration::<L, N>(knobs);
    println!(
        "{} interleaved rounds of {:?} per load and proxy (about {:.0?}), {connections}, open-files limit {fd_limit}",
        knobs.rounds, knobs.seconds, rounds
    );
    println!();
}
