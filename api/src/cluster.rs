//! The cluster object: cluster-wide settings and the join tokens. There is exactly one.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::duration;
use crate::object::Meta;

/// The stored cluster object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Cluster {
    /// Cluster id, made at `--init`.
    pub id: String,
    /// Version and timestamps.
    #[serde(flatten)]
    pub meta: Meta,
    /// Settings.
    pub spec: ClusterSpec,
    /// Tokens that let nodes join; secret, never returned except by `join-token`.
    pub join_tokens: JoinTokens,
    /// Bearer token the API's TCP listeners require; secret like the join tokens.
    #[serde(default)]
    pub api_token: String,
    /// The unlock key (`SHKEY-1-...`) that wraps every manager's data key while
    /// `spec.autolock` is on; empty while it is off. Secret: shown only by
    /// `shoal cluster unlock-key`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unlock_key: String,
}

/// Cluster-wide settings (`shoal cluster update`). Defaults are Swarm's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSpec {
    /// Cluster name. Default `default`.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Ended tasks kept per slot (or per node for global services); negative keeps all.
    /// Default 5.
    pub task_history_limit: i64,
    /// Worker session settings.
    pub dispatcher: DispatcherConfig,
    /// Raft log settings.
    pub raft: RaftConfig,
    /// Where overlay subnets come from when a network names none.
    pub default_address_pool: AddressPool,
    /// UDP port of the overlay's VXLAN traffic between nodes. Default 4789 (the
    /// IANA port, Swarm's `--data-path-port`).
    pub data_path_port: u16,
    /// Whether managers need the unlock key to start (`--autolock`): their data key is
    /// kept sealed by it. Default off.
    pub autolock: bool,
}

/// The default VXLAN UDP port.
pub const DATA_PATH_PORT: u16 = 4789;

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            name: "default".to_owned(),
            labels: BTreeMap::new(),
            task_history_limit: 5,
            dispatcher: DispatcherConfig::default(),
            raft: RaftConfig::default(),
            default_address_pool: AddressPool::default(),
            data_path_port: DATA_PATH_PORT,
            autolock: false,
        }
    }
}

/// How workers keep their sessions with the managers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DispatcherConfig {
    /// Time between a worker's heartbeats (with ±10% jitter). Default 5s.
    #[schema(value_type = String, example = "5s")]
    #[serde(with = "duration")]
    pub heartbeat_period: Duration,
    /// Missed heartbeat periods before a node is DOWN and its tasks move. Default 3
    /// (Swarm's fixed multiplier, made tunable here since users ask for it).
    pub node_down_grace_multiplier: u32,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig { heartbeat_period: Duration::from_secs(5), node_down_grace_multiplier: 3 }
    }
}

/// Raft log compaction settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    /// Log entries between snapshots. Default 10000.
    pub snapshot_interval: u64,
    /// Entries kept after a snapshot for slow followers. Default 500.
    pub log_entries_for_slow_followers: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig { snapshot_interval: 10_000, log_entries_for_slow_followers: 500 }
    }
}

/// The pool overlay subnets are cut from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AddressPool {
    /// Pools, used in order. Default `10.0.0.0/8`.
    #[schema(value_type = Vec<String>)]
    pub pools: Vec<Ipv4Net>,
    /// Prefix length of each network's subnet. Default 24.
    pub mask_length: u8,
}

impl Default for AddressPool {
    fn default() -> Self {
        let ten = Ipv4Net::new(std::net::Ipv4Addr::new(10, 0, 0, 0), 8).expect("8 is a valid prefix length");
        AddressPool { pools: vec![ten], mask_length: 24 }
    }
}

/// Join tokens, one per role. A token is `SHTKN-1-<CA digest>-<secret>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JoinTokens {
    /// Lets a node join as a worker.
    pub worker: String,
    /// Lets a node join as a manager.
    pub manager: String,
}
