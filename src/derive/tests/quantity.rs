use crate::derive::quantity::{Format, QuantityError, parse};

const GI: i128 = 1 << 30;
const NANO: i128 = 1_000_000_000;

/// (input, value in nano units, canonical form)
const VALID: &[(&str, i128, &str)] = &[
    ("0", 0, "0"),
    ("000", 0, "0"),
    ("0Gi", 0, "0"),
    ("-0", 0, "0"),
    ("1", NANO, "1"),
    ("+1", NANO, "1"),
    ("2Gi", 2 * GI * NANO, "2Gi"),
    ("2048Mi", 2 * GI * NANO, "2Gi"),
    ("1024Ki", (1 << 20) * NANO, "1Mi"),
    ("1.5Gi", 1_610_612_736 * NANO, "1536Mi"),
    ("1536Mi", 1_610_612_736 * NANO, "1536Mi"),
    ("0.5Ki", 512 * NANO, "512"),
    ("1Ki", 1024 * NANO, "1Ki"),
    ("1.5Ki", 1536 * NANO, "1536"),
    ("1023", 1023 * NANO, "1023"),
    ("-1Gi", -GI * NANO, "-1Gi"),
    ("1Ei", (1 << 60) * NANO, "1Ei"),
    ("7Ei", 7 * (1 << 60) * NANO, "7Ei"),
    ("1Ti", (1 << 40) * NANO, "1Ti"),
    ("1Pi", (1 << 50) * NANO, "1Pi"),
    ("2G", 2_000_000_000 * NANO, "2G"),
    ("1000k", 1_000_000 * NANO, "1M"),
    ("1500k", 1_500_000 * NANO, "1500k"),
    ("1.5", 1_500_000_000, "1500m"),
    ("1.", NANO, "1"),
    (".5", 500_000_000, "500m"),
    ("100m", 100_000_000, "100m"),
    ("1000m", NANO, "1"),
    ("1u", 1000, "1u"),
    ("1n", 1, "1n"),
    ("0.1n", 1, "1n"),
    ("-0.1n", -1, "-1n"),
    ("1.0000000001", NANO + 1, "1000000001n"),
    ("12k", 12_000 * NANO, "12k"),
    ("1T", 1_000_000_000_000 * NANO, "1T"),
    ("1P", 1_000_000_000_000_000 * NANO, "1P"),
    ("1E", 1_000_000_000_000_000_000 * NANO, "1E"),
    ("1e3", 1000 * NANO, "1e3"),
    ("1E3", 1000 * NANO, "1e3"),
    ("1e+3", 1000 * NANO, "1e3"),
    ("1e4", 10_000 * NANO, "10e3"),
    ("1.5e3", 1500 * NANO, "1500"),
    ("1.5E2", 150 * NANO, "150"),
    ("1e-3", 1_000_000, "1e-3"),
    ("1e0", NANO, "1"),
    ("2147483648", 2_147_483_648 * NANO, "2147483648"),
    ("22724694688", 22_724_694_688 * NANO, "22724694688"),
    ("0.055", 55_000_000, "55m"),
    ("1e-100", 1, "1e-9"),
    // Capped at 2^63-1 units, as apimachinery does.
    (
        "99999999999999999999Ei",
        i64::MAX as i128 * NANO,
        "9223372036854775807",
    ),
    (
        "9223372036854775808",
        i64::MAX as i128 * NANO,
        "9223372036854775807",
    ),
    ("1e100", i64::MAX as i128 * NANO, "9223372036854775807"),
    ("-1e100", -(i64::MAX as i128) * NANO, "-9223372036854775807"),
    ("8Ei", i64::MAX as i128 * NANO, "9223372036854775807"),
    (
        "0.00000000000000000000000000000000000000000000000000001Ei",
        1,
        "1n",
    ),
    (
        "0.000000000001Ei",
        1_152_921_504_606_847,
        "1152921504606847n",
    ),
];

