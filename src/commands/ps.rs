//! `procgate ps`: the instances of the running procgate, as a table or as JSON; `--watch`
//! refreshes it (in place on a terminal) until procgate stops.

use super::live::Live;
use crate::cli::PsArgs;
use crate::control::{client, ControlError, InstanceStatus, PsReply, RouteStatus};
use std::fmt::Write;
use std::path::Path;

pub fn run(args: PsArgs) -> anyhow::Result<i32> {
    if !args.watch {
        crate::commands::out!("{}\n", shown(&fetch(&args.root.root)?, args.json)?.trim_end());
        return Ok(0);
    }
    let mut live = Live::new();
    loop {
        match fetch(&args.root.root) {
            Ok(body) => live.rows(shown(&body, args.json)?.lines().map(|l| (String::new(), l.to_string())).collect()),
            Err(ControlError::NotRunning { .. }) => {
                live.rows(Vec::new());
                crate::commands::out!("procgate is not running (any more) in {}\n", args.root.root.display());
                return Ok(0);
            }
            Err(err) => return Err(err.into()),
        }
        std::thread::sleep(args.interval);
    }
}

/// `GET /ps`'s body.
fn fetch(root: &Path) -> Result<String, ControlError> {
    let asked = client::block_on(async {
        let response = client::call(root, hyper::Method::GET, "/ps", None).await?;
        Ok(client::read_all(response).await?)
    });
    asked.map_err(|err| match err.downcast::<ControlError>() {
        Ok(control) => control,
        Err(other) => ControlError::Io { socket: root.display().to_string(), reason: other.to_string() },
    })
}

/// The answer as JSON, or as the tables.
fn shown(body: &str, json: bool) -> anyhow::Result<String> {
    if json {
        return Ok(body.to_string());
    }
    let reply: PsReply = serde_json::from_str(body)?;
    Ok(table(&reply.instances) + &routes(&reply.routes))
}

fn table(instances: &[InstanceStatus]) -> String {
    // A crashed or failed instance's state says when it is tried again: the column fits it.
    let states: Vec<String> = instances
        .iter()
        .map(|i| match i.restart_in {
            Some(wait) if i.state == "crashed" || i.state == "failed" => {
                format!("{} (restart in {})", i.state, seconds(wait))
            }
            _ => i.state.clone(),
        })
        .collect();
    let width = states.iter().map(String::len).max().unwrap_or(0).max("STATE".len() + 4);
    let mut out = format!(
        "{:<12} {:<8} {:<width$} {:>7} {:>6} {:>9} {:>8} {:>11}\n",
        "NAME", "TYPE", "STATE", "PID", "PORT", "UPTIME", "RESTARTS", "CONNECTIONS"
    );
    for (i, state) in instances.iter().zip(states) {
        let dash = || "-".to_string();
        let pid = i.pid.map_or_else(dash, |p| p.to_string());
        let port = i.port.map_or_else(dash, |p| p.to_string());
        let uptime = i.uptime.map_or_else(dash, seconds);
        let connections = i.connections.map_or_else(dash, |c| c.to_string());
        let (name, kind, restarts) = (&i.name, &i.type_name, i.restarts);
        let _ = writeln!(
            out,
            "{name:<12} {kind:<8} {state:<width$} {pid:>7} {port:>6} {uptime:>9} {restarts:>8} {connections:>11}"
        );
    }
    out
}

/// The gateway routes' counters, after the instances.
fn routes(routes: &[RouteStatus]) -> String {
    let mut out = String::new();
    if routes.is_empty() {
        return out;
    }
    let header = ["ROUTE", "PROTOCOL", "QUEUED", "H11 (CAP)", "T429 (RATE)", "P400 (PROXY)", "P403 (PEER)", "CLIENTS"];
    let _ = writeln!(
        out,
        "\n{:<12} {:<8} {:>6} {:>10} {:>11} {:>12} {:>11} {:>8}",
        header[0], header[1], header[2], header[3], header[4], header[5], header[6], header[7]
    );
    for r in routes {
        let (name, protocol) = (&r.type_name, &r.protocol);
        let (queued, cap, rate, proxy) = (r.queued, r.refused_by_cap, r.refused_by_rate, r.bad_proxy_headers);
        let (peer, clients) = (r.untrusted_proxies, r.clients_tracked);
        let _ = writeln!(
            out,
            "{name:<12} {protocol:<8} {queued:>6} {cap:>10} {rate:>11} {proxy:>12} {peer:>11} {clients:>8}"
        );
    }
    out
}

/// `42s`, `3m07s`, `2h05m`.
fn seconds(value: f64) -> String {
    let total = value.round() as u64;
    match total {
        t if t < 60 => format!("{t}s"),
        t if t < 3600 => format!("{}m{:02}s", t / 60, t % 60),
        t => format!("{}h{:02}m", t / 3600, (t % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(name: &str, state: &str, restart_in: Option<f64>) -> InstanceStatus {
        InstanceStatus {
            name: name.into(),
            type_name: "tcp".into(),
            state: state.into(),
            pid: Some(7),
            port: Some(5000),
            uptime: None,
            restarts: 5,
            restart_in,
            connections: None,
            served: None,
        }
    }

    #[test]
    fn the_state_column_fits_a_next_restart_and_a_failed_instance_shows_it_too() {
        let rows = [instance("tcp.1", "up", None), instance("tcp.2", "failed", Some(75.0))];
        let text = table(&rows);
        assert!(text.contains("failed (restart in 1m15s)"), "{text}");
        let port_end = text.lines().next().unwrap().find("PORT").unwrap() + 4;
        for row in text.lines().skip(1) {
            assert_eq!(row.find("5000").map(|at| at + 4), Some(port_end), "columns aligned:\n{text}");
        }
    }

    #[test]
    fn uptimes_read_like_a_clock() {
        assert_eq!(seconds(4.4), "4s");
        assert_eq!(seconds(187.0), "3m07s");
        assert_eq!(seconds(7500.0), "2h05m");
    }
}
