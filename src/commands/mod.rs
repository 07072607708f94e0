//! The subcommands, one module each, and [`out`], how they print.

/// Prints to stdout as `print!` does; when the reader is gone (`procgate logs | head`), the
/// command ends quietly with status 141 (128 + SIGPIPE), as `cat` does, instead of panicking.
/// SIGPIPE itself stays ignored: a command writing to the control socket of a procgate that just
/// stopped gets an error to report, not a silent death.
macro_rules! out {
    ($($arg:tt)*) => { $crate::commands::write_out(format_args!($($arg)*)) };
}
pub(crate) use out;

/// [`out!`]'s body.
pub fn write_out(text: std::fmt::Arguments) {
    use std::io::Write;
    if let Err(err) = std::io::stdout().lock().write_fmt(text) {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
    }
}

pub mod check;
pub mod export;
pub mod live;
pub mod logs;
pub mod ps;
pub mod roll;
pub mod run;
pub mod scale;
pub mod start;
pub mod stop;
pub mod systemd_unit;
pub mod test_shutdown;
pub mod upgrade;
pub mod wake;
