//! The new binary's check before an upgrade: `BINARY __upgrade-check` prints the protocols it
//! speaks (`procgate-upgrade keeper=1 handover=1`); procgate hands over only to a binary that
//! speaks its own, and says why not otherwise.

use super::HANDOVER_VERSION;
use crate::process::protocol::VERSION as KEEPER_VERSION;
use std::path::Path;
use std::time::Duration;

/// The hidden subcommand that answers the check.
pub const SUBCOMMAND: &str = "__upgrade-check";
/// The first word of the answer.
const MARK: &str = "procgate-upgrade";
/// How long the new binary has to answer.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The most of a refused binary's output quoted in the reason.
const QUOTED: usize = 200;

/// The protocols a binary speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocols {
    pub keeper: u32,
    pub handover: u32,
}

/// This binary's protocols.
pub const OURS: Protocols = Protocols { keeper: KEEPER_VERSION, handover: HANDOVER_VERSION };

impl std::fmt::Display for Protocols {
    /// The answer to `__upgrade-check`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{MARK} keeper={} handover={}", self.keeper, self.handover)
    }
}

/// Why an upgrade to a binary is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{binary}: cannot run it: {reason}")]
    CannotRun { binary: String, reason: String },
    #[error("{binary} {SUBCOMMAND} gave no answer within {} s", TIMEOUT.as_secs())]
    TimedOut { binary: String },
    #[error("{binary} is not a procgate that can take over: `{SUBCOMMAND}` {how}{}", quoted(.output))]
    NotProcgate { binary: String, how: String, output: String },
    #[error("{binary} speaks keeper protocol {theirs}, this procgate {ours}: it could not adopt the running keepers")]
    Keeper { binary: String, theirs: u32, ours: u32 },
    #[error("{binary} speaks handover protocol {theirs}, this procgate {ours}: it could not take the state over")]
    Handover { binary: String, theirs: u32, ours: u32 },
}

fn quoted(output: &str) -> String {
    match output.trim() {
        "" => String::new(),
        text => format!(": {:?}", text.chars().take(QUOTED).collect::<String>()),
    }
}

/// Runs `binary __upgrade-check`; its protocols if they are this binary's.
pub async fn check(binary: &Path) -> Result<Protocols, Refusal> {
    let shown = binary.display().to_string();
    let mut command = tokio::process::Command::new(binary);
    command.arg(SUBCOMMAND).stdin(std::process::Stdio::null()).kill_on_drop(true);
    let run = command.output();
    let output = match tokio::time::timeout(TIMEOUT, run).await {
        Err(_) => return Err(Refusal::TimedOut { binary: shown }),
        Ok(Err(err)) => return Err(Refusal::CannotRun { binary: shown, reason: err.to_string() }),
        Ok(Ok(output)) => output,
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let how = format!("failed ({})", output.status);
        return Err(Refusal::NotProcgate { binary: shown, how, output: stderr });
    }
    let theirs = parse(&stdout).ok_or_else(|| Refusal::NotProcgate {
        binary: shown.clone(),
        how: "did not answer as procgate does".to_string(),
        output: stdout,
    })?;
    match theirs {
        Protocols { keeper, .. } if keeper != OURS.keeper => {
            Err(Refusal::Keeper { binary: shown, theirs: keeper, ours: OURS.keeper })
        }
        Protocols { handover, .. } if handover != OURS.handover => {
            Err(Refusal::Handover { binary: shown, theirs: handover, ours: OURS.handover })
        }
        theirs => Ok(theirs),
    }
}

/// The protocols in an answer (its first line), if it is one.
fn parse(output: &str) -> Option<Protocols> {
    let mut words = output.lines().next()?.split_whitespace();
    if words.next()? != MARK {
        return None;
    }
    let (mut keeper, mut handover) = (None, None);
    for word in words {
        match word.split_once('=')? {
            ("keeper", n) => keeper = Some(n.parse().ok()?),
            ("handover", n) => handover = Some(n.parse().ok()?),
            // A later binary may say more.
            _ => {}
        }
    }
    Some(Protocols { keeper: keeper?, handover: handover? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_answer_reads_back_as_ours() {
        assert_eq!(parse(&format!("{OURS}\n")), Some(OURS));
        assert_eq!(parse("procgate-upgrade handover=3 keeper=2 zstd=1"), Some(Protocols { keeper: 2, handover: 3 }));
    }

    #[test]
    fn other_answers_are_not_procgate() {
        for output in ["", "\n", "procgate 0.1.0", "procgate-upgrade keeper=1", "procgate-upgrade keeper=x handover=1"]
        {
            assert_eq!(parse(output), None, "{output:?}");
        }
    }

    #[tokio::test]
    async fn a_binary_that_is_not_procgate_is_refused_with_the_reason() {
        let not_there = check(Path::new("/nonexistent/procgate")).await.unwrap_err();
        assert!(matches!(not_there, Refusal::CannotRun { .. }), "{not_there}");
        let silent = check(Path::new("/bin/true")).await.unwrap_err();
        assert!(silent.to_string().contains("did not answer as procgate does"), "{silent}");
        let failing = check(Path::new("/bin/false")).await.unwrap_err();
        assert!(failing.to_string().contains("failed (exit status: 1)"), "{failing}");
    }
}
