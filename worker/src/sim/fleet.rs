//! A fleet of simulated nodes in one process: each joins the cluster with the
//! worker token (its own node id and certificate), then runs the real agent over
//! gRPC from a loopback address of its own, with a [`TimedNode`] behind the seam.
//! Nodes join a few at a time, staggered; any of them can be silenced (its agent
//! stopped and its connections closed, as when a node dies) and revived later with
//! no containers (as a rebooted node).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_api::node::{NodeDescription, NodeResources, Platform};
use shoal_pki::Credentials;
use shoal_pki::renew::Renewer;

use super::node::{TimedNode, Timings};
use crate::agent::join::{JoinError, join};
use crate::agent::{Agent, AgentConfig};

/// Joins that fail for a reason that may pass (a busy or changing leader) are tried
/// this many times.
const JOIN_ATTEMPTS: u32 = 8;

/// Why the fleet could not start a node.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The node could not join the cluster.
    #[error("simulated node {node} could not join the cluster")]
    Join {
        /// Its hostname.
        node: String,
        /// Why.
        source: JoinError,
    },
    /// Its saved identity could not be read or written.
    #[error("the identity of simulated node {node} in {dir} is unusable: remove the directory to join anew")]
    Identity {
        /// Its hostname.
        node: String,
        /// Where it is kept.
        dir: PathBuf,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The addresses ran out of 127/8.
    #[error("no loopback address is left for node {0}: start from a lower --first-addr")]
    NoAddress(usize),
}

/// What the fleet is.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Managers' cluster addresses (`host:port`); joins go round-robin.
    pub managers: Vec<String>,
    /// The worker join token.
    pub token: String,
    /// How many nodes.
    pub nodes: usize,
    /// Where identities are kept across runs (`<dir>/<hostname>/`); a temporary
    /// directory when `None`.
    pub state_dir: Option<PathBuf>,
    /// The first node's address; the others follow (skipping .0 and .255).
    pub first_addr: Ipv4Addr,
    /// How long tasks take on the nodes.
    pub timings: Timings,
    /// The pause between two nodes' starts.
    pub stagger: Duration,
    /// Joins under way at once.
    pub joins_at_once: usize,
}

/// One simulated node.
#[derive(Debug)]
struct Member {
    hostname: String,
    node_id: String,
    cfg: AgentConfig,
    node: TimedNode,
    agent: Option<Agent>,
}

/// What the fleet is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Nodes that joined (or came back with a saved identity).
    pub joined: usize,
    /// Nodes whose joins failed for good.
    pub failed: usize,
    /// Nodes with a session open now.
    pub sessions: usize,
    /// Nodes silenced now.
    pub silenced: usize,
    /// Containers running on all nodes.
    pub running: usize,
}

/// The simulated nodes.
#[derive(Debug)]
pub struct Fleet {
    cfg: FleetConfig,
    members: Mutex<Vec<Member>>,
    failed: AtomicUsize,
    state_dir: PathBuf,
    /// Removed with the fleet when no state dir was given.
    _temp: Option<tempfile::TempDir>,
}

/// The `i`-th address from `first`, skipping addresses ending in .0 or .255.
pub fn nth_addr(first: Ipv4Addr, i: usize) -> Option<Ipv4Addr> {
    let mut a = u32::from(first);
    let mut left = i;
    loop {
        let octet = a & 0xff;
        if octet != 0 && octet != 255 {
            if left == 0 {
                break;
            }
            left -= 1;
        }
        a = a.checked_add(1)?;
    }
    let ip = Ipv4Addr::from(a);
    ip.is_loopback().then_some(ip)
}

impl Fleet {
    /// A fleet with no node started yet.
    pub fn new(cfg: FleetConfig) -> Result<Arc<Fleet>, std::io::Error> {
        let (state_dir, temp) = match &cfg.state_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (d.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new().prefix("shoal-bench-agents-").tempdir()?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        Ok(Arc::new(Fleet {
            cfg,
            members: Mutex::default(),
            failed: AtomicUsize::new(0),
            state_dir,
            _temp: temp,
        }))
    }

    fn members(&self) -> std::sync::MutexGuard<'_, Vec<Member>> {
        self.members.lock().expect("fleet lock")
    }

