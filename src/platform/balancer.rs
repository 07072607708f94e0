//! The Balancer actor: owns the routing table (which instances of each routed type get new
//! connections) and publishes it to the data plane as immutable snapshots. Logs `201` when an
//! instance joins routing and `204` when it leaves.

use crate::gateway::route::{Backend, InstanceId, Route};
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub struct Balancer {
    /// Routed type name → its route, shared with the data plane.
    routes: HashMap<String, Arc<Route>>,
    /// The current members of each route.
    members: HashMap<String, Vec<Arc<Backend>>>,
}

impl Balancer {
    pub fn new(routes: Vec<Arc<Route>>) -> Balancer {
        let routes: HashMap<String, Arc<Route>> = routes.into_iter().map(|r| (r.type_name.clone(), r)).collect();
        let members = routes.keys().map(|name| (name.clone(), Vec::new())).collect();
        Balancer { routes, members }
    }

    fn publish(&self, type_name: &str) {
        if let (Some(route), Some(members)) = (self.routes.get(type_name), self.members.get(type_name)) {
            route.publish(members.clone());
        }
    }

    fn find(&self, id: InstanceId) -> Option<(&String, &Arc<Backend>)> {
        self.members.iter().find_map(|(type_name, members)| members.iter().find(|b| b.id == id).map(|b| (type_name, b)))
    }
}

impl Actor for Balancer {
    type Context = Context<Self>;
}

/// An instance passed its health check: route new connections to it. Its counters belong to
/// the Scheduler, which reads them for `ps` and draining.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join {
    pub type_name: String,
    pub backend: Arc<Backend>,
}

/// An instance leaves routing (its open connections go on).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub id: InstanceId,
    pub reason: &'static str,
}

/// A passive failure was not confirmed: the instance takes connections again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Restore(pub InstanceId);

impl Handler<Join> for Balancer {
    type Result = ();

    fn handle(&mut self, join: Join, _ctx: &mut Context<Self>) {
        let Some(members) = self.members.get_mut(&join.type_name) else { return };
        if members.iter().any(|b| b.id == join.backend.id) {
            return;
        }
        join.backend.down.store(false, Ordering::Relaxed);
        let line = format!("201 app connected {} {}", join.backend.name, join.backend.addr);
        members.push(join.backend);
        // Published before it is logged: whoever reads the line can connect to it.
        self.publish(&join.type_name);
        tracing::info!("{line}");
    }
}

impl Handler<Leave> for Balancer {
    type Result = ();

    fn handle(&mut self, leave: Leave, _ctx: &mut Context<Self>) {
        let Some((type_name, backend)) = self.find(leave.id) else { return };
        let (type_name, backend) = (type_name.clone(), backend.clone());
        if let Some(members) = self.members.get_mut(&type_name) {
            members.retain(|b| b.id != leave.id);
        }
        self.publish(&type_name);
        let open = backend.open.load(Ordering::Relaxed);
        tracing::info!("204 app disconnected {} ({}; {open} connections open)", backend.name, leave.reason);
    }
}

impl Handler<Restore> for Balancer {
    type Result = ();

    fn handle(&mut self, Restore(id): Restore, _ctx: &mut Context<Self>) {
        let Some((type_name, backend)) = self.find(id) else { return };
        backend.down.store(false, Ordering::Relaxed);
        if let Some(route) = self.routes.get(type_name) {
            route.touch();
        }
    }
}
