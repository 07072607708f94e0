//! The successor's side of the instances: which slots its Scheduler starts with. Each instance
//! handed over keeps its slot (type, number, port) and must run what the successor's release
//! gives for it (command and environment): the successor reads the app's files as a restart
//! would (the release a deploy put in force, the formation as it was), and if they changed
//! since, it refuses rather than adopt instances it would describe wrongly. The formation's
//! other instances (crashed or stopped in the old main) are started afresh.

use crate::formation::InstanceSpec;
use crate::platform::handed::Crossing;
use crate::platform::scheduler::Adoptee;
use crate::platform::spec::{port_for, SlotSpec, Templates};
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

/// The slots to run, in plan order, and the instances to adopt into them; or why the successor
/// cannot take over.
pub fn slots(
    plan: &[InstanceSpec],
    templates: &Templates,
    asleep: &BTreeMap<String, usize>,
    crossings: Vec<Crossing<OwnedFd>>,
) -> Result<(Vec<SlotSpec>, Vec<Adoptee>), String> {
    let mut handed: BTreeMap<(String, usize), Crossing<OwnedFd>> =
        crossings.into_iter().map(|c| ((c.instance.type_name.clone(), c.instance.number), c)).collect();
    let taken: Vec<u16> = handed.values().filter_map(|c| c.instance.port).collect();
    let mut chosen: Vec<u16> = Vec::new();
    let (mut slots, mut adoptees) = (Vec::new(), Vec::new());
    for planned in plan.iter().filter(|i| !asleep.contains_key(&i.type_name)) {
        let template = templates
            .get(&planned.type_name)
            .ok_or_else(|| format!("{}: not a type of the release", planned.type_name))?;
        match handed.remove(&(planned.type_name.clone(), planned.number)) {
            Some(crossing) => {
                let spec = template.instance(planned.number, crossing.instance.port);
                same_release(&spec, &crossing)?;
                let (instance, handed) = crossing.handed();
                slots.push(spec);
                adoptees.push(Adoptee { instance, handed });
            }
            None => {
                let in_use = |port: u16| taken.contains(&port) || chosen.contains(&port);
                let port = match template.block_start {
                    Some(block) => Some(
                        port_for(block, planned.number, in_use)
                            .ok_or_else(|| format!("no free port left for {}.{}", planned.type_name, planned.number))?,
                    ),
                    None => None,
                };
                chosen.extend(port);
                slots.push(template.instance(planned.number, port));
            }
        }
    }
    match handed.into_values().next() {
        Some(extra) => Err(format!(
            "{} runs, but the formation read from the app's files has no such instance",
            extra.instance.name
        )),
        None => Ok((slots, adoptees)),
    }
}

/// Whether the instance handed over runs what `spec` would run.
fn same_release(spec: &SlotSpec, crossing: &Crossing<OwnedFd>) -> Result<(), String> {
    let instance = &crossing.instance;
    let changed = if spec.template.command != instance.command {
        Some("its command".to_string())
    } else {
        let env = spec.env();
        let differs = env.keys().chain(instance.env.keys()).find(|k| env.get(*k) != instance.env.get(*k));
        differs.map(|name| format!("its environment ({name})"))
    };
    match changed {
        None => Ok(()),
        Some(what) => Err(format!(
            "{} runs another release than the app's files give now ({what} changed since it started): \
             deploy them first (`procgate deploy`) or put them back, then upgrade",
            instance.name
        )),
    }
}
