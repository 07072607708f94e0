//! The router bench's proxies: procgate's arguments, HAProxy's `mode http` and nginx's configs.
//!
//! procgate also runs the HTTP backends as its two `web` instances; HAProxy and nginx stand in
//! front of the same two. Starting and stopping them is common/proxies.rs's and
//! common/process.rs's.

use crate::backend::BACKENDS;
use crate::common::knobs::Knobs;
use crate::common::process::Proxy;
use crate::common::proxies::{self, local, Ports, Procgate};
use crate::common::rounds::Contender;
use crate::report::NGINX_INDEX;
use nix::sys::signal::Signal;
use std::path::Path;
use std::process::Command;

/// nginx's connections per worker process, clients and upstreams together.
const NGINX_WORKER_CONNECTIONS: u64 = 10_000;
/// The HAProxy configuration after its `global` section: an HTTP load balancer over the same
/// two backends, with HTTP checks (`GET /`) every 2 s as procgate checks its web instances.
/// `http-reuse always`: any request may go on an idle server connection, as procgate's pool
/// does (`safe`, the default, would open a server connection for each client's first request).
const HAPROXY_CONFIG: &str = "\
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 1s
    timeout client 30s
    timeout server 30s

frontend bench
    bind {FRONTEND}
    maxconn 20000
{HEADERS}    default_backend web

backend web
    balance leastconn
    option httpchk GET /
    server web1 {BACKEND1} check inter 2s
    server web2 {BACKEND2} check inter 2s
";
/// What HAProxy adds to each request, as procgate does: the client's address appended to
/// `X-Forwarded-For`, the scheme and port, a random request id unless the client sent one, and
/// its `Via` entry.
const HAPROXY_HEADERS: &str = "\
    option forwardfor
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Port %[dst_port]
    http-request set-header X-Request-Id %[uuid] unless { req.hdr(x-request-id) -m found }
    http-request add-header Via \"1.1 haproxy\"
";
/// One line for the report's notes.
pub const HAPROXY_SUMMARY: &str = "mode http, balance leastconn, nbthread 2, option http-keep-alive, http-reuse \
always, maxconn 20000, timeout connect 1s, client/server 30s, HTTP checks GET / every 2s, no strict-limits, one \
process (-db)";
/// The nginx configuration: a reverse proxy over the same two backends with a pool of
/// kept-alive upstream connections, and no limit to the requests of one connection (the
/// default 1000 would close clients' and upstream connections that the other proxies keep).
/// Logs go to stderr, everything else to the run's temporary directory.
const NGINX_CONFIG: &str = "\
worker_processes 2;
worker_rlimit_nofile {NOFILE};
pid {DIR}/nginx.pid;
error_log stderr warn;

events {
    worker_connections {WORKER_CONNECTIONS};
}

http {
    access_log off;
    client_body_temp_path {DIR}/client_body;
    proxy_temp_path {DIR}/proxy;
    fastcgi_temp_path {DIR}/fastcgi;
    uwsgi_temp_path {DIR}/uwsgi;
    scgi_temp_path {DIR}/scgi;
    keepalive_requests 1000000000;
    keepalive_timeout 30s;

    upstream web {
        least_conn;
        server {BACKEND1};
        server {BACKEND2};
        keepalive 64;
        keepalive_requests 1000000000;
        keepalive_timeout 30s;
    }

    map $http_x_request_id $forwarded_request_id {
        \"\" $request_id;
        default $http_x_request_id;
    }

    server {
        listen {FRONTEND};
        location / {
            proxy_pass http://web;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_connect_timeout 1s;
{HEADERS}        }
    }
}
";

/// What nginx adds to each request, as procgate does (`$request_id`: 32 random hex digits).
const NGINX_HEADERS: &str = "\
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Port $server_port;
            proxy_set_header X-Request-Id $forwarded_request_id;
            proxy_set_header Via \"1.1 nginx\";
";

/// One line for the report's notes.
pub fn nginx_summary(fd_limit: u64) -> String {
    format!(
        "worker_processes 2, worker_rlimit_nofile {fd_limit}, worker_connections {NGINX_WORKER_CONNECTIONS}, \
         upstream least_conn with keepalive 64, proxy_http_version 1.1, Connection \"\", keepalive_requests 10^9 \
         (clients and upstream), keepalive_timeout 30s, access_log off, no active checks, -g 'daemon off;'"
    )
}

/// procgate with the bench binary as its two `web` instances, its router in front of them.
pub fn start_procgate(dir: &Path, ports: Ports) -> anyhow::Result<Contender> {
    let listen = local(ports.procgate()).to_string();
    let args = ["--web-listen", &listen, "--tcp-listen", "127.0.0.1:0", "--grace", "1s", "--access-log", "none"];
    let procgate = Procgate { name: "procgate", ports, settings: None, shared: true };
    proxies::start_procgate(dir, &procgate, &BACKENDS, &args)
}

/// HAProxy in HTTP mode, adding procgate's headers when `same_headers`, or why it is out; and
/// its version line.
pub fn start_haproxy(knobs: &Knobs, dir: &Path, ports: Ports, same_headers: bool) -> (Contender, String) {
    let config = HAPROXY_CONFIG.replace("{HEADERS}", if same_headers { HAPROXY_HEADERS } else { "" });
    proxies::start_haproxy(&knobs.haproxy, dir, ports, &config)
}

/// nginx as the third contender, started in the foreground (master and workers) in front of the
/// backends with its prefix, pid file and temporary files in `dir`, adding procgate's headers
/// when `same_headers`, once it listens; or why it is out. And its version line (`nginx version:
/// nginx/1.22.1`).
pub fn start_nginx(
    executable: &Path,
    dir: &Path,
    ports: Ports,
    fd_limit: u64,
    same_headers: bool,
) -> (Contender, String) {
    proxies::start_contender("nginx", proxies::version(executable, "BENCH_NGINX"), || {
        let config = proxies::fill(NGINX_CONFIG, ports.frontend(NGINX_INDEX), ports)
            .replace("{HEADERS}", if same_headers { NGINX_HEADERS } else { "" })
            .replace("{NOFILE}", &fd_limit.to_string())
            .replace("{WORKER_CONNECTIONS}", &NGINX_WORKER_CONNECTIONS.to_string())
            .replace("{DIR}", &dir.display().to_string());
        let path = dir.join("nginx.conf");
        std::fs::write(&path, config)?;
        let mut command = Command::new(executable);
        command.arg("-p").arg(dir).arg("-c").arg(&path).args(["-e", "stderr", "-g", "daemon off;"]);
        let mut proxy = Proxy::spawn("nginx", local(ports.frontend(NGINX_INDEX)), command, Signal::SIGTERM, true)?;
        proxy.wait_listening(proxy.addr)?;
        Ok(proxy)
    })
}
