//! `procgate check`: validate everything `start` would use and print the plan, running nothing.

use crate::cli::CheckArgs;
use crate::config::{tcp_url, Config, Sources};
use crate::env::{instance_env, PlatformVars};
use std::fmt::Write;

/// Prints types, formation, ports and each instance's env names (never values).
pub fn run(args: CheckArgs) -> anyhow::Result<i32> {
    let sources = Sources::load(&args.source)?;
    let config = Config::build(sources, &args.plan, &args.listen, &[])?;
    print!("{}", report(&config));
    Ok(0)
}

fn report(config: &Config) -> String {
    let procfile = &config.sources.procfile;
    let mut out = String::new();
    let _ = writeln!(out, "Procfile {} is valid: {} types", procfile.path.display(), procfile.types.len());
    let _ = writeln!(out, "root: {}", config.sources.root.display());
    let _ = writeln!(out, "formation: {}", config.formation);
    let _ = writeln!(out, "base port: {}", config.base_port);
    for route in &config.routes {
        match route.http {
            true => writeln!(out, "router: `{}` clients connect to http://{}", route.type_name, route.addr),
            false => writeln!(out, "gateway: `{}` clients connect to tcp://{}", route.type_name, route.addr),
        }
        .ok();
    }
    if let Some(release) = &config.release {
        let _ = writeln!(out, "release (runs once before the others): {}", release.command);
    }
    for spec in &config.plan {
        let tcp_url = tcp_url(&spec.type_name, &config.routes, config.tcp_listen);
        let vars = PlatformVars { dyno: spec.name(), port: Some(spec.port), tcp_url, proxy_protocol: None };
        let names: Vec<String> = instance_env(&config.sources.env, &vars).into_keys().collect();
        let _ = writeln!(out, "{:<12} port {:<5} {}", spec.name(), spec.port, spec.command);
        let _ = writeln!(out, "{:<12} env: {}", "", names.join(" "));
    }
    out
}
