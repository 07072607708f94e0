//! One line of the log: when, from whom (`system`, procgate itself, or an instance such as
//! `web.1`), what; and how it is written on a terminal, in a log file and as JSON.

use chrono::{DateTime, Local, SecondsFormat};

/// The source of procgate's own lines.
pub const SYSTEM: &str = "system";

/// ANSI colours cycled per process type: cyan, yellow, green, magenta, red, blue, then bright.
const COLOURS: [u8; 12] = [36, 33, 32, 35, 31, 34, 96, 93, 92, 95, 91, 94];

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub time: DateTime<Local>,
    /// `system`, or the instance's name (`web.1`).
    pub source: String,
    /// The instance's type position (its colour); `None` for procgate's own lines.
    pub colour: Option<usize>,
    /// The instance's main process, once known.
    pub pid: Option<u32>,
    pub text: String,
}

impl Record {
    /// One of procgate's own lines, now.
    pub fn system(text: impl Into<String>) -> Record {
        Record { time: Local::now(), source: SYSTEM.to_string(), colour: None, pid: None, text: text.into() }
    }

    /// One line of an instance's output, now.
    pub fn instance(name: &str, colour: usize, pid: Option<u32>, text: &str) -> Record {
        Record { time: Local::now(), source: name.to_string(), colour: Some(colour), pid, text: text.to_string() }
    }

    /// `HH:MM:SS web.1  | text` (`full`: the date and time to the millisecond), the name padded
    /// to `width`, the prefix coloured when `colour` and the line is an instance's.
    pub fn terminal(&self, width: usize, colour: bool, full: bool) -> String {
        let time = match full {
            true => self.time.to_rfc3339_opts(SecondsFormat::Millis, false),
            false => self.time.format("%H:%M:%S").to_string(),
        };
        let (name, text) = (&self.source, &self.text);
        match self.colour.filter(|_| colour) {
            Some(index) => {
                let code = COLOURS[index % COLOURS.len()];
                format!("\x1b[{code}m{time} {name:<width$} |\x1b[0m {text}\n")
            }
            None => format!("{time} {name:<width$} | {text}\n"),
        }
    }

    /// `2026-12-03T09:15:02.123+01:00 web.1 | text`: a log file's line (RFC 3339 time).
    pub fn file_line(&self) -> String {
        format!("{} {} | {}\n", self.time.to_rfc3339_opts(SecondsFormat::Millis, false), self.source, self.text)
    }

