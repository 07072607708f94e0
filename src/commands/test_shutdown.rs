//! `procgate test-shutdown TYPE`: runs one instance of TYPE, holds clients on it, sends SIGTERM
//! and prints the graded checklist (text, or JSON with `--json`); status 0 only when all pass.

use crate::cli::TestShutdownArgs;
use crate::config::{tcp_url, Choices, ConfigError, Release};
use crate::env::{instance_env, PlatformVars};
use crate::formation::FormationError;
use crate::logs::Output;
use crate::platform::health::ProbeSettings;
use crate::procfile::{RELEASE, WEB_TYPE};
use crate::shutdown::clients::{Protocol, Target};
use crate::shutdown::grade::{Report, Setup};
use crate::shutdown::{self, Scenario};
use std::net::{Ipv4Addr, SocketAddr};

/// What test-shutdown is asked to run is not something it can test.
#[derive(Debug, thiserror::Error)]
pub enum CannotTest {
    /// `release` runs once and has no port: there is nothing to stop.
    #[error("`release` is a one-off step, not a long-running type; name a type that listens on $PORT")]
    Release,
    #[error("the Procfile has no type `{name}`; test-shutdown takes one of: {types}")]
    Unknown { name: String, types: String },
    #[error("--slow-path sends an HTTP request, and `{name}` is not served over HTTP (only `web` is); leave it out")]
    SlowPathNotHttp { name: String },
}

/// `name` is no type test-shutdown can run; `types` are the Procfile's.
fn unknown<'a>(name: String, types: impl Iterator<Item = &'a str>) -> CannotTest {
    let types: Vec<&str> = types.filter(|name| *name != RELEASE).collect();
    CannotTest::Unknown { name, types: types.join(", ") }
}

pub fn run(args: TestShutdownArgs, output: Output) -> anyhow::Result<i32> {
    if args.type_name == RELEASE {
        return Err(CannotTest::Release.into());
    }
    let choices = Choices { only: vec![args.type_name.clone()], listen: args.listen.listen(), ..Choices::default() };
    // The formation is built here from TYPE, never the user's: an unknown type is said of TYPE.
    let config = Release::build(&args.source.paths(), &choices).map_err(|err| match err {
        ConfigError::Formation(FormationError::UnknownType { name, known, .. }) => {
            anyhow::Error::from(unknown(name, known.split(", ")))
        }
        other => other.into(),
    })?;
    let sources = &config.files;
    // `all` passes as a formation: it is no type either.
    let process = sources
        .procfile
        .get(&args.type_name)
        .ok_or_else(|| unknown(args.type_name.clone(), sources.procfile.types.iter().map(|t| t.name.as_str())))?;
    let settings = config.settings_of(&args.type_name);
    let web = args.type_name == WEB_TYPE;
    if args.slow_path.is_some() && !web {
        return Err(CannotTest::SlowPathNotHttp { name: args.type_name }.into());
    }
    let probe = ProbeSettings::for_type(&settings, web);
    let port = match args.port {
        Some(port) => port,
        None => std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port(),
    };
    let name = format!("{}.1", args.type_name);
    let vars = PlatformVars {
        dyno: name.clone(),
        port: Some(port),
        tcp_url: tcp_url(&args.type_name, &config.routes, config.tcp_listen),
        proxy_protocol: probe.proxy.map(|version| version.as_str()),
    };
    let protocol = match web {
        true => Protocol::Http,
        false => Protocol::Tcp { line: args.send.clone() },
    };
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    output.fit(&name);
    let scenario = Scenario {
        name: name.clone(),
        command: process.command.clone(),
        root: sources.root.clone(),
        env: instance_env(&sources.env, &vars),
        target: Target { addr: address, proxy: probe.proxy, protocol },
        http_check: probe.http,
        clients: usize::from(args.clients),
        slow_path: args.slow_path.clone(),
        grace: args.grace,
        boot_timeout: args.boot_timeout,
        keeper_exe: crate::process::own_binary(),
        output: output.clone(),
    };
    // Each held connection is a descriptor here (up to 10,000 of them).
    let _ = crate::process::nofile::raise();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let findings = runtime.block_on(shutdown::run(&scenario))?;
    let setup = Setup {
        instance: &name,
        command: &process.command,
        address,
        clients: usize::from(args.clients),
        grace: args.grace,
        web,
        slow_path: args.slow_path.as_deref(),
    };
    let report = Report::new(&setup, &findings);
    // The app's lines come before the report.
    output.flush(std::time::Duration::from_secs(2));
    match args.json {
        true => println!("{}", serde_json::to_string_pretty(&report)?),
        false => print!("{}", report.text()),
    }
    Ok(if report.passed { 0 } else { 1 })
}
