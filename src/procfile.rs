//! The Procfile parser: ordered `name: command` lines, strict, with line numbers in every error.
//!
//! We do not use the `procfile` crate: it loses the order, drops names with dashes and picks a
//! random winner among duplicates. Rules: names are `[A-Za-z0-9_-]+`; blank lines and `#`
//! comments are skipped; `\r\n` and a leading byte-order mark are accepted; spaces around the name
//! and the command are trimmed; the command is kept as one string for `bash -c` (see
//! `process::shell`), so it may not hold a NUL byte.

use std::path::{Path, PathBuf};

/// The type name that runs once before the others, as Heroku's and Dokku's release phase.
pub const RELEASE: &str = "release";

/// The process type the TCP gateway serves by default, as Scalingo's TCP add-on.
pub const TCP_TYPE: &str = "tcp";

/// The process type the HTTP router serves, as Heroku's router.
pub const WEB_TYPE: &str = "web";

/// One process type of the Procfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessType {
    pub name: String,
    pub command: String,
    /// 1-based line of the Procfile it came from.
    pub line: usize,
}

/// A parsed Procfile: its types in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Procfile {
    pub path: PathBuf,
    pub types: Vec<ProcessType>,
}

/// The longest string Linux takes as one argument or environment entry (`MAX_ARG_STRLEN`, 128
/// KiB with its NUL): a command runs as one argument of `bash -c`.
pub const MAX_ARGUMENT: usize = 131_071;

/// Why a Procfile was rejected; each message names the file and line and says how to fix it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProcfileError {
    #[error("{path}: cannot read the Procfile: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path}: the Procfile defines no process type; add a line such as `web: ./server`")]
    Empty { path: String },
    #[error("{path}:{line}: process type `{name}` is already defined on line {first}; give each type one line (rename one of them)")]
    Duplicate { path: String, line: usize, name: String, first: usize },
    #[error("{path}:{line}: process type `{name}` has no command; write `{name}: <command>`")]
    NoCommand { path: String, line: usize, name: String },
    #[error("{path}:{line}: the command of `{name}` holds a NUL byte, which no command can; remove it")]
    NulInCommand { path: String, line: usize, name: String },
    #[error("{path}:{line}: a carriage return (CR) inside the line: the file has old Mac line endings or a stray CR; save it with LF (or CRLF) line endings")]
    CarriageReturn { path: String, line: usize },
    #[error("{path}:{line}: the command of `{name}` has {bytes} bytes, more than the {MAX_ARGUMENT} Linux takes as one argument; move it into a script and run that")]
    CommandTooLong { path: String, line: usize, name: String, bytes: usize },
    #[error("{path}:{line}: `{text}` is not a `name: command` line (names use letters, digits, `_` and `-`); fix it or comment it out with `#`")]
    BadLine { path: String, line: usize, text: String },
}

impl Procfile {
    /// Reads and parses the Procfile at `path`.
    pub fn load(path: &Path) -> Result<Procfile, ProcfileError> {
        let text = crate::text_file::read(path).map_err(|err| {
            let reason = match err.is_not_found() {
                true => format!("{err}; pass its path with -f/--procfile"),
                false => err.to_string(),
            };
            ProcfileError::Unreadable { path: path.display().to_string(), reason }
        })?;
        Procfile::parse(path, &text)
    }

    /// Parses Procfile text; `path` is used in errors only.
    pub fn parse(path: &Path, text: &str) -> Result<Procfile, ProcfileError> {
        let shown = path.display().to_string();
        let mut types: Vec<ProcessType> = Vec::new();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (index, raw) in text.lines().enumerate() {
            let Some(parsed) = parse_line(raw, index + 1, &shown)? else {
                continue;
            };
            if let Some(first) = types.iter().find(|t| t.name == parsed.name) {
                return Err(ProcfileError::Duplicate {
                    path: shown,
                    line: parsed.line,
                    name: parsed.name,
                    first: first.line,
                });
            }
            types.push(parsed);
        }
        if types.is_empty() {
            return Err(ProcfileError::Empty { path: shown });
        }
        Ok(Procfile { path: path.to_path_buf(), types })
    }

    /// The type called `name`, if the Procfile has it.
    pub fn get(&self, name: &str) -> Option<&ProcessType> {
        self.types.iter().find(|t| t.name == name)
    }
}

