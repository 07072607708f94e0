//! Env files (dotenvy's iterator API, never touching procgate's own environment) and the
//! environment each instance gets.
//!
//! Precedence, lowest first: procgate's own environment (inherited, so `PATH` finds the app's
//! tools), the env files in the order given (later files win), then the platform's variables.

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
    #[error("{path}: cannot read the env file: {reason}; check the path given to -e/--env")]
    Unreadable { path: String, reason: String },
    #[error(
        "{path}:{line}: cannot parse `{text}`; write KEY=value (quote values with spaces or `#`, close every quote)"
    )]
    Parse { path: String, line: usize, text: String },
}

/// Reads the env files in order into one map; later files override earlier ones.
pub fn load(files: &[EnvFile]) -> Result<EnvMap, EnvError> {
    let mut env = EnvMap::new();
    for file in files {
        match std::fs::read_to_string(&file.path) {
            Ok(text) => env.extend(parse(&file.path, &text)?),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && !file.required => {}
            Err(err) => {
                let path = file.path.display().to_string();
                return Err(EnvError::Unreadable { path, reason: err.to_string() });
            }
        }
    }
    Ok(env)
}

/// Parses env file text with dotenvy's dialect (quotes, `export`, multi-line values, comments).
pub fn parse(path: &Path, text: &str) -> Result<EnvMap, EnvError> {
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut env = EnvMap::new();
    for item in dotenvy::from_read_iter(body.as_bytes()) {
        match item {
            Ok((key, value)) => {
                env.insert(key, value);
            }
            Err(dotenvy::Error::LineParse(bad, _)) => {
                let first = bad.lines().next().unwrap_or_default().to_string();
                let line = line_of(body, &first);
                return Err(EnvError::Parse { path: path.display().to_string(), line, text: first });
            }
            Err(err) => {
                let path = path.display().to_string();
                return Err(EnvError::Unreadable { path, reason: err.to_string() });
            }
        }
    }
    Ok(env)
}

/// The 1-based line where `needle` (the first line of a rejected entry) starts.
fn line_of(text: &str, needle: &str) -> usize {
    let needle = needle.trim_end_matches('\r');
    text.lines().position(|line| line.trim_end_matches('\r') == needle).map_or(1, |i| i + 1)
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
        set("PORT", port.to_string());
        set("RUPPELLS_SOCKETS_LOCAL_PORT", port.to_string());
    }
    env
}

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
