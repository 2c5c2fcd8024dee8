//! Services: the spec a user declares (mode, task template, update and rollback
//! settings, endpoint) and the stored `Service` object with its rollout status.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::duration;
use crate::object::Meta;
use crate::task_spec::TaskSpec;

/// What a user declares for a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Unique name; also its DNS name on its networks. Letters, digits, `-` and `_`,
    /// starting and ending with a letter or digit, at most 63 characters.
    pub name: String,
    /// Labels on the service (stack membership is `com.docker.stack.namespace`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// What every task runs.
    pub task_template: TaskSpec,
    /// Replicated (the default, 1 replica), global, or a job.
    #[serde(default)]
    pub mode: ServiceMode,
    /// How a changed spec rolls out.
    #[serde(default)]
    pub update_config: UpdateConfig,
    /// How a rollback rolls out.
    #[serde(default)]
    pub rollback_config: UpdateConfig,
    /// How the service is reached: VIP or DNS round robin, and published ports.
    #[serde(default)]
    pub endpoint_spec: EndpointSpec,
}

impl ServiceSpec {
    /// A replicated service of one task running `image`, every setting at its default.
    pub fn new(name: impl Into<String>, image: impl Into<String>) -> Self {
        ServiceSpec {
            name: name.into(),
            labels: BTreeMap::new(),
            task_template: TaskSpec::for_image(image),
            mode: ServiceMode::default(),
            update_config: UpdateConfig::default(),
            rollback_config: UpdateConfig::default(),
            endpoint_spec: EndpointSpec::default(),
        }
    }
}

/// How many tasks a service has and whether they run to completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServiceMode {
    /// `replicas` tasks in slots 1..=replicas, kept running.
    Replicated {
        /// Desired number of tasks. Default 1.
        #[serde(default = "one")]
        replicas: u64,
    },
    /// One task on every eligible node.
    Global,
    /// Tasks that run to completion: `total_completions` successful exits, at most
    /// `max_concurrent` at a time.
    ReplicatedJob {
        /// Tasks running at once. Default 1.
        #[serde(default = "one")]
        max_concurrent: u64,
        /// Successful completions wanted. Default: `max_concurrent`.
        #[serde(default)]
        total_completions: Option<u64>,
    },
    /// One task to completion on every eligible node.
    GlobalJob,
}

fn one() -> u64 {
    1
}

impl Default for ServiceMode {
    /// One replica, as the Docker engine defaults.
    fn default() -> Self {
        ServiceMode::Replicated { replicas: 1 }
    }
}

impl ServiceMode {
    /// True for the job modes, whose tasks run to completion.
    pub fn is_job(&self) -> bool {
        matches!(self, ServiceMode::ReplicatedJob { .. } | ServiceMode::GlobalJob)
    }

    /// True for the modes that put one task on each eligible node.
    pub fn is_global(&self) -> bool {
        matches!(self, ServiceMode::Global | ServiceMode::GlobalJob)
    }

    /// The mode's name as the CLI shows it.
    pub fn name(&self) -> &'static str {
        match self {
            ServiceMode::Replicated { .. } => "replicated",
            ServiceMode::Global => "global",
            ServiceMode::ReplicatedJob { .. } => "replicated-job",
            ServiceMode::GlobalJob => "global-job",
        }
    }
}

/// How a rolling update (or a rollback) replaces tasks. Defaults are Swarm's, plus a
/// progress deadline Swarm lacks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct UpdateConfig {
    /// Tasks replaced at once; 0 replaces all at once. Default 1.
    pub parallelism: u64,
    /// Wait after each batch is running before the next. Default 0s.
    #[schema(value_type = String, example = "5s")]
    #[serde(with = "duration")]
    pub delay: Duration,
    /// What happens when too many new tasks fail. Default `pause`.
    pub failure_action: FailureAction,
    /// How long after reaching RUNNING a new task is watched for failure. Default 5s.
    #[schema(value_type = String, example = "5s")]
    #[serde(with = "duration")]
    pub monitor: Duration,
    /// Fraction of new tasks (0 to 1) allowed to fail before `failure_action`. Default 0.
    pub max_failure_ratio: f64,
    /// Stop the old task before starting the new one, or the other way round.
    /// Default `stop-first`.
    pub order: UpdateOrder,
    /// A new task that is not RUNNING (and healthy) within this time counts as failed.
    /// Default 10m. Swarm waits forever, which stalls rollouts on a task stuck in
    /// PENDING or STARTING; Kubernetes' `progressDeadlineSeconds` defaults to 600s.
    #[schema(value_type = String, example = "5s")]
    #[serde(with = "duration")]
    pub progress_deadline: Duration,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            parallelism: 1,
            delay: Duration::ZERO,
            failure_action: FailureAction::Pause,
            monitor: Duration::from_secs(5),
            max_failure_ratio: 0.0,
            order: UpdateOrder::StopFirst,
            progress_deadline: Duration::from_secs(600),
        }
    }
}

