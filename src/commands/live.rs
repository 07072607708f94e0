//! Live lines on a terminal: a block of rows, one per instance, redrawn in place as its state
//! changes, with the other lines printed above the block; when stdout is not a terminal, plain
//! lines, each once, as they come.

use std::io::{IsTerminal, Write};

/// Erases the block drawn last and moves to its first line.
fn erase(lines: usize) -> String {
    match lines {
        0 => String::new(),
        n => format!("\x1b[{n}A\x1b[J"),
    }
}

pub struct Live {
    terminal: bool,
    /// Each row's key (`tcp.1 13114`: the name and pid) and its text, in order of arrival.
    rows: Vec<(String, String)>,
    /// Rows on the screen now.
    drawn: usize,
}

impl Default for Live {
    fn default() -> Live {
        Live::new()
    }
}

impl Live {
    pub fn new() -> Live {
        Live { terminal: std::io::stdout().is_terminal(), rows: Vec::new(), drawn: 0 }
    }

    pub fn is_terminal(&self) -> bool {
        self.terminal
    }

    /// A progress line: an instance's updates its row; any other is printed above the block.
    pub fn line(&mut self, text: &str) {
        match instance_key(text) {
            Some(key) if self.terminal => self.row(key, text),
            _ => self.scroll(text),
        }
    }

    /// A closing line, printed below the block, which stays as it is.
    pub fn end(&mut self, text: &str) {
        crate::commands::out!("{text}\n");
        self.drawn = 0;
        self.rows.clear();
    }

    /// Sets the row of `key` (added at the end if new) and redraws the block.
    pub fn row(&mut self, key: String, text: &str) {
        match self.rows.iter_mut().find(|(k, _)| *k == key) {
            Some(row) => row.1 = text.to_string(),
            None => self.rows.push((key, text.to_string())),
        }
        self.draw(None);
    }

    /// Replaces every row at once (a table that refreshes).
    pub fn rows(&mut self, rows: Vec<(String, String)>) {
        self.rows = rows;
        self.draw(None);
    }

    fn scroll(&mut self, text: &str) {
        match self.terminal {
            true => self.draw(Some(text)),
            false => crate::commands::out!("{text}\n"),
        }
    }

    /// Erases the block, prints `above` if any, then the block again (off a terminal: prints
    /// them, the block followed by an empty line).
    fn draw(&mut self, above: Option<&str>) {
        let mut screen = match self.terminal {
            true => erase(self.drawn),
            false => String::new(),
        };
        if let Some(text) = above {
            screen.push_str(text);
            screen.push('\n');
        }
        for (_, text) in &self.rows {
            screen.push_str(text);
            screen.push('\n');
        }
        self.drawn = self.rows.len();
        if !self.terminal && !self.rows.is_empty() {
            screen.push('\n');
        }
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(screen.as_bytes()).and_then(|()| stdout.flush());
    }
}

/// The instance a progress line is about, with its pid when it names one (`tcp.1 13114`): old
/// and new instances share a name during a rollout.
fn instance_key(text: &str) -> Option<String> {
    let text = text.strip_prefix("SIGTERM ").unwrap_or(text);
    let name = text.split(' ').next()?;
    let (kind, number) = name.rsplit_once('.')?;
    let named = !kind.is_empty() && !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit());
    if !named {
        return None;
    }
    let pid = text.split("pid ").nth(1).map(|rest| rest.chars().take_while(char::is_ascii_digit).collect::<String>());
    Some(match pid {
        Some(pid) if !pid.is_empty() => format!("{name} {pid}"),
        _ => name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::instance_key;

    #[test]
    fn progress_lines_are_keyed_by_instance_and_pid() {
        assert_eq!(instance_key("tcp.1 replacement starting (pid 13114, port 5001)").as_deref(), Some("tcp.1 13114"));
        assert_eq!(instance_key("tcp.1 (pid 13114) healthy").as_deref(), Some("tcp.1 13114"));
        assert_eq!(instance_key("SIGTERM tcp.1 (pid 12912, 0 open connections)").as_deref(), Some("tcp.1 12912"));
        assert_eq!(instance_key("tcp.2 starting on port 5101").as_deref(), Some("tcp.2"));
        assert_eq!(instance_key("routing switched: new connections go to the replacements"), None);
        assert_eq!(instance_key("deploy plan:"), None);
        assert_eq!(instance_key("ok: restart of tcp done"), None);
    }
}