const INVALID: &[&str] = &[
    "",
    "Gi",
    "-",
    "+",
    ".",
    "-.",
    "1.2.3",
    "1ki",
    "1K",
    "1KI",
    "1kb",
    "1 ",
    " 1",
    "1 Gi",
    "1Gib",
    "1iG",
    "abc",
    "1e",
    "1e+",
    "1e1.5",
    "1e99999999999",
    "--1",
    "+-1",
    "1m1",
    "0x10",
    "1,5",
    "1_000",
    "∞",
    "1Gi ",
    "NaN",
    "1.5.Gi",
    "e3",
    "1ee3",
    "1mi",
    "1i",
];

#[test]
fn valid_quantities_parse_exactly_and_print_canonically() {
    for (text, nanos, canonical) in VALID {
        let q = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(q.nanos(), *nanos, "{text:?} value");
        assert_eq!(q.canonical(), *canonical, "{text:?} canonical");
        // The canonical form reads back as the same value.
        let again = parse(canonical).unwrap_or_else(|e| panic!("{canonical:?}: {e}"));
        assert_eq!(again.nanos(), *nanos, "{canonical:?} re-read");
        assert_eq!(
            again.canonical(),
            *canonical,
            "{canonical:?} is a fixed point"
        );
    }
}

#[test]
fn invalid_quantities_are_errors() {
    for text in INVALID {
        assert!(parse(text).is_err(), "{text:?} should be rejected");
    }
    assert_eq!(parse(""), Err(QuantityError::Empty));
    assert!(matches!(parse("Gi"), Err(QuantityError::NoDigits(_))));
    assert!(matches!(parse("1ki"), Err(QuantityError::Suffix { .. })));
    assert!(matches!(
        parse("1e99999999999"),
        Err(QuantityError::Exponent { .. })
    ));
    let long = "1".repeat(300);
    assert_eq!(parse(&long), Err(QuantityError::TooLong));
}

#[test]
fn formats_follow_the_suffix() {
    for (text, format) in [
        ("1Gi", Format::BinarySi),
        ("1G", Format::DecimalSi),
        ("1", Format::DecimalSi),
        ("1m", Format::DecimalSi),
        ("1e3", Format::DecimalExponent),
        ("1E", Format::DecimalSi),
        ("1Ei", Format::BinarySi),
    ] {
        assert_eq!(parse(text).map(|q| q.format()), Ok(format), "{text:?}");
    }
}

#[test]
fn mib_and_bytes_round_down() {
    for (text, bytes, mib) in [
        ("2Gi", 2 * GI, Some(2048)),
        ("1.5Gi", 1_610_612_736, Some(1536)),
        ("2G", 2_000_000_000, Some(1907)),
        ("1Mi", 1 << 20, Some(1)),
        ("1048575", 1_048_575, Some(0)),
        ("100m", 0, Some(0)),
        ("0", 0, Some(0)),
        ("-1Gi", -GI, None),
        ("-100m", -1, None),
        (
            "99999999999999999999Ei",
            i64::MAX as i128,
            Some(i64::MAX >> 20),
        ),
    ] {
        let q = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(q.to_bytes_floor(), bytes, "{text:?} bytes");
        assert_eq!(q.to_mib_floor(), mib, "{text:?} MiB");
    }
}

#[test]
fn long_digit_strings_stay_exact() {
    // 40 significant digits below the nano unit: rounded up, not truncated.
    let q = parse("0.0000000010000000000000000000000000000000001").unwrap();
    assert_eq!(q.nanos(), 2);
    let q = parse("0.000000001000000000000000000000000000000000").unwrap();
    assert_eq!(q.nanos(), 1);
    let q = parse("123456789012345678.901234567").unwrap();
    assert_eq!(q.nanos(), 123_456_789_012_345_678_901_234_567);
}

/// Found by the first fuzz run (fuzz/fuzz_targets/quantity.rs): `312.5Ki` is 320000, a
/// binary quantity that is no whole multiple of 1024, which apimachinery prints without a
/// suffix; read back, that is decimal and prints as `320k`. Same value throughout.
#[test]
fn fuzz_regression_binary_quantity_that_prints_without_suffix() {
    let q = parse("312.5Ki").unwrap();
    assert_eq!(q.canonical(), "320000");
    let back = parse(&q.canonical()).unwrap();
    assert_eq!(back.nanos(), q.nanos());
    assert_eq!(back.canonical(), "320k");
    assert_eq!(parse("320k").unwrap().canonical(), "320k");
}
