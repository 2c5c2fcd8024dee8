//! Durations as people write them (`"1m30s"`, `"500ms"`, Go's syntax, which Docker and
//! compose files use) and their serde form for the API.
//!
//! On the wire a duration is a string such as `"10s"`; a bare integer is read as
//! nanoseconds, as Docker's API sends it, so clients of either habit are understood.

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserializer, Serializer};

/// Why a duration string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (write it like \"10s\", \"1m30s\" or \"250ms\")")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
];

/// Parses Go's duration syntax: a sequence of decimal numbers, each with a unit
/// (`ns`, `us`, `ms`, `s`, `m`, `h`), such as `"1h30m"` or `"1.5s"`. `"0"` is zero.
/// Negative durations are refused: no Shoal setting means anything by them.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError { input: input.to_owned(), reason };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    if s.starts_with('-') {
        return Err(err("it is negative"));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| err("a number has no unit"))?;
        if number_len == 0 {
            return Err(err("expected a number"));
        }
        let (number, after) = rest.split_at(number_len);
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, scale)| *scale)
            .ok_or_else(|| err("unknown unit"))?;
        total = total
            .checked_add(scaled(number, scale).ok_or_else(|| err("bad number"))?)
            .ok_or_else(|| err("too large"))?;
        rest = after;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| err("too large"))?;
    // The remainder is below 1e9, so it fits in u32.
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// `number` (decimal, maybe with a fraction) times `scale` nanoseconds, exactly.
fn scaled(number: &str, scale: u128) -> Option<u128> {
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() || frac.contains('.') {
        return None;
    }
    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let mut value = whole.checked_mul(scale)?;
    let mut place = scale;
    for digit in frac.chars() {
        place /= 10;
        value = value.checked_add(u128::from(digit.to_digit(10)?) * place)?;
    }
    Some(value)
}

/// Formats a duration the way [`parse`] reads it, shortest first: `"1m30s"`, `"250ms"`,
/// `"0s"`.
pub fn format(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let nanos = d.subsec_nanos();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if m > 0 {
        let _ = write!(out, "{m}m");
    }
    if s > 0 || (nanos > 0 && secs > 0) {
        if nanos == 0 {
            let _ = write!(out, "{s}s");
        } else {
            let frac = format!("{nanos:09}");
            let _ = write!(out, "{s}.{}s", frac.trim_end_matches('0'));
        }
    } else if nanos > 0 {
        if nanos.is_multiple_of(1_000_000) {
            let _ = write!(out, "{}ms", nanos / 1_000_000);
        } else if nanos.is_multiple_of(1_000) {
            let _ = write!(out, "{}us", nanos / 1_000);
        } else {
            let _ = write!(out, "{nanos}ns");
        }
    }
    out
}

/// Serializes as the string form.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// Reads the string form or an integer number of nanoseconds (read as they come, with
/// no buffering or trial parses: specs hold many durations).
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Duration;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a duration such as \"10s\" or integer nanoseconds")
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Duration, E> {
            Ok(Duration::from_nanos(n))
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Duration, E> {
            u64::try_from(n).map(Duration::from_nanos).map_err(|_| E::custom("a duration cannot be negative"))
        }
        fn visit_str<E: serde::de::Error>(self, t: &str) -> Result<Duration, E> {
            parse(t).map_err(E::custom)
        }
    }
    d.deserialize_any(Visitor)
}

/// The same serde form for an optional duration (`null` or absent is `None`).
pub mod option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes `Some` as the string form and `None` as null.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    /// Reads null, the string form, or integer nanoseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super")] Duration);
        Ok(Option::<Wrap>::deserialize(d)?.map(|Wrap(d)| d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_syntax() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("10s", ms(10_000)),
            ("1m30s", ms(90_000)),
            ("1.5s", ms(1_500)),
            (".5s", ms(500)),
            ("250ms", ms(250)),
            ("2h", ms(7_200_000)),
            ("1h2m3s4ms", ms(3_723_004)),
            ("100us", Duration::from_micros(100)),
            ("7ns", Duration::from_nanos(7)),
        ] {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn refuses_bad_input_with_a_reason() {
        for (text, reason) in [
            ("", "it is empty"),
            ("-1s", "it is negative"),
            ("10", "a number has no unit"),
            ("10x", "unknown unit"),
            ("s", "expected a number"),
            ("1..2s", "bad number"),
            ("99999999999999999999h", "too large"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.reason, reason, "{text}");
            assert!(e.to_string().contains("1m30s"), "the message says how to write it");
        }
    }

    #[test]
    fn format_round_trips() {
        for text in ["0s", "10s", "1m30s", "1.5s", "250ms", "2h", "1h0m0s", "100us", "7ns", "3m"] {
            let d = parse(text).unwrap();
            assert_eq!(parse(&format(d)).unwrap(), d, "{text} -> {}", format(d));
        }
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn serde_accepts_strings_and_nanoseconds() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct T {
            #[serde(with = "super")]
            d: Duration,
        }
        let t: T = serde_json::from_str(r#"{"d":"5s"}"#).unwrap();
        assert_eq!(t.d, Duration::from_secs(5));
        let t: T = serde_json::from_str(r#"{"d":5000000000}"#).unwrap();
        assert_eq!(t.d, Duration::from_secs(5));
        assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"d":"5s"}"#);
        assert!(serde_json::from_str::<T>(r#"{"d":"5 parsecs"}"#).is_err());
        let wrong = serde_json::from_str::<T>(r#"{"d":true}"#).unwrap_err().to_string();
        assert!(wrong.contains(r#"expected a duration such as "10s" or integer nanoseconds"#), "{wrong}");
        let negative = serde_json::from_str::<T>(r#"{"d":-5}"#).unwrap_err().to_string();
        assert!(negative.contains("cannot be negative"), "{negative}");
        // Read through serde's buffering too (flattened fields, YAML).
        #[derive(serde::Deserialize)]
        struct Outer {
            #[serde(flatten)]
            t: T,
        }
        let o: Outer = serde_json::from_str(r#"{"d":"1m"}"#).unwrap();
        assert_eq!(o.t.d, Duration::from_secs(60));
        let y: T = serde_yaml_ng::from_str("d: 250ms").unwrap();
        assert_eq!(y.d, Duration::from_millis(250));
    }
}