/// What a rollout does when new tasks fail beyond `max_failure_ratio`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureAction {
    /// Stop the rollout until the service is updated again (the default).
    #[default]
    Pause,
    /// Keep rolling out.
    Continue,
    /// Go back to the previous spec (update config only; a rollback never rolls back).
    Rollback,
}

/// Whether the old task stops before its replacement starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    /// Stop the old task, then start the new one (the default).
    #[default]
    StopFirst,
    /// Start the new task, then stop the old one once the new one runs.
    StartFirst,
}

/// How clients reach the service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// `vip` (one virtual IP, load-balanced) or `dnsrr` (DNS returns task IPs).
    #[serde(default)]
    pub mode: EndpointMode,
    /// Ports published outside the overlay.
    #[serde(default)]
    pub ports: Vec<PortConfig>,
}

/// How the service name resolves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndpointMode {
    /// The name resolves to one virtual IP balanced over healthy tasks (the default).
    #[default]
    Vip,
    /// The name resolves to the task IPs, in shuffled order.
    Dnsrr,
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// Optional name for the port.
    #[serde(default)]
    pub name: Option<String>,
    /// `tcp` (the default), `udp` or `sctp`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Port inside the container.
    pub target_port: u16,
    /// Port on the nodes; `None` picks one from 30000–32767 (ingress mode only).
    #[serde(default)]
    pub published_port: Option<u16>,
    /// `ingress`: every node answers (the default); `host`: only nodes running a task.
    #[serde(default)]
    pub publish_mode: PublishMode,
}

impl PortConfig {
    /// An unnamed port in ingress mode (every node answers), as `--publish` and
    /// Compose's short form make them.
    pub fn ingress(target_port: u16, published_port: Option<u16>, protocol: Protocol) -> PortConfig {
        PortConfig { name: None, protocol, target_port, published_port, publish_mode: PublishMode::Ingress }
    }
}

/// Transport protocol of a port.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The protocol's name: `tcp`, `udp` or `sctp`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// Where a published port listens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PublishMode {
    /// Every node answers and forwards to a task (routing mesh; the default).
    #[default]
    Ingress,
    /// Only the node running the task listens.
    Host,
}

/// A stored service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Service {
    /// Object id.
    pub id: String,
    /// Version and timestamps.
    #[serde(flatten)]
    pub meta: Meta,
    /// The current spec.
    pub spec: ServiceSpec,
    /// The spec before the last update, the target of a rollback.
    #[serde(default)]
    pub previous_spec: Option<ServiceSpec>,
    /// Progress of the last rolling update or rollback.
    #[serde(default)]
    pub update_status: Option<UpdateStatus>,
    /// Addresses and ports allocated to the service.
    #[serde(default)]
    pub endpoint: ServiceEndpoint,
}

/// Addresses allocated to a service by the managers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceEndpoint {
    /// One virtual IP per network (VIP mode).
    #[serde(default)]
    pub virtual_ips: Vec<VirtualIp>,
    /// Published ports with the published port chosen.
    #[serde(default)]
    pub ports: Vec<PortConfig>,
}

/// A service's virtual IP on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VirtualIp {
    /// Network id.
    pub network_id: String,
    /// The address with its prefix length, e.g. `10.0.1.2/24`.
    #[schema(value_type = String)]
    pub addr: ipnet::Ipv4Net,
}

/// Progress of a rolling update or rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UpdateStatus {
    /// Where the rollout is.
    pub state: UpdateState,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub completed_at: Option<DateTime<Utc>>,
    /// Why it paused or rolled back, in words.
    #[serde(default)]
    pub message: String,
}

/// States of a rollout, as in Swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    /// Replacing tasks.
    Updating,
    /// Stopped by a failure; waits for the next update.
    Paused,
    /// Every task runs the new spec.
    Completed,
    /// Going back to the previous spec.
    RollbackStarted,
    /// A rollback stopped by a failure.
    RollbackPaused,
    /// Every task runs the previous spec again.
    RollbackCompleted,
}
