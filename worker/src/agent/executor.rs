//! The agent's hands: containers for tasks through the built-in runtime, images
//! found locally or pulled, secret and config files written for the task. Every call
//! here blocks (the runtime and the image store are synchronous) except the pull;
//! the agent runs them on tokio's blocking pool.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use chrono::Utc;
use shoal_api::task_spec::{FileReference, HealthCheck, Mount};
use shoal_api::{Task, TaskState, TaskStatus};

use super::plan::Local;
use crate::image::ImageStore;
use crate::image::registry::{self, RegistryOptions};
use crate::runtime::config::{self, MountPoint};
use crate::runtime::{Helper, NewContainer, Runtime, Status};

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

/// A secret or config payload the manager sent for this node's tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// `secret` or `config`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Its data.
    pub data: Vec<u8>,
}

/// Payloads by `kind/id`, and by `kind/name` too (references use either).
pub type Payloads = BTreeMap<String, Payload>;

/// Runs tasks' containers on this node.
#[derive(Debug)]
pub struct Executor {
    runtime: Runtime,
    images: ImageStore,
    data_dir: PathBuf,
    pull: PullPolicy,
    registry: RegistryOptions,
    /// Each image's HEALTHCHECK, by the name tasks use.
    image_checks: std::sync::Mutex<HashMap<String, Option<HealthCheck>>>,
}

fn failed(state: TaskState, message: &str, error: impl std::fmt::Display) -> TaskStatus {
    let mut s = TaskStatus::new(state, Utc::now(), message);
    s.error = Some(error.to_string());
    s
}

/// The container id of a task.
pub fn container_id(task_id: &str) -> String {
    format!("{PREFIX}{task_id}")
}

impl Executor {
    /// An executor keeping images and containers under `data_dir`, cgroups under
    /// `cgroup_parent`. The runtime re-executes a sealed copy of this binary for its
    /// shims, because the agent's process has threads.
    pub fn new(data_dir: &Path, cgroup_parent: &str, pull: PullPolicy) -> Result<Executor, String> {
        let helper = Helper::sealed_self().map_err(|e| format!("cannot seal a copy of this binary: {e}"))?;
        let runtime = Runtime::new(data_dir, cgroup_parent, helper).map_err(|e| e.to_string())?;
        let images = ImageStore::open(data_dir).map_err(|e| e.to_string())?;
        Ok(Executor {
            runtime,
            images,
            data_dir: data_dir.to_owned(),
            pull,
            registry: RegistryOptions::default(),
            image_checks: Default::default(),
        })
    }

    /// The health check the task's container runs: its spec's, else its image's
    /// HEALTHCHECK (see [`config::health_check`]). Images are looked up once each.
    pub fn health_check(&self, task: &Task) -> Option<HealthCheck> {
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
        let image = config::ImageDefaults { healthcheck: from_image, ..Default::default() };
        config::health_check(c, &image)
    }

    /// Registries this node pulls from over plain HTTP (host:port), besides
    /// loopback ones.
    pub fn with_insecure_registries(mut self, registries: Vec<String>) -> Executor {
        self.registry.insecure = registries;
        self
    }

    /// Task ids that have a container here.
    pub fn tasks_with_containers(&self) -> Vec<String> {
        let ids = self.runtime.list().unwrap_or_default();
        ids.into_iter().filter_map(|id| id.strip_prefix(PREFIX).map(str::to_owned)).collect()
    }

