//! cgroup v2: one directory; controllers are enabled down the path through
//! `cgroup.subtree_control`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{CgroupError, Limits, Stats, create_dir, read_file, write_file};

/// A container's cgroup2 directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V2Cgroup {
    /// The mount point of cgroup2.
    pub root: PathBuf,
    /// The container's directory.
    pub dir: PathBuf,
}

impl V2Cgroup {
    pub(super) fn new(root: &Path, rel: &str) -> Self {
        V2Cgroup { root: root.to_owned(), dir: root.join(rel) }
    }

    pub(super) fn create(&self, limits: &Limits) -> Result<(), CgroupError> {
        create_dir(&self.dir)?;
        // Enable the controllers in every ancestor between the root and the container.
        let mut ancestors: Vec<&Path> =
            self.dir.ancestors().skip(1).take_while(|p| p.starts_with(&self.root)).collect();
        ancestors.reverse();
        for dir in ancestors {
            write_file(&dir.join("cgroup.subtree_control"), "+memory +cpu +pids")?;
        }
        let max = |v: u64| if v == 0 { "max".to_owned() } else { v.to_string() };
        std::fs::write(self.dir.join("memory.max"), max(limits.memory_bytes)).map_err(|source| {
            CgroupError::MemoryLimit { bytes: limits.memory_bytes, path: self.dir.join("memory.max"), source }
        })?;
        if self.dir.join("memory.swap.max").exists() {
            write_file(&self.dir.join("memory.swap.max"), "0")?;
        }
        let cpu = match limits.cfs_quota_us() {
            Some(q) => format!("{q} {}", super::CFS_PERIOD_US),
            None => format!("max {}", super::CFS_PERIOD_US),
        };
        write_file(&self.dir.join("cpu.max"), &cpu)?;
        write_file(&self.dir.join("pids.max"), &max(limits.pids))?;
        Ok(())
    }

    pub(super) fn stats(&self) -> Result<Stats, CgroupError> {
        let mut s = Stats {
            memory_bytes: read_file(&self.dir.join("memory.current"))?.trim().parse().unwrap_or(0),
            pids: read_file(&self.dir.join("pids.current"))?.trim().parse().unwrap_or(0),
            ..Stats::default()
        };
        let key = |text: &str, k: &str| {
            text.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse::<u64>().ok())
        };
        s.oom_kills = key(&read_file(&self.dir.join("memory.events"))?, "oom_kill ").unwrap_or(0);
        s.cpu_nanos = key(&read_file(&self.dir.join("cpu.stat"))?, "usage_usec ").unwrap_or(0) * 1_000;
        Ok(s)
    }
}
