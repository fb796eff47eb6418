//! Durations written as strings in `#[topic(..)]`: `"500ms"`, `"30s"`, `"5m"`, `"1h30m"`, `"7d"`.

use std::fmt;

/// What every duration error message ends with.
pub const EXPECTED: &str = "expected a duration like `500ms`, `30s`, `5m`, `1h30m` or `7d`";

/// Units from largest to smallest, with their length in milliseconds.
const UNITS: &[(&str, u64)] = &[
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    Empty,
    /// A number with no unit after it (`"100"`).
    MissingUnit,
    /// A unit with no number before it, or a stray character.
    Unexpected(char),
    /// A unit that is not one of `ms`, `s`, `m`, `h`, `d`.
    UnknownUnit(String),
    /// `"30m1h"` or `"1h1h"`.
    UnitOrder(String),
    Overflow,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Empty => f.write_str("the duration is empty"),
            DurationError::MissingUnit => {
                f.write_str("a number needs a unit (`ms`, `s`, `m`, `h` or `d`)")
            }
            DurationError::Unexpected(c) => write!(f, "unexpected `{c}`"),
            DurationError::UnknownUnit(u) => {
                write!(
                    f,
                    "unknown unit `{u}`; units are `ms`, `s`, `m`, `h` and `d`"
                )
            }
            DurationError::UnitOrder(u) => write!(
                f,
                "`{u}` comes after a unit that is not larger; write units from largest to smallest, each once"
            ),
            DurationError::Overflow => f.write_str("the duration is too long"),
        }
    }
}

/// Parses a duration into milliseconds.
pub fn parse_ms(text: &str) -> Result<u64, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut rest = text;
    let mut total: u64 = 0;
    // Index into UNITS of the last unit seen: each next unit must be smaller.
    let mut last_unit: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            let c = rest.chars().next().unwrap_or_default();
            return Err(DurationError::Unexpected(c));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::Overflow)?;
        rest = &rest[digits..];
        let letters = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        if letters == 0 {
            return match rest.chars().next() {
                None => Err(DurationError::MissingUnit),
                Some(c) => Err(DurationError::Unexpected(c)),
            };
        }
        let unit = &rest[..letters];
        rest = &rest[letters..];
        let Some(index) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(DurationError::UnknownUnit(unit.to_owned()));
        };
        if last_unit.is_some_and(|last| index <= last) {
            return Err(DurationError::UnitOrder(unit.to_owned()));
        }
        last_unit = Some(index);
        total = number
            .checked_mul(UNITS[index].1)
            .and_then(|ms| total.checked_add(ms))
            .ok_or(DurationError::Overflow)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_units() {
        assert_eq!(parse_ms("500ms"), Ok(500));
        assert_eq!(parse_ms("30s"), Ok(30_000));
        assert_eq!(parse_ms("5m"), Ok(300_000));
        assert_eq!(parse_ms("2h"), Ok(7_200_000));
        assert_eq!(parse_ms("7d"), Ok(604_800_000));
        assert_eq!(parse_ms("0ms"), Ok(0));
    }

    #[test]
    fn chained_units() {
        assert_eq!(parse_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_ms("1d2h3m4s5ms"), Ok(93_784_005));
        assert_eq!(parse_ms("1s500ms"), Ok(1_500));
    }

    #[test]
    fn malformed() {
        assert_eq!(parse_ms(""), Err(DurationError::Empty));
        assert_eq!(parse_ms("100"), Err(DurationError::MissingUnit));
        assert_eq!(parse_ms("1h30"), Err(DurationError::MissingUnit));
        assert_eq!(parse_ms("ms"), Err(DurationError::Unexpected('m')));
        assert_eq!(parse_ms(" 1s"), Err(DurationError::Unexpected(' ')));
        assert_eq!(parse_ms("1.5s"), Err(DurationError::Unexpected('.')));
        assert_eq!(parse_ms("1 s"), Err(DurationError::Unexpected(' ')));
        assert_eq!(
            parse_ms("10sec"),
            Err(DurationError::UnknownUnit("sec".into()))
        );
        assert_eq!(parse_ms("5M"), Err(DurationError::UnknownUnit("M".into())));
        assert_eq!(parse_ms("30m1h"), Err(DurationError::UnitOrder("h".into())));
        assert_eq!(parse_ms("1s1s"), Err(DurationError::UnitOrder("s".into())));
        assert_eq!(
            parse_ms("99999999999999999999ms"),
            Err(DurationError::Overflow)
        );
        assert_eq!(parse_ms("999999999999999d"), Err(DurationError::Overflow));
    }
}
