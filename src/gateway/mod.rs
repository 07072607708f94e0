//! The data plane: a tokio multi-thread runtime on all cores, separate from the actix control
//! thread, running one accept loop per route. It reads the Balancer's snapshots lock-free and
//! never waits on an actor per connection.

pub mod pump;
pub mod route;
pub mod tcp;

use route::Route;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How the gateway treats each connection.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// How long an accepted client waits for a healthy instance before H10.
    pub wait: Duration,
    /// How long a connect to an instance may take before another is tried.
    pub connect_timeout: Duration,
    /// Close connections with no traffic either way for this long (off by default).
    pub idle_timeout: Option<Duration>,
    /// Log `202`/`203` per connection.
    pub access_log: bool,
}

/// The running data plane; dropping it stops it.
pub struct Gateway {
    /// Owns the data plane's threads; dropping it stops them.
    _runtime: tokio::runtime::Runtime,
    shutdown: Arc<watch::Sender<bool>>,
}

/// Stops the gateway's accept loops; established connections go on.
#[derive(Clone)]
pub struct Stopper(Arc<watch::Sender<bool>>);

impl Stopper {
    pub fn stop_accepting(&self) {
        let _ = self.0.send(true);
    }
}

impl Gateway {
    /// Starts the runtime and an accept loop for each (route, bound listener).
    pub fn start(
        routes: Vec<(Arc<Route>, std::net::TcpListener)>,
        settings: GatewaySettings,
    ) -> std::io::Result<Gateway> {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("gateway").build()?;
        let (shutdown, _) = watch::channel(false);
        let settings = Arc::new(settings);
        for (route, listener) in routes {
            listener.set_nonblocking(true)?;
            let listener = {
                let _entered = runtime.enter();
                tokio::net::TcpListener::from_std(listener)?
            };
            runtime.spawn(tcp::serve(listener, route, settings.clone(), shutdown.subscribe()));
        }
        Ok(Gateway { _runtime: runtime, shutdown: Arc::new(shutdown) })
    }

    pub fn stopper(&self) -> Stopper {
        Stopper(self.shutdown.clone())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stopper().stop_accepting();
    }
}

/// Raises the soft open-files limit to the hard limit; returns the new limit.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard)
}
