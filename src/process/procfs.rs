//! The processes of the machine as `/proc` shows them: pid, parent, process group, name, state.

/// A process as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    /// The command name (`comm`, at most 15 bytes).
    pub name: String,
    /// Exited but not yet reaped by its parent.
    pub zombie: bool,
}

/// Every process now alive (or a zombie).
pub fn processes() -> Vec<ProcessInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok()).filter_map(process).collect()
}

/// The live (not zombie) members of process group `pgid`.
pub fn group_members(pgid: i32) -> Vec<ProcessInfo> {
    processes().into_iter().filter(|p| p.pgid == pgid && !p.zombie).collect()
}

/// Every descendant of `ancestor` now alive or a zombie (a subreaper's orphans are its
/// children, so their trees are in it too).
pub fn descendants_of(ancestor: i32) -> Vec<ProcessInfo> {
    let all = processes();
    let mut parents = vec![ancestor];
    let mut found = Vec::new();
    while let Some(parent) = parents.pop() {
        for process in all.iter().filter(|p| p.ppid == parent) {
            parents.push(process.pid);
            found.push(process.clone());
        }
    }
    found
}

/// The process that has `pid` now, if any.
pub fn process(pid: i32) -> Option<ProcessInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name may hold spaces and parentheses; the fields resume after the last ')':
    // state, ppid, pgrp, ...
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let mut fields = stat[close + 1..].split_whitespace();
    let zombie = fields.next()? == "Z";
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    Some(ProcessInfo { pid, ppid, pgid, name: stat[open + 1..close].to_string(), zombie })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_listed_with_its_group_and_name() {
        let me = processes().into_iter().find(|p| p.pid == std::process::id() as i32).expect("listed");
        assert_eq!(me.pgid, nix::unistd::getpgrp().as_raw());
        assert_eq!(me.ppid, nix::unistd::getppid().as_raw());
        assert!(!me.zombie && !me.name.is_empty());
        assert!(group_members(me.pgid).iter().any(|p| p.pid == me.pid));
    }
}
