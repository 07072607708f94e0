//! The control plane: actors that decide which instances exist, which are healthy and which
//! get new connections. They run on one actix thread.

pub mod backoff;
pub mod balancer;
#[cfg(test)]
mod control_plane_property;
pub mod deploy_plan;
pub mod handed;
pub mod health;
pub mod intents;
pub mod lifecycle;
pub mod rollout;
pub mod rollout_actor;
pub mod scheduler;
pub mod sleep;
pub mod spec;
