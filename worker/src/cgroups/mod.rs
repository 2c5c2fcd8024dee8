//! cgroups for containers on v1, v2 and hybrid hosts: detection, creating a container's
//! cgroup with its limits, moving a process in, stats, OOM counters, and removal.
//!
//! Hybrid hosts (v1 controllers plus a cgroup2 mount at `/sys/fs/cgroup/unified`) are
//! driven through v1, as runc and youki do: the cgroup2 mount there holds no controller
//! a container needs.

mod v1;
mod v2;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, TMPFS_MAGIC, statfs};
use serde::{Deserialize, Serialize};

/// Errors from cgroup operations; each names the file or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// `/sys/fs/cgroup` is neither a cgroup2 mount nor a tmpfs of v1 hierarchies.
    #[error("no cgroup filesystem at {0}: mount cgroups (v1 or v2) there")]
    NotMounted(PathBuf),
    /// A v1 controller the container needs is not mounted.
    #[error("the cgroup v1 controller {0:?} is not mounted under /sys/fs/cgroup; mount it or use cgroup v2")]
    MissingController(&'static str),
    /// Reading or writing a cgroup file failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done ("write", "read", "create", "remove").
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error from the kernel.
        #[source]
        source: io::Error,
    },
    /// The kernel refused a memory limit (e.g. below current usage or the minimum).
    #[error("the kernel refused memory limit {bytes} bytes in {path}")]
    MemoryLimit {
        /// The limit asked for.
        bytes: u64,
        /// The file written.
        path: PathBuf,
        /// The error from the kernel.
        #[source]
        source: io::Error,
    },
    /// Processes are still in the cgroup after being killed.
    #[error("cgroup {0} still has processes after SIGKILL")]
    Busy(PathBuf),
}

pub(crate) fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Io { op: "write", path: path.to_owned(), source })
}

pub(crate) fn read_file(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Io { op: "read", path: path.to_owned(), source })
}

/// Which cgroup layout the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Only v1 hierarchies.
    Legacy,
    /// v1 hierarchies plus a cgroup2 mount at `unified`; driven as v1.
    Hybrid,
    /// Only cgroup2.
    Unified,
}

/// Detects the layout of the cgroup mount at `root` (normally `/sys/fs/cgroup`).
pub fn detect(root: &Path) -> Result<Layout, CgroupError> {
    let fs_type = |p: &Path| statfs(p).map(|s| s.filesystem_type()).ok();
    match fs_type(root) {
        Some(t) if t == CGROUP2_SUPER_MAGIC => Ok(Layout::Unified),
        Some(t) if t == TMPFS_MAGIC => {
            if fs_type(&root.join("unified")) == Some(CGROUP2_SUPER_MAGIC) {
                Ok(Layout::Hybrid)
            } else {
                Ok(Layout::Legacy)
            }
        }
        _ => Err(CgroupError::NotMounted(root.to_owned())),
    }
}

/// Limits applied to a container's cgroup. Zero means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory in bytes. Swap is not allowed on top of it: the limit is the limit, as in
    /// Kubernetes (Docker would allow as much swap again).
    pub memory_bytes: u64,
    /// CPU in billionths of a CPU, applied as a CFS quota over a 100ms period.
    pub nano_cpus: u64,
    /// Processes and threads.
    pub pids: u64,
}

/// CFS period used for CPU quotas, as Docker uses.
pub const CFS_PERIOD_US: u64 = 100_000;

impl Limits {
    /// The CFS quota for `nano_cpus`, or `None` when unlimited.
    pub fn cfs_quota_us(&self) -> Option<u64> {
        (self.nano_cpus > 0).then(|| (self.nano_cpus * CFS_PERIOD_US / 1_000_000_000).max(1_000))
    }
}

/// Resource usage of a container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Memory in use, bytes.
    pub memory_bytes: u64,
    /// CPU time used, nanoseconds.
    pub cpu_nanos: u64,
    /// Processes and threads.
    pub pids: u64,
    /// Processes the kernel OOM-killed in this cgroup.
    pub oom_kills: u64,
}

/// Where container cgroups go on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Driver {
    /// Mount point of the cgroup filesystems.
    pub root: PathBuf,
    /// The host's layout.
    pub layout: Layout,
    /// Parent cgroup path (relative, e.g. `shoal`) under which containers get theirs.
    pub parent: String,
}

impl Driver {
    /// Detects the layout under `/sys/fs/cgroup` and uses `parent` for containers.
    pub fn detect(parent: &str) -> Result<Driver, CgroupError> {
        let root = PathBuf::from("/sys/fs/cgroup");
        let layout = detect(&root)?;
        Ok(Driver { root, layout, parent: parent.trim_matches('/').to_owned() })
    }

