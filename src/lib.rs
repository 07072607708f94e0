//! procgate: a self-hosted mini-PaaS from a Procfile, in one binary.
//!
//! # Layout
//! - [`cli`]: clap definitions of the subcommands and flags.
//! - [`config`]: flags, Procfile and env files turned into one validated [`config::Config`].
//! - [`procfile`]: the ordered, strict Procfile parser.
//! - [`env`]: env files (dotenvy iterator API) and each instance's environment.
//! - [`formation`]: the formation (`web=2`) and the port plan.
//! - [`duration`]: `500ms`, `30s`, `2m`, `24h` on the command line.
//! - [`process`]: instances as process trees under a keeper; output capture; the keeper itself.
//! - [`platform`]: the control plane's actors: the Scheduler and its pure state machine.
//! - [`signals`]: procgate's own SIGINT/SIGTERM/SIGHUP.
//! - [`logs`]: foreman-style output lines and procgate's `system` events.
//! - [`commands`]: `start`, `check`, `run`.

pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod duration;
pub mod env;
pub mod formation;
pub mod gateway;
pub mod logs;
pub mod platform;
pub mod process;
pub mod procfile;
pub mod settings;
pub mod signals;
