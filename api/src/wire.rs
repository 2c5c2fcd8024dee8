//! Bodies of the cluster API (`/v1`) that are not stored objects: requests that carry
//! a version for compare-and-set, list filters, replies that summarize, and errors.
//! The server and the typed client both use these, so they cannot disagree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::cluster::ClusterSpec;
use crate::node::NodeSpec;
use crate::object::Meta;
use crate::secret::PayloadSpec;
use crate::service::ServiceSpec;
use crate::validate::FieldError;

/// Every error reply: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong, for people (`message`) and programs (`code`, `field`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code: `bad_request`, `unauthorized`, `not_found`, `conflict`,
    /// `name_taken`, `invalid`, `too_large`, `unavailable`, `internal`.
    pub code: String,
    /// What went wrong and what to do.
    pub message: String,
    /// The field at fault, as a path (`task_template.container.image`), when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every problem found, when a body had several.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
}

/// A new object's id and the log index that stored it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Created {
    /// The object's id.
    pub id: String,
    /// Its version (the Raft log index of the write).
    pub version: u64,
    /// Things worth knowing that did not stop the write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The version an object has after a write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Written {
    /// The object's id.
    pub id: String,
    /// Its new version.
    pub version: u64,
}

/// A service's new spec, valid only if the service is still at `version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceUpdate {
    /// The version the spec was read at; a stale one is refused with 409.
    pub version: u64,
    /// The whole new spec.
    pub spec: ServiceSpec,
}

/// The cluster's new settings, valid only if the cluster object is still at
/// `version` (`shoal cluster update`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterUpdate {
    /// The version the settings were read at (`GET /v1/cluster`).
    pub version: u64,
    /// The whole new settings.
    pub spec: ClusterSpec,
}

/// A new replica count (replicated services and jobs only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    /// Replicas (or, for a replicated job, completions to reach).
    pub replicas: u64,
}

/// A node's new spec (availability, labels, role), valid only at `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeUpdate {
    /// The version the spec was read at; a stale one is refused with 409.
    pub version: u64,
    /// The whole new spec.
    pub spec: NodeSpec,
}

/// New labels for a secret or config (the only thing that may change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayloadUpdate {
    /// The version the object was read at.
    pub version: u64,
    /// The labels, replacing the old ones.
    pub labels: BTreeMap<String, String>,
}

/// A secret or config as the API shows it: never its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PayloadInfo {
    /// Id.
    pub id: String,
    /// Version and timestamps.
    #[serde(flatten)]
    pub meta: Meta,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Size of the data, bytes.
    pub size: usize,
}

impl PayloadInfo {
    /// The public part of a stored payload.
    pub fn new(id: &str, meta: &Meta, spec: &PayloadSpec) -> PayloadInfo {
        PayloadInfo {
            id: id.to_owned(),
            meta: meta.clone(),
            name: spec.name.clone(),
            labels: spec.labels.clone(),
            size: spec.data.len(),
        }
    }
}

/// Filters of `GET /v1/services`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ServiceFilter {
    /// Only services whose name starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Only services with this label: `key` or `key=value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Only services of this stack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    /// Read through the leader: see every write acknowledged before the call.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub consistent: bool,
    /// Add `service_status` (running, desired and completed task counts) to each
    /// service, as Docker's `?status=true` does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub status: bool,
    /// Only these top-level fields of each item, comma-separated (`id,status`); names
    /// an item does not have are left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<String>,
    /// Page size: at most this many items; `X-Shoal-Next-Cursor` then names the
    /// next page (absent on the last one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Where the page starts: an `X-Shoal-Next-Cursor` of an earlier answer. Pages are
    /// in key order at the latest state: an item created later past the cursor shows
    /// on a later page, a removed one is not returned, none is returned twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Blocking query: answer once the list's index (`X-Shoal-Index`) passes this,
    /// or when `wait` runs out (the answer is then the same list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_index: Option<u64>,
    /// How long a blocking query waits at most: `"30s"`, `"5m"` (the default);
    /// at most 10m. Up to a sixteenth more is added at random, so pollers spread out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<String>,
}

/// Filters of `GET /v1/tasks`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TaskFilter {
    /// Only tasks of this service (id or name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Only tasks on this node (id or hostname).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Only tasks with this desired state (`running`, `shutdown`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_state: Option<String>,
    /// Only tasks of this stack's services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    /// Only tasks in one of these observed states, comma-separated (`running`,
    /// `failed,rejected`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Read through the leader.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub consistent: bool,
    /// Only these top-level fields of each item, comma-separated (`id,status`); names
    /// an item does not have are left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<String>,
    /// Page size: at most this many items; `X-Shoal-Next-Cursor` then names the
    /// next page (absent on the last one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Where the page starts: an `X-Shoal-Next-Cursor` of an earlier answer. Pages are
    /// in key order at the latest state: an item created later past the cursor shows
    /// on a later page, a removed one is not returned, none is returned twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Blocking query: answer once the list's index (`X-Shoal-Index`) passes this,
    /// or when `wait` runs out (the answer is then the same list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_index: Option<u64>,
    /// How long a blocking query waits at most: `"30s"`, `"5m"` (the default);
    /// at most 10m. Up to a sixteenth more is added at random, so pollers spread out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<String>,
}

