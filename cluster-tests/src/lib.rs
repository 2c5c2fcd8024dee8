//! A multi-host Shoal cluster on one machine, for tests that break it on purpose.
//!
//! [`Cluster::builder`] makes one network namespace per host (a veth to a bridge in
//! a switch namespace of its own, addresses private to those namespaces), starts
//! the real `shoal` binary on each with its own data dir and cgroup parent, joins
//! them with tokens and hands out typed API clients. [`faults`] holds the tools
//! that break it: kill, restart, freeze, network partitions, latency and loss, a
//! full disk. Waits poll with a deadline and print the cluster's state when they
//! time out. Dropping the cluster removes every process, container, cgroup, mount
//! and namespace it made, also when a test panics.
//!
//! Scenarios run one at a time (a process-wide lock): their timings must not
//! depend on what another cluster does with the two cores.

pub mod faults;
mod host;
mod net;
mod report;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use shoal_api::client::Client;
use shoal_api::wire::{ClusterUpdate, ReadOptions};

pub use host::{Host, Role};
pub use net::Net;

/// Runs `f` to completion on a fresh single-threaded runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime").block_on(f)
}

/// The `shoal` binary under test: `$SHOAL_BIN`, or the one cargo built next to
/// this test (`target/<profile>/shoal`, built by `cargo test --workspace`).
pub fn shoal_bin() -> PathBuf {
    shoal_bin_found().unwrap_or_else(|missing| {
        panic!(
            "no shoal binary at {}: build it first (cargo build -p shoal), or set SHOAL_BIN",
            missing.display()
        )
    })
}

/// The `shoal` binary under test, or the path where it was looked for. Cleanup uses
/// this: a panic there, while a test already panics, would abort the whole run.
pub(crate) fn shoal_bin_found() -> Result<PathBuf, PathBuf> {
    if let Some(p) = std::env::var_os("SHOAL_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> -> target/<profile>/shoal
    let bin = exe.parent().and_then(Path::parent).map(|d| d.join("shoal")).expect("a target dir");
    if bin.is_file() { Ok(bin) } else { Err(bin) }
}

/// The test image (shoal/busybox) as an OCI layout, built once per test process
/// by `deploy/images/busybox`.
pub fn busybox_layout() -> &'static Path {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = repo.join("target/test-images").join(format!("cluster-busybox-{}", std::process::id()));
        let status = std::process::Command::new(repo.join("deploy/images/busybox"))
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run deploy/images/busybox");
        assert!(status.success(), "deploy/images/busybox failed: is busybox-static installed?");
        out
    })
}

/// One cluster at a time in this process.
fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What [`Cluster::builder`] makes.
#[derive(Debug, Clone)]
pub struct Builder {
    managers: usize,
    workers: usize,
    heartbeat: Option<Duration>,
    small_disks: Vec<(usize, u64)>,
    outside: bool,
}

impl Builder {
    /// Managers (at least 1; the first one makes the cluster).
    pub fn managers(mut self, n: usize) -> Self {
        self.managers = n.max(1);
        self
    }

    /// Workers.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// The dispatcher's heartbeat period (a node is down after 3 of them); Shoal's
    /// default (5 s) when not set.
    pub fn heartbeat(mut self, period: Duration) -> Self {
        self.heartbeat = Some(period);
        self
    }

    /// Host `i` (0-based: managers first, then workers) keeps its data on a tmpfs
    /// of `mib` MiB, so [`faults::fill_disk`] can fill it.
    pub fn small_disk(mut self, i: usize, mib: u64) -> Self {
        self.small_disks.push((i, mib));
        self
    }

    /// Also an "outside" namespace on the switch ([`Net::outside`]), which every
    /// daemon's containers forward DNS queries to (port 53 there).
    pub fn outside(mut self) -> Self {
        self.outside = true;
        self
    }

    /// Starts the cluster and waits until every node is ready.
    pub fn build(self) -> Cluster {
        let guard = exclusive();
        let mut cluster = Cluster {
            hosts: Vec::new(),
            net: Net::new(),
            outside: None,
            flags: Vec::new(),
            _exclusive: guard,
        };
        if self.outside {
            let (ns, addr) = cluster.net.outside();
            cluster.flags = vec!["--dns-upstream".into(), format!("{addr}:53")];
            cluster.outside = Some((ns, addr));
        }
        let disk = |i: usize| self.small_disks.iter().find(|(h, _)| *h == i).map(|(_, m)| *m);
        cluster.add_host(Role::Manager, disk(0));
        cluster.hosts[0].start(&["--init"]);
        cluster.wait("the first manager's API", Duration::from_secs(60), |c| {
            block_on(c.hosts[0].client().nodes(ReadOptions::default())).is_ok_and(|n| !n.is_empty())
        });
        if let Some(period) = self.heartbeat {
            let c = cluster.hosts[0].client();
            block_on(async {
                let info = c.cluster(ReadOptions::default()).await.expect("cluster info");
                let mut spec = info.spec.clone();
                spec.dispatcher.heartbeat_period = period;
                c.update_cluster(&ClusterUpdate { version: info.meta.version, spec }).await
            })
            .expect("set the heartbeat period");
        }
        cluster.wait_ready(0);
        for i in 1..self.managers + self.workers {
            let role = if i < self.managers { Role::Manager } else { Role::Worker };
            cluster.join(role, disk(i));
        }
        cluster
    }
}

