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
    /// Bearer token the API's TCP listeners require, for everything (admin);
    /// secret like the join tokens.
    #[serde(default)]
    pub api_token: String,
    /// Bearer token that may only read (dashboards); secret too.
    #[serde(default)]
    pub read_only_api_token: String,
    /// The certificate authority; its key is secret and never shown.
    #[serde(default)]
    pub ca: ClusterCa,
    /// The keys that seal encrypted overlays' traffic between nodes: made and rotated by
    /// the leader, sent only to nodes on an encrypted network; secret, never returned.
    #[serde(default)]
    pub data_path_keys: DataPathKeys,
    /// The unlock key (`SHKEY-1-...`) that wraps every manager's data key while
    /// `spec.autolock` is on; empty while it is off. Secret: shown only by
    /// `shoal cluster unlock-key`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unlock_key: String,
}

/// The cluster's certificate authority, as the managers keep it in the store.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct ClusterCa {
    /// The roots every node trusts, PEM: one, or two during a rotation.
    pub roots_pem: String,
    /// The CA certificate that signs node certificates now, PEM.
    pub signer_cert: String,
    /// Its private key, PEM. Secret: emptied in every API answer.
    pub signer_key: String,
    /// During a rotation, the new root signed by the old one: sent after each new
    /// leaf so nodes that trust only the old root accept it. Empty otherwise.
    pub cross_signed: String,
    /// Nodes removed from the cluster: their certificates are refused from the
    /// moment they are removed, whatever their expiry.
    pub revoked_nodes: std::collections::BTreeSet<String>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("roots_pem", &self.roots_pem)
            .field("signer_cert", &self.signer_cert)
            .field("signer_key", &"<redacted>")
            .field("cross_signed", &self.cross_signed)
            .field("revoked_nodes", &self.revoked_nodes)
            .finish()
    }
}

/// Certificate settings (`shoal cluster update --cert-expiry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CaConfig {
    /// How long node certificates are valid. Default 90 days (Swarm's 2160h);
    /// nodes renew at a random point between 50 % and 80 % of it. At least 1m
    /// (Swarm's floor is 1h; Shoal allows less so renewal can be watched in tests).
    #[schema(value_type = String, example = "2160h")]
    #[serde(with = "duration")]
    pub node_cert_expiry: Duration,
}

/// The default node certificate validity: 90 days.
pub const NODE_CERT_EXPIRY: Duration = Duration::from_secs(90 * 24 * 3600);
/// The shortest node certificate validity allowed.
pub const MIN_NODE_CERT_EXPIRY: Duration = Duration::from_secs(60);

impl Default for CaConfig {
    fn default() -> Self {
        CaConfig { node_cert_expiry: NODE_CERT_EXPIRY }
    }
}

/// The data-path keyring: AES-128-GCM keys, oldest first, at most
/// [`DataPathKeys::KEEP`]. Nodes seal with `primary` and open with any key of the
/// ring, so a packet sealed just before or after a rotation is never refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DataPathKeys {
    /// The keys, oldest first.
    pub keys: Vec<DataPathKey>,
    /// The id of the key nodes seal with (0 while there is none).
    pub primary: u32,
}

impl DataPathKeys {
    /// Keys kept in the ring, as in Swarm: the previous, the current and the next.
    pub const KEEP: usize = 3;
    /// Bytes of a key (AES-128).
    pub const KEY_LEN: usize = 16;

    /// The key nodes seal with.
    pub fn primary(&self) -> Option<&DataPathKey> {
        self.keys.iter().find(|k| k.id == self.primary)
    }
}

/// One data-path key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DataPathKey {
    /// Its id, carried in every sealed packet; increasing, never 0.
    pub id: u32,
    /// The AES-128-GCM key.
    #[schema(value_type = String, format = Byte)]
    #[serde(with = "crate::secret::base64_bytes")]
    pub key: Vec<u8>,
    /// When the leader made it.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl std::fmt::Debug for DataPathKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPathKey")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .field("created_at", &self.created_at)
            .finish()
    }
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
    /// Node certificates.
    pub ca_config: CaConfig,
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
            ca_config: CaConfig::default(),
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
