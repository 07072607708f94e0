//! The formation (`web=2,tcp=3`, `all=1`) and the port plan derived from it.
//!
//! Ports follow foreman and honcho: type k (0-based, Procfile order, `release` left out) instance
//! i (1-based) gets `base + 100*k + (i-1)`. Every port of the plan must be free on 127.0.0.1.

use crate::procfile::{Procfile, RELEASE};
use std::net::{Ipv4Addr, TcpListener};

/// Ports reserved per process type; also the most instances a type can have.
pub const PORTS_PER_TYPE: u16 = 100;

/// How many instances each process type runs, in Procfile order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formation {
    pub counts: Vec<(String, usize)>,
}

/// One instance the plan asks for: `web.2` on port 5001.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    pub type_name: String,
    /// Position of the type among the Procfile's long-running types (for ports and colours).
    pub type_index: usize,
    /// 1-based instance number.
    pub number: usize,
    pub port: u16,
    pub command: String,
}

impl InstanceSpec {
    /// The instance's name, `web.1`, exported as `PS` and `DYNO`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.type_name, self.number)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormationError {
    #[error("formation `{spec}`: `{item}` is not TYPE=COUNT; write e.g. `web=2,worker=1` or `all=1`")]
    Syntax { spec: String, item: String },
    #[error("formation `{spec}`: the Procfile has no type `{name}`; its types are: {known}")]
    UnknownType { spec: String, name: String, known: String },
    #[error("formation: `{name}={count}` is more than {PORTS_PER_TYPE} instances, the size of a type's port block")]
    TooMany { name: String, count: usize },
    #[error("formation: `release` runs once before the other types; use release=0 to skip it or release=1")]
    ReleaseCount,
    #[error("port plan: {instance} would get port {port}, above 65535; lower the base port with -p/--port")]
    PortOverflow { instance: String, port: u32 },
    #[error("port {port} (for {instance}) is already in use on 127.0.0.1; stop what holds it or choose another base port with -p/--port")]
    PortInUse { instance: String, port: u16 },
}

impl Formation {
    /// Parses `-m` against the Procfile; `all=N` sets every type, listed types override it and,
    /// as in foreman, types left out of an explicit list get 0. `release` keeps 1 unless listed.
    pub fn parse(spec: &str, procfile: &Procfile) -> Result<Formation, FormationError> {
        let mut all = 0;
        let mut listed: Vec<(String, usize)> = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, count) = parse_item(spec, item)?;
            if name == "all" {
                all = count;
            } else if procfile.get(&name).is_none() {
                let known: Vec<&str> = procfile.types.iter().map(|t| t.name.as_str()).collect();
                let known = known.join(", ");
                return Err(FormationError::UnknownType { spec: spec.into(), name, known });
            } else {
                listed.retain(|(n, _)| *n != name);
                listed.push((name, count));
            }
        }
        let counts = procfile.types.iter().map(|t| {
            let default = if t.name == RELEASE { 1 } else { all };
            let count = listed.iter().find(|(n, _)| *n == t.name).map_or(default, |(_, c)| *c);
            (t.name.clone(), count)
        });
        let formation = Formation { counts: counts.collect() };
        formation.validate()?;
        Ok(formation)
    }

    fn validate(&self) -> Result<(), FormationError> {
        for (name, count) in &self.counts {
            if name == RELEASE && *count > 1 {
                return Err(FormationError::ReleaseCount);
            }
            if *count > PORTS_PER_TYPE as usize {
                return Err(FormationError::TooMany { name: name.clone(), count: *count });
            }
        }
        Ok(())
    }

    /// How many instances of `name` run.
    pub fn count(&self, name: &str) -> usize {
        self.counts.iter().find(|(n, _)| n == name).map_or(0, |(_, c)| *c)
    }
}

impl std::fmt::Display for Formation {
    /// `release=1,web=2,tcp=0`, in Procfile order.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let items: Vec<String> = self.counts.iter().map(|(n, c)| format!("{n}={c}")).collect();
        f.write_str(&items.join(","))
    }
}

fn parse_item(spec: &str, item: &str) -> Result<(String, usize), FormationError> {
    let syntax = || FormationError::Syntax { spec: spec.into(), item: item.into() };
    let (name, count) = item.split_once('=').ok_or_else(syntax)?;
    let count = count.trim().parse().map_err(|_| syntax())?;
    Ok((name.trim().to_string(), count))
}

/// The long-running types of the Procfile (all but `release`), in order, with their index.
pub fn long_running(procfile: &Procfile) -> impl Iterator<Item = (usize, &crate::procfile::ProcessType)> {
    procfile.types.iter().filter(|t| t.name != RELEASE).enumerate()
}

/// The port of instance `number` (1-based) of the type at `type_index`.
pub fn port_for(base: u16, type_index: usize, number: usize) -> u32 {
    u32::from(base) + u32::from(PORTS_PER_TYPE) * type_index as u32 + number as u32 - 1
}