    /// A log file's line read back; `None` for a line procgate did not write.
    pub fn parse(line: &str) -> Option<Record> {
        let (time, rest) = line.split_once(' ')?;
        let (source, text) = rest.split_once(" | ")?;
        let time = DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Local);
        let colour = (source != SYSTEM).then_some(0);
        Some(Record { time, source: source.to_string(), colour, pid: None, text: text.to_string() })
    }

    /// One JSON object: time, source, instance and type (for an instance's line), pid, text,
    /// and the event code of procgate's coded lines (`201`, `H10`, `R12`...).
    pub fn json(&self) -> String {
        let instance = self.colour.map(|_| self.source.as_str());
        let value = serde_json::json!({
            "time": self.time.to_rfc3339_opts(SecondsFormat::Millis, false),
            "source": if instance.is_some() { "app" } else { SYSTEM },
            "instance": instance,
            "type": instance.and_then(|name| name.rsplit_once('.')).map(|(type_name, _)| type_name),
            "pid": self.pid,
            "code": self.code(),
            "text": self.text,
        });
        value.to_string()
    }

    /// The event code a line of procgate's starts with: `201`...`207`, or a letter and 2 or 3
    /// digits (`H10`, `R12`, `T429`, `P400`).
    pub fn code(&self) -> Option<&str> {
        if self.colour.is_some() {
            return None;
        }
        let word = self.text.split(' ').next()?;
        let coded = match word.as_bytes() {
            [b'2', b'0', b'1'..=b'7'] => true,
            [b'H' | b'R' | b'T' | b'P', digits @ ..] => {
                (2..=3).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit)
            }
            _ => false,
        };
        coded.then_some(word)
    }

    /// Whether `filters` (types, instances, or `system`) take it; none takes everything.
    pub fn matches(&self, filters: &[String]) -> bool {
        let type_name = self.source.rsplit_once('.').map(|(type_name, _)| type_name);
        filters.is_empty() || filters.iter().any(|f| *f == self.source || Some(f.as_str()) == type_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_padded_to_the_width_and_the_time_is_hh_mm_ss_unless_full() {
        let line = Record::instance("web.1", 0, None, "hi").terminal(6, false, false);
        assert!(line.ends_with(" web.1  | hi\n"), "{line:?}");
        let time = &line[..8];
        assert!(time.chars().enumerate().all(|(i, c)| if i == 2 || i == 5 { c == ':' } else { c.is_ascii_digit() }));
        let full = Record::system("x").terminal(14, false, true);
        assert!(full.ends_with(" system         | x\n") && full[..10].contains('-'), "{full:?}");
    }

    #[test]
    fn colour_wraps_the_prefix_of_instance_lines_only_when_enabled() {
        let line = Record::instance("tcp.1", 1, None, "hi").terminal(6, true, false);
        assert!(line.starts_with("\x1b[33m") && line.ends_with(" tcp.1  |\x1b[0m hi\n"), "{line:?}");
        assert!(!Record::instance("tcp.1", 1, None, "hi").terminal(6, false, false).contains('\x1b'));
        assert!(!Record::system("hi").terminal(6, true, false).contains('\x1b'));
    }

    #[test]
    fn a_file_line_reads_back_as_written() {
        let record = Record::instance("web.1", 2, Some(7), "GET / | 200");
        let back = Record::parse(record.file_line().trim_end()).unwrap();
        assert_eq!((back.source.as_str(), back.text.as_str()), ("web.1", "GET / | 200"));
        assert_eq!(back.time.timestamp_millis(), record.time.timestamp_millis());
        assert_eq!(Record::parse("not a line of ours"), None);
    }

    #[test]
    fn codes_are_read_off_procgates_own_lines_only() {
        assert_eq!(Record::system("201 app connected tcp.1").code(), Some("201"));
        assert_eq!(Record::system("207 tcp woke after 412 ms: tcp.1 up").code(), Some("207"));
        assert_eq!(Record::system("208 nothing").code(), None);
        assert_eq!(Record::system("H10 no healthy instance").code(), Some("H10"));
        assert_eq!(Record::system("T429 too many connections").code(), Some("T429"));
        assert_eq!(Record::system("Cycling tcp.1").code(), None);
        assert_eq!(Record::system("HEAD of the line").code(), None);
        assert_eq!(Record::instance("web.1", 0, None, "201 created").code(), None);
    }

    #[test]
    fn filters_take_types_instances_and_system() {
        let web = Record::instance("web.1", 0, None, "hi");
        let filters = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert!(web.matches(&[]) && web.matches(&filters(&["web"])) && web.matches(&filters(&["web.1"])));
        assert!(!web.matches(&filters(&["web.2", "tcp"])));
        assert!(Record::system("x").matches(&filters(&["system"])));
    }

    #[test]
    fn json_names_the_instance_its_type_pid_and_code() {
        let json: serde_json::Value =
            serde_json::from_str(&Record::instance("tcp.2", 1, Some(9), "hi").json()).unwrap();
        assert_eq!(
            (json["instance"].as_str(), json["type"].as_str(), json["pid"].as_u64()),
            (Some("tcp.2"), Some("tcp"), Some(9))
        );
        let system: serde_json::Value = serde_json::from_str(&Record::system("R12 Exit timeout").json()).unwrap();
        assert_eq!((system["source"].as_str(), system["code"].as_str()), (Some("system"), Some("R12")));
    }
}
