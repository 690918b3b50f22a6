//! Parsers for the human-friendly value formats used in the configuration:
//! durations ("200ms", "1m30s") and byte sizes ("32MiB", "1000000").
//!
//! Errors are returned as the "problem" half of a `ConfigError`; the caller
//! adds the key.

use std::time::Duration;

/// Appended to every duration error.
pub const DURATION_HINT: &str = "use e.g. 500ms, 30s, 5m, 1h";
/// Appended to every size error.
pub const SIZE_HINT: &str = "use e.g. 512KiB, 32MiB, 1GiB, 10MB or a number of bytes";

const NANOS_PER_SEC: u128 = 1_000_000_000;

const DURATION_UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("h", 3_600 * NANOS_PER_SEC),
    ("d", 86_400 * NANOS_PER_SEC),
];

/// The message for a number given without a unit (also used for bare TOML integers).
pub fn duration_unit_required(input: &str) -> String {
    format!("invalid duration {input:?}: a unit is required ({DURATION_HINT})")
}

/// Parses "200ms", "30s", "5m", "1h", "1d" and combinations such as "1m30s" or
/// "1h 30m". Units: ns, us (µs), ms, s, m, h, d. A bare number is an error.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {input:?} ({DURATION_HINT})");
    let too_large = || format!("invalid duration {input:?}: too large");
    let s = input.trim();
    if s.is_empty() {
        return Err(invalid());
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits_end == 0 {
            return Err(invalid());
        }
        let number: u128 = rest[..digits_end].parse().map_err(|_| too_large())?;
        rest = rest[digits_end..].trim_start();
        let unit_end = rest
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        if unit.is_empty() {
            return Err(duration_unit_required(input));
        }
        let Some(&(_, factor)) = DURATION_UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(invalid());
        };
        total = number
            .checked_mul(factor)
            .and_then(|n| total.checked_add(n))
            .ok_or_else(too_large)?;
        rest = rest[unit_end..].trim_start();
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| too_large())?;
    // The remainder is < 1e9 and always fits.
    let nanos = u32::try_from(total % NANOS_PER_SEC).map_err(|_| too_large())?;
    Ok(Duration::new(secs, nanos))
}

/// Formats a duration in the syntax `parse_duration` accepts ("1m30s", "200ms", "0s").
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    let parts: [(u64, &str); 7] = [
        (secs / 86_400, "d"),
        (secs / 3_600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
        (u64::from(nanos / 1_000_000), "ms"),
        (u64::from(nanos / 1_000 % 1_000), "us"),
        (u64::from(nanos % 1_000), "ns"),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n != 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect()
}

const SIZE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
];

/// Parses a byte size: "32MiB", "1GiB", "512KiB" (binary), "10MB", "1GB"
/// (decimal), "1000000" or "1000000B" (bytes). Units are case-insensitive.
pub fn parse_size(input: &str) -> Result<u64, String> {
    let invalid = || format!("invalid size {input:?} ({SIZE_HINT})");
    let s = input.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits_end == 0 {
        return Err(invalid());
    }
    let unit = s[digits_end..].trim_start().to_ascii_lowercase();
    let Some(&(_, factor)) = SIZE_UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(invalid());
    };
    s[..digits_end]
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("invalid size {input:?}: too large"))
}