    /// Creates the cgroup of container `id` with `limits`, replacing a stale one.
    pub fn create(&self, id: &str, limits: &Limits) -> Result<Cgroup, CgroupError> {
        let cg = self.cgroup(id);
        match &cg {
            Cgroup::V1(c) => c.create(limits)?,
            Cgroup::V2(c) => c.create(limits)?,
        }
        Ok(cg)
    }

    /// The cgroup of container `id` (which may or may not exist).
    pub fn cgroup(&self, id: &str) -> Cgroup {
        let rel = format!("{}/{id}", self.parent);
        match self.layout {
            Layout::Legacy | Layout::Hybrid => Cgroup::V1(v1::V1Cgroup::new(&self.root, &rel)),
            Layout::Unified => Cgroup::V2(v2::V2Cgroup::new(&self.root, &rel)),
        }
    }
}

/// One container's cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cgroup {
    /// One directory per v1 controller.
    V1(v1::V1Cgroup),
    /// One cgroup2 directory.
    V2(v2::V2Cgroup),
}

impl Cgroup {
    /// Moves the calling process into the cgroup. It must be single-threaded: on v1 it
    /// joins through each controller's `tasks` file as "0" (itself), which the kernel
    /// does without taking its global threadgroup lock, whose RCU grace period
    /// otherwise costs ~10 ms per container start; v2 writes `cgroup.procs`.
    pub fn join_self(&self) -> Result<(), CgroupError> {
        let file = match self {
            Cgroup::V1(_) => "tasks",
            Cgroup::V2(_) => "cgroup.procs",
        };
        for dir in self.dirs() {
            write_file(&dir.join(file), "0")?;
        }
        Ok(())
    }

    /// Every directory of the cgroup (one per v1 controller, or the one v2 directory).
    pub fn dirs(&self) -> Vec<PathBuf> {
        match self {
            Cgroup::V1(c) => c.dirs(),
            Cgroup::V2(c) => vec![c.dir.clone()],
        }
    }

    /// Current usage.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        match self {
            Cgroup::V1(c) => c.stats(),
            Cgroup::V2(c) => c.stats(),
        }
    }

    /// The file whose `oom_kill N` line counts the cgroup's OOM kills: v1
    /// `memory.oom_control` (which also signals an eventfd registered through
    /// `cgroup.event_control`), v2 `memory.events`.
    pub fn oom_file(&self) -> Option<PathBuf> {
        match self {
            Cgroup::V1(c) => c.memory_dir().map(|d| d.join("memory.oom_control")),
            Cgroup::V2(c) => Some(c.dir.join("memory.events")),
        }
    }

    /// Pids of every process in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .dirs()
            .iter()
            .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect::<Vec<_>>())
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Kills every process left and removes the cgroup's directories.
    pub fn remove(&self) -> Result<(), CgroupError> {
        for _ in 0..50 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for dir in self.dirs().iter().rev() {
            remove_dir_retrying(dir)?;
        }
        Ok(())
    }
}

/// `rmdir` a cgroup directory, retrying while the kernel still tears down its tasks.
fn remove_dir_retrying(dir: &Path) -> Result<(), CgroupError> {
    let mut last = None;
    for _ in 0..500 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                last = Some(e);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(source) => return Err(CgroupError::Io { op: "remove", path: dir.to_owned(), source }),
        }
    }
    match last {
        Some(_) => Err(CgroupError::Busy(dir.to_owned())),
        None => Ok(()),
    }
}

pub(crate) fn create_dir(path: &Path) -> Result<(), CgroupError> {
    fs::create_dir_all(path).map_err(|source| CgroupError::Io { op: "create", path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_from_nano_cpus() {
        let l = |n| Limits { nano_cpus: n, ..Limits::default() };
        assert_eq!(l(0).cfs_quota_us(), None);
        assert_eq!(l(1_500_000_000).cfs_quota_us(), Some(150_000));
        assert_eq!(l(250_000_000).cfs_quota_us(), Some(25_000));
        assert_eq!(l(1_000_000).cfs_quota_us(), Some(1_000), "the kernel's minimum quota is 1ms");
    }

    #[test]
    fn this_host_is_detected() {
        // Every machine this project runs on mounts cgroups; the kind is what varies.
        assert!(detect(Path::new("/sys/fs/cgroup")).is_ok());
        assert!(matches!(detect(Path::new("/proc")), Err(CgroupError::NotMounted(_))));
    }
}
