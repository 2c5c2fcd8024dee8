//! One host of a test cluster: a network namespace, a data dir (optionally a small
//! tmpfs), a cgroup parent, and the `shoal daemon` process running in them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use shoal_api::client::{Client, Endpoint};

/// The port managers listen on for Raft and the dispatcher, inside each namespace.
pub(crate) const RAFT_PORT: u16 = 2377;

/// What a host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A manager (Raft member, API, controllers) that also runs tasks.
    Manager,
    /// A worker: an agent only.
    Worker,
}

/// One host and its daemon.
#[derive(Debug)]
pub struct Host {
    /// Its hostname in the cluster (m1, w1, ...).
    pub name: String,
    /// Manager or worker.
    pub role: Role,
    /// Its network namespace.
    pub netns: String,
    /// Its address, inside the test network.
    pub addr: String,
    dir: tempfile::TempDir,
    /// A tmpfs mounted on the data dir, for [`crate::faults::fill_disk`].
    small_disk: bool,
    cgroup_parent: String,
    /// The cluster's flags for every daemon, then those of its first start (`--init`,
    /// `--join`), given again on restarts
    /// as a service manager would: the daemon starts from its state and ignores them.
    flags: Vec<String>,
    child: Option<Child>,
}

impl Host {
    pub(crate) fn new(
        name: &str,
        role: Role,
        netns: String,
        addr: String,
        disk_mib: Option<u64>,
        flags: Vec<String>,
    ) -> Host {
        assert!(nix::unistd::geteuid().is_root(), "cluster tests run daemons and containers: run as root");
        let dir =
            tempfile::Builder::new().prefix("shoal-cluster-").tempdir_in("/var/tmp").expect("a data dir");
        if let Some(mib) = disk_mib {
            let opts = format!("size={mib}m,mode=0700");
            let out = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &opts, "tmpfs"])
                .arg(dir.path())
                .output()
                .expect("run mount");
            assert!(out.status.success(), "mount a tmpfs: {}", String::from_utf8_lossy(&out.stderr));
        }
        let leaf = dir.path().file_name().expect("a name").to_string_lossy().into_owned();
        let host = Host {
            name: name.to_owned(),
            role,
            netns,
            addr,
            dir,
            small_disk: disk_mib.is_some(),
            cgroup_parent: format!("shoal-test/{leaf}"),
            flags,
            child: None,
        };
        host.ok(&["image", "import", crate::busybox_layout().to_str().expect("a UTF-8 path")]);
        host
    }

    /// Its data dir.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its Raft address (`addr:2377`), as the cluster lists managers.
    pub fn raft_addr(&self) -> String {
        format!("{}:{RAFT_PORT}", self.addr)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("api.sock")
    }

    /// Starts its daemon for the first time, with `extra` flags (`--init`, `--join`).
    pub fn start(&mut self, extra: &[&str]) {
        self.flags.extend(extra.iter().map(|f| f.to_string()));
        self.spawn();
    }

    /// Starts its daemon again, with the flags of the first start; state comes from
    /// the data dir.
    pub fn restart(&mut self) {
        self.spawn();
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} already runs", self.name);
        let log = |ext: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join(ext))
                .expect("a log")
        };
        // nsenter joins only the network namespace (`ip netns exec` would also remount
        // /sys, hiding the cgroup hierarchies) and execs the daemon: the child is it.
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg(crate::shoal_bin())
            .args(["daemon", "--data-dir", &self.dir.path().to_string_lossy()])
            .args(["--listen-addr", &self.raft_addr(), "--api-socket", &self.socket().to_string_lossy()])
            .args(["--docker-socket", &self.dir.path().join("docker.sock").to_string_lossy()])
            .args(["--hostname", &self.name, "--cgroup-parent", &self.cgroup_parent])
            // Tests never reach outside: the image is imported.
            .args(["--pull", "never"])
            // Containers' DNS forwards nothing unless a test gives a resolver in a
            // namespace it made (the network rule).
            .args(["--dns-upstream", "none"])
            .args(&self.flags)
            .env("SHOAL_LOG", "info,openraft=warn")
            .stdout(Stdio::from(log("out")))
            .stderr(Stdio::from(log("log")))
            .spawn()
            .expect("start shoal daemon");
        self.child = Some(child);
    }

    /// Whether its daemon process runs (it may be frozen).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The daemon's pid, while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// SIGKILL: the daemon dies at once; its containers keep running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A frozen process dies of SIGKILL too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGCONT);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM);
        child.wait().ok().and_then(|s| s.code())
    }

    /// A client of its API socket.
    pub fn client(&self) -> Client {
        Client::new(Endpoint::Unix(self.socket())).expect("a client")
    }

    /// Runs `shoal ARGS` on this host's node (its data dir and cgroup parent).
    pub fn shoal(&self, args: &[&str]) -> Output {
        self.command(crate::shoal_bin(), args).output().expect("the shoal binary runs")
    }

    /// `bin ARGS` as [`Host::shoal`] runs it.
    fn command(&self, bin: PathBuf, args: &[&str]) -> Command {
        let mut c = Command::new(bin);
        c.args(args)
            .env("SHOAL_DATA_DIR", self.dir.path())
            .env("SHOAL_CGROUP_PARENT", &self.cgroup_parent)
            .env("SHOAL_HOST", format!("unix://{}", self.socket().display()))
            .env_remove("SHOAL_TOKEN");
        c
    }

    /// Runs `shoal ARGS`, asserting success; returns standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.shoal(args);
        assert!(
            out.status.success(),
            "shoal {args:?} on {} failed:\n{}\n{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Ids of the task containers that run on this host (`task.<task id>`).
    pub fn running_task_containers(&self) -> Vec<String> {
        let out = self.shoal(&["container", "ls"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("task.") && l.contains("running"))
            .filter_map(|l| l.split_whitespace().next())
            .map(|id| id.trim_start_matches("task.").to_owned())
            .collect()
    }

    /// The last `n` lines of its daemon's log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Removes its containers, cgroups and tmpfs (the daemon must be stopped).
    pub(crate) fn clean(&mut self) {
        // Without the binary no container was started; never panic here.
        if let Ok(bin) = crate::shoal_bin_found()
            && let Ok(out) = self.command(bin.clone(), &["container", "ls", "-q"]).output()
        {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = self.command(bin.clone(), &["container", "rm", "-f", id]).output();
            }
        }
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
            .map(|d| d.flatten().map(|c| c.path().join(&self.cgroup_parent)).filter(|p| p.is_dir()).collect())
            .unwrap_or_default();
        let children: Vec<PathBuf> = dirs
            .iter()
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        dirs.extend(children);
        dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for d in dirs {
            let _ = std::fs::remove_dir(d);
        }
        // Network namespaces the node bound under its data dir (sandboxes, overlays):
        // unmounted, deepest first, they go with the last process in them.
        let dir = self.dir.path().to_string_lossy().into_owned();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
            .filter(|m| m.starts_with(&format!("{dir}/")))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").arg("-l").arg(&m).output();
        }
        if self.small_disk {
            let _ = Command::new("umount").arg("-l").arg(self.dir.path()).output();
            self.small_disk = false;
        }
    }

    /// The path of a task's network namespace on this host.
    pub fn sandbox(&self, task_id: &str) -> PathBuf {
        self.dir.path().join("net").join("netns").join(format!("t-{task_id}"))
    }

    /// Runs a command in a task's container (`shoal container exec`); returns its
    /// exit code and output.
    pub fn exec(&self, task_id: &str, cmd: &[&str]) -> (i32, String) {
        self.exec_container(&format!("task.{task_id}"), cmd)
    }

    /// Runs a command in a container of this host; returns its exit code and output.
    pub fn exec_container(&self, id: &str, cmd: &[&str]) -> (i32, String) {
        let mut args = vec!["container", "exec", "--timeout", "20", id];
        args.extend_from_slice(cmd);
        let out = self.shoal(&args);
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// Its network namespace's name (`/run/netns/<name>`).
    pub fn netns(&self) -> &str {
        &self.netns
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
        self.clean();
    }
}
