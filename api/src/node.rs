//! Nodes: the machines running `shoal daemon`, what the operator sets on them (role,
//! availability, labels) and what they report (hostname, resources, state).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::object::Meta;

/// A stored node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Node {
    /// Object id; the node keeps it across restarts.
    pub id: String,
    /// Version and timestamps.
    #[serde(flatten)]
    pub meta: Meta,
    /// What the operator sets.
    pub spec: NodeSpec,
    /// What the node reports when it registers.
    pub description: NodeDescription,
    /// Whether the node is reachable.
    pub status: NodeStatus,
    /// Raft membership, for managers.
    #[serde(default)]
    pub manager_status: Option<ManagerStatus>,
    /// The node's own address on the ingress network (routing-mesh traffic it
    /// forwards comes from it), given by the managers once that network exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<NodeAttachment>,
    /// Standalone containers of this node on attachable networks
    /// (`shoal container run --network`), with the addresses the managers gave them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<ContainerAttachment>,
    /// The certificate the managers last issued the node (Docker's TLS info).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<NodeCertificate>,
}

/// A node certificate as the managers issued it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeCertificate {
    /// Serial number, hex.
    pub serial: String,
    /// The issuing CA's subject.
    pub issuer: String,
    /// The role it names.
    pub role: NodeRole,
    /// End of validity.
    pub not_after: chrono::DateTime<chrono::Utc>,
}

/// A standalone container's address on an attachable network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContainerAttachment {
    /// The container's id on its node.
    pub container_id: String,
    /// Network id.
    pub network_id: String,
    /// The address with the network's prefix length.
    #[schema(value_type = String)]
    pub addr: ipnet::Ipv4Net,
}

/// A node's own address on a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeAttachment {
    /// Network id.
    pub network_id: String,
    /// The address with the network's prefix length.
    #[schema(value_type = String)]
    pub addr: ipnet::Ipv4Net,
}

/// What the operator sets on a node (`shoal node update`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Labels used by placement constraints (`node.labels.<key>`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The role the node should have; managers reconcile Raft membership to it.
    #[serde(default)]
    pub role: NodeRole,
    /// Whether new tasks may go to the node. Default `active`.
    #[serde(default)]
    pub availability: Availability,
}

/// A node's role.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// Runs tasks only.
    #[default]
    Worker,
    /// Runs tasks and holds a copy of the Raft store.
    Manager,
}

impl NodeRole {
    /// `worker` or `manager`.
    pub fn as_str(&self) -> &'static str {
        match self {
            NodeRole::Worker => "worker",
            NodeRole::Manager => "manager",
        }
    }
}

/// Whether a node takes tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    /// Takes new tasks (the default).
    #[default]
    Active,
    /// Keeps its tasks, takes no new ones.
    Pause,
    /// Its tasks are moved away; takes no new ones.
    Drain,
}

/// What a node reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeDescription {
    /// The node's hostname.
    pub hostname: String,
    /// OS and architecture (`linux`, `x86_64`).
    pub platform: Platform,
    /// CPU and memory the node offers to tasks.
    pub resources: NodeResources,
    /// Labels given to the daemon (`shoal daemon --label k=v`), `engine.labels.<key>`.
    #[serde(default)]
    pub engine_labels: BTreeMap<String, String>,
    /// The daemon's version.
    #[serde(default)]
    pub version: String,
}

/// OS and CPU architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// CPU architecture, e.g. `x86_64`.
    pub arch: String,
}

/// CPU and memory a node offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeResources {
    /// CPUs in billionths.
    pub nano_cpus: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
}

/// Whether the node is reachable, as seen by the leader's dispatcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeStatus {
    /// Ready, down or unknown.
    pub state: NodeState,
    /// Why, in words ("heartbeat failure").
    #[serde(default)]
    pub message: String,
    /// The address the node connects from and advertises.
    #[schema(value_type = String)]
    pub addr: IpAddr,
}

/// Reachability of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Not heard from since the current leader took over.
    Unknown,
    /// Heartbeats missed past the grace period.
    Down,
    /// Heartbeating.
    Ready,
    /// Its session ended on purpose (the daemon shut down).
    Disconnected,
}

/// A manager's place in the Raft group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ManagerStatus {
    /// Raft node id (never reused).
    pub raft_id: u64,
    /// Address other managers reach it at (`host:port`).
    pub addr: String,
    /// True on the current leader.
    pub leader: bool,
    /// Whether the leader reaches it.
    pub reachability: Reachability,
}

/// Whether a manager is reachable from the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reachability {
    /// Not yet known.
    Unknown,
    /// Not answering.
    Unreachable,
    /// Answering.
    Reachable,
}
