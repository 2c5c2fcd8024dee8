//! The leader's disk-space guard: a write is refused before Raft sees it when the
//! data disk is nearly full, since a write that fails inside the log would stop the
//! manager.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::error::ManagerError;

/// Free space a leader keeps on its data disk: below it, writes are refused with
/// [`ManagerError::DiskFull`]. It covers the largest entry (1.5 MiB) many times
/// over, and the growth of the log and snapshot files; on a small disk, a
/// twentieth of it.
pub const MIN_FREE_BYTES: u64 = 32 << 20;

/// The space to keep free on a file system of `total` bytes.
fn to_keep(total: u64) -> u64 {
    MIN_FREE_BYTES.min(total / 20)
}

/// `Some((free, keep))` when `free` bytes of `total` are too few for a write.
fn shortfall(free: u64, total: u64) -> Option<(u64, u64)> {
    let keep = to_keep(total);
    (free < keep).then_some((free, keep))
}

/// The last look at the data disk's free space. A file system's free count is
/// costly to read (ext4 sums per-CPU counters): a busy leader looks once per 50 ms,
/// not once per write.
#[derive(Debug, Default)]
pub(super) struct Room(Mutex<Option<Look>>);

/// When the disk was looked at, and the `(free, keep)` it fell short by, if it did.
type Look = (Instant, Option<(u64, u64)>);

impl Room {
    /// Refuses a write when `dir`'s file system has less free than it should keep.
    pub(super) fn ensure(&self, dir: &Path) -> Result<(), ManagerError> {
        let short = {
            let mut last = self.0.lock().expect("room lock");
            match &*last {
                Some((at, short)) if at.elapsed() < Duration::from_millis(50) => *short,
                _ => {
                    let short = look(dir);
                    *last = Some((Instant::now(), short));
                    short
                }
            }
        };
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        match short {
            None => Ok(()),
            Some((free, keep)) => {
                Err(ManagerError::DiskFull { dir: dir.to_owned(), free_mib: mib(free), keep_mib: mib(keep) })
            }
        }
    }
}

/// The shortfall on `dir`'s file system now (none when it cannot be read: the
/// write then fails or succeeds on its own).
fn look(dir: &Path) -> Option<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    shortfall(st.blocks_available() * st.fragment_size(), st.blocks() * st.fragment_size())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn writes_are_refused_only_below_what_the_disk_should_keep() {
        // (free, total) → refused?
        let cases = [
            (10 * GIB, 100 * GIB, None),
            (32 * MIB, 100 * GIB, None),
            (32 * MIB - 1, 100 * GIB, Some((32 * MIB - 1, 32 * MIB))),
            (0, 100 * GIB, Some((0, 32 * MIB))),
            // A 100 MiB disk keeps a twentieth: 5 MiB.
            (6 * MIB, 100 * MIB, None),
            (4 * MIB, 100 * MIB, Some((4 * MIB, 5 * MIB))),
        ];
        for (free, total, want) in cases {
            assert_eq!(shortfall(free, total), want, "free {free} of {total}");
        }
    }

    #[test]
    fn the_refusal_names_the_dir_and_the_sizes() {
        let e = ManagerError::DiskFull { dir: "/var/lib/shoal".into(), free_mib: 1.0, keep_mib: 32.0 };
        let text = e.to_string();
        assert!(
            text.contains("/var/lib/shoal") && text.contains("1.0 MiB free") && text.contains("32.0 MiB"),
            "{text}"
        );
        assert!(text.contains("nothing was written"), "{text}");
    }
}
