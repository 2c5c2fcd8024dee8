//! Byte counts for people, as docker prints them: image sizes in decimal units with
//! three significant digits (`4.86MB`), memory in binary units with four (`12.3MiB`).
//! Also the host's memory, the limit of a container without one.

/// An image size: `4864000` is `"4.86MB"` (docker's `HumanSizeWithPrecision(_, 3)`).
pub(crate) fn decimal_size(bytes: u64) -> String {
    scaled(bytes, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB"], 3)
}

/// A memory amount: `12897484` is `"12.3MiB"` (docker's `BytesSize`).
pub(crate) fn binary_size(bytes: u64) -> String {
    scaled(bytes, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB"], 4)
}

/// The host's memory (`MemTotal` of /proc/meminfo): the limit docker shows for a
/// container without one.
pub(crate) fn host_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `bytes` in the largest unit that leaves at least 1, to `digits` significant digits
/// with trailing zeros dropped (as Go's `%.*g` prints numbers below 1000).
fn scaled(bytes: u64, base: f64, units: &[&str], digits: i32) -> String {
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= base && unit + 1 < units.len() {
        v /= base;
        unit += 1;
    }
    let magnitude = if v >= 1.0 { v.log10().floor() as i32 } else { 0 };
    let decimals = (digits - 1 - magnitude).max(0) as usize;
    let mut text = format!("{v:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    format!("{text}{}", units[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_sizes_are_decimal_with_three_digits() {
        assert_eq!(decimal_size(0), "0B");
        assert_eq!(decimal_size(999), "999B");
        assert_eq!(decimal_size(1_000), "1kB");
        assert_eq!(decimal_size(4_864_000), "4.86MB");
        assert_eq!(decimal_size(4_868_000), "4.87MB");
        assert_eq!(decimal_size(12_340_000), "12.3MB");
        assert_eq!(decimal_size(123_456_789), "123MB");
        assert_eq!(decimal_size(1_500_000_000), "1.5GB");
    }

    #[test]
    fn memory_is_binary_with_four_digits() {
        assert_eq!(binary_size(512), "512B");
        assert_eq!(binary_size(1 << 30), "1GiB");
        assert_eq!(binary_size(64 << 20), "64MiB");
        assert_eq!(binary_size(12_897_485), "12.3MiB");
        assert_eq!(binary_size(12_939_428), "12.34MiB");
        assert_eq!(binary_size(1536), "1.5KiB");
    }
}
