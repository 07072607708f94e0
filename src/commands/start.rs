//! `procgate start`: validate, check the ports, then run the formation on the Scheduler actor.

use crate::cli::StartArgs;
use crate::config::{Config, Sources};
use crate::env::PlatformVars;
use crate::formation::{self, InstanceSpec};
use crate::logs::Output;
use crate::platform::scheduler::{Scheduler, SchedulerConfig, SlotSpec};
use crate::procfile::RELEASE;
use crate::signals::StopSignals;
use actix::Actor;

/// Runs until the formation is stopped; returns the exit status (README: "Exit status").
pub fn run(args: StartArgs, output: Output) -> anyhow::Result<i32> {
    let sources = Sources::load(&args.source)?;
    let config = Config::build(sources, &args.plan, &args.listen, &args.types)?;
    formation::check_ports_free(&config.plan)?;
    let signals = StopSignals::register()?;
    let scheduler = SchedulerConfig {
        slots: slot_specs(&config),
        has_release: config.release.is_some(),
        env: config.sources.env.clone(),
        root: config.sources.root.clone(),
        grace: args.grace,
        keeper_exe: std::env::current_exe()?,
        output,
    };
    for slot in &scheduler.slots {
        scheduler.output.fit(&slot.name);
    }
    tracing::info!("{}", summary(&config));
    let system = actix::System::new();
    system.block_on(async move { signals.forward_to(Scheduler::new(scheduler).start()) });
    Ok(system.run_with_code()?)
}

fn slot_specs(config: &Config) -> Vec<SlotSpec> {
    let instance = |spec: &InstanceSpec| SlotSpec {
        name: spec.name(),
        command: spec.command.clone(),
        colour: spec.type_index,
        vars: PlatformVars {
            dyno: spec.name(),
            port: Some(spec.port),
            tcp_url: config.tcp_url.clone(),
        },
    };
    let mut slots: Vec<SlotSpec> = config.plan.iter().map(instance).collect();
    if let Some(release) = &config.release {
        let name = format!("{RELEASE}.1");
        let vars = PlatformVars {
            dyno: name.clone(),
            port: None,
            tcp_url: config.tcp_url.clone(),
        };
        let colour = config.sources.procfile.types.len();
        slots.push(SlotSpec {
            name,
            command: release.command.clone(),
            colour,
            vars,
        });
    }
    slots
}

/// `starting app in ./demo: web=1,tcp=2 on ports from 5000 (TCP_URL=tcp://127.0.0.1:20003)`.
fn summary(config: &Config) -> String {
    format!(
        "starting app in {}: {} on ports from {} (TCP_URL={})",
        config.sources.root.display(),
        config.formation,
        config.base_port,
        config.tcp_url
    )
}
