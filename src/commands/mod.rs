//! The subcommands, one module each.

pub mod check;
pub mod export;
pub mod live;
pub mod logs;
pub mod ps;
pub mod roll;
pub mod run;
pub mod scale;
pub mod start;
pub mod stop;
pub mod systemd_unit;
pub mod test_shutdown;
pub mod upgrade;
pub mod wake;
