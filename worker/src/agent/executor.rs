//! The agent's hands on a real node, the [`Node`] the daemon uses: containers for
//! tasks through the built-in runtime, images found locally or pulled, secrets and
//! configs on a tmpfs of the task's own ([`payloads`](super::payloads)). Every call here blocks (the runtime and the
//! image store are synchronous) except the pull; the agent runs them on tokio's
//! blocking pool.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use shoal_api::netmap::NetItem;
use shoal_api::task_spec::{HealthCheck, Mount};
use shoal_api::{Task, TaskState};

use super::node::{Node, Payloads, TaskError};
use super::payloads::{self, PayloadError};
use super::plan::Local;
use crate::image::registry::{self, RegistryError, RegistryOptions};
use crate::image::{ImageDefaults, ImageError, ImageStore};
use crate::network::NetworkError;
use crate::network::wiring::Wiring;
use crate::runtime::config::{self, ConfigError, MountPoint};
use crate::runtime::{Helper, NewContainer, Runtime, RuntimeError, Status};

/// Container ids of tasks start with this, so containers started by hand with
/// `shoal container run` are never touched.
pub const PREFIX: &str = "task.";

/// Whether the agent pulls images it does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull when the image is not in the local store (Docker's default).
    Missing,
    /// Never pull: a missing image rejects the task.
    Never,
}

/// Runs tasks' containers on this node.
#[derive(Debug)]
pub struct Executor {
    runtime: Arc<Runtime>,
    images: ImageStore,
    data_dir: PathBuf,
    pull: PullPolicy,
    registry: RegistryOptions,
    /// Each image's HEALTHCHECK, by the name tasks use.
    image_checks: std::sync::Mutex<HashMap<String, Option<HealthCheck>>>,
    /// The node's networking; without it, a task's container gets an empty network
    /// namespace of its own (loopback only).
    net: Option<Arc<Wiring>>,
    /// Containers whose end was counted in the metrics (each counts once).
    counted: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Containers being started: until the runtime has recorded the start, they
    /// look lost, and are not counted.
    starting: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Each task container's service and slot, for the per-container metrics.
    owners: crate::metrics::containers::Owners,
}