    /// What a task's container is doing (no container reads as `Absent`).
    pub fn local(&self, task_id: &str) -> Local {
        let id = container_id(task_id);
        match self.runtime.status(&id) {
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

    /// Finds the task's image, pulling it if allowed and missing.
    pub async fn prepare(&self, task: &Task) -> Result<(), TaskStatus> {
        let image = &task.spec.container.image;
        // Reads files: off the async threads, which a burst of starts would block.
        let (images, name) = (self.images.clone(), image.clone());
        if tokio::task::spawn_blocking(move || images.resolve(&name).is_ok()).await.unwrap_or(false) {
            return Ok(());
        }
        if self.pull == PullPolicy::Never {
            return Err(failed(
                TaskState::Rejected,
                "image not found",
                format!("image {image} is not on this node, and the node does not pull (--pull never)"),
            ));
        }
        registry::pull(&self.images, image, &self.registry)
            .await
            .map(drop)
            .map_err(|e| failed(TaskState::Rejected, "pull failed", format!("pull {image}: {e}")))
    }

    /// Creates and starts the task's container; the image must be here.
    pub fn start(&self, task: &Task, payloads: &Payloads) -> Result<(), TaskStatus> {
        let c = &task.spec.container;
        let image =
            self.images.resolve(&c.image).map_err(|e| failed(TaskState::Rejected, "image not found", e))?;
        let process =
            config::process(c, &image.defaults).map_err(|e| failed(TaskState::Rejected, "bad spec", e))?;
        let mut mounts = Vec::new();
        for m in &c.mounts {
            mounts.push(match m {
                Mount::Bind { source, target, read_only } => {
                    MountPoint::Bind { source: source.into(), target: target.clone(), read_only: *read_only }
                }
                Mount::Volume { source, target, read_only } => {
                    let dir = self.data_dir.join("volumes").join(source).join("_data");
                    std::fs::create_dir_all(&dir).map_err(|e| {
                        failed(TaskState::Rejected, "volume", format!("create volume {source}: {e}"))
                    })?;
                    MountPoint::Bind { source: dir, target: target.clone(), read_only: *read_only }
                }
                Mount::Tmpfs { target, size_bytes, mode } => MountPoint::Tmpfs {
                    target: target.clone(),
                    size_bytes: *size_bytes,
                    mode: mode.unwrap_or(0o1777),
                },
            });
        }
        let files = self.task_dir(&task.id).join("files");
        for (kind, refs, default_dir) in [("secret", &c.secrets, "/run/secrets"), ("config", &c.configs, "")]
        {
            for (i, r) in refs.iter().enumerate() {
                mounts.push(self.payload_file(&files, kind, i, r, default_dir, payloads)?);
            }
        }
        let r = &task.spec.resources.limits;
        let new = NewContainer {
            id: container_id(&task.id),
            layers: image.layer_dirs,
            process,
            hostname: Some(c.hostname.clone().unwrap_or_else(|| task.id.chars().take(12).collect())),
            mounts,
            read_only_root: c.read_only,
            limits: crate::cgroups::Limits {
                memory_bytes: r.memory_bytes,
                nano_cpus: r.nano_cpus,
                pids: r.pids,
            },
            netns: None,
            userns: None,
            log: Default::default(),
        };
        self.runtime.run(new).map(drop).map_err(|e| failed(TaskState::Failed, "start failed", e))
    }

    fn payload_file(
        &self,
        files: &Path,
        kind: &str,
        index: usize,
        r: &FileReference,
        default_dir: &str,
        payloads: &Payloads,
    ) -> Result<MountPoint, TaskStatus> {
        let p = payloads.get(&format!("{kind}/{}", r.source)).ok_or_else(|| {
            failed(
                TaskState::Rejected,
                "missing payload",
                format!("the {kind} {} was not sent to this node", r.source),
            )
        })?;
        let io = |e: std::io::Error| {
            failed(TaskState::Rejected, "payload", format!("write the {kind} {}: {e}", p.name))
        };
        std::fs::create_dir_all(files).map_err(io)?;
        // One file per reference: two references to one payload may differ in mode
        // and owner.
        let path = files.join(format!("{kind}-{index}-{}", p.name));
        std::fs::write(&path, &p.data).map_err(io)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(r.mode)).map_err(io)?;
        nix::unistd::chown(&path, Some(r.uid.into()), Some(r.gid.into())).map_err(|e| io(e.into()))?;
        let target = match &r.target {
            Some(t) if t.starts_with('/') => t.clone(),
            Some(t) => format!("{default_dir}/{t}"),
            None => format!("{default_dir}/{}", p.name),
        };
        Ok(MountPoint::Bind { source: path, target, read_only: true })
    }

    /// Runs the task's health check once in its container: `Ok(None)` when healthy,
    /// `Ok(Some(why))` when not.
    pub fn check_health(&self, task: &Task) -> Result<Option<String>, String> {
        let Some(h) = self.health_check(task) else { return Ok(None) };
        let args = match h.test.first().map(String::as_str) {
            Some("CMD") => h.test[1..].to_vec(),
            Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), h.test[1..].join(" ")],
            _ => return Ok(None),
        };
        let timeout = if h.timeout.is_zero() { std::time::Duration::from_secs(30) } else { h.timeout };
        let spec = crate::runtime::exec::ExecSpec { args };
        let result = self.runtime.exec(&container_id(&task.id), &spec, timeout).map_err(|e| e.to_string())?;
        Ok(match result.code {
            Some(0) => None,
            Some(code) => Some(format!("health check exited with {code}: {}", result.output.trim())),
            None => Some(format!("health check timed out after {}", shoal_api::duration::format(timeout))),
        })
    }

    /// The log file of a task's container, if it has one here.
    pub fn log_path(&self, task_id: &str) -> Option<PathBuf> {
        let id = container_id(task_id);
        self.runtime.list().unwrap_or_default().contains(&id).then(|| self.runtime.log_path(&id))
    }

    /// Stops the task's container: its stop signal, then SIGKILL after the grace
    /// period.
    pub fn stop(&self, task: &Task) -> Result<(), String> {
        let id = container_id(&task.id);
        let defaults =
            self.images.resolve(&task.spec.container.image).map(|i| i.defaults).unwrap_or_default();
        let (signal, grace) = config::stop_signal(&task.spec.container, &defaults);
        self.runtime.stop(&id, signal, grace).map(drop).map_err(|e| e.to_string())
    }

    /// Removes a task's container and files (stopping it first if it runs).
    pub fn delete(&self, task_id: &str) -> Result<(), String> {
        let id = container_id(task_id);
        if self.runtime.list().unwrap_or_default().contains(&id) {
            self.runtime.delete(&id, true).map_err(|e| e.to_string())?;
        }
        match std::fs::remove_dir_all(self.task_dir(task_id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
            _ => Ok(()),
        }
    }

    fn task_dir(&self, task_id: &str) -> PathBuf {
        self.data_dir.join("tasks").join(task_id)
    }
}
