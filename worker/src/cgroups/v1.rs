//! cgroup v1: one directory per controller (memory, cpu, cpuacct, pids, freezer,
//! devices), each under the same relative path.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{CgroupError, Limits, Stats, create_dir, read_file, write_file};

/// Controllers a container's cgroup lives in; memory, cpu and pids are required.
const CONTROLLERS: [(&str, bool); 6] = [
    ("memory", true),
    ("cpu", true),
    ("cpuacct", false),
    ("pids", true),
    ("freezer", false),
    ("devices", false),
];

/// Device nodes a container may use (Docker's list, plus full and the pty devices).
const ALLOWED_DEVICES: [&str; 10] = [
    "c 1:3 rwm",    // null
    "c 1:5 rwm",    // zero
    "c 1:7 rwm",    // full
    "c 1:8 rwm",    // random
    "c 1:9 rwm",    // urandom
    "c 5:0 rwm",    // tty
    "c 5:1 rwm",    // console
    "c 5:2 rwm",    // ptmx
    "c 136:* rwm",  // pts
    "c 10:200 rwm", // tun
];

/// A container's v1 cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1Cgroup {
    /// Controller name → directory, for the controllers mounted on this host.
    pub controllers: Vec<(String, PathBuf)>,
}

impl V1Cgroup {
    pub(super) fn new(root: &Path, rel: &str) -> Self {
        let controllers = CONTROLLERS
            .iter()
            .filter(|(name, _)| root.join(name).is_dir())
            .map(|(name, _)| (name.to_string(), root.join(name).join(rel)))
            .collect();
        V1Cgroup { controllers }
    }

    fn dir(&self, controller: &str) -> Option<&Path> {
        self.controllers.iter().find(|(n, _)| n == controller).map(|(_, d)| d.as_path())
    }

    pub(super) fn dirs(&self) -> Vec<PathBuf> {
        self.controllers.iter().map(|(_, d)| d.clone()).collect()
    }

    pub(super) fn create(&self, limits: &Limits) -> Result<(), CgroupError> {
        for (name, required) in CONTROLLERS {
            if required && self.dir(name).is_none() {
                return Err(CgroupError::MissingController(name));
            }
        }
        for (_, dir) in &self.controllers {
            create_dir(dir)?;
        }
        if let Some(mem) = self.dir("memory") {
            let limit =
                if limits.memory_bytes == 0 { "-1".to_owned() } else { limits.memory_bytes.to_string() };
            let set = |file: &str| {
                let path = mem.join(file);
                std::fs::write(&path, &limit).map_err(|source| CgroupError::MemoryLimit {
                    bytes: limits.memory_bytes,
                    path: path.clone(),
                    source,
                })
            };
            // memsw is memory+swap; it must stay >= the memory limit, so write it in
            // the order that keeps that true whichever way the limits move.
            let memsw = mem.join("memory.memsw.limit_in_bytes").exists();
            if memsw && limits.memory_bytes == 0 {
                set("memory.memsw.limit_in_bytes")?;
                set("memory.limit_in_bytes")?;
            } else {
                set("memory.limit_in_bytes")?;
                if memsw {
                    set("memory.memsw.limit_in_bytes")?;
                }
            }
        }
        if let Some(cpu) = self.dir("cpu") {
            write_file(&cpu.join("cpu.cfs_period_us"), &super::CFS_PERIOD_US.to_string())?;
            let quota = limits.cfs_quota_us().map_or("-1".to_owned(), |q| q.to_string());
            write_file(&cpu.join("cpu.cfs_quota_us"), &quota)?;
        }
        if let Some(pids) = self.dir("pids") {
            let max = if limits.pids == 0 { "max".to_owned() } else { limits.pids.to_string() };
            write_file(&pids.join("pids.max"), &max)?;
        }
        if let Some(devices) = self.dir("devices") {
            write_file(&devices.join("devices.deny"), "a")?;
            for rule in ALLOWED_DEVICES {
                write_file(&devices.join("devices.allow"), rule)?;
            }
        }
        Ok(())
    }

    pub(super) fn stats(&self) -> Result<Stats, CgroupError> {
        let mut s = Stats::default();
        let num = |p: PathBuf| read_file(&p).map(|t| t.trim().parse::<u64>().unwrap_or(0));
        if let Some(mem) = self.dir("memory") {
            s.memory_bytes = num(mem.join("memory.usage_in_bytes"))?;
            let control = read_file(&mem.join("memory.oom_control"))?;
            s.oom_kills = control
                .lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
        }
        if let Some(acct) = self.dir("cpuacct") {
            s.cpu_nanos = num(acct.join("cpuacct.usage"))?;
        }
        if let Some(pids) = self.dir("pids") {
            s.pids = num(pids.join("pids.current"))?;
        }
        Ok(s)
    }

    /// The memory controller's directory, for OOM event registration.
    pub fn memory_dir(&self) -> Option<&Path> {
        self.dir("memory")
    }
}
