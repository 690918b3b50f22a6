//! Kubernetes quantities (`k8s.io/apimachinery` `resource.Quantity`): parsing with exact
//! arithmetic and the canonical string form Kubernetes itself prints.
//!
//! Grammar: `[+-] digits [. digits] suffix`, where the number needs at least one digit
//! and the suffix is one of `Ki Mi Gi Ti Pi Ei` (binary), `n u m "" k M G T P E`
//! (decimal SI) or `e<int>` / `E<int>` (decimal exponent).
//!
//! As in apimachinery, a value is rounded up (away from zero) to a whole nano unit and
//! its magnitude is capped at 2^63-1 units. Differences: apimachinery reads digit-less
//! inputs such as `Gi`, `-` or `.` as zero, and caps only the SI formats; here digit-less
//! inputs are rejected and exponent-format values are capped too. Inputs longer than
//! [`MAX_LEN`] characters are rejected.

use std::fmt;

/// Longest accepted input (real quantities are a few characters long).
pub const MAX_LEN: usize = 256;

const NANOS_PER_UNIT: i128 = 1_000_000_000;
/// The largest magnitude, in nano units: (2^63-1) × 10^9.
const MAX_NANOS: i128 = (i64::MAX as i128) * NANOS_PER_UNIT;

/// How the quantity was written, which decides its canonical form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `Ki Mi Gi Ti Pi Ei`
    BinarySi,
    /// `n u m "" k M G T P E`
    DecimalSi,
    /// `1e3`, `1.5E-2`
    DecimalExponent,
}

/// A parsed quantity: its exact value in nano units (rounded up to a whole nano unit,
/// magnitude capped at 2^63-1 units) and the format it was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("empty quantity")]
    Empty,
    #[error("quantity longer than {MAX_LEN} characters")]
    TooLong,
    #[error("quantity {0:?} has no digits")]
    NoDigits(String),
    #[error("quantity {text:?}: unknown suffix {suffix:?}")]
    Suffix { text: String, suffix: String },
    #[error("quantity {text:?}: exponent out of range")]
    Exponent { text: String },
}

impl Quantity {
    /// The value in nano units (10^-9), exact after the round-up to a whole nano unit.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Whole units (bytes for memory), rounded down (towards negative infinity).
    pub fn to_bytes_floor(&self) -> i128 {
        self.nanos.div_euclid(NANOS_PER_UNIT)
    }

    /// Whole MiB, rounded down; `None` for a negative quantity.
    pub fn to_mib_floor(&self) -> Option<i64> {
        if self.nanos < 0 {
            return None;
        }
        i64::try_from(self.to_bytes_floor() / (1 << 20)).ok()
    }

    /// The canonical string Kubernetes prints for this quantity: binary quantities stay
    /// binary when they are whole and at least 1024 in magnitude (`2048Mi` → `2Gi`,
    /// `1.5Gi` → `1536Mi`, `0.5Ki` → `512`); decimal ones get the largest suffix whose
    /// exponent is a multiple of three and keeps the number whole (`1000k` → `1M`,
    /// `1.5` → `1500m`); exponent ones keep an exponent (`1e4` → `10e3`).
    pub fn canonical(&self) -> String {
        if self.nanos == 0 {
            return "0".to_string();
        }
        let mut format = self.format;
        if format == Format::BinarySi {
            let unit = 1024 * NANOS_PER_UNIT;
            if self.nanos.abs() < unit || self.nanos % NANOS_PER_UNIT != 0 {
                format = Format::DecimalSi;
            }
        }
        match format {
            Format::BinarySi => {
                let mut amount = self.nanos / NANOS_PER_UNIT;
                let mut exponent = 0usize;
                while amount % 1024 == 0 && exponent < 6 {
                    amount /= 1024;
                    exponent += 1;
                }
                let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exponent];
                format!("{amount}{suffix}")
            }
            Format::DecimalSi | Format::DecimalExponent => {
                let mut amount = self.nanos;
                let mut exponent: i32 = -9;
                while amount % 10 == 0 {
                    amount /= 10;
                    exponent += 1;
                }
                while exponent % 3 != 0 {
                    // Cannot overflow: a factor of 10 was just removed.
                    amount *= 10;
                    exponent -= 1;
                }
                if format == Format::DecimalExponent {
                    return match exponent {
                        0 => format!("{amount}"),
                        e => format!("{amount}e{e}"),
                    };
                }
                // The cap keeps the exponent within -9..=18.
                let suffix = match exponent {
                    -9 => "n",
                    -6 => "u",
                    -3 => "m",
                    3 => "k",
                    6 => "M",
                    9 => "G",
                    12 => "T",
                    15 => "P",
                    18 => "E",
                    _ => "",
                };
                format!("{amount}{suffix}")
            }
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// Parses a Kubernetes quantity; never panics, never overflows.
pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
    if text.is_empty() {
        return Err(QuantityError::Empty);
    }
    if text.len() > MAX_LEN {
        return Err(QuantityError::TooLong);
    }
    let bytes = text.as_bytes();
    let mut pos = 0;
    let negative = match bytes.first() {
        Some(b'-') => {
            pos += 1;
            true
        }
        Some(b'+') => {
            pos += 1;
            false
        }
        _ => false,
    };
    let int_start = pos;
    while pos < bytes.len() && bytes[pos].is_ascii_digit() {
        pos += 1;
    }
    let int_digits = &text[int_start..pos];
    let mut frac_digits = "";
    if pos < bytes.len() && bytes[pos] == b'.' {
        pos += 1;
        let frac_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        frac_digits = &text[frac_start..pos];
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return Err(QuantityError::NoDigits(text.to_string()));
    }
    let suffix = &text[pos..];
    let (format, exp10, exp2) = match suffix {
        "" => (Format::DecimalSi, 0, 0),
        "n" => (Format::DecimalSi, -9, 0),
        "u" => (Format::DecimalSi, -6, 0),
        "m" => (Format::DecimalSi, -3, 0),
        "k" => (Format::DecimalSi, 3, 0),
        "M" => (Format::DecimalSi, 6, 0),
        "G" => (Format::DecimalSi, 9, 0),
        "T" => (Format::DecimalSi, 12, 0),
        "P" => (Format::DecimalSi, 15, 0),
        "E" => (Format::DecimalSi, 18, 0),
        "Ki" => (Format::BinarySi, 0, 10),
        "Mi" => (Format::BinarySi, 0, 20),
        "Gi" => (Format::BinarySi, 0, 30),
        "Ti" => (Format::BinarySi, 0, 40),
        "Pi" => (Format::BinarySi, 0, 50),
        "Ei" => (Format::BinarySi, 0, 60),
        s if s.starts_with(['e', 'E']) => {
            let digits = &s[1..];
            let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QuantityError::Suffix {
                    text: text.to_string(),
                    suffix: s.to_string(),
                });
            }
            let e = digits.parse::<i32>().map_err(|_| QuantityError::Exponent {
                text: text.to_string(),
            })?;
            (Format::DecimalExponent, e, 0u32)
        }
        s => {
            return Err(QuantityError::Suffix {
                text: text.to_string(),
                suffix: s.to_string(),
            });
        }
    };
    let magnitude = magnitude_nanos(int_digits, frac_digits, exp10, exp2);
    let nanos = if negative { -magnitude } else { magnitude };
    Ok(Quantity { nanos, format })
}

