//! The task template: what every task of a service runs, with which resources, how it
//! restarts and where it may be placed. Defaults match Docker Swarm's
//! (`SK:api/defaults/service.go`) unless a field says otherwise.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration;

/// Everything a task runs; copied unchanged into each task when it is created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// The container to run.
    pub container: ContainerSpec,
    /// CPU, memory and pids limits (enforced on the worker) and reservations (used by
    /// the scheduler).
    #[serde(default)]
    pub resources: Resources,
    /// When a stopped task is replaced by a new one.
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// Which nodes may run the tasks, and how tasks spread over them.
    #[serde(default)]
    pub placement: Placement,
    /// Overlay networks the task joins, by network name or id.
    #[serde(default)]
    pub networks: Vec<NetworkAttachmentConfig>,
    /// Bumped to restart every task with an otherwise unchanged spec
    /// (`shoal service update --force`).
    #[serde(default)]
    pub force_update: u64,
}

impl TaskSpec {
    /// A task template that runs `image` with every other field at its default.
    pub fn for_image(image: impl Into<String>) -> Self {
        TaskSpec {
            container: ContainerSpec::for_image(image),
            resources: Resources::default(),
            restart_policy: RestartPolicy::default(),
            placement: Placement::default(),
            networks: Vec::new(),
            force_update: 0,
        }
    }
}

/// The container a task runs. Fields left empty fall back to the image's config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    /// Image reference, such as `registry.local:5000/web:1.2` or `busybox@sha256:…`.
    pub image: String,
    /// Replaces the image's ENTRYPOINT when not empty.
    #[serde(default)]
    pub command: Vec<String>,
    /// Replaces the image's CMD when not empty.
    #[serde(default)]
    pub args: Vec<String>,
    /// `NAME=VALUE` pairs, added to (and overriding) the image's environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// Working directory (absolute); default: the image's, else `/`.
    #[serde(default)]
    pub workdir: Option<String>,
    /// `user`, `uid`, `user:group` or `uid:gid`; default: the image's, else root.
    #[serde(default)]
    pub user: Option<String>,
    /// Hostname inside the container; default: the task's container id prefix.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Labels on the container (service labels live on the service spec).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Bind, volume and tmpfs mounts.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// The health check; `None` inherits the image's HEALTHCHECK.
    #[serde(default)]
    pub healthcheck: Option<HealthCheck>,
    /// Signal that asks the container to stop; default `SIGTERM`.
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// Time between the stop signal and SIGKILL. Default 10s.
    #[schema(value_type = String, example = "5s")]
    #[serde(with = "duration", default = "default_stop_grace_period")]
    pub stop_grace_period: Duration,
    /// Mount the root filesystem read-only.
    #[serde(default)]
    pub read_only: bool,
    /// Secrets given to the container as files on a tmpfs.
    #[serde(default)]
    pub secrets: Vec<FileReference>,
    /// Configs given to the container as files.
    #[serde(default)]
    pub configs: Vec<FileReference>,
}

/// Swarm's default time between SIGTERM and SIGKILL.
pub const DEFAULT_STOP_GRACE_PERIOD: Duration = Duration::from_secs(10);

fn default_stop_grace_period() -> Duration {
    DEFAULT_STOP_GRACE_PERIOD
}

impl ContainerSpec {
    /// A container spec that runs `image` with every other field at its default.
    pub fn for_image(image: impl Into<String>) -> Self {
        ContainerSpec {
            image: image.into(),
            command: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            workdir: None,
            user: None,
            hostname: None,
            labels: BTreeMap::new(),
            mounts: Vec::new(),
            healthcheck: None,
            stop_signal: None,
            stop_grace_period: DEFAULT_STOP_GRACE_PERIOD,
            read_only: false,
            secrets: Vec::new(),
            configs: Vec::new(),
        }
    }
}

/// A secret or config given to the container as a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileReference {
    /// Name of the secret or config.
    pub source: String,
    /// File path; a bare name goes under `/run/secrets/` (secrets) or `/` (configs).
    /// Default: the source name.
    #[serde(default)]
    pub target: Option<String>,
    /// Owner uid of the file. Default 0.
    #[serde(default)]
    pub uid: u32,
    /// Owner gid of the file. Default 0.
    #[serde(default)]
    pub gid: u32,
    /// Permission bits. Default 0o444.
    #[serde(default = "default_file_mode")]
    pub mode: u32,
}

fn default_file_mode() -> u32 {
    0o444
}

impl FileReference {
    /// A reference to `source` with the default target, owner and mode.
    pub fn new(source: impl Into<String>) -> Self {
        FileReference { source: source.into(), target: None, uid: 0, gid: 0, mode: default_file_mode() }
    }
}

/// A filesystem mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Mount {
    /// A host path bind-mounted into the container.
    Bind {
        /// Absolute path on the node; it must exist there.
        source: String,
        /// Absolute path in the container.
        target: String,
        /// Mount read-only.
        #[serde(default)]
        read_only: bool,
    },
    /// A named volume: a directory under the node's data dir, made on first use and
    /// kept after the task ends. While it is empty, it is first filled with what the
    /// image has at the target (as Docker does), unless `no_copy`.
    Volume {
        /// Volume name.
        source: String,
        /// Absolute path in the container.
        target: String,
        /// Mount read-only.
        #[serde(default)]
        read_only: bool,
        /// Leave an empty volume empty: do not copy the image's files at the target
        /// into it (Docker's `volume-nocopy`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        no_copy: bool,
    },
    /// A tmpfs, empty at every start.
    Tmpfs {
        /// Absolute path in the container.
        target: String,
        /// Size limit in bytes; 0 means the kernel default (half of RAM).
        #[serde(default)]
        size_bytes: u64,
        /// Permission bits of the mount's root; default 0o1777, as in Docker.
        #[serde(default)]
        mode: Option<u32>,
    },
}

