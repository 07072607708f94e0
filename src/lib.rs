//! procgate: a self-hosted mini-PaaS from a Procfile, in one binary.
//!
//! # Layout
//! Imports point down only: `commands` → `control` → `platform`, `gateway` → `config`,
//! `settings`, `procfile`, `env`, `formation` → `logs`, `duration`.
//! - [`cli`]: clap definitions of the subcommands and flags, mapped to config's plain values.
//! - [`app_state`]: `.procgate` in the app root, and the state a next `start` comes back with.
//! - [`config`]: one place builds a [`config::Release`] from the app's files (Procfile, env files,
//!   procgate.toml) and the operator's choices, for `start`, `check`, `deploy` and `test-shutdown`.
//! - [`settings`]: the optional `procgate.toml` (per-type routes, checks, limits, PROXY protocol).
//! - [`procfile`]: the ordered, strict Procfile parser, and the type names procgate treats apart.
//! - [`proxy_version`]: the PROXY protocol version instances expect, and the `LOCAL` header of checks.
//! - [`env`](mod@env): env files (dotenvy iterator API) and each instance's environment.
//! - [`formation`]: the formation (`web=2`) and the port plan.
//! - [`duration`]: `500ms`, `30s`, `2m`, `24h` on the command line.
//! - [`cidr`]: address blocks (`10.0.0.0/8`) for `trusted_proxies`.
//! - [`process`]: instances as process trees under a keeper; output capture; the keeper itself.
//! - [`platform`]: the control plane's actors: the Scheduler (the one owner of instances), the
//!   Rollout actor (restarts, deploys, cycling; it asks the Scheduler for intents), the
//!   HealthChecker and the Balancer; their pure state machines (instance lifecycle, rollouts,
//!   backoff, health hysteresis, sleep and wake), the deploy planner and the specs.
//! - [`http_check`]: procgate's small HTTP/1 client of instances: health probes, test-shutdown's requests.
//! - [`gateway`]: the data plane: TCP gateway and HTTP router, one runtime per core; each route's
//!   activity, for the types that sleep when idle and wake on connect.
//! - [`control`]: the control socket (HTTP/1.1 + JSON on a Unix socket): wire types, server,
//!   client; `GET /logs`, the Prometheus metrics and the live status page.
//! - [`anchor`]: the process `start` stays as, with its caller's pid, in front of the main
//!   process: passes signals on as orders, relays `sd_notify`, reaps orphans, exits as it did.
//! - [`fdpass`]: a message and its open files over a Unix socket (`SCM_RIGHTS`), for the upgrade.
//! - [`upgrade`]: replacing procgate's own binary under load: the new binary's check.
//! - [`signals`]: procgate's own signals: SIGINT/SIGTERM stop, SIGHUP reloads.
//! - [`sd_notify`]: systemd's readiness protocol (`READY=1`, `STATUS=`, the watchdog), no C library.
//! - [`logs`]: foreman-style output lines and procgate's `system` events, kept in memory for
//!   `procgate logs` and in rolling log files (`--log-dir`).
//! - [`shutdown`]: `test-shutdown`: one instance, held clients, SIGTERM, a graded checklist.
//! - [`commands`]: `start`, `check`, `run`, `ps`, `logs`, `scale`, `restart`, `deploy`, `wake`, `stop`,
//!   `test-shutdown`, `systemd-unit`, `export` (Kubernetes manifests and systemd units).

pub mod anchor;
pub mod app_state;
pub mod cidr;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod duration;
pub mod env;
pub mod fdpass;
pub mod formation;
pub mod gateway;
pub mod http_check;
pub mod logs;
pub mod platform;
pub mod process;
pub mod procfile;
pub mod proxy_version;
pub mod sd_notify;
pub mod settings;
pub mod shutdown;
pub mod signals;
pub mod text_file;
pub mod upgrade;

/// The property tests' runner, shared with `tests/fuzz.rs`.
#[cfg(test)]
#[path = "../tests/common/proptest_check.rs"]
mod proptest_check;
