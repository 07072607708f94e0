//! Log files (`--log-dir`): every line with its full time, through `tracing-appender`'s rolling
//! writer (`procgate.2026-12-03.log` daily, `procgate.2026-12-03-09.log` hourly, in UTC as the
//! appender names them), the oldest files removed past `--log-keep`, and each file capped at
//! `--log-max-size`: past it, lines are dropped and counted until the next file, which says how
//! many. `procgate logs --since` reads them back.

use super::record::Record;
use chrono::{DateTime, Local, Utc};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use tracing_appender::rolling::{RollingFileAppender, Rotation};

/// The files' names: `procgate.DATE.log`.
const PREFIX: &str = "procgate";
const SUFFIX: &str = "log";

/// The most lines `logs --since` reads back from the files (the latest ones win).
pub const READ_LIMIT: usize = 200_000;

/// How often a new file starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Daily,
    Hourly,
}

impl Period {
    /// `daily` or `hourly`.
    pub fn parse(text: &str) -> Result<Period, String> {
        match text {
            "daily" => Ok(Period::Daily),
            "hourly" => Ok(Period::Hourly),
            other => Err(format!("`{other}` is not a rotation; write daily or hourly")),
        }
    }

    /// The part of a file's name that says its period, as the appender writes it (UTC).
    fn key(self, time: DateTime<Utc>) -> String {
        match self {
            Period::Daily => time.format("%Y-%m-%d").to_string(),
            Period::Hourly => time.format("%Y-%m-%d-%H").to_string(),
        }
    }
}

/// Where and how lines are kept on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSettings {
    pub dir: PathBuf,
    pub period: Period,
    /// Files kept, the current one included.
    pub keep: usize,
    /// The most bytes of one file.
    pub max_bytes: u64,
}

/// The open log files.
pub struct LogFiles {
    appender: RollingFileAppender,
    settings: FileSettings,
    /// The period of the file written now, its bytes, and the lines its cap dropped.
    period: String,
    written: u64,
    dropped: u64,
}

impl LogFiles {
    pub fn open(settings: FileSettings) -> std::io::Result<LogFiles> {
        std::fs::create_dir_all(&settings.dir)?;
        let rotation = match settings.period {
            Period::Daily => Rotation::DAILY,
            Period::Hourly => Rotation::HOURLY,
        };
        let appender = RollingFileAppender::builder()
            .rotation(rotation)
            .filename_prefix(PREFIX)
            .filename_suffix(SUFFIX)
            .max_log_files(settings.keep.max(1))
            .build(&settings.dir)
            .map_err(std::io::Error::other)?;
        let period = settings.period.key(Utc::now());
        let written = std::fs::metadata(file_of(&settings.dir, &period)).map_or(0, |m| m.len());
        Ok(LogFiles { appender, settings, period, written, dropped: 0 })
    }

    /// Writes `record`, or drops and counts it when its file is full.
    pub fn write(&mut self, record: &Record) {
        let period = self.settings.period.key(record.time.with_timezone(&Utc));
        if period != self.period {
            self.period = period;
            self.written = 0;
            if self.dropped > 0 {
                let cap = self.settings.max_bytes;
                let text = format!("log file over its size cap ({cap} bytes): {} lines dropped", self.dropped);
                self.dropped = 0;
                self.append(&Record::system(text).file_line());
            }
        }
        let line = record.file_line();
        if self.written + line.len() as u64 > self.settings.max_bytes {
            self.dropped += 1;
            return;
        }
        self.append(&line);
    }

    fn append(&mut self, line: &str) {
        // A full disk must not stop the platform: the line is lost, as the terminal's would be.
        if self.appender.write_all(line.as_bytes()).is_ok() {
            self.written += line.len() as u64;
        }
    }
}

/// `100MB`, `1GB`, `512KB` or a number of bytes (powers of 1024, as `du -h`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().map_err(|_| format!("`{text}` is not a size; write e.g. 100MB or 1GB"))?;
    let scale: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" => 1 << 10,
        "M" | "MB" => 1 << 20,
        "G" | "GB" => 1 << 30,
        _ => return Err(format!("`{text}`: the unit must be B, KB, MB or GB")),
    };
    match number.checked_mul(scale) {
        Some(0) => Err("a size of 0 would keep nothing; leave out --log-dir instead".to_string()),
        Some(bytes) => Ok(bytes),
        None => Err(format!("`{text}` is too large")),
    }
}

fn file_of(dir: &Path, period: &str) -> PathBuf {
    dir.join(format!("{PREFIX}.{period}.{SUFFIX}"))
}

/// The lines of the log files in `dir` written at `since` or later and before `before`, oldest
/// first; at most [`READ_LIMIT`] (the latest ones).
pub fn read(dir: &Path, since: Option<DateTime<Local>>, before: Option<DateTime<Local>>) -> Vec<Record> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    names.retain(|path| is_log_file(path));
    names.sort();
    let mut records = std::collections::VecDeque::new();
    for path in names {
        let Ok(file) = std::fs::File::open(&path) else { continue };
        for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
            let Some(record) = Record::parse(&line) else { continue };
            let wanted = since.is_none_or(|t| record.time >= t) && before.is_none_or(|t| record.time < t);
            if wanted {
                if records.len() == READ_LIMIT {
                    records.pop_front();
                }
                records.push_back(record);
            }
        }
    }
    records.into()
}

fn is_log_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.starts_with(&format!("{PREFIX}.")) && name.ends_with(&format!(".{SUFFIX}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path, max_bytes: u64) -> FileSettings {
        FileSettings { dir: dir.to_path_buf(), period: Period::Daily, keep: 3, max_bytes }
    }

    #[test]
    fn sizes_read_with_their_units() {
        assert_eq!(parse_size("100MB"), Ok(100 << 20));
        assert_eq!(parse_size("1gb"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").unwrap_err().contains("keep nothing"));
        assert!(parse_size("ten MB").unwrap_err().contains("not a size"));
        assert!(parse_size("5PB").unwrap_err().contains("unit"));
    }

    #[test]
    fn lines_are_written_with_their_time_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = LogFiles::open(settings(dir.path(), 1 << 20)).unwrap();
        for n in 0..3 {
            files.write(&Record::instance("web.1", 0, None, &format!("line {n}")));
        }
        drop(files);
        let back = read(dir.path(), None, None);
        let texts: Vec<&str> = back.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(texts, ["line 0", "line 1", "line 2"]);
        let name = format!("procgate.{}.log", Utc::now().format("%Y-%m-%d"));
        assert!(dir.path().join(name).exists());
    }

    #[test]
    fn a_full_file_drops_and_counts_lines_until_the_next_one_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = LogFiles::open(settings(dir.path(), 200)).unwrap();
        for n in 0..20 {
            files.write(&Record::system(format!("line {n} of some length")));
        }
        assert!(files.written <= 200 && files.dropped > 0, "{} {}", files.written, files.dropped);
        let mut tomorrow = Record::system("the next day");
        tomorrow.time += chrono::Duration::days(1);
        let dropped = files.dropped;
        files.write(&tomorrow);
        assert_eq!(files.dropped, 0);
        drop(files);
        let said = format!("log file over its size cap (200 bytes): {dropped} lines dropped");
        assert!(read(dir.path(), None, None).iter().any(|r| r.text == said));
    }
}