impl Mount {
    /// The absolute path in the container.
    pub fn target(&self) -> &str {
        match self {
            Mount::Bind { target, .. } | Mount::Volume { target, .. } | Mount::Tmpfs { target, .. } => target,
        }
    }
}

/// A command run inside the container to tell whether it is healthy. A task with a
/// health check is RUNNING only once it passes; a task that turns unhealthy is replaced.
///
/// Defaults are the Docker engine's: every 30s, 30s timeout, 3 retries, no start period,
/// 5s between checks during the start period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheck {
    /// `["CMD", "prog", "arg"…]`, `["CMD-SHELL", "shell command"]`, `["NONE"]` to turn
    /// off the image's check, or empty to keep the image's test with these timings.
    pub test: Vec<String>,
    /// Time between checks. Default 30s.
    #[schema(value_type = String, example = "5s")]
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Time one check may take before it counts as failed. Default 30s.
    #[schema(value_type = String, example = "5s")]
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Consecutive failures that make the container unhealthy. Default 3.
    pub retries: u32,
    /// Time after start during which failures do not count. Default 0s.
    #[schema(value_type = String, example = "5s")]
    #[serde(with = "duration")]
    pub start_period: Duration,
    /// Time between checks during the start period. Default 5s.
    #[schema(value_type = String, example = "5s")]
    #[serde(with = "duration")]
    pub start_interval: Duration,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            test: Vec::new(),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            retries: 3,
            start_period: Duration::ZERO,
            start_interval: Duration::from_secs(5),
        }
    }
}

impl HealthCheck {
    /// A check running `test` with the engine's default timings.
    pub fn new(test: Vec<String>) -> Self {
        HealthCheck { test, ..HealthCheck::default() }
    }

    /// True for `["NONE"]`, which turns the image's check off.
    pub fn is_disabled(&self) -> bool {
        self.test.first().is_some_and(|t| t == "NONE")
    }
}

/// Resource limits (enforced by the worker's cgroups) and reservations (the scheduler
/// places a task only on a node with this much unreserved). Zero means unset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Upper bounds for the container.
    #[serde(default)]
    pub limits: Limits,
    /// What the scheduler sets aside on the node.
    #[serde(default)]
    pub reservations: Reservations,
}

/// Limits enforced on the container. Zero means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// CPU in billionths of a CPU (1.5 CPUs = 1500000000), as CFS quota.
    #[serde(default)]
    pub nano_cpus: u64,
    /// Memory in bytes; the container is OOM-killed past it. At least 6 MiB.
    #[serde(default)]
    pub memory_bytes: u64,
    /// Maximum number of processes and threads.
    #[serde(default)]
    pub pids: u64,
}

/// Amounts the scheduler reserves on the chosen node. Zero means nothing reserved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reservations {
    /// CPU in billionths of a CPU.
    #[serde(default)]
    pub nano_cpus: u64,
    /// Memory in bytes.
    #[serde(default)]
    pub memory_bytes: u64,
}

/// When a task that stopped is replaced. Each restart makes a new task in the same slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RestartPolicy {
    /// Which exits lead to a restart. Default `any`.
    pub condition: RestartCondition,
    /// Wait between the end of a task and the start of its replacement. Default 5s.
    #[schema(value_type = String, example = "5s")]
    #[serde(with = "duration")]
    pub delay: Duration,
    /// Restarts allowed per slot (within `window` when set); 0 is unlimited. Default 0.
    pub max_attempts: u64,
    /// Time window over which `max_attempts` is counted; 0 counts all restarts.
    #[schema(value_type = String, example = "5s")]
    #[serde(with = "duration")]
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            condition: RestartCondition::Any,
            delay: Duration::from_secs(5),
            max_attempts: 0,
            window: Duration::ZERO,
        }
    }
}

/// Which task exits lead to a restart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    /// Never restart.
    None,
    /// Restart after a non-zero exit or a failure to start.
    OnFailure,
    /// Restart whenever the task ends (the default).
    #[default]
    Any,
}

/// Where tasks may run and how they spread.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// All must hold: `node.labels.zone==a`, `node.role!=manager`, `node.hostname==x`,
    /// `node.id==…`, `node.ip==10.0.0.0/8`, `node.platform.os==linux`,
    /// `node.platform.arch==x86_64`, `engine.labels.k==v`.
    #[serde(default)]
    pub constraints: Vec<String>,
    /// Spread tasks evenly over the values of a label, in order.
    #[serde(default)]
    pub preferences: Vec<PlacementPreference>,
    /// Tasks of this service allowed on one node; 0 is unlimited (replicated mode only).
    #[serde(default)]
    pub max_replicas: u64,
}

/// One level of spreading: tasks are split evenly across the values of `spread`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementPreference {
    /// A label key, `node.labels.<key>` or `engine.labels.<key>`.
    pub spread: String,
}

/// A network the task joins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkAttachmentConfig {
    /// Network name or id.
    pub target: String,
    /// Extra DNS names for the service on this network.
    #[serde(default)]
    pub aliases: Vec<String>,
}
