//! One manager: its Raft node and the API the rest of the manager uses on it:
//! propose a transaction (forwarded to the leader from a follower), read locally or
//! linearizably, watch events, and follow leadership.
//!
//! Its other concerns live in rooms beside it: [`config`], [`error`] (and the
//! errors' wire forms), [`membership`] (init, joins, demotion and removal),
//! [`nodes`] (the members' node objects), [`tokens`] (join and API tokens), [`lock`]
//! (the data key that seals the log and snapshots, and autolock's unlock key), [`lead`]
//! (where workers' sessions go while leadership changes hands), the
//! leader's disk guard ([`room`]) and the clients of other managers ([`client`]).
//! Serving it over gRPC, with the dispatcher beside it, is [`crate::server`]'s job:
//! nothing here knows the services that use a manager.

mod certs;
pub(crate) mod client;
pub mod config;
pub mod error;
pub mod lead;
pub mod lock;
mod membership;
mod nodes;
pub mod raft_thread;
mod room;
pub mod tokens;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::type_config::alias::WatchReceiverOf;
use openraft::{ReadPolicy, ServerState};
use prometheus_client::metrics::counter::Counter;
use shoal_api::cluster::Cluster;
use shoal_proto::raft as pb;
use tokio::sync::watch;

pub use certs::{Need, check};
pub use config::ManagerConfig;
pub use error::ManagerError;
pub use room::MIN_FREE_BYTES;

use crate::raft::log_store::LogStore;
use crate::raft::network::Network;
use crate::raft::proposal::Proposal;
use crate::raft::state_machine::{Shared, StateMachine};
use crate::raft::{Raft, TypeConfig};
use crate::store::{Event, Kind, Object, Store, Transaction, WatchError};

/// A running manager.
#[derive(Debug)]
pub struct Manager {
    id: u64,
    advertise: String,
    /// Where the log and snapshots live (checked for room before writes).
    data_dir: std::path::PathBuf,
    room: room::Room,
    raft: Raft,
    /// Where Raft runs and other managers' connections are served.
    thread: raft_thread::RaftThread,
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
    /// A leader not heard from for this long (Raft's shortest election timeout) is
    /// not named to workers ([`lead`]).
    leader_silent_after: Duration,
    /// Tasks that live as long as the manager (its servers), ended at shutdown.
    attached: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Tells attached servers to stop taking calls.
    stop: tokio::sync::watch::Sender<bool>,
    /// The node's TLS credentials (shared with its agent and its servers).
    creds: shoal_pki::Credentials,
    /// Where they are saved.
    certs_dir: std::path::PathBuf,
    /// The node id the certificate names.
    node_id: String,
    /// At `--init`: the external CA to use.
    external_ca: Option<shoal_pki::CaKeys>,
}

/// Reads (or makes) the manager's Raft id, kept in the data dir for its lifetime. Ids
/// are random 63-bit numbers, so a removed manager's id is never handed out again.
fn manager_id(dir: &Path) -> std::io::Result<u64> {
    let path = dir.join("manager-id");
    match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse().map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{} is damaged", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            let id = (rand::random::<u64>() >> 1).max(1);
            std::fs::write(&path, id.to_string())?;
            Ok(id)
        }
        Err(e) => Err(e),
    }
}

