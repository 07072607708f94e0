//! Whether systemd's `EnvironmentFile=` reads an env file as procgate does. procgate reads
//! dotenv's dialect (`export`, `$VAR` and `${VAR}` substitution, comments after a value);
//! systemd reads its own (src/basic/env-file.c): none of those, so `export A=1` is no `A` and
//! `B=$A` is the text `$A`. The units refer to the files themselves, so a file is checked
//! against systemd's reading, ported here, and a value that would differ is an error.

use super::ExportError;
use crate::env::{EnvMap, EnvValues};

/// The first value of `files` that systemd would read otherwise, as an error naming it.
pub fn check(files: &[EnvValues]) -> Result<(), ExportError> {
    for file in files {
        let text = std::fs::read_to_string(&file.path).unwrap_or_default();
        let systemd = read(&text);
        for (key, value) in &file.values {
            let theirs = systemd.get(key);
            if theirs != Some(value) {
                let line = text.lines().position(|l| defines(l, key)).map_or(1, |index| index + 1);
                let read_as = theirs.map_or("no such variable".to_string(), |v| format!("{v:?}"));
                return Err(ExportError::Unsupported(format!(
                    "{}:{line}: systemd's EnvironmentFile= reads `{key}` as {read_as}, procgate as {value:?} \
                     (systemd has no `export`, no `$VAR` substitution, no comment after a value); write it \
                     as plain KEY=\"value\"",
                    file.path.display()
                )));
            }
        }
    }
    Ok(())
}

/// Whether `line` is where `key` is set (`KEY=`, `export KEY =`).
fn defines(line: &str, key: &str) -> bool {
    let line = line.trim_start();
    let line = line.strip_prefix("export ").map_or(line, str::trim_start);
    line.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('='))
}

/// The variables systemd reads from an env file's text, later ones winning: a port of
/// `parse_env_file_internal` (systemd 252).
fn read(text: &str) -> EnvMap {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        PreKey,
        Key,
        PreValue,
        Value,
        ValueEscape,
        SingleQuoted,
        DoubleQuoted,
        DoubleQuotedEscape,
        Comment,
        CommentEscape,
    }
    const NEEDS_ESCAPE: &str = "\"\\`$";
    let (mut env, mut state) = (EnvMap::new(), State::PreKey);
    let (mut key, mut value) = (String::new(), String::new());
    // Where trailing white space begins in the key and in an unquoted value.
    let (mut key_space, mut value_space): (Option<usize>, Option<usize>) = (None, None);
    let mut push = |key: &mut String, value: &mut String, key_space: Option<usize>| {
        key.truncate(key_space.unwrap_or(key.len()));
        env.insert(std::mem::take(key), std::mem::take(value));
    };
    for c in text.chars() {
        let newline = c == '\n' || c == '\r';
        let space = c == ' ' || c == '\t' || newline;
        state = match state {
            State::PreKey if c == '#' || c == ';' => State::Comment,
            State::PreKey if space => State::PreKey,
            State::PreKey => {
                key_space = None;
                key.push(c);
                State::Key
            }
            State::Key if newline => {
                key.clear();
                State::PreKey
            }
            State::Key if c == '=' => {
                value_space = None;
                State::PreValue
            }
            State::Key => {
                push_tracking_space(&mut key, c, space, &mut key_space);
                State::Key
            }
            State::PreValue if newline => {
                push(&mut key, &mut value, key_space);
                State::PreKey
            }
            State::PreValue if c == '\'' => State::SingleQuoted,
            State::PreValue if c == '"' => State::DoubleQuoted,
            State::PreValue if c == '\\' => State::ValueEscape,
            State::PreValue if space => State::PreValue,
            State::PreValue => {
                value.push(c);
                State::Value
            }
            State::Value if newline => {
                value.truncate(value_space.unwrap_or(value.len()));
                push(&mut key, &mut value, key_space);
                State::PreKey
            }
            State::Value if c == '\\' => {
                value_space = None;
                State::ValueEscape
            }
            State::Value => {
                push_tracking_space(&mut value, c, space, &mut value_space);
                State::Value
            }
            State::ValueEscape => {
                if !newline {
                    value.push(c);
                }
                State::Value
            }
            State::SingleQuoted if c == '\'' => State::PreValue,
            State::SingleQuoted => {
                value.push(c);
                State::SingleQuoted
            }
            State::DoubleQuoted if c == '"' => State::PreValue,
            State::DoubleQuoted if c == '\\' => State::DoubleQuotedEscape,
            State::DoubleQuoted => {
                value.push(c);
                State::DoubleQuoted
            }
            State::DoubleQuotedEscape => {
                if !NEEDS_ESCAPE.contains(c) && c != '\n' {
                    value.push('\\');
                }
                if c != '\n' {
                    value.push(c);
                }
                State::DoubleQuoted
            }
            State::Comment if c == '\\' => State::CommentEscape,
            State::Comment if newline => State::PreKey,
            State::Comment => State::Comment,
            State::CommentEscape => State::Comment,
        };
    }
    match state {
        State::PreKey | State::Key | State::Comment | State::CommentEscape => {}
        State::Value => {
            value.truncate(value_space.unwrap_or(value.len()));
            push(&mut key, &mut value, key_space);
        }
        _ => push(&mut key, &mut value, key_space),
    }
    env
}

/// Adds `c` to `text`, keeping in `trailing` where its run of trailing white space begins.
fn push_tracking_space(text: &mut String, c: char, space: bool, trailing: &mut Option<usize>) {
    match (space, *trailing) {
        (false, _) => *trailing = None,
        (true, None) => *trailing = Some(text.len()),
        (true, Some(_)) => {}
    }
    text.push(c);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn values(text: &str) -> EnvMap {
        crate::env::parse(Path::new(".env"), text).unwrap()
    }

    #[test]
    fn plain_and_quoted_values_read_the_same_in_both_dialects() {
        let text = "# comment\nA=1\nC='single # quoted'\nD=\"double \\\"q\\\" $$ no\"\nURL=http://x/?a=1&b=2\n";
        let ours = values("# comment\nA=1\nC='single # quoted'\nURL=http://x/?a=1&b=2\n");
        let theirs = read(text);
        for (key, value) in &ours {
            assert_eq!(theirs.get(key), Some(value), "{key}");
        }
        assert_eq!(theirs["D"], "double \"q\" $$ no");
    }

    #[test]
    fn export_substitution_and_trailing_comments_differ() {
        let theirs = read("export A=1\nB=$A\nC=value # note\n");
        assert_eq!(theirs.get("A"), None);
        assert_eq!(theirs["export A"], "1");
        assert_eq!(theirs["B"], "$A");
        assert_eq!(theirs["C"], "value # note");
        let ours = values("export A=1\nB=$A\nC=value # note\n");
        assert_eq!((ours["A"].as_str(), ours["B"].as_str(), ours["C"].as_str()), ("1", "1", "value"));
    }

    #[test]
    fn the_error_names_the_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.env");
        let text = "A=1\nexport B=2\n";
        std::fs::write(&path, text).unwrap();
        let file = EnvValues { path: path.clone(), values: values(text) };
        let err = check(&[file]).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}:2: systemd's EnvironmentFile= reads `B` as no such variable", path.display())),
            "{err}"
        );
        let plain = EnvValues { path: path.clone(), values: values("A=1\n") };
        std::fs::write(&path, "A=1\n").unwrap();
        assert!(check(&[plain]).is_ok());
    }
}