/// Formats a byte size in the largest binary unit that divides it ("4MiB", "1536KiB",
/// "100"), a syntax `parse_size` accepts.
pub(super) fn format_size(bytes: u64) -> String {
    let unit = [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ]
    .into_iter()
    .find(|(_, factor)| bytes != 0 && bytes % factor == 0);
    match unit {
        Some((name, factor)) => format!("{}{name}", bytes / factor),
        None => bytes.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_format_in_the_largest_exact_binary_unit() {
        for (bytes, text) in [
            (0, "0"),
            (100, "100"),
            (1 << 20, "1MiB"),
            (4 << 20, "4MiB"),
            (1536 << 10, "1536KiB"),
            (3 << 40, "3TiB"),
        ] {
            assert_eq!(format_size(bytes), text);
            assert_eq!(parse_size(text), Ok(bytes));
        }
    }

    #[test]
    fn durations() {
        let ok: &[(&str, Duration)] = &[
            ("200ms", Duration::from_millis(200)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("1d", Duration::from_secs(86_400)),
            ("1m30s", Duration::from_secs(90)),
            ("1h 30m", Duration::from_secs(5400)),
            (" 10 s ", Duration::from_secs(10)),
            ("0s", Duration::ZERO),
            ("1s500ms", Duration::from_millis(1500)),
            ("250us", Duration::from_micros(250)),
            ("250µs", Duration::from_micros(250)),
            ("7ns", Duration::from_nanos(7)),
            ("1d2h3m4s5ms", Duration::from_millis(93_784_005)),
        ];
        for (input, want) in ok {
            assert_eq!(parse_duration(input).as_ref(), Ok(want), "{input}");
        }
        let bad: &[(&str, &str)] = &[
            ("", "invalid duration"),
            ("   ", "invalid duration"),
            (
                "5 parsecs",
                "invalid duration \"5 parsecs\" (use e.g. 500ms, 30s, 5m, 1h)",
            ),
            ("30", "a unit is required"),
            ("0", "a unit is required"),
            ("1m30", "a unit is required"),
            ("-5s", "invalid duration"),
            ("1.5s", "invalid duration"),
            ("s", "invalid duration"),
            ("5S", "invalid duration"),
            ("5sec", "invalid duration"),
            ("1h,30m", "invalid duration"),
            ("99999999999999999999999999999999999999999s", "too large"),
            ("18446744073709551616s", "too large"),
            ("213503982334602d", "too large"),
        ];
        for (input, want) in bad {
            match parse_duration(input) {
                Ok(d) => panic!("{input:?} parsed as {d:?}"),
                Err(e) => assert!(e.contains(want), "{input:?}: {e}"),
            }
        }
        // The largest representable number of seconds still parses.
        assert_eq!(
            parse_duration("18446744073709551615s"),
            Ok(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn duration_format_round_trips() {
        let cases: &[(Duration, &str)] = &[
            (Duration::ZERO, "0s"),
            (Duration::from_millis(200), "200ms"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(86_400 + 1), "1d1s"),
            (Duration::new(1, 1_001), "1s1us1ns"),
        ];
        for (d, text) in cases {
            assert_eq!(format_duration(*d), *text);
            assert_eq!(parse_duration(text), Ok(*d));
        }
    }

    #[test]
    fn sizes() {
        let ok: &[(&str, u64)] = &[
            ("32MiB", 32 << 20),
            ("1GiB", 1 << 30),
            ("512KiB", 512 << 10),
            ("2TiB", 2 << 40),
            ("1000000", 1_000_000),
            ("1000000B", 1_000_000),
            ("10KB", 10_000),
            ("10MB", 10_000_000),
            ("3GB", 3_000_000_000),
            ("1TB", 1_000_000_000_000),
            ("32 MiB", 32 << 20),
            ("32mib", 32 << 20),
            ("0", 0),
            ("18446744073709551615", u64::MAX),
        ];
        for (input, want) in ok {
            assert_eq!(parse_size(input), Ok(*want), "{input}");
        }
        let bad: &[(&str, &str)] = &[
            ("", "invalid size"),
            ("MiB", "invalid size"),
            ("32M", "invalid size"),
            ("32 parsecs", "invalid size"),
            ("-1", "invalid size"),
            ("1.5GiB", "invalid size"),
            ("1 000", "invalid size"),
            ("18446744073709551616", "too large"),
            ("17179869184GiB", "too large"),
            ("99999999999999999999999TB", "too large"),
        ];
        for (input, want) in bad {
            match parse_size(input) {
                Ok(n) => panic!("{input:?} parsed as {n}"),
                Err(e) => assert!(e.contains(want), "{input:?}: {e}"),
            }
        }
    }
}