/// |value| in nano units, rounded up, capped at `MAX_NANOS`, where
/// value = 0.digits × 10^exp10 × 2^exp2 written as `int.frac`.
fn magnitude_nanos(int_digits: &str, frac_digits: &str, exp10: i32, exp2: u32) -> i128 {
    // All digits as one integer D; value = D × 10^(exp10 - len(frac)) × 2^exp2.
    let all: Vec<u8> = int_digits
        .bytes()
        .chain(frac_digits.bytes())
        .map(|b| b - b'0')
        .skip_while(|d| *d == 0)
        .collect();
    // Trailing zeros move into the exponent.
    let trailing = all.iter().rev().take_while(|d| **d == 0).count();
    let significant = &all[..all.len() - trailing];
    if significant.is_empty() {
        return 0;
    }
    let n = significant.len() as i64;
    // Nano units: D × 10^k × 2^exp2.
    let k = i64::from(exp10) - frac_digits.len() as i64 + trailing as i64 + 9;
    // D ≥ 10^(n-1): at 10^28 nano units or more, the value is above the cap.
    if n - 1 + k >= 28 {
        return MAX_NANOS;
    }
    // D × 2^exp2 < 10^n × 10^19: below one nano unit, which rounds up to one.
    if n + k + 19 <= 0 {
        return 1;
    }
    let mut big = BigUint::default();
    for d in significant {
        big.mul_add_small(10, u32::from(*d));
    }
    for _ in 0..exp2 {
        big.mul_add_small(2, 0);
    }
    for _ in 0..k.max(0) {
        big.mul_add_small(10, 0);
    }
    let mut inexact = false;
    for _ in 0..(-k).max(0) {
        inexact |= big.div_small(10) != 0;
    }
    match big.to_u128().and_then(|v| i128::try_from(v).ok()) {
        Some(v) => {
            let v = if inexact { v.saturating_add(1) } else { v };
            v.min(MAX_NANOS)
        }
        None => MAX_NANOS,
    }
}

/// Just enough of an arbitrary-precision unsigned integer for exact parsing.
#[derive(Default)]
struct BigUint {
    /// Little-endian base 2^32 limbs.
    limbs: Vec<u32>,
}

impl BigUint {
    fn mul_add_small(&mut self, mul: u32, add: u32) {
        let mut carry = u64::from(add);
        for limb in &mut self.limbs {
            let v = u64::from(*limb) * u64::from(mul) + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            self.limbs.push(carry as u32);
        }
    }

    /// Divides in place; returns the remainder.
    fn div_small(&mut self, div: u32) -> u32 {
        let mut rem = 0u64;
        for limb in self.limbs.iter_mut().rev() {
            let v = (rem << 32) | u64::from(*limb);
            *limb = (v / u64::from(div)) as u32;
            rem = v % u64::from(div);
        }
        while self.limbs.last() == Some(&0) {
            self.limbs.pop();
        }
        rem as u32
    }

    fn to_u128(&self) -> Option<u128> {
        if self.limbs.len() > 4 {
            return None;
        }
        Some(
            self.limbs
                .iter()
                .rev()
                .fold(0u128, |acc, l| (acc << 32) | u128::from(*l)),
        )
    }
}
