//! Tests that need a program procgate does not ship (a server, a client, a toolchain): they run
//! when it is installed; when it is not, they print one `skipped: needs ...` line and pass, or
//! fail with that line under `PROCGATE_TEST_ALL=1` (as `.ci/run` sets, so CI runs every test).

use std::path::{Path, PathBuf};

/// Set to `1` to turn a missing program into a failure instead of a skip.
const ALL: &str = "PROCGATE_TEST_ALL";

/// Where servers live besides `PATH` (Debian puts nginx and mosquitto in /usr/sbin, off a
/// user's `PATH`); `PROCGATE_TEST_SBIN` replaces the list (empty: `PATH` only).
const SBIN: &str = "/usr/sbin:/usr/local/sbin";

/// nginx with its stream module (procfiles/nginx-proxy).
pub const NGINX_STREAM: &[(&str, &str)] =
    &[("nginx", "nginx"), ("/usr/lib/nginx/modules/ngx_stream_module.so", "libnginx-mod-stream")];

/// True when every `(program, Debian package)` is installed: a program name is looked up on
/// `PATH` (and the sbin directories), an absolute path is checked as a file (a module, say).
/// Otherwise prints `skipped: needs PROGRAM (apt-get install PACKAGE)` and returns false, or
/// panics with that line when `PROCGATE_TEST_ALL=1`. A package given as a whole command
/// (`pip install kubernetes-validate`) is printed as it is.
pub fn needs(programs: &[(&str, &str)]) -> bool {
    let Some((program, package)) = programs.iter().find(|(program, _)| !installed(program)) else {
        return true;
    };
    let install = if package.contains(' ') { package.to_string() } else { format!("apt-get install {package}") };
    skip(&format!("{program} ({install})"))
}

/// True when the machine `permits` what a test needs besides a program (`what`: a PID
/// namespace, say); otherwise, as [`needs`], prints `skipped: needs WHAT` and returns false, or
/// panics when `PROCGATE_TEST_ALL=1`.
pub fn permitted(what: &str, permits: bool) -> bool {
    permits || skip(what)
}

fn skip(what: &str) -> bool {
    let line = format!("skipped: needs {what}");
    assert!(std::env::var(ALL).as_deref() != Ok("1"), "{line}; {ALL}=1 makes every test run");
    eprintln!("{line}");
    false
}

/// Where `program` is installed: on `PATH` or in the sbin directories (see [`needs`]).
pub fn find(program: &str) -> Option<PathBuf> {
    dirs().into_iter().map(|dir| dir.join(program)).find(|path| is_executable(path))
}

fn installed(program: &str) -> bool {
    if program.starts_with('/') {
        return Path::new(program).is_file();
    }
    find(program).is_some()
}

fn dirs() -> Vec<PathBuf> {
    let sbin = std::env::var_os("PROCGATE_TEST_SBIN").unwrap_or_else(|| SBIN.into());
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(std::env::split_paths(&sbin)).collect()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
