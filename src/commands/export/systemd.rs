//! `procgate export systemd`: the release as systemd units (README, "Exporting"), for running
//! the app's processes under systemd without procgate:
//!
//! - `procgate-APP.target`, which wants every instance of the formation;
//! - per long-running type a template, `procgate-APP-TYPE@.service`: instance N is `TYPE.N`
//!   (`PS`, `DYNO`) on `PORT` = its type's first port + N - 1, procgate's port plan, computed by
//!   a `/bin/sh` in front of the command (systemd has no arithmetic on `%i`), so any N can be
//!   started (`systemctl start procgate-APP-web@3`) as `scale` would; the command runs in the
//!   shell procgate uses; `KillMode=mixed`, `TimeoutStopSec` = `--grace`, `Restart=always`;
//! - `procgate-APP-release.service` for the `release` step: a oneshot every type requires.
//!
//! The env files are `EnvironmentFile=` lines, each checked to read the same under systemd
//! (systemd_env.rs). Clients reach the instances on their ports: the TCP gateway and the HTTP
//! router are procgate's own, and need procgate itself (`procgate systemd-unit`).

use super::files::{File, GENERATED};
use super::{systemd_env, ExportError, Source};
use crate::commands::systemd_unit::quote;
use crate::env::{instance_env, EnvMap, PlatformVars, PORT_VARIABLES};
use crate::platform::spec::TypeTemplate;
use crate::procfile::RELEASE;
use crate::proxy_version::ProxyVersion;
use std::fmt::Write;

/// The first restart's delay, as procgate's backoff.
const RESTART_SEC: &str = "1s";

pub fn units(source: &Source) -> Result<Vec<File>, ExportError> {
    systemd_env::check(&source.release.files.env_files)?;
    let mut files = vec![target(source)];
    if let Some(step) = &source.templates.release_step {
        files.push(release_unit(source, step));
    }
    files.extend(source.templates.types.iter().map(|template| type_unit(source, template)));
    Ok(files)
}

fn target_name(source: &Source) -> String {
    format!("procgate-{}.target", source.app)
}

/// `procgate-chat-web@`: a type's unit name before `N.service`.
fn template_name(source: &Source, type_name: &str) -> String {
    format!("procgate-{}@", source.name_of(type_name))
}

fn release_name(source: &Source) -> String {
    format!("procgate-{}.service", source.name_of(RELEASE))
}

fn header(source: &Source) -> String {
    format!("# {GENERATED} systemd from the app in {}\n", source.root.display())
}

fn target(source: &Source) -> File {
    let mut text = header(source);
    let routes: Vec<String> =
        source.release.routes.iter().map(|route| format!("{} on {}", route.type_name, route.addr)).collect();
    let instances: Vec<String> = source
        .types()
        .flat_map(|(template, count)| {
            (1..=count).map(move |number| format!("{}{number}.service", template_name(source, &template.type_name)))
        })
        .collect();
    text.push_str("# The app's processes under systemd, without procgate: clients connect to each instance's PORT.\n");
    let routes = match routes.is_empty() {
        true => String::new(),
        false => format!(" ({})", routes.join(", ")),
    };
    let _ = writeln!(text, "# procgate's TCP gateway and HTTP router{routes} are not here: health-gated routing,");
    text.push_str(
        "# zero-downtime restarts and limits need procgate itself in front, as the unit\n\
         # `procgate systemd-unit START_FLAGS` prints runs it (README, \"Running under systemd\").\n",
    );
    let _ = writeln!(text, "# Install: copy these files to /etc/systemd/system, then");
    let _ = writeln!(text, "#   systemctl daemon-reload && systemctl enable --now {}", target_name(source));
    let _ = writeln!(
        text,
        "[Unit]\nDescription=procgate app {}: {}",
        source.app,
        unit_path(&source.root.display().to_string())
    );
    if !instances.is_empty() {
        let example = template_name(source, &source.templates.types[0].type_name);
        let _ =
            writeln!(text, "# The formation {}; more instances: systemctl start {example}N", source.release.formation);
        let _ = writeln!(text, "Wants={}", instances.join(" "));
    }
    text.push_str("\n[Install]\nWantedBy=multi-user.target\n");
    File { name: target_name(source), text, private: false }
}