/// A running cluster; dropped, it leaves nothing behind.
pub struct Cluster {
    hosts: Vec<Host>,
    // Hosts go first (their daemons use the network), then the network.
    net: Net,
    /// The outside namespace and its address, if asked for.
    outside: Option<(String, String)>,
    /// Flags every daemon gets.
    flags: Vec<String>,
    _exclusive: MutexGuard<'static, ()>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("hosts", &self.hosts).finish_non_exhaustive()
    }
}

impl Cluster {
    /// One manager, no workers, Shoal's defaults.
    pub fn builder() -> Builder {
        Builder { managers: 1, workers: 0, heartbeat: None, small_disks: Vec::new(), outside: false }
    }

    /// Every host, managers first.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Host `i`.
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// Host `i`, to start or stop it.
    pub fn host_mut(&mut self, i: usize) -> &mut Host {
        &mut self.hosts[i]
    }

    /// The host named `name` (m1, w2, ...).
    pub fn by_name(&self, name: &str) -> usize {
        self.hosts.iter().position(|h| h.name == name).unwrap_or_else(|| panic!("no host {name}"))
    }

    /// Indexes of the managers.
    pub fn managers(&self) -> Vec<usize> {
        (0..self.hosts.len()).filter(|i| self.hosts[*i].role == Role::Manager).collect()
    }

    /// A client of the first manager whose daemon runs and answers.
    pub fn client(&self) -> Client {
        let live: Vec<usize> = self.managers().into_iter().filter(|i| self.hosts[*i].is_running()).collect();
        for i in &live {
            let c = self.hosts[*i].client();
            if block_on(c.cluster(ReadOptions::default())).is_ok() {
                return c;
            }
        }
        self.hosts[*live.first().expect("a running manager")].client()
    }

    /// The manager that leads now, as its running peers see it.
    pub fn leader(&self) -> Option<usize> {
        let info = block_on(self.client().cluster(ReadOptions { consistent: true })).ok()?;
        let addr = &info.managers.iter().find(|m| m.leader)?.addr;
        self.hosts.iter().position(|h| h.role == Role::Manager && &h.raft_addr() == addr)
    }

    /// Waits until a leader is known and answers; returns it.
    pub fn wait_leader(&self, timeout: Duration) -> usize {
        let mut found = None;
        self.wait("a leader", timeout, |c| {
            found = c.leader().filter(|i| c.hosts[*i].is_running());
            found.is_some()
        });
        found.expect("a leader")
    }

    /// Waits until host `i`'s node is ready, as the cluster sees it.
    pub fn wait_ready(&self, i: usize) {
        let name = self.hosts[i].name.clone();
        // Matched by hostname: `node(name)` also takes an id prefix, and a random node id
        // may well start with another host's name ("m3…").
        self.wait(&format!("{name} to be ready"), Duration::from_secs(60), |c| {
            block_on(c.client().nodes(ReadOptions::default())).is_ok_and(|nodes| {
                nodes.iter().any(|n| {
                    n.description.hostname == name && n.status.state == shoal_api::node::NodeState::Ready
                })
            })
        });
    }

    /// Polls `cond` every 100 ms until it holds; past `timeout`, panics with `what`
    /// and the cluster's state (nodes, services, tasks, each daemon's last log lines).
    pub fn wait(&self, what: &str, timeout: Duration, mut cond: impl FnMut(&Cluster) -> bool) {
        let deadline = Instant::now() + timeout;
        while !cond(self) {
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting for {what}\n{}", report::state(self));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Adds a host (its namespace, data dir and image) without starting it.
    fn add_host(&mut self, role: Role, disk_mib: Option<u64>) -> usize {
        let i = self.hosts.len();
        let n = self.hosts.iter().filter(|h| h.role == role).count() + 1;
        let name = match role {
            Role::Manager => format!("m{n}"),
            Role::Worker => format!("w{n}"),
        };
        let (ns, addr) = self.net.host(i as u8 + 1);
        self.hosts.push(Host::new(&name, role, ns, addr, disk_mib, self.flags.clone()));
        i
    }

    /// Adds a host that joins the cluster as `role` (with a tmpfs data disk of
    /// `disk_mib` MiB if given); returns its index once its node is ready.
    pub fn join(&mut self, role: Role, disk_mib: Option<u64>) -> usize {
        let tokens = block_on(self.client().join_tokens()).expect("join tokens");
        let token = match role {
            Role::Manager => tokens.manager,
            Role::Worker => tokens.worker,
        };
        let through = self.hosts[self.wait_leader(Duration::from_secs(30))].raft_addr();
        let i = self.add_host(role, disk_mib);
        self.hosts[i].start(&["--join", &through, "--token", &token]);
        self.wait_ready(i);
        i
    }

    /// The cluster's state, as [`Cluster::wait`] prints it on a timeout.
    pub fn state(&self) -> String {
        report::state(self)
    }

    /// The test network (for faults).
    pub fn net(&self) -> &Net {
        &self.net
    }

    /// The outside namespace and its address ([`Builder::outside`]).
    pub fn outside(&self) -> Option<(&str, &str)> {
        self.outside.as_ref().map(|(ns, a)| (ns.as_str(), a.as_str()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Daemons first, then their containers, cgroups and mounts; the network last.
        for h in &mut self.hosts {
            h.kill();
        }
        for h in &mut self.hosts {
            h.clean();
        }
    }
}