/// Parses one line: `None` for blank lines and comments.
fn parse_line(raw: &str, line: usize, path: &str) -> Result<Option<ProcessType>, ProcfileError> {
    // `lines` takes a CR off the end of a line (CRLF); one left inside would be run as part of
    // the command, and a file of CR-only endings read as one line.
    if raw.trim_end_matches('\r').contains('\r') {
        return Err(ProcfileError::CarriageReturn { path: path.to_string(), line });
    }
    let text = raw.trim();
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    let bad_line = || ProcfileError::BadLine { path: path.to_string(), line, text: text.to_string() };
    let (name, command) = text.split_once(':').ok_or_else(bad_line)?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(is_name_char) {
        return Err(bad_line());
    }
    let command = command.trim();
    if command.is_empty() {
        return Err(ProcfileError::NoCommand { path: path.to_string(), line, name: name.to_string() });
    }
    if command.contains('\0') {
        return Err(ProcfileError::NulInCommand { path: path.to_string(), line, name: name.to_string() });
    }
    if command.len() > MAX_ARGUMENT {
        let (path, name, bytes) = (path.to_string(), name.to_string(), command.len());
        return Err(ProcfileError::CommandTooLong { path, line, name, bytes });
    }
    Ok(Some(ProcessType { name: name.to_string(), command: command.to_string(), line }))
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Procfile, ProcfileError> {
        Procfile::parse(Path::new("Procfile"), text)
    }

    fn names(text: &str) -> Vec<String> {
        parse(text).unwrap().types.into_iter().map(|t| t.name).collect()
    }

    #[test]
    fn keeps_order_and_accepts_dashes_underscores_and_digits() {
        let text = "web: a\nworker-2: b\nclock_x: c\n2custom: d\ntcp: e\n";
        assert_eq!(names(text), ["web", "worker-2", "clock_x", "2custom", "tcp"]);
    }

    #[test]
    fn skips_comments_blank_lines_and_accepts_crlf_without_final_newline() {
        let text = "# header\r\n\r\n  web:  bundle exec rails s -p $PORT  \r\n   # indented\r\nworker: w";
        let procfile = parse(text).unwrap();
        assert_eq!(procfile.types[0].command, "bundle exec rails s -p $PORT");
        assert_eq!(procfile.types[0].line, 3);
        assert_eq!(procfile.types[1].command, "w");
    }

    #[test]
    fn keeps_colons_quotes_and_metacharacters_in_the_command() {
        let procfile = parse("web: echo foo: bar && sh -c \"echo 'a b'\" ${PORT}").unwrap();
        assert_eq!(procfile.types[0].command, "echo foo: bar && sh -c \"echo 'a b'\" ${PORT}");
    }

    #[test]
    fn space_before_colon_is_trimmed() {
        assert_eq!(names("web   : node web.js"), ["web"]);
    }

    #[test]
    fn duplicate_names_name_both_lines() {
        let err = parse("worker: a\nweb: b\nworker: c\n").unwrap_err();
        assert_eq!(err.to_string(), "Procfile:3: process type `worker` is already defined on line 1; give each type one line (rename one of them)");
    }

    #[test]
    fn name_without_command_is_an_error() {
        let err = parse("web:\n").unwrap_err();
        assert!(matches!(err, ProcfileError::NoCommand { line: 1, .. }), "{err}");
    }

    #[test]
    fn lines_that_are_not_name_command_are_errors() {
        for bad in ["<<<<<<< HEAD", "=======", ">>>>>>> branch", "+foo: x", ": rails", "web echo", "wé: x"] {
            let err = parse(&format!("web: a\n{bad}\n")).unwrap_err();
            assert!(matches!(err, ProcfileError::BadLine { line: 2, .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        // Was `Procfile:1: `\u{feff}web: a` is not a `name: command` line`, the mark unseen.
        assert_eq!(names("\u{feff}web: a\r\nworker: b\r\n"), ["web", "worker"]);
        assert!(matches!(parse("\u{feff}"), Err(ProcfileError::Empty { .. })));
    }

    #[test]
    fn a_nul_byte_in_a_command_is_an_error() {
        // Was accepted, and every start of the type then failed to spawn.
        let err = parse("web: a\nworker: run\0 x\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Procfile:2: the command of `worker` holds a NUL byte, which no command can; remove it"
        );
    }

    #[test]
    fn empty_procfile_is_an_error() {
        for text in ["", "\n\n", "# only a comment\n"] {
            assert!(matches!(parse(text), Err(ProcfileError::Empty { .. })));
        }
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let err = Procfile::load(Path::new("/nonexistent/Procfile")).unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent/Procfile: cannot read"), "{err}");
    }
}
