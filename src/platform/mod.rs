//! The control plane: actors that decide which instances exist, which are healthy and which
//! get new connections. They run on one actix thread.

pub mod backoff;
pub mod balancer;
pub mod health;
pub mod lifecycle;
pub mod rollout;
pub mod scheduler;
pub mod spec;
