//! Env files (dotenvy's iterator API, never touching procgate's own environment) and the
//! environment each instance gets.
//!
//! Precedence, lowest first: procgate's own environment (inherited, so `PATH` finds the app's
//! tools), the env files in the order given (later files win), then the platform's variables.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Variables read from env files, by name.
pub type EnvMap = BTreeMap<String, String>;

/// An env file to read; a missing default `.env` is fine, a missing named file is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFile {
    pub path: PathBuf,
    pub required: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("{path}: cannot read the env file: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path}:{line}: `{key}` and its value have {bytes} bytes, more than the {} Linux takes as one environment entry; put the value in a file and give its path", crate::procfile::MAX_ARGUMENT)]
    EntryTooLong { path: String, line: usize, key: String, bytes: usize },
    #[error(
        "{path}:{line}: cannot parse `{text}`; write KEY=value (quote values with spaces or `#`, close every quote)"
    )]
    Parse { path: String, line: usize, text: String },
    #[error("{path}:{line}: cannot parse `{text}`: dotenv takes a `$NAME` just before a closing `\"` for an open quote; write `${{NAME}}` (or `\\$` for a dollar sign)")]
    DollarBeforeQuote { path: String, line: usize, text: String },
    #[error("{path}:{line}: the value of `{key}` holds a NUL byte, which no environment variable can; remove it")]
    NulInValue { path: String, line: usize, key: String },
}

/// Reads the env files in order into one map; later files override earlier ones.
pub fn load(files: &[EnvFile]) -> Result<EnvMap, EnvError> {
    Ok(merged(&load_each(files)?))
}

/// One env file read: its path and its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvValues {
    pub path: PathBuf,
    pub values: EnvMap,
}

/// Reads the env files in order, each on its own (a missing optional file is left out).
pub fn load_each(files: &[EnvFile]) -> Result<Vec<EnvValues>, EnvError> {
    let mut read = Vec::new();
    for file in files {
        match crate::text_file::read(&file.path) {
            Ok(text) => read.push(EnvValues { path: file.path.clone(), values: parse(&file.path, &text)? }),
            Err(err) if err.is_not_found() && !file.required => {}
            Err(err) => {
                let path = file.path.display().to_string();
                let reason = match err.is_not_found() {
                    true => format!("{err}; check the path given to -e/--env"),
                    false => err.to_string(),
                };
                return Err(EnvError::Unreadable { path, reason });
            }
        }
    }
    Ok(read)
}

/// The files' values in one map; later files override earlier ones.
pub fn merged(files: &[EnvValues]) -> EnvMap {
    files.iter().flat_map(|file| file.values.clone()).collect()
}

/// Parses env file text with dotenvy's dialect (quotes, `export`, multi-line values, comments).
pub fn parse(path: &Path, text: &str) -> Result<EnvMap, EnvError> {
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = Cell::new(0);
    let reader = LineByLine { rest: body.as_bytes(), lines: &lines, at_start: true };
    let shown = || path.display().to_string();
    let mut env = EnvMap::new();
    for item in dotenvy::from_read_iter(reader) {
        match item {
            Ok((key, value)) if value.contains('\0') => {
                // The entry ends on the last line read; its NUL is on that line or just above.
                let read = body.lines().take(lines.get()).enumerate();
                let line = read.filter(|(_, l)| l.contains('\0')).last().map_or(lines.get(), |(i, _)| i + 1);
                return Err(EnvError::NulInValue { path: shown(), line, key });
            }
            Ok((key, value)) if key.len() + 1 + value.len() > crate::procfile::MAX_ARGUMENT => {
                let (line, bytes) = (lines.get(), key.len() + 1 + value.len());
                return Err(EnvError::EntryTooLong { path: shown(), line, key, bytes });
            }
            Ok((key, value)) => {
                env.insert(key, value);
            }
            Err(dotenvy::Error::LineParse(bad, _)) => {
                // The rejected entry (one line, or more for an open quote) ends on the last line read.
                let spans = bad.matches('\n').count() + usize::from(!bad.ends_with('\n'));
                let line = (lines.get() + 1).saturating_sub(spans).max(1);
                // dotenvy gives the value alone for some errors: show the whole line.
                let text = body.lines().nth(line - 1).unwrap_or_default().trim_end_matches('\r').to_string();
                if dollar_before_quote(&bad) {
                    return Err(EnvError::DollarBeforeQuote { path: shown(), line, text });
                }
                return Err(EnvError::Parse { path: shown(), line, text });
            }
            Err(err) => return Err(EnvError::Unreadable { path: shown(), reason: err.to_string() }),
        }
    }
    Ok(env)
}