/// Every instance the formation asks for, with its port.
pub fn plan(procfile: &Procfile, formation: &Formation, base: u16) -> Result<Vec<InstanceSpec>, FormationError> {
    let mut instances = Vec::new();
    for (type_index, process) in long_running(procfile) {
        for number in 1..=formation.count(&process.name) {
            let port = port_for(base, type_index, number);
            let instance = format!("{}.{number}", process.name);
            let port = u16::try_from(port).map_err(|_| FormationError::PortOverflow { instance, port })?;
            instances.push(InstanceSpec {
                type_name: process.name.clone(),
                type_index,
                number,
                port,
                command: process.command.clone(),
            });
        }
    }
    Ok(instances)
}

/// Fails on the first port of the plan that something already holds on 127.0.0.1.
pub fn check_ports_free(plan: &[InstanceSpec]) -> Result<(), FormationError> {
    for instance in plan {
        if !port_is_free(instance.port) {
            return Err(FormationError::PortInUse { instance: instance.name(), port: instance.port });
        }
    }
    Ok(())
}

/// True when nothing listens on `port` of 127.0.0.1 (binding it succeeds).
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn procfile(text: &str) -> Procfile {
        Procfile::parse(Path::new("Procfile"), text).unwrap()
    }

    fn ports(text: &str, spec: &str, base: u16) -> Vec<(String, u16)> {
        let procfile = procfile(text);
        let formation = Formation::parse(spec, &procfile).unwrap();
        plan(&procfile, &formation, base).unwrap().iter().map(|i| (i.name(), i.port)).collect()
    }

    fn pairs(expected: &[(&str, u16)]) -> Vec<(String, u16)> {
        expected.iter().map(|(n, p)| (n.to_string(), *p)).collect()
    }

    #[test]
    fn ports_follow_honchos_expand_processes() {
        let got = ports("web: a\nworker: b\n", "web=3,worker=2", 4000);
        assert_eq!(
            got,
            pairs(&[("web.1", 4000), ("web.2", 4001), ("web.3", 4002), ("worker.1", 4100), ("worker.2", 4101)])
        );
    }

    #[test]
    fn default_is_one_of_each_and_listed_types_override_all() {
        let text = "web: a\nworker: b\nclock: c\n";
        assert_eq!(ports(text, "all=1", 5000), pairs(&[("web.1", 5000), ("worker.1", 5100), ("clock.1", 5200)]));
        assert_eq!(
            ports(text, "all=1,worker=2", 5000),
            pairs(&[("web.1", 5000), ("worker.1", 5100), ("worker.2", 5101), ("clock.1", 5200)])
        );
    }

    #[test]
    fn unlisted_types_get_zero_and_zero_disables() {
        let text = "web: a\nworker: b\nclock: c\n";
        assert_eq!(ports(text, "worker=1", 5000), pairs(&[("worker.1", 5100)]));
        assert_eq!(ports(text, "web=0,clock=1", 5000), pairs(&[("clock.1", 5200)]));
        assert_eq!(ports(text, " web = 1 , ", 5000), pairs(&[("web.1", 5000)]));
    }

    #[test]
    fn release_is_outside_the_port_plan_and_runs_once() {
        let text = "release: migrate\nweb: a\nworker: b\n";
        assert_eq!(ports(text, "all=1", 5000), pairs(&[("web.1", 5000), ("worker.1", 5100)]));
        let procfile = procfile(text);
        assert_eq!(Formation::parse("web=2", &procfile).unwrap().count("release"), 1);
        assert_eq!(Formation::parse("release=0", &procfile).unwrap().count("release"), 0);
        assert_eq!(Formation::parse("release=2", &procfile), Err(FormationError::ReleaseCount));
    }

    #[test]
    fn bad_formations_are_clear_errors() {
        let procfile = procfile("web: a\n");
        let err = Formation::parse("tcp=1", &procfile).unwrap_err();
        assert_eq!(err.to_string(), "formation `tcp=1`: the Procfile has no type `tcp`; its types are: web");
        assert!(matches!(Formation::parse("web", &procfile), Err(FormationError::Syntax { .. })));
        assert!(matches!(Formation::parse("web=-1", &procfile), Err(FormationError::Syntax { .. })));
        assert!(matches!(Formation::parse("web=101", &procfile), Err(FormationError::TooMany { .. })));
    }

    #[test]
    fn ports_above_65535_are_refused() {
        let procfile = procfile("web: a\nworker: b\n");
        let formation = Formation::parse("all=1", &procfile).unwrap();
        let err = plan(&procfile, &formation, 65500).unwrap_err();
        assert_eq!(err, FormationError::PortOverflow { instance: "worker.1".into(), port: 65600 });
    }

    #[test]
    fn a_held_port_is_named_with_its_instance() {
        let held = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = held.local_addr().unwrap().port();
        let procfile = procfile("web: a\n");
        let formation = Formation::parse("all=1", &procfile).unwrap();
        let plan = plan(&procfile, &formation, port).unwrap();
        assert_eq!(check_ports_free(&plan), Err(FormationError::PortInUse { instance: "web.1".into(), port }));
    }
}
