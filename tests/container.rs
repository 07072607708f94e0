//! procgate as a container's entrypoint: PID 1 of a PID namespace of its own (`unshare --pid
//! --fork --mount-proc`, as a container runtime starts it), where every orphan of the namespace
//! becomes its child. It reaps them and still stops on SIGTERM within the grace.

mod common;
use common::needs::{needs, permitted};
use common::{wait_until, App, DEADLINE};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use procgate::process::procfs::{self, ProcessInfo};
use std::process::Command;
use std::time::{Duration, Instant};

/// An app that leaves orphans: 5 children whose parent (a subshell) is gone at once, adopted
/// by its keeper, and 3 `escapee`s that left its process group (`setsid`) and so outlive a
/// keeper that is killed; they run until the file `release` exists in the app root.
const ORPHANS: &str = r#"
trap 'echo "SIGTERM received"; exit 0' TERM
for i in 1 2 3 4 5; do (sleep 0.2 &); done
for i in 1 2 3; do (setsid sh -c 'until [ -e release ]; do sleep 0.05; done' escapee &); done
echo "left 5 orphans and 3 escapees"
sleep 1000 &
wait
"#;

/// How long a zombie may stay unreaped before the test calls it left behind.
const REAPED_WITHIN: Duration = Duration::from_secs(2);

const GRACE: Duration = Duration::from_secs(5);

/// The flags of `unshare` and `nsenter` that give this machine's user a PID namespace: as root,
/// a PID namespace alone; otherwise inside a user namespace of its own (unprivileged user
/// namespaces, on by default on Debian). `None` when neither is permitted (a container's
/// seccomp profile, say).
fn namespace_flags() -> Option<(&'static [&'static str], &'static [&'static str])> {
    let ways: [(&[&str], &[&str]); 2] = [
        (&["--pid", "--fork", "--mount-proc"], &["--pid"]),
        (
            &["--user", "--map-root-user", "--pid", "--fork", "--mount-proc"],
            &["--user", "--preserve-credentials", "--pid"],
        ),
    ];
    let works = |flags: &[&str]| {
        let probe = Command::new("unshare").args(flags).arg("true").stderr(std::process::Stdio::null()).status();
        probe.is_ok_and(|status| status.success())
    };
    ways.into_iter().find(|(unshare, _)| works(unshare))
}