impl Manager {
    /// Starts the manager's Raft node: opens its storage and starts Raft, reached by
    /// other managers at `advertise`. The gRPC server that answers there is
    /// [`crate::server`]'s; the cluster still has to be initialized
    /// ([`init`](Self::init)) or joined.
    pub async fn start(cfg: &ManagerConfig, advertise: String) -> Result<Arc<Manager>, ManagerError> {
        let dir = &cfg.data_dir;
        let id = manager_id(dir)
            .map_err(|e| ManagerError::io(format!("read the manager id in {}", dir.display()), e))?;
        // Before anything is read: a locked manager stops here.
        let dek = lock::load_dek(dir, cfg.unlock_key.as_ref())?;
        let wrapped_by =
            cfg.unlock_key.clone().filter(|_| lock::is_sealed(&dir.join(lock::DEK_FILE)).unwrap_or(false));
        let sealer = crate::raft::seal::Sealer::new(&dek);
        let mut log = LogStore::open(dir, sealer.clone())
            .map_err(|e| ManagerError::io(format!("start the manager from {}", dir.display()), e))?
            .of_manager(id);
        let log_stats = log.stats();
        let state_dir = dir.join("state");
        let sm = StateMachine::open(&state_dir, cfg.snapshot, sealer)
            .map_err(|e| ManagerError::io(format!("open the state in {}", state_dir.display()), e))?;
        let shared = sm.shared();
        if cfg.force_new_cluster {
            crate::raft::recovery::force_new_cluster(id, &advertise, &mut log, &sm)
                .await
                .map_err(|e| ManagerError::io(format!("force a new cluster from {}", dir.display()), e))?;
        }
        let config = cfg.raft().validate().map_err(|e| ManagerError::raft("accept its settings", e))?;
        // Subscribed before Raft starts: starting re-applies the log's committed tail,
        // which may already make a snapshot due.
        let due = shared.snapshot_due();
        let creds = match shoal_pki::Credentials::load(&cfg.certs_dir) {
            Ok(Some(c)) => c,
            Ok(None) => shoal_pki::Credentials::empty(),
            Err(e) => return Err(ManagerError::Pki(e)),
        };
        let thread = raft_thread::RaftThread::start()?;
        let network = Network::new(id, creds.clone());
        let raft = thread
            .run(async move { Raft::new(id, Arc::new(config), network, log, sm).await })
            .await?
            .map_err(|e| ManagerError::raft("start", e))?;

        let (leader_tx, leader_rx) = watch::channel(false);
        let leader_changes = shared.instruments().leader_changes.clone();
        tokio::spawn(follow_leadership(raft.server_metrics(), raft.metrics(), leader_tx, leader_changes));
        tokio::spawn(ask_for_snapshots(raft.clone(), Arc::downgrade(&shared), due));

        // After a restart, local reads wait (a while) for the state to catch up with
        // what the cluster committed before it.
        let (recovered_tx, recovered) = watch::channel(false);
        let r = raft.clone();
        tokio::spawn(async move {
            if r.wait_for_recovery(None).await.is_ok() {
                recovered_tx.send_replace(true);
            }
        });
        let guard = lock::DekGuard::new(dir, dek, wrapped_by);
        tokio::spawn(follow_unlock_key(Arc::downgrade(&shared), recovered.clone(), guard));

        Ok(Arc::new(Manager {
            id,
            advertise,
            data_dir: cfg.data_dir.clone(),
            room: room::Room::default(),
            raft,
            thread,
            shared,
            log_stats,
            commit_latency_us: std::sync::atomic::AtomicU64::new(0),
            leader: leader_rx,
            recovered,
            started: Instant::now(),
            unreachable_after: Duration::from_millis(cfg.election_ms.1 * 2),
            leader_silent_after: Duration::from_millis(cfg.election_ms.0),
            attached: Mutex::new(Vec::new()),
            stop: tokio::sync::watch::channel(false).0,
            creds,
            certs_dir: cfg.certs_dir.clone(),
            node_id: cfg.node_id.clone().unwrap_or_else(|| id.to_string()),
            external_ca: cfg.external_ca.clone(),
        }))
    }

    /// Ties `task` (a server of this manager) to its life: it is ended at
    /// [`shutdown`](Self::shutdown), after [`stopping`](Self::stopping) fires.
    pub fn attach(&self, task: tokio::task::JoinHandle<()>) {
        self.attached.lock().expect("attached tasks").push(task);
    }

    /// The thread where Raft runs; the cluster port accepts there and serves other
    /// managers there ([`crate::server`]).
    pub fn raft_thread(&self) -> &raft_thread::RaftThread {
        &self.thread
    }

    /// Resolves once [`shutdown`](Self::shutdown) has begun: servers stop taking calls.
    pub fn stopping(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stop = self.stop.subscribe();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    }

    /// The manager's Raft id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The address other managers reach it at.
    pub fn addr(&self) -> &str {
        &self.advertise
    }

    /// The manager's counters and histograms (for the parts that bump them, and for
    /// [`crate::metrics`]).
    pub fn instruments(&self) -> &crate::instruments::Instruments {
        self.shared.instruments()
    }

    /// The size of the Raft log's segment files on disk, bytes (preallocated space
    /// included).
    pub fn log_file_bytes(&self) -> u64 {
        LogStore::disk_bytes_at(&self.data_dir)
    }

