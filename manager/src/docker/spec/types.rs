//! Docker's swarm types as the v1.41 API spells them (`moby:api/types/swarm`), for
//! requests and replies alike. Every field of the swagger's spec types is declared,
//! so an unknown name is a 400 that names it and a known one Shoal cannot honour is
//! refused by name in [`super::to_shoal`]. Durations are int64 nanoseconds.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Labels, as Docker sends them (`null` or a map).
pub(crate) type Labels = BTreeMap<String, String>;

/// `ServiceSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct ServiceSpec {
    pub(crate) name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) labels: Option<Labels>,
    pub(crate) task_template: TaskSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mode: Option<ServiceMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) update_config: Option<UpdateConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rollback_config: Option<UpdateConfig>,
    /// Deprecated: used only when the task template has no networks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) networks: Option<Vec<NetworkAttachmentConfig>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) endpoint_spec: Option<EndpointSpec>,
}

/// `ServiceSpec.Mode`: exactly one is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct ServiceMode {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) replicated: Option<Replicated>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) global: Option<Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) replicated_job: Option<ReplicatedJob>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) global_job: Option<Empty>,
}

/// An object with no fields (`Global`, `GlobalJob`, a config's `Runtime`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Empty {}

/// `Mode.Replicated`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct Replicated {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) replicas: Option<u64>,
}

/// `Mode.ReplicatedJob`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct ReplicatedJob {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_concurrent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) total_completions: Option<u64>,
}

/// `UpdateConfig` and `RollbackConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct UpdateConfig {
    pub(crate) parallelism: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) delay: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) failure_action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) monitor: Option<i64>,
    pub(crate) max_failure_ratio: f64,
    pub(crate) order: String,
}

/// `EndpointSpec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct EndpointSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ports: Option<Vec<PortConfig>>,
}

/// `EndpointPortConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct PortConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) protocol: Option<String>,
    pub(crate) target_port: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) published_port: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) publish_mode: Option<String>,
}

/// `TaskSpec` (`TaskTemplate`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct TaskSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) plugin_spec: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) container_spec: Option<ContainerSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) network_attachment_spec: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) resources: Option<ResourceRequirements>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) restart_policy: Option<RestartPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) placement: Option<Placement>,
    pub(crate) force_update: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) runtime: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) networks: Option<Vec<NetworkAttachmentConfig>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) log_driver: Option<Driver>,
}

/// `ContainerSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct ContainerSpec {
    pub(crate) image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) labels: Option<Labels>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) args: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) env: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) groups: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) privileges: Option<Privileges>,
    #[serde(rename = "TTY", skip_serializing_if = "Option::is_none")]
    pub(crate) tty: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) open_stdin: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) read_only: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mounts: Option<Vec<Mount>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stop_grace_period: Option<i64>,
    /// Docker's Go field is `Healthcheck`; `HealthCheck` is taken too.
    #[serde(rename = "Healthcheck", alias = "HealthCheck", skip_serializing_if = "Option::is_none")]
    pub(crate) health_check: Option<HealthConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hosts: Option<Vec<String>>,
    #[serde(rename = "DNSConfig", skip_serializing_if = "Option::is_none")]
    pub(crate) dns_config: Option<DnsConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) secrets: Option<Vec<SecretReference>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) configs: Option<Vec<ConfigReference>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) isolation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) init: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sysctls: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) capability_add: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) capability_drop: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ulimits: Option<Vec<serde_json::Value>>,
}

/// `ContainerSpec.Privileges` (v1.41's two fields, and the later ones newer CLIs
/// send as `null`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct Privileges {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) credential_spec: Option<serde_json::Value>,
    #[serde(rename = "SELinuxContext", skip_serializing_if = "Option::is_none")]
    pub(crate) selinux_context: Option<SeLinuxContext>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) seccomp: Option<serde_json::Value>,
    #[serde(rename = "AppArmor", skip_serializing_if = "Option::is_none")]
    pub(crate) app_armor: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) no_new_privileges: Option<bool>,
}

/// `Privileges.SELinuxContext`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct SeLinuxContext {
    pub(crate) disable: bool,
    pub(crate) user: String,
    pub(crate) role: String,
    #[serde(rename = "Type")]
    pub(crate) kind: String,
    pub(crate) level: String,
}

/// `Mount`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct Mount {
    #[serde(rename = "Type")]
    pub(crate) kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) source: String,
    pub(crate) target: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) consistency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bind_options: Option<BindOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) volume_options: Option<VolumeOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tmpfs_options: Option<TmpfsOptions>,
}

/// `Mount.BindOptions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct BindOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) propagation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) non_recursive: Option<bool>,
}

/// `Mount.VolumeOptions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct VolumeOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) no_copy: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) labels: Option<Labels>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) driver_config: Option<Driver>,
}

/// `Mount.TmpfsOptions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct TmpfsOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) size_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mode: Option<u32>,
}

/// A driver and its options (`LogDriver`, `VolumeOptions.DriverConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct Driver {
    pub(crate) name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) options: Option<BTreeMap<String, String>>,
}

/// `HealthConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct HealthConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) test: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) interval: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) timeout: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) retries: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) start_period: Option<i64>,
    /// API 1.44; Shoal has it, so it is accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) start_interval: Option<i64>,
}

