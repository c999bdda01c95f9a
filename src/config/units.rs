//! Units users write on the command line and in YAML: sizes in binary units ("512MB" = 512 MiB,
//! as Docker reads them) and CPU amounts as fractions of one CPU.

use thiserror::Error;

/// A unit string that does not parse.
#[derive(Debug, Error, PartialEq)]
pub enum UnitError {
    #[error("invalid size '{0}' (expected a number with an optional unit: 512K, 64M, 1G, 100MB)")]
    Size(String),
    #[error("size '{0}' must be greater than zero")]
    ZeroSize(String),
    #[error("invalid cpu amount '{0}' (expected a positive number of CPUs such as 0.5 or 2)")]
    Cpus(String),
}

/// Parses a size: a plain byte count or a number with a binary unit (K/KB/KiB, M, G, T; case
/// insensitive). `1GB` is 1 GiB, like `docker run --memory 1g`.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let trimmed = text.trim();
    let config = parse_size::Config::new().with_binary();
    let bytes = config
        .parse_size(trimmed)
        .map_err(|_| UnitError::Size(text.to_string()))?;
    if bytes == 0 {
        return Err(UnitError::ZeroSize(text.to_string()));
    }
    Ok(bytes)
}

/// Parses a CPU amount: `0.5` is half of one CPU, `2` two CPUs. Returns the amount in
/// millicpus so limits compare exactly.
pub fn parse_cpus(text: &str) -> Result<u64, UnitError> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| UnitError::Cpus(text.to_string()))?;
    if !value.is_finite() || value <= 0.0 || value > 4096.0 {
        return Err(UnitError::Cpus(text.to_string()));
    }
    let milli = (value * 1000.0).round() as u64;
    if milli == 0 {
        return Err(UnitError::Cpus(text.to_string()));
    }
    Ok(milli)
}

/// Formats a byte count the way users wrote it: `32 MiB`, `1.5 GiB`, `512 KiB`, `100 B`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{} {}", value as u64, UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(parse_size("512MB"), Ok(512 << 20));
        assert_eq!(parse_size("1GB"), Ok(1 << 30));
        assert_eq!(parse_size("100m"), Ok(100 << 20));
        assert_eq!(parse_size("32M"), Ok(32 << 20));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
    }

    #[test]
    fn bad_sizes_are_rejected() {
        for bad in ["12XB", "", "abc", "-5M", "1.2.3G"] {
            assert!(parse_size(bad).is_err(), "{bad} should not parse");
        }
        assert_eq!(parse_size("0"), Err(UnitError::ZeroSize("0".into())));
    }

    #[test]
    fn cpus_are_millicpus() {
        assert_eq!(parse_cpus("0.5"), Ok(500));
        assert_eq!(parse_cpus("2"), Ok(2000));
        assert_eq!(parse_cpus("0.25"), Ok(250));
        for bad in ["-1", "0", "x", "NaN", "inf", "0.0001"] {
            assert!(parse_cpus(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn sizes_format_readably() {
        assert_eq!(format_size(32 << 20), "32 MiB");
        assert_eq!(format_size(1 << 30), "1 GiB");
        assert_eq!(format_size(1536 << 20), "1.5 GiB");
        assert_eq!(format_size(100), "100 B");
    }
}
