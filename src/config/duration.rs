//! Durations as written in the YAML file: a sequence of whole numbers with units, as Compose
//! and Go write them: `5s`, `500ms`, `1m`, `1m30s`, `2h`.

use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid duration '{0}' (expected a number with a unit h, m, s or ms, such as 30s, 500ms or 1m30s)")]
pub struct DurationError(pub String);

/// Parses a duration. Units: `h`, `m`, `s`, `ms`, `us`; each part is a whole number; parts may be
/// combined largest first (`1h30m`, `1m30s`, `1s500ms`). A bare number has no unit and is an
/// error, as is an empty string.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError(text.to_string());
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    // Each unit may appear once, in decreasing order.
    let mut last_rank = usize::MAX;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let (number, tail) = rest.split_at(digits);
        let value: u64 = number.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let (rank, part) = match unit {
            "h" => (4, value.checked_mul(3600).map(Duration::from_secs)),
            "m" => (3, value.checked_mul(60).map(Duration::from_secs)),
            "s" => (2, Some(Duration::from_secs(value))),
            "ms" => (1, Some(Duration::from_millis(value))),
            "us" => (0, Some(Duration::from_micros(value))),
            _ => return Err(bad()),
        };
        if rank >= last_rank {
            return Err(bad());
        }
        last_rank = rank;
        total = part.and_then(|p| total.checked_add(p)).ok_or_else(bad)?;
        rest = tail;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1h1m1s"), Ok(Duration::from_secs(3661)));
        assert_eq!(parse_duration("1s250ms"), Ok(Duration::from_millis(1250)));
        assert_eq!(parse_duration("750us"), Ok(Duration::from_micros(750)));
        assert_eq!(parse_duration(" 10s "), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations() {
        for bad in [
            "",
            "5",
            "s",
            "5 s",
            "1.5s",
            "-1s",
            "5x",
            "5sec",
            "30s1m",
            "1s1s",
            "10m5",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(
            parse_duration("5").map_err(|e| e.to_string()),
            Err("invalid duration '5' (expected a number with a unit h, m, s or ms, such as 30s, 500ms or 1m30s)".to_string())
        );
    }
}
