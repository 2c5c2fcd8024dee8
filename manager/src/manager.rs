//! One manager: its Raft node, the gRPC server other managers talk to, and the client
//! API the rest of the manager uses: propose a transaction (forwarded to the leader
//! from a follower), read locally or linearizably, watch events, follow leadership,
//! and admit or remove managers.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::Instant as _;
use openraft::async_runtime::WatchReceiver;
use openraft::{BasicNode, ChangeMembers, ReadPolicy, ServerState};
use shoal_api::cluster::{Cluster, ClusterSpec, JoinTokens};
use shoal_api::{Meta, Node};
use shoal_proto::raft as pb;
use tokio::sync::watch;

use crate::raft::log_store::LogStore;
use crate::raft::network::{Network, channel};
use crate::raft::proposal::Proposal;
use crate::raft::service::RaftService;
use crate::raft::state_machine::SnapshotPolicy;
use crate::raft::state_machine::{Shared, StateMachine};
use crate::raft::types::Raft;
use crate::store::{Change, Event, Kind, Object, Store, StoreError, Transaction, WatchError};

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
}

impl ManagerConfig {
    /// Defaults for a manager keeping its state in `data_dir` and listening on `listen`.
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> ManagerConfig {
        ManagerConfig {
            data_dir: data_dir.into(),
            listen,
            advertise: None,
            heartbeat_ms: 250,
            election_ms: (1000, 2000),
            snapshot: SnapshotPolicy::default(),
            keep_after_snapshot: 500,
            force_new_cluster: false,
        }
    }
}

/// Errors of the manager's client API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManagerError {
    /// The store refused the transaction.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No leader is known (an election is going on, or quorum is lost).
    #[error("no leader is known: an election is under way or a majority of managers is down; retry shortly")]
    NoLeader,
    /// The call needs the leader and this manager is not it.
    #[error("this manager is not the leader; the leader is {leader_addr}")]
    NotLeader {
        /// The leader's address.
        leader_addr: String,
    },
    /// A join token that is not this cluster's.
    #[error(
        "the join token is not valid for this cluster: get a current one with `shoal cluster join-token manager`"
    )]
    BadToken,
    /// The cluster is already initialized (or not yet).
    #[error("{0}")]
    State(String),
    /// Raft or the network failed.
    #[error("{0}")]
    Raft(String),
    /// The leader's data disk is nearly full: the write was refused before Raft
    /// saw it (a write that fails inside the log would stop the manager).
    #[error("{0}")]
    DiskFull(String),
}

/// Free space a leader keeps on its data disk: below it, writes are refused with
/// [`ManagerError::DiskFull`]. It covers the largest entry (1.5 MiB) many times
/// over, and the growth of the log and snapshot files; on a small disk, a
/// twentieth of it.
pub const MIN_FREE_BYTES: u64 = 32 << 20;

/// The last look at the data disk's free space. A file system's free count is
/// costly to read (ext4 sums per-CPU counters): a busy leader looks once per 50 ms,
/// not once per write.
#[derive(Debug, Default)]
struct Room(std::sync::Mutex<Option<(Instant, Result<(), ManagerError>)>>);

impl Room {
    fn ensure(&self, dir: &Path) -> Result<(), ManagerError> {
        let mut last = self.0.lock().expect("room lock");
        match &*last {
            Some((at, result)) if at.elapsed() < Duration::from_millis(50) => result.clone(),
            _ => {
                let result = ensure_room(dir);
                *last = Some((Instant::now(), result.clone()));
                result
            }
        }
    }
}

/// Refuses a write when `dir`'s file system has less free than it should keep.
fn ensure_room(dir: &Path) -> Result<(), ManagerError> {
    let Ok(st) = nix::sys::statvfs::statvfs(dir) else { return Ok(()) };
    let free = st.blocks_available() * st.fragment_size();
    let keep = MIN_FREE_BYTES.min(st.blocks() * st.fragment_size() / 20);
    if free >= keep {
        return Ok(());
    }
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    Err(ManagerError::DiskFull(format!(
        "the leader's data disk is nearly full ({:.1} MiB free in {}; writes need {:.1} MiB): free space there, then retry; nothing was written",
        mib(free),
        dir.display(),
        mib(keep)
    )))
}

impl ManagerError {
    /// The gRPC form, with a stable code.
    pub fn to_pb(&self) -> pb::StoreError {
        let (code, field, leader_addr) = match self {
            ManagerError::Store(StoreError::Conflict { .. }) => ("conflict", String::new(), String::new()),
            ManagerError::Store(StoreError::NotFound { id, .. }) => ("not_found", id.clone(), String::new()),
            ManagerError::Store(StoreError::TooLarge { .. }) => ("too_large", String::new(), String::new()),
            ManagerError::Store(_) => ("invalid", String::new(), String::new()),
            ManagerError::NotLeader { leader_addr } => ("not_leader", String::new(), leader_addr.clone()),
            ManagerError::DiskFull(_) => ("disk_full", String::new(), String::new()),
            ManagerError::BadToken => ("unauthenticated", String::new(), String::new()),
            ManagerError::NoLeader | ManagerError::Raft(_) | ManagerError::State(_) => {
                ("unavailable", String::new(), String::new())
            }
        };
        let message = match self {
            // The store error travels whole, so the far side rebuilds it exactly.
            ManagerError::Store(e) => serde_json::to_string(e).unwrap_or_else(|_| e.to_string()),
            other => other.to_string(),
        };
        pb::StoreError { code: code.into(), message, field, leader_addr }
    }