    /// Builds a snapshot of this manager's state now, as the policy does when the log
    /// grows (before a backup of the data dir, or to measure a build), and waits for it
    /// at most `timeout`. Nothing is built when the last snapshot already covers every
    /// applied entry.
    pub async fn snapshot_now(
        &self,
        timeout: Duration,
    ) -> Result<shoal_api::wire::SnapshotBuilt, ManagerError> {
        let started = Instant::now();
        let metrics = self.raft.metrics();
        let applied = metrics.borrow_watched().last_applied.map_or(0, |l| l.index);
        let covered =
            |m: &openraft::RaftMetrics<crate::raft::TypeConfig>| m.snapshot.map_or(0, |s| s.index) >= applied;
        let built = |index| shoal_api::wire::SnapshotBuilt {
            raft_id: self.id,
            index,
            bytes: self.shared.snapshot_bytes(),
            seconds: started.elapsed().as_secs_f64(),
        };
        if covered(&metrics.borrow_watched()) {
            let index = metrics.borrow_watched().snapshot.map_or(0, |s| s.index);
            return Ok(shoal_api::wire::SnapshotBuilt { seconds: 0.0, ..built(index) });
        }
        self.raft.trigger().snapshot().await.map_err(|e| ManagerError::raft("start a snapshot", e))?;
        let m = self
            .raft
            .wait(Some(timeout))
            .metrics(covered, "a snapshot of everything applied")
            .await
            .map_err(|e| ManagerError::raft("build a snapshot in time (it may still finish)", e))?;
        Ok(built(m.snapshot.map_or(0, |s| s.index)))
    }

    /// Why Raft stopped on its own (a fatal storage error, a panic), if it did.
    pub fn raft_stopped_because(&self) -> Option<String> {
        self.raft.metrics().borrow_watched().running_state.as_ref().err().map(|e| e.to_string())
    }

    /// The openraft handle (for the gRPC service and tests).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

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