/// True when `entry` has `$` and a name (maybe empty) just before a `"`, which dotenvy 0.15 reads
/// as a quote left open (`A="$HOME"`), while `"${HOME}"` is fine.
fn dollar_before_quote(entry: &str) -> bool {
    let unescaped = |at: usize| !entry[..at].ends_with('\\');
    let before_quote = |at: usize| entry[at + 1..].trim_start_matches(char::is_alphanumeric).starts_with('"');
    entry.match_indices('$').any(|(at, _)| unescaped(at) && before_quote(at))
}

/// Gives dotenvy's reader one line of `rest` per read, counting them in `lines`: when dotenvy
/// yields an entry or an error, it has read exactly the lines up to that entry's last.
struct LineByLine<'a> {
    rest: &'a [u8],
    lines: &'a Cell<usize>,
    at_start: bool,
}

impl std::io::Read for LineByLine<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let end = self.rest.iter().position(|&b| b == b'\n').map_or(self.rest.len(), |i| i + 1);
        let given = end.min(out.len());
        if given > 0 && self.at_start {
            self.lines.set(self.lines.get() + 1);
        }
        out[..given].copy_from_slice(&self.rest[..given]);
        self.rest = &self.rest[given..];
        self.at_start = given == end;
        Ok(given)
    }
}

/// What the platform gives one instance on top of the env files.
#[derive(Debug, Clone)]
pub struct PlatformVars {
    /// `web.1`, exported as `PS` and `DYNO`.
    pub dyno: String,
    /// The instance's `PORT`; `None` for one-off and release processes.
    pub port: Option<u16>,
    /// `tcp://HOST:PORT` of the TCP gateway.
    pub tcp_url: String,
    /// `v1`/`v2` when the gateway writes a PROXY header before the client's bytes.
    pub proxy_protocol: Option<&'static str>,
}

/// The variables an instance gets: env files' values, then the platform's, which win.
pub fn instance_env(files: &EnvMap, platform: &PlatformVars) -> EnvMap {
    let mut env = files.clone();
    let mut set = |key: &str, value: String| env.insert(key.to_string(), value);
    set("PS", platform.dyno.clone());
    set("DYNO", platform.dyno.clone());
    set("TCP_URL", platform.tcp_url.clone());
    set("RUPPELLS_SOCKETS_FRONTEND_URI", platform.tcp_url.clone());
    if let Some(version) = platform.proxy_protocol {
        set("PROXY_PROTOCOL", version.to_string());
    }
    if let Some(port) = platform.port {
        for key in PORT_VARIABLES {
            set(key, port.to_string());
        }
    }
    env
}