/// `pid` and its descendants, zombies included.
fn tree(pid: i32) -> Vec<ProcessInfo> {
    let all = procfs::processes();
    let mut found: Vec<ProcessInfo> = all.iter().filter(|p| p.pid == pid).cloned().collect();
    let mut next = 0;
    while next < found.len() {
        let parent = found[next].pid;
        found.extend(all.iter().filter(|p| p.ppid == parent).cloned());
        next += 1;
    }
    found
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Waits until `root`'s tree holds no zombie; panics if one stays unreaped for [`REAPED_WITHIN`].
fn wait_no_zombie(root: i32) {
    let mut first_seen: Vec<(i32, Instant)> = Vec::new();
    wait_until(DEADLINE, "a moment with no zombie in the namespace", || {
        let zombies: Vec<ProcessInfo> = tree(root).into_iter().filter(|p| p.zombie).collect();
        first_seen.retain(|(pid, _)| zombies.iter().any(|z| z.pid == *pid));
        for zombie in &zombies {
            match first_seen.iter().find(|(pid, _)| *pid == zombie.pid) {
                Some((_, since)) => assert!(since.elapsed() < REAPED_WITHIN, "never reaped: {zombie:?}"),
                None => first_seen.push((zombie.pid, Instant::now())),
            }
        }
        zombies.is_empty().then_some(())
    })
}

#[test]
fn as_pid_1_of_a_pid_namespace_procgate_reaps_every_orphan_and_stops_on_sigterm_within_the_grace() {
    if !needs(&[("unshare", "util-linux"), ("nsenter", "util-linux")]) {
        return;
    }
    let flags = namespace_flags();
    if !permitted("a PID namespace (unshare --pid; root, or unprivileged user namespaces)", flags.is_some()) {
        return;
    }
    let (unshare, nsenter) = flags.unwrap();
    let app = App::new("app: bash orphans.sh\n");
    app.write("orphans.sh", ORPHANS);
    let base = common::free_base_port(1, 1).to_string();
    let mut args = unshare.to_vec();
    // --kill-child: procgate, and so the namespace, dies with unshare should the test fail.
    args.extend(["--kill-child", common::BIN, "start", "-m", "app=1", "-p", &base, "--grace", "5s"]);
    let mut running = app.spawn_program("unshare".as_ref(), &args, &[]);
    running.wait_for("app.1 | left 5 orphans and 3 escapees");
    let unshare_pid = running.pid();
    let pid1 = wait_until(DEADLINE, "procgate under unshare", || {
        procfs::processes().into_iter().find(|p| p.ppid == unshare_pid)
    });
    let pid1 = pid1.pid;
    // PID 1 is procgate's anchor; the keeper is a child of its main process.
    let keeper =
        wait_until(DEADLINE, "the keeper", || tree(pid1).into_iter().find(|p| cmdline(p.pid).contains("__keeper")));
    let escapees = wait_until(DEADLINE, "3 escapees adopted by the keeper", || {
        let adopted: Vec<i32> = tree(pid1)
            .into_iter()
            .filter(|p| p.ppid == keeper.pid && cmdline(p.pid).ends_with("escapee "))
            .map(|p| p.pid)
            .collect();
        (adopted.len() == 3).then_some(adopted)
    });

    // What a `docker exec` leaves running in the background is orphaned to PID 1.
    let exec = Command::new("nsenter")
        .args(["--target", &pid1.to_string()])
        .args(nsenter)
        .args(["sh", "-c", "sh -c 'until [ -e release ]; do sleep 0.05; done' exec-orphan & exit 0"])
        .current_dir(app.path())
        .status()
        .unwrap();
    assert!(exec.success());
    let exec_orphan = wait_until(DEADLINE, "the exec's orphan adopted by procgate", || {
        tree(pid1).into_iter().find(|p| p.ppid == pid1 && cmdline(p.pid).ends_with("exec-orphan "))
    });

    // A keeper that dies leaves its app to PID 1: its group is killed, the escapees live on.
    kill(Pid::from_raw(keeper.pid), Signal::SIGKILL).unwrap();
    running.wait_for("app.1 terminated by SIGKILL");
    wait_until(DEADLINE, "the escapees adopted by procgate", || {
        let parents: Vec<i32> = escapees.iter().filter_map(|&pid| procfs::process(pid)).map(|p| p.ppid).collect();
        parents.iter().all(|&ppid| ppid == pid1).then_some(())
    });
    std::fs::write(app.path().join("release"), "").unwrap();
    let orphans: Vec<i32> = escapees.iter().copied().chain([exec_orphan.pid]).collect();
    wait_until(DEADLINE, "the orphans of PID 1 reaped", || {
        orphans.iter().all(|&pid| procfs::process(pid).is_none()).then_some(())
    });
    // The app restarted (its trap set: it prints after that) under a new keeper.
    running.wait_for_nth("app.1 | left 5 orphans and 3 escapees", 2, DEADLINE);
    wait_no_zombie(pid1);

    // docker stop: SIGTERM to PID 1, which stops the app within the grace and exits 0.
    let stopping = Instant::now();
    kill(Pid::from_raw(pid1), Signal::SIGTERM).unwrap();
    let finished = running.finish(DEADLINE);
    let took = stopping.elapsed();
    assert_eq!(finished.code(), Some(0), "{}", finished.text());
    assert!(took < GRACE, "stopped in {took:?}, the grace is {GRACE:?}");
    for line in ["SIGTERM received, starting shutdown", "app.1 | SIGTERM received", "app.1 exited with code 0"] {
        assert!(finished.has(line), "no `{line}` in:\n{}", finished.text());
    }
    eprintln!(
        "PID 1 reaped {} orphans (3 escapees of a killed keeper, 1 left by an exec); stopped on SIGTERM in {took:?}",
        orphans.len()
    );
}
