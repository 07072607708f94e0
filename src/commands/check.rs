//! `procgate check`: validate everything `start` would use and print the plan, running nothing.

use crate::cli::CheckArgs;
use crate::config::{tcp_url, Choices, Release};
use crate::env::{instance_env, PlatformVars};
use std::fmt::Write;

/// Prints types, formation, ports and each instance's env names (never values).
pub fn run(args: CheckArgs) -> anyhow::Result<i32> {
    let choices = Choices {
        formation: args.plan.formation.clone(),
        port: args.plan.port,
        listen: args.listen.listen(),
        ..Choices::default()
    };
    crate::commands::out!("{}", report(&Release::build(&args.source.paths(), &choices)?));
    Ok(0)
}

fn report(config: &Release) -> String {
    let procfile = &config.files.procfile;
    let mut out = String::new();
    let _ = writeln!(out, "Procfile {} is valid: {} types", procfile.path.display(), procfile.types.len());
    let _ = writeln!(out, "root: {}", config.files.root.display());
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
        let names: Vec<String> = instance_env(&config.files.env, &vars).into_keys().collect();
        let _ = writeln!(out, "{:<12} port {:<5} {}", spec.name(), spec.port, spec.command);
        let _ = writeln!(out, "{:<12} env: {}", "", names.join(" "));
    }
    out
}
