//! Sizes and CPU counts as people write them: `"512M"`, `"1.5g"`, `"0.5"` CPUs.
//! Compose files and CLI flags use these; the object model stores plain integers
//! (bytes and nano-CPUs).

/// Why a size or CPU amount could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// A byte size that is not a number with an optional unit.
    #[error("invalid size {0:?}: write a number with an optional unit b, k, m or g (\"512m\", \"1.5g\")")]
    Size(String),
    /// A CPU amount that is not a positive decimal number.
    #[error("invalid CPU amount {0:?}: write a decimal number of CPUs such as \"0.5\" or \"2\"")]
    Cpus(String),
}

/// Nano-CPUs in one CPU.
pub const NANO_CPUS_PER_CPU: u64 = 1_000_000_000;

/// Parses a byte size: a decimal number with an optional binary unit
/// (`b`, `k`/`kb`/`kib`, `m`, `g`, `t`, any case). `"512m"` is 512 MiB, as in Docker.
pub fn parse_bytes(input: &str) -> Result<u64, UnitError> {
    let err = || UnitError::Size(input.to_owned());
    let s = input.trim().to_ascii_lowercase();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let shift = match unit.trim() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(err()),
    };
    let value: f64 = number.parse().map_err(|_| err())?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return Err(err());
    }
    Ok(bytes.round() as u64)
}

/// Formats bytes with the largest binary unit that keeps it whole: `536870912` is `"512MiB"`.
pub fn format_bytes(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

/// Parses a CPU amount (`"0.5"`, `"2"`) into nano-CPUs, to nine decimal places.
pub fn parse_cpus(input: &str) -> Result<u64, UnitError> {
    let err = || UnitError::Cpus(input.to_owned());
    let s = input.trim();
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if (whole.is_empty() && frac.is_empty())
        || frac.len() > 9
        || !whole.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
    {
        return Err(err());
    }
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| err())? };
    let frac_nanos: u64 = format!("{frac:0<9}").parse().map_err(|_| err())?;
    whole.checked_mul(NANO_CPUS_PER_CPU).and_then(|n| n.checked_add(frac_nanos)).ok_or_else(err)
}

/// Formats nano-CPUs as a decimal CPU count: `1500000000` is `"1.5"`.
pub fn format_cpus(nano: u64) -> String {
    let frac = format!("{:09}", nano % NANO_CPUS_PER_CPU);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{}", nano / NANO_CPUS_PER_CPU)
    } else {
        format!("{}.{frac}", nano / NANO_CPUS_PER_CPU)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for (text, want) in [
            ("1024", 1024),
            ("512m", 512 << 20),
            ("512M", 512 << 20),
            ("1.5g", 3 << 29),
            ("64KiB", 64 << 10),
            ("10b", 10),
            ("2 GB", 2 << 30),
        ] {
            assert_eq!(parse_bytes(text), Ok(want), "{text}");
        }
        for bad in ["", "m", "12q", "-1m", "1.2.3g", "99999999999t"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
        assert_eq!(format_bytes(512 << 20), "512MiB");
        assert_eq!(format_bytes(1000), "1000B");
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("0.5"), Ok(500_000_000));
        assert_eq!(parse_cpus("2"), Ok(2_000_000_000));
        assert_eq!(parse_cpus(".25"), Ok(250_000_000));
        assert_eq!(parse_cpus("0.000000001"), Ok(1));
        for bad in ["", ".", "-1", "1e3", "0.0000000001", "abc", "99999999999999"] {
            assert!(parse_cpus(bad).is_err(), "{bad}");
        }
        assert_eq!(format_cpus(1_500_000_000), "1.5");
        assert_eq!(format_cpus(2_000_000_000), "2");
    }
}