/// Why the built-in runtime could not do what the agent asked.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The runtime re-executes this binary, through a read-only view of it or a sealed
    /// copy, for its shims.
    #[error(
        "cannot make a read-only view or a sealed copy of this binary for the container shims: check that /proc/self/exe is readable"
    )]
    Seal(#[source] std::io::Error),
    /// The runtime's state directory or cgroups are not usable.
    #[error("cannot set up the container runtime")]
    Runtime(#[source] RuntimeError),
    /// The image store is not usable.
    #[error("cannot open the image store")]
    Images(#[source] ImageError),
    /// The containers could not be listed.
    #[error("cannot list the containers on this node")]
    List(#[source] RuntimeError),
    /// The image is missing and the node does not pull.
    #[error("image {image} is not on this node, and the node does not pull (--pull never)")]
    NotPulled {
        /// The task's image.
        image: String,
    },
    /// The pull failed.
    #[error("pull {image}")]
    Pull {
        /// The task's image.
        image: String,
        /// Why.
        #[source]
        source: RegistryError,
    },
    /// The image is not in the store (or is damaged).
    #[error("find the image {image}")]
    Image {
        /// The task's image.
        image: String,
        /// Why.
        #[source]
        source: ImageError,
    },
    /// The spec and the image do not make a process.
    #[error("the task's spec cannot run")]
    Spec(#[source] ConfigError),
    /// A volume's directory could not be made.
    #[error("create volume {name}")]
    Volume {
        /// The volume.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The task's secrets and configs could not be given to it.
    #[error("give the task its secrets and configs")]
    Payloads(#[source] PayloadError),
    /// The container did not start.
    #[error("start the task's container")]
    Start(#[source] RuntimeError),
    /// The health check could not run in the container.
    #[error("run the health check in the task's container")]
    Health(#[source] RuntimeError),
    /// The container could not be stopped.
    #[error("stop the task's container")]
    Stop(#[source] RuntimeError),
    /// The container could not be removed.
    #[error("remove the task's container")]
    Remove(#[source] RuntimeError),
    /// The task's files could not be removed.
    #[error("remove the task's files")]
    RemoveFiles(#[source] std::io::Error),
    /// The task's network sandbox could not be wired.
    #[error("wire the task's networks")]
    Network(#[source] NetworkError),
}

impl TaskError for ExecutorError {
    fn task_state(&self) -> TaskState {
        use ExecutorError as E;
        match self {
            E::NotPulled { .. }
            | E::Pull { .. }
            | E::Image { .. }
            | E::Spec(_)
            | E::Volume { .. }
            | E::Payloads(_) => TaskState::Rejected,
            E::Seal(_)
            | E::Runtime(_)
            | E::Images(_)
            | E::List(_)
            | E::Start(_)
            | E::Health(_)
            | E::Stop(_)
            | E::Remove(_)
            | E::RemoveFiles(_)
            | E::Network(_) => TaskState::Failed,
        }
    }

    fn summary(&self) -> &'static str {
        use ExecutorError as E;
        match self {
            E::NotPulled { .. } | E::Image { .. } => "image not found",
            E::Pull { .. } => "pull failed",
            E::Spec(_) => "bad spec",
            E::Volume { .. } => "volume",
            E::Payloads(PayloadError::Missing { .. }) => "missing payload",
            E::Payloads(_) => "payload",
            E::Start(_) | E::Seal(_) | E::Runtime(_) | E::Images(_) => "start failed",
            E::Health(_) => "health check failed",
            E::List(_) => "list failed",
            E::Stop(_) => "stop failed",
            E::Remove(_) | E::RemoveFiles(_) => "remove failed",
            E::Network(_) => "network failed",
        }
    }
}

/// The hostname of a task's container: the spec's, or the task id's first 12
/// characters, as Docker's container id.
fn hostname(task: &Task) -> String {
    task.spec.container.hostname.clone().unwrap_or_else(|| task.id.chars().take(12).collect())
}

/// The container id of a task.
pub fn container_id(task_id: &str) -> String {
    format!("{PREFIX}{task_id}")
}

impl Executor {
    /// An executor keeping images and containers under `data_dir`, cgroups under
    /// `cgroup_parent`. The runtime re-executes this binary (through a read-only view of
    /// it) for its shims, because the agent's process has threads.
    pub fn new(data_dir: &Path, cgroup_parent: &str, pull: PullPolicy) -> Result<Executor, ExecutorError> {
        let helper = Helper::sealed_self().map_err(ExecutorError::Seal)?;
        let runtime = Runtime::new(data_dir, cgroup_parent, helper).map_err(ExecutorError::Runtime)?;
        let images = ImageStore::open(data_dir).map_err(ExecutorError::Images)?;
        // Tasks whose container went while the daemon was down leave their files and
        // their secrets' tmpfs: they go now. Running tasks keep theirs.
        let containers = runtime.list().map_err(ExecutorError::List)?;
        let tasks: Vec<String> =
            containers.iter().filter_map(|id| id.strip_prefix(PREFIX).map(str::to_owned)).collect();
        let swept = payloads::sweep(&data_dir.join("tasks"), &tasks);
        if !swept.is_empty() {
            tracing::info!(tasks = ?swept, "removed the files of tasks whose containers are gone");
        }
        // Containers that ended before this start were counted (or not) by the
        // daemon that saw them end.
        let counted = containers
            .iter()
            .filter(|id| !matches!(runtime.status(id), Ok(Status::Running(_))))
            .cloned()
            .collect();
        Ok(Executor {
            runtime: Arc::new(runtime),
            images,
            data_dir: data_dir.to_owned(),
            pull,
            registry: RegistryOptions::default(),
            image_checks: Default::default(),
            net: None,
            counted: std::sync::Mutex::new(counted),
            starting: Default::default(),
            owners: Default::default(),
        })
    }

    /// Gives tasks' containers their networks through `wiring`.
    pub fn with_network(mut self, wiring: Arc<Wiring>) -> Executor {
        self.net = Some(wiring);
        self
    }

    /// Registries this node pulls from over plain HTTP (host:port), besides
    /// loopback ones.
    pub fn with_insecure_registries(mut self, registries: Vec<String>) -> Executor {
        self.registry.insecure = registries;
        self
    }

    /// The per-container metrics of this node's task containers (opt-in: register it
    /// only when asked to).
    pub fn container_collector(&self) -> crate::metrics::containers::ContainerCollector {
        crate::metrics::containers::ContainerCollector::new(self.runtime.clone(), self.owners.clone(), PREFIX)
    }

    /// Notes whose containers `tasks` run, for the per-container metrics.
    fn note_owners<'a>(&self, tasks: impl IntoIterator<Item = &'a Task>) {
        let mut owners = self.owners.lock().expect("owners lock");
        for t in tasks {
            owners.insert(container_id(&t.id), (t.service_id.clone(), t.slot));
        }
    }

    fn task_dir(&self, task_id: &str) -> PathBuf {
        self.data_dir.join("tasks").join(task_id)
    }
}

impl Executor {
    /// Counts the end of container `id` in the metrics, once: a failure unless it
    /// exited 0, and an OOM kill if it was one.
    fn count_end(&self, id: &str, status: &Result<Status, RuntimeError>) {
        if !self.counted.lock().expect("counted lock").insert(id.to_owned()) {
            return;
        }
        let metrics = crate::metrics::instruments();
        match status {
            Ok(Status::Exited(e)) => {
                if e.oom_killed {
                    metrics.container_oom_kills.inc();
                }
                match (e.exit_code, e.signal, e.oom_killed) {
                    (_, _, true) => metrics.failed("oom"),
                    (Some(0), _, false) => {}
                    (Some(_), _, false) => metrics.failed("exit_code"),
                    (None, _, false) => metrics.failed("signal"),
                }
            }
            Ok(Status::Lost) => metrics.failed("lost"),
            _ => {}
        }
    }
}

impl Node for Executor {
    type Error = ExecutorError;

    /// Task containers, and tasks whose container is gone but whose files (and
    /// secrets' tmpfs) are left: a task no longer assigned is swept either way.
    fn containers(&self) -> Result<Vec<String>, ExecutorError> {
        let ids = self.runtime.list().map_err(ExecutorError::List)?;
        let mut out: Vec<String> =
            ids.into_iter().filter_map(|id| id.strip_prefix(PREFIX).map(str::to_owned)).collect();
        if let Ok(dirs) = std::fs::read_dir(self.data_dir.join("tasks")) {
            out.extend(dirs.flatten().filter_map(|e| e.file_name().into_string().ok()));
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn inspect(&self, task_id: &str) -> Local {
        let id = container_id(task_id);
        // A container being started looks lost until its start is recorded: checked
        // before and after the read (a start takes far longer than the read).
        let starting = || self.starting.lock().expect("starting lock").contains(&id);
        let was_starting = starting();
        let status = self.runtime.status(&id);
        if matches!(status, Ok(Status::Exited(_) | Status::Lost)) && !was_starting && !starting() {
            self.count_end(&id, &status);
        }
        match status {
            Ok(Status::Running(_)) => Local::Running,
            Ok(Status::Exited(e)) => Local::Exited {
                code: e.exit_code,
                signal: e.signal,
                oom_killed: e.oom_killed,
                at: e.finished_at,
            },
            Ok(Status::Lost) => Local::Lost,
            Err(_) => Local::Absent,
        }
    }

    /// The spec's health check, else the image's HEALTHCHECK (see
    /// [`config::health_check`]). Images are looked up once each.
    fn health_check(&self, task: &Task) -> Option<HealthCheck> {
        let c = &task.spec.container;
        if c.healthcheck.as_ref().is_some_and(|h| !h.test.is_empty()) {
            // The spec decides alone (a test, or NONE).
            return config::health_check(c, &Default::default());
        }
        let mut cache = self.image_checks.lock().expect("image checks lock");
        let from_image = match cache.get(&c.image) {
            Some(known) => known.clone(),
            // Not cached while the image is missing: it may be pulled yet.
            None => match self.images.resolve(&c.image) {
                Ok(image) => cache.entry(c.image.clone()).or_insert(image.defaults.healthcheck).clone(),
                Err(_) => None,
            },
        };
        let image = ImageDefaults { healthcheck: from_image, ..Default::default() };
        config::health_check(c, &image)
    }

    async fn prepare(&self, task: &Task) -> Result<(), ExecutorError> {
        let image = &task.spec.container.image;
        // Reads files: off the async threads, which a burst of starts would block.
        let (images, name) = (self.images.clone(), image.clone());
        if !tokio::task::spawn_blocking(move || images.resolve(&name).is_ok()).await.unwrap_or(false) {
            if self.pull == PullPolicy::Never {
                return Err(ExecutorError::NotPulled { image: image.clone() });
            }
            let started = std::time::Instant::now();
            registry::pull(&self.images, image, &self.registry)
                .await
                .map_err(|source| ExecutorError::Pull { image: image.clone(), source })?;
            crate::metrics::instruments().image_pull_duration.observe(started.elapsed().as_secs_f64());
        }
        if let Some(net) = &self.net {
            net.prepare(task).await.map_err(ExecutorError::Network)?;
        }
        Ok(())
    }

    fn start(&self, task: &Task, payloads: &Payloads) -> Result<(), ExecutorError> {
        let c = &task.spec.container;
        let image = self
            .images
            .resolve(&c.image)
            .map_err(|source| ExecutorError::Image { image: c.image.clone(), source })?;
        let process = config::process(c, &image.defaults).map_err(ExecutorError::Spec)?;
        let mut mounts = Vec::new();
        for m in &c.mounts {
            mounts.push(match m {
                Mount::Bind { source, target, read_only } => {
                    MountPoint::Bind { source: source.into(), target: target.clone(), read_only: *read_only }
                }
                Mount::Volume { source, target, read_only, no_copy } => {
                    let dir = self.data_dir.join("volumes").join(source).join("_data");
                    std::fs::create_dir_all(&dir)
                        .map_err(|e| ExecutorError::Volume { name: source.clone(), source: e })?;
                    MountPoint::Volume {
                        source: dir,
                        target: target.clone(),
                        read_only: *read_only,
                        no_copy: *no_copy,
                    }
                }
                Mount::Tmpfs { target, size_bytes, mode } => MountPoint::Tmpfs {
                    target: target.clone(),
                    size_bytes: *size_bytes,
                    mode: mode.unwrap_or(0o1777),
                },
            });
        }
        let netns = self.net.as_ref().and_then(|n| n.sandbox(&task.id));
        if netns.is_some() {
            let addr = task.networks.iter().flat_map(|n| n.addresses.first()).next().map(|a| a.addr());
            let dir = self.task_dir(&task.id).join("files");
            let files =
                crate::network::files::write(&dir, &hostname(task), addr).map_err(ExecutorError::Network)?;
            mounts.extend(files.into_iter().map(|(source, target)| MountPoint::Bind {
                source,
                target,
                read_only: true,
            }));
        }
        // Last, so that no error between its mount and the container's start leaves it.
        let task_dir = self.task_dir(&task.id);
        mounts.extend(payloads::mount(&task_dir, c, payloads).map_err(ExecutorError::Payloads)?);
        let r = &task.spec.resources.limits;
        let new = NewContainer {
            id: container_id(&task.id),
            image: c.image.clone(),
            layers: image.layer_dirs,
            process,
            hostname: Some(hostname(task)),
            mounts,
            read_only_root: c.read_only,
            limits: crate::cgroups::Limits {
                memory_bytes: r.memory_bytes,
                nano_cpus: r.nano_cpus,
                pids: r.pids,
            },
            netns,
            userns: None,
            log: Default::default(),
        };
        self.note_owners([task]);
        let t0 = std::time::Instant::now();
        let id = new.id.clone();
        self.starting.lock().expect("starting lock").insert(id.clone());
        let started = self.runtime.run(new).map(drop).map_err(ExecutorError::Start);
        self.starting.lock().expect("starting lock").remove(&id);
        let metrics = crate::metrics::instruments();
        metrics.timed("start", t0.elapsed());
        match &started {
            Ok(()) => {
                metrics.container_starts.inc();
            }
            Err(_) => metrics.failed("start"),
        }
        if started.is_err() {
            // No container holds the tmpfs: it goes now.
            let _ = payloads::unmount(&task_dir);
        }
        started
    }

    fn check_health(&self, task: &Task) -> Result<Option<String>, ExecutorError> {
        let Some(h) = self.health_check(task) else { return Ok(None) };
        let args = match h.test.first().map(String::as_str) {
            Some("CMD") => h.test[1..].to_vec(),
            Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), h.test[1..].join(" ")],
            _ => return Ok(None),
        };
        let timeout = if h.timeout.is_zero() { std::time::Duration::from_secs(30) } else { h.timeout };
        let spec = crate::runtime::exec::ExecSpec { args, ..Default::default() };
        let result =
            self.runtime.exec(&container_id(&task.id), &spec, timeout).map_err(ExecutorError::Health)?;
        Ok(match result.code {
            Some(0) => None,
            Some(code) => Some(format!("health check exited with {code}: {}", result.output.trim())),
            None => Some(format!("health check timed out after {}", shoal_api::duration::format(timeout))),
        })
    }

    fn stop(&self, task: &Task) -> Result<(), ExecutorError> {
        let id = container_id(&task.id);
        let defaults =
            self.images.resolve(&task.spec.container.image).map(|i| i.defaults).unwrap_or_default();
        let (signal, grace) = config::stop_signal(&task.spec.container, &defaults);
        let t0 = std::time::Instant::now();
        // Stopped on purpose: its end is no failure, whatever the exit.
        self.counted.lock().expect("counted lock").insert(id.clone());
        let stopped = self.runtime.stop(&id, signal, grace).map(drop).map_err(ExecutorError::Stop);
        crate::metrics::instruments().timed("stop", t0.elapsed());
        stopped
    }

    fn remove(&self, task_id: &str) -> Result<(), ExecutorError> {
        let id = container_id(task_id);
        if self.runtime.list().unwrap_or_default().contains(&id) {
            let t0 = std::time::Instant::now();
            self.runtime.delete(&id, true).map_err(ExecutorError::Remove)?;
            crate::metrics::instruments().timed("remove", t0.elapsed());
        }
        self.counted.lock().expect("counted lock").remove(&id);
        self.owners.lock().expect("owners lock").remove(&id);
        payloads::unmount(&self.task_dir(task_id)).map_err(ExecutorError::Payloads)?;
        match std::fs::remove_dir_all(self.task_dir(task_id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ExecutorError::RemoveFiles(e)),
            _ => Ok(()),
        }
    }

    fn log_path(&self, task_id: &str) -> Option<PathBuf> {
        let id = container_id(task_id);
        self.runtime.list().unwrap_or_default().contains(&id).then(|| self.runtime.log_path(&id))
    }

    fn exec(
        &self,
        task_id: &str,
        spec: &crate::runtime::exec::ExecSpec,
        io: crate::runtime::exec::ExecIo,
    ) -> Result<crate::runtime::exec::ExecProcess, RuntimeError> {
        self.runtime.spawn_exec(&container_id(task_id), spec, io)
    }

    fn set_network(&self, items: BTreeMap<String, NetItem>, tasks: Vec<Task>) {
        self.note_owners(&tasks);
        if let Some(net) = &self.net {
            net.set_view(items, tasks);
        }
    }

    async fn wire_network(&self, full: bool) -> Result<(), ExecutorError> {
        match &self.net {
            Some(net) => net.wire(full).await.map_err(ExecutorError::Network),
            None => Ok(()),
        }
    }
}
