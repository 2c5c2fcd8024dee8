//! The worker agent: keeps a session with the leader's dispatcher, runs the tasks
//! assigned to this node through its [`Node`], and reports their status. Tasks keep
//! running while the agent is disconnected; on reconnection the manager's complete
//! list of assignments replaces what the agent had.
//!
//! - [`node`]: the seam, what the agent asks of its node (trait [`Node`]);
//! - [`executor`]: the real node, the built-in runtime and the image store;
//! - [`fake`]: an in-memory node for tests and, with timings, for simulated agents
//!   ([`crate::sim`]);
//! - [`payloads`]: a task's secrets and configs on a tmpfs of its own, bound into its container;
//! - [`plan`]: what to do about one task (pure);
//! - [`state`]: the agent's state, applying assignments and planning a pass (pure);
//! - [`reconciler`]: the one owner of that state, running passes and their actions;
//! - [`session`]: the session (registration, heartbeats, assignments, reports, logs);
//! - [`join`]: joining a cluster as a worker.

mod exec;
pub mod executor;
pub mod fake;
pub mod join;
pub mod node;
pub mod payloads;
pub mod plan;
pub mod reconciler;
pub mod session;
pub mod state;

#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;

use shoal_api::node::NodeDescription;

pub use executor::{Executor, ExecutorError, PullPolicy};
pub use node::Node;

/// What the agent needs to know about its node.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The node's id in the cluster.
    pub node_id: String,
    /// Managers to reach (`host:port` of their cluster port), tried in order.
    pub managers: Vec<String>,
    /// The address the node advertises.
    pub addr: String,
    /// What the node is.
    pub description: NodeDescription,
    /// The node's certificate, kept current (sessions use its credentials).
    pub renewer: shoal_pki::renew::Renewer,
    /// The source address to dial managers from (simulated nodes each have one);
    /// `None`: the system's choice.
    pub dial_from: Option<std::net::IpAddr>,
    /// Set while a session with a dispatcher is open, for whoever watches the agent
    /// (simulated agents count them).
    pub session_open: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl AgentConfig {
    /// A real node's agent: it dials from the system's choice of address, and no one
    /// watches its sessions.
    pub fn for_node(
        node_id: String,
        managers: Vec<String>,
        addr: String,
        description: NodeDescription,
        renewer: shoal_pki::renew::Renewer,
    ) -> AgentConfig {
        AgentConfig { node_id, managers, addr, description, renewer, dial_from: None, session_open: None }
    }
}

/// A running agent.
#[derive(Debug)]
pub struct Agent {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Agent {
    /// Starts the agent on `node`: the session with the managers and the reconcile
    /// loop.
    pub fn start<N: Node>(cfg: AgentConfig, node: N) -> Agent {
        let node = Arc::new(node);
        let (reconciler, handle) = reconciler::Reconciler::new(node.clone());
        let session = tokio::spawn(session::sessions(cfg, handle, node));
        let reconcile = tokio::spawn(reconciler.run());
        Agent { tasks: vec![session, reconcile] }
    }

    /// Stops the agent; the containers keep running.
    pub async fn stop(self) {
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}
