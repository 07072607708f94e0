//! Human durations on the command line: `500ms`, `30s`, `2m`, `24h` (and combinations like `1h30m`).

use std::time::Duration;

/// Parses `500ms`, `30s`, `2m`, `24h`, `1h30m`; a bare number is seconds.
pub fn parse(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration `{text}`: use a number with a unit, e.g. 500ms, 30s, 2m, 24h");
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid());
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let unit_len = rest[digits..].find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len() - digits);
        let amount: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        let unit = match &rest[digits..digits + unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return Err(invalid()),
        };
        total += unit.checked_mul(amount.try_into().map_err(|_| invalid())?).ok_or_else(invalid)?;
        rest = &rest[digits + unit_len..];
    }
    Ok(total)
}

/// A duration as [`parse`] reads it, or `off` (`None`).
pub fn parse_or_off(text: &str) -> Result<Option<Duration>, String> {
    match text.trim() {
        "off" => Ok(None),
        _ => parse(text).map(Some),
    }
}

/// Formats a duration the way [`parse`] reads it, with the largest exact unit (`90s`, `5m`, `1500ms`).
pub fn format(duration: Duration) -> String {
    let ms = duration.as_millis();
    match ms {
        0 => "0s".to_string(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit_and_combinations() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("7"), Ok(Duration::from_secs(7)));
    }

    #[test]
    fn rejects_garbage_with_a_hint() {
        for bad in ["", "s", "10x", "1.5s", "-3s", "ms10"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("e.g. 500ms, 30s"), "{bad}: {err}");
        }
    }

    #[test]
    fn formats_back_to_the_largest_exact_unit() {
        for text in ["0s", "500ms", "1500ms", "30s", "90s", "2m", "24h"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }
}
