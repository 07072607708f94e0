//! An instance as one main process hands it to its successor at an upgrade: what its slot was
//! (name, type, number, port, generation, pid, restarts, uptime, in routing, connections
//! served), what it runs (command and environment, which the successor checks against its own
//! release), the keeper's bytes the old main read but did not handle yet, and its three fds (the
//! keeper's socket, the read ends of its stdout and stderr). The Scheduler makes and takes
//! them; `upgrade` carries them across.

use crate::platform::lifecycle::Adopted;
use crate::process::Handed;
use serde::{Deserialize, Serialize};
use std::os::fd::OwnedFd;
use std::time::Duration;

/// One running instance as its slot was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub number: usize,
    pub port: Option<u16>,
    pub generation: u64,
    /// The app's leader, also its process group.
    pub pid: u32,
    pub restarts: u32,
    pub running_for_ms: u64,
    pub in_routing: bool,
    /// Connections the gateway gave it (routed types).
    pub served: u64,
    /// Its Procfile command and environment.
    pub command: String,
    pub env: crate::env::EnvMap,
    /// What its keeper said that the old main had read but not handled.
    pub unread: Vec<u8>,
}

impl Instance {
    /// Its slot, for [`crate::platform::lifecycle::Lifecycle::adopt`].
    pub fn adopted(&self) -> Adopted {
        Adopted {
            generation: self.generation,
            pid: self.pid,
            restarts: self.restarts,
            running_for: Duration::from_millis(self.running_for_ms),
            in_routing: self.in_routing,
        }
    }
}

/// An instance and the fds that come with it.
pub struct Crossing<F> {
    pub instance: Instance,
    pub control: F,
    pub stdout: F,
    pub stderr: F,
}

impl Crossing<OwnedFd> {
    /// Its process, for [`crate::process::adopt`].
    pub fn handed(self) -> (Instance, Handed) {
        let (pid, unread) = (self.instance.pid, self.instance.unread.clone());
        (self.instance, Handed { control: self.control, stdout: self.stdout, stderr: self.stderr, pid, unread })
    }
}