/// `[Unit]` lines every unit of the app shares, and its `[Service]` environment.
fn common(source: &Source, template: &TypeTemplate, dyno: &str, text: &mut String) {
    let _ = writeln!(text, "PartOf={}", target_name(source));
    let _ = writeln!(text, "\n[Service]\nWorkingDirectory={}", unit_path(&source.root.display().to_string()));
    for file in &source.release.files.env_files {
        let path = file.path.canonicalize().unwrap_or_else(|_| file.path.clone());
        let _ = writeln!(text, "EnvironmentFile={}", unit_path(&path.display().to_string()));
    }
    let vars = PlatformVars {
        dyno: dyno.to_string(),
        port: None,
        tcp_url: template.tcp_url.clone(),
        proxy_protocol: template.proxy_protocol.map(ProxyVersion::as_str),
    };
    for (key, value) in instance_env(&EnvMap::new(), &vars) {
        let assignment = format!("{key}={value}").replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(text, "Environment=\"{assignment}\"");
    }
}

fn type_unit(source: &Source, template: &TypeTemplate) -> File {
    let name = template_name(source, &template.type_name);
    let block = template.block_start.unwrap_or(source.release.base_port);
    let mut text = header(source);
    let _ = writeln!(text, "# Procfile type `{}`: {}", template.type_name, template.command);
    let _ = writeln!(text, "# Instance N ({name}N.service) is {}.N on PORT {block} + N - 1.", template.type_name);
    let _ = writeln!(text, "[Unit]\nDescription=procgate app {}: {}.%i", source.app, template.type_name);
    text.push_str("After=network.target");
    if source.templates.release_step.is_some() {
        let _ = write!(text, " {release}\nRequires={release}", release = release_name(source));
    }
    text.push_str("\n# Restarted however often it crashes, as procgate restarts (systemd's default gives up)\n");
    text.push_str("StartLimitIntervalSec=0\n");
    common(source, template, &format!("{}.%i", template.type_name), &mut text);
    let ports: Vec<String> = PORT_VARIABLES.iter().map(|key| format!("{key}=$$port")).collect();
    let script =
        format!("port=$$(({block} + %i - 1)); export {}; exec {} -c \"$$1\"", ports.join(" "), crate::process::shell());
    let _ =
        writeln!(text, "ExecStart=/bin/sh -c '{script}' {} {}", name.trim_end_matches('@'), quote(&template.command));
    text.push_str("# SIGTERM to the app, SIGKILL to what is left of it after the grace (--grace)\n");
    let _ = writeln!(text, "KillMode=mixed\nTimeoutStopSec={}", stop_timeout(source));
    let _ = writeln!(text, "Restart=always\nRestartSec={RESTART_SEC}");
    text.push_str(
        "# procgate backs off 1 s, 2 s, 4 s... up to 5 min between restarts; systemd 254 and later can too:\n\
         #RestartSteps=9\n#RestartMaxDelaySec=5min\n",
    );
    let _ = writeln!(text, "\n[Install]\nWantedBy={}", target_name(source));
    File { name: format!("{name}.service"), text, private: false }
}

/// The `release` step: a oneshot that runs once when the target starts, before the types.
fn release_unit(source: &Source, step: &TypeTemplate) -> File {
    let mut text = header(source);
    let _ = writeln!(text, "# Procfile `release`: {}", step.command);
    text.push_str("# It runs once when the target starts; the types require it, and do not start if it fails.\n");
    let _ = writeln!(text, "[Unit]\nDescription=procgate app {}: the release step\nAfter=network.target", source.app);
    common(source, step, &format!("{RELEASE}.1"), &mut text);
    let _ = writeln!(text, "Type=oneshot\nRemainAfterExit=yes");
    let _ = writeln!(text, "ExecStart={} -c {}", crate::process::shell(), quote(&step.command));
    text.push_str("# --release-timeout (R20)\n");
    let _ = writeln!(text, "TimeoutStartSec={}", crate::duration::format(source.start.release_timeout));
    let _ = writeln!(text, "KillMode=mixed\nTimeoutStopSec={}", stop_timeout(source));
    File { name: release_name(source), text, private: false }
}

/// `--grace` as `TimeoutStopSec=`: systemd reads 0 as no timeout, where procgate SIGKILLs at once.
fn stop_timeout(source: &Source) -> String {
    crate::duration::format(source.start.grace.max(std::time::Duration::from_millis(1)))
}

/// A path in a unit: `%` doubled (no specifier); the rest is taken as it is.
fn unit_path(path: &str) -> String {
    path.replace('%', "%%")
}
