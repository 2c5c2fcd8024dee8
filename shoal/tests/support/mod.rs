//! Shared set-up for the tests that run real containers (as root): a private data
//! directory and cgroup parent per test, the busybox test image, and cleanup of every
//! container, cgroup and directory when the test ends, also when it fails.

#![allow(dead_code, unreachable_pub)]

pub mod daemons;
pub mod docker;
pub mod terminal;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The OCI layout of the test image, built once per test binary.
pub fn busybox_layout() -> &'static Path {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = repo.join("target/test-images").join(format!("busybox-{}", std::process::id()));
        let status = Command::new(repo.join("deploy/images/busybox"))
            .arg(&out)
            .status()
            .expect("run deploy/images/busybox");
        assert!(status.success(), "deploy/images/busybox failed: is busybox-static installed?");
        out
    })
}

/// One test's node: its own data dir and cgroup parent.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub cgroup_parent: String,
}

impl Node {
    /// A fresh node with the busybox image imported as `shoal/busybox`.
    pub fn with_busybox() -> Node {
        let node = Node::empty();
        node.ok(&["image", "import", busybox_layout().to_str().unwrap()]);
        node
    }

    /// A fresh node with no images.
    pub fn empty() -> Node {
        assert!(nix::unistd::geteuid().is_root(), "these tests run containers and need root");
        let dir = tempfile::Builder::new().prefix("shoal-test-").tempdir_in("/var/tmp").unwrap();
        let name = dir.path().file_name().unwrap().to_string_lossy().into_owned();
        Node { dir, cgroup_parent: format!("shoal-test/{name}") }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `shoal ARGS` against this node.
    pub fn shoal(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(args)
            .env("SHOAL_DATA_DIR", self.data_dir())
            .env("SHOAL_CGROUP_PARENT", &self.cgroup_parent)
            .output()
            .expect("the shoal binary runs")
    }

    /// Runs `shoal ARGS`, which must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.shoal(args);
        assert!(
            out.status.success(),
            "shoal {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `shoal container run --rm shoal/busybox sh -c SCRIPT`, returning (code, stdout, stderr).
    pub fn sh(&self, extra: &[&str], script: &str) -> (i32, String, String) {
        let mut args = vec!["container", "run", "--rm"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["shoal/busybox", "sh", "-c", script]);
        let out = self.shoal(&args);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The node's cgroup directories that exist now (parent included).
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .flatten()
            .map(|c| c.path().join(&self.cgroup_parent))
            .filter(|p| p.is_dir())
            .flat_map(|p| {
                let mut v: Vec<PathBuf> = std::fs::read_dir(&p)
                    .unwrap()
                    .flatten()
                    .map(|e| e.path())
                    .filter(|e| e.is_dir())
                    .collect();
                v.push(p);
                v
            })
            .collect()
    }

    /// Container cgroups left under the parent.
    pub fn container_cgroups(&self) -> Vec<PathBuf> {
        self.cgroup_dirs().into_iter().filter(|p| !p.ends_with(&self.cgroup_parent)).collect()
    }

    /// Mounts on the host that mention this node's data dir.
    pub fn host_mounts(&self) -> Vec<String> {
        let dir = self.data_dir().to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&dir))
            .map(String::from)
            .collect()
    }

    /// Pids of this node's shims still alive: processes named `shoal-shim` standing
    /// in one of the node's container state directories.
    pub fn shim_pids(&self) -> Vec<i32> {
        let containers = self.data_dir().join("containers");
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "shoal-shim")
            })
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(&containers))
            })
            .filter(|pid| {
                // Zombies (exited, not yet reaped by whoever adopted them) are gone.
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| !s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')))
            })
            .collect()
    }

    /// Same, as text for messages.
    pub fn shims(&self) -> Vec<String> {
        self.shim_pids().iter().map(|p| p.to_string()).collect()
    }

    /// Asserts that nothing of any container is left: cgroups, mounts, shims, state.
    pub fn assert_clean(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (cg, mounts, shims) = (self.container_cgroups(), self.host_mounts(), self.shims());
            let state: Vec<_> = std::fs::read_dir(self.data_dir().join("containers"))
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            if cg.is_empty() && mounts.is_empty() && shims.is_empty() && state.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "left behind: cgroups {cg:?}, mounts {mounts:?}, shims {shims:?}, state {state:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Remove every container (killing running ones), then the cgroup parent.
        let out = self.shoal(&["container", "ls", "-q"]);
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = self.shoal(&["container", "rm", "-f", id]);
        }
        let mut dirs = self.cgroup_dirs();
        dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for d in dirs {
            let _ = std::fs::remove_dir(d);
        }
        // Mounts left under the data dir (a task's tmpfs of secrets when a test
        // failed before its task went), deepest first, so the dir can go.
        for m in mounts_under(self.data_dir()) {
            let _ = nix::mount::umount2(m.as_path(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Mount points under `dir` (from /proc/self/mountinfo), deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
        .filter(|m| m.starts_with(dir) && m != dir)
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    out
}

/// Polls `cond` until it holds or `timeout` passes; panics with `what` on timeout.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
