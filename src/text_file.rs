//! Reading an input file (Procfile, env file, `procgate.toml`) whole, with a bound: only a
//! regular file (a FIFO would block `procgate start` for ever, `/dev/zero` fill the memory), at
//! most [`MAX_INPUT`] bytes, and UTF-8, with the line of the first byte that is not.

use std::io::Read;
use std::path::Path;

/// The most bytes an input file may have; Procfiles and env files are kilobytes.
pub const MAX_INPUT: u64 = 16 * 1024 * 1024;

/// Why an input file could not be read.
#[derive(Debug)]
pub enum TextFileError {
    Io(std::io::Error),
    /// Not a regular file: what it is (`a FIFO`, `a device`, `a directory`, `a socket`).
    NotRegular(&'static str),
    TooLarge(u64),
    /// The line holding the first byte that is not UTF-8.
    NotUtf8 {
        line: usize,
    },
}

impl TextFileError {
    /// The file is not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, TextFileError::Io(err) if err.kind() == std::io::ErrorKind::NotFound)
    }
}

impl std::fmt::Display for TextFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TextFileError::Io(err) => write!(f, "{err}"),
            TextFileError::NotRegular(what) => write!(f, "it is {what}, not a regular file; give the path of a file"),
            TextFileError::TooLarge(size) => {
                write!(f, "it has {size} bytes, more than the {} MiB an input file may have", MAX_INPUT >> 20)
            }
            TextFileError::NotUtf8 { line } => write!(f, "line {line} is not valid UTF-8; save the file as UTF-8"),
        }
    }
}

/// The text of the file at `path`.
pub fn read(path: &Path) -> Result<String, TextFileError> {
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking, so opening a FIFO does not wait for a writer (regular files ignore it).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(TextFileError::Io)?;
    let kind = file.metadata().map_err(TextFileError::Io)?.file_type();
    if !kind.is_file() {
        return Err(TextFileError::NotRegular(describe(kind)));
    }
    let mut bytes = Vec::new();
    file.take(MAX_INPUT + 1).read_to_end(&mut bytes).map_err(TextFileError::Io)?;
    if bytes.len() as u64 > MAX_INPUT {
        let size = std::fs::metadata(path).map_or(bytes.len() as u64, |m| m.len());
        return Err(TextFileError::TooLarge(size));
    }
    String::from_utf8(bytes).map_err(|err| {
        let valid = &err.as_bytes()[..err.utf8_error().valid_up_to()];
        TextFileError::NotUtf8 { line: valid.iter().filter(|b| **b == b'\n').count() + 1 }
    })
}

fn describe(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    match kind {
        kind if kind.is_dir() => "a directory",
        kind if kind.is_fifo() => "a FIFO",
        kind if kind.is_socket() => "a socket",
        kind if kind.is_char_device() || kind.is_block_device() => "a device",
        _ => "not a file",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_a_device_and_a_directory_are_refused_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("Procfile");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // No writer ever comes: a plain open would wait for one for ever.
        assert_eq!(read(&fifo).unwrap_err().to_string(), "it is a FIFO, not a regular file; give the path of a file");
        assert!(matches!(read(Path::new("/dev/zero")), Err(TextFileError::NotRegular("a device"))));
        assert!(matches!(read(dir.path()), Err(TextFileError::NotRegular("a directory"))));
        assert!(read(&dir.path().join("none")).unwrap_err().is_not_found());
    }

    #[test]
    fn invalid_utf8_names_its_line_and_a_file_too_large_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Procfile");
        std::fs::write(&path, b"web: a\nworker: \xff\n").unwrap();
        assert_eq!(read(&path).unwrap_err().to_string(), "line 2 is not valid UTF-8; save the file as UTF-8");
        std::fs::File::create(&path).unwrap().set_len(MAX_INPUT + 1).unwrap();
        assert!(matches!(read(&path), Err(TextFileError::TooLarge(size)) if size == MAX_INPUT + 1));
    }
}