    fn from_pb(e: pb::StoreError) -> ManagerError {
        match e.code.as_str() {
            "not_leader" => ManagerError::NotLeader { leader_addr: e.leader_addr },
            "unavailable" => ManagerError::NoLeader,
            "unauthenticated" => ManagerError::BadToken,
            "disk_full" => ManagerError::DiskFull(e.message),
            _ => match serde_json::from_str::<StoreError>(&e.message) {
                Ok(s) => ManagerError::Store(s),
                Err(_) => ManagerError::Raft(e.message),
            },
        }
    }

    /// The gRPC status for errors of membership calls.
    pub fn to_status(&self) -> tonic::Status {
        match self {
            ManagerError::BadToken => tonic::Status::unauthenticated(self.to_string()),
            ManagerError::NotLeader { .. } | ManagerError::NoLeader => {
                tonic::Status::unavailable(self.to_string())
            }
            ManagerError::State(_) => tonic::Status::failed_precondition(self.to_string()),
            _ => tonic::Status::internal(self.to_string()),
        }
    }
}

fn raft_err(e: impl std::fmt::Display) -> ManagerError {
    ManagerError::Raft(e.to_string())
}

/// A running manager.
#[derive(Debug)]
pub struct Manager {
    id: u64,
    advertise: String,
    /// Where the log and snapshots live (checked for room before writes).
    data_dir: PathBuf,
    room: Room,
    raft: Raft,
    shared: Arc<Shared>,
    log_stats: Arc<crate::raft::log_store::LogStats>,
    /// Mean commit latency of this manager's proposals, microseconds (EWMA, 1/8).
    commit_latency_us: std::sync::atomic::AtomicU64,
    leader: watch::Receiver<bool>,
    /// Whether the state has caught up with the cluster's commit since start.
    recovered: watch::Receiver<bool>,
    /// When this manager started.
    started: Instant,
    /// A peer not heard from for this long counts as unreachable.
    unreachable_after: Duration,
    server: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    monitor: std::sync::Mutex<Option<crate::dispatcher::NodeMonitor>>,
    dispatcher: std::sync::OnceLock<crate::dispatcher::Dispatcher>,
    stop: tokio::sync::Notify,
}

