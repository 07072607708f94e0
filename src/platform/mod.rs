//! The control plane: actors that decide which instances exist and what happens to them.

pub mod backoff;
pub mod lifecycle;
pub mod scheduler;