/// `ContainerSpec.DNSConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct DnsConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) nameservers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) search: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) options: Option<Vec<String>>,
}

/// A secret's or config's file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct FileTarget {
    pub(crate) name: String,
    #[serde(rename = "UID")]
    pub(crate) uid: String,
    #[serde(rename = "GID")]
    pub(crate) gid: String,
    pub(crate) mode: u32,
}

/// `ContainerSpec.Secrets[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct SecretReference {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) file: Option<FileTarget>,
    #[serde(rename = "SecretID")]
    pub(crate) secret_id: String,
    pub(crate) secret_name: String,
}

/// `ContainerSpec.Configs[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct ConfigReference {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) file: Option<FileTarget>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) runtime: Option<Empty>,
    #[serde(rename = "ConfigID")]
    pub(crate) config_id: String,
    pub(crate) config_name: String,
}

/// `TaskSpec.Resources`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct ResourceRequirements {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) limits: Option<Limit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reservations: Option<Reservation>,
}

/// `Resources.Limits`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct Limit {
    #[serde(rename = "NanoCPUs", skip_serializing_if = "is_zero")]
    pub(crate) nano_cpus: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) memory_bytes: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) pids: i64,
}

/// `Resources.Reservations`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct Reservation {
    #[serde(rename = "NanoCPUs", skip_serializing_if = "is_zero")]
    pub(crate) nano_cpus: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) memory_bytes: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) generic_resources: Option<Vec<serde_json::Value>>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// `TaskSpec.RestartPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct RestartPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) condition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) delay: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_attempts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) window: Option<i64>,
}

/// `TaskSpec.Placement`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct Placement {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) constraints: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) preferences: Option<Vec<PlacementPreference>>,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub(crate) max_replicas: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) platforms: Option<Vec<Platform>>,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// `Placement.Preferences[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct PlacementPreference {
    pub(crate) spread: SpreadOver,
}

/// `Preferences[].Spread`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct SpreadOver {
    pub(crate) spread_descriptor: String,
}

/// `Placement.Platforms[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct Platform {
    pub(crate) architecture: String,
    #[serde(rename = "OS")]
    pub(crate) os: String,
}

/// `NetworkAttachmentConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub(crate) struct NetworkAttachmentConfig {
    pub(crate) target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) aliases: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) driver_opts: Option<BTreeMap<String, String>>,
}

/// `Version`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Version {
    pub(crate) index: u64,
}

/// A stored service, as `GET /services` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Service {
    #[serde(rename = "ID")]
    pub(crate) id: String,
    pub(crate) version: Version,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    pub(crate) spec: ServiceSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) previous_spec: Option<ServiceSpec>,
    pub(crate) endpoint: Endpoint,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) update_status: Option<UpdateStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) service_status: Option<ServiceStatus>,
}

/// `Service.Endpoint`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Endpoint {
    pub(crate) spec: EndpointSpec,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) ports: Vec<PortConfig>,
    #[serde(rename = "VirtualIPs", skip_serializing_if = "Vec::is_empty")]
    pub(crate) virtual_ips: Vec<VirtualIp>,
}

/// `Endpoint.VirtualIPs[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct VirtualIp {
    #[serde(rename = "NetworkID")]
    pub(crate) network_id: String,
    pub(crate) addr: String,
}

/// `Service.UpdateStatus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct UpdateStatus {
    pub(crate) state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) completed_at: Option<DateTime<Utc>>,
    pub(crate) message: String,
}

/// `Service.ServiceStatus` (with `status=true`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ServiceStatus {
    pub(crate) running_tasks: u64,
    pub(crate) desired_tasks: u64,
    pub(crate) completed_tasks: u64,
}

/// A task, as `GET /tasks` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Task {
    #[serde(rename = "ID")]
    pub(crate) id: String,
    pub(crate) version: Version,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    pub(crate) labels: Labels,
    pub(crate) spec: TaskSpec,
    #[serde(rename = "ServiceID")]
    pub(crate) service_id: String,
    pub(crate) slot: u64,
    #[serde(rename = "NodeID", skip_serializing_if = "String::is_empty")]
    pub(crate) node_id: String,
    pub(crate) status: TaskStatus,
    pub(crate) desired_state: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) networks_attachments: Vec<NetworkAttachment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) job_iteration: Option<Version>,
}

/// `Task.Status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TaskStatus {
    pub(crate) timestamp: DateTime<Utc>,
    pub(crate) state: String,
    pub(crate) message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) err: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) container_status: Option<ContainerStatus>,
    pub(crate) port_status: PortStatus,
}

/// `Status.ContainerStatus`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ContainerStatus {
    #[serde(rename = "ContainerID")]
    pub(crate) container_id: String,
    #[serde(rename = "PID")]
    pub(crate) pid: i64,
    pub(crate) exit_code: i64,
}

/// `Status.PortStatus`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PortStatus {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) ports: Vec<PortConfig>,
}

/// `Task.NetworksAttachments[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NetworkAttachment {
    pub(crate) network: serde_json::Value,
    pub(crate) addresses: Vec<String>,
}
