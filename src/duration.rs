//! Human durations on the command line: `500ms`, `30s`, `2m`, `24h` (and combinations like `1h30m`).

use std::time::Duration;

/// The longest duration any setting takes: a year. Every timeout, grace, period and cycle is far
/// shorter in practice, and a deadline this far off never overflows a clock or a manifest field
/// (`failureThreshold` is an int32 count of 100 ms periods).
pub const LONGEST: Duration = Duration::from_secs(365 * 86_400);

/// Parses `500ms`, `30s`, `2m`, `24h`, `1h30m`; a bare number is seconds. A total past
/// [`LONGEST`] is an error.
pub fn parse(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration `{text}`: use a number with a unit, e.g. 500ms, 30s, 2m, 24h");
    let too_long = || format!("duration `{text}` is too long: the most is 365d");
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid());
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds)).filter(|d| *d <= LONGEST).ok_or_else(too_long);
    }
    let mut total_ms: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let unit_len = rest[digits..].find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len() - digits);
        let unit_ms: u128 = match &rest[digits..digits + unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" if digits == text.len() => 1000,
            _ => return Err(invalid()),
        };
        if digits == 0 {
            return Err(invalid());
        }
        // Only digits here: a parse error is an amount past u128.
        let amount: u128 = rest[..digits].parse().map_err(|_| too_long())?;
        total_ms = amount.checked_mul(unit_ms).and_then(|ms| ms.checked_add(total_ms)).ok_or_else(too_long)?;
        rest = &rest[digits + unit_len..];
    }
    if total_ms > LONGEST.as_millis() {
        return Err(too_long());
    }
    Ok(Duration::from_millis(total_ms as u64))
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
    fn durations_up_to_a_year_parse_and_longer_ones_are_errors() {
        assert_eq!(parse("4294967296ms"), Ok(Duration::from_millis(4_294_967_296)));
        assert_eq!(parse("365d"), Ok(LONGEST));
        assert_eq!(parse("31536000"), Ok(LONGEST));
        assert_eq!(parse("364d23h59m59s999ms"), Ok(LONGEST - Duration::from_millis(1)));
        for too_long in ["365d1ms", "31536001", "18446744073709551615", "18446744073709551615s999ms"] {
            assert_eq!(parse(too_long), Err(format!("duration `{too_long}` is too long: the most is 365d")));
        }
        assert_eq!(
            parse("99999999999999999999"),
            Err("duration `99999999999999999999` is too long: the most is 365d".to_string())
        );
        // Used to panic (`Duration` addition overflowed) once the parts added up past u64 seconds.
        let many = "4294967295d".repeat(60_000);
        assert!(parse(&many).unwrap_err().contains("is too long"));
        for too_long in
            ["18446744073709551616s", "340282366920938463463374607431768211456ms", "1d18446744073709551615s"]
        {
            assert!(parse(too_long).unwrap_err().contains("is too long"), "{too_long}");
        }
    }

    #[test]
    fn formats_back_to_the_largest_exact_unit() {
        for text in ["0s", "500ms", "1500ms", "30s", "90s", "2m", "24h"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }
}