/// Reads (or makes) the manager's Raft id, kept in the data dir for its lifetime. Ids
/// are random 63-bit numbers, so a removed manager's id is never handed out again.
fn manager_id(dir: &Path) -> std::io::Result<u64> {
    let path = dir.join("manager-id");
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            s.trim().parse().map_err(|_| std::io::Error::other(format!("{} is damaged", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            let id = rand_id();
            std::fs::write(&path, id.to_string())?;
            Ok(id)
        }
        Err(e) => Err(e),
    }
}

fn rand_id() -> u64 {
    (rand::random::<u64>() >> 1).max(1)
}

fn token(kind: &str, cluster_id: &str) -> String {
    let secret: String = rand::random::<[u8; 16]>().iter().map(|x| format!("{x:02x}")).collect();
    format!("SHTKN-1-{cluster_id}-{kind}{secret}")
}

/// Joins a cluster as a worker through the manager at `addr`: the node is stored
/// with `node_id`; returns the managers' addresses.
pub async fn join_as_worker(
    addr: &str,
    token: &str,
    node_id: &str,
    hostname: &str,
    advertise_addr: &str,
) -> Result<Vec<String>, ManagerError> {
    let mut client = pb::membership_client::MembershipClient::new(channel(addr).map_err(raft_err)?);
    let req = pb::JoinRequest {
        token: token.to_owned(),
        node_id: node_id.to_owned(),
        hostname: hostname.to_owned(),
        advertise_addr: advertise_addr.to_owned(),
    };
    let reply = client.join(req).await.map_err(|s| match s.code() {
        tonic::Code::Unauthenticated => ManagerError::BadToken,
        _ => ManagerError::Raft(format!("join through {addr}: {}", s.message())),
    })?;
    Ok(reply.into_inner().managers)
}

/// A new bearer token for the API's TCP listeners.
fn api_token() -> String {
    let secret: String = rand::random::<[u8; 24]>().iter().map(|x| format!("{x:02x}")).collect();
    format!("SHAPI-1-{secret}")
}

impl Manager {
    /// Starts the manager: opens its storage, starts Raft and the gRPC server. The
    /// cluster still has to be initialized ([`init`](Self::init)) or joined.
    pub async fn start(cfg: ManagerConfig) -> Result<Arc<Manager>, ManagerError> {
        let id = manager_id(&cfg.data_dir).map_err(raft_err)?;
        let mut log = LogStore::open(&cfg.data_dir).map_err(raft_err)?;
        let log_stats = log.stats();
        let sm = StateMachine::open(&cfg.data_dir.join("state"), cfg.snapshot).map_err(raft_err)?;
        let shared = sm.shared();
        let listener = tokio::net::TcpListener::bind(cfg.listen).await.map_err(raft_err)?;
        let bound = listener.local_addr().map_err(raft_err)?;
        let advertise = cfg.advertise.clone().unwrap_or_else(|| bound.to_string());
        if cfg.force_new_cluster {
            crate::raft::recovery::force_new_cluster(id, &advertise, &mut log, &sm)
                .await
                .map_err(raft_err)?;
        }
        let config = openraft::Config {
            cluster_name: "shoal".into(),
            heartbeat_interval: cfg.heartbeat_ms,
            election_timeout_min: cfg.election_ms.0,
            election_timeout_max: cfg.election_ms.1,
            install_snapshot_timeout: 10_000,
            // The state machine says when a snapshot is due (see `snapshot_due` below).
            snapshot_policy: openraft::SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: cfg.keep_after_snapshot,
            ..Default::default()
        }
        .validate()
        .map_err(raft_err)?;
        // Subscribed before Raft starts: starting re-applies the log's committed tail,
        // which may already make a snapshot due.
        let mut due = shared.snapshot_due();
        let raft = Raft::new(id, Arc::new(config), Network::new(id), log, sm).await.map_err(raft_err)?;

        let (leader_tx, leader_rx) = watch::channel(false);
        let mut metrics = raft.metrics();
        tokio::spawn(async move {
            loop {
                let is_leader = leads_with_full_state(&metrics.borrow_watched());
                leader_tx.send_if_modified(|v| std::mem::replace(v, is_leader) != is_leader);
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        });

        // Snapshots are taken when the state machine says one is due. openraft ignores
        // a trigger while a build is under way, so the ask is repeated every second
        // until a build has started (which clears it).
        let (r, weak) = (raft.clone(), Arc::downgrade(&shared));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    changed = due.changed() => if changed.is_err() { return },
                    _ = tick.tick() => {}
                }
                let Some(asked) = weak.upgrade().map(|s| s.snapshot_asked()) else { return };
                if asked && r.trigger().snapshot().await.is_err() {
                    return;
                }
            }
        });

        // After a restart, local reads wait (a while) for the state to catch up with
        // what the cluster committed before it.
        let (recovered_tx, recovered) = watch::channel(false);
        let r = raft.clone();
        tokio::spawn(async move {
            if r.wait_for_recovery(None).await.is_ok() {
                recovered_tx.send_replace(true);
            }
        });

        let manager = Arc::new(Manager {
            id,
            advertise,
            data_dir: cfg.data_dir.clone(),
            room: Room::default(),
            raft,
            shared,
            log_stats,
            commit_latency_us: std::sync::atomic::AtomicU64::new(0),
            leader: leader_rx,
            recovered,
            started: Instant::now(),
            unreachable_after: Duration::from_millis(cfg.election_ms.1 * 2),
            server: std::sync::Mutex::new(None),
            monitor: std::sync::Mutex::new(None),
            dispatcher: std::sync::OnceLock::new(),
            stop: tokio::sync::Notify::new(),
        });
        let service = RaftService::new(manager.clone());
        let dispatcher = crate::dispatcher::Dispatcher::new(manager.clone());
        let _ = manager.dispatcher.set(dispatcher.clone());
        *manager.monitor.lock().expect("monitor handle") =
            Some(crate::dispatcher::NodeMonitor::start(dispatcher.clone()));
        let m = manager.clone();
        // No Nagle on accepted connections either: a small reply held back waiting for a
        // delayed ACK costs ~40 ms.
        let incoming =
            tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |s| {
                s.inspect(|s| {
                    let _ = s.set_nodelay(true);
                })
            });
        let handle = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(
                    pb::raft_server::RaftServer::new(service.clone())
                        .max_decoding_message_size(64 << 20)
                        .max_encoding_message_size(64 << 20),
                )
                .add_service(pb::membership_server::MembershipServer::new(service))
                .add_service(shoal_proto::dispatcher::dispatcher_server::DispatcherServer::new(dispatcher))
                .serve_with_incoming_shutdown(incoming, m.stop.notified())
                .await;
        });
        *manager.server.lock().expect("server handle") = Some(handle);
        Ok(manager)
    }

    /// The dispatcher serving this manager's workers (while it leads).
    pub fn dispatcher(&self) -> &crate::dispatcher::Dispatcher {
        self.dispatcher.get().expect("the dispatcher is set at start")
    }

    /// Streams tasks' logs: through this manager's dispatcher when it leads, or from
    /// the leader's.
    pub async fn logs(
        &self,
        task_ids: Vec<String>,
        opts: crate::dispatcher::logs::LogOptions,
    ) -> Result<
        std::pin::Pin<
            Box<dyn futures::Stream<Item = Result<shoal_proto::dispatcher::LogsReply, tonic::Status>> + Send>,
        >,
        ManagerError,
    > {
        if self.is_leader() {
            return Ok(self.dispatcher().stream_logs(&task_ids, opts));
        }
        let leader = self.leader_addr()?;
        let mut client = shoal_proto::dispatcher::dispatcher_client::DispatcherClient::new(
            channel(&leader).map_err(raft_err)?,
        );
        let req = shoal_proto::dispatcher::LogsRequest {
            task_ids,
            follow: opts.follow,
            tail: opts.tail,
            since_unix_nanos: opts.since_unix_nanos,
        };
        let stream =
            client.logs(req).await.map_err(|s| ManagerError::Raft(s.message().to_owned()))?.into_inner();
        Ok(Box::pin(stream))
    }

    /// The manager's Raft id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The address other managers reach it at.
    pub fn addr(&self) -> &str {
        &self.advertise
    }

    /// The openraft handle (for the gRPC service and tests).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Whether this manager belongs to a cluster already (its log says so).
    pub async fn is_member(&self) -> Result<bool, ManagerError> {
        self.raft.is_initialized().await.map_err(raft_err)
    }

    /// Starts a new cluster with this manager as its only member, and stores the
    /// cluster object with fresh join tokens.
    pub async fn init(&self) -> Result<Cluster, ManagerError> {
        if self.is_member().await? {
            return Err(ManagerError::State("this manager already belongs to a cluster".into()));
        }
        let members = BTreeMap::from([(self.id, BasicNode::new(self.advertise.clone()))]);
        self.raft.initialize(members).await.map_err(raft_err)?;
        self.wait_leader(Duration::from_secs(30)).await?;
        let cluster_id = shoal_api::object::new_id();
        let cluster = Cluster {
            id: cluster_id.clone(),
            meta: Meta::new(chrono::Utc::now()),
            spec: ClusterSpec::default(),
            join_tokens: JoinTokens { worker: token("W", &cluster_id), manager: token("M", &cluster_id) },
            api_token: api_token(),
        };
        self.propose(Transaction {
            changes: vec![Change::Create { object: Object::Cluster(cluster.clone()) }],
        })
        .await?;
        Ok(cluster)
    }

    /// Joins the cluster a manager at `addr` belongs to, with a manager join token.
    /// Returns once this manager is a voter.
    pub async fn join(&self, addr: &str, join_token: &str) -> Result<(), ManagerError> {
        let mut client = pb::membership_client::MembershipClient::new(channel(addr).map_err(raft_err)?);
        let req = pb::JoinRequest {
            token: join_token.to_owned(),
            node_id: self.id.to_string(),
            hostname: String::new(),
            advertise_addr: self.advertise.clone(),
        };
        client.join(req).await.map_err(|s| match s.code() {
            tonic::Code::Unauthenticated => ManagerError::BadToken,
            _ => ManagerError::Raft(format!("join through {addr}: {}", s.message())),
        })?;
        Ok(())
    }

    /// Admits a manager asking to join: the token must be this cluster's manager
    /// token. The manager is added as a learner, caught up, then made a voter.
    pub async fn admit(&self, req: pb::JoinRequest) -> Result<pb::JoinReply, ManagerError> {
        if !self.is_leader() {
            let leader = self.leader_addr()?;
            let mut client =
                pb::membership_client::MembershipClient::new(channel(&leader).map_err(raft_err)?);
            return client.join(req).await.map(|r| r.into_inner()).map_err(|s| match s.code() {
                tonic::Code::Unauthenticated => ManagerError::BadToken,
                _ => ManagerError::Raft(s.message().to_owned()),
            });
        }
        let cluster =
            self.cluster().ok_or_else(|| ManagerError::State("the cluster is not initialized".into()))?;
        if req.token == cluster.join_tokens.worker && !req.token.is_empty() {
            return self.admit_worker(req, cluster).await;
        }
        if req.token != cluster.join_tokens.manager {
            tracing::warn!(addr = %req.advertise_addr, "refused a join with a wrong token");
            return Err(ManagerError::BadToken);
        }
        let raft_id: u64 =
            req.node_id.parse().map_err(|_| ManagerError::State("malformed manager id".into()))?;
        let node = BasicNode::new(req.advertise_addr.clone());
        self.raft.add_learner(raft_id, node, true).await.map_err(raft_err)?;
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([raft_id])), false)
            .await
            .map_err(raft_err)?;
        Ok(pb::JoinReply {
            cluster_id: cluster.id,
            node_id: req.node_id,
            role: "manager".into(),
            raft_id,
            managers: self.managers().into_values().collect(),
        })
    }

    /// Admits a worker: its node is stored (role worker, state unknown until its
    /// first session) unless it is there already (a worker joining again).
    async fn admit_worker(
        &self,
        req: pb::JoinRequest,
        cluster: Cluster,
    ) -> Result<pb::JoinReply, ManagerError> {
        use shoal_api::node::{
            NodeDescription, NodeResources, NodeRole, NodeSpec, NodeState, NodeStatus, Platform,
        };
        if !shoal_api::object::looks_like_id(&req.node_id) {
            return Err(ManagerError::State(format!("{:?} is not a node id", req.node_id)));
        }
        let exists = self.read(|s| s.get(Kind::Node, &req.node_id).is_some());
        if !exists {
            let now = chrono::Utc::now();
            let addr = req
                .advertise_addr
                .parse::<std::net::IpAddr>()
                .or_else(|_| req.advertise_addr.parse::<SocketAddr>().map(|a| a.ip()))
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
            let node = Node {
                id: req.node_id.clone(),
                meta: Meta::new(now),
                spec: NodeSpec { role: NodeRole::Worker, ..NodeSpec::default() },
                description: NodeDescription {
                    hostname: req.hostname.clone(),
                    platform: Platform { os: String::new(), arch: String::new() },
                    resources: NodeResources::default(),
                    engine_labels: BTreeMap::new(),
                    version: String::new(),
                },
                status: NodeStatus {
                    state: NodeState::Unknown,
                    message: "joined; waiting for its first session".into(),
                    addr,
                },
                manager_status: None,
            };
            self.propose(Transaction { changes: vec![Change::Create { object: Object::Node(node) }] })
                .await?;
            tracing::info!(node = %req.node_id, hostname = %req.hostname, "worker joined");
        }
        Ok(pb::JoinReply {
            cluster_id: cluster.id,
            node_id: req.node_id,
            role: "worker".into(),
            raft_id: 0,
            managers: self.managers().into_values().collect(),
        })
    }

    /// Removes a manager from the Raft group. Refused when the managers left could not
    /// form a majority of the reachable ones, unless `force`.
    pub async fn remove_manager(&self, raft_id: u64, force: bool) -> Result<(), ManagerError> {
        self.change_role(raft_id, force, false).await
    }

    /// Demotes a manager: it stops voting and keeps receiving the log as a learner
    /// (the same quorum guard as removal applies).
    pub async fn demote_manager(&self, raft_id: u64, force: bool) -> Result<(), ManagerError> {
        self.change_role(raft_id, force, true).await
    }

    /// Managers the leader has heard from lately (itself included); empty on a
    /// follower, which does not track its peers.
    pub fn reachable_managers(&self) -> BTreeSet<u64> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let Some(heartbeats) = metrics.heartbeat.as_ref() else { return BTreeSet::new() };
        let mut out: BTreeSet<u64> = heartbeats
            .iter()
            .filter(|(_, at)| at.as_ref().is_some_and(|at| at.elapsed() < self.unreachable_after))
            .map(|(id, _)| *id)
            .collect();
        out.insert(self.id);
        out
    }

    /// The managers the leader heard from lately, asked of the leader when this
    /// manager follows; `None` when no leader answers.
    pub async fn reachable_anywhere(&self) -> Option<BTreeSet<u64>> {
        if self.is_leader() {
            return Some(self.reachable_managers());
        }
        let addr = self.leader_addr().ok()?;
        let mut client = pb::raft_client::RaftClient::new(channel(&addr).ok()?);
        let mut req = tonic::Request::new(pb::ReadIndexRequest {});
        req.set_timeout(Duration::from_secs(2));
        let reply = client.read_index(req).await.ok()?.into_inner();
        matches!(reply.result, Some(pb::read_index_reply::Result::Index(_)))
            .then(|| reply.reachable.into_iter().collect())
    }

    async fn change_role(
        &self,
        raft_id: u64,
        force: bool,
        keep_as_learner: bool,
    ) -> Result<(), ManagerError> {
        if !self.is_leader() {
            let req = pb::LeaveRequest { raft_id, force, keep_as_learner, learner: false, promote: false };
            return self.leave_on_leader(req).await;
        }
        let membership = self.raft.metrics().borrow_watched().membership_config.clone();
        let voters: BTreeSet<u64> = membership.membership().voter_ids().collect();
        if !voters.contains(&raft_id) {
            return Err(ManagerError::Store(StoreError::NotFound {
                kind: Kind::Node,
                id: raft_id.to_string(),
            }));
        }
        let remaining: Vec<u64> = voters.iter().copied().filter(|v| *v != raft_id).collect();
        let reachable_now = self.reachable_managers();
        let reachable = remaining.iter().filter(|v| reachable_now.contains(v)).count();
        if !force && (remaining.is_empty() || reachable < remaining.len() / 2 + 1) {
            return Err(ManagerError::State(format!(
                "that would leave {reachable} reachable of {} managers, which is no majority: \
                 bring managers back first, or force it",
                remaining.len()
            )));
        }
        self.raft
            .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([raft_id])), keep_as_learner)
            .await
            .map_err(raft_err)?;
        Ok(())
    }

    /// Removes a demoted manager (a learner) from the group for good.
    pub async fn remove_learner(&self, raft_id: u64) -> Result<(), ManagerError> {
        if !self.is_leader() {
            return self
                .leave_on_leader(pb::LeaveRequest {
                    raft_id,
                    force: false,
                    keep_as_learner: false,
                    learner: true,
                    promote: false,
                })
                .await;
        }
        if self.is_voter(raft_id) {
            return Err(ManagerError::State(format!("manager {raft_id} still votes: demote it first")));
        }
        self.raft
            .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([raft_id])), false)
            .await
            .map_err(raft_err)?;
        Ok(())
    }

    /// Makes a demoted manager (a learner) a voter again.
    pub async fn promote_manager(&self, raft_id: u64) -> Result<(), ManagerError> {
        if !self.is_leader() {
            let req = pb::LeaveRequest {
                raft_id,
                force: false,
                keep_as_learner: false,
                learner: false,
                promote: true,
            };
            return self.leave_on_leader(req).await;
        }
        if !self.managers().contains_key(&raft_id) {
            return Err(ManagerError::Store(StoreError::NotFound {
                kind: Kind::Node,
                id: raft_id.to_string(),
            }));
        }
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([raft_id])), false)
            .await
            .map_err(raft_err)?;
        Ok(())
    }

    /// Sends a membership change to the leader.
    async fn leave_on_leader(&self, req: pb::LeaveRequest) -> Result<(), ManagerError> {
        let leader = self.leader_addr()?;
        let mut client = pb::membership_client::MembershipClient::new(channel(&leader).map_err(raft_err)?);
        client.leave(req).await.map(drop).map_err(|s| match s.code() {
            tonic::Code::FailedPrecondition => ManagerError::State(s.message().to_owned()),
            tonic::Code::Unavailable => ManagerError::NoLeader,
            _ => ManagerError::Raft(s.message().to_owned()),
        })
    }

    /// Replaces the join token of `role` ("worker" or "manager") with a new one; nodes
    /// that joined with the old token are not affected.
    pub async fn rotate_join_token(&self, role: &str) -> Result<Cluster, ManagerError> {
        let mut cluster =
            self.cluster().ok_or_else(|| ManagerError::State("the cluster is not initialized".into()))?;
        let version = cluster.meta.version;
        match role {
            "worker" => cluster.join_tokens.worker = token("W", &cluster.id),
            "manager" => cluster.join_tokens.manager = token("M", &cluster.id),
            other => {
                return Err(ManagerError::State(format!(
                    "no join token for role {other:?}: use worker or manager"
                )));
            }
        }
        cluster.meta.updated_at = chrono::Utc::now();
        let change = Change::Update { object: Object::Cluster(cluster.clone()), expected_version: version };
        let index = self.propose(Transaction { changes: vec![change] }).await?;
        cluster.meta.version = index;
        Ok(cluster)
    }

    /// Replaces the API token; TCP clients with the old one are refused from now on.
    pub async fn rotate_api_token(&self) -> Result<Cluster, ManagerError> {
        let mut cluster =
            self.cluster().ok_or_else(|| ManagerError::State("the cluster is not initialized".into()))?;
        let version = cluster.meta.version;
        cluster.api_token = api_token();
        cluster.meta.updated_at = chrono::Utc::now();
        let change = Change::Update { object: Object::Cluster(cluster.clone()), expected_version: version };
        cluster.meta.version = self.propose(Transaction { changes: vec![change] }).await?;
        Ok(cluster)
    }

    /// Stores this manager's node object (or refreshes it after a restart): what it
    /// runs on, its labels, and that it is a ready manager. The node id is the
    /// daemon's, kept in its data dir.
    pub async fn register_node(
        &self,
        node_id: &str,
        description: shoal_api::node::NodeDescription,
        addr: std::net::IpAddr,
    ) -> Result<Node, ManagerError> {
        use shoal_api::node::{ManagerStatus, NodeRole, NodeSpec, NodeState, NodeStatus, Reachability};
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let existing = self.read_linearizable(|s| s.get(Kind::Node, node_id).cloned()).await?;
            let now = chrono::Utc::now();
            let status = NodeStatus { state: NodeState::Ready, message: String::new(), addr };
            let manager_status = Some(ManagerStatus {
                raft_id: self.id,
                addr: self.advertise.clone(),
                leader: false,
                reachability: Reachability::Reachable,
            });
            let (change, mut node) = match existing {
                Some(Object::Node(n)) => {
                    let mut n = n.clone();
                    let version = n.meta.version;
                    n.description = description.clone();
                    n.status = status;
                    n.manager_status = manager_status;
                    n.spec.role = NodeRole::Manager;
                    n.meta.updated_at = now;
                    (Change::Update { object: Object::Node(n.clone()), expected_version: version }, n)
                }
                _ => {
                    let n = Node {
                        id: node_id.to_owned(),
                        meta: Meta::new(now),
                        spec: NodeSpec { role: NodeRole::Manager, ..NodeSpec::default() },
                        description: description.clone(),
                        status,
                        manager_status,
                    };
                    (Change::Create { object: Object::Node(n.clone()) }, n)
                }
            };
            match self.propose(Transaction { changes: vec![change] }).await {
                Ok(index) => {
                    node.meta.version = index;
                    return Ok(node);
                }
                // Someone else wrote the node meanwhile (a leader marking it down):
                // read it again.
                Err(ManagerError::Store(StoreError::Conflict { .. } | StoreError::Exists { .. }))
                    if Instant::now() < deadline => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether the manager with Raft id `raft_id` votes.
    pub fn is_voter(&self, raft_id: u64) -> bool {
        let m = self.raft.metrics().borrow_watched().membership_config.clone();
        m.membership().voter_ids().any(|v| v == raft_id)
    }

    /// Raft id → address of every voting manager.
    pub fn managers(&self) -> BTreeMap<u64, String> {
        let m = self.raft.metrics().borrow_watched().membership_config.clone();
        m.membership().nodes().map(|(id, n)| (*id, n.addr.clone())).collect()
    }

    /// Whether this manager leads with a state that holds everything committed before
    /// its term (what assignments and controllers must read).
    pub fn leads_with_full_state(&self) -> bool {
        leads_with_full_state(&self.raft.metrics().borrow_watched())
    }

    /// Whether this manager leads now (read from Raft's own metrics, not from the
    /// leadership watch, which follows them a moment later).
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        m.current_leader == Some(self.id) && m.state == ServerState::Leader
    }

    /// Follows leadership: `true` while this manager leads. Leader-only controllers
    /// start and stop on its changes.
    pub fn leadership(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// The current leader's address.
    pub fn leader_addr(&self) -> Result<String, ManagerError> {
        let m = self.raft.metrics().borrow_watched().clone();
        let leader = m.current_leader.ok_or(ManagerError::NoLeader)?;
        m.membership_config
            .membership()
            .nodes()
            .find(|(id, _)| **id == leader)
            .map(|(_, n)| n.addr.clone())
            .ok_or(ManagerError::NoLeader)
    }

    /// How long this manager has been running.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits (at most `timeout`) until the state holds everything the cluster had
    /// committed when this manager started; false if it does not yet (no quorum).
    pub async fn wait_recovered(&self, timeout: Duration) -> bool {
        let mut recovered = self.recovered.clone();
        tokio::time::timeout(timeout, recovered.wait_for(|r| *r)).await.is_ok_and(|r| r.is_ok())
    }

    /// Waits until some manager leads (this one or another).
    pub async fn wait_leader(&self, timeout: Duration) -> Result<u64, ManagerError> {
        let m = self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .map_err(|_| ManagerError::NoLeader)?;
        m.current_leader.ok_or(ManagerError::NoLeader)
    }

    /// Proposes `tx`: staged and checked against the current state, then committed
    /// through Raft. On a follower it is forwarded to the leader. Returns the log index
    /// (the version of every object written).
    pub async fn propose(&self, tx: Transaction) -> Result<u64, ManagerError> {
        let proposal = Proposal::new(tx)?;
        // While there is no leader (an election), retry for a while: nothing was
        // proposed, so a retry cannot apply the transaction twice.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let result = match self.propose_encoded(proposal.clone()).await {
                Err(ManagerError::NotLeader { leader_addr }) => self.forward(&leader_addr, &proposal).await,
                other => other,
            };
            match result {
                Err(ManagerError::NoLeader | ManagerError::NotLeader { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    /// Sends `tx` to the leader at `leader_addr`.
    async fn forward(&self, leader_addr: &str, proposal: &Proposal) -> Result<u64, ManagerError> {
        let mut client = pb::raft_client::RaftClient::new(channel(leader_addr).map_err(raft_err)?);
        let req = pb::ProposeRequest { transaction: proposal.json().to_vec() };
        let reply = client.propose(req).await.map_err(|s| ManagerError::Raft(s.message().to_owned()))?;
        match reply.into_inner().result {
            Some(pb::propose_reply::Result::Index(i)) => Ok(i),
            Some(pb::propose_reply::Result::Error(e)) => Err(ManagerError::from_pb(e)),
            None => Err(ManagerError::Raft("empty reply".into())),
        }
    }

    /// Proposes on this manager, which must be the leader.
    pub async fn propose_local(&self, tx: Transaction) -> Result<u64, ManagerError> {
        self.propose_encoded(Proposal::new(tx)?).await
    }

    /// Proposes an encoded transaction on this manager, which must be the leader.
    pub async fn propose_encoded(&self, proposal: Proposal) -> Result<u64, ManagerError> {
        if !self.is_leader() {
            return Err(ManagerError::NotLeader { leader_addr: self.leader_addr()? });
        }
        self.shared.check(proposal.transaction())?;
        self.room.ensure(&self.data_dir)?;
        let started = Instant::now();
        match self.raft.client_write(proposal).await {
            Ok(resp) => {
                let took = started.elapsed().as_micros() as u64;
                let avg = &self.commit_latency_us;
                let old = avg.load(std::sync::atomic::Ordering::Relaxed);
                let new = if old == 0 { took.max(1) } else { old - old / 8 + took / 8 };
                avg.store(new, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(index = resp.log_id.index, took_us = took, "committed");
                match resp.data.error {
                    Some(e) => Err(ManagerError::Store(e)),
                    None => Ok(resp.data.index),
                }
            }
            Err(e) => match e.forward_to_leader() {
                Some(f) => match &f.leader_node {
                    Some(n) => Err(ManagerError::NotLeader { leader_addr: n.addr.clone() }),
                    None => Err(ManagerError::NoLeader),
                },
                None => Err(raft_err(e)),
            },
        }
    }

    /// Reads the local state (possibly a little behind the leader).
    pub fn read<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        self.shared.read(f)
    }

    /// Reads state that includes every write committed before the call. The leader
    /// confirms its leadership (ReadIndex); a follower asks the leader for that index
    /// and waits until it has applied it, then reads locally.
    pub async fn read_linearizable<T>(&self, f: impl FnOnce(&Store) -> T) -> Result<T, ManagerError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let index = loop {
            let result = match self.read_index_local().await {
                Err(ManagerError::NotLeader { leader_addr }) => self.read_index_remote(&leader_addr).await,
                other => other,
            };
            match result {
                Err(ManagerError::NoLeader | ManagerError::NotLeader { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => break other?,
            }
        };
        self.raft
            .wait(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100))))
            .applied_index_at_least(Some(index), "read index")
            .await
            .map_err(|_| ManagerError::Raft(format!("this manager did not apply index {index} in time")))?;
        Ok(self.shared.read(f))
    }

    /// On the leader: confirms leadership with a quorum and returns the index a
    /// linearizable read must see applied.
    pub async fn read_index_local(&self) -> Result<u64, ManagerError> {
        match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(read) => Ok(read.log_id().index),
            Err(e) => match e.forward_to_leader() {
                Some(_) => Err(ManagerError::NotLeader { leader_addr: self.leader_addr()? }),
                None => Err(raft_err(e)),
            },
        }
    }

    async fn read_index_remote(&self, leader_addr: &str) -> Result<u64, ManagerError> {
        let mut client = pb::raft_client::RaftClient::new(channel(leader_addr).map_err(raft_err)?);
        let reply = client
            .read_index(pb::ReadIndexRequest {})
            .await
            .map_err(|s| ManagerError::Raft(s.message().to_owned()))?;
        match reply.into_inner().result {
            Some(pb::read_index_reply::Result::Index(i)) => Ok(i),
            Some(pb::read_index_reply::Result::Error(e)) => Err(ManagerError::from_pb(e)),
            None => Err(ManagerError::Raft("empty reply".into())),
        }
    }

    /// Events after `from`, then live ones; or the instruction to re-list.
    pub fn watch(
        &self,
        from: u64,
    ) -> Result<(Vec<Event>, tokio::sync::broadcast::Receiver<Event>), WatchError> {
        self.shared.events().watch(from)
    }

    /// The cluster object, once stored.
    pub fn cluster(&self) -> Option<Cluster> {
        self.read(|s| match s.list(Kind::Cluster).next() {
            Some(Object::Cluster(c)) => Some(c.clone()),
            _ => None,
        })
    }

    /// Term, leader, last applied index: for `/metrics` and `cluster info`.
    pub fn status(&self) -> Status {
        let m = self.raft.metrics().borrow_watched().clone();
        Status {
            id: self.id,
            term: m.current_term,
            leader: m.current_leader,
            last_applied: m.last_applied.map(|l| l.index),
            last_log: m.last_log_index,
            state: format!("{:?}", m.state),
            commit_latency_us: self.commit_latency_us.load(std::sync::atomic::Ordering::Relaxed),
            log_entries: self.log_stats.entries.load(std::sync::atomic::Ordering::Relaxed),
            log_syncs: self.log_stats.syncs.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Stops Raft and the server; state stays on disk.
    pub async fn shutdown(&self) {
        self.monitor.lock().expect("monitor handle").take();
        let _ = self.raft.shutdown().await;
        self.stop.notify_waiters();
        let handle = self.server.lock().expect("server handle").take();
        if let Some(h) = handle {
            h.abort();
            let _ = h.await;
        }
    }
}

/// A manager's Raft status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Raft id.
    pub id: u64,
    /// Current term.
    pub term: u64,
    /// The leader's Raft id.
    pub leader: Option<u64>,
    /// Last applied log index.
    pub last_applied: Option<u64>,
    /// Last log index.
    pub last_log: Option<u64>,
    /// Leader, Follower, Candidate or Learner.
    pub state: String,
    /// Mean time for this manager's proposals to commit, microseconds.
    pub commit_latency_us: u64,
    /// Log entries this manager wrote to disk.
    pub log_entries: u64,
    /// Disk syncs those took (fewer than entries when writes are batched).
    pub log_syncs: u64,
}

/// Whether the node these metrics describe leads and has applied its own term's first
/// entry: its state then holds everything committed before, so controllers and
/// assignments act on all of it.
fn leads_with_full_state(m: &openraft::RaftMetrics<crate::raft::types::TypeConfig>) -> bool {
    m.state == ServerState::Leader
        && m.last_applied.as_ref().is_some_and(|l| l.leader_id.term == m.current_term)
}
