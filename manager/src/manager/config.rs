//! A manager's settings.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::lock::UnlockKey;
use crate::raft::state_machine::SnapshotPolicy;

/// Settings of one manager.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Where the log, the snapshots and the manager's id live.
    pub data_dir: PathBuf,
    /// Address the gRPC server listens on (`0` port picks one).
    pub listen: SocketAddr,
    /// Address other managers reach it at; default: the listen address.
    pub advertise: Option<String>,
    /// Leader heartbeat, ms. Default 250.
    pub heartbeat_ms: u64,
    /// Election timeout range, ms. Default 1000–2000: openraft's defaults (150–300)
    /// elect leaders needlessly on a loaded 2-core machine.
    pub election_ms: (u64, u64),
    /// When to snapshot: at least 10000 entries since the last one (Swarm's interval)
    /// and a log as large as that snapshot; see [`SnapshotPolicy`] for why Shoal weighs
    /// the log against the store.
    pub snapshot: SnapshotPolicy,
    /// Entries kept after a snapshot for slow followers. Default 500 (Swarm's).
    pub keep_after_snapshot: u64,
    /// Recovery after losing quorum for good: keep this manager's committed state and
    /// make it the only member of a new one-manager cluster (`--force-new-cluster`).
    pub force_new_cluster: bool,
    /// Where the node's certificate, key and trusted roots live (shared with the
    /// node's agent). Default `<data_dir>/certs`.
    pub certs_dir: PathBuf,
    /// The node id its certificate names. Default: the Raft id.
    pub node_id: Option<String>,
    /// At `--init`: an external CA's certificate and key to use instead of a new one.
    pub external_ca: Option<shoal_pki::CaKeys>,
    /// The cluster's unlock key, for a manager whose data key autolock sealed
    /// (`shoal cluster unlock`); see [`super::lock`].
    pub unlock_key: Option<UnlockKey>,
}

impl ManagerConfig {
    /// Defaults for a manager keeping its state in `data_dir` and listening on `listen`.
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> ManagerConfig {
        let data_dir: PathBuf = data_dir.into();
        ManagerConfig {
            certs_dir: data_dir.join("certs"),
            node_id: None,
            external_ca: None,
            data_dir,
            listen,
            advertise: None,
            heartbeat_ms: 250,
            election_ms: (1000, 2000),
            snapshot: SnapshotPolicy::default(),
            keep_after_snapshot: 500,
            force_new_cluster: false,
            unlock_key: None,
        }
    }

    /// openraft's settings for this manager.
    pub(super) fn raft(&self) -> openraft::Config {
        openraft::Config {
            cluster_name: "shoal".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_ms.0,
            election_timeout_max: self.election_ms.1,
            install_snapshot_timeout: 10_000,
            // The state machine says when a snapshot is due (see `Manager::start`).
            snapshot_policy: openraft::SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: self.keep_after_snapshot,
            // Entries per AppendEntries (openraft's default is 300): an entry may hold
            // up to 1.5 MiB (a controller's holds 256 whole tasks, about 400 KB), and
            // 300 of them would pass the 64 MiB message cap when a follower catches
            // up; 32 stay under it.
            max_payload_entries: 32,
            ..Default::default()
        }
    }
}