    /// For a leader-only loop that just stopped leading: while the leadership watch
    /// (a moment behind Raft's own view) still says "leader", waits 100 ms before the
    /// loop looks again, so the two disagreeing never spin it (a loaded leader's
    /// controllers once looped millions of times; a restarted manager's node monitor
    /// spun at a full core in CI).
    pub async fn back_off_while_the_watch_lags(leadership: &watch::Receiver<bool>) {
        if *leadership.borrow() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The current leader's address.
    pub fn leader_addr(&self) -> Result<String, ManagerError> {
        let m = self.raft.metrics().borrow_watched().clone();
        let leader = m.current_leader.ok_or(ManagerError::NoLeader)?;
        member_addr(&m, leader).ok_or(ManagerError::NoLeader)
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
        let mut client = client::raft(&self.creds, leader_addr)?;
        let req = pb::ProposeRequest { transaction: proposal.bytes().to_vec() };
        let reply = client.propose(req).await.map_err(|s| ManagerError::forwarded(leader_addr, s))?;
        match reply.into_inner().result {
            Some(pb::propose_reply::Result::Index(i)) => Ok(i),
            Some(pb::propose_reply::Result::Error(e)) => Err(ManagerError::from_pb(e)),
            None => Err(ManagerError::Remote("an empty reply to a proposal".into())),
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
        proposal.with_transaction(|tx| self.shared.check(tx))??;
        self.room.ensure(&self.data_dir)?;
        let started = Instant::now();
        match self.raft.client_write(proposal).await {
            Ok(resp) => {
                self.shared.instruments().proposal_duration.observe(started.elapsed().as_secs_f64());
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
                None => {
                    self.shared.instruments().proposals_failed.inc();
                    Err(ManagerError::raft("commit the write", e))
                }
            },
        }
    }

    /// The local store's per-kind indexes, told of every change (for blocking reads).
    pub fn indexes(&self) -> tokio::sync::watch::Receiver<crate::store::Indexes> {
        self.shared.indexes()
    }

    /// Reads the local state (possibly a little behind the leader).
    pub fn read<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        self.shared.read(f)
    }

    /// [`Manager::read`] for a read that walks much of the state (a controller's
    /// pass, a page of a long list): on a multi-threaded runtime the worker hands its
    /// other tasks to another thread first. At 100,000 tasks a controller's pass
    /// held a worker for seconds, and with it, on 2 cores, the I/O driver: the API
    /// and the nodes' heartbeats went unanswered though the other worker was idle.
    pub fn read_long<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| self.read(f)),
            _ => self.read(f),
        }
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
            .map_err(|_| ManagerError::NotApplied(index))?;
        Ok(self.shared.read(f))
    }

    /// On the leader: confirms leadership with a quorum and returns the index a
    /// linearizable read must see applied.
    pub async fn read_index_local(&self) -> Result<u64, ManagerError> {
        match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(read) => Ok(read.log_id().index),
            Err(e) => match e.forward_to_leader() {
                Some(_) => Err(ManagerError::NotLeader { leader_addr: self.leader_addr()? }),
                None => Err(ManagerError::raft("confirm its leadership", e)),
            },
        }
    }

    async fn read_index_remote(&self, leader_addr: &str) -> Result<u64, ManagerError> {
        let mut client = client::raft(&self.creds, leader_addr)?;
        let reply = client
            .read_index(pb::ReadIndexRequest {})
            .await
            .map_err(|s| ManagerError::forwarded(leader_addr, s))?;
        match reply.into_inner().result {
            Some(pb::read_index_reply::Result::Index(i)) => Ok(i),
            Some(pb::read_index_reply::Result::Error(e)) => Err(ManagerError::from_pb(e)),
            None => Err(ManagerError::Remote("an empty reply to a read index".into())),
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

    /// Stops Raft and the servers attached to it; state stays on disk.
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
        self.stop.send_replace(true);
        let attached = std::mem::take(&mut *self.attached.lock().expect("attached tasks"));
        for task in attached {
            task.abort();
            let _ = task.await;
        }
        self.thread.stop();
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

/// Proposals a caller on the leader keeps in flight at once: Raft carries them to the
/// followers together, where one at a time waited a full commit each (20,000 new tasks
/// took 79 commits in a row, a burst of 1,000 nodes' reports tens).
pub const PROPOSALS_IN_FLIGHT: usize = 8;

/// Runs `proposals` (futures that each propose, none started yet) with at most
/// [`PROPOSALS_IN_FLIGHT`] at once; their outputs in the order they finish.
pub async fn in_flight<F: std::future::Future>(proposals: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    use futures::StreamExt;
    futures::stream::iter(proposals).buffer_unordered(PROPOSALS_IN_FLIGHT).collect().await
}

/// The address of member `id` in the membership these metrics hold.
fn member_addr(m: &openraft::RaftMetrics<crate::raft::TypeConfig>, id: u64) -> Option<String> {
    m.membership_config.membership().nodes().find(|(i, _)| **i == id).map(|(_, n)| n.addr.clone())
}

/// A receiver of one of Raft's metrics watches.
type RaftWatch<T> = WatchReceiverOf<TypeConfig, T>;

/// Keeps `leader_tx` telling whether this manager leads with its full state, and counts
/// leader changes. Raft's full metrics change several times with every write; its server
/// metrics (vote, state, leader, membership) only when leadership may have changed. So
/// this waits on the server metrics, and on the full ones only while this manager leads
/// but has not yet applied its term's first entry. Ends with Raft.
async fn follow_leadership(
    mut server: RaftWatch<openraft::metrics::RaftServerMetrics<TypeConfig>>,
    mut full: RaftWatch<openraft::RaftMetrics<TypeConfig>>,
    leader_tx: watch::Sender<bool>,
    leader_changes: Counter,
) {
    let mut last_leader = None;
    loop {
        let (leader, leads) = {
            let s = server.borrow_watched();
            (s.current_leader, s.state == ServerState::Leader)
        };
        if leader.is_some() && leader != last_leader {
            leader_changes.inc();
        }
        last_leader = leader;
        let is_leader = leads_now(leads, &full.borrow_watched());
        leader_tx.send_if_modified(|v| std::mem::replace(v, is_leader) != is_leader);
        let changed = if leads && !is_leader {
            tokio::select! {
                r = server.changed() => r,
                r = full.changed() => r,
            }
        } else {
            server.changed().await
        };
        if changed.is_err() {
            return;
        }
    }
}

/// Whether this manager leads with its full state, when its server metrics say it
/// leads (`server_leads`) and `full` are its full metrics. Both must say so: the full
/// metrics can lag the server's, and a stale "leader" in them could keep the watch true
/// after the manager stepped down ([`follow_leadership`] then waits on the server
/// metrics alone). A node monitor spinning on such a watch hung CI once.
fn leads_now(server_leads: bool, full: &openraft::RaftMetrics<crate::raft::TypeConfig>) -> bool {
    server_leads && leads_with_full_state(full)
}

/// Whether the node these metrics describe leads and has applied its own term's first
/// entry: its state then holds everything committed before, so controllers and
/// assignments act on all of it.
fn leads_with_full_state(m: &openraft::RaftMetrics<crate::raft::TypeConfig>) -> bool {
    m.state == ServerState::Leader
        && m.last_applied.as_ref().is_some_and(|l| l.leader_id.term == m.current_term)
}

/// Keeps this manager's DEK file wrapped by the cluster's current unlock key (plain
/// while autolock is off): checked at each change of the cluster object, and every few
/// seconds for a change that came in a snapshot (which publishes no events). Starts
/// once the state has caught up after a restart: an older cluster object re-applied
/// from the log must not wrap the key with an unlock key since rotated away. Ends with
/// the state machine.
async fn follow_unlock_key(
    shared: std::sync::Weak<Shared>,
    mut recovered: watch::Receiver<bool>,
    mut guard: lock::DekGuard,
) {
    // Recovery that fails (Raft stopped) ends this below, when the index closes.
    let _ = recovered.wait_for(|r| *r).await;
    let unlock_key = |s: &Shared| {
        s.read(|s| match s.list(Kind::Cluster).next() {
            Some(Object::Cluster(c)) => Some(c.unlock_key.clone()),
            _ => None,
        })
    };
    // The cluster object's index alone: the stream of every event woke this task
    // (another thread) for each write: about 5 % of a follower's Raft thread at 64
    // clients in `bench/raft`.
    let Some(mut cluster_index) = shared.upgrade().map(|s| s.kind_index(Kind::Cluster)) else {
        return;
    };
    let mut followed: Option<String> = None;
    loop {
        let Some(s) = shared.upgrade() else { return };
        // Before the cluster object exists there is nothing to follow.
        if let Some(key) = unlock_key(&s)
            && followed.as_ref() != Some(&key)
        {
            match guard.follow(&key) {
                Ok(changed) => {
                    if changed {
                        let autolock = !key.is_empty();
                        tracing::info!(
                            autolock,
                            "this manager's data key is now wrapped as the cluster says"
                        );
                    }
                    followed = Some(key);
                }
                Err(e) => {
                    tracing::error!(error = %shoal_api::report::chain(&e), "cannot re-wrap this manager's data key; retrying")
                }
            }
        }
        drop(s);
        let wait = async { cluster_index.changed().await.is_ok() };
        // A closed index: the state machine is gone.
        if let Ok(false) = tokio::time::timeout(Duration::from_secs(3), wait).await {
            return;
        }
    }
}

/// Asks Raft for a snapshot when the state machine says one is due. openraft
/// ignores a trigger while a build is under way, so the ask is repeated every second
/// until a build has started (which clears it).
async fn ask_for_snapshots(
    raft: Raft,
    shared: std::sync::Weak<Shared>,
    mut due: tokio::sync::watch::Receiver<()>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = due.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
        }
        let Some(asked) = shared.upgrade().map(|s| s.snapshot_asked()) else { return };
        if asked && raft.trigger().snapshot().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leadership_needs_the_server_metrics_and_the_full_ones_to_agree() {
        let mut full = openraft::RaftMetrics::<TypeConfig>::new_initial(1);
        full.state = ServerState::Leader;
        full.current_term = 3;
        full.last_applied = Some(openraft::testing::log_id::<TypeConfig>(3, 1, 5));
        assert!(leads_now(true, &full), "leads, and applied its term's first entry");
        assert!(!leads_now(false, &full), "the server metrics say it stepped down; the full ones lag");
        full.last_applied = Some(openraft::testing::log_id::<TypeConfig>(2, 1, 4));
        assert!(!leads_now(true, &full), "its term's first entry is not applied yet");
    }
}