    /// Joins and starts every node, a few at a time and staggered; returns when all
    /// have joined or failed to.
    pub async fn start(self: &Arc<Self>) {
        let slots = Arc::new(tokio::sync::Semaphore::new(self.cfg.joins_at_once.max(1)));
        let mut joins = tokio::task::JoinSet::new();
        for i in 0..self.cfg.nodes {
            let slot = slots.clone().acquire_owned().await.expect("never closed");
            let me = self.clone();
            joins.spawn(async move {
                let _slot = slot;
                if let Err(e) = me.start_one(i).await {
                    me.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %shoal_api::report::chain(&e), "simulated node not started");
                }
            });
            tokio::time::sleep(self.cfg.stagger).await;
        }
        while joins.join_next().await.is_some() {}
    }

    async fn start_one(&self, i: usize) -> Result<(), SimError> {
        let hostname = format!("sim-{i:05}");
        let ip = nth_addr(self.cfg.first_addr, i).ok_or(SimError::NoAddress(i))?;
        let dir = self.state_dir.join(&hostname);
        let (node_id, creds) = match load_identity(&dir).map_err(|source| SimError::Identity {
            node: hostname.clone(),
            dir: dir.clone(),
            source,
        })? {
            Some(found) => found,
            None => {
                let node_id = shoal_api::object::new_id();
                let creds = self.join(i, &hostname, &node_id, ip).await?;
                save_identity(&dir, &node_id, &creds).map_err(|source| SimError::Identity {
                    node: hostname.clone(),
                    dir: dir.clone(),
                    source,
                })?;
                (node_id, creds)
            }
        };
        let description = NodeDescription {
            hostname: hostname.clone(),
            platform: Platform { os: std::env::consts::OS.into(), arch: std::env::consts::ARCH.into() },
            resources: NodeResources { nano_cpus: 4_000_000_000, memory_bytes: 8 << 30 },
            engine_labels: [("simulated".to_owned(), "true".to_owned())].into(),
            version: env!("CARGO_PKG_VERSION").into(),
        };
        let renewer = Renewer::new(creds, dir.join("certs"), self.cfg.managers.clone());
        let cfg = AgentConfig {
            dial_from: Some(IpAddr::V4(ip)),
            session_open: Some(Arc::new(AtomicBool::new(false))),
            ..AgentConfig::for_node(
                node_id.clone(),
                self.cfg.managers.clone(),
                ip.to_string(),
                description,
                renewer,
            )
        };
        let node = TimedNode::new(self.cfg.timings);
        let agent = Agent::start(cfg.clone(), node.clone());
        self.members().push(Member { hostname, node_id, cfg, node, agent: Some(agent) });
        Ok(())
    }

    /// Joins through the managers in turn, retrying what may pass.
    async fn join(
        &self,
        i: usize,
        hostname: &str,
        node_id: &str,
        ip: Ipv4Addr,
    ) -> Result<Credentials, SimError> {
        let managers = &self.cfg.managers;
        let mut backoff = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            let through = &managers[(i + attempt as usize) % managers.len()];
            match join(through, &self.cfg.token, node_id, hostname, &ip.to_string()).await {
                Ok(enrolled) => return Ok(enrolled.credentials),
                Err(e @ JoinError::BadToken) => {
                    return Err(SimError::Join { node: hostname.into(), source: e });
                }
                Err(e) if attempt + 1 >= JOIN_ATTEMPTS => {
                    return Err(SimError::Join { node: hostname.into(), source: e });
                }
                Err(e) => {
                    tracing::info!(node = hostname, manager = %through, error = %shoal_api::report::chain(&e), "join failed; retrying");
                    attempt += 1;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// What the fleet is doing now.
    pub fn progress(&self) -> Progress {
        let members = self.members();
        let open = |m: &&Member| m.cfg.session_open.as_ref().is_some_and(|o| o.load(Ordering::Relaxed));
        Progress {
            joined: members.len(),
            failed: self.failed.load(Ordering::Relaxed),
            sessions: members.iter().filter(|m| m.agent.is_some()).filter(open).count(),
            silenced: members.iter().filter(|m| m.agent.is_none()).count(),
            running: members.iter().filter(|m| m.agent.is_some()).map(|m| m.node.running()).sum(),
        }
    }

    /// Silences up to `n` running nodes, the last started first: their agents stop
    /// (no heartbeats, no answers, connections closed) and their containers are
    /// gone. Returns their node ids.
    pub async fn silence(&self, n: usize) -> Vec<String> {
        let agents: Vec<(String, String, Agent)> = {
            let mut members = self.members();
            members
                .iter_mut()
                .rev()
                .filter(|m| m.agent.is_some())
                .take(n)
                .map(|m| {
                    m.node = TimedNode::new(self.cfg.timings);
                    (m.node_id.clone(), m.hostname.clone(), m.agent.take().expect("filtered"))
                })
                .collect()
        };
        // All at once, as nodes lost together: one after the other, 100 agents took
        // over 30 s to stop under load.
        futures::future::join_all(agents.into_iter().map(|(id, hostname, agent)| async move {
            agent.stop().await;
            tracing::info!(node = %id, hostname = %hostname, "simulated node silenced");
            id
        }))
        .await
    }

    /// Starts up to `n` silenced nodes again, with no containers. Returns their ids.
    pub fn revive(&self, n: usize) -> Vec<String> {
        let mut members = self.members();
        let mut ids = Vec::new();
        for m in members.iter_mut().filter(|m| m.agent.is_none()).take(n) {
            m.agent = Some(Agent::start(m.cfg.clone(), m.node.clone()));
            tracing::info!(node = %m.node_id, hostname = %m.hostname, "simulated node revived");
            ids.push(m.node_id.clone());
        }
        ids
    }

    /// Stops every agent.
    pub async fn stop(&self) {
        let agents: Vec<Agent> = self.members().iter_mut().filter_map(|m| m.agent.take()).collect();
        for a in agents {
            a.stop().await;
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A node id and certificate saved in `dir` by an earlier run, if any.
fn load_identity(dir: &Path) -> Result<Option<(String, Credentials)>, BoxError> {
    let id = match std::fs::read_to_string(dir.join("node-id")) {
        Ok(id) => id.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(Credentials::load(&dir.join("certs"))?.map(|c| (id, c)))
}

fn save_identity(dir: &Path, node_id: &str, creds: &Credentials) -> Result<(), BoxError> {
    creds.save(&dir.join("certs"))?;
    std::fs::write(dir.join("node-id"), node_id)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_skip_network_and_broadcast_octets_and_stay_in_loopback() {
        let first = Ipv4Addr::new(127, 1, 0, 1);
        assert_eq!(nth_addr(first, 0), Some(Ipv4Addr::new(127, 1, 0, 1)));
        assert_eq!(nth_addr(first, 253), Some(Ipv4Addr::new(127, 1, 0, 254)));
        assert_eq!(nth_addr(first, 254), Some(Ipv4Addr::new(127, 1, 1, 1)));
        assert_eq!(nth_addr(Ipv4Addr::new(127, 255, 255, 254), 1), None);
    }
}