/// Filters of the other lists: only `consistent`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReadOptions {
    /// Read through the leader: see every write acknowledged before the call.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub consistent: bool,
}

/// Options of the lists of nodes, networks, secrets, configs and stacks: paging and
/// blocking queries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListOptions {
    /// Read through the leader: see every write acknowledged before the call.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub consistent: bool,
    /// Page size: at most this many items; `X-Shoal-Next-Cursor` then names the
    /// next page (absent on the last one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Where the page starts: an `X-Shoal-Next-Cursor` of an earlier answer. Pages are
    /// in key order at the latest state: an item created later past the cursor shows
    /// on a later page, a removed one is not returned, none is returned twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Blocking query: answer once the list's index (`X-Shoal-Index`) passes this,
    /// or when `wait` runs out (the answer is then the same list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_index: Option<u64>,
    /// How long a blocking query waits at most: `"30s"`, `"5m"` (the default);
    /// at most 10m. Up to a sixteenth more is added at random, so pollers spread out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<String>,
}

/// A service's task counts (`GET /v1/services?status=true`), as Docker's
/// `ServiceStatus`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServiceStatus {
    /// Tasks observed running whose desired state is running (or complete, for jobs).
    pub running_tasks: u64,
    /// Tasks wanted: the replicas of a replicated service; for a global service,
    /// the nodes given a task to run; for a replicated job, the tasks it may still
    /// run at once.
    pub desired_tasks: u64,
    /// Tasks of a job that completed.
    pub completed_tasks: u64,
}

/// A service with its task counts, as `GET /v1/services?status=true` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServiceWithStatus {
    /// The service.
    #[serde(flatten)]
    pub service: crate::service::Service,
    /// Its task counts (present when `status=true` was asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_status: Option<ServiceStatus>,
}

/// Options of removals that can be forced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RemoveOptions {
    /// Remove even though it is unsafe (a node that is still up, a manager whose
    /// removal leaves no majority).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// Query of `GET /v1/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Send events after this log index (the `id` of the last event seen); without
    /// it, only new events. `Last-Event-ID` does the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// Only events about objects of this kind (`service`, `task`, `node`, …).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// A Compose file to deploy as a stack, with what it needs from the deployer's side.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StackDeploy {
    /// The Compose file's text.
    pub compose: String,
    /// The folder the Compose file is in, on the deployer's machine: relative paths
    /// in the file are relative to it. Default `/`.
    #[serde(default)]
    pub dir: String,
    /// Variables for `${VAR}` in the file.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Files the Compose file names (`secrets.*.file`), by absolute path (`dir`
    /// joined with the path written in the file), base64 in JSON.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, String>)]
    pub files: BTreeMap<String, Base64>,
}

/// Bytes that are base64 text in JSON (a stack's files: its secrets' data). Its
/// Debug says only how many.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Base64(#[serde(with = "crate::secret::base64_bytes")] pub Vec<u8>);

impl std::fmt::Debug for Base64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Base64(<{} bytes redacted>)", self.0.len())
    }
}

/// What a stack deploy did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StackDeployed {
    /// The stack.
    pub name: String,
    /// Log index of the change (0 when nothing changed).
    pub version: u64,
    /// Objects created, as `kind name`.
    pub created: Vec<String>,
    /// Objects updated.
    pub updated: Vec<String>,
    /// Objects removed (no longer in the file).
    pub removed: Vec<String>,
    /// Keys of the file that Shoal did not use, and the like.
    pub warnings: Vec<String>,
}

/// One stack in `GET /v1/stacks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StackInfo {
    /// Its name.
    pub name: String,
    /// Its services.
    pub services: usize,
    /// Its networks.
    pub networks: usize,
    /// Its secrets.
    pub secrets: usize,
    /// Its configs.
    pub configs: usize,
}

/// `GET /v1/cluster`: who manages the cluster and what it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterInfo {
    /// Cluster id.
    pub id: String,
    /// Version and timestamps of the cluster object.
    #[serde(flatten)]
    pub meta: Meta,
    /// Settings.
    pub spec: ClusterSpec,
    /// The Raft id of the manager that answered.
    pub answered_by: u64,
    /// The managers, the leader marked.
    pub managers: Vec<ManagerInfo>,
    /// How many objects of each kind.
    pub counts: Counts,
    /// The answering manager's view of Raft.
    pub raft: RaftInfo,
}