/// The variables that hold an instance's port.
pub const PORT_VARIABLES: [&str; 2] = ["PORT", "RUPPELLS_SOCKETS_LOCAL_PORT"];

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> EnvMap {
        parse(Path::new(".env"), text).unwrap()
    }

    fn value(text: &str, key: &str) -> String {
        parsed(text).get(key).cloned().unwrap_or_else(|| panic!("{key} missing in {text:?}"))
    }

    #[test]
    fn quotes_as_honcho_and_foreman_test_them() {
        assert_eq!(value("FOO='bar'", "FOO"), "bar");
        assert_eq!(value("FOO=\"bar\"", "FOO"), "bar");
        assert_eq!(value("FOO=\"it's\"", "FOO"), "it's");
        assert_eq!(value("FOO='\"quoted\"'", "FOO"), "\"quoted\"");
        assert_eq!(value("FOO=\"escaped\\\"quote\"", "FOO"), "escaped\"quote");
        assert_eq!(value("FOO=\"bar\\nbaz\"", "FOO"), "bar\nbaz");
        assert_eq!(value("FOO='foo\\$bar'", "FOO"), "foo\\$bar");
    }

    #[test]
    fn urls_symbols_unicode_and_base64_survive() {
        assert_eq!(value("URL=http://example.com/?a=1&b=2", "URL"), "http://example.com/?a=1&b=2");
        assert_eq!(value("AT=foo@bar", "AT"), "foo@bar");
        assert_eq!(value("PUN='~pun|u@|0n$='", "PUN"), "~pun|u@|0n$=");
        assert_eq!(value("UNI=äöü✓", "UNI"), "äöü✓");
        assert_eq!(value("B64=YmFzZTY0===", "B64"), "YmFzZTY0===");
        assert_eq!(value("HASH=\"quoted#hash\"", "HASH"), "quoted#hash");
        assert_eq!(value("STRIP=stripped #comment", "STRIP"), "stripped");
    }

    #[test]
    fn export_comments_crlf_bom_and_multiline_values() {
        let env = parsed("\u{feff}# c\r\nexport A=1\r\n\r\nB=\"line1\nline2\"\nC=$A-x\n");
        assert_eq!(env.get("A").map(String::as_str), Some("1"));
        assert_eq!(env.get("B").map(String::as_str), Some("line1\nline2"));
        assert_eq!(env.get("C").map(String::as_str), Some("1-x"));
        assert_eq!(env.len(), 3);
    }

    #[test]
    fn parse_errors_name_the_file_and_line() {
        let err = parse(Path::new("app/.env"), "A=1\nB=2\nNOT A VALID LINE\n").unwrap_err();
        assert_eq!(err, EnvError::Parse { path: "app/.env".into(), line: 3, text: "NOT A VALID LINE".into() });
        let err = parse(Path::new(".env"), "A=1\nB=\"unclosed\nC=3\n").unwrap_err();
        assert!(matches!(err, EnvError::Parse { line: 2, .. }), "{err}");
        assert!(parse(Path::new(".env"), "ÄKEY=1\n").is_err(), "unicode keys are rejected");
    }

    #[test]
    fn parse_errors_name_the_line_even_with_a_comment_or_a_repeated_text() {
        // Both used to say line 1: the line was searched by its text, which dotenvy had cut at
        // the `#` or which an earlier line also had.
        let err = parse(Path::new(".env"), "A=1\nB=2\n[ # note\n").unwrap_err();
        assert_eq!(err, EnvError::Parse { path: ".env".into(), line: 3, text: "[ # note".into() });
        let err = parse(Path::new(".env"), "A=\"\nBAD LINE\n\"\nBAD LINE\n").unwrap_err();
        assert!(matches!(err, EnvError::Parse { line: 4, .. }), "{err}");
        let err = parse(Path::new(".env"), "A=\"1\n2\"\n\nC=\"open\nD=4\n").unwrap_err();
        assert!(matches!(err, EnvError::Parse { line: 4, .. }), "{err}");
    }

    #[test]
    fn a_bad_value_shows_its_whole_line() {
        // dotenvy's error holds the value alone (`\\a`); it was shown as if it were the line.
        let err = parse(Path::new(".env"), "A=1\nB=\\a\n").unwrap_err();
        assert_eq!(err, EnvError::Parse { path: ".env".into(), line: 2, text: "B=\\a".into() });
    }

    #[test]
    fn a_dollar_name_before_a_closing_quote_gets_its_own_hint() {
        // dotenvy 0.15 rejects it as a quote left open, which the general hint did not explain.
        let err = parse(Path::new(".env"), "A=1\nB=\"$A/bin:$PATH\"\n").unwrap_err();
        assert_eq!(
            err,
            EnvError::DollarBeforeQuote { path: ".env".into(), line: 2, text: "B=\"$A/bin:$PATH\"".into() }
        );
        assert!(err.to_string().ends_with("write `${NAME}` (or `\\$` for a dollar sign)"), "{err}");
        assert_eq!(value("A=1\nB=\"${A}/bin\"\n", "B"), "1/bin");
    }

    #[test]
    fn a_nul_byte_in_a_value_is_an_error() {
        let err = parse(Path::new(".env"), "A=1\nB=x\0y\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            ".env:2: the value of `B` holds a NUL byte, which no environment variable can; remove it"
        );
    }

    #[test]
    fn later_files_win_and_only_named_files_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.env"), dir.path().join("b.env"));
        std::fs::write(&a, "X=a\nY=a\n").unwrap();
        std::fs::write(&b, "Y=b\n").unwrap();
        let missing = EnvFile { path: dir.path().join(".env"), required: false };
        let files = [missing, EnvFile { path: a, required: true }, EnvFile { path: b, required: true }];
        let env = load(&files).unwrap();
        assert_eq!((env["X"].as_str(), env["Y"].as_str()), ("a", "b"));
        let named = EnvFile { path: dir.path().join("nope.env"), required: true };
        assert!(matches!(load(&[named]), Err(EnvError::Unreadable { .. })));
    }

    #[test]
    fn platform_variables_win_over_the_files() {
        let files = parsed("PORT=1\nDYNO=x\nKEEP=1\n");
        let platform = PlatformVars {
            dyno: "tcp.2".into(),
            port: Some(5101),
            tcp_url: "tcp://127.0.0.1:20003".into(),
            proxy_protocol: Some("v2"),
        };
        let env = instance_env(&files, &platform);
        assert_eq!(env["PORT"], "5101");
        assert_eq!(env["DYNO"], "tcp.2");
        assert_eq!(env["PS"], "tcp.2");
        assert_eq!(env["KEEP"], "1");
        assert_eq!(env["TCP_URL"], "tcp://127.0.0.1:20003");
        assert_eq!(env["RUPPELLS_SOCKETS_LOCAL_PORT"], "5101");
        assert_eq!(env["RUPPELLS_SOCKETS_FRONTEND_URI"], "tcp://127.0.0.1:20003");
        assert_eq!(env["PROXY_PROTOCOL"], "v2");
    }
}
