//! The standard `process_*` metrics of this process, read from `/proc/self` at each
//! scrape (prometheus-client has no collector of its own for them): CPU time,
//! resident and virtual memory, open and maximum file descriptors, start time and
//! threads.

use std::path::{Path, PathBuf};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// What `/proc/<pid>/stat` says, in its own units (clock ticks, pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// User and system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Threads.
    pub threads: u64,
    /// Start time, in clock ticks after boot.
    pub start_ticks: u64,
    /// Virtual memory, bytes.
    pub virtual_bytes: u64,
    /// Resident set, pages.
    pub rss_pages: u64,
}

/// Reads the fields of a `stat` line; `None` if it is not one. The command name
/// (in parentheses) may hold spaces and parentheses itself, so fields are counted
/// after its last `)`.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let (_, rest) = line.rsplit_once(')')?;
    // Field 3 (state) is index 0.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |field: usize| f.get(field - 3)?.parse::<u64>().ok();
    Some(Stat {
        cpu_ticks: num(14)? + num(15)?,
        threads: num(20)?,
        start_ticks: num(22)?,
        virtual_bytes: num(23)?,
        rss_pages: num(24)?,
    })
}

/// The soft "Max open files" of a `limits` file (`None` if unlimited or absent).
pub fn parse_max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// The system's boot time (seconds since the epoch), from a `/proc/stat` text.
pub fn parse_boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()
}

/// One reading of a process, in base units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// User and system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident memory, bytes.
    pub resident_bytes: u64,
    /// Virtual memory, bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The limit on them (soft), if any.
    pub max_fds: Option<u64>,
    /// Start time, seconds since the epoch.
    pub start_time_seconds: f64,
    /// Threads.
    pub threads: u64,
}

/// Reads the process whose `/proc` directory is `dir`; `None` if its `stat` cannot be
/// read.
pub fn read(dir: &Path) -> Option<Reading> {
    let stat = parse_stat(&std::fs::read_to_string(dir.join("stat")).ok()?)?;
    let (ticks, page) = (clock_ticks(), page_size());
    let boot = std::fs::read_to_string("/proc/stat").ok().as_deref().and_then(parse_boot_time).unwrap_or(0);
    let open_fds = std::fs::read_dir(dir.join("fd")).map(|d| d.count() as u64).unwrap_or(0);
    let max_fds = std::fs::read_to_string(dir.join("limits")).ok().as_deref().and_then(parse_max_fds);
    Some(Reading {
        cpu_seconds: stat.cpu_ticks as f64 / ticks as f64,
        resident_bytes: stat.rss_pages * page,
        virtual_bytes: stat.virtual_bytes,
        open_fds,
        max_fds,
        start_time_seconds: boot as f64 + stat.start_ticks as f64 / ticks as f64,
        threads: stat.threads,
    })
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 { v as u64 } else { 100 }
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 { v as u64 } else { 4096 }
}

/// The `process_*` metrics of one process (this one by default).
#[derive(Debug, Clone)]
pub struct ProcessCollector {
    dir: PathBuf,
}

impl Default for ProcessCollector {
    fn default() -> Self {
        ProcessCollector { dir: PathBuf::from("/proc/self") }
    }
}

impl ProcessCollector {
    /// A collector of the process whose `/proc` directory is `dir`.
    pub fn of(dir: impl Into<PathBuf>) -> ProcessCollector {
        ProcessCollector { dir: dir.into() }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(r) = read(&self.dir) else { return Ok(()) };
        let cpu = ConstCounter::new(r.cpu_seconds);
        let m = encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?;
        cpu.encode(m)?;
        let gauges: [(&str, &str, Option<Unit>, Option<f64>); 6] = [
            (
                "process_resident_memory",
                "Resident memory size",
                Some(Unit::Bytes),
                Some(r.resident_bytes as f64),
            ),
            (
                "process_virtual_memory",
                "Virtual memory size",
                Some(Unit::Bytes),
                Some(r.virtual_bytes as f64),
            ),
            ("process_open_fds", "Open file descriptors", None, Some(r.open_fds as f64)),
            ("process_max_fds", "The limit on open file descriptors", None, r.max_fds.map(|m| m as f64)),
            (
                "process_start_time",
                "Start time of the process since the Unix epoch",
                Some(Unit::Seconds),
                Some(r.start_time_seconds),
            ),
            ("process_threads", "Threads of the process", None, Some(r.threads as f64)),
        ];
        for (name, help, unit, value) in gauges {
            let Some(value) = value else { continue };
            let g = ConstGauge::new(value);
            let m = encoder.encode_descriptor(name, help, unit.as_ref(), g.metric_type())?;
            g.encode(m)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn a_stat_line_is_read_past_a_tricky_name() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 5000 0 10 0 150 50 0 0 20 0 7 0 123456 \
                    104857600 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            s,
            Stat {
                cpu_ticks: 200,
                threads: 7,
                start_ticks: 123456,
                virtual_bytes: 104857600,
                rss_pages: 2560
            }
        );
        assert_eq!(parse_stat("no parenthesis"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None, "too short");
    }

    #[test]
    fn limits_and_boot_time_are_read() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        assert_eq!(parse_max_fds("Max open files  unlimited unlimited files"), None);
        assert_eq!(parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n"), Some(1_700_000_000));
    }

    #[test]
    fn this_process_is_read_and_follows_its_files() {
        let before = read(Path::new("/proc/self")).unwrap();
        assert!(before.threads >= 1 && before.resident_bytes > 0 && before.virtual_bytes > 0);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(before.start_time_seconds > 1.0e9 && before.start_time_seconds <= now + 1.0, "{before:?}");
        // Open files move open_fds (other tests' threads may open some too: at least 8 more).
        let files: Vec<_> = (0..16).map(|_| std::fs::File::open("/proc/self/stat").unwrap()).collect();
        let during = read(Path::new("/proc/self")).unwrap();
        assert!(during.open_fds >= before.open_fds + 8, "{before:?} then {during:?}");
        drop(files);
        // CPU time only grows: burn some.
        let mut x = 0u64;
        let t0 = std::time::Instant::now();
        while t0.elapsed() < std::time::Duration::from_millis(100) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let after = read(Path::new("/proc/self")).unwrap();
        assert!(after.cpu_seconds > before.cpu_seconds, "{before:?} then {after:?}");
    }

    #[test]
    fn the_collector_encodes_the_standard_names() {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ProcessCollector::default()));
        let text = crate::exposition::encode(&registry, crate::exposition::Format::Text);
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
            "process_threads",
        ] {
            assert!(text.contains(&format!("\n{name} ")), "{name} missing from:\n{text}");
        }
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"), "{text}");
        let none = ProcessCollector::of("/proc/no-such-process");
        let mut empty = Registry::default();
        empty.register_collector(Box::new(none));
        assert_eq!(crate::exposition::encode(&empty, crate::exposition::Format::Text), "");
    }
}
