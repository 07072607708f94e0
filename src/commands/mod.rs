//! The subcommands, one module each.

pub mod check;
pub mod ps;
pub mod run;
pub mod start;
pub mod stop;
