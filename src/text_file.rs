//! Reading an input file (Procfile, env file, `procgate.toml`) whole, with bounds: a regular file
//! or a pipe (`-e <(sops -d secrets.env)`), never a device (`/dev/zero` would fill the memory);
//! a pipe's writer must be done within [`PIPE_WAIT`] (a FIFO nobody writes would block `procgate
//! start` for ever); at most [`MAX_INPUT`] bytes; UTF-8, with the line of the first byte that is
//! not.

use std::io::Read;
use std::path::Path;

/// The most bytes an input file may have; Procfiles and env files are kilobytes.
pub const MAX_INPUT: u64 = 16 * 1024 * 1024;

/// How long a pipe's writer has to write all of it.
pub const PIPE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How often a pipe no writer has opened yet is looked at.
const PIPE_LOOK_AGAIN: std::time::Duration = std::time::Duration::from_millis(10);

/// Why an input file could not be read.
#[derive(Debug)]
pub enum TextFileError {
    Io(std::io::Error),
    /// Neither a regular file nor a pipe: what it is (`a device`, `a directory`, `a socket`).
    NotRegular(&'static str),
    /// A pipe whose writer did not finish within [`PIPE_WAIT`].
    PipeStalled,
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
            TextFileError::PipeStalled => write!(
                f,
                "it is a pipe, and its writer did not write all of it and close it within {}s; give a file, or write the pipe",
                PIPE_WAIT.as_secs()
            ),
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
    use std::os::unix::fs::FileTypeExt;
    let metadata = file.metadata().map_err(TextFileError::Io)?;
    let bytes = match metadata.file_type() {
        kind if kind.is_file() => {
            let mut bytes = Vec::new();
            file.take(MAX_INPUT + 1).read_to_end(&mut bytes).map_err(TextFileError::Io)?;
            bytes
        }
        kind if kind.is_fifo() => read_pipe(file)?,
        kind => return Err(TextFileError::NotRegular(describe(kind))),
    };
    if bytes.len() as u64 > MAX_INPUT {
        // A pipe has no size: what was read says how much at least.
        let size = if metadata.is_file() { metadata.len() } else { bytes.len() as u64 };
        return Err(TextFileError::TooLarge(size));
    }
    String::from_utf8(bytes).map_err(|err| {
        let valid = &err.as_bytes()[..err.utf8_error().valid_up_to()];
        TextFileError::NotUtf8 { line: valid.iter().filter(|b| **b == b'\n').count() + 1 }
    })
}

/// A pipe's bytes (at most one more than [`MAX_INPUT`]), once its writer closed it; waits for
/// a writer and its bytes [`PIPE_WAIT`] in all.
fn read_pipe(file: std::fs::File) -> Result<Vec<u8>, TextFileError> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let deadline = std::time::Instant::now() + PIPE_WAIT;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut wrote = false;
    loop {
        match (&file).read(&mut chunk) {
            // End of file: its writer closed it, or none has opened it yet (wait for one).
            Ok(0) if wrote => return Ok(bytes),
            Ok(0) => {}
            Ok(read) => {
                wrote = true;
                bytes.extend_from_slice(&chunk[..read]);
                if bytes.len() as u64 > MAX_INPUT {
                    return Ok(bytes);
                }
                continue;
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => wrote = true,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(TextFileError::Io(err)),
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(TextFileError::PipeStalled);
        }
        match wrote {
            // A writer has it open: sleep until it writes or closes.
            true => {
                let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX));
            }
            // Before a writer opens it, a pipe reads as ended at once: look again shortly.
            false => std::thread::sleep(left.min(PIPE_LOOK_AGAIN)),
        }
    }
}

fn describe(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    match kind {
        kind if kind.is_dir() => "a directory",
        kind if kind.is_socket() => "a socket",
        kind if kind.is_char_device() || kind.is_block_device() => "a device",
        _ => "not a file",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_is_read_once_its_writer_closes_it_and_a_device_and_a_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("secrets.env");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // As `-e <(decrypt secrets)`: a writer that takes its time, then closes.
        let writer = std::thread::spawn({
            let fifo = fifo.clone();
            move || {
                let mut pipe = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
                std::io::Write::write_all(&mut pipe, b"A=1\n").unwrap();
                std::thread::sleep(std::time::Duration::from_millis(50));
                std::io::Write::write_all(&mut pipe, b"B=2\n").unwrap();
            }
        });
        assert_eq!(read(&fifo).unwrap(), "A=1\nB=2\n");
        writer.join().unwrap();
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