/// A manager in [`ClusterInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ManagerInfo {
    /// Raft id.
    pub raft_id: u64,
    /// Address for cluster traffic.
    pub addr: String,
    /// Whether it leads.
    pub leader: bool,
    /// Whether it votes (a demoted manager still copies the log, as a learner).
    pub voter: bool,
    /// Whether the leader heard from it lately (`None` when the answer came from a
    /// follower, which does not track its peers).
    pub reachable: Option<bool>,
    /// Its node id, once it registered.
    pub node_id: Option<String>,
}

/// Object counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Counts {
    /// Nodes.
    pub nodes: usize,
    /// Services.
    pub services: usize,
    /// Tasks.
    pub tasks: usize,
    /// Networks.
    pub networks: usize,
    /// Secrets.
    pub secrets: usize,
    /// Configs.
    pub configs: usize,
}

/// Raft state of one manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RaftInfo {
    /// Current term.
    pub term: u64,
    /// The leader's Raft id.
    pub leader: Option<u64>,
    /// Leader, Follower, Candidate or Learner.
    pub state: String,
    /// Last applied log index.
    pub last_applied: u64,
    /// Mean commit time of this manager's proposals, microseconds.
    pub commit_latency_us: u64,
}

/// A snapshot a manager built when asked (`POST /v1/cluster/snapshot`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SnapshotBuilt {
    /// The manager that built it.
    pub raft_id: u64,
    /// The last log index it covers.
    pub index: u64,
    /// Its size as encoded (before sealing), in bytes.
    pub bytes: u64,
    /// From the ask to the snapshot on disk; 0 when the last snapshot already covered
    /// everything applied.
    pub seconds: f64,
}

/// The API's bearer token (`GET`/`POST /v1/cluster/api-token`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiToken {
    /// `Authorization: Bearer <token>` on the TCP listener.
    pub token: String,
}

/// Which API token: `admin` (everything, the default) or `read_only` (reads,
/// for dashboards).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(default, deny_unknown_fields)]
pub struct TokenScope {
    /// `admin` or `read_only`.
    pub scope: Option<String>,
}

/// The cluster's certificate authority as anyone may see it (never its key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CaInfo {
    /// The roots nodes trust, PEM (two during a rotation): what HTTPS clients of
    /// the API need (`SHOAL_CA`).
    pub roots_pem: String,
    /// The subject of the CA that signs node certificates now.
    pub signer_subject: String,
    /// Whether a rotation is under way (nodes still renewing).
    pub rotating: bool,
}

/// A CA rotation: to a new CA made by the managers, or to the one given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CaRotation {
    /// An external CA certificate, PEM (with `key_pem`).
    pub cert_pem: Option<String>,
    /// Its private key, PEM.
    pub key_pem: Option<String>,
}

/// The cluster's unlock key (`GET`/`POST /v1/cluster/unlock-key`): what
/// `shoal cluster unlock` needs to start a manager of an autolocked cluster.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnlockKey {
    /// `SHKEY-1-...`.
    pub key: String,
}

impl std::fmt::Debug for UnlockKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnlockKey { .. }")
    }
}

/// Query of `GET /v1/services/{id}/logs` and `GET /v1/tasks/{id}/logs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Keep streaming new lines.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub follow: bool,
    /// Only the last N lines of each task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<u64>,
    /// Only lines since: an RFC 3339 time, Unix seconds, or a duration back from
    /// now (`10m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

/// One line of a task's output (a line of `application/x-ndjson`), or why a task's
/// logs cannot be read (`error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogRecord {
    /// The task.
    pub task_id: String,
    /// `stdout` or `stderr`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stream: String,
    /// When the line was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<chrono::DateTime<chrono::Utc>>,
    /// The line (invalid UTF-8 replaced), without its newline.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub line: String,
    /// Why this task's logs cannot be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/networks/{id}`: the network and who is on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NetworkInspect {
    /// The network.
    #[serde(flatten)]
    pub network: crate::Network,
    /// Live tasks with an address on it, by node id (`""`: not scheduled yet).
    pub attached: std::collections::BTreeMap<String, Vec<AttachedTask>>,
}

/// A task's address on a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttachedTask {
    /// Task id.
    pub task_id: String,
    /// Its address, with the prefix length.
    #[schema(value_type = String)]
    pub addr: ipnet::Ipv4Net,
}

/// `POST /v1/nodes/{id}/attachments`: put a standalone container of the node on an
/// attachable network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachRequest {
    /// The network, by name or id.
    pub network: String,
    /// The container's id on the node.
    pub container_id: String,
}
